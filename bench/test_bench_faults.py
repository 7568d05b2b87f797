"""Page faults per second, through the user access path.

Each round touches ``NPAGES`` fresh pages with one one-byte ``Process.write`` (or ``read``) per
page: the MMU walk misses, do_page_fault and handle_mm_fault run, the MMU walk is retried and
the byte is stored. The setup maps the fresh memory and the teardown unmaps it, both untimed;
every round checks that it took exactly ``NPAGES`` faults. The four kinds share one 256 MiB
machine (its own, not the 1 GiB one).

- anon write: do_anonymous_page allocates and zeroes a page;
- anon read: do_anonymous_page maps the ZERO_PAGE;
- COW after fork: the parent writes pages its live child shares: do_wp_page copies each one;
- COW of a raw PFN: writes to a private /dev/mem mapping of device memory: do_wp_page finds no
  struct page and cow_user_page copies from the user address (the VM_PFNMAP COW case).
"""

from __future__ import annotations

import pytest
from benchlib import ARCH, IO_BASE, fault_in

from pfnmap import MAP_PRIVATE, PROT_READ, PROT_WRITE, IORegion, Machine

NPAGES = 4096
#: faults are cheap: more rounds than the 1 GiB benchmarks, after one warm-up round (the first
#: touch of emulated RAM also costs the host a page fault per page, which is not what we measure)
ROUNDS = 5
GROUP = f"page faults: {NPAGES} per round"


@pytest.fixture(scope="module")
def machine():
    m = Machine(ARCH, ram="256M", io=[IORegion("fb0", IO_BASE, 64 << 20)])
    yield m
    m.check_invariants()
    for proc in list(m.processes.values()):
        proc.exit()


def run_faults(benchmark, machine, setup, touch, teardown) -> None:
    """pedantic rounds of ``touch(addr)``, asserting each took exactly NPAGES faults."""
    counts = []

    def timed(addr: int) -> None:
        before = machine.faults
        touch(addr)
        counts.append(machine.faults - before)

    benchmark.pedantic(timed, setup=setup, teardown=teardown, rounds=ROUNDS, warmup_rounds=1)
    assert counts and all(n == NPAGES for n in counts), counts


@pytest.mark.benchmark(group=GROUP)
def test_fault_anon_write(benchmark, machine, record) -> None:
    proc = machine.spawn("anon-write")
    length = NPAGES * machine.arch.page_size

    def setup():
        return (proc.mmap(length),), {}

    run_faults(
        benchmark,
        machine,
        setup,
        lambda a: fault_in(proc, a, length),
        lambda a: proc.munmap(a, length),
    )
    proc.exit()
    record("faults: anon write", NPAGES, "faults")


@pytest.mark.benchmark(group=GROUP)
def test_fault_anon_read_zero_page(benchmark, machine, record) -> None:
    proc = machine.spawn("anon-read")
    page_size = machine.arch.page_size
    length = NPAGES * page_size

    def setup():
        return (proc.mmap(length),), {}

    def touch(addr: int) -> None:
        for off in range(0, length, page_size):
            proc.read(addr + off, 1)

    run_faults(benchmark, machine, setup, touch, lambda a: proc.munmap(a, length))
    proc.exit()
    record("faults: anon read (zero page)", NPAGES, "faults")


@pytest.mark.benchmark(group=GROUP)
def test_fault_cow_after_fork(benchmark, machine, record) -> None:
    proc = machine.spawn("cow-parent")
    length = NPAGES * machine.arch.page_size
    children = []

    def setup():
        addr = proc.mmap(length)
        fault_in(proc, addr, length)
        children.append(proc.fork())
        return (addr,), {}

    def teardown(addr: int) -> None:
        children.pop().exit()
        proc.munmap(addr, length)

    run_faults(benchmark, machine, setup, lambda a: fault_in(proc, a, length), teardown)
    proc.exit()
    record("faults: COW after fork", NPAGES, "faults")


@pytest.mark.benchmark(group=GROUP)
def test_fault_cow_raw_pfn(benchmark, machine, record) -> None:
    proc = machine.spawn("cow-pfn")
    fd = proc.open("/dev/mem")
    length = NPAGES * machine.arch.page_size
    prot = PROT_READ | PROT_WRITE

    def setup():
        return (proc.mmap(length, prot, MAP_PRIVATE, fd, offset=IO_BASE),), {}

    run_faults(
        benchmark,
        machine,
        setup,
        lambda a: fault_in(proc, a, length),
        lambda a: proc.munmap(a, length),
    )
    proc.exit()
    record("faults: COW of a raw PFN", NPAGES, "faults")
