"""ELF notes in dumps: the QEMU CPU note, VMCOREINFO, pfnmap's own note.

Notes come from an ELF core's PT_NOTE segments or from a kdump file's note area
(``offset_note``/``size_note`` of the sub header, header version 4 and later), in the same
layout: ``namesz``, ``descsz``, ``type`` (4 bytes each, also in ELF64), the name and the
descriptor each padded to 4 bytes, in the dumped machine's byte order.

- ``QEMU`` (type 0), one per vCPU, is QEMU's ``QEMUCPUState`` (target/i386/arch_dump.c,
  version 1): version, size, 16 general registers, rip, rflags, ten segment descriptors
  (selector, limit, flags, pad, base) and ``cr[0..4]``; newer QEMUs append fields and say so in
  ``size``. QEMU writes it for x86 guests, little-endian. It holds no EFER.
- ``VMCOREINFO`` (type 0) is the kernel's ``KEY=value`` text (crash_core.c / vmcore_info.c);
  a kdump file also carries it on its own (``offset_vmcoreinfo``).
- ``PFNMAP`` (type 0x5046) is the JSON ``pfnmap dump`` adds: arch and each process's root.

Parsing never raises on damaged notes: it stops at the first bad size and says where.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

QEMU_NOTE = "QEMU"
VMCOREINFO_NOTE = "VMCOREINFO"
PFNMAP_NOTE = "PFNMAP"
NT_PFNMAP_DUMP = 0x5046
#: QEMUCPUState up to and including cr[0..4]: 8 + 18*8 + 10*24 + 5*8
QEMU_CPU_STATE_MIN = 432
_QEMU_GPRS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)  # fmt: skip
_QEMU_SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt")
#: VMCOREINFO text beyond this is not read (real ones are a few KiB)
MAX_VMCOREINFO = 1 << 20


@dataclass(frozen=True)
class Note:
    name: str
    type: int
    desc: bytes
    offset: int = 0


@dataclass(frozen=True)
class CpuState:
    """One dumped CPU's registers (``cr0``..``cr4`` and the general ones, lower-case), where
    they came from, and the word width the dump recorded that CPU at."""

    index: int
    registers: dict[str, int]
    source: str


def parse_notes(blob: bytes, byteorder: str = "little", base: int = 0) -> tuple[list[Note], str]:
    """The notes in ``blob``; returns (notes, problem) where problem is "" or one line saying
    where the notes stop making sense (the notes before it are kept)."""
    end = "<" if byteorder == "little" else ">"
    notes: list[Note] = []
    pos = 0
    n = len(blob)
    while pos + 12 <= n:
        namesz, descsz, ntype = struct.unpack_from(f"{end}III", blob, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break  # zero padding after the last note
        name_end = pos + 12 + namesz
        desc_start = pos + 12 + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if name_end > n or desc_end > n:
            return notes, (
                f"note at offset {base + pos:#x} declares a {namesz}-byte name and a "
                f"{descsz}-byte descriptor, past the end of the {n}-byte note area"
            )
        name = blob[pos + 12 : name_end].rstrip(b"\0").decode("ascii", "replace")
        notes.append(Note(name, ntype, bytes(blob[desc_start:desc_end]), base + pos))
        pos = desc_start + ((descsz + 3) & ~3)
    return notes, ""


def qemu_cpu_states(notes: list[Note]) -> tuple[list[CpuState], list[str]]:
    """The QEMU CPU notes, in order (CPU 0 first); returns (states, problems)."""
    states: list[CpuState] = []
    problems: list[str] = []
    for note in notes:
        if note.name != QEMU_NOTE or note.type != 0:
            continue
        d = note.desc
        if len(d) < QEMU_CPU_STATE_MIN:
            problems.append(f"QEMU CPU note at {note.offset:#x} is {len(d)} bytes, too short")
            continue
        version, size = struct.unpack_from("<II", d, 0)
        if version != 1 or size < QEMU_CPU_STATE_MIN or size > len(d):
            problems.append(
                f"QEMU CPU note at {note.offset:#x}: version {version}, size {size}: not a "
                "QEMUCPUState this reader knows"
            )
            continue
        regs = dict(zip(_QEMU_GPRS, struct.unpack_from("<18Q", d, 8), strict=True))
        pos = 8 + 18 * 8
        for seg in _QEMU_SEGMENTS:
            selector, limit, flags, _pad, seg_base = struct.unpack_from("<IIIIQ", d, pos)
            regs[f"{seg}_selector"], regs[f"{seg}_limit"] = selector, limit
            regs[f"{seg}_flags"], regs[f"{seg}_base"] = flags, seg_base
            pos += 24
        for i, value in enumerate(struct.unpack_from("<5Q", d, pos)):
            regs[f"cr{i}"] = value
        states.append(CpuState(len(states), regs, "QEMU CPU note"))
    return states, problems


def parse_vmcoreinfo(text: bytes) -> dict[str, str]:
    """VMCOREINFO's ``KEY=value`` lines as a dict (later keys win; junk lines are skipped)."""
    info: dict[str, str] = {}
    for raw in bytes(text[:MAX_VMCOREINFO]).split(b"\n"):
        line = raw.strip(b"\0").decode("ascii", "replace").strip()
        key, sep, value = line.partition("=")
        if sep and key:
            info[key] = value
    return info


def vmcoreinfo_from_notes(notes: list[Note]) -> dict[str, str]:
    info: dict[str, str] = {}
    for note in notes:
        if note.name == VMCOREINFO_NOTE:
            info.update(parse_vmcoreinfo(note.desc))
    return info


def pfnmap_note(notes: list[Note]) -> dict[str, Any] | None:
    """The JSON of pfnmap's own note (``pfnmap dump``), or None."""
    for note in notes:
        if note.name == PFNMAP_NOTE and note.type == NT_PFNMAP_DUMP:
            try:
                value = json.loads(note.desc.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return None
            return value if isinstance(value, dict) else None
    return None


def vmcoreinfo_int(info: dict[str, str], key: str, base: int = 10) -> int | None:
    """An integer VMCOREINFO value (``SYMBOL(..)`` are hexadecimal, ``NUMBER(..)`` decimal)."""
    text = info.get(key)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def elf_note(name: str, note_type: int, desc: bytes, byteorder: str = "little") -> bytes:
    """One ELF note: namesz, descsz, type, then the NUL-terminated name and the descriptor,
    each padded to 4 bytes (the same for ELF32 and ELF64)."""
    end = "<" if byteorder == "little" else ">"
    raw_name = name.encode() + b"\0"

    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)

    return struct.pack(f"{end}III", len(raw_name), len(desc), note_type) + pad(raw_name) + pad(desc)


def qemu_cpu_note(registers: dict[str, int], size: int = QEMU_CPU_STATE_MIN) -> bytes:
    """A ``QEMU`` note's descriptor (QEMUCPUState, version 1) from ``registers`` (missing ones
    are 0): what QEMU's dump-guest-memory writes per vCPU; used by pfnmap's fixtures and tests."""
    out = bytearray(struct.pack("<II", 1, size))
    out += struct.pack("<18Q", *(registers.get(r, 0) for r in _QEMU_GPRS))
    for seg in _QEMU_SEGMENTS:
        out += struct.pack(
            "<IIIIQ",
            registers.get(f"{seg}_selector", 0),
            registers.get(f"{seg}_limit", 0),
            registers.get(f"{seg}_flags", 0),
            0,
            registers.get(f"{seg}_base", 0),
        )
    out += struct.pack("<5Q", *(registers.get(f"cr{i}", 0) for i in range(5)))
    out += bytes(size - len(out))
    return bytes(out)
