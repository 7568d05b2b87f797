"""mm/mremap.c of 2.6.15: do_mremap, move_vma, move_page_tables and move_ptes.

mremap never asks vm_normal_page(): the ptes of a moved range are carried over as they are,
raw PFN ptes included, and the new vma's vm_pgoff is the old one plus the offset moved from,
so the seed's linear rule (``pfn == vm_pgoff + page offset``) still holds at the new address.
What 2.6.15 did *not* refuse is growing a VM_PFNMAP vma: remap_pfn_range() did not set
VM_DONTEXPAND then, so a /dev/mem mapping grows, and the grown part has no ptes and no
->nopage to make them (a touch there takes do_anonymous_page's path inside a VM_PFNMAP vma).
Later kernels refuse the growth with EFAULT (``rules.mremap_grow_refused_flags``).

Where pfnmap differs: vma_merge() is not modelled (copy_vma always makes a new vma), nor are
RLIMIT_MEMLOCK/RLIMIT_AS, VM_ACCOUNT commit charging, sysctl_max_map_count and hugetlb vmas.
"""

from __future__ import annotations

import contextlib
import errno
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from pfnmap.errors import KernelError, OutOfMemory
from pfnmap.kernel.constants import MREMAP_FIXED, MREMAP_MAYMOVE
from pfnmap.kernel.madvise import ulong_bits
from pfnmap.kernel.mmap import do_munmap, get_unmapped_area, pte_tables
from pfnmap.kernel.pgtable import pte_offset

if TYPE_CHECKING:
    from pfnmap.kernel.mm import MmStruct, VmArea


def do_mremap(
    mm: MmStruct, addr: int, old_len: int, new_len: int, flags: int, new_addr: int = 0
) -> int:
    """do_mremap(addr, old_len, new_len, flags, new_addr): returns the (new) address.

    In 2.6.15's order: unknown flags, an unaligned ``addr`` and a zero ``new_len`` are EINVAL;
    MREMAP_FIXED needs MREMAP_MAYMOVE, an aligned ``new_addr`` inside TASK_SIZE and no overlap
    with the old range (EINVAL), and unmaps whatever is at ``new_addr`` first, *before* the
    checks below, as the kernel does (so a later failure leaves the target unmapped). A shrink
    just unmaps the tail. To grow or move, ``[addr, addr + old_len)`` must lie in one vma
    (EFAULT) that the era lets grow (``rules.mremap_grow_refused_flags``, EFAULT); the vma
    grows in place when it ends at ``addr + old_len`` and the gap above is big enough, and
    otherwise moves only with MREMAP_MAYMOVE (ENOMEM without it).
    """
    arch = mm.machine.arch
    rules = mm.machine.rules
    page_size = arch.page_size
    task_size = arch.task_size
    word = 1 << ulong_bits(arch)
    if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE):
        raise KernelError(errno.EINVAL, f"mremap: unknown flags {flags:#x}")
    if addr < 0 or addr >= word or addr & (page_size - 1):
        raise KernelError(errno.EINVAL, f"mremap: address {addr:#x} is not page aligned")
    old_len = ((old_len % word) + page_size - 1) & ~(page_size - 1) & (word - 1)
    new_len = ((new_len % word) + page_size - 1) & ~(page_size - 1) & (word - 1)
    # a zero old_len is allowed (DOS-emu's "duplicate a shm area"); a zero new_len is not
    if not new_len:
        raise KernelError(errno.EINVAL, "mremap: new length is zero")
    if flags & MREMAP_FIXED:
        if new_addr < 0 or new_addr & (page_size - 1):
            raise KernelError(errno.EINVAL, f"mremap: new address {new_addr:#x} not aligned")
        if not flags & MREMAP_MAYMOVE:
            raise KernelError(errno.EINVAL, "mremap: MREMAP_FIXED without MREMAP_MAYMOVE")
        if new_len > task_size or new_addr > task_size - new_len:
            raise KernelError(errno.EINVAL, f"mremap: {new_addr:#x}+{new_len:#x} past TASK_SIZE")
        if new_addr <= addr < new_addr + new_len or addr <= new_addr < addr + old_len:
            raise KernelError(errno.EINVAL, "mremap: the new range overlaps the old one")
        do_munmap(mm, new_addr, new_len)
    if old_len >= new_len:
        try:
            do_munmap(mm, addr + new_len, old_len - new_len)
        except KernelError:
            if old_len != new_len:
                raise
        if not flags & MREMAP_FIXED or new_addr == addr:
            return addr
        old_len = new_len
    vma = mm.find_vma(addr)
    if vma is None or vma.vm_start > addr:
        raise KernelError(errno.EFAULT, f"mremap: nothing mapped at {addr:#x}")
    if old_len > vma.vm_end - addr:
        raise KernelError(errno.EFAULT, "mremap: the old range spans more than one vma")
    refused = vma.vm_flags & rules.mremap_grow_refused_flags
    if refused and new_len > old_len:
        names = "|".join(rules.flag_names(refused))
        raise KernelError(errno.EFAULT, f"mremap: a {names} vma may not grow: {vma!r}")
    moving = bool(flags & MREMAP_FIXED) and addr != new_addr
    if (
        old_len == vma.vm_end - addr
        and not moving
        and (old_len != new_len or not flags & MREMAP_MAYMOVE)
    ):
        nxt = mm.find_vma(vma.vm_end)
        max_addr = nxt.vm_start if nxt is not None else task_size
        if max_addr - addr >= new_len:  # expand in place (vma_adjust)
            vma.vm_end = addr + new_len
            return addr
    if not flags & MREMAP_MAYMOVE:
        raise KernelError(errno.ENOMEM, "mremap: no room to grow in place and no MREMAP_MAYMOVE")
    if not flags & MREMAP_FIXED:
        new_addr = get_unmapped_area(mm, 0, new_len)
    return move_vma(vma, addr, old_len, new_len, new_addr)


def move_vma(vma: VmArea, old_addr: int, old_len: int, new_len: int, new_addr: int) -> int:
    """move_vma(): a copy of the vma at ``new_addr`` (copy_vma), the ptes moved over
    (move_page_tables), then the old range unmapped. When the page tables at the new place
    cannot be allocated the moved ptes go back, the new vma is unmapped instead, and the call
    fails with ENOMEM, as the kernel's error path does."""
    mm = vma.vm_mm
    shift = mm.machine.arch.page_shift
    new_pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> shift)
    new_vma = copy_vma(vma, new_addr, new_len, new_pgoff)
    moved = move_page_tables(vma, old_addr, new_vma, new_addr, old_len)
    failed = moved < old_len
    if failed:
        move_page_tables(new_vma, new_addr, vma, old_addr, moved)
        old_addr, old_len = new_addr, new_len
    # a zero old_len (the duplicate case) makes do_munmap fail: the kernel ignores that too
    with contextlib.suppress(KernelError):
        do_munmap(mm, old_addr, old_len)
    if failed:
        raise KernelError(errno.ENOMEM, "mremap: no RAM for the page tables at the new place")
    return new_addr


def copy_vma(vma: VmArea, addr: int, length: int, pgoff: int) -> VmArea:
    """copy_vma(): a new vma like ``vma`` over ``[addr, addr + length)`` at file page
    ``pgoff``, sharing its anon_vma and taking a reference on its file (no vma_merge here)."""
    new = replace(vma, vm_start=addr, vm_end=addr + length, vm_pgoff=pgoff)
    if new.vm_file is not None:
        new.vm_file.get()
    vma.vm_mm.insert_vma(new)
    return new


def move_page_tables(
    vma: VmArea, old_addr: int, new_vma: VmArea, new_addr: int, length: int
) -> int:
    """move_page_tables(): move every non-none pte of ``[old_addr, old_addr + length)`` to
    the same offset from ``new_addr``, a pte table at a time (move_ptes). Returns how many
    bytes were moved: less than ``length`` when a page table could not be allocated."""
    mm = vma.vm_mm
    arch = mm.machine.arch
    tables = mm.machine.tables
    shift = arch.page_shift
    end = old_addr + length
    for addr, table, first, count in list(pte_tables(mm, old_addr, end)):
        view = tables.table_view(tables.last, table)[first : first + count]
        used = np.flatnonzero(view)
        for k, pte in zip(used.tolist(), view[used].tolist(), strict=True):
            src = addr + (k << shift)
            try:
                dst_slot = pte_offset(mm, new_addr + (src - old_addr), alloc=True)
            except OutOfMemory:
                return src - old_addr
            view[k] = 0  # ptep_clear_flush
            tables.write_pte(dst_slot, move_pte(pte))
    return length


def move_pte(pte: int) -> int:
    """move_pte(): the pte as it goes to its new address. Only MIPS, whose ZERO_PAGE depends
    on the virtual address, changes it; none of pfnmap's arches do."""
    return pte
