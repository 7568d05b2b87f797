"""copy_pte_range and zap_pte_range a table at a time: the bulk forms fork and munmap use.

The kernel-shaped functions in :mod:`pfnmap.kernel.memory` (``copy_pte_range`` / ``copy_one_pte``,
``zap_pte_range``) stay the reference: they read like mm/memory.c and decide one pte at a time.
The functions here reach the same end state with a few numpy operations per pte table, which
the kernel's loops allow because nothing a pte does depends on the pte before it:

1. read the table slice once as native uint64 values;
2. apply the masks copy_one_pte applies to every present pte (``pte_wrprotect`` for a COW
   mapping, ``pte_mkclean`` for a shared one, ``pte_mkold``), through the arch's whole-table
   operations (``Arch.ptes_*``);
3. decide vm_normal_page() for every pte at once
   (:func:`pfnmap.kernel.normal_page.pte_verdicts`): present, pfn, pfn_valid, the era's rule
   (the linear vm_pgoff rule, ``is_cow_mapping``, VM_MIXEDMAP, pte_special);
4. loop in Python only over the ptes that have a struct page, for the count, mapcount, rss
   and (zap) dirty/young/rmap updates.

Whenever the table holds something whose handling has side effects beyond those, the bulk
function returns False *before changing anything* and the caller runs the scalar reference
for that table: a bad pte (print_bad_pte's log line and hook, or 2.6.26's VM_BUG_ON), a
VM_UNPAGED vma before the seed whose pfns have struct pages (page_is_anon() reads them), or
a vm_pgoff so large that the linear rule leaves 63 bits. So log lines, reports and
exceptions come from the same code in the same order as without the bulk path.

``machine.tables.fast_paths = False`` turns the bulk forms off for one machine (the tests
compare both ways on every arch and era). ``machine.tables.bulk`` (:class:`BulkCounters`) counts
the tables each bulk form did and the ones it handed back to the scalar path, so a test can
tell that the bulk path really ran (a machine with only well-formed ptes never falls back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pfnmap.kernel.constants import VM_SHARED, PG_anon, is_cow_mapping
from pfnmap.kernel.normal_page import pte_verdicts

if TYPE_CHECKING:
    from pfnmap.kernel.mm import MmStruct, VmArea


@dataclass
class BulkCounters:
    """How many pte tables fork's and munmap's bulk forms did, and how many they handed back."""

    copy_tables: int = 0
    copy_fallbacks: int = 0
    zap_tables: int = 0
    zap_fallbacks: int = 0

    @property
    def fallbacks(self) -> int:
        return self.copy_fallbacks + self.zap_fallbacks

    def count(self, kind: str, fell_back: bool) -> None:
        """One more pte table of ``kind`` ("copy" or "zap"), done in bulk or handed back."""
        name = f"{kind}_fallbacks" if fell_back else f"{kind}_tables"
        setattr(self, name, getattr(self, name) + 1)


def _table_slice(mm: MmStruct, table: int, addr: int, end: int) -> np.ndarray:
    tables = mm.machine.tables
    first = tables.arch.index(tables.last, addr)
    count = (end - addr) >> tables.arch.page_shift
    return tables.table_view(tables.last, table)[first : first + count]


def try_copy_pte_range(
    dst_mm: MmStruct,
    src_mm: MmStruct,
    dst_table: int,
    src_table: int,
    vma: VmArea,
    addr: int,
    end: int,
) -> bool:
    """copy_pte_range() for one table in bulk; False (nothing changed) when the table needs the
    scalar copy_one_pte loop. The parent's ptes, the child's ptes, struct page counts and
    mapcounts and the child's rss end up as copy_one_pte leaves them."""
    machine = src_mm.machine
    arch = machine.arch
    rules = machine.rules
    src = _table_slice(src_mm, src_table, addr, end)
    if not src.any():
        return True
    ptes = src.astype(np.uint64)
    present = arch.ptes_present(ptes)
    dst = _table_slice(dst_mm, dst_table, addr, end)
    if not present.any():  # copy_one_pte copies a not-present pte as it is
        np.copyto(dst, ptes, where=ptes != 0, casting="unsafe")
        return True
    flags = vma.vm_flags
    cow = is_cow_mapping(flags)
    parent = arch.ptes_wrprotect(ptes) if cow else ptes  # ptep_set_wrprotect
    child = arch.ptes_mkclean(parent) if flags & VM_SHARED else parent
    child = arch.ptes_mkold(child)
    if rules.copy_raw_pte_verbatim:
        # before the seed the page is looked up on the pte as it is, and a pte without one is
        # copied untouched
        verdicts = _verdicts(machine, vma, addr, ptes, present)
        changed = None if verdicts is None else verdicts.page
    else:
        judged = present & arch.ptes_present(child)
        verdicts = _verdicts(machine, vma, addr, child, judged)
        changed = present
    if verdicts is None or verdicts.bad.any():
        return False
    assert changed is not None
    everything = bool(changed.all())
    if cow:
        src[:] = parent if everything else np.where(changed, parent, ptes)
    child_out = child if everything else np.where(changed, child, ptes)
    np.copyto(dst, child_out, where=ptes != 0, casting="unsafe")
    paged = np.flatnonzero(verdicts.page)
    if paged.size:
        phys = machine.phys
        count, mapcount, page_flags = phys.count, phys.mapcount, phys.flags
        anon = 0
        for page in verdicts.pfn[paged].tolist():
            count[page] += 1  # get_page
            mapcount[page] += 1  # page_dup_rmap
            if page_flags[page] & PG_anon:
                anon += 1
        dst_mm.add_mm_rss(paged.size - anon, anon)
    return True


def _verdicts(machine, vma: VmArea, addr: int, ptes: np.ndarray, present: np.ndarray):
    """pte_verdicts() with what the machine knows: pfn_valid, the zero page, the memmap's top."""
    phys = machine.phys
    return pte_verdicts(
        machine.arch,
        machine.rules,
        phys.pfns_valid,
        vma,
        addr,
        ptes,
        present,
        zero_pfn=phys.zero_pfn,
        highest_memmap_pfn=phys.highest_memmap_pfn,
    )


def try_zap_pte_range(
    mm: MmStruct, vma: VmArea, table: int, addr: int, end: int, gathered: list[int]
) -> bool:
    """zap_pte_range() for one table in bulk; False (nothing changed) when the table needs the
    scalar loop. Pages are handled in pte order, as the scalar loop does, so a mapcount
    underflow raises at the same page with the same state behind it."""
    from pfnmap.kernel.memory import mark_page_accessed, page_remove_rmap, set_page_dirty

    machine = mm.machine
    arch = machine.arch
    view = _table_slice(mm, table, addr, end)
    if not view.any():
        return True
    ptes = view.astype(np.uint64)
    present = arch.ptes_present(ptes)
    if not present.any():  # swap and file ptes: just cleared (neither is modelled)
        view[:] = 0
        return True
    phys = machine.phys
    verdicts = _verdicts(machine, vma, addr, ptes, present)
    if verdicts is None or verdicts.bad.any():
        return False
    file_rss = anon_rss = 0
    paged = np.flatnonzero(verdicts.page)
    if paged.size:
        page_flags = phys.flags
        pte_dirty, pte_young = arch.pte_dirty, arch.pte_young
        for pte, page in zip(ptes[paged].tolist(), verdicts.pfn[paged].tolist(), strict=True):
            if page_flags[page] & PG_anon:
                anon_rss -= 1
            else:
                if pte_dirty(pte):
                    set_page_dirty(phys, page)
                if pte_young(pte):
                    mark_page_accessed(phys, page)
                file_rss -= 1
            page_remove_rmap(phys, page)
            gathered.append(page)  # tlb_remove_page
    view[:] = 0
    mm.add_mm_rss(file_rss, anon_rss)
    return True
