"""RISC-V Sv39 against the numbers of the privileged spec and of Linux 6.6's riscv headers.

The constants below are typed from the spec's Sv39 PTE figure and from
arch/riscv/include/asm/pgtable-bits.h, pgtable.h and pgtable-64.h of Linux 6.6, not taken
from the plugin, so a wrong layout or a wrong derivation fails here. The conformance kit
(``python -m pfnmap.testing riscv-sv39``) checks the generic contract; this file checks that
the plugin is Sv39.
"""

from __future__ import annotations

import errno
import importlib.metadata
import os

import pytest
from pfnmap import MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE, Machine
from pfnmap.errors import KernelError
from pfnmap.plugins import DISABLE_AUTOLOAD_ENV
from pfnmap.plugins.manager import default_registry

from pfnmap_riscv.sv39 import NAME, Sv39

# pgtable-bits.h
_PAGE_PRESENT = 1 << 0
_PAGE_READ = 1 << 1
_PAGE_WRITE = 1 << 2
_PAGE_EXEC = 1 << 3
_PAGE_USER = 1 << 4
_PAGE_GLOBAL = 1 << 5
_PAGE_ACCESSED = 1 << 6
_PAGE_DIRTY = 1 << 7
_PAGE_SPECIAL = 1 << 8
_PAGE_PROT_NONE = _PAGE_GLOBAL
_PAGE_PFN_SHIFT = 10
# pgtable-64.h
_PAGE_PFN_MASK = ((1 << 44) - 1) << 10  # GENMASK(53, 10)
_PAGE_NAPOT = 1 << 63
_PAGE_NOCACHE_SVPBMT = 1 << 61
_PAGE_IO_SVPBMT = 1 << 62
_PAGE_MTMASK_SVPBMT = _PAGE_NOCACHE_SVPBMT | _PAGE_IO_SVPBMT
# pgtable.h
_PAGE_BASE = _PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_USER
PAGE_NONE = _PAGE_PROT_NONE | _PAGE_READ
PAGE_READ = _PAGE_BASE | _PAGE_READ
PAGE_WRITE = _PAGE_BASE | _PAGE_READ | _PAGE_WRITE
PAGE_EXEC = _PAGE_BASE | _PAGE_EXEC
PAGE_READ_EXEC = _PAGE_BASE | _PAGE_READ | _PAGE_EXEC
PAGE_WRITE_EXEC = _PAGE_BASE | _PAGE_READ | _PAGE_EXEC | _PAGE_WRITE
# arch/riscv/mm/init.c, __P000..__P111 then __S000..__S111
PROTECTION_MAP = (
    [PAGE_NONE, PAGE_READ, PAGE_READ, PAGE_READ]
    + [PAGE_EXEC, PAGE_READ_EXEC, PAGE_READ_EXEC, PAGE_READ_EXEC]
    + [PAGE_NONE, PAGE_READ, PAGE_WRITE, PAGE_WRITE]
    + [PAGE_EXEC, PAGE_READ_EXEC, PAGE_WRITE_EXEC, PAGE_WRITE_EXEC]
)

PGD, PMD, PTE = range(3)


@pytest.fixture(scope="module")
def sv39() -> Sv39:
    return Sv39()


def test_the_entry_point_is_published() -> None:
    eps = importlib.metadata.entry_points(group="pfnmap.arches")
    assert [ep.value for ep in eps if ep.name == "riscv"] == ["pfnmap_riscv.sv39"]


@pytest.mark.skipif(bool(os.environ.get(DISABLE_AUTOLOAD_ENV)), reason="autoload is disabled")
def test_pfnmap_discovers_the_arch() -> None:
    registry = default_registry()
    assert registry.owners[NAME] == "riscv"
    assert type(registry.get(NAME)) is Sv39


def test_geometry(sv39: Sv39) -> None:
    assert [(lv.name, lv.shift, lv.entries, lv.entry_bytes) for lv in sv39.levels] == [
        ("pgd", 30, 512, 8),
        ("pmd", 21, 512, 8),
        ("pte", 12, 512, 8),
    ]
    assert sv39.task_size == 1 << 38  # TASK_SIZE_64 = PGDIR_SIZE * PTRS_PER_PGD / 2
    assert sv39.max_pfn == (1 << 44) - 1
    assert sv39.large_page_sizes() == [1 << 30, 1 << 21]
    assert sv39.canonical and sv39.va_bits == 39 and sv39.byteorder == "little"


@pytest.mark.parametrize(
    ("field", "mask"),
    [
        ("v", _PAGE_PRESENT),
        ("r", _PAGE_READ),
        ("w", _PAGE_WRITE),
        ("x", _PAGE_EXEC),
        ("u", _PAGE_USER),
        ("g", _PAGE_GLOBAL),
        ("a", _PAGE_ACCESSED),
        ("d", _PAGE_DIRTY),
        ("rsw", 0x300),
        ("ppn0", 0x1FF << 10),
        ("ppn1", 0x1FF << 19),
        ("ppn2", ((1 << 26) - 1) << 28),
        ("reserved", 0x7F << 54),
        ("pbmt", _PAGE_MTMASK_SVPBMT),
        ("n", _PAGE_NAPOT),
    ],
)
def test_every_field_is_where_the_spec_puts_it(sv39: Sv39, field: str, mask: int) -> None:
    assert sv39.pte_format.mask(field) == mask
    assert sv39.pte_format.encode(**{field: mask >> sv39.pte_format.fields[field].shift}) == mask


def test_one_format_at_every_level(sv39: Sv39) -> None:
    formats = {f.name: f for f in sv39.formats.values()}
    assert set(formats) == {"pgd-table", "pgd-1G", "pmd-table", "pmd-2M", "pte"}
    assert {f.layout for f in formats.values()} == {sv39.pte_format.layout}


def test_protections_are_linux_6_6(sv39: Sv39) -> None:
    assert list(sv39.protection_map) == PROTECTION_MAP
    assert sv39.PAGE_COPY == PAGE_READ and sv39.PAGE_SHARED == PAGE_WRITE


def test_pte_operations(sv39: Sv39) -> None:
    pte = sv39.pfn_pte(0x12_3456_789A, PAGE_WRITE)
    assert pte == (0x12_3456_789A << _PAGE_PFN_SHIFT) | PAGE_WRITE
    assert sv39.pte_pfn(pte) == 0x12_3456_789A
    assert sv39.pte_mkdirty(pte) == pte | _PAGE_DIRTY
    assert sv39.pte_mkold(pte) == pte & ~_PAGE_ACCESSED
    assert sv39.pte_wrprotect(pte) == pte & ~_PAGE_WRITE
    assert sv39.pte_write(pte) and not sv39.pte_dirty(pte) and sv39.pte_young(pte)
    assert sv39.pgprot_noncached(PAGE_WRITE) == PAGE_WRITE | _PAGE_IO_SVPBMT
    assert sv39.pte_mkspecial(pte) == pte | _PAGE_SPECIAL


def test_prot_none_is_present_to_linux_and_invalid_to_the_mmu(sv39: Sv39) -> None:
    none = sv39.pfn_pte(5, PAGE_NONE)
    assert sv39.pte_present(none) and not none & _PAGE_PRESENT
    assert not sv39.pte_hw_access_ok(none, write=False)
    # mprotect back: _PAGE_CHG_MASK drops G with the rest of the protection, keeps A and D
    back = sv39.pte_modify(sv39.pte_mkdirty(sv39.pte_mkyoung(none)), PAGE_READ)
    assert back == (5 << 10) | PAGE_READ | _PAGE_DIRTY
    assert not back & _PAGE_GLOBAL


@pytest.mark.parametrize(
    ("pte", "write", "ok"),
    [
        (PAGE_READ, False, True),
        (PAGE_READ, True, False),
        (PAGE_WRITE, True, False),  # clean: D must be set first (Svade)
        (PAGE_WRITE | _PAGE_DIRTY, True, True),
        (PAGE_READ & ~_PAGE_ACCESSED, False, False),  # old: A must be set first (Svade)
        (PAGE_EXEC, False, False),  # execute-only is not readable (MXR off)
        (PAGE_READ & ~_PAGE_USER, False, False),  # a supervisor page
        (_PAGE_BASE | _PAGE_WRITE | _PAGE_DIRTY, True, False),  # W without R is reserved
        (PAGE_READ | (1 << 54), False, False),  # a reserved bit
        (PAGE_READ | (3 << 61), False, False),  # PBMT 3 is reserved
        (PAGE_READ | _PAGE_NAPOT, False, False),  # no Svnapot modelled
        (PAGE_READ | _PAGE_IO_SVPBMT, False, True),
    ],
)
def test_the_mmu_checks(sv39: Sv39, pte: int, write: bool, ok: bool) -> None:
    assert sv39.pte_hw_access_ok((7 << 10) | pte, write) is ok
    assert sv39.pte_hw_update((7 << 10) | pte, write) == (7 << 10) | pte  # never writes


def test_table_entries_and_leaves(sv39: Sv39) -> None:
    table = sv39.mk_table_entry(PMD, 0x8020_0000)
    assert table == (0x80200 << 10) | _PAGE_PRESENT
    assert sv39.table_entry_paddr(PMD, table) == 0x8020_0000
    assert not sv39.table_entry_leaf(PMD, table) and not sv39.table_entry_bad(PMD, table)
    megapage = sv39.mk_large_entry(1 << 21, 512, PAGE_WRITE)
    assert sv39.table_entry_leaf(PMD, megapage)
    assert sv39.table_entry_bad(PMD, megapage)  # pmd_bad: a leaf is no table
    assert not sv39.table_entry_bad(PGD, sv39.mk_large_entry(1 << 30, 1 << 18, PAGE_READ))
    assert sv39.leaf_paddr(PMD, megapage | (5 << 10)) == 1 << 21  # pmd_pfn masks to PMD_SIZE
    for pfn, prot in ((513, PAGE_READ), (512, _PAGE_BASE)):
        with pytest.raises(KernelError) as info:
            sv39.mk_large_entry(1 << 21, pfn, prot)
        assert info.value.errno == errno.EINVAL


def test_the_first_read_after_fork_faults(sv39: Sv39) -> None:
    """Svade on a whole machine: the child's ptes are old, so its first read of each page is
    a page fault (x86 would set A in hardware and take none)."""
    machine = Machine(arch=sv39, ram="16M")
    parent = machine.spawn("parent")
    addr = parent.mmap(2 * sv39.page_size)
    parent.write(addr, b"sv39")
    child = parent.fork()
    before = machine.faults
    assert child.read(addr, 4) == b"sv39"
    assert machine.faults == before + 1
    assert sv39.pte_young(child.lookup(addr).raw)
    assert child.read(addr, 4) == b"sv39" and machine.faults == before + 1
    machine.check_invariants()


def test_devmem_with_the_fixtures(pfnmap_machine: Machine) -> None:
    """pfnmap's pytest plugin gives this suite its fixtures (pyproject: --pfnmap-arch)."""
    m = pfnmap_machine
    assert m.arch.name == NAME
    p = m.spawn()
    fd = p.open("/dev/mem", O_RDWR)
    region = m.phys.io_regions[0]
    addr = p.mmap(4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset=region.start)
    p.write(addr, b"mmio")
    assert m.phys.read(region.start, 4) == b"mmio"
    assert p.lookup(addr).raw & _PAGE_PFN_MASK == (region.start >> 12) << 10
