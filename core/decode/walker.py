"""Decode page tables from a physical memory image: the walk, the leaves and merged ranges.

:class:`Walker` walks the tables of any registered arch from a root table address, top level
first, in virtual-address order, as the MMU would: an entry that is present and a leaf
(``table_entry_leaf``: a large page) maps memory, a present non-leaf entry points to the next
table (``table_entry_paddr``), and every non-none entry of a last-level table is a leaf (its
``pte_present`` may still be false: a PROT_NONE or swap pte). The arch's levels drive the walk:
entry width and byte order per level, however many levels there are.

It reads one table at a time as a numpy view of the image and decodes it with masks
(:mod:`pfnmap.arch.vector`), so memory stays flat whatever the image size, and yields
:class:`LeafBatch` (the leaves of one table, as arrays) and :class:`Problem` records. A bad
entry never stops the walk: it becomes a problem record with its level, the entry's physical
address, its raw value and the reason, and the walk goes on with the next entry. With
``grouped=True`` the last-level tables under one upper table are read and decoded as one
array instead, into grouped batches (see :class:`Walker`): the bulk mode. Problems:

``outside-image``
    a present entry points to a table the image does not hold;
``truncated``
    a table the image declares is cut off by the end of the file;
``not-dumped``
    a table in RAM the dump left out (a kdump file's dump level excluded the page);
``unreadable``
    a table whose stored bytes are damaged (a kdump page that does not decompress);
``loop``
    an entry points back to a table on its own path from the root (not followed);
``reserved-bits``
    a present entry sets bits its layout reserves (``reserved*``, ``pa_high``, ``res<N>``
    fields: the MMU faults on them); the entry is still decoded, as QEMU's monitor does;
``non-canonical``
    an entry maps addresses the arch cannot translate (sparc64's VA hole); not followed;
``misaligned``
    an entry points to a table address that is not a multiple of the table's size (only
    sparc64's ``paddr >> 11`` entries can say that); not followed;
``reserved-encoding``, ``contiguous``
    an entry the MMU faults on though its layout decodes it, and a contiguous-hint group
    that disagrees (:mod:`pfnmap.decode.descriptors`);
``table-budget``
    the walk read more tables than its budget (twice what the image can hold, plus 65,536):
    entries keep pointing to the same tables; the walk stops there (it always terminates).

:func:`leaves` turns batches into :class:`Leaf` records and :func:`ranges` merges consecutive
leaves (virtually and physically contiguous, same flags, same verdict) into :class:`Range`
records; both pass problems through. With :class:`~pfnmap.decode.hints.Hints` each pte gets
vm_normal_page()'s verdict. The records live in :mod:`pfnmap.decode.records` and the views
in :mod:`pfnmap.decode.views`; this module exports them all.

Where pfnmap differs from the hardware: a leaf's physical address is the entry's own
(``leaf_paddr``, what ``pte_pfn`` reads; for an entry the arch stores encoded, such as x86's
PROT_NONE ptes under the L1TF inversion of the 6.1 era, what
:meth:`~pfnmap.arch.Arch.leaves_frame_paddr` decodes); sparc64's large TTEs, which the MMU
also aligns down to their size, are shown per 8 KiB slot with their ``size`` field among the flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pfnmap.arch import Arch
from pfnmap.arch.vector import TableOps, table_ops
from pfnmap.decode.descriptors import (
    CONTIGUOUS,
    RESERVED_ENCODING,
    contiguous_problems,
    reserved_encoding_problems,
)
from pfnmap.decode.image import OutsideImage, PhysImage
from pfnmap.decode.records import (
    ArrayPool,
    Item,
    Leaf,
    LeafBatch,
    Problem,
    Range,
    index_tile,
    va_offsets,
)
from pfnmap.decode.views import LARGE_PAGE_REASON, describe_flags, leaves, ranges
from pfnmap.errors import PfnmapError

__all__ = [
    "BUDGET",
    "GROUP_ENTRIES",
    "LARGE_PAGE_REASON",
    "LOOP",
    "MIN_TABLE_BUDGET",
    "MISALIGNED",
    "NON_CANONICAL",
    "NOT_DUMPED",
    "OUTSIDE",
    "PROBLEM_KINDS",
    "RESERVED",
    "TRUNCATED",
    "UNREADABLE",
    "Item",
    "Leaf",
    "LeafBatch",
    "Problem",
    "Range",
    "WalkError",
    "Walker",
    "describe_flags",
    "leaves",
    "ranges",
    "summary_hint",
    "walk",
]

OUTSIDE = "outside-image"
TRUNCATED = "truncated"
NOT_DUMPED = "not-dumped"
UNREADABLE = "unreadable"
LOOP = "loop"
RESERVED = "reserved-bits"
NON_CANONICAL = "non-canonical"
MISALIGNED = "misaligned"
BUDGET = "table-budget"
PROBLEM_KINDS = (
    OUTSIDE,
    TRUNCATED,
    NOT_DUMPED,
    UNREADABLE,
    LOOP,
    RESERVED,
    NON_CANONICAL,
    MISALIGNED,
    BUDGET,
    RESERVED_ENCODING,
    CONTIGUOUS,
)

_U64 = (1 << 64) - 1
#: OutsideImage kinds (pfnmap.decode.images.base) that become problems of their own
_READ_PROBLEMS = {"not-dumped": NOT_DUMPED, "unreadable": UNREADABLE}
#: leaves a grouped batch (``Walker(..., grouped=True)``) holds at most: x86-64's 512 pte
#: tables under one pmd table, 2 MiB of raw entries
GROUP_ENTRIES = 1 << 18
#: table reads every walk may make beyond twice the tables the image holds: real kernels map
#: one table from many entries (x86-64's ESPFIX area fills pmd tables with one pte table)
MIN_TABLE_BUDGET = 1 << 16


class WalkError(PfnmapError):
    """The walk cannot start (a root outside the image, misaligned, cut off)."""


class Walker:
    """Iterate the tables under ``root``; yields :class:`LeafBatch` and :class:`Problem`.

    ``max_tables`` bounds the tables read (default: twice what the image can hold, plus
    :data:`MIN_TABLE_BUDGET`), so a walk over any bytes terminates. ``progress(done, total)``
    is called after each table with how much of the table-translated VA space is behind the
    walk. After the iteration ``tables_read``, ``leaf_entries``, ``problems`` and ``stopped``
    describe it.

    With ``grouped`` the last-level tables that hang one after the other from an upper table
    are read and decoded together, up to ``group_entries`` leaves at a time, into grouped
    batches (see :class:`LeafBatch`; ``progress`` is then called once per group): the same
    leaves and problems in the same order, with a few numpy calls per group instead of per
    table. Wherever a table of a group would make a problem record, that group is walked
    table by table, so each problem still comes right where the ungrouped walk puts it.

    ``va_base`` is the VA of the root table's first entry: 0, or for a root that translates
    the top of the address space (arm64's TTBR1) what :meth:`Arch.root_from_register` says.
    """

    def __init__(
        self,
        image: PhysImage,
        arch: Arch,
        root: int,
        *,
        max_tables: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        grouped: bool = False,
        group_entries: int = GROUP_ENTRIES,
        va_base: int = 0,
    ) -> None:
        self.image = image
        self.va_base = va_base
        self.grouped = grouped
        last_level = arch.levels[-1]
        #: last-level tables a grouped batch holds at most
        self._group_tables = max(1, group_entries // last_level.entries)
        self._pool = ArrayPool()
        self._scratch_buf = np.empty(0, dtype=np.uint64)
        self.arch = arch
        self.root = root
        self.ops: TableOps = table_ops(arch)
        self.levels = arch.levels
        self.last = len(arch.levels) - 1
        top = arch.levels[0]
        self.table_bits = top.shift + top.bits
        self.va_total = 1 << self.table_bits
        self.progress = progress
        smallest = min(lv.entries * lv.entry_bytes for lv in arch.levels)
        self.max_tables = (
            max_tables
            if max_tables is not None
            else 2 * (image.size // smallest) + MIN_TABLE_BUDGET
        )
        self.canonical = arch.canonical and 0 < arch.va_bits <= self.table_bits
        self.canon_level = -1
        if self.canonical and arch.va_bits < self.table_bits:
            half = 1 << (arch.va_bits - 1)
            self.canon_level = next(i for i, lv in enumerate(arch.levels) if lv.span <= half)
        self.tables_read = 0
        self.leaf_entries = 0
        self.problems = 0
        self.stopped = False
        self.finished = False
        self._root_table = self._read_root()

    # setup ------------------------------------------------------------------------------------
    def _read_root(self) -> np.ndarray:
        lv = self.levels[0]
        size = lv.entries * lv.entry_bytes
        root = self.root
        if root < 0 or root > _U64:
            raise WalkError(f"root {root:#x} is not a physical address")
        if root % size:
            raise WalkError(
                f"root {root:#x} is not aligned to the {size}-byte {lv.name} table of "
                f"{self.arch.name} (CR3-style values carry flags in the low bits: mask them off)"
            )
        try:
            return self.image.table(root, lv.entries, self.ops.levels[0].dtype)
        except OutsideImage as exc:
            if exc.kind in _READ_PROBLEMS:
                raise WalkError(f"root table [{root:#x}, {root + size:#x}): {exc}") from None
            what = "cut off by the end of the file" if exc.kind == "truncated" else "outside"
            raise WalkError(
                f"root table [{root:#x}, {root + size:#x}) is {what} the image "
                f"{self.image.name} (it covers {self.image.describe_ranges()})"
            ) from None

    # the walk ---------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Item]:
        self.tables_read = 1
        yield from self._table(0, self.root, self._root_table, self.va_base, (), (self.root,))
        self.finished = True

    def _problem(self, kind: str, detail: str, level: int, entry_addr: int, raw: int, va_raw: int):
        self.problems += 1
        return Problem(
            kind,
            detail,
            level,
            self.levels[level].name,
            entry_addr,
            raw,
            self._canon_int(va_raw),
        )

    def _canon_int(self, va_raw: int) -> int:
        if self.canonical and va_raw >> (self.arch.va_bits - 1) & 1:
            return (va_raw | (_U64 ^ ((1 << self.arch.va_bits) - 1))) & _U64
        return va_raw

    def _canon(self, va_raw: np.ndarray) -> np.ndarray:
        bits = self.arch.va_bits
        # va_raw ascends (index order): all in the lower half needs no sign extension
        if not self.canonical or not va_raw.size or int(va_raw[-1]) >> (bits - 1) == 0:
            return va_raw
        sign = np.uint64(1 << (bits - 1))
        high = np.uint64(_U64 ^ ((1 << bits) - 1))
        return np.where((va_raw & sign) != 0, va_raw | high, va_raw)

    def _reserved(self, level, table, idx, raw, va_raw, mask, what) -> Iterator[Problem]:
        if not mask:
            return
        bad = np.flatnonzero(raw & np.uint64(mask))
        lv = self.levels[level]
        fmt = self.arch.leaf_formats[level] if what == "leaf" else self.arch.table_formats[level]
        for k in bad.tolist():
            value = int(raw[k])
            names = [f.name for f in fmt.fields.values() if f.mask & mask & value]
            yield self._problem(
                RESERVED,
                f"{'a leaf' if what == 'leaf' else 'a table pointer'} with reserved bits "
                f"{value & mask:#x} set ({', '.join(names)})",
                level,
                table + int(idx[k]) * lv.entry_bytes,
                value,
                int(va_raw[k]),
            )

    def _batch(self, level, table, idx, raw, va_raw, present, upper) -> LeafBatch:
        lv = self.levels[level]
        ops = self.ops.levels[level]
        self.leaf_entries += int(raw.size)
        assert ops.leaf_paddr is not None
        return LeafBatch(
            level=level,
            name=self.arch.leaf_formats[level].name,
            size=lv.span,
            table=table,
            entry_bytes=lv.entry_bytes,
            index=idx,
            raw=raw,
            va_raw=va_raw,
            va=self._canon(va_raw),
            # the frame the kernel reads (x86 6.1: a PROT_NONE pte's pfn is stored inverted)
            pa=self.arch.leaves_frame_paddr(level, raw, ops.leaf_paddr(raw)),
            present=present,
            upper=upper,
        )

    def _table(self, level, table, arr, va_base, upper, ancestors) -> Iterator[Item]:
        lv = self.levels[level]
        ops = self.ops.levels[level]
        idx = np.flatnonzero(arr)
        if idx.size:
            raw = arr[idx].astype(np.uint64)
            va_raw = np.uint64(va_base) + (idx.astype(np.uint64) << np.uint64(lv.shift))
            present = ops.present(raw)
            yield from self._descriptor_checks(level, table, idx, raw, va_raw, present)
            if level == self.last:
                yield from self._reserved(
                    level, table, idx[present], raw[present], va_raw[present],
                    ops.leaf_reserved, "leaf",
                )  # fmt: skip
                yield self._batch(level, table, idx, raw, va_raw, present, upper)
            else:
                yield from self._upper(level, table, idx[present], raw[present],
                                       va_raw[present], upper, ancestors)  # fmt: skip
        if self.progress is not None:
            done = va_base - self.va_base + lv.entries * lv.span
            self.progress(min(done, self.va_total), self.va_total)

    def _descriptor_checks(self, level, table, idx, raw, va_raw, present) -> Iterator[Problem]:
        """Reserved encodings and contiguous groups (pfnmap.decode.descriptors)."""
        arch = self.arch
        if arch.reserved_encodings(level, raw[:0]) is not None:
            for problem in reserved_encoding_problems(
                arch, level, table, idx, raw, self._canon(va_raw)
            ):
                self.problems += 1
                yield problem
        ops = self.ops.levels[level]
        if not arch.contiguous_mask or arch.contiguous_entries(level) <= 1:
            return
        if ops.leaf_paddr is None:
            return
        is_leaf = present if ops.leaf is None else present & ops.leaf(raw)
        for problem in contiguous_problems(
            arch, level, table, idx, raw, self._canon(va_raw), is_leaf, ops.leaf_paddr(raw)
        ):
            self.problems += 1
            yield problem

    def _upper(self, level, table, idx, raw, va_raw, upper, ancestors) -> Iterator[Item]:
        if not idx.size:
            return
        lv = self.levels[level]
        ops = self.ops.levels[level]
        if level == self.canon_level:
            bits = self.arch.va_bits
            hi = va_raw >> np.uint64(bits - 1)
            top = np.uint64((1 << (self.table_bits - bits + 1)) - 1)
            ok = (hi == 0) | (hi == top)
            for k in np.flatnonzero(~ok).tolist():
                yield self._problem(
                    NON_CANONICAL,
                    f"maps {int(va_raw[k]):#x}.., inside the hole of {self.arch.name}'s "
                    f"{bits}-bit virtual addresses; not followed",
                    level,
                    table + int(idx[k]) * lv.entry_bytes,
                    int(raw[k]),
                    int(va_raw[k]),
                )
            idx, raw, va_raw = idx[ok], raw[ok], va_raw[ok]
        if ops.leaf is not None and ops.leaf_paddr is not None:
            is_leaf = ops.leaf(raw)
        else:
            is_leaf = np.zeros(raw.shape, dtype=bool)
        leaf_pos = np.flatnonzero(is_leaf)
        ptr_pos = np.flatnonzero(~is_leaf)
        yield from self._reserved(
            level, table, idx[leaf_pos], raw[leaf_pos], va_raw[leaf_pos], ops.leaf_reserved,
            "leaf",
        )  # fmt: skip
        yield from self._reserved(
            level, table, idx[ptr_pos], raw[ptr_pos], va_raw[ptr_pos], ops.table_reserved,
            "table",
        )  # fmt: skip
        children = ops.table_paddr(raw[ptr_pos]) if ptr_pos.size else np.empty(0, dtype=np.uint64)
        cuts = np.searchsorted(leaf_pos, ptr_pos).tolist()
        group = self._group_tables if self.grouped and level + 1 == self.last else 1
        ptrs, kids = ptr_pos.tolist(), children.tolist()
        done = 0
        i, n = 0, len(ptrs)
        while i < n:
            cut = cuts[i]
            if cut > done:  # the large-page leaves before this pointer, in VA order
                sel = leaf_pos[done:cut]
                yield self._batch(
                    level, table, idx[sel], raw[sel], va_raw[sel],
                    np.ones(sel.size, dtype=bool), upper,
                )  # fmt: skip
                done = cut
            j = i + 1
            while j < n and j - i < group and cuts[j] == cut:
                j += 1
            if j - i > 1:
                grouped = self._group(level, raw, va_raw, ptr_pos[i:j], children[i:j], upper,
                                      ancestors)  # fmt: skip
                if grouped is not None:
                    yield from grouped
                    i = j
                    continue
            for k in range(i, j):
                yield from self._child(level, table, idx, raw, va_raw, ptrs[k], kids[k], upper,
                                       ancestors)  # fmt: skip
                if self.stopped:
                    return
            i = j
        if done < leaf_pos.size:
            sel = leaf_pos[done:]
            yield self._batch(
                level, table, idx[sel], raw[sel], va_raw[sel], np.ones(sel.size, dtype=bool),
                upper,
            )  # fmt: skip

    def _child(
        self, level, table, idx, raw, va_raw, pos, child, upper, ancestors
    ) -> Iterator[Item]:
        """Follow the pointer at ``pos`` of an upper table to its child table."""
        lv = self.levels[level]
        nxt = self.levels[level + 1]
        nops = self.ops.levels[level + 1]
        child_bytes = nxt.entries * nxt.entry_bytes
        entry = int(raw[pos])
        entry_addr = table + int(idx[pos]) * lv.entry_bytes
        va = int(va_raw[pos])
        if child in ancestors:
            yield self._problem(
                LOOP,
                f"points back to the {self.levels[ancestors.index(child)].name} table at "
                f"{child:#x} on its own path from the root; not followed",
                level,
                entry_addr,
                entry,
                va,
            )
            return
        if self.tables_read >= self.max_tables:
            self.stopped = True
            yield self._problem(
                BUDGET,
                f"walk stopped after {self.tables_read} table reads (the budget, see "
                "--max-tables): entries keep pointing to the same tables",
                level,
                entry_addr,
                entry,
                va,
            )
            return
        try:
            arr = self.image.table(child, nxt.entries, nops.dtype)
        except OutsideImage as exc:
            if exc.kind in _READ_PROBLEMS:
                kind, where = _READ_PROBLEMS[exc.kind], f"not readable: {exc}"
            elif exc.kind == "truncated":
                kind, where = TRUNCATED, "cut off by the end of the file"
            else:
                kind, where = OUTSIDE, "outside the image"
            yield self._problem(
                kind,
                f"points to a {nxt.name} table at {child:#x}, {where}",
                level,
                entry_addr,
                entry,
                va,
            )
            return
        if child % child_bytes:
            yield self._problem(
                MISALIGNED,
                f"points to a {nxt.name} table at {child:#x}, not aligned to its "
                f"{child_bytes} bytes",
                level,
                entry_addr,
                entry,
                va,
            )
            return
        self.tables_read += 1
        yield from self._table(level + 1, child, arr, va, (*upper, entry), (*ancestors, child))

    def _group(self, level, raw, va_raw, pos, children, upper, ancestors) -> list[Item] | None:
        """The last-level tables the pointers at ``pos`` lead to, decoded as one array into one
        grouped :class:`LeafBatch` (a list of it, empty when the tables are). None, having
        changed nothing, when one of them would make a problem record (a loop, the budget,
        a table the image cannot give whole, misalignment, reserved bits): the caller then
        walks them one by one and reports it in its place."""
        lv = self.levels[level + 1]
        ops = self.ops.levels[level + 1]
        n = int(pos.size)
        entries = lv.entries
        if self.tables_read + n > self.max_tables:
            return None
        if (children % np.uint64(entries * lv.entry_bytes)).any():
            return None
        if np.isin(children, np.array(ancestors, dtype=np.uint64)).any():
            return None
        pool = self._pool
        total = n * entries
        block = self.image.tables(children, entries, ops.dtype, pool.take((n, entries), ops.dtype))
        if block is None:
            return None
        flat = block.reshape(-1)
        used = None if flat.min() else np.flatnonzero(flat)  # None: every entry is a leaf
        if used is None:
            values = flat
        else:  # mode "clip": in range, and "raise" would copy through a buffer
            values = np.take(flat, used, out=pool.take(used.size, flat.dtype), mode="clip")
        if values.dtype == np.uint64:
            leaf = values
        else:  # another width or byte order: native uint64, as every leaf array is
            leaf = pool.take(values.size, np.uint64)
            np.copyto(leaf, values, casting="unsafe")
        count = leaf.size
        present = pool.take(count, np.bool_)
        if ops.present.holds_for_all(leaf):
            present.fill(True)
        else:
            ops.present(leaf, out=present, scratch=self._scratch(count))
        # reserved bits: one OR over the group rules them out (the usual case)
        reserved = ops.leaf_reserved
        if reserved and count and int(np.bitwise_or.reduce(leaf)) & reserved:
            hit = np.bitwise_and(leaf, np.uint64(reserved), out=self._scratch(count))
            if (present & (hit != 0)).any():
                return None
        # reserved encodings and contiguous groups are checked table by table
        encodings = self.arch.reserved_encodings(level + 1, leaf)
        if encodings is not None and encodings[0].any():
            return None
        cont = self.arch.contiguous_mask
        if cont and count and int(np.bitwise_or.reduce(leaf)) & cont:
            return None
        self.tables_read += n
        bases = va_raw[pos]
        if self.progress is not None:
            done = int(bases[-1]) - self.va_base + entries * lv.span
            self.progress(min(done, self.va_total), self.va_total)
        if not count:
            return []
        va_raw_out = pool.take(count, np.uint64)
        if used is None:
            index = self._index_tile(entries, n)
            starts = np.arange(n + 1, dtype=np.intp) * entries
            step = np.uint64(entries << lv.shift)
            if n == 1 or (np.diff(bases) == step).all():  # pointers one after the other
                np.add(self._va_offsets(level + 1, total), bases[0], out=va_raw_out)
            else:
                offsets = self._va_offsets(level + 1, entries)
                np.add(bases[:, None], offsets, out=va_raw_out.reshape(n, entries))
        else:
            number = used >> (entries.bit_length() - 1)
            index = used & (entries - 1)
            starts = np.searchsorted(number, np.arange(n + 1))
            np.left_shift(index.astype(np.uint64), np.uint64(lv.shift), out=va_raw_out)
            va_raw_out += bases[number]
        self.leaf_entries += count
        assert ops.leaf_paddr is not None
        return [
            LeafBatch(
                level=level + 1,
                name=self.arch.leaf_formats[level + 1].name,
                size=lv.span,
                table=int(children[0]),
                entry_bytes=lv.entry_bytes,
                index=index,
                raw=leaf,
                va_raw=va_raw_out,
                va=self._canon(va_raw_out),
                pa=self.arch.leaves_frame_paddr(
                    level + 1, leaf, ops.leaf_paddr(leaf, out=pool.take(count, np.uint64))
                ),
                present=present,
                upper=upper,
                tables=children,
                pointers=raw[pos],
                starts=starts,
            )
        ]

    def _scratch(self, count: int) -> np.ndarray:
        """Working memory of the walker's own (never part of a batch)."""
        if self._scratch_buf.size < count:
            self._scratch_buf = np.empty(count, dtype=np.uint64)
        return self._scratch_buf[:count]

    def _index_tile(self, entries: int, n: int) -> np.ndarray:
        """``0 .. entries - 1`` repeated ``n`` times (a read-only view of a cached array)."""
        return index_tile(entries, self._group_tables)[: n * entries]

    def _va_offsets(self, level: int, count: int) -> np.ndarray:
        """``k << shift`` for the first ``count`` entries from a level's table (cached)."""
        lv = self.levels[level]
        return va_offsets(lv.shift, max(count, self._group_tables * lv.entries))[:count]


def walk(image: PhysImage, arch: Arch, root: int, **kw: Any) -> Walker:
    """A :class:`Walker` (iterate it for batches and problems)."""
    return Walker(image, arch, root, **kw)


def summary_hint(walker: Walker) -> str | None:
    """A hint when the walk looks like the wrong arch or root (mostly problems)."""
    if walker.problems and walker.problems >= max(8, walker.leaf_entries):
        return (
            f"{walker.problems} problems for {walker.leaf_entries} leaves: is --arch "
            f"{walker.arch.name} right, and is --root the top-level table?"
        )
    return None
