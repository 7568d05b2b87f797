"""remap_pfn_range() and the /dev/mem mmap that uses it (mmap_mem).

The oracle is remap_pfn_range in mm/memory.c at the seed 6aab341e (2.6.15-rc3),
kernel-reference §3.7 and the seed column of §7; mmap_mem (drivers/char/mem.c) passes the
mmap offset's pfn (vm_pgoff). The 2.6.15-rc6 COW rule is shown next to the seed.
"""

from __future__ import annotations

import errno

import pytest
from helpers import (
    FINAL_2_6_15,
    counts,
    io_bytes,
    io_pfn,
    io_region,
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
    O_RDWR,
    O_SYNC,
    PROT_READ,
    PROT_WRITE,
    BusError,
    KernelBug,
    KernelError,
    Machine,
    Verdict,
)
from pfnmap.kernel.constants import VM_IO, VM_PFNMAP, VM_RESERVED
from pfnmap.kernel.memory import zap_page_range
from pfnmap.kernel.remap import remap_pfn_range

RW = PROT_READ | PROT_WRITE
PFNMAP_FLAGS = VM_IO | VM_RESERVED | VM_PFNMAP


def test_remap_sets_flags_pgoff_and_linear_ptes(machine: Machine, proc, page_size: int) -> None:
    """remap_pfn_range at the seed (6aab341e): the vma gains VM_IO|VM_RESERVED|VM_PFNMAP,
    vm_pgoff becomes the pfn, each pte is pfn_pte(pfn + k, prot), and nothing is counted."""
    arch = machine.arch
    npages = 5
    addr = proc.mmap(npages * page_size)
    vma = vma_at(proc, addr)
    flags_before = vma.vm_flags
    pfn = io_pfn(machine, 3)
    assert remap_pfn_range(vma, addr, pfn, npages * page_size, vma.vm_page_prot) == 0
    assert vma.vm_flags == flags_before | PFNMAP_FLAGS
    assert vma.vm_pgoff == pfn
    assert proc.ptes(vma) == [
        (addr + k * page_size, arch.pfn_pte(pfn + k, vma.vm_page_prot)) for k in range(npages)
    ]
    assert rss(proc) == (0, 0)
    for k in range(npages):
        assert proc.lookup(addr + k * page_size).verdict is Verdict.RAW_PFN
    assert proc.read(addr + 2 * page_size, 16) == io_bytes(machine, 5 * page_size, 16)


def test_remap_of_ram_takes_no_reference(machine: Machine, proc, page_size: int) -> None:
    """remap_pfn_range at the seed (6aab341e) maps RAM pfns without get_page, rmap or rss."""
    firmware = machine.phys.reserved_low_pages
    before = [counts(machine, pfn) for pfn in range(firmware)]
    addr = proc.mmap(firmware * page_size, PROT_READ)
    vma = vma_at(proc, addr)
    remap_pfn_range(vma, addr, 0, firmware * page_size, vma.vm_page_prot)
    assert [counts(machine, pfn) for pfn in range(firmware)] == before
    assert proc.read(addr + page_size, 32) == machine.phys.read(page_size, 32)
    assert rss(proc) == (0, 0)


def test_remap_rounds_the_size_up_to_pages(machine: Machine, proc, page_size: int) -> None:
    """remap_pfn_range at the seed (6aab341e): end = addr + PAGE_ALIGN(size)."""
    addr = proc.mmap(3 * page_size)
    vma = vma_at(proc, addr)
    remap_pfn_range(vma, addr, io_pfn(machine), page_size + 1, vma.vm_page_prot)
    assert [va for va, _ in proc.ptes(vma)] == [addr, addr + page_size]


def test_remap_over_a_present_pte_is_a_bug(machine: Machine, proc, page_size: int) -> None:
    """remap_pfn_range at the seed (6aab341e): BUG_ON(!pte_none(*pte)). pfnmap checks every
    target before writing, so the failed call leaves the vma and its ptes as they were."""
    addr = proc.mmap(3 * page_size)
    proc.write(addr + page_size, b"present")
    vma = vma_at(proc, addr)
    flags, pgoff, ptes = vma.vm_flags, vma.vm_pgoff, proc.ptes(vma)
    with pytest.raises(KernelBug):
        remap_pfn_range(vma, addr, io_pfn(machine), 3 * page_size, vma.vm_page_prot)
    assert (vma.vm_flags, vma.vm_pgoff, proc.ptes(vma)) == (flags, pgoff, ptes)
    assert proc.read(addr + page_size, 7) == b"present"


def test_remap_of_an_empty_range_is_a_bug(machine: Machine, proc, page_size: int) -> None:
    """remap_pfn_range at the seed (6aab341e): BUG_ON(addr >= end), e.g. for size 0."""
    addr = proc.mmap(page_size)
    vma = vma_at(proc, addr)
    with pytest.raises(KernelBug):
        remap_pfn_range(vma, addr, io_pfn(machine), 0, vma.vm_page_prot)
    assert not vma.vm_flags & VM_PFNMAP


def test_remap_pfn_beyond_physical_width_is_einval(machine: Machine, proc, page_size: int):
    """A pfn range past the arch's physical address width cannot be encoded; pfnmap refuses it
    with EINVAL where the kernel of the era silently truncated it in pfn_pte (documented in
    remap_pfn_range's docstring)."""
    addr = proc.mmap(2 * page_size)
    vma = vma_at(proc, addr)
    with pytest.raises(KernelError) as info:
        remap_pfn_range(vma, addr, machine.arch.max_pfn, 2 * page_size, vma.vm_page_prot)
    assert info.value.errno == errno.EINVAL
    assert proc.ptes(vma) == [] and not vma.vm_flags & VM_PFNMAP


def test_seed_partial_remap_breaks_the_linear_rule(machine: Machine, proc, page_size: int):
    """remap_pfn_range at the seed (6aab341e) sets vm_pgoff = pfn even when the range starts
    above vm_start, so pte k holds pfn + k - 1 where vm_normal_page expects pfn + k: device
    ptes become Bad ptes (what rc4's incomplete_pfn_remap and rc6's whole-vma rule answered)."""
    addr = proc.mmap(4 * page_size)
    vma = vma_at(proc, addr)
    pfn = io_pfn(machine, 8)
    remap_pfn_range(vma, addr + page_size, pfn, 2 * page_size, vma.vm_page_prot)
    assert vma.vm_pgoff == pfn
    for k in (1, 2):
        info = proc.lookup(addr + k * page_size)
        assert info.pfn == pfn + k - 1
        assert info.verdict is Verdict.BAD
    proc.munmap(addr, 4 * page_size)
    assert [r.caller for r in machine.bad_ptes] == ["zap_pte_range"] * 2


def test_rc6_partial_remap_of_cow_vma_is_einval(arch_name: str) -> None:
    """remap_pfn_range from 2.6.15-rc6 (kernel-reference §3.7): a COW mapping must be remapped
    as a whole, else -EINVAL with the flags left unchanged; a shared one keeps its vm_pgoff."""
    with rules_machine(arch_name, **FINAL_2_6_15) as machine:
        page_size = machine.arch.page_size
        proc = machine.spawn("rc6")
        addr = proc.mmap(4 * page_size)
        vma = vma_at(proc, addr)
        flags = vma.vm_flags
        with pytest.raises(KernelError) as info:
            remap_pfn_range(vma, addr + page_size, io_pfn(machine), page_size, vma.vm_page_prot)
        assert info.value.errno == errno.EINVAL
        assert vma.vm_flags == flags and proc.ptes(vma) == []
        remap_pfn_range(vma, addr, io_pfn(machine), 4 * page_size, vma.vm_page_prot)
        assert vma.vm_pgoff == io_pfn(machine)

        fd = proc.open("/dev/mem")
        shared = proc.mmap(2 * page_size, RW, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
        svma = vma_at(proc, shared)
        zap_page_range(svma, shared + page_size, page_size)
        other = io_pfn(machine, 40)
        remap_pfn_range(svma, shared + page_size, other, page_size, svma.vm_page_prot)
        assert svma.vm_pgoff == io_pfn(machine)
        assert proc.lookup(shared + page_size).pfn == other
        assert proc.lookup(shared + page_size).verdict is Verdict.RAW_PFN


def test_remap_across_a_pte_table_boundary(machine: Machine, proc, page_size: int) -> None:
    """remap_pfn_range at the seed (6aab341e) walks pgd..pte and allocates tables as needed;
    a range straddling two pte tables is linear on both sides."""
    span = table_span(machine)
    npages = 4
    boundary = -(-(machine.arch.task_size // 3) // span) * span + span
    start = boundary - 2 * page_size
    fd = proc.open("/dev/mem")
    addr = proc.mmap(
        npages * page_size, RW, MAP_SHARED | MAP_FIXED, fd, io_pfn(machine) * page_size, start
    )
    assert addr == start
    tables_used = {proc.lookup(addr + k * page_size).walk[-1].slot // page_size for k in (0, 3)}
    assert len(tables_used) == 2
    vma = vma_at(proc, addr)
    ptes = proc.ptes(vma)
    assert [machine.arch.pte_pfn(pte) for _, pte in ptes] == [
        vma.vm_pgoff + k for k in range(npages)
    ]
    assert proc.read(boundary - 8, 16) == io_bytes(machine, 2 * page_size - 8, 16)


def test_devmem_pgoff_is_the_physical_page(machine: Machine, proc, page_size: int) -> None:
    """mmap_mem (drivers/char/mem.c, 2.6.15) remaps vm_pgoff, the mmap offset's page, so the
    seed's vm_pgoff = pfn holds trivially; a private mapping gets the read-only PAGE_COPY ptes
    of its vm_page_prot, a shared writable one writable ptes."""
    arch = machine.arch
    fd = proc.open("/dev/mem")
    offset = io_pfn(machine, 2) * page_size
    private = proc.mmap(2 * page_size, RW, MAP_PRIVATE, fd, offset=offset)
    shared = proc.mmap(2 * page_size, RW, MAP_SHARED, fd, offset=offset)
    for addr, writable in ((private, False), (shared, True)):
        vma = vma_at(proc, addr)
        assert vma.vm_pgoff == io_pfn(machine, 2)
        assert vma.vm_flags & PFNMAP_FLAGS == PFNMAP_FLAGS
        for va, pte in proc.ptes(vma):
            assert pte == arch.pfn_pte(vma.vm_pgoff + (va - addr) // page_size, vma.vm_page_prot)
            assert arch.pte_write(pte) == writable
    # both views see one device page
    proc.write(shared, b"shared")
    assert proc.read(private, 6) == b"shared"


def test_devmem_o_sync_is_uncached(machine: Machine, proc, page_size: int) -> None:
    """mmap_mem (drivers/char/mem.c, 2.6.15): O_SYNC makes the mapping uncached
    (pgprot_noncached) before remap_pfn_range; without it the protection is the vma's own."""
    arch = machine.arch
    offset = io_pfn(machine) * page_size
    cached_fd = proc.open("/dev/mem")
    sync_fd = proc.open("/dev/mem", O_RDWR | O_SYNC)
    cached = proc.mmap(page_size, RW, MAP_SHARED, cached_fd, offset=offset)
    uncached = proc.mmap(page_size, RW, MAP_SHARED, sync_fd, offset=offset)
    base_prot = vma_at(proc, cached).vm_page_prot
    assert vma_at(proc, uncached).vm_page_prot == arch.pgprot_noncached(base_prot)
    assert arch.pgprot_noncached(base_prot) != base_prot
    assert proc.lookup(cached).raw == arch.pfn_pte(io_pfn(machine), base_prot)
    assert proc.lookup(uncached).raw == arch.pfn_pte(
        io_pfn(machine), arch.pgprot_noncached(base_prot)
    )


def test_devmem_beyond_physical_width_is_einval(machine: Machine, proc, page_size: int):
    """/dev/mem offsets past the arch's physical address width are EINVAL (a pfnmap check,
    documented in DevMem.mmap) and leave no vma behind."""
    arch = machine.arch
    fd = proc.open("/dev/mem", O_RDWR)
    for offset, npages in (((arch.max_pfn + 1) * page_size, 1), (arch.max_pfn * page_size, 2)):
        with pytest.raises(KernelError) as info:
            proc.mmap(npages * page_size, PROT_READ, MAP_SHARED, fd, offset=offset)
        assert info.value.errno == errno.EINVAL
    assert proc.vmas == []
    # the last page the arch can address is fine
    addr = proc.mmap(page_size, PROT_READ, MAP_SHARED, fd, offset=arch.max_pfn * page_size)
    assert proc.lookup(addr).pfn == arch.max_pfn


def test_devmem_hole_reads_as_sigbus(machine: Machine, proc, page_size: int) -> None:
    """mmap_mem (2.6.15) checks no range, so a physical hole maps fine; the load then faults
    on the bus, which the process sees as SIGBUS at the user address."""
    phys = machine.phys
    hole = phys.ram_bytes
    if phys.io_region_of(hole) is not None:
        pytest.skip("I/O memory starts right above RAM on this machine")
    fd = proc.open("/dev/mem")
    addr = proc.mmap(2 * page_size, PROT_READ, MAP_SHARED, fd, offset=hole)
    # the linear rule comes before pfn_valid: a hole is as raw as device memory
    assert proc.lookup(addr).verdict is Verdict.RAW_PFN
    with pytest.raises(BusError) as info:
        proc.read(addr + page_size + 3, 1)
    assert info.value.address == addr + page_size + 3


def test_iomem_device_maps_its_region(machine: Machine, proc, page_size: int) -> None:
    """A driver mmap calling io_remap_pfn_range (remap_pfn_range where the arch has no I/O
    spaces): the mmap offset is relative to the device, the ptes are raw, and a mapping past
    the device's memory is refused with no vma left."""
    region = io_region(machine)
    machine.add_iomem_device("/dev/fb0", region.name)
    fd = proc.open("/dev/fb0")
    addr = proc.mmap(2 * page_size, RW, MAP_SHARED, fd, offset=3 * page_size)
    vma = vma_at(proc, addr)
    assert vma.vm_flags & PFNMAP_FLAGS == PFNMAP_FLAGS
    for k in range(2):
        info = proc.lookup(addr + k * page_size)
        assert info.verdict is Verdict.RAW_PFN
    assert proc.read(addr, 32) == io_bytes(machine, 3 * page_size, 32)
    proc.write(addr + page_size, pattern(64))
    assert io_bytes(machine, 4 * page_size, 64) == pattern(64)
    with pytest.raises(KernelError) as info:
        proc.mmap(2 * page_size, RW, MAP_SHARED, fd, offset=region.size - page_size)
    assert info.value.errno == errno.EINVAL
    assert proc.vmas == [vma]
    assert pfn_of(proc, addr) == vma.vm_pgoff
