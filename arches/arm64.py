"""arm64 (AArch64) stage-1 translation for EL0, with Linux's arm64 pte operations.

An anachronism, said plainly: arm64 Linux arrived in 3.7 (2012). The bit names, protections
and pte operations below are those of arch/arm64/include/asm/pgtable-hwdef.h, pgtable-prot.h,
pgtable.h, pgalloc.h and memory.h of Linux 6.1 (the kernel Debian 12 ships), with two later
fixes to the software dirty bit that the conformance kit would otherwise flag (see
:meth:`Arm64Arch.pte_mkwrite` and :meth:`Arm64Arch.pte_modify`); pfnmap runs them under its
2.6.15 core, as it runs Linux 6.6's riscv operations in the RISC-V example.

Variants (one class each, all described by :class:`Arm64Arch`):

============  ========  ======  ======  =====================================  ===========
name          granule   VA      levels  blocks (Arm ARM, "Translation table    PA
                                        descriptor formats", without LPA2)
============  ========  ======  ======  =====================================  ===========
arm64-4k-39   4 KiB     39      3       L1 1 GiB, L2 2 MiB                     48
arm64-4k-48   4 KiB     48      4       L1 1 GiB, L2 2 MiB                     48
arm64-16k-47  16 KiB    47      3       L2 32 MiB                              48
arm64-64k-42  64 KiB    42      2       L2 512 MiB                             48
arm64-64k-52  64 KiB    52      3       L1 4 TiB (FEAT_LPA), L2 512 MiB        52 (LPA)
============  ========  ======  ======  =====================================  ===========

Each level resolves ``PAGE_SHIFT - 3`` VA bits (a table is one granule of 8-byte entries);
the top level takes what is left (``PTRS_PER_PGD = 1 << (VA_BITS - PGDIR_SHIFT)``: 1024 entries
for 64K/52-bit). The levels are named as Linux folds them (pgd, [pud,] [pmd,] pte).

Descriptors (64-bit, little-endian). Bits 1..0 say what an entry is: ``0b11`` a table (levels
0..2) or a page (level 3), ``0b01`` a block (only at the levels above; reserved, so a fault,
at level 3 and at a level the granule gives no blocks), ``x0`` invalid. Page and block
descriptors share their attribute bits, named as the kernel names them: VALID, TABLE_BIT,
AttrIndx[2:0] (an index into MAIR_EL1; Linux: MT_NORMAL 0, MT_NORMAL_TAGGED 1, MT_NORMAL_NC 2,
MT_DEVICE_nGnRnE 3, MT_DEVICE_nGnRE 4), NS, AP[1] (PTE_USER), AP[2] (PTE_RDONLY), SH[1:0],
AF, nG, the output address, GP (BTI), DBM (Linux's PTE_WRITE), Contiguous, PXN, UXN, and the
software bits PTE_DIRTY (55), PTE_SPECIAL (56), PTE_DEVMAP (57), PTE_PROT_NONE (58, only in a
not-valid pte). With 64K pages and 52-bit PAs (FEAT_LPA) PA bits 51..48 live in descriptor
bits 15..12 (PTE_ADDR_HIGH, shifted by 36). Table descriptors carry NSTable, APTable,
UXNTable and PXNTable; Linux sets PXNTable in every user table entry (pgalloc.h, since 5.13).

Write and dirty with hardware DBM (the table in pgtable.h): a writable clean pte has
PTE_WRITE (= DBM) and PTE_RDONLY; a store through it is allowed and the MMU clears RDONLY,
which is the hardware-dirty state (``pte_hw_dirty``: WRITE and not RDONLY). ``pte_dirty`` is
that or the software PTE_DIRTY. A write-protected pte has RDONLY and no DBM, so no store goes
through, however dirty it is.

The MMU modelled: ARMv8.1 hardware access flag and dirty state (TCR_EL1.HA and HD set, as
Linux sets them where the CPU has FEAT_HAFDBS, e.g. QEMU's ``-cpu max``): an access sets AF,
a store to a DBM page clears RDONLY. An EL0 access needs VALID and AP[1]; a store also needs
AP[2] clear or DBM. An output address beyond the PA size (the ``pa_high`` bits set) is an
address size fault. PAN, execute permissions and MAIR attributes do not decide a load or store.

What pfnmap adds that 6.1 no longer has: ``pte_file``. arm64 had nonlinear file ptes from 3.7
until remap_file_pages became an emulation (3.20): PTE_FILE was bit 2 of a not-valid pte
("only when !pte_present()"), which is what :meth:`Arm64Arch.pte_file` tests.

pte_special and the eras. arm64 had PTE_SPECIAL (bit 56) from its first kernel: 3.7 already
defined ``__HAVE_ARCH_PTE_SPECIAL``. :attr:`Arm64Arch.special_mask` names the bit, and the eras
whose rules have ``pte_special`` (2.6.26) use it as on x86. The earlier eras (unpaged, seed,
2.6.15) never ask for it: their vm_normal_page follows VM_PFNMAP and the vm_pgoff rule, and
remap_pfn_range writes no special bit, so they run on arm64 exactly as they ran on i386 in
2005 - a kernel that could not have existed, run on purpose to compare the rules.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

import construct as cs
import numpy as np

from pfnmap.arch import Arch, Level
from pfnmap.arch.contract import standard_protection_map
from pfnmap.errors import KernelError
from pfnmap.plugins import hookimpl

Bit = cs.Flag

#: EM_AARCH64 (include/uapi/linux/elf-em.h)
EM_AARCH64 = 183
#: PTE_ADDR_HIGH_SHIFT with 64K pages and 52-bit PAs: PA bits 51..48 sit at 15..12
PTE_ADDR_HIGH_SHIFT = 36
#: memory.h (5.11 on): MAIR_EL1 slots Linux programs
MT_NORMAL, MT_NORMAL_TAGGED, MT_NORMAL_NC, MT_DEVICE_nGnRnE, MT_DEVICE_nGnRE = range(5)
#: CONFIG_ARM64_CONT_PTE_SHIFT and CONFIG_ARM64_CONT_PMD_SHIFT by PAGE_SHIFT (arch/arm64/Kconfig)
CONT_PTE_SHIFT = {12: 4, 14: 7, 16: 5}
CONT_PMD_SHIFT = {12: 4, 14: 5, 16: 5}


def _high_attrs() -> list[cs.Construct]:
    """Bits 63..50 of a page or block descriptor (upper attributes and software bits)."""
    return [
        "swbits63" / Bit,  # 63: in PTE_SWBITS_MASK, ignored by the MMU
        "po_idx" / cs.BitsInteger(3),  # 62..60: PTE_PO_IDX (POIndex, FEAT_S1POE; PBHA before)
        "ignored59" / Bit,  # 59: ignored (PBHA[0] with FEAT_HPDS2)
        "prot_none" / Bit,  # 58: PTE_PROT_NONE (software, only when !PTE_VALID)
        "devmap" / Bit,  # 57: PTE_DEVMAP (software)
        "special" / Bit,  # 56: PTE_SPECIAL (software)
        "dirty" / Bit,  # 55: PTE_DIRTY (software)
        "uxn" / Bit,  # 54: PTE_UXN
        "pxn" / Bit,  # 53: PTE_PXN
        "cont" / Bit,  # 52: PTE_CONT, the contiguous hint
        "dbm" / Bit,  # 51: PTE_DBM, also Linux's PTE_WRITE
        "gp" / Bit,  # 50: PTE_GP, BTI guarded page
        # 49..48: output address bits with FEAT_LPA2 (4K/16K); RES0 in every variant here
        "pa_high" / cs.BitsInteger(2),
    ]


def _low_attrs() -> list[cs.Construct]:
    """Bits 11..0 of a page or block descriptor (lower attributes and the type)."""
    return [
        "ng" / Bit,  # 11: PTE_NG
        "af" / Bit,  # 10: PTE_AF, the access flag
        "sh" / cs.BitsInteger(2),  # 9..8: SH[1:0] (PTE_SHARED = inner shareable)
        "rdonly" / Bit,  # 7: AP[2], PTE_RDONLY
        "user" / Bit,  # 6: AP[1], PTE_USER
        "ns" / Bit,  # 5: NS
        "attrindx" / cs.BitsInteger(3),  # 4..2: AttrIndx[2:0] (PTE_ATTRINDX, into MAIR_EL1)
        "table" / Bit,  # 1: PTE_TABLE_BIT (1: page at level 3; 0: block above it)
        "valid" / Bit,  # 0: PTE_VALID
    ]


def _wrap(fields: list[cs.Construct]) -> cs.Construct:
    # descriptors are stored little-endian; fields are listed from bit 63 down
    return cs.ByteSwapped(cs.BitStruct(*fields))


def _address(span_shift: int, page_shift: int, lpa: bool, name: str) -> list[cs.Construct]:
    """Bits 47..12 of a descriptor: the output address from ``span_shift`` up, then the bits
    below it (RES0 in a block; PA[51:48] in 15..12 with 64K pages and FEAT_LPA)."""
    low = 16 if lpa else 12
    fields: list[cs.Construct] = [name / cs.BitsInteger(48 - span_shift)]
    if span_shift > low:
        fields.append(
            ("reserved_oa" if name == "oa" else "reserved_low") / cs.BitsInteger(span_shift - low)
        )
    if lpa:
        fields.append((name + "_high") / cs.BitsInteger(4))  # PTE_ADDR_HIGH: PA[51:48]
    assert page_shift <= span_shift
    return fields


def page_layout(page_shift: int, lpa: bool = False) -> cs.Construct:
    """A level-3 page descriptor (pte_t)."""
    return _wrap(_high_attrs() + _address(page_shift, page_shift, lpa, "oa") + _low_attrs())


def block_layout(span_shift: int, page_shift: int, lpa: bool = False) -> cs.Construct:
    """A level-1 or level-2 block descriptor (a section: pud/pmd with PMD_TYPE_SECT)."""
    return _wrap(_high_attrs() + _address(span_shift, page_shift, lpa, "oa") + _low_attrs())


def table_layout(page_shift: int, lpa: bool = False) -> cs.Construct:
    """A table descriptor of levels 0..2 (PMD_TYPE_TABLE): the next table's address."""
    return _wrap(
        [
            "nstable" / Bit,  # 63: NSTable
            "aptable" / cs.BitsInteger(2),  # 62..61: APTable (S1_TABLE_AP)
            "uxntable" / Bit,  # 60: PMD_TABLE_UXN (UXNTable)
            "pxntable" / Bit,  # 59: PMD_TABLE_PXN (PXNTable)
            "ignored_high" / cs.BitsInteger(8),  # 58..51: ignored
            "reserved_high" / Bit,  # 50: RES0
            "pa_high" / cs.BitsInteger(2),  # 49..48: table address bits with LPA2; RES0 here
        ]
        + _address(page_shift, page_shift, lpa, "table_addr")
        + [
            "ignored11" / Bit,  # 11: ignored
            "table_af" / Bit,  # 10: PMD_TABLE_AF (FEAT_HAFT; ignored without it)
            "ignored_low" / cs.BitsInteger(8),  # 9..2: ignored
            "table" / Bit,  # 1: PMD_TABLE_BIT
            "valid" / Bit,  # 0: PMD_SECT_VALID / PTE_VALID
        ]
    )


def arm64_levels(
    page_shift: int, va_bits: int, block_shifts: tuple[int, ...], lpa: bool
) -> tuple[Level, ...]:
    """The levels of a granule and VA size, top first, named as Linux folds them.

    ``block_shifts`` are the spans (as shifts) of the levels that may hold block descriptors.
    """
    per_level = page_shift - 3
    count = (va_bits - 4) // per_level  # ARM64_HW_PGTABLE_LEVELS(va_bits)
    names = {4: ("pgd", "pud", "pmd", "pte"), 3: ("pgd", "pmd", "pte"), 2: ("pgd", "pte")}[count]
    table = table_layout(page_shift, lpa)
    levels = []
    for i, name in enumerate(names):
        hw_level = 4 - count + i
        shift = per_level * (3 - hw_level) + page_shift  # ARM64_HW_PGTABLE_LEVEL_SHIFT
        bits = va_bits - shift if i == 0 else per_level
        if i == count - 1:
            levels.append(Level(name, shift, bits, 8, None, page_layout(page_shift, lpa), "pte"))
            continue
        leaf = leaf_name = None
        if shift in block_shifts:
            leaf = block_layout(shift, page_shift, lpa)
            leaf_name = f"{name}-{_size_name(1 << shift)}"
        levels.append(Level(name, shift, bits, 8, table, leaf, leaf_name or ""))
    return tuple(levels)


def _size_name(size: int) -> str:
    for unit, suffix in ((1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if size >= unit:
            return f"{size // unit}{suffix}"
    return str(size)


class Arm64Arch(Arch):
    """The arm64 pte operations (Linux 6.1 names), masks derived from the layouts. A variant
    states its granule, VA size, PA size and which levels hold blocks."""

    byteorder = "little"
    canonical = False  # TTBR0 walks user VAs from 0; the kernel half is TTBR1's (decoder)
    elf_machine = EM_AARCH64
    elf_class = 2  # ELFCLASS64
    uname_machine = "aarch64"  # what kdump headers record in utsname.machine
    qemu_monitor_mode = None  # QEMU's monitor has no info tlb/mem for Arm
    #: whether PAs are 52 bits with 64K pages (FEAT_LPA, CONFIG_ARM64_PA_BITS_52)
    lpa: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        pte = self.pte_format
        m = pte.mask
        self.PTE_VALID = m("valid")
        self.PTE_TABLE_BIT = m("table")
        self.PTE_TYPE_PAGE = self.PTE_VALID | self.PTE_TABLE_BIT
        self.PTE_ATTRINDX_MASK = m("attrindx")
        self._attrindx_shift = pte.fields["attrindx"].shift
        self.PTE_NS = m("ns")
        self.PTE_USER = m("user")
        self.PTE_RDONLY = m("rdonly")
        self.PTE_SHARED = m("sh")
        self.PTE_AF = m("af")
        self.PTE_NG = m("ng")
        self.PTE_GP = m("gp")
        self.PTE_DBM = self.PTE_WRITE = m("dbm")
        self.PTE_CONT = self.contiguous_mask = m("cont")
        self.PTE_PXN = m("pxn")
        self.PTE_UXN = m("uxn")
        self.PTE_DIRTY = m("dirty")
        self.PTE_SPECIAL = self.special_mask = m("special")
        self.PTE_DEVMAP = m("devmap")
        self.PTE_PROT_NONE = m("prot_none")
        #: 3.7 to 3.19: PTE_FILE, bit 2 of a not-present pte (see the module docstring)
        self.PTE_FILE = 1 << self._attrindx_shift
        self.PTE_ADDR_LOW = m("oa")
        self.PTE_ADDR_HIGH = m("oa_high") if self.lpa else 0
        self.PTE_ADDR_MASK = self.PTE_ADDR_LOW | self.PTE_ADDR_HIGH
        #: bits that make an output address larger than the PA size: an address size fault
        self._oa_too_wide = m("pa_high")
        table = self.table_formats[0]
        self.PMD_TABLE_PXN = table.mask("pxntable")
        self.PMD_TABLE_UXN = table.mask("uxntable")
        self._table_addr_mask = table.mask("table_addr") | (
            table.mask("table_addr_high") if self.lpa else 0
        )
        self._entry_mask = (1 << 64) - 1
        self._PROT_DEFAULT = self.PTE_TYPE_PAGE | self.PTE_AF | self.PTE_SHARED
        self._PAGE_DEFAULT = self._PROT_DEFAULT | self.pte_attrindx(MT_NORMAL)
        user = self._PAGE_DEFAULT | self.PTE_USER | self.PTE_RDONLY | self.PTE_NG | self.PTE_PXN
        self.PAGE_NONE = (
            (self._PAGE_DEFAULT & ~self.PTE_VALID)
            | self.PTE_PROT_NONE
            | self.PTE_RDONLY
            | self.PTE_NG
            | self.PTE_PXN
            | self.PTE_UXN
        )
        # "shared+writable pages are clean by default, hence PTE_RDONLY|PTE_WRITE"
        self.PAGE_SHARED = user | self.PTE_UXN | self.PTE_WRITE
        self.PAGE_SHARED_EXEC = user | self.PTE_WRITE
        self.PAGE_READONLY = user | self.PTE_UXN
        self.PAGE_READONLY_EXEC = user
        # __P000..__P111, __S000..__S111 of pgtable-prot.h: arm64 has no PAGE_COPY, a private
        # writable mapping is read-only until COW
        self.protection_map = standard_protection_map(
            none=self.PAGE_NONE,
            readonly=self.PAGE_READONLY,
            copy=self.PAGE_READONLY,
            shared=self.PAGE_SHARED,
            readonly_exec=self.PAGE_READONLY_EXEC,
            copy_exec=self.PAGE_READONLY_EXEC,
            shared_exec=self.PAGE_SHARED_EXEC,
        )
        #: the bits pte_modify takes from the new protection (6.1's mask)
        self._pte_modify_mask = (
            self.PTE_USER
            | self.PTE_PXN
            | self.PTE_UXN
            | self.PTE_RDONLY
            | self.PTE_PROT_NONE
            | self.PTE_VALID
            | self.PTE_WRITE
            | self.PTE_GP
            | self.PTE_ATTRINDX_MASK
        )
        self._block_levels = [
            i < len(self.levels) - 1 and f is not None for i, f in enumerate(self.leaf_formats)
        ]
        #: entries in a contiguous-hint group, by level (CONT_PTES; CONT_PMDS at the level
        #: above the ptes where it holds blocks; 0 where Linux defines no group)
        self._cont_entries = [0] * len(self.levels)
        self._cont_entries[-1] = 1 << CONT_PTE_SHIFT[self.page_shift]
        if len(self.levels) >= 2 and self._block_levels[-2]:
            self._cont_entries[-2] = 1 << CONT_PMD_SHIFT[self.page_shift]

    def pte_attrindx(self, index: int) -> int:
        """PTE_ATTRINDX(t): the MAIR slot ``t`` in AttrIndx[2:0]."""
        return (index << self._attrindx_shift) & self.PTE_ATTRINDX_MASK

    # address conversions (pgtable.h: __pte_to_phys, __phys_to_pte_val) ------------------------
    def pte_to_phys(self, pte: int) -> int:
        if not self.lpa:
            return pte & self.PTE_ADDR_LOW
        return (pte & self.PTE_ADDR_LOW) | ((pte & self.PTE_ADDR_HIGH) << PTE_ADDR_HIGH_SHIFT)

    def phys_to_pte_val(self, phys: int) -> int:
        """``(phys | phys >> 36) & PTE_ADDR_MASK`` with LPA; the address bits of ``phys``
        otherwise (the kernel passes phys through: pfnmap drops bits beyond the PA size)."""
        if not self.lpa:
            return phys & self.PTE_ADDR_LOW
        return (phys | (phys >> PTE_ADDR_HIGH_SHIFT)) & self.PTE_ADDR_MASK

    # pte operations (arch/arm64/include/asm/pgtable.h names) -----------------------------------
    def pte_pfn(self, pte: int) -> int:
        return self.pte_to_phys(pte) >> self.page_shift

    def pfn_pte(self, pfn: int, prot: int) -> int:
        return self.phys_to_pte_val(pfn << self.page_shift) | prot

    def pte_none(self, pte: int) -> bool:
        return pte == 0

    def pte_present(self, pte: int) -> bool:
        return bool(pte & (self.PTE_VALID | self.PTE_PROT_NONE))

    def pte_write(self, pte: int) -> bool:
        return bool(pte & self.PTE_WRITE)

    def pte_hw_dirty(self, pte: int) -> bool:
        return bool(pte & self.PTE_WRITE) and not pte & self.PTE_RDONLY

    def pte_sw_dirty(self, pte: int) -> bool:
        return bool(pte & self.PTE_DIRTY)

    def pte_dirty(self, pte: int) -> bool:
        return self.pte_sw_dirty(pte) or self.pte_hw_dirty(pte)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & self.PTE_AF)

    def pte_file(self, pte: int) -> bool:
        """PTE_FILE of 3.7 (bit 2), only asked of a not-present pte."""
        return bool(pte & self.PTE_FILE)

    def pte_cont(self, pte: int) -> bool:
        return bool(pte & self.PTE_CONT)

    def pte_wrprotect(self, pte: int) -> int:
        """Keep a hardware-dirty pte dirty (set PTE_DIRTY), clear WRITE, set RDONLY."""
        if self.pte_hw_dirty(pte):
            pte |= self.PTE_DIRTY
        return (pte & ~self.PTE_WRITE) | self.PTE_RDONLY

    def pte_mkwrite(self, pte: int) -> int:
        """pte_mkwrite_novma: set WRITE; clear RDONLY only if the pte is already sw-dirty.

        6.1 cleared RDONLY unconditionally, which made a clean pte hardware-dirty; 2025's
        "arm64: mm: Don't make the pte hw-dirty in pte_mkwrite()" (for do_swap_page) made
        it conditional, and that is the form here (the kit's ops.write checks exactly this).
        """
        pte |= self.PTE_WRITE
        if self.pte_sw_dirty(pte):
            pte &= ~self.PTE_RDONLY
        return pte

    def pte_mkclean(self, pte: int) -> int:
        return (pte & ~self.PTE_DIRTY) | self.PTE_RDONLY

    def pte_mkdirty(self, pte: int) -> int:
        pte |= self.PTE_DIRTY
        if self.pte_write(pte):
            pte &= ~self.PTE_RDONLY
        return pte

    def pte_mkold(self, pte: int) -> int:
        return pte & ~self.PTE_AF

    def pte_mkyoung(self, pte: int) -> int:
        return pte | self.PTE_AF

    def pte_mkcont(self, pte: int) -> int:
        return pte | self.PTE_CONT | self.PTE_TYPE_PAGE

    def pte_modify(self, pte: int, prot: int) -> int:
        """Keep hardware dirtiness as PTE_DIRTY, take the permission and memory-type bits from
        ``prot``, and make a sw-dirty writable pte hw-dirty again (the 2020 fix "arm64: mm:
        Always make sw-dirty PTEs hw-dirty in pte_modify", in 6.1)."""
        if self.pte_hw_dirty(pte):
            pte |= self.PTE_DIRTY
        mask = self._pte_modify_mask
        pte = (pte & ~mask) | (prot & mask)
        if self.pte_sw_dirty(pte):
            pte = self.pte_mkdirty(pte)
        return pte

    def pgprot_noncached(self, prot: int) -> int:
        """AttrIndx MT_DEVICE_nGnRnE, and never executable (PXN | UXN)."""
        return (
            (prot & ~self.PTE_ATTRINDX_MASK)
            | self.pte_attrindx(MT_DEVICE_nGnRnE)
            | self.PTE_PXN
            | self.PTE_UXN
        )

    # whole-table forms of the operations that set bits (the probe only finds masks) ---------
    def ptes_wrprotect(self, ptes: np.ndarray) -> np.ndarray:
        hw_dirty = ((ptes & np.uint64(self.PTE_WRITE)) != 0) & (
            (ptes & np.uint64(self.PTE_RDONLY)) == 0
        )
        out = ptes | np.where(hw_dirty, np.uint64(self.PTE_DIRTY), np.uint64(0))
        out &= np.uint64(self._entry_mask & ~self.PTE_WRITE)
        out |= np.uint64(self.PTE_RDONLY)
        return out

    def ptes_mkclean(self, ptes: np.ndarray) -> np.ndarray:
        out = ptes & np.uint64(self._entry_mask & ~self.PTE_DIRTY)
        out |= np.uint64(self.PTE_RDONLY)
        return out

    # what the MMU itself does ------------------------------------------------------------------
    def pte_hw_access_ok(self, pte: int, write: bool) -> bool:
        """An EL0 load or store through a page or block descriptor (see the module docstring).

        A not-valid entry is a translation fault, an output address beyond the PA size an
        address size fault, AP[1] clear a permission fault at EL0; a store needs AP[2] clear
        or DBM (the MMU then clears AP[2]). AF is set by the MMU (TCR_EL1.HA), never a fault.
        """
        if not pte & self.PTE_VALID or pte & self._oa_too_wide:
            return False
        if not pte & self.PTE_USER:
            return False
        return not write or not pte & self.PTE_RDONLY or bool(pte & self.PTE_DBM)

    def pte_hw_update(self, pte: int, write: bool) -> int:
        """The access flag, and for a store to a DBM page the cleared AP[2] (hardware dirty)."""
        pte |= self.PTE_AF
        if write and pte & self.PTE_DBM:
            pte &= ~self.PTE_RDONLY
        return pte

    # upper levels -------------------------------------------------------------------------------
    def mk_table_entry(self, level: int, paddr: int) -> int:
        """pgd/p4d/pud/pmd_populate for a user mm: ``__phys_to_pXd_val(table) |
        PXD_TYPE_TABLE | PXD_TABLE_PXN`` (pgalloc.h, 5.13 on)."""
        return self.phys_to_pte_val(paddr) | self.PTE_TYPE_PAGE | self.PMD_TABLE_PXN

    def table_entry_paddr(self, level: int, entry: int) -> int:
        """pmd_page_paddr / pud_page_paddr: __pXd_to_phys of the table address bits."""
        return self.pte_to_phys(entry & self._table_addr_mask)

    def table_entry_present(self, level: int, entry: int) -> bool:
        """The MMU's test: PTE_VALID, and where the granule gives the level no blocks also
        the table bit (0b01 is reserved there: a fault, not a pointer). Linux's pmd_present
        also accepts PTE_PROT_NONE, which only a PROT_NONE huge pmd has; pfnmap makes none."""
        if self._block_levels[level]:
            return bool(entry & self.PTE_VALID)
        return entry & self.PTE_TYPE_PAGE == self.PTE_TYPE_PAGE

    def table_entry_leaf(self, level: int, entry: int) -> bool:
        """pmd_sect / pud_sect: type 0b01, at a level whose granule allows blocks."""
        if not self._block_levels[level]:
            return False
        return entry & self.PTE_TYPE_PAGE == self.PTE_VALID

    def table_entry_bad(self, level: int, entry: int) -> bool:
        """pmd_bad / pud_bad / p4d_bad: ``!(val & PMD_TABLE_BIT)`` (a block is "bad" to code
        that expects a table, as in the kernel)."""
        return not entry & self.PTE_TABLE_BIT

    def leaf_paddr(self, level: int, entry: int) -> int:
        """pte_pfn for a pte; pmd_pfn / pud_pfn (masked to the block's span) above."""
        phys = self.pte_to_phys(entry)
        if level == len(self.levels) - 1:
            return phys
        return phys & ~(self.levels[level].span - 1)

    def contiguous_group(self, level: int, entry: int) -> int:
        """How many entries a contiguous-hint group at ``level`` holds if ``entry`` is a leaf
        with PTE_CONT set (CONT_PTES / CONT_PMDS), else 0."""
        if not entry & self.PTE_CONT or not entry & self.PTE_VALID:
            return 0
        last = len(self.levels) - 1
        if level == last:
            return self._cont_entries[level] if entry & self.PTE_TABLE_BIT else 0
        return self._cont_entries[level] if self.table_entry_leaf(level, entry) else 0

    # large pages --------------------------------------------------------------------------------
    def large_page_level(self, size: int) -> int:
        """The level whose block descriptors map ``size`` bytes (EINVAL for a size the granule
        gives no blocks of)."""
        for level, lv in enumerate(self.levels[:-1]):
            if lv.leaf is not None and lv.span == size:
                return level
        sizes = ", ".join(_size_name(s) for s in self.large_page_sizes()) or "none"
        raise KernelError(
            errno.EINVAL, f"{self.name} has no {size:#x}-byte blocks (blocks: {sizes})"
        )

    def mk_large_entry(self, size: int, pfn: int, prot: int) -> int:
        """pfn_pmd(pfn, mk_pmd_sect_prot(prot)): a block descriptor (type 0b01).

        EINVAL for a size the granule lacks, a pfn not aligned to the block, or a block
        beyond the PA size.
        """
        self.large_page_level(size)
        npages = size >> self.page_shift
        if pfn < 0 or pfn & (npages - 1) or pfn + npages - 1 > self.max_pfn:
            raise KernelError(
                errno.EINVAL,
                f"pfn {pfn:#x} is not a {_size_name(size)} block within {self.phys_bits}-bit "
                f"physical addresses",
            )
        sect = (prot & ~self.PTE_TABLE_BIT) | self.PTE_VALID
        return self.phys_to_pte_val(pfn << self.page_shift) | sect

    # decoder facts -----------------------------------------------------------------------------
    root_registers = ("ttbr0", "ttbr1")

    def ttbr_baddr(self, ttbr: int) -> int:
        """The table address in a TTBR0_EL1/TTBR1_EL1 value: ASID (63..48) and CnP (bit 0)
        stripped; with 52-bit PAs BADDR[51:48] come from bits 5..2 (TTBR_BADDR_MASK_52)."""
        if self.lpa:
            low = ttbr & ((1 << 48) - 1) & ~((1 << 6) - 1)
            return low | (((ttbr >> 2) & 0xF) << 48)
        return ttbr & ((1 << 48) - 1) & ~1

    def ttbr_reserved(self, ttbr: int) -> int:
        """The bits of a TTBR value that must be zero: BADDR bits below the top table's
        alignment (its size, at least 64 bytes) and, with 52-bit PAs, bit 1."""
        top = self.levels[0]
        align = max(64, top.entries * top.entry_bytes)
        if self.lpa:
            return ((align - 1) & ~0x3F) | 0b10
        return (align - 1) & ~1

    def root_from_register(self, register: str, value: int) -> tuple[int, int]:
        """TTBR0_EL1 roots the user half (VA 0 up), TTBR1_EL1 the kernel half, whose first
        entry maps ``-(1 << va_bits)`` (TCR_EL1.T1SZ = 64 - VA_BITS)."""
        if register not in self.root_registers:
            raise ValueError(f"{self.name} has no root register {register!r} (ttbr0, ttbr1)")
        if not 0 <= value < 1 << 64:
            raise ValueError(f"{register} value {value:#x} is not a 64-bit register value")
        reserved = value & self.ttbr_reserved(value)
        if reserved:
            raise ValueError(
                f"{register} value {value:#x} sets reserved bits {reserved:#x} (the "
                f"{self.levels[0].name} table must be aligned to its size)"
            )
        va_base = 0 if register == "ttbr0" else (1 << 64) - (1 << self.va_bits)
        return self.ttbr_baddr(value), va_base

    def contiguous_entries(self, level: int) -> int:
        return self._cont_entries[level]

    def contiguous_attr_mask(self, level: int) -> int:
        """Every bit but the output address, the access flag and the dirty state (AP[2] under
        DBM, and PTE_DIRTY), which the MMU and Linux's contpte code keep per entry, and the
        contiguous bit itself (checked on its own)."""
        fmt = self.leaf_formats[level]
        assert fmt is not None
        addr = self.PTE_ADDR_MASK
        if "reserved_oa" in fmt.fields:
            addr |= fmt.mask("reserved_oa")
        per_entry = self.PTE_AF | self.PTE_RDONLY | self.PTE_DIRTY | self.PTE_CONT
        return self._entry_mask & ~(addr | per_entry)

    def reserved_encodings(self, level: int, raw: np.ndarray) -> tuple[np.ndarray, str] | None:
        """Type 0b01 (a block) at level 3, or at an upper level whose granule has no blocks."""
        if level < len(self.levels) - 1 and self._block_levels[level]:
            return None
        kind = raw & np.uint64(self.PTE_TYPE_PAGE)
        bad = kind == np.uint64(self.PTE_VALID)
        where = (
            "a block descriptor (0b01) at level 3, where only pages (0b11) are valid"
            if level == len(self.levels) - 1
            else f"a block descriptor (0b01) in the {self.levels[level].name}, where the "
            f"{self.page_size >> 10}K granule allows no blocks"
        )
        return bad, where + ": a translation fault"

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["contiguous"] = {
            lv.name: n for lv, n in zip(self.levels, self._cont_entries, strict=True) if n
        }
        return info


def _variant(
    name: str, page_shift: int, va_bits: int, blocks: tuple[int, ...], lpa: bool = False
) -> type[Arm64Arch]:
    levels = arm64_levels(page_shift, va_bits, blocks, lpa)
    phys_bits = 52 if lpa else 48
    granule = f"{(1 << page_shift) >> 10}K"
    block_text = ", ".join(
        f"{lv.name} {_size_name(lv.span)}" for lv in levels if lv.table and lv.leaf
    )
    attrs = {
        "name": name,
        "description": (
            f"arm64 {granule} granule, {len(levels)} levels, {va_bits}-bit VA, {phys_bits}-bit PA"
            f"{' (LPA)' if lpa else ''}, blocks {block_text}"
        ),
        "page_shift": page_shift,
        "va_bits": va_bits,
        "phys_bits": phys_bits,
        "task_size": 1 << va_bits,  # TASK_SIZE_64 = 1 << vabits_actual
        "levels": levels,
        "lpa": lpa,
    }
    return type(f"Arm64_{granule}_{va_bits}", (Arm64Arch,), attrs)


Arm64_4K_39 = _variant("arm64-4k-39", 12, 39, (30, 21))
Arm64_4K_48 = _variant("arm64-4k-48", 12, 48, (30, 21))
Arm64_16K_47 = _variant("arm64-16k-47", 14, 47, (25,))
Arm64_64K_42 = _variant("arm64-64k-42", 16, 42, (29,))
Arm64_64K_52 = _variant("arm64-64k-52", 16, 52, (42, 29), lpa=True)

VARIANTS: tuple[type[Arm64Arch], ...] = (
    Arm64_4K_48,
    Arm64_4K_39,
    Arm64_16K_47,
    Arm64_64K_42,
    Arm64_64K_52,
)


@hookimpl
def pfnmap_arches() -> list[Arch]:
    return [variant() for variant in VARIANTS]
