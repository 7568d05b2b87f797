"""The arch's entry operations over whole tables at once, for the dump decoder.

An arch describes its entries with plain-int methods (``table_entry_paddr``,
``table_entry_present``, ``table_entry_leaf``, ``leaf_paddr``, ``pte_present``), called once per
entry by the emulator. The decoder reads a table as a numpy array and wants those operations as
masks. Rather than reach into each arch's private masks, :class:`TableOps` finds them by asking
the arch's own methods, once per arch and level:

- an address operation that moves each entry bit to at most one address bit (every built-in
  one: an AND mask, sparc64's ``<< 11``, PSE-36's bits 16..13 to 35..32) becomes a list of
  ``(mask, shift)`` pairs;
- a predicate that is "any of these bits" (``pte_present``) or "all of these bits"
  (``pmd_large``: PSE and PRESENT) becomes one mask; one that is "these bits have these
  values" (arm64's ``pmd_sect``: VALID set and TABLE_BIT clear) a mask and a value.

Each derived form is then checked against the method on every single bit, on all ones, and on
a few hundred pseudo-random entries. An operation that fits neither form (a third-party arch
may compute something else) is called per entry, so results never depend on the probe.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pfnmap.arch.contract import Arch, EntryFormat

#: pseudo-random entries each derived form is checked on (besides every bit and all ones)
CHECK_SAMPLES = 256
_SEED = 0x6AAB341E

#: fields whose bits must be zero in an entry the MMU uses (reserved by the hardware, or
#: address bits the mode's kernel does not use): names starting with these, or ``res<N>``
RESERVED_PREFIXES = ("reserved", "pa_high")


def is_reserved_field(name: str) -> bool:
    """Whether a layout field holds must-be-zero bits (``reserved_*``, ``pa_high``, ``res1``)."""
    if name.startswith(RESERVED_PREFIXES):
        return True
    return name.startswith("res") and name[3:].isdigit()


def reserved_mask(fmt: EntryFormat | None) -> int:
    if fmt is None:
        return 0
    mask = 0
    for f in fmt.fields.values():
        if is_reserved_field(f.name):
            mask |= f.mask
    return mask


def _samples(width: int) -> list[int]:
    rng = random.Random(_SEED ^ width)
    ones = (1 << width) - 1
    out = [0, ones]
    out += [1 << b for b in range(width)]
    out += [ones ^ (1 << b) for b in range(width)]
    out += [rng.getrandbits(width) for _ in range(CHECK_SAMPLES)]
    # sparse entries look like real ones: a few flag bits and an address
    out += [rng.getrandbits(width) & rng.getrandbits(width) for _ in range(CHECK_SAMPLES)]
    return out


def _u64(x: int) -> np.uint64:
    return np.uint64(x & 0xFFFF_FFFF_FFFF_FFFF)


class VecMap:
    """An int -> int operation over uint64 arrays."""

    def __init__(self, func: Callable[[int], int], width: int) -> None:
        self.func = func
        self.pairs: list[tuple[int, int]] | None = self._derive(func, width)

    @staticmethod
    def _derive(func: Callable[[int], int], width: int) -> list[tuple[int, int]] | None:
        try:
            if func(0) != 0:
                return None
            by_shift: dict[int, int] = {}
            for b in range(width):
                out = func(1 << b)
                if out == 0:
                    continue
                if out < 0 or out & (out - 1):
                    return None  # one bit in, several out: not a bit move
                shift = out.bit_length() - 1 - b
                by_shift[shift] = by_shift.get(shift, 0) | (1 << b)
            pairs = sorted((mask, shift) for shift, mask in by_shift.items())

            def apply(x: int) -> int:
                acc = 0
                for mask, shift in pairs:
                    v = x & mask
                    acc |= v << shift if shift >= 0 else v >> -shift
                return acc

            if any(func(x) != apply(x) for x in _samples(width)):
                return None
        except Exception:  # an arch method that cannot take arbitrary ints: call it per entry
            return None
        if any(shift >= 0 and (mask << shift) >> 64 for mask, shift in pairs):
            return None  # results beyond 64 bits: numpy cannot hold them
        return pairs

    @property
    def vectorised(self) -> bool:
        return self.pairs is not None

    def __call__(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The operation on every value; into ``out`` (a uint64 array of the same shape) when
        given, so a caller can reuse memory."""
        if self.pairs is None:
            result = np.fromiter(
                (self.func(int(v)) for v in values), dtype=np.uint64, count=values.size
            )
            if out is None:
                return result
            out[...] = result
            return out
        if len(self.pairs) == 1:  # one mask and one shift (x86's and sparc64's every address)
            mask, shift = self.pairs[0]
            v = np.bitwise_and(values, _u64(mask), out=out)
            if shift > 0:
                np.left_shift(v, np.uint64(shift), out=v)
            elif shift < 0:
                np.right_shift(v, np.uint64(-shift), out=v)
            return v
        acc = np.zeros(values.shape, dtype=np.uint64) if out is None else out
        if out is not None:
            acc.fill(0)
        for mask, shift in self.pairs:
            v = values & _u64(mask)
            if shift > 0:
                v <<= np.uint64(shift)
            elif shift < 0:
                v >>= np.uint64(-shift)
            acc |= v
        return acc


class VecPredicate:
    """An int -> bool operation over uint64 arrays: "any of mask", "all of mask",
    "masked bits equal a value" (``eq``), or per entry."""

    def __init__(self, func: Callable[[int], bool], width: int) -> None:
        self.func = func
        derived = self._derive(func, width)
        self.form: tuple[str, int] | None = derived[:2] if derived else None
        #: the value the masked bits must have (the ``eq`` form; the mask itself for ``all``)
        self.value = derived[2] if derived else 0

    @staticmethod
    def _derive(func: Callable[[int], bool], width: int) -> tuple[str, int, int] | None:
        try:
            ones = (1 << width) - 1
            samples = _samples(width)
            any_mask = 0
            for b in range(width):
                if func(1 << b):
                    any_mask |= 1 << b
            if not func(0) and all(bool(func(x)) == bool(x & any_mask) for x in samples):
                return ("any", any_mask, 0)
            if func(ones):
                all_mask = 0
                for b in range(width):
                    if not func(ones ^ (1 << b)):
                        all_mask |= 1 << b
                if all(bool(func(x)) == (x & all_mask == all_mask) for x in samples):
                    return ("all", all_mask, all_mask)
            # "x & mask == value": from one entry that holds, the bits whose flip breaks it
            base = next((x for x in samples if func(x)), None)
            if base is not None:
                eq_mask = 0
                for b in range(width):
                    if not func(base ^ (1 << b)):
                        eq_mask |= 1 << b
                value = base & eq_mask
                if all(bool(func(x)) == (x & eq_mask == value) for x in samples):
                    return ("eq", eq_mask, value)
        except Exception:  # see VecMap._derive
            return None
        return None

    @property
    def vectorised(self) -> bool:
        return self.form is not None

    def __call__(
        self,
        values: np.ndarray,
        out: np.ndarray | None = None,
        scratch: np.ndarray | None = None,
    ) -> np.ndarray:
        """The predicate of every value; into ``out`` (bool, same shape) when given, with
        ``scratch`` (uint64, same shape) for the masked values, so a caller can reuse memory."""
        if self.form is None:
            result = np.fromiter(
                (bool(self.func(int(v))) for v in values), dtype=bool, count=values.size
            )
            if out is None:
                return result
            out[...] = result
            return out
        kind, mask = self.form
        m = _u64(mask)
        masked = np.bitwise_and(values, m, out=scratch)
        if kind == "any":
            return np.not_equal(masked, np.uint64(0), out=out)
        return np.equal(masked, _u64(self.value), out=out)

    def holds_for_all(self, values: np.ndarray) -> bool:
        """A quick sufficient test, one reduction: True when the predicate surely holds for
        every value (every value has one bit of an "any" mask in common, or every bit of an
        "all" mask). False means "not known"."""
        if self.form is None or not values.size:
            return False
        kind, mask = self.form
        common = int(np.bitwise_and.reduce(values)) & mask
        if kind == "any":
            return bool(common)
        if kind == "all":
            return common == mask
        # eq: every value has the 1 bits of value and none of its 0 bits
        either = int(np.bitwise_or.reduce(values)) & mask
        return common == self.value and either == self.value


@dataclass(frozen=True)
class LevelOps:
    """What the decoder needs at one level, as array operations."""

    level: int
    width: int
    dtype: np.dtype
    present: VecPredicate  # table_entry_present, or pte_present at the last level
    leaf: VecPredicate | None  # table_entry_leaf (None at the last level: every entry is one)
    table_paddr: VecMap | None  # table_entry_paddr (None at the last level)
    leaf_paddr: VecMap | None  # leaf_paddr, where the level can map
    #: bits of the leaf entry that are not address bits: the "flags" ranges are merged on
    leaf_flag_mask: int
    table_reserved: int
    leaf_reserved: int


class TableOps:
    """Every level's :class:`LevelOps` for one arch (built once per arch, then cached)."""

    def __init__(self, arch: Arch) -> None:
        self.arch = arch
        last = len(arch.levels) - 1
        self.levels: list[LevelOps] = []
        for i, lv in enumerate(arch.levels):
            width = lv.entry_bytes * 8
            ones = (1 << width) - 1
            if i == last:
                present = VecPredicate(arch.pte_present, width)
                leaf = None
                table_paddr = None
            else:
                present = VecPredicate(lambda e, i=i: arch.table_entry_present(i, e), width)
                leaf = VecPredicate(lambda e, i=i: arch.table_entry_leaf(i, e), width)
                table_paddr = VecMap(lambda e, i=i: arch.table_entry_paddr(i, e), width)
            can_map = arch.leaf_formats[i] is not None
            leaf_paddr = VecMap(lambda e, i=i: arch.leaf_paddr(i, e), width) if can_map else None
            addr_bits = 0
            if leaf_paddr is not None and leaf_paddr.pairs is not None:
                for mask, _ in leaf_paddr.pairs:
                    addr_bits |= mask
            self.levels.append(
                LevelOps(
                    level=i,
                    width=width,
                    dtype=np.dtype(arch.numpy_dtype(i)),
                    present=present,
                    leaf=leaf,
                    table_paddr=table_paddr,
                    leaf_paddr=leaf_paddr,
                    leaf_flag_mask=ones & ~addr_bits,
                    table_reserved=reserved_mask(arch.table_formats[i]),
                    leaf_reserved=reserved_mask(arch.leaf_formats[i]),
                )
            )

    def vectorised(self) -> dict[str, bool]:
        """Which operations run as masks (True) and which per entry (False), for reports."""
        out: dict[str, bool] = {}
        for ops, lv in zip(self.levels, self.arch.levels, strict=True):
            for name in ("present", "leaf", "table_paddr", "leaf_paddr"):
                op = getattr(ops, name)
                if op is not None:
                    out[f"{lv.name}.{name}"] = op.vectorised
        return out


#: the pte operations :class:`~pfnmap.arch.Arch` offers in whole-table form (``ptes_*``)
PTE_PREDICATES = ("pte_present", "pte_special", "pte_dirty", "pte_young")
PTE_MAPS = ("pte_pfn", "pte_wrprotect", "pte_mkclean", "pte_mkold")


def pte_vector_op(arch: Arch, name: str) -> VecPredicate | VecMap:
    """The whole-table form of the arch's scalar pte operation ``name``, derived by probing.

    Used by the defaults of ``Arch.ptes_*``; the result takes and gives native uint64 (bool for
    a predicate) arrays.
    """
    width = arch.levels[-1].entry_bytes * 8
    func = getattr(arch, name)
    if name in PTE_PREDICATES:
        return VecPredicate(func, width)
    if name in PTE_MAPS:
        return VecMap(func, width)
    raise ValueError(f"{name!r} has no whole-table form (known: {PTE_PREDICATES + PTE_MAPS})")


_CACHE: dict[int, tuple[Arch, TableOps]] = {}


def table_ops(arch: Arch) -> TableOps:
    """The cached :class:`TableOps` of ``arch`` (probing costs a few milliseconds)."""
    hit = _CACHE.get(id(arch))
    if hit is None or hit[0] is not arch:
        hit = (arch, TableOps(arch))
        _CACHE[id(arch)] = hit
    return hit[1]
