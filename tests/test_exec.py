"""execve and exit tear an mm down after the task let go of it (fs/exec.c exec_mmap, kernel/exit.c
exit_mm, kernel/fork.c mmput, all 2.6.15), and the public debugging helpers: follow_page,
poke_pte and the partial/scattered remap driver (Machine.add_remap_device)."""

from __future__ import annotations

import errno

import pytest
from helpers import io_pfn, pattern, pfn_of, rss, vma_at

from pfnmap import (
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    KernelError,
    Machine,
    Piece,
    Verdict,
)
from pfnmap.kernel.constants import FOLL_GET, FOLL_TOUCH, FOLL_WRITE, VM_PFNMAP

RW = PROT_READ | PROT_WRITE


def plant_bad_pte(proc, addr: int) -> int:
    """A present pte for a pfn without a struct page in a normal vma: print_bad_pte's case."""
    machine = proc.machine
    arch = machine.arch
    bad = arch.pfn_pte(io_pfn(machine), vma_at(proc, addr).vm_page_prot)
    return proc.poke_pte(addr, bad)


def test_execve_replaces_the_mm_and_frees_the_old_one(machine: Machine, proc, page_size: int):
    """exec_mmap: the task gets a new, empty mm with its own pgd; the old mm's pages and every
    table of it are released by mmput; the task keeps its pid and open files and takes the new
    name after the switch (flush_old_exec)."""
    free = machine.phys.free_pages()
    fd = proc.open("/dev/mem")
    addr = proc.mmap(2 * page_size)
    proc.write(addr, pattern(2 * page_size))
    old_mm = proc.mm
    proc.execve("newprog")
    assert proc.mm is not old_mm and proc.mm.mmap == [] and proc.comm == "newprog"
    assert old_mm.pgd == 0 and old_mm.nr_pgtables == 0 and old_mm.rss() == 0
    assert machine.phys.free_pages() == free  # the new pgd took the old one's place
    assert proc.pid in machine.processes and fd in proc.fds
    new = proc.mmap(page_size)
    proc.write(new, b"after exec")
    assert proc.read(new, 10) == b"after exec" and rss(proc) == (0, 1)


def test_teardown_bad_ptes_say_process_unknown(machine: Machine, proc, page_size: int) -> None:
    """print_bad_pte prints current->comm only when the vma's mm is current->mm. munmap and
    fork run in the owner's mm (the task's name); exec_mmap and exit_mm have switched or
    cleared tsk->mm before mmput's exit_mmap, so those lines say ``process = ???`` (the
    2.6.15-rc6 sunffb report on LKML, 2005-12-23, kernel-reference S-ffb)."""
    addrs = [proc.mmap(page_size) for _ in range(3)]
    for a in addrs:
        proc.write(a, b"x")
    pages = [pfn_of(proc, a) for a in addrs]
    for a in addrs:
        plant_bad_pte(proc, a)
    proc.munmap(addrs[0], page_size)
    assert [(r.caller, r.comm) for r in machine.bad_ptes] == [("zap_pte_range", proc.comm)]
    child = proc.fork("child")
    assert machine.bad_ptes[-1].caller == "copy_one_pte" and machine.bad_ptes[-1].comm == "test"
    machine.bad_ptes.clear()
    child.execve("sh")
    assert [(r.caller, r.comm) for r in machine.bad_ptes] == [("zap_pte_range", "???")] * 2
    machine.bad_ptes.clear()
    proc.exit()
    assert [(r.caller, r.comm) for r in machine.bad_ptes] == [("zap_pte_range", "???")] * 2
    assert machine.log[-1].startswith("Bad pte = ") and ", process = ???, " in machine.log[-1]
    # the planted ptes hid the real pages from every zap: they are still referenced and
    # mapped once each; release them as the owner would have, so the machine is whole again
    for pfn in pages:
        assert machine.page(pfn).mapcount == 1
        machine.phys.mapcount[pfn] = 0
        machine.phys.put_page(pfn)


def test_exit_keeps_the_dead_mm_for_inspection(machine: Machine, proc, page_size: int) -> None:
    """After exit the process's mm is the torn-down one (no vmas, no tables, rss 0), and the
    process takes no more calls (ESRCH)."""
    proc.write(proc.mmap(page_size), b"x")
    proc.exit()
    assert proc.mm.mmap == [] and proc.mm.pgd == 0 and proc.mm.rss() == 0
    with pytest.raises(KernelError) as excinfo:
        proc.execve()
    assert excinfo.value.errno == errno.ESRCH


def test_follow_page(machine: Machine, proc, page_size: int) -> None:
    """follow_page (mm/memory.c, the seed): the struct page behind a pte or None for a raw PFN
    pte, no pte, or FOLL_WRITE on a read-only pte; FOLL_GET takes a reference. Nothing is
    faulted in (unlike get_user_pages)."""
    addr = proc.mmap(2 * page_size)
    assert proc.follow_page(addr) is None and not proc.lookup(addr).present
    proc.write(addr, b"x")
    page = pfn_of(proc, addr)
    assert proc.follow_page(addr) == page
    count = machine.page(page).count
    assert proc.follow_page(addr, FOLL_GET | FOLL_TOUCH) == page
    assert machine.page(page).count == count + 1
    machine.phys.put_page(page)
    proc.read(addr + page_size, 1)  # the ZERO_PAGE, read-only
    assert proc.follow_page(addr + page_size, FOLL_WRITE) is None
    assert proc.follow_page(addr + page_size) == machine.phys.zero_pfn
    fd = proc.open("/dev/mem")
    dev = proc.mmap(page_size, RW, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
    assert proc.lookup(dev).verdict is Verdict.RAW_PFN
    assert proc.follow_page(dev) is None
    assert proc.follow_page(0) is None  # no vma


def test_poke_pte(machine: Machine, proc, page_size: int) -> None:
    """poke_pte writes a raw value and returns the old one; without alloc a missing table is
    ENOENT (nothing written), with alloc the tables are made as a fault would make them."""
    addr = proc.mmap(page_size)
    with pytest.raises(KernelError) as excinfo:
        proc.poke_pte(addr, 1)
    assert excinfo.value.errno == errno.ENOENT
    assert proc.poke_pte(addr, 0, alloc=True) == 0
    proc.write(addr, b"x")
    real = proc.lookup(addr).raw
    old = plant_bad_pte(proc, addr)
    assert old == real and proc.lookup(addr).verdict is Verdict.BAD
    assert proc.poke_pte(addr, old) != old
    assert proc.read(addr, 1) == b"x"


def test_remap_device_partial_and_scattered(machine: Machine, page_size: int) -> None:
    """add_remap_device: the sunffb shape (a private writable vma built from two discontiguous
    io_remap_pfn_range calls). In the seed each call sets vm_pgoff to its own pfn, and the last
    call does not start at vm_start, so no pte passes the linear rule: both are bad ptes to
    every vm_normal_page caller (kernel-reference §5.5).
    A piece list that leaves a hole is a partial remap: that page has no pte."""
    ffb = machine.add_remap_device("/dev/ffb", "fb0", [Piece(0, 1, 0), Piece(1, 1, 64 * page_size)])
    proc = machine.spawn("X")
    addr = proc.mmap(2 * page_size, RW, MAP_PRIVATE, proc.open(ffb.path))
    vma = vma_at(proc, addr)
    assert vma.vm_flags & VM_PFNMAP and vma.vm_pgoff == io_pfn(machine, 64)
    assert [proc.lookup(addr + k * page_size).verdict for k in (0, 1)] == [Verdict.BAD] * 2
    partial = machine.add_remap_device("/dev/part", "fb0", [Piece(1, 1, 0)])
    other = proc.mmap(2 * page_size, RW, MAP_SHARED, proc.open(partial.path))
    assert not proc.lookup(other).present and proc.lookup(other + page_size).present
    with pytest.raises(KernelError) as excinfo:
        machine.add_remap_device("/dev/none", "nosuch")
    assert excinfo.value.errno == errno.ENODEV
    proc.munmap(addr, 2 * page_size)
    assert [r.caller for r in machine.bad_ptes] == ["zap_pte_range"] * 2
