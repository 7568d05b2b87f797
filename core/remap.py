"""remap_pfn_range() and io_remap_pfn_range(): install raw PFN ptes in a vma."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np

from .constants import VM_IO, VM_PFNMAP, VM_RESERVED, is_cow_mapping
from .errors import KernelBug, KernelError
from .pgtable import walk_to_table

if TYPE_CHECKING:
    from .mm import VmArea


def remap_pfn_range(vma: VmArea, addr: int, pfn: int, size: int, prot: int) -> int:
    """remap_pfn_range(vma, addr, pfn, size, prot): map ``[addr, addr+size)`` to ``pfn...``.

    Seed semantics: the vma gains VM_IO|VM_RESERVED|VM_PFNMAP and ``vm_pgoff = pfn`` always,
    which is what lets vm_normal_page() recognise these ptes later. Nothing is refcounted and
    no rss changes. ``BUG_ON(addr >= end)`` and ``BUG_ON(!pte_none(*pte))`` raise KernelBug.

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
    if not rules.remap_cow_whole_vma or cow:
        vma.vm_pgoff = pfn
    vma.vm_flags |= VM_IO | VM_RESERVED | VM_PFNMAP
    pfn_pte = arch.pfn_pte
    base = pfn - (addr >> arch.page_shift)  # the kernel biases pfn by the address this way
    for a, first, count in _table_chunks(arch, addr, end):
        table = walk_to_table(mm, a, alloc=True)
        view = tables.table_view(tables.last, table)
        p0 = base + (a >> arch.page_shift)
        view[first : first + count] = [pfn_pte(p, prot) for p in range(p0, p0 + count)]
    return 0


def _table_chunks(arch, addr: int, end: int):
    """(start address, first index, entry count) for each pte table ``[addr, end)`` touches."""
    span = arch.levels[-2].span if len(arch.levels) > 1 else end - addr
    while addr < end:
        nxt = min((addr | (span - 1)) + 1, end)
        yield addr, arch.index(len(arch.levels) - 1, addr), (nxt - addr) >> arch.page_shift
        addr = nxt


def io_remap_pfn_range(vma: VmArea, addr: int, pfn: int, size: int, prot: int) -> int:
    """io_remap_pfn_range(): whatever the first ``pfnmap_io_remap_pfn_range`` hook does.

    The generic default is remap_pfn_range; an arch with I/O spaces (sparc64) overrides it.
    """
    machine = vma.vm_mm.machine
    result = machine.hook.pfnmap_io_remap_pfn_range(
        machine=machine, vma=vma, addr=addr, pfn=pfn, size=size, prot=prot
    )
    if result is None:
        raise KernelBug("no pfnmap_io_remap_pfn_range implementation handled the call")
    return result
