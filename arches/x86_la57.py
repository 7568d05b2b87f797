"""x86-64 5-level paging (LA57): pgd -> p4d -> pud -> pmd -> pte, 57-bit virtual addresses.

Hardware and geometry from the 2017 5-level patches (kernel-reference §6.6; Linux 4.14+): every
level has 512 entries of 8 bytes and translates 9 VA bits, so PGDIR_SHIFT is 48 and P4D_SHIFT 39;
canonical addresses sign-extend bit 56. TASK_SIZE is ``(1 << 56) - PAGE_SIZE`` (TASK_SIZE_MAX
with __VIRTUAL_MASK_SHIFT 56). Leaves as on x86-64: 2 MiB at the pmd, 1 GiB at the pud.

Physical addresses: 52 bits. That is both what LA57 hardware defines (4 PB) and the kernel's
``__PHYSICAL_MASK_SHIFT`` in CONFIG_X86_5LEVEL builds, so the pte's address field reaches bit 51
and no entry bit is left as an unused address bit.

This mode is anachronistic by design: the entry bits and the pte operations are 2.6.15's x86-64
ones (the bit layout did not change), on the geometry of a 2017 CPU. Where pfnmap differs: a
real kernel hands out addresses above 47 bits only when mmap is given a hint above them; pfnmap's
get_unmapped_area searches the whole TASK_SIZE.
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
PHYS_BITS = 52  # __PHYSICAL_MASK_SHIFT with CONFIG_X86_5LEVEL
PGDIR_SHIFT = 48
P4D_SHIFT = 39
PUD_SHIFT = 30
PMD_SHIFT = 21
PAGE_SHIFT = 12
VIRTUAL_MASK_SHIFT = 56  # __VIRTUAL_MASK_SHIFT with LA57
TASK_SIZE = (1 << VIRTUAL_MASK_SHIFT) - (1 << PAGE_SHIFT)

TABLE = table_layout(ENTRY_BITS, PHYS_BITS)
PTE = pte_layout(ENTRY_BITS, PHYS_BITS)
PMD_2M = large_layout(ENTRY_BITS, PHYS_BITS, PMD_SHIFT)
PUD_1G = large_layout(ENTRY_BITS, PHYS_BITS, PUD_SHIFT)


class X86LA57(X86Arch):
    name = "x86-la57"
    description = "x86-64 5-level paging (LA57), 57-bit VA, 52-bit PA, NX"
    elf_machine = 62  # EM_X86_64
    elf_class = 2
    qemu_monitor_mode = "la57"
    uname_machine = "x86_64"
    cr4_set = X86_CR4_PAE | X86_CR4_LA57
    page_shift = PAGE_SHIFT
    byteorder = "little"
    va_bits = 57
    canonical = True
    phys_bits = PHYS_BITS
    task_size = TASK_SIZE
    levels = (
        Level("pgd", PGDIR_SHIFT, 9, 8, TABLE, None),
        Level("p4d", P4D_SHIFT, 9, 8, TABLE, None),
        Level("pud", PUD_SHIFT, 9, 8, TABLE, PUD_1G, "pud-1G"),
        Level("pmd", PMD_SHIFT, 9, 8, TABLE, PMD_2M, "pmd-2M"),
        Level("pte", PAGE_SHIFT, 9, 8, None, PTE, "pte"),
    )


@hookimpl
def pfnmap_arches() -> list[X86Arch]:
    return [X86LA57()]
