"""Collect the page-table frames that QEMU's ``info tlb`` and ``info mem`` read.

This walker is deliberately independent of pfnmap's decoder: it follows exactly the reads of
QEMU's ``target/i386/monitor.c`` (``tlb_info_32``, ``tlb_info_pae32``, ``tlb_info_la48``,
``tlb_info_la57`` and their ``mem_info_*`` twins) and remembers which frames they touch. It
never interprets leaf entries, so whatever the decoder makes of them is checked against QEMU
and not against a second copy of the same reading.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

PG_PRESENT = 1 << 0
PG_PSE = 1 << 7
#: QEMU masks table addresses with 0x3fffffffff000 (50 bits) in every 64-bit-entry mode
ADDR_MASK_64 = 0x3FFFFFFFFF000

Reader = Callable[[int, int], bytes]


def _u64s(read: Reader, frame: int) -> tuple[int, ...]:
    return struct.unpack("<512Q", read(frame, 4096))


def _u32s(read: Reader, frame: int) -> tuple[int, ...]:
    return struct.unpack("<1024I", read(frame, 4096))


def walk_frames(mode: str, cr3: int, cr4_pse: bool, read: Reader) -> list[int]:
    """The frame addresses (4 KiB aligned) that QEMU reads for ``info tlb`` in ``mode``.

    ``mode`` is pfnmap's arch name: ``x86-2level``, ``x86-pae``, ``x86-64`` or ``x86-la57``.
    ``read(addr, size)`` reads guest-physical memory.
    """
    frames: set[int] = set()

    def table64(addr: int, levels: int) -> None:
        """A 512-entry table with ``levels`` levels below it (0 = last level)."""
        frames.add(addr)
        if levels == 0:
            return
        for entry in _u64s(read, addr):
            if not entry & PG_PRESENT:
                continue
            # PS in a PML5E/PML4E is reserved; QEMU only honours it in PDPTEs and PDEs.
            if levels <= 2 and entry & PG_PSE:
                continue
            table64(entry & ADDR_MASK_64, levels - 1)

    if mode == "x86-64":
        table64(cr3 & ADDR_MASK_64, 3)
    elif mode == "x86-la57":
        table64(cr3 & ADDR_MASK_64, 4)
    elif mode == "x86-pae":
        pdpt = cr3 & ~0x1F
        frames.add(pdpt & ~0xFFF)
        for entry in struct.unpack("<4Q", read(pdpt, 32)):
            if entry & PG_PRESENT:
                table64(entry & ADDR_MASK_64, 1)
    elif mode == "x86-2level":
        pgd = cr3 & 0xFFFFF000
        frames.add(pgd)
        for pde in _u32s(read, pgd):
            if not pde & PG_PRESENT:
                continue
            if pde & PG_PSE and cr4_pse:
                continue
            frames.add(pde & 0xFFFFF000)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return sorted(frames)


def runs(frames: list[int]) -> list[tuple[int, int]]:
    """Merge sorted 4 KiB frames into (start, length) runs of adjacent frames."""
    out: list[tuple[int, int]] = []
    for f in frames:
        if out and out[-1][0] + out[-1][1] == f:
            out[-1] = (out[-1][0], out[-1][1] + 4096)
        else:
            out.append((f, 4096))
    return out
