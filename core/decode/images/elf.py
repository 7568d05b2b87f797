"""ELF cores: PT_LOAD segments at their ``p_paddr``, PT_NOTE notes, and a writer.

QEMU's ``dump-guest-memory`` and kdump's ``/proc/vmcore`` write this kind of core: an ELF
header, PT_NOTE segments (per-CPU ``CORE``/``QEMU`` notes, ``VMCOREINFO``) and one PT_LOAD per
run of physical memory with ``p_paddr`` set (bytes a segment declares beyond ``p_filesz`` up
to ``p_memsz`` read as zeros, as the ELF rules say). The header is parsed with pyelftools;
the program header count is checked against the file before anything walks it, so a header
claiming PN_XNUM with an absurd count in section 0's ``sh_info`` ends in one line, at once.

:func:`write_elf_core` writes the same kind of core QEMU writes: an ELF header, a PT_NOTE, one
PT_LOAD per physical segment with ``p_paddr`` set and ``p_vaddr`` 0, for x86-64, i386 or sparc64
machine types in the arch's byte order.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.decode.images.base import DumpFacts, ImageError, PhysImage, Segment, map_file
from pfnmap.decode.images.notes import elf_note, parse_notes, vmcoreinfo_from_notes

if TYPE_CHECKING:
    from pfnmap.arch import Arch

# ELF constants (the ELF gABI; machine numbers from elf.h)
ELF_MAGIC = b"\x7fELF"
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
PN_XNUM = 0xFFFF
EM_NONE = 0

#: the size of one program header, by ELF class in bits (pyelftools' ``elfclass``)
_PHENTSIZE = {32: 32, 64: 56}
#: note segments larger than this are not read (real ones hold a few KiB per CPU)
MAX_NOTES = 64 << 20

#: file offsets of segment data are aligned to this (so a segment starts on a host page)
SEGMENT_ALIGN = 4096
WRITE_CHUNK = 16 << 20


def sniff_elf(head: bytes) -> str | None:
    if head[:4] != ELF_MAGIC:
        return None
    cls = {ELFCLASS32: "ELF32", ELFCLASS64: "ELF64"}.get(head[4] if len(head) > 4 else 0, "ELF")
    order = {ELFDATA2LSB: "little-endian", ELFDATA2MSB: "big-endian"}.get(
        head[5] if len(head) > 5 else 0, "unknown byte order"
    )
    return f"{cls} file, {order}"


def open_elf(path: str | os.PathLike[str]) -> PhysImage:
    """An ELF core (ET_CORE) with PT_LOAD segments at their ``p_paddr``."""
    f, mapping, size = map_file(path)
    name = os.fspath(path)
    try:
        segments, facts = _read_elf(f, mapping, name, size)
        return PhysImage(
            segments,
            mapping,
            name,
            "elf",
            elf_machine=facts.elf_machine,
            elf_byteorder=facts.byteorder,
            owner=f,
            facts=facts,
        )
    except ImageError:
        mapping.close()
        f.close()
        raise


def _read_elf(f: Any, mapping: Any, name: str, size: int) -> tuple[list[Segment], DumpFacts]:
    from elftools.elf.elffile import ELFFile

    if mapping[:4] != ELF_MAGIC:
        raise ImageError(f"{name}: not an ELF file")
    f.seek(0)
    try:
        elf = ELFFile(f)
        header = elf.header
        e_type = header["e_type"]
        e_machine = header["e_machine"]
        phnum = _program_header_count(elf, f, name, size)
        phdrs = [elf.get_segment(i).header for i in range(phnum)]
    except ImageError:
        raise
    except Exception as exc:  # pyelftools raises many types on a damaged header
        raise ImageError(f"{name}: damaged ELF header: {type(exc).__name__}: {exc}") from None
    if e_type != "ET_CORE":
        raise ImageError(
            f"{name}: an ELF file of type {e_type}, not a core (ET_CORE); decode wants a "
            "physical memory dump such as QEMU's dump-guest-memory or kdump's vmcore"
        )
    loads = [h for h in phdrs if h["p_type"] == "PT_LOAD"]
    if not loads:
        raise ImageError(f"{name}: the core has no PT_LOAD segment, so no memory")
    if len(loads) > 1 and all(h["p_paddr"] == 0 for h in loads):
        raise ImageError(
            f"{name}: every PT_LOAD has p_paddr 0: this looks like a process core (virtual "
            "addresses only), not a physical memory dump"
        )
    segments = []
    for i, h in enumerate(loads):
        off, filesz, memsz = h["p_offset"], h["p_filesz"], h["p_memsz"]
        if filesz > memsz:
            raise ImageError(
                f"{name}: PT_LOAD {i} at {h['p_paddr']:#x} has p_filesz {filesz:#x} larger "
                f"than p_memsz {memsz:#x}"
            )
        available = max(0, min(filesz, size - off)) if off < size else 0
        segments.append(Segment(h["p_paddr"], memsz, off, filesz, available, name=f"PT_LOAD {i}"))
    machine = e_machine if isinstance(e_machine, int) else _em_number(e_machine)
    byteorder = "little" if elf.little_endian else "big"
    facts = DumpFacts(
        format=f"ELF core ({'ELF64' if elf.elfclass == 64 else 'ELF32'}, {byteorder}-endian, "
        f"{em_name(machine)})",
        byteorder=byteorder,
        word_bits=elf.elfclass,
        elf_machine=machine,
    )
    facts.header = {"e_machine": em_name(machine), "elf_class": elf.elfclass, "phnum": phnum}
    for h in phdrs:
        if h["p_type"] != "PT_NOTE":
            continue
        off, filesz = h["p_offset"], h["p_filesz"]
        if off >= size or filesz > MAX_NOTES:
            facts.warnings.append(f"PT_NOTE at file offset {off:#x} ({filesz:#x} bytes) not read")
            continue
        if off + filesz > size:
            facts.warnings.append(f"PT_NOTE at file offset {off:#x} is cut off by the end of file")
        notes, problem = parse_notes(mapping[off : min(size, off + filesz)], byteorder, off)
        facts.notes += notes
        if problem:
            facts.warnings.append(problem)
    facts.vmcoreinfo = vmcoreinfo_from_notes(facts.notes)
    return segments, facts


def _program_header_count(elf: Any, f: Any, name: str, size: int) -> int:
    """e_phnum, or with PN_XNUM section 0's sh_info, refused unless the table fits the file."""
    header = elf.header
    phnum = header["e_phnum"]
    source = "e_phnum"
    if phnum == PN_XNUM:
        if header["e_shoff"] == 0 or header["e_shoff"] >= size:
            raise ImageError(
                f"{name}: e_phnum is PN_XNUM but there is no section header 0 to hold the count"
            )
        # sh_info of section header 0, read here: Elf64_Shdr has it at 44, Elf32_Shdr at 28
        at = header["e_shoff"] + (44 if elf.elfclass == 64 else 28)
        if at + 4 > size:
            raise ImageError(f"{name}: e_phnum is PN_XNUM but section header 0 is cut off")
        f.seek(at)
        phnum = int.from_bytes(f.read(4), "little" if elf.little_endian else "big")
        source = "section 0's sh_info (e_phnum is PN_XNUM)"
    if phnum == 0:
        return 0
    want = _PHENTSIZE.get(elf.elfclass, 0)
    if header["e_phentsize"] != want:
        raise ImageError(
            f"{name}: e_phentsize is {header['e_phentsize']}, not the {want} bytes of an "
            f"ELF{elf.elfclass} program header"
        )
    end = header["e_phoff"] + phnum * want
    if end > size:
        raise ImageError(
            f"{name}: {source} says {phnum} program headers, but the file ends at {size:#x}, "
            f"before the table would ({end:#x})"
        )
    return phnum


def _em_number(name: str) -> int:
    """e_machine's number from pyelftools' name for it ("EM_X86_64" -> 62), -1 if unknown."""
    from elftools.elf.enums import ENUM_E_MACHINE

    value = ENUM_E_MACHINE.get(name, -1)
    return value if isinstance(value, int) else -1


def em_name(e_machine: int) -> str:
    """ELF's name for an e_machine number (62 -> "EM_X86_64"), as pyelftools knows them."""
    from elftools.elf.enums import ENUM_E_MACHINE

    for name, value in ENUM_E_MACHINE.items():
        if value == e_machine and name != "_default_":
            return name
    return f"machine {e_machine}"


def check_elf_arch(image: PhysImage, arch: Arch, known: Iterable[Arch] = ()) -> None:
    """Refuse an ELF core whose machine type or byte order does not fit ``arch``
    (:attr:`Arch.elf_machine`); ``known`` are the arches to suggest instead."""
    if image.kind != "elf":
        return
    if image.elf_byteorder and image.elf_byteorder != arch.byteorder:
        raise ImageError(
            f"{image.name} is a {image.elf_byteorder}-endian core but {arch.name} is "
            f"{arch.byteorder}-endian: wrong --arch?"
        )
    if not arch.elf_machine or image.elf_machine == arch.elf_machine:
        return
    fits = [a.name for a in known if a.elf_machine and a.elf_machine == image.elf_machine]
    have = em_name(image.elf_machine or 0)
    hint = f" (use --arch {' or '.join(fits)})" if fits else ""
    raise ImageError(
        f"{image.name} is an {have} core, not one of {arch.name} "
        f"({em_name(arch.elf_machine)}): wrong --arch?{hint}"
    )


# writing ELF cores ------------------------------------------------------------------------------
def write_elf_core(
    path: str | os.PathLike[str],
    segments: Iterable[tuple[int, Any]],
    arch: str | Arch = DEFAULT_ARCH,
    *,
    notes: Iterable[tuple[str, int, bytes]] = (),
    elfclass: int | None = None,
) -> int:
    """Write an ELF core of physical memory; returns the file size.

    ``segments`` are ``(physical address, bytes-like)`` pairs (bytes, bytearray, memoryview,
    mmap, numpy arrays); each becomes a PT_LOAD with ``p_paddr`` set, ``p_vaddr`` 0 and
    ``p_filesz == p_memsz``, as QEMU's ``dump-guest-memory`` without paging writes them.
    ``arch`` (an :class:`Arch` or a registered arch's name) gives e_machine, the byte order
    and the default ELF class (:attr:`Arch.elf_machine`, EM_NONE where it has none). ``elfclass``
    defaults to the arch's, and an i386 core with memory above 4 GiB becomes ELFCLASS64 as QEMU
    makes it. ``notes`` are ``(name, type, descriptor)`` for the PT_NOTE (always present, possibly
    empty). Overlapping segments are refused (ValueError). The data is streamed, never copied whole.
    """
    if isinstance(arch, str):
        from pfnmap.plugins.manager import get_arch

        arch = get_arch(arch)
    e_machine, default_class, byteorder = arch.elf_machine, arch.elf_class, arch.byteorder
    segs = sorted(((int(p), memoryview(d).cast("B")) for p, d in segments), key=lambda s: s[0])
    for (pa, da), (pb, _) in itertools.pairwise(segs):
        if pb < pa + len(da):
            raise ValueError(f"segments at {pa:#x} and {pb:#x} overlap")
    if any(p < 0 for p, _ in segs):
        raise ValueError("a segment has a negative physical address")
    top = max((p + len(d) for p, d in segs), default=0)
    cls = elfclass or default_class
    if elfclass is None and cls == ELFCLASS32 and top > 1 << 32:
        cls = ELFCLASS64
    if cls == ELFCLASS32 and top > 1 << 32:
        raise ValueError(f"memory up to {top:#x} does not fit an ELFCLASS32 core")
    end = "<" if byteorder == "little" else ">"
    note_data = b"".join(elf_note(n, t, d, byteorder) for n, t, d in notes)
    if cls == ELFCLASS64:
        ehsize, phentsize = 64, 56
    else:
        ehsize, phentsize = 52, 32
    phnum = 1 + len(segs)
    note_off = ehsize + phnum * phentsize
    offsets = []
    pos = note_off + len(note_data)
    for _, data in segs:
        pos = -(-pos // SEGMENT_ALIGN) * SEGMENT_ALIGN
        offsets.append(pos)
        pos += len(data)
    ident = (
        ELF_MAGIC
        + bytes([cls, ELFDATA2LSB if byteorder == "little" else ELFDATA2MSB, 1, 0])
        + bytes(8)
    )
    if cls == ELFCLASS64:
        ehdr = ident + struct.pack(
            f"{end}HHIQQQIHHHHHH",
            ET_CORE, e_machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 64, 0, 0,
        )  # fmt: skip

        def phdr(p_type, flags, off, paddr, size) -> bytes:
            return struct.pack(f"{end}IIQQQQQQ", p_type, flags, off, 0, paddr, size, size, 0)
    else:
        ehdr = ident + struct.pack(
            f"{end}HHIIIIIHHHHHH",
            ET_CORE, e_machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 40, 0, 0,
        )  # fmt: skip

        def phdr(p_type, flags, off, paddr, size) -> bytes:
            return struct.pack(f"{end}IIIIIIII", p_type, off, 0, paddr, size, size, flags, 0)

    headers = [ehdr, phdr(PT_NOTE, 0, note_off, 0, len(note_data))]
    headers += [
        phdr(PT_LOAD, PF_R | PF_W | PF_X, off, paddr, len(data))
        for off, (paddr, data) in zip(offsets, segs, strict=True)
    ]
    with open(path, "wb") as f:
        for h in headers:
            f.write(h)
        f.write(note_data)
        for off, (_, data) in zip(offsets, segs, strict=True):
            f.write(bytes(off - f.tell()))
            for i in range(0, len(data), WRITE_CHUNK):
                f.write(data[i : i + WRITE_CHUNK])
        return f.tell()


__all__ = [
    "check_elf_arch",
    "elf_note",
    "em_name",
    "open_elf",
    "sniff_elf",
    "write_elf_core",
]
