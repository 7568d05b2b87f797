"""Hints read as the kernel prints them: /proc/PID/maps, /proc/PID/smaps, /proc/iomem.

The oracle for the formats is Linux 6.1's fs/proc/task_mmu.c (show_map_vma: ``%08lx-%08lx
%c%c%c%c %08llx %02x:%02x %lu``, the offset being ``vm_pgoff << PAGE_SHIFT``; show_smap_vma_flags'
mnemonics) and kernel/resource.c (/proc/iomem's ``%0*llx-%0*llx : %s``, inclusive ends). The
maps text of the x86-64 QEMU fixture is a real Debian 6.1 guest's own /proc/self/maps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pfnmap.decode.hints import HintError, parse_vm_flags, parse_vmas
from pfnmap.decode.procfs import SMAPS_MNEMONICS, parse_iomem, parse_maps
from pfnmap.kernel.constants import (
    VM_DONTDUMP,
    VM_DONTEXPAND,
    VM_IO,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_MIXEDMAP,
    VM_PFNMAP,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    is_cow_mapping,
)
from pfnmap.kernel.rules import V2_6_26, V6_1

FIXTURE = Path(__file__).parent / "fixtures" / "qemu" / "x86-64" / "meta.json"
GUEST_MAPS = "\n".join(json.loads(FIXTURE.read_text())["guest"]["proc_maps"]) + "\n"

#: an smaps excerpt in 6.1's format: /dev/mem shared, [vvar] (VM_PFNMAP|VM_IO in 6.1), anon
SMAPS = """\
7f60d8891000-7f60d88b1000 rw-s 000a0000 00:05 3                          /dev/mem
Size:                128 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   0 kB
Pss:                   0 kB
Swap:                  0 kB
Locked:                0 kB
THPeligible:    0
VmFlags: rd wr sh mr mw me ms pf io de dd
7fff13ed3000-7fff13ed7000 r--p 00000000 00:00 0                          [vvar]
Size:                 16 kB
Rss:                   0 kB
THPeligible:    0
VmFlags: rd mr pf io de dd
7fff13ed7000-7fff13ed9000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
VmFlags: rd ex mr mw me de
7f60d8e00000-7f60d8ec5000 rw-p 00000000 00:00 0
Size:                788 kB
VmFlags: rd wr mr mw me ac sd zz
"""

IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-0ffdffff : System RAM
  01000000-01e00b36 : Kernel code
0ffe0000-0fffffff : Reserved
febc0000-febdffff : 0000:00:03.0
"""


def test_guest_maps_offsets_become_pages_and_dev_mem_is_inferred() -> None:
    """show_map_vma prints vm_pgoff << PAGE_SHIFT: /dev/mem at 0xc0000 bytes is pgoff 0xc0;
    without smaps /dev/mem gets the era's remap_pfn_range flags (mmap_mem), and says so."""
    maps = parse_maps(GUEST_MAPS, 12, V6_1, "maps")
    by_offset = {int(line.split()[2], 16): int(line.split("-")[0], 16)
                 for line in GUEST_MAPS.splitlines() if line.endswith("/dev/mem")}  # fmt: skip
    by_start = {v.vma.start: v for v in maps.vmas}
    priv = by_start[by_offset[0xC0000]]
    assert priv.name == "/dev/mem" and priv.vma.pgoff == 0xC0 and priv.source == "maps"
    remap = VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP
    assert priv.vma.flags & remap == remap and is_cow_mapping(priv.vma.flags)
    vga = by_start[by_offset[0xA0000]]
    assert vga.vma.pgoff == 0xA0 and vga.vma.flags & VM_SHARED and not is_cow_mapping(vga.vma.flags)
    heap = next(v for v in maps.vmas if v.name == "[heap]")
    assert heap.vma.flags == VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    assert next(v for v in maps.vmas if v.name == "/guest").vma.pgoff == 0
    assert [v.vma.pgoff for v in maps.vmas if v.name == "/guest"][1:] == [0x1, 0x7B, 0xA3, 0xA7]
    notes = [n for n in maps.notes if "/dev/mem" in n]
    assert len(notes) == 3 and "VM_DONTDUMP" in notes[0] and "remap_pfn_range" in notes[0]
    assert "VM_RESERVED" in parse_maps(GUEST_MAPS, 12, V2_6_26).notes[0]  # the era's flags
    assert not any("[vvar]" in n for n in maps.notes)  # not guessed


def test_smaps_vmflags_give_the_exact_flags() -> None:
    """show_smap_vma_flags: pf = VM_PFNMAP, io = VM_IO, de, dd, ...; an unknown mnemonic of a
    later kernel is skipped with a note."""
    maps = parse_maps(SMAPS, 12, V6_1, "smaps")
    dev, anon, vvar, vdso = maps.vmas  # in address order
    assert dev.source == "smaps" and dev.vma.pgoff == 0xA0
    assert dev.vma.flags == (
        VM_READ | VM_WRITE | VM_SHARED | VM_MAYREAD | VM_MAYWRITE | 0x40 | VM_MAYSHARE
        | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP
    )  # fmt: skip
    assert vvar.name == "[vvar]" and vvar.vma.flags & (VM_PFNMAP | VM_IO) == VM_PFNMAP | VM_IO
    assert not vdso.vma.flags & VM_PFNMAP
    assert anon.vma.start == 0x7F60D8E00000 and anon.vma.flags & VM_WRITE
    assert maps.notes == ["smaps:21: VmFlags 'zz' is not known to pfnmap: skipped"]
    assert SMAPS_MNEMONICS["mm"] == VM_MIXEDMAP  # "mm", not "mx"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello world\n", r"maps:1: not a maps or smaps line: 'hello world'"),
        ("7f0000000000-7f0000001000 rw-p 00000000 00:05\n", r"maps:1: not a maps or smaps"),
        ("Rss: 4 kB\n", r"maps:1: before any vma line"),
        ("1000-3000 rw-p 0 00:00 0\n2000-4000 rw-p 0 00:00 0\n", r"maps:2: .* overlaps .* line 1"),
        ("1000-1800 rw-p 0 00:00 0\n", r"not aligned to the 4096-byte page"),
        ("3000-1000 rw-p 0 00:00 0\n", r"end 0x1000 is not above start 0x3000"),
        ("1000-2000 rw-p 00000800 00:00 0\n", r"offset 0x800 is not a multiple"),
        ("1000-2000 rw-p 10000000000000000 00:00 0\n", r"does not fit in 64 bits"),
        (
            "1000-2000 rw-p 0 00:00 0\nVmFlags: rd mr mw\n",
            r"maps:2: VmFlags disagree with the permissions 'rw-p' of line 1",
        ),
        (
            "1000-2000 r--p 0 00:00 0\nVmFlags: rd\nVmFlags: rd\n",
            r"maps:3: a second VmFlags line",
        ),
        ("1000-2000 r--p 0 00:00 0\nVmFlags: rd toolong\n", r"'toolong' is not a VmFlags"),
    ],
)
def test_bad_maps_input_is_one_line_naming_the_place(text: str, message: str) -> None:
    with pytest.raises(HintError, match=message) as info:
        parse_maps(text, 12, V6_1, "maps")
    assert "\n" not in str(info.value)


def test_iomem_gives_the_top_level_system_ram() -> None:
    """kernel/resource.c prints inclusive ends; nested lines (Kernel code) are not RAM ranges
    of their own, and a non-root reader's zeros are refused."""
    assert parse_iomem(IOMEM) == [(0x1000, 0x9FC00), (0x100000, 0xFFE0000)]
    with pytest.raises(HintError, match="as root"):
        parse_iomem("00000000-00000000 : System RAM\n")
    with pytest.raises(HintError, match="iomem:2: not an /proc/iomem line"):
        parse_iomem("00001000-0009fbff : System RAM\ngarbage\n")
    with pytest.raises(HintError, match="no top-level 'System RAM'"):
        parse_iomem("00000000-00000fff : Reserved\n")


def test_vmas_format_refuses_byte_offsets_and_maps_lines() -> None:
    """--vmas wants vm_pgoff in pages: maps' zero-padded byte offset and a maps line itself are
    errors that say which unit is wanted; page-aligned addresses are required."""
    with pytest.raises(HintError, match=r"looks like the byte offset .* in pages \(0xa0 here\)"):
        parse_vmas("7f0000000000-7f0000020000 VM_IO|VM_PFNMAP 000a0000\n")
    with pytest.raises(HintError, match=r"this is a /proc/PID/maps line .* --maps"):
        parse_vmas("7f60d8879000-7f60d8881000 rw-p 000c0000 00:05 3 /dev/mem\n")
    with pytest.raises(HintError, match="not aligned to the 8192-byte page"):
        parse_vmas("1000-3000 0x0 0\n", page_shift=13)
    # pages, written as pfnmap dump writes them (a multiple of 4096 pages is fine there)
    (vma,) = parse_vmas("7f0000000000-7f0000020000 VM_IO|VM_PFNMAP|VM_DONTDUMP f0000\n")
    assert vma.pgoff == 0xF0000 and vma.flags & VM_DONTDUMP
    assert parse_vm_flags("VM_IO|0x4000000") == VM_IO | VM_DONTDUMP
