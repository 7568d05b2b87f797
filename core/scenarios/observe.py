"""What a scenario records: outcomes of its steps, ptes, struct pages, rss, log lines, facts.

A scenario runs on one machine and talks to an :class:`Observer`. Every kernel-visible step goes
through :meth:`Observer.do`, which records how it ended (``ok``, an errno name, ``OOM``, a
signal, ``livelock`` or ``BUG``), the print_bad_pte lines it caused, and the
:class:`~pfnmap.kernel.rules.KernelRules` fields the kernel paths read meanwhile (the machine's
rules are wrapped in a :class:`RulesTracer` for the run). The other methods record state as rows
keyed by a label, so the same scenario under two eras yields rows that line up.

Failures are outcomes, not crashes: a VM_FAULT_OOM or a signal kills the task (its exit_mmap
runs, as the kernel's would), a KernelBug (the kernel's BUG_ON) ends the scenario, since the
machine is then in the state of an oopsed kernel.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from pfnmap.errors import KernelBug, KernelError, KernelLivelock, OutOfMemory, Signal
from pfnmap.kernel.rules import KernelRules
from pfnmap.machine.invariants import InvariantError

if TYPE_CHECKING:
    from collections.abc import Callable

    from pfnmap.machine import Machine, Process

_FIELDS = frozenset(f.name for f in fields(KernelRules)) - {"name"}


class RulesTracer:
    """Stands in for ``machine.rules`` and notes every rules field a kernel path reads."""

    def __init__(self, rules: KernelRules) -> None:
        self.rules = rules
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.rules, name)
        if name in _FIELDS:
            self.read.add(name)
        return value

    def take(self) -> tuple[str, ...]:
        """The fields read since the last call, sorted; starts a new count."""
        out = tuple(sorted(self.read))
        self.read.clear()
        return out


class _Failed:
    def __repr__(self) -> str:
        return "FAILED"

    def __bool__(self) -> bool:
        return False


#: what :meth:`Observer.do` returns when the step did not succeed
FAILED: Any = _Failed()


class StopScenario(Exception):
    """The kernel hit a BUG: nothing after it would say anything about the era."""


@dataclass
class Row:
    """One observation. ``value`` is what is compared across eras, ``detail`` shown beside it
    (and compared too), ``why`` is the kernel's reason, ``fields`` the rules fields read."""

    step: str
    key: str
    kind: str  # outcome, pte, vma, page, rss, log, fact, invariants
    value: Any
    detail: str = ""
    why: str = ""
    fields: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "key": self.key,
            "kind": self.kind,
            "value": self.value,
            "detail": self.detail,
            "why": self.why,
            "fields": list(self.fields),
        }


@dataclass
class StepRecord:
    """How one step ended, with the log lines it produced."""

    name: str
    outcome: str
    why: str
    fields: tuple[str, ...]
    log: list[str]
    bad_pte_callers: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "why": self.why,
            "fields": list(self.fields),
            "log": list(self.log),
            "bad_pte_callers": list(self.bad_pte_callers),
        }


@dataclass
class Observations:
    """Everything one scenario run recorded, on one arch under one era's rules."""

    scenario: str
    era: str
    arch: str
    rules: KernelRules
    rows: list[Row] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    #: why the run ended early (a KernelBug), else None
    stopped: str | None = None

    def step(self, name: str) -> StepRecord:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def row(self, key: str, step: str | None = None) -> Row:
        for row in self.rows:
            if row.key == key and (step is None or row.step == step):
                return row
        raise KeyError(key if step is None else f"{step}: {key}")

    @property
    def log(self) -> list[str]:
        return [line for step in self.steps for line in step.log]

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "era": self.era,
            "arch": self.arch,
            "rules": self.rules.as_dict(),
            "stopped": self.stopped,
            "steps": [s.as_dict() for s in self.steps],
            "rows": [r.as_dict() for r in self.rows],
        }


def outcome_name(exc: BaseException) -> str:
    """How a kernel call ended, as the scenarios record it: OOM, an errno name, a signal,
    livelock, BUG, or the exception's type."""
    if isinstance(exc, OutOfMemory):
        return "OOM"
    if isinstance(exc, KernelError):
        return exc.errname
    if isinstance(exc, Signal):
        return exc.signame
    if isinstance(exc, KernelLivelock):
        return "livelock"
    if isinstance(exc, KernelBug):
        return "BUG"
    return type(exc).__name__


class Observer:
    """Runs a scenario's steps on ``machine`` and records what they did."""

    def __init__(self, machine: Machine, scenario: str) -> None:
        self.machine = machine
        self.tracer = RulesTracer(machine.rules)
        machine.rules = self.tracer  # type: ignore[assignment]
        self.observations = Observations(
            scenario, machine.rules.name, machine.arch.name, self.tracer.rules
        )
        self.step_name = "setup"
        #: the rules fields the last step read: state recorded after it may owe them too
        self.step_fields: tuple[str, ...] = ()

    # steps ------------------------------------------------------------------------------------
    def do(self, step: str, fn: Callable[[], Any], proc: Process | None = None) -> Any:
        """Run one step; returns its result, or :data:`FAILED` (falsy) if it did not succeed.

        ``proc`` is the task doing it: a step of a task that is gone is recorded as skipped, and
        a VM_FAULT_OOM or a signal kills the task. A KernelBug ends the scenario.
        """
        self.step_name = step
        machine = self.machine
        if proc is not None and not proc.alive:
            now = len(machine.log), len(machine.bad_ptes)
            self._record(step, "skipped", f"{proc.comm} is gone", (), *now)
            return FAILED
        log0, bad0 = len(machine.log), len(machine.bad_ptes)
        self.tracer.take()
        try:
            result = fn()
        except (KernelError, Signal, KernelLivelock, KernelBug) as exc:
            outcome = outcome_name(exc)
            why = str(exc)
            fields_read = self.tracer.take()
            if isinstance(exc, (OutOfMemory, Signal)) and proc is not None and proc.alive:
                why += f"; the kernel kills {proc.comm}"
                self._record(step, outcome, why, fields_read, log0, bad0)
                self.do(f"{step}: {proc.comm} killed", proc.exit)
                return FAILED
            self._record(step, outcome, why, fields_read, log0, bad0)
            if isinstance(exc, KernelBug):
                self.observations.stopped = f"BUG in step {step!r}: {exc}"
                raise StopScenario(str(exc)) from exc
            return FAILED
        self._record(step, "ok", "", self.tracer.take(), log0, bad0)
        return result

    def _record(
        self, step: str, outcome: str, why: str, fields_read: tuple[str, ...], log0: int, bad0: int
    ) -> None:
        self.step_fields = fields_read
        machine = self.machine
        log = machine.log[log0:]
        callers = [r.caller for r in machine.bad_ptes[bad0:]]
        self.observations.steps.append(StepRecord(step, outcome, why, fields_read, log, callers))
        rows = self.observations.rows
        rows.append(Row(step, "result", "outcome", outcome, why=why, fields=fields_read))
        counts = Counter(callers)
        rows.append(
            Row(
                step,
                "Bad pte lines",
                "log",
                len(callers),
                why=", ".join(f"{c} x{n}" for c, n in counts.items()),
                fields=fields_read,
            )
        )
        other = [line for line in log if not line.startswith("Bad pte")]
        if other:
            rows.append(Row(step, "other log lines", "log", len(other), why=" | ".join(other)))

    # state ------------------------------------------------------------------------------------
    def at(self, stage: str) -> None:
        """Name the stage the next state rows belong to (by default: the last step). Lets two
        eras that got somewhere by different steps line their rows up."""
        self.step_name = stage

    def _add(self, key: str, kind: str, value: Any, detail: str = "", why: str = "") -> None:
        """A state row; its fields are those read to produce it and those the last step read
        (the step that made the state), since either may have made a difference."""
        fields_read = tuple(sorted(set(self.tracer.take()) | set(self.step_fields)))
        self.observations.rows.append(
            Row(self.step_name, key, kind, value, detail, why, fields_read)
        )

    def ptes(self, label: str, proc: Process, addr: int, npages: int = 1, first: int = 0) -> None:
        """vm_normal_page's verdict for ``npages`` pages from ``addr`` (without print_bad_pte's
        side effect), as ``label[first]``, ``label[first + 1]``..."""
        if not proc.alive:
            return
        page_size = self.machine.arch.page_size
        for i in range(npages):
            self.tracer.take()
            info = proc.lookup(addr + i * page_size)
            if info.verdict is not None:
                value = str(info.verdict)
            else:
                value = "none" if not info.raw else "not present"
            detail = f"pte {info.raw:#x}" + (f" pfn {info.pfn:#x}" if info.pfn is not None else "")
            key = f"pte {label}[{first + i}] ({proc.comm})"
            self._add(key, "pte", value, detail, info.reason)

    def vma(self, label: str, proc: Process, addr: int) -> None:
        """The vma's flags that this story is about (as the era named them) and vm_pgoff."""
        if not proc.alive:
            return
        vma = proc.mm.find_vma(addr)
        if vma is None or vma.vm_start > addr:
            self._add(f"vma {label} ({proc.comm})", "vma", "no vma")
            return
        rules = self.tracer.rules
        wanted = rules.flag_names(vma.vm_flags)
        # what remap_pfn_range sets: VM_IO|VM_RESERVED|VM_PFNMAP, from 3.7 with VM_DONTEXPAND
        # and VM_DONTDUMP instead of VM_RESERVED
        remap = ("VM_IO", "VM_RESERVED", "VM_DONTEXPAND", "VM_DONTDUMP", rules.pfnmap_flag_name)
        pfn_flags = [n for n in wanted if n in remap]
        pfn_flags += [n for n in wanted if n in ("VM_INSERTPAGE", "VM_MIXEDMAP", "VM_SHARED")]
        self._add(
            f"vma {label} ({proc.comm})",
            "vma",
            "|".join(pfn_flags) or "-",
            f"vm_pgoff {vma.vm_pgoff:#x}",
        )

    def page(self, label: str, pfn: int | None) -> None:
        """count and mapcount of one struct page."""
        if pfn is None or not self.machine.phys.pfn_valid(pfn):
            self._add(f"page {label}", "page", "no struct page")
            return
        info = self.machine.page(pfn)
        self._add(
            f"page {label}",
            "page",
            f"count {info.count} mapcount {info.mapcount}",
            f"pfn {pfn:#x}",
            ",".join(info.flags),
        )

    def rss(self, proc: Process) -> None:
        if not proc.alive:
            return
        mm = proc.mm
        self._add(f"rss ({proc.comm})", "rss", f"file {mm.file_rss} anon {mm.anon_rss}")

    def fact(self, key: str, value: Any, why: str = "") -> None:
        self._add(key, "fact", value, why=why)

    # the end ----------------------------------------------------------------------------------
    def finish(self) -> Observations:
        """Exit every task still alive, then audit the machine (unless the kernel BUGged)."""
        obs = self.observations
        if obs.stopped is None:
            try:
                for proc in list(self.machine.processes.values()):
                    if proc.alive:
                        self.do(f"cleanup: {proc.comm} exits", proc.exit, proc)
                self.step_name = "end"
                self.tracer.take()
                try:
                    self.machine.check_invariants()
                    self._add("invariants", "invariants", "ok")
                except InvariantError as exc:
                    problems = str(exc).splitlines()
                    self._add(
                        "invariants", "invariants", f"{len(problems)} problem(s)", why=problems[0]
                    )
            except StopScenario:
                pass
        self.machine.rules = self.tracer.rules
        return obs
