"""What every image format shares: :class:`PhysImage` (physical memory as segments), the two
errors, read-only file mapping, and :class:`DumpFacts` (what a dump says about the machine).

A format module (raw, ELF, kdump, LiME, or a plugin's) turns a file into a :class:`PhysImage`:
a sorted list of :class:`Segment` runs of physical addresses, each backed by bytes of one
read-only buffer (an ``mmap`` of the file) or by a ``reader`` (pages that must be
decompressed, device memory). Problems with a single read are :class:`OutsideImage` (the
walker turns them into a problem record and goes on); problems that stop an image from being
opened at all are :class:`ImageError`, one clear line each.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pfnmap.errors import PfnmapError

#: the kinds of :class:`OutsideImage`
OUTSIDE = "outside"
TRUNCATED = "truncated"
NOT_DUMPED = "not-dumped"
UNREADABLE = "unreadable"


@dataclass
class DumpFacts:
    """What an image says about the machine it was taken from, beyond its memory.

    ``format`` names what was found ("kdump-compressed, flattened, zlib"); ``byteorder`` and
    ``word_bits`` are the dumped machine's where the format records them; ``elf_machine`` is
    an ELF core's e_machine and ``uname_machine`` a kdump header's ``utsname.machine``;
    ``notes`` are the ELF notes (:class:`pfnmap.decode.images.notes.Note`) the dump carries,
    ``vmcoreinfo`` the kernel's VMCOREINFO keys; ``header`` holds format-specific fields for
    ``pfnmap info``; ``not_dumped`` the physical ranges that are RAM but were left out;
    ``warnings`` the problems found while opening that did not stop it (a damaged note).
    """

    format: str = ""
    byteorder: str | None = None
    word_bits: int | None = None
    elf_machine: int | None = None
    uname_machine: str = ""
    notes: list[Any] = field(default_factory=list)
    vmcoreinfo: dict[str, str] = field(default_factory=dict)
    phys_base: int | None = None
    header: dict[str, Any] = field(default_factory=dict)
    not_dumped: list[tuple[int, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class ImageError(PfnmapError):
    """An image that cannot be opened or used at all (missing, empty, not a core...)."""


class OutsideImage(PfnmapError):
    """A read that the image cannot satisfy. ``kind`` is ``"outside"`` (no segment holds the
    address), ``"truncated"`` (a segment declares the bytes but the file ends first),
    ``"not-dumped"`` (RAM the dump knows of but left out, e.g. pages makedumpfile's dump level
    excluded: never read as zeros) or ``"unreadable"`` (the stored bytes are damaged: a page
    that does not decompress, a descriptor pointing past the end of the file)."""

    def __init__(self, kind: str, paddr: int, size: int, detail: str) -> None:
        self.kind = kind
        self.paddr = paddr
        self.size = size
        super().__init__(detail)


@dataclass(frozen=True)
class Segment:
    """A run of physical addresses ``[start, start + size)`` and where its bytes are.

    ``filesz`` bytes from ``offset`` in the buffer (the rest of ``size`` reads as zeros), of
    which only ``available`` are really there (less when the file is truncated). A segment with
    a ``reader`` has no buffer: its bytes come from calling it (device memory of a machine).
    """

    start: int
    size: int
    offset: int = 0
    filesz: int = -1
    available: int = -1
    reader: Callable[[int, int], bytes] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.filesz < 0:
            object.__setattr__(self, "filesz", self.size)
        if self.available < 0:
            object.__setattr__(self, "available", self.filesz)

    @property
    def end(self) -> int:
        return self.start + self.size


class PhysImage:
    """Physical memory as a set of non-overlapping segments over one read-only buffer."""

    def __init__(
        self,
        segments: Sequence[Segment],
        buffer: Any,
        name: str,
        kind: str,
        *,
        elf_machine: int | None = None,
        elf_byteorder: str | None = None,
        owner: Any = None,
        facts: DumpFacts | None = None,
    ) -> None:
        segs = sorted((s for s in segments if s.size > 0), key=lambda s: s.start)
        for a, b in itertools.pairwise(segs):
            if b.start < a.end:
                raise ImageError(
                    f"{name}: segments [{a.start:#x}, {a.end:#x}) and [{b.start:#x}, {b.end:#x}) "
                    "overlap"
                )
        if not segs:
            raise ImageError(f"{name}: the image holds no memory")
        self.segments: tuple[Segment, ...] = tuple(segs)
        self._starts = [s.start for s in segs]
        self._buffer = buffer
        self._owner = owner
        #: arrays derived from the segments and views of the buffer (see :meth:`tables`)
        self._cache: dict[Any, Any] = {}
        self.name = name
        self.kind = kind
        self.elf_machine = elf_machine
        self.elf_byteorder = elf_byteorder
        #: what the dump says about the machine (notes, VMCOREINFO, header fields)
        self.facts = facts if facts is not None else DumpFacts(format=kind)
        if self.facts.elf_machine is None:
            self.facts.elf_machine = elf_machine
        if self.facts.byteorder is None:
            self.facts.byteorder = elf_byteorder

    # facts ------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bytes of physical address space the image covers."""
        return sum(s.size for s in self.segments)

    def ranges(self) -> list[tuple[int, int]]:
        """The covered physical ranges ``(start, end)``, adjacent segments merged."""
        out: list[tuple[int, int]] = []
        for s in self.segments:
            if out and out[-1][1] == s.start:
                out[-1] = (out[-1][0], s.end)
            else:
                out.append((s.start, s.end))
        return out

    def describe_ranges(self, limit: int = 4) -> str:
        parts = [f"{a:#x}-{b:#x}" for a, b in self.ranges()]
        if len(parts) > limit:
            parts = [*parts[:limit], f"... ({len(parts) - limit} more)"]
        return ", ".join(parts)

    def contains(self, paddr: int, size: int = 1) -> bool:
        try:
            self._locate(paddr, size)
        except OutsideImage:
            return False
        return True

    # reads --------------------------------------------------------------------------------------
    def _segment_at(self, paddr: int) -> Segment | None:
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i < 0:
            return None
        seg = self.segments[i]
        return seg if paddr < seg.end else None

    def _locate(self, paddr: int, size: int) -> Segment | None:
        """The one buffer-backed segment holding all of ``[paddr, paddr+size)``, or None when
        the range is readable only piece by piece; OutsideImage if a byte is not readable."""
        end = paddr + size
        pos = paddr
        while pos < end:
            seg = self._segment_at(pos)
            if seg is None:
                where = "is outside" if pos == paddr else f"runs out of the image at {pos:#x}"
                raise OutsideImage(
                    "outside",
                    paddr,
                    size,
                    f"[{paddr:#x}, {end:#x}) {where} (the image covers {self.describe_ranges()})",
                )
            piece_end = min(end, seg.end)
            rel, rel_end = pos - seg.start, piece_end - seg.start
            if seg.reader is None and pos == paddr and end <= seg.start + seg.available:
                return seg
            if seg.available < seg.filesz and rel < seg.filesz and rel_end > seg.available:
                cut = seg.start + max(rel, seg.available)
                raise OutsideImage(
                    "truncated",
                    paddr,
                    size,
                    f"[{paddr:#x}, {end:#x}) is cut off at {cut:#x}: the file ends before the "
                    f"{seg.name or 'segment'} at {seg.start:#x} does",
                )
            pos = piece_end
        return None

    def read(self, paddr: int, size: int) -> bytes:
        """``size`` bytes of physical memory from ``paddr`` (OutsideImage if any is missing)."""
        seg = self._locate(paddr, size)
        if seg is not None:
            off = seg.offset + (paddr - seg.start)
            return bytes(self._buffer[off : off + size])
        out = bytearray()
        pos, end = paddr, paddr + size
        while pos < end:
            seg = self._segment_at(pos)
            assert seg is not None  # _locate checked every byte
            take = min(end, seg.end) - pos
            rel = pos - seg.start
            if seg.reader is not None:
                out += seg.reader(pos, take)
            else:
                from_file = max(0, min(take, seg.filesz - rel))
                off = seg.offset + rel
                out += self._buffer[off : off + from_file]
                out += bytes(take - from_file)
            pos += take
        return bytes(out)

    def table(self, paddr: int, count: int, dtype: np.dtype | str) -> np.ndarray:
        """``count`` entries of ``dtype`` from ``paddr`` as a read-only array (a view of the
        mapping when one segment holds them, else a copy)."""
        dt = np.dtype(dtype)
        size = count * dt.itemsize
        seg = self._locate(paddr, size)
        if seg is not None:
            arr = np.frombuffer(
                self._buffer, dtype=dt, count=count, offset=seg.offset + paddr - seg.start
            )
        else:
            arr = np.frombuffer(self.read(paddr, size), dtype=dt, count=count)
        if arr.flags.writeable:
            arr.flags.writeable = False
        return arr

    def tables(
        self,
        paddrs: np.ndarray,
        count: int,
        dtype: np.dtype | str,
        out: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Many tables at once: an ``(n, count)`` array with the ``count`` entries at each of
        the physical addresses ``paddrs`` (uint64), or None unless every table lies whole in a
        buffer-backed segment (then :meth:`table` reads them one by one, and says what is
        wrong). Tables stored one after the other come as one view of a read-only buffer;
        others are gathered into a copy with one numpy call (as is everything from a writable
        buffer, e.g. a running machine's RAM, so the result never changes under the caller);
        a copy goes into ``out`` (``(n, count)`` of ``dtype``) when given.
        """
        dt = np.dtype(dtype)
        size = count * dt.itemsize
        n = int(paddrs.size)
        if self._buffer is None or n == 0:
            return None
        starts, ends, offsets, buffered = self._segment_arrays()
        pos = np.searchsorted(starts, paddrs, side="right") - 1
        if pos.min() < 0:
            return None
        end = ends[pos]
        if not (buffered[pos] & (paddrs < end) & (end - paddrs >= np.uint64(size))).all():
            return None
        offs = offsets[pos] + (paddrs - starts[pos])
        if n == 1 or (np.diff(offs) == np.uint64(size)).all():
            arr = np.frombuffer(self._buffer, dtype=dt, count=n * count, offset=int(offs[0]))
            arr = arr.reshape(n, count)
            if self._readonly:
                return arr
            if out is None:
                return arr.copy()
            np.copyto(out, arr)
            return out
        if (offs % np.uint64(size)).any():
            return None
        rows = (offs // np.uint64(size)).astype(np.intp)
        # mode "clip": the rows are in range, and "raise" would copy through a buffer
        return np.take(self._rows(dt, count), rows, axis=0, out=out, mode="clip")

    def _segment_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends of the readable bytes, buffer offsets, buffer-backed) as arrays."""
        cached = self._cache.get("segments")
        if cached is None:
            segs = self.segments
            cached = (
                np.array([s.start for s in segs], dtype=np.uint64),
                np.array([s.start + s.available for s in segs], dtype=np.uint64),
                np.array([s.offset for s in segs], dtype=np.uint64),
                np.array([s.reader is None for s in segs], dtype=bool),
            )
            self._cache["segments"] = cached
        return cached

    def _rows(self, dt: np.dtype, count: int) -> np.ndarray:
        """The whole buffer as rows of ``count`` entries (a view, made once)."""
        key = ("rows", dt.str, count)
        rows = self._cache.get(key)
        if rows is None:
            row_bytes = count * dt.itemsize
            nrows = len(self._buffer) // row_bytes
            rows = np.frombuffer(self._buffer, dtype=dt, count=nrows * count).reshape(-1, count)
            self._cache[key] = rows
        return rows

    @property
    def _readonly(self) -> bool:
        readonly = self._cache.get("readonly")
        if readonly is None:
            with memoryview(self._buffer) as view:
                readonly = self._cache["readonly"] = view.readonly
        return readonly

    # lifetime -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._cache.clear()  # views of the buffer
        buf, self._buffer = self._buffer, None
        if isinstance(buf, mmap.mmap) and self._owner is not None:
            # a caller may still hold a table view: then the GC closes the mapping later
            with contextlib.suppress(BufferError):
                buf.close()
        if self._owner is not None and hasattr(self._owner, "close"):
            self._owner.close()
        self._owner = None

    def __enter__(self) -> PhysImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PhysImage {self.kind} {self.name} {self.describe_ranges()}>"


# opening files --------------------------------------------------------------------------------
def map_file(path: str | os.PathLike[str]) -> tuple[Any, mmap.mmap, int]:
    """Open ``path`` read-only and map it: (file, mapping, size); ImageError when it cannot."""
    name = os.fspath(path)
    try:
        f = open(name, "rb")  # noqa: SIM115 - kept open for the mapping's lifetime
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot open: {exc.strerror or exc}") from None
    try:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ImageError(f"{name}: the file is empty")
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except ImageError:
        f.close()
        raise
    except (OSError, ValueError) as exc:
        f.close()
        raise ImageError(f"{name}: cannot map the file: {exc}") from None
    return f, mapping, size


def read_head(path: str | os.PathLike[str], size: int = 4096) -> bytes:
    """The first ``size`` bytes of ``path`` (fewer if it is shorter; b"" if it cannot be read:
    the opener then reports why)."""
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read(size)
    except OSError:
        return b""


class ViewEnd(Exception):
    """A read past what a :class:`FileView` holds (carries where the bytes stop)."""

    def __init__(self, offset: int, size: int, available: int) -> None:
        self.offset, self.size, self.available = offset, size, available
        super().__init__(f"[{offset:#x}, {offset + size:#x}) runs past the end at {available:#x}")


class FileView:
    """The bytes of a dump file by offset: the mapping itself for a plain file (a flattened
    file has its own view, :class:`pfnmap.decode.images.flat.FlatView`)."""

    def __init__(self, mapping: Any, size: int) -> None:
        self.buffer = mapping
        self.size = size

    def read(self, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes from ``offset``, or ViewEnd."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ViewEnd(offset, size, self.size)
        return bytes(self.buffer[offset : offset + size])

    def array(self, offset: int, size: int) -> np.ndarray:
        """``size`` bytes from ``offset`` as a read-only uint8 array (a view where it can)."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ViewEnd(offset, size, self.size)
        return np.frombuffer(self.buffer, dtype=np.uint8, count=size, offset=offset)
