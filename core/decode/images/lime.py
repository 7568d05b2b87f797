"""LiME images (the Linux Memory Extractor's ``format=lime``).

A LiME file is a sequence of ranges, each a 32-byte ``lime_mem_range_header`` followed by the
range's bytes (LiME's lime.h): ``magic`` 0x4C694D45 (the bytes "EMiL" in the little-endian
files LiME writes), ``version`` 1, ``s_addr`` and ``e_addr`` (the first and the *last*
physical address of the range, 64 bits each) and 8 reserved bytes. The ranges become
segments over the mapped file, so tables are read in place.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import Any

from pfnmap.decode.images.base import DumpFacts, ImageError, PhysImage, Segment, map_file

LIME_MAGIC = 0x4C694D45
LIME_VERSION = 1
_HEADER = {"little": struct.Struct("<IIQQ8s"), "big": struct.Struct(">IIQQ8s")}
HEADER_SIZE = 32


def sniff_lime(head: bytes) -> str | None:
    if len(head) < 4:
        return None
    for order, h in _HEADER.items():
        if struct.unpack_from(h.format[0] + "I", head)[0] == LIME_MAGIC:
            return f"LiME image ({order}-endian)"
    return None


def open_lime(path: str | os.PathLike[str]) -> PhysImage:
    f, mapping, size = map_file(path)
    name = os.fspath(path)
    try:
        segments, facts = _ranges(mapping, size, name)
        return PhysImage(segments, mapping, name, "lime", owner=f, facts=facts)
    except ImageError:
        mapping.close()
        f.close()
        raise


def _ranges(mapping: Any, size: int, name: str) -> tuple[list[Segment], DumpFacts]:
    order = "little" if struct.unpack_from("<I", mapping, 0)[0] == LIME_MAGIC else "big"
    h = _HEADER[order]
    segments: list[Segment] = []
    facts = DumpFacts(byteorder=order)
    pos = 0
    while pos < size:
        if pos + HEADER_SIZE > size:
            facts.warnings.append(f"{size - pos} stray bytes after the last range at {pos:#x}")
            break
        magic, version, start, last, _ = h.unpack_from(mapping, pos)
        if magic != LIME_MAGIC:
            raise ImageError(
                f"{name}: no LiME range header at file offset {pos:#x} (magic {magic:#010x}): "
                "the previous range's size does not match the file"
            )
        if version != LIME_VERSION:
            raise ImageError(f"{name}: LiME range header at {pos:#x} has version {version}")
        if last < start:
            raise ImageError(
                f"{name}: LiME range at file offset {pos:#x} ends ({last:#x}) before it starts "
                f"({start:#x})"
            )
        length = last - start + 1
        data = pos + HEADER_SIZE
        available = max(0, min(length, size - data))
        segments.append(
            Segment(start, length, data, length, available, name=f"LiME range {len(segments)}")
        )
        if available < length:
            facts.warnings.append(
                f"LiME range [{start:#x}, {last + 1:#x}) is cut off by the end of the file"
            )
            break
        pos = data + length
    facts.format = f"LiME image ({order}-endian, {len(segments)} ranges)"
    facts.header = {"ranges": len(segments)}
    return segments, facts


def write_lime(path: str | os.PathLike[str], segments: Iterable[tuple[int, Any]]) -> int:
    """Write a LiME image (little-endian, as LiME writes it) of ``(address, bytes)`` ranges."""
    h = _HEADER["little"]
    with open(path, "wb") as f:
        for start, data in sorted(segments, key=lambda s: s[0]):
            view = memoryview(data).cast("B")
            if not len(view):
                continue
            f.write(h.pack(LIME_MAGIC, LIME_VERSION, start, start + len(view) - 1, bytes(8)))
            f.write(view)
        return f.tell()
