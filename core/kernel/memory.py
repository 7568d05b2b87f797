"""mm/memory.c right after the seed (6aab341e): vm_normal_page and the paths that use it.

``struct page *`` is modelled as the page's pfn (an int) and NULL as None. Each function's
docstring names the kernel function and says where pfnmap differs. Per-table work reads the
whole table once through numpy and loops over the present entries only, the way
copy_pte_range/zap_pte_range hold one table lock and batch the rss counters. fork and munmap
first try the bulk forms of those two (:mod:`pfnmap.kernel.fastpath`, numpy masks per table), which
fall back to the functions here for any table they cannot do exactly as these would.
"""

from __future__ import annotations

from enum import StrEnum
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
    VM_MIXEDMAP,
    VM_PFNMAP,
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
from pfnmap.kernel.pgtable import _upper_entry_ok, alloc_table
from pfnmap.kernel.reports import BadPteReport

if TYPE_CHECKING:
    from collections.abc import Callable

    from pfnmap.arch import Arch
    from pfnmap.kernel.mm import MmStruct, VmArea
    from pfnmap.kernel.physmem import PhysMem
    from pfnmap.kernel.rules import KernelRules


class Verdict(StrEnum):
    """What vm_normal_page() decides for one pte, with the why kept for inspection."""

    NOT_PRESENT = "not present"
    NORMAL = "normal page"
    RAW_PFN = "raw pfn"
    COWED = "COWed page in a PFN vma"
    BAD = "bad pte"


#: a decision with its reason still unformatted: verdict, pfn, str.format template, arguments
Decision = tuple[Verdict, int, str, tuple[object, ...]]


def classify_pte(
    arch: Arch,
    rules: KernelRules,
    pfn_valid: Callable[[int], bool],
    vm_flags: int,
    vm_start: int,
    vm_pgoff: int,
    addr: int,
    pte: int,
    page_is_anon: Callable[[int], bool] | None = None,
) -> tuple[Verdict, int, str]:
    """vm_normal_page()'s decision from plain values: the verdict, the pfn and a reason.

    The one place the rule lives (:func:`decide_pte`). It needs no machine, so the dump decoder
    applies it to a pte read from an image with vma and RAM hints, exactly as the emulator
    does. Which rule applies is the era's: ``rules.pte_special`` on an arch with a special bit
    (2.6.26), ``rules.vm_normal_page_rule`` otherwise ("vm_pgoff" from the seed on,
    "page_is_anon" before it). ``page_is_anon(pfn)`` answers the pre-seed page_is_anon() for
    this vma and address; without it (no struct page state, as in a dump) such a pte is taken
    as raw.
    """
    verdict, pfn, why, args = decide_pte(
        arch, rules, pfn_valid, vm_flags, vm_start, vm_pgoff, addr, pte, page_is_anon
    )
    return verdict, pfn, why.format(*args)


def decide_pte(
    arch: Arch,
    rules: KernelRules,
    pfn_valid: Callable[[int], bool],
    vm_flags: int,
    vm_start: int,
    vm_pgoff: int,
    addr: int,
    pte: int,
    page_is_anon: Callable[[int], bool] | None = None,
) -> Decision:
    """:func:`classify_pte` with the reason as a ``str.format`` template and its arguments, so
    that vm_normal_page(), which shows the reason only for a VM_BUG_ON, never formats it."""
    if not arch.pte_present(pte):
        return Verdict.NOT_PRESENT, 0, "pte is not present", ()
    pfn = arch.pte_pfn(pte)
    if rules.pte_special and arch.special_mask:
        return _vm_normal_page_special(arch, pfn_valid, vm_flags, pfn, pte)
    if rules.vm_normal_page_rule == "page_is_anon":
        return _vm_normal_page_unpaged(pfn_valid, vm_flags, pfn, page_is_anon)
    if vm_flags & VM_MIXEDMAP and rules.vm_mixedmap:
        if pfn_valid(pfn):
            why = "VM_MIXEDMAP and pfn {:#x} is pfn_valid: a normal page"
            return Verdict.NORMAL, pfn, why, (pfn,)
        return Verdict.RAW_PFN, pfn, "VM_MIXEDMAP and pfn {:#x} has no struct page", (pfn,)
    if vm_flags & VM_PFNMAP:
        off = (addr - vm_start) >> arch.page_shift
        if pfn == vm_pgoff + off:
            why = "VM_PFNMAP and pfn {:#x} == vm_pgoff {:#x} + {}"
            return Verdict.RAW_PFN, pfn, why, (pfn, vm_pgoff, off)
        if rules.vm_normal_page_is_cow_test and not is_cow_mapping(vm_flags):
            return Verdict.RAW_PFN, pfn, "VM_PFNMAP and not a COW mapping: every pte is raw", ()
    if not pfn_valid(pfn):
        return Verdict.BAD, pfn, "pfn {:#x} has no struct page (pfn_valid fails)", (pfn,)
    if vm_flags & VM_PFNMAP:
        why = "VM_PFNMAP but pfn {:#x} != vm_pgoff + offset: a COWed anonymous page"
        return Verdict.COWED, pfn, why, (pfn,)
    return Verdict.NORMAL, pfn, "pfn {:#x} is RAM with a struct page", (pfn,)


def _vm_normal_page_special(
    arch: Arch, pfn_valid: Callable[[int], bool], vm_flags: int, pfn: int, pte: int
) -> Decision:
    """2.6.26 on an arch with a special bit: the pte alone decides (7e675137)."""
    if arch.pte_special(pte):
        if vm_flags & (VM_PFNMAP | VM_MIXEDMAP):
            return Verdict.RAW_PFN, pfn, "pte_special: the pte's special bit is set", ()
        why = "a special pte outside a VM_PFNMAP/VM_MIXEDMAP vma (VM_BUG_ON in vm_normal_page)"
        return Verdict.BAD, pfn, why, ()
    if not pfn_valid(pfn):
        return Verdict.BAD, pfn, "not special, and pfn {:#x} has no struct page", (pfn,)
    if vm_flags & VM_PFNMAP:
        return Verdict.COWED, pfn, "not special: pfn {:#x} is a COWed page in a PFN vma", (pfn,)
    return Verdict.NORMAL, pfn, "not special: pfn {:#x} is a normal page", (pfn,)


def _vm_normal_page_unpaged(
    pfn_valid: Callable[[int], bool],
    vm_flags: int,
    pfn: int,
    page_is_anon: Callable[[int], bool] | None,
) -> Decision:
    """Before the seed (ee498ed7): ``page = pfn_valid(pfn) ? pfn_to_page(pfn) : NULL``, and in a
    VM_UNPAGED vma the page counts only when page_is_anon() says it is this vma's anonymous
    page at this address. Outside VM_UNPAGED an invalid pfn is a bad pte."""
    valid = pfn_valid(pfn)
    if vm_flags & VM_PFNMAP:  # VM_UNPAGED: the same bit
        if not valid:
            return Verdict.RAW_PFN, pfn, "VM_UNPAGED and pfn {:#x} has no struct page", (pfn,)
        if page_is_anon is None:
            why = "VM_UNPAGED; page_is_anon unknown here: taken as raw"
            return Verdict.RAW_PFN, pfn, why, ()
        if page_is_anon(pfn):
            why = "VM_UNPAGED and page_is_anon: pfn {:#x} is this vma's anon page here"
            return Verdict.COWED, pfn, why, (pfn,)
        why = "VM_UNPAGED and not page_is_anon: pfn {:#x} is not this vma's anon page here"
        return Verdict.RAW_PFN, pfn, why, (pfn,)
    if not valid:
        return Verdict.BAD, pfn, "pfn {:#x} has no struct page (pfn_valid fails)", (pfn,)
    return Verdict.NORMAL, pfn, "pfn {:#x} is RAM with a struct page", (pfn,)


def page_is_anon(vma: VmArea, addr: int, pfn: int) -> bool:
    """page_is_anon(page, vma, addr) before the seed: PageAnon, page_mapped, and
    page_address_in_vma() == addr, i.e. the page's anon_vma is this vma's and its index puts it
    at exactly this address (mm/memory.c at ee498ed7; rmap.c's vma_address)."""
    machine = vma.vm_mm.machine
    phys = machine.phys
    if not phys.flags[pfn] & PG_anon or phys.mapcount[pfn] <= 0:
        return False
    if vma.anon_vma is None or phys.mapping[pfn] is not vma.anon_vma:
        return False
    address = vma.vm_start + ((phys.index[pfn] - vma.vm_pgoff) << machine.arch.page_shift)
    return address == addr


def vm_normal_page_verdict(vma: VmArea, addr: int, pte: int) -> tuple[Verdict, int, str]:
    """The decision of vm_normal_page() for a vma of the machine, without print_bad_pte."""
    verdict, pfn, why, args = _vm_normal_page_decision(vma, addr, pte)
    return verdict, pfn, why.format(*args)


def _vm_normal_page_decision(vma: VmArea, addr: int, pte: int) -> Decision:
    machine = vma.vm_mm.machine
    rules = machine.rules
    anon = None
    if rules.vm_normal_page_rule == "page_is_anon":

        def anon(pfn: int) -> bool:
            return page_is_anon(vma, addr, pfn)

    return decide_pte(
        machine.arch,
        rules,
        machine.phys.pfn_valid,
        vma.vm_flags,
        vma.vm_start,
        vma.vm_pgoff,
        addr,
        pte,
        anon,
    )


#: the verdicts for which vm_normal_page() returns the struct page
_HAS_PAGE = frozenset((Verdict.NORMAL, Verdict.COWED))


def vm_normal_page(vma: VmArea, addr: int, pte: int, caller: str = "vm_normal_page") -> int | None:
    """vm_normal_page(vma, addr, pte): the struct page behind a present pte, or None.

    Seed rule: inside a VM_PFNMAP vma, ``pfn == vm_pgoff + page offset`` is a raw PFN; any
    other pfn there is a COWed anonymous page. A pfn without a struct page outside that rule is
    reported by print_bad_pte() and treated as raw (from 2.6.26, ``rules.bad_pfn_vm_bug_on``:
    VM_BUG_ON, a KernelBug). Reserved pages (the ZERO_PAGE) are normal. Other eras' rules:
    :func:`classify_pte`.
    """
    verdict, pfn, why, args = _vm_normal_page_decision(vma, addr, pte)
    if verdict in _HAS_PAGE:
        return pfn
    if verdict is Verdict.BAD:
        if vma.vm_mm.machine.rules.bad_pfn_vm_bug_on:
            raise KernelBug(
                f"VM_BUG_ON in vm_normal_page from {caller} at {addr:#x}: {why.format(*args)}"
            )
        print_bad_pte(vma, pte, addr, caller)
    return None


def print_bad_pte(vma: VmArea, pte: int, vaddr: int, caller: str = "") -> BadPteReport:
    """print_bad_pte(): the kernel's KERN_ERR line, into the machine log and the observer hook.

    The process is ``current->comm`` when the vma belongs to the current process, else "???".
    pfnmap records the calling kernel function instead of a stack dump.
    """
    machine = vma.vm_mm.machine
    current = machine.current
    comm = current.comm if current is not None and current.mm is vma.vm_mm else "???"
    line = f"Bad pte = {pte:08x}, process = {comm}, vm_flags = {vma.vm_flags:x}, vaddr = {vaddr:x}"
    report = BadPteReport(line, pte, comm, vma.vm_flags, vaddr, caller)
    machine.log_line(line)
    machine.bad_ptes.append(report)
    machine.hook.pfnmap_bad_pte(machine=machine, report=report)
    return report


# rmap (mm/rmap.c) and the LRU, reduced to the struct page fields they change ------------------
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
        if not (
            tables.fast_paths
            and try_copy_pte_range(dst_mm, src_mm, dst_table, src_table, vma, addr, end)
        ):
            copy_pte_range(dst_mm, src_mm, dst_table, src_table, vma, addr, end)
        return
    span = arch.levels[level].span
    while addr < end:
        nxt = min((addr | (span - 1)) + 1, end)
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
        phys.mapcount[page] += 1  # page_dup_rmap
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
        if not (tables.fast_paths and try_zap_pte_range(mm, vma, table, addr, end, gathered)):
            zap_pte_range(mm, vma, table, addr, end, gathered)
        return
    span = arch.levels[level].span
    while addr < end:
        nxt = min((addr | (span - 1)) + 1, end)
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
