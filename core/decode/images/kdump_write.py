"""Write kdump-compressed files, plain or flattened, as makedumpfile and QEMU lay them out.

:func:`write_kdump` takes physical memory as ``(address, bytes-like)`` segments and writes
``disk_dump_header`` (header version 6 by default), ``kdump_sub_header`` in the arch's word
size and byte order with VMCOREINFO and the ELF notes behind it, two bitmaps (RAM, dumped),
one ``page_desc`` per dumped page and the pages, each compressed on its own (stored as it is
when that does not make it smaller, and all-zero pages sharing one stored copy, as QEMU's
dump.c does; makedumpfile's dump level 1 does the same, it writes every zero page's descriptor
pointing at one shared copy). ``exclude`` leaves pages out of the dumped bitmap, as
makedumpfile's higher dump levels leave out cache, user and free pages, and ``drop_zero``
leaves out the all-zero ones that way: those read back as "not dumped". ``dump_level`` is
only recorded in the sub header. With ``flattened``
the output is the makedumpfile ``-F`` stream (see :mod:`pfnmap.decode.images.flat`).
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.decode.images import codecs
from pfnmap.decode.images.flat import FlatWriter, PlainWriter
from pfnmap.decode.images.kdump import (
    HEADER_TAIL,
    KDUMP_SIGNATURE,
    PAGE_DESC_SIZE,
    SUB_HEADER,
    UTSNAME_FIELDS,
    UTSNAME_OFFSET,
)

if TYPE_CHECKING:
    from pfnmap.arch import Arch

COMPRESSIONS = ("zlib", "lzo", "snappy", "zstd", "none")


def write_kdump(
    path: str | os.PathLike[str],
    segments: Iterable[tuple[int, Any]],
    arch: str | Arch = DEFAULT_ARCH,
    *,
    compression: str = "zlib",
    flattened: bool = False,
    notes: bytes = b"",
    vmcoreinfo: bytes = b"",
    drop_zero: bool = False,
    exclude: Callable[[int], bool] | None = None,
    dump_level: int = 0,
    header_version: int = 6,
    release: str = "2.6.15-pfnmap",
    phys_base: int = 0,
) -> int:
    """Write a kdump-compressed file; returns its size. ``notes`` is the ELF note area (see
    :func:`pfnmap.decode.images.notes.elf_note`), ``vmcoreinfo`` its ``KEY=value`` text.
    Segments must be page-aligned and must not overlap (ValueError)."""
    if isinstance(arch, str):
        from pfnmap.plugins.manager import get_arch

        arch = get_arch(arch)
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r} ({', '.join(COMPRESSIONS)})")
    if not 1 <= header_version <= 6:
        raise ValueError(f"header version {header_version} (1 to 6)")
    bs = arch.page_size
    e = "<" if arch.byteorder == "little" else ">"
    word_bits = 64 if arch.elf_class == 2 else 32
    segs = sorted(((int(p), memoryview(d).cast("B")) for p, d in segments), key=lambda s: s[0])
    for (pa, da), (pb, _) in itertools.pairwise(segs):
        if pb < pa + len(da):
            raise ValueError(f"segments at {pa:#x} and {pb:#x} overlap")
    for p, d in segs:
        if p % bs or len(d) % bs:
            raise ValueError(f"segment at {p:#x} ({len(d):#x} bytes) is not {bs}-byte aligned")
    max_mapnr = max((p + len(d)) // bs for p, d in segs) if segs else 0
    nbytes = -(-max_mapnr // 8)
    valid = np.zeros(nbytes, dtype=np.uint8)
    dumped = np.zeros(nbytes, dtype=np.uint8)
    zero = bytes(bs)
    pages: list[tuple[int, memoryview]] = []
    for p, d in segs:
        for i in range(0, len(d), bs):
            pfn = (p + i) // bs
            page = d[i : i + bs]
            valid[pfn >> 3] |= 1 << (pfn & 7)
            if (drop_zero and page == zero) or (exclude is not None and exclude(pfn)):
                continue
            dumped[pfn >> 3] |= 1 << (pfn & 7)
            pages.append((pfn, page))
    compress = codecs.compressor(compression) if compression != "none" else None
    flag = codecs.CODEC_FLAGS.get(compression, 0)

    sub = _sub_header(e, word_bits, header_version)
    sub_fields: dict[str, int] = {"phys_base": phys_base, "dump_level": dump_level}
    sub_fields.update(start_pfn=0, end_pfn=min(max_mapnr, (1 << word_bits) - 1))
    sub_fields.update(start_pfn_64=0, end_pfn_64=max_mapnr, max_mapnr_64=max_mapnr)
    extra = bytearray()
    if header_version >= 3 and vmcoreinfo:
        sub_fields["offset_vmcoreinfo"] = bs + sub.size + len(extra)
        sub_fields["size_vmcoreinfo"] = len(vmcoreinfo)
        extra += vmcoreinfo
    if header_version >= 4 and notes:
        sub_fields["offset_note"] = bs + sub.size + len(extra)
        sub_fields["size_note"] = len(notes)
        extra += notes
    sub_blocks = -(-(sub.size + len(extra)) // bs)
    bitmap_blocks = 2 * -(-nbytes // bs)
    desc_off = (1 + sub_blocks + bitmap_blocks) * bs
    data_off = desc_off + len(pages) * PAGE_DESC_SIZE

    header = bytearray(bs)
    header[:8] = KDUMP_SIGNATURE
    struct.pack_into(f"{e}i", header, 8, header_version)
    uts = {
        "sysname": "Linux", "nodename": "pfnmap", "release": release,
        "version": "#1 pfnmap dump", "machine": arch.uname_machine, "domainname": "(none)",
    }  # fmt: skip
    for i, name in enumerate(UTSNAME_FIELDS):
        raw = uts[name].encode()[:64]
        header[UTSNAME_OFFSET + 65 * i : UTSNAME_OFFSET + 65 * i + len(raw)] = raw
    struct.pack_into(
        f"{e}IiiIIIIIIi",
        header,
        HEADER_TAIL[word_bits],
        flag,
        bs,
        sub_blocks,
        bitmap_blocks,
        min(max_mapnr, 0xFFFFFFFF),
        0,
        0,
        0,
        0,
        1,
    )
    sub_raw = sub.pack(*(sub_fields.get(n, 0) for n, _, v in SUB_HEADER if v <= 6))
    half = bitmap_blocks // 2 * bs

    with open(path, "wb") as f:
        out: Any = FlatWriter(f) if flattened else PlainWriter(f)
        out.write_at(0, bytes(header))
        out.write_at(bs, sub_raw + bytes(extra))
        base = (1 + sub_blocks) * bs
        out.write_at(base, valid.tobytes().ljust(half, b"\0"))
        out.write_at(base + half, dumped.tobytes().ljust(half, b"\0"))
        # descriptors and data go out a chunk at a time, each chunk's descriptors first, as
        # makedumpfile and QEMU flush them (a stream cut short keeps whole descriptors)
        descs = bytearray()
        desc_at = desc_off
        pos = data_off
        zero_desc = None
        chunk = bytearray()
        chunk_at = pos
        for _pfn, page in pages:
            if page == zero:
                if zero_desc is None:
                    zero_desc = struct.pack(f"{e}qIIQ", pos, bs, 0, 0)
                    chunk += zero
                    pos += bs
                descs += zero_desc
                continue
            data = compress(bytes(page)) if compress is not None else b""
            if compress is not None and len(data) < bs:
                descs += struct.pack(f"{e}qIIQ", pos, len(data), flag, 0)
            else:
                data = bytes(page)
                descs += struct.pack(f"{e}qIIQ", pos, bs, 0, 0)
            chunk += data
            pos += len(data)
            if len(chunk) >= 1 << 20:
                out.write_at(desc_at, bytes(descs))
                out.write_at(chunk_at, bytes(chunk))
                desc_at += len(descs)
                chunk_at, chunk, descs = pos, bytearray(), bytearray()
        out.write_at(desc_at, bytes(descs))
        out.write_at(chunk_at, bytes(chunk))
        if not flattened and pos > f.tell():
            f.truncate(pos)
        out.close()
        f.seek(0, os.SEEK_END)
        return f.tell()


def _sub_header(e: str, word_bits: int, version: int) -> struct.Struct:
    """kdump_sub_header up to the last field of ``version`` (all of it from version 6), packed
    as QEMU writes it (which is also the i386 and x86-64 C layout)."""
    long_code = "Q" if word_bits == 64 else "I"
    del version  # the whole struct is written; a field a version lacks stays 0
    return struct.Struct(e + "".join(c.replace("L", long_code) for _, c, _ in SUB_HEADER))


def refilter_kdump(
    source: str | os.PathLike[str],
    path: str | os.PathLike[str],
    keep: Callable[[int], bool],
    *,
    flattened: bool = True,
) -> int:
    """Copy the kdump-compressed file ``source`` (plain or flattened) to ``path`` keeping only
    the dumped pages whose pfn ``keep`` accepts, as makedumpfile does when it filters a dump
    again at a higher dump level: the header and sub header blocks (notes and VMCOREINFO
    included) are copied byte for byte, the RAM bitmap stays, the dumped bitmap loses the
    other pages, and each kept page keeps its descriptor and its stored (compressed) bytes.
    Returns the new file's size."""
    from pfnmap.decode.images.kdump import open_kdump

    with open_kdump(source) as img:
        src = img.kdump  # type: ignore[attr-defined]
        bs = src.block_size
        e = src.e
        view = src.view
        head = view.read(0, (1 + src.header["sub_hdr_size"]) * bs)
        if not src.partial:
            raise ValueError(f"{source}: one bitmap only; nothing to filter against")
        bitmap_bytes = src.header["bitmap_blocks"] * bs // 2
        start = (1 + src.header["sub_hdr_size"]) * bs
        valid = view.read(start, bitmap_bytes)
        kept = [
            pfn
            for a, b in (src.runs(src.dumped, 1 << 30) or [])
            for pfn in range(a, b)
            if keep(pfn)
        ]
        dumped = np.zeros(bitmap_bytes, dtype=np.uint8)
        for pfn in kept:
            dumped[pfn >> 3] |= 1 << (pfn & 7)
        desc_off = start + 2 * bitmap_bytes
        pos = desc_off + len(kept) * PAGE_DESC_SIZE
        descs = bytearray()
        data = bytearray()
        for pfn in kept:
            at = src.desc_offset + src.rank(pfn) * PAGE_DESC_SIZE
            offset, size, flags, page_flags = struct.unpack(f"{e}qIIQ", view.read(at, 24))
            descs += struct.pack(f"{e}qIIQ", pos + len(data), size, flags, page_flags)
            data += view.read(offset, size)
    with open(path, "wb") as f:
        out: Any = FlatWriter(f) if flattened else PlainWriter(f)
        out.write_at(0, head)
        out.write_at(start, valid)
        out.write_at(start + bitmap_bytes, dumped.tobytes())
        out.write_at(desc_off, bytes(descs))
        out.write_at(pos, bytes(data))
        out.close()
        f.seek(0, os.SEEK_END)
        return f.tell()
