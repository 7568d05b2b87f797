"""The seed's story, told on an emulated machine: ``pfnmap demo``.

:func:`run_demo` plays six steps on one machine and returns what happened as data
(:class:`DemoResult`), so tests assert on outcomes and not on text. :func:`render_demo` and
:func:`render_comparison` turn results into rich tables for people.

Every page-size dependent number comes from ``machine.arch``: the same story runs unchanged on
4 KiB and 8 KiB pages, 32- and 64-bit entries, either byte order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pfnmap.errors import KernelBug, OutOfMemory, PfnmapError
from pfnmap.kernel.constants import MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from pfnmap.kernel.normal_page import Verdict
from pfnmap.machine.invariants import InvariantError
from pfnmap.machine.recorder import EventRecorder

if TYPE_CHECKING:
    from pfnmap.kernel.reports import BadPteReport, FaultReport
    from pfnmap.machine import Machine, PageInfo, Process

#: pages in the shared /dev/mem mappings of steps (a) and (b)
DEMO_PAGES = 4
#: what step (c) writes into the private mapping, at an offset inside the page
PAYLOAD = b"written by pfnmap demo"
#: bytes of each page shown as a sample of its contents
SAMPLE_BYTES = 8


# results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VmaRow:
    """One vma as the step left it."""

    task: str
    start: int
    end: int
    vm_flags: int
    flags: tuple[str, ...]
    pgoff: int
    backing: str


@dataclass(frozen=True)
class PteRow:
    """One pte: raw value, construct-decoded fields and vm_normal_page's verdict."""

    task: str
    stage: str
    address: int
    raw: int
    fields: dict[str, Any]
    pfn: int | None
    has_struct_page: bool
    verdict: Verdict | None
    reason: str


@dataclass(frozen=True)
class PageTrack:
    """One struct page followed through a step: ``(stage, snapshot)`` pairs in order."""

    label: str
    snapshots: tuple[tuple[str, PageInfo], ...]

    @property
    def first(self) -> PageInfo:
        return self.snapshots[0][1]

    @property
    def last(self) -> PageInfo:
        return self.snapshots[-1][1]

    def at(self, stage: str) -> PageInfo:
        for name, info in self.snapshots:
            if name == stage:
                return info
        raise KeyError(stage)


@dataclass
class StepResult:
    """What one step did, and whether the machine was consistent afterwards."""

    key: str
    title: str
    kernel: tuple[str, ...]
    why: str
    vmas: list[VmaRow] = field(default_factory=list)
    ptes: list[PteRow] = field(default_factory=list)
    pages: list[PageTrack] = field(default_factory=list)
    rss: dict[str, dict[str, int]] = field(default_factory=dict)
    #: when ``rss`` was taken, if not at the end of the step
    rss_when: str = ""
    #: what the tasks read and wrote, in words
    data: list[str] = field(default_factory=list)
    faults: list[FaultReport] = field(default_factory=list)
    bad_ptes: list[BadPteReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    #: None when machine.check_invariants() passed after the step, else its message
    invariants: str | None = None

    def rows(self, task: str | None = None, stage: str | None = None) -> list[PteRow]:
        return [
            r
            for r in self.ptes
            if (task is None or r.task == task) and (stage is None or r.stage == stage)
        ]


@dataclass
class DemoResult:
    """The whole story on one arch."""

    arch: str
    description: str
    page_size: int
    pte_bytes: int
    byteorder: str
    ram_bytes: int
    io_region: tuple[str, int, int]
    rules: str
    steps: list[StepResult] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    bad_ptes: list[BadPteReport] = field(default_factory=list)

    def step(self, key: str) -> StepResult:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)

    @property
    def invariants_ok(self) -> bool:
        return all(step.invariants is None for step in self.steps)

    @property
    def ok(self) -> bool:
        """No print_bad_pte line (but those a step expects of its era, see step (c)) and every
        invariant check passed."""
        expected = sum(step.facts.get("expected_bad_ptes", 0) for step in self.steps)
        return self.invariants_ok and len(self.bad_ptes) <= expected


class DemoError(PfnmapError):
    """A step of the story failed; names the arch and the step, keeps the cause."""

    def __init__(self, arch: str, key: str, title: str, cause: Exception) -> None:
        self.arch = arch
        self.key = key
        self.cause = cause
        super().__init__(f"demo on {arch}, step ({key}) {title}: {type(cause).__name__}: {cause}")

    @property
    def out_of_memory(self) -> bool:
        """Whether the machine ran out of RAM (possibly reported as another errno, as
        mmap_mem turns a failed remap into EAGAIN)."""
        exc: BaseException | None = self.cause
        while exc is not None:
            if isinstance(exc, OutOfMemory):
                return True
            exc = exc.__cause__
        return False


# the story ----------------------------------------------------------------------------------
class _Story:
    """The state shared by the steps: the machine, the tasks and the addresses mapped."""

    def __init__(self, machine: Machine, recorder: EventRecorder) -> None:
        self.m = machine
        # taken before the parent exists: when everybody has exited, all must be free again
        self.free_at_start = machine.phys.free_pages()
        self.arch = machine.arch
        self.ps = machine.arch.page_size
        self.rec = recorder
        self.io = machine.phys.io_regions[0]
        self.parent: Process = machine.spawn("parent")
        self.child: Process | None = None
        self.fd = self.parent.open("/dev/mem")
        self.io_addr = self.ram_addr = self.cow_addr = 0
        self.ram_pfns: list[int] = []
        #: the page step (c)'s COW made; None where that write ended in VM_FAULT_OOM (before
        #: the seed, COW of device memory is print_bad_pte and OOM)
        self.cow_pfn: int | None = 0

    # helpers --------------------------------------------------------------------------------
    def pte(self, task: Process, addr: int, stage: str = "") -> PteRow:
        info = task.lookup(addr)
        return PteRow(
            task=task.comm,
            stage=stage,
            address=addr,
            raw=info.raw,
            fields=dict(info.fields),
            pfn=info.pfn,
            has_struct_page=info.pfn is not None and self.m.phys.pfn_valid(info.pfn),
            verdict=info.verdict,
            reason=info.reason,
        )

    def vma(self, task: Process, addr: int) -> VmaRow:
        vma = task.mm.find_vma(addr)
        if vma is None or vma.vm_start > addr:
            raise KernelBug(f"no vma at {addr:#x} right after mmap returned it")
        backing = getattr(vma.vm_file, "path", None) or "anon"
        return VmaRow(
            task.comm,
            vma.vm_start,
            vma.vm_end,
            vma.vm_flags,
            tuple(vma.flag_names()),
            vma.vm_pgoff,
            backing,
        )

    def rss(self, *tasks: Process) -> dict[str, dict[str, int]]:
        return {t.comm: {"file_rss": t.mm.file_rss, "anon_rss": t.mm.anon_rss} for t in tasks}

    def phys_sample(self, paddr: int) -> bytes:
        return self.m.phys.read(paddr, SAMPLE_BYTES)

    def cow_page(self) -> PageInfo | None:
        return None if self.cow_pfn is None else self.m.page(self.cow_pfn)

    def cow_track(self, snapshots: tuple[tuple[str, PageInfo | None], ...]) -> PageTrack:
        if self.cow_pfn is None:
            return PageTrack("no COWed page: step (c) ended in VM_FAULT_OOM", ())
        return PageTrack(f"pfn {self.cow_pfn:#x} (COWed)", snapshots)  # type: ignore[arg-type]

    # the steps --------------------------------------------------------------------------------
    def step_a(self, step: StepResult) -> None:
        """Facts: first_pfn, vm_pgoff, pfns, verdicts, has_struct_page, data_ok, sample."""
        p, ps = self.parent, self.ps
        first_pfn = self.io.start >> self.arch.page_shift
        self.io_addr = p.mmap(DEMO_PAGES * ps, PROT_READ, MAP_SHARED, self.fd, offset=self.io.start)
        samples = [p.read(self.io_addr + i * ps, SAMPLE_BYTES) for i in range(DEMO_PAGES)]
        step.vmas.append(self.vma(p, self.io_addr))
        step.ptes += [self.pte(p, self.io_addr + i * ps) for i in range(DEMO_PAGES)]
        step.rss = self.rss(p)
        expected = [self.phys_sample(self.io.start + i * ps) for i in range(DEMO_PAGES)]
        step.data.append(
            f"read {SAMPLE_BYTES} bytes at the start of each page; page 0: "
            f"{samples[0].hex(' ')}, "
            + ("the device's bytes" if samples == expected else "NOT the device's bytes")
        )
        step.facts.update(
            first_pfn=first_pfn,
            vm_pgoff=step.vmas[0].pgoff,
            verdicts=[r.verdict for r in step.ptes],
            has_struct_page=[r.has_struct_page for r in step.ptes],
            pfns=[r.pfn for r in step.ptes],
            data_ok=samples == expected,
            sample=samples[0],
        )

    def step_b(self, step: StepResult) -> None:
        """Facts: pfns, verdicts, has_struct_page, pages_unchanged, data_ok, sample."""
        p, ps, m = self.parent, self.ps, self.m
        npages = min(DEMO_PAGES, m.phys.reserved_low_pages)
        self.ram_pfns = list(range(npages))
        before = [m.page(pfn) for pfn in self.ram_pfns]
        self.ram_addr = p.mmap(npages * ps, PROT_READ, MAP_SHARED, self.fd, offset=0)
        samples = [p.read(self.ram_addr + i * ps, SAMPLE_BYTES) for i in range(npages)]
        after = [m.page(pfn) for pfn in self.ram_pfns]
        step.vmas.append(self.vma(p, self.ram_addr))
        step.ptes += [self.pte(p, self.ram_addr + i * ps) for i in range(npages)]
        step.pages += [
            PageTrack(f"pfn {pfn:#x}", (("before mmap", b), ("after read", a)))
            for pfn, b, a in zip(self.ram_pfns, before, after, strict=True)
        ]
        step.rss = self.rss(p)
        expected = [self.phys_sample(pfn << self.arch.page_shift) for pfn in self.ram_pfns]
        step.data.append(
            f"read {SAMPLE_BYTES} bytes at the start of each page; page 0: "
            f"{samples[0].hex(' ')}, "
            + ("the bytes in RAM" if samples == expected else "NOT the bytes in RAM")
        )
        step.facts.update(
            pfns=[r.pfn for r in step.ptes],
            verdicts=[r.verdict for r in step.ptes],
            has_struct_page=[r.has_struct_page for r in step.ptes],
            pages_unchanged=before == after,
            data_ok=samples == expected,
            sample=samples[0],
        )

    def step_c(self, step: StepResult) -> None:
        """Facts: offset, fault_address, write_faults, pte_writable_before/after, cow_pfn,
        verdict_before/after, neighbour_verdict, anon_rss, file_rss, payload_ok, copy_source
        (see :func:`_copy_source`), copy_aligned_rule, page_start_before/after."""
        p, ps, arch, m = self.parent, self.ps, self.arch, self.m
        offset = ps // 16  # write inside the page, not at its start, to expose the seed's copy
        device = self.io.start + DEMO_PAGES * ps
        self.cow_addr = addr = p.mmap(
            2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, self.fd, offset=device
        )
        step.vmas.append(self.vma(p, addr))
        step.ptes += [self.pte(p, addr + i * ps, "before write") for i in range(2)]
        seen = p.read(addr, 2 * ps)  # what the user saw there before the write
        faults_before, bad_before = len(self.rec.faults), len(self.rec.bad)
        killed = ""
        try:
            p.write(addr + offset, PAYLOAD)
        except OutOfMemory as exc:
            if not m.rules.wp_copy_from_struct_page:
                raise
            killed = str(exc)  # the kernel kills the task; the story keeps it to go on
            step.facts["expected_bad_ptes"] = len(self.rec.bad) - bad_before
        write_faults = self.rec.faults[faults_before:]
        after = [self.pte(p, addr + i * ps, "after write") for i in range(2)]
        step.ptes += after
        self.cow_pfn = None if killed else after[0].pfn
        page = b""
        if self.cow_pfn is not None:
            page = m.phys.read(self.cow_pfn << arch.page_shift, ps)
            step.pages.append(
                PageTrack(f"pfn {self.cow_pfn:#x} (new)", (("after write", m.page(self.cow_pfn)),))
            )
        step.rss = self.rss(p)
        source = _copy_source(page, seen, offset, len(PAYLOAD)) if page else "none (OOM)"
        payload_ok = not killed and p.read(addr + offset, len(PAYLOAD)) == PAYLOAD
        step.data.append(
            f"wrote {PAYLOAD.decode()!r} at {addr + offset:#x}; read back: "
            + ("the same" if payload_ok else "SOMETHING ELSE")
        )
        step.facts.update(
            offset=offset,
            fault_address=addr + offset,
            write_faults=[(f.write, f.result_name) for f in write_faults],
            pte_writable_before=arch.pte_write(step.ptes[0].raw),
            pte_writable_after=arch.pte_write(after[0].raw),
            cow_pfn=self.cow_pfn,
            verdict_before=step.ptes[0].verdict,
            verdict_after=after[0].verdict,
            neighbour_verdict=after[1].verdict,
            anon_rss=p.mm.anon_rss,
            file_rss=p.mm.file_rss,
            payload_ok=payload_ok,
            copy_source=source,
            copy_aligned_rule=m.rules.cow_copy_aligned,
            page_start_before=seen[:SAMPLE_BYTES],
            page_start_after=page[:SAMPLE_BYTES],
        )
        if source == "shifted":
            step.notes.append(
                f"Seed quirk: the fault was at {addr + offset:#x}, {offset:#x} bytes into the "
                f"page, and cow_user_page copied a page's worth from that address instead of "
                f"from the page start. The new page holds the device bytes shifted down by "
                f"{offset:#x} (its first bytes are {page[:SAMPLE_BYTES].hex(' ')} where the user "
                f"saw {seen[:SAMPLE_BYTES].hex(' ')}), and its last {offset:#x} bytes come from "
                f"the next page. 2.6.15-rc4 ('cow_user_page: fix page alignment') copies from "
                "va & PAGE_MASK. On the last page of a vma the copy runs past vm_end: it "
                "fails, leaving a zero-filled page, when nothing is mapped there, and copies "
                "another mapping's bytes when something is."
            )
        elif source == "aligned":
            step.notes.append(
                "The copy started at the page boundary (these rules have the rc4 alignment "
                "fix), so the new page holds what the user saw, plus the payload."
            )
        elif source == "zero":
            step.notes.append(
                "The non-faulting user copy failed, so cow_user_page zero-filled the new page."
            )
        elif killed:
            step.notes.append(
                "Before the seed, do_wp_page refuses to COW a pfn without a struct page: "
                "print_bad_pte, then VM_FAULT_OOM, and the kernel kills the task. The story "
                "keeps the task to go on; its pte is still the raw device pte."
            )

    def step_d(self, step: StepResult) -> None:
        """Facts (lists follow ``labels``): parent_writable_before/after,
        parent_raw_before/after, child_raw, child_verdicts, child_young; cow_count,
        cow_mapcount, firmware_unchanged, child_rss."""
        p, ps, arch, m = self.parent, self.ps, self.arch, self.m
        addrs = [
            ("shared /dev/mem, I/O", self.io_addr),
            ("shared /dev/mem, RAM", self.ram_addr),
            ("private, COWed page", self.cow_addr),
            ("private, raw", self.cow_addr + ps),
        ]
        step.ptes += [self.pte(p, a, "before fork") for _, a in addrs]
        cow_before = self.cow_page()
        fw_before = m.page(self.ram_pfns[0])
        self.child = child = p.fork("child")
        parent_after = [self.pte(p, a, "after fork") for _, a in addrs]
        child_rows = [self.pte(child, a, "after fork") for _, a in addrs]
        step.ptes += parent_after + child_rows
        step.pages += [
            self.cow_track((("before fork", cow_before), ("after fork", self.cow_page()))),
            PageTrack(
                f"pfn {self.ram_pfns[0]:#x} (firmware)",
                (("before fork", fw_before), ("after fork", m.page(self.ram_pfns[0]))),
            ),
        ]
        step.rss = self.rss(p, child)
        labels = [label for label, _ in addrs]
        step.facts.update(
            labels=labels,
            parent_writable_before=[arch.pte_write(r.raw) for r in step.ptes[: len(addrs)]],
            parent_writable_after=[arch.pte_write(r.raw) for r in parent_after],
            parent_raw_before=[r.raw for r in step.ptes[: len(addrs)]],
            parent_raw_after=[r.raw for r in parent_after],
            child_raw=[r.raw for r in child_rows],
            child_verdicts=[r.verdict for r in child_rows],
            child_young=[arch.pte_young(r.raw) for r in child_rows],
            cow_count=getattr(self.cow_page(), "count", None),
            cow_mapcount=getattr(self.cow_page(), "mapcount", None),
            firmware_unchanged=fw_before == m.page(self.ram_pfns[0]),
            child_rss=dict(step.rss["child"]),
        )
        f = step.facts
        for i, label in enumerate(labels):
            if not label.startswith("private"):
                continue
            if f["parent_writable_before"][i] and not f["parent_writable_after"][i]:
                step.notes.append(
                    f"{label}: fork took the write bit from the parent's pte; the next write by "
                    "either task faults, and do_wp_page copies again because the page is now "
                    "mapped twice."
                )
            elif not f["parent_writable_before"][i]:
                step.notes.append(
                    f"{label}: the parent's pte was read-only already (a private mapping starts "
                    "with read-only ptes), so write-protecting it changed no bit."
                )

    def step_e(self, step: StepResult) -> None:
        """Facts: (count, mapcount) of the COWed page after_munmap / after_child_exit /
        after_parent_exit, child_rss_after_munmap, firmware_counts, free_pages_restored,
        processes_left."""
        m, ps = self.m, self.ps
        child = self.child
        assert child is not None
        track: list[tuple[str, PageInfo | None]] = [("before", self.cow_page())]
        child.munmap(self.cow_addr, 2 * ps)
        track.append(("child munmap", self.cow_page()))
        step.rss = self.rss(self.parent, child)
        step.rss_when = "after the child's munmap"
        child.exit()
        track.append(("child exit", self.cow_page()))
        fw = [m.page(pfn) for pfn in self.ram_pfns]
        self.parent.exit()
        track.append(("parent exit", self.cow_page()))
        step.pages.append(self.cow_track(tuple(track)))
        free_now = m.phys.free_pages()
        step.data.append(
            f"free RAM pages: {self.free_at_start} before the story, {free_now} after every task "
            "exited"
        )
        step.facts.update(
            after_munmap=_counts(track[1][1]),
            after_child_exit=_counts(track[2][1]),
            after_parent_exit=_counts(track[3][1]),
            child_rss_after_munmap=dict(step.rss["child"]),
            firmware_counts=[(info.count, info.mapcount) for info in fw],
            free_pages_restored=free_now == self.free_at_start,
            processes_left=len(m.processes),
        )

    def step_f(self, step: StepResult) -> None:
        """Facts: log, bad_ptes, total_faults (and invariants_ok, set by run_demo)."""
        step.facts.update(
            log=list(self.m.log),
            bad_ptes=len(self.m.bad_ptes),
            total_faults=self.m.faults,
        )


def _counts(info: PageInfo | None) -> tuple[int, int] | None:
    return None if info is None else (info.count, info.mapcount)


def _copy_source(page: bytes, seen: bytes, offset: int, length: int) -> str:
    """Where cow_user_page copied from: "aligned", "shifted" (the seed's fault-address copy),
    "zero" (the user copy failed) or "unknown". The payload's own bytes are left out."""
    size = len(page)
    outside = [(0, offset), (offset + length, size)]

    def copied_from(start: int) -> bool:
        return all(page[a:b] == seen[start + a : start + b] for a, b in outside)

    if copied_from(0):
        return "aligned"
    if copied_from(offset):
        return "shifted"
    if all(not any(page[a:b]) for a, b in outside):
        return "zero"
    return "unknown"


_STEPS: tuple[tuple[str, str, tuple[str, ...], str, Callable[[_Story, StepResult], None]], ...] = (
    (
        "a",
        "/dev/mem beyond RAM: a raw PFN mapping",
        ("sys_mmap", "do_mmap_pgoff", "mmap_mem", "remap_pfn_range", "vm_normal_page"),
        "mmap_mem takes the file offset as the pfn. remap_pfn_range fills every pte at mmap "
        "time, marks the vma VM_IO|VM_RESERVED|VM_PFNMAP and sets vm_pgoff to the first pfn. "
        "These pfns are device memory: no struct page exists for them. vm_normal_page does "
        "not even look for one, because each pte's pfn is vm_pgoff plus its page index, the "
        "seed's definition of a raw PFN pte. Nothing is counted: no rss, no reference.",
        _Story.step_a,
    ),
    (
        "b",
        "/dev/mem inside RAM: a struct page exists, the pte is still raw",
        ("sys_mmap", "mmap_mem", "remap_pfn_range", "vm_normal_page"),
        "The same kind of mapping over RAM: the boot-reserved firmware pages. These pfns do "
        "have struct pages, but inside a VM_PFNMAP vma the vm_pgoff rule is asked first, so "
        "the ptes are raw and their struct pages are never touched. That is why the seed can "
        "map any RAM range through /dev/mem without requiring PageReserved.",
        _Story.step_b,
    ),
    (
        "c",
        "writing to a MAP_PRIVATE /dev/mem mapping: COW with no source page",
        (
            "do_page_fault",
            "handle_mm_fault",
            "handle_pte_fault",
            "do_wp_page",
            "vm_normal_page",
            "cow_user_page",
            "page_add_anon_rmap",
        ),
        "A private writable mapping gets read-only ptes, so the first write faults into "
        "do_wp_page. vm_normal_page returns NULL for the raw pte, so cow_user_page has no "
        "struct page to copy from: it reads the bytes through the user address with the "
        "non-faulting user copy (and would zero-fill the page if that failed). The new "
        "anonymous page's pfn is no longer vm_pgoff + index, and that is how vm_normal_page "
        "recognises it from now on: a COWed page in a PFN vma, counted in anon_rss.",
        _Story.step_c,
    ),
    (
        "d",
        "fork: raw ptes are copied without references",
        ("do_fork", "copy_mm", "dup_mmap", "copy_page_range", "copy_one_pte", "vm_normal_page"),
        "VM_PFNMAP makes copy_page_range copy the ptes at fork: the child could not fault raw "
        "pfns back in. For a COW mapping copy_one_pte write-protects the parent's ptes (raw "
        "ones included) and every child copy is marked old; a shared mapping's ptes stay as "
        "they were. Only ptes for which vm_normal_page returns a page take a reference, a "
        "mapcount and rss: the COWed page is now shared, the raw pfns stay uncounted.",
        _Story.step_d,
    ),
    (
        "e",
        "munmap in the child, then exit: every count comes back",
        (
            "do_munmap",
            "unmap_vmas",
            "zap_pte_range",
            "vm_normal_page",
            "tlb_finish_mmu",
            "exit_mmap",
        ),
        "zap_pte_range asks vm_normal_page about every pte it clears. Raw ptes are just "
        "cleared; the COWed page loses the child's mapcount and its reference is dropped "
        "when the mmu_gather is finished. When the parent exits as well, the last reference "
        "goes and the page returns to the allocator. The firmware pages never noticed.",
        _Story.step_e,
    ),
    (
        "f",
        "the machine log and the invariant check",
        ("print_bad_pte",),
        "print_bad_pte fires when vm_normal_page meets a pfn with no struct page outside the "
        "vm_pgoff rule; pfnmap keeps its lines in the machine log. This story should leave "
        "none. check_invariants is pfnmap's own audit, not a kernel function: it rebuilds every "
        "struct page count, mapcount and rss counter from the page tables and compares. It "
        "ran after every step.",
        _Story.step_f,
    ),
)


def run_demo(machine: Machine) -> DemoResult:
    """Play the story on ``machine`` (best a fresh one) and return every step's outcome.

    Raises :class:`DemoError` when a step fails; invariant failures and bad ptes are not
    failures of the run, they are recorded in the result (see :attr:`DemoResult.ok`).
    """
    arch = machine.arch
    io = machine.phys.io_regions[0]
    result = DemoResult(
        arch=arch.name,
        description=arch.description,
        page_size=arch.page_size,
        pte_bytes=arch.pte_level.entry_bytes,
        byteorder=arch.byteorder,
        ram_bytes=machine.phys.ram_bytes,
        io_region=(io.name, io.start, io.size),
        rules=machine.rules.name,
    )
    recorder = EventRecorder(machine)
    pm = machine.plugin_manager
    pm.register(recorder)
    try:
        try:
            story = _Story(machine, recorder)
        except PfnmapError as exc:  # spawning the parent belongs to the first step
            key, title = _STEPS[0][:2]
            raise DemoError(arch.name, key, title, exc) from exc
        for key, title, kernel, why, play in _STEPS:
            step = StepResult(key, title, kernel, why)
            faults, bad = len(recorder.faults), len(recorder.bad)
            try:
                play(story, step)
            except PfnmapError as exc:
                raise DemoError(arch.name, key, title, exc) from exc
            step.faults = recorder.faults[faults:]
            step.bad_ptes = recorder.bad[bad:]
            step.facts["faults"] = len(step.faults)
            try:
                machine.check_invariants()
            except InvariantError as exc:
                step.invariants = str(exc)
            result.steps.append(step)
    finally:
        pm.unregister(recorder)
    result.log = list(machine.log)
    result.bad_ptes = list(machine.bad_ptes)
    result.steps[-1].facts["invariants_ok"] = result.invariants_ok
    return result
