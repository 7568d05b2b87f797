"""Which leaves a decode shows: a VA range, user or kernel space, a smallest page size.

:func:`filter_items` passes a walk's items through, each batch cut down with one mask (a
leaf is kept when the page it maps overlaps the range), problems kept when the address they
map is in the range. User space is ``[0, TASK_SIZE)`` of the arch (:attr:`Arch.task_size`),
the kernel everything above it, as the kernel's own ``access_ok()``/``TASK_SIZE`` split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pfnmap.arch import Arch
from pfnmap.decode.records import Item, LeafBatch, Problem
from pfnmap.errors import PfnmapError

_U64_END = 1 << 64


class FilterError(PfnmapError):
    """A filter that cannot be read (a reversed range, two spaces at once)."""


@dataclass(frozen=True)
class LeafFilter:
    """Leaves whose page overlaps ``[start, end)`` (canonical VAs) and is at least
    ``min_size`` bytes."""

    start: int = 0
    end: int = _U64_END
    min_size: int = 0

    @property
    def is_everything(self) -> bool:
        return self.start == 0 and self.end == _U64_END and self.min_size == 0


def parse_va_range(text: str) -> tuple[int, int]:
    """``START-END`` (END exclusive) or ``START+SIZE``: numbers are decimal or ``0x`` hex,
    sizes may be written ``2M``."""
    from pfnmap.kernel.units import parse_size

    def number(t: str) -> int:
        t = t.strip().replace("_", "")
        try:
            return int(t, 16) if t.lower().startswith("0x") else parse_size(t)
        except ValueError:
            raise FilterError(f"VA range {text!r}: {t!r} is not a number") from None

    if "+" in text:
        a, b = text.split("+", 1)
        start = number(a)
        end = start + number(b)
    elif "-" in text:
        a, b = text.split("-", 1)
        start, end = number(a), number(b)
    else:
        raise FilterError(f"VA range {text!r}: write START-END or START+SIZE")
    if end <= start:
        raise FilterError(f"VA range {text!r} is empty or reversed")
    if end > _U64_END:
        raise FilterError(f"VA range {text!r} ends above 64 bits")
    return start, end


def make_filter(
    arch: Arch,
    va_range: tuple[int, int] | None = None,
    user: bool = False,
    kernel: bool = False,
    min_size: int = 0,
) -> LeafFilter:
    """The :class:`LeafFilter` of the command line's options (the intersection of them)."""
    if user and kernel:
        raise FilterError("--user and --kernel exclude each other")
    start, end = va_range if va_range is not None else (0, _U64_END)
    if user:
        end = min(end, arch.task_size)
    if kernel:
        start = max(start, arch.task_size)
    if end <= start:
        raise FilterError(
            f"the VA range and --{'user' if user else 'kernel'} leave no address "
            f"(TASK_SIZE of {arch.name} is {arch.task_size:#x})"
        )
    return LeafFilter(start, end, min_size)


def _keep(batch: LeafBatch, f: LeafFilter) -> np.ndarray | None:
    """The positions to keep, or None for all of them."""
    if batch.size < f.min_size:
        return np.empty(0, dtype=np.intp)
    if f.start == 0 and f.end == _U64_END:
        return None
    va = batch.va
    if not va.size:
        return None
    last = np.uint64(batch.size - 1)  # a page's last byte: no overflow at the top of memory
    lo = int(va.min())
    hi = int(va.max()) + batch.size - 1
    if lo >= f.start and hi < f.end:
        return None
    ok = va + last >= np.uint64(f.start)
    if f.end < _U64_END:
        ok &= va < np.uint64(f.end)
    return np.flatnonzero(ok)


def filter_items(items: Iterable[Item], f: LeafFilter) -> Iterator[Item]:
    """The items of a walk with only the leaves (and problems) ``f`` keeps."""
    for item in items:
        if isinstance(item, Problem):
            if item.va is None or f.start <= item.va < f.end:
                yield item
            continue
        keep = _keep(item, f)
        if keep is None:
            yield item
        elif keep.size:
            yield item.select(keep)
