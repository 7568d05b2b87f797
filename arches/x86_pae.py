"""i386 with PAE: 3-level paging with 64-bit entries, as in include/asm-i386/pgtable-3level.h.

Geometry (pgtable-3level-defs.h): PGDIR_SHIFT 30 with PTRS_PER_PGD 4 (the PDPT, 32 bytes),
PMD_SHIFT 21 with PTRS_PER_PMD 512, PTRS_PER_PTE 512; the pud is folded. 2 MiB pages (PSE) are
pmd leaves. Bit 63 is _PAGE_NX: pfn_pte and pte_modify mask with ``__supported_pte_mask``, which
has NX once set_nx() found an NX-capable CPU; pfnmap models such a CPU. PAGE_COPY and
PAGE_READONLY carry NX, PAGE_SHARED does not (i386 headers). TASK_SIZE is 0xC0000000.

Physical addresses: 36 bits, what the PAE CPUs of the 2.6.15 era had (CONFIG_HIGHMEM64G, "64 GB").
pte_pfn itself returns an ``unsigned long`` (pte_val >> 12 truncated to 32 bits), so it decodes
PA bits 12..43, and later kernels made that the official limit: ``__PHYSICAL_MASK_SHIFT 44``
("the limit we can fit into an unsigned long pfn", x86 merge era), then 52 for the L1TF
PROT_NONE inversion with the comment that the real limit is still 44 bits. A pfn beyond 36 bits
is EINVAL here.

PDPT entries: pgd_alloc() stores ``1 + __pa(pmd)``, the pmd page's address plus _PAGE_PRESENT
only; the CPU refuses RW/USER (reserved bits) there. So the pgd level has its own layout and
:meth:`X86PAE.mk_table_entry` writes present only. Linux's pud_none/pud_bad are 0 and
pud_present is 1 because 2.6.15 allocates the user pmds together with the pgd and never frees
them (pud_clear is empty: "Pentium-II erratum A13"). pfnmap allocates pmd tables on demand and
frees them with the vmas, like every other level; a none PDPT entry is therefore possible, and a
non-none one is bad when it sets bits the CPU reserves.
"""

from __future__ import annotations

import construct as cs

from pfnmap.arch import Level
from pfnmap.arches.x86 import (
    ENTRY_PA_LIMIT,
    X86_CR4_PAE,
    Bit,
    I386Arch,
    large_layout,
    pte_layout,
    table_layout,
)
from pfnmap.plugins import hookimpl

ENTRY_BITS = 64
PHYS_BITS = 36
PAGE_SHIFT = 12
PGDIR_SHIFT = 30  # pgtable-3level-defs.h
PMD_SHIFT = 21
PAGE_OFFSET = 0xC0000000
TASK_SIZE = PAGE_OFFSET
HIGH = "reserved_high"  # bits 62..52 must be 0 under PAE

#: a PDPT entry: bit 0 present, PWT/PCD, bits 2..1 and 8..5 reserved, 11..9 free, 63..52
#: reserved (no NX here), 51..36 address bits the era's CPUs lacked
PDPTE = cs.ByteSwapped(
    cs.BitStruct(
        "reserved_high" / cs.BitsInteger(64 - ENTRY_PA_LIMIT),
        "pa_high" / cs.BitsInteger(ENTRY_PA_LIMIT - PHYS_BITS),
        "table_pfn" / cs.BitsInteger(PHYS_BITS - PAGE_SHIFT),
        "avl" / cs.BitsInteger(3),
        "reserved_8_5" / cs.BitsInteger(4),
        "pcd" / Bit,
        "pwt" / Bit,
        "reserved_2_1" / cs.BitsInteger(2),
        "present" / Bit,
    )
)
TABLE = table_layout(ENTRY_BITS, PHYS_BITS, HIGH)
PTE = pte_layout(ENTRY_BITS, PHYS_BITS, HIGH)
PMD_2M = large_layout(ENTRY_BITS, PHYS_BITS, PMD_SHIFT, HIGH)


class X86PAE(I386Arch):
    name = "x86-pae"
    description = "i386 PAE 3-level paging, 64-bit entries, 4-entry PDPT, 36-bit PA, NX"
    elf_machine = 3  # EM_386
    elf_class = 1
    qemu_monitor_mode = "pae32"
    cr4_set = X86_CR4_PAE
    cr3_root_mask = 0xFFFF_FFE0  # the PDPT is 32-byte aligned
    page_shift = PAGE_SHIFT
    byteorder = "little"
    va_bits = 32
    canonical = False
    phys_bits = PHYS_BITS
    task_size = TASK_SIZE
    bits_per_long = 32
    levels = (
        Level("pgd", PGDIR_SHIFT, 2, 8, PDPTE, None),
        Level("pmd", PMD_SHIFT, 9, 8, TABLE, PMD_2M, "pmd-2M"),
        Level("pte", PAGE_SHIFT, 9, 8, None, PTE, "pte"),
    )

    def __init__(self) -> None:
        super().__init__()
        pdpte = self.table_formats[0]
        #: the bits a PDPT entry may have; the rest are reserved (the CPU refuses them)
        self._pdpte_allowed = (
            pdpte.mask("table_pfn")
            | pdpte.mask("avl")
            | pdpte.mask("pcd")
            | pdpte.mask("pwt")
            | pdpte.mask("present")
        )

    def mk_table_entry(self, level: int, paddr: int) -> int:
        """pgd_alloc's ``set_pgd(pgd, __pgd(1 + __pa(pmd)))`` at the PDPT; pmd_populate below."""
        if level == 0:
            return paddr | self._PAGE_PRESENT
        return super().mk_table_entry(level, paddr)

    def table_entry_bad(self, level: int, entry: int) -> bool:
        """At the PDPT: a reserved bit set (Linux's pud_bad is 0; it never writes one).
        Below it: the i386 pmd_bad()."""
        if level == 0:
            return bool(entry & ~self._pdpte_allowed)
        return super().table_entry_bad(level, entry)


@hookimpl
def pfnmap_arches() -> list[I386Arch]:
    return [X86PAE()]
