"""A whole-machine consistency check: every reference and mapping accounted for.

For every RAM page the expected reference count is rebuilt from its holders: the boot
(reserved pages and the ZERO_PAGE), the page cache, driver buffers, page-table use, every pte
that vm_normal_page() says maps it, and get_user_pages pins. The expected mapcount is the number
of such ptes; each mm's rss counters must equal what its ptes map. Anything else allocated is a
leak. The check reads the page tables only; it never changes the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.errors import PfnmapError
from pfnmap.kernel.constants import PG_anon, PG_pgtable, PG_reserved
from pfnmap.kernel.mmap import iter_ptes
from pfnmap.kernel.normal_page import Verdict, vm_normal_page_verdict

if TYPE_CHECKING:
    from pfnmap.kernel.mm import MmStruct
    from pfnmap.machine.machine import Machine


class InvariantError(PfnmapError, AssertionError):
    """The machine's bookkeeping is inconsistent; the message lists every problem found."""


def _table_frames(mm: MmStruct) -> list[int]:
    """Every table frame reachable from the mm's pgd, the pgd included."""
    tables = mm.machine.tables
    arch = tables.arch
    frames = []

    def visit(level: int, table: int) -> None:
        frames.append(table >> arch.page_shift)
        if level == tables.last:
            return
        view = tables.table_view(level, table)
        for entry in view[view != 0].tolist():
            if arch.table_entry_present(level, entry) and not arch.table_entry_leaf(level, entry):
                visit(level + 1, arch.table_entry_paddr(level, entry))

    visit(0, mm.pgd)
    return frames


def check_invariants(machine: Machine) -> None:
    phys = machine.phys
    n = phys.nr_pages
    refs = [0] * n
    maps = [0] * n
    problems: list[str] = []
    for pfn in range(phys.reserved_low_pages):
        refs[pfn] += 1
    refs[phys.zero_pfn] += 1
    # unlinked inodes (the shmem object behind MAP_SHARED|MAP_ANONYMOUS) are not in
    # machine.inodes; their page caches hold references too, reached through the vmas
    inodes = {id(inode): inode for inode in machine.inodes.values()}
    for proc in machine.processes.values():
        for vma in proc.mm.mmap:
            if vma.vm_file is not None:
                inodes.setdefault(id(vma.vm_file.inode), vma.vm_file.inode)
    for inode in inodes.values():
        for pfn in inode.mapping.pages.values():
            refs[pfn] += 1
        for pfn in getattr(inode, "pages", ()):  # driver-owned buffers
            refs[pfn] += 1
    for pfn, pins in machine.pins.items():
        refs[pfn] += pins
    table_owner: dict[int, str] = {}
    for proc in machine.processes.values():
        mm = proc.mm
        frames = _table_frames(mm)
        if len(frames) != mm.nr_pgtables:
            problems.append(
                f"{proc!r}: {len(frames)} reachable table frames, nr_pgtables={mm.nr_pgtables}"
            )
        for pfn in frames:
            if pfn in table_owner:
                problems.append(f"table frame {pfn:#x} shared by {table_owner[pfn]} and {proc!r}")
            table_owner[pfn] = repr(proc)
            refs[pfn] += 1
            if not phys.flags[pfn] & PG_pgtable:
                problems.append(f"{proc!r}: table frame {pfn:#x} is not marked as a page table")
        file_rss = anon_rss = 0
        for vma in mm.mmap:
            for addr, pte in iter_ptes(mm, vma.vm_start, vma.vm_end):
                verdict, pfn, _ = vm_normal_page_verdict(vma, addr, pte)
                if verdict in (Verdict.NORMAL, Verdict.COWED):
                    refs[pfn] += 1
                    maps[pfn] += 1
                    if phys.flags[pfn] & PG_anon:
                        anon_rss += 1
                    else:
                        file_rss += 1
        if (file_rss, anon_rss) != (mm.file_rss, mm.anon_rss):
            problems.append(
                f"{proc!r}: ptes map file={file_rss} anon={anon_rss}, counters say "
                f"file_rss={mm.file_rss} anon_rss={mm.anon_rss}"
            )
    for pfn in range(n):
        if phys.count[pfn] != refs[pfn] or phys.mapcount[pfn] != maps[pfn]:
            problems.append(
                f"page {pfn:#x} ({','.join(phys.flag_names(pfn)) or 'no flags'}): "
                f"count={phys.count[pfn]} mapcount={phys.mapcount[pfn]}, "
                f"expected count={refs[pfn]} mapcount={maps[pfn]}"
            )
        if phys.flags[pfn] & PG_pgtable and pfn not in table_owner:
            problems.append(f"page-table frame {pfn:#x} leaked (no mm reaches it)")
    in_use = sum(1 for pfn in range(n) if phys.count[pfn])
    free = phys.free_pages()
    if in_use + free != n:
        problems.append(f"{in_use} pages in use + {free} free != {n} RAM pages")
    reserved = sum(1 for pfn in range(n) if phys.flags[pfn] & PG_reserved and not phys.count[pfn])
    if reserved:
        problems.append(f"{reserved} reserved pages have no reference")
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InvariantError("\n".join(shown) + more)
