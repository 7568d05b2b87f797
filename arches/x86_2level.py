"""i386 without PAE: 2-level paging with 32-bit entries, as in include/asm-i386/pgtable-2level.h.

Geometry (pgtable-2level-defs.h): PGDIR_SHIFT 22, PTRS_PER_PGD 1024, PTRS_PER_PTE 1024. The pud
and pmd are folded (pgtable-nopmd.h), so the pgd points straight at pte tables and the arch has
two levels; the entry the generic code calls a pmd is the pgd entry, which is why pmd_bad and
pmd_large apply to it. 4 MiB pages (PSE) are pgd leaves. Physical addresses are 32 bits: a pte
holds PA bits 31..12, so a pfn of 2**20 or more cannot be encoded (pfn_pte would truncate it;
pfnmap refuses it with EINVAL, see remap_pfn_range and /dev/mem). ``_PAGE_NX`` is 0 without PAE,
so no protection carries NX. TASK_SIZE = PAGE_OFFSET = 0xC0000000 (the default 3G/1G split,
include/asm-i386/processor.h and page.h).

PSE-36: on CPUs with it (every P6 and later) a 4 MiB pgd leaf carries PA bits 35..32 in entry
bits 16..13. 2.6.15 never set them (pfn_pmd shifts a 32-bit pfn), and pfnmap refuses such pfns,
so they are 0 in every entry pfnmap builds; the layout names them (``pse36_pa``) and the MMU walk
honours them, as a dump decoder must.
"""

from __future__ import annotations

from pfnmap.arch import Level
from pfnmap.arches.x86 import X86_CR4_PAE, I386Arch, large_layout, pte_layout, table_layout
from pfnmap.plugins import hookimpl

ENTRY_BITS = 32
PHYS_BITS = 32
PAGE_SHIFT = 12
PGDIR_SHIFT = 22  # pgtable-2level-defs.h
PSE36_BITS = 4  # PA bits 35..32 of a 4 MiB page, in entry bits 16..13
PAGE_OFFSET = 0xC0000000  # __PAGE_OFFSET, CONFIG_VMSPLIT_3G
TASK_SIZE = PAGE_OFFSET

TABLE = table_layout(ENTRY_BITS, PHYS_BITS)
PTE = pte_layout(ENTRY_BITS, PHYS_BITS)
PGD_4M = large_layout(ENTRY_BITS, PHYS_BITS, PGDIR_SHIFT, pse36_bits=PSE36_BITS)


class X86_2Level(I386Arch):
    name = "x86-2level"
    description = "i386 2-level paging, 32-bit entries, 32-bit PA, 4 MiB PSE pages, no NX"
    elf_machine = 3  # EM_386
    elf_class = 1
    qemu_monitor_mode = "32"
    cr4_clear = X86_CR4_PAE
    cr3_root_mask = 0xFFFF_F000
    page_shift = PAGE_SHIFT
    byteorder = "little"
    va_bits = 32
    canonical = False
    phys_bits = PHYS_BITS
    task_size = TASK_SIZE
    bits_per_long = 32
    levels = (
        Level("pgd", PGDIR_SHIFT, 10, 4, TABLE, PGD_4M, "pgd-4M"),
        Level("pte", PAGE_SHIFT, 10, 4, None, PTE, "pte"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._pse36 = self.leaf_formats[0].fields["pse36_pa"]

    def leaf_paddr(self, level: int, entry: int) -> int:
        """The page's physical address; a 4 MiB leaf adds its PSE-36 bits as PA bits 32+."""
        paddr = super().leaf_paddr(level, entry)
        if level == 0:
            paddr |= self._pse36.get(entry) << 32
        return paddr


@hookimpl
def pfnmap_arches() -> list[I386Arch]:
    return [X86_2Level()]
