"""Physical memory images: where the page-table decoder reads tables from.

Every source has one interface (:class:`PhysImage`), and each format is a module of
:mod:`pfnmap.decode.images`:

- a raw file of physical memory starting at a base address (``/dev/mem`` copies, QEMU's
  ``pmemsave``, ``pfnmap dump --format raw``);
- an ELF core whose PT_LOAD segments carry physical addresses in ``p_paddr``, as QEMU's
  ``dump-guest-memory`` and kdump's ``/proc/vmcore`` write them;
- a kdump-compressed file (makedumpfile, QEMU's ``dump-guest-memory -z``), plain or in the
  flattened format, read a page at a time;
- a LiME image;
- an emulated :class:`~pfnmap.machine.machine.Machine` (its RAM and I/O regions).

Files are opened read-only and mapped with ``mmap(ACCESS_READ)``; a table read is a numpy view
of the mapping where the format stores pages as they are (a copy where a table straddles two
segments or must be decompressed), so memory does not grow with the image. Problems with a
single read are :class:`OutsideImage` (the walker turns them into a problem record and goes
on); problems that stop an image from being opened at all are :class:`ImageError`, one clear
line each. :func:`open_image` picks the format by name or, with ``auto``, by sniffing the
file (:mod:`pfnmap.decode.images.registry`; plugins add formats through the
``pfnmap_image_formats`` hook).
"""

from __future__ import annotations

from pfnmap.decode.images.base import (
    NOT_DUMPED,
    OUTSIDE,
    TRUNCATED,
    UNREADABLE,
    DumpFacts,
    ImageError,
    OutsideImage,
    PhysImage,
    Segment,
)
from pfnmap.decode.images.elf import (
    ELF_MAGIC,
    ELFCLASS32,
    ELFCLASS64,
    EM_NONE,
    ET_CORE,
    PT_LOAD,
    PT_NOTE,
    SEGMENT_ALIGN,
    check_elf_arch,
    em_name,
    open_elf,
    write_elf_core,
)
from pfnmap.decode.images.kdump import open_kdump
from pfnmap.decode.images.kdump_write import write_kdump
from pfnmap.decode.images.lime import open_lime, write_lime
from pfnmap.decode.images.machine import machine_image
from pfnmap.decode.images.notes import elf_note
from pfnmap.decode.images.raw import open_raw, write_raw
from pfnmap.decode.images.registry import (
    ImageFormat,
    UnknownImageFormat,
    image_formats,
    open_image,
)

__all__ = [
    "ELFCLASS32",
    "ELFCLASS64",
    "ELF_MAGIC",
    "EM_NONE",
    "ET_CORE",
    "NOT_DUMPED",
    "OUTSIDE",
    "PT_LOAD",
    "PT_NOTE",
    "SEGMENT_ALIGN",
    "TRUNCATED",
    "UNREADABLE",
    "DumpFacts",
    "ImageError",
    "ImageFormat",
    "OutsideImage",
    "PhysImage",
    "Segment",
    "UnknownImageFormat",
    "check_elf_arch",
    "elf_note",
    "em_name",
    "image_formats",
    "machine_image",
    "open_elf",
    "open_image",
    "open_kdump",
    "open_lime",
    "open_raw",
    "write_elf_core",
    "write_kdump",
    "write_lime",
    "write_raw",
]
