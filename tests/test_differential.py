"""Differential testing: the same random syscall sequences on every registered arch at once.

One machine per arch runs the same operations, stated in pages so that 4 KiB and 8 KiB arches
do the same page-level work: mmap (anonymous private and shared, a file, /dev/mem shared and
private, beyond RAM and inside RAM), write, read, fork, munmap, mprotect and exit. After every
step each machine passes ``check_invariants()``, and an arch-independent summary of every
machine must be the same. The summary holds, per process (in creation order): rss, and per
vma its place relative to TASK_UNMAPPED_BASE in pages, length, vm_flags, a normalised
vm_pgoff, and per page vm_normal_page's verdict, pte_write, and for a page with a struct page
its kind (zero page, anonymous, page cache, firmware), count, mapcount and dirty flag; for a
raw pfn, which device or firmware page it is. pfns themselves are not compared (allocation
order differs with the number of table levels), nor young/dirty pte bits (which the MMU sets on
some arches and the fault handler on others), nor fault counts.

Every read returns the same bytes on every arch, with two documented exceptions, both the
kernel's behaviour and not emulator bugs. After fork the child's ptes are old, and an MMU
either sets the accessed bit itself (x86) or faults (sparc64, riscv-sv39 in its Svade mode):

* the bytes of a page COWed from a raw pfn (an anonymous page in a VM_PFNMAP vma): 2.6.15's
  cow_user_page copies it from the user address with the non-faulting user copy and
  zero-fills it when that fails, which it does on an old pte where the MMU faults (Linux
  fixed it in 2019 with "mm: fix double page fault on arm64 if PTE_AF is cleared", which
  makes cow_user_page set the accessed bit itself on such arches);
* a read of a vma without VM_READ (PROT_WRITE alone): x86 cannot map a page write-only, so a
  present pte is readable; where the MMU faults on the old pte, do_page_fault refuses the read
  (SIGSEGV).

Those reads are compared only among arches whose MMU does the same.

Device memory and the firmware pages /dev/mem maps inside RAM are filled with a pattern of
(page index, offset in page), so that their contents too are the same page for page.

Few examples by default (the file runs in well under a minute); ``HYPOTHESIS_PROFILE=nightly``
(``tox -e nightly``) runs many more and longer sequences.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    BusError,
    IORegion,
    KernelError,
    Machine,
    Process,
    SegmentationFault,
    Verdict,
)
from pfnmap.arch import Arch
from pfnmap.arches.x86_64 import X86_64
from pfnmap.kernel.constants import VM_EXEC, VM_PFNMAP, VM_READ
from pfnmap.kernel.mm import VmArea
from pfnmap.plugins.manager import default_registry

ARCHES: list[str] = default_registry().names()

RAM_PAGES = 1024
IO_BASE = 0xF000_0000
IO_PAGES = 16
#: reserved (firmware) RAM pages that /dev/mem maps inside RAM; nobody else ever uses them
FW_FIRST, FW_PAGES = 4, 8
FILE_PAGES = 6
FILE_PATH = "/data"
MAX_PROCS = 4
#: spawn and exit do something on one draw in RARE
RARE = 4
MAX_VMAS = 6
MAX_NPAGES = 5
#: writes and reads stay far below 4 KiB into a page, so every arch sees the same bytes
MAX_OFFSET = 64
MAX_LEN = 48
READ_LEN = 64

PROTS = [
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    PROT_READ | PROT_WRITE,
    PROT_READ | PROT_EXEC,
    PROT_READ | PROT_WRITE | PROT_EXEC,
]
KINDS = ["anon", "anon-shared", "file", "devmem-io", "devmem-ram"]
#: reads whose result depends on the MMU (see the module docstring)
UNREADABLE = "a vma without VM_READ"
RAW_PFN_COW = "a page COWed from a raw pfn"

# the "nightly" profile is registered in conftest.py
NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
FAST = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def page_pattern(page_shift: int, base: int) -> Callable[[np.ndarray], np.ndarray]:
    """Bytes that depend only on (page index from ``base``, offset in the page)."""

    def pattern(paddr: np.ndarray) -> np.ndarray:
        rel = paddr.astype(np.uint64) - np.uint64(base)
        page = rel >> np.uint64(page_shift)
        off = rel & np.uint64((1 << page_shift) - 1)
        return ((page * np.uint64(29) + off * np.uint64(7) + (off >> np.uint64(5))) & 0xFF).astype(
            np.uint8
        )

    return pattern


def faults_on_old_pte(arch: Arch) -> bool:
    """Whether the MMU refuses an old pte instead of setting its accessed bit."""
    pte = arch.pte_mkold(arch.pfn_pte(1, arch.protection_map[PROT_READ]))
    return not arch.pte_young(arch.pte_hw_update(pte, False))


class World:
    """One arch's machine and its processes, in creation order (exited ones are dropped)."""

    def __init__(self, arch: str | Arch) -> None:
        arch = default_registry().get(arch) if isinstance(arch, str) else arch
        ps = arch.page_size
        region = IORegion(
            "fb0", IO_BASE, IO_PAGES * ps, pattern=page_pattern(arch.page_shift, IO_BASE)
        )
        self.machine = Machine(arch=arch, ram=RAM_PAGES * ps, io=[region])
        self.arch = arch
        self.io_pfn = IO_BASE >> arch.page_shift
        self.old_pte_faults = faults_on_old_pte(arch)
        phys = self.machine.phys
        assert phys.reserved_low_pages >= FW_FIRST + FW_PAGES
        fill = page_pattern(arch.page_shift, FW_FIRST * ps)
        lo, hi = FW_FIRST * ps, (FW_FIRST + FW_PAGES) * ps
        phys.ram[lo:hi] = fill(np.arange(lo, hi, dtype=np.uint64)).tobytes()
        file_fill = page_pattern(arch.page_shift, 0)
        self.machine.create_file(
            FILE_PATH, file_fill(np.arange(FILE_PAGES * ps, dtype=np.uint64) + 3).tobytes()
        )
        self.base = ((arch.task_size // 3) + ps - 1) & ~(ps - 1)  # TASK_UNMAPPED_BASE
        self.procs: list[Process] = [self.machine.spawn("p0")]

    # what is comparable -----------------------------------------------------------------------
    def pgoff(self, vma: VmArea) -> tuple[str, int]:
        if vma.vm_file is None:
            return ("anon", vma.vm_pgoff - (vma.vm_start >> self.arch.page_shift))
        path = vma.vm_file.inode.path
        if path == "/dev/mem":
            if vma.vm_pgoff >= self.io_pfn:
                return ("io", vma.vm_pgoff - self.io_pfn)
            return ("ram", vma.vm_pgoff)
        return (path if path in (FILE_PATH,) else "shmem", vma.vm_pgoff)

    def page(self, proc: Process, addr: int) -> tuple[Any, ...]:
        info = proc.lookup(addr)
        if info.verdict in (None, Verdict.NOT_PRESENT):
            return ("none",)
        machine, arch = self.machine, self.arch
        write = arch.pte_write(info.raw)
        pfn = arch.pte_pfn(info.raw)
        if info.verdict is Verdict.RAW_PFN:
            where = ("io", pfn - self.io_pfn) if pfn >= self.io_pfn else ("ram", pfn)
            return (info.verdict.name, write, where)
        if info.verdict is Verdict.BAD:
            return (info.verdict.name, write)
        page = machine.page(pfn)
        if pfn == machine.phys.zero_pfn:
            kind = "zero"
        elif page.anon:
            kind = "anon"
        elif page.reserved:
            kind = ("firmware", pfn)
        else:
            kind = ("cache", page.index)
        dirty = "dirty" in page.flags
        return (info.verdict.name, write, kind, page.count, page.mapcount, dirty)

    def summary(self) -> tuple[Any, ...]:
        ps = self.arch.page_size
        procs = []
        for proc in self.procs:
            vmas = []
            for vma in proc.vmas:
                pages = tuple(self.page(proc, a) for a in range(vma.vm_start, vma.vm_end, ps))
                start = (vma.vm_start - self.base) // ps
                npages = (vma.vm_end - vma.vm_start) // ps
                vmas.append((start, npages, vma.vm_flags, self.pgoff(vma), pages))
            procs.append((proc.comm, proc.rss(), tuple(vmas)))
        return (tuple(procs), len(self.machine.bad_ptes))

    def read_kind(self, proc: Process, vma: VmArea, addr: int) -> str:
        """Whether a read of ``addr`` is one whose result depends on the MMU (module
        docstring): a vma that is not readable, or a page COWed from a raw pfn."""
        if not vma.vm_flags & (VM_READ | VM_EXEC):
            return UNREADABLE
        if vma.vm_flags & VM_PFNMAP and proc.lookup(addr).verdict is Verdict.COWED:
            return RAW_PFN_COW
        return "plain"


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """What an operation did, in terms every arch can agree on."""
    try:
        return ("ok", fn())
    except (SegmentationFault, BusError) as exc:
        return (type(exc).__name__,)
    except KernelError as exc:
        return ("KernelError", errno.errorcode.get(exc.errno, exc.errno))


def agree(what: str, results: dict[str, Any]) -> None:
    values = list(results.values())
    if any(v != values[0] for v in values):
        lines = "\n".join(f"  {name}: {value!r}" for name, value in results.items())
        raise AssertionError(f"the arches disagree on {what}:\n{lines}")


class Differential(RuleBasedStateMachine):
    """Random syscall sequences, applied to every arch's machine."""

    #: the arches compared (a subclass may compare others)
    arches: tuple[str | Arch, ...] = tuple(ARCHES)

    def __init__(self) -> None:
        super().__init__()
        self.worlds = [World(arch) for arch in self.arches]
        self.step = 0

    def each(self, what: str, op: Callable[[World], Any]) -> dict[str, Any]:
        results = {w.arch.name: outcome(lambda w=w: op(w)) for w in self.worlds}
        agree(what, results)
        return results

    @property
    def nprocs(self) -> int:
        return len(self.worlds[0].procs)

    def data(self, length: int) -> bytes:
        self.step += 1
        return bytes(((self.step * 7 + i * 13) % 251) + 1 for i in range(length))

    @staticmethod
    def proc(world: World, index: int) -> Process:
        return world.procs[index % len(world.procs)]

    @staticmethod
    def vma(world: World, proc: Process, index: int) -> VmArea:
        vmas = proc.vmas
        return vmas[index % len(vmas)]

    # rules --------------------------------------------------------------------------------------
    # spawn and exit act on one draw in RARE, so that processes live long enough to build up
    # mappings, and fork, mmap, write and read get most of the steps
    @precondition(lambda self: self.nprocs < 2)
    @rule(go=st.integers(0, RARE - 1))
    def spawn(self, go: int) -> None:
        if go:
            return

        def op(w: World) -> None:
            w.procs.append(w.machine.spawn(f"p{len(w.procs)}"))

        self.each("spawn", op)

    @precondition(lambda self: self.nprocs > 0)
    @rule(
        p=st.integers(0, MAX_PROCS - 1),
        kind=st.sampled_from(KINDS),
        npages=st.integers(1, MAX_NPAGES),
        prot=st.sampled_from(PROTS),
        shared=st.booleans(),
        start=st.integers(0, IO_PAGES - 1),
    )
    def mmap(self, p: int, kind: str, npages: int, prot: int, shared: bool, start: int) -> None:
        if len(self.worlds[0].procs[p % self.nprocs].vmas) >= MAX_VMAS:
            return

        def op(w: World) -> int:
            proc = self.proc(w, p)
            ps = w.arch.page_size
            flags = MAP_SHARED if shared else MAP_PRIVATE
            if kind.startswith("anon"):
                flags = (MAP_SHARED if kind == "anon-shared" else MAP_PRIVATE) | MAP_ANONYMOUS
                addr = proc.mmap(npages * ps, prot, flags)
            else:
                if kind == "file":
                    path, pfn = FILE_PATH, start % FILE_PAGES
                elif kind == "devmem-io":
                    path, pfn = "/dev/mem", w.io_pfn + start % (IO_PAGES - npages + 1)
                else:
                    path, pfn = "/dev/mem", FW_FIRST + start % (FW_PAGES - npages + 1)
                fd = proc.open(path, O_RDWR)
                try:
                    addr = proc.mmap(npages * ps, prot, flags, fd, offset=pfn * ps)
                finally:
                    proc.close(fd)
            return (addr - w.base) // ps

        self.each(f"mmap {kind} {npages} pages prot={prot} shared={shared}", op)

    @precondition(lambda self: any(p.vmas for p in self.worlds[0].procs))
    @rule(
        p=st.integers(0, MAX_PROCS - 1),
        v=st.integers(0, MAX_VMAS - 1),
        page=st.integers(0, MAX_NPAGES - 1),
        offset=st.integers(0, MAX_OFFSET),
        length=st.integers(1, MAX_LEN),
    )
    def write(self, p: int, v: int, page: int, offset: int, length: int) -> None:
        data = self.data(length)

        def op(w: World) -> None:
            proc = self.proc(w, p)
            if not proc.vmas:
                return None
            vma = self.vma(w, proc, v)
            npages = (vma.vm_end - vma.vm_start) // w.arch.page_size
            proc.write(vma.vm_start + (page % npages) * w.arch.page_size + offset, data)
            return None

        self.each("write", op)

    @precondition(lambda self: any(p.vmas for p in self.worlds[0].procs))
    @rule(p=st.integers(0, MAX_PROCS - 1), v=st.integers(0, MAX_VMAS - 1), page=st.integers(0, 9))
    def read(self, p: int, v: int, page: int) -> None:
        results: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for w in self.worlds:
            proc = self.proc(w, p)
            if not proc.vmas:
                results[w.arch.name] = kinds[w.arch.name] = "no vma"
                continue
            vma = self.vma(w, proc, v)
            npages = (vma.vm_end - vma.vm_start) // w.arch.page_size
            addr = vma.vm_start + (page % npages) * w.arch.page_size
            kinds[w.arch.name] = w.read_kind(proc, vma, addr)
            results[w.arch.name] = outcome(lambda proc=proc, addr=addr: proc.read(addr, READ_LEN))
        agree("what the read hits", kinds)
        kind = next(iter(kinds.values()))
        if kind in ("plain", "no vma"):
            agree("read", results)
            return
        if kind == RAW_PFN_COW:  # that the read works agrees everywhere, the bytes by kind
            agree("whether the read worked", {k: v[0] for k, v in results.items()})
        for faults in (False, True):
            agree(
                f"read of {kind} (MMU faults on old ptes: {faults})",
                {
                    w.arch.name: results[w.arch.name]
                    for w in self.worlds
                    if w.old_pte_faults == faults
                },
            )

    @precondition(lambda self: 0 < self.nprocs < MAX_PROCS)
    @rule(p=st.integers(0, MAX_PROCS - 1))
    def fork(self, p: int) -> None:
        def op(w: World) -> None:
            child = self.proc(w, p).fork(f"p{len(w.procs)}")
            w.procs.append(child)

        self.each("fork", op)

    @precondition(lambda self: any(p.vmas for p in self.worlds[0].procs))
    @rule(
        p=st.integers(0, MAX_PROCS - 1),
        v=st.integers(0, MAX_VMAS - 1),
        first=st.integers(0, MAX_NPAGES - 1),
        count=st.integers(1, MAX_NPAGES),
    )
    def munmap(self, p: int, v: int, first: int, count: int) -> None:
        def op(w: World) -> None:
            proc = self.proc(w, p)
            if not proc.vmas:
                return
            vma = self.vma(w, proc, v)
            ps = w.arch.page_size
            npages = (vma.vm_end - vma.vm_start) // ps
            first_page = first % npages
            proc.munmap(vma.vm_start + first_page * ps, min(count, npages - first_page) * ps)

        self.each("munmap", op)

    @precondition(lambda self: any(p.vmas for p in self.worlds[0].procs))
    @rule(
        p=st.integers(0, MAX_PROCS - 1),
        v=st.integers(0, MAX_VMAS - 1),
        first=st.integers(0, MAX_NPAGES - 1),
        count=st.integers(1, MAX_NPAGES),
        prot=st.sampled_from(PROTS),
    )
    def mprotect(self, p: int, v: int, first: int, count: int, prot: int) -> None:
        def op(w: World) -> None:
            proc = self.proc(w, p)
            if not proc.vmas:
                return
            vma = self.vma(w, proc, v)
            ps = w.arch.page_size
            npages = (vma.vm_end - vma.vm_start) // ps
            first_page = first % npages
            proc.mprotect(
                vma.vm_start + first_page * ps, min(count, npages - first_page) * ps, prot
            )

        self.each(f"mprotect prot={prot}", op)

    @precondition(lambda self: self.nprocs > 1)
    @rule(p=st.integers(0, MAX_PROCS - 1), go=st.integers(0, RARE - 1))
    def exit(self, p: int, go: int) -> None:
        if go:
            return

        def op(w: World) -> None:
            proc = self.proc(w, p)
            proc.exit()
            w.procs.remove(proc)

        self.each("exit", op)

    # after every step -----------------------------------------------------------------------------
    @invariant()
    def machines_are_consistent(self) -> None:
        for w in self.worlds:
            w.machine.check_invariants()

    @invariant()
    def arches_agree(self) -> None:
        agree("the machine state", {w.arch.name: w.summary() for w in self.worlds})

    def teardown(self) -> None:
        for w in self.worlds:
            for proc in list(w.procs):
                proc.exit()
            w.machine.check_invariants()
            phys = w.machine.phys
            tables = [pfn for pfn in range(phys.nr_pages) if "pgtable" in phys.flag_names(pfn)]
            assert not tables, f"{w.arch.name}: table frames left after every exit: {tables}"


TestDifferential = Differential.TestCase
TestDifferential.settings = settings.get_profile("nightly") if NIGHTLY else FAST


def test_there_are_arches_to_compare() -> None:
    """The differential test is vacuous with fewer than two arches, and the built-ins cover
    both page sizes, both byte orders, both entry widths and both MMU kinds."""
    assert len(ARCHES) >= 2
    arches = [default_registry().get(name) for name in ARCHES]
    assert {a.page_size for a in arches} >= {4096, 8192}
    assert {a.byteorder for a in arches} == {"little", "big"}
    assert {a.pte_level.entry_bytes for a in arches} == {4, 8}
    assert {faults_on_old_pte(a) for a in arches} == {False, True}


def test_page_pattern_is_page_relative() -> None:
    """Page k, offset o holds the same byte whatever the page size."""
    small = page_pattern(12, IO_BASE)
    large = page_pattern(13, IO_BASE)
    for page in (0, 1, 7):
        offsets = np.arange(0, 256, dtype=np.uint64)
        a = small(np.uint64(IO_BASE + page * 4096) + offsets)
        b = large(np.uint64(IO_BASE + page * 8192) + offsets)
        assert (a == b).all()
    assert len(set(small(np.arange(IO_BASE, IO_BASE + 4096, dtype=np.uint64)).tolist())) > 64


class NoCow(X86_64):
    """x86-64 whose pte_wrprotect does nothing: fork leaves both tasks a writable pte."""

    name = "x86-64-nocow"

    def pte_wrprotect(self, pte: int) -> int:
        return pte


def test_a_divergent_arch_is_caught() -> None:
    """The comparison can fail: next to an arch that never write-protects, the machine finds a
    sequence (mmap, write, fork) on which the two disagree."""

    class AgainstNoCow(Differential):
        arches = ("x86-64", NoCow())

    with pytest.raises(AssertionError, match="the arches disagree"):
        run_state_machine_as_test(
            AgainstNoCow,
            settings=settings(
                max_examples=200,
                stateful_step_count=20,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
