"""Play a scenario file (:mod:`pfnmap.scenarios.files`) on a machine and check its expectations.

:func:`play` boots nothing: it takes a fresh :class:`~pfnmap.machine.Machine`, adds the file's
devices, runs the steps through the process API and records, per step, how it ended, the page
faults and print_bad_pte lines it caused, a :mod:`~pfnmap.scenarios.snapshot` of the machine
afterwards, the invariant check, and each expectation's result. As in
:class:`~pfnmap.scenarios.observe.Observer`, failures are outcomes: an errno, ``OOM`` or a signal
(which kill the task, as the kernel would), ``BUG`` (a KernelBug: the run stops there, the
machine is an oopsed kernel). A step that fails without an ``outcome`` expectation is a failed
check of its own; at the end every task still alive exits and the invariants are checked (unless
``[end]`` expects otherwise).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pfnmap.errors import KernelBug, KernelError, KernelLivelock, OutOfMemory, PfnmapError, Signal
from pfnmap.kernel.constants import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED
from pfnmap.kernel.pgtable import pte_offset
from pfnmap.machine.invariants import InvariantError
from pfnmap.machine.recorder import EventRecorder
from pfnmap.scenarios import snapshot
from pfnmap.scenarios.files import Expect, ScenarioFile, Step, show_value
from pfnmap.scenarios.observe import outcome_name

if TYPE_CHECKING:
    from pfnmap.kernel.reports import BadPteReport, FaultReport
    from pfnmap.machine import Machine, Process


@dataclass
class Check:
    """One expectation's result: what was wanted, what the run had."""

    expect: Expect
    ok: bool
    got: str

    @property
    def line(self) -> int | None:
        return self.expect.line


@dataclass
class StepRun:
    """What one step did. ``step`` is None for the end of the run (cleanup and audit)."""

    step: Step | None
    outcome: str
    why: str = ""
    data: str = ""
    log: list[str] = field(default_factory=list)
    bad_ptes: list[BadPteReport] = field(default_factory=list)
    faults: list[FaultReport] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    snapshot: snapshot.Snapshot | None = None
    #: None when check_invariants passed after the step, else its first line
    invariants: str | None = None
    #: VAs this step addressed, per task: what the report shows first
    touched: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass
class Run:
    file: ScenarioFile
    arch: str
    era: str
    ram: int
    page_size: int
    steps: list[StepRun] = field(default_factory=list)
    end: StepRun | None = None
    stopped: str | None = None
    formats: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    @property
    def checks(self) -> list[Check]:
        every = [c for s in self.steps for c in s.checks]
        return every + (self.end.checks if self.end else [])

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failed


class _Stop(Exception):
    pass


def add_devices(machine: Machine, sc: ScenarioFile) -> None:
    """Create the file's ``[[machine.device]]`` entries on ``machine``."""
    from pfnmap.scenarios.drivers import MixedDriver, PageDriver, Piece, RemapDriver, ram_window

    for dev in sc.devices:
        a = dev.args
        if dev.kind == "iomem":
            machine.add_iomem_device(dev.path, a.get("region", "fb0"))
        elif dev.kind == "buffer":
            machine.add_device_buffer(dev.path, a.get("pages", 1))
        elif dev.kind == "file":
            machine.create_file(dev.path, a.get("data", "").encode())
        elif dev.kind == "remap":
            window = _window(machine, a.get("window", "fb0"), a.get("window_pages", 16), ram_window)
            ps = machine.arch.page_size
            # [vma page, pages, window page]: in pages, so one file fits every page size
            pieces = [Piece(p, n, w * ps) for p, n, w in a["pieces"]] if "pieces" in a else None
            machine.add_inode(
                RemapDriver(
                    machine,
                    dev.path,
                    window,
                    pieces,
                    io=a.get("io", True),
                    prot=a.get("prot", "vma"),
                    clear_vm_io=a.get("clear_vm_io", False),
                )
            )
        elif dev.kind == "pages":
            machine.add_inode(PageDriver(machine, dev.path, a.get("pages", 1)))
        elif dev.kind == "mixed":
            window = machine.phys.io_regions[0]
            machine.add_inode(MixedDriver(machine, dev.path, window, list(a["layout"])))


def _window(machine: Machine, name: str, npages: int, ram_window: Any) -> Any:
    if name == "ram":
        return ram_window(machine, 0, npages)
    for region in machine.phys.io_regions:
        if region.name == name:
            return region
    raise KernelError(errno.ENODEV, f"no I/O region {name!r}")


class _Player:
    def __init__(self, machine: Machine, sc: ScenarioFile) -> None:
        self.m = machine
        self.sc = sc
        self.ps = machine.arch.page_size
        self.tasks: dict[str, Process] = {}
        self.fds: dict[tuple[str, str], int] = {}
        self.maps: dict[str, int] = {}
        self.regions = {r.name: r.start for r in machine.phys.io_regions} | {"ram": 0}
        self.rec = EventRecorder(machine)

    # the steps --------------------------------------------------------------------------
    def va(self, step: StepRun, task: str, expr: Any) -> int:
        addr = expr.eval(self.ps, self.maps)
        step.touched.append((task, addr & ~(self.ps - 1)))
        return addr

    def do(self, step: Step, run: StepRun) -> None:
        a = step.args
        name = step.task
        if step.do == "spawn":
            self.tasks[name] = self.m.spawn(name)
            return
        proc = self.tasks[name]
        if step.do == "open":
            self.fds[name, a["fd"]] = proc.open(a["path"])
        elif step.do == "close":
            proc.close(self.fds.pop((name, a["fd"])))
        elif step.do == "mmap":
            length = a["length"].eval(self.ps)
            flags = MAP_SHARED if a["flags"] == "shared" else MAP_PRIVATE
            fd = None
            if "file" in a:
                fd = self.fds[name, a["file"]]
            else:
                flags |= MAP_ANONYMOUS
            offset = a["offset"].eval(self.ps, self.regions) if "offset" in a else 0
            addr = proc.mmap(length, a["prot"], flags, fd, offset=offset)
            self.maps[a["name"]] = addr
            run.touched += [(name, addr + i) for i in range(0, min(length, 64 * self.ps), self.ps)]
            run.data = f"{a['name']} = {addr:#x}-{addr + length:#x}"
        elif step.do == "munmap":
            proc.munmap(self.va(run, name, a["at"]), a["length"].eval(self.ps))
        elif step.do == "mprotect":
            proc.mprotect(self.va(run, name, a["at"]), a["length"].eval(self.ps), a["prot"])
        elif step.do == "read":
            n = a["length"].eval(self.ps) if "length" in a else 8
            data = proc.read(self.va(run, name, a["at"]), n)
            run.data = f"read {n} bytes: {data[:16].hex(' ')}" + (" ..." if n > 16 else "")
        elif step.do == "write":
            data = a["data"].encode()
            proc.write(self.va(run, name, a["at"]), data)
            run.data = f"wrote {len(data)} bytes"
        elif step.do == "fork":
            child = a["child"]
            self.tasks[child] = proc.fork(child)
            for (task, fdname), fd in list(self.fds.items()):
                if task == name:
                    self.fds[child, fdname] = fd
        elif step.do == "exit":
            proc.exit()
        elif step.do == "gup":
            addr = self.va(run, name, a["at"])
            pages = proc.get_user_pages(addr, a.get("pages", 1), a.get("write", False))
            run.data = "pinned pfns " + ", ".join(f"{p:#x}" for p in pages)
            if a.get("release", True):
                proc.put_pages(pages)
                run.data += ", released"
        elif step.do == "poke":
            self.poke(proc, self.va(run, name, a["at"]), a, run)
        else:  # the checker knows every kind; a new kind needs its player here
            raise AssertionError(step.do)

    def poke(self, proc: Process, addr: int, a: dict[str, Any], run: StepRun) -> None:
        """Write a pte directly, as a buggy driver or a stray store would."""
        slot = pte_offset(proc.mm, addr)
        if slot is None:
            raise KernelError(errno.EFAULT, f"no pte table for {addr:#x}")
        tables = self.m.tables
        old = tables.read_pte(slot)
        if "value" in a:
            new = a["value"]
        else:
            fmt = self.m.arch.pte_format
            new = old
            for fname, value in a["fields"].items():
                f = fmt.fields.get(fname)
                if f is None:
                    known = ", ".join(fmt.fields)
                    raise KernelError(
                        errno.EINVAL, f"{self.m.arch.name}'s pte has no field {fname!r} ({known})"
                    )
                new = (new & ~f.mask) | ((value << f.shift) & f.mask)
        tables.write_pte(slot, new)
        run.data = f"pte at {slot:#x}: {old:#x} -> {new:#x}"

    # expectations -----------------------------------------------------------------------
    def check(self, e: Expect, task: str | None, run: StepRun, end: bool) -> Check:
        """One expectation: ok when every check it names holds; ``got`` says what was there."""
        who = e.task or task
        proc = self.tasks.get(who) if who else None
        info = None
        if e.at is not None:
            if proc is None or not proc.alive:
                return Check(e, False, f"task {who!r} is gone")
            info = proc.lookup(e.at.eval(self.ps, self.maps))
        ok_all = True
        seen = []
        for key, want in e.checks.items():
            got = self._got(key, want, info, proc, run, end)
            if key == "fields":
                ok = isinstance(got, dict) and all(got.get(k) == v for k, v in want.items())
                shown = show_value(got) if isinstance(got, dict) else str(got)
            elif key == "log":
                ok = isinstance(got, list) and any(want in line for line in got)
                shown = " | ".join(got) if isinstance(got, list) and got else "no log line"
            else:
                ok = got == want
                shown = show_value(got)
            ok_all = ok_all and ok
            seen.append(f"{key} = {shown}")
        return Check(e, ok_all, ", ".join(seen))

    def _got(self, key: str, want: Any, info: Any, proc: Any, run: StepRun, end: bool) -> Any:
        m = self.m
        if key == "outcome":
            return run.outcome
        if key == "verdict":
            if info.verdict is not None:
                return info.verdict.name
            return "none" if not info.raw else "NOT_PRESENT"
        if key == "pfn":
            return info.pfn
        if key == "present":
            return info.present
        if key in ("writable", "dirty", "young"):
            # the arch's own pte_write / pte_dirty / pte_young, whatever its bits are called
            if not info.present or info.level != m.arch.levels[-1].name:
                return "not a present pte"
            test = {"writable": m.arch.pte_write, "dirty": m.arch.pte_dirty,
                    "young": m.arch.pte_young}[key]  # fmt: skip
            return bool(test(info.raw))
        if key == "fields":
            fields = {k: int(v) for k, v in info.fields.items()}
            missing = [k for k in want if k not in fields]
            if missing:
                return f"no field {missing[0]!r} in {m.arch.name}'s entry ({', '.join(fields)})"
            return {k: fields[k] for k in want}
        if key in ("count", "mapcount"):
            if info.pfn is None or not m.phys.pfn_valid(info.pfn):
                return "no struct page"
            return getattr(m.page(info.pfn), key)
        if key in ("file_rss", "anon_rss"):
            if proc is None or not proc.alive:
                return "task gone"
            return getattr(proc.mm, key)
        if key == "bad_ptes":
            return len(m.bad_ptes) if end else len(run.bad_ptes)
        if key == "log":
            return list(m.log) if end else list(run.log)
        if key == "invariants":
            return run.invariants is None
        raise AssertionError(key)


def play(sc: ScenarioFile, machine: Machine, snapshots: bool = True) -> Run:
    """Run ``sc`` on ``machine`` (a fresh one, booted for the file's or the user's arch/era)."""
    arch = machine.arch
    run = Run(sc, arch.name, machine.rules.name, machine.phys.ram_bytes, arch.page_size)
    run.formats = snapshot.formats(machine.arch)
    player = _Player(machine, sc)
    pm = machine.plugin_manager
    pm.register(player.rec)
    try:
        add_devices(machine, sc)
        for step in sc.steps:
            record = _play_step(player, step, run)
            run.steps.append(record)
            if record.outcome == "BUG":
                run.stopped = f"BUG in step {step.index + 1} ({step.do}): {record.why}"
                break
        run.end = _finish(player, run)
    finally:
        pm.unregister(player.rec)
    if not snapshots:
        for s in run.steps:
            s.snapshot = None
    run.log = list(machine.log)
    return run


def _play_step(player: _Player, step: Step, run: Run) -> StepRun:
    m = player.m
    rec = player.rec
    record = StepRun(step, "ok")
    log0, bad0, faults0 = len(m.log), len(rec.bad), len(rec.faults)
    proc = player.tasks.get(step.task)
    if step.do != "spawn" and (proc is None or not proc.alive):
        record.outcome, record.why = "skipped", f"{step.task} is gone"
    else:
        try:
            player.do(step, record)
        except (KernelError, Signal, KernelLivelock, KernelBug) as exc:
            record.outcome, record.why = outcome_name(exc), str(exc)
            if isinstance(exc, (OutOfMemory, Signal)) and proc is not None and proc.alive:
                record.why += f"; the kernel kills {proc.comm}"
                try:
                    proc.exit()
                except PfnmapError as again:  # exit_mmap itself can BUG
                    record.outcome, record.why = outcome_name(again), str(again)
    record.log = m.log[log0:]
    record.bad_ptes = rec.bad[bad0:]
    record.faults = rec.faults[faults0:]
    if record.outcome != "BUG":
        record.invariants = _invariants(m)
    record.snapshot = snapshot.take(m)
    for e in step.expects:
        if e.applies(run.era, run.arch):
            record.checks.append(player.check(e, step.task, record, end=False))
    if record.outcome not in ("ok", "skipped") and not any(
        "outcome" in c.expect.checks for c in record.checks
    ):
        implicit = Expect(step.line, {"outcome": "ok"})
        record.checks.append(Check(implicit, False, f"outcome = {record.outcome!r}"))
    return record


def _invariants(m: Machine) -> str | None:
    try:
        m.check_invariants()
    except InvariantError as exc:
        return str(exc).splitlines()[0]
    return None


def _finish(player: _Player, run: Run) -> StepRun:
    m = player.m
    end = StepRun(None, "ok")
    log0, bad0 = len(m.log), len(player.rec.bad)
    if run.stopped is None:
        for proc in list(m.processes.values()):
            if proc.alive:
                try:
                    proc.exit()
                except PfnmapError as exc:
                    end.outcome, end.why = outcome_name(exc), f"{proc.comm} exits: {exc}"
                    break
        if end.outcome != "BUG":
            end.invariants = _invariants(m)
    end.log = m.log[log0:]
    end.bad_ptes = player.rec.bad[bad0:]
    end.snapshot = snapshot.take(m)
    applicable = [e for e in run.file.end if e.applies(run.era, run.arch)]
    for e in applicable:
        end.checks.append(player.check(e, None, end, end=True))
    if run.stopped is None and not any("invariants" in e.checks for e in applicable):
        ok = end.invariants is None
        implicit = Expect(None, {"invariants": True})
        end.checks.append(Check(implicit, ok, "invariants = " + ("true" if ok else end.invariants)))
    return end
