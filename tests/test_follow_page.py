"""follow_page() and get_user_pages(): finding and pinning the pages behind user addresses.

The oracle is follow_page / get_user_pages in mm/memory.c at the seed 6aab341e (2.6.15-rc3),
kernel-reference §3.5 and §3.6; the rc6 change "get_user_pages: don't try to follow PFNMAP
pages" (1ff80389) is shown next to the seed.
"""

from __future__ import annotations

import errno

import pytest
from helpers import (
    FINAL_2_6_15,
    aligned_free_address,
    counts,
    io_pfn,
    pattern,
    pfn_of,
    rss,
    rules_machine,
    table_span,
    vma_at,
)

from pfnmap import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    KernelBug,
    KernelError,
    KernelLivelock,
    Machine,
    SegmentationFault,
)
from pfnmap.kernel.constants import FOLL_ANON, FOLL_GET, FOLL_TOUCH, FOLL_WRITE, VM_IO, VM_PFNMAP
from pfnmap.kernel.memory import follow_page, get_user_pages
from pfnmap.kernel.remap import remap_pfn_range

RW = PROT_READ | PROT_WRITE


def test_gup_refuses_vm_io(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages at the seed (6aab341e) refuses a VM_IO vma with -EFAULT, as /dev/mem
    mappings are; this holds even for a COWed anon page inside such a vma."""
    fd = proc.open("/dev/mem")
    addr = proc.mmap(2 * page_size, RW, MAP_PRIVATE, fd, offset=io_pfn(machine) * page_size)
    proc.write(addr, b"cow")  # a real anon page now sits at addr
    for write in (False, True):
        with pytest.raises(KernelError) as info:
            proc.get_user_pages(addr, 1, write=write)
        assert info.value.errno == errno.EFAULT
    assert not machine.pins
    assert counts(machine, pfn_of(proc, addr)) == (1, 1)


def test_gup_pins_and_put_pages_releases(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages at the seed (6aab341e): FOLL_GET takes one reference per page returned;
    put_page gives it back. The mapcount is untouched."""
    addr = proc.mmap(2 * page_size)
    proc.write(addr, pattern(2 * page_size))
    pfns = [pfn_of(proc, addr + k * page_size) for k in range(2)]
    pages = proc.get_user_pages(addr, 2)
    assert pages == pfns
    assert all(counts(machine, pfn) == (2, 1) for pfn in pfns)
    again = proc.get_user_pages(addr, 1, write=True)
    assert again == pfns[:1] and counts(machine, pfns[0]) == (3, 1)
    proc.put_pages(pages + again)
    assert all(counts(machine, pfn) == (1, 1) for pfn in pfns)
    with pytest.raises(KernelError) as info:
        proc.put_pages(pfns[:1])
    assert info.value.errno == errno.EINVAL


def test_gup_stops_at_a_hole_with_a_short_list(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages at the seed (6aab341e): a failure after i pages returns i, not an error
    (`i ? i : -EFAULT`); only the pages returned are pinned."""
    addr = proc.mmap(2 * page_size)
    proc.write(addr, b"xy")
    pages = proc.get_user_pages(addr, 4)
    assert len(pages) == 2
    assert sum(machine.pins.values()) == 2
    proc.put_pages(pages)


def test_gup_stops_at_a_vm_io_neighbour(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages at the seed (6aab341e) checks each vma it walks into: an anon vma
    followed by a /dev/mem vma gives the anon pages only."""
    addr = proc.mmap(2 * page_size)
    fd = proc.open("/dev/mem")
    dev = proc.mmap(
        page_size,
        PROT_READ,
        MAP_SHARED | MAP_FIXED,
        fd,
        offset=io_pfn(machine) * page_size,
        addr=addr + 2 * page_size,
    )
    assert dev == addr + 2 * page_size
    pages = proc.get_user_pages(addr, 3, write=True)
    assert len(pages) == 2
    assert rss(proc) == (0, 2)  # the anon pages were faulted in for writing
    proc.put_pages(pages)


def test_gup_first_page_failing_is_efault(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages at the seed (6aab341e): no vma, or a vma lacking the needed VM_READ /
    VM_WRITE (force is 0), fails the first page with -EFAULT."""
    ro = proc.mmap(page_size, PROT_READ)
    none = proc.mmap(page_size, PROT_NONE)
    hole = none + 16 * page_size
    for addr, write in ((hole, False), (ro, True), (none, False)):
        with pytest.raises(KernelError) as info:
            proc.get_user_pages(addr, 1, write=write)
        assert info.value.errno == errno.EFAULT
    assert not machine.pins
    assert rss(proc) == (0, 0)


def test_read_gup_without_page_table_returns_zero_page(machine: Machine, proc, page_size):
    """follow_page at the seed (6aab341e): with no page table and FOLL_ANON (a read of a vma
    without ->nopage), the ZERO_PAGE comes back referenced; nothing is mapped or counted."""
    addr = proc.mmap(2 * page_size)
    zero = machine.phys.zero_pfn
    before = counts(machine, zero)
    assert not proc.lookup(addr).present
    pages = proc.get_user_pages(addr, 2)
    assert pages == [zero, zero]
    assert counts(machine, zero) == (before[0] + 2, before[1])
    assert not proc.lookup(addr).present
    assert rss(proc) == (0, 0)
    proc.put_pages(pages)
    assert counts(machine, zero) == before


def test_read_gup_with_page_table_faults_in_zero_page(machine: Machine, proc, page_size):
    """get_user_pages at the seed (6aab341e): when the pte table exists but the pte is none,
    follow_page returns NULL and do_anonymous_page maps the ZERO_PAGE (file_rss + 1), which
    is then returned with an extra reference."""
    span = table_span(machine)
    start = aligned_free_address(proc, span, span)  # both pages under one pte table
    addr = proc.mmap(2 * page_size, addr=start)
    assert addr == start
    proc.write(addr, b"table")
    zero = machine.phys.zero_pfn
    before = counts(machine, zero)
    [page] = proc.get_user_pages(addr + page_size, 1)
    assert page == zero
    assert proc.lookup(addr + page_size).pfn == zero
    assert counts(machine, zero) == (before[0] + 2, before[1] + 1)
    assert rss(proc) == (1, 1)
    proc.put_pages([page])


def test_write_gup_faults_in_anon_pages(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages(write=1) at the seed (6aab341e): FOLL_WRITE makes follow_page fail until
    do_anonymous_page has mapped a writable page, which is then pinned."""
    addr = proc.mmap(2 * page_size)
    pages = proc.get_user_pages(addr, 2, write=True)
    assert len(set(pages)) == 2 and machine.phys.zero_pfn not in pages
    assert rss(proc) == (0, 2)
    for k, pfn in enumerate(pages):
        assert pfn_of(proc, addr + k * page_size) == pfn
        assert machine.page(pfn).anon and counts(machine, pfn) == (2, 1)
    proc.put_pages(pages)


def test_write_gup_breaks_cow(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages(write=1) at the seed (6aab341e): a write-protected shared anon page is
    COWed by do_wp_page (VM_FAULT_WRITE clears FOLL_WRITE) and the private copy is pinned."""
    arch = machine.arch
    addr = proc.mmap(page_size)
    proc.write(addr, b"before fork")
    old = pfn_of(proc, addr)
    child = proc.fork("child")
    [new] = proc.get_user_pages(addr, 1, write=True)
    assert new != old
    assert pfn_of(proc, addr) == new and arch.pte_write(proc.lookup(addr).raw)
    assert pfn_of(child, addr) == old
    assert counts(machine, old) == (1, 1)
    assert counts(machine, new) == (2, 1)
    assert machine.phys.read(new * page_size, 11) == b"before fork"
    proc.put_pages([new])


def test_write_gup_replaces_the_zero_page(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages(write=1) at the seed (6aab341e) over a ZERO_PAGE pte: do_wp_page gives
    a fresh zeroed anon page, moving one page from file_rss to anon_rss."""
    addr = proc.mmap(page_size)
    proc.read(addr, 1)
    assert rss(proc) == (1, 0)
    [page] = proc.get_user_pages(addr, 1, write=True)
    assert page != machine.phys.zero_pfn and machine.page(page).anon
    assert rss(proc) == (0, 1)
    assert machine.phys.read(page * page_size, page_size) == bytes(page_size)
    proc.put_pages([page])


def test_forced_write_gup_cows_a_read_only_private_mapping(machine: Machine, proc, page_size):
    """get_user_pages(write=1, force=1) at the seed (6aab341e), the ptrace path: VM_MAYWRITE
    suffices, do_wp_page COWs the page-cache page but maybe_mkwrite leaves the pte read-only,
    and VM_FAULT_WRITE drops FOLL_WRITE so the copy is returned instead of faulting again."""
    arch = machine.arch
    data = pattern(page_size)
    inode = machine.create_file("/bin/true", data)
    addr = proc.mmap(page_size, PROT_READ, MAP_PRIVATE, proc.open("/bin/true"))
    proc.read(addr, 1)
    cached = inode.mapping.pages[0]
    with pytest.raises(KernelError) as info:
        proc.get_user_pages(addr, 1, write=True)  # no VM_WRITE without force
    assert info.value.errno == errno.EFAULT
    [copy] = get_user_pages(proc.mm, addr, 1, write=True, force=True)
    assert copy != cached and machine.page(copy).anon
    pte = proc.lookup(addr).raw
    assert arch.pte_pfn(pte) == copy and not arch.pte_write(pte)
    assert counts(machine, copy) == (2, 1)  # the pte + gup's reference
    assert counts(machine, cached) == (1, 0)
    assert rss(proc) == (0, 1)
    machine.phys.write(copy * page_size, b"\xcc")  # what ptrace's breakpoint store does
    machine.phys.put_page(copy)
    assert proc.read(addr, 2) == b"\xcc" + data[1:2]
    assert machine.phys.read(cached * page_size, 1) == data[:1]
    # the mm selftest mkdirty.c: after the forced write a user store must still fault. On x86
    # pte_mkdirty leaves _PAGE_RW alone; sparc64's of the era also set the hardware-writable
    # _PAGE_W, so there the store goes through (the bug mkdirty.c caught in 2022, "sparc/mm:
    # don't unconditionally set HW writable bit when setting PTE dirty on 64bit"); either way
    # it can only reach the private copy
    if arch.pte_hw_access_ok(proc.lookup(addr).raw, True):
        proc.write(addr, b"x")
        assert machine.phys.read(copy * page_size, 1) == b"x"
    else:
        with pytest.raises(SegmentationFault) as info:
            proc.write(addr, b"x")
        assert info.value.address == addr
        assert proc.read(addr, 1) == b"\xcc"
    assert not arch.pte_write(proc.lookup(addr).raw)
    assert machine.phys.read(cached * page_size, page_size) == data


def test_gup_reaches_page_cache_and_driver_pages(machine: Machine, proc, page_size: int):
    """get_user_pages at the seed (6aab341e) on ->nopage vmas (no FOLL_ANON): the page-cache
    page of a file and the driver's own page of a VM_RESERVED buffer are pinned as they are."""
    inode = machine.create_file("/f", pattern(page_size))
    dev = machine.add_device_buffer("/dev/buf", 1)
    file_addr = proc.mmap(page_size, PROT_READ, MAP_SHARED, proc.open("/f"))
    dev_addr = proc.mmap(page_size, RW, MAP_SHARED, proc.open("/dev/buf"))
    [cached] = proc.get_user_pages(file_addr, 1)
    [driver] = proc.get_user_pages(dev_addr, 1, write=True)
    assert cached == inode.mapping.pages[0] and driver == dev.pages[0]
    assert counts(machine, cached) == (3, 1)  # cache + pte + pin
    assert counts(machine, driver) == (3, 1)  # driver + pte + pin
    assert rss(proc) == (2, 0)
    proc.put_pages([cached, driver])


def test_follow_page_flags(machine: Machine, proc, page_size: int) -> None:
    """follow_page at the seed (6aab341e): FOLL_WRITE needs a writable pte, FOLL_GET takes a
    reference, FOLL_TOUCH marks the page accessed and, for a write through a clean pte,
    dirty; a raw PFN pte and a none pte give NULL."""
    machine.create_file("/shared", pattern(page_size))
    addr = proc.mmap(page_size, RW, MAP_SHARED, proc.open("/shared"))
    proc.read(addr, 1)  # a shared writable mapping gets a writable but clean pte
    vma = vma_at(proc, addr)
    page = pfn_of(proc, addr)
    assert machine.arch.pte_write(proc.lookup(addr).raw)
    assert not machine.arch.pte_dirty(proc.lookup(addr).raw)
    before = counts(machine, page)
    assert follow_page(vma, addr, 0) == page
    assert counts(machine, page) == before
    assert follow_page(vma, addr, FOLL_GET) == page
    assert counts(machine, page) == (before[0] + 1, before[1])
    machine.phys.put_page(page)
    assert "dirty" not in machine.page(page).flags
    assert follow_page(vma, addr, FOLL_TOUCH | FOLL_WRITE) == page
    assert {"dirty", "referenced"} <= set(machine.page(page).flags)

    ro = proc.mmap(page_size, PROT_READ)
    proc.read(ro, 1)
    assert follow_page(vma_at(proc, ro), ro, FOLL_WRITE) is None
    assert follow_page(vma_at(proc, ro), ro, 0) == machine.phys.zero_pfn

    fd = proc.open("/dev/mem")
    dev = proc.mmap(page_size, PROT_READ, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
    assert proc.lookup(dev).present
    assert follow_page(vma_at(proc, dev), dev, FOLL_GET) is None


def test_follow_page_foll_anon(machine: Machine, proc, page_size: int) -> None:
    """follow_page at the seed (6aab341e): without a page table, FOLL_ANON gives the
    ZERO_PAGE and its absence gives NULL; FOLL_WRITE with FOLL_ANON is a BUG."""
    addr = proc.mmap(page_size)
    vma = vma_at(proc, addr)
    zero = machine.phys.zero_pfn
    assert follow_page(vma, addr, FOLL_TOUCH) is None
    assert follow_page(vma, addr, FOLL_ANON) == zero
    with pytest.raises(KernelBug):
        follow_page(vma, addr, FOLL_ANON | FOLL_WRITE)


def test_seed_gup_spins_on_pfnmap_without_vm_io(machine: Machine, proc, page_size: int) -> None:
    """get_user_pages at the seed (6aab341e) refuses only VM_IO. A driver that clears VM_IO
    after remap_pfn_range leaves a VM_PFNMAP vma whose raw pte follow_page rejects while the
    fault keeps succeeding: the kernel would spin (kernel-reference §3.6)."""
    addr = proc.mmap(page_size, PROT_READ)  # a vma without ->nopage, as the driver's
    vma = vma_at(proc, addr)
    remap_pfn_range(vma, addr, io_pfn(machine), page_size, vma.vm_page_prot)
    vma.vm_flags &= ~VM_IO
    assert vma.vm_flags & VM_PFNMAP
    with pytest.raises(KernelLivelock):
        proc.get_user_pages(addr, 1)
    assert not machine.pins


def test_rc6_gup_refuses_pfnmap(arch_name: str) -> None:
    """get_user_pages from 2.6.15-rc6 (1ff80389 "don't try to follow PFNMAP pages") refuses
    VM_IO | VM_PFNMAP: the same driver vma now fails cleanly with -EFAULT."""
    with rules_machine(arch_name, **FINAL_2_6_15) as machine:
        page_size = machine.arch.page_size
        proc = machine.spawn("rc6")
        addr = proc.mmap(page_size, PROT_READ)
        vma = vma_at(proc, addr)
        remap_pfn_range(vma, addr, io_pfn(machine), page_size, vma.vm_page_prot)
        vma.vm_flags &= ~VM_IO
        with pytest.raises(KernelError) as info:
            proc.get_user_pages(addr, 1)
        assert info.value.errno == errno.EFAULT
