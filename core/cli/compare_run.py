"""What ``pfnmap compare`` does once its arguments are parsed (the parser is
:mod:`pfnmap.cli.compare`; this module is imported only when the command runs)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pfnmap.cli.compare import eras_arg
from pfnmap.cli.main import UsageError, arch_names
from pfnmap.scenarios import SCENARIOS, UnknownScenario
from pfnmap.scenarios.compare import MISSING, Comparison, compare

_KIND_STYLE = {"outcome": "bold", "log": "red", "pte": "cyan", "invariants": "magenta"}


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    if args.list:
        render_list(console)
        return 0
    if not args.scenario:
        raise UsageError("a scenario is required (see pfnmap compare --list)")
    if args.scenario not in SCENARIOS:
        raise UsageError(f"argument SCENARIO: {UnknownScenario(args.scenario)}")
    eras = eras_arg(args.eras)
    if args.arch == "all":
        raise UsageError("argument --arch: compare runs on one arch")
    html_out = None
    if args.html:
        from pfnmap.cli.run_run import html_target

        html_out = html_target(args.html)
    result = compare(args.scenario, eras, arch_names(args.arch)[0])
    if args.format == "json":
        console.file.write(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
    else:
        render_comparison(console, result, show_all=args.all)
    if html_out is not None:
        from pfnmap.render.html import HtmlError, write_compare_html

        try:
            write_compare_html(html_out, result)
        except HtmlError as exc:
            raise UsageError(f"argument --html: {exc}") from None
        # the JSON on stdout stays JSON: the note goes to stderr
        print(f"wrote {html_out}", file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


def render_list(console: Console) -> None:
    table = Table(title="scenarios", title_justify="left", header_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("what happens")
    table.add_column("kernel functions")
    for sc in SCENARIOS.values():
        table.add_row(Text(sc.name, style="bold"), sc.title, ", ".join(sc.kernel))
    console.print(table)


#: the table shortens an era's reason to this many characters (the JSON has all of it)
WHY_CHARS = 160


def _cell(value: object, detail: str, why: str, differs: bool) -> Text:
    text = Text(str(value), style="bold yellow" if differs else "")
    if detail:
        text.append(f"  {detail}", style="dim")
    if why:
        short = why if len(why) <= WHY_CHARS else why[: WHY_CHARS - 3] + "..."
        text.append(f"\n{short}", style="dim")
    return text


def render_comparison(console: Console, result: Comparison, show_all: bool = False) -> None:
    """The differing rows (all with ``show_all``), then the rules that differ."""
    rows = result.rows if show_all else result.differing()
    head = Text(f"{result.scenario}: {result.title}", style="bold")
    head.append(f"\narch {result.arch}, eras {', '.join(result.eras)}; ", style="")
    head.append(
        f"{len(result.differing())} of {len(result.rows)} observations differ", style="bold"
    )
    console.print(head)
    for era in result.eras:
        stopped = result.runs[era].stopped
        if stopped:
            console.print(Text(f"{era}: the run stopped: {stopped}", style="bold red"))
    table = Table(header_style="bold", show_lines=True)
    table.add_column("step", ratio=2, overflow="fold")
    table.add_column("observation", ratio=2, overflow="fold")
    for era in result.eras:
        table.add_column(era, ratio=3, overflow="fold")
    table.add_column("rules fields", ratio=2, overflow="fold")
    last_step = None
    for row in rows:
        cells = [
            _cell(c.value, c.detail, c.why, row.differs and c.value is not MISSING)
            for c in row.cells.values()
        ]
        table.add_row(
            row.step if row.step != last_step else "",
            Text(row.key, style=_KIND_STYLE.get(row.kind, "")),
            *cells,
            "\n".join(row.fields),
        )
        last_step = row.step
    if rows:
        console.print(table)
    else:
        console.print("no observation differs")
    if result.rules_differ:
        rules = Table(title="rules fields that differ", title_justify="left", header_style="bold")
        rules.add_column("field")
        for era in result.eras:
            rules.add_column(era)
        for name in result.rules_differ:
            rules.add_row(name, *[str(result.runs[e].rules.as_dict()[name]) for e in result.eras])
        console.print(rules)
