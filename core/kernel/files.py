"""Files on the emulated machine: inodes with a page cache, shmem, and open files.

The page cache is the kernel's: a page read in once stays cached (one reference held by the
cache) and every mapping takes its own reference through ->nopage (filemap_nopage).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pfnmap.errors import KernelBug, KernelError, OutOfMemory
from pfnmap.kernel.constants import (
    O_ACCMODE,
    O_RDONLY,
    O_WRONLY,
    VM_FAULT_MAJOR,
    VM_FAULT_MINOR,
    PG_dirty,
    PG_lru,
    PG_uptodate,
)
from pfnmap.kernel.mm import NOPAGE_OOM, NOPAGE_SIGBUS, VmOperations

if TYPE_CHECKING:
    from pfnmap.kernel.mm import VmArea
    from pfnmap.machine import Machine


class AddressSpace:
    """struct address_space: the page cache of one inode (index -> pfn)."""

    def __init__(self, inode: Inode) -> None:
        self.host = inode
        self.pages: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"<address_space of {self.host.path}>"


class Inode:
    """A file's data and page cache. Subclasses provide ``mmap`` (file->f_op->mmap)."""

    kind = "file"

    def __init__(self, machine: Machine, path: str, data: bytes = b"") -> None:
        self.machine = machine
        self.path = path
        self.data = bytearray(data)
        self.mapping = AddressSpace(self)
        self.nlink = 1
        self.opened = 0  # open files (and vmas) that refer to the inode

    @property
    def size(self) -> int:
        return len(self.data)

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        raise KernelError(errno.ENODEV, f"{self.path} cannot be mapped")

    # page cache -------------------------------------------------------------------------------
    def find_or_read_page(self, index: int) -> tuple[int, bool]:
        """find_get_page or read it in: returns (pfn with a reference for the caller, was_read)."""
        phys = self.machine.phys
        pfn = self.mapping.pages.get(index)
        if pfn is not None:
            phys.get_page(pfn)
            return pfn, False
        pfn = phys.alloc_page(zero=True)  # the cache's own reference
        page_size = phys.page_size
        chunk = self.data[index * page_size : (index + 1) * page_size]
        phys.write(pfn << phys.page_shift, bytes(chunk))
        phys.mapping[pfn] = self.mapping
        phys.index[pfn] = index
        phys.flags[pfn] |= PG_uptodate | PG_lru
        self.mapping.pages[index] = pfn
        phys.get_page(pfn)
        return pfn, True

    def nr_pages(self) -> int:
        page_size = self.machine.phys.page_size
        return (self.size + page_size - 1) // page_size

    def writeback(self) -> None:
        """Copy dirty cached pages back into the file's data (what sync would do)."""
        phys = self.machine.phys
        page_size = phys.page_size
        for index, pfn in self.mapping.pages.items():
            if phys.flags[pfn] & PG_dirty:
                start = index * page_size
                end = min(start + page_size, self.size)
                self.data[start:end] = phys.read(pfn << phys.page_shift, end - start)
                phys.flags[pfn] &= ~PG_dirty

    def truncate_page_cache(self) -> None:
        """Drop every unmapped cached page (truncate_inode_pages for an unused inode)."""
        phys = self.machine.phys
        for index, pfn in list(self.mapping.pages.items()):
            if phys.mapcount[pfn]:
                raise KernelBug(f"truncating {self.path} while page {pfn:#x} is mapped")
            del self.mapping.pages[index]
            phys.mapping[pfn] = None
            phys.put_page(pfn)

    def release(self) -> None:
        """The last open file or vma went away."""


def filemap_nopage(vma: VmArea, address: int) -> tuple[int, int]:
    """filemap_nopage(): the cached page for the faulting offset, read in on a miss (MAJOR).

    An offset at or beyond the end of the file is NOPAGE_SIGBUS.
    """
    inode: Inode = vma.vm_file.inode
    index = vma.linear_page_index(address)
    if index >= inode.nr_pages():
        return NOPAGE_SIGBUS, VM_FAULT_MINOR
    try:
        pfn, was_read = inode.find_or_read_page(index)
    except OutOfMemory:
        return NOPAGE_OOM, VM_FAULT_MINOR
    return pfn, (VM_FAULT_MAJOR if was_read else VM_FAULT_MINOR)


GENERIC_FILE_VM_OPS = VmOperations("generic_file_vm_ops", filemap_nopage)


class RegularFile(Inode):
    """A file created on the machine; mmap is generic_file_mmap."""

    kind = "file"

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        vma.vm_ops = GENERIC_FILE_VM_OPS


#: SHMEM_NR_DIRECT of mm/shmem.c: the swap entries kept in the inode itself
SHMEM_NR_DIRECT = 16


def shmem_max_bytes(page_size: int, bits_per_long: int) -> int:
    """SHMEM_MAX_BYTES of mm/shmem.c (2.6.15): the largest object its two-level swap vector
    can index, ``SHMEM_NR_DIRECT + (ENTRIES_PER_PAGE**2 / 2) * (ENTRIES_PER_PAGE + 1)`` pages,
    ENTRIES_PER_PAGE being the unsigned longs in a page (256 GiB with 4 KiB pages on a 64-bit
    kernel)."""
    per_page = page_size // (bits_per_long // 8)
    return (SHMEM_NR_DIRECT + (per_page * per_page // 2) * (per_page + 1)) * page_size


class ShmemFile(Inode):
    """The unlinked shmem object behind MAP_SHARED|MAP_ANONYMOUS and shared /dev/zero
    (shmem_zero_setup). Its pages go when the last mapping goes.

    ``size`` is i_size; no bytes are held for it: a page is allocated, zeroed, when a fault
    first asks for it (shmem_getpage), so a huge object costs nothing until it is touched.
    shmem_file_setup()'s limit holds: a size beyond SHMEM_MAX_BYTES is EINVAL. Its memory
    accounting (shmem_acct_size, ENOMEM under strict overcommit) is not modelled.
    """

    kind = "shmem"

    def __init__(self, machine: Machine, size: int) -> None:
        arch = machine.arch
        limit = shmem_max_bytes(arch.page_size, arch.bits_per_long)
        if not 0 <= size <= limit:
            raise KernelError(
                errno.EINVAL, f"shmem object of {size:#x} bytes (SHMEM_MAX_BYTES is {limit:#x})"
            )
        super().__init__(machine, "/dev/zero (deleted)")
        self._size = size
        self.nlink = 0

    @property
    def size(self) -> int:
        return self._size

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        vma.vm_ops = SHMEM_VM_OPS

    def writeback(self) -> None:
        """Nothing to do: shmem has no backing file, its cached pages are the data."""

    def release(self) -> None:
        self.truncate_page_cache()


SHMEM_VM_OPS = VmOperations("shmem_vm_ops", filemap_nopage)


@dataclass(eq=False)
class OpenFile:
    """struct file: an inode opened with some flags, shared across fork."""

    inode: Inode
    flags: int = 2
    refs: int = field(default=1)

    @property
    def path(self) -> str:
        return self.inode.path

    @property
    def readable(self) -> bool:
        return self.flags & O_ACCMODE != O_WRONLY

    @property
    def writable(self) -> bool:
        return self.flags & O_ACCMODE != O_RDONLY

    def get(self) -> OpenFile:
        """get_file()."""
        self.refs += 1
        return self

    def put(self) -> None:
        """fput(): the last reference releases the inode's resources."""
        self.refs -= 1
        if self.refs < 0:
            raise KernelBug(f"fput on a closed file {self.path}")
        if self.refs == 0:
            self.inode.opened -= 1
            if self.inode.opened == 0 and self.inode.nlink == 0:
                self.inode.release()

    def __repr__(self) -> str:
        return f"<file {self.path}>"


def shmem_zero_setup(vma: VmArea) -> None:
    """shmem_zero_setup() (mm/shmem.c): back a shared anonymous vma (MAP_SHARED|MAP_ANONYMOUS,
    or a shared /dev/zero mapping) by a fresh unlinked shmem object."""
    machine = vma.vm_mm.machine
    inode = ShmemFile(machine, vma.vm_end - vma.vm_start)
    inode.opened = 1
    if vma.vm_file is not None:
        vma.vm_file.put()
    vma.vm_file = OpenFile(inode)
    inode.mmap(vma.vm_file, vma)
