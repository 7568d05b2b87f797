"""What every x86 paging mode shares: the low flag bits, the pte operations, the protections.

Facts from include/asm-i386/pgtable.h and include/asm-x86_64/pgtable.h of the 2.6.15 era. The
modes differ in entry width, physical-address width, NX and the number of levels; a mode module
calls :func:`entry_layouts` with its widths and subclasses :class:`X86Arch` with its geometry.
"""

from __future__ import annotations

import construct as cs

from pfnmap.arch import Arch

Bit = cs.Flag


def _low_flags(bit8: str, bit7: str, bit6: str) -> list[cs.Construct]:
    """Bits 11..0, the same in every x86 entry apart from the meaning of bits 6..8."""
    return [
        "avl" / cs.BitsInteger(3),  # bits 11..9: free for software, unused by 2.6.15
        bit8 / Bit,
        bit7 / Bit,
        bit6 / Bit,
        "accessed" / Bit,
        "pcd" / Bit,
        "pwt" / Bit,
        "user" / Bit,
        "rw" / Bit,
        "present" / Bit,
    ]


def _high_bits(entry_bits: int, phys_bits: int) -> list[cs.Construct]:
    """The bits above the physical address: NX, software-available bits, unused PA bits."""
    if entry_bits == 32:
        return []
    # 64-bit entries: bit 63 NX, 62..52 ignored by hardware, 51..phys_bits reserved PA bits
    # (the kernel of the era used fewer PA bits than the entry format allows)
    high: list[cs.Construct] = ["nx" / Bit, "avail_high" / cs.BitsInteger(11)]
    if phys_bits < 52:
        high.append("pa_high" / cs.BitsInteger(52 - phys_bits))
    return high


def _wrap(entry_bits: int, fields: list[cs.Construct]) -> cs.Construct:
    # x86 stores entries little-endian; fields are listed from the top bit down
    return cs.ByteSwapped(cs.BitStruct(*fields))


def pte_layout(entry_bits: int, phys_bits: int) -> cs.Construct:
    """A last-level entry (4 KiB page). Bit 7 is PAT in hardware; Linux of the era never set PAT
    and used the bit as _PAGE_PROTNONE in not-present ptes. Bit 6 doubles as _PAGE_FILE."""
    return _wrap(
        entry_bits,
        _high_bits(entry_bits, phys_bits)
        + ["pfn" / cs.BitsInteger(phys_bits - 12)]
        + _low_flags("global_", "protnone", "dirty"),
    )


def table_layout(entry_bits: int, phys_bits: int) -> cs.Construct:
    """An upper-level entry that points to the next table (PSE clear)."""
    return _wrap(
        entry_bits,
        _high_bits(entry_bits, phys_bits)
        + ["table_pfn" / cs.BitsInteger(phys_bits - 12)]
        + _low_flags("ignored8", "pse", "ignored6"),
    )


def large_layout(entry_bits: int, phys_bits: int, page_shift: int) -> cs.Construct:
    """An upper-level entry that maps a large page (PSE set): PA bits above ``page_shift``, the
    PAT bit at 12, and the address bits in between reserved (PSE-36 uses some on 2-level)."""
    return _wrap(
        entry_bits,
        _high_bits(entry_bits, phys_bits)
        + [
            "large_pfn" / cs.BitsInteger(phys_bits - page_shift),
            "reserved_pa" / cs.BitsInteger(page_shift - 13),
            "pat" / Bit,
        ]
        + _low_flags("global_", "pse", "dirty"),
    )


class X86Arch(Arch):
    """pte operations common to the x86 modes, with masks taken from the derived layout."""

    has_nx = True

    def __init__(self) -> None:
        super().__init__()
        pte = self.pte_format
        m = pte.mask
        self._PAGE_PRESENT = m("present")
        self._PAGE_RW = m("rw")
        self._PAGE_USER = m("user")
        self._PAGE_PWT = m("pwt")
        self._PAGE_PCD = m("pcd")
        self._PAGE_ACCESSED = m("accessed")
        self._PAGE_DIRTY = m("dirty")
        self._PAGE_FILE = m("dirty")  # the same bit, when not present
        self._PAGE_PROTNONE = m("protnone")
        self._PAGE_PSE = m("protnone")  # bit 7 is PSE in pmd/pud entries
        self._PAGE_GLOBAL = m("global_")
        self._PAGE_NX = m("nx") if "nx" in pte.fields else 0
        self.PTE_MASK = m("pfn")  # PHYSICAL_PAGE_MASK: the PA bits of the entry
        self._pfn_shift = pte.fields["pfn"].shift
        # __supported_pte_mask: everything, NX only where the mode has it
        self.supported_pte_mask = (1 << pte.width_bits) - 1
        self._PAGE_TABLE = (
            self._PAGE_PRESENT
            | self._PAGE_RW
            | self._PAGE_USER
            | self._PAGE_ACCESSED
            | self._PAGE_DIRTY
        )
        self._KERNPG_TABLE = self._PAGE_TABLE & ~self._PAGE_USER
        self._PAGE_CHG_MASK = self.PTE_MASK | self._PAGE_ACCESSED | self._PAGE_DIRTY
        p, rw, u, a, nx = (
            self._PAGE_PRESENT,
            self._PAGE_RW,
            self._PAGE_USER,
            self._PAGE_ACCESSED,
            self._PAGE_NX,
        )
        self.PAGE_NONE = self._PAGE_PROTNONE | a
        self.PAGE_SHARED = p | rw | u | a | nx
        self.PAGE_SHARED_EXEC = p | rw | u | a
        self.PAGE_COPY = p | u | a | nx  # PAGE_COPY_NOEXEC
        self.PAGE_COPY_EXEC = p | u | a
        self.PAGE_READONLY = p | u | a | nx
        self.PAGE_READONLY_EXEC = p | u | a
        # index: vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED), i.e. __P000..__P111, __S000..
        private = (
            self.PAGE_NONE,
            self.PAGE_READONLY,
            self.PAGE_COPY,
            self.PAGE_COPY,
            self.PAGE_READONLY_EXEC,
            self.PAGE_READONLY_EXEC,
            self.PAGE_COPY_EXEC,
            self.PAGE_COPY_EXEC,
        )
        shared = (
            self.PAGE_NONE,
            self.PAGE_READONLY,
            self.PAGE_SHARED,
            self.PAGE_SHARED,
            self.PAGE_READONLY_EXEC,
            self.PAGE_READONLY_EXEC,
            self.PAGE_SHARED_EXEC,
            self.PAGE_SHARED_EXEC,
        )
        self.protection_map = private + shared
        self._table_pfn_mask = [
            f.mask("table_pfn") if f is not None else 0 for f in self.table_formats
        ]
        self._large_mask = [
            f.mask("large_pfn") if f is not None and i < len(self.levels) - 1 else 0
            for i, f in enumerate(self.leaf_formats)
        ]
        self._bad_mask = [
            ~(mask | self._KERNPG_TABLE | self._PAGE_USER) & self.supported_pte_mask
            for mask in self._table_pfn_mask
        ]

    # pte operations (include/asm-x86_64/pgtable.h names) -----------------------------------
    def pte_pfn(self, pte: int) -> int:
        return (pte & self.PTE_MASK) >> self._pfn_shift

    def pfn_pte(self, pfn: int, prot: int) -> int:
        return ((pfn << self.page_shift) | prot) & self.supported_pte_mask

    def pte_none(self, pte: int) -> bool:
        return pte == 0

    def pte_present(self, pte: int) -> bool:
        return bool(pte & (self._PAGE_PRESENT | self._PAGE_PROTNONE))

    def pte_write(self, pte: int) -> bool:
        return bool(pte & self._PAGE_RW)

    def pte_dirty(self, pte: int) -> bool:
        return bool(pte & self._PAGE_DIRTY)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & self._PAGE_ACCESSED)

    def pte_file(self, pte: int) -> bool:
        return bool(pte & self._PAGE_FILE)

    def pte_wrprotect(self, pte: int) -> int:
        return pte & ~self._PAGE_RW

    def pte_mkwrite(self, pte: int) -> int:
        return pte | self._PAGE_RW

    def pte_mkclean(self, pte: int) -> int:
        return pte & ~self._PAGE_DIRTY

    def pte_mkdirty(self, pte: int) -> int:
        return pte | self._PAGE_DIRTY

    def pte_mkold(self, pte: int) -> int:
        return pte & ~self._PAGE_ACCESSED

    def pte_mkyoung(self, pte: int) -> int:
        return pte | self._PAGE_ACCESSED

    def pte_modify(self, pte: int, prot: int) -> int:
        return ((pte & self._PAGE_CHG_MASK) | prot) & self.supported_pte_mask

    def pgprot_noncached(self, prot: int) -> int:
        return prot | self._PAGE_PCD | self._PAGE_PWT

    # what the MMU itself does ----------------------------------------------------------------
    def pte_hw_access_ok(self, pte: int, write: bool) -> bool:
        """Whether a user-mode access goes through without a fault (PROTNONE faults)."""
        need = self._PAGE_PRESENT | self._PAGE_USER | (self._PAGE_RW if write else 0)
        return pte & need == need

    def pte_hw_update(self, pte: int, write: bool) -> int:
        """The accessed (and, for a write, dirty) bits the MMU sets on a successful access."""
        return pte | self._PAGE_ACCESSED | (self._PAGE_DIRTY if write else 0)

    # upper levels -------------------------------------------------------------------------------
    def mk_table_entry(self, level: int, paddr: int) -> int:
        """pgd_populate/pud_populate/pmd_populate: a user table gets _PAGE_TABLE."""
        return paddr | self._PAGE_TABLE

    def table_entry_paddr(self, level: int, entry: int) -> int:
        return entry & self._table_pfn_mask[level]

    def table_entry_present(self, level: int, entry: int) -> bool:
        return bool(entry & self._PAGE_PRESENT)

    def table_entry_leaf(self, level: int, entry: int) -> bool:
        """pmd_large / pud_large: PSE and PRESENT, at a level that can map a large page."""
        both = self._PAGE_PSE | self._PAGE_PRESENT
        return bool(self._large_mask[level]) and entry & both == both

    def table_entry_bad(self, level: int, entry: int) -> bool:
        """pgd_bad/pud_bad/pmd_bad: bits outside PTE_MASK | _KERNPG_TABLE | _PAGE_USER."""
        return bool(entry & self._bad_mask[level])

    def leaf_paddr(self, level: int, entry: int) -> int:
        if level == len(self.levels) - 1:
            return entry & self.PTE_MASK
        return entry & self._large_mask[level]
