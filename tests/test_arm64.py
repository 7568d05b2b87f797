"""arm64: geometry, encodings and decoding checked against their sources.

The oracles, by test: the kernel's headers of Linux 6.1 (arch/arm64/include/asm/
pgtable-hwdef.h, pgtable-prot.h, pgtable.h, pgalloc.h, memory.h) for bit positions, the
protection map and the pte operations; the Arm ARM (DDI 0487, D8.3 "Translation table
descriptor formats", D8.6.1 "The Contiguous bit", D19 TTBR0_EL1/TTBR1_EL1) for the levels that
may hold blocks, the descriptor types and the contiguous groups. The tables these tests decode
are built by hand; the expected answers are worked out from those rules, not from pfnmap.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from decode_synth import Tables

from pfnmap import MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE, Machine
from pfnmap.arches.arm64 import VARIANTS
from pfnmap.decode.descriptors import CONTIGUOUS, RESERVED_ENCODING
from pfnmap.decode.walker import Problem, Walker, leaves
from pfnmap.kernel.constants import VM_READ, VM_SHARED, VM_WRITE
from pfnmap.plugins.manager import default_registry

NAMES = [v.name for v in VARIANTS]


def arch_of(name: str):
    return default_registry().get(name)


def split(items) -> tuple[list, list[Problem]]:
    out, problems = [], []
    for item in items:
        (problems if isinstance(item, Problem) else out).append(item)
    return out, problems


# geometry (ARM64_HW_PGTABLE_LEVELS, ARM64_HW_PGTABLE_LEVEL_SHIFT, PTRS_PER_PGD) ----------------
GEOMETRY = {
    # name: (page size, [(level, entries, span)], block sizes allowed without LPA2)
    "arm64-4k-39": (4096, [("pgd", 512, 1 << 30), ("pmd", 512, 1 << 21), ("pte", 512, 4096)]),
    "arm64-4k-48": (
        4096,
        [("pgd", 512, 1 << 39), ("pud", 512, 1 << 30), ("pmd", 512, 1 << 21), ("pte", 512, 4096)],
    ),
    "arm64-16k-47": (
        16384,
        [("pgd", 2048, 1 << 36), ("pmd", 2048, 1 << 25), ("pte", 2048, 1 << 14)],
    ),
    "arm64-64k-42": (65536, [("pgd", 8192, 1 << 29), ("pte", 8192, 1 << 16)]),
    "arm64-64k-52": (
        65536,
        [("pgd", 1024, 1 << 42), ("pmd", 8192, 1 << 29), ("pte", 8192, 1 << 16)],
    ),
}
#: the Arm ARM's block levels: 4K at L1 and L2; 16K at L2; 64K at L2, and L1 with FEAT_LPA
BLOCKS = {
    "arm64-4k-39": [1 << 30, 1 << 21],
    "arm64-4k-48": [1 << 30, 1 << 21],
    "arm64-16k-47": [1 << 25],
    "arm64-64k-42": [1 << 29],
    "arm64-64k-52": [1 << 42, 1 << 29],
}


@pytest.mark.parametrize("name", NAMES)
def test_geometry_is_the_kernels(name: str) -> None:
    arch = arch_of(name)
    page, levels = GEOMETRY[name]
    assert arch.page_size == page
    assert [(lv.name, lv.entries, lv.span) for lv in arch.levels] == levels
    assert arch.large_page_sizes() == BLOCKS[name]
    top = arch.levels[0]
    assert top.shift + top.bits == arch.va_bits
    assert arch.task_size == 1 << arch.va_bits  # TASK_SIZE_64
    assert (arch.elf_machine, arch.elf_class, arch.qemu_monitor_mode) == (183, 2, None)


def test_bits_are_where_the_headers_put_them() -> None:
    """pgtable-hwdef.h and pgtable-prot.h, bit by bit."""
    arch = arch_of("arm64-4k-48")
    expect = {
        "PTE_VALID": 1 << 0,
        "PTE_TABLE_BIT": 1 << 1,
        "PTE_ATTRINDX_MASK": 7 << 2,
        "PTE_USER": 1 << 6,
        "PTE_RDONLY": 1 << 7,
        "PTE_SHARED": 3 << 8,
        "PTE_AF": 1 << 10,
        "PTE_NG": 1 << 11,
        "PTE_GP": 1 << 50,
        "PTE_DBM": 1 << 51,
        "PTE_WRITE": 1 << 51,
        "PTE_CONT": 1 << 52,
        "PTE_PXN": 1 << 53,
        "PTE_UXN": 1 << 54,
        "PTE_DIRTY": 1 << 55,
        "PTE_SPECIAL": 1 << 56,
        "PTE_DEVMAP": 1 << 57,
        "PTE_PROT_NONE": 1 << 58,
        "PMD_TABLE_PXN": 1 << 59,
        "PMD_TABLE_UXN": 1 << 60,
        "PTE_ADDR_LOW": ((1 << 36) - 1) << 12,
    }
    assert {k: getattr(arch, k) for k in expect} == expect
    assert arch.special_mask == 1 << 56


def test_protections_are_pgtable_prot_h() -> None:
    """PAGE_SHARED = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN |
    PTE_WRITE with _PAGE_DEFAULT = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_ATTRINDX(MT_NORMAL)
    and MT_NORMAL 0: 0x0068000000000fc3; PAGE_NONE drops VALID and adds PROT_NONE."""
    arch = arch_of("arm64-4k-48")
    assert arch.PAGE_SHARED == 0x0068_0000_0000_0FC3
    assert arch.PAGE_SHARED_EXEC == 0x0028_0000_0000_0FC3
    assert arch.PAGE_READONLY == 0x0060_0000_0000_0FC3
    assert arch.PAGE_READONLY_EXEC == 0x0020_0000_0000_0FC3
    assert arch.PAGE_NONE == 0x0460_0000_0000_0F82
    pmap = arch.protection_map
    # __P010/__P011 (private writable) are PAGE_READONLY: COW; __S011 is PAGE_SHARED
    assert pmap[VM_WRITE | VM_READ] == arch.PAGE_READONLY
    assert pmap[VM_SHARED | VM_WRITE | VM_READ] == arch.PAGE_SHARED
    # pgprot_noncached: AttrIndx MT_DEVICE_nGnRnE (3), PXN | UXN
    assert arch.pgprot_noncached(arch.PAGE_SHARED) == 0x0068_0000_0000_0FCF


def test_dirty_follows_the_dbm_table_of_pgtable_h() -> None:
    """The "Dirty Writable | PTE_RDONLY PTE_WRITE PTE_DIRTY" table of pgtable.h, and what
    the MMU does with DBM (TCR_EL1.HD): a store to a writable clean page clears AP[2]."""
    arch = arch_of("arm64-4k-48")
    clean_rw = arch.pfn_pte(0x1234, arch.PAGE_SHARED)
    assert arch.pte_write(clean_rw) and not arch.pte_dirty(clean_rw)
    assert clean_rw & arch.PTE_RDONLY
    assert arch.pte_hw_access_ok(clean_rw, write=True)  # DBM lets the store through
    stored = arch.pte_hw_update(clean_rw, write=True)
    assert stored == clean_rw & ~arch.PTE_RDONLY  # AF was already set by PAGE_SHARED
    assert arch.pte_hw_dirty(stored) and arch.pte_dirty(stored) and not arch.pte_sw_dirty(stored)
    # write-protecting a hardware-dirty pte keeps it dirty in software
    wp = arch.pte_wrprotect(stored)
    assert wp & arch.PTE_DIRTY and wp & arch.PTE_RDONLY and not wp & arch.PTE_WRITE
    assert arch.pte_dirty(wp) and not arch.pte_hw_access_ok(wp, write=True)
    # an old pte: the MMU sets AF (TCR_EL1.HA), it does not fault
    old = arch.pte_mkold(clean_rw)
    assert arch.pte_hw_access_ok(old, write=False)
    assert arch.pte_hw_update(old, write=False) == clean_rw
    # EL0 needs AP[1]; a kernel pte (no PTE_USER) faults
    assert not arch.pte_hw_access_ok(clean_rw & ~arch.PTE_USER, write=False)


def test_52_bit_physical_addresses_split_across_the_descriptor() -> None:
    """With 64K pages and FEAT_LPA, PA[51:48] sit in descriptor bits 15..12
    (__phys_to_pte_val: ``(phys | phys >> 36) & PTE_ADDR_MASK``)."""
    arch = arch_of("arm64-64k-52")
    phys = 0xA_BCDE_F012_0000
    pte = arch.pfn_pte(phys >> 16, arch.PAGE_SHARED)
    assert (pte >> 12) & 0xF == 0xA  # PA[51:48]
    assert pte & ((1 << 48) - 1) & ~0xFFFF == phys & ((1 << 48) - 1)
    assert arch.pte_pfn(pte) == phys >> 16
    assert arch.pte_format.decode(pte)["oa_high"] == 0xA
    table = arch.mk_table_entry(1, phys)
    assert arch.table_entry_paddr(1, table) == phys
    assert table & arch.PMD_TABLE_PXN and table & 3 == 3


def test_ttbr_values_become_roots() -> None:
    """TTBRn_EL1: ASID in 63..48, BADDR below, CnP in bit 0; with 52-bit PAs BADDR[51:48]
    in bits 5..2. TTBR1 maps the top 2**VA_BITS bytes."""
    arch = arch_of("arm64-4k-48")
    assert arch.root_from_register("ttbr0", 0x0042_0000_4123_4001) == (0x4123_4000, 0)
    root, va = arch.root_from_register("ttbr1", 0x0000_0000_4000_0000)
    assert (root, va) == (0x4000_0000, 0xFFFF_0000_0000_0000)
    with pytest.raises(ValueError, match="reserved bits 0x10"):
        arch.root_from_register("ttbr0", 0x4000_0010)
    with pytest.raises(ValueError, match="no root register"):
        arch.root_from_register("cr3", 0x1000)
    lpa = arch_of("arm64-64k-52")
    assert lpa.root_from_register("ttbr0", 0x0001_0000_0004_0000 | (0x3 << 2)) == (
        0x0003_0000_0004_0000,
        0,
    )
    assert lpa.root_from_register("ttbr1", 0)[1] == 0xFFF0_0000_0000_0000


# the emulator ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["arm64-4k-48", "arm64-64k-52"])
def test_devmem_ptes_carry_the_special_bit_only_in_2_6_26(name: str) -> None:
    """remap_pfn_range sets pte_mkspecial only under rules with pte_special (2.6.26): under
    2.6.15 the arm64 pte has no PTE_SPECIAL, and vm_normal_page decides by VM_PFNMAP."""
    for era, special in (("2.6.15", False), ("2.6.26", True)):
        m = Machine(arch=name, ram="16M", era=era)
        arch = m.arch
        p = m.spawn("x")
        fd = p.open("/dev/mem", O_RDWR)
        region = m.phys.io_regions[0]
        addr = p.mmap(arch.page_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset=region.start)
        p.write(addr, b"arm64")
        raw = p.lookup(addr).raw
        assert arch.pte_special(raw) is special, era
        assert arch.pte_pfn(raw) == region.start >> arch.page_shift
        assert raw & arch.PTE_ATTRINDX_MASK == arch.pte_attrindx(0)  # /dev/mem: no O_SYNC
        assert m.phys.read(region.start, 5) == b"arm64"
        p.exit()
        m.check_invariants()


# decoding hand-built tables -------------------------------------------------------------------
def _rw(arch, pfn: int) -> int:
    return arch.pte_mkyoung(arch.pfn_pte(pfn, arch.PAGE_SHARED))


def test_blocks_and_pages_decode_to_the_arm_arm_addresses() -> None:
    """A 1 GiB L1 block, a 2 MiB L2 block and a page, 4K granule (D8.3): output address =
    the block's OA bits plus the VA bits below its level."""
    arch = arch_of("arm64-4k-48")
    t = Tables(arch, size=64 * 4096)
    prot = arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]
    t.set_leaf(1 << 30, 1, arch.mk_large_entry(1 << 30, 0x80000, prot))  # PA 2 GiB
    t.set_leaf(3 << 21, 2, arch.mk_large_entry(1 << 21, 0x400, prot))  # PA 4 MiB
    t.set_leaf(0x7F_FFFF_F000, 3, _rw(arch, 0x1234))
    items, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert problems == []
    got = [(x.va, x.pa, x.size, x.level) for x in items]
    assert got == [
        (3 << 21, 0x40_0000, 1 << 21, 2),
        (1 << 30, 0x8000_0000, 1 << 30, 1),
        (0x7F_FFFF_F000, 0x123_4000, 4096, 3),
    ]


def test_ttbr1_walks_the_kernel_half() -> None:
    """A TTBR1 table's entry 0 maps 0xffff000000000000 (VA_BITS 48, T1SZ 16)."""
    arch = arch_of("arm64-4k-48")
    t = Tables(arch, size=16 * 4096)
    kernel = arch.pfn_pte(0x40, arch.PAGE_SHARED & ~arch.PTE_USER) | arch.PTE_AF
    t.set_leaf(0x8000, 3, kernel)
    root, va_base = arch.root_from_register("ttbr1", t.root | (0x5 << 48))
    items, problems = split(leaves(Walker(t.image(), arch, root, va_base=va_base), arch))
    assert problems == []
    assert [(x.va, x.pa) for x in items] == [(0xFFFF_0000_0000_8000, 0x40 << 12)]


def test_reserved_encodings_are_problems_and_not_followed() -> None:
    """Type 0b01 at level 3 is reserved (D8.3: a translation fault), and so is 0b01 in the
    16K granule's level 1 (no blocks there without LPA2): one record each, no traceback, and
    the level-1 entry is not walked as a table."""
    arch = arch_of("arm64-16k-47")
    t = Tables(arch, size=16 * 16384)
    good = _rw(arch, 0x99)
    slot = t.set_leaf(0x4000, 2, good)
    t.write(2, slot & ~0x3FFF, 2, good & ~arch.PTE_TABLE_BIT)  # a "block" pte at VA 0x8000
    bogus = 0x4000 | arch.PTE_VALID  # 0b01 in the pgd
    t.write(0, t.root, 5, bogus)
    items, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    kinds = sorted((p.kind, p.level_name, p.va) for p in problems)
    assert kinds == [(RESERVED_ENCODING, "pgd", 5 << 36), (RESERVED_ENCODING, "pte", 0x8000)]
    assert [x.va for x in items] == [0x4000, 0x8000]  # the pte is still shown, as QEMU would
    assert not arch.table_entry_present(0, bogus)


def _cont_group(arch, t: Tables, va: int, pfn: int) -> list[int]:
    last = len(arch.levels) - 1
    n = arch.contiguous_entries(last)
    slots = []
    for k in range(n):
        pte = arch.pte_mkcont(_rw(arch, pfn + k))
        slots.append(t.set_leaf(va + k * arch.page_size, last, pte))
    return slots


@pytest.mark.parametrize("name", ["arm64-4k-48", "arm64-16k-47", "arm64-64k-42"])
def test_a_consistent_contiguous_group_is_clean(name: str) -> None:
    """CONT_PTES (16, 128, 32 for 4K, 16K, 64K) aligned entries, consecutive OAs, one set of
    attributes: no problem; AF and the dirty state may differ per entry."""
    arch = arch_of(name)
    last = len(arch.levels) - 1
    n = arch.contiguous_entries(last)
    assert n == {"arm64-4k-48": 16, "arm64-16k-47": 128, "arm64-64k-42": 32}[name]
    t = Tables(arch, size=8 * max(arch.page_size, 8192) * 2)
    slots = _cont_group(arch, t, 0, 16 * n)
    table, index = slots[3] & arch.page_mask, (slots[3] & ~arch.page_mask) // 8
    value = t.read(last, table, index)
    t.write(last, table, index,
            arch.pte_mkold(arch.pte_mkdirty(value)))  # fmt: skip
    items, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert problems == [] and len(items) == n


def test_a_disagreeing_contiguous_group_is_reported_per_entry() -> None:
    """Entry 5 points elsewhere, entry 9 is read-only, entry 15 lacks the bit, entry 12 is
    missing: one record for each, naming the group (D8.6.1 misprogramming)."""
    arch = arch_of("arm64-4k-48")
    t = Tables(arch, size=16 * 4096)
    slots = _cont_group(arch, t, 0x20_0000, 0x300)
    table = slots[0] & arch.page_mask

    def put(k: int, value: int) -> None:
        t.write(3, table, (slots[k] - table) // 8, value)

    def get(k: int) -> int:
        return t.read(3, table, (slots[k] - table) // 8)

    put(5, arch.pte_mkcont(_rw(arch, 0x777)))
    put(9, get(9) & ~arch.PTE_WRITE)
    put(15, get(15) & ~arch.PTE_CONT)
    put(12, 0)
    items, problems = split(leaves(Walker(t.image(), arch, t.root, grouped=True), arch))
    assert {p.kind for p in problems} == {CONTIGUOUS}
    details = sorted(p.detail.split(": ", 1)[1] for p in problems)
    assert details == [
        "entries 12 of the group are not valid leaves",
        "entry 15 lacks the contiguous bit",
        "entry 5 maps 0x777000, not 0x305000",
        f"entry 9 attributes differ in bits {arch.PTE_WRITE:#x}",
    ]
    assert all("contiguous group of 16 pte entries at VA 0x200000" in p.detail for p in problems)
    assert len(items) == 15


def test_vectorised_predicates_find_the_eq_form() -> None:
    """pmd_sect is "VALID set and TABLE_BIT clear": neither any-of nor all-of bits."""
    arch = arch_of("arm64-4k-48")
    from pfnmap.arch.vector import table_ops

    leaf = table_ops(arch).levels[2].leaf
    assert leaf is not None and leaf.form == ("eq", 0b11) and leaf.value == 0b01
    vals = np.array([0b01, 0b11, 0b10, 0, 0x1234_5001], dtype=np.uint64)
    assert leaf(vals).tolist() == [True, False, False, False, True]
    assert leaf.holds_for_all(np.array([0b01, 0xF01], dtype=np.uint64))
    assert not leaf.holds_for_all(np.array([0b01, 0b11], dtype=np.uint64))


def test_decode_command_takes_ttbr_values(tmp_path, capsys) -> None:
    """``--root ttbr0:VALUE`` strips the ASID; a TTBR with reserved bits is one line, exit 2."""
    from pfnmap.cli.main import main

    arch = arch_of("arm64-4k-48")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x40_0000, 3, _rw(arch, 0x12))
    image = tmp_path / "arm64.raw"
    image.write_bytes(bytes(t.buf))
    ttbr = (0x2A << 48) | t.root | 1  # ASID 42, CnP
    code = main(["decode", str(image), "--arch", arch.name, "--root", f"ttbr0:{ttbr:#x}",
                 "--format", "jsonl"])  # fmt: skip
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    leaves_ = [(r["va"], r["pa"]) for r in records if r.get("record") == "leaf"]
    assert code == 0 and leaves_ == [("0x400000", "0x12000")]
    code = main(["decode", str(image), "--arch", arch.name, "--root", "ttbr0:0x1008"])
    err = capsys.readouterr().err
    assert code == 2 and "reserved bits 0x8" in err and "Traceback" not in err
