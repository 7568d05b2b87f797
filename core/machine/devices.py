"""Character devices: /dev/mem, /dev/zero, a driver that hands out its own pages by ->nopage, and
a driver that remaps a physical window into a vma in pieces (partial or scattered remaps).

Their ->mmap methods follow drivers/char/mem.c of 2.6.15 (mmap_mem, mmap_zero) and the usual
shape of a 2.6-era driver with a nopage handler (e.g. a sound driver's DMA buffer).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pfnmap.errors import KernelError, OutOfMemory, UnknownRegion
from pfnmap.kernel.constants import (
    O_SYNC,
    VM_FAULT_MINOR,
    VM_IO,
    VM_READ,
    VM_RESERVED,
    VM_SHARED,
    VM_WRITE,
    PG_reserved,
)
from pfnmap.kernel.files import Inode, OpenFile, shmem_zero_setup
from pfnmap.kernel.mm import NOPAGE_SIGBUS, VmOperations
from pfnmap.kernel.physmem import IORegion
from pfnmap.kernel.remap import io_remap_pfn_range, remap_pfn_range

if TYPE_CHECKING:
    from pfnmap.kernel.mm import VmArea
    from pfnmap.machine.machine import Machine


class DevMem(Inode):
    """/dev/mem: physical memory, RAM or not, mapped with remap_pfn_range (mmap_mem)."""

    kind = "chr"

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        """mmap_mem(): the mmap offset is the physical address, so ``vm_pgoff`` is the pfn.

        O_SYNC makes the mapping uncached (pgprot_noncached), as uncached_access() does on
        x86-64 in 2.6.15 (without O_SYNC the MTRRs decide, so the pte stays cached). An offset
        range beyond the arch's physical address width is EINVAL (a pfnmap check; 2.6.15 had
        none and would truncate the pfn). A failed remap is EAGAIN, as in mmap_mem.
        """
        machine = self.machine
        arch = machine.arch
        npages = (vma.vm_end - vma.vm_start) >> arch.page_shift
        if vma.vm_pgoff + npages - 1 > arch.max_pfn:
            raise KernelError(
                errno.EINVAL,
                f"/dev/mem offset {vma.vm_pgoff << arch.page_shift:#x} + {npages} pages is "
                f"beyond the {arch.phys_bits}-bit physical address space of {arch.name}",
            )
        if file.flags & O_SYNC:
            vma.vm_page_prot = arch.pgprot_noncached(vma.vm_page_prot)
        try:
            remap_pfn_range(
                vma, vma.vm_start, vma.vm_pgoff, vma.vm_end - vma.vm_start, vma.vm_page_prot
            )
        except KernelError as exc:
            if exc.errno == errno.EINVAL:
                raise
            raise KernelError(errno.EAGAIN, f"remap_pfn_range failed: {exc}") from exc


class DevZero(Inode):
    """/dev/zero: shared mappings become shmem, private ones plain anonymous memory."""

    kind = "chr"

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        """mmap_zero(): shmem_zero_setup() for VM_SHARED; nothing to do for private."""
        if vma.vm_flags & VM_SHARED:
            shmem_zero_setup(vma)


class DevBuffer(Inode):
    """A driver buffer of RAM pages the driver owns, mapped page by page through ->nopage.

    The driver allocates its pages when it is created and marks the vma VM_RESERVED, as 2.6-era
    drivers did; nopage returns the page with a reference for the caller. This is do_no_page's
    "device nopage" case: struct pages exist, so these are normal pages to the VM.
    """

    kind = "chr"

    def __init__(self, machine: Machine, path: str, npages: int) -> None:
        super().__init__(machine, path)
        phys = machine.phys
        if isinstance(npages, bool) or not isinstance(npages, int):
            raise TypeError(f"{path}: npages must be an int, not {type(npages).__name__}")
        if npages < 0:
            raise KernelError(errno.EINVAL, f"{path}: a buffer of {npages} pages")
        # the driver's probe fails cleanly (ENOMEM, nothing kept) when RAM cannot hold it
        free = phys.free_pages()
        if npages > free:
            raise OutOfMemory(f"{path}: {npages} pages asked for, {free} free")
        self.pages = phys.alloc_pages(npages)
        for i, pfn in enumerate(self.pages):
            phys.flags[pfn] |= PG_reserved
            phys.write(pfn << phys.page_shift, f"{path} page {i}\n".encode())
        self.vm_ops = VmOperations(f"{path} vm_ops", self.nopage)

    def nopage(self, vma: VmArea, address: int) -> tuple[int, int]:
        index = vma.linear_page_index(address)
        if index >= len(self.pages):
            return NOPAGE_SIGBUS, VM_FAULT_MINOR
        pfn = self.pages[index]
        self.machine.phys.get_page(pfn)
        return pfn, VM_FAULT_MINOR

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        vma.vm_flags |= VM_RESERVED
        vma.vm_ops = self.vm_ops


class DevIoMem(Inode):
    """A device file whose mmap maps one I/O region with io_remap_pfn_range (a PCI BAR or a
    framebuffer). On x86 that is remap_pfn_range; arches with I/O spaces override the hook.

    ``region`` names one of the machine's I/O regions, or is an :class:`IORegion` describing
    any physical window, even one over RAM (a device whose decode aliases memory that has
    struct pages: what vm_normal_page() then gets wrong is the point of such a setup).
    """

    kind = "chr"

    def __init__(self, machine: Machine, path: str, region: str | IORegion) -> None:
        super().__init__(machine, path)
        if isinstance(region, IORegion):
            self.region = region
        else:
            regions = machine.phys.io_regions
            found = [r for r in regions if r.name == region]
            if not found:
                raise UnknownRegion(region, [r.name for r in regions])
            self.region = found[0]

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        """The driver's mmap: ``MK_IOSPACE_PFN(space, (bus offset + mmap offset) >> PAGE_SHIFT)``
        to io_remap_pfn_range, as sbus/pci drivers of the era did (identity on x86, where a
        region in a nonzero space is EINVAL)."""
        arch = self.machine.arch
        offset = vma.vm_pgoff << arch.page_shift
        size = vma.vm_end - vma.vm_start
        if offset + size > self.region.size:
            raise KernelError(errno.EINVAL, f"{self.path}: mapping beyond the device's memory")
        bus_pfn = (self.region.offset + offset) >> arch.page_shift
        pfn = arch.mk_iospace_pfn(self.region.space, bus_pfn)
        io_remap_pfn_range(vma, vma.vm_start, pfn, size, vma.vm_page_prot)


# partial and scattered remaps: what sbus framebuffer drivers of 2.6.15 did ---------------------
@dataclass(frozen=True)
class Piece:
    """One remap call of a driver's mmap: ``npages`` pages of the vma from page ``page`` on,
    mapping the device window from byte ``offset`` on."""

    page: int
    npages: int
    offset: int


def ram_window(machine: Machine, first_pfn: int, npages: int) -> IORegion:
    """A window over RAM pages that have struct pages (e.g. the boot-reserved firmware pages),
    described like device memory so a driver can remap it."""
    shift = machine.arch.page_shift
    return IORegion(f"ram@{first_pfn:#x}", first_pfn << shift, npages << shift)


def io_prot(machine: Machine) -> int:
    """pgprot_noncached(PAGE_SHARED): writable and uncached whatever the vma asked for, which is
    what sparc's io_remap_pfn_range forced (pg_iobits) until March 2006. A driver on an arch
    that honours the caller's prot passes it explicitly to get the same ptes."""
    arch = machine.arch
    return arch.pgprot_noncached(arch.protection_map[VM_SHARED | VM_WRITE | VM_READ])


class RemapDriver(Inode):
    """A driver whose ->mmap remaps pieces of a physical window into the vma.

    ``pieces`` (default: the whole vma from the mmap offset) are remapped one call each, with
    io_remap_pfn_range (``io=True``, the arch's version: sparc64 has its own) or
    remap_pfn_range. ``prot`` is ``"vma"`` (vma->vm_page_prot) or ``"io"`` (:func:`io_prot`).
    ``clear_vm_io`` clears VM_IO after the remaps, as some drivers did (the reason 2.6.15-rc6's
    get_user_pages also refuses VM_PFNMAP). A failing remap fails the mmap.
    """

    kind = "chr"

    def __init__(
        self,
        machine: Machine,
        path: str,
        window: IORegion,
        pieces: list[Piece] | None = None,
        *,
        io: bool = True,
        prot: str = "vma",
        clear_vm_io: bool = False,
    ) -> None:
        super().__init__(machine, path)
        if prot not in ("vma", "io"):
            raise ValueError(f"prot must be 'vma' or 'io', not {prot!r}")
        self.window = window
        self.pieces = pieces
        self.io = io
        self.prot = prot
        self.clear_vm_io = clear_vm_io

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        arch = self.machine.arch
        ps = arch.page_size
        prot = vma.vm_page_prot if self.prot == "vma" else io_prot(self.machine)
        pieces = self.pieces or [
            Piece(0, (vma.vm_end - vma.vm_start) // ps, vma.vm_pgoff << arch.page_shift)
        ]
        remap = io_remap_pfn_range if self.io else remap_pfn_range
        for p in pieces:
            bus_pfn = (self.window.offset + p.offset) >> arch.page_shift
            pfn = arch.mk_iospace_pfn(self.window.space, bus_pfn)
            remap(vma, vma.vm_start + p.page * ps, pfn, p.npages * ps, prot)
        if self.clear_vm_io:
            vma.vm_flags &= ~VM_IO
