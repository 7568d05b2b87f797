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

START, END and PGOFF are hexadecimal with or without ``0x``; FLAGS is a hexadecimal vm_flags
value with ``0x``, or names joined with ``|`` (``VM_`` optional, any case). Blank lines and text
after ``#`` are ignored. START and END are byte addresses and must be page-aligned; PGOFF is
vm_pgoff, in *pages*. /proc/PID/maps prints the offset in bytes, zero-padded to eight digits
(``000a0000``), so a PGOFF in that form that is a multiple of the page size is refused as a
byte offset (write it without the leading zeros if it really is a page count); a line of
maps itself is refused with a pointer to ``--maps``, which reads maps and smaps as the kernel
prints them (:mod:`pfnmap.decode.procfs`).
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pfnmap.arch import Arch
from pfnmap.errors import PfnmapError
from pfnmap.kernel.constants import VM_FLAG_NAMES, VM_FLAG_NAMES_6_1, vm_flag_names
from pfnmap.kernel.normal_page import Verdict, classify_pte
from pfnmap.kernel.rules import SEED, KernelRules
from pfnmap.kernel.units import parse_size

#: the verdict when vm_normal_page() would need pfn_valid() and no RAM ranges are known
UNKNOWN = "unknown"
#: every vm_flags name pfnmap knows, 2.6.15's and 6.1's (some share a bit: VM_RESERVED and
#: VM_LOCKONFAULT are both 0x80000)
_FLAG_VALUES = {name: value for value, name in (*VM_FLAG_NAMES.items(), *VM_FLAG_NAMES_6_1.items())}


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
        zero_pfn: int | None = None,
    ) -> None:
        #: the shared zero page's pfn (is_zero_pfn), None when unknown
        self.zero_pfn = zero_pfn
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
        zero = self.zero_pfn
        try:
            verdict, pfn, reason = classify_pte(
                arch,
                self.rules,
                pfn_valid,
                vma.flags,
                vma.start,
                vma.pgoff,
                addr,
                pte,
                is_zero_pfn=None if zero is None else zero.__eq__,
                highest_memmap_pfn=self.highest_memmap_pfn(arch),
            )
        except _NeedsRam as need:
            pfn = need.args[0]
            return UNKNOWN, f"needs pfn_valid({pfn:#x}) and no RAM ranges are known (--ram)"
        if (
            verdict is Verdict.BAD
            and zero is None
            and self.rules.zero_pfn_is_special
            and arch.special_mask
            and arch.pte_special(pte)
        ):
            # vm_normal_page would return NULL quietly if this is the zero page
            return UNKNOWN, (
                f"a special pte of pfn {pfn:#x} outside a VM_PFNMAP/VM_MIXEDMAP vma: the zero "
                "page or a bad pte; give the zero page's pfn (--zero-pfn) to tell"
            )
        return str(verdict), reason

    def highest_memmap_pfn(self, arch: Arch) -> int | None:
        """The last pfn of the highest RAM range (mm/memory.c's highest_memmap_pfn), None
        when no RAM ranges are known."""
        if not self.ram:
            return None
        return (max(end for _, end in self.ram) >> arch.page_shift) - 1


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
    """``"VM_READ|VM_PFNMAP"``, ``"read|pfnmap"``, ``"0x401"`` or ``"VM_IO|0x4000000"`` -> the
    vm_flags value (2.6.15's names and 6.1's, such as VM_DONTDUMP)."""
    t = text.strip()
    if t.lower().startswith("0x"):
        try:
            return int(t, 16)
        except ValueError:
            raise HintError(f"flags {text!r} is not a hexadecimal number") from None
    flags = 0
    for name in t.split("|"):
        if name.strip().lower().startswith("0x"):  # a bit without a name: 0x4000000
            flags |= parse_vm_flags(name)
            continue
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


#: the permissions column of a /proc/PID/maps line
_MAPS_PERMS = re.compile(r"^[r-][w-][x-][sp]$")


def parse_vmas(text: str, source: str = "vmas", page_shift: int = 12) -> list[VmaHint]:
    """The vmas of a ``--vmas`` file's text (format in the module docstring); ``page_shift``
    is the arch's, for the alignment and byte-offset checks."""
    page = 1 << page_shift
    vmas: list[VmaHint] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        parts = line.split()
        if len(parts) >= 5 and _MAPS_PERMS.match(parts[1]):
            raise HintError(
                f"{where}: this is a /proc/PID/maps line (offsets in bytes): pass the file "
                "with --maps, which reads maps and smaps as the kernel prints them"
            )
        if len(parts) != 3 or "-" not in parts[0]:
            raise HintError(f"{where}: expected 'START-END FLAGS PGOFF', got {raw.strip()!r}")
        a, b = parts[0].split("-", 1)
        start = _int(a, where, hex_default=True)
        end = _int(b, where, hex_default=True)
        if end <= start:
            raise HintError(f"{where}: end {end:#x} is not above start {start:#x}")
        if start % page or end % page:
            raise HintError(
                f"{where}: {start:#x}-{end:#x} is not aligned to the {page}-byte page "
                "(START and END are byte addresses of page boundaries)"
            )
        try:
            flags = parse_vm_flags(parts[1])
        except HintError as exc:
            raise HintError(f"{where}: {exc}") from None
        text_pgoff = parts[2]
        pgoff = _int(text_pgoff, where, hex_default=True)
        digits = text_pgoff[2:] if text_pgoff.lower().startswith("0x") else text_pgoff
        if pgoff and pgoff % page == 0 and len(digits) >= 8 and digits.startswith("0"):
            raise HintError(
                f"{where}: pgoff {text_pgoff} looks like the byte offset /proc/PID/maps "
                f"prints; --vmas wants vm_pgoff in pages ({pgoff >> page_shift:#x} here), or "
                "pass the maps file itself with --maps"
            )
        vmas.append(VmaHint(start, end, flags, pgoff))
    return vmas


def read_vmas_file(path: str | os.PathLike[str], page_shift: int = 12) -> list[VmaHint]:
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise HintError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HintError(f"{name}: cannot read the vma file: {exc}") from None
    vmas = parse_vmas(text, name, page_shift)
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
