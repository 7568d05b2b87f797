"""A played scenario (:class:`pfnmap.scenarios.play.Run`) as the page's JSON.

Numbers that may pass 2**53 (entries, addresses) are hex strings: JavaScript reads them as
BigInt. Each leaf carries ``changed``, the bits that differ from the same task's leaf at the
same VA in the step before (all its bits when it is new), and ``shared``, the other tasks whose
leaves map the same frame, so neither has to be worked out in the page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfnmap.kernel.units import format_size

from .page import write_html

if TYPE_CHECKING:
    from pfnmap.scenarios.play import Run, StepRun
    from pfnmap.scenarios.snapshot import Snapshot, TaskView


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:#x}"


def snapshot_data(snap: Snapshot | None, before: Snapshot | None) -> dict[str, Any]:
    """Tasks (vmas, tables, leaves) and struct pages of one snapshot, diffed against
    ``before``."""
    if snap is None:
        return {"tasks": [], "pages": []}
    old = before.pte_map() if before is not None else {}
    # a task new in this step (a fork child) is compared with the task whose leaf mapped the
    # same frame at the same VA before: what copy_one_pte changed (the dirty, accessed, write
    # bits) is then what the page shows as changed
    known = {t.comm for t in before.tasks} if before is not None else set()
    by_frame = {(leaf.va, leaf.pfn): (comm, leaf) for (comm, _), leaf in old.items()}
    frames: dict[int, list[str]] = {}
    tables: dict[int, list[str]] = {}
    for task in snap.tasks:
        for leaf in task.leaves:
            if leaf.pfn is not None:
                frames.setdefault(leaf.pfn, []).append(task.comm)
        for addr in task.tables:
            tables.setdefault(addr, []).append(task.comm)
    return {
        "tasks": [
            _task(t, old, by_frame if t.comm not in known else {}, frames, tables)
            for t in snap.tasks
        ],
        "pages": [
            {
                "pfn": _hex(p.pfn),
                "count": p.count,
                "mapcount": p.mapcount,
                "flags": list(p.flags),
                "mapped_by": sorted(set(frames.get(p.pfn, []))),
            }
            for p in sorted(snap.pages.values(), key=lambda p: p.pfn)
        ],
        "free_pages": snap.free_pages,
    }


def _task(t: TaskView, old: dict, by_frame: dict, frames: dict, tables: dict) -> dict[str, Any]:
    leaves = []
    for leaf in t.leaves:
        prev = old.get((t.comm, leaf.va))
        prev_from = t.comm
        if prev is None and (leaf.va, leaf.pfn) in by_frame:
            prev_from, prev = by_frame[leaf.va, leaf.pfn]
        changed = leaf.raw if prev is None else prev.raw ^ leaf.raw
        others = sorted({c for c in frames.get(leaf.pfn, []) if c != t.comm})
        leaves.append(
            {
                "va": _hex(leaf.va),
                "level": leaf.level,
                "raw": _hex(leaf.raw),
                "prev": _hex(prev.raw) if prev is not None else None,
                "changed": _hex(changed),
                "new": prev is None,
                "prev_from": prev_from if prev is not None else None,
                "entry_addr": _hex(leaf.entry_addr),
                "present": leaf.present,
                "pfn": _hex(leaf.pfn),
                "verdict": leaf.verdict,
                "reason": leaf.reason,
                "shared": others,
                "path": [[lv, idx, _hex(raw)] for lv, idx, raw in leaf.path],
            }
        )
    return {
        "comm": t.comm,
        "pid": t.pid,
        "pgd": _hex(t.pgd),
        "file_rss": t.file_rss,
        "anon_rss": t.anon_rss,
        "truncated": t.truncated,
        "vmas": [
            {
                "start": _hex(v.start),
                "end": _hex(v.end),
                "flags": list(v.flags),
                "pgoff": _hex(v.pgoff),
                "backing": v.backing,
            }
            for v in t.vmas
        ],
        "tables": [
            {
                "addr": _hex(addr),
                "level": level,
                "shared": sorted({c for c in tables.get(addr, []) if c != t.comm}),
                "entries": [
                    {
                        "index": e.index,
                        "raw": _hex(e.raw),
                        "va": _hex(e.va),
                        "kind": e.kind,
                        "child": _hex(e.child),
                    }
                    for e in entries
                ],
            }
            for addr, (level, entries) in t.tables.items()
        ],
        "leaves": leaves,
    }


def _step(run: Run, record: StepRun, before: Snapshot | None, number: int) -> dict[str, Any]:
    st = record.step
    out: dict[str, Any] = {
        "number": number,
        "title": (st.title if st is not None else "") or "",
        "what": st.describe() if st is not None else "end: every task exits, check_invariants",
        "do": st.do if st is not None else "end",
        "line": st.line if st is not None else None,
        "why": " ".join(st.why.split()) if st is not None else "",
        "kernel": list(st.kernel) if st is not None else [],
        "outcome": record.outcome,
        "detail": record.why,
        "data": record.data,
        "log": list(record.log),
        "bad_ptes": [b.line for b in record.bad_ptes],
        "faults": [
            {"address": _hex(f.address), "write": f.write, "result": f.result_name, "comm": f.comm}
            for f in record.faults
        ],
        "invariants": record.invariants,
        "checks": [
            {"ok": c.ok, "expect": c.expect.describe(), "got": c.got, "line": c.line}
            for c in record.checks
        ],
        "touched": [[task, _hex(va)] for task, va in record.touched],
        "notes": [],
    }
    out.update(snapshot_data(record.snapshot, before))
    return out


def run_data(run: Run) -> dict[str, Any]:
    """The whole run: the arch's entry layouts, then one entry per step and the end."""
    steps = []
    before = None
    records = run.steps + ([run.end] if run.end is not None else [])
    for n, record in enumerate(records, start=1):
        steps.append(_step(run, record, before, n))
        before = record.snapshot
    sc = run.file
    return {
        "title": sc.title or sc.name,
        "subtitle": f"{sc.name} on {run.arch}, era {run.era}: {format_size(run.page_size)} "
        f"pages, RAM {format_size(run.ram)}",
        "description": " ".join(sc.description.split()),
        "source": sc.path,
        "arch": {"name": run.arch, "page_size": run.page_size, **run.formats},
        "era": run.era,
        "steps": steps,
        "stopped": run.stopped,
        "result": {
            "ok": run.ok,
            "checks": len(run.checks),
            "failed": len(run.failed),
        },
    }


def write_run_html(path: str | os.PathLike[str], run: Run) -> Path:
    data = run_data(run)
    return write_html(path, "steps", f"pfnmap: {data['title']}", data)
