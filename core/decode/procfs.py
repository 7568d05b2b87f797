"""Hints in the kernel's own words: /proc/PID/maps, /proc/PID/smaps and /proc/iomem as printed.

``pfnmap decode --maps FILE`` reads what ``cat /proc/PID/maps`` or ``cat /proc/PID/smaps``
printed in the guest (fs/proc/task_mmu.c, show_map_vma and show_smap):

``START-END PERMS OFFSET MAJ:MIN INODE [NAME]``
    START and END are byte addresses (hexadecimal, page-aligned), OFFSET is ``vm_pgoff <<
    PAGE_SHIFT``: bytes, converted here to pages. PERMS is ``r``/``w``/``x`` for VM_READ,
    VM_WRITE, VM_EXEC and ``s`` (VM_MAYSHARE) or ``p``.
``VmFlags: rd wr mr mw me ac ...``
    (smaps only) every vm_flags bit by its two-letter mnemonic (show_smap_vma_flags): the
    exact flags, VM_PFNMAP (``pf``), VM_IO (``io``), VM_MIXEDMAP (``mm``) included. A mnemonic
    of a later kernel that pfnmap does not know is noted and skipped.

Without a VmFlags line the flags come from PERMS, plus what do_mmap always sets (a private
mapping has VM_MAYREAD|VM_MAYWRITE|VM_MAYEXEC, a shared one VM_MAYSHARE, and VM_SHARED when
writable), plus the flags that are certain from the path: ``/dev/mem`` (mmap_mem calls
remap_pfn_range) and a PCI BAR's sysfs ``resourceN`` file (pci_mmap_resource_range calls
io_remap_pfn_range) get the era's remap_pfn_range flags. Every such inference is returned as a
note, so the CLI can print it. [vvar] and driver mappings are not guessed: give smaps.

``--ram`` takes /proc/iomem's text too (:func:`parse_iomem`): the top-level ``System RAM``
lines, inclusive ranges as the kernel prints them.

Every reader checks the whole text before returning anything: a foreign or truncated line, a
range that is reversed, unaligned or overlaps another, a number beyond 64 bits is one
:class:`~pfnmap.decode.hints.HintError` naming the file and line, and nothing is half-applied.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

from pfnmap.decode.hints import HintError, Hints, VmaHint
from pfnmap.kernel.constants import (
    VM_ACCOUNT,
    VM_ARCH_1,
    VM_DENYWRITE,
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_DONTEXPAND,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGEPAGE,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_LOCKONFAULT,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_MERGEABLE,
    VM_MIXEDMAP,
    VM_NOHUGEPAGE,
    VM_NONLINEAR,
    VM_NORESERVE,
    VM_PFNMAP,
    VM_RAND_READ,
    VM_READ,
    VM_SEQ_READ,
    VM_SHARED,
    VM_SOFTDIRTY,
    VM_SYNC,
    VM_UFFD_MISSING,
    VM_UFFD_WP,
    VM_WIPEONFORK,
    VM_WRITE,
)
from pfnmap.kernel.rules import KernelRules

#: show_smap_vma_flags()'s mnemonics (fs/proc/task_mmu.c, 6.1; "dw" and "nl" from the kernels
#: before 5.15 and 4.0 that still had VM_DENYWRITE and VM_NONLINEAR)
SMAPS_MNEMONICS: dict[str, int] = {
    "rd": VM_READ,
    "wr": VM_WRITE,
    "ex": VM_EXEC,
    "sh": VM_SHARED,
    "mr": VM_MAYREAD,
    "mw": VM_MAYWRITE,
    "me": VM_MAYEXEC,
    "ms": VM_MAYSHARE,
    "gd": VM_GROWSDOWN,
    "pf": VM_PFNMAP,
    "dw": VM_DENYWRITE,
    "lo": VM_LOCKED,
    "io": VM_IO,
    "sr": VM_SEQ_READ,
    "rr": VM_RAND_READ,
    "dc": VM_DONTCOPY,
    "de": VM_DONTEXPAND,
    "lf": VM_LOCKONFAULT,
    "ac": VM_ACCOUNT,
    "nr": VM_NORESERVE,
    "ht": VM_HUGETLB,
    "sf": VM_SYNC,
    "nl": VM_NONLINEAR,
    "ar": VM_ARCH_1,
    "wf": VM_WIPEONFORK,
    "dd": VM_DONTDUMP,
    "sd": VM_SOFTDIRTY,
    "mm": VM_MIXEDMAP,
    "hg": VM_HUGEPAGE,
    "nh": VM_NOHUGEPAGE,
    "mg": VM_MERGEABLE,
    "um": VM_UFFD_MISSING,
    "uw": VM_UFFD_WP,
}

_U64 = (1 << 64) - 1
#: a show_map_vma() line: start-end perms offset maj:min inode, then the name (may be empty,
#: may hold spaces)
_MAPS_LINE = re.compile(
    r"^(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+)\s+(?P<perms>[r-][w-][x-][sp])\s+"
    r"(?P<offset>[0-9a-fA-F]+)\s+(?P<dev>[0-9a-fA-F]+:[0-9a-fA-F]+)\s+(?P<inode>\d+)"
    r"(?:\s+(?P<name>.*?))?\s*$"
)
#: an smaps field line ("Rss:    4 kB", "VmFlags: rd mr", "THPeligible:    0")
_SMAPS_FIELD = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?:\s+(?P<value>.*?))?\s*$")
#: sysfs PCI BAR files: /sys/devices/pci0000:00/0000:00:02.0/resource0 (and resource0_wc)
_PCI_RESOURCE = re.compile(r"^/sys/devices/pci[^ ]*/resource\d+(?:_wc)?$")


@dataclass(frozen=True)
class MapsVma:
    """One vma read from maps/smaps, with where it came from and how its flags were found."""

    vma: VmaHint
    name: str
    lineno: int
    #: "smaps" (a VmFlags line gave every flag) or "maps" (PERMS and, see notes, the path)
    source: str


@dataclass(frozen=True)
class MapsFile:
    """What :func:`parse_maps` read: the vmas in address order and the notes for people
    (inferences and skipped mnemonics)."""

    vmas: list[MapsVma]
    notes: list[str]

    def hints(self) -> list[VmaHint]:
        return [v.vma for v in self.vmas]


def _hex(text: str, where: str, what: str) -> int:
    value = int(text, 16)
    if value > _U64:
        raise HintError(f"{where}: {what} {text} does not fit in 64 bits")
    return value


def _perm_flags(perms: str) -> int:
    flags = 0
    if perms[0] == "r":
        flags |= VM_READ
    if perms[1] == "w":
        flags |= VM_WRITE
    if perms[2] == "x":
        flags |= VM_EXEC
    if perms[3] == "s":
        flags |= VM_MAYSHARE | (VM_SHARED if perms[1] == "w" else 0)
    else:  # do_mmap(): a private mapping may always be made writable (COW)
        flags |= VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    return flags


def _path_flags(name: str, rules: KernelRules) -> tuple[int, str] | None:
    """Flags certain from the mapped file alone, with why."""
    if name == "/dev/mem":
        return rules.remap_vm_flags, "mmap_mem() maps it with remap_pfn_range()"
    if _PCI_RESOURCE.match(name):
        return rules.remap_vm_flags, "a PCI BAR: pci_mmap_resource_range() io_remap_pfn_range()s it"
    return None


def parse_maps(
    text: str,
    page_shift: int,
    rules: KernelRules,
    source: str = "maps",
) -> MapsFile:
    """The vmas of /proc/PID/maps or /proc/PID/smaps text (format in the module docstring).

    ``page_shift`` converts the byte offsets to vm_pgoff; ``rules`` names the era whose
    remap_pfn_range flags a /dev/mem or PCI BAR mapping gets without smaps. HintError, with
    ``source:LINE``, for anything that is not what the kernel prints.
    """
    page = 1 << page_shift
    out: list[MapsVma] = []
    notes: list[str] = []
    cur: dict | None = None

    def close() -> None:
        nonlocal cur
        if cur is None:
            return
        where = f"{source}:{cur['lineno']}"
        flags = cur["flags"]
        how = "maps"
        if cur["vmflags"] is not None:
            vmflags, vmline = cur["vmflags"]
            want = flags & (VM_READ | VM_WRITE | VM_EXEC)
            if vmflags & (VM_READ | VM_WRITE | VM_EXEC) != want:
                raise HintError(
                    f"{source}:{vmline}: VmFlags disagree with the permissions "
                    f"{cur['perms']!r} of line {cur['lineno']}"
                )
            flags, how = vmflags, "smaps"
        else:
            inferred = _path_flags(cur["name"], rules)
            if inferred is not None:
                extra, why = inferred
                flags |= extra
                names = "|".join(rules.flag_names(extra))
                notes.append(f"{where}: {cur['name']}: {names} from the path ({why})")
        vma = VmaHint(cur["start"], cur["end"], flags, cur["pgoff"])
        out.append(MapsVma(vma, cur["name"], cur["lineno"], how))
        cur = None

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        m = _MAPS_LINE.match(line)
        if m is not None:
            close()
            start = _hex(m["start"], where, "start")
            end = _hex(m["end"], where, "end")
            offset = _hex(m["offset"], where, "offset")
            if end <= start:
                raise HintError(f"{where}: end {end:#x} is not above start {start:#x}")
            if start % page or end % page:
                raise HintError(
                    f"{where}: {start:#x}-{end:#x} is not aligned to the {page}-byte page "
                    "(maps prints page-aligned byte addresses)"
                )
            if offset % page:
                raise HintError(
                    f"{where}: offset {offset:#x} is not a multiple of the {page}-byte page "
                    "(maps prints vm_pgoff << PAGE_SHIFT, in bytes)"
                )
            cur = {
                "lineno": lineno,
                "start": start,
                "end": end,
                "perms": m["perms"],
                "flags": _perm_flags(m["perms"]),
                "pgoff": offset >> page_shift,
                "name": m["name"] or "",
                "vmflags": None,
            }
            continue
        f = _SMAPS_FIELD.match(line)
        if f is None or cur is None:
            what = "before any vma line" if f is not None else "not a maps or smaps line"
            raise HintError(f"{where}: {what}: {line.strip()[:80]!r}")
        if f["key"] == "VmFlags":
            if cur["vmflags"] is not None:
                raise HintError(
                    f"{where}: a second VmFlags line for the vma of line {cur['lineno']}"
                )
            flags = 0
            for mnemonic in (f["value"] or "").split():
                bit = SMAPS_MNEMONICS.get(mnemonic)
                if bit is None:
                    if not re.fullmatch(r"[a-z0-9]{2}", mnemonic):
                        raise HintError(f"{where}: {mnemonic!r} is not a VmFlags mnemonic")
                    notes.append(f"{where}: VmFlags {mnemonic!r} is not known to pfnmap: skipped")
                    continue
                flags |= bit
            cur["vmflags"] = (flags, lineno)
    close()
    out.sort(key=lambda v: v.vma.start)
    for a, b in itertools.pairwise(out):
        if b.vma.start < a.vma.end:
            raise HintError(
                f"{source}:{b.lineno}: {b.vma.start:#x}-{b.vma.end:#x} overlaps "
                f"{a.vma.start:#x}-{a.vma.end:#x} of line {a.lineno}"
            )
    return MapsFile(out, notes)


def read_maps_file(path: str | os.PathLike[str], page_shift: int, rules: KernelRules) -> MapsFile:
    """:func:`parse_maps` of a file (HintError when it cannot be read)."""
    name = os.fspath(path)
    text = _read(name, "maps file")
    maps = parse_maps(text, page_shift, rules, name)
    Hints(None, maps.hints())  # the overlap check once more, as every vma list gets
    return maps


def _read(name: str, what: str) -> str:
    try:
        with open(name, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise HintError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HintError(f"{name}: cannot read the {what}: {exc}") from None


#: an /proc/iomem line: "START-END : NAME", nested ones indented by two spaces per level
_IOMEM_LINE = re.compile(
    r"^(?P<indent> *)(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+) : (?P<name>.*)$"
)


def parse_iomem(text: str, source: str = "iomem") -> list[tuple[int, int]]:
    """The physical RAM ranges of /proc/iomem text: the top-level ``System RAM`` lines, as
    ``(start, end)`` with ``end`` exclusive (the kernel prints inclusive ends). A root's
    /proc/iomem has the addresses; a non-root reader sees zeros, which is refused."""
    ram: list[tuple[int, int]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{source}:{lineno}"
        m = _IOMEM_LINE.match(raw.rstrip())
        if m is None:
            raise HintError(f"{where}: not an /proc/iomem line: {raw.strip()[:80]!r}")
        if m["indent"] or m["name"].strip() != "System RAM":
            continue
        start = _hex(m["start"], where, "start")
        end = _hex(m["end"], where, "end")
        if end < start:
            raise HintError(f"{where}: end {end:#x} is below start {start:#x}")
        if start == end == 0:
            raise HintError(f"{where}: the addresses are zero: read /proc/iomem as root")
        ram.append((start, end + 1))
    if not ram:
        raise HintError(f"{source}: no top-level 'System RAM' line")
    ram.sort()
    for (a0, a1), (b0, b1) in itertools.pairwise(ram):
        if b0 < a1:
            raise HintError(
                f"{source}: System RAM {a0:#x}-{a1 - 1:#x} and {b0:#x}-{b1 - 1:#x} overlap"
            )
    return ram


def read_iomem_file(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    name = os.fspath(path)
    return parse_iomem(_read(name, "iomem file"), name)
