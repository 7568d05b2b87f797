"""Conformance checks 5: the core's semantics on the arch, each scenario audited."""

from __future__ import annotations

import errno

import pytest

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    BusError,
    KernelError,
    Machine,
    Process,
    SegmentationFault,
    Verdict,
)
from pfnmap.kernel.constants import VM_IO, VM_PFNMAP


def _pattern(n: int, salt: int) -> bytes:
    return bytes(((i * 131 + salt * 17 + 1) % 251) + 1 for i in range(n))


def _reserved_pfn(machine: Machine) -> int:
    """A reserved RAM page (firmware-like): it has a struct page and nobody maps it."""
    pfn = machine.phys.reserved_low_pages - 2
    assert pfn > 0 and "reserved" in machine.page(pfn).flags
    return pfn


def test_anon_read_maps_the_zero_page(pfnmap_machine: Machine) -> None:
    """sem.anon: a read fault of anonymous memory maps the ZERO_PAGE read-only; a write then
    gets a private zeroed page."""
    m = pfnmap_machine
    p = m.spawn("kit")
    ps = m.arch.page_size
    addr = p.mmap(2 * ps)
    assert p.read(addr, 16) == bytes(16)
    info = p.lookup(addr)
    assert info.pfn == m.phys.zero_pfn and info.verdict is Verdict.NORMAL
    assert not m.arch.pte_write(info.raw)
    p.write(addr + 8, b"kit")
    info = p.lookup(addr)
    assert info.pfn != m.phys.zero_pfn and m.page(info.pfn).anon
    assert m.arch.pte_write(info.raw) and m.arch.pte_dirty(info.raw)
    assert p.read(addr, 11) == bytes(8) + b"kit"
    assert p.rss() == {"file_rss": 0, "anon_rss": 1, "rss": 1}
    m.check_invariants()


def test_cow_after_fork(pfnmap_machine: Machine) -> None:
    """sem.cow: after fork both tasks map the page write-protected with mapcount 2 (the
    child's pte old); the child's write copies it, the parent's data and page stay."""
    m = pfnmap_machine
    arch = m.arch
    parent = m.spawn("parent")
    addr = parent.mmap(arch.page_size)
    data = _pattern(64, 1)
    parent.write(addr, data)
    pfn = parent.lookup(addr).pfn
    child = parent.fork()
    assert not arch.pte_write(parent.lookup(addr).raw)
    assert not arch.pte_write(child.lookup(addr).raw)
    assert not arch.pte_young(child.lookup(addr).raw), "copy_one_pte makes the child's pte old"
    assert child.lookup(addr).pfn == pfn
    assert (m.page(pfn).count, m.page(pfn).mapcount) == (2, 2)
    m.check_invariants()
    child.write(addr, b"child")
    copy = child.lookup(addr).pfn
    assert copy != pfn and m.page(copy).anon
    assert child.read(addr, 64) == b"child" + data[5:]
    assert parent.read(addr, 64) == data
    assert (m.page(pfn).count, m.page(pfn).mapcount) == (1, 1)
    parent.write(addr, b"parent")  # the last mapping reuses its page in place
    assert parent.lookup(addr).pfn == pfn
    m.check_invariants()


def _devmem(machine: Machine, proc: Process, pfn: int, npages: int, flags: int, prot: int) -> int:
    """mmap ``npages`` of /dev/mem from physical page ``pfn``."""
    fd = proc.open("/dev/mem", O_RDWR)
    return proc.mmap(
        npages * machine.arch.page_size, prot, flags, fd, offset=pfn << machine.arch.page_shift
    )


def test_devmem_beyond_ram_is_a_raw_pfn_mapping(pfnmap_machine: Machine) -> None:
    """sem.devmem: /dev/mem beyond RAM is VM_PFNMAP; every pte is a raw pfn, reads reach the
    device, fork copies the ptes without references, munmap drops nothing."""
    m = pfnmap_machine
    arch = m.arch
    region = m.phys.io_regions[0]
    pfn0 = region.start >> arch.page_shift
    p = m.spawn("x")
    addr = _devmem(m, p, pfn0, 3, MAP_SHARED, PROT_READ | PROT_WRITE)
    vma = p.mm.find_vma(addr)
    assert vma.vm_flags & (VM_PFNMAP | VM_IO) == VM_PFNMAP | VM_IO and vma.vm_pgoff == pfn0
    free = m.phys.free_pages()
    for i in range(3):
        info = p.lookup(addr + i * arch.page_size)
        assert info.verdict is Verdict.RAW_PFN and info.pfn == pfn0 + i, info.reason
    assert p.read(addr + arch.page_size, 32) == m.phys.read(region.start + arch.page_size, 32)
    p.write(addr, b"to the device")
    assert m.phys.read(region.start, 13) == b"to the device"
    child = p.fork()
    assert child.read(addr, 13) == b"to the device"
    assert child.lookup(addr).verdict is Verdict.RAW_PFN
    assert p.rss()["rss"] == child.rss()["rss"] == 0
    child.munmap(addr, 3 * arch.page_size)
    assert p.read(addr, 13) == b"to the device"
    m.check_invariants()
    child.exit()
    assert m.phys.free_pages() == free, "fork or munmap of raw ptes took or leaked pages"
    assert not m.bad_ptes, m.log


def test_devmem_inside_ram_leaves_struct_pages_alone(pfnmap_machine: Machine) -> None:
    """sem.devmem: /dev/mem over RAM pages with struct pages still maps raw pfns: mapping,
    fork and munmap leave the pages' counts and mapcounts alone."""
    m = pfnmap_machine
    arch = m.arch
    pfn = _reserved_pfn(m)
    before = (m.page(pfn).count, m.page(pfn).mapcount)
    p = m.spawn("x")
    addr = _devmem(m, p, pfn, 2, MAP_SHARED, PROT_READ | PROT_WRITE)
    for i in range(2):
        info = p.lookup(addr + i * arch.page_size)
        assert info.verdict is Verdict.RAW_PFN and info.pfn == pfn + i, info.reason
    p.write(addr + 5, b"firmware")
    assert m.phys.read((pfn << arch.page_shift) + 5, 8) == b"firmware"
    child = p.fork()
    assert child.read(addr + 5, 8) == b"firmware"
    assert (m.page(pfn).count, m.page(pfn).mapcount) == before
    child.exit()
    p.munmap(addr, 2 * arch.page_size)
    assert (m.page(pfn).count, m.page(pfn).mapcount) == before
    assert not m.bad_ptes, m.log
    m.check_invariants()


@pytest.mark.parametrize("where", ["beyond RAM", "inside RAM"])
def test_devmem_private_write_cows(pfnmap_machine: Machine, where: str) -> None:
    """sem.devmem-cow: a write to a MAP_PRIVATE /dev/mem mapping COWs that page into an
    anonymous page holding the old bytes (a COWed page in a VM_PFNMAP vma); the other pages
    stay raw and the source is unchanged."""
    m = pfnmap_machine
    arch = m.arch
    ps = arch.page_size
    pfn = (m.phys.io_regions[0].start >> arch.page_shift) if where == "beyond RAM" else 0
    pfn = pfn or _reserved_pfn(m) - 1
    source = m.phys.read(pfn << arch.page_shift, 64)
    p = m.spawn("x")
    addr = _devmem(m, p, pfn, 2, MAP_PRIVATE, PROT_READ | PROT_WRITE)
    p.write(addr + ps, b"mine")
    info = p.lookup(addr + ps)
    assert info.verdict is Verdict.COWED, info.reason
    assert m.page(info.pfn).anon and (m.page(info.pfn).count, m.page(info.pfn).mapcount) == (1, 1)
    assert p.read(addr + ps, 4) == b"mine"
    rest = m.phys.read(((pfn + 1) << arch.page_shift) + 4, 60)
    assert p.read(addr + ps + 4, 60) == rest, "cow_user_page did not copy the old bytes"
    assert p.lookup(addr).verdict is Verdict.RAW_PFN
    assert p.read(addr, 64) == source
    assert m.phys.read((pfn + 1) << arch.page_shift, 4) != b"mine"
    assert p.rss() == {"file_rss": 0, "anon_rss": 1, "rss": 1}
    child = p.fork()
    assert child.read(addr + ps, 4) == b"mine"
    assert m.page(info.pfn).mapcount == 2
    m.check_invariants()


def test_devmem_at_the_top_of_the_physical_space(pfnmap_machine: Machine) -> None:
    """sem.devmem-edge: /dev/mem at max_pfn maps a raw pte with that pfn (an access there
    is a bus error: nothing decodes it); one page further is EINVAL."""
    m = pfnmap_machine
    arch = m.arch
    p = m.spawn("x")
    addr = _devmem(m, p, arch.max_pfn, 1, MAP_SHARED, PROT_READ)
    info = p.lookup(addr)
    assert info.verdict is Verdict.RAW_PFN and info.pfn == arch.max_pfn, info.reason
    assert arch.pte_pfn(info.raw) == arch.max_pfn
    if m.phys.io_region_of(arch.max_pfn << arch.page_shift) is None:
        with pytest.raises(BusError):
            p.read(addr, 1)
    with pytest.raises(KernelError) as excinfo:
        _devmem(m, p, arch.max_pfn + 1, 1, MAP_SHARED, PROT_READ)
    assert excinfo.value.errno == errno.EINVAL
    m.check_invariants()


def test_mprotect(pfnmap_machine: Machine) -> None:
    """sem.mprotect: read-only refuses a write (SIGSEGV) and keeps the data; PROT_NONE refuses
    a read; read-write again lets the page be written in place."""
    m = pfnmap_machine
    p = m.spawn("x")
    ps = m.arch.page_size
    addr = p.mmap(ps)
    p.write(addr, b"before")
    pfn = p.lookup(addr).pfn
    p.mprotect(addr, ps, PROT_READ)
    with pytest.raises(SegmentationFault):
        p.write(addr, b"after")
    assert p.read(addr, 6) == b"before"
    p.mprotect(addr, ps, PROT_NONE)
    assert p.lookup(addr).present
    with pytest.raises(SegmentationFault):
        p.read(addr, 1)
    p.mprotect(addr, ps, PROT_READ | PROT_WRITE)
    p.write(addr, b"after")
    assert p.lookup(addr).pfn == pfn and p.read(addr, 6) == b"aftere"
    m.check_invariants()


def test_munmap_and_exit_give_every_page_back(pfnmap_machine: Machine) -> None:
    """sem.teardown: anonymous, shared anonymous and /dev/mem mappings across a fork, then
    munmap and exit: every page and table comes back and the invariants hold throughout."""
    m = pfnmap_machine
    arch = m.arch
    ps = arch.page_size
    free = m.phys.free_pages()
    p = m.spawn("x")
    anon = p.mmap(4 * ps)
    shared = p.mmap(2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS)
    dev = _devmem(m, p, m.phys.io_regions[0].start >> arch.page_shift, 2, MAP_SHARED, PROT_READ)
    for i in range(4):
        p.write(anon + i * ps, _pattern(16, i))
    p.write(shared, b"shared")
    p.read(dev, 8)
    child = p.fork()
    assert child.read(shared, 6) == b"shared"
    child.write(shared, b"SHARED")
    assert p.read(shared, 6) == b"SHARED"
    child.write(anon, b"c")
    m.check_invariants()
    p.munmap(anon + ps, 2 * ps)
    assert p.mm.find_vma(anon + ps).vm_start == anon + 3 * ps
    m.check_invariants()
    child.exit()
    m.check_invariants()
    p.exit()
    m.check_invariants()
    assert m.phys.free_pages() == free
    assert not m.bad_ptes, m.log
