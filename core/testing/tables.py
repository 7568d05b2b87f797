"""Synthetic page tables: entries written by hand into a machine's RAM, read back by the core.

:class:`SyntheticTables` builds a page-table tree for one arch without processes, vmas or
faults: ``map(va, pfn, prot)`` allocates whatever tables the walk needs (with the arch's
``mk_table_entry``) and writes the leaf, ``translate(va)`` asks the core's MMU model
(:func:`pfnmap.kernel.uaccess.hw_translate`) where an access lands, and :meth:`dump` gives the table
frames as raw bytes, exactly as a physical-memory image would hold them. It is the
volatility3 ``BufferDataLayer`` idea: known tables in, the walker's answer out.

The tree's frames come from the machine's page allocator and are marked as page tables, like
a process's; :meth:`release` frees them all, after which ``machine.check_invariants()`` holds
again. The ``pfnmap_tables`` fixture does that for you.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

from pfnmap.errors import KernelError
from pfnmap.kernel.mm import MmStruct
from pfnmap.kernel.pgtable import WalkStep, alloc_table, free_table, lookup
from pfnmap.kernel.uaccess import hw_translate

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.machine import Machine


class SyntheticTables:
    """A page-table tree for ``machine.arch``, rooted at a fresh top-level table."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.arch: Arch = machine.arch
        # an mm that belongs to no process: it only carries the root and the table count
        self.mm = MmStruct(machine, 0, "synthetic")
        self.mm.pgd = alloc_table(self.mm)
        self.released = False

    @property
    def root(self) -> int:
        """Physical address of the top-level table (what CR3, satp or the MMU context holds)."""
        return self.mm.pgd

    @property
    def va_limit(self) -> int:
        """One past the highest VA the tables translate (the lower half, for canonical VAs)."""
        top = self.arch.levels[0]
        return 1 << (top.shift + top.bits)

    # building -------------------------------------------------------------------------------
    def _table_for(self, va: int, level: int) -> int:
        """The table of ``level`` that covers ``va``, allocating the tables above it."""
        arch = self.arch
        tables = self.machine.tables
        table = self.mm.pgd
        for upper in range(level):
            slot = tables.slot(upper, table, va)
            entry = tables.read(upper, slot)
            if entry == 0:
                child = alloc_table(self.mm)
                tables.write(upper, slot, arch.mk_table_entry(upper, child))
                table = child
                continue
            if arch.table_entry_leaf(upper, entry) or not arch.table_entry_present(upper, entry):
                raise ValueError(
                    f"{va:#x}: the {arch.levels[upper].name} entry {entry:#x} is not a table "
                    f"pointer, so nothing can be mapped below it"
                )
            table = arch.table_entry_paddr(upper, entry)
        return table

    def set_entry(self, va: int, level: int, value: int) -> int:
        """Write ``value`` as the entry of ``level`` for ``va``; returns the slot's address."""
        self._check_va(va)
        table = self._table_for(va, level)
        slot = self.machine.tables.slot(level, table, va)
        self.machine.tables.write(level, slot, value)
        return slot

    def map(self, va: int, pfn: int, prot: int, size: int | None = None) -> int:
        """Map the page at ``va`` to ``pfn`` with ``prot``; returns the entry written.

        ``size`` None (or the base page size) writes a pte with ``pfn_pte``; a large-page size
        writes a leaf at the level of that size with the arch's ``mk_large_entry`` (arches
        without it cannot take one: ValueError). ``va`` must be aligned to the page size.
        """
        arch = self.arch
        size = size or arch.page_size
        if va & (size - 1):
            raise ValueError(f"{va:#x} is not aligned to the {size:#x}-byte page")
        if size == arch.page_size:
            value = arch.pfn_pte(pfn, prot)
            level = len(arch.levels) - 1
        else:
            mk_large = getattr(arch, "mk_large_entry", None)
            if mk_large is None:
                raise ValueError(f"{arch.name} has no mk_large_entry: no large-page leaves")
            try:
                level = arch.large_page_level(size)
            except KernelError as exc:
                raise ValueError(str(exc)) from None
            value = mk_large(size, pfn, prot)
        self.set_entry(va, level, value)
        return value

    def _check_va(self, va: int) -> None:
        if not 0 <= va < self.va_limit:
            raise ValueError(f"{va:#x} is outside the {self.va_limit:#x} bytes the tables cover")

    # reading back -------------------------------------------------------------------------------
    def walk(self, va: int) -> list[WalkStep]:
        """Every entry the core's walker reads for ``va``, top level first."""
        self._check_va(va)
        return lookup(self.mm, va)

    def translate(self, va: int, write: bool = False) -> int | None:
        """Where a user access to ``va`` lands, per the core's MMU model (None: it faults).

        As on the hardware, a successful access may set accessed/dirty bits in the leaf.
        """
        self._check_va(va)
        return hw_translate(SimpleNamespace(machine=self.machine, pgd=self.mm.pgd), va, write)

    def frames(self) -> list[tuple[int, int]]:
        """``(level, physical address)`` of every table frame reachable from the root."""
        arch = self.arch
        tables = self.machine.tables
        out: list[tuple[int, int]] = []

        def visit(level: int, table: int) -> None:
            out.append((level, table))
            if level == tables.last:
                return
            view = tables.table_view(level, table)
            for entry in view[view != 0].tolist():
                if arch.table_entry_present(level, entry) and not arch.table_entry_leaf(
                    level, entry
                ):
                    visit(level + 1, arch.table_entry_paddr(level, entry))

        visit(0, self.mm.pgd)
        return out

    def dump(self) -> dict[int, bytes]:
        """The bytes of every table frame, by physical address: a page-table image."""
        page = self.arch.page_size
        return {paddr: self.machine.phys.read(paddr, page) for _, paddr in self.frames()}

    # teardown -----------------------------------------------------------------------------------
    def release(self) -> None:
        """Free every table frame (the entries in them are simply forgotten)."""
        if self.released:
            return
        tables = self.machine.tables
        for level, paddr in reversed(self.frames()):
            n = self.arch.levels[level].entries
            tables.table_view(level, paddr)[:n] = 0
            free_table(self.mm, paddr)
        self.released = True
