"""makedumpfile's flattened format, read in place (no ``makedumpfile -R`` step).

``makedumpfile -F`` and QEMU's ``dump-guest-memory -z`` (QEMU 7.2 writes kdump only this way)
write a stream that can go through a pipe: a 4096-byte header (``makedumpfile_header``:
the signature ``makedumpfile`` in 16 bytes, then ``type`` = 1 and ``version`` = 1 as
big-endian 64-bit numbers), then records, each a big-endian ``(offset, buf_size)`` pair of
signed 64-bit numbers followed by ``buf_size`` bytes that belong at ``offset`` of the file
``makedumpfile -R`` would rebuild, and an end record with both set to -1. Records may come in
any order and a later one overwrites an earlier one where they overlap, as ``-R`` applies
them; bytes no record wrote read as zeros (``-R`` leaves holes in a sparse file).

:class:`FlatView` indexes the record headers once (16 bytes each, skipping the data) and
reads any range of the rebuilt file from the records that hold it. :class:`FlatWriter` writes
such a stream.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import struct
from typing import Any, BinaryIO

import numpy as np

from pfnmap.decode.images.base import ImageError, ViewEnd

FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096
TYPE_FLAT_HEADER = 1
VERSION_FLAT_HEADER = 1
END_FLAG = -1
_RECORD = struct.Struct(">qq")


def sniff_flat(head: bytes) -> bool:
    return head[:16] == FLAT_SIGNATURE + bytes(4)


class FlatView:
    """The file a flattened stream stands for, read through its records.

    ``warnings`` lists what was wrong but did not stop the reading (no end record, a record
    cut off by the end of the stream: its bytes stop there).
    """

    def __init__(self, mapping: Any, size: int, name: str) -> None:
        self.buffer = mapping
        self.name = name
        self.warnings: list[str] = []
        if size < FLAT_HEADER_SIZE:
            raise ImageError(
                f"{name}: a flattened dump (makedumpfile -F) cut off inside its "
                f"{FLAT_HEADER_SIZE}-byte header"
            )
        kind, version = struct.unpack_from(">qq", mapping, 16)
        if kind != TYPE_FLAT_HEADER or version != VERSION_FLAT_HEADER:
            raise ImageError(
                f"{name}: a flattened dump header of type {kind}, version {version}; this "
                f"reader knows type {TYPE_FLAT_HEADER}, version {VERSION_FLAT_HEADER}"
            )
        records = self._scan(mapping, size)
        self.records = len(records)
        self._pieces(records)

    def _scan(self, mapping: Any, size: int) -> list[tuple[int, int, int]]:
        """(offset in the rebuilt file, length, offset in the stream) of every record."""
        records = []
        pos = FLAT_HEADER_SIZE
        ended = False
        while pos + _RECORD.size <= size:
            offset, length = _RECORD.unpack_from(mapping, pos)
            if offset == END_FLAG and length == END_FLAG:
                ended = True
                break
            if offset < 0 or length < 0:
                raise ImageError(
                    f"{self.name}: flattened record at stream offset {pos:#x} says offset "
                    f"{offset}, size {length}: not a record (the stream is damaged)"
                )
            data = pos + _RECORD.size
            if data + length > size:
                self.warnings.append(
                    f"the record at stream offset {pos:#x} ({length} bytes for offset "
                    f"{offset:#x}) is cut off by the end of the stream"
                )
                length = size - data
                records.append((offset, length, data))
                pos = size
                break
            if length:
                records.append((offset, length, data))
            pos = data + length
        if not ended:
            self.warnings.append(
                "the flattened stream has no end record (cut off?)"
                if pos >= size - _RECORD.size
                else f"junk after the last record at stream offset {pos:#x}"
            )
        if not records:
            raise ImageError(f"{self.name}: the flattened dump holds no data records")
        return records

    def _pieces(self, records: list[tuple[int, int, int]]) -> None:
        """Non-overlapping (start, end, stream offset) pieces, the later record winning."""
        order = sorted(range(len(records)), key=lambda i: records[i][0])
        overlap = any(
            records[a][0] + records[a][1] > records[b][0] for a, b in itertools.pairwise(order)
        )
        if not overlap:
            pieces = [(records[i][0], records[i][0] + records[i][1], records[i][2]) for i in order]
        else:
            pieces = _resolve_overlaps(records)
        self._starts = np.array([p[0] for p in pieces], dtype=np.int64)
        self._ends = np.array([p[1] for p in pieces], dtype=np.int64)
        self._stream = np.array([p[2] for p in pieces], dtype=np.int64)
        self._start_list = self._starts.tolist()
        #: the size of the rebuilt file: up to the last byte any record wrote
        self.size = int(self._ends.max())

    def read(self, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes of the rebuilt file from ``offset`` (holes read as zeros),
        or ViewEnd when they run past its end."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ViewEnd(offset, size, self.size)
        out = bytearray()
        pos, end = offset, offset + size
        while pos < end:
            # the last piece that starts at or before pos
            i = bisect.bisect_right(self._start_list, pos) - 1
            if i >= 0 and pos < self._ends[i]:
                take = min(end, int(self._ends[i])) - pos
                src = int(self._stream[i]) + pos - int(self._starts[i])
                out += self.buffer[src : src + take]
            else:
                nxt = self._start_list[i + 1] if i + 1 < len(self._start_list) else end
                take = min(end, nxt) - pos
                out += bytes(take)  # a hole: -R would leave zeros there
            pos += take
        return bytes(out)

    def array(self, offset: int, size: int) -> np.ndarray:
        return np.frombuffer(self.read(offset, size), dtype=np.uint8)


def _resolve_overlaps(records: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Pieces where each byte comes from the last record that wrote it: a sweep over the
    record boundaries with a heap of the records covering the current point (latest first)."""
    bounds = sorted({r[0] for r in records} | {r[0] + r[1] for r in records})
    by_start = sorted(range(len(records)), key=lambda i: records[i][0])
    active: list[tuple[int, int]] = []  # (-record index, end)
    pieces: list[tuple[int, int, int]] = []
    k = 0
    for a, b in itertools.pairwise(bounds):
        while k < len(by_start) and records[by_start[k]][0] <= a:
            i = by_start[k]
            heapq.heappush(active, (-i, records[i][0] + records[i][1]))
            k += 1
        # a record that ended stays in the heap until it is on top; then it goes
        while active and active[0][1] <= a:
            heapq.heappop(active)
        if not active:
            continue
        i = -active[0][0]
        stream = records[i][2] + a - records[i][0]
        if pieces and pieces[-1][1] == a and pieces[-1][2] + (a - pieces[-1][0]) == stream:
            pieces[-1] = (pieces[-1][0], b, pieces[-1][2])
        else:
            pieces.append((a, b, stream))
    return pieces


class FlatWriter:
    """Write a flattened stream: :meth:`write_at` makes one record each, :meth:`close` the
    end record."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        header = FLAT_SIGNATURE.ljust(16, b"\0") + struct.pack(
            ">qq", TYPE_FLAT_HEADER, VERSION_FLAT_HEADER
        )
        f.write(header.ljust(FLAT_HEADER_SIZE, b"\0"))

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        if len(data):
            self.f.write(_RECORD.pack(offset, len(data)))
            self.f.write(data)

    def close(self) -> None:
        self.f.write(_RECORD.pack(END_FLAG, END_FLAG))


class PlainWriter:
    """The same interface over a seekable file (the rebuilt layout directly)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        self.f.seek(offset)
        self.f.write(data)

    def close(self) -> None:
        pass
