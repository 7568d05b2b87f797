"""The fault paths of mm/memory.c at the seed: handle_mm_fault and the handlers it picks.

There is one CPU and no concurrency, so the kernel's "did the pte change while we slept?"
re-checks always find the pte unchanged; they are left out and said so where they would be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.errors import KernelBug, OutOfMemory
from pfnmap.kernel.constants import (
    VM_FAULT_MINOR,
    VM_FAULT_NAMES,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VM_FAULT_WRITE,
    VM_NONLINEAR,
    VM_PFNMAP,
    VM_SHARED,
    VM_WRITE,
    PG_anon,
    PG_referenced,
)
from pfnmap.kernel.memory import (
    lru_cache_add_active,
    page_add_anon_rmap,
    page_add_file_rmap,
    page_remove_rmap,
)
from pfnmap.kernel.mm import NOPAGE_OOM, NOPAGE_SIGBUS, AnonVma
from pfnmap.kernel.normal_page import print_bad_pte, vm_normal_page
from pfnmap.kernel.pgtable import pte_offset
from pfnmap.kernel.reports import FaultReport
from pfnmap.kernel.uaccess import copy_from_user_inatomic

if TYPE_CHECKING:
    from pfnmap.kernel.mm import MmStruct, VmArea


def handle_mm_fault(mm: MmStruct, vma: VmArea, address: int, write: bool) -> int:
    """handle_mm_fault(): __handle_mm_fault with VM_FAULT_WRITE masked off.

    After the fault the observer hook ``pfnmap_fault_handled`` gets a FaultReport with the
    pte as the fault left it (read from the slot the fault used; none without a pte table).
    The report is built only when a plugin implements the hook.
    """
    ret, slot = _handle_mm_fault(mm, vma, address, write)
    ret &= ~VM_FAULT_WRITE
    machine = mm.machine
    machine.faults += 1
    hook = machine.hook.pfnmap_fault_handled
    if hook.get_hookimpls():
        pte = machine.tables.read_pte(slot) if slot is not None else 0
        current = machine.current
        report = FaultReport(
            comm=mm.comm,
            pid=current.pid if current is not None else 0,
            address=address,
            write=write,
            result=ret,
            result_name=VM_FAULT_NAMES.get(ret, str(ret)),
            pte=pte,
        )
        hook(machine=machine, report=report)
    return ret


def __handle_mm_fault(mm: MmStruct, vma: VmArea, address: int, write: bool) -> int:
    """__handle_mm_fault(): allocate the table levels, then handle_pte_fault (hugetlb not
    modelled). A failed table allocation is VM_FAULT_OOM."""
    return _handle_mm_fault(mm, vma, address, write)[0]


def _handle_mm_fault(mm: MmStruct, vma: VmArea, address: int, write: bool):
    """__handle_mm_fault's result and the pte slot it used (None when the tables could not be
    allocated)."""
    try:
        slot = pte_offset(mm, address, alloc=True)
    except OutOfMemory:
        return VM_FAULT_OOM, None
    return handle_pte_fault(mm, vma, address, slot, write), slot


def handle_pte_fault(mm: MmStruct, vma: VmArea, address: int, slot: int, write: bool) -> int:
    """handle_pte_fault(): pick do_anonymous_page, do_no_page, do_wp_page, or fix A/D bits."""
    machine = mm.machine
    arch = machine.arch
    entry = machine.tables.read_pte(slot)
    if not arch.pte_present(entry):
        if arch.pte_none(entry):
            if vma.vm_ops is not None and vma.vm_ops.nopage is not None:
                return do_no_page(mm, vma, address, slot, write)
            return do_anonymous_page(mm, vma, address, slot, write)
        if arch.pte_file(entry):
            return do_file_page(mm, vma, address, slot, entry)
        raise KernelBug(f"swap entry {entry:#x} at {address:#x}: swap is not modelled")
    old = entry
    if write:
        if not arch.pte_write(entry):
            return do_wp_page(mm, vma, address, slot, entry)
        entry = arch.pte_mkdirty(entry)
    entry = arch.pte_mkyoung(entry)
    if entry != old:  # ptep_set_access_flags
        machine.tables.write_pte(slot, entry)
    return VM_FAULT_MINOR


def do_file_page(mm: MmStruct, vma: VmArea, address: int, slot: int, entry: int) -> int:
    """do_file_page(): a nonlinear file pte. Outside a VM_NONLINEAR vma (the only kind pfnmap
    has) the kernel calls the page table corrupted: print_bad_pte and VM_FAULT_OOM."""
    if not vma.vm_flags & VM_NONLINEAR:
        print_bad_pte(vma, entry, address, "do_file_page")
        return VM_FAULT_OOM
    raise KernelBug("nonlinear vmas are not modelled")


def anon_vma_prepare(vma: VmArea) -> None:
    if vma.anon_vma is None:
        vma.anon_vma = AnonVma()


def maybe_mkwrite(arch, pte: int, vma: VmArea) -> int:
    return arch.pte_mkwrite(pte) if vma.vm_flags & VM_WRITE else pte


def do_anonymous_page(mm: MmStruct, vma: VmArea, address: int, slot: int, write: bool) -> int:
    """do_anonymous_page(): a zeroed anon page for a write, the ZERO_PAGE for a read.

    The ZERO_PAGE mapping is refcounted, file-rmapped and counted in file_rss, as at the seed.
    Without ``rules.anon_read_zero_page`` (2.6.24 to 2.6.31) a read fault takes the write path;
    with ``rules.zero_page_special_pte`` (2.6.32 on) the zero page is mapped as a special pte
    that nothing counts (vm_normal_page returns NULL for it). On an arch without a special bit
    pte_mkspecial does nothing and is_zero_pfn alone tells the pte apart, as in the kernel.
    """
    machine = mm.machine
    arch = machine.arch
    phys = machine.phys
    if not machine.rules.anon_read_zero_page:
        write = True  # 2.6.24 to 2.6.31: every fault gets its own zeroed page, dirty
    if write:
        anon_vma_prepare(vma)
        try:
            page = phys.alloc_page(zero=True)
        except OutOfMemory:
            return VM_FAULT_OOM
        entry = arch.pfn_pte(page, vma.vm_page_prot)
        entry = maybe_mkwrite(arch, arch.pte_mkdirty(entry), vma)
        mm.anon_rss += 1
        lru_cache_add_active(phys, page)
        phys.flags[page] |= PG_referenced
        page_add_anon_rmap(phys, page, vma, address)
    elif machine.rules.zero_page_special_pte:
        # 2.6.32 on: pte_mkspecial(pfn_pte(my_zero_pfn(addr), vm_page_prot)), nothing counted
        entry = arch.pte_mkspecial(arch.pfn_pte(phys.zero_pfn, vma.vm_page_prot))
    else:
        page = phys.zero_pfn
        phys.get_page(page)
        mm.file_rss += 1
        page_add_file_rmap(phys, page)
        entry = arch.pfn_pte(page, vma.vm_page_prot)
    machine.tables.write_pte(slot, entry)
    return VM_FAULT_MINOR


def do_no_page(mm: MmStruct, vma: VmArea, address: int, slot: int, write: bool) -> int:
    """do_no_page(): ask the vma's ->nopage for the page; a private write copies it at once.

    The truncate_count retry is not modelled (nothing truncates concurrently here).
    """
    machine = mm.machine
    arch = machine.arch
    phys = machine.phys
    if machine.rules.do_no_page_bug_on_pfnmap and vma.vm_flags & VM_PFNMAP:
        raise KernelBug("do_no_page on a VM_PFNMAP vma")
    new_page, ret = vma.vm_ops.nopage(vma, address & arch.page_mask)
    if new_page == NOPAGE_SIGBUS:
        return VM_FAULT_SIGBUS
    if new_page == NOPAGE_OOM:
        return VM_FAULT_OOM
    anon = False
    if write and not vma.vm_flags & VM_SHARED:
        anon_vma_prepare(vma)
        try:
            page = phys.alloc_page(zero=False)
        except OutOfMemory:
            phys.put_page(new_page)
            return VM_FAULT_OOM
        cow_user_page(mm, vma, page, new_page, address)
        phys.put_page(new_page)
        new_page = page
        anon = True
    entry = arch.pfn_pte(new_page, vma.vm_page_prot)
    if write:
        entry = maybe_mkwrite(arch, arch.pte_mkdirty(entry), vma)
    machine.tables.write_pte(slot, entry)
    if anon:
        mm.anon_rss += 1
        lru_cache_add_active(phys, new_page)
        page_add_anon_rmap(phys, new_page, vma, address)
    else:
        mm.file_rss += 1
        page_add_file_rmap(phys, new_page)
    return ret


def can_share_swap_page(phys, page: int) -> bool:
    """Without swap, an anon page may be reused when this is its only mapping."""
    return phys.mapcount[page] == 1


def do_wp_page(mm: MmStruct, vma: VmArea, address: int, slot: int, orig_pte: int) -> int:
    """do_wp_page(): a write to a present, write-protected pte.

    An anon page mapped once is reused in place. Anything else is copied into a new anon page:
    from the struct page if there is one (cow_user_page / copy_user_highpage), from the user
    address if the pte is a raw PFN (cow_user_page's no-struct-page branch), or freshly zeroed
    for the ZERO_PAGE. The page lock is always free here (one CPU).

    Before the seed (``rules.wp_copy_from_struct_page``, mm/memory.c at ee498ed7) a pte whose
    pfn has no struct page is print_bad_pte and VM_FAULT_OOM, whatever the vma, and a raw pte
    (VM_UNPAGED, not page_is_anon) is copied from its struct page; the old page is then left
    alone, as a raw one is.
    """
    machine = mm.machine
    arch = machine.arch
    phys = machine.phys
    if machine.rules.wp_copy_from_struct_page and not phys.pfn_valid(arch.pte_pfn(orig_pte)):
        # before the seed: "Page table corrupted: show pte and kill process. Or it's an
        # attempt to COW an out-of-map VM_UNPAGED entry, which copy_user_highpage does not
        # support."
        print_bad_pte(vma, orig_pte, address, "do_wp_page")
        return VM_FAULT_OOM
    old_page = vm_normal_page(vma, address, orig_pte, "do_wp_page")
    # what the copy is made from: old_page, or before the seed the struct page of a raw pte
    src_page = old_page
    if old_page is None and machine.rules.wp_copy_from_struct_page:
        src_page = arch.pte_pfn(orig_pte)
    elif (
        old_page is None
        and machine.rules.zero_pfn_is_special
        and arch.pte_pfn(orig_pte) == phys.zero_pfn
    ):
        src_page = phys.zero_pfn  # wp_page_copy(): is_zero_pfn, a zeroed page, no copy
    # the reuse rule: an anon page that only this pte maps is made writable in place
    if (
        old_page is not None
        and phys.flags[old_page] & PG_anon
        and can_share_swap_page(phys, old_page)
    ):
        entry = maybe_mkwrite(arch, arch.pte_mkyoung(arch.pte_mkdirty(orig_pte)), vma)
        machine.tables.write_pte(slot, entry)
        return VM_FAULT_MINOR | VM_FAULT_WRITE
    if old_page is not None:
        phys.get_page(old_page)  # page_cache_get while we copy
    anon_vma_prepare(vma)
    try:
        if src_page == phys.zero_pfn:
            new_page = phys.alloc_page(zero=True)
        else:
            new_page = phys.alloc_page(zero=False)
            cow_user_page(mm, vma, new_page, src_page, address)
    except OutOfMemory:
        if old_page is not None:
            phys.put_page(old_page)
        return VM_FAULT_OOM
    # the pte is still orig_pte: nobody else runs
    if old_page is not None:
        page_remove_rmap(phys, old_page)
        if not phys.flags[old_page] & PG_anon:
            mm.file_rss -= 1
            mm.anon_rss += 1
    else:
        mm.anon_rss += 1
    entry = maybe_mkwrite(arch, arch.pte_mkdirty(arch.pfn_pte(new_page, vma.vm_page_prot)), vma)
    machine.tables.write_pte(slot, entry)  # ptep_establish
    lru_cache_add_active(phys, new_page)
    page_add_anon_rmap(phys, new_page, vma, address)
    if old_page is not None:
        phys.put_page(old_page)  # the reference the old pte held
        phys.put_page(old_page)  # the one taken above
    return VM_FAULT_MINOR | VM_FAULT_WRITE


def cow_user_page(mm: MmStruct, vma: VmArea, dst: int, src: int | None, va: int) -> None:
    """cow_user_page(dst, src, va): fill the COW copy.

    With no source struct page (a raw PFN pte), copy a page's worth of bytes from the *user
    address* with the non-faulting user copy, and zero the whole page if any byte fails. At the
    seed ``va`` is the unaligned fault address, so the copy is shifted by the offset in the page
    and reaches into the next page (fixed in 2.6.15-rc4; see KernelRules.cow_copy_aligned).
    """
    machine = mm.machine
    phys = machine.phys
    page_size = machine.arch.page_size
    if src is not None:
        phys.copy_page(dst, src)  # copy_user_highpage
        return
    if machine.rules.cow_copy_aligned:
        va &= machine.arch.page_mask
    data = copy_from_user_inatomic(mm, va, page_size)
    if data is None:
        data = bytes(page_size)
        machine.log_line(
            f"[pfnmap] cow_user_page: user copy from {va:#x} failed, page {dst:#x} zero-filled"
        )
    phys.write(dst << phys.page_shift, data)
