"""The page-table walk over however many levels the arch has (pgd_offset ... pte_offset_map).

Tables are frames of emulated RAM and entries are stored in the arch's width and byte order.
The kernel writes one function per level (pgd/pud/pmd); with folded levels varying per arch,
pfnmap has one function per job that loops over the arch's upper levels instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pfnmap.errors import KernelBug
from pfnmap.kernel.constants import PG_pgtable
from pfnmap.kernel.fastpath import BulkCounters

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.kernel.mm import MmStruct
    from pfnmap.kernel.physmem import PhysMem


def addr_end(addr: int, span: int, end: int) -> int:
    """The end of the ``span``-aligned block holding ``addr``, or ``end`` if that comes first:
    the kernel's pgd_addr_end/pud_addr_end/pmd_addr_end for a level whose entry maps ``span``
    bytes. ``end`` is exclusive, as there."""
    return min((addr | (span - 1)) + 1, end)


class TableAccess:
    """Reads and writes entries of one arch in one machine's RAM."""

    def __init__(self, arch: Arch, phys: PhysMem) -> None:
        self.arch = arch
        self.phys = phys
        self.ram = phys.ram
        self.structs = [struct.Struct(arch.entry_struct_format(i)) for i in range(len(arch.levels))]
        self.dtypes = [np.dtype(arch.numpy_dtype(i)) for i in range(len(arch.levels))]
        self.last = len(arch.levels) - 1
        self.pte_struct = self.structs[-1]
        self.pte_bytes = arch.levels[-1].entry_bytes
        #: whether fork and munmap use the bulk per-table forms of copy_pte_range and
        #: zap_pte_range (pfnmap.kernel.fastpath); False runs the scalar reference everywhere
        self.fast_paths = True
        #: what the bulk forms did and handed back (pfnmap.kernel.fastpath.BulkCounters)
        self.bulk = BulkCounters()
        #: tables read by the range walks (pfnmap.kernel.mmap.pte_tables): a work counter
        #: that tests use to show a walk costs what exists, not the span it covers
        self.tables_visited = 0
        # slot() runs several times per fault: keep its geometry as plain ints
        self._slot_geometry = [(lv.shift, lv.entries - 1, lv.entry_bytes) for lv in arch.levels]
        #: per level, what a walk needs to read the entry for an address: the unpacking
        #: function, the index shift and mask, the entry size (the walks of a fault inline
        #: slot() and read() with these)
        self.walk_steps = [
            (st.unpack_from, shift, mask, size)
            for st, (shift, mask, size) in zip(self.structs, self._slot_geometry, strict=True)
        ]

    def read(self, level: int, paddr: int) -> int:
        return self.structs[level].unpack_from(self.ram, paddr)[0]

    def write(self, level: int, paddr: int, value: int) -> None:
        self.structs[level].pack_into(self.ram, paddr, value)

    def read_pte(self, paddr: int) -> int:
        return self.pte_struct.unpack_from(self.ram, paddr)[0]

    def write_pte(self, paddr: int, value: int) -> None:
        self.pte_struct.pack_into(self.ram, paddr, value)

    def table_view(self, level: int, table: int) -> np.ndarray:
        return self.phys.table(table, self.arch.levels[level].entries, self.dtypes[level])

    def slot(self, level: int, table: int, addr: int) -> int:
        """The physical address of the entry for ``addr`` in ``table`` (p?d_offset)."""
        shift, index_mask, entry_bytes = self._slot_geometry[level]
        return table + ((addr >> shift) & index_mask) * entry_bytes


def alloc_table(mm: MmStruct) -> int:
    """pte_alloc_one / pmd_alloc_one / pud_alloc_one: a zeroed RAM frame for a table."""
    phys = mm.machine.phys
    pfn = phys.alloc_page(zero=True)
    phys.flags[pfn] |= PG_pgtable
    mm.nr_pgtables += 1
    return pfn << phys.page_shift


def free_table(mm: MmStruct, paddr: int) -> None:
    phys = mm.machine.phys
    pfn = paddr >> phys.page_shift
    if not phys.flags[pfn] & PG_pgtable:
        raise KernelBug(f"freeing page {pfn:#x} as a page table, but it is not one")
    phys.flags[pfn] &= ~PG_pgtable
    mm.nr_pgtables -= 1
    phys.put_page(pfn)


def pgd_alloc(mm: MmStruct) -> int:
    return alloc_table(mm)


def _upper_entry_ok(mm: MmStruct, level: int, slot: int, entry: int) -> bool:
    """p?d_none_or_clear_bad(): False for none; a bad entry is reported and cleared."""
    if entry == 0:
        return False
    arch = mm.machine.arch
    if arch.table_entry_bad(level, entry) or not arch.table_entry_present(level, entry):
        name = arch.levels[level].name
        mm.machine.log_line(f"bad {name} {slot:#x}({entry:016x}).")
        mm.machine.tables.write(level, slot, 0)
        return False
    return True


def walk_to_table(mm: MmStruct, addr: int, alloc: bool) -> int | None:
    """The physical address of the pte table that covers ``addr``.

    With ``alloc`` missing tables are created (pud_alloc, pmd_alloc, pte_alloc_map); without it
    a none or bad upper entry gives None, as the kernel's walkers bail out.
    """
    tables = mm.machine.tables
    arch = tables.arch
    ram = tables.ram
    table = mm.pgd
    for level in range(tables.last):
        unpack, shift, index_mask, entry_bytes = tables.walk_steps[level]
        slot = table + ((addr >> shift) & index_mask) * entry_bytes  # p?d_offset
        entry = unpack(ram, slot)[0]
        if not entry or not _upper_entry_ok(mm, level, slot, entry):
            if not alloc:
                return None
            new = alloc_table(mm)
            if level == tables.last - 1:
                mm.nr_ptes += 1
            tables.write(level, slot, arch.mk_table_entry(level, new))
            table = new
        else:
            table = arch.table_entry_paddr(level, entry)
    return table


def pte_offset(mm: MmStruct, addr: int, alloc: bool = False) -> int | None:
    """pte_offset_map(): the physical address of the pte slot for ``addr``, or None."""
    table = walk_to_table(mm, addr, alloc)
    if table is None:
        return None
    return mm.machine.tables.slot(mm.machine.tables.last, table, addr)


@dataclass(frozen=True)
class WalkStep:
    """One entry visited by :func:`lookup`."""

    level: int
    level_name: str
    slot: int
    value: int


def lookup(mm: MmStruct, addr: int) -> list[WalkStep]:
    """Every entry the MMU reads for ``addr``, top level first, stopping at none or a leaf."""
    tables = mm.machine.tables
    arch = tables.arch
    steps = []
    table = mm.pgd
    for level in range(len(arch.levels)):
        slot = tables.slot(level, table, addr)
        value = tables.read(level, slot)
        steps.append(WalkStep(level, arch.levels[level].name, slot, value))
        if level == tables.last or value == 0 or arch.table_entry_leaf(level, value):
            break
        table = arch.table_entry_paddr(level, value)
    return steps


def free_pgd_range(mm: MmStruct, addr: int, end: int, floor: int, ceiling: int) -> None:
    """free_pgd_range(): free the tables under ``[addr, end)`` that no vma can still use.

    ``floor`` is the end of the vma below (0 for none) and ``ceiling`` the start of the vma
    above (0 meaning the top of the address space). A table is freed when its whole span lies
    in ``[floor, ceiling)``, the condition the kernel's rounding of addr/end/floor/ceiling to
    PMD/PUD/PGDIR boundaries expresses level by level.
    """
    arch = mm.machine.arch
    top = (1 << (arch.levels[0].shift + arch.levels[0].bits)) if ceiling == 0 else ceiling
    _free_level(mm, 0, mm.pgd, addr, end, floor, top)


def _free_level(mm: MmStruct, level: int, table: int, addr: int, end: int, floor: int, top: int):
    tables = mm.machine.tables
    arch = tables.arch
    lv = arch.levels[level]
    span = lv.span
    a = addr
    while a < end:
        nxt = addr_end(a, span, end)
        slot = tables.slot(level, table, a)
        entry = tables.read(level, slot)
        if entry and _upper_entry_ok(mm, level, slot, entry):
            child = arch.table_entry_paddr(level, entry)
            if level + 1 < tables.last:
                _free_level(mm, level + 1, child, a, nxt, floor, top)
            base = a & ~(span - 1)
            if base >= floor and base + span <= top:
                _check_empty(mm, level + 1, child)
                tables.write(level, slot, 0)
                free_table(mm, child)
                if level + 1 == tables.last:
                    mm.nr_ptes -= 1
        a = nxt


def _check_empty(mm: MmStruct, level: int, table: int) -> None:
    view = mm.machine.tables.table_view(level, table)
    if view.any():
        used = int(np.flatnonzero(view)[0])
        raise KernelBug(
            f"freeing a {mm.machine.arch.levels[level].name} table at {table:#x} that still has "
            f"entry {used} set"
        )
