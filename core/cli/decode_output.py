"""What ``pfnmap decode`` prints once the walk is set up: each ``--format``, the summary and
the problems on stderr (imported only when ``decode`` runs)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from pfnmap.arch import Arch
from pfnmap.cli.main import PROG
from pfnmap.decode.records import Item, Problem
from pfnmap.decode.walker import Walker, summary_hint

if TYPE_CHECKING:
    from rich.console import Console

    from pfnmap.decode.hints import Hints


def problem_line(problem: Problem) -> None:
    print(f"{PROG}: problem: {problem.line()}", file=sys.stderr)


def summary(args: argparse.Namespace, walker: Walker) -> dict[str, Any]:
    """The walk in numbers (the last record of jsonl and csv)."""
    return {
        "arch": walker.arch.name,
        "root": f"{walker.root:#x}",
        "image": args.image,
        "image_kind": walker.image.kind,
        "tables_read": walker.tables_read,
        "leaves": walker.leaf_entries,
        "problems": walker.problems,
        "complete": walker.finished and not walker.stopped,
    }


def summary_line(args: argparse.Namespace, walker: Walker) -> str:
    """The walk in one line for people."""
    s = summary(args, walker)
    return (
        f"{walker.arch.name} root {s['root']} in {args.image}: {s['leaves']} leaf entries, "
        f"{s['tables_read']} tables read, {s['problems']} problems"
        + ("" if s["complete"] else " (walk stopped early)")
    )


def _filtered(args: argparse.Namespace, walker: Walker, arch: Arch) -> Iterable[Item]:
    """The walk through ``--va-range``, ``--user``/``--kernel`` and ``--min-size``."""
    from pfnmap.cli.main import UsageError
    from pfnmap.decode.filters import FilterError, filter_items, make_filter, parse_va_range

    try:
        va_range = parse_va_range(args.va_range) if args.va_range else None
        f = make_filter(arch, va_range, args.user, args.kernel, args.min_size or 0)
    except FilterError as exc:
        raise UsageError(f"argument --va-range: {exc}") from None
    return walker if f.is_everything else filter_items(walker, f)


def write_output(
    args: argparse.Namespace,
    console: Console,
    out: TextIO,
    walker: Walker,
    arch: Arch,
    hints: Hints | None,
) -> None:
    """Run the walk into ``args.format`` on ``out``, through the leaf filters."""
    fmt = args.format
    items = _filtered(args, walker, arch)
    if fmt == "summary":
        from pfnmap.decode.formats.summary import write_summary

        write_summary(out, items, lambda: summary_line(args, walker), problem_line)
        return
    if fmt in ("jsonl", "csv"):
        from pfnmap.decode.formats.rows import write_rows

        write_rows(out, fmt, items, arch, hints, merge=args.ranges,
                   summary=lambda: summary(args, walker))  # fmt: skip
        return
    if fmt in ("qemu-tlb", "qemu-mem"):
        from pfnmap.decode.formats.qemu import write_qemu_mem, write_qemu_tlb

        (write_qemu_tlb if fmt == "qemu-tlb" else write_qemu_mem)(out, items, arch, problem_line)
    else:
        write_human_table(args, out, items, walker, arch, hints)
        return
    if walker.problems:
        print(f"{PROG}: {walker.problems} problems in the tables (above)", file=sys.stderr)


def colour_for(out: TextIO) -> bool:
    """Whether to colour what goes to ``out``: a terminal, unless NO_COLOR is set or TERM is
    dumb; FORCE_COLOR forces it (the conventions rich follows too)."""
    env = os.environ
    if env.get("FORCE_COLOR"):
        return True
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def write_human_table(
    args: argparse.Namespace,
    out: TextIO,
    items: Iterable[Item],
    walker: Walker,
    arch: Arch,
    hints: Hints | None,
) -> None:
    """``--format table``: the rows as they are decoded, then the summary line (and a hint
    when the walk looks like the wrong arch or root)."""
    from pfnmap.decode.formats.table import sgr, write_table

    colour = colour_for(out)
    write_table(out, items, arch, hints, merge=args.ranges, colour=colour)
    out.write(sgr(summary_line(args, walker), "1", colour) + "\n")
    hint = summary_hint(walker)
    if hint:
        out.write(sgr(f"hint: {hint}", "33", colour) + "\n")
