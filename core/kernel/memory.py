"""mm/memory.c right after the seed (6aab341e): vm_normal_page and the paths that use it.

``struct page *`` is modelled as the page's pfn (an int) and NULL as None. Each function's
docstring names the kernel function and says where pfnmap differs. Per-table work reads the
whole table once through numpy and loops over the present entries only, the way
copy_pte_range/zap_pte_range hold one table lock and batch the rss counters. fork and munmap
first try the bulk forms of those two (:mod:`pfnmap.kernel.fastpath`, numpy masks per table), which
fall back to the functions here for any table they cannot do exactly as these would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pfnmap.errors import KernelBug, KernelError, KernelLivelock
from pfnmap.kernel.constants import (
    FOLL_ANON,
    FOLL_GET,
    FOLL_TOUCH,
    FOLL_WRITE,
    VM_FAULT_MAJOR,
    VM_FAULT_MINOR,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VM_FAULT_WRITE,
    VM_LOCKED,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    PG_active,
    PG_anon,
    PG_dirty,
    PG_lru,
    PG_referenced,
    is_cow_mapping,
)
from pfnmap.kernel.fastpath import try_copy_pte_range, try_zap_pte_range
from pfnmap.kernel.normal_page import vm_normal_page
from pfnmap.kernel.pgtable import _upper_entry_ok, addr_end, alloc_table

if TYPE_CHECKING:
    from pfnmap.kernel.mm import MmStruct, VmArea
    from pfnmap.kernel.physmem import PhysMem


def page_add_anon_rmap(phys: PhysMem, pfn: int, vma: VmArea, address: int) -> None:
    """page_add_anon_rmap(): the first mapping points page->mapping at the anon_vma."""
    if phys.mapcount[pfn] == 0:
        phys.mapping[pfn] = vma.anon_vma
        phys.index[pfn] = vma.linear_page_index(address)
        phys.flags[pfn] |= PG_anon
    phys.mapcount[pfn] += 1


def page_add_file_rmap(phys: PhysMem, pfn: int) -> None:
    if phys.flags[pfn] & PG_anon:
        raise KernelBug(f"page_add_file_rmap on anon page {pfn:#x}")
    phys.mapcount[pfn] += 1


def page_dup_rmap(phys: PhysMem, pfn: int) -> None:
    phys.mapcount[pfn] += 1


def page_remove_rmap(phys: PhysMem, pfn: int) -> None:
    if phys.mapcount[pfn] <= 0:
        raise KernelBug(f"page_remove_rmap: page {pfn:#x} has no mapping left")
    phys.mapcount[pfn] -= 1


def lru_cache_add_active(phys: PhysMem, pfn: int) -> None:
    phys.flags[pfn] |= PG_lru | PG_active


def mark_page_accessed(phys: PhysMem, pfn: int) -> None:
    phys.flags[pfn] |= PG_referenced


def set_page_dirty(phys: PhysMem, pfn: int) -> None:
    phys.flags[pfn] |= PG_dirty


# fork ------------------------------------------------------------------------------------------
def _pte_table(tables, kind: str, bulk, scalar, args: tuple) -> None:
    """One pte table of fork ("copy") or munmap ("zap"): the bulk form when it takes the table,
    else the scalar reference, which is also what runs with ``tables.fast_paths`` off."""
    if tables.fast_paths:
        if bulk(*args):
            tables.bulk.count(kind, fell_back=False)
            return
        tables.bulk.count(kind, fell_back=True)
    scalar(*args)


def copy_page_range(dst_mm: MmStruct, src_mm: MmStruct, vma: VmArea) -> None:
    """copy_page_range(): copy the vma's ptes into the child at fork.

    Vmas without any of the rules' forcing flags (seed: VM_HUGETLB|VM_NONLINEAR|VM_PFNMAP) and
    without an anon_vma are skipped: the child refaults them. The per-level copy_pud_range /
    copy_pmd_range are one loop here (:func:`_copy_level`), since the number of levels varies.
    """
    rules = dst_mm.machine.rules
    if not (vma.vm_flags & rules.copy_forcing_flags) and vma.anon_vma is None:
        return
    _copy_level(dst_mm, src_mm, vma, 0, dst_mm.pgd, src_mm.pgd, vma.vm_start, vma.vm_end)


def _copy_level(dst_mm, src_mm, vma, level, dst_table, src_table, addr, end) -> None:
    tables = src_mm.machine.tables
    arch = tables.arch
    if level == tables.last:
        args = (dst_mm, src_mm, dst_table, src_table, vma, addr, end)
        _pte_table(tables, "copy", try_copy_pte_range, copy_pte_range, args)
        return
    span = arch.levels[level].span
    while addr < end:
        nxt = addr_end(addr, span, end)
        src_slot = tables.slot(level, src_table, addr)
        entry = tables.read(level, src_slot)
        if entry and _upper_entry_ok(src_mm, level, src_slot, entry):
            dst_slot = tables.slot(level, dst_table, addr)
            dst_entry = tables.read(level, dst_slot)
            if dst_entry:
                dst_child = arch.table_entry_paddr(level, dst_entry)
            else:  # pud_alloc / pmd_alloc / pte_alloc_map_lock
                dst_child = alloc_table(dst_mm)
                if level + 1 == tables.last:
                    dst_mm.nr_ptes += 1
                tables.write(level, dst_slot, arch.mk_table_entry(level, dst_child))
            src_child = arch.table_entry_paddr(level, entry)
            _copy_level(dst_mm, src_mm, vma, level + 1, dst_child, src_child, addr, nxt)
        addr = nxt


def copy_pte_range(dst_mm, src_mm, dst_table: int, src_table: int, vma, addr: int, end: int):
    """copy_pte_range(): one pte table, rss batched into the child once (add_mm_rss)."""
    tables = src_mm.machine.tables
    arch = tables.arch
    shift = arch.page_shift
    first = arch.index(tables.last, addr)
    count = (end - addr) >> shift
    src = tables.table_view(tables.last, src_table)[first : first + count]
    dst = tables.table_view(tables.last, dst_table)[first : first + count]
    used = np.flatnonzero(src)
    if not used.size:
        return
    rss = [0, 0]
    src_out = []
    dst_out = []
    for k, pte in zip(used.tolist(), src[used].tolist(), strict=True):
        new_src, new_dst = copy_one_pte(dst_mm, src_mm, vma, addr + (k << shift), pte, rss)
        src_out.append(new_src)
        dst_out.append(new_dst)
    src[used] = src_out
    dst[used] = dst_out
    dst_mm.add_mm_rss(rss[0], rss[1])


def copy_one_pte(dst_mm, src_mm, vma: VmArea, addr: int, pte: int, rss: list[int]):
    """copy_one_pte(): returns (the parent's pte after the copy, the child's pte).

    COW mappings write-protect every present pte in the parent, raw PFN ptes included; shared
    mappings give the child a clean pte; the child's pte is always old. Only a pte with a
    struct page (vm_normal_page) takes a reference, a mapcount and an rss count.
    pfnmap models neither swap nor nonlinear file ptes, so a not-present pte is copied as is.
    Before the seed (``rules.copy_raw_pte_verbatim``) a pte without a page is copied as it is,
    before any write-protect: parent and child keep sharing a writable device pte.
    """
    arch = src_mm.machine.arch
    if not arch.pte_present(pte):
        return pte, pte
    verbatim = src_mm.machine.rules.copy_raw_pte_verbatim
    if verbatim:
        # before the seed the page was looked up first, and a pte without one (VM_UNPAGED and
        # not page_is_anon, or a bad pte) was copied as it is: no write-protect, no mkold
        page = vm_normal_page(vma, addr, pte, "copy_one_pte")
        if page is None:
            return pte, pte
    src_pte = pte
    if is_cow_mapping(vma.vm_flags):
        pte = src_pte = arch.pte_wrprotect(pte)  # ptep_set_wrprotect
    if vma.vm_flags & VM_SHARED:
        pte = arch.pte_mkclean(pte)
    pte = arch.pte_mkold(pte)
    if not verbatim:
        page = vm_normal_page(vma, addr, pte, "copy_one_pte")
    if page is not None:
        phys = src_mm.machine.phys
        phys.count[page] += 1  # get_page
        page_dup_rmap(phys, page)
        rss[1 if phys.flags[page] & PG_anon else 0] += 1
    return src_pte, pte


# unmap -----------------------------------------------------------------------------------------
def unmap_vmas(mm: MmStruct, vmas: list[VmArea], start: int, end: int) -> list[int]:
    """unmap_vmas(): zap ``[start, end)`` in each vma; returns the pages to release.

    The caller frees them (tlb_finish_mmu) after the page tables are gone, as the kernel's
    mmu_gather does. The ZAP_BLOCK_SIZE latency breaks and zap_details (truncation) are not
    modelled.
    """
    gathered: list[int] = []
    for vma in vmas:
        s = max(vma.vm_start, start)
        e = min(vma.vm_end, end)
        if s < e:
            _zap_level(mm, vma, 0, mm.pgd, s, e, gathered)
    return gathered


def zap_page_range(vma: VmArea, address: int, size: int) -> None:
    """zap_page_range(): unmap a range of one vma and release its pages at once."""
    mm = vma.vm_mm
    mm.update_hiwater_rss()
    tlb_finish_mmu(mm, unmap_vmas(mm, [vma], address, address + size))


def tlb_finish_mmu(mm: MmStruct, gathered: list[int]) -> None:
    put_page = mm.machine.phys.put_page
    for pfn in gathered:
        put_page(pfn)


def _zap_level(mm, vma, level, table, addr, end, gathered) -> None:
    tables = mm.machine.tables
    arch = tables.arch
    if level == tables.last:
        _pte_table(
            tables, "zap", try_zap_pte_range, zap_pte_range, (mm, vma, table, addr, end, gathered)
        )
        return
    span = arch.levels[level].span
    while addr < end:
        nxt = addr_end(addr, span, end)
        slot = tables.slot(level, table, addr)
        entry = tables.read(level, slot)
        if entry and _upper_entry_ok(mm, level, slot, entry):
            _zap_level(
                mm, vma, level + 1, arch.table_entry_paddr(level, entry), addr, nxt, gathered
            )
        addr = nxt


def zap_pte_range(mm, vma: VmArea, table: int, addr: int, end: int, gathered: list[int]) -> None:
    """zap_pte_range(): clear the ptes of one table; rss batched per table.

    A raw PFN pte (vm_normal_page() None) is only cleared: no rss, no rmap, no reference. For a
    page: anon_rss or file_rss goes down, a file page inherits the pte's dirty and young bits,
    the mapcount drops, and the reference is released with the gather.
    """
    tables = mm.machine.tables
    arch = tables.arch
    phys = mm.machine.phys
    shift = arch.page_shift
    first = arch.index(tables.last, addr)
    view = tables.table_view(tables.last, table)[first : first + ((end - addr) >> shift)]
    used = np.flatnonzero(view)
    if not used.size:
        return
    file_rss = anon_rss = 0
    for k, pte in zip(used.tolist(), view[used].tolist(), strict=True):
        if not arch.pte_present(pte):
            continue  # swap and file ptes: just cleared (neither is modelled)
        page = vm_normal_page(vma, addr + (k << shift), pte, "zap_pte_range")
        if page is None:
            continue
        if phys.flags[page] & PG_anon:
            anon_rss -= 1
        else:
            if arch.pte_dirty(pte):
                set_page_dirty(phys, page)
            if arch.pte_young(pte):
                mark_page_accessed(phys, page)
            file_rss -= 1
        page_remove_rmap(phys, page)
        gathered.append(page)  # tlb_remove_page
    view[used] = 0
    mm.add_mm_rss(file_rss, anon_rss)


# follow_page / get_user_pages ------------------------------------------------------------------
def follow_page(vma: VmArea, address: int, flags: int) -> int | None:
    """follow_page(vma, address, flags): the page mapped at ``address``, or None.

    A raw PFN pte gives None. With FOLL_ANON and no page table, the ZERO_PAGE. Hugepage
    lookups are not modelled (no hugetlb vmas exist here).
    """
    from pfnmap.kernel.pgtable import pte_offset

    mm = vma.vm_mm
    machine = mm.machine
    phys = machine.phys
    arch = machine.arch
    slot = pte_offset(mm, address)
    if slot is None:  # no_page_table
        if flags & FOLL_ANON:
            page = phys.zero_pfn
            if flags & FOLL_GET:
                phys.get_page(page)
            if flags & FOLL_WRITE:
                raise KernelBug("follow_page: FOLL_WRITE with FOLL_ANON")
            return page
        return None
    pte = machine.tables.read_pte(slot)
    if not arch.pte_present(pte):
        return None
    if flags & FOLL_WRITE and not arch.pte_write(pte):
        return None
    if machine.rules.follow_page_pfn_valid:  # before the seed: any page with a struct page
        pfn = arch.pte_pfn(pte)
        page = pfn if phys.pfn_valid(pfn) else None
    else:
        page = vm_normal_page(vma, address, pte, "follow_page")
        # follow_page_pte() from 2.6.32: a NULL page that is_zero_pfn is the zero page
        zero = page is None and machine.rules.zero_pfn_is_special
        if zero and arch.pte_pfn(pte) == phys.zero_pfn:
            page = phys.zero_pfn
    if page is None:
        return None
    if flags & FOLL_GET:
        phys.get_page(page)
    if flags & FOLL_TOUCH:
        if flags & FOLL_WRITE and not arch.pte_dirty(pte) and not phys.flags[page] & PG_dirty:
            set_page_dirty(phys, page)
        mark_page_accessed(phys, page)
    return page


#: fault-and-retry rounds get_user_pages allows one page before calling it a livelock
GUP_RETRY_LIMIT = 8


def get_user_pages(
    mm: MmStruct, start: int, npages: int, write: bool, force: bool = False, get: bool = True
) -> list[int]:
    """get_user_pages(): fault in and pin ``npages`` pages from ``start``.

    Returns the pages (with a reference each when ``get``). Like the kernel, a failure after
    some pages returns the pages got so far; a failure on the first page raises EFAULT (ENOMEM
    for OOM). Refused vmas: the rules' ``gup_refused_flags`` (VM_IO at the seed). The gate area
    is not modelled. Where the kernel would loop for ever (a VM_PFNMAP vma without VM_IO:
    follow_page keeps returning NULL for the raw pte and the fault keeps succeeding), pfnmap
    raises KernelLivelock after GUP_RETRY_LIMIT rounds.
    """
    from pfnmap.kernel.fault import __handle_mm_fault

    machine = mm.machine
    page_size = machine.arch.page_size
    wanted = (VM_WRITE | VM_MAYWRITE) if write else (VM_READ | VM_MAYREAD)
    wanted &= (VM_MAYREAD | VM_MAYWRITE) if force else (VM_READ | VM_WRITE)
    pages: list[int] = []

    def fail(err: int, why: str) -> list[int]:
        if pages:
            return pages
        raise KernelError(err, why)

    while npages > 0:
        vma = mm.find_vma(start)
        if vma is None or vma.vm_start > start:
            return fail(14, f"no vma at {start:#x}")
        if vma.vm_flags & machine.rules.gup_refused_flags or not vma.vm_flags & wanted:
            return fail(14, f"get_user_pages refuses {vma!r}")
        foll_flags = FOLL_TOUCH | (FOLL_GET if get else 0)
        if (
            not write
            and not vma.vm_flags & VM_LOCKED
            and (vma.vm_ops is None or vma.vm_ops.nopage is None)
        ):
            foll_flags |= FOLL_ANON
        while True:
            if write:
                foll_flags |= FOLL_WRITE
            rounds = 0
            while (page := follow_page(vma, start, foll_flags)) is None:
                rounds += 1
                if rounds > GUP_RETRY_LIMIT:
                    raise KernelLivelock(
                        f"get_user_pages at {start:#x}: follow_page keeps returning NULL for "
                        f"{vma!r} while the fault succeeds (the kernel would spin here)"
                    )
                ret = __handle_mm_fault(mm, vma, start, bool(foll_flags & FOLL_WRITE))
                if ret & VM_FAULT_WRITE:
                    foll_flags &= ~FOLL_WRITE
                ret &= ~VM_FAULT_WRITE
                if ret == VM_FAULT_MINOR:
                    mm.min_flt += 1
                elif ret == VM_FAULT_MAJOR:
                    mm.maj_flt += 1
                elif ret == VM_FAULT_SIGBUS:
                    return fail(14, f"fault at {start:#x} gave SIGBUS")
                elif ret == VM_FAULT_OOM:
                    return fail(12, f"fault at {start:#x} ran out of memory")
                else:
                    raise KernelBug(f"unexpected fault result {ret}")
            pages.append(page)
            start += page_size
            npages -= 1
            if not npages or start >= vma.vm_end:
                break
    return pages
