"""``pfnmap arches``: the registered arches and their paging geometry."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pfnmap.kernel.units import format_size

if TYPE_CHECKING:
    from rich.console import Console

    from pfnmap.plugins.manager import ArchRegistry


def add_parser(commands: argparse._SubParsersAction) -> None:
    arches = commands.add_parser(
        "arches",
        help="list the registered arches and their paging geometry",
        description="List the registered arches: page size, table levels, large pages, "
        "address widths and byte order. Broken third-party plugins are listed after the table.",
    )
    arches.set_defaults(func=cmd_arches)


def cmd_arches(args: argparse.Namespace, console: Console) -> int:
    from pfnmap.plugins import manager

    render_arches(console, manager.default_registry())
    return 0


def render_arches(console: Console, registry: ArchRegistry) -> None:
    """The arch table, then one warning line per broken plugin."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="registered arches",
        title_justify="left",
        header_style="bold",
        caption="levels: top first, entries per table x entry size",
        caption_justify="left",
    )
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for col in ("page size", "levels", "large pages", "VA bits", "PA bits", "byte order"):
        table.add_column(col, no_wrap=True, justify="right" if "bits" in col else "left")
    for name in registry.names():
        d = registry.arches[name].describe()
        levels = "\n".join(
            f"{lv_name} {entries} x {entry_bytes} B"
            for lv_name, entries, entry_bytes, _span in d["levels"]
        )
        large = ", ".join(format_size(size) for size in d["large_pages"]) or "-"
        table.add_row(
            Text(name, style="bold"),
            d["description"],
            format_size(d["page_size"]),
            levels,
            large,
            str(d["va_bits"]),
            str(d["phys_bits"]),
            d["byteorder"],
        )
    console.print(table)
    for plugin, error in registry.broken.items():
        console.print(
            Text(f"warning: skipped broken plugin {plugin!r}: {error.problem}"), style="yellow"
        )
