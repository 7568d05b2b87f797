"""A decoded dump as the page's JSON: the leaves as parallel arrays, in VA order, plus the
summary and the problems.

The page builds its tree from these arrays when a node is opened (a node's children are a
contiguous run of leaves, grouped by their index at the node's level), so a dump with 100k
leaves costs one array each and no DOM until someone looks. Strings that repeat (flags,
verdicts, page sizes) are listed once and referred to by index. The walk is a fresh
:class:`~pfnmap.decode.walker.Walker` over the image, bounded by ``max_leaves``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfnmap.decode.walker import Leaf, Problem, Walker, leaves
from pfnmap.kernel.units import format_size
from pfnmap.scenarios.snapshot import formats

from .page import write_html

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.decode.hints import Hints
    from pfnmap.decode.image import PhysImage

#: leaves a page holds at most (the rest are counted in the summary, not drawn)
MAX_LEAVES = 250_000
#: problem lines a page lists at most
MAX_PROBLEMS = 1000


class _Index(dict):
    """value -> its index in a list of distinct values, in first-seen order."""

    def of(self, value: Any) -> int:
        index = self.get(value)
        if index is None:
            index = self[value] = len(self)
        return index


def decode_data(
    image: PhysImage,
    arch: Arch,
    root: int,
    hints: Hints | None = None,
    *,
    image_name: str = "",
    max_tables: int | None = None,
    max_leaves: int = MAX_LEAVES,
) -> dict[str, Any]:
    walker = Walker(image, arch, root, max_tables=max_tables, grouped=True)
    va_digits = -(-max(arch.va_bits, 32) // 4)
    pa_digits = max(8, -(-arch.phys_bits // 4))
    cols: dict[str, list[Any]] = {k: [] for k in ("va", "pa", "size", "level", "raw", "flags",
                                                   "verdict")}  # fmt: skip
    sizes, flag_names, verdicts = _Index(), _Index(), _Index()
    problems: list[str] = []
    counted: Counter[str] = Counter()
    mapped = 0
    kept = 0
    for item in leaves(walker, arch, hints):
        if isinstance(item, Problem):
            if len(problems) < MAX_PROBLEMS:
                problems.append(item.line())
            continue
        leaf: Leaf = item
        mapped += leaf.size
        counted[format_size(leaf.size)] += 1
        if kept >= max_leaves:
            continue
        kept += 1
        cols["va"].append(f"{leaf.va:#0{va_digits + 2}x}")
        cols["pa"].append(f"{leaf.pa:#0{pa_digits + 2}x}")
        cols["size"].append(sizes.of(leaf.size))
        cols["level"].append(leaf.level)
        cols["raw"].append(f"{leaf.raw:#x}")
        cols["flags"].append(flag_names.of(" ".join(leaf.flags)))
        cols["verdict"].append(verdicts.of(leaf.verdict) if leaf.verdict is not None else -1)
    summary = {
        "arch": arch.name,
        "root": f"{root:#x}",
        "image": image_name,
        "image_kind": image.kind,
        "tables_read": walker.tables_read,
        "leaves": walker.leaf_entries,
        "mapped": format_size(mapped),
        "leaves by page size": ", ".join(f"{n} x {s}" for s, n in counted.items()) or "-",
        "problems": walker.problems,
        "complete": walker.finished and not walker.stopped,
    }
    return {
        "title": f"{arch.name} page tables at {root:#x}"
        + (f" in {image_name}" if image_name else ""),
        "subtitle": f"{walker.leaf_entries} leaves, {walker.tables_read} tables, "
        f"{walker.problems} problems; {format_size(mapped)} mapped",
        "arch": {"name": arch.name, "page_size": arch.page_size, **formats(arch)},
        "summary": summary,
        "problems": problems,
        "truncated": kept < walker.leaf_entries,
        "leaves": cols,
        "sizes": list(sizes),
        "size_names": [format_size(s) for s in sizes],
        "flags": list(flag_names),
        "verdicts": list(verdicts),
    }


def write_decode_html(
    path: str | os.PathLike[str],
    image: PhysImage,
    arch: Arch,
    root: int,
    hints: Hints | None = None,
    **kw: Any,
) -> Path:
    data = decode_data(image, arch, root, hints, **kw)
    return write_html(path, "decode", f"pfnmap decode: {data['title']}", data)
