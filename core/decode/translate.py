"""One address through the tables, level by level (crash's ``vtop``, pwndbg's ``pagewalk``),
and every address that maps a physical one (crash's ``ptov``, gdb-pt-dump's ``-find_alias``).

:func:`vtop` follows one VA from the root as the MMU does, with the walker's own entry tests
(:mod:`pfnmap.arch.vector`), so where it stops and what it finds agree with
:class:`~pfnmap.decode.walker.Walker`: each :class:`Step` is one level's index, the table and
the entry's physical address, the raw entry, its non-zero fields, and what the entry says (a
next table, a page, or why the walk ends there). :func:`vtop_process` does the same on a
running emulated process (its machine's memory, its mm's pgd) and adds the struct page.

:func:`ptov` answers the other way round over the grouped walk: the PAs are sorted once, and
each batch of leaves finds the PAs inside its pages with two ``searchsorted`` calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pfnmap.arch import Arch
from pfnmap.arch.vector import table_ops
from pfnmap.decode.image import OutsideImage, PhysImage
from pfnmap.decode.records import Problem
from pfnmap.decode.views import LARGE_PAGE_REASON, flag_names
from pfnmap.errors import PfnmapError

if TYPE_CHECKING:
    from pfnmap.decode.hints import Hints
    from pfnmap.decode.walker import Walker
    from pfnmap.machine import Process

_U64 = (1 << 64) - 1

#: how a step ends: the walk goes on, or stops with a mapping, or stops without one
NEXT = "table"
PAGE = "page"
NONE = "none"
NOT_PRESENT = "not-present"
OUTSIDE = "outside-image"
MISALIGNED = "misaligned"
LOOP = "loop"


class AddressError(PfnmapError):
    """An address the paging mode cannot translate (beyond its range, non-canonical) or a
    physical address beyond the arch's physical width."""


@dataclass(frozen=True)
class Step:
    """One level of a translation."""

    level: int
    level_name: str
    index: int
    table: int
    entry_addr: int
    raw: int | None  # None: the table could not be read
    #: the entry's layout ("pte", "pmd-2M", a table pointer's name) and its non-zero fields
    layout: str | None
    fields: dict[str, int]
    #: set flag bits and non-address fields, as decode prints them (leaves only)
    flags: tuple[str, ...]
    outcome: str
    detail: str
    next_table: int | None = None
    reserved: int = 0


@dataclass(frozen=True)
class Translation:
    """Where one VA leads: the steps, and the page it lands in (if it does)."""

    arch: str
    root: int
    va: int
    steps: tuple[Step, ...]
    pa: int | None = None
    page_size: int | None = None
    page_pa: int | None = None
    leaf_level: str | None = None
    verdict: str | None = None
    reason: str | None = None
    #: the struct page of the frame, when the memory is an emulated machine's
    page: dict[str, Any] | None = field(default=None)

    @property
    def mapped(self) -> bool:
        return self.pa is not None

    @property
    def stop(self) -> Step:
        return self.steps[-1]

    def as_dict(self) -> dict[str, Any]:
        def hx(v: int | None) -> str | None:
            return None if v is None else f"{v:#x}"

        return {
            "record": "translation",
            "arch": self.arch,
            "root": hx(self.root),
            "va": hx(self.va),
            "mapped": self.mapped,
            "pa": hx(self.pa),
            "page_size": self.page_size,
            "page_pa": hx(self.page_pa),
            "level": self.leaf_level,
            "stop": self.stop.outcome,
            "detail": self.stop.detail,
            "verdict": self.verdict,
            "reason": self.reason,
            "page": self.page,
        }


def step_dict(step: Step) -> dict[str, Any]:
    """One step as a JSON-ready dict (addresses as hex strings)."""
    return {
        "record": "step",
        "level": step.level_name,
        "index": step.index,
        "table": f"{step.table:#x}",
        "entry_addr": f"{step.entry_addr:#x}",
        "raw": None if step.raw is None else f"{step.raw:#x}",
        "layout": step.layout,
        "fields": {k: f"{v:#x}" for k, v in step.fields.items()},
        "flags": " ".join(step.flags),
        "outcome": step.outcome,
        "detail": step.detail,
        "next_table": None if step.next_table is None else f"{step.next_table:#x}",
        "reserved": f"{step.reserved:#x}" if step.reserved else None,
    }


def table_bits(arch: Arch) -> int:
    top = arch.levels[0]
    return top.shift + top.bits


def check_va(arch: Arch, va: int) -> int:
    """The VA as the tables index it (sign extension dropped); AddressError when the paging
    mode cannot translate it."""
    bits = table_bits(arch)
    if va < 0 or va > _U64:
        raise AddressError(f"{va:#x} is not a 64-bit virtual address")
    if arch.canonical and 0 < arch.va_bits <= bits:
        sign = va >> (arch.va_bits - 1)
        top = (1 << (64 - arch.va_bits + 1)) - 1
        if sign not in (0, top):
            raise AddressError(
                f"{va:#x} is not canonical on {arch.name}: bits 63..{arch.va_bits - 1} must "
                f"all be equal ({arch.va_bits}-bit virtual addresses)"
            )
        return va & ((1 << bits) - 1)
    if va >> bits:
        raise AddressError(
            f"{va:#x} is outside {arch.name}'s {bits}-bit virtual address space "
            f"(up to {(1 << bits) - 1:#x})"
        )
    return va


def _fields(fmt, raw: int) -> dict[str, int]:
    if fmt is None:
        return {}
    fields = sorted(fmt.fields.values(), key=lambda f: f.shift)
    return {f.name.rstrip("_"): v for f in fields if (v := f.get(raw))}


def vtop(
    image: PhysImage, arch: Arch, root: int, va: int, hints: Hints | None = None
) -> Translation:
    """Translate ``va`` through the tables under ``root`` in ``image``, one :class:`Step` per
    level; with ``hints``, vm_normal_page()'s verdict for a pte. Raises AddressError for a VA
    the mode cannot translate; every other end (no entry, not present, a table outside the
    image) is the last step's outcome."""
    va_raw = check_va(arch, va)
    ops = table_ops(arch)
    last = len(arch.levels) - 1
    steps: list[Step] = []
    table = root
    ancestors = [root]
    for level, lv in enumerate(arch.levels):
        lops = ops.levels[level]
        index = (va_raw >> lv.shift) & (lv.entries - 1)
        entry_addr = table + index * lv.entry_bytes
        size = lv.entries * lv.entry_bytes

        where = (level, lv.name, index, table, entry_addr)

        def stop(outcome: str, detail: str, raw: int | None = None, layout=None, fields=None,
                 where=where) -> Translation:  # fmt: skip
            steps.append(Step(*where, raw, layout, fields or {}, (), outcome, detail))
            return Translation(arch.name, root, va, tuple(steps))

        if table % size:
            return stop(MISALIGNED, f"the {lv.name} table at {table:#x} is not aligned to its "
                        f"{size} bytes")  # fmt: skip
        try:
            arr = image.table(table, lv.entries, lops.dtype)
        except OutsideImage as exc:
            where = "cut off by the end of the file" if exc.kind == "truncated" else "outside"
            return stop(OUTSIDE, f"the {lv.name} table at {table:#x} is {where} the image "
                        f"({image.describe_ranges()})")  # fmt: skip
        raw = int(arr[index])
        one = np.array([raw], dtype=np.uint64)
        if raw == 0:
            return stop(NONE, "an empty entry: nothing is mapped here", raw)
        present = bool(lops.present(one)[0])
        is_leaf = level == last or (
            lops.leaf is not None and lops.leaf_paddr is not None and bool(lops.leaf(one)[0])
        )
        fmt = arch.leaf_formats[level] if is_leaf else arch.table_formats[level]
        fields = _fields(fmt, raw)
        layout = fmt.name if fmt is not None else None
        if not present:
            what = "pte_present() is false (swap entry, PROT_NONE or file pte)" if level == last \
                else "the entry is not present"  # fmt: skip
            return stop(NOT_PRESENT, what, raw, layout=layout, fields=fields)
        if is_leaf:
            assert lops.leaf_paddr is not None
            page_pa = int(lops.leaf_paddr(one)[0])
            offset = va_raw & (lv.span - 1)
            reserved = raw & lops.leaf_reserved
            flags = flag_names(arch, level, raw & lops.leaf_flag_mask)
            detail = f"maps a {_size(lv.span)} page at {page_pa:#x}"
            if reserved:
                detail += f" (reserved bits {reserved:#x} set: the MMU faults on it)"
            steps.append(Step(level, lv.name, index, table, entry_addr, raw, layout, fields,
                              flags, PAGE, detail, reserved=reserved))  # fmt: skip
            verdict = reason = None
            if hints is not None and hints.has_vmas:
                if level == last:
                    verdict, reason = hints.verdict(
                        arch, va - offset, raw, hints.pfn_valid_for(arch)
                    )
                else:
                    covered = hints.vma_at(va) is not None
                    reason = LARGE_PAGE_REASON if covered else "no vma covers this address"
            return Translation(arch.name, root, va, tuple(steps), page_pa + offset, lv.span,
                               page_pa, layout, verdict, reason)  # fmt: skip
        assert lops.table_paddr is not None
        child = int(lops.table_paddr(one)[0])
        nxt = arch.levels[level + 1]
        reserved = raw & lops.table_reserved
        if child in ancestors:
            return stop(LOOP, f"points back to the table at {child:#x} on its own path",
                        raw, layout=layout, fields=fields)  # fmt: skip
        detail = f"points to the {nxt.name} table at {child:#x}"
        if reserved:
            detail += f" (reserved bits {reserved:#x} set)"
        steps.append(Step(level, lv.name, index, table, entry_addr, raw, layout, fields, (),
                          NEXT, detail, child, reserved))  # fmt: skip
        ancestors.append(child)
        table = child
    raise AssertionError("the last level always ends the walk")


def vtop_process(proc: Process, va: int) -> Translation:
    """:func:`vtop` on a running emulated process: its machine's memory, its pgd, the hints
    its vmas give, and the struct page of the frame (flags, count, mapcount) when it has one."""
    from dataclasses import replace

    from pfnmap.decode.dump import machine_hints
    from pfnmap.decode.image import machine_image

    machine = proc.machine
    t = vtop(machine_image(machine), machine.arch, proc.mm.pgd, va, machine_hints(machine, proc))
    if t.pa is None:
        return t
    pfn = t.pa >> machine.arch.page_shift
    phys = machine.phys
    if pfn >= phys.nr_pages:
        return replace(t, page={"pfn": f"{pfn:#x}", "struct_page": False})
    page = {
        "pfn": f"{pfn:#x}",
        "struct_page": True,
        "flags": phys.flag_names(pfn),
        "count": int(phys.count[pfn]),
        "mapcount": int(phys.mapcount[pfn]),
    }
    return replace(t, page=page)


def _size(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}-byte"


# the reverse lookup ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alias:
    """One VA that maps a PA."""

    pa: int
    va: int
    page_va: int
    page_pa: int
    size: int
    level_name: str
    raw: int
    flags: tuple[str, ...]


def check_pa(arch: Arch, pa: int) -> int:
    if pa < 0 or pa >> arch.phys_bits:
        raise AddressError(
            f"{pa:#x} is beyond {arch.name}'s {arch.phys_bits}-bit physical addresses"
        )
    return pa


def ptov(
    items: Iterable[Any], arch: Arch, pas: Iterable[int], problems: list[Problem] | None = None
) -> Iterator[Alias]:
    """Every present leaf of a walk (``items``: a :class:`~pfnmap.decode.walker.Walker`) that
    maps one of ``pas``, as an :class:`Alias` per (PA, VA), in VA order. Problems of the walk
    are appended to ``problems``."""
    wanted = np.unique(np.array([check_pa(arch, p) for p in pas], dtype=np.uint64))
    ops = table_ops(arch)
    for item in items:
        if isinstance(item, Problem):
            if problems is not None:
                problems.append(item)
            continue
        if not wanted.size or not len(item):
            continue
        pa = item.pa
        lo = np.searchsorted(wanted, pa, side="left")
        hi = np.searchsorted(wanted, pa + np.uint64(item.size), side="left")
        hits = np.flatnonzero((hi > lo) & item.present)
        mask = ops.levels[item.level].leaf_flag_mask
        for k in hits.tolist():
            raw = int(item.raw[k])
            page_pa, page_va = int(pa[k]), int(item.va[k])
            flags = flag_names(arch, item.level, raw & mask)
            for target in wanted[int(lo[k]) : int(hi[k])].tolist():
                yield Alias(target, page_va + target - page_pa, page_va, page_pa, item.size,
                            item.name, raw, flags)  # fmt: skip


def ptov_walk(walker: Walker, pas: Iterable[int]) -> tuple[list[Alias], list[Problem]]:
    """:func:`ptov` over ``walker``, collected."""
    problems: list[Problem] = []
    return list(ptov(walker, walker.arch, pas, problems)), problems
