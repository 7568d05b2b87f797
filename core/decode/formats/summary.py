"""``--format summary``: what a walk found, in a few lines (leaves per level and page size,
problems per kind), with nothing per leaf."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TextIO

from pfnmap.decode.formats.table import size_text
from pfnmap.decode.records import Item, Problem


def count_items(
    items: Iterable[Item], on_problem: Callable[[Problem], None] | None = None
) -> tuple[Counter, Counter, Counter]:
    """Leaves and present leaves per ``(level name, page size)``, problems per kind."""
    leaves: Counter = Counter()
    present: Counter = Counter()
    problems: Counter = Counter()
    for item in items:
        if isinstance(item, Problem):
            problems[item.kind] += 1
            if on_problem is not None:
                on_problem(item)
            continue
        key = (item.level, item.name, item.size)
        leaves[key] += len(item)
        present[key] += int(item.present.sum())
    return leaves, present, problems


def write_summary(
    out: TextIO,
    items: Iterable[Item],
    headline: Callable[[], str],
    on_problem: Callable[[Problem], None] | None = None,
) -> None:
    """The counts, under ``headline()`` (called after the walk: the walker's own totals)."""
    leaves, present, problems = count_items(items, on_problem)
    lines = [headline()]
    total = sum(leaves.values())
    for (_, name, size), n in sorted(leaves.items()):
        mib = n * size / (1 << 20)
        lines.append(
            f"  {name:<8} {size_text(size):>5}: {n:>9} leaves, {present[(_, name, size)]:>9} "
            f"present, {mib:,.1f} MiB"
        )
    if not total:
        lines.append("  no leaves")
    for kind, n in sorted(problems.items()):
        lines.append(f"  problem {kind}: {n}")
    out.write("\n".join(lines) + "\n")
