"""The human table of ``pfnmap decode``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pfnmap.arch import Arch
from pfnmap.decode.hints import Hints
from pfnmap.decode.records import Item, Problem
from pfnmap.decode.views import leaves, ranges

#: rows per rich table chunk: the human table is printed as it is decoded
TABLE_CHUNK = 256
#: widths of the human table's wrapping columns
FLAGS_WIDTH = 40
VERDICT_WIDTH = 23


_VERDICT_STYLE = {
    "raw pfn": "bold cyan",
    "COWed page in a PFN vma": "bold magenta",
    "normal page": "bold green",
    "bad pte": "bold red",
    "unknown": "yellow",
}


def _size(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def write_table(
    console: Console,
    items: Iterable[Item],
    arch: Arch,
    hints: Hints | None = None,
    merge: bool = False,
    chunk: int = TABLE_CHUNK,
) -> None:
    """The rich table, printed in chunks of ``chunk`` rows as the walk goes (memory stays
    flat); a problem is a red line between rows."""
    va_width = 16 if arch.va_bits > 32 else 8
    pa_width = max(8, -(-arch.phys_bits // 4))
    raw_width = max(lv.entry_bytes for lv in arch.levels) * 2
    level_width = max(len(f.name) for f in arch.leaf_formats if f is not None)
    show_verdict = hints is not None and hints.has_vmas
    # fixed widths, so the chunks line up as one table
    columns: list[tuple[str, int, str]] = [
        ("VA range" if merge else "VA", 2 * va_width + 1 if merge else va_width, "left"),
        ("PA", pa_width, "left"),
        ("size", 5, "right"),
    ]
    if merge:
        columns.append(("pages", 6, "right"))
    columns.append(("level", level_width, "left"))
    if not merge:
        columns.append(("entry", raw_width, "left"))
    columns.append(("flags", FLAGS_WIDTH, "left"))
    if show_verdict:
        columns.append(("verdict", VERDICT_WIDTH, "left"))
    columns = [(name, max(width, len(name)), justify) for name, width, justify in columns]
    needed = sum(w + 3 for _, w, _ in columns) + 4  # padding and the box's column dividers
    if console.width < needed:
        # never squeeze the columns (rich would cut hex numbers short): a narrow terminal wraps
        console.width = needed
    first = True
    table: Table | None = None

    def new_table() -> Table:
        nonlocal first
        t = Table(
            box=box.SIMPLE_HEAD,
            show_header=first,
            show_edge=False,
            header_style="bold",
            pad_edge=False,
        )
        first = False
        for name, width, justify in columns:
            wrap = name in ("flags", "verdict")
            t.add_column(name, width=width, justify=justify, no_wrap=not wrap)  # type: ignore[arg-type]
        return t

    def flush() -> None:
        nonlocal table
        if table is not None and table.row_count:
            console.print(table)
        table = None

    view = ranges if merge else leaves
    for rec in view(items, arch, hints):
        if isinstance(rec, Problem):
            flush()
            console.print(Text(f"problem: {rec.line()}", style="red"))
            continue
        if table is None:
            table = new_table()
        if merge:
            va = f"{rec.va:0{va_width}x}-{rec.va + rec.size:0{va_width}x}"
        else:
            va = f"{rec.va:0{va_width}x}"
        cells: list[Any] = [va, f"{rec.pa:0{pa_width}x}", _size(rec.size)]
        if merge:
            cells.append(str(rec.pages))
        flags = " ".join(rec.flags)
        cells.append(rec.name)
        if not merge:
            cells.append(f"{rec.raw:0{raw_width}x}")
        cells.append(flags)
        if show_verdict:
            v = Text(rec.verdict or "-", style=_VERDICT_STYLE.get(rec.verdict or "", "dim"))
            if rec.reason and rec.verdict in ("bad pte", "unknown"):
                v.append(f" ({rec.reason})", style="dim")
            cells.append(v)
        table.add_row(*cells)
        if table.row_count >= chunk:
            flush()
    flush()
