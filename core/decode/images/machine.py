"""The physical memory of an emulated machine as an image (no file at all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.decode.images.base import PhysImage, Segment

if TYPE_CHECKING:
    from pfnmap.machine import Machine


def machine_image(machine: Machine) -> PhysImage:
    """The physical memory of a running emulated machine: RAM (a read-only view of its mmap)
    and every I/O region (read through the device, as the machine's bus would)."""
    phys = machine.phys
    segments = [Segment(0, phys.ram_bytes, 0, name="RAM")]
    for region in phys.io_regions:

        def reader(paddr: int, n: int, region=region) -> bytes:
            return region.read(paddr, n, phys.page_size)

        segments.append(Segment(region.start, region.size, reader=reader, name=region.name))
    return PhysImage(segments, phys.ram, f"<{machine.arch.name} machine>", "machine")
