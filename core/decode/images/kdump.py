"""kdump-compressed dumps ("KDUMP   " / "DISKDUMP"), plain or flattened, read page by page.

What makedumpfile writes (its IMPLEMENTATION file and diskdump_mod.h; crash's diskdump.c and
QEMU's dump/dump.c read and write the same), in blocks of ``block_size`` bytes (the dumped
kernel's page size):

- block 0, ``disk_dump_header``: the signature, ``header_version``, the kernel's
  ``utsname``, a ``struct timeval`` (so the later fields sit at 412 on a 32-bit machine and
  at 424 on a 64-bit one), then ``status`` (the compression flag), ``block_size``,
  ``sub_hdr_size`` (blocks), ``bitmap_blocks``, ``max_mapnr`` (32 bits; the full value is in
  the sub header from version 6), ``total_ram_blocks``, ``device_blocks``,
  ``written_blocks``, ``current_cpu``, ``nr_cpus``;
- blocks 1 to ``sub_hdr_size``, ``kdump_sub_header`` (``unsigned long`` fields: the dumped
  machine's word size; ``off_t`` always 64 bits): ``phys_base``, ``dump_level`` (v1),
  ``split``/``start_pfn``/``end_pfn`` (v2), ``offset_vmcoreinfo``/``size_vmcoreinfo``
  (v3), ``offset_note``/``size_note`` (v4: the ELF notes, QEMU's CPU notes among them),
  ``offset_eraseinfo``/``size_eraseinfo`` (v5), ``start_pfn_64``/``end_pfn_64``/
  ``max_mapnr_64`` (v6). A "DISKDUMP" file (the older diskdump) has an arch-specific sub
  header instead, which is not read;
- ``bitmap_blocks`` of bitmaps, bit ``pfn % 8`` of byte ``pfn / 8``: when they hold two
  bitmaps (``bitmap_blocks`` at least twice what ``max_mapnr`` needs, crash's
  ``dump_is_partial``), the first says which pfns are RAM and the second which were dumped;
  otherwise the one bitmap says both;
- one 24-byte ``page_desc`` per dumped pfn, in pfn order: ``offset`` (64 bits), ``size``,
  ``flags`` (``DUMP_DH_COMPRESSED_ZLIB``/``LZO``/``SNAPPY``/``ZSTD``, or 0 for a page stored
  as it is), ``page_flags``;
- the page data (all-zero pages usually share one copy).

Every number is in the dumped machine's byte order. Opening reads the header, the sub
header, the notes and the bitmaps and checks they fit the file; nothing else. A page is read
when a walk asks for it: its descriptor is found by counting the dumped pfns before it (per
4096-pfn chunk, counted once), its data is decompressed on its own and kept in a small LRU.
RAM that was not dumped is :data:`~pfnmap.decode.images.base.NOT_DUMPED`, a damaged page
:data:`~pfnmap.decode.images.base.UNREADABLE`: a walk reports either per entry.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from pfnmap.decode.images import codecs
from pfnmap.decode.images.base import (
    NOT_DUMPED,
    OUTSIDE,
    TRUNCATED,
    UNREADABLE,
    DumpFacts,
    FileView,
    ImageError,
    OutsideImage,
    PhysImage,
    Segment,
    ViewEnd,
    map_file,
)
from pfnmap.decode.images.flat import FlatView, sniff_flat
from pfnmap.decode.images.notes import parse_notes, parse_vmcoreinfo

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
SIGNATURES = (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE)
UTSNAME_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
UTSNAME_OFFSET = 12
#: where ``status`` and the fields after it start, by the dumped machine's word size
HEADER_TAIL = {32: 412, 64: 424}
_TAIL_FIELDS = (
    "status", "block_size", "sub_hdr_size", "bitmap_blocks", "max_mapnr",
    "total_ram_blocks", "device_blocks", "written_blocks", "current_cpu", "nr_cpus",
)  # fmt: skip
#: kdump_sub_header: (name, struct code, first header version) by word size; "L" is the
#: machine's unsigned long, "q" an off_t
SUB_HEADER = (
    ("phys_base", "L", 0), ("dump_level", "i", 1), ("split", "i", 2),
    ("start_pfn", "L", 2), ("end_pfn", "L", 2),
    ("offset_vmcoreinfo", "q", 3), ("size_vmcoreinfo", "L", 3),
    ("offset_note", "q", 4), ("size_note", "L", 4),
    ("offset_eraseinfo", "q", 5), ("size_eraseinfo", "L", 5),
    ("start_pfn_64", "Q", 6), ("end_pfn_64", "Q", 6), ("max_mapnr_64", "Q", 6),
)  # fmt: skip
PAGE_DESC_SIZE = 24
#: bitmap bits counted per chunk for the descriptor index
RANK_CHUNK_BITS = 4096
#: decompressed pages kept
PAGE_CACHE = 64
#: more RAM runs than this and the image is one segment checked page by page
MAX_SEGMENTS = 4096
#: notes and VMCOREINFO larger than this are not read
MAX_NOTE_AREA = 64 << 20
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def sniff_kdump(head: bytes) -> str | None:
    if head[:8] in SIGNATURES:
        return f"kdump-compressed ({head[:8].decode().strip()} signature)"
    if sniff_flat(head):
        inner = _flat_first_bytes(head)
        if inner is not None and inner[:8] in SIGNATURES:
            return "kdump-compressed, flattened (makedumpfile -F / QEMU dump-guest-memory -z)"
        if inner is not None and inner[:4] == b"\x7fELF":
            return "flattened ELF (makedumpfile -F -E)"
        return "flattened dump (makedumpfile -F)"
    return None


def _flat_first_bytes(head: bytes) -> bytes | None:
    """The data of the first record, when it is in ``head`` and writes offset 0."""
    if len(head) < 4096 + 16 + 8:
        return None
    offset, size = struct.unpack_from(">qq", head, 4096)
    if offset != 0 or size < 8:
        return None
    return head[4096 + 16 : 4096 + 16 + min(size, 64)]


def open_kdump(path: str | os.PathLike[str]) -> PhysImage:
    """A kdump-compressed file, plain or flattened."""
    f, mapping, size = map_file(path)
    name = os.fspath(path)
    try:
        flattened = sniff_flat(mapping[:16])
        if flattened:
            view: Any = FlatView(mapping, size, name)
            first = view.read(0, min(8, view.size))
            if first[:4] == b"\x7fELF":
                raise ImageError(
                    f"{name}: a flattened ELF core (makedumpfile -F -E); rebuild it with "
                    "makedumpfile -R first, then decode the ELF file"
                )
            if first not in SIGNATURES:
                raise ImageError(
                    f"{name}: a flattened dump (makedumpfile -F) whose first bytes are not a "
                    "kdump header"
                )
        else:
            view = FileView(mapping, size)
        dump = KdumpFile(view, name, flattened)
        return dump.image(owner=f, buffer_owner=mapping)
    except ImageError:
        _Owner(f, mapping).close()
        raise


class KdumpFile:
    """The parsed headers, bitmaps and page reader of one kdump-compressed file."""

    def __init__(self, view: Any, name: str, flattened: bool) -> None:
        self.view = view
        self.name = name
        self.flattened = flattened
        self.warnings: list[str] = list(getattr(view, "warnings", []))
        head = self._read(0, 512, "the disk_dump_header")
        self.signature = head[:8]
        if self.signature not in SIGNATURES:
            raise ImageError(f"{name}: no KDUMP or DISKDUMP signature")
        self.byteorder = self._byteorder(head)
        e = "<" if self.byteorder == "little" else ">"
        self.e = e
        self.header_version = struct.unpack_from(f"{e}i", head, 8)[0]
        self.utsname = {
            f: head[UTSNAME_OFFSET + 65 * i : UTSNAME_OFFSET + 65 * (i + 1)]
            .split(b"\0")[0]
            .decode("ascii", "replace")
            for i, f in enumerate(UTSNAME_FIELDS)
        }
        self.word_bits, tail = self._word_size(head)
        self.header = dict(zip(_TAIL_FIELDS, tail, strict=True))
        self.block_size = self.header["block_size"]
        self.status = self.header["status"]
        self.sub = self._sub_header() if self.signature == KDUMP_SIGNATURE else {}
        self.max_mapnr = self.header["max_mapnr"]
        if self.sub.get("max_mapnr_64"):
            self.max_mapnr = self.sub["max_mapnr_64"]
        if self.max_mapnr <= 0:
            raise ImageError(f"{name}: max_mapnr is 0: the dump holds no pages")
        self._bitmaps()
        self._index()
        self.desc_offset = (1 + self.header["sub_hdr_size"] + self.header["bitmap_blocks"]) * (
            self.block_size
        )
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._decompressors: dict[str, Callable[[bytes, int], bytes]] = {}

    # header -----------------------------------------------------------------------------------
    def _read(self, offset: int, size: int, what: str) -> bytes:
        try:
            return self.view.read(offset, size)
        except ViewEnd:
            raise ImageError(
                f"{self.name}: the file ends at {self.view.size:#x}, inside {what} "
                f"([{offset:#x}, {offset + size:#x}))"
            ) from None

    def _byteorder(self, head: bytes) -> str:
        little = struct.unpack_from("<i", head, 8)[0]
        big = struct.unpack_from(">i", head, 8)[0]
        if 0 <= little < 64:
            return "little"
        if 0 <= big < 64:
            return "big"
        raise ImageError(
            f"{self.name}: header_version is {little} (little-endian) or {big} (big-endian): "
            "not a kdump header"
        )

    def _word_size(self, head: bytes) -> tuple[int, tuple[int, ...]]:
        """32 or 64 and the header fields from ``status`` on: the layout whose block size,
        sub header and bitmaps make sense (``utsname.machine`` decides a tie)."""
        fits: dict[int, tuple[int, ...]] = {}
        for bits, at in HEADER_TAIL.items():
            tail = struct.unpack_from(f"{self.e}IiiIIIIIIi", head, at)
            block, sub, bitmap = tail[1], tail[2], tail[3]
            if (
                512 <= block <= 1 << 20
                and block & (block - 1) == 0
                and sub >= 0
                and bitmap > 0
                and (1 + sub + bitmap) * block <= self.view.size
            ):
                fits[bits] = tail
        if not fits:
            tail = struct.unpack_from(f"{self.e}IiiIIIIIIi", head, HEADER_TAIL[64])
            raise ImageError(
                f"{self.name}: the kdump header's block size, sub header and bitmap sizes do "
                f"not fit the file in either word size (block_size {tail[1]}, bitmap_blocks "
                f"{tail[3]}, file {self.view.size:#x} bytes): damaged or truncated"
            )
        if len(fits) == 2:
            machine = self.utsname["machine"]
            bits = 64 if "64" in machine or machine == "s390x" else 32
            return bits, fits[bits]
        (bits,) = fits
        return bits, fits[bits]

    def _sub_header(self) -> dict[str, int]:
        long_code = "Q" if self.word_bits == 64 else "I"
        fields = [(n, c.replace("L", long_code), v) for n, c, v in SUB_HEADER]
        fmt = self.e + "".join(c for _, c, _ in fields)
        # packed: QEMU's KdumpSubHeader32 and i386's 4-byte alignment of off_t agree; on a
        # 64-bit machine every field after dump_level/split is 8-aligned anyway
        size = struct.calcsize(fmt)
        raw = self._read(self.block_size, size, "the kdump sub header")
        values = struct.unpack(fmt, raw)
        version = self.header_version
        sub = {n: v for (n, _, ver), v in zip(fields, values, strict=True) if ver <= version}
        if self.header["sub_hdr_size"] * self.block_size < size and self.header_version >= 1:
            self.warnings.append(
                f"sub_hdr_size is {self.header['sub_hdr_size']} blocks, less than the "
                f"{size}-byte kdump_sub_header"
            )
        return sub

    def notes_and_vmcoreinfo(self) -> tuple[list[Any], dict[str, str]]:
        notes: list[Any] = []
        info: dict[str, str] = {}
        for what, off_key, size_key in (
            ("notes", "offset_note", "size_note"),
            ("VMCOREINFO", "offset_vmcoreinfo", "size_vmcoreinfo"),
        ):
            off, size = self.sub.get(off_key, 0), self.sub.get(size_key, 0)
            if not size:
                continue
            if off <= 0 or size > MAX_NOTE_AREA or off + size > self.view.size:
                self.warnings.append(
                    f"the {what} ({size} bytes at {off:#x}) lie outside the file; not read"
                )
                continue
            blob = self.view.read(off, size)
            if what == "notes":
                notes, problem = parse_notes(blob, self.byteorder, off)
                if problem:
                    self.warnings.append(problem)
            else:
                info = parse_vmcoreinfo(blob)
        return notes, info

    # bitmaps ----------------------------------------------------------------------------------
    def _bitmaps(self) -> None:
        block = self.block_size
        start = (1 + self.header["sub_hdr_size"]) * block
        total = self.header["bitmap_blocks"] * block
        need = -(-self.max_mapnr // 8)
        need_blocks = -(-need // block)
        self.partial = self.header["bitmap_blocks"] >= 2 * need_blocks
        one = total // 2 if self.partial else total
        if one < need:
            raise ImageError(
                f"{self.name}: the bitmap holds {one * 8} pfns ({self.header['bitmap_blocks']} "
                f"blocks), fewer than max_mapnr {self.max_mapnr}"
            )
        valid = self._bitmap(start, need)
        dumped = self._bitmap(start + one, need) if self.partial else valid
        # bits beyond max_mapnr in the last byte do not count
        extra = need * 8 - self.max_mapnr
        if extra:
            keep = np.uint8(0xFF >> extra)
            valid, dumped = valid.copy(), dumped.copy()
            valid[-1] &= keep
            dumped[-1] &= keep
        self.valid, self.dumped = valid, dumped

    def _bitmap(self, offset: int, size: int) -> np.ndarray:
        try:
            return self.view.array(offset, size)
        except ViewEnd:
            raise ImageError(
                f"{self.name}: the bitmap at {offset:#x} ({size} bytes) is cut off by the end "
                "of the file"
            ) from None

    def _index(self) -> None:
        """Dumped pfns before each chunk of RANK_CHUNK_BITS pfns (the descriptor index)."""
        chunk = RANK_CHUNK_BITS // 8
        counts = _POPCOUNT[self.dumped]
        pad = -len(counts) % chunk
        per_chunk = np.concatenate([counts, np.zeros(pad, np.uint8)]).reshape(-1, chunk)
        sums = per_chunk.sum(axis=1, dtype=np.int64)
        self._before = np.concatenate([[0], np.cumsum(sums)]).astype(np.int64)
        self.dumped_pages = int(self._before[-1])
        self.ram_pages = int(_POPCOUNT[self.valid].sum(dtype=np.int64))

    def is_valid(self, pfn: int) -> bool:
        return 0 <= pfn < self.max_mapnr and bool(self.valid[pfn >> 3] >> (pfn & 7) & 1)

    def is_dumped(self, pfn: int) -> bool:
        if not (0 <= pfn < self.max_mapnr and self.dumped[pfn >> 3] >> (pfn & 7) & 1):
            return False
        if self.sub.get("split"):
            lo = self.sub.get("start_pfn_64") or self.sub.get("start_pfn", 0)
            hi = self.sub.get("end_pfn_64") or self.sub.get("end_pfn", self.max_mapnr)
            return lo <= pfn < hi
        return True

    def rank(self, pfn: int) -> int:
        """How many dumped pfns come before ``pfn``: the index of its descriptor."""
        c = pfn // RANK_CHUNK_BITS
        first = c * (RANK_CHUNK_BITS // 8)
        byte = pfn >> 3
        n = int(self._before[c]) + int(_POPCOUNT[self.dumped[first:byte]].sum(dtype=np.int64))
        return n + int(_POPCOUNT[self.dumped[byte] & ((1 << (pfn & 7)) - 1)])

    def runs(self, bitmap: np.ndarray, limit: int) -> list[tuple[int, int]] | None:
        """Runs of set bits as (first pfn, end pfn), or None when there are more than
        ``limit``; worked through in chunks so memory stays that of one chunk."""
        out: list[tuple[int, int]] = []
        step = 1 << 20
        prev = 0
        open_start = 0
        for lo in range(0, len(bitmap), step):
            bits = np.unpackbits(bitmap[lo : lo + step], bitorder="little").astype(np.int8)
            edges = np.diff(bits, prepend=np.int8(prev))
            rises = (np.flatnonzero(edges == 1) + lo * 8).tolist()
            falls = (np.flatnonzero(edges == -1) + lo * 8).tolist()
            if prev and falls:
                out.append((open_start, falls.pop(0)))
            elif prev:
                continue  # the open run goes on through this chunk
            # from here rises and falls alternate, a rise first
            out.extend(zip(rises, falls, strict=False))
            if len(rises) > len(falls):
                open_start = rises[len(falls)]
            prev = int(bits[-1])
            if len(out) > limit:
                return None
        if prev:
            out.append((open_start, min(len(bitmap) * 8, self.max_mapnr)))
        return out if len(out) <= limit else None

    # pages ------------------------------------------------------------------------------------
    def page(self, pfn: int) -> bytes:
        """The ``block_size`` bytes of ``pfn`` (OutsideImage when they cannot be had)."""
        cached = self._cache.get(pfn)
        if cached is not None:
            self._cache.move_to_end(pfn)
            return cached
        paddr = pfn * self.block_size
        if not self.is_valid(pfn):
            raise OutsideImage(OUTSIDE, paddr, self.block_size, f"pfn {pfn:#x} is not RAM here")
        if not self.is_dumped(pfn):
            raise OutsideImage(
                NOT_DUMPED,
                paddr,
                self.block_size,
                f"page {paddr:#x} is RAM the dump left out (dump level "
                f"{self.sub.get('dump_level', '?')})",
            )
        data = self._page_data(pfn, paddr)
        self._cache[pfn] = data
        if len(self._cache) > PAGE_CACHE:
            self._cache.popitem(last=False)
        return data

    def _page_data(self, pfn: int, paddr: int) -> bytes:
        bs = self.block_size
        at = self.desc_offset + self.rank(pfn) * PAGE_DESC_SIZE
        try:
            desc = self.view.read(at, PAGE_DESC_SIZE)
        except ViewEnd:
            raise OutsideImage(
                TRUNCATED,
                paddr,
                bs,
                f"page {paddr:#x}: its descriptor at {at:#x} is cut off by the end of the file",
            ) from None
        offset, size, flags, _page_flags = struct.unpack(f"{self.e}qIIQ", desc)

        def bad(why: str) -> OutsideImage:
            return OutsideImage(UNREADABLE, paddr, bs, f"page {paddr:#x}: {why}")

        if offset == 0 and self.status & codecs.DUMP_DH_COMPRESSED_INCOMPLETE:
            raise OutsideImage(
                NOT_DUMPED, paddr, bs, f"page {paddr:#x} was never written (incomplete dump)"
            )
        if offset <= 0 or size == 0 or size > bs:
            raise bad(f"descriptor at {at:#x} says {size} bytes at {offset:#x} (block {bs})")
        try:
            raw = self.view.read(offset, size)
        except ViewEnd:
            raise OutsideImage(
                TRUNCATED,
                paddr,
                bs,
                f"page {paddr:#x}: its {size} bytes at {offset:#x} run past the end of the file",
            ) from None
        compressed = flags & codecs.ANY_COMPRESSED
        if not compressed:
            if size != bs:
                raise bad(f"stored uncompressed in {size} bytes, not one {bs}-byte block")
            return raw
        codec = codecs.FLAG_CODECS.get(compressed)
        if codec is None:
            raise bad(f"descriptor flags {flags:#x} name more than one compression")
        dec = self._decompressors.get(codec)
        if dec is None:
            dec = self._decompressors[codec] = codecs.decompressor(codec)
        try:
            page = dec(raw, bs)
        except codecs.PageCorrupt as exc:
            raise bad(f"does not decompress ({exc})") from None
        if len(page) != bs:
            raise bad(f"decompresses to {len(page)} bytes, not one {bs}-byte block")
        return page

    def read(self, paddr: int, size: int) -> bytes:
        bs = self.block_size
        out = bytearray()
        pos, end = paddr, paddr + size
        while pos < end:
            pfn, off = divmod(pos, bs)
            take = min(end - pos, bs - off)
            try:
                out += self.page(pfn)[off : off + take]
            except OutsideImage as exc:
                raise OutsideImage(exc.kind, paddr, size, str(exc)) from None
            pos += take
        return bytes(out)

    def check_descriptors(self) -> dict[str, int]:
        """Every page descriptor at once (numpy, 24 bytes each): how many there are, how many
        the file cuts off, point past its end, give a size above the block or of 0, or store
        data that overlaps another page's without being the same copy (all-zero pages share
        one). For ``pfnmap info``; decoding checks each page it reads on its own."""
        n = self.dumped_pages
        dt = np.dtype([("offset", self.e + "i8"), ("size", self.e + "u4"),
                       ("flags", self.e + "u4"), ("page_flags", self.e + "u8")])  # fmt: skip
        have = max(0, min(n, (self.view.size - self.desc_offset) // PAGE_DESC_SIZE))
        if have == 0:
            return {"descriptors": n, "cut_off": n, "past_end": 0, "bad_size": 0, "overlapping": 0}
        raw = self.view.read(self.desc_offset, have * PAGE_DESC_SIZE)
        d = np.frombuffer(raw, dtype=dt)
        off = d["offset"].astype(np.int64)
        size = d["size"].astype(np.int64)
        bad_size = (size == 0) | (size > self.block_size)
        past = ~bad_size & ((off <= 0) | (off + size > self.view.size))
        ok = ~(bad_size | past)
        starts, ends = off[ok], off[ok] + size[ok]
        order = np.lexsort((ends, starts))
        starts, ends = starts[order], ends[order]
        distinct = np.ones(len(starts), dtype=bool)
        distinct[1:] = (starts[1:] != starts[:-1]) | (ends[1:] != ends[:-1])
        starts, ends = starts[distinct], ends[distinct]
        reach = np.maximum.accumulate(ends)[:-1] if len(starts) else ends
        overlapping = int((starts[1:] < reach).sum()) if len(starts) else 0
        return {
            "descriptors": n,
            "cut_off": n - have,
            "past_end": int(past.sum()),
            "bad_size": int(bad_size.sum()),
            "overlapping": overlapping,
        }

    # the image ----------------------------------------------------------------------------------
    def describe(self) -> str:
        comp = codecs.FLAG_CODECS.get(self.status & codecs.ANY_COMPRESSED, "")
        parts = [
            "kdump-compressed" if self.signature == KDUMP_SIGNATURE else "diskdump",
            "flattened" if self.flattened else "",
            comp,
            f"header version {self.header_version}",
            f"{self.word_bits}-bit {self.byteorder}-endian",
        ]
        return ", ".join(p for p in parts if p)

    def image(self, owner: Any, buffer_owner: Any) -> PhysImage:
        bs = self.block_size
        runs = self.runs(self.valid, MAX_SEGMENTS)
        reader = self.read
        if runs is None:
            # too fragmented to list: one segment, each page checked against the bitmap
            first = int(np.flatnonzero(self.valid)[0]) * 8
            runs = [(first, self.max_mapnr)]
        segments = [
            Segment(a * bs, (b - a) * bs, reader=reader, name="RAM") for a, b in runs if b > a
        ]
        if not segments:
            raise ImageError(f"{self.name}: the bitmap marks no page as RAM")
        notes, info = self.notes_and_vmcoreinfo()
        dumped_runs = self.runs(self.dumped, 1 << 16) if self.partial else runs
        not_dumped: list[tuple[int, int]] = []
        if self.partial and dumped_runs is not None:
            not_dumped = _subtract(runs, dumped_runs)
        facts = DumpFacts(
            format=self.describe(),
            byteorder=self.byteorder,
            word_bits=self.word_bits,
            uname_machine=self.utsname["machine"],
            notes=notes,
            vmcoreinfo=info,
            phys_base=self.sub.get("phys_base"),
            not_dumped=[(a * bs, b * bs) for a, b in not_dumped],
            warnings=self.warnings,
        )
        facts.header = {
            "signature": self.signature.decode(),
            "header_version": self.header_version,
            "utsname": self.utsname,
            **self.header,
            "max_mapnr": self.max_mapnr,
            "flattened": self.flattened,
            "two_bitmaps": self.partial,
            "ram_pages": self.ram_pages,
            "dumped_pages": self.dumped_pages,
            **{k: v for k, v in self.sub.items()},
        }
        image = PhysImage(segments, None, self.name, "kdump", owner=_Owner(owner, buffer_owner),
                          facts=facts)  # fmt: skip
        image.kdump = self  # type: ignore[attr-defined]
        return image


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of runs ``a`` that no run of ``b`` covers (both sorted, disjoint)."""
    out = []
    j = 0
    for s, e in a:
        pos = s
        while j < len(b) and b[j][1] <= pos:
            j += 1
        k = j
        while pos < e:
            if k < len(b) and b[k][0] < e:
                if b[k][0] > pos:
                    out.append((pos, b[k][0]))
                pos = max(pos, b[k][1])
                k += 1
            else:
                out.append((pos, e))
                break
    return out


class _Owner:
    """Closes the mapping and the file when the image is closed."""

    def __init__(self, f: Any, mapping: Any) -> None:
        self.f, self.mapping = f, mapping

    def close(self) -> None:
        # a numpy view of a bitmap may still be alive: then the GC closes the mapping
        with contextlib.suppress(BufferError):
            self.mapping.close()
        self.f.close()
