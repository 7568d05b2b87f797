"""fork: dup_mmap -> copy_page_range -> copy_pte_range -> copy_one_pte.

The oracle is copy_page_range / copy_one_pte in mm/memory.c at the seed 6aab341e (2.6.15-rc3),
kernel-reference §3.3 and §3.13, and dup_mmap in kernel/fork.c of 2.6.15 for VM_DONTCOPY.
"""

from __future__ import annotations

import pytest
from helpers import (
    counts,
    io_bytes,
    io_pfn,
    pattern,
    pfn_of,
    rss,
    shared_prot,
    vma_at,
)

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    Machine,
    SegmentationFault,
    Verdict,
)
from pfnmap.kernel.constants import VM_DONTCOPY
from pfnmap.kernel.remap import remap_pfn_range

RW = PROT_READ | PROT_WRITE


def test_cow_anon_pages_are_shared_and_write_protected(machine: Machine, proc, page_size):
    """copy_one_pte at the seed (6aab341e): in a COW vma the parent's pte is write-protected
    in place, the child's copy is old, and each page gains a reference, a mapcount and the
    child's anon_rss."""
    arch = machine.arch
    npages = 3
    addr = proc.mmap(npages * page_size)
    proc.write(addr, pattern(npages * page_size))
    pfns = [pfn_of(proc, addr + k * page_size) for k in range(npages)]
    assert all(arch.pte_write(proc.lookup(addr + k * page_size).raw) for k in range(npages))
    parent_rss = rss(proc)

    child = proc.fork("child")
    for k, pfn in enumerate(pfns):
        va = addr + k * page_size
        parent_pte = proc.lookup(va).raw
        child_pte = child.lookup(va).raw
        assert not arch.pte_write(parent_pte)
        assert not arch.pte_write(child_pte)
        assert not arch.pte_young(child_pte)
        assert arch.pte_pfn(child_pte) == pfn
        assert counts(machine, pfn) == (2, 2)
    assert rss(child) == (0, npages)
    assert rss(proc) == parent_rss
    assert child.read(addr, npages * page_size) == pattern(npages * page_size)


def test_raw_ptes_in_cow_vma_are_write_protected_uncounted(machine: Machine, proc, page_size):
    """copy_one_pte at the seed (6aab341e), kernel-reference §3.3 step 2: the COW
    write-protect runs for *every* present pte, raw PFN ones included (the VM_UNPAGED code
    before the seed skipped them); raw ptes take no reference and no rss. The ptes here are
    writable because the driver passed a shared protection, as sparc64's io_remap_pfn_range
    forced pg_iobits (§5.5)."""
    arch = machine.arch
    npages = 4
    addr = proc.mmap(npages * page_size)  # private and writable: a COW vma
    vma = vma_at(proc, addr)
    remap_pfn_range(vma, addr, io_pfn(machine), npages * page_size, shared_prot(machine))
    assert vma.anon_vma is None  # copied anyway: VM_PFNMAP forces copy_page_range
    proc.write(addr, b"draw")  # straight to the device, no fault
    assert io_bytes(machine, 0, 4) == b"draw"
    assert all(arch.pte_write(pte) for _, pte in proc.ptes(vma))

    child = proc.fork("child")
    child_vma = vma_at(child, addr)
    assert len(child.ptes(child_vma)) == npages
    for k in range(npages):
        va = addr + k * page_size
        parent_pte, child_pte = proc.lookup(va), child.lookup(va)
        assert not arch.pte_write(parent_pte.raw)
        assert not arch.pte_write(child_pte.raw) and not arch.pte_young(child_pte.raw)
        assert child_pte.pfn == io_pfn(machine, k) and child_pte.verdict is Verdict.RAW_PFN
    assert rss(child) == (0, 0) and rss(proc) == (0, 0)
    assert not machine.bad_ptes

    # the parent's next write now COWs the device page into RAM (the "X draws into RAM" case)
    device = io_bytes(machine, 0, page_size)
    proc.write(addr, b"more")
    assert io_bytes(machine, 0, page_size) == device
    assert proc.lookup(addr).verdict is Verdict.COWED
    assert proc.read(addr, page_size) == b"more" + device[4:]
    assert rss(proc) == (0, 1)


def test_cowed_page_in_pfnmap_vma_is_counted_at_fork(machine: Machine, proc, page_size):
    """copy_one_pte at the seed (6aab341e): in a private /dev/mem vma only the COWed anon page
    (vm_normal_page non-NULL) takes a reference, a mapcount and the child's anon_rss; both
    sides keep telling it apart from the raw ptes around it."""
    fd = proc.open("/dev/mem")
    addr = proc.mmap(3 * page_size, RW, MAP_PRIVATE, fd, offset=io_pfn(machine) * page_size)
    proc.write(addr + page_size, b"cowed")
    cowed = pfn_of(proc, addr + page_size)
    child = proc.fork("child")
    assert counts(machine, cowed) == (2, 2)
    assert rss(child) == (0, 1)
    for task in (proc, child):
        assert task.lookup(addr + page_size).verdict is Verdict.COWED
        assert task.lookup(addr).verdict is Verdict.RAW_PFN
        assert task.lookup(addr + 2 * page_size).verdict is Verdict.RAW_PFN
    assert child.read(addr + page_size, 5) == b"cowed"
    assert not machine.bad_ptes


def test_raw_ram_pte_in_cow_vma_is_not_counted(machine: Machine, proc, page_size: int) -> None:
    """copy_one_pte at the seed (6aab341e): a private /dev/mem mapping of a RAM page is raw;
    fork copies the pte without get_page, page_dup_rmap or rss."""
    owner = machine.spawn("owner")
    buf = owner.mmap(page_size)
    owner.write(buf, b"owned")
    pfn = pfn_of(owner, buf)
    before = counts(machine, pfn)
    fd = proc.open("/dev/mem")
    addr = proc.mmap(page_size, RW, MAP_PRIVATE, fd, offset=pfn * page_size)
    child = proc.fork("child")
    assert child.lookup(addr).pfn == pfn
    assert child.lookup(addr).verdict is Verdict.RAW_PFN
    assert counts(machine, pfn) == before
    assert rss(child) == (0, 0)
    assert child.read(addr, 5) == b"owned"


def test_shared_vma_child_ptes_are_clean_and_writable(machine: Machine, proc, page_size):
    """copy_one_pte at the seed (6aab341e): a VM_SHARED vma is not COW, so nothing is
    write-protected; the child's copy loses the dirty bit (pte_mkclean) and is old, while the
    parent keeps its dirty, writable pte."""
    arch = machine.arch
    fd = proc.open("/dev/mem")
    addr = proc.mmap(2 * page_size, RW, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
    proc.write(addr, b"dirty")
    assert arch.pte_dirty(proc.lookup(addr).raw)
    child = proc.fork("child")
    parent_pte, child_pte = proc.lookup(addr).raw, child.lookup(addr).raw
    assert arch.pte_write(parent_pte) and arch.pte_dirty(parent_pte)
    assert arch.pte_write(child_pte)
    assert not arch.pte_dirty(child_pte) and not arch.pte_young(child_pte)
    assert arch.pte_pfn(child_pte) == arch.pte_pfn(parent_pte)
    # still one device page: the child's write is seen by the parent
    child.write(addr + 8, b"child")
    assert proc.read(addr + 8, 5) == b"child"
    assert rss(child) == (0, 0)


def test_private_file_vma_pages_by_kind(machine: Machine, proc, page_size: int) -> None:
    """copy_one_pte at the seed (6aab341e): rss[PageAnon]++ in the child: a page-cache page
    counts in file_rss, a COWed copy in anon_rss; both gain a reference and a mapcount."""
    inode = machine.create_file("/data", pattern(2 * page_size))
    fd = proc.open("/data")
    addr = proc.mmap(2 * page_size, RW, MAP_PRIVATE, fd)
    proc.read(addr, 1)  # page 0: the page-cache page, read-only
    proc.write(addr + page_size, b"mine")  # page 1: an anon copy (do_no_page early COW)
    cache_pfn = inode.mapping.pages[0]
    anon_pfn = pfn_of(proc, addr + page_size)
    assert pfn_of(proc, addr) == cache_pfn
    cache_before, anon_before = counts(machine, cache_pfn), counts(machine, anon_pfn)

    child = proc.fork("child")
    assert rss(child) == (1, 1)
    assert counts(machine, cache_pfn) == (cache_before[0] + 1, cache_before[1] + 1)
    assert counts(machine, anon_pfn) == (anon_before[0] + 1, anon_before[1] + 1)
    assert child.read(addr + page_size, 4) == b"mine"
    assert child.read(addr, 16) == pattern(2 * page_size)[:16]
    assert not machine.arch.pte_write(proc.lookup(addr + page_size).raw)


def test_zero_page_is_copied_as_a_file_page(machine: Machine, proc, page_size: int) -> None:
    """copy_one_pte at the seed (6aab341e): the ZERO_PAGE is a normal, non-anon page, so a
    copied ZERO_PAGE pte adds a reference, a mapcount and one file_rss to the child."""
    addr = proc.mmap(2 * page_size)
    proc.write(addr, b"w")  # gives the vma an anon_vma, so the vma is copied
    proc.read(addr + page_size, 1)  # ZERO_PAGE
    zero = machine.phys.zero_pfn
    count, mapcount = counts(machine, zero)
    child = proc.fork("child")
    assert child.lookup(addr + page_size).pfn == zero
    assert counts(machine, zero) == (count + 1, mapcount + 1)
    assert rss(child) == (1, 1)


@pytest.mark.parametrize("kind", ["anon-read", "shared-file", "shmem"])
def test_vma_without_anon_vma_is_not_copied(machine: Machine, proc, page_size, kind) -> None:
    """copy_page_range at the seed (6aab341e): a vma with no anon_vma and none of
    VM_HUGETLB|VM_NONLINEAR|VM_PFNMAP is skipped; the child starts with no ptes and refaults
    the same page later."""
    if kind == "anon-read":
        addr = proc.mmap(page_size)
        proc.read(addr, 1)  # ZERO_PAGE: a read fault prepares no anon_vma
    elif kind == "shared-file":
        machine.create_file("/shared", pattern(page_size))
        addr = proc.mmap(page_size, RW, MAP_SHARED, proc.open("/shared"))
        proc.read(addr, 1)
    else:
        addr = proc.mmap(page_size, RW, MAP_SHARED | MAP_ANONYMOUS)
        proc.write(addr, b"shm")
    assert vma_at(proc, addr).anon_vma is None
    pfn = pfn_of(proc, addr)
    before = counts(machine, pfn)

    child = proc.fork("child")
    assert child.ptes(vma_at(child, addr)) == []
    assert rss(child) == (0, 0)
    assert counts(machine, pfn) == before
    data = proc.read(addr, 3)
    assert child.read(addr, 3) == data  # refault finds the same page
    assert pfn_of(child, addr) == pfn
    assert rss(child) == (1, 0)


def test_dontcopy_vma_is_left_out(machine: Machine, proc, page_size: int) -> None:
    """dup_mmap (kernel/fork.c, 2.6.15) skips VM_DONTCOPY vmas (madvise MADV_DONTFORK) before
    copy_page_range runs: the child has no vma there and the parent's ptes stay writable."""
    arch = machine.arch
    keep = proc.mmap(page_size)
    proc.write(keep, b"keep")
    skip = proc.mmap(page_size)
    proc.write(skip, b"skip")
    vma_at(proc, skip).vm_flags |= VM_DONTCOPY
    pfn = pfn_of(proc, skip)

    child = proc.fork("child")
    assert [v.vm_start for v in child.vmas] == [keep]
    with pytest.raises(SegmentationFault) as info:
        child.read(skip, 1)
    assert info.value.address == skip
    assert arch.pte_write(proc.lookup(skip).raw)
    assert not arch.pte_write(proc.lookup(keep).raw)
    assert counts(machine, pfn) == (1, 1)
    assert rss(child) == (0, 1)


def test_grandchild_shares_pages_three_ways(machine: Machine, proc, page_size: int) -> None:
    """copy_one_pte at the seed (6aab341e), applied twice: every fork adds one reference and one
    mapping, and exits give them back one by one."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"gen0")
    pfn = pfn_of(proc, addr)
    child = proc.fork("child")
    grandchild = child.fork("grandchild")
    assert counts(machine, pfn) == (3, 3)
    assert grandchild.read(addr, 4) == b"gen0"
    child.exit()
    assert counts(machine, pfn) == (2, 2)
    grandchild.exit()
    assert counts(machine, pfn) == (1, 1)
