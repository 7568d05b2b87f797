"""Physical memory images: where the page-table decoder reads tables from.

Three sources, one interface (:class:`PhysImage`):

- a raw file of physical memory starting at a base address (``/dev/mem`` copies, QEMU's
  ``pmemsave``, ``pfnmap dump --format raw``);
- an ELF core whose PT_LOAD segments carry physical addresses in ``p_paddr``, as QEMU's
  ``dump-guest-memory`` and kdump's ``/proc/vmcore`` write them (bytes a segment declares
  beyond ``p_filesz`` up to ``p_memsz`` read as zeros, as the ELF rules say);
- an emulated :class:`~pfnmap.machine.machine.Machine` (its RAM and I/O regions, no file at all).

Files are opened read-only and mapped with ``mmap(ACCESS_READ)``; a table read is a numpy view
of the mapping (a copy only where a table straddles two segments), so memory does not grow with
the image. Problems with a single read are :class:`OutsideImage` (the walker turns them into a
problem record and goes on); problems that stop an image from being opened at all are
:class:`ImageError`, one clear line each.

:func:`write_elf_core` writes the same kind of core QEMU writes: an ELF header, a PT_NOTE, one
PT_LOAD per physical segment with ``p_paddr`` set and ``p_vaddr`` 0, for x86-64, i386 or sparc64
machine types in the arch's byte order.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.errors import PfnmapError

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.machine import Machine

# ELF constants (the ELF gABI; machine numbers from elf.h)
ELF_MAGIC = b"\x7fELF"
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PF_X, PF_W, PF_R = 1, 2, 4
EM_NONE = 0

#: file offsets of segment data are aligned to this (so a segment starts on a host page)
SEGMENT_ALIGN = 4096
_WRITE_CHUNK = 16 << 20


class ImageError(PfnmapError):
    """An image that cannot be opened or used at all (missing, empty, not a core...)."""


class OutsideImage(PfnmapError):
    """A read that the image cannot satisfy. ``kind`` is ``"outside"`` (no segment holds the
    address) or ``"truncated"`` (a segment declares the bytes but the file ends first)."""

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
def _map_file(path: str | os.PathLike[str]) -> tuple[Any, mmap.mmap, int]:
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


def open_raw(path: str | os.PathLike[str], base: int = 0) -> PhysImage:
    """A raw image: the file's bytes are physical memory from ``base`` on."""
    if base < 0 or base & 0xFFF:
        raise ImageError(f"base address {base:#x} must be a non-negative multiple of 4096")
    f, mapping, size = _map_file(path)
    seg = Segment(base, size, 0, size, size, name="raw")
    return PhysImage([seg], mapping, os.fspath(path), "raw", owner=f)


def open_elf(path: str | os.PathLike[str]) -> PhysImage:
    """An ELF core (ET_CORE) with PT_LOAD segments at their ``p_paddr``."""
    f, mapping, size = _map_file(path)
    name = os.fspath(path)
    try:
        info = _read_elf_segments(f, name, size)
    except ImageError:
        mapping.close()
        f.close()
        raise
    machine, byteorder, segments = info
    try:
        return PhysImage(
            segments,
            mapping,
            name,
            "elf",
            elf_machine=machine,
            elf_byteorder=byteorder,
            owner=f,
        )
    except ImageError:
        mapping.close()
        f.close()
        raise


def _read_elf_segments(f: Any, name: str, size: int) -> tuple[int, str, list[Segment]]:
    from elftools.elf.elffile import ELFFile

    f.seek(0)
    if f.read(4) != ELF_MAGIC:
        raise ImageError(f"{name}: not an ELF file")
    try:
        elf = ELFFile(f)
        header = elf.header
        e_type = header["e_type"]
        e_machine = header["e_machine"]
        phdrs = [seg.header for seg in elf.iter_segments()]
    except Exception as exc:  # pyelftools raises many types on a damaged header
        raise ImageError(f"{name}: damaged ELF header: {type(exc).__name__}: {exc}") from None
    if e_type != "ET_CORE":
        raise ImageError(
            f"{name}: an ELF file of type {e_type}, not a core (ET_CORE); decode wants a "
            "physical memory dump such as QEMU's dump-guest-memory or kdump's vmcore"
        )
    loads = [h for h in phdrs if h["p_type"] == "PT_LOAD"]
    if not loads:
        raise ImageError(f"{name}: the core has no PT_LOAD segment, so no memory")
    if len(loads) > 1 and all(h["p_paddr"] == 0 for h in loads):
        raise ImageError(
            f"{name}: every PT_LOAD has p_paddr 0: this looks like a process core (virtual "
            "addresses only), not a physical memory dump"
        )
    segments = []
    for i, h in enumerate(loads):
        off, filesz, memsz = h["p_offset"], h["p_filesz"], h["p_memsz"]
        if filesz > memsz:
            raise ImageError(
                f"{name}: PT_LOAD {i} at {h['p_paddr']:#x} has p_filesz {filesz:#x} larger "
                f"than p_memsz {memsz:#x}"
            )
        available = max(0, min(filesz, size - off)) if off < size else 0
        segments.append(Segment(h["p_paddr"], memsz, off, filesz, available, name=f"PT_LOAD {i}"))
    machine = e_machine if isinstance(e_machine, int) else _em_number(e_machine)
    return machine, "little" if elf.little_endian else "big", segments


def _em_number(name: str) -> int:
    """e_machine's number from pyelftools' name for it ("EM_X86_64" -> 62), -1 if unknown."""
    from elftools.elf.enums import ENUM_E_MACHINE

    value = ENUM_E_MACHINE.get(name, -1)
    return value if isinstance(value, int) else -1


def open_image(
    path: str | os.PathLike[str], base: int | None = None, kind: str = "auto"
) -> PhysImage:
    """Open ``path`` as ``kind`` ("raw", "elf" or "auto": ELF when it starts with the ELF magic,
    else raw). ``base`` is the physical address of a raw image's first byte (default 0)."""
    if kind not in ("auto", "raw", "elf"):
        raise ImageError(f"unknown image kind {kind!r} (auto, raw or elf)")
    name = os.fspath(path)
    if kind == "auto":
        kind = "elf" if _starts_with_elf_magic(name) else "raw"
        if kind == "elf" and base is not None:
            raise ImageError(
                f"{name} is an ELF core, which carries its own physical addresses; --base is for "
                "raw images (read it as raw bytes with --image-format raw)"
            )
    if kind == "elf":
        if base is not None:
            raise ImageError("--base is for raw images; an ELF core has its own addresses")
        return open_elf(name)
    return open_raw(name, base or 0)


def _starts_with_elf_magic(name: str) -> bool:
    try:
        with open(name, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False  # open_raw reports the problem


def check_elf_arch(image: PhysImage, arch: Arch, known: Iterable[Arch] = ()) -> None:
    """Refuse an ELF core whose machine type or byte order does not fit ``arch``
    (:attr:`Arch.elf_machine`); ``known`` are the arches to suggest instead."""
    if image.kind != "elf":
        return
    if image.elf_byteorder and image.elf_byteorder != arch.byteorder:
        raise ImageError(
            f"{image.name} is a {image.elf_byteorder}-endian core but {arch.name} is "
            f"{arch.byteorder}-endian: wrong --arch?"
        )
    if not arch.elf_machine or image.elf_machine == arch.elf_machine:
        return
    fits = [a.name for a in known if a.elf_machine and a.elf_machine == image.elf_machine]
    have = em_name(image.elf_machine or 0)
    hint = f" (use --arch {' or '.join(fits)})" if fits else ""
    raise ImageError(
        f"{image.name} is an {have} core, not one of {arch.name} "
        f"({em_name(arch.elf_machine)}): wrong --arch?{hint}"
    )


def em_name(e_machine: int) -> str:
    """ELF's name for an e_machine number (62 -> "EM_X86_64"), as pyelftools knows them."""
    from elftools.elf.enums import ENUM_E_MACHINE

    for name, value in ENUM_E_MACHINE.items():
        if value == e_machine and name != "_default_":
            return name
    return f"machine {e_machine}"


# the emulated machine as an image -------------------------------------------------------------
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


# writing ELF cores ------------------------------------------------------------------------------
def elf_note(name: str, note_type: int, desc: bytes, byteorder: str = "little") -> bytes:
    """One ELF note: namesz, descsz, type, then the NUL-terminated name and the descriptor,
    each padded to 4 bytes (the same for ELF32 and ELF64)."""
    end = "<" if byteorder == "little" else ">"
    raw_name = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
    return struct.pack(f"{end}III", len(raw_name), len(desc), note_type) + pad(raw_name) + pad(desc)


def write_elf_core(
    path: str | os.PathLike[str],
    segments: Iterable[tuple[int, Any]],
    arch: str | Arch = DEFAULT_ARCH,
    *,
    notes: Iterable[tuple[str, int, bytes]] = (),
    elfclass: int | None = None,
) -> int:
    """Write an ELF core of physical memory; returns the file size.

    ``segments`` are ``(physical address, bytes-like)`` pairs (bytes, bytearray, memoryview,
    mmap, numpy arrays); each becomes a PT_LOAD with ``p_paddr`` set, ``p_vaddr`` 0 and
    ``p_filesz == p_memsz``, as QEMU's ``dump-guest-memory`` without paging writes them.
    ``arch`` (an :class:`Arch` or a registered arch's name) gives e_machine, the byte order
    and the default ELF class (:attr:`Arch.elf_machine`, EM_NONE where it has none). ``elfclass``
    defaults to the arch's, and an i386 core with memory above 4 GiB becomes ELFCLASS64 as QEMU
    makes it. ``notes`` are ``(name, type, descriptor)`` for the PT_NOTE (always present, possibly
    empty). Overlapping segments are refused (ValueError). The data is streamed, never copied whole.
    """
    if isinstance(arch, str):
        from pfnmap.plugins.manager import get_arch

        arch = get_arch(arch)
    e_machine, default_class, byteorder = arch.elf_machine, arch.elf_class, arch.byteorder
    segs = sorted(((int(p), memoryview(d).cast("B")) for p, d in segments), key=lambda s: s[0])
    for (pa, da), (pb, _) in itertools.pairwise(segs):
        if pb < pa + len(da):
            raise ValueError(f"segments at {pa:#x} and {pb:#x} overlap")
    if any(p < 0 for p, _ in segs):
        raise ValueError("a segment has a negative physical address")
    top = max((p + len(d) for p, d in segs), default=0)
    cls = elfclass or default_class
    if elfclass is None and cls == ELFCLASS32 and top > 1 << 32:
        cls = ELFCLASS64
    if cls == ELFCLASS32 and top > 1 << 32:
        raise ValueError(f"memory up to {top:#x} does not fit an ELFCLASS32 core")
    end = "<" if byteorder == "little" else ">"
    note_data = b"".join(elf_note(n, t, d, byteorder) for n, t, d in notes)
    if cls == ELFCLASS64:
        ehsize, phentsize = 64, 56
    else:
        ehsize, phentsize = 52, 32
    phnum = 1 + len(segs)
    note_off = ehsize + phnum * phentsize
    offsets = []
    pos = note_off + len(note_data)
    for _, data in segs:
        pos = -(-pos // SEGMENT_ALIGN) * SEGMENT_ALIGN
        offsets.append(pos)
        pos += len(data)
    ident = (
        ELF_MAGIC
        + bytes([cls, ELFDATA2LSB if byteorder == "little" else ELFDATA2MSB, 1, 0])
        + bytes(8)
    )
    if cls == ELFCLASS64:
        ehdr = ident + struct.pack(
            f"{end}HHIQQQIHHHHHH",
            ET_CORE, e_machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 64, 0, 0,
        )  # fmt: skip

        def phdr(p_type, flags, off, paddr, size) -> bytes:
            return struct.pack(f"{end}IIQQQQQQ", p_type, flags, off, 0, paddr, size, size, 0)
    else:
        ehdr = ident + struct.pack(
            f"{end}HHIIIIIHHHHHH",
            ET_CORE, e_machine, 1, 0, ehsize, 0, 0, ehsize, phentsize, phnum, 40, 0, 0,
        )  # fmt: skip

        def phdr(p_type, flags, off, paddr, size) -> bytes:
            return struct.pack(f"{end}IIIIIIII", p_type, off, 0, paddr, size, size, flags, 0)

    headers = [ehdr, phdr(PT_NOTE, 0, note_off, 0, len(note_data))]
    headers += [
        phdr(PT_LOAD, PF_R | PF_W | PF_X, off, paddr, len(data))
        for off, (paddr, data) in zip(offsets, segs, strict=True)
    ]
    with open(path, "wb") as f:
        for h in headers:
            f.write(h)
        f.write(note_data)
        for off, (_, data) in zip(offsets, segs, strict=True):
            f.write(bytes(off - f.tell()))
            for i in range(0, len(data), _WRITE_CHUNK):
                f.write(data[i : i + _WRITE_CHUNK])
        return f.tell()


def write_raw(path: str | os.PathLike[str], data: Any) -> int:
    """Write a raw image (the bytes of physical memory from its base address on)."""
    view = memoryview(data).cast("B")
    with open(path, "wb") as f:
        for i in range(0, len(view), _WRITE_CHUNK):
            f.write(view[i : i + _WRITE_CHUNK])
        return f.tell()


__all__ = [
    "ImageError",
    "OutsideImage",
    "PhysImage",
    "Segment",
    "check_elf_arch",
    "em_name",
    "machine_image",
    "open_elf",
    "open_image",
    "open_raw",
    "write_elf_core",
    "write_raw",
]
