"""Raw images: the file's bytes are physical memory from a base address on (``/dev/mem``
copies, QEMU's ``pmemsave``, ``pfnmap dump --format raw``). Nothing in the file says what it
is, so raw is what ``--image-format auto`` falls back to."""

from __future__ import annotations

import os
from typing import Any

from pfnmap.decode.images.base import DumpFacts, ImageError, PhysImage, Segment, map_file

WRITE_CHUNK = 16 << 20


def open_raw(path: str | os.PathLike[str], base: int = 0) -> PhysImage:
    """A raw image: the file's bytes are physical memory from ``base`` on."""
    if base < 0 or base & 0xFFF:
        raise ImageError(f"base address {base:#x} must be a non-negative multiple of 4096")
    f, mapping, size = map_file(path)
    seg = Segment(base, size, 0, size, size, name="raw")
    facts = DumpFacts(format=f"raw image (base {base:#x})", header={"base": base})
    return PhysImage([seg], mapping, os.fspath(path), "raw", owner=f, facts=facts)


def write_raw(path: str | os.PathLike[str], data: Any) -> int:
    """Write a raw image (the bytes of physical memory from its base address on)."""
    view = memoryview(data).cast("B")
    with open(path, "wb") as f:
        for i in range(0, len(view), WRITE_CHUNK):
            f.write(view[i : i + WRITE_CHUNK])
        return f.tell()
