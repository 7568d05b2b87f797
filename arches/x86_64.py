"""x86-64 4-level paging (PML4), as in include/asm-x86_64/pgtable.h of 2.6.15.

48-bit canonical virtual addresses, 46-bit physical addresses (``__PHYSICAL_MASK_SHIFT``),
4 KiB pages, 2 MiB leaves at the pmd and 1 GiB leaves at the pud (the hardware has them;
2.6.15 itself did not use 1 GiB pages), NX at bit 63.
"""

from __future__ import annotations

from pfnmap.arch import Level
from pfnmap.arches.x86 import (
    X86_CR4_LA57,
    X86_CR4_PAE,
    X86Arch,
    large_layout,
    pte_layout,
    table_layout,
)
from pfnmap.plugins import hookimpl

ENTRY_BITS = 64
PHYS_BITS = 46  # __PHYSICAL_MASK_SHIFT
PGDIR_SHIFT = 39
PUD_SHIFT = 30
PMD_SHIFT = 21
PAGE_SHIFT = 12
TASK_SIZE64 = 0x800000000000 - 4096  # include/asm-x86_64/processor.h

TABLE = table_layout(ENTRY_BITS, PHYS_BITS)
PTE = pte_layout(ENTRY_BITS, PHYS_BITS)
PMD_2M = large_layout(ENTRY_BITS, PHYS_BITS, PMD_SHIFT)
PUD_1G = large_layout(ENTRY_BITS, PHYS_BITS, PUD_SHIFT)


class X86_64(X86Arch):
    name = "x86-64"
    description = "x86-64 4-level paging (PML4), 48-bit VA, 46-bit PA, NX"
    elf_machine = 62  # EM_X86_64
    elf_class = 2
    qemu_monitor_mode = "la48"
    uname_machine = "x86_64"
    cr4_set = X86_CR4_PAE
    cr4_clear = X86_CR4_LA57
    page_shift = PAGE_SHIFT
    byteorder = "little"
    va_bits = 48
    canonical = True
    phys_bits = PHYS_BITS
    task_size = TASK_SIZE64
    levels = (
        Level("pgd", PGDIR_SHIFT, 9, 8, TABLE, None),
        Level("pud", PUD_SHIFT, 9, 8, TABLE, PUD_1G, "pud-1G"),
        Level("pmd", PMD_SHIFT, 9, 8, TABLE, PMD_2M, "pmd-2M"),
        Level("pte", PAGE_SHIFT, 9, 8, None, PTE, "pte"),
    )


@hookimpl
def pfnmap_arches() -> list[X86Arch]:
    return [X86_64()]
