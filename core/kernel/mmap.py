"""mm/mmap.c and mm/mprotect.c of 2.6.15, reduced to what the memory.c paths need.

do_mmap_pgoff, get_unmapped_area, split_vma, do_munmap/unmap_region, mprotect_fixup,
change_protection, exit_mmap and dup_mmap (kernel/fork.c). Vma merging (vma_merge), memory
accounting and the stack's VM_GROWSDOWN expansion are not modelled.
"""

from __future__ import annotations

import errno
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from pfnmap.errors import KernelBug, KernelError
from pfnmap.kernel.constants import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_TYPE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    VM_DONTCOPY,
    VM_EXEC,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
)
from pfnmap.kernel.files import shmem_zero_setup
from pfnmap.kernel.memory import copy_page_range, tlb_finish_mmu, unmap_vmas
from pfnmap.kernel.mm import MmStruct, VmArea
from pfnmap.kernel.pgtable import _upper_entry_ok, free_pgd_range, free_table
from pfnmap.kernel.ulong import page_align as ulong_page_align
from pfnmap.kernel.ulong import to_ulong, ulong_max

if TYPE_CHECKING:
    from pfnmap.kernel.files import OpenFile


def page_align(mm: MmStruct, length: int) -> int:
    """PAGE_ALIGN() in the arch's unsigned long arithmetic (wraps to 0 near ULONG_MAX)."""
    return ulong_page_align(mm.machine.arch, length)


def get_unmapped_area(mm: MmStruct, addr: int, length: int, flags: int = 0) -> int:
    """get_unmapped_area() with arch_get_unmapped_area() (mm/mmap.c, 2.6.15).

    MAP_FIXED: ``addr > TASK_SIZE - len`` is ENOMEM, an unaligned ``addr`` EINVAL, else the
    address is taken as it is. Otherwise the hint if that range is free, else the first gap
    found bottom-up from TASK_UNMAPPED_BASE (PAGE_ALIGN(TASK_SIZE / 3), the legacy layout). A
    hint the kernel's PAGE_ALIGN would wrap to 0 is searched for instead (pfnmap does not map
    such a hint at address 0).
    """
    arch = mm.machine.arch
    task_size = arch.task_size
    if flags & MAP_FIXED:
        if addr > task_size - length:
            raise KernelError(errno.ENOMEM, f"MAP_FIXED range beyond TASK_SIZE at {addr:#x}")
        if addr & (arch.page_size - 1):
            raise KernelError(errno.EINVAL, f"MAP_FIXED address {addr:#x} is not page aligned")
        return addr
    if length > task_size:
        raise KernelError(errno.ENOMEM, "mapping larger than the address space")
    if addr:
        addr = (addr + arch.page_size - 1) & arch.page_mask
        vma = mm.find_vma(addr)
        if task_size - length >= addr and (vma is None or addr + length <= vma.vm_start):
            return addr
    addr = (task_size // 3 + arch.page_size - 1) & arch.page_mask
    for vma in mm.mmap:
        if vma.vm_end <= addr:
            continue
        if addr + length <= vma.vm_start:
            return addr
        addr = vma.vm_end
    if addr + length <= task_size:
        return addr
    raise KernelError(errno.ENOMEM, "no free range of that size")


def do_mmap_pgoff(
    mm: MmStruct,
    file: OpenFile | None,
    addr: int,
    length: int,
    prot: int,
    flags: int,
    pgoff: int,
) -> int:
    """do_mmap_pgoff() and mmap_region(): create the vma and call the file's ->mmap (or
    shmem_zero_setup).

    The checks and their order are 2.6.15's, in unsigned long arithmetic
    (:mod:`pfnmap.kernel.ulong`): a file without ->mmap is ENODEV; a zero length EINVAL; a
    length whose PAGE_ALIGN wraps to 0 or exceeds TASK_SIZE ENOMEM; ``pgoff + pages`` past
    ULONG_MAX EOVERFLOW; then get_unmapped_area's checks; then a MAP_TYPE other than
    MAP_SHARED or MAP_PRIVATE is EINVAL. Unknown prot and flag bits are ignored, as there.
    A failing ->mmap unmaps whatever it had mapped and leaves no vma (unmap_and_free_vma);
    as in the kernel, a MAP_FIXED mapping has already unmapped the old range by then.
    """
    from pfnmap.kernel.files import Inode

    arch = mm.machine.arch
    addr = to_ulong(arch, "addr", addr)
    length = to_ulong(arch, "length", length)
    prot = to_ulong(arch, "prot", prot)
    flags = to_ulong(arch, "flags", flags)
    pgoff = to_ulong(arch, "pgoff", pgoff)
    if file is not None and type(file.inode).mmap is Inode.mmap:
        raise KernelError(errno.ENODEV, f"{file.path} has no mmap method")
    if length == 0:
        raise KernelError(errno.EINVAL, "mmap of zero length")
    length = page_align(mm, length)
    if length == 0 or length > arch.task_size:
        raise KernelError(errno.ENOMEM, "mapping larger than the address space")
    if pgoff + (length >> arch.page_shift) > ulong_max(arch):
        raise KernelError(errno.EOVERFLOW, f"offset {pgoff:#x} pages + length overflows")
    addr = get_unmapped_area(mm, addr, length, flags)
    kind = flags & MAP_TYPE
    if kind not in (MAP_SHARED, MAP_PRIVATE):
        raise KernelError(
            errno.EINVAL, f"flags {flags:#x}: exactly one of MAP_SHARED and MAP_PRIVATE is required"
        )
    vm_flags = _calc_vm_prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if file is not None:
        if not file.readable:
            raise KernelError(errno.EACCES, f"{file.path} is not open for reading")
        if kind == MAP_SHARED:
            if prot & PROT_WRITE and not file.writable:
                raise KernelError(errno.EACCES, f"shared writable map of read-only {file.path}")
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if not file.writable:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
    elif kind == MAP_SHARED:
        vm_flags |= VM_SHARED | VM_MAYSHARE
    else:
        pgoff = addr >> arch.page_shift  # private anonymous: pgoff is the address
    if flags & MAP_FIXED:
        do_munmap(mm, addr, length)
    vma = VmArea(
        vm_mm=mm,
        vm_start=addr,
        vm_end=addr + length,
        vm_flags=vm_flags,
        vm_pgoff=pgoff,
        vm_page_prot=arch.protection_map[vm_flags & 0xF],
    )
    if file is not None:
        vma.vm_file = file.get()
        try:
            file.inode.mmap(file, vma)
        except Exception:
            prev, nxt = _neighbours(mm, vma.vm_start, vma.vm_end)
            unmap_region(mm, [vma], vma.vm_start, vma.vm_end, prev, nxt)
            vma.vm_file.put()
            raise
    elif kind == MAP_SHARED:
        shmem_zero_setup(vma)
    mm.insert_vma(vma)
    return addr


def _calc_vm_prot_bits(prot: int) -> int:
    return (
        (VM_READ if prot & PROT_READ else 0)
        | (VM_WRITE if prot & PROT_WRITE else 0)
        | (VM_EXEC if prot & PROT_EXEC else 0)
    )


def _neighbours(mm: MmStruct, start: int, end: int) -> tuple[VmArea | None, VmArea | None]:
    prev = max((v for v in mm.mmap if v.vm_end <= start), key=lambda v: v.vm_end, default=None)
    nxt = min((v for v in mm.mmap if v.vm_start >= end), key=lambda v: v.vm_start, default=None)
    return prev, nxt


def split_vma(mm: MmStruct, vma: VmArea, addr: int) -> VmArea:
    """split_vma(): cut ``vma`` at ``addr``; returns the new upper part (already inserted).

    The upper part's vm_pgoff advances by the pages cut off, which keeps a PFNMAP vma's
    linear pfn rule true in both halves.
    """
    arch = mm.machine.arch
    if not vma.vm_start < addr < vma.vm_end or addr & (arch.page_size - 1):
        raise KernelBug(f"split_vma at {addr:#x} outside {vma!r}")
    upper = replace(
        vma,
        vm_start=addr,
        vm_pgoff=vma.vm_pgoff + ((addr - vma.vm_start) >> arch.page_shift),
    )
    if upper.vm_file is not None:
        upper.vm_file.get()
    vma.vm_end = addr
    mm.insert_vma(upper)
    return upper


def do_munmap(mm: MmStruct, start: int, length: int) -> None:
    """do_munmap(): split at the edges, detach, unmap_region, release the vmas.

    2.6.15's checks: an unaligned start, ``start > TASK_SIZE`` or ``len > TASK_SIZE - start``
    is EINVAL, and so is a length whose PAGE_ALIGN is 0.
    """
    arch = mm.machine.arch
    start = to_ulong(arch, "addr", start)
    length = to_ulong(arch, "length", length)
    if start & (arch.page_size - 1) or start > arch.task_size or length > arch.task_size - start:
        raise KernelError(errno.EINVAL, f"munmap({start:#x}, {length:#x}): bad range")
    length = page_align(mm, length)
    if length == 0:
        raise KernelError(errno.EINVAL, "munmap of zero length")
    end = start + length
    vmas = mm.vmas_in(start, end)
    if not vmas:
        return
    if vmas[0].vm_start < start:
        vmas[0] = split_vma(mm, vmas[0], start)
    if vmas[-1].vm_end > end:
        split_vma(mm, vmas[-1], end)
    for vma in vmas:
        mm.remove_vma(vma)
    prev, nxt = _neighbours(mm, start, end)
    unmap_region(mm, vmas, start, end, prev, nxt)
    for vma in vmas:
        remove_vma(vma)


def unmap_region(mm, vmas, start, end, prev: VmArea | None, nxt: VmArea | None) -> None:
    """unmap_region(): zap the ptes, free the tables no neighbour needs, release the pages."""
    mm.update_hiwater_rss()
    gathered = unmap_vmas(mm, vmas, start, end)
    free_pgd_range(mm, start, end, prev.vm_end if prev else 0, nxt.vm_start if nxt else 0)
    tlb_finish_mmu(mm, gathered)


def remove_vma(vma: VmArea) -> None:
    if vma.vm_file is not None:
        vma.vm_file.put()
        vma.vm_file = None


def do_mprotect(mm: MmStruct, start: int, length: int, prot: int) -> None:
    """sys_mprotect() (mm/mprotect.c, 2.6.15): new VM_READ/WRITE/EXEC vma by vma.

    The checks in 2.6.15's order: PROT_GROWSDOWN and PROT_GROWSUP together are EINVAL; an
    unaligned start is EINVAL; a zero length succeeds at once; a range that wraps (PAGE_ALIGN'd
    ``end <= start``) is ENOMEM; a prot bit other than PROT_READ, PROT_WRITE, PROT_EXEC and
    PROT_SEM is EINVAL; no vma at ``start`` is ENOMEM; PROT_GROWSDOWN/UP on a vma that does
    not grow (no vma here does) is EINVAL. Then the vmas are changed one after the other: a
    hole (ENOMEM) or a vma whose VM_MAY* bits refuse the new protection (EACCES) stops the
    walk there, and the vmas before it keep their new protection.
    """
    arch = mm.machine.arch
    start = to_ulong(arch, "addr", start)
    length = to_ulong(arch, "length", length)
    prot = to_ulong(arch, "prot", prot)
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    prot &= ~grows
    if grows == PROT_GROWSDOWN | PROT_GROWSUP:
        raise KernelError(errno.EINVAL, "PROT_GROWSDOWN and PROT_GROWSUP together")
    if start & (arch.page_size - 1):
        raise KernelError(errno.EINVAL, f"mprotect address {start:#x} is not page aligned")
    if length == 0:
        return
    end = start + page_align(mm, length)
    if end <= start or end > ulong_max(arch):
        raise KernelError(errno.ENOMEM, f"mprotect({start:#x}, {length:#x}): the range wraps")
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM):
        raise KernelError(errno.EINVAL, f"mprotect: unknown prot bits in {prot:#x}")
    wanted = _calc_vm_prot_bits(prot)
    vma = mm.find_vma(start)
    if vma is None or vma.vm_start > start:
        raise KernelError(errno.ENOMEM, f"{start:#x} is not mapped")
    if grows:
        raise KernelError(errno.EINVAL, f"{vma!r} does not grow (PROT_GROWSDOWN/UP)")
    nstart = start
    while True:
        newflags = wanted | (vma.vm_flags & ~(VM_READ | VM_WRITE | VM_EXEC))
        # newflags >> 4 puts VM_MAY* where VM_* are: asking for a bit the vma may not have
        if (newflags & ~(newflags >> 4)) & (VM_READ | VM_WRITE | VM_EXEC):
            raise KernelError(errno.EACCES, f"{vma!r} may not get {prot:#x}")
        tmp = min(vma.vm_end, end)
        if newflags != vma.vm_flags:  # mprotect_fixup leaves an unchanged vma whole
            if vma.vm_start < nstart:
                vma = split_vma(mm, vma, nstart)
            if vma.vm_end > tmp:
                split_vma(mm, vma, tmp)
            mprotect_fixup(vma, newflags)
        nstart = tmp
        if nstart >= end:
            return
        vma = mm.find_vma(nstart)
        if vma is None or vma.vm_start != nstart:
            raise KernelError(errno.ENOMEM, f"{nstart:#x} is not mapped")


def mprotect_fixup(vma: VmArea, newflags: int) -> None:
    arch = vma.vm_mm.machine.arch
    vma.vm_flags = newflags
    vma.vm_page_prot = arch.protection_map[newflags & 0xF]
    change_protection(vma, vma.vm_start, vma.vm_end, vma.vm_page_prot)


def change_protection(vma: VmArea, start: int, end: int, newprot: int) -> None:
    """change_protection(): pte_modify every present pte of the range.

    The arch's pte_modify is its 2.6.15 one; the kernels that set a special bit kept it in
    x86's _PAGE_CHG_MASK, so with ``rules.pte_special`` the bit survives here.
    """
    mm = vma.vm_mm
    tables = mm.machine.tables
    arch = tables.arch
    keep = arch.special_mask if mm.machine.rules.pte_special else 0
    for _addr, table, first, count in pte_tables(mm, start, end):
        view = tables.table_view(tables.last, table)[first : first + count]
        used = np.flatnonzero(view)
        if not used.size:
            continue
        values = view[used].tolist()
        view[used] = [
            arch.pte_modify(p, newprot) | (p & keep) if arch.pte_present(p) else p for p in values
        ]


def pte_tables(mm: MmStruct, start: int, end: int):
    """(address, table, first index, count) for each existing pte table under [start, end).

    The walk descends only through upper entries that exist, as the kernel's
    pgd/pud/pmd_none_or_clear_bad loops skip whole none entries: its cost is the tables
    present under the range, not the range's size. A bad upper entry is reported and cleared
    as there. Each table read counts in ``machine.tables.tables_visited``.
    """
    if start < end:
        yield from _tables_below(mm, 0, mm.pgd, start, end)


def _tables_below(mm: MmStruct, level: int, table: int, start: int, end: int):
    tables = mm.machine.tables
    arch = tables.arch
    tables.tables_visited += 1
    lv = arch.levels[level]
    if level == tables.last:
        yield start, table, arch.index(level, start), (end - start) >> arch.page_shift
        return
    span = lv.span
    first = arch.index(level, start)
    last = arch.index(level, end - 1)
    view = tables.table_view(level, table)[first : last + 1]
    used = np.flatnonzero(view)
    if not used.size:
        return
    covered = span * lv.entries  # what the whole table maps
    base = start & ~(covered - 1)
    entry_bytes = lv.entry_bytes
    for k, entry in zip(used.tolist(), view[used].tolist(), strict=True):
        index = first + k
        if not _upper_entry_ok(mm, level, table + index * entry_bytes, entry):
            continue
        lo = base + index * span
        yield from _tables_below(
            mm,
            level + 1,
            arch.table_entry_paddr(level, entry),
            max(start, lo),
            min(end, lo + span),
        )


def iter_ptes(mm: MmStruct, start: int, end: int):
    """Yield (address, pte) for every non-none pte under [start, end) (inspection)."""
    tables = mm.machine.tables
    shift = tables.arch.page_shift
    for addr, table, first, count in pte_tables(mm, start, end):
        view = tables.table_view(tables.last, table)[first : first + count]
        used = np.flatnonzero(view)
        for k, pte in zip(used.tolist(), view[used].tolist(), strict=True):
            yield addr + (k << shift), pte


def exit_mmap(mm: MmStruct) -> None:
    """exit_mmap(): unmap everything, free every table and the pgd."""
    arch = mm.machine.arch
    gathered = unmap_vmas(mm, list(mm.mmap), 0, arch.task_size)
    free_pgd_range(mm, 0, arch.task_size, 0, 0)
    tlb_finish_mmu(mm, gathered)
    for vma in mm.mmap:
        remove_vma(vma)
    mm.mmap.clear()
    if mm.nr_ptes:
        raise KernelBug(f"exit_mmap: {mm.nr_ptes} pte tables left")
    free_table(mm, mm.pgd)  # pgd_free
    mm.pgd = 0


def dup_mmap(child: MmStruct, parent: MmStruct) -> None:
    """dup_mmap() (kernel/fork.c): copy every vma but VM_DONTCOPY ones, then their ptes."""
    child.hiwater_rss = 0
    for vma in parent.mmap:
        if vma.vm_flags & VM_DONTCOPY:
            continue
        new = replace(vma, vm_mm=child)
        if new.vm_file is not None:
            new.vm_file.get()
        child.insert_vma(new)
        copy_page_range(child, parent, vma)
