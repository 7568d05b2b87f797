"""Unmapping: do_munmap / exit_mmap -> unmap_vmas -> zap_pte_range, then tlb_finish_mmu.

The oracle is zap_pte_range / unmap_vmas / zap_page_range in mm/memory.c at the seed 6aab341e
(2.6.15-rc3), kernel-reference §3.4 and §3.13, and split_vma / do_munmap in mm/mmap.c of 2.6.15.
"""

from __future__ import annotations

from helpers import counts, io_bytes, io_pfn, pattern, pfn_of, rss, vma_at

from pfnmap import MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, Machine, Verdict
from pfnmap.kernel.memory import zap_page_range

RW = PROT_READ | PROT_WRITE


def test_raw_ptes_are_cleared_without_touching_struct_pages(machine: Machine, proc, page_size):
    """zap_pte_range at the seed (6aab341e): a raw PFN pte (vm_normal_page NULL) is cleared
    and nothing else happens: no rss, no page_remove_rmap, no put_page, even for RAM pfns."""
    owner = machine.spawn("owner")
    buf = owner.mmap(page_size)
    owner.write(buf, b"owned")
    owned = pfn_of(owner, buf)
    firmware = machine.phys.reserved_low_pages
    ram_pfns = [*range(firmware), owned]
    before = {pfn: counts(machine, pfn) for pfn in ram_pfns}

    fd = proc.open("/dev/mem")
    low = proc.mmap(firmware * page_size, RW, MAP_SHARED, fd, offset=0)
    one = proc.mmap(page_size, RW, MAP_PRIVATE, fd, offset=owned * page_size)
    dev = proc.mmap(2 * page_size, RW, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
    for addr in (low, one, dev):
        proc.read(addr, 1)
    proc.munmap(low, firmware * page_size)
    proc.munmap(one, page_size)
    proc.munmap(dev, 2 * page_size)
    for addr in (low, one, dev):
        assert not proc.lookup(addr).present
    assert {pfn: counts(machine, pfn) for pfn in ram_pfns} == before
    assert rss(proc) == (0, 0)
    assert not machine.bad_ptes
    assert owner.read(buf, 5) == b"owned"


def test_partial_munmap_of_anon_frees_pages_and_splits(machine: Machine, proc, page_size):
    """zap_pte_range at the seed (6aab341e): anon_rss drops by one per anon page and the page
    is freed when its last reference goes; do_munmap (mm/mmap.c) splits the vma around the
    hole."""
    npages = 4
    addr = proc.mmap(npages * page_size)
    proc.write(addr, pattern(npages * page_size))
    pfns = [pfn_of(proc, addr + k * page_size) for k in range(npages)]
    free_before = machine.phys.free_pages()
    proc.munmap(addr + page_size, 2 * page_size)
    assert rss(proc) == (0, 2)
    for pfn in pfns[1:3]:
        assert counts(machine, pfn) == (0, 0)
        assert machine.page(pfn).flags == ()
    assert machine.phys.free_pages() >= free_before + 2
    assert [(v.vm_start, v.vm_end) for v in proc.vmas] == [
        (addr, addr + page_size),
        (addr + 3 * page_size, addr + 4 * page_size),
    ]
    data = pattern(npages * page_size)
    assert proc.read(addr, page_size) == data[:page_size]
    assert proc.read(addr + 3 * page_size, page_size) == data[3 * page_size :]


def test_shared_file_dirty_and_young_bits_reach_the_page(machine: Machine, proc, page_size):
    """zap_pte_range at the seed (6aab341e): for a file page, a dirty pte becomes PG_dirty
    (set_page_dirty) and a young pte marks the page accessed; file_rss drops; the page stays
    in the page cache with the cache's reference only."""
    inode = machine.create_file("/log", pattern(3 * page_size))
    fd = proc.open("/log")
    addr = proc.mmap(3 * page_size, RW, MAP_SHARED, fd)
    proc.write(addr + 5, b"update")
    proc.read(addr + page_size, 1)
    assert rss(proc) == (2, 0)
    written, read = inode.mapping.pages[0], inode.mapping.pages[1]
    assert machine.arch.pte_dirty(proc.lookup(addr).raw)
    assert "dirty" not in machine.page(written).flags  # only the pte knows, until the zap

    proc.munmap(addr, 3 * page_size)
    assert rss(proc) == (0, 0)
    assert "dirty" in machine.page(written).flags
    assert "dirty" not in machine.page(read).flags
    assert "referenced" in machine.page(read).flags
    assert counts(machine, written) == (1, 0) and counts(machine, read) == (1, 0)
    inode.writeback()
    assert bytes(inode.data[5:11]) == b"update"
    assert bytes(inode.data[:5]) == pattern(5)


def test_private_copies_do_not_dirty_the_file(machine: Machine, proc, page_size: int) -> None:
    """zap_pte_range at the seed (6aab341e) propagates dirty bits only for file pages: the
    dirty anon copy of a private file mapping is freed and the cached file page stays clean."""
    data = pattern(page_size)
    inode = machine.create_file("/ro", data)
    fd = proc.open("/ro")
    addr = proc.mmap(page_size, RW, MAP_PRIVATE, fd)
    proc.write(addr, b"scribble")
    copy = pfn_of(proc, addr)
    cached = inode.mapping.pages[0]
    assert copy != cached and machine.page(copy).anon
    proc.munmap(addr, page_size)
    assert counts(machine, copy) == (0, 0)
    assert "dirty" not in machine.page(cached).flags
    inode.writeback()
    assert bytes(inode.data) == data


def test_zero_page_unmap_gives_its_count_back(machine: Machine, proc, page_size: int) -> None:
    """zap_pte_range at the seed (6aab341e): the ZERO_PAGE is a normal non-anon page; zapping
    it drops file_rss, its mapcount and the reference the fault took."""
    zero = machine.phys.zero_pfn
    before = counts(machine, zero)
    addr = proc.mmap(3 * page_size)
    for k in range(3):
        proc.read(addr + k * page_size, 1)
    assert counts(machine, zero) == (before[0] + 3, before[1] + 3)
    assert rss(proc) == (3, 0)
    proc.munmap(addr, 3 * page_size)
    assert counts(machine, zero) == before
    assert rss(proc) == (0, 0)


def test_last_reference_frees_the_page(machine: Machine, proc, page_size: int) -> None:
    """zap_pte_range + tlb_finish_mmu at the seed (6aab341e): the page shared with a child
    survives the parent's munmap and is freed with the child's exit."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"shared by fork")
    pfn = pfn_of(proc, addr)
    child = proc.fork("child")
    proc.munmap(addr, page_size)
    assert counts(machine, pfn) == (1, 1)
    assert child.read(addr, 14) == b"shared by fork"
    free_before = machine.phys.free_pages()
    child.exit()
    assert counts(machine, pfn) == (0, 0)
    assert machine.phys.free_pages() > free_before


def test_pinned_page_outlives_its_mapping(machine: Machine, proc, page_size: int) -> None:
    """zap_pte_range drops the mapping's reference only (mm/memory.c, 6aab341e); a
    get_user_pages pin keeps the page until put_page."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"pinned")
    [pfn] = proc.get_user_pages(addr, 1)
    proc.munmap(addr, page_size)
    assert counts(machine, pfn) == (1, 0)
    assert machine.phys.read(pfn * page_size, 6) == b"pinned"
    proc.put_pages([pfn])
    assert counts(machine, pfn) == (0, 0)


def test_partial_munmap_keeps_the_pfnmap_linear_rule(machine: Machine, proc, page_size):
    """split_vma (mm/mmap.c, 2.6.15) advances the upper part's vm_pgoff by the pages cut off,
    so vm_normal_page's linear rule (6aab341e) still holds in both halves: no Bad pte."""
    npages = 6
    base = io_pfn(machine)
    fd = proc.open("/dev/mem")
    addr = proc.mmap(npages * page_size, RW, MAP_SHARED, fd, offset=base * page_size)
    proc.munmap(addr + page_size, page_size)
    lower, upper = proc.vmas
    assert (lower.vm_pgoff, upper.vm_pgoff) == (base, base + 2)
    proc.munmap(upper.vm_start, page_size)  # cut the upper part's first page
    lower, upper = proc.vmas
    assert upper.vm_start == addr + 3 * page_size and upper.vm_pgoff == base + 3
    for k in (0, 3, 4, 5):
        va = addr + k * page_size
        info = proc.lookup(va)
        assert info.verdict is Verdict.RAW_PFN and info.pfn == base + k
        assert proc.read(va, 16) == io_bytes(machine, k * page_size, 16)
    proc.munmap(addr, npages * page_size)
    assert not proc.vmas
    assert not machine.bad_ptes


def test_pfnmap_hole_can_be_mapped_again(machine: Machine, proc, page_size: int) -> None:
    """Replays the mm selftest pfnmap.c case "munmap the first page of a two-page PFNMAP, then
    mmap it again while the second is still mapped": zap_pte_range (6aab341e) cleared the raw
    pte, so the MAP_FIXED /dev/mem mapping finds pte_none and both halves are linear again."""
    base = io_pfn(machine)
    fd = proc.open("/dev/mem")
    addr = proc.mmap(2 * page_size, PROT_READ, MAP_SHARED, fd, offset=base * page_size)
    proc.munmap(addr, page_size)
    again = proc.mmap(
        page_size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, offset=base * page_size, addr=addr
    )
    assert again == addr
    for k in range(2):
        info = proc.lookup(addr + k * page_size)
        assert info.verdict is Verdict.RAW_PFN and info.pfn == base + k
        assert proc.read(addr + k * page_size, 8) == io_bytes(machine, k * page_size, 8)
    assert not machine.bad_ptes


def test_partial_munmap_of_private_pfnmap_with_cow_page(machine: Machine, proc, page_size):
    """zap_pte_range at the seed (6aab341e): in a COW PFNMAP vma split by munmap, the COWed
    page in the upper half is still told apart from the raw ptes and is freed by its zap."""
    fd = proc.open("/dev/mem")
    addr = proc.mmap(4 * page_size, RW, MAP_PRIVATE, fd, offset=io_pfn(machine) * page_size)
    proc.write(addr + 3 * page_size, b"cow")
    cow = pfn_of(proc, addr + 3 * page_size)
    proc.munmap(addr, 2 * page_size)
    upper = vma_at(proc, addr + 2 * page_size)
    assert upper.vm_pgoff == io_pfn(machine, 2)
    assert proc.lookup(addr + 2 * page_size).verdict is Verdict.RAW_PFN
    assert proc.lookup(addr + 3 * page_size).verdict is Verdict.COWED
    assert rss(proc) == (0, 1)
    proc.munmap(addr + 2 * page_size, 2 * page_size)
    assert rss(proc) == (0, 0)
    assert counts(machine, cow) == (0, 0)
    assert not machine.bad_ptes


def test_munmap_across_vmas_and_holes(machine: Machine, proc, page_size: int) -> None:
    """do_munmap (mm/mmap.c, 2.6.15) unmaps every vma piece inside the range, skipping holes,
    and zap_pte_range (6aab341e) uncounts each kind of page on the way."""
    first = proc.mmap(2 * page_size)
    proc.write(first, pattern(2 * page_size))
    machine.create_file("/f", pattern(page_size, 3))
    fd = proc.open("/f")
    second = proc.mmap(page_size, PROT_READ, MAP_PRIVATE, fd, addr=first + 3 * page_size)
    assert second == first + 3 * page_size
    proc.read(second, 1)
    assert rss(proc) == (1, 2)
    proc.munmap(first + page_size, 4 * page_size)
    assert [(v.vm_start, v.vm_end) for v in proc.vmas] == [(first, first + page_size)]
    assert rss(proc) == (0, 1)


def test_zap_page_range_keeps_the_vma(machine: Machine, proc, page_size: int) -> None:
    """zap_page_range at the seed (6aab341e), the madvise(MADV_DONTNEED) path: the pages go,
    the vma stays, and the next read refaults the ZERO_PAGE."""
    addr = proc.mmap(2 * page_size)
    proc.write(addr, pattern(2 * page_size))
    pfns = [pfn_of(proc, addr + k * page_size) for k in range(2)]
    vma = vma_at(proc, addr)
    zap_page_range(vma, addr, 2 * page_size)
    assert proc.vmas == [vma]
    assert rss(proc) == (0, 0)
    assert all(counts(machine, pfn) == (0, 0) for pfn in pfns)
    assert proc.read(addr, 8) == bytes(8)
    assert pfn_of(proc, addr) == machine.phys.zero_pfn


def test_exit_releases_every_page_and_table(machine: Machine, page_size: int) -> None:
    """exit_mmap (mm/mmap.c, 2.6.15) unmaps every vma through unmap_vmas and frees every page
    table: afterwards only the page cache still holds pages."""
    free_at_boot = machine.phys.free_pages()
    inode = machine.create_file("/lib", pattern(2 * page_size))
    proc = machine.spawn("busy")
    anon = proc.mmap(3 * page_size)
    proc.write(anon, b"anon")
    proc.read(anon + page_size, 1)
    fd = proc.open("/lib")
    lib = proc.mmap(2 * page_size, RW, MAP_PRIVATE, fd)
    proc.read(lib, 1)
    proc.write(lib + page_size, b"patched")
    dev = proc.open("/dev/mem")
    proc.mmap(page_size, RW, MAP_PRIVATE, dev, offset=io_pfn(machine) * page_size)
    child = proc.fork("child")
    child.exit()
    proc.exit()
    mm = proc.mm
    assert (mm.file_rss, mm.anon_rss, mm.nr_ptes, mm.nr_pgtables) == (0, 0, 0, 0)
    assert machine.phys.free_pages() == free_at_boot - len(inode.mapping.pages)
    assert not proc.alive and proc not in machine.processes.values()
