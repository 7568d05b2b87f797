"""check_invariants(): passes on a machine doing everything at once, and catches each kind of
bookkeeping corruption with a message that names what is wrong.

Each corruption test builds its own machine (not the ``machine`` fixture, whose teardown checks
invariants), corrupts one thing, expects InvariantError naming it, restores it and expects the
check to pass again, which shows the message came from that corruption alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    O_SYNC,
    PROT_READ,
    PROT_WRITE,
    Machine,
    Process,
    Verdict,
)
from pfnmap.kernel.constants import PG_pgtable
from pfnmap.kernel.mmap import iter_ptes
from pfnmap.kernel.pgtable import pte_offset
from pfnmap.machine.invariants import InvariantError, check_invariants
from pfnmap.testing.machines import finish


@dataclass
class Busy:
    machine: Machine
    parent: Process
    child: Process
    anon: int  # private anonymous, two pages written
    shared_file: int
    private_file: int
    devmem_io: int  # /dev/mem over the device region (raw pfns)
    devmem_ram: int  # /dev/mem MAP_PRIVATE over RAM, one page COWed


def busy_machine(arch: str = "x86-64") -> Busy:
    """A machine using every kind of mapping pfnmap has, with a fork in the middle."""
    m = Machine(arch=arch, ram="32M")
    page = m.arch.page_size
    io_base = m.phys.io_regions[0].start
    p = m.spawn("busy")
    anon = p.mmap(4 * page)
    p.write(anon, b"anon0")
    p.write(anon + 2 * page, b"anon2")
    p.read(anon + 3 * page, 1)  # the ZERO_PAGE

    m.create_file("/data", bytes(range(256)) * (3 * page // 256))
    fd = p.open("/data")
    shared_file = p.mmap(3 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd)
    p.write(shared_file + 5, b"shared")
    private_file = p.mmap(3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd)
    p.read(private_file, 1)
    p.write(private_file + page, b"cow")  # an anon copy of a page-cache page

    mem = p.open("/dev/mem", O_RDWR | O_SYNC)
    devmem_io = p.mmap(2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, mem, offset=io_base)
    p.read(devmem_io, 8)
    p.write(devmem_io + page, b"mmio")
    ram_off = 64 * page
    devmem_ram = p.mmap(2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, mem, offset=ram_off)
    p.write(devmem_ram, b"cowed pfnmap page")  # a COWed anon page inside a VM_PFNMAP vma

    shm = p.mmap(2 * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    p.write(shm, b"shm")
    m.add_device_buffer("/dev/dsp", 2)
    dsp = p.open("/dev/dsp")
    buf = p.mmap(2 * page, PROT_READ, MAP_SHARED, dsp)
    p.read(buf, 4)
    pinned = p.get_user_pages(anon, 1, write=True)
    p.mprotect(anon + 2 * page, page, PROT_READ)

    c = p.fork("child")
    c.write(anon, b"child")  # COW break in the child
    c.read(shared_file, 4)
    c.read(devmem_io, 4)
    c.write(devmem_ram + page, b"child cow")
    p.put_pages(pinned)
    return Busy(m, p, c, anon, shared_file, private_file, devmem_io, devmem_ram)


@pytest.fixture
def busy() -> Busy:
    return busy_machine()


def _snapshot(m: Machine) -> tuple:
    phys = m.phys
    tables = []
    for proc in m.processes.values():
        for vma in proc.mm.mmap:
            tables.append(list(iter_ptes(proc.mm, vma.vm_start, vma.vm_end)))
    return (
        list(phys.count),
        list(phys.mapcount),
        list(phys.flags),
        phys.free_pages(),
        [(p.mm.file_rss, p.mm.anon_rss, p.mm.nr_pgtables) for p in m.processes.values()],
        tables,
        bytes(phys.ram),
    )


# a busy machine is consistent ------------------------------------------------------------------
def test_busy_machine_is_consistent(busy: Busy) -> None:
    m = busy.machine
    page = m.arch.page_size
    p, c = busy.parent, busy.child
    # the machine really does all of it
    assert p.lookup(busy.devmem_io).verdict is Verdict.RAW_PFN
    assert p.lookup(busy.devmem_ram).verdict is Verdict.COWED
    assert p.lookup(busy.devmem_ram + page).verdict is Verdict.RAW_PFN
    assert c.lookup(busy.devmem_ram + page).verdict is Verdict.COWED
    assert p.lookup(busy.anon + 3 * page).pfn == m.phys.zero_pfn
    assert c.lookup(busy.anon).pfn != p.lookup(busy.anon).pfn
    assert p.mm.anon_rss > 0 and p.mm.file_rss > 0 and c.mm.anon_rss > 0
    m.check_invariants()
    check_invariants(m)


def test_check_does_not_change_the_machine(busy: Busy) -> None:
    m = busy.machine
    before = _snapshot(m)
    m.check_invariants()
    assert _snapshot(m) == before
    m.phys.count[m.phys.zero_pfn] += 1
    with pytest.raises(InvariantError):
        m.check_invariants()
    m.phys.count[m.phys.zero_pfn] -= 1
    assert _snapshot(m) == before


def test_consistent_after_munmap_and_exit(busy: Busy) -> None:
    m = busy.machine
    page = m.arch.page_size
    busy.parent.munmap(busy.anon + page, 2 * page)  # splits the vma
    m.check_invariants()
    busy.child.exit()
    m.check_invariants()
    busy.parent.exit()
    m.check_invariants()
    phys = m.phys
    assert not any(phys.flags[pfn] & PG_pgtable for pfn in range(phys.nr_pages))
    cached = sum(len(inode.mapping.pages) for inode in m.inodes.values())
    owned = sum(len(getattr(inode, "pages", ())) for inode in m.inodes.values())
    assert phys.allocated == 1 + cached + owned  # the ZERO_PAGE, the page cache, the driver


# corruptions ---------------------------------------------------------------------------------
def _anon_pfn(b: Busy) -> int:
    pfn = b.parent.lookup(b.anon + 2 * b.machine.arch.page_size).pfn
    assert b.machine.phys.mapcount[pfn] == 2  # parent and child share it (COW)
    return pfn


def bump_count(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    pfn = _anon_pfn(b)
    phys.count[pfn] += 1

    def restore() -> None:
        phys.count[pfn] -= 1

    return restore, rf"page {pfn:#x} \([^)]*anon[^)]*\): count=3 mapcount=2, expected count=2"


def drop_mapcount(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    pfn = _anon_pfn(b)
    phys.mapcount[pfn] -= 1

    def restore() -> None:
        phys.mapcount[pfn] += 1

    return restore, rf"page {pfn:#x} .*: count=2 mapcount=1, expected count=2 mapcount=2"


def change_anon_rss(b: Busy) -> tuple[Callable[[], None], str]:
    mm = b.child.mm
    mm.anon_rss += 1

    def restore() -> None:
        mm.anon_rss -= 1

    return restore, (
        rf"{re.escape(repr(b.child))}: ptes map file={mm.file_rss} anon={mm.anon_rss - 1}, "
        rf"counters say file_rss={mm.file_rss} anon_rss={mm.anon_rss}"
    )


def change_file_rss(b: Busy) -> tuple[Callable[[], None], str]:
    mm = b.parent.mm
    mm.file_rss -= 1

    def restore() -> None:
        mm.file_rss += 1

    return restore, rf"{re.escape(repr(b.parent))}: .*counters say file_rss={mm.file_rss} "


def leak_table_frame(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    pfn = phys.alloc_page()
    phys.flags[pfn] |= PG_pgtable

    def restore() -> None:
        phys.flags[pfn] &= ~PG_pgtable
        phys.put_page(pfn)

    return restore, rf"page-table frame {pfn:#x} leaked \(no mm reaches it\)"


def leak_page(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    pfn = phys.alloc_page()

    def restore() -> None:
        phys.put_page(pfn)

    return restore, rf"page {pfn:#x} \(no flags\): count=1 mapcount=0, expected count=0 mapcount=0"


def miscount_tables(b: Busy) -> tuple[Callable[[], None], str]:
    mm = b.child.mm
    mm.nr_pgtables += 1

    def restore() -> None:
        mm.nr_pgtables -= 1

    return restore, rf"{re.escape(repr(b.child))}: \d+ reachable table frames, nr_pgtables="


def unmark_pgd(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    pfn = b.parent.mm.pgd >> phys.page_shift
    phys.flags[pfn] &= ~PG_pgtable

    def restore() -> None:
        phys.flags[pfn] |= PG_pgtable

    return restore, rf"table frame {pfn:#x} is not marked as a page table"


def pin_without_reference(b: Busy) -> tuple[Callable[[], None], str]:
    pins = b.machine.pins
    pfn = _anon_pfn(b)
    pins[pfn] = 1

    def restore() -> None:
        del pins[pfn]

    return restore, rf"page {pfn:#x} .*: count=2 mapcount=2, expected count=3 mapcount=2"


def lose_zero_page_reference(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    zero = phys.zero_pfn
    phys.count[zero] -= 1
    expected = phys.count[zero] + 1

    def restore() -> None:
        phys.count[zero] += 1

    return (
        restore,
        rf"page {zero:#x} \(reserved\): count={expected - 1} .*expected count={expected}",
    )


def steal_free_page(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    pfn = phys._free.pop()  # gone from the free list, but nobody holds it

    def restore() -> None:
        phys._free.append(pfn)

    return restore, rf"pages in use \+ {phys.free_pages()} free != {phys.nr_pages} RAM pages"


def duplicate_pte(b: Busy) -> tuple[Callable[[], None], str]:
    """A second pte for an anon page, written behind the kernel's back."""
    m = b.machine
    page = m.arch.page_size
    mm = b.parent.mm
    src = pte_offset(mm, b.anon + 2 * page)
    dst = pte_offset(mm, b.anon + page)
    assert m.tables.read_pte(dst) == 0
    pte = m.tables.read_pte(src)
    pfn = m.arch.pte_pfn(pte)
    m.tables.write_pte(dst, pte)

    def restore() -> None:
        m.tables.write_pte(dst, 0)

    return restore, rf"page {pfn:#x} .*: count=2 mapcount=2, expected count=3 mapcount=3"


def drop_cache_reference(b: Busy) -> tuple[Callable[[], None], str]:
    phys = b.machine.phys
    pfn = b.machine.inodes["/data"].mapping.pages[0]
    phys.count[pfn] -= 1

    def restore() -> None:
        phys.count[pfn] += 1

    return restore, rf"page {pfn:#x} \([^)]*\): count=\d+ mapcount=\d+, expected count=\d+"


CORRUPTIONS = [
    bump_count,
    drop_mapcount,
    change_anon_rss,
    change_file_rss,
    leak_table_frame,
    leak_page,
    miscount_tables,
    unmark_pgd,
    pin_without_reference,
    lose_zero_page_reference,
    steal_free_page,
    duplicate_pte,
    drop_cache_reference,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[f.__name__ for f in CORRUPTIONS])
def test_corruption_is_caught(busy: Busy, corrupt: Callable) -> None:
    m = busy.machine
    m.check_invariants()
    restore, pattern = corrupt(busy)
    with pytest.raises(InvariantError) as info:
        m.check_invariants()
    message = str(info.value)
    assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"
    assert isinstance(info.value, AssertionError)
    restore()
    m.check_invariants()


def test_one_corruption_one_line(busy: Busy) -> None:
    """A single bumped count is reported once, not drowned in follow-on complaints."""
    restore, pattern = bump_count(busy)
    with pytest.raises(InvariantError) as info:
        busy.machine.check_invariants()
    lines = str(info.value).splitlines()
    assert len(lines) == 1
    assert re.search(pattern, lines[0])
    restore()


def test_many_problems_are_capped(busy: Busy) -> None:
    phys = busy.machine.phys
    leaked = [phys.alloc_page() for _ in range(25)]
    with pytest.raises(InvariantError) as info:
        busy.machine.check_invariants()
    lines = str(info.value).splitlines()
    assert len(lines) == 21
    assert lines[-1] == "... and 5 more"
    for pfn in leaked:
        phys.put_page(pfn)
    busy.machine.check_invariants()


@pytest.mark.parametrize("flip", ["table", "pte"])
def test_corrupted_tables_are_caught(busy: Busy, flip: str) -> None:
    """Zeroing one pte or one pmd entry behind the kernel's back strands what they mapped."""
    m = busy.machine
    mm = busy.parent.mm
    slot = pte_offset(mm, busy.anon)
    if flip == "pte":
        saved, where = m.tables.read_pte(slot), slot
        m.tables.write_pte(slot, 0)
    else:
        steps = busy.parent.lookup(busy.anon).walk
        upper = steps[-2]  # the entry that points to the pte table
        saved, where = upper.value, upper.slot
        m.tables.write(upper.level, upper.slot, 0)
    with pytest.raises(InvariantError):
        m.check_invariants()
    if flip == "pte":
        m.tables.write_pte(where, saved)
    else:
        m.tables.write(steps[-2].level, where, saved)
    m.check_invariants()


def test_every_registered_arch_passes_a_busy_run() -> None:
    from pfnmap.plugins.manager import default_registry

    for name in default_registry().names():
        b = busy_machine(name)
        finish(b.machine)
