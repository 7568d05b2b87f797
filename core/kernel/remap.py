"""remap_pfn_range(), io_remap_pfn_range() and the single-page driver helpers of later kernels.

vm_insert_page() (2.6.15-rc4), vm_insert_pfn() and vm_insert_mixed() (2.6.26's VM_MIXEDMAP)
exist only in the eras whose ``machine.rules`` have them; elsewhere a call is ENOSYS, the
emulator's way of saying the function is not in that kernel.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np

from pfnmap.errors import KernelBug, KernelError, OutOfMemory
from pfnmap.kernel.constants import (
    VM_MIXEDMAP,
    VM_PFNMAP,
    PG_anon,
    is_cow_mapping,
)
from pfnmap.kernel.pgtable import addr_end, pte_offset, walk_to_table

if TYPE_CHECKING:
    from pfnmap.kernel.mm import VmArea


def remap_pfn_range(vma: VmArea, addr: int, pfn: int, size: int, prot: int) -> int:
    """remap_pfn_range(vma, addr, pfn, size, prot): map ``[addr, addr+size)`` to ``pfn...``.

    Seed semantics: the vma gains VM_IO|VM_RESERVED|VM_PFNMAP and ``vm_pgoff = pfn`` always,
    which is what lets vm_normal_page() recognise these ptes later. Nothing is refcounted and
    no rss changes. ``BUG_ON(addr >= end)`` and ``BUG_ON(!pte_none(*pte))`` raise KernelBug.
    Other eras, by ``machine.rules``: before the seed vm_pgoff is left alone
    (``remap_sets_pgoff``); from 2.6.15-rc6 a COW mapping must be remapped whole and only it
    gets vm_pgoff (``remap_cow_whole_vma``); from 2.6.26 every pte is pte_mkspecial'd where the
    arch has a special bit (``pte_special``); the flags set are ``remap_vm_flags`` (3.7 on:
    VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP). 6.1's track_pfn_remap (x86 PAT memtype
    reservation, VM_PAT) and pfn_modify_allowed (L1TF's EACCES for a PROT_NONE remap of a
    high pfn) are not modelled.

    Where pfnmap differs: a pfn range wider than the arch's physical address width is EINVAL
    (the kernel silently truncated it in pfn_pte), and every check is made before the first
    pte is written, so a failed remap leaves no ptes behind.
    """
    mm = vma.vm_mm
    machine = mm.machine
    arch = machine.arch
    rules = machine.rules
    page_size = arch.page_size
    end = addr + ((size + page_size - 1) & arch.page_mask)
    if addr >= end:
        raise KernelBug(f"remap_pfn_range: addr {addr:#x} >= end {end:#x}")
    npages = (end - addr) >> arch.page_shift
    if pfn < 0 or pfn + npages - 1 > arch.max_pfn:
        raise KernelError(
            errno.EINVAL,
            f"pfn range {pfn:#x}+{npages} exceeds the {arch.phys_bits}-bit physical "
            f"address width of {arch.name}",
        )
    if addr < vma.vm_start or end > vma.vm_end:
        raise KernelBug(f"remap_pfn_range: [{addr:#x}, {end:#x}) is outside {vma!r}")
    cow = is_cow_mapping(vma.vm_flags)
    if rules.remap_cow_whole_vma and cow and (addr != vma.vm_start or end != vma.vm_end):
        raise KernelError(errno.EINVAL, "a COW mapping must be remapped as a whole")
    tables = machine.tables
    # pte_none for every target first: BUG_ON(!pte_none) without a half-written range
    for a, first, count in _table_chunks(arch, addr, end):
        table = walk_to_table(mm, a, alloc=False)
        if table is None:
            continue
        view = tables.table_view(tables.last, table)[first : first + count]
        if view.any():
            k = int(np.flatnonzero(view)[0])
            raise KernelBug(f"remap_pfn_range: pte at {a + k * page_size:#x} is not none")
    if rules.remap_sets_pgoff and (cow or not rules.remap_cow_whole_vma):
        vma.vm_pgoff = pfn
    # VM_IO|VM_RESERVED|VM_PFNMAP (before the seed VM_UNPAGED, the same bit); from 3.7
    # VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP
    vma.vm_flags |= rules.remap_vm_flags
    special = arch.special_mask if rules.pte_special else 0  # pte_mkspecial (2.6.26)
    pfn_pte = arch.pfn_pte
    base = pfn - (addr >> arch.page_shift)  # the kernel biases pfn by the address this way
    for a, first, count in _table_chunks(arch, addr, end):
        table = walk_to_table(mm, a, alloc=True)
        view = tables.table_view(tables.last, table)
        p0 = base + (a >> arch.page_shift)
        view[first : first + count] = [pfn_pte(p, prot) | special for p in range(p0, p0 + count)]
    return 0


def _table_chunks(arch, addr: int, end: int):
    """(start address, first index, entry count) for each pte table ``[addr, end)`` touches."""
    span = arch.levels[-2].span if len(arch.levels) > 1 else end - addr
    while addr < end:
        nxt = addr_end(addr, span, end)
        yield addr, arch.index(len(arch.levels) - 1, addr), (nxt - addr) >> arch.page_shift
        addr = nxt


def io_remap_pfn_range(vma: VmArea, addr: int, pfn: int, size: int, prot: int) -> int:
    """io_remap_pfn_range(): the arch's own (:meth:`pfnmap.arch.Arch.io_remap_pfn_range`), or
    remap_pfn_range where the arch has none, as ``#define io_remap_pfn_range remap_pfn_range``
    does on x86. An arch with I/O spaces (sparc64) overrides it."""
    result = vma.vm_mm.machine.arch.io_remap_pfn_range(vma, addr, pfn, size, prot)
    if result is NotImplemented:
        return remap_pfn_range(vma, addr, pfn, size, prot)
    return result


# single pages: vm_insert_page (2.6.15-rc4), vm_insert_pfn / vm_insert_mixed (2.6.26) -----------
def _require(vma: VmArea, present: bool, function: str, since: str) -> None:
    if not present:
        era = vma.vm_mm.machine.rules.name
        raise KernelError(errno.ENOSYS, f"{function}() is not in this kernel ({era}; {since})")


def _locked_pte(vma: VmArea, addr: int) -> int:
    """get_locked_pte(): the pte slot for ``addr``, tables allocated (ENOMEM when RAM runs out)."""
    try:
        return pte_offset(vma.vm_mm, addr, alloc=True)
    except OutOfMemory:
        raise KernelError(errno.ENOMEM, "no RAM for a page table") from None


def insert_page(vma: VmArea, addr: int, page: int, prot: int) -> int:
    """insert_page(): map one struct page like a file page: a reference, file_rss + 1 and a
    file rmap. An anonymous page is EINVAL, a pte already there EBUSY."""
    machine = vma.vm_mm.machine
    phys = machine.phys
    if phys.flags[page] & PG_anon:
        raise KernelError(errno.EINVAL, f"insert_page: page {page:#x} is anonymous")
    slot = _locked_pte(vma, addr)
    if machine.tables.read_pte(slot):
        raise KernelError(errno.EBUSY, f"insert_page: a pte is already mapped at {addr:#x}")
    from pfnmap.kernel.memory import page_add_file_rmap

    phys.get_page(page)
    vma.vm_mm.file_rss += 1
    page_add_file_rmap(phys, page)
    machine.tables.write_pte(slot, machine.arch.pfn_pte(page, prot))
    return 0


def vm_insert_page(vma: VmArea, addr: int, page: int) -> int:
    """vm_insert_page(vma, addr, page): a driver maps one of its own pages (2.6.15-rc4).

    The sanctioned way to hand real, refcounted pages to user space without PageReserved
    tricks. Outside the vma is EFAULT, a free page (count 0) EINVAL. From rc6 the vma is marked
    VM_INSERTPAGE, so fork copies these ptes (copy_page_range) instead of leaving the child to
    refault a vma that has no ->nopage; from 3.7 (``rules.insert_page_vm_flags``) it is marked
    VM_MIXEDMAP instead, with ``BUG_ON(VM_PFNMAP)``. The pte uses the vma's own protection.
    """
    machine = vma.vm_mm.machine
    _require(vma, machine.rules.vm_insert_page, "vm_insert_page", "added in 2.6.15-rc4")
    if not vma.vm_start <= addr < vma.vm_end:
        raise KernelError(errno.EFAULT, f"vm_insert_page: {addr:#x} is outside {vma!r}")
    if not machine.phys.count[page]:
        raise KernelError(errno.EINVAL, f"vm_insert_page: page {page:#x} is free")
    mark = machine.rules.insert_page_vm_flags  # VM_INSERTPAGE; from 3.7 VM_MIXEDMAP
    if mark & VM_MIXEDMAP and not vma.vm_flags & VM_MIXEDMAP and vma.vm_flags & VM_PFNMAP:
        raise KernelBug(f"vm_insert_page: {vma!r} is VM_PFNMAP")
    vma.vm_flags |= mark
    return insert_page(vma, addr, page, vma.vm_page_prot)


def insert_pfn(vma: VmArea, addr: int, pfn: int, prot: int) -> int:
    """insert_pfn(): one raw pte, pte_mkspecial'd where the arch has the bit; nothing counted."""
    machine = vma.vm_mm.machine
    arch = machine.arch
    slot = _locked_pte(vma, addr)
    if machine.tables.read_pte(slot):
        raise KernelError(errno.EBUSY, f"insert_pfn: a pte is already mapped at {addr:#x}")
    entry = arch.pfn_pte(pfn, prot)
    if machine.rules.pte_special:
        entry = arch.pte_mkspecial(entry)
    machine.tables.write_pte(slot, entry)
    return 0


def vm_insert_pfn(vma: VmArea, addr: int, pfn: int) -> int:
    """vm_insert_pfn(vma, addr, pfn) as in 2.6.26: one raw pfn into a VM_PFNMAP (not COW) or
    VM_MIXEDMAP (not pfn_valid) vma, usually from a fault handler. Each BUG_ON is a KernelBug;
    outside the vma is EFAULT."""
    machine = vma.vm_mm.machine
    _require(vma, machine.rules.vm_mixedmap, "vm_insert_pfn", "2.6.22, this shape 2.6.26")
    flags = vma.vm_flags
    if flags & (VM_PFNMAP | VM_MIXEDMAP) not in (VM_PFNMAP, VM_MIXEDMAP):
        raise KernelBug(f"vm_insert_pfn: {vma!r} must be exactly one of VM_PFNMAP, VM_MIXEDMAP")
    if flags & VM_PFNMAP and is_cow_mapping(flags):
        raise KernelBug(f"vm_insert_pfn: {vma!r} is a COW VM_PFNMAP mapping")
    if flags & VM_MIXEDMAP and machine.phys.pfn_valid(pfn):
        raise KernelBug(f"vm_insert_pfn: pfn {pfn:#x} has a struct page in a VM_MIXEDMAP vma")
    if not vma.vm_start <= addr < vma.vm_end:
        raise KernelError(errno.EFAULT, f"vm_insert_pfn: {addr:#x} is outside {vma!r}")
    return insert_pfn(vma, addr, pfn, vma.vm_page_prot)


def vm_insert_mixed(vma: VmArea, addr: int, pfn: int) -> int:
    """vm_insert_mixed(vma, addr, pfn) (2.6.26): one pfn into a VM_MIXEDMAP vma.

    Without a special bit a pfn_valid pfn must be refcounted (vm_normal_page's VM_MIXEDMAP
    rule calls it a normal page), so it goes through insert_page; with one, and for pfns without
    a struct page, insert_pfn. ``BUG_ON(!VM_MIXEDMAP)`` is a KernelBug, outside the vma EFAULT.
    """
    machine = vma.vm_mm.machine
    _require(vma, machine.rules.vm_mixedmap, "vm_insert_mixed", "added in 2.6.26")
    if not vma.vm_flags & VM_MIXEDMAP:
        raise KernelBug(f"vm_insert_mixed: {vma!r} is not VM_MIXEDMAP")
    if not vma.vm_start <= addr < vma.vm_end:
        raise KernelError(errno.EFAULT, f"vm_insert_mixed: {addr:#x} is outside {vma!r}")
    have_pte_special = machine.rules.pte_special and machine.arch.special_mask
    if not have_pte_special and machine.phys.pfn_valid(pfn):
        return insert_page(vma, addr, pfn, vma.vm_page_prot)
    return insert_pfn(vma, addr, pfn, vma.vm_page_prot)
