"""What a walk of the page tables yields (:mod:`pfnmap.decode.walker`), and where its arrays live.

:class:`LeafBatch` (a table's leaves, or a group of tables' leaves, as numpy arrays) and
:class:`Problem` come out of :class:`~pfnmap.decode.walker.Walker`; :class:`Leaf` and :class:`Range`
out of :func:`~pfnmap.decode.walker.leaves` and :func:`~pfnmap.decode.walker.ranges`. Everything
here is importable from :mod:`pfnmap.decode.walker` too. :class:`ArrayPool` and the cached index
arrays serve the grouped walk's batches.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad entry (or a stop), with where it is and why."""

    kind: str
    detail: str
    level: int | None = None
    level_name: str | None = None
    entry_addr: int | None = None
    raw: int | None = None
    va: int | None = None

    def line(self) -> str:
        """One line for people: what, where, which value, why."""
        parts = [self.kind]
        if self.level_name is not None:
            parts.append(f"{self.level_name} entry")
        if self.entry_addr is not None:
            parts.append(f"at {self.entry_addr:#x}")
        if self.raw is not None:
            parts.append(f"= {self.raw:#x}")
        if self.va is not None:
            parts.append(f"(VA {self.va:#x})")
        return " ".join(parts) + f": {self.detail}"


@dataclass(frozen=True, slots=True)
class LeafBatch:
    """The leaves of one table, in index order, as arrays (``raw``, ``va``, ``pa`` are uint64;
    ``va`` is canonical, ``va_raw`` the address as the tables index it).

    A *grouped* batch (``Walker(..., grouped=True)``) holds the leaves of several last-level
    tables that hang one after the other from one upper table, in VA order: ``tables`` are
    their addresses, ``pointers`` the raw upper entries that point to them, and table ``i``'s
    leaves are ``[starts[i], starts[i + 1])`` of the arrays; ``index`` is then the index
    within each leaf's own table, ``table`` the first table, and ``upper`` ends above the
    pointers (the parent table's own path). :meth:`split` gives the per-table batches the
    ungrouped walk yields. Arrays of a grouped batch may be read-only views of the image.
    """

    level: int
    name: str
    size: int
    table: int
    entry_bytes: int
    index: np.ndarray
    raw: np.ndarray
    va_raw: np.ndarray
    va: np.ndarray
    pa: np.ndarray
    present: np.ndarray
    #: raw values of the entries that led here, top level first
    upper: tuple[int, ...]
    tables: np.ndarray | None = None
    pointers: np.ndarray | None = None
    starts: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.raw.size)

    def entry_addrs(self) -> np.ndarray:
        index = self.index.astype(np.uint64) * np.uint64(self.entry_bytes)
        if self.tables is None:
            return np.uint64(self.table) + index
        assert self.starts is not None
        return np.repeat(self.tables, np.diff(self.starts)) + index

    def entry_addr(self, k: int) -> int:
        """The physical address of leaf ``k``'s entry."""
        table = self.table
        if self.tables is not None:
            assert self.starts is not None
            table = int(self.tables[int(np.searchsorted(self.starts, k, side="right")) - 1])
        return table + int(self.index[k]) * self.entry_bytes

    def select(self, keep: np.ndarray) -> LeafBatch:
        """The batch of the leaves at the ascending positions ``keep`` (a grouped batch stays
        grouped: each table keeps its own leaves)."""
        starts = self.starts
        if starts is not None:
            starts = np.searchsorted(keep, starts)
        return LeafBatch(
            self.level, self.name, self.size, self.table, self.entry_bytes, self.index[keep],
            self.raw[keep], self.va_raw[keep], self.va[keep], self.pa[keep],
            self.present[keep], self.upper, self.tables, self.pointers, starts,
        )  # fmt: skip

    def split(self) -> Iterator[LeafBatch]:
        """The batch per table, as the ungrouped walk yields them (itself if not grouped)."""
        if self.tables is None:
            yield self
            return
        assert self.pointers is not None and self.starts is not None
        bounds = self.starts.tolist()
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            if a == b:
                continue
            yield LeafBatch(
                self.level, self.name, self.size, int(self.tables[i]), self.entry_bytes,
                self.index[a:b], self.raw[a:b], self.va_raw[a:b], self.va[a:b], self.pa[a:b],
                self.present[a:b], (*self.upper, int(self.pointers[i])),
            )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Leaf:
    """One mapping: VA (canonical), PA, page size, the leaf's level, its raw entry, and
    vm_normal_page()'s verdict when hints were given (None: not decided, see ``reason``)."""

    va: int
    pa: int
    size: int
    level: int
    name: str
    raw: int
    entry_addr: int
    present: bool
    verdict: str | None = None
    reason: str | None = None
    #: the set flag bits and non-address fields, lowest bit first (see describe_flags)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Range:
    """Consecutive leaves with consecutive PAs, the same flags and the same verdict."""

    va: int
    pa: int
    size: int
    pages: int
    page_size: int
    level: int
    name: str
    raw: int  # the first leaf's entry
    entry_addr: int
    present: bool
    verdict: str | None = None
    reason: str | None = None
    flags: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        return self.va + self.size


Item = LeafBatch | Problem


class ArrayPool:
    """Memory for the arrays of grouped batches, recycled once no batch uses it any more.

    A grouped batch holds megabytes of arrays. Fresh memory of that size comes from the OS
    (glibc maps it and unmaps it again when freed), and touching it the first time costs a page
    fault per 4 KiB: several times the decoding itself. So the walker cuts its arrays from a
    few slabs and reuses a slab only when its reference count shows that no array cut from it
    is alive (numpy views keep their base alive): a batch a caller keeps is never written
    over. When every slab is in use the array is simply allocated.
    """

    SLABS = 8
    #: smaller arrays come from malloc's heap, which keeps its memory: no pool needed
    MIN_BYTES = 1 << 17

    def __init__(self) -> None:
        self._slabs: list[np.ndarray] = []

    def take(self, shape: int | tuple[int, int], dtype: np.dtype | type | str) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``."""
        dt = np.dtype(dtype)
        count = shape if isinstance(shape, int) else shape[0] * shape[1]
        nbytes = count * dt.itemsize
        if nbytes < self.MIN_BYTES:
            return np.empty(shape, dtype=dt)
        slabs = self._slabs
        for i in range(len(slabs)):
            # 2: the list's reference and getrefcount's argument; each array cut from the
            # slab adds one
            if slabs[i].size >= nbytes and sys.getrefcount(slabs[i]) == 2:
                return self._cut(slabs[i], nbytes, dt, shape)
        if len(slabs) < self.SLABS:
            slabs.append(np.empty(nbytes, dtype=np.uint8))
            return self._cut(slabs[-1], nbytes, dt, shape)
        for i in range(len(slabs)):  # every slab is too small or in use: replace a free one
            if sys.getrefcount(slabs[i]) == 2:
                slabs[i] = np.empty(nbytes, dtype=np.uint8)
                return self._cut(slabs[i], nbytes, dt, shape)
        return np.empty(shape, dtype=dt)

    @staticmethod
    def _cut(slab: np.ndarray, nbytes: int, dt: np.dtype, shape) -> np.ndarray:
        return slab[:nbytes].view(dt).reshape(shape)


@lru_cache(maxsize=16)
def index_tile(entries: int, tables: int) -> np.ndarray:
    """``0 .. entries - 1`` repeated ``tables`` times, read-only (a grouped batch's indexes)."""
    tile = np.tile(np.arange(entries, dtype=np.intp), tables)
    tile.flags.writeable = False
    return tile


@lru_cache(maxsize=16)
def va_offsets(shift: int, count: int) -> np.ndarray:
    """``k << shift`` for ``k`` in ``0 .. count - 1``, read-only (a grouped batch's VAs)."""
    offsets = np.arange(count, dtype=np.uint64) << np.uint64(shift)
    offsets.flags.writeable = False
    return offsets
