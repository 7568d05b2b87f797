"""Views of a walk for people and programs: one :class:`Leaf` per leaf entry, merged
:class:`Range` records, and the names of a leaf's flag bits.

They take what :class:`~pfnmap.decode.walker.Walker` yields (per-table or grouped batches alike) and
pass problems through. Importable from :mod:`pfnmap.decode.walker` too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from pfnmap.arch import Arch
from pfnmap.arch.vector import table_ops
from pfnmap.decode.records import Item, Leaf, LeafBatch, Problem, Range

LARGE_PAGE_REASON = "a large-page leaf: vm_normal_page() looks at ptes only"

if TYPE_CHECKING:
    from pfnmap.decode.hints import Hints


def batch_verdicts(
    arch: Arch, batch: LeafBatch, hints: Hints | None, pfn_valid
) -> list[tuple[str | None, str | None]] | None:
    """vm_normal_page()'s ``(verdict, reason)`` for each leaf of ``batch``, or None when the
    hints name no vmas (no verdicts at all). ``pfn_valid`` is ``hints.pfn_valid_for(arch)``."""
    if hints is None or not hints.has_vmas:
        return None
    if batch.level != len(arch.levels) - 1:
        out: list[tuple[str | None, str | None]] = []
        for va in batch.va.tolist():
            covered = hints.vma_at(va) is not None
            out.append((None, LARGE_PAGE_REASON if covered else "no vma covers this address"))
        return out
    return [
        hints.verdict(arch, va, raw, pfn_valid)
        for va, raw in zip(batch.va.tolist(), batch.raw.tolist(), strict=True)
    ]


def _verdicts(arch: Arch, batch: LeafBatch, hints: Hints | None, pfn_valid) -> list:
    got = batch_verdicts(arch, batch, hints, pfn_valid)
    return [(None, None)] * len(batch) if got is None else got


def leaves(
    items: Iterable[Item], arch: Arch, hints: Hints | None = None
) -> Iterator[Leaf | Problem]:
    """One :class:`Leaf` per leaf entry (problems pass through), in VA order."""
    pfn_valid = hints.pfn_valid_for(arch) if hints is not None else None
    for item in items:
        if isinstance(item, Problem):
            yield item
            continue
        verdicts = _verdicts(arch, item, hints, pfn_valid)
        addrs = item.entry_addrs().tolist()
        level = item.level
        mask = table_ops(arch).levels[level].leaf_flag_mask
        for va, pa, raw, present, ea, (verdict, reason) in zip(
            item.va.tolist(), item.pa.tolist(), item.raw.tolist(), item.present.tolist(),
            addrs, verdicts, strict=True,
        ):  # fmt: skip
            flags = _describe(arch, level, raw & mask)
            yield Leaf(va, pa, item.size, level, item.name, raw, ea, present, verdict, reason,
                       flags)  # fmt: skip


def ranges(
    items: Iterable[Item], arch: Arch, hints: Hints | None = None
) -> Iterator[Range | Problem]:
    """Leaves merged into :class:`Range` records: each next leaf continues the range when its VA
    and PA follow on, its flag bits (the entry without its address bits) and level are the
    same, and so is its verdict. Problems pass through (an open range is closed first)."""
    ops = table_ops(arch)
    pfn_valid = hints.pfn_valid_for(arch) if hints is not None else None
    cur: list | None = None  # [va, pa, size, pages, page_size, level, name, raw, ea, present,
    #                           verdict, reason, flags]

    def close() -> Range | None:
        nonlocal cur
        if cur is None:
            return None
        r = Range(*cur[:12], _describe(arch, cur[5], cur[12]))
        cur = None
        return r

    for item in items:
        if isinstance(item, Problem):
            r = close()
            if r is not None:
                yield r
            yield item
            continue
        n = len(item)
        size = item.size
        flag_mask = np.uint64(ops.levels[item.level].leaf_flag_mask)
        flags = item.raw & flag_mask
        verdicts = None  # no verdicts: nothing to break on
        if hints is not None and hints.has_vmas:
            verdicts = _verdicts(arch, item, hints, pfn_valid)
        step = np.uint64(size)
        brk = np.ones(n, dtype=bool)
        if n > 1:
            brk[1:] = (
                (item.va[1:] != item.va[:-1] + step)
                | (item.pa[1:] != item.pa[:-1] + step)
                | (flags[1:] != flags[:-1])
                | (item.present[1:] != item.present[:-1])
            )
            if verdicts is not None:
                codes = {v: i for i, v in enumerate(dict.fromkeys(v for v, _ in verdicts))}
                vcode = np.fromiter((codes[v] for v, _ in verdicts), dtype=np.int64, count=n)
                brk[1:] |= vcode[1:] != vcode[:-1]
        starts = np.flatnonzero(brk)
        ends = np.append(starts[1:], n)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            va, pa, raw = int(item.va[s]), int(item.pa[s]), int(item.raw[s])
            fl = int(flags[s])
            present = bool(item.present[s])
            verdict, reason = (None, None) if verdicts is None else verdicts[s]
            count = e - s
            if (
                s == 0
                and cur is not None
                and cur[5] == item.level
                and cur[0] + cur[2] == va
                and cur[1] + cur[2] == pa
                and cur[12] == fl
                and cur[9] == present
                and cur[10] == verdict
            ):
                cur[2] += count * size
                cur[3] += count
                continue
            r = close()
            if r is not None:
                yield r
            cur = [va, pa, count * size, count, size, item.level, item.name, raw,
                   item.entry_addr(s), present, verdict, reason, fl]  # fmt: skip
    r = close()
    if r is not None:
        yield r


# flags for people -------------------------------------------------------------------------
def describe_flags(arch: Arch, level: int, raw: int) -> list[str]:
    """The set flag bits and non-zero non-address fields of a leaf entry, lowest bit first
    (``["present", "rw", "user", "accessed", "dirty", "nx"]``), from the derived masks."""
    ops = table_ops(arch).levels[level]
    return list(_describe(arch, level, raw & ops.leaf_flag_mask))


def flag_names(arch: Arch, level: int, flags: int) -> tuple[str, ...]:
    """:func:`describe_flags` of a flag word (an entry with its address bits cleared, i.e.
    ``raw & leaf_flag_mask``), remembered per distinct word."""
    return _describe(arch, level, flags)


@lru_cache(maxsize=4096)
def _describe(arch: Arch, level: int, flags: int) -> tuple[str, ...]:
    fmt = arch.leaf_formats[level]
    if fmt is None:
        return ()
    mask = table_ops(arch).levels[level].leaf_flag_mask
    out = []
    for f in sorted(fmt.fields.values(), key=lambda f: f.shift):
        if f.mask & ~mask:
            continue  # an address field
        value = f.get(flags)
        if not value:
            continue
        name = f.name.rstrip("_")
        out.append(name if f.width == 1 else f"{name}={value:#x}")
    return tuple(out)
