"""Page faults: handle_mm_fault -> do_anonymous_page, do_no_page, do_wp_page + cow_user_page.

The oracle is mm/memory.c at the seed 6aab341e (2.6.15-rc3), kernel-reference §3.8-§3.13;
rc4's "cow_user_page: fix page alignment" is shown next to the seed's unaligned copy.
"""

from __future__ import annotations

import pytest
from helpers import (
    FINAL_2_6_15,
    counts,
    io_bytes,
    io_pfn,
    pattern,
    pfn_of,
    rss,
    rules_machine,
    vma_at,
)

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    BusError,
    Machine,
    Verdict,
)

RW = PROT_READ | PROT_WRITE


# do_anonymous_page -----------------------------------------------------------------------
def test_read_fault_maps_the_zero_page(machine: Machine, proc, page_size: int) -> None:
    """do_anonymous_page at the seed (6aab341e), read fault: the ZERO_PAGE is mapped
    read-only, with a reference, a file rmap and one file_rss."""
    arch = machine.arch
    zero = machine.phys.zero_pfn
    before = counts(machine, zero)
    addr = proc.mmap(page_size)
    assert proc.read(addr, page_size) == bytes(page_size)
    pte = proc.lookup(addr).raw
    assert arch.pte_pfn(pte) == zero and not arch.pte_write(pte)
    assert counts(machine, zero) == (before[0] + 1, before[1] + 1)
    assert rss(proc) == (1, 0)
    assert proc.mm.min_flt == 1 and proc.mm.maj_flt == 0
    assert vma_at(proc, addr).anon_vma is None


def test_write_fault_allocates_an_anon_page(machine: Machine, proc, page_size: int) -> None:
    """do_anonymous_page at the seed (6aab341e), write fault: anon_vma_prepare, a zeroed page
    mapped dirty and writable, anon_rss + 1, active LRU, referenced, page_add_anon_rmap."""
    arch = machine.arch
    addr = proc.mmap(2 * page_size)
    va = addr + page_size
    proc.write(va + 7, b"anon")
    vma = vma_at(proc, addr)
    pte = proc.lookup(va).raw
    assert arch.pte_write(pte) and arch.pte_dirty(pte)
    page = machine.page(arch.pte_pfn(pte))
    assert page.pfn != machine.phys.zero_pfn
    assert page.anon and (page.count, page.mapcount) == (1, 1)
    assert {"lru", "active", "referenced"} <= set(page.flags)
    assert vma.anon_vma is not None and page.mapping is vma.anon_vma
    assert page.index == vma.linear_page_index(va)
    assert rss(proc) == (0, 1)
    assert proc.read(va, page_size) == bytes(7) + b"anon" + bytes(page_size - 11)


# do_wp_page ------------------------------------------------------------------------------
def test_write_after_read_copies_the_zero_page(machine: Machine, proc, page_size: int) -> None:
    """do_wp_page at the seed (6aab341e): the ZERO_PAGE is not anon, so it is never reused;
    the copy is a freshly zeroed page and one page moves from file_rss to anon_rss."""
    zero = machine.phys.zero_pfn
    before = counts(machine, zero)
    addr = proc.mmap(page_size)
    proc.read(addr, 1)
    proc.write(addr + 1, b"w")
    new = pfn_of(proc, addr)
    assert new != zero and machine.page(new).anon
    assert machine.arch.pte_write(proc.lookup(addr).raw)
    assert counts(machine, zero) == before
    assert rss(proc) == (0, 1)
    assert proc.read(addr, page_size) == b"\0w" + bytes(page_size - 2)


def test_exclusive_anon_page_is_reused(machine: Machine, proc, page_size: int) -> None:
    """do_wp_page at the seed (6aab341e): an anon page mapped once (can_share_swap_page) is
    made writable in place: same pfn, no allocation, no rss change."""
    arch = machine.arch
    addr = proc.mmap(page_size)
    proc.write(addr, b"mine")
    pfn = pfn_of(proc, addr)
    proc.mprotect(addr, page_size, PROT_READ)
    proc.mprotect(addr, page_size, RW)  # PAGE_COPY again: the pte stays read-only
    assert not arch.pte_write(proc.lookup(addr).raw)
    free = machine.phys.free_pages()
    proc.write(addr, b"MINE")
    assert pfn_of(proc, addr) == pfn
    assert arch.pte_write(proc.lookup(addr).raw)
    assert machine.phys.free_pages() == free
    assert counts(machine, pfn) == (1, 1)
    assert rss(proc) == (0, 1)


def test_after_fork_the_writer_copies_and_the_last_one_reuses(machine: Machine, proc, page_size):
    """do_wp_page at the seed (6aab341e) after copy_one_pte write-protected both sides: the
    first writer gets a copy (mapcount 2 forbids reuse), the other, now the only mapper,
    reuses the original page."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"original")
    old = pfn_of(proc, addr)
    child = proc.fork("child")
    child.write(addr, b"child's!")
    copy = pfn_of(child, addr)
    assert copy != old
    assert counts(machine, old) == (1, 1)
    assert counts(machine, copy) == (1, 1)
    proc.write(addr, b"parent's")
    assert pfn_of(proc, addr) == old  # reused
    assert child.read(addr, 8) == b"child's!"
    assert proc.read(addr, 8) == b"parent's"
    assert rss(proc) == (0, 1) and rss(child) == (0, 1)


def test_mprotect_after_fork_does_not_map_early(machine: Machine, proc, page_size: int):
    """Replays the mm selftest cow.c "mprotect optimisation" case against do_wp_page at the
    seed (6aab341e): after fork, mprotect(R) then mprotect(RW) must not make the shared page
    writable, so the parent's write still copies and the child keeps the old data."""
    arch = machine.arch
    addr = proc.mmap(page_size)
    proc.write(addr, b"old")
    old = pfn_of(proc, addr)
    child = proc.fork("child")
    proc.mprotect(addr, page_size, PROT_READ)
    proc.mprotect(addr, page_size, RW)
    assert not arch.pte_write(proc.lookup(addr).raw)
    proc.write(addr, b"new")
    assert pfn_of(proc, addr) != old
    assert child.read(addr, 3) == b"old"


def test_private_write_leaves_other_mappings_alone(machine: Machine, proc, page_size: int):
    """Replays cow.c's "basic COW" for non-anonymous private mappings against do_wp_page at the
    seed (6aab341e): writing a private mapping backed by the ZERO_PAGE or by the page cache
    changes neither a second private mapping nor a shared one of the same file."""
    zeros = [proc.mmap(page_size) for _ in range(2)]
    for addr in zeros:
        proc.read(addr, 1)
    proc.write(zeros[0], b"not zero")
    assert proc.read(zeros[1], 8) == bytes(8)
    assert machine.phys.read(machine.phys.zero_pfn * page_size, page_size) == bytes(page_size)

    data = pattern(page_size, 2)
    machine.create_file("/tmpfile", data)
    fd = proc.open("/tmpfile")
    private = proc.mmap(page_size, RW, MAP_PRIVATE, fd)
    other_private = proc.mmap(page_size, RW, MAP_PRIVATE, fd)
    shared = proc.mmap(page_size, RW, MAP_SHARED, fd)
    for addr in (private, other_private, shared):
        proc.read(addr, 1)
    proc.write(private, b"mine")
    assert proc.read(other_private, 4) == data[:4]
    assert proc.read(shared, 4) == data[:4]


def test_raw_pfn_is_never_reused(machine: Machine, proc, page_size: int) -> None:
    """do_wp_page at the seed (6aab341e): a raw PFN has no struct page, so every private writer
    gets its own copy and anon_rss + 1 with no file_rss to give back; the device keeps its
    bytes."""
    fd = proc.open("/dev/mem")
    addr = proc.mmap(page_size, RW, MAP_PRIVATE, fd, offset=io_pfn(machine) * page_size)
    device = io_bytes(machine, 0, page_size)
    child = proc.fork("child")
    proc.write(addr, b"P")
    child.read(addr, 1)  # a young pte for the user copy (see test_vm_normal_page)
    child.write(addr, b"C")
    mine, theirs = pfn_of(proc, addr), pfn_of(child, addr)
    assert len({mine, theirs, io_pfn(machine)}) == 3
    assert proc.read(addr, page_size) == b"P" + device[1:]
    assert child.read(addr, page_size) == b"C" + device[1:]
    assert io_bytes(machine, 0, page_size) == device
    assert rss(proc) == (0, 1) and rss(child) == (0, 1)


# cow_user_page from a raw PFN ------------------------------------------------------------
def _private_devmem(machine: Machine, proc, npages: int) -> int:
    fd = proc.open("/dev/mem")
    page_size = machine.arch.page_size
    return proc.mmap(npages * page_size, RW, MAP_PRIVATE, fd, offset=io_pfn(machine) * page_size)


def test_seed_cow_copies_from_the_unaligned_address(machine: Machine, proc, page_size: int):
    """cow_user_page at the seed (6aab341e): with no source struct page it copies PAGE_SIZE
    bytes from the *fault address*, not its page: the copy is shifted by the offset in the page
    and takes its tail from the next page (fixed in rc4, kernel-reference §3.8)."""
    npages = 4
    addr = _private_devmem(machine, proc, npages)
    off = page_size // 2 + 3
    target = addr + page_size
    shifted = io_bytes(machine, page_size + off, page_size)
    proc.write(target + off, b"!")
    info = proc.lookup(target)
    assert info.verdict is Verdict.COWED
    assert proc.read(target, page_size) == shifted[:off] + b"!" + shifted[off + 1 :]
    assert rss(proc) == (0, 1)
    assert not any("zero-filled" in line for line in machine.log)


def test_seed_cow_in_the_last_page_zero_fills(machine: Machine, proc, page_size: int) -> None:
    """cow_user_page at the seed (6aab341e): from an unaligned address in the last page the
    copy runs past the vma, the in-atomic user copy fails, and the page is zero-filled."""
    npages = 3
    addr = _private_devmem(machine, proc, npages)
    last = addr + (npages - 1) * page_size
    proc.write(last + 5, b"tail")
    assert proc.read(last, page_size) == bytes(5) + b"tail" + bytes(page_size - 9)
    assert any("zero-filled" in line for line in machine.log)
    assert proc.lookup(last).verdict is Verdict.COWED
    assert rss(proc) == (0, 1)


def test_cow_at_a_page_start_copies_the_page(machine: Machine, proc, page_size: int) -> None:
    """cow_user_page at the seed (6aab341e): at offset 0 the unaligned-address bug is
    invisible, even in the last page: the copy is exactly the device page."""
    npages = 2
    addr = _private_devmem(machine, proc, npages)
    last = addr + (npages - 1) * page_size
    device = io_bytes(machine, page_size, page_size)
    proc.write(last, b"@")
    assert proc.read(last, page_size) == b"@" + device[1:]


def test_rc4_cow_copy_is_page_aligned(arch_name: str) -> None:
    """cow_user_page from 2.6.15-rc4 ("cow_user_page: fix page alignment") copies from
    ``va & PAGE_MASK``: the same last-page write now gets the device page, unshifted."""
    with rules_machine(arch_name, **FINAL_2_6_15) as machine:
        page_size = machine.arch.page_size
        proc = machine.spawn("rc4")
        npages = 3
        addr = _private_devmem(machine, proc, npages)
        last = addr + (npages - 1) * page_size
        device = io_bytes(machine, (npages - 1) * page_size, page_size)
        proc.write(last + 5, b"tail")
        assert proc.read(last, page_size) == device[:5] + b"tail" + device[9:]
        assert not any("zero-filled" in line for line in machine.log)


def test_cow_of_ram_through_devmem_leaves_the_owner_alone(machine: Machine, proc, page_size):
    """do_wp_page at the seed (6aab341e) on a raw pte over someone's RAM page: the copy comes
    from the user address, the owner's page keeps its bytes and its counts."""
    owner = machine.spawn("owner")
    buf = owner.mmap(page_size)
    owner.write(buf, pattern(page_size, 9))
    pfn = pfn_of(owner, buf)
    before = counts(machine, pfn)
    fd = proc.open("/dev/mem")
    addr = proc.mmap(page_size, RW, MAP_PRIVATE, fd, offset=pfn * page_size)
    proc.write(addr, b"private")
    assert pfn_of(proc, addr) != pfn
    assert proc.read(addr, page_size) == b"private" + pattern(page_size, 9)[7:]
    assert owner.read(buf, page_size) == pattern(page_size, 9)
    assert counts(machine, pfn) == before


# do_no_page ------------------------------------------------------------------------------
def test_private_file_read_maps_the_page_cache(machine: Machine, proc, page_size: int) -> None:
    """do_no_page at the seed (6aab341e): a read fault on a private file mapping maps the
    page-cache page itself, read-only, file_rss + 1; filemap_nopage reports MAJOR when it
    had to read the page in and MINOR when it was cached."""
    arch = machine.arch
    data = pattern(2 * page_size)
    inode = machine.create_file("/lib.so", data)
    addr = proc.mmap(2 * page_size, RW, MAP_PRIVATE, proc.open("/lib.so"))
    assert proc.read(addr, 64) == data[:64]
    cached = inode.mapping.pages[0]
    pte = proc.lookup(addr).raw
    assert arch.pte_pfn(pte) == cached and not arch.pte_write(pte)
    assert counts(machine, cached) == (2, 1)
    assert not machine.page(cached).anon
    assert rss(proc) == (1, 0)
    assert (proc.mm.maj_flt, proc.mm.min_flt) == (1, 0)

    other = machine.spawn("other")
    other_addr = other.mmap(page_size, PROT_READ, MAP_PRIVATE, other.open("/lib.so"))
    other.read(other_addr, 1)
    assert (other.mm.maj_flt, other.mm.min_flt) == (0, 1)
    assert pfn_of(other, other_addr) == cached
    assert counts(machine, cached) == (3, 2)


def test_private_file_write_after_read_cows(machine: Machine, proc, page_size: int) -> None:
    """do_wp_page at the seed (6aab341e) on a page-cache page: copied (not anon, never reused),
    page_remove_rmap on the file page, file_rss - 1, anon_rss + 1; the file is untouched."""
    data = pattern(page_size)
    inode = machine.create_file("/cfg", data)
    addr = proc.mmap(page_size, RW, MAP_PRIVATE, proc.open("/cfg"))
    proc.read(addr, 1)
    cached = inode.mapping.pages[0]
    proc.write(addr + 3, b"patch")
    copy = pfn_of(proc, addr)
    assert copy != cached and machine.page(copy).anon
    assert counts(machine, cached) == (1, 0)
    assert rss(proc) == (0, 1)
    assert proc.read(addr, page_size) == data[:3] + b"patch" + data[8:]
    assert machine.phys.read(cached * page_size, page_size) == data
    assert bytes(inode.data) == data


def test_private_file_write_first_cows_early(machine: Machine, proc, page_size: int) -> None:
    """do_no_page at the seed (6aab341e): a write fault on a private mapping copies the
    page-cache page at once (cow_user_page with a source page) and maps the anon copy."""
    data = pattern(2 * page_size, 4)
    inode = machine.create_file("/db", data)
    addr = proc.mmap(2 * page_size, RW, MAP_PRIVATE, proc.open("/db"))
    proc.write(addr + page_size, b"new")
    copy = pfn_of(proc, addr + page_size)
    cached = inode.mapping.pages[1]
    assert copy != cached and machine.page(copy).anon
    assert machine.arch.pte_write(proc.lookup(addr + page_size).raw)
    assert counts(machine, cached) == (1, 0)  # only the cache holds it
    assert rss(proc) == (0, 1)
    assert proc.read(addr + page_size, page_size) == b"new" + data[page_size + 3 :]


def test_shared_file_write_goes_to_the_page_cache(machine: Machine, proc, page_size: int):
    """do_no_page at the seed (6aab341e), shared write: the page-cache page is mapped dirty and
    writable, file_rss + 1, and every sharer sees the store."""
    arch = machine.arch
    inode = machine.create_file("/shm", pattern(page_size))
    addr = proc.mmap(page_size, RW, MAP_SHARED, proc.open("/shm"))
    proc.write(addr, b"hello")
    cached = inode.mapping.pages[0]
    pte = proc.lookup(addr).raw
    assert arch.pte_pfn(pte) == cached and arch.pte_write(pte) and arch.pte_dirty(pte)
    assert rss(proc) == (1, 0)
    other = machine.spawn("other")
    other_addr = other.mmap(page_size, PROT_READ, MAP_SHARED, other.open("/shm", 0))
    assert other.read(other_addr, 5) == b"hello"


def test_file_fault_beyond_eof_is_sigbus(machine: Machine, proc, page_size: int) -> None:
    """do_no_page at the seed (6aab341e): filemap_nopage returns NOPAGE_SIGBUS for a page at or
    past EOF, so the access gets SIGBUS; the partial last page reads zeros past EOF."""
    data = pattern(page_size + 10)
    machine.create_file("/short", data)
    addr = proc.mmap(3 * page_size, PROT_READ, MAP_PRIVATE, proc.open("/short"))
    assert proc.read(addr + page_size, 16) == data[page_size:] + bytes(6)
    before = rss(proc)
    with pytest.raises(BusError) as info:
        proc.read(addr + 2 * page_size + 5, 1)
    assert info.value.address == addr + 2 * page_size + 5
    assert rss(proc) == before
    assert not proc.lookup(addr + 2 * page_size).present


def test_shmem_is_shared_across_fork(machine: Machine, proc, page_size: int) -> None:
    """do_no_page at the seed (6aab341e) on shmem (MAP_SHARED|MAP_ANONYMOUS): both sides map
    the one shmem page (the child by refault, since copy_page_range skipped the vma); the
    page goes with the last mapping."""
    addr = proc.mmap(page_size, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.write(addr, b"shm!")
    pfn = pfn_of(proc, addr)
    assert not machine.page(pfn).anon
    child = proc.fork("child")
    assert child.read(addr, 4) == b"shm!"
    assert pfn_of(child, addr) == pfn
    child.write(addr, b"kid")
    assert proc.read(addr, 4) == b"kid!"
    assert counts(machine, pfn) == (3, 2)  # shmem cache + two ptes
    assert rss(proc) == (1, 0) and rss(child) == (1, 0)
    child.exit()
    proc.munmap(addr, page_size)
    assert counts(machine, pfn) == (0, 0)


def test_dev_zero_private_and_shared(machine: Machine, proc, page_size: int) -> None:
    """mmap_zero (drivers/char/mem.c, 2.6.15): a private /dev/zero mapping is plain anonymous
    memory (ZERO_PAGE on read), a shared one is shmem (do_no_page)."""
    fd = proc.open("/dev/zero")
    private = proc.mmap(page_size, RW, MAP_PRIVATE, fd)
    shared = proc.mmap(page_size, RW, MAP_SHARED, fd)
    proc.read(private, 1)
    proc.read(shared, 1)
    assert pfn_of(proc, private) == machine.phys.zero_pfn
    assert pfn_of(proc, shared) != machine.phys.zero_pfn
    assert vma_at(proc, shared).vm_ops is not None
    assert vma_at(proc, private).vm_ops is None


def test_device_nopage(machine: Machine, proc, page_size: int) -> None:
    """do_no_page at the seed (6aab341e) with a driver's ->nopage: the driver's page is mapped
    with the reference nopage took, file_rss + 1; past the buffer nopage says SIGBUS; a
    private write copies the page early and leaves the driver's bytes alone."""
    dev = machine.add_device_buffer("/dev/snd", 2)
    fd = proc.open("/dev/snd")
    addr = proc.mmap(3 * page_size, RW, MAP_SHARED, fd)
    assert proc.read(addr + page_size, 15) == b"/dev/snd page 1"
    assert pfn_of(proc, addr + page_size) == dev.pages[1]
    assert counts(machine, dev.pages[1]) == (2, 1)
    assert rss(proc) == (1, 0)
    with pytest.raises(BusError) as info:
        proc.read(addr + 2 * page_size, 1)
    assert info.value.address == addr + 2 * page_size

    private = proc.mmap(page_size, RW, MAP_PRIVATE, fd)
    proc.write(private, b"MY")
    assert pfn_of(proc, private) not in dev.pages
    assert proc.read(private, 15) == b"MYev/snd page 0"
    assert machine.phys.read(dev.pages[0] * page_size, 15) == b"/dev/snd page 0"
    assert counts(machine, dev.pages[0]) == (1, 0)
    assert rss(proc) == (1, 1)
