"""Checks of one table's entries that need more than one entry's layout: reserved descriptor
encodings and contiguous-hint groups. The walker calls them once per table it reads.

``reserved-encoding``
    an entry the layout decodes but the MMU faults on (arm64: a block descriptor, type 0b01,
    at level 3, or at a level where the granule has no blocks), from
    :meth:`pfnmap.arch.Arch.reserved_encodings`;
``contiguous``
    a leaf with the contiguous hint (arm64's PTE_CONT) whose group disagrees. The Arm ARM
    (D8.6.1, "The Contiguous bit") asks that all entries of the naturally aligned group of
    :meth:`~pfnmap.arch.Arch.contiguous_entries` entries set the bit, map one naturally
    aligned, physically contiguous output range (entry ``k`` at the first address plus ``k``
    spans), and have the same attributes (:meth:`~pfnmap.arch.Arch.contiguous_attr_mask`:
    arm64 leaves out the access flag and the dirty state, which are per entry). Otherwise
    the TLB may use any of the entries for the whole range: a misprogramming, whose
    translation is CONSTRAINED UNPREDICTABLE. Each disagreeing entry is one record.

Everything is numpy over the table's non-zero entries, so a table without hinted leaves
costs one mask test.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pfnmap.arch import Arch
from pfnmap.decode.records import Problem

RESERVED_ENCODING = "reserved-encoding"
CONTIGUOUS = "contiguous"


def _problem(arch: Arch, kind: str, detail: str, level: int, addr: int, raw: int, va: int):
    return Problem(kind, detail, level, arch.levels[level].name, addr, raw, va)


def reserved_encoding_problems(
    arch: Arch, level: int, table: int, idx: np.ndarray, raw: np.ndarray, va: np.ndarray
) -> Iterator[Problem]:
    """One record per entry of the table that uses a reserved encoding."""
    found = arch.reserved_encodings(level, raw)
    if found is None:
        return
    bad, reason = found
    entry_bytes = arch.levels[level].entry_bytes
    for k in np.flatnonzero(bad).tolist():
        yield _problem(
            arch, RESERVED_ENCODING, reason, level, table + int(idx[k]) * entry_bytes,
            int(raw[k]), int(va[k]),
        )  # fmt: skip


def contiguous_problems(
    arch: Arch,
    level: int,
    table: int,
    idx: np.ndarray,
    raw: np.ndarray,
    va: np.ndarray,
    is_leaf: np.ndarray,
    pa_of: np.ndarray,
) -> Iterator[Problem]:
    """One record per entry of a contiguous group that disagrees with the group.

    ``idx`` are the indexes of the table's non-zero entries ``raw`` (``va`` their VAs,
    ``pa_of`` their output addresses), ``is_leaf`` which of them are valid leaves (the hint
    means nothing elsewhere).
    """
    mask = arch.contiguous_mask
    n = arch.contiguous_entries(level)
    if not mask or n <= 1:
        return
    hinted = is_leaf & ((raw & np.uint64(mask)) != 0)
    if not hinted.any():
        return
    lv = arch.levels[level]
    attrs = np.uint64(arch.contiguous_attr_mask(level))
    by_index = {int(i): k for k, i in enumerate(idx.tolist())}
    groups = sorted({int(i) // n for i in idx[hinted].tolist()})
    for g in groups:
        first = g * n
        members = [by_index.get(first + j) for j in range(n)]
        # the reference: the group's first hinted leaf
        ref = next(k for k in members if k is not None and hinted[k])
        base_pa = int(pa_of[ref]) - (int(idx[ref]) - first) * lv.span
        group_va = int(va[ref]) - (int(idx[ref]) - first) * lv.span
        where = f"contiguous group of {n} {lv.name} entries at VA {group_va:#x}"
        ref_attrs = int(raw[ref]) & int(attrs)
        missing = [j for j, k in enumerate(members) if k is None or not is_leaf[k]]
        if missing:
            shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
            yield _problem(
                arch, CONTIGUOUS,
                f"{where}: entries {shown} of the group are not valid leaves",
                level, table + int(idx[ref]) * lv.entry_bytes, int(raw[ref]), int(va[ref]),
            )  # fmt: skip
        if base_pa % (n * lv.span):
            yield _problem(
                arch, CONTIGUOUS,
                f"{where}: the output range starts at {base_pa:#x}, not aligned to the "
                f"group's {n * lv.span:#x} bytes",
                level, table + int(idx[ref]) * lv.entry_bytes, int(raw[ref]), int(va[ref]),
            )  # fmt: skip
        for j, k in enumerate(members):
            if k is None or not is_leaf[k] or k == ref:
                continue
            value = int(raw[k])
            why = []
            if not hinted[k]:
                why.append("lacks the contiguous bit")
            if int(pa_of[k]) != base_pa + j * lv.span:
                why.append(f"maps {int(pa_of[k]):#x}, not {base_pa + j * lv.span:#x}")
            if value & int(attrs) != ref_attrs:
                why.append(f"attributes differ in bits {(value ^ int(raw[ref])) & int(attrs):#x}")
            if why:
                yield _problem(
                    arch, CONTIGUOUS, f"{where}: entry {j} " + "; ".join(why),
                    level, table + int(idx[k]) * lv.entry_bytes, value, int(va[k]),
                )  # fmt: skip
