"""mm/madvise.c of 2.6.15 (and what 2.6.16 added, for the eras that have it): sys_madvise.

The seed (6aab341e) renamed the bit madvise_dontneed() refuses from VM_UNPAGED to VM_PFNMAP:
MADV_DONTNEED on a remap_pfn_range() vma is EINVAL in every era pfnmap models, since zapping
raw ptes would leave the driver's mapping half gone with nothing to fault it back (no ->nopage).

Where pfnmap differs: vma_merge() is not modelled, so advice that changes vm_flags leaves the
vma split where the kernel might have merged it with a neighbour; the read-ahead of
MADV_WILLNEED reads whole pages of a regular file into its page cache at once (the kernel
queues I/O and may read less); VM_NONLINEAR and hugetlb vmas do not exist here.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pfnmap.errors import KernelError
from pfnmap.kernel.constants import (
    MADV_DOFORK,
    MADV_DONTFORK,
    MADV_DONTNEED,
    MADV_NAMES,
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    VM_DONTCOPY,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_NONLINEAR,
    VM_RAND_READ,
    VM_SEQ_READ,
    VM_SHARED,
    VM_WRITE,
)
from pfnmap.kernel.memory import zap_page_range
from pfnmap.kernel.mmap import split_vma

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.kernel.mm import MmStruct, VmArea

#: VM_READHINTMASK: the read-ahead hints MADV_NORMAL/SEQUENTIAL/RANDOM choose between
VM_READHINTMASK = VM_SEQ_READ | VM_RAND_READ


def ulong_bits(arch: Arch) -> int:
    """The width of the kernel's ``unsigned long`` / ``size_t`` on ``arch`` (its ELF class)."""
    return 32 if arch.elf_class == 1 else 64


def advice_name(behavior: int) -> str:
    return MADV_NAMES.get(behavior, str(behavior))


def sys_madvise(mm: MmStruct, start: int, len_in: int, behavior: int) -> None:
    """sys_madvise(start, len, behavior): apply the advice vma by vma over the range.

    The checks in 2.6.15's order: an unaligned ``start`` is EINVAL, a length that rounds up to
    zero from a huge value (or a range that wraps) EINVAL, a zero length success. The range
    may cover holes: they are skipped and the call returns ENOMEM at the end, after the advice
    was applied to every vma it reached (unlike mprotect and mlock). A vma that refuses the
    advice stops the walk with its error; the vmas before it keep theirs. In 2.6.15 an advice
    value madvise_vma() does not know is EINVAL only once a vma is reached; from 2.6.16 it is
    checked first (``rules.madvise_advice_checked_first``).
    """
    machine = mm.machine
    arch = machine.arch
    rules = machine.rules
    word = 1 << ulong_bits(arch)
    known = behavior in rules.madvise_advices
    if rules.madvise_advice_checked_first and not known:
        raise KernelError(errno.EINVAL, f"madvise: unknown advice {behavior}")
    if start < 0 or start >= word or start & (arch.page_size - 1):
        raise KernelError(errno.EINVAL, f"madvise: start {start:#x} is not page aligned")
    len_in %= word  # size_t: a negative length is a huge one
    length = (len_in + arch.page_size - 1) & ~(arch.page_size - 1) & (word - 1)
    if len_in and not length:
        raise KernelError(errno.EINVAL, f"madvise: length {len_in:#x} rounds up to zero")
    end = start + length
    if end >= word:
        raise KernelError(errno.EINVAL, "madvise: the range wraps")
    if end == start:
        return
    unmapped_error = 0
    vma = mm.find_vma(start)
    while True:
        if vma is None:
            raise KernelError(errno.ENOMEM, f"madvise: nothing mapped at {start:#x}")
        if start < vma.vm_start:
            unmapped_error = errno.ENOMEM
            start = vma.vm_start
            if start >= end:
                break
        tmp = min(vma.vm_end, end)
        if not known:
            raise KernelError(errno.EINVAL, f"madvise: unknown advice {behavior}")
        prev = madvise_vma(vma, start, tmp, behavior)
        start = tmp
        if prev is not None and start < prev.vm_end:
            start = prev.vm_end
        if start >= end:
            break
        vma = mm.find_vma(start)
    if unmapped_error:
        raise KernelError(unmapped_error, "madvise: the range has unmapped holes")


def madvise_vma(vma: VmArea, start: int, end: int, behavior: int) -> VmArea | None:
    """madvise_vma(): one vma's part ``[start, end)``; returns the kernel's ``*prev`` (the vma
    the walk continues after, None when MADV_REMOVE dropped the lock)."""
    if behavior == MADV_WILLNEED:
        return madvise_willneed(vma, start, end)
    if behavior == MADV_DONTNEED:
        return madvise_dontneed(vma, start, end)
    if behavior == MADV_REMOVE:
        return madvise_remove(vma, start, end)
    if behavior == MADV_DOFORK and vma.vm_flags & VM_IO:
        raise KernelError(errno.EINVAL, f"MADV_DOFORK on a VM_IO vma {vma!r}")
    return madvise_behavior(vma, start, end, behavior)


def madvise_behavior(vma: VmArea, start: int, end: int, behavior: int) -> VmArea:
    """madvise_behavior(): the advice that only changes vm_flags, splitting the vma so the
    change covers exactly ``[start, end)``. Nothing is split when the flags would not change."""
    flags = vma.vm_flags
    if behavior in (MADV_NORMAL, MADV_SEQUENTIAL, MADV_RANDOM):
        new_flags = flags & ~VM_READHINTMASK
        if behavior == MADV_SEQUENTIAL:
            new_flags |= VM_SEQ_READ
        elif behavior == MADV_RANDOM:
            new_flags |= VM_RAND_READ
    elif behavior == MADV_DONTFORK:
        new_flags = flags | VM_DONTCOPY
    elif behavior == MADV_DOFORK:
        new_flags = flags & ~VM_DONTCOPY
    else:  # sys_madvise only passes the advice values the era knows
        raise KernelError(errno.EINVAL, f"madvise: unknown advice {behavior}")
    if new_flags == flags:
        return vma
    mm = vma.vm_mm
    if start != vma.vm_start:
        vma = split_vma(mm, vma, start)
    if end != vma.vm_end:
        split_vma(mm, vma, end)
    vma.vm_flags = new_flags
    return vma


def madvise_willneed(vma: VmArea, start: int, end: int) -> VmArea:
    """madvise_willneed(): read the file pages of the range ahead; EBADF without a file.

    The page cache of a regular file gets the pages (force_page_cache_readahead); devices
    (/dev/mem has no readpage) and shmem read nothing and still succeed, as in 2.6.15, which
    ignored the read-ahead's result.
    """
    file = vma.vm_file
    if file is None:
        raise KernelError(errno.EBADF, f"MADV_WILLNEED on an anonymous vma {vma!r}")
    inode = file.inode
    if getattr(inode, "kind", None) == "file" and hasattr(inode, "find_or_read_page"):
        first = vma.linear_page_index(start)
        last = min(vma.linear_page_index(end), inode.nr_pages())
        phys = vma.vm_mm.machine.phys
        for index in range(first, last):
            pfn, _ = inode.find_or_read_page(index)
            phys.put_page(pfn)  # the cache keeps its own reference
    return vma


def madvise_dontneed(vma: VmArea, start: int, end: int) -> VmArea:
    """madvise_dontneed(): zap the range; the next touch refaults it (zero-filled for private
    anonymous memory). VM_LOCKED, VM_HUGETLB and VM_PFNMAP vmas are EINVAL
    (``rules.madvise_dontneed_refused_flags``)."""
    refused = vma.vm_mm.machine.rules.madvise_dontneed_refused_flags
    if vma.vm_flags & refused:
        names = "|".join(vma.vm_mm.machine.rules.flag_names(vma.vm_flags & refused))
        raise KernelError(errno.EINVAL, f"MADV_DONTNEED refuses a {names} vma {vma!r}")
    zap_page_range(vma, start, end - start)
    return vma


def madvise_remove(vma: VmArea, start: int, end: int) -> None:
    """madvise_remove() (2.6.16): punch the range out of the backing store.

    VM_LOCKED/VM_NONLINEAR/VM_HUGETLB and vmas without a file are EINVAL, a vma that is not
    shared and writable EACCES; then vmtruncate_range(), which only shmem implements (other
    files and devices, /dev/mem included, are ENOSYS): every mapping of the range is zapped
    (private COW copies too) and the pages leave the page cache.
    """
    if vma.vm_flags & (VM_LOCKED | VM_NONLINEAR | VM_HUGETLB):
        raise KernelError(errno.EINVAL, f"MADV_REMOVE refuses {vma!r}")
    if vma.vm_file is None:
        raise KernelError(errno.EINVAL, f"MADV_REMOVE on an anonymous vma {vma!r}")
    if vma.vm_flags & (VM_SHARED | VM_WRITE) != VM_SHARED | VM_WRITE:
        raise KernelError(errno.EACCES, f"MADV_REMOVE needs a shared writable vma: {vma!r}")
    inode = vma.vm_file.inode
    if getattr(inode, "kind", None) != "shmem":
        raise KernelError(errno.ENOSYS, f"{inode.path} has no truncate_range")
    shmem_truncate_range(inode, vma.linear_page_index(start), vma.linear_page_index(end))
    return None


def shmem_truncate_range(inode, first: int, last: int) -> None:
    """unmap_mapping_range(even_cows) then shmem_truncate_range() for pages ``[first, last)``:
    every vma of every process that maps those file pages loses its ptes there, the cached
    pages are released and the file's data reads back as zeros."""
    machine = inode.machine
    shift = machine.arch.page_shift
    for proc in list(machine.processes.values()):
        for vma in list(proc.mm.mmap):
            if vma.vm_file is None or vma.vm_file.inode is not inode:
                continue
            lo = max(first, vma.vm_pgoff)
            hi = min(last, vma.vm_pgoff + (vma.size >> shift))
            if lo < hi:
                addr = vma.vm_start + ((lo - vma.vm_pgoff) << shift)
                zap_page_range(vma, addr, (hi - lo) << shift)
    phys = machine.phys
    for index in range(first, last):
        pfn = inode.mapping.pages.pop(index, None)
        if pfn is not None:
            phys.mapping[pfn] = None
            phys.put_page(pfn)
    page_size = phys.page_size
    lo = min(first * page_size, inode.size)
    hi = min(last * page_size, inode.size)
    inode.data[lo:hi] = bytes(hi - lo)
