"""Rendering of demo results for people: the per-step report and the side-by-side comparison.

:mod:`pfnmap.cli.demo` plays the story and returns data; this module only turns that data into rich
tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pfnmap.cli.demo import DemoResult, PteRow, StepResult
from pfnmap.kernel.normal_page import Verdict
from pfnmap.kernel.units import format_size

#: the flags remap_pfn_range adds: what this story is about
_PFN_FLAGS = {"VM_IO", "VM_RESERVED", "VM_PFNMAP"}
_VERDICT_STYLE = {
    Verdict.RAW_PFN: "bold cyan",
    Verdict.COWED: "bold magenta",
    Verdict.NORMAL: "bold green",
    Verdict.BAD: "bold red",
}


def _hex_entry(result: DemoResult, value: int) -> str:
    return f"{value:0{result.pte_bytes * 2}x}"


def _fields(fields: dict[str, Any]) -> str:
    """The set bits and non-zero fields of a decoded entry, in layout order."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, bool):
            if value:
                parts.append(name)
        elif isinstance(value, int) and value:
            parts.append(f"{name}={value:#x}")
    return " ".join(parts) or "(all zero)"


def _field_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What differs between two decodes of an entry: ``-rw`` for a cleared bit, ``+x`` set."""
    parts = []
    for name, value in after.items():
        old = before.get(name)
        if old == value:
            continue
        if isinstance(value, bool):
            parts.append(f"{'+' if value else '-'}{name}")
        else:
            parts.append(f"{name}={value:#x}")
    return " ".join(parts) or "unchanged"


def _verdict(row: PteRow) -> Text:
    text = Text(str(row.verdict or "-"), style=_VERDICT_STYLE.get(row.verdict, ""))
    text.append(f"\n{row.reason}", style="dim")
    return text


def _table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left", title_style="bold", header_style="bold")


def _render_vmas(console: Console, step: StepResult) -> None:
    for v in step.vmas:
        head = Text(f"vma of {v.task}: ", style="bold")
        head.append(f"{v.start:#x}-{v.end:#x} {v.backing}, vm_pgoff {v.pgoff:#x}")
        first = next((r for r in step.ptes if r.task == v.task and r.address == v.start), None)
        if first is not None and first.pfn == v.pgoff:
            head.append(" (= the pfn mapped at vm_start)")
        console.print(head)
        flags = Text(f"  vm_flags {v.vm_flags:#x} = ")
        for i, name in enumerate(v.flags):
            flags.append(("|" if i else "") + name, style="bold" if name in _PFN_FLAGS else "")
        console.print(flags, overflow="fold")


def _pte_table(result: DemoResult, step: StepResult) -> Table:
    who = len({(r.task, r.stage) for r in step.ptes}) > 1
    table = _table("ptes: the raw entry, then the fields it has set, decoded by the arch's layout")
    if who:
        table.add_column("task")
    table.add_column("vaddr", no_wrap=True)
    table.add_column("pte", min_width=result.pte_bytes * 2)
    table.add_column("pfn", justify="right", no_wrap=True)
    table.add_column("struct page")
    table.add_column("vm_normal_page says", ratio=1)
    for row in step.ptes:
        cells: list[Any] = [row.task + (f"\n{row.stage}" if row.stage else "")] if who else []
        cells += [
            f"{row.address:#x}",
            Text(_hex_entry(result, row.raw)).append(f"\n{_fields(row.fields)}", style="dim"),
            "-" if row.pfn is None else f"{row.pfn:#x}",
            "yes" if row.has_struct_page else "no",
            _verdict(row),
        ]
        table.add_row(*cells)
    return table


def _fork_table(result: DemoResult, step: StepResult) -> Table:
    """Step (d): each mapping's pte in the parent before and after fork and in the child."""
    before = step.rows("parent", "before fork")
    after = step.rows("parent", "after fork")
    child = step.rows("child", "after fork")
    table = _table("ptes around fork (second line: the bits that differ from the parent's pte)")
    for col in ("mapping", "parent before fork", "parent after fork", "child"):
        table.add_column(col, no_wrap=col != "mapping")
    table.add_column("vm_normal_page says (child)", ratio=1)
    labels = step.facts["labels"]
    for label, b, a, c in zip(labels, before, after, child, strict=True):
        table.add_row(
            f"{label}\n{b.address:#x}",
            _hex_entry(result, b.raw),
            Text(_hex_entry(result, a.raw)).append(
                f"\n{_field_changes(b.fields, a.fields)}", style="dim"
            ),
            Text(_hex_entry(result, c.raw)).append(
                f"\n{_field_changes(b.fields, c.fields)}", style="dim"
            ),
            _verdict(c),
        )
    return table


def _page_table(step: StepResult) -> Table:
    table = _table("struct pages")
    for col in ("page", "when", "count", "mapcount", "flags", "mapping"):
        table.add_column(col, justify="right" if col in ("count", "mapcount") else "left")
    for track in step.pages:
        for i, (stage, info) in enumerate(track.snapshots):
            table.add_row(
                track.label if i == 0 else "",
                stage,
                str(info.count),
                str(info.mapcount),
                ",".join(info.flags) or "-",
                "-" if info.mapping is None else str(info.mapping).strip("<>"),
            )
    return table


def _step_footer(step: StepResult) -> Text:
    text = Text()
    for line in step.data:
        text.append(f"data: {line}\n")
    if step.rss:
        rss = "; ".join(
            f"{task} file_rss={c['file_rss']} anon_rss={c['anon_rss']}"
            for task, c in step.rss.items()
        )
        text.append(f"rss{' ' + step.rss_when if step.rss_when else ''}: {rss}\n")
    faults = ", ".join(
        f"{'write' if f.write else 'read'} at {f.address:#x} -> VM_FAULT_{f.result_name}"
        for f in step.faults
    )
    text.append(f"page faults: {len(step.faults)}" + (f" ({faults})" if faults else ""))
    text.append(f", print_bad_pte lines: {len(step.bad_ptes)}, check_invariants: ")
    text.append(*_invariants(step))
    return text


def _invariants(step: StepResult) -> tuple[str, str]:
    if step.invariants is None:
        return "ok", "green"
    return f"FAILED\n{step.invariants}", "bold red"


def render_demo(console: Console, result: DemoResult) -> None:
    """The full report of one run: a section per step with its tables and explanations."""
    io_name, io_start, io_size = result.io_region
    last_pfn = result.ram_bytes // result.page_size - 1
    console.rule(Text(f"pfnmap demo on {result.arch}", style="bold"))
    console.print(Text(result.description, style="italic"))
    console.print(
        f"{format_size(result.page_size)} pages, {result.pte_bytes}-byte {result.byteorder}-endian "
        f"ptes, kernel rules: {result.rules}\n"
        f"RAM {format_size(result.ram_bytes)} = pfn 0x0-{last_pfn:#x} (struct pages); "
        f"I/O region {io_name} at {io_start:#x}-{io_start + io_size:#x} "
        f"(no struct pages)",
        markup=False,
    )
    for step in result.steps:
        console.print()
        console.rule(Text(f"({step.key}) {step.title}", style="bold"), align="left")
        console.print(Text("kernel path: " + " -> ".join(step.kernel), style="bold blue"))
        console.print(step.why, markup=False)
        _render_vmas(console, step)
        if step.key == "d":
            console.print(_fork_table(result, step))
        elif step.ptes:
            console.print(_pte_table(result, step))
        if step.pages:
            console.print(_page_table(step))
        for note in step.notes:
            console.print(Text(note, style="yellow"))
        if step.key == "f":
            _render_summary(console, result)
        else:
            console.print(_step_footer(step))


def _render_summary(console: Console, result: DemoResult) -> None:
    if result.log:
        console.print(Text("machine log:", style="bold"))
        for line in result.log:
            console.print(Text(f"  {line}", style="red" if "Bad pte" in line else ""))
    else:
        console.print("machine log: empty (no print_bad_pte line, as expected)")
    table = _table("after every step")
    for col in ("step", "page faults", "print_bad_pte", "check_invariants"):
        table.add_column(col)
    for step in result.steps:
        table.add_row(
            f"({step.key}) {step.title}",
            str(len(step.faults)),
            str(len(step.bad_ptes)),
            Text(*_invariants(step)),
        )
    console.print(table)
    verdict = Text("result: ", style="bold")
    if result.ok:
        verdict.append("no bad pte, every invariant check passed", style="bold green")
    else:
        verdict.append("bad ptes or failed invariant checks, see above", style="bold red")
    console.print(verdict)


def _compare_rows() -> list[tuple[str, Callable[[DemoResult], str]]]:
    """(label, value) rows of the comparison; values kept short so five arches fit in 120."""

    def pte(key: str, task: str, stage: str, index: int = 0) -> Callable[[DemoResult], PteRow]:
        return lambda r: r.step(key).rows(task, stage)[index]

    def raw(key: str, task: str, stage: str, index: int = 0) -> Callable[[DemoResult], str]:
        get = pte(key, task, stage, index)
        return lambda r: _hex_entry(r, get(r).raw)

    def verdict(key: str, task: str, stage: str, index: int = 0) -> Callable[[DemoResult], str]:
        get = pte(key, task, stage, index)
        return lambda r: get(r).verdict.name if get(r).verdict else "-"

    def counts(key: str, track: int = 0) -> Callable[[DemoResult], str]:
        return lambda r: " ".join(
            f"{i.count}/{i.mapcount}" for _, i in r.step(key).pages[track].snapshots
        )

    def copy_source(r: DemoResult) -> str:
        c = r.step("c").facts
        return {"shifted": f"va+{c['offset']:#x}", "aligned": "va&PAGE_MASK"}.get(
            c["copy_source"], c["copy_source"]
        )

    def rss(key: str, task: str) -> Callable[[DemoResult], str]:
        return lambda r: "{file_rss}/{anon_rss}".format(**r.step(key).rss[task])

    return [
        ("page size", lambda r: format_size(r.page_size)),
        ("pte size, byte order", lambda r: f"{r.pte_bytes} B, {r.byteorder}"),
        ("(a) I/O pte", raw("a", "parent", "")),
        ("(a) pfn (no struct page)", lambda r: f"{r.step('a').ptes[0].pfn:#x}"),
        ("(a) vm_normal_page", verdict("a", "parent", "")),
        ("(a) rss file/anon", rss("a", "parent")),
        ("(b) RAM pte", raw("b", "parent", "")),
        ("(b) vm_normal_page", verdict("b", "parent", "")),
        ("(b) count/map before, after", counts("b")),
        ("(c) pte before write", raw("c", "parent", "before write")),
        ("(c) pte after write", raw("c", "parent", "after write")),
        ("(c) vm_normal_page", verdict("c", "parent", "after write")),
        ("(c) rss file/anon", rss("c", "parent")),
        ("(c) cow_user_page copied", copy_source),
        ("(c) payload read back", lambda r: "ok" if r.step("c").facts["payload_ok"] else "WRONG"),
        ("(d) parent COWed pte", raw("d", "parent", "after fork", 2)),
        ("(d) child COWed pte", raw("d", "child", "after fork", 2)),
        ("(d) child raw pte", raw("d", "child", "after fork", 3)),
        ("(d) child raw pte is", verdict("d", "child", "after fork", 3)),
        ("(d) COWed count/map", counts("d")),
        ("(d) child rss file/anon", rss("d", "child")),
        ("(e) COWed count/map", counts("e")),
        ("(f) print_bad_pte lines", lambda r: str(len(r.bad_ptes))),
        ("(f) invariants", lambda r: "ok" if r.invariants_ok else "FAILED"),
    ]


def semantic_signature(result: DemoResult) -> tuple:
    """What must not depend on the encoding: verdicts, counts, rss, the COW's data."""
    sig: list[Any] = []
    for step in result.steps:
        sig.append(tuple((r.task, r.stage, r.verdict, r.has_struct_page) for r in step.ptes))
        sig.append(
            tuple(tuple((i.count, i.mapcount, i.flags) for _, i in t.snapshots) for t in step.pages)
        )
        sig.append(tuple(sorted((k, tuple(sorted(v.items()))) for k, v in step.rss.items())))
        sig.append(step.invariants is None)
    c = result.step("c").facts
    sig += [c["copy_source"], c["payload_ok"], len(result.bad_ptes)]
    return tuple(sig)


def render_comparison(console: Console, results: list[DemoResult]) -> None:
    """One column per arch: the same story, different encodings, the same decisions (in as
    many tables, side by side within each, as the console's width needs)."""
    console.print()
    console.rule(Text("the same story on every arch", style="bold"))
    rows = _compare_rows()
    label_width = max(len(label) for label, _ in rows) + 3
    # an entry's 16 hex digits, or the arch's name, unbroken; as many arches per table as fit
    column_width = max([16] + [len(r.arch) for r in results]) + 3
    per_table = max(1, (console.width - label_width) // column_width)
    for start in range(0, len(results), per_table):
        chunk = results[start : start + per_table]
        table = _table()
        if start + per_table >= len(results):
            table.caption = (
                "count/map: struct page count/mapcount at each stage of the step (see its "
                "section). RAW_PFN: vm_normal_page returned NULL; COWED: it returned the "
                "COWed anonymous page."
            )
            table.caption_justify = "left"
        table.add_column("", no_wrap=True)
        for r in chunk:
            table.add_column(r.arch, overflow="fold", min_width=column_width - 3)
        for label, get in rows:
            table.add_row(label, *(get(r) for r in chunk))
        console.print(table)
    if len({semantic_signature(r) for r in results}) == 1:
        console.print(
            Text(
                "Every arch made the same decisions: the same verdicts, struct page counts, "
                "rss and COW data. Only the bits in the entries differ.",
                style="green",
            )
        )
    else:
        console.print(
            Text(
                "The arches disagree on verdicts, counts or rss, though the semantics should not "
                "depend on the encoding: compare the per-arch sections above.",
                style="bold red",
            )
        )
