"""sparc64 (sun4u): the layouts against the 2.6.15 headers, the pte operations, I/O-space pfns,
and io_remap_pfn_range with and without David Miller's follow-ups to the seed.

The numbers are written from include/asm-sparc64/pgtable.h, page.h and processor.h of 2.6.15
(kernel-reference §6.4), not read back from the arch, so a wrong construct layout or a wrong
derivation fails here. These tests build their own sparc64 machines and run whatever ``--arch``
the session has.
"""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfnmap import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    IORegion,
    KernelBug,
    KernelError,
    Machine,
    Verdict,
)
from pfnmap.arches.sparc64 import (
    TASK_SIZE_2615,
    Sparc64,
    io_pte_values,
    io_remap_pfn_range,
)
from pfnmap.kernel.constants import VM_IO, VM_PFNMAP, VM_RESERVED
from pfnmap.kernel.memory import zap_page_range
from pfnmap.kernel.pgtable import lookup
from pfnmap.machine.invariants import InvariantError
from pfnmap.plugins.manager import get_arch
from pfnmap.testing.machines import finish

RW = PROT_READ | PROT_WRITE
K = 1 << 10
M = 1 << 20
PAGE = 8 * K

# include/asm-sparc64/pgtable.h, 2.6.15 (sun4u) -----------------------------------------------
_PAGE_VALID = 0x8000000000000000
_PAGE_R = 0x8000000000000000
_PAGE_SZ4MB = 0x6000000000000000
_PAGE_SZ512K = 0x4000000000000000
_PAGE_SZ64K = 0x2000000000000000
_PAGE_SZ8K = 0x0000000000000000
_PAGE_NFO = 0x1000000000000000
_PAGE_IE = 0x0800000000000000
_PAGE_SOFT2 = 0x07FC000000000000
_PAGE_RES1 = 0x0002000000000000
_PAGE_SZ32MB = 0x0001000000000000
_PAGE_SZ256MB = 0x2001000000000000
_PAGE_SN = 0x0000800000000000
_PAGE_RES2 = 0x0000780000000000
_PAGE_PADDR = 0x000007FFFFFFE000
_PAGE_SOFT = 0x0000000000001F80
_PAGE_L = 0x40
_PAGE_CP = 0x20
_PAGE_CV = 0x10
_PAGE_E = 0x08
_PAGE_P = 0x04
_PAGE_W = 0x02
_PAGE_G = 0x01
_PAGE_EXEC = 0x1000
_PAGE_MODIFIED = 0x800
_PAGE_FILE = 0x800
_PAGE_ACCESSED = 0x400
_PAGE_READ = 0x200
_PAGE_WRITE = 0x100
_PAGE_PRESENT = 0x080
_PAGE_CACHE = _PAGE_CP | _PAGE_CV
__DIRTY_BITS = _PAGE_MODIFIED | _PAGE_WRITE | _PAGE_W
__ACCESS_BITS = _PAGE_ACCESSED | _PAGE_READ | _PAGE_R
__PRIV_BITS = _PAGE_P
PAGE_NONE = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_CACHE
PAGE_SHARED = _PAGE_PRESENT | _PAGE_VALID | _PAGE_CACHE | __ACCESS_BITS | _PAGE_WRITE | _PAGE_EXEC
PAGE_COPY = _PAGE_PRESENT | _PAGE_VALID | _PAGE_CACHE | __ACCESS_BITS | _PAGE_EXEC
PAGE_READONLY = PAGE_COPY
PAGE_KERNEL = (
    _PAGE_PRESENT | _PAGE_VALID | _PAGE_CACHE | __PRIV_BITS | __ACCESS_BITS | __DIRTY_BITS
) | _PAGE_EXEC
PAGE_SHARED_NOEXEC = _PAGE_PRESENT | _PAGE_VALID | _PAGE_CACHE | __ACCESS_BITS | _PAGE_WRITE
PAGE_COPY_NOEXEC = _PAGE_PRESENT | _PAGE_VALID | _PAGE_CACHE | __ACCESS_BITS
PAGE_READONLY_NOEXEC = PAGE_COPY_NOEXEC
pg_iobits = _PAGE_VALID | _PAGE_PRESENT | __DIRTY_BITS | __ACCESS_BITS | _PAGE_E
PRESERVE_MASK = (
    _PAGE_PADDR | _PAGE_MODIFIED | _PAGE_ACCESSED | _PAGE_CACHE | _PAGE_E | _PAGE_PRESENT
)  # pte_modify's preserve_mask; _PAGE_SZBITS is _PAGE_SZ8K == 0
PROTECTION_MAP = [
    PAGE_NONE,  # __P000
    PAGE_READONLY_NOEXEC,  # __P001
    PAGE_COPY_NOEXEC,  # __P010
    PAGE_COPY_NOEXEC,  # __P011
    PAGE_READONLY,  # __P100
    PAGE_READONLY,  # __P101
    PAGE_COPY,  # __P110
    PAGE_COPY,  # __P111
    PAGE_NONE,  # __S000
    PAGE_READONLY_NOEXEC,  # __S001
    PAGE_SHARED_NOEXEC,  # __S010
    PAGE_SHARED_NOEXEC,  # __S011
    PAGE_READONLY,  # __S100
    PAGE_READONLY,  # __S101
    PAGE_SHARED,  # __S110
    PAGE_SHARED,  # __S111
]
HEADER_FIELDS = {
    "valid": _PAGE_VALID,
    "size": _PAGE_SZ4MB,
    "nfo": _PAGE_NFO,
    "ie": _PAGE_IE,
    "soft2": _PAGE_SOFT2,
    "res1": _PAGE_RES1,
    "sz32mb": _PAGE_SZ32MB,
    "sn": _PAGE_SN,
    "res2": _PAGE_RES2,
    "paddr": _PAGE_PADDR,
    "exec": _PAGE_EXEC,
    "modified": _PAGE_MODIFIED,
    "accessed": _PAGE_ACCESSED,
    "read": _PAGE_READ,
    "write": _PAGE_WRITE,
    "present": _PAGE_PRESENT,
    "l": _PAGE_L,
    "cp": _PAGE_CP,
    "cv": _PAGE_CV,
    "e": _PAGE_E,
    "p": _PAGE_P,
    "w": _PAGE_W,
    "g": _PAGE_G,
}
# page.h / pgtable.h / processor.h geometry
PAGE_SHIFT = 13
PMD_SHIFT = 23
PGDIR_SHIFT = 34
VA_BITS = 44
VPTE_SIZE = 1 << (VA_BITS - PAGE_SHIFT + 3)


@pytest.fixture(scope="module")
def arch() -> Sparc64:
    arch = get_arch("sparc64")
    assert isinstance(arch, Sparc64)
    return arch


def fb_machine(**options: bool) -> Machine:
    """The default sparc64 machine (fb0: 16 MiB of device memory at 0xF0000000, space 0)."""
    return Machine("sparc64", ram="64M", arch_options=options)


def add_fb(machine: Machine, region: str | IORegion = "fb0", path: str = "/dev/fb") -> str:
    machine.add_iomem_device(path, region)
    return path


def counts_snapshot(machine: Machine) -> dict[int, tuple[int, int, bool]]:
    """(count, mapcount, is a page table) of every struct page."""
    phys = machine.phys
    return {
        pfn: (phys.count[pfn], phys.mapcount[pfn], "pgtable" in phys.flag_names(pfn))
        for pfn in range(phys.nr_pages)
    }


def assert_untouched_but_tables(machine: Machine, before: dict) -> None:
    """Every struct page that is not a page table, before or now, has its old counts."""
    after = counts_snapshot(machine)
    changed = {
        pfn: (before[pfn], after[pfn])
        for pfn in before
        if not (before[pfn][2] or after[pfn][2]) and before[pfn] != after[pfn]
    }
    assert not changed


# the layouts against the header ----------------------------------------------------------------
def test_tte_fields_are_the_header_bits(arch: Sparc64) -> None:
    fields = arch.pte_format.fields
    assert set(fields) == set(HEADER_FIELDS)
    for name, mask in HEADER_FIELDS.items():
        assert fields[name].mask == mask, name
    assert arch._PAGE_SOFT == _PAGE_SOFT
    assert arch._PAGE_SZ64K == _PAGE_SZ64K and arch._PAGE_SZ512K == _PAGE_SZ512K
    assert arch._PAGE_SZ256MB == _PAGE_SZ256MB and arch._PAGE_SZ8K == _PAGE_SZ8K
    assert arch._PAGE_FILE == _PAGE_FILE == arch._PAGE_MODIFIED
    assert arch._PAGE_R == _PAGE_R == arch._PAGE_VALID


def test_tte_is_stored_big_endian(arch: Sparc64) -> None:
    fmt = arch.pte_format
    value = fmt.encode(valid=True, paddr=0x1FA00600000 >> PAGE_SHIFT, present=True, e=True)
    assert value == _PAGE_VALID | 0x1FA00600000 | _PAGE_PRESENT | _PAGE_E
    assert fmt.decode(value)["paddr"] << PAGE_SHIFT == 0x1FA00600000
    assert fmt.layout.build(fmt.decode(value)) == value.to_bytes(8, "big")
    assert arch.byteorder == "big" and arch.entry_struct_format(2) == ">Q"


def test_protections_and_pg_iobits(arch: Sparc64) -> None:
    assert pg_iobits == 0x8000000000000F8A
    assert arch.pg_iobits == pg_iobits
    assert list(arch.protection_map) == PROTECTION_MAP
    assert arch.PAGE_NONE == PAGE_NONE == 0x4B0
    assert arch.PAGE_SHARED == PAGE_SHARED == 0x80000000000017B0
    assert arch.PAGE_COPY == arch.PAGE_READONLY == PAGE_COPY
    assert arch.PAGE_KERNEL == PAGE_KERNEL
    assert arch.PAGE_SHARED_NOEXEC == PAGE_SHARED_NOEXEC
    assert arch.PAGE_COPY_NOEXEC == arch.PAGE_READONLY_NOEXEC == PAGE_COPY_NOEXEC
    # no user protection sets the hardware W bit: the first store always traps
    assert not any(p & _PAGE_W for p in arch.protection_map)
    assert not PAGE_NONE & _PAGE_VALID


def test_geometry(arch: Sparc64) -> None:
    assert arch.page_size == 8192
    assert [(lv.name, lv.shift, lv.entries, lv.entry_bytes) for lv in arch.levels] == [
        ("pgd", PGDIR_SHIFT, 2048, 4),
        ("pmd", PMD_SHIFT, 2048, 4),
        ("pte", PAGE_SHIFT, 1024, 8),
    ]
    assert all(lv.entries * lv.entry_bytes == arch.page_size for lv in arch.levels)
    assert arch.levels[0].shift + arch.levels[0].bits == 45
    assert arch.phys_bits == 43 and arch.max_pfn == (1 << 30) - 1
    assert TASK_SIZE_2615 == (1 << 64) - VPTE_SIZE == 0xFFFFFFFC00000000
    # the user range kept: everything below the Spitfire hole, nothing in it
    assert arch.task_size == 0x0000080000000000
    assert arch.va_valid(arch.task_size - 1) and not arch.va_valid(arch.task_size)
    assert arch.large_page_sizes() == []  # large TTEs live in the ptes, not in pmds


@given(st.integers(1, (1 << 30) - 1))
def test_upper_entries_hold_paddr_shifted_by_11(table_pfn: int) -> None:
    arch = get_arch("sparc64")
    paddr = table_pfn << PAGE_SHIFT  # any page of the 43-bit physical address space
    for level, name in ((0, "pgd-table"), (1, "pmd-table")):
        entry = arch.mk_table_entry(level, paddr)
        assert entry == paddr >> 11 and entry < 1 << 32
        assert arch.table_entry_paddr(level, entry) == paddr
        assert arch.table_entry_present(level, entry)
        assert not arch.table_entry_bad(level, 0xFFFFFFFF)  # pmd_bad and pud_bad are (0)
        assert not arch.table_entry_leaf(level, entry)
        assert arch.formats[name].decode(entry) == {"table_paddr_shr11": paddr >> 11}
        assert not arch.table_entry_present(level, 0)


def test_tables_in_ram_are_32_and_64_bit_big_endian() -> None:
    machine = Machine("sparc64")
    proc = machine.spawn()
    addr = proc.mmap(PAGE)
    proc.write(addr, b"x")
    pgd_step, pmd_step, pte_step = lookup(proc.mm, addr)
    ram = machine.phys.ram
    for step in (pgd_step, pmd_step):
        assert ram[step.slot : step.slot + 4] == struct.pack(">I", step.value)
        assert step.value << 11 == machine.arch.table_entry_paddr(step.level, step.value)
    assert ram[pte_step.slot : pte_step.slot + 8] == struct.pack(">Q", pte_step.value)
    assert ram[pte_step.slot] & 0x80  # bit 63, VALID, is in the first byte
    finish(machine)


# pte operations ----------------------------------------------------------------------------
def test_pte_operations_follow_the_header(arch: Sparc64) -> None:
    pte = arch.pfn_pte(0x1234, PAGE_SHARED)
    assert pte == (0x1234 << 13) | PAGE_SHARED
    assert arch.pte_pfn(pte | _PAGE_SZ4MB | _PAGE_SN | _PAGE_RES2) == 0x1234
    assert arch.pte_mkdirty(pte) == pte | _PAGE_MODIFIED | _PAGE_W
    assert arch.pte_mkclean(pte | _PAGE_MODIFIED | _PAGE_W) == pte
    assert arch.pte_wrprotect(pte | _PAGE_W) == pte & ~_PAGE_WRITE
    assert arch.pte_mkwrite(pte & ~_PAGE_WRITE) == pte  # WRITE only, never W
    assert arch.pte_mkold(pte) == pte & ~(_PAGE_ACCESSED | _PAGE_VALID)
    assert arch.pte_mkyoung(arch.pte_mkold(pte)) == pte
    assert arch.pte_present(PAGE_NONE) and not arch.pte_present(_PAGE_VALID)
    assert arch.pte_none(0) and not arch.pte_none(_PAGE_FILE)
    assert arch.pte_file(_PAGE_FILE | (5 << 13))
    assert arch.pgprot_noncached(PAGE_SHARED) == (PAGE_SHARED & ~_PAGE_CACHE) | _PAGE_E


def test_pte_modify_keeps_what_the_header_keeps(arch: Sparc64) -> None:
    io = arch.mk_pte_io(0xF0000000, pg_iobits | _PAGE_SZ4MB, 0)
    new = arch.pte_modify(io, PAGE_COPY_NOEXEC)
    assert new == (io & PRESERVE_MASK) | (PAGE_COPY_NOEXEC & ~PRESERVE_MASK)
    assert new & _PAGE_E and not new & _PAGE_CACHE  # still uncached, still side effect
    assert not new & (_PAGE_WRITE | _PAGE_W | _PAGE_SZ4MB)  # size bits are not kept


def test_mk_pte_io(arch: Sparc64) -> None:
    pte = arch.mk_pte_io(0x00600000, PAGE_SHARED, 3)
    assert pte == ((0x00600000 | PAGE_SHARED | _PAGE_E) & ~_PAGE_CACHE) | (3 << 32)
    assert arch.pte_pfn(pte) == ((3 << 32) | 0x00600000) >> 13


def test_the_sunffb_report_decodes(arch: Sparc64) -> None:
    """The two ptes of the sunffb report (§5.5): pg_iobits at PA 0x1fa00600000, after the COW
    write-protect and mkold (fork), and after the write-protect only (the parent's munmap)."""
    io = arch.mk_pte_io(0x1FA00600000, arch.pg_iobits, 0)
    assert arch.pte_mkold(arch.pte_wrprotect(io)) == 0x1FA00600A88
    assert arch.pte_wrprotect(io) == 0x800001FA00600E88


def test_the_mmu_checks_valid_p_and_w_and_sets_nothing(arch: Sparc64) -> None:
    pte = arch.pfn_pte(7, PAGE_SHARED)
    assert arch.pte_hw_access_ok(pte, write=False)
    assert not arch.pte_hw_access_ok(pte, write=True)  # clean: W clear
    assert arch.pte_hw_access_ok(arch.pte_mkdirty(pte), write=True)
    assert not arch.pte_hw_access_ok(arch.pte_mkold(pte), write=False)
    assert not arch.pte_hw_access_ok(pte | _PAGE_P, write=False)
    assert not arch.pte_hw_access_ok(PAGE_NONE | (7 << 13), write=False)
    for write in (False, True):
        assert arch.pte_hw_update(pte, write) == pte


def test_large_ttes_translate_by_their_size(arch: Sparc64) -> None:
    assert [arch.tte_size(s) for s in (0, _PAGE_SZ64K, _PAGE_SZ512K, _PAGE_SZ4MB)] == [
        8 * K,
        64 * K,
        512 * K,
        4 * M,
    ]
    assert arch.tte_size(_PAGE_SZ32MB) == 32 * M and arch.tte_size(_PAGE_SZ256MB) == 256 * M
    base = arch.mk_pte_io(0xF0400000, pg_iobits | _PAGE_SZ4MB, 0)
    va = 0x100400000
    assert arch.hw_leaf_paddr(2, base, va + 0x12345) == 0xF0412345
    small = arch.mk_pte_io(0xF0400000, pg_iobits, 0)
    assert arch.hw_leaf_paddr(2, small, va + 0x12345) == 0xF0400345


# I/O-space pfns --------------------------------------------------------------------------------
@given(st.integers(0, 15), st.integers(0, (1 << 60) - 1))
def test_mk_iospace_pfn_round_trips(space: int, pfn: int) -> None:
    arch = get_arch("sparc64")
    iopfn = arch.mk_iospace_pfn(space, pfn)
    assert iopfn == pfn | (space << 60)
    assert arch.get_iospace(iopfn) == space
    assert arch.get_pfn(iopfn) == pfn


def test_iospace_pfns_elsewhere() -> None:
    sparc = get_arch("sparc64")
    with pytest.raises(KernelError) as exc:
        sparc.mk_iospace_pfn(16, 1)
    assert exc.value.errno == errno.EINVAL
    x86 = get_arch("x86-64")
    assert x86.mk_iospace_pfn(0, 0xF0000) == 0xF0000
    assert x86.get_iospace(1 << 60) == 0 and x86.get_pfn(1 << 60) == 1 << 60
    with pytest.raises(KernelError) as exc:
        x86.mk_iospace_pfn(1, 0xF0000)
    assert exc.value.errno == errno.EINVAL


def test_ioregion_in_a_space() -> None:
    region = IORegion.in_space("sbus1", 1, 0x0100_0000, 8 * M)
    assert region.start == 0x1_0100_0000 and region.offset == 0x0100_0000 and region.space == 1
    with pytest.raises(KernelError):
        IORegion("bad", 0x1000_0000, M, space=1)  # below its space's window
    with pytest.raises(KernelError):
        IORegion.in_space("bad", 16, 0, M)


def test_an_iospace_region_is_einval_on_x86() -> None:
    region = IORegion.in_space("sbus1", 1, 0, 8 * M)
    machine = Machine("x86-64", io=[region])
    proc = machine.spawn()
    fd = proc.open(add_fb(machine, "sbus1"))
    with pytest.raises(KernelError) as exc:
        proc.mmap(64 * K, RW, MAP_SHARED, fd)
    assert exc.value.errno == errno.EINVAL
    assert not proc.vmas
    finish(machine)


def test_x86_iomem_device_is_remap_pfn_range() -> None:
    machine = Machine("x86-64")
    proc = machine.spawn()
    fd = proc.open(add_fb(machine))
    addr = proc.mmap(64 * K, RW, MAP_SHARED, fd, offset=16 * K)
    vma = proc.vmas[0]
    assert vma.vm_pgoff == (0xF0000000 + 16 * K) >> 12
    assert proc.lookup(addr).verdict is Verdict.RAW_PFN
    assert proc.read(addr, 16) == machine.phys.read(0xF0000000 + 16 * K, 16)
    finish(machine)


# the fault path keeps the referenced and modified bits ------------------------------------------
def test_faults_set_valid_and_w() -> None:
    machine = Machine("sparc64")
    arch = machine.arch
    parent = machine.spawn()
    addr = parent.mmap(PAGE)
    parent.write(addr, b"a")
    pte = parent.lookup(addr).raw
    assert pte & (_PAGE_VALID | _PAGE_W | _PAGE_MODIFIED) == _PAGE_VALID | _PAGE_W | _PAGE_MODIFIED
    child = parent.fork("child")
    assert not child.lookup(addr).raw & (_PAGE_VALID | _PAGE_ACCESSED)  # pte_mkold
    assert not parent.lookup(addr).raw & (_PAGE_W | _PAGE_WRITE)  # COW write-protect
    before = child.mm.min_flt
    assert child.read(addr, 1) == b"a"  # the old pte traps once; pte_mkyoung sets VALID
    assert child.mm.min_flt == before + 1
    assert child.lookup(addr).raw & _PAGE_VALID
    # a clean shared page: the first store traps and pte_mkdirty sets W
    fd = parent.open("/dev/zero")
    shared = parent.mmap(PAGE, RW, MAP_SHARED, fd)
    parent.read(shared, 1)
    assert not parent.lookup(shared).raw & _PAGE_W
    parent.write(shared, b"s")
    assert parent.lookup(shared).raw & (_PAGE_W | _PAGE_MODIFIED) == _PAGE_W | _PAGE_MODIFIED
    assert arch.pte_dirty(parent.lookup(shared).raw)
    finish(machine)


# io_remap_pfn_range with the follow-ups -------------------------------------------------------
RUNS = 4 * M + 512 * K + 64 * K + 8 * K  # one run of each size, in that order
RUN_STARTS = {0: _PAGE_SZ4MB, 512: _PAGE_SZ512K, 576: _PAGE_SZ64K, 584: _PAGE_SZ8K}
FB_VA = 0x1_0000_0000  # 4M aligned


def _size_of_slot(k: int) -> int:
    return [v for s, v in sorted(RUN_STARTS.items()) if s <= k][-1]


def map_runs(machine: Machine, proc, region="fb0", offset: int = 0, prot: int = RW) -> int:
    fd = proc.open(add_fb(machine, region))
    addr = proc.mmap(RUNS, prot, MAP_SHARED, fd, offset=offset, addr=FB_VA)
    assert addr == FB_VA
    return addr


def test_io_pte_values_pick_every_run_size(arch: Sparc64) -> None:
    values = io_pte_values(arch, FB_VA, RUNS, 0xF0000000, 0)
    assert len(values) == RUNS // PAGE == 585
    for k, pte in enumerate(values):
        assert pte & _PAGE_SZ4MB == _size_of_slot(k), k
        assert pte & _PAGE_PADDR == 0xF0000000 + k * PAGE, k
        assert pte & ~(_PAGE_PADDR | _PAGE_SZ4MB) == (pg_iobits & ~_PAGE_CACHE), k
    # an unaligned VA gets 8K ptes only; a 64K-aligned VA with a 4M-aligned offset gets 64K
    assert {p & _PAGE_SZ4MB for p in io_pte_values(arch, FB_VA + PAGE, 4 * M, 0, 0)} == {0}
    assert {p & _PAGE_SZ4MB for p in io_pte_values(arch, FB_VA + 64 * K, 64 * K, 0, 0)} == {
        _PAGE_SZ64K
    }
    # the kernel compares the unrounded end: 64K - 1 byte is eight 8K ptes
    short = io_pte_values(arch, FB_VA, 64 * K - 1, 0, 0)
    assert len(short) == 8 and {p & _PAGE_SZ4MB for p in short} == {0}
    # before rc4: the run's base address in every slot
    pre = io_pte_values(arch, FB_VA, RUNS, 0xF0000000, 0, rc4_fix=False)
    assert {p & _PAGE_PADDR for p in pre[:512]} == {0xF0000000}
    assert {p & _PAGE_PADDR for p in pre[512:576]} == {0xF0400000}


@given(
    va_page=st.integers(0, 4096),
    pa_page=st.integers(0, 4096),
    npages=st.integers(1, 1200),
    space=st.integers(0, 15),
)
def test_io_pte_values_are_linear_and_runs_aligned(
    va_page: int, pa_page: int, npages: int, space: int
) -> None:
    """With the rc4 fix every 8K pte's pfn is the base pfn plus its index (what vm_normal_page
    needs), and every large run is aligned, in VA and PA, to its size and stays in one pmd."""
    arch = get_arch("sparc64")
    addr = FB_VA + va_page * PAGE
    offset = pa_page * PAGE
    values = io_pte_values(arch, addr, npages * PAGE, offset, space)
    assert len(values) == npages
    base = ((space << 32) | offset) >> PAGE_SHIFT
    k = 0
    while k < npages:
        pte = values[k]
        assert arch.pte_pfn(pte) == base + k
        size = arch.tte_size(pte)
        va = addr + k * PAGE
        assert va % size == 0 and (offset + k * PAGE) % size == 0
        assert va // (8 * M) == (va + size - 1) // (8 * M)
        run = values[k : k + size // PAGE]
        assert len(run) == size // PAGE and {arch.tte_size(p) for p in run} == {size}
        k += size // PAGE


def test_followup_every_pte_is_raw_in_every_run() -> None:
    machine = fb_machine()
    assert machine.phys.io_regions[0].space == 0  # the default fb0 stays in space 0
    proc = machine.spawn("X")
    addr = map_runs(machine, proc)
    vma = proc.vmas[0]
    assert vma.vm_flags & (VM_IO | VM_RESERVED | VM_PFNMAP) == VM_IO | VM_RESERVED | VM_PFNMAP
    assert vma.vm_pgoff == 0xF0000000 >> PAGE_SHIFT
    ptes = proc.ptes(vma)
    assert len(ptes) == 585
    for k, (va, pte) in enumerate(ptes):
        assert va == addr + k * PAGE
        assert pte & _PAGE_SZ4MB == _size_of_slot(k), k
        assert pte & ~_PAGE_SZ4MB == pg_iobits | (0xF0000000 + k * PAGE), k
        info = proc.lookup(va)
        assert info.verdict is Verdict.RAW_PFN, (k, info.reason)
    for k in (0, 1, 511, 512, 575, 576, 583, 584):
        va = addr + k * PAGE + 0x123
        assert proc.read(va, 16) == machine.phys.read(0xF0000000 + k * PAGE + 0x123, 16)
    finish(machine)


def test_followup_fork_and_munmap_touch_no_struct_page() -> None:
    machine = fb_machine()
    proc = machine.spawn("X")
    start = counts_snapshot(machine)
    addr = map_runs(machine, proc, prot=RW)
    proc.write(addr + 5 * PAGE, b"through the TTE")
    before_fork = counts_snapshot(machine)
    child = proc.fork("child")
    assert_untouched_but_tables(machine, before_fork)
    # shared: the child's copy is clean (mkclean) and old (mkold)
    clean_old = ~(_PAGE_VALID | _PAGE_ACCESSED | _PAGE_MODIFIED | _PAGE_W)
    assert child.ptes(child.vmas[0])[0][1] == (pg_iobits | _PAGE_SZ4MB | 0xF0000000) & clean_old
    assert child.read(addr + 5 * PAGE, 15) == b"through the TTE"
    assert child.rss() == {"file_rss": 0, "anon_rss": 0, "rss": 0}
    machine.check_invariants()
    child.exit()
    proc.munmap(addr, RUNS)
    assert counts_snapshot(machine) == start
    assert machine.log == [] and machine.bad_ptes == []
    finish(machine)


def test_followup_in_an_io_space() -> None:
    sbus = IORegion.in_space("sbus1", 1, 0, 16 * M)
    machine = Machine("sparc64", io=[IORegion("fb0", 0xF0000000, 16 * M), sbus])
    proc = machine.spawn()
    addr = map_runs(machine, proc, region="sbus1", offset=4 * M)
    vma = proc.vmas[0]
    phys_base = (1 << 32) | 4 * M
    assert vma.vm_pgoff == phys_base >> PAGE_SHIFT
    ptes = proc.ptes(vma)
    for k, (va, pte) in enumerate(ptes):
        assert machine.arch.pte_pfn(pte) == vma.vm_pgoff + k
        assert proc.lookup(va).verdict is Verdict.RAW_PFN
    assert ptes[0][1] & _PAGE_SZ4MB == _PAGE_SZ4MB
    assert proc.read(addr + 3 * PAGE, 8) == machine.phys.read(phys_base + 3 * PAGE, 8)
    child = proc.fork()
    child.exit()
    proc.munmap(addr, RUNS)
    assert machine.log == []
    finish(machine)


def test_io_remap_ignores_prot_and_maps_writable() -> None:
    """pg_iobits replaces the caller's prot: a PROT_READ mapping gets writable, dirty ptes, so a
    store reaches the device without a fault (Hugh Dickins' complaint, §5.5; fixed 2006-03)."""
    machine = fb_machine()
    proc = machine.spawn()
    fd = proc.open(add_fb(machine))
    addr = proc.mmap(PAGE, PROT_READ, MAP_SHARED, fd)
    assert proc.lookup(addr).raw == pg_iobits | 0xF0000000
    faults = proc.mm.min_flt
    proc.write(addr, b"!")
    assert proc.mm.min_flt == faults
    assert machine.phys.read(0xF0000000, 1) == b"!"
    finish(machine)


def test_io_remap_checks_before_writing() -> None:
    machine = fb_machine()
    proc = machine.spawn()
    fd = proc.open(add_fb(machine))
    addr = proc.mmap(4 * PAGE, RW, MAP_SHARED, fd)
    vma = proc.vmas[0]
    flags, pgoff = vma.vm_flags, vma.vm_pgoff
    pfn = 0xF0000000 >> PAGE_SHIFT

    def unchanged() -> None:
        assert (vma.vm_flags, vma.vm_pgoff) == (flags, pgoff)
        assert [pte for _, pte in proc.ptes(vma)] == [pg_iobits | (pfn + k) << 13 for k in range(4)]

    with pytest.raises(KernelBug, match="not none"):
        io_remap_pfn_range(vma, addr, pfn + 100, 4 * PAGE, vma.vm_page_prot)
    unchanged()
    with pytest.raises(KernelError) as exc:
        io_remap_pfn_range(vma, addr + 1, pfn, PAGE, vma.vm_page_prot)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as exc:
        io_remap_pfn_range(vma, addr, 1 << 30, PAGE, vma.vm_page_prot)  # PA bit 43
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as exc:  # leaves the 4 GiB window of space 2
        io_remap_pfn_range(vma, addr, (2 << 60) | ((1 << 19) - 1), 2 * PAGE, vma.vm_page_prot)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(KernelBug, match="outside"):
        io_remap_pfn_range(vma, addr, pfn, 5 * PAGE, vma.vm_page_prot)
    unchanged()
    finish(machine)


def test_arch_options_are_checked() -> None:
    machine = Machine("sparc64", arch_options={"sparc64_iomap_folowup": False})
    proc = machine.spawn()
    fd = proc.open(add_fb(machine))
    with pytest.raises(ValueError, match="sparc64_iomap_folowup"):
        proc.mmap(PAGE, RW, MAP_SHARED, fd)
    machine = Machine("sparc64", arch_options={"sparc64_iomap_followup": "no"})
    proc = machine.spawn()
    fd = proc.open(add_fb(machine))
    with pytest.raises(TypeError):
        proc.mmap(PAGE, RW, MAP_SHARED, fd)


def test_the_sunffb_bug_that_remained_with_the_followup() -> None:
    """rc6 (§5.5): a driver building one vma from more than one io_remap_pfn_range call. Each
    call sets vm_pgoff to its own base, and a call that does not start at vm_start is off by
    its distance from it, so no pte of the vma passes the linear rule any more."""
    machine = fb_machine()
    proc = machine.spawn("X")
    fd = proc.open(add_fb(machine))
    addr = proc.mmap(2 * PAGE, RW, MAP_PRIVATE, fd)
    vma = proc.vmas[0]
    zap_page_range(vma, addr + PAGE, PAGE)
    other = (0xF0000000 >> PAGE_SHIFT) + 64
    io_remap_pfn_range(vma, addr + PAGE, other, PAGE, vma.vm_page_prot)
    assert vma.vm_pgoff == other
    assert [proc.lookup(addr + k * PAGE).verdict for k in (0, 1)] == [Verdict.BAD] * 2
    child = proc.fork("child")
    child.exit()
    proc.munmap(addr, 2 * PAGE)
    # the child's exit tears its mm down after exit_mm() cleared tsk->mm: "process = ???", as
    # the teardown lines of the LKML report (S-ffb, 2005-12-23) print it
    assert [(r.caller, r.comm) for r in machine.bad_ptes] == [
        ("copy_one_pte", "X"),
        ("copy_one_pte", "X"),
        ("zap_pte_range", "???"),
        ("zap_pte_range", "???"),
        ("zap_pte_range", "X"),
        ("zap_pte_range", "X"),
    ]
    finish(machine)


# without the follow-ups --------------------------------------------------------------------------
def test_pre_followup_sets_the_flag_but_not_vm_pgoff() -> None:
    machine = fb_machine(sparc64_iomap_followup=False)
    proc = machine.spawn("X")
    addr = map_runs(machine, proc, offset=0)
    vma = proc.vmas[0]
    assert vma.vm_flags & VM_PFNMAP == 0x400 and vma.vm_flags & (VM_IO | VM_RESERVED)
    assert vma.vm_pgoff == 0  # the mmap offset, not the physical address
    ptes = proc.ptes(vma)
    for k, (va, pte) in enumerate(ptes):
        run_base = 0xF0000000 + max(s for s in RUN_STARTS if s <= k) * PAGE
        assert pte & _PAGE_PADDR == run_base, k  # before rc4: the run's base in every slot
        assert proc.lookup(va).verdict is Verdict.BAD, k
    # the MMU still maps every 8K page of a large run to the right device bytes
    for k in (1, 300, 513, 577):
        assert proc.read(addr + k * PAGE, 8) == machine.phys.read(0xF0000000 + k * PAGE, 8)
    proc.munmap(addr, RUNS)
    assert len(machine.bad_ptes) == 585
    finish(machine)


def test_pre_followup_fork_and_munmap_log_bad_ptes_and_count_nothing() -> None:
    """The sunffb sequence of §5.5 on the pre-follow-up io_remap_pfn_range: the same ptes and
    log lines (vm_flags lacks VM_ACCOUNT, which pfnmap does not model)."""
    ffb = IORegion("ffb", 0x1FA00000000, 16 * M)
    machine = Machine("sparc64", io=[ffb], arch_options={"sparc64_iomap_followup": False})
    x = machine.spawn("X")
    fd = x.open(add_fb(machine, "ffb"))
    addr = x.mmap(PAGE, RW, MAP_PRIVATE | MAP_FIXED, fd, offset=0x600000, addr=0x7001E000)
    assert x.lookup(addr).raw == pg_iobits | 0x1FA00600000
    start = counts_snapshot(machine)
    child = x.fork("X")
    line = "Bad pte = 1fa00600a88, process = X, vm_flags = 84473, vaddr = 7001e000"
    assert machine.log == [line]
    assert machine.bad_ptes[0].caller == "copy_one_pte"
    assert_untouched_but_tables(machine, start)
    assert child.rss() == {"file_rss": 0, "anon_rss": 0, "rss": 0}
    # the report's second line: the forked X exec'd, and exec_mmap() had already switched the
    # task to its new mm when mmput() unmapped the old copy, so vma->vm_mm != current->mm
    child.execve("Xorg-helper")
    assert machine.log == [line, line.replace("process = X", "process = ???")]
    x.munmap(addr, PAGE)
    assert machine.log[2] == (
        "Bad pte = 800001fa00600e88, process = X, vm_flags = 84473, vaddr = 7001e000"
    )
    assert [r.caller for r in machine.bad_ptes] == ["copy_one_pte"] + ["zap_pte_range"] * 2
    assert_untouched_but_tables(machine, start)
    finish(machine)


def test_pre_followup_cow_after_fork_draws_into_ram() -> None:
    machine = fb_machine(sparc64_iomap_followup=False)
    x = machine.spawn("X")
    fd = x.open(add_fb(machine))
    addr = x.mmap(PAGE, RW, MAP_PRIVATE, fd)
    device = machine.phys.read(0xF0000000, PAGE)
    x.fork("child")
    machine.bad_ptes.clear()
    x.write(addr, b"Z")
    assert [r.caller for r in machine.bad_ptes] == ["do_wp_page"]
    info = x.lookup(addr)
    # an anonymous page now, which vm_normal_page finds through the VM_PFNMAP COW rule
    assert info.verdict is Verdict.COWED and machine.page(info.pfn).anon
    assert x.read(addr, PAGE) == b"Z" + device[1:]  # the parent's pte was still young
    assert machine.phys.read(0xF0000000, PAGE) == device
    finish(machine)


def test_rc3_without_rc4_only_the_first_pte_of_a_run_is_raw() -> None:
    machine = fb_machine(sparc64_iomap_followup=True, sparc64_iomap_rc4_fix=False)
    proc = machine.spawn()
    addr = map_runs(machine, proc)
    assert proc.vmas[0].vm_pgoff == 0xF0000000 >> PAGE_SHIFT
    raw = [k for k in range(585) if proc.lookup(addr + k * PAGE).verdict is Verdict.RAW_PFN]
    assert raw == sorted(RUN_STARTS)
    proc.munmap(addr, RUNS)
    assert len(machine.bad_ptes) == 585 - len(RUN_STARTS)
    finish(machine)


def test_pre_followup_alias_of_ram_frees_a_struct_page_under_its_owner() -> None:
    """A device window whose physical address is RAM: without vm_pgoff, vm_normal_page takes
    the pte for a COWed page. fork counts it, munmap releases it: the owner's page is freed."""
    machine = fb_machine(sparc64_iomap_followup=False)
    owner = machine.spawn("owner")
    page = owner.mmap(PAGE)
    owner.write(page, b"secret")
    pfn = owner.lookup(page).pfn
    assert (machine.page(pfn).count, machine.page(pfn).mapcount) == (1, 1)
    mapper = machine.spawn("mapper")
    fd = mapper.open(add_fb(machine, IORegion("alias", pfn << PAGE_SHIFT, PAGE), "/dev/alias"))
    addr = mapper.mmap(PAGE, PROT_READ, MAP_SHARED, fd)
    assert mapper.read(addr, 6) == b"secret"
    assert mapper.lookup(addr).verdict is Verdict.COWED
    child = mapper.fork("child")
    assert (machine.page(pfn).count, machine.page(pfn).mapcount) == (2, 2)
    assert child.rss()["anon_rss"] == 1
    child.exit()
    assert (machine.page(pfn).count, machine.page(pfn).mapcount) == (1, 1)
    mapper.munmap(addr, PAGE)
    assert (machine.page(pfn).count, machine.page(pfn).mapcount) == (0, 0)
    assert pfn in machine.phys._free  # freed while the owner still maps it
    assert mapper.rss()["anon_rss"] == -1
    with pytest.raises(InvariantError):
        machine.check_invariants()


def test_followup_alias_of_ram_leaves_the_struct_page_alone() -> None:
    machine = fb_machine()
    owner = machine.spawn("owner")
    page = owner.mmap(PAGE)
    owner.write(page, b"secret")
    pfn = owner.lookup(page).pfn
    mapper = machine.spawn("mapper")
    fd = mapper.open(add_fb(machine, IORegion("alias", pfn << PAGE_SHIFT, PAGE), "/dev/alias"))
    addr = mapper.mmap(PAGE, PROT_READ, MAP_SHARED, fd)
    assert mapper.lookup(addr).verdict is Verdict.RAW_PFN
    mapper.fork("child").exit()
    mapper.munmap(addr, PAGE)
    assert (machine.page(pfn).count, machine.page(pfn).mapcount) == (1, 1)
    assert owner.read(page, 6) == b"secret"
    finish(machine)
