"""Generic defaults, registered like any plugin but after every arch (``trylast``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.plugins import hookimpl

if TYPE_CHECKING:
    from pfnmap.kernel.mm import VmArea
    from pfnmap.machine import Machine


@hookimpl(trylast=True)
def pfnmap_io_remap_pfn_range(
    machine: Machine, vma: VmArea, addr: int, pfn: int, size: int, prot: int
) -> int:
    """Arches without I/O spaces: ``io_remap_pfn_range`` is ``remap_pfn_range``."""
    from pfnmap.kernel.remap import remap_pfn_range

    return remap_pfn_range(vma, addr, pfn, size, prot)
