"""RISC-V Sv39 paging, as the RISC-V privileged spec defines it and Linux's riscv port uses it.

An anachronism, said plainly: there was no riscv port in 2005 (it was merged in Linux 4.15,
2018). The pte operations, protections and helper names below are those of
arch/riscv/include/asm/pgtable.h, pgtable-64.h and pgtable-bits.h of Linux 6.6, and
arch/riscv/mm/init.c's protection_map; pfnmap runs them under its 2.6.15 core, the same way
its x86-la57 arch runs 2.6.15's x86 operations on a 2017 geometry.

Geometry. Three levels of 512 8-byte entries (a table is one 4 KiB page): the pgd indexes VA
bits 38..30, the pmd 29..21, the pte table 20..12. Virtual addresses are 39 bits and
sign-extended (bits 63..39 copy bit 38); user space is the lower half, TASK_SIZE =
``PGDIR_SIZE * PTRS_PER_PGD / 2`` = 2**38. Physical addresses are 56 bits (a 44-bit PPN).

Entries. Every level uses the same 64-bit little-endian PTE::

    63   62..61  60..54    53..28   27..19   18..10   9..8  7 6 5 4 3 2 1 0
    N    PBMT    reserved  PPN[2]   PPN[1]   PPN[0]   RSW   D A G U X W R V

N is Svnapot (naturally aligned power-of-two runs), PBMT Svpbmt's memory type (0 PMA, 1 NC,
2 IO, 3 reserved), bits 60..54 are reserved for future standard use, RSW is free for software
(Linux: bit 8 _PAGE_SPECIAL, bit 9 _PAGE_DEVMAP). An entry with V set and R = W = X = 0 points
to the next table; an entry with any of R, W, X set is a leaf, at any level: a leaf in the pmd
maps a 2 MiB megapage, one in the pgd a 1 GiB gigapage.

Linux's use of the bits (pgtable-bits.h): _PAGE_PRESENT is V, _PAGE_PROT_NONE is _PAGE_GLOBAL
(6.x; 4.15 to 5.x used _PAGE_READ): a PROT_NONE pte has V clear, so the MMU faults, and G set,
so pte_present() still sees the page; user ptes are never global, so G is free in them.
_PAGE_FILE has no riscv meaning (nonlinear file ptes were gone before riscv arrived); pfnmap's
core asks for it only on a not-present pte, and this plugin answers with the D bit there, as
i386 and x86-64 of 2.6.15 did (_PAGE_FILE == _PAGE_DIRTY).

The MMU modelled (one choice of the two the spec allows; documented in the README):

* **A and D are not updated by hardware** (the Svade behaviour; no Svadu). An access to a
  leaf with A clear, or a store to one with D clear, raises a page fault, and the kernel's
  handle_pte_fault sets them with pte_mkyoung and pte_mkdirty. So :meth:`pte_hw_update`
  changes nothing, as on sparc64; the protections Linux builds all include A
  (``_PAGE_BASE``), so only pte_mkold (fork's copy_one_pte) and clean writable ptes fault.
* The access check for a user-mode load or store: V set, W without R refused (a reserved
  encoding), U set, R for a load (MXR off: execute-only pages are not readable), W for a
  store, A set, D set for a store, and no reserved bit set (bits 60..54, PBMT 3, or N: the
  CPU modelled implements Svpbmt but not Svnapot).
* pgprot_noncached uses Svpbmt: the memory type becomes IO (PBMT = 2), as Linux does on a
  CPU with Svpbmt.
"""

from __future__ import annotations

import errno
from typing import ClassVar

import construct as cs
from pfnmap.arch import Arch, Level
from pfnmap.errors import KernelError
from pfnmap.plugins import hookimpl

NAME = "riscv-sv39"

PAGE_SHIFT = 12
PTRS_BITS = 9  # PTRS_PER_PGD == PTRS_PER_PMD == PTRS_PER_PTE == 512
PMD_SHIFT = 21
PGDIR_SHIFT = 30  # PGDIR_SHIFT_L3
VA_BITS = 39  # VA_BITS_SV39
PHYS_BITS = 56
#: TASK_SIZE_64 = PGDIR_SIZE * PTRS_PER_PGD / 2
TASK_SIZE = (1 << PGDIR_SHIFT) * (1 << PTRS_BITS) // 2
#: _PAGE_PFN_SHIFT: the PPN starts at bit 10 of an entry
PAGE_PFN_SHIFT = 10
#: Svpbmt memory types (the PBMT field)
PBMT_PMA, PBMT_NC, PBMT_IO, PBMT_RESERVED = range(4)

Bit = cs.Flag

#: the Sv39 PTE, the same at every level; fields from bit 63 down, stored little-endian
PTE = cs.ByteSwapped(
    cs.BitStruct(
        "n" / Bit,  # 63 Svnapot
        "pbmt" / cs.BitsInteger(2),  # 62..61 Svpbmt memory type
        "reserved" / cs.BitsInteger(7),  # 60..54 reserved for future standard use
        "ppn2" / cs.BitsInteger(26),  # 53..28 PPN[2]
        "ppn1" / cs.BitsInteger(9),  # 27..19 PPN[1]
        "ppn0" / cs.BitsInteger(9),  # 18..10 PPN[0]
        "rsw" / cs.BitsInteger(2),  # 9..8 reserved for software
        "d" / Bit,  # 7 dirty
        "a" / Bit,  # 6 accessed
        "g" / Bit,  # 5 global
        "u" / Bit,  # 4 user
        "x" / Bit,  # 3 executable
        "w" / Bit,  # 2 writable
        "r" / Bit,  # 1 readable
        "v" / Bit,  # 0 valid
    )
)


class Sv39(Arch):
    """RISC-V Sv39 with Linux 6.6's riscv pte operations; masks derived from :data:`PTE`."""

    name = NAME
    description = "RISC-V Sv39, 3 levels, 39-bit VA, 56-bit PA, 2M/1G leaves (Linux 6.6 ops)"
    page_shift = PAGE_SHIFT
    byteorder = "little"
    va_bits = VA_BITS
    canonical = True
    phys_bits = PHYS_BITS
    task_size = TASK_SIZE
    levels: ClassVar[tuple[Level, ...]] = (
        Level("pgd", PGDIR_SHIFT, PTRS_BITS, 8, PTE, PTE, "pgd-1G"),
        Level("pmd", PMD_SHIFT, PTRS_BITS, 8, PTE, PTE, "pmd-2M"),
        Level("pte", PAGE_SHIFT, PTRS_BITS, 8, None, PTE, "pte"),
    )

    def __init__(self) -> None:
        super().__init__()
        pte = self.pte_format
        m = pte.mask
        self._PAGE_PRESENT = m("v")
        self._PAGE_READ = m("r")
        self._PAGE_WRITE = m("w")
        self._PAGE_EXEC = m("x")
        self._PAGE_USER = m("u")
        self._PAGE_GLOBAL = m("g")
        self._PAGE_ACCESSED = m("a")
        self._PAGE_DIRTY = m("d")
        self._PAGE_SOFT = m("rsw")
        #: _PAGE_SPECIAL (RSW bit 8): riscv has pte_special (ARCH_HAS_PTE_SPECIAL)
        self._PAGE_SPECIAL = self.special_mask = 1 << pte.fields["rsw"].shift
        self._PAGE_TABLE = self._PAGE_PRESENT
        self._PAGE_PROT_NONE = self._PAGE_GLOBAL
        self._PAGE_FILE = self._PAGE_DIRTY  # pfnmap's choice, see the module docstring
        self._PAGE_LEAF = self._PAGE_READ | self._PAGE_WRITE | self._PAGE_EXEC
        self._PAGE_NAPOT = m("n")
        self._PAGE_RESERVED = m("reserved")
        self._PAGE_MTMASK = m("pbmt")
        pbmt_shift = pte.fields["pbmt"].shift
        self._PAGE_NOCACHE = PBMT_NC << pbmt_shift  # _PAGE_NOCACHE_SVPBMT, bit 61
        self._PAGE_IO = PBMT_IO << pbmt_shift  # _PAGE_IO_SVPBMT, bit 62
        self._pbmt_shift = pbmt_shift
        self._PAGE_PFN_MASK = m("ppn2") | m("ppn1") | m("ppn0")  # GENMASK(53, 10)
        assert pte.fields["ppn0"].shift == PAGE_PFN_SHIFT
        self._entry_mask = (1 << pte.width_bits) - 1
        self._PAGE_CHG_MASK = self._entry_mask & ~(
            self._PAGE_PRESENT
            | self._PAGE_READ
            | self._PAGE_WRITE
            | self._PAGE_EXEC
            | self._PAGE_USER
            | self._PAGE_GLOBAL
            | self._PAGE_MTMASK
        )
        base = self._PAGE_PRESENT | self._PAGE_ACCESSED | self._PAGE_USER  # _PAGE_BASE
        r, w, x = self._PAGE_READ, self._PAGE_WRITE, self._PAGE_EXEC
        self.PAGE_NONE = self._PAGE_PROT_NONE | r
        self.PAGE_READ = base | r
        self.PAGE_WRITE = base | r | w
        self.PAGE_EXEC = base | x
        self.PAGE_READ_EXEC = base | r | x
        self.PAGE_WRITE_EXEC = base | r | w | x
        self.PAGE_COPY = self.PAGE_READ
        self.PAGE_COPY_EXEC = self.PAGE_READ_EXEC
        self.PAGE_SHARED = self.PAGE_WRITE
        self.PAGE_SHARED_EXEC = self.PAGE_WRITE_EXEC
        # arch/riscv/mm/init.c, indexed by vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED)
        private = (
            self.PAGE_NONE,
            self.PAGE_READ,
            self.PAGE_COPY,
            self.PAGE_COPY,
            self.PAGE_EXEC,
            self.PAGE_READ_EXEC,
            self.PAGE_COPY_EXEC,
            self.PAGE_COPY_EXEC,
        )
        shared = (
            self.PAGE_NONE,
            self.PAGE_READ,
            self.PAGE_SHARED,
            self.PAGE_SHARED,
            self.PAGE_EXEC,
            self.PAGE_READ_EXEC,
            self.PAGE_SHARED_EXEC,
            self.PAGE_SHARED_EXEC,
        )
        self.protection_map = private + shared

    # pte operations (arch/riscv/include/asm/pgtable.h names) ---------------------------------
    def pte_pfn(self, pte: int) -> int:
        """__page_val_to_pfn: the PPN (Svnapot runs are never built here, so N is ignored)."""
        return (pte & self._PAGE_PFN_MASK) >> PAGE_PFN_SHIFT

    def pfn_pte(self, pfn: int, prot: int) -> int:
        return (pfn << PAGE_PFN_SHIFT) | prot

    def pte_none(self, pte: int) -> bool:
        return pte == 0

    def pte_present(self, pte: int) -> bool:
        return bool(pte & (self._PAGE_PRESENT | self._PAGE_PROT_NONE))

    def pte_write(self, pte: int) -> bool:
        return bool(pte & self._PAGE_WRITE)

    def pte_dirty(self, pte: int) -> bool:
        return bool(pte & self._PAGE_DIRTY)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & self._PAGE_ACCESSED)

    def pte_file(self, pte: int) -> bool:
        """Only asked of a not-present pte; D there marks a file pte (pfnmap's choice)."""
        return bool(pte & self._PAGE_FILE)

    def pte_wrprotect(self, pte: int) -> int:
        return pte & ~self._PAGE_WRITE

    def pte_mkwrite(self, pte: int) -> int:
        """pte_mkwrite_novma in Linux 6.6."""
        return pte | self._PAGE_WRITE

    def pte_mkclean(self, pte: int) -> int:
        return pte & ~self._PAGE_DIRTY

    def pte_mkdirty(self, pte: int) -> int:
        return pte | self._PAGE_DIRTY

    def pte_mkold(self, pte: int) -> int:
        return pte & ~self._PAGE_ACCESSED

    def pte_mkyoung(self, pte: int) -> int:
        return pte | self._PAGE_ACCESSED

    def pte_modify(self, pte: int, prot: int) -> int:
        """Keep the PPN, A, D, RSW, N and the reserved bits; V R W X U G and PBMT come from
        ``prot`` (_PAGE_CHG_MASK of pgtable-64.h)."""
        return (pte & self._PAGE_CHG_MASK) | prot

    def pgprot_noncached(self, prot: int) -> int:
        """Svpbmt: clear the memory type, set IO."""
        return (prot & ~self._PAGE_MTMASK) | self._PAGE_IO

    # what the MMU itself does ----------------------------------------------------------------
    def pte_hw_access_ok(self, pte: int, write: bool) -> bool:
        """The spec's checks for a user-mode load or store through a leaf (Svade: A, and D
        for a store, must already be set; see the module docstring)."""
        if not pte & self._PAGE_PRESENT:
            return False
        if pte & self._PAGE_WRITE and not pte & self._PAGE_READ:
            return False  # W=1, R=0 is reserved
        if pte & (self._PAGE_RESERVED | self._PAGE_NAPOT):
            return False
        if (pte & self._PAGE_MTMASK) >> self._pbmt_shift == PBMT_RESERVED:
            return False
        need = self._PAGE_USER | self._PAGE_ACCESSED
        need |= (self._PAGE_WRITE | self._PAGE_DIRTY) if write else self._PAGE_READ
        return pte & need == need

    def pte_hw_update(self, pte: int, write: bool) -> int:
        """Svade: the MMU never writes a PTE; a missing A or D bit was a fault instead."""
        return pte

    # upper levels (pgd and pmd; the p4d and pud are folded in Sv39) ------------------------
    def mk_table_entry(self, level: int, paddr: int) -> int:
        """pmd_populate / pud_populate: ``(pfn << _PAGE_PFN_SHIFT) | _PAGE_TABLE``."""
        return ((paddr >> PAGE_SHIFT) << PAGE_PFN_SHIFT) | self._PAGE_TABLE

    def table_entry_paddr(self, level: int, entry: int) -> int:
        return ((entry & self._PAGE_PFN_MASK) >> PAGE_PFN_SHIFT) << PAGE_SHIFT

    def table_entry_present(self, level: int, entry: int) -> bool:
        """pmd_present: V or _PAGE_PROT_NONE; pud_present (the Sv39 pgd): V."""
        if level == 0:
            return bool(entry & self._PAGE_PRESENT)
        return bool(entry & (self._PAGE_PRESENT | self._PAGE_PROT_NONE))

    def table_entry_leaf(self, level: int, entry: int) -> bool:
        """pmd_leaf / pud_leaf: present and any of R, W, X."""
        return self.table_entry_present(level, entry) and bool(entry & self._PAGE_LEAF)

    def table_entry_bad(self, level: int, entry: int) -> bool:
        """pmd_bad: not present, or a leaf. pud_bad (the Sv39 pgd): not present."""
        if level == 0:
            return not self.table_entry_present(level, entry)
        return not self.table_entry_present(level, entry) or bool(entry & self._PAGE_LEAF)

    def leaf_paddr(self, level: int, entry: int) -> int:
        """pte_pfn for a pte; pmd_pfn / pud_pfn (aligned down to the leaf's size) above."""
        paddr = self.table_entry_paddr(level, entry)
        return paddr & ~(self.levels[level].span - 1)

    # large pages ------------------------------------------------------------------------------
    def large_page_level(self, size: int) -> int:
        """The level whose leaves map ``size`` bytes (EINVAL for a size Sv39 lacks)."""
        for level, lv in enumerate(self.levels[:-1]):
            if lv.leaf is not None and lv.span == size:
                return level
        raise KernelError(errno.EINVAL, f"{self.name} has no {size:#x}-byte pages (2M, 1G)")

    def mk_large_entry(self, size: int, pfn: int, prot: int) -> int:
        """pfn_pmd / pfn_pud: a megapage or gigapage leaf (``prot`` must set R, W or X).

        EINVAL for a size Sv39 lacks, a pfn not aligned to the page (the spec makes such a
        "misaligned superpage" fault), a page beyond 56-bit physical addresses, or a
        protection that would make a table pointer instead of a leaf.
        """
        self.large_page_level(size)
        npages = size >> self.page_shift
        if pfn < 0 or pfn & (npages - 1) or pfn + npages - 1 > self.max_pfn:
            raise KernelError(
                errno.EINVAL,
                f"pfn {pfn:#x} is not a {size >> 10} KiB page within {self.phys_bits}-bit "
                f"physical addresses",
            )
        if not prot & self._PAGE_LEAF:
            raise KernelError(errno.EINVAL, f"prot {prot:#x} sets none of R, W, X: not a leaf")
        return self.pfn_pte(pfn, prot)


@hookimpl
def pfnmap_arches() -> list[Arch]:
    return [Sv39()]
