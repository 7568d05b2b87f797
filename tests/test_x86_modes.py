"""The x86 paging modes as arch plugins: x86-2level, x86-pae and x86-la57 (x86-64 for contrast).

Numbers come from the kernel's headers, written out here rather than read from the arch:
include/asm-i386/pgtable.h, pgtable-2level.h, pgtable-2level-defs.h, pgtable-3level.h,
pgtable-3level-defs.h and processor.h (TASK_SIZE = PAGE_OFFSET = 0xC0000000) of the 2.6.15 era,
arch/i386/mm/pgtable.c (pgd_alloc's PDPT entries), include/asm-x86_64/pgtable.h for the x86-64
operations that 5-level reuses, and kernel-reference §6.1/§6.2/§6.6 for the geometry. Every
test here builds its own machines, so it runs the same whatever ``--arch`` says.
"""

from __future__ import annotations

import errno

import pytest
from helpers import finish

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    BusError,
    KernelError,
    Machine,
    SegmentationFault,
)
from pfnmap.kernel.constants import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE
from pfnmap.kernel.remap import remap_pfn_range
from pfnmap.plugins.manager import default_registry
from pfnmap.plugins.validation import validate_arch

RW = PROT_READ | PROT_WRITE
PAGE_SIZE = 4096
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# include/asm-i386/pgtable.h and include/asm-x86_64/pgtable.h: the low bits every mode shares
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_PWT = 0x008
_PAGE_PCD = 0x010
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080
_PAGE_PROTNONE = 0x080
_PAGE_GLOBAL = 0x100
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY

#: per mode: (_PAGE_NX, TASK_SIZE, [(level name, entries, entry bytes, shift)], PA width)
HEADERS = {
    # pgtable-2level-defs.h: PGDIR_SHIFT 22, PTRS_PER_PGD 1024, PTRS_PER_PTE 1024; _PAGE_NX 0
    "x86-2level": (0, 0xC0000000, [("pgd", 1024, 4, 22), ("pte", 1024, 4, 12)], 32),
    # pgtable-3level-defs.h: PGDIR_SHIFT 30, PTRS_PER_PGD 4, PMD_SHIFT 21, PTRS_PER_PMD 512
    "x86-pae": (
        1 << 63,
        0xC0000000,
        [("pgd", 4, 8, 30), ("pmd", 512, 8, 21), ("pte", 512, 8, 12)],
        36,
    ),
    # kernel-reference §6.6: five 512-entry levels, 57-bit VA, 52-bit PA; TASK_SIZE_MAX with
    # __VIRTUAL_MASK_SHIFT 56
    "x86-la57": (
        1 << 63,
        (1 << 56) - PAGE_SIZE,
        [("pgd", 512, 8, 48), ("p4d", 512, 8, 39), ("pud", 512, 8, 30), ("pmd", 512, 8, 21)]
        + [("pte", 512, 8, 12)],
        52,
    ),
    # include/asm-x86_64/pgtable.h, page.h, processor.h (TASK_SIZE64)
    "x86-64": (
        1 << 63,
        0x800000000000 - PAGE_SIZE,
        [("pgd", 512, 8, 39), ("pud", 512, 8, 30), ("pmd", 512, 8, 21), ("pte", 512, 8, 12)],
        46,
    ),
}
MODES = ["x86-2level", "x86-pae", "x86-la57"]
ALL_X86 = [*MODES, "x86-64"]


def arch_of(name: str):
    return default_registry().get(name)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def mode_machine(mode: str):
    """A small machine of one mode, checked like the ``machine`` fixture afterwards."""
    m = Machine(arch=mode, ram="16M")
    yield m
    finish(m)


# geometry and bits against the headers -----------------------------------------------------------
@pytest.mark.parametrize("name", ALL_X86)
def test_registered_and_valid(name: str) -> None:
    """Each mode is a built-in plugin and passes plugins/validation.py."""
    assert name in default_registry().names()
    assert validate_arch(arch_of(name)) == []


@pytest.mark.parametrize("name", ALL_X86)
def test_geometry_matches_headers(name: str) -> None:
    """PTRS_PER_*, entry widths, *_SHIFT and so *_SIZE (PGDIR_SIZE = 1 << PGDIR_SHIFT)."""
    arch = arch_of(name)
    _, task_size, levels, phys_bits = HEADERS[name]
    got = [(lv.name, lv.entries, lv.entry_bytes, lv.shift) for lv in arch.levels]
    assert got == levels
    assert arch.page_size == PAGE_SIZE
    assert [lv.span for lv in arch.levels] == [1 << shift for *_, shift in levels]
    assert arch.task_size == task_size
    assert arch.phys_bits == phys_bits
    assert arch.max_pfn == (1 << (phys_bits - 12)) - 1
    for i, (*_, nbytes, _shift) in enumerate(levels):
        assert arch.entry_struct_format(i) == {4: "<I", 8: "<Q"}[nbytes]


def test_pgdir_sizes() -> None:
    """PGDIR_SIZE: 4 MiB on 2-level, 1 GiB (one PDPT entry) under PAE, 256 TiB with LA57."""
    assert arch_of("x86-2level").levels[0].span == 4 * MiB
    assert arch_of("x86-pae").levels[0].span == 1 * GiB
    assert arch_of("x86-la57").levels[0].span == 256 << 40
    assert arch_of("x86-la57").levels[1].span == 512 * GiB  # P4D_SIZE = x86-64's PGDIR_SIZE


@pytest.mark.parametrize("name", ALL_X86)
def test_nx_and_protection_map(name: str) -> None:
    """_PAGE_NX is 0 without PAE, bit 63 otherwise; the __P/__S tables follow the headers.

    i386 (2-level and PAE) PAGE_SHARED has no NX; x86-64's has (and 5-level uses its ops)."""
    arch = arch_of(name)
    nx = HEADERS[name][0]
    assert nx == arch._PAGE_NX
    p, u, a = _PAGE_PRESENT, _PAGE_USER, _PAGE_ACCESSED
    shared_nx = nx if name in ("x86-64", "x86-la57") else 0
    page_none = _PAGE_PROTNONE | a
    readonly, copy = p | u | a | nx, p | u | a | nx
    readonly_exec = copy_exec = p | u | a
    shared, shared_exec = p | _PAGE_RW | u | a | shared_nx, p | _PAGE_RW | u | a
    private = [page_none, readonly, copy, copy, readonly_exec, readonly_exec, copy_exec, copy_exec]
    shared_map = [
        page_none,
        readonly,
        shared,
        shared,
        readonly_exec,
        readonly_exec,
        shared_exec,
        shared_exec,
    ]
    assert list(arch.protection_map) == private + shared_map
    if nx == 0:
        assert "nx" not in arch.pte_format.fields
        assert not any(prot >> 32 for prot in arch.protection_map)
    else:
        assert arch.pte_format.fields["nx"].shift == 63


def test_pae_nx_is_in_the_ptes_it_writes() -> None:
    """pfn_pte masks with __supported_pte_mask (NX-capable CPU): PAGE_COPY keeps bit 63, and
    pte_modify takes NX from the new protection only."""
    arch = arch_of("x86-pae")
    copy = arch.protection_map[VM_READ | VM_WRITE]
    exec_ = arch.protection_map[VM_READ | VM_EXEC]
    pte = arch.pfn_pte(0x123456, copy)
    assert pte == (1 << 63) | (0x123456 << 12) | _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
    assert arch.pte_format.decode(pte)["nx"] is True
    assert arch.pte_modify(pte | _PAGE_DIRTY, exec_) == (0x123456 << 12) | exec_ | _PAGE_DIRTY


@pytest.mark.parametrize(
    ("name", "entry", "pfn"),
    [
        # pgtable-2level.h: pte_pfn(x) = pte_low >> PAGE_SHIFT
        ("x86-2level", 0xFFFFFFFF, 0xFFFFF),
        # pgtable-3level.h: pte_val >> PAGE_SHIFT as an unsigned long: PA bits 12..43, never NX
        ("x86-pae", (1 << 64) - 1, 0xFFFFFFFF),
        ("x86-pae", (1 << 63) | (0xABC << 32) | 0xDEF000 | 0x67, 0xABC00DEF),
        # 52-bit __PHYSICAL_MASK with 5-level: PA bits 12..51
        ("x86-la57", (1 << 64) - 1, (1 << 40) - 1),
        # x86-64 of 2.6.15: __PHYSICAL_MASK_SHIFT 46
        ("x86-64", (1 << 46) - 1 | (1 << 63), (1 << 34) - 1),
    ],
)
def test_pte_pfn_masks(name: str, entry: int, pfn: int) -> None:
    assert arch_of(name).pte_pfn(entry) == pfn


@pytest.mark.parametrize("name", MODES)
def test_every_bit_named(name: str) -> None:
    """Every entry format covers its whole width with named fields, and the derived masks
    agree with what construct builds (the layout is the single source of truth)."""
    arch = arch_of(name)
    for fmt in arch.formats.values():
        covered = 0
        for field in fmt.fields.values():
            assert not covered & field.mask, f"{fmt.name}.{field.name} overlaps"
            covered |= field.mask
            assert fmt.encode(**{field.name: (1 << field.width) - 1}) == field.mask
        assert covered == (1 << fmt.width_bits) - 1


def test_pte_bits_by_name() -> None:
    """The named fields sit at the headers' _PAGE_BIT_* positions in every mode."""
    for name in ALL_X86:
        f = arch_of(name).pte_format.fields
        assert [f[n].shift for n in ("present", "rw", "user", "pwt", "pcd", "accessed")] == [
            0,
            1,
            2,
            3,
            4,
            5,
        ]
        assert (f["dirty"].shift, f["protnone"].shift, f["global_"].shift) == (6, 7, 8)
        assert f["pfn"].shift == 12
        assert f["pfn"].width == HEADERS[name][3] - 12


# upper levels ------------------------------------------------------------------------------------
def test_pae_pdpt_entry() -> None:
    """pgd_alloc: ``set_pgd(&pgd[i], __pgd(1 + __pa(pmd)))`` (arch/i386/mm/pgtable.c): the PDPT
    holds the pmd page's address and _PAGE_PRESENT only; RW/USER/A/D and NX are reserved
    there, so an entry carrying them is bad. The pmd level below gets _PAGE_TABLE."""
    arch = arch_of("x86-pae")
    entry = arch.mk_table_entry(0, 0x1234000)
    assert entry == 0x1234000 | _PAGE_PRESENT
    assert arch.table_formats[0].decode(entry) == {
        "reserved_high": 0,
        "pa_high": 0,
        "table_pfn": 0x1234,
        "avl": 0,
        "reserved_8_5": 0,
        "pcd": False,
        "pwt": False,
        "reserved_2_1": 0,
        "present": True,
    }
    assert arch.table_entry_present(0, entry)
    assert not arch.table_entry_bad(0, entry)
    assert not arch.table_entry_leaf(0, entry | _PAGE_PSE)  # no 1 GiB pages under PAE
    for reserved in (_PAGE_RW, _PAGE_USER, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE, 1 << 63):
        assert arch.table_entry_bad(0, entry | reserved)
    assert arch.mk_table_entry(1, 0x5678000) == 0x5678000 | _PAGE_TABLE


@pytest.mark.parametrize("name", ["x86-2level", "x86-pae"])
def test_i386_pmd_bad(name: str) -> None:
    """i386 pmd_bad: ``(pmd_val(x) & (~PAGE_MASK & ~_PAGE_USER)) != _KERNPG_TABLE``, with a
    32-bit PAGE_MASK: only the low 12 bits count. On 2-level the pgd entry is the pmd."""
    arch = arch_of(name)
    pmd = len(arch.levels) - 2
    base = 0x7654000
    assert not arch.table_entry_bad(pmd, base | _PAGE_TABLE)
    assert not arch.table_entry_bad(pmd, base | _KERNPG_TABLE)
    for flags in (
        _PAGE_TABLE & ~_PAGE_ACCESSED,
        _PAGE_TABLE & ~_PAGE_RW,
        _PAGE_TABLE | _PAGE_PSE,
        _PAGE_TABLE | _PAGE_GLOBAL,
        _PAGE_PRESENT,
    ):
        assert arch.table_entry_bad(pmd, base | flags), hex(flags)
    if name == "x86-pae":
        # NX and the high address bits are above the 32-bit ~PAGE_MASK: not "bad" on i386,
        # while x86-64's 64-bit ~PTE_MASK does catch NX
        assert not arch.table_entry_bad(pmd, base | _PAGE_TABLE | 1 << 63)
        x64 = arch_of("x86-64")
        assert x64.table_entry_bad(2, base | _PAGE_TABLE | 1 << 63)


def test_la57_upper_levels() -> None:
    """5-level uses x86-64's pgd_bad/pud_bad at pgd, p4d and pud and pmd_bad at the pmd;
    every upper entry is pfn | _PAGE_TABLE, with 52-bit table addresses."""
    arch = arch_of("x86-la57")
    top_table = ((1 << 52) - 1) & ~0xFFF
    for level in range(4):
        entry = arch.mk_table_entry(level, top_table)
        assert entry == top_table | _PAGE_TABLE
        assert arch.table_entry_paddr(level, entry) == top_table
        assert not arch.table_entry_bad(level, entry)
    assert arch.table_entry_bad(3, 0x5000 | _PAGE_PRESENT)  # pmd_bad: must be _KERNPG_TABLE
    assert not arch.table_entry_bad(2, 0x5000 | _PAGE_PRESENT)  # pud_bad: no bit outside
    assert arch.table_entry_bad(0, 0x5000 | _PAGE_TABLE | _PAGE_GLOBAL)


# large pages -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("x86-2level", [4 * MiB]),
        ("x86-pae", [2 * MiB]),
        ("x86-la57", [1 * GiB, 2 * MiB]),
        ("x86-64", [1 * GiB, 2 * MiB]),
    ],
)
def test_large_page_sizes(name: str, sizes: list[int]) -> None:
    arch = arch_of(name)
    assert arch.large_page_sizes() == sizes
    for size in sizes:
        level = arch.large_page_level(size)
        assert arch.levels[level].span == size


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("x86-2level", 2 * MiB),  # no PAE: no 2 MiB pages
        ("x86-2level", 1 * GiB),
        ("x86-pae", 4 * MiB),  # PAE has 2 MiB, not 4 MiB, pages
        ("x86-pae", 1 * GiB),  # the PDPT cannot map
        ("x86-la57", 4 * MiB),
        ("x86-la57", 512 * GiB),  # p4d and pgd entries never map
        ("x86-la57", 4 * KiB),  # the base page is not a large page
    ],
)
def test_unsupported_large_page_is_einval(name: str, size: int) -> None:
    arch = arch_of(name)
    with pytest.raises(KernelError) as exc:
        arch.large_page_level(size)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as exc:
        arch.mk_large_entry(size, 0, arch.protection_map[VM_READ])
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("name", MODES)
def test_large_leaf_entry(name: str) -> None:
    """pfn_pmd + mk_pte_huge (PRESENT|PSE) at the right level; the walk sees a leaf and the
    page's address; a misaligned or out-of-range pfn is EINVAL."""
    arch = arch_of(name)
    size = arch.large_page_sizes()[-1]
    level = arch.large_page_level(size)
    npages = size // PAGE_SIZE
    prot = arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]
    entry = arch.mk_large_entry(size, 3 * npages, prot)
    assert entry & (_PAGE_PSE | _PAGE_PRESENT) == _PAGE_PSE | _PAGE_PRESENT
    assert arch.table_entry_leaf(level, entry)
    assert arch.leaf_paddr(level, entry) == 3 * size
    assert arch.hw_leaf_paddr(level, entry, 0x12345) == 3 * size + 0x12345
    assert arch.leaf_formats[level].decode(entry)["large_pfn"] == 3
    for bad_pfn in (1, arch.max_pfn + 1, arch.max_pfn + 1 - npages // 2):
        with pytest.raises(KernelError) as exc:
            arch.mk_large_entry(size, bad_pfn, prot)
        assert exc.value.errno == errno.EINVAL
    assert arch.mk_large_entry(size, arch.max_pfn + 1 - npages, prot)


def test_2level_pse36_bits() -> None:
    """A 4 MiB pgd leaf carries PA bits 35..32 in entry bits 16..13 (PSE-36). 2.6.15 never set
    them, and mk_large_entry cannot (32-bit pfns), but the walk honours them as the MMU does."""
    arch = arch_of("x86-2level")
    entry = 0x00C00000 | (0x5 << 13) | _PAGE_PSE | _PAGE_TABLE
    assert arch.leaf_formats[0].decode(entry)["pse36_pa"] == 5
    assert arch.leaf_paddr(0, entry) == (5 << 32) | 0x00C00000
    assert arch.leaf_paddr(0, entry | 1 << 12) == (5 << 32) | 0x00C00000  # bit 12 is PAT


# bad input: physical address width ---------------------------------------------------------------
def test_2level_dev_mem_above_4g_is_refused() -> None:
    """A 2-level pte holds PA bits 31..12 and nothing above: /dev/mem at offset 4 GiB cannot be
    encoded (2.6.15's pfn_pte would silently truncate the pfn to the low 4 GiB). pfnmap refuses
    it with EINVAL, and the vma is gone; the last page below 4 GiB still maps."""
    m = Machine(arch="x86-2level", ram="16M")
    proc = m.spawn()
    fd = proc.open("/dev/mem", O_RDWR)
    with pytest.raises(KernelError) as exc:
        proc.mmap(PAGE_SIZE, RW, MAP_SHARED, fd, 4 * GiB)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as exc:  # a range that crosses 4 GiB
        proc.mmap(2 * PAGE_SIZE, RW, MAP_SHARED, fd, 4 * GiB - PAGE_SIZE)
    assert exc.value.errno == errno.EINVAL
    assert proc.vmas == []
    addr = proc.mmap(PAGE_SIZE, RW, MAP_SHARED, fd, 4 * GiB - PAGE_SIZE)
    assert proc.lookup(addr).pfn == 0xFFFFF
    with pytest.raises(BusError):  # nothing decodes that address: a hole
        proc.read(addr, 1)
    finish(m)


def test_pae_dev_mem_above_4g_maps() -> None:
    """Under PAE the same offset fits: the pte's high word holds PA bits 32..35."""
    m = Machine(arch="x86-pae", ram="16M")
    proc = m.spawn()
    fd = proc.open("/dev/mem", O_RDWR)
    addr = proc.mmap(PAGE_SIZE, RW, MAP_SHARED, fd, 4 * GiB)
    info = proc.lookup(addr)
    assert info.pfn == 0x100000
    # i386 PAGE_SHARED carries no NX, so the high word is just PA bit 32
    shared = m.arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]
    assert info.raw == (1 << 32) | shared
    assert info.raw >> 32 == 1
    finish(m)


@pytest.mark.parametrize("name", ALL_X86)
def test_pfn_beyond_phys_width_is_einval(name: str) -> None:
    """remap_pfn_range and /dev/mem refuse pfns the mode's PA width cannot hold (max_pfn + 1,
    or a range that runs past it); the last pfn itself is accepted."""
    m = Machine(arch=name, ram="16M")
    arch = m.arch
    top = arch.max_pfn
    assert top == (1 << (HEADERS[name][3] - 12)) - 1
    proc = m.spawn()
    addr = proc.mmap(2 * PAGE_SIZE)
    vma = proc.vmas[0]
    for pfn, size in ((top + 1, PAGE_SIZE), (top, 2 * PAGE_SIZE), (-1, PAGE_SIZE)):
        with pytest.raises(KernelError) as exc:
            remap_pfn_range(vma, addr, pfn, size, vma.vm_page_prot)
        assert exc.value.errno == errno.EINVAL
    assert proc.ptes(vma) == []
    fd = proc.open("/dev/mem", O_RDWR)
    with pytest.raises(KernelError) as exc:
        proc.mmap(PAGE_SIZE, PROT_READ, MAP_SHARED, fd, (top + 1) * PAGE_SIZE)
    assert exc.value.errno == errno.EINVAL
    last = proc.mmap(PAGE_SIZE, PROT_READ, MAP_SHARED, fd, top * PAGE_SIZE)
    assert proc.lookup(last).pfn == top
    assert arch.pte_pfn(proc.lookup(last).raw) == top
    finish(m)


# bad input: virtual address limits ---------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_X86)
def test_map_fixed_at_task_size_is_enomem(name: str) -> None:
    """get_unmapped_area (mm/mmap.c, 2.6.15): MAP_FIXED with ``addr > TASK_SIZE - len`` is
    -ENOMEM. The last page below TASK_SIZE maps; an access at TASK_SIZE is SIGSEGV."""
    m = Machine(arch=name, ram="16M")
    proc = m.spawn()
    task_size = HEADERS[name][1]
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
    for addr, length in ((task_size, PAGE_SIZE), (task_size - PAGE_SIZE, 2 * PAGE_SIZE)):
        with pytest.raises(KernelError) as exc:
            proc.mmap(length, RW, flags, addr=addr)
        assert exc.value.errno == errno.ENOMEM
    assert proc.vmas == []
    last = proc.mmap(PAGE_SIZE, RW, flags, addr=task_size - PAGE_SIZE)
    assert last == task_size - PAGE_SIZE
    proc.write(last + PAGE_SIZE - 4, b"edge")
    assert proc.read(last + PAGE_SIZE - 4, 4) == b"edge"
    for bad in (task_size, task_size + 0x1234):
        with pytest.raises(SegmentationFault) as sig:
            proc.read(bad, 1)
        assert sig.value.address == bad
    with pytest.raises(SegmentationFault):
        proc.write(last + PAGE_SIZE - 2, b"four")  # runs over TASK_SIZE
    finish(m)


def test_la57_maps_above_47_bits() -> None:
    """Addresses x86-64 cannot reach map on 5-level, through five levels of tables."""
    addr = 1 << 52
    m = Machine(arch="x86-la57", ram="16M")
    proc = m.spawn()
    got = proc.mmap(PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr=addr)
    assert got == addr
    proc.write(addr, b"la57")
    info = proc.lookup(addr)
    assert [step.level_name for step in info.walk] == ["pgd", "p4d", "pud", "pmd", "pte"]
    assert [step.slot & 0xFFF for step in info.walk] == [16 * 8, 0, 0, 0, 0]
    assert proc.read(addr, 4) == b"la57"
    finish(m)
    x64 = Machine(arch="x86-64", ram="16M").spawn()
    with pytest.raises(KernelError) as exc:
        x64.mmap(PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr=addr)
    assert exc.value.errno == errno.ENOMEM
    finish(x64.machine)


# the modes at work: tables in RAM in their own width ---------------------------------------------
def test_pae_pdpt_in_ram(mode_machine: Machine) -> None:
    """Mapping one page in each user GiB fills the matching table entries; under PAE the PDPT
    entries carry present only and entry 3 (the kernel's GiB) stays empty."""
    m = mode_machine
    arch = m.arch
    proc = m.spawn()
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
    addrs = [0x10000000, 0x50000000, 0x90000000]
    for i, addr in enumerate(addrs):
        proc.mmap(PAGE_SIZE, RW, flags, addr=addr)
        proc.write(addr, bytes([i + 1]) * 8)
    top = m.tables.table_view(0, proc.mm.pgd)
    assert len(top) == arch.levels[0].entries
    used = [int(i) for i in top.nonzero()[0]]
    assert used == sorted({arch.index(0, a) for a in addrs})
    if arch.name == "x86-pae":
        assert used == [0, 1, 2]
        for value in top.tolist()[:3]:
            assert value & 0xFFF == _PAGE_PRESENT
        assert top.tolist()[3] == 0
        # the rest of the pgd's frame is untouched: the PDPT is 32 bytes
        assert m.phys.read(proc.mm.pgd + 32, PAGE_SIZE - 32) == bytes(PAGE_SIZE - 32)
    for i, addr in enumerate(addrs):
        assert proc.read(addr, 8) == bytes([i + 1]) * 8


def test_entries_stored_in_mode_width(mode_machine: Machine) -> None:
    """The pte in RAM is the arch's entry, little-endian, in 4 or 8 bytes."""
    m = mode_machine
    proc = m.spawn()
    addr = proc.mmap(PAGE_SIZE)
    proc.write(addr, b"x")
    info = proc.lookup(addr)
    width = m.arch.pte_level.entry_bytes
    slot = info.walk[-1].slot
    raw = m.phys.read(slot, width)
    assert int.from_bytes(raw, "little") == info.raw
    assert m.arch.pte_pfn(info.raw) == info.pfn
    fields = info.fields
    assert fields["present"] and fields["rw"] and fields["user"] and fields["dirty"]
    if m.arch.name != "x86-2level":
        assert fields["nx"] is True  # private writable anon memory: PAGE_COPY with NX


def test_exec_mapping_has_no_nx(mode_machine: Machine) -> None:
    """PROT_EXEC picks the *_EXEC protections, which never carry NX."""
    m = mode_machine
    proc = m.spawn()
    addr = proc.mmap(PAGE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC)
    proc.write(addr, b"\x90")
    assert proc.lookup(addr).raw >> 63 == 0
