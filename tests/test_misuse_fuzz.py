"""Random and adversarial calls mixed into ordinary sequences (issue 18).

A hypothesis state machine drives one machine of the session's arch, in a random era and with
little RAM (256 to 1024 pages, so allocations fail too), through the public API: spawn, fork,
exit, open, close, mmap, munmap, mprotect, read, write, get_user_pages, put_pages, lookup, ptes
and the device constructors. The values mix ordinary ones with those at and past every limit:
lengths of 0, 1, a page, TASK_SIZE and beyond, -1 and ULONG_MAX; unaligned, negative and
kernel-half addresses; unknown prot and flag bits; closed fds; exited processes; device
buffers larger than RAM; unknown I/O regions.

Only documented outcomes are allowed (docs/errors.rst): KernelError with an errno (OutOfMemory
included), SegmentationFault, BusError, KernelLivelock where a path would spin for ever,
UnknownRegion for a region name, and ValueError/TypeError only for the calls this test makes
with a value no C argument could hold. After every step the machine must pass
``check_invariants()``; a refused call must not have changed the vma list of its process.

``HYPOTHESIS_PROFILE=nightly`` (tox -e nightly) runs it long.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDONLY,
    O_RDWR,
    O_SYNC,
    O_WRONLY,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    BusError,
    KernelError,
    KernelLivelock,
    Machine,
    SegmentationFault,
    UnknownRegion,
)
from pfnmap.kernel.rules import ERAS
from pfnmap.plugins.manager import default_registry

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
SETTINGS = settings(
    max_examples=400 if NIGHTLY else 10,
    stateful_step_count=250 if NIGHTLY else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: what a call may raise besides returning (the documented errors)
DOCUMENTED = (KernelError, SegmentationFault, BusError, KernelLivelock)

PATHS = ["/dev/mem", "/dev/zero", "/dev/buf", "/dev/fb", "/file", "/dev/new", "/no/such"]
PROTS = [0, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC, 7, 0x8, 0x10, 0x01000000]
FLAGS = [
    MAP_PRIVATE | MAP_ANONYMOUS,
    MAP_SHARED | MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
    MAP_SHARED | MAP_FIXED,
    MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS,
    MAP_ANONYMOUS,
    0x5 | MAP_ANONYMOUS,
    MAP_PRIVATE | MAP_ANONYMOUS | 0x40000,
]


def _misuse_machine(arch_name: str):
    class Misuse(RuleBasedStateMachine):
        """One machine; ``procs`` holds every process ever made, exited ones included."""

        def __init__(self) -> None:
            super().__init__()
            self.m: Machine | None = None
            self.procs = []
            self.pinned: list[tuple[object, list[int]]] = []

        # value strategies, built from the arch once the machine exists ----------------
        def _addresses(self, proc) -> st.SearchStrategy[int]:
            arch = self.m.arch
            ps = arch.page_size
            top = 1 << arch.bits_per_long
            edges = [0, ps, arch.task_size - ps, arch.task_size, arch.task_size + ps, -ps, -1]
            edges += [top - ps, top - 1, arch.task_size // 3]
            for vma in proc.mm.mmap[:6]:
                edges += [vma.vm_start, vma.vm_end - ps, vma.vm_end, vma.vm_start + 1]
            return st.one_of(
                st.sampled_from(edges),
                st.integers(0, arch.task_size // ps).map(lambda k: k * ps),
                st.integers(-(top >> 1), top - 1),
            )

        def _lengths(self) -> st.SearchStrategy[int]:
            arch = self.m.arch
            ps = arch.page_size
            top = 1 << arch.bits_per_long
            span = arch.levels[-2].span
            edges = [0, 1, ps, ps + 1, 3 * ps, 2 * span, arch.task_size, arch.task_size + 1]
            edges += [-1, top - ps, top - 1, arch.task_size // 2, 1 << (arch.va_bits - 2)]
            return st.one_of(st.sampled_from(edges), st.integers(1, 8 * ps))

        def _proc(self, data):
            return data.draw(st.sampled_from(self.procs), label="process")

        @staticmethod
        def _vmas(proc) -> list[tuple[int, int, int]] | None:
            if proc is None:
                return None
            return [(v.vm_start, v.vm_end, v.vm_flags) for v in proc.mm.mmap]

        def _call(self, proc, fn, *args, **kwargs):
            """Call; allow only documented errors; a refused call keeps the vma list."""
            before = self._vmas(proc)
            try:
                return fn(*args, **kwargs)
            except UnknownRegion:
                return None
            except DOCUMENTED as exc:
                after = self._vmas(proc)
                # munmap before a failing MAP_FIXED and mprotect's vma-by-vma walk change
                # vmas before they fail, as in the kernel; other calls leave them alone
                if fn.__name__ not in ("mmap", "mprotect", "fork", "exit"):
                    assert after == before, (fn.__name__, args, exc)
                return exc

        # rules ----------------------------------------------------------------------
        @initialize(era=st.sampled_from(sorted(ERAS)), ram_pages=st.sampled_from([256, 512, 1024]))
        def boot(self, era: str, ram_pages: int) -> None:
            page_size = default_registry().get(arch_name).page_size
            self.m = Machine(arch=arch_name, ram=ram_pages * page_size, era=era)
            self.m.create_file("/file", bytes(range(256)) * 20)
            self.procs.append(self.m.spawn("init"))

        def _ready(self) -> bool:
            return self.m is not None

        @rule(data=st.data())
        def spawn_or_fork(self, data) -> None:
            if not self._ready():
                return
            if data.draw(st.booleans(), label="fork"):
                proc = self._proc(data)
                child = self._call(proc, proc.fork)
                if child is not None and not isinstance(child, BaseException):
                    self.procs.append(child)
            else:
                proc = self._call(None, self.m.spawn, "spawned")  # OutOfMemory: no pgd
                if proc is not None and not isinstance(proc, BaseException):
                    self.procs.append(proc)

        @rule(data=st.data())
        def exit(self, data) -> None:
            if self._ready():
                proc = self._proc(data)
                self._call(proc, proc.exit)
                self.pinned = [(p, pages) for p, pages in self.pinned if p is not proc]

        @rule(data=st.data())
        def open_close(self, data) -> None:
            if not self._ready():
                return
            proc = self._proc(data)
            if data.draw(st.booleans(), label="open"):
                path = data.draw(st.sampled_from(PATHS), label="path")
                flags = data.draw(st.sampled_from([O_RDONLY, O_WRONLY, O_RDWR, O_RDWR | O_SYNC]))
                self._call(proc, proc.open, path, flags)
            else:
                fd = data.draw(st.sampled_from([0, 1, 2, 3, 7, -1]), label="fd")
                self._call(proc, proc.close, fd)

        @rule(data=st.data())
        def mmap(self, data) -> None:
            if not self._ready():
                return
            proc = self._proc(data)
            arch = self.m.arch
            length = data.draw(self._lengths(), label="length")
            prot = data.draw(st.sampled_from(PROTS) | st.integers(0, 0xFF), label="prot")
            flags = data.draw(st.sampled_from(FLAGS), label="flags")
            fd = data.draw(st.sampled_from([None, -1, 0, 1, 2, 5]), label="fd")
            ps = arch.page_size
            offset = data.draw(
                st.sampled_from([0, ps, 16 * ps, ps // 2, -ps, self.m.phys.io_regions[0].start]),
                label="offset",
            )
            addr = data.draw(self._addresses(proc), label="addr")
            self._call(proc, proc.mmap, length, prot, flags, fd, offset, addr)

        @rule(data=st.data())
        def munmap_or_mprotect(self, data) -> None:
            if not self._ready():
                return
            proc = self._proc(data)
            addr = data.draw(self._addresses(proc), label="addr")
            length = data.draw(self._lengths(), label="length")
            if data.draw(st.booleans(), label="munmap"):
                self._call(proc, proc.munmap, addr, length)
            else:
                prot = data.draw(st.sampled_from(PROTS) | st.integers(0, 0x3F), label="prot")
                self._call(proc, proc.mprotect, addr, length, prot)

        @rule(data=st.data())
        def access(self, data) -> None:
            if not self._ready():
                return
            proc = self._proc(data)
            addr = data.draw(self._addresses(proc), label="addr")
            n = data.draw(st.sampled_from([-1, 0, 1, 17, 3 * self.m.arch.page_size]), label="n")
            if data.draw(st.booleans(), label="write"):
                self._call(proc, proc.write, addr, b"\x5a" * max(n, 0))
            else:
                self._call(proc, proc.read, addr, n)

        @rule(data=st.data())
        def pin(self, data) -> None:
            if not self._ready():
                return
            proc = self._proc(data)
            if self.pinned and data.draw(st.booleans(), label="release"):
                owner, pages = self.pinned.pop()
                owner.put_pages(pages)
                return
            addr = data.draw(self._addresses(proc), label="addr")
            npages = data.draw(st.sampled_from([-1, 0, 1, 3]), label="npages")
            write = data.draw(st.booleans(), label="write")
            pages = self._call(proc, proc.get_user_pages, addr, npages, write)
            if isinstance(pages, list) and pages:
                self.pinned.append((proc, pages))

        @rule(data=st.data())
        def inspect(self, data) -> None:
            if not self._ready():
                return
            proc = self._proc(data)
            addr = data.draw(self._addresses(proc), label="addr")
            self._call(proc, proc.lookup, addr)
            for other in self.procs[:3]:
                for vma in other.mm.mmap[:2]:
                    self._call(proc, proc.ptes, vma)

        @rule(data=st.data())
        def devices(self, data) -> None:
            if not self._ready():
                return
            path = data.draw(st.sampled_from(["/dev/buf", "/dev/fb", "/dev/zero"]), label="path")
            if data.draw(st.booleans(), label="buffer"):
                npages = data.draw(
                    st.sampled_from([-1, 0, 2, 16, self.m.phys.nr_pages, 1 << 20]), label="npages"
                )
                self._call(None, self.m.add_device_buffer, path, npages)
            else:
                region = data.draw(st.sampled_from(["fb0", "no-such-region"]), label="region")
                self._call(None, self.m.add_iomem_device, path, region)

        @rule(data=st.data())
        def python_misuse(self, data) -> None:
            """Values no C argument holds: documented as ValueError / TypeError."""
            if not self._ready():
                return
            proc = self._proc(data)
            if not proc.alive:
                return
            bits = self.m.arch.bits_per_long
            bad = data.draw(st.sampled_from([1 << bits, -(1 << bits), 2**80]), label="bad")
            with pytest.raises(ValueError):
                proc.mmap(bad)
            with pytest.raises(ValueError):
                proc.munmap(bad, self.m.arch.page_size)
            with pytest.raises(TypeError):
                proc.mprotect("0", 1, PROT_READ)

        @invariant()
        def consistent(self) -> None:
            if self.m is not None:
                self.m.check_invariants()

        def teardown(self) -> None:
            if self.m is None:
                return
            for owner, pages in self.pinned:
                owner.put_pages(pages)
            for proc in self.procs:
                if proc.alive:
                    proc.exit()
            self.m.check_invariants()
            assert not self.m.pins

    return Misuse


def test_random_misuse_leaves_only_documented_errors(arch_name: str) -> None:
    """Mixed ordinary and adversarial calls on the session's arch, every era: only documented
    exceptions escape and the machine passes check_invariants() after every call."""
    run_state_machine_as_test(_misuse_machine(arch_name), settings=SETTINGS)
