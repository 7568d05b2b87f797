"""Run one scenario under several eras and line up what each observed.

:func:`compare` boots one fresh machine per era (same arch, same RAM), plays the scenario on
each (:mod:`pfnmap.scenarios`) and merges the rows by (step, key). A row *differs* when its
value or detail is not the same in every era (a row missing in an era, because a step was
skipped or the run stopped, counts as "-"). Each row also names the rules fields that the
kernel paths read while producing it and that the compared eras set differently: the
decisions that can have made the difference. ``pfnmap compare`` prints the result as a table
or as JSON (:meth:`Comparison.as_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.kernel.rules import ERAS, KernelRules, rules_for
from pfnmap.machine import Machine
from pfnmap.scenarios import Observations, get_scenario

#: what a row holds in an era where it was not recorded
MISSING = "-"


@dataclass
class Cell:
    """One era's side of a row."""

    value: Any = MISSING
    detail: str = ""
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "detail": self.detail, "why": self.why}


@dataclass
class CompareRow:
    step: str
    key: str
    kind: str
    cells: dict[str, Cell]
    #: rules fields read for this row in some era whose values differ between the eras
    fields: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        seen = {(repr(c.value), c.detail) for c in self.cells.values()}
        return len(seen) > 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "key": self.key,
            "kind": self.kind,
            "differs": self.differs,
            "fields": list(self.fields),
            "values": {era: cell.as_dict() for era, cell in self.cells.items()},
        }


@dataclass
class Comparison:
    scenario: str
    title: str
    arch: str
    eras: list[str]
    runs: dict[str, Observations]
    rows: list[CompareRow]
    #: rules fields whose values are not the same in every compared era
    rules_differ: list[str]

    def differing(self) -> list[CompareRow]:
        return [r for r in self.rows if r.differs]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "arch": self.arch,
            "eras": list(self.eras),
            "rules": {era: self.runs[era].rules.as_dict() for era in self.eras},
            "rules_differ": list(self.rules_differ),
            "runs": {
                era: {
                    "stopped": run.stopped,
                    "log": run.log,
                    "steps": [s.as_dict() for s in run.steps],
                }
                for era, run in self.runs.items()
            },
            "rows": [r.as_dict() for r in self.rows],
            "differences": len(self.differing()),
        }


def differing_fields(rules: list[KernelRules]) -> list[str]:
    """The rules fields (other than the name) whose values are not all the same (flags are
    compared as bits: VM_UNPAGED and VM_PFNMAP are one bit under two names)."""
    names = [f.name for f in fields(KernelRules) if f.name not in ("name", "pfnmap_flag_name")]
    return [n for n in names if len({repr(getattr(r, n)) for r in rules}) > 1]


def run_era(scenario: str, era: str, arch: str, ram: int | str = "64M") -> Observations:
    """One scenario on a fresh machine of ``arch`` under ``era``'s rules."""
    return get_scenario(scenario).run(Machine(arch, ram, era=era))


def compare(
    scenario: str,
    eras: list[str] | None = None,
    arch: str = DEFAULT_ARCH,
    ram: int | str = "64M",
) -> Comparison:
    """Play ``scenario`` under each of ``eras`` (default: every era, oldest first)."""
    sc = get_scenario(scenario)
    eras = list(eras or ERAS)
    for era in eras:
        rules_for(era)  # an unknown name fails before anything runs
    if len(set(eras)) != len(eras):
        raise ValueError(f"an era is named twice in {eras}")
    runs = {era: run_era(scenario, era, arch, ram) for era in eras}
    rules_differ = differing_fields([runs[e].rules for e in eras])
    order: list[tuple[str, str]] = []
    merged: dict[tuple[str, str], CompareRow] = {}
    read: dict[tuple[str, str], set[str]] = {}
    for era in eras:
        for row in runs[era].rows:
            key = (row.step, row.key)
            if key not in merged:
                order.append(key)
                merged[key] = CompareRow(row.step, row.key, row.kind, {e: Cell() for e in eras})
                read[key] = set()
            cell = merged[key].cells[era]
            if cell.value is MISSING:  # the first row of that key in this era
                merged[key].cells[era] = Cell(row.value, row.detail, row.why)
                read[key].update(row.fields)
    rows = [merged[k] for k in _step_order(order, eras, runs)]
    for key, row in merged.items():
        row.fields = [f for f in rules_differ if f in read[key]]
    return Comparison(sc.name, sc.title, arch, eras, runs, rows, rules_differ)


def _step_order(
    order: list[tuple[str, str]], eras: list[str], runs: dict[str, Observations]
) -> list[tuple[str, str]]:
    """Rows grouped by step, steps in the order the runs took them (an era's extra steps, such
    as a fallback after a failure, stay next to where they happened)."""
    steps: list[str] = []
    for era in eras:
        prev = None
        for s in [r.step for r in runs[era].rows]:
            if s in steps:
                prev = s
                continue
            steps.insert(steps.index(prev) + 1 if prev in steps else len(steps), s)
            prev = s
    by_step: dict[str, list[tuple[str, str]]] = {s: [] for s in steps}
    for key in order:
        by_step[key[0]].append(key)
    return [k for s in steps for k in by_step[s]]
