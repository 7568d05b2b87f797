"""The report of ``pfnmap run``: a section per step, then the expectations that failed.

:mod:`pfnmap.scenarios.play` plays the file and returns data; this module turns it into rich
text, in the demo's manner (:mod:`pfnmap.cli.demo_render`): the ptes a step touched or changed,
with their set fields and vm_normal_page's verdict, struct page counts, rss, print_bad_pte
lines, the invariant check and each expectation's result.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pfnmap.kernel.units import format_size
from pfnmap.scenarios.play import Check, Run, StepRun
from pfnmap.scenarios.snapshot import LeafView, Snapshot

#: pte rows a step shows at most (the HTML view has them all)
MAX_ROWS = 16
_VERDICT_STYLE = {
    "RAW_PFN": "bold cyan",
    "COWED": "bold magenta",
    "NORMAL": "bold green",
    "BAD": "bold red",
}


def where(run: Run, line: int | None) -> str:
    return f"{run.file.path}:{line}" if line else run.file.path


def changed_ptes(
    before: Snapshot | None, after: Snapshot | None
) -> list[tuple[str, int, LeafView | None, LeafView | None]]:
    """(task, va, old, new) for every leaf that appeared, went or changed its value."""
    old = before.pte_map() if before is not None else {}
    new = after.pte_map() if after is not None else {}
    out = []
    for key in sorted(set(old) | set(new), key=lambda k: (k[0], k[1])):
        a, b = old.get(key), new.get(key)
        if a is None or b is None or a.raw != b.raw or a.verdict != b.verdict:
            out.append((key[0], key[1], a, b))
    return out


def _fields(run: Run, leaf: LeafView) -> str:
    fmt = run.formats["levels"][leaf.level]["leaf"]
    parts = []
    for name, shift, width in fmt["fields"]:
        value = (leaf.raw >> shift) & ((1 << width) - 1)
        if value:
            parts.append(name if width == 1 else f"{name}={value:#x}")
    return " ".join(parts) or "(all zero)"


def _pte_table(run: Run, step: StepRun, before: Snapshot | None) -> Table | None:
    snap = step.snapshot
    rows: dict[tuple[str, int], tuple[LeafView | None, LeafView | None]] = {}
    for task, va, a, b in changed_ptes(before, snap):
        rows[task, va] = (a, b)
    if snap is not None:
        now = snap.pte_map()
        for task, va in step.touched:
            if (task, va) in now and (task, va) not in rows:
                leaf = now[task, va]
                rows[task, va] = (leaf, leaf)
    if not rows:
        return None
    width = run.formats["levels"][-1]["entry_bytes"] * 2
    table = Table(
        title="ptes this step touched or changed", title_justify="left", header_style="bold"
    )
    for col in ("task", "vaddr", "pte", "pfn", "struct page", "vm_normal_page says"):
        table.add_column(col, no_wrap=col in ("vaddr", "pfn"), ratio=1 if col[0] == "v" else None)
    pages = snap.pages if snap is not None else {}
    for n, ((task, va), (a, b)) in enumerate(sorted(rows.items())):
        if n == MAX_ROWS:
            table.add_row("", f"... {len(rows) - MAX_ROWS} more", "", "", "", "")
            break
        if b is None:
            table.add_row(task, f"{va:#x}", Text(f"{a.raw:0{width}x} -> none", style="dim"),
                          "", "", "unmapped")  # fmt: skip
            continue
        pte = Text(f"{b.raw:0{width}x}")
        if a is not None and a.raw != b.raw:
            pte = Text(f"{a.raw:0{width}x} ->\n", style="dim").append(f"{b.raw:0{width}x}")
        pte.append(f"\n{_fields(run, b)}", style="dim")
        page = pages.get(b.pfn) if b.pfn is not None else None
        verdict = Text(b.verdict or "-", style=_VERDICT_STYLE.get(b.verdict or "", ""))
        verdict.append(f"\n{b.reason}", style="dim")
        table.add_row(
            task,
            f"{va:#x}",
            pte,
            "-" if b.pfn is None else f"{b.pfn:#x}",
            "no" if page is None else f"count {page.count}\nmapcount {page.mapcount}",
            verdict,
        )
    return table


def _check_line(run: Run, check: Check) -> Text:
    mark = Text("ok   " if check.ok else "FAIL ", style="bold green" if check.ok else "bold red")
    mark.append(f"expect {check.expect.describe()}")
    if not check.ok:
        mark.append(f": got {check.got}", style="red")
    mark.append(f"  ({where(run, check.line)})", style="dim")
    return mark


def render_step(console: Console, run: Run, step: StepRun, before: Snapshot | None) -> None:
    st = step.step
    if st is None:
        head = "end: every task still alive exits, then check_invariants"
    else:
        head = f"[{st.index + 1}] {st.describe()}"
    console.rule(Text(head, style="bold"), align="left")
    if st is not None and st.title:
        console.print(Text(st.title, style="bold"))
    if st is not None and st.kernel:
        console.print(Text("kernel path: " + " -> ".join(st.kernel), style="bold blue"))
    if st is not None and st.why:
        console.print(" ".join(st.why.split()), markup=False)
    outcome = Text("outcome: ")
    outcome.append(step.outcome, style="green" if step.outcome == "ok" else "bold red")
    if step.why:
        outcome.append(f" ({step.why})", style="red")
    if step.data:
        outcome.append(f"; {step.data}")
    console.print(outcome)
    table = _pte_table(run, step, before)
    if table is not None:
        console.print(table)
    if step.snapshot is not None and step.snapshot.tasks:
        console.print(
            "rss: "
            + "; ".join(
                f"{t.comm} file_rss={t.file_rss} anon_rss={t.anon_rss}" for t in step.snapshot.tasks
            ),
            markup=False,
        )
    for line in step.log:
        console.print(Text(f"log: {line}", style="red" if "Bad pte" in line else ""))
    faults = f"page faults: {len(step.faults)}, print_bad_pte lines: {len(step.bad_ptes)}"
    inv = Text(faults + ", check_invariants: ")
    if step.invariants is None:
        inv.append("ok" if step.outcome != "BUG" else "not run (BUG)", style="green")
    else:
        inv.append(f"FAILED: {step.invariants}", style="bold red")
    console.print(inv)
    for check in step.checks:
        console.print(_check_line(run, check))


def render_run(console: Console, run: Run, quiet: bool = False) -> None:
    sc = run.file
    console.rule(Text(f"pfnmap run {sc.name} on {run.arch}, era {run.era}", style="bold"))
    if sc.title:
        console.print(Text(sc.title, style="italic"))
    console.print(
        f"{format_size(run.page_size)} pages, RAM {format_size(run.ram)}, "
        f"{len(sc.steps)} steps, file {sc.path}",
        markup=False,
    )
    before: Snapshot | None = None
    for step in run.steps + ([run.end] if run.end else []):
        if quiet:
            for check in step.checks:
                console.print(_check_line(run, check))
        else:
            console.print()
            render_step(console, run, step, before)
        before = step.snapshot
    if run.stopped:
        console.print(Text(f"the run stopped: {run.stopped}", style="bold red"))
    checks = run.checks
    failed = run.failed
    result = Text("result: ", style="bold")
    if failed:
        result.append(f"{len(failed)} of {len(checks)} expectations failed", style="bold red")
    else:
        result.append(f"all {len(checks)} expectations held", style="bold green")
    console.print(result)
