"""vm_normal_page() and print_bad_pte(): which ptes have a struct page behind them.

The oracle is vm_normal_page / print_bad_pte in mm/memory.c at the seed 6aab341e
(2.6.15-rc3), kernel-reference §2.3, §3.1, §3.2 and the seed column of §7. Later-era rules are
shown next to the seed where the decision changed (rc6 "Allow arbitrary shared PFNMAP's").
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
    planted_pte,
    rss,
    rules_machine,
    vma_at,
)

from pfnmap import MAP_PRIVATE, MAP_SHARED, O_RDONLY, PROT_READ, PROT_WRITE, Machine, Verdict
from pfnmap.kernel.memory import zap_page_range
from pfnmap.kernel.normal_page import vm_normal_page
from pfnmap.kernel.remap import remap_pfn_range
from pfnmap.machine.invariants import InvariantError

RW = PROT_READ | PROT_WRITE


def kernel_bad_pte_line(pte: int, comm: str, vm_flags: int, vaddr: int) -> str:
    """print_bad_pte's printk at the seed: "Bad pte = %08llx, process = %s, vm_flags = %lx,
    vaddr = %lx" (mm/memory.c, 6aab341e)."""
    return f"Bad pte = {pte:08x}, process = {comm}, vm_flags = {vm_flags:x}, vaddr = {vaddr:x}"


def test_linear_pfn_in_pfnmap_vma_is_raw(machine: Machine, proc, page_size: int) -> None:
    """vm_normal_page at the seed (mm/memory.c, 6aab341e): in a VM_PFNMAP vma a pte whose pfn
    is vm_pgoff + page offset is a raw PFN (NULL); device memory is read through it untouched."""
    fd = proc.open("/dev/mem")
    npages = 4
    addr = proc.mmap(npages * page_size, RW, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
    vma = vma_at(proc, addr)
    for k in range(npages):
        va = addr + k * page_size
        assert proc.read(va, 32) == io_bytes(machine, k * page_size, 32)
        info = proc.lookup(va)
        assert info.verdict is Verdict.RAW_PFN
        assert info.pfn == vma.vm_pgoff + k == io_pfn(machine, k)
        assert vm_normal_page(vma, va, info.raw) is None
    assert rss(proc) == (0, 0)
    assert not machine.bad_ptes


def test_ram_pfn_mapped_through_devmem_is_not_counted(machine: Machine, proc, page_size) -> None:
    """vm_normal_page at the seed (mm/memory.c, 6aab341e): the linear rule is tested before
    pfn_valid, so a RAM page seen through /dev/mem is raw too: another process's anon page
    mapped this way gains no reference, no mapcount and no rss, through access, fork and
    munmap alike (the seed message: /dev/mem "works for arbitrary ranges")."""
    owner = machine.spawn("owner")
    buf = owner.mmap(page_size)
    owner.write(buf, pattern(page_size, 1))
    pfn = pfn_of(owner, buf)
    before = counts(machine, pfn)

    fd = proc.open("/dev/mem")
    addr = proc.mmap(page_size, RW, MAP_SHARED, fd, offset=pfn * page_size)
    info = proc.lookup(addr)
    assert info.verdict is Verdict.RAW_PFN and info.pfn == pfn
    # the same physical page: reads and writes go both ways
    assert proc.read(addr, page_size) == pattern(page_size, 1)
    proc.write(addr + 10, b"via /dev/mem")
    assert owner.read(buf + 10, 12) == b"via /dev/mem"
    assert counts(machine, pfn) == before
    assert rss(proc) == (0, 0)

    child = proc.fork("child")
    assert child.lookup(addr).verdict is Verdict.RAW_PFN
    assert counts(machine, pfn) == before
    assert rss(child) == (0, 0)
    child.exit()
    proc.munmap(addr, page_size)
    assert counts(machine, pfn) == before
    assert machine.page(pfn).anon  # still the owner's anon page
    assert not machine.bad_ptes


def test_reserved_firmware_pages_through_devmem_are_raw(machine: Machine, proc, page_size):
    """vm_normal_page at the seed (6aab341e): reserved RAM (pfns below the boot allocator) is
    as raw as device memory when /dev/mem maps it linearly; no PageReserved test is needed."""
    firmware = machine.phys.reserved_low_pages
    fd = proc.open("/dev/mem", O_RDONLY)
    addr = proc.mmap(firmware * page_size, PROT_READ, MAP_SHARED, fd, offset=0)
    before = [counts(machine, pfn) for pfn in range(firmware)]
    for pfn in range(firmware):
        va = addr + pfn * page_size
        assert proc.read(va, 64) == machine.phys.read(pfn * page_size, 64)
        assert proc.lookup(va).verdict is Verdict.RAW_PFN
    assert [counts(machine, pfn) for pfn in range(firmware)] == before


def test_cowed_page_in_pfnmap_vma_is_normal(machine: Machine, proc, page_size: int) -> None:
    """vm_normal_page at the seed (6aab341e): in a VM_PFNMAP vma, a pfn other than
    vm_pgoff + offset is a COWed anonymous page with a struct page; its neighbours stay raw."""
    fd = proc.open("/dev/mem")
    addr = proc.mmap(3 * page_size, RW, MAP_PRIVATE, fd, offset=io_pfn(machine) * page_size)
    vma = vma_at(proc, addr)
    proc.write(addr + page_size, b"private")
    info = proc.lookup(addr + page_size)
    assert info.verdict is Verdict.COWED
    assert info.pfn != vma.vm_pgoff + 1
    assert vm_normal_page(vma, addr + page_size, info.raw) == info.pfn
    page = machine.page(info.pfn)
    assert page.anon and (page.count, page.mapcount) == (1, 1)
    assert rss(proc) == (0, 1)
    for k in (0, 2):
        assert proc.lookup(addr + k * page_size).verdict is Verdict.RAW_PFN


def test_holes_of_a_cow_pfnmap_vma_fault_normal_pages(machine: Machine, proc, page_size):
    """do_anonymous_page and vm_normal_page at the seed (6aab341e), kernel-reference §3.10: a
    COW VM_PFNMAP vma whose remap left a hole faults the hole like anonymous memory (no
    ->nopage); the ZERO_PAGE and the anon page there fail the linear rule and are normal."""
    addr = proc.mmap(4 * page_size)
    vma = vma_at(proc, addr)
    remap_pfn_range(vma, addr, io_pfn(machine), 2 * page_size, vma.vm_page_prot)
    zero = machine.phys.zero_pfn
    zero_before = counts(machine, zero)
    assert proc.read(addr + 2 * page_size, 8) == bytes(8)
    proc.write(addr + 3 * page_size, b"hole")
    assert proc.lookup(addr + 2 * page_size).pfn == zero
    assert proc.lookup(addr + 2 * page_size).verdict is Verdict.COWED
    anon = proc.lookup(addr + 3 * page_size)
    assert anon.verdict is Verdict.COWED and machine.page(anon.pfn).anon
    assert counts(machine, zero) == (zero_before[0] + 1, zero_before[1] + 1)
    assert rss(proc) == (1, 1)
    assert proc.lookup(addr).verdict is Verdict.RAW_PFN
    proc.munmap(addr, 4 * page_size)
    assert counts(machine, zero) == zero_before
    assert counts(machine, anon.pfn) == (0, 0)
    assert rss(proc) == (0, 0)


def test_zero_page_is_a_normal_page(machine: Machine, proc, page_size: int) -> None:
    """vm_normal_page at the seed (6aab341e) returns reserved pages such as the ZERO_PAGE as
    normal pages (the source comment says so); they are counted like any other."""
    addr = proc.mmap(page_size)
    zero = machine.phys.zero_pfn
    count, mapcount = counts(machine, zero)
    assert proc.read(addr, 16) == bytes(16)
    info = proc.lookup(addr)
    assert info.pfn == zero and info.verdict is Verdict.NORMAL
    assert machine.page(zero).reserved
    assert counts(machine, zero) == (count + 1, mapcount + 1)


def test_driver_nopage_pages_are_normal(machine: Machine, proc, page_size: int) -> None:
    """vm_normal_page at the seed (6aab341e): a VM_RESERVED driver vma filled by ->nopage is
    not VM_PFNMAP, so its RAM pages are normal (pfn_valid) and refcounted."""
    dev = machine.add_device_buffer("/dev/dmabuf", 2)
    fd = proc.open("/dev/dmabuf")
    addr = proc.mmap(2 * page_size, RW, MAP_SHARED, fd)
    proc.read(addr, 1)
    info = proc.lookup(addr)
    assert info.verdict is Verdict.NORMAL and info.pfn == dev.pages[0]
    assert counts(machine, dev.pages[0]) == (2, 1)  # the driver's reference + the pte's


def test_bad_pte_is_reported_not_repaired(machine: Machine, proc, page_size: int) -> None:
    """vm_normal_page / print_bad_pte at the seed (6aab341e): a pfn without a struct page in a
    vma without VM_PFNMAP is reported with the kernel's KERN_ERR line and treated as NULL; the
    process is current->comm when the vma's mm is current's, else "???"."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"x")
    vma = vma_at(proc, addr)
    bad = machine.arch.pfn_pte(io_pfn(machine), vma.vm_page_prot)
    with planted_pte(proc, addr, bad):
        info = proc.lookup(addr)
        assert info.verdict is Verdict.BAD
        assert not machine.bad_ptes  # lookup has no side effect
        assert vm_normal_page(vma, addr, bad) is None
        assert [r.line for r in machine.bad_ptes] == [
            kernel_bad_pte_line(bad, proc.comm, vma.vm_flags, addr)
        ]
        assert machine.log[-1] == machine.bad_ptes[-1].line
        report = machine.bad_ptes[-1]
        assert (report.pte, report.vm_flags, report.vaddr) == (bad, vma.vm_flags, addr)

        other = machine.spawn("other")
        other.open("/dev/zero")  # any syscall makes "other" current
        vm_normal_page(vma, addr, bad)
        assert machine.bad_ptes[-1].line == kernel_bad_pte_line(bad, "???", vma.vm_flags, addr)
        # the pte itself is untouched by the report
        assert proc.lookup(addr).raw == bad


def test_bad_pte_through_fork_and_exit(machine: Machine, proc, page_size: int) -> None:
    """copy_one_pte and zap_pte_range at the seed (6aab341e) both go through vm_normal_page:
    a bad pte is write-protected and copied at fork (reported in the parent's name, no page
    touched) and cleared at exit (reported again, as ``process = ???``)."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"x")
    page = pfn_of(proc, addr)
    vma = vma_at(proc, addr)
    arch = machine.arch
    bad = arch.pte_mkwrite(arch.pfn_pte(io_pfn(machine), vma.vm_page_prot))
    with planted_pte(proc, addr, bad):
        child = proc.fork("child")
        assert [(r.caller, r.comm) for r in machine.bad_ptes] == [("copy_one_pte", proc.comm)]
        # vm_normal_page saw the pte after the write-protect and pte_mkold, as in the sparc64
        # report decoded in kernel-reference §5.5
        assert machine.bad_ptes[0].pte == arch.pte_mkold(arch.pte_wrprotect(bad))
        assert not arch.pte_write(proc.lookup(addr).raw)  # COW write-protect came first
        child_pte = child.lookup(addr)
        assert child_pte.pfn == io_pfn(machine) and child_pte.verdict is Verdict.BAD
        assert rss(child) == (0, 0)
    assert counts(machine, page) == (1, 1)  # the real page never saw the fork
    child.exit()
    # exit_mm() (kernel/exit.c, 2.6.15) clears tsk->mm before mmput() runs exit_mmap(), so
    # print_bad_pte's "vma->vm_mm == current->mm ? current->comm : ???" prints ???; the
    # 2.6.15-rc6 sunffb report on LKML ("More info for DSM w/r/t sunffb on 2.6.15-rc6",
    # 2005-12-23, kernel-reference S-ffb) shows the task's name at fork and munmap and ??? for
    # the teardown of the same pte
    assert [(r.caller, r.comm) for r in machine.bad_ptes[1:]] == [("zap_pte_range", "???")]
    assert machine.bad_ptes[-1].line == kernel_bad_pte_line(
        arch.pte_mkold(arch.pte_wrprotect(bad)), "???", vma.vm_flags, addr
    )


def test_bad_pte_cows_like_a_raw_pfn(machine: Machine, proc, page_size: int) -> None:
    """do_wp_page and cow_user_page at the seed (6aab341e): vm_normal_page reports the bad pte
    and returns NULL, so the write copies from the user address as for a raw PFN; the copy is a
    normal anonymous page afterwards (the sparc64 "X draws into RAM" outcome, §5.5)."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"x")
    vma = vma_at(proc, addr)
    arch = machine.arch
    bad = arch.pte_wrprotect(arch.pfn_pte(io_pfn(machine), vma.vm_page_prot))
    with planted_pte(proc, addr, bad):
        child = proc.fork("child")
    machine.bad_ptes.clear()
    # fork left the child's pte old; touch it first, since where the MMU traps on old ptes
    # (sparc64) the non-faulting user copy would fail on it and zero-fill instead
    child.read(addr, 1)
    device = io_bytes(machine, 0, page_size)
    child.write(addr, b"Y")  # page-aligned: the seed's unaligned copy does not shift
    assert [(r.caller, r.comm) for r in machine.bad_ptes] == [("do_wp_page", "child")]
    info = child.lookup(addr)
    assert info.verdict is Verdict.NORMAL and machine.page(info.pfn).anon
    assert child.read(addr, page_size) == b"Y" + device[1:]
    assert rss(child) == (0, 1)
    assert io_bytes(machine, 0, page_size) == device  # the write went to the copy only


def test_seed_nonlinear_shared_pfnmap_is_misjudged(machine: Machine, proc, page_size: int):
    """vm_normal_page at the seed (6aab341e) has no is_cow test: in a *shared* VM_PFNMAP vma
    remapped by two remap_pfn_range calls (each resetting vm_pgoff), ptes off the linear rule
    fall through to pfn_valid and are Bad ptes (the sunffb symptom of §5.5)."""
    fd = proc.open("/dev/mem")
    npages = 4
    half = npages // 2 * page_size
    addr = proc.mmap(npages * page_size, RW, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
    vma = vma_at(proc, addr)
    # a driver remapping its upper half elsewhere: zap it, then remap it
    zap_page_range(vma, addr + half, half)
    other = io_pfn(machine, 64)
    remap_pfn_range(vma, addr + half, other, half, vma.vm_page_prot)
    assert vma.vm_pgoff == other  # the seed sets vm_pgoff for every call
    for k in range(npages):
        assert proc.lookup(addr + k * page_size).verdict is Verdict.BAD
    # the data still comes from the device: the misjudgement is only the VM's view
    assert proc.read(addr + half, 16) == io_bytes(machine, 64 * page_size, 16)
    proc.munmap(addr, npages * page_size)
    assert [r.caller for r in machine.bad_ptes] == ["zap_pte_range"] * npages


def test_rc6_every_pte_of_shared_pfnmap_is_raw(arch_name: str) -> None:
    """vm_normal_page from 2.6.15-rc6 on ("Allow arbitrary shared PFNMAP's", kernel-reference
    §3.1): in a VM_PFNMAP vma that is not a COW mapping every pte is raw, whatever its pfn;
    and remap_pfn_range leaves vm_pgoff alone for shared vmas (§3.7)."""
    with rules_machine(arch_name, **FINAL_2_6_15) as machine:
        page_size = machine.arch.page_size
        proc = machine.spawn("rc6")
        fd = proc.open("/dev/mem")
        npages = 4
        half = npages // 2 * page_size
        base = io_pfn(machine)
        addr = proc.mmap(npages * page_size, RW, MAP_SHARED, fd, offset=base * page_size)
        vma = vma_at(proc, addr)
        zap_page_range(vma, addr + half, half)
        remap_pfn_range(vma, addr + half, io_pfn(machine, 64), half, vma.vm_page_prot)
        assert vma.vm_pgoff == base
        for k in range(npages):
            assert proc.lookup(addr + k * page_size).verdict is Verdict.RAW_PFN
        proc.munmap(addr, npages * page_size)
        assert not machine.bad_ptes


def test_cowed_page_on_the_linear_pfn_is_taken_for_raw(arch_name: str) -> None:
    """vm_normal_page at the seed (6aab341e), kernel-reference §3.1 "emulator edge case" and
    Hugh's "entertaining insoluble self-referential problem": in a private /dev/mem vma over
    RAM, a COW copy that the allocator happens to place on pfn vm_pgoff + offset satisfies the
    linear rule, so it is taken for a raw pte: munmap neither uncounts nor frees it."""
    machine = Machine(arch=arch_name, ram="64M")
    page_size = machine.arch.page_size
    owner = machine.spawn("owner")
    buf = owner.mmap(page_size)
    owner.write(buf, b"owner data")
    target = pfn_of(owner, buf)

    proc = machine.spawn("victim")
    fd = proc.open("/dev/mem")
    addr = proc.mmap(page_size, RW, MAP_PRIVATE, fd, offset=target * page_size)
    owner.munmap(buf, page_size)  # target is now the most recently freed page
    assert machine.page(target).count == 0
    proc.write(addr, b"V")  # do_wp_page allocates the COW copy
    info = proc.lookup(addr)
    assert info.pfn == target, "the allocator reused the freed page, as this scenario needs"
    assert info.verdict is Verdict.RAW_PFN
    assert machine.page(target).anon and counts(machine, target) == (1, 1)
    assert rss(proc) == (0, 1)
    assert proc.read(addr, 10) == b"Vwner data"  # copied from itself through the user address

    proc.munmap(addr, page_size)
    assert counts(machine, target) == (1, 1)  # leaked: zap saw a raw pte
    assert rss(proc) == (0, 1)
    with pytest.raises(InvariantError, match="anon_rss=1"):
        machine.check_invariants()
