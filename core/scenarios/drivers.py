"""Test drivers for the scenarios: device files whose ->mmap does what drivers of the era did.

They exist to provoke the decisions the eras disagree on: handing out the driver's own RAM pages
and mixing RAM and device pfns in one VM_MIXEDMAP vma. The driver that remaps only part of a vma,
or one vma in several discontiguous pieces (:class:`RemapDriver`), is public API in
:mod:`pfnmap.machine.devices` and re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.kernel.constants import VM_MIXEDMAP, VM_RESERVED
from pfnmap.kernel.files import Inode
from pfnmap.kernel.physmem import IORegion
from pfnmap.kernel.remap import remap_pfn_range, vm_insert_mixed, vm_insert_page

# the partial and scattered remap driver is public API now (Machine.add_remap_device); these
# names stay importable from here for the scenarios and for code written against them
from pfnmap.machine.devices import Piece, RemapDriver, io_prot, ram_window

__all__ = ["MixedDriver", "PageDriver", "Piece", "RemapDriver", "io_prot", "ram_window"]

if TYPE_CHECKING:
    from pfnmap.kernel.files import OpenFile
    from pfnmap.kernel.mm import VmArea
    from pfnmap.machine import Machine


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
