"""An era comparison (:class:`pfnmap.scenarios.compare.Comparison`) as the page's JSON: its rows
grouped by step, one cell per era, and the rules fields the eras set differently."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .page import write_html

if TYPE_CHECKING:
    from pfnmap.scenarios.compare import Comparison


#: where an observation's detail names the raw pte (pfnmap.scenarios.observe.Observer.ptes)
_PTE = re.compile(r"\bpte (0x[0-9a-f]+)")


def _cell(value: Any, detail: str, why: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"value": str(value), "detail": detail, "why": why}
    m = _PTE.search(detail or "")
    if m:
        cell["raw"] = m.group(1)
    return cell


def compare_data(result: Comparison) -> dict[str, Any]:
    from pfnmap.plugins.manager import default_registry
    from pfnmap.scenarios.snapshot import formats

    steps: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    for row in result.rows:
        step = by_name.get(row.step)
        if step is None:
            step = by_name[row.step] = {"name": row.step, "rows": [], "differs": 0}
            steps.append(step)
        step["rows"].append(
            {
                "key": row.key,
                "kind": row.kind,
                "differs": row.differs,
                "fields": list(row.fields),
                "cells": {era: _cell(c.value, c.detail, c.why) for era, c in row.cells.items()},
            }
        )
        step["differs"] += row.differs
    rules = {era: result.runs[era].rules.as_dict() for era in result.eras}
    return {
        "title": f"{result.scenario}: {result.title}",
        "subtitle": f"arch {result.arch}, eras {', '.join(result.eras)}: "
        f"{len(result.differing())} of {len(result.rows)} observations differ",
        "scenario": result.scenario,
        "arch": {"name": result.arch, **formats(default_registry().get(result.arch))},
        "eras": list(result.eras),
        "steps": steps,
        "rules_differ": [
            {"field": name, "values": {era: str(rules[era][name]) for era in result.eras}}
            for name in result.rules_differ
        ],
        "stopped": {era: result.runs[era].stopped for era in result.eras},
        "differences": len(result.differing()),
        "total": len(result.rows),
    }


def write_compare_html(path: str | os.PathLike[str], result: Comparison) -> Path:
    data = compare_data(result)
    return write_html(path, "compare", f"pfnmap compare: {data['title']}", data)
