"""What every x86 paging mode shares: the low flag bits, the pte operations, the protections.

Facts from include/asm-i386/pgtable.h (with pgtable-2level.h and pgtable-3level.h) and
include/asm-x86_64/pgtable.h of the 2.6.15 era. One description serves every mode; a mode module
only states its geometry (levels, entry width, physical-address width, TASK_SIZE) and builds its
layouts with :func:`pte_layout`, :func:`table_layout` and :func:`large_layout`. The two header
families differ in a few operations; those differences live here too:

- :class:`X86Arch` is include/asm-x86_64/pgtable.h (x86-64 4-level, reused for 5-level),
- :class:`I386Arch` is include/asm-i386/pgtable.h (2-level and PAE): ``pmd_bad`` compares the
  low flags with ``_KERNPG_TABLE``, ``pte_pfn`` yields a 32-bit ``unsigned long``,
  ``PAGE_SHARED`` carries no ``_PAGE_NX``, and ``pte_modify`` keeps every bit above the flags
  but NX.
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar

import construct as cs

from pfnmap.arch import Arch
from pfnmap.arch.contract import standard_protection_map
from pfnmap.errors import KernelError

Bit = cs.Flag

PAGE_SHIFT = 12
X86_CR0_PG = 1 << 31
X86_CR4_PAE = 1 << 5
X86_CR4_LA57 = 1 << 12
X86_EFER_LMA = 1 << 10
#: __START_KERNEL_map: where x86-64 maps the kernel image
START_KERNEL_MAP = 0xFFFF_FFFF_8000_0000
#: i386's __PAGE_OFFSET with the default CONFIG_VMSPLIT_3G
I386_PAGE_OFFSET = 0xC000_0000


def _hex(text: str | None) -> int | None:
    """A VMCOREINFO hexadecimal value (SYMBOL(...)=ffffffff82a0c000), or None."""
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


#: the hardware's widest physical address in a 64-bit entry (bits 51..12 of the address field)
ENTRY_PA_LIMIT = 52


def _low_flags(bit8: str, bit7: str, bit6: str) -> list[cs.Construct]:
    """Bits 11..0, the same in every x86 entry apart from the meaning of bits 6..8."""
    return [
        "avl" / cs.BitsInteger(3),  # bits 11..9: _PAGE_UNUSED1..3, free for software
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


def _high_bits(entry_bits: int, phys_bits: int, high: str) -> list[cs.Construct]:
    """The bits of a 64-bit entry above the physical address.

    Bit 63 is NX; bits 62..52 are ``high`` ("avail_high": ignored by the MMU in 4/5-level
    paging; "reserved_high": must be 0 under PAE); bits 51..``phys_bits`` are address bits the
    entry format has but the mode's kernel of the era does not use ("pa_high").
    """
    if entry_bits == 32:
        return []
    bits: list[cs.Construct] = ["nx" / Bit, high / cs.BitsInteger(63 - ENTRY_PA_LIMIT)]
    if phys_bits < ENTRY_PA_LIMIT:
        bits.append("pa_high" / cs.BitsInteger(ENTRY_PA_LIMIT - phys_bits))
    return bits


def _wrap(fields: list[cs.Construct]) -> cs.Construct:
    # x86 stores entries little-endian; fields are listed from the top bit down
    return cs.ByteSwapped(cs.BitStruct(*fields))


def pte_layout(entry_bits: int, phys_bits: int, high: str = "avail_high") -> cs.Construct:
    """A last-level entry (4 KiB page). Bit 7 is PAT in hardware; Linux of the era never set PAT
    and used the bit as _PAGE_PROTNONE in not-present ptes. Bit 6 doubles as _PAGE_FILE."""
    return _wrap(
        _high_bits(entry_bits, phys_bits, high)
        + ["pfn" / cs.BitsInteger(phys_bits - PAGE_SHIFT)]
        + _low_flags("global_", "protnone", "dirty")
    )


def table_layout(entry_bits: int, phys_bits: int, high: str = "avail_high") -> cs.Construct:
    """An upper-level entry that points to the next table (PSE clear)."""
    return _wrap(
        _high_bits(entry_bits, phys_bits, high)
        + ["table_pfn" / cs.BitsInteger(phys_bits - PAGE_SHIFT)]
        + _low_flags("ignored8", "pse", "ignored6")
    )


def large_layout(
    entry_bits: int,
    phys_bits: int,
    page_shift: int,
    high: str = "avail_high",
    pse36_bits: int = 0,
) -> cs.Construct:
    """An upper-level entry that maps a large page (PSE set): PA bits from ``page_shift`` up, the
    PAT bit at 12, and the address bits in between reserved. With ``pse36_bits`` (2-level only)
    the lowest of those reserved bits carry PA bits 32 and up (PSE-36)."""
    between = page_shift - PAGE_SHIFT - 1
    middle: list[cs.Construct] = ["reserved_pa" / cs.BitsInteger(between - pse36_bits)]
    if pse36_bits:
        middle.append("pse36_pa" / cs.BitsInteger(pse36_bits))
    return _wrap(
        _high_bits(entry_bits, phys_bits, high)
        + ["large_pfn" / cs.BitsInteger(phys_bits - page_shift)]
        + middle
        + ["pat" / Bit]
        + _low_flags("global_", "pse", "dirty")
    )


class X86Arch(Arch):
    """The x86 pte operations, as include/asm-x86_64/pgtable.h spells them, with masks taken
    from the derived layout. Subclasses state geometry; :class:`I386Arch` has the i386 forms."""

    #: whether PAGE_SHARED includes _PAGE_NX (x86-64: yes; i386: no, only COPY/READONLY do)
    pgprot_shared_nx: ClassVar[bool] = True
    # which control register bits select the mode (Intel SDM vol. 3, 4.1.1): paging is on with
    # CR0.PG; CR4.PAE, CR4.LA57 and EFER.LMA (long mode) tell the four modes apart
    #: CR4 bits the mode needs set, and the ones it needs clear
    cr4_set: ClassVar[int] = 0
    cr4_clear: ClassVar[int] = 0
    #: whether the mode is long mode (EFER.LMA; a QEMU core is EM_X86_64 exactly then)
    long_mode: ClassVar[bool] = True
    #: the bits of CR3 that hold the top table's address in this mode
    cr3_root_mask: ClassVar[int] = 0x000F_FFFF_FFFF_F000
    elf_prstatus_size = 336  # x86-64: 112 bytes of header, 27 64-bit registers, fpvalid
    #: the VMCOREINFO symbols of the kernel's top table, newest name first
    vmcoreinfo_roots: ClassVar[tuple[str, ...]] = (
        "SYMBOL(init_top_pgt)",  # 4.13 and later
        "SYMBOL(init_level4_pgt)",
        "SYMBOL(swapper_pg_dir)",
    )

    def root_from_registers(
        self, registers: dict[str, int], elf_machine: int | None, word_bits: int | None
    ) -> int | None:
        cr0, cr3, cr4 = (registers.get(k) for k in ("cr0", "cr3", "cr4"))
        if cr0 is None or cr3 is None or cr4 is None or not cr0 & X86_CR0_PG:
            return None
        if cr4 & self.cr4_set != self.cr4_set or cr4 & self.cr4_clear:
            return None
        if "efer" in registers:
            if bool(registers["efer"] & X86_EFER_LMA) != self.long_mode:
                return None
        elif elf_machine:
            if elf_machine != self.elf_machine:
                return None
        elif word_bits and word_bits != (64 if self.long_mode else 32):
            return None
        return cr3 & self.cr3_root_mask

    def root_from_vmcoreinfo(self, vmcoreinfo: dict[str, str], phys_base: int | None) -> int | None:
        if not self._vmcoreinfo_selects(vmcoreinfo):
            return None
        va = next(
            (_hex(vmcoreinfo[k]) for k in self.vmcoreinfo_roots if _hex(vmcoreinfo.get(k))),
            None,
        )
        if va is None:
            return None
        return self._kernel_va_to_pa(va, vmcoreinfo, phys_base)

    def _vmcoreinfo_selects(self, vmcoreinfo: dict[str, str]) -> bool:
        # 4-level unless the kernel says it turned 5-level paging on (NUMBER(pgtable_l5_enabled))
        l5 = vmcoreinfo.get("NUMBER(pgtable_l5_enabled)", "0").strip()
        return (l5 not in ("", "0")) == bool(self.cr4_set & X86_CR4_LA57)

    def _kernel_va_to_pa(
        self, va: int, vmcoreinfo: dict[str, str], phys_base: int | None
    ) -> int | None:
        """__pa_symbol(): a kernel-image address minus __START_KERNEL_map plus phys_base (the
        kernel's NUMBER(phys_base), else the kdump header's). The symbols in VMCOREINFO are
        run-time addresses, KASLR's KERNELOFFSET already in them."""
        if va < START_KERNEL_MAP:
            return None
        base = vmcoreinfo.get("NUMBER(phys_base)")
        pb = int(base) if base is not None and base.lstrip("-").isdigit() else (phys_base or 0)
        return (va - START_KERNEL_MAP + pb) & ((1 << 64) - 1)

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
        # a layout without these names (6.1's, pfnmap.arches.x86_6_1) sets them itself
        self._PAGE_PROTNONE = m("protnone") if "protnone" in pte.fields else 0
        self._PAGE_PSE = self._PAGE_PROTNONE  # bit 7 is PSE in pmd/pud entries
        #: _PAGE_SPECIAL = _PAGE_BIT_UNUSED1 (bit 9, the lowest "avl" bit), as x86 defined it
        #: when it implemented pte_special (posted 2008-05, in -mm 2008-06); unused in 2.6.15
        self.special_mask = 1 << pte.fields["avl"].shift if "avl" in pte.fields else 0
        #: 0 where the entry has no NX bit (i386 without PAE), as the kernel defines it
        self._PAGE_NX = m("nx") if "nx" in pte.fields else 0
        #: PHYSICAL_PAGE_MASK: the PA bits of a pte in this mode (x86-64: __PHYSICAL_MASK)
        self.PTE_MASK = m("pfn")
        #: the bits pte_pfn() returns, shifted down by PAGE_SHIFT
        self.pte_pfn_mask = self.PTE_MASK
        self._pfn_shift = pte.fields["pfn"].shift
        #: __supported_pte_mask of a CPU that has NX (every bit; _PAGE_NX is 0 where absent)
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
        self.PAGE_SHARED = p | rw | u | a | (nx if self.pgprot_shared_nx else 0)
        self.PAGE_SHARED_EXEC = p | rw | u | a
        self.PAGE_COPY = p | u | a | nx  # PAGE_COPY_NOEXEC
        self.PAGE_COPY_EXEC = p | u | a
        self.PAGE_READONLY = p | u | a | nx
        self.PAGE_READONLY_EXEC = p | u | a
        # __P000..__P111, __S000..__S111 of pgtable.h
        self.protection_map = standard_protection_map(
            none=self.PAGE_NONE,
            readonly=self.PAGE_READONLY,
            copy=self.PAGE_COPY,
            shared=self.PAGE_SHARED,
            readonly_exec=self.PAGE_READONLY_EXEC,
            copy_exec=self.PAGE_COPY_EXEC,
            shared_exec=self.PAGE_SHARED_EXEC,
        )
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

    # the era's headers ----------------------------------------------------------------------
    def for_rules(self, rules: Any) -> Arch:
        """From 6.1 (``rules.version()``), this mode as 6.1's headers describe it
        (:mod:`pfnmap.arches.x86_6_1`: named software bits, PROT_NONE at bit 8, and the L1TF
        inversion where ``rules.l1tf_protnone_inversion`` and the mode has it); the 2.6.15
        description before. The variants are cached on the arch object."""
        from pfnmap.arches import x86_6_1

        if rules.version() < x86_6_1.RELEASE:
            return self
        invert = bool(rules.l1tf_protnone_inversion)
        cache = self.__dict__.setdefault("_variants_6_1", {})
        variant = cache.get(invert)
        if variant is None:
            variant = cache[invert] = x86_6_1.variant_for(self, invert)
        return variant

    def leaf_kind(self, level: int, entry: int) -> str | None:
        """``"protnone"`` for a PROT_NONE pte (_PAGE_PROTNONE without _PAGE_PRESENT)."""
        if level == len(self.levels) - 1 and self._PAGE_PROTNONE:
            both = self._PAGE_PRESENT | self._PAGE_PROTNONE
            if entry & both == self._PAGE_PROTNONE:
                return "protnone"
        return None

    # pte operations (include/asm-x86_64/pgtable.h names) -----------------------------------
    def pte_pfn(self, pte: int) -> int:
        return (pte & self.pte_pfn_mask) >> self._pfn_shift

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
        """pgd_bad/pud_bad: bits outside PTE_MASK | _KERNPG_TABLE | _PAGE_USER. pmd_bad (the
        level pointing to pte tables) is stricter in 2.6.15: the flags other than USER must be
        exactly _KERNPG_TABLE, so a pmd missing ACCESSED, DIRTY, RW or PRESENT is bad too."""
        if level == len(self.levels) - 2:
            flags = entry & ~(self._table_pfn_mask[level] | self._PAGE_USER)
            return flags != self._KERNPG_TABLE
        return bool(entry & self._bad_mask[level])

    def leaf_paddr(self, level: int, entry: int) -> int:
        if level == len(self.levels) - 1:
            return entry & self.PTE_MASK
        return entry & self._large_mask[level]

    # large pages --------------------------------------------------------------------------------
    def large_page_level(self, size: int) -> int:
        """The level whose leaf entries map pages of ``size`` bytes.

        There is no user API for large pages in pfnmap (2.6.15 had only hugetlbfs), so this is
        where a request for a size the mode lacks fails: KernelError EINVAL, as hugetlbfs
        refuses a size the arch has no HPAGE for.
        """
        for level, lv in enumerate(self.levels[:-1]):
            if lv.leaf is not None and lv.span == size:
                return level
        sizes = ", ".join(f"{s >> 10} KiB" for s in self.large_page_sizes()) or "none"
        raise KernelError(
            errno.EINVAL, f"{self.name} has no {size:#x}-byte pages (large pages: {sizes})"
        )

    def mk_large_entry(self, size: int, pfn: int, prot: int) -> int:
        """pfn_pmd(pfn, prot) made huge (mk_pte_huge sets PRESENT|PSE): a leaf for a large page.

        EINVAL for a size the mode lacks, a pfn not aligned to the page, or a page beyond the
        mode's physical address width.
        """
        self.large_page_level(size)
        npages = size >> self.page_shift
        if pfn < 0 or pfn & (npages - 1) or pfn + npages - 1 > self.max_pfn:
            raise KernelError(
                errno.EINVAL,
                f"pfn {pfn:#x} is not a {size >> 10} KiB page within {self.phys_bits}-bit "
                f"physical addresses",
            )
        entry = (pfn << self.page_shift) | prot | self._PAGE_PRESENT | self._PAGE_PSE
        return entry & self.supported_pte_mask


class I386Arch(X86Arch):
    """include/asm-i386/pgtable.h: what the i386 modes (2-level and PAE) do differently."""

    pgprot_shared_nx = False  # i386 PAGE_SHARED and PAGE_SHARED_EXEC are the same value
    long_mode = False
    uname_machine = "i686"
    uname_aliases = ("i386", "i486", "i586", "x86_64")
    elf_prstatus_size = 144  # 72 bytes of header, 17 32-bit registers, fpvalid
    vmcoreinfo_roots = ("SYMBOL(swapper_pg_dir)",)

    def _vmcoreinfo_selects(self, vmcoreinfo: dict[str, str]) -> bool:
        # arch_crash_save_vmcoreinfo() of x86_32 writes CONFIG_X86_PAE=y on a PAE kernel
        return (vmcoreinfo.get("CONFIG_X86_PAE") == "y") == bool(self.cr4_set & X86_CR4_PAE)

    def _kernel_va_to_pa(
        self, va: int, vmcoreinfo: dict[str, str], phys_base: int | None
    ) -> int | None:
        """__pa(): minus PAGE_OFFSET, which x86_32's VMCOREINFO does not record: the default
        split's 0xC0000000 (CONFIG_VMSPLIT_3G) unless a NUMBER(PAGE_OFFSET) says otherwise."""
        page_offset = _hex(vmcoreinfo.get("NUMBER(PAGE_OFFSET)")) or I386_PAGE_OFFSET
        return va - page_offset if va >= page_offset else None

    def __init__(self) -> None:
        super().__init__()
        #: ~PAGE_MASK & ~_PAGE_USER: the flag bits pmd_bad() compares (PAGE_MASK is 32-bit,
        #: so neither NX nor the PAE high address bits take part)
        self._pmd_bad_bits = ((1 << PAGE_SHIFT) - 1) & ~self._PAGE_USER
        # pte_pfn() returns an unsigned long: 32 bits of pfn, i.e. PA bits 12..43 under PAE
        self.pte_pfn_mask = (((1 << 32) - 1) << PAGE_SHIFT) & self.supported_pte_mask
        # pte_modify(): pte_low &= _PAGE_CHG_MASK (PTE_MASK is PAGE_MASK, 32-bit); under PAE
        # pte_high keeps everything but NX, which comes from newprot
        entry_mask = self.supported_pte_mask
        self._PAGE_CHG_MASK = (
            (entry_mask & ~0xFFF & ~self._PAGE_NX) | self._PAGE_ACCESSED | self._PAGE_DIRTY
        )

    def table_entry_bad(self, level: int, entry: int) -> bool:
        """pmd_bad(): ``(pmd_val(x) & (~PAGE_MASK & ~_PAGE_USER)) != _KERNPG_TABLE``.

        Only the low flag bits count, and they must be exactly _KERNPG_TABLE (a large-page or
        a not-accessed entry is bad). pgd_bad and pud_bad are 0 in both i386 modes: the levels
        they would check are folded (2-level) or are the PAE PDPT, handled by the PAE class.
        """
        return (entry & self._pmd_bad_bits) != self._KERNPG_TABLE
