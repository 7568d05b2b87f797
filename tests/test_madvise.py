"""madvise(2): the oracle is mm/madvise.c of 2.6.15 (sys_madvise, madvise_vma, madvise_behavior,
madvise_willneed, madvise_dontneed) and, for the 2.6.26 era, what 2.6.16 added
(madvise_behavior_valid before the walk, MADV_REMOVE, MADV_DONTFORK/DOFORK)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import finish, io_pfn, pattern, pfn_of, rss, vma_at

from pfnmap import (
    MADV_DOFORK,
    MADV_DONTFORK,
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_SHARED,
    O_RDONLY,
    PROT_READ,
    PROT_WRITE,
    KernelError,
    Machine,
)
from pfnmap.kernel.constants import MADV_COLD, VM_DONTCOPY, VM_RAND_READ, VM_SEQ_READ
from pfnmap.kernel.rules import ERAS

RW = PROT_READ | PROT_WRITE


@contextmanager
def era(arch_name: str, name: str) -> Iterator[Machine]:
    machine = Machine(arch_name, "64M", era=name)
    yield machine
    finish(machine)


def devmem(proc, npages: int, flags: int = MAP_SHARED, prot: int = RW) -> int:
    machine = proc.machine
    ps = machine.arch.page_size
    fd = proc.open("/dev/mem")
    return proc.mmap(npages * ps, prot, flags, fd, offset=io_pfn(machine) * ps)


def errno_of(call) -> int:
    with pytest.raises(KernelError) as excinfo:
        call()
    return excinfo.value.errno


def test_dontneed_zaps_private_anonymous_memory(machine: Machine, proc, page_size: int) -> None:
    """madvise_dontneed -> zap_page_range: the pages go (rss and the page's references), the
    next read faults in zeros (the ZERO_PAGE at this era)."""
    addr = proc.mmap(2 * page_size)
    proc.write(addr, pattern(2 * page_size))
    page = pfn_of(proc, addr)
    assert rss(proc) == (0, 2)
    proc.madvise(addr, page_size, MADV_DONTNEED)
    assert rss(proc) == (0, 1)
    assert not proc.lookup(addr).present
    assert machine.page(page).count == 0
    assert proc.read(addr, 8) == bytes(8)
    assert proc.read(addr + page_size, 8) == pattern(2 * page_size)[page_size : page_size + 8]


@pytest.mark.parametrize("name", list(ERAS))
def test_dontneed_refuses_a_pfnmap_vma_in_every_era(arch_name: str, name: str) -> None:
    """The seed's madvise.c change: VM_LOCKED|VM_HUGETLB|VM_PFNMAP is EINVAL (before the seed the
    same bit was called VM_UNPAGED and refused the same way); the ptes stay."""
    with era(arch_name, name) as m:
        proc = m.spawn("t")
        addr = devmem(proc, 2)
        before = proc.ptes(vma_at(proc, addr))
        with pytest.raises(KernelError, match=m.rules.pfnmap_flag_name) as excinfo:
            proc.madvise(addr, m.arch.page_size, MADV_DONTNEED)
        assert excinfo.value.errno == errno.EINVAL
        assert proc.ptes(vma_at(proc, addr)) == before


def test_read_hints_split_the_vma_and_set_its_flags(machine: Machine, proc, page_size: int):
    """madvise_behavior: SEQUENTIAL/RANDOM set VM_SEQ_READ/VM_RAND_READ on exactly the range
    (split_vma at both ends), NORMAL clears both; advice that changes nothing splits nothing."""
    addr = proc.mmap(4 * page_size)
    proc.madvise(addr, 4 * page_size, MADV_NORMAL)
    assert len(proc.vmas) == 1
    proc.madvise(addr + page_size, 2 * page_size, MADV_SEQUENTIAL)
    spans = [(v.vm_start - addr, v.vm_end - addr) for v in proc.vmas]
    assert spans == [(0, page_size), (page_size, 3 * page_size), (3 * page_size, 4 * page_size)]
    assert [bool(v.vm_flags & VM_SEQ_READ) for v in proc.vmas] == [False, True, False]
    proc.madvise(addr + page_size, page_size, MADV_RANDOM)
    flags = [v.vm_flags & (VM_SEQ_READ | VM_RAND_READ) for v in proc.vmas]
    assert flags == [0, VM_RAND_READ, VM_SEQ_READ, 0]
    proc.madvise(addr, 4 * page_size, MADV_NORMAL)
    assert not any(v.vm_flags & (VM_SEQ_READ | VM_RAND_READ) for v in proc.vmas)


def test_holes_are_skipped_and_reported_last(machine: Machine, proc, page_size: int) -> None:
    """sys_madvise: an unmapped part of the range is ENOMEM, but only after the advice went to
    every vma of the range (the "different from mlock" comment in 2.6.15)."""
    addr = proc.mmap(3 * page_size)
    proc.munmap(addr + page_size, page_size)
    assert errno_of(lambda: proc.madvise(addr, 3 * page_size, MADV_RANDOM)) == errno.ENOMEM
    assert all(v.vm_flags & VM_RAND_READ for v in proc.vmas)
    # a range entirely inside a hole, and one past the last vma
    assert errno_of(lambda: proc.madvise(addr + page_size, page_size, 0)) == errno.ENOMEM
    assert errno_of(lambda: proc.madvise(addr + 8 * page_size, page_size, 0)) == errno.ENOMEM


def test_bad_ranges(machine: Machine, proc, page_size: int) -> None:
    """sys_madvise's checks: unaligned start EINVAL, a length that rounds up to zero (a
    negative one, as size_t) or a range that wraps EINVAL, a zero length succeeds untouched."""
    addr = proc.mmap(page_size)
    assert errno_of(lambda: proc.madvise(addr + 1, page_size, MADV_RANDOM)) == errno.EINVAL
    assert errno_of(lambda: proc.madvise(addr, -1, MADV_RANDOM)) == errno.EINVAL
    assert errno_of(lambda: proc.madvise(addr, -2 * page_size, MADV_RANDOM)) == errno.EINVAL
    proc.madvise(addr, 0, MADV_RANDOM)
    proc.madvise(addr + 16 * page_size, 0, MADV_RANDOM)  # no vma needed for nothing
    assert not proc.vmas[0].vm_flags & VM_RAND_READ


@pytest.mark.parametrize("name", ["2.6.15", "2.6.26"])
def test_unknown_advice(arch_name: str, name: str) -> None:
    """2.6.15 has no madvise_behavior_valid(): an unknown advice is EINVAL from madvise_vma()
    only once a vma is reached, so over a hole it is ENOMEM; from 2.6.16 it is EINVAL first.
    MADV_REMOVE/DONTFORK/DOFORK are 2.6.16's, so unknown to 2.6.15."""
    with era(arch_name, name) as m:
        proc = m.spawn("t")
        ps = m.arch.page_size
        addr = proc.mmap(ps)
        hole = addr + 8 * ps
        expect = errno.EINVAL if name == "2.6.26" else errno.ENOMEM
        assert errno_of(lambda: proc.madvise(hole, ps, MADV_COLD)) == expect
        assert errno_of(lambda: proc.madvise(addr, ps, MADV_COLD)) == errno.EINVAL
        assert errno_of(lambda: proc.madvise(addr, ps, -1)) == errno.EINVAL
        if name == "2.6.15":
            for advice in (MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK):
                assert errno_of(lambda a=advice: proc.madvise(addr, ps, a)) == errno.EINVAL
            assert not proc.vmas[0].vm_flags & VM_DONTCOPY


def test_walk_stops_at_the_refusing_vma(machine: Machine, proc, page_size: int) -> None:
    """A vma that refuses the advice ends the walk with its error; the vma before it was
    already zapped (madvise has no rollback), the one after it is not reached."""
    base = proc.mmap(3 * page_size)
    proc.write(base, pattern(3 * page_size))
    fd = proc.open("/dev/mem")
    offset = io_pfn(machine) * page_size
    proc.mmap(page_size, RW, MAP_SHARED | MAP_FIXED, fd, offset=offset, addr=base + page_size)
    err = errno_of(lambda: proc.madvise(base, 3 * page_size, MADV_DONTNEED))
    assert err == errno.EINVAL
    assert not proc.lookup(base).present
    assert proc.lookup(base + page_size).present and proc.lookup(base + 2 * page_size).present


def test_willneed(machine: Machine, proc, page_size: int) -> None:
    """madvise_willneed: EBADF without a file; a regular file's pages are read into its page
    cache (force_page_cache_readahead) without being mapped; /dev/mem reads nothing and
    succeeds."""
    anon = proc.mmap(page_size)
    assert errno_of(lambda: proc.madvise(anon, page_size, MADV_WILLNEED)) == errno.EBADF
    inode = machine.create_file("/data", pattern(3 * page_size))
    fd = proc.open("/data")
    addr = proc.mmap(3 * page_size, PROT_READ, MAP_SHARED, fd)
    proc.madvise(addr + page_size, 2 * page_size, MADV_WILLNEED)
    assert sorted(inode.mapping.pages) == [1, 2]
    assert rss(proc) == (0, 0) and not proc.lookup(addr + page_size).present
    assert proc.read(addr + page_size, 4) == pattern(3 * page_size)[page_size : page_size + 4]
    assert machine.page(inode.mapping.pages[1]).count == 2  # the cache's and the pte's
    dev = devmem(proc, 1)
    proc.madvise(dev, page_size, MADV_WILLNEED)


def test_remove_in_2626(arch_name: str) -> None:
    """madvise_remove (2.6.16): shmem loses the pages of the range in every mapping and the
    data reads back as zeros; a private mapping is EACCES, a file without truncate_range
    (/dev/mem) ENOSYS, an anonymous vma EINVAL."""
    with era(arch_name, "2.6.26") as m:
        proc = m.spawn("t")
        ps = m.arch.page_size
        shm = proc.mmap(2 * ps, RW, MAP_SHARED | MAP_ANONYMOUS)
        proc.write(shm, pattern(2 * ps))
        child = proc.fork("child")
        assert child.read(shm, 4) == pattern(4)
        proc.madvise(shm, ps, MADV_REMOVE)
        assert not proc.lookup(shm).present and not child.lookup(shm).present
        assert child.read(shm, 4) == bytes(4)
        assert proc.read(shm + ps, 4) == pattern(2 * ps)[ps : ps + 4]
        private = proc.mmap(ps)
        assert errno_of(lambda: proc.madvise(private, ps, MADV_REMOVE)) == errno.EINVAL
        dev = devmem(proc, 1)
        assert errno_of(lambda: proc.madvise(dev, ps, MADV_REMOVE)) == errno.ENOSYS
        fd = proc.open("/dev/mem", O_RDONLY)
        ro = proc.mmap(ps, PROT_READ, MAP_SHARED, fd, offset=io_pfn(m) * ps)
        assert errno_of(lambda: proc.madvise(ro, ps, MADV_REMOVE)) == errno.EACCES


def test_dontfork_and_dofork_in_2626(arch_name: str) -> None:
    """MADV_DONTFORK sets VM_DONTCOPY (dup_mmap skips the vma); MADV_DOFORK clears it, but is
    EINVAL on a VM_IO vma, whose VM_DONTCOPY a driver may rely on."""
    with era(arch_name, "2.6.26") as m:
        proc = m.spawn("t")
        ps = m.arch.page_size
        addr = proc.mmap(ps)
        proc.madvise(addr, ps, MADV_DONTFORK)
        assert proc.fork("c1").vmas == []
        proc.madvise(addr, ps, MADV_DOFORK)
        assert len(proc.fork("c2").vmas) == 1
        dev = devmem(proc, 1)
        proc.madvise(dev, ps, MADV_DONTFORK)
        assert errno_of(lambda: proc.madvise(dev, ps, MADV_DOFORK)) == errno.EINVAL
        assert vma_at(proc, dev).vm_flags & VM_DONTCOPY
