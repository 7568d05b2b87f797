"""fork and munmap of the 1 GiB mapping: 262,144 ptes, half anonymous pages, half raw /dev/mem
PFNs (copy_page_range / zap_pte_range over 513 pte tables).

munmap is measured twice. The headline (``munmap: forked child``) forks in the untimed setup
and munmaps the whole 1 GiB in the child: the same 262,144 ptes, and a round costs a fork
instead of faulting 131,072 pages in again; the pages survive (the parent still maps them), so
put_page only drops a reference. ``munmap: sole owner`` rebuilds the mapping in the setup of
every round (about 3.5 s each) and munmaps it in its only process, so the anonymous pages are
freed too.
"""

from __future__ import annotations

import pytest
from benchlib import HALF, ROUNDS, BigProcess, map_big, new_machine

GROUP = "1 GiB mapping: 262,144 ptes"


@pytest.mark.benchmark(group=GROUP)
def test_fork(benchmark, big: BigProcess, record) -> None:
    """Time ``proc.fork()``; the child exits in the untimed teardown."""
    children = []

    def fork() -> None:
        children.append(big.proc.fork())

    def exit_child() -> None:
        child = children.pop()
        assert child.rss()["anon_rss"] == big.npages // 2  # every anon pte was copied
        assert len(child.ptes(child.vmas[1])) == big.npages // 2  # and every raw PFN pte
        child.exit()

    benchmark.pedantic(fork, teardown=exit_child, rounds=ROUNDS)
    for child in children:  # --benchmark-disable runs the target once, without teardown
        child.exit()
    record("fork", big.npages, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_munmap_forked_child(benchmark, big: BigProcess, record) -> None:
    """Fork in the setup, time the child's munmap of the whole 1 GiB, exit it in teardown."""

    def setup():
        return (big.proc.fork(),), {}

    def munmap(child) -> None:
        child.munmap(big.start, big.length)

    def teardown(child) -> None:
        assert not child.vmas and child.mm.nr_ptes == 0 and child.rss()["rss"] == 0
        child.exit()

    benchmark.pedantic(munmap, setup=setup, teardown=teardown, rounds=ROUNDS)
    record("munmap: forked child", big.npages, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_munmap_sole_owner(benchmark, record) -> None:
    """Map and fault in the 1 GiB again in each setup; time its munmap (pages freed)."""
    machine = new_machine()  # its own: the session's machine has no room for a second copy
    proc = machine.spawn("owner")
    fd = proc.open("/dev/mem")
    page_size = machine.arch.page_size
    state = {}

    def setup() -> None:
        state["free"] = machine.phys.free_pages()
        state["start"] = map_big(proc, fd)

    def munmap() -> None:
        proc.munmap(state["start"], 2 * HALF)

    def teardown() -> None:
        assert not proc.vmas and proc.mm.nr_ptes == 0
        assert machine.phys.free_pages() == state["free"]  # every anon page went back

    benchmark.pedantic(munmap, setup=setup, teardown=teardown, rounds=ROUNDS)
    machine.check_invariants()
    proc.exit()
    record("munmap: sole owner", 2 * HALF // page_size, "ptes")
