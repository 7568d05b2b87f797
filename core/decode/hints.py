"""What the decoder may know besides the tables: RAM ranges and vmas, for vm_normal_page().

A page table alone does not say whether a pfn has a struct page, nor which vma an address
belongs to; vm_normal_page() needs both. :class:`Hints` carries them and asks
:func:`pfnmap.kernel.normal_page.classify_pte` (the one place the rule lives) for each pte's
verdict. Where the rule needs ``pfn_valid()`` and no RAM ranges were given, the verdict is
``"unknown"`` and the reason says what was missing; the rule's other branches (a VM_PFNMAP pte at
its linear pfn) need no RAM knowledge and are still decided.

The vma file format (``--vmas``): one vma per line, ``START-END FLAGS PGOFF``::

    # start-end (hex, end exclusive)  flags                                 pgoff (hex)
    2aaaaaaab000-2aaaaaaaf000         VM_READ|VM_SHARED|VM_IO|VM_PFNMAP     f0000
    2aaaaaaaf000-2aaaaaab1000         0x844fb                               f0004

START, END and PGOFF are hexadecimal with or without ``0x`` (as in /proc/PID/maps); FLAGS is a
hexadecimal vm_flags value with ``0x``, or names joined with ``|`` (``VM_`` optional, any case).
Blank lines and text after ``#`` are ignored.
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pfnmap.arch import Arch
from pfnmap.errors import PfnmapError
from pfnmap.kernel.constants import VM_FLAG_NAMES, vm_flag_names
from pfnmap.kernel.normal_page import classify_pte
from pfnmap.kernel.rules import SEED, KernelRules
from pfnmap.kernel.units import parse_size

#: the verdict when vm_normal_page() would need pfn_valid() and no RAM ranges are known
UNKNOWN = "unknown"
_FLAG_VALUES = {name: value for value, name in VM_FLAG_NAMES.items()}


class HintError(PfnmapError):
    """A RAM range or vma file that cannot be read; the message names the place."""


@dataclass(frozen=True)
class VmaHint:
    """One vma: ``[start, end)``, its vm_flags and vm_pgoff."""

    start: int
    end: int
    flags: int
    pgoff: int

    def flag_names(self) -> list[str]:
        return vm_flag_names(self.flags)

    def line(self) -> str:
        """This vma as a line of the ``--vmas`` format."""
        names = "|".join(self.flag_names()) or "0x0"
        return f"{self.start:x}-{self.end:x} {names} {self.pgoff:x}"


class _NeedsRam(Exception):
    """Raised by the pfn_valid of unknown RAM: vm_normal_page needed it."""


def _unknown_pfn_valid(pfn: int) -> bool:
    raise _NeedsRam(pfn)


class Hints:
    """RAM ranges (physical ``(start, end)``, None when unknown) and vmas, for verdicts."""

    def __init__(
        self,
        ram: Sequence[tuple[int, int]] | None = None,
        vmas: Iterable[VmaHint] = (),
        rules: KernelRules = SEED,
    ) -> None:
        self.ram = None if ram is None else sorted(ram)
        self.vmas = sorted(vmas, key=lambda v: v.start)
        for a, b in itertools.pairwise(self.vmas):
            if b.start < a.end:
                raise HintError(f"vmas {a.start:#x}-{a.end:#x} and {b.start:#x}-{b.end:#x} overlap")
        self._starts = [v.start for v in self.vmas]
        self.rules = rules
        self._ram_starts = [a for a, _ in self.ram] if self.ram is not None else []

    @property
    def has_vmas(self) -> bool:
        return bool(self.vmas)

    def vma_at(self, addr: int) -> VmaHint | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.vmas[i].end:
            return self.vmas[i]
        return None

    def pfn_valid_for(self, arch: Arch) -> Callable[[int], bool]:
        """pfn_valid() from the RAM ranges: the whole page lies in one range."""
        if self.ram is None:
            return _unknown_pfn_valid
        shift = arch.page_shift
        size = 1 << shift
        ram, starts = self.ram, self._ram_starts

        def pfn_valid(pfn: int) -> bool:
            paddr = pfn << shift
            i = bisect.bisect_right(starts, paddr) - 1
            return i >= 0 and paddr + size <= ram[i][1]

        return pfn_valid

    def verdict(
        self, arch: Arch, addr: int, pte: int, pfn_valid: Callable[[int], bool]
    ) -> tuple[str | None, str]:
        """vm_normal_page()'s verdict for the pte mapping ``addr``, with its reason.

        ``(None, reason)`` when no vma covers ``addr``; ``("unknown", reason)`` when the rule
        needed pfn_valid() and no RAM ranges are known.
        """
        vma = self.vma_at(addr)
        if vma is None:
            return None, "no vma covers this address"
        try:
            verdict, _, reason = classify_pte(
                arch, self.rules, pfn_valid, vma.flags, vma.start, vma.pgoff, addr, pte
            )
        except _NeedsRam as need:
            pfn = need.args[0]
            return UNKNOWN, f"needs pfn_valid({pfn:#x}) and no RAM ranges are known (--ram)"
        return str(verdict), reason


# parsing ------------------------------------------------------------------------------------
def _int(text: str, what: str, hex_default: bool = False) -> int:
    t = text.strip()
    try:
        if hex_default and not t.lower().startswith("0x"):
            return int(t, 16)
        return parse_size(t) if not t.lower().startswith("0x") else int(t, 16)
    except ValueError:
        raise HintError(f"{what}: {text!r} is not a number") from None


def parse_ram_ranges(text: str) -> list[tuple[int, int]]:
    """``"0-0x4000000,0x100000000+1G"`` -> ``[(0, 0x4000000), (0x100000000, 0x140000000)]``.

    Each range is ``START-END`` (END exclusive) or ``START+SIZE``; numbers are decimal, ``0x``
    hexadecimal, or sizes such as ``64M``. Ranges are separated by commas.
    """
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "+" in part:
            a, b = part.split("+", 1)
            start = _int(a, f"RAM range {part!r}")
            end = start + _int(b, f"RAM range {part!r}")
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _int(a, f"RAM range {part!r}"), _int(b, f"RAM range {part!r}")
        else:
            raise HintError(f"RAM range {part!r}: write START-END or START+SIZE")
        if start < 0 or end <= start:
            raise HintError(f"RAM range {part!r} is empty or reversed")
        out.append((start, end))
    if not out:
        raise HintError(f"no RAM range in {text!r}")
    out.sort()
    for (a0, a1), (b0, b1) in itertools.pairwise(out):
        if b0 < a1:
            raise HintError(f"RAM ranges {a0:#x}-{a1:#x} and {b0:#x}-{b1:#x} overlap")
    return out


def parse_vm_flags(text: str) -> int:
    """``"VM_READ|VM_PFNMAP"``, ``"read|pfnmap"`` or ``"0x401"`` -> the vm_flags value."""
    t = text.strip()
    if t.lower().startswith("0x"):
        try:
            return int(t, 16)
        except ValueError:
            raise HintError(f"flags {text!r} is not a hexadecimal number") from None
    flags = 0
    for name in t.split("|"):
        key = name.strip().upper()
        if not key.startswith("VM_"):
            key = "VM_" + key
        if key not in _FLAG_VALUES:
            raise HintError(
                f"flags {text!r}: {name.strip()!r} is not a vm flag (known: "
                f"{', '.join(sorted(_FLAG_VALUES))})"
            )
        flags |= _FLAG_VALUES[key]
    return flags


def parse_vmas(text: str, source: str = "vmas") -> list[VmaHint]:
    """The vmas of a ``--vmas`` file's text (format in the module docstring)."""
    vmas: list[VmaHint] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        parts = line.split()
        if len(parts) != 3 or "-" not in parts[0]:
            raise HintError(f"{where}: expected 'START-END FLAGS PGOFF', got {raw.strip()!r}")
        a, b = parts[0].split("-", 1)
        start = _int(a, where, hex_default=True)
        end = _int(b, where, hex_default=True)
        if end <= start:
            raise HintError(f"{where}: end {end:#x} is not above start {start:#x}")
        try:
            flags = parse_vm_flags(parts[1])
        except HintError as exc:
            raise HintError(f"{where}: {exc}") from None
        vmas.append(VmaHint(start, end, flags, _int(parts[2], where, hex_default=True)))
    return vmas


def read_vmas_file(path: str | os.PathLike[str]) -> list[VmaHint]:
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise HintError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HintError(f"{name}: cannot read the vma file: {exc}") from None
    vmas = parse_vmas(text, name)
    try:
        Hints(None, vmas)
    except HintError as exc:
        raise HintError(f"{name}: {exc}") from None
    return vmas


def format_vmas(vmas: Iterable[VmaHint]) -> str:
    """Vmas as the text of a ``--vmas`` file."""
    lines = ["# start-end flags pgoff (pfnmap decode --vmas format)"]
    lines += [v.line() for v in vmas]
    return "\n".join(lines) + "\n"
