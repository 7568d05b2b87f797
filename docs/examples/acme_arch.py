"""An example third-party arch plugin for pfnmap: "acme-39", x86 entries in three levels.

A made-up paging mode, for the plugin guide (docs/plugins.rst): 64-bit x86 entries, 39 bits
of virtual address in three 9-bit levels, 40-bit physical addresses, 2 MiB leaves at the pmd.
It reuses the x86 layout builders and pte operations, so all it states is geometry. The docs
build imports this module and validates its arch, so the example cannot rot unnoticed.

Publish it from the plugin's own pyproject.toml::

    [project.entry-points."pfnmap.arches"]
    acme = "acme_pfnmap.arch"
"""

from __future__ import annotations

from pfnmap.arch import Level
from pfnmap.arches.x86 import X86Arch, large_layout, pte_layout, table_layout
from pfnmap.plugins import hookimpl

ENTRY_BITS = 64
PHYS_BITS = 40
PAGE_SHIFT = 12
PMD_SHIFT = 21
PGDIR_SHIFT = 30

# construct layouts, built once at import: the single source of truth for every bit
TABLE = table_layout(ENTRY_BITS, PHYS_BITS)
PTE = pte_layout(ENTRY_BITS, PHYS_BITS)
PMD_2M = large_layout(ENTRY_BITS, PHYS_BITS, PMD_SHIFT)


class Acme39(X86Arch):
    name = "acme-39"
    description = "example: x86 entries, 3 levels, 39-bit VA, 40-bit PA"
    page_shift = PAGE_SHIFT
    byteorder = "little"
    va_bits = 39
    canonical = True
    phys_bits = PHYS_BITS
    task_size = (1 << 38) - (1 << PAGE_SHIFT)  # the lower half, less a guard page
    levels = (
        # name, lowest VA bit, index bits, entry bytes, table layout, leaf layout, leaf name
        Level("pgd", PGDIR_SHIFT, 9, 8, TABLE, None),
        Level("pmd", PMD_SHIFT, 9, 8, TABLE, PMD_2M, "pmd-2M"),
        Level("pte", PAGE_SHIFT, 9, 8, None, PTE, "pte"),
    )


@hookimpl
def pfnmap_arches() -> list[X86Arch]:
    return [Acme39()]
