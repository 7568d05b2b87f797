"""Test drivers for the scenarios: device files whose ->mmap does what drivers of the era did.

They live here, not in :mod:`pfnmap.machine.devices`, because they exist to provoke the decisions
the eras disagree on: remapping only part of a vma, remapping one vma in several discontiguous
pieces, clearing VM_IO after remap_pfn_range, handing out the driver's own RAM pages, and mixing RAM
and device pfns in one VM_MIXEDMAP vma.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pfnmap.kernel.constants import VM_IO, VM_MIXEDMAP, VM_READ, VM_RESERVED, VM_SHARED, VM_WRITE
from pfnmap.kernel.files import Inode
from pfnmap.kernel.physmem import IORegion
from pfnmap.kernel.remap import io_remap_pfn_range, remap_pfn_range, vm_insert_mixed, vm_insert_page

if TYPE_CHECKING:
    from pfnmap.kernel.files import OpenFile
    from pfnmap.kernel.mm import VmArea
    from pfnmap.machine import Machine


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


class PageDriver(Inode):
    """A driver that hands its own RAM pages (not reserved, not anonymous) to user space.

    From 2.6.15-rc4 it calls vm_insert_page() for each page, which marks the vma VM_INSERTPAGE
    (rc6) so fork copies the ptes. Before that API the idiom was remap_pfn_range of each page's
    pfn, one call per page since the pages are not contiguous (PACKET_MMAP did this until rc6).
    Its ``pages`` hold the driver's references (the invariant check counts them).
    """

    kind = "chr"

    def __init__(self, machine: Machine, path: str, npages: int) -> None:
        super().__init__(machine, path)
        phys = machine.phys
        self.pages = [phys.alloc_page(zero=True) for _ in range(npages)]
        for i, pfn in enumerate(self.pages):
            phys.write(pfn << phys.page_shift, f"{path} page {i}\n".encode())

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        machine = self.machine
        ps = machine.arch.page_size
        npages = min(len(self.pages), (vma.vm_end - vma.vm_start) // ps)
        for i in range(npages):
            addr = vma.vm_start + i * ps
            if machine.rules.vm_insert_page:
                vm_insert_page(vma, addr, self.pages[i])
            else:
                vma.vm_flags |= VM_RESERVED
                remap_pfn_range(vma, addr, self.pages[i], ps, vma.vm_page_prot)


class MixedDriver(Inode):
    """A VM_MIXEDMAP driver (2.6.26, the AXFS / execute-in-place case): its vma mixes its own RAM
    pages and device pfns, in any order, inserted one by one with vm_insert_mixed().

    ``layout`` lists, per vma page, ``("ram", i)`` for the driver's page ``i`` or ``("io", k)``
    for page ``k`` of the device window. In an era without vm_insert_mixed the mmap fails
    (ENOSYS: there was no such driver API).
    """

    kind = "chr"

    def __init__(
        self, machine: Machine, path: str, window: IORegion, layout: list[tuple[str, int]]
    ) -> None:
        super().__init__(machine, path)
        phys = machine.phys
        self.window = window
        self.layout = layout
        nram = 1 + max((i for kind, i in layout if kind == "ram"), default=-1)
        self.pages = [phys.alloc_page(zero=True) for _ in range(nram)]
        for i, pfn in enumerate(self.pages):
            phys.write(pfn << phys.page_shift, f"{path} ram page {i}\n".encode())

    def mmap(self, file: OpenFile, vma: VmArea) -> None:
        arch = self.machine.arch
        ps = arch.page_size
        io_base = self.window.start >> arch.page_shift
        vma.vm_flags |= VM_MIXEDMAP
        for n, (kind, i) in enumerate(self.layout):
            pfn = self.pages[i] if kind == "ram" else io_base + i
            vm_insert_mixed(vma, vma.vm_start + n * ps, pfn)
