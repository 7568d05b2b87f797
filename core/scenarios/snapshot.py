"""A picture of a machine at one moment: every task's page-table tree, leaves, vmas, rss, and
the struct pages those leaves map.

:func:`take` walks each live task's tables from its pgd, level by level, over the non-none
entries only (one numpy ``nonzero`` per table), so a snapshot costs what the tables hold. Each
last-level leaf gets vm_normal_page's verdict and reason (without print_bad_pte's side effect,
as :meth:`pfnmap.machine.Process.lookup`). ``pfnmap run`` compares consecutive snapshots for its
report and the HTML view (:mod:`pfnmap.render.html`) draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pfnmap.kernel.normal_page import vm_normal_page_verdict

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.machine import Machine, Process

#: leaves recorded per task at most (a scenario maps a few pages; a runaway one stays bounded)
MAX_LEAVES = 4096


@dataclass(frozen=True)
class EntryView:
    """One non-none entry of a table: where it is, its value, and what it is."""

    level: int
    index: int
    addr: int  # physical address of the entry
    raw: int
    va: int  # first VA it covers
    kind: str  # "table" (points to the next table), "leaf", or "bad" (not present, not a leaf)
    child: int | None = None  # the next table's physical address, for "table"


@dataclass(frozen=True)
class LeafView:
    """A leaf entry (a pte, or a large page above the last level) with its verdict."""

    task: str
    va: int
    level: int
    raw: int
    entry_addr: int
    present: bool
    pfn: int | None
    verdict: str | None  # Verdict member name, None outside a vma or above the last level
    reason: str
    #: the upper entries leading to it: (level, index, raw), top first
    path: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class VmaView:
    start: int
    end: int
    flags: tuple[str, ...]
    pgoff: int
    backing: str


@dataclass
class TaskView:
    comm: str
    pid: int
    pgd: int
    file_rss: int
    anon_rss: int
    vmas: list[VmaView] = field(default_factory=list)
    #: table physical address -> (level, entries)
    tables: dict[int, tuple[int, list[EntryView]]] = field(default_factory=dict)
    leaves: list[LeafView] = field(default_factory=list)
    truncated: bool = False

    def leaf(self, va: int) -> LeafView | None:
        for leaf in self.leaves:
            if leaf.va == va:
                return leaf
        return None


@dataclass(frozen=True)
class PageView:
    pfn: int
    count: int
    mapcount: int
    flags: tuple[str, ...]


@dataclass
class Snapshot:
    tasks: list[TaskView]
    pages: dict[int, PageView]
    free_pages: int

    def task(self, comm: str) -> TaskView | None:
        return next((t for t in self.tasks if t.comm == comm), None)

    def pte_map(self) -> dict[tuple[str, int], LeafView]:
        return {(t.comm, leaf.va): leaf for t in self.tasks for leaf in t.leaves}


def take(machine: Machine, max_leaves: int = MAX_LEAVES) -> Snapshot:
    """The state of every live task of ``machine`` now."""
    tasks = [_task(machine, proc, max_leaves) for proc in machine.processes.values() if proc.alive]
    pages: dict[int, PageView] = {}
    phys = machine.phys
    for task in tasks:
        for leaf in task.leaves:
            if leaf.pfn is not None and leaf.pfn not in pages and phys.pfn_valid(leaf.pfn):
                info = machine.page(leaf.pfn)
                pages[leaf.pfn] = PageView(info.pfn, info.count, info.mapcount, info.flags)
    return Snapshot(tasks, pages, phys.free_pages())


def _task(machine: Machine, proc: Process, max_leaves: int) -> TaskView:
    mm = proc.mm
    view = TaskView(proc.comm, proc.pid, mm.pgd, mm.file_rss, mm.anon_rss)
    for vma in mm.mmap:
        backing = getattr(vma.vm_file, "path", None) or "anon"
        view.vmas.append(
            VmaView(vma.vm_start, vma.vm_end, tuple(vma.flag_names()), vma.vm_pgoff, backing)
        )
    _walk(machine, proc, view, 0, mm.pgd, 0, (), max_leaves)
    return view


def _walk(
    machine: Machine,
    proc: Process,
    view: TaskView,
    level: int,
    table: int,
    va_base: int,
    path: tuple[tuple[int, int, int], ...],
    max_leaves: int,
) -> None:
    arch = machine.arch
    tables = machine.tables
    lv = arch.levels[level]
    last = len(arch.levels) - 1
    entries = tables.table_view(level, table)
    out: list[EntryView] = []
    view.tables[table] = (level, out)
    for index in np.flatnonzero(entries).tolist():
        raw = int(entries[index])
        va = va_base + (index << lv.shift)
        addr = table + index * lv.entry_bytes
        if level == last or arch.table_entry_leaf(level, raw):
            out.append(EntryView(level, index, addr, raw, va, "leaf"))
            if len(view.leaves) >= max_leaves:
                view.truncated = True
                continue
            view.leaves.append(_leaf(machine, proc, level, va, raw, addr, path))
        elif arch.table_entry_present(level, raw) and not arch.table_entry_bad(level, raw):
            child = arch.table_entry_paddr(level, raw)
            out.append(EntryView(level, index, addr, raw, va, "table", child))
            _walk(
                machine, proc, view, level + 1, child, va, path + ((level, index, raw),), max_leaves
            )
        else:
            out.append(EntryView(level, index, addr, raw, va, "bad"))


def _leaf(
    machine: Machine,
    proc: Process,
    level: int,
    va: int,
    raw: int,
    addr: int,
    path: tuple[tuple[int, int, int], ...],
) -> LeafView:
    arch = machine.arch
    present = bool(arch.pte_present(raw)) if level == len(arch.levels) - 1 else True
    pfn = arch.leaf_paddr(level, raw) >> arch.page_shift if present else None
    verdict: str | None = None
    reason = "a large page: vm_normal_page is not asked" if level != len(arch.levels) - 1 else ""
    vma = proc.mm.find_vma(va)
    if vma is None or vma.vm_start > va:
        reason = reason or "no vma"
    elif level == len(arch.levels) - 1:
        decided, _, reason = vm_normal_page_verdict(vma, va, raw)
        verdict = decided.name
    return LeafView(proc.comm, va, level, raw, addr, present, pfn, verdict, reason, path)


def formats(arch: Arch) -> dict[str, Any]:
    """The arch's entry layouts as plain data: level -> table/leaf format with its fields
    (name, shift, width), top bit first, as the construct layout lists them."""
    out: dict[str, Any] = {"levels": []}
    for i, lv in enumerate(arch.levels):
        entry: dict[str, Any] = {"name": lv.name, "shift": lv.shift, "bits": lv.bits,
                                 "entry_bytes": lv.entry_bytes}  # fmt: skip
        for kind, fmt in (("table", arch.table_formats[i]), ("leaf", arch.leaf_formats[i])):
            entry[kind] = (
                None
                if fmt is None
                else {
                    "name": fmt.name,
                    "width": fmt.width_bits,
                    "fields": [[f.name, f.shift, f.width] for f in fmt.fields.values()],
                }
            )
        out["levels"].append(entry)
    return out
