"""pte operations: x86-64 against its 2.6.15 header, then a contract every registered arch keeps.

The x86-64 half is written against the numbers of include/asm-x86_64/pgtable.h and page.h of
Linux 2.6.15 (``_PAGE_RW == 0x002``, ``__PHYSICAL_MASK_SHIFT == 46``...), not against the arch's
own attributes, so a wrong construct layout or a wrong derivation fails here.

The generic half is in the spirit of the kernel's mm/debug_vm_pgtable.c (a much later kernel):
each pte helper does what its name says and nothing else, on every arch the registry knows.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfnmap.arch import Arch
from pfnmap.kernel.constants import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE
from pfnmap.plugins.manager import default_registry

# include/asm-x86_64/pgtable.h, 2.6.15 ---------------------------------------------------------
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_PWT = 0x008
_PAGE_PCD = 0x010
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080
_PAGE_FILE = 0x040
_PAGE_GLOBAL = 0x100
_PAGE_PROTNONE = 0x080
_PAGE_NX = 1 << 63
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY
# include/asm-x86_64/page.h, 2.6.15
__PHYSICAL_MASK_SHIFT = 46
__PHYSICAL_MASK = (1 << __PHYSICAL_MASK_SHIFT) - 1
PAGE_SHIFT = 12
PHYSICAL_PAGE_MASK = ~((1 << PAGE_SHIFT) - 1) & __PHYSICAL_MASK
PTE_MASK = PHYSICAL_PAGE_MASK
_PAGE_CHG_MASK = PTE_MASK | _PAGE_ACCESSED | _PAGE_DIRTY
U64 = (1 << 64) - 1

PAGE_NONE = _PAGE_PROTNONE | _PAGE_ACCESSED
PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY_NOEXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_COPY = PAGE_COPY_NOEXEC
PAGE_COPY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PAGE_READONLY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_READONLY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED

# protection_map[VM_READ|VM_WRITE|VM_EXEC|VM_SHARED]: __P000 .. __P111, __S000 .. __S111 (xwr)
PROTECTION_MAP = {
    "__P000": PAGE_NONE,
    "__P001": PAGE_READONLY,
    "__P010": PAGE_COPY,
    "__P011": PAGE_COPY,
    "__P100": PAGE_READONLY_EXEC,
    "__P101": PAGE_READONLY_EXEC,
    "__P110": PAGE_COPY_EXEC,
    "__P111": PAGE_COPY_EXEC,
    "__S000": PAGE_NONE,
    "__S001": PAGE_READONLY,
    "__S010": PAGE_SHARED,
    "__S011": PAGE_SHARED,
    "__S100": PAGE_READONLY_EXEC,
    "__S101": PAGE_READONLY_EXEC,
    "__S110": PAGE_SHARED_EXEC,
    "__S111": PAGE_SHARED_EXEC,
}


def pgd_bad(val: int) -> bool:
    """pgd_bad()/pud_bad() of the header: flag bits other than PTE_MASK|USER|DIRTY|P|RW|A."""
    val &= ~PTE_MASK
    val &= ~(_PAGE_USER | _PAGE_DIRTY)
    return bool(val & ~(_PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED) & U64)


def pmd_bad(val: int) -> bool:
    """pmd_bad() of the header: the flags other than USER must be exactly _KERNPG_TABLE."""
    return (val & (~PTE_MASK & ~_PAGE_USER) & U64) != _KERNPG_TABLE


X86_64 = "x86-64"
PGD, PUD, PMD, PTE = range(4)


@pytest.fixture(scope="module")
def x64() -> Arch:
    return default_registry().get(X86_64)


def _index_name(index: int) -> str:
    shared = "S" if index & VM_SHARED else "P"
    bits = "".join("1" if index & b else "0" for b in (VM_EXEC, VM_WRITE, VM_READ))
    return f"__{shared}{bits}"


pfns46 = st.integers(0, (1 << (__PHYSICAL_MASK_SHIFT - PAGE_SHIFT)) - 1)
prots = st.sampled_from(sorted(set(PROTECTION_MAP.values())))
# the pte bits 2.6.15 ever sets: the PA bits, the low flags and NX (bits 46..62 stay clear)
ptes = st.builds(
    lambda pa, low, nx: pa | low | nx,
    st.integers(0, PTE_MASK).map(lambda v: v & PTE_MASK),
    st.integers(0, 0xFFF),
    st.sampled_from([0, _PAGE_NX]),
)


# x86-64 against the header ----------------------------------------------------------------
def test_x86_64_geometry(x64: Arch) -> None:
    assert [(lv.name, lv.shift, lv.entries, lv.entry_bytes) for lv in x64.levels] == [
        ("pgd", 39, 512, 8),  # PGDIR_SHIFT, PTRS_PER_PGD
        ("pud", 30, 512, 8),  # PUD_SHIFT, PTRS_PER_PUD
        ("pmd", 21, 512, 8),  # PMD_SHIFT, PTRS_PER_PMD
        ("pte", 12, 512, 8),  # PAGE_SHIFT, PTRS_PER_PTE
    ]
    assert x64.phys_bits == __PHYSICAL_MASK_SHIFT
    assert x64.max_pfn == (1 << 34) - 1
    assert x64.task_size == 0x800000000000 - 4096  # TASK_SIZE64, include/asm-x86_64/processor.h
    assert x64.large_page_sizes() == [1 << 30, 1 << 21]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("present", _PAGE_PRESENT),
        ("rw", _PAGE_RW),
        ("user", _PAGE_USER),
        ("pwt", _PAGE_PWT),
        ("pcd", _PAGE_PCD),
        ("accessed", _PAGE_ACCESSED),
        ("dirty", _PAGE_DIRTY),
        ("protnone", _PAGE_PROTNONE),
        ("global_", _PAGE_GLOBAL),
        ("nx", _PAGE_NX),
        ("pfn", PTE_MASK),
    ],
)
def test_pte_layout_bits(x64: Arch, field: str, value: int) -> None:
    """The construct pte layout puts each flag where the header's _PAGE_* constant says."""
    assert x64.pte_format.mask(field) == value
    shift = (value & -value).bit_length() - 1
    assert x64.pte_format.fields[field].shift == shift
    assert x64.pte_format.encode(**{field: value >> shift}) == value


def test_flag_constants(x64: Arch) -> None:
    assert x64._PAGE_PRESENT == 0x001
    assert x64._PAGE_RW == 0x002
    assert x64._PAGE_USER == 0x004
    assert x64._PAGE_PWT == 0x008
    assert x64._PAGE_PCD == 0x010
    assert x64._PAGE_ACCESSED == 0x020
    assert x64._PAGE_DIRTY == x64._PAGE_FILE == 0x040
    assert x64._PAGE_PROTNONE == x64._PAGE_PSE == 0x080
    assert x64.pte_format.mask("global_") == 0x100
    assert x64._PAGE_NX == 0x8000000000000000
    assert x64.PTE_MASK == 0x00003FFFFFFFF000
    assert x64._PAGE_TABLE == 0x67
    assert x64._KERNPG_TABLE == 0x63
    assert x64._PAGE_CHG_MASK == 0x00003FFFFFFFF060


@pytest.mark.parametrize("index", range(16), ids=_index_name)
def test_protection_map(x64: Arch, index: int) -> None:
    assert hex(x64.protection_map[index]) == hex(PROTECTION_MAP[_index_name(index)])


def test_protection_map_spot_values(x64: Arch) -> None:
    assert x64.protection_map[0] == 0xA0  # PAGE_NONE = PROTNONE|ACCESSED
    assert x64.protection_map[VM_READ] == 0x8000000000000025  # PAGE_READONLY
    assert x64.protection_map[VM_READ | VM_WRITE] == 0x8000000000000025  # PAGE_COPY
    assert x64.protection_map[VM_SHARED | VM_READ | VM_WRITE] == 0x8000000000000027
    assert x64.protection_map[VM_SHARED | VM_EXEC | VM_READ | VM_WRITE] == 0x27
    assert x64.protection_map[VM_EXEC | VM_READ] == 0x25  # PAGE_READONLY_EXEC


@given(pfn=pfns46, prot=prots)
def test_pfn_pte_and_pte_pfn(x64: Arch, pfn: int, prot: int) -> None:
    """pfn_pte: (pfn << PAGE_SHIFT) | prot, masked with __supported_pte_mask (NX supported);
    pte_pfn: the pfn back, the NX bit and the flags never leaking into it."""
    pte = x64.pfn_pte(pfn, prot)
    assert pte == (pfn << PAGE_SHIFT) | prot
    assert x64.pte_pfn(pte) == pfn


@given(pte=ptes)
def test_pte_pfn_masks_with_the_physical_mask(x64: Arch, pte: int) -> None:
    """pte_pfn(x) is ((x >> PAGE_SHIFT) & __PHYSICAL_MASK) in 2.6.15. On ptes whose bits 46..62
    are clear (all the kernel ever builds) that is also (x & PHYSICAL_PAGE_MASK) >> PAGE_SHIFT,
    the later kernels' form; the two differ only on bits 46..57."""
    assert x64.pte_pfn(pte) == (pte >> PAGE_SHIFT) & __PHYSICAL_MASK
    assert x64.pte_pfn(pte) == (pte & PHYSICAL_PAGE_MASK) >> PAGE_SHIFT
    assert x64.pte_pfn(pte | _PAGE_NX) == x64.pte_pfn(pte & ~_PAGE_NX)
    assert x64.leaf_paddr(PTE, pte) == pte & PTE_MASK


def test_pte_present_none_and_protnone(x64: Arch) -> None:
    """pte_present is PRESENT|PROTNONE: a PROT_NONE pte is present for Linux, not the MMU."""
    protnone = x64.pfn_pte(0x1234, PAGE_NONE)
    assert protnone == (0x1234 << 12) | 0xA0
    assert x64.pte_present(protnone)
    assert not x64.pte_hw_access_ok(protnone, write=False)
    assert not x64.pte_hw_access_ok(protnone, write=True)
    assert x64.pte_present(_PAGE_PRESENT)
    assert x64.pte_present(_PAGE_PROTNONE)
    assert not x64.pte_present(_PAGE_FILE | (5 << 12))  # a nonlinear file pte
    assert x64.pte_file(_PAGE_FILE | (5 << 12))
    assert not x64.pte_present(0)
    assert x64.pte_none(0)
    assert not x64.pte_none(_PAGE_NX)
    assert not x64.pte_none(1 << 12)


@given(pte=ptes)
def test_pte_predicates_read_single_bits(x64: Arch, pte: int) -> None:
    assert x64.pte_present(pte) == bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))
    assert x64.pte_write(pte) == bool(pte & _PAGE_RW)
    assert x64.pte_dirty(pte) == bool(pte & _PAGE_DIRTY)
    assert x64.pte_young(pte) == bool(pte & _PAGE_ACCESSED)
    assert x64.pte_file(pte) == bool(pte & _PAGE_FILE)
    assert x64.pte_none(pte) == (pte == 0)


@given(pte=ptes)
def test_pte_mk_helpers_touch_one_bit(x64: Arch, pte: int) -> None:
    assert x64.pte_wrprotect(pte) == pte & ~_PAGE_RW & U64
    assert x64.pte_mkwrite(pte) == pte | _PAGE_RW
    assert x64.pte_mkclean(pte) == pte & ~_PAGE_DIRTY & U64
    assert x64.pte_mkdirty(pte) == pte | _PAGE_DIRTY
    assert x64.pte_mkold(pte) == pte & ~_PAGE_ACCESSED & U64
    assert x64.pte_mkyoung(pte) == pte | _PAGE_ACCESSED


@given(pte=ptes, prot=prots)
def test_pte_modify_keeps_chg_mask(x64: Arch, pte: int, prot: int) -> None:
    """pte_modify: (pte & _PAGE_CHG_MASK) | newprot, masked with __supported_pte_mask."""
    assert x64.pte_modify(pte, prot) == (pte & _PAGE_CHG_MASK) | prot


def test_pte_modify_example(x64: Arch) -> None:
    """mprotect(PROT_READ) of a dirty, young, global, uncached shared-writable pte."""
    pte = x64.pfn_pte(0xABCDE, PAGE_SHARED) | _PAGE_DIRTY | _PAGE_GLOBAL | _PAGE_PCD
    new = x64.pte_modify(pte, PAGE_READONLY)
    assert new == (0xABCDE << 12) | _PAGE_DIRTY | PAGE_READONLY
    assert not x64.pte_write(new)
    assert x64.pte_dirty(new)
    assert x64.pte_young(new)
    # PROT_NONE: PRESENT goes, PROTNONE arrives, the page stays "present" for Linux
    none = x64.pte_modify(pte, PAGE_NONE)
    assert none == (0xABCDE << 12) | _PAGE_DIRTY | PAGE_NONE
    assert x64.pte_present(none)
    assert x64.pte_pfn(none) == 0xABCDE


def test_pgprot_noncached(x64: Arch) -> None:
    assert x64.pgprot_noncached(PAGE_SHARED) == PAGE_SHARED | _PAGE_PCD | _PAGE_PWT
    assert x64.pgprot_noncached(PAGE_NONE) == 0xB8


def test_hw_access_and_update(x64: Arch) -> None:
    ro = x64.pfn_pte(7, PAGE_READONLY)
    rw = x64.pfn_pte(7, PAGE_SHARED)
    assert x64.pte_hw_access_ok(ro, write=False)
    assert not x64.pte_hw_access_ok(ro, write=True)
    assert x64.pte_hw_access_ok(rw, write=True)
    kernel_only = rw & ~_PAGE_USER
    assert not x64.pte_hw_access_ok(kernel_only, write=False)
    old = x64.pte_mkold(rw)
    assert x64.pte_hw_update(old, write=False) == old | _PAGE_ACCESSED
    assert x64.pte_hw_update(old, write=True) == old | _PAGE_ACCESSED | _PAGE_DIRTY


@pytest.mark.parametrize("level", [PGD, PUD, PMD])
def test_mk_table_entry_is_page_table(x64: Arch, level: int) -> None:
    """pgd_populate/pud_populate/pmd_populate: the table's PA | _PAGE_TABLE (0x67)."""
    paddr = 0x12345000
    entry = x64.mk_table_entry(level, paddr)
    assert entry == paddr | 0x67
    assert x64.table_entry_paddr(level, entry) == paddr
    assert x64.table_entry_present(level, entry)
    assert not x64.table_entry_bad(level, entry)
    assert not x64.table_entry_leaf(level, entry)


BAD_CASES = [
    ("_PAGE_TABLE", _PAGE_TABLE),
    ("_KERNPG_TABLE", _KERNPG_TABLE),
    ("+NX", _PAGE_TABLE | _PAGE_NX),
    ("+PSE", _PAGE_TABLE | _PAGE_PSE),
    ("+GLOBAL", _PAGE_TABLE | _PAGE_GLOBAL),
    ("+PCD", _PAGE_TABLE | _PAGE_PCD),
    ("-ACCESSED", _PAGE_TABLE & ~_PAGE_ACCESSED),
    ("-DIRTY", _PAGE_TABLE & ~_PAGE_DIRTY),
    ("-RW", _PAGE_TABLE & ~_PAGE_RW),
    ("-PRESENT", _PAGE_TABLE & ~_PAGE_PRESENT),
    ("PRESENT", _PAGE_PRESENT),
    ("+bit 50", _PAGE_TABLE | (1 << 50)),
]


@pytest.mark.parametrize(("what", "flags"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_pgd_pud_bad(x64: Arch, what: str, flags: int) -> None:
    entry = 0x7654000 | flags
    assert x64.table_entry_bad(PGD, entry) == pgd_bad(entry)
    assert x64.table_entry_bad(PUD, entry) == pgd_bad(entry)


@pytest.mark.parametrize(("what", "flags"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_pmd_bad(x64: Arch, what: str, flags: int) -> None:
    entry = 0x7654000 | flags
    assert x64.table_entry_bad(PMD, entry) == pmd_bad(entry)


@given(
    pa=st.integers(0, PTE_MASK).map(lambda v: v & PTE_MASK),
    flags=st.integers(0, 0x1FF),
    nx=st.sampled_from([0, _PAGE_NX]),
)
def test_upper_bad_matches_header(x64: Arch, pa: int, flags: int, nx: int) -> None:
    entry = pa | flags | nx
    assert x64.table_entry_bad(PGD, entry) == pgd_bad(entry)
    assert x64.table_entry_bad(PUD, entry) == pgd_bad(entry)
    assert x64.table_entry_bad(PMD, entry) == pmd_bad(entry)


def test_large_pages(x64: Arch) -> None:
    """pmd_large: PSE|PRESENT. 2 MiB at the pmd, 1 GiB at the pud (hardware), none at the pgd."""
    two_m = 0x40000000 | 0x200000 | _PAGE_PSE | _PAGE_PRESENT | _PAGE_RW | _PAGE_USER
    assert x64.table_entry_leaf(PMD, two_m)
    assert x64.leaf_paddr(PMD, two_m | (1 << 12)) == 0x40200000  # bit 12 is PAT, not PA
    assert not x64.table_entry_leaf(PMD, two_m & ~_PAGE_PRESENT)
    assert x64.table_entry_leaf(PUD, 0x40000000 | _PAGE_PSE | _PAGE_PRESENT)
    assert x64.leaf_paddr(PUD, 0x40000000 | 0x200000 | _PAGE_PSE | _PAGE_PRESENT) == 0x40000000
    assert not x64.table_entry_leaf(PGD, 0x40000000 | _PAGE_PSE | _PAGE_PRESENT)


# the contract every registered arch keeps ---------------------------------------------------
ARCHES = list(default_registry().arches.values())
per_arch = pytest.mark.parametrize("arch", ARCHES, ids=[a.name for a in ARCHES])

# vm_flags & 0xf indices: what each means for the pte, whatever the arch's bits
PRIVATE_WRITE = [VM_WRITE, VM_READ | VM_WRITE, VM_EXEC | VM_WRITE, VM_EXEC | VM_READ | VM_WRITE]
SHARED_WRITE = [VM_SHARED | i for i in PRIVATE_WRITE]
READABLE = [i for i in range(16) if i & VM_READ]


def _edge_pfns(arch: Arch) -> list[int]:
    return [0, 1, arch.max_pfn]


@per_arch
def test_contract_pfn_round_trip_at_the_edges(arch: Arch) -> None:
    for pfn in _edge_pfns(arch):
        for index, prot in enumerate(arch.protection_map):
            pte = arch.pfn_pte(pfn, prot)
            assert arch.pte_pfn(pte) == pfn, (hex(pfn), _index_name(index))
            assert arch.pte_present(pte), _index_name(index)
            assert not arch.pte_none(pte)
            assert arch.leaf_paddr(len(arch.levels) - 1, pte) == pfn << arch.page_shift


@per_arch
@given(data=st.data())
def test_contract_pfn_round_trip(arch: Arch, data: st.DataObject) -> None:
    pfn = data.draw(st.integers(0, arch.max_pfn), label="pfn")
    prot = data.draw(st.sampled_from(arch.protection_map), label="prot")
    assert arch.pte_pfn(arch.pfn_pte(pfn, prot)) == pfn


@per_arch
def test_contract_protection_map_semantics(arch: Arch) -> None:
    """What generic mm code relies on: PROT_NONE is present to Linux but unreachable to the MMU;
    private writable mappings start write-protected (COW) and become writable through
    pte_mkwrite (do_wp_page); shared writable ones are pte_write; a young pte of a readable
    protection can be read by the MMU. (Whether a clean writable pte can be written without a
    fault is the arch's business: sparc64 takes a fault to set its hardware write bit.)"""
    pfn = 3
    none = arch.pfn_pte(pfn, arch.protection_map[0])
    assert arch.pte_present(none)
    assert not arch.pte_hw_access_ok(none, write=False)
    for index in PRIVATE_WRITE:
        pte = arch.pfn_pte(pfn, arch.protection_map[index])
        assert not arch.pte_write(pte), _index_name(index)
        assert not arch.pte_hw_access_ok(pte, write=True), _index_name(index)
        writable = arch.pte_mkyoung(arch.pte_mkdirty(arch.pte_mkwrite(pte)))
        assert arch.pte_hw_access_ok(writable, write=True), _index_name(index)
    for index in SHARED_WRITE:
        pte = arch.pfn_pte(pfn, arch.protection_map[index])
        assert arch.pte_write(pte), _index_name(index)
        dirty = arch.pte_mkyoung(arch.pte_mkdirty(pte))
        assert arch.pte_hw_access_ok(dirty, write=True), _index_name(index)
    for index in READABLE:
        pte = arch.pte_mkyoung(arch.pfn_pte(pfn, arch.protection_map[index]))
        assert arch.pte_hw_access_ok(pte, write=False), _index_name(index)


def _pte_strategy(arch: Arch) -> st.SearchStrategy[int]:
    return st.builds(
        arch.pfn_pte, st.integers(0, arch.max_pfn), st.sampled_from(arch.protection_map)
    )


#: (set op, clear op, test, the other tests that must not change), as in debug_vm_pgtable
PTE_PAIRS = {
    "write": ("pte_mkwrite", "pte_wrprotect", "pte_write", ("pte_dirty", "pte_young")),
    "dirty": ("pte_mkdirty", "pte_mkclean", "pte_dirty", ("pte_write", "pte_young")),
    "young": ("pte_mkyoung", "pte_mkold", "pte_young", ("pte_write", "pte_dirty")),
}


@per_arch
@pytest.mark.parametrize("pair", list(PTE_PAIRS))
@given(data=st.data())
def test_contract_pte_pair(arch: Arch, pair: str, data: st.DataObject) -> None:
    """Each mk/clear pair sets and clears its bit and leaves pfn, presence and the others."""
    set_name, clear_name, test_name, others = PTE_PAIRS[pair]
    set_op, clear_op = getattr(arch, set_name), getattr(arch, clear_name)
    test = getattr(arch, test_name)
    pte = data.draw(_pte_strategy(arch), label="pte")
    on = set_op(pte)
    off = clear_op(pte)
    assert test(on)
    assert not test(off)
    assert clear_op(on) == off
    assert set_op(off) == on
    for other in (on, off):
        assert arch.pte_pfn(other) == arch.pte_pfn(pte)
        assert arch.pte_present(other) == arch.pte_present(pte)
        for name in others:
            assert getattr(arch, name)(other) == getattr(arch, name)(pte)


@per_arch
@given(data=st.data())
def test_contract_pte_modify(arch: Arch, data: st.DataObject) -> None:
    """pte_modify keeps the page and its dirty/young state and takes the rest from newprot."""
    pte = data.draw(_pte_strategy(arch), label="pte")
    pte = arch.pte_mkdirty(arch.pte_mkyoung(pte)) if data.draw(st.booleans()) else pte
    prot = data.draw(st.sampled_from(arch.protection_map), label="newprot")
    new = arch.pte_modify(pte, prot)
    fresh = arch.pfn_pte(arch.pte_pfn(pte), prot)
    assert arch.pte_pfn(new) == arch.pte_pfn(pte)
    assert arch.pte_dirty(new) == (arch.pte_dirty(pte) or arch.pte_dirty(fresh))
    assert arch.pte_young(new) == (arch.pte_young(pte) or arch.pte_young(fresh))
    assert arch.pte_write(new) == arch.pte_write(fresh)
    assert arch.pte_present(new)
    assert arch.pte_modify(new, prot) == new


@per_arch
@given(data=st.data())
def test_contract_hw_update(arch: Arch, data: st.DataObject) -> None:
    pte = data.draw(_pte_strategy(arch), label="pte")
    write = data.draw(st.booleans(), label="write")
    after = arch.pte_hw_update(pte, write)
    # what an MMU may do on an access: set referenced/modified state, nothing else (x86 sets
    # ACCESSED, and DIRTY on a write; sparc64's software-filled TLB sets nothing)
    assert arch.pte_pfn(after) == arch.pte_pfn(pte)
    assert arch.pte_write(after) == arch.pte_write(pte)
    assert arch.pte_present(after) == arch.pte_present(pte)
    assert arch.pte_young(after) or not arch.pte_young(pte)
    assert arch.pte_dirty(after) or not arch.pte_dirty(pte)
    if not write:
        assert arch.pte_dirty(after) == arch.pte_dirty(pte), "a read does not dirty"
    assert arch.pte_hw_update(after, write) == after


@per_arch
def test_contract_noncached_keeps_the_protection(arch: Arch) -> None:
    for prot in arch.protection_map:
        nc = arch.pgprot_noncached(prot)
        pte = arch.pfn_pte(9, prot)
        ncpte = arch.pfn_pte(9, nc)
        assert arch.pte_pfn(ncpte) == 9
        assert arch.pte_write(ncpte) == arch.pte_write(pte)
        assert arch.pte_present(ncpte) == arch.pte_present(pte)
        assert arch.pgprot_noncached(nc) == nc


@per_arch
def test_contract_table_entries(arch: Arch) -> None:
    """Every upper level: mk_table_entry round-trips a table address and looks like a table
    (present, not bad, not a large-page leaf); a zero entry is not present. (Physical page 0
    is left out: sparc64 stores a table as ``paddr >> 11``, so a table there would read as
    none; no machine puts one there.)"""
    page = arch.page_size
    top = (1 << arch.phys_bits) - page
    for level in range(len(arch.levels) - 1):
        for paddr in (page, 5 * page, top):
            entry = arch.mk_table_entry(level, paddr)
            name = arch.levels[level].name
            assert arch.table_entry_paddr(level, entry) == paddr, (name, hex(paddr))
            assert arch.table_entry_present(level, entry), name
            assert not arch.table_entry_bad(level, entry), name
            assert not arch.table_entry_leaf(level, entry), name
        assert not arch.table_entry_present(level, 0)
        assert not arch.table_entry_leaf(level, 0)


@per_arch
@given(data=st.data())
def test_contract_table_entry_round_trip(arch: Arch, data: st.DataObject) -> None:
    level = data.draw(st.integers(0, len(arch.levels) - 2), label="level")
    pfn = data.draw(st.integers(1, arch.max_pfn), label="table pfn")
    entry = arch.mk_table_entry(level, pfn << arch.page_shift)
    assert arch.table_entry_paddr(level, entry) == pfn << arch.page_shift
    assert not arch.table_entry_bad(level, entry)
