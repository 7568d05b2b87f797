"""The kernel's own VM_PFNMAP selftest, tools/testing/selftests/mm/pfnmap.c (David Hildenbrand,
2025, written for 6.x), replayed case by case on every arch and every era pfnmap models.

Its fixture opens /dev/mem O_RDONLY and maps two pages of the first "System RAM" range
PROT_READ, MAP_SHARED (find_ram_target: on a PC that range starts at 0x1000, so pfn 1, which is
one of the emulator's boot-reserved low pages: RAM with struct pages that nobody else maps). Each
case below is one TEST_F of the selftest. Where an era answers differently from the 6.x kernel
the selftest expects, the test asserts the era's answer and says why.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from helpers import finish

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    O_RDONLY,
    PROT_READ,
    KernelError,
    Machine,
    Process,
    Verdict,
)
from pfnmap.kernel.constants import (
    MADV_COLD,
    MADV_DONTNEED,
    MADV_DONTNEED_LOCKED,
    MADV_FREE,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_WIPEONFORK,
    VM_PFNMAP,
)
from pfnmap.kernel.rules import ERAS
from pfnmap.machine.invariants import InvariantError

#: the selftest's DEV_MEM_NPAGES
NPAGES = 2
#: the first page of the first "System RAM" range on a PC (0x1000)
RAM_TARGET_PFN = 1

eras = pytest.mark.parametrize("era", list(ERAS))


@dataclass
class Fixture:
    """FIXTURE(pfnmap): the machine, the task, the /dev/mem fd and the two-page mapping."""

    machine: Machine
    proc: Process
    fd: int
    pagesize: int
    addr1: int
    size1: int

    @property
    def offset(self) -> int:
        return RAM_TARGET_PFN * self.pagesize

    def read_access(self, proc: Process, addr: int, size: int) -> bytes:
        """test_read_access(): touch every page (a SIGSEGV would raise here)."""
        return b"".join(proc.read(a, 1) for a in range(addr, addr + size, self.pagesize))


@contextmanager
def pfnmap_fixture(arch_name: str, era: str, check: bool = True) -> Iterator[Fixture]:
    """FIXTURE_SETUP: open, mmap, check the mapping is VM_PFNMAP and readable. The teardown
    (munmap, close) is the processes' exit plus the emulator's whole-machine audit."""
    machine = Machine(arch_name, "64M", era=era)
    proc = machine.spawn("pfnmap")
    ps = machine.arch.page_size
    fd = proc.open("/dev/mem", O_RDONLY)
    addr = proc.mmap(NPAGES * ps, PROT_READ, MAP_SHARED, fd, offset=RAM_TARGET_PFN * ps)
    fx = Fixture(machine, proc, fd, ps, addr, NPAGES * ps)
    assert proc.mm.find_vma(addr).vm_flags & VM_PFNMAP  # check_vmflag_pfnmap
    fx.read_access(proc, addr, fx.size1)
    yield fx
    if check:
        finish(machine)


def ptes(fx: Fixture) -> list[tuple[int, int]]:
    return [(v.vm_start, v.vm_end, fx.proc.ptes(v)) for v in fx.proc.vmas]


#: TEST_F(pfnmap, madvise_disallowed): every one of these must be EINVAL
DISALLOWED = (
    MADV_DONTNEED,
    MADV_DONTNEED_LOCKED,
    MADV_FREE,
    MADV_WIPEONFORK,
    MADV_COLD,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
)


@eras
def test_madvise_disallowed(arch_name: str, era: str) -> None:
    """Every advice of the list is EINVAL in every era, as the selftest wants, but for two
    reasons: MADV_DONTNEED because madvise_dontneed() refuses VM_PFNMAP (VM_UNPAGED before the
    seed: the same bit), the others because the era has no such advice at all (they came in
    4.5 to 5.18). The mapping is untouched either way."""
    with pfnmap_fixture(arch_name, era) as fx:
        before = ptes(fx)
        rules = fx.machine.rules
        for advice in DISALLOWED:
            with pytest.raises(KernelError) as excinfo:
                fx.proc.madvise(fx.addr1, fx.pagesize, advice)
            assert excinfo.value.errno == errno.EINVAL, advice
            known = advice in rules.madvise_advices
            assert known == (advice == MADV_DONTNEED)
            if known:
                assert rules.pfnmap_flag_name in str(excinfo.value)
        assert ptes(fx) == before


@eras
def test_munmap_split(arch_name: str, era: str) -> None:
    """Unmap the first page, then map that page again while the second is still mapped. Both
    work in every era (there is no PAT tracking to trip over); split_vma gives the surviving
    half vm_pgoff + 1, so its pte is still a raw pfn by the linear rule."""
    with pfnmap_fixture(arch_name, era) as fx:
        proc, ps = fx.proc, fx.pagesize
        proc.munmap(fx.addr1, ps)
        rest = proc.mm.find_vma(fx.addr1 + ps)
        assert rest.vm_start == fx.addr1 + ps and rest.vm_pgoff == RAM_TARGET_PFN + 1
        assert proc.lookup(fx.addr1 + ps).verdict is Verdict.RAW_PFN
        addr2 = proc.mmap(ps, PROT_READ, MAP_SHARED, fx.fd, offset=fx.offset)
        assert proc.lookup(addr2).verdict is Verdict.RAW_PFN
        assert proc.lookup(addr2).pfn == RAM_TARGET_PFN
        assert not fx.machine.bad_ptes


@eras
def test_mremap_fixed(arch_name: str, era: str) -> None:
    """mremap over a reserved anonymous destination with MREMAP_FIXED|MREMAP_MAYMOVE: works in
    every era. do_mremap unmaps the destination first, move_ptes carries the raw ptes, and the
    moved vma's vm_pgoff keeps them raw by the linear rule."""
    with pfnmap_fixture(arch_name, era) as fx:
        proc = fx.proc
        addr2 = proc.mmap(fx.size1, PROT_READ, MAP_ANONYMOUS | MAP_PRIVATE)
        ret = proc.mremap(fx.addr1, fx.size1, fx.size1, MREMAP_FIXED | MREMAP_MAYMOVE, addr2)
        assert ret == addr2
        assert [v.vm_start for v in proc.vmas] == [addr2]
        for k in range(NPAGES):
            info = proc.lookup(addr2 + k * fx.pagesize)
            assert info.verdict is Verdict.RAW_PFN and info.pfn == RAM_TARGET_PFN + k
        expect = fx.machine.phys.read(fx.offset, fx.size1)
        assert proc.read(addr2, fx.size1) == expect
        assert not fx.machine.bad_ptes


@eras
def test_mremap_shrink(arch_name: str, era: str) -> None:
    """Shrinking works in every era ("Always allow a shrinking remap")."""
    with pfnmap_fixture(arch_name, era) as fx:
        assert fx.proc.mremap(fx.addr1, fx.size1, fx.size1 - fx.pagesize) == fx.addr1
        assert fx.proc.mm.find_vma(fx.addr1).vm_end == fx.addr1 + fx.pagesize


def _grow(fx: Fixture) -> int:
    return fx.proc.mremap(fx.addr1, fx.size1, fx.size1 + fx.pagesize, MREMAP_MAYMOVE)


#: the eras whose do_mremap lets a VM_PFNMAP vma grow (all but 6.1)
GROWING_ERAS = [name for name, r in ERAS.items() if not r.mremap_grow_refused_flags & VM_PFNMAP]


@eras
def test_mremap_expand(arch_name: str, era: str) -> None:
    """The selftest expects growing to fail, and in 6.1 it does: vma_to_resize refuses
    VM_DONTEXPAND|VM_PFNMAP with EFAULT, and the vma is left as it was. **The older eras let it
    grow**: 2.6.15's do_mremap refuses only VM_DONTEXPAND, and remap_pfn_range did not set
    VM_DONTEXPAND until 3.7. The vma grows in place (nothing is mapped above it) and the new
    page has no pte."""
    with pfnmap_fixture(arch_name, era) as fx:
        if era not in GROWING_ERAS:
            with pytest.raises(KernelError) as excinfo:
                _grow(fx)
            assert excinfo.value.errno == errno.EFAULT
            assert fx.proc.mm.find_vma(fx.addr1).vm_end == fx.addr1 + fx.size1
            return
        assert _grow(fx) == fx.addr1
        vma = fx.proc.mm.find_vma(fx.addr1)
        assert vma.vm_end == fx.addr1 + fx.size1 + fx.pagesize and vma.vm_flags & VM_PFNMAP
        assert not fx.proc.lookup(fx.addr1 + fx.size1).present


@pytest.mark.parametrize("era", GROWING_ERAS)
def test_mremap_expand_then_touch(arch_name: str, era: str) -> None:
    """Why 6.x refuses the growth ("getting it right would be challenging"): /dev/mem's vma
    has no ->nopage, so a read of the grown page takes do_anonymous_page inside the VM_PFNMAP
    vma. What munmap then does with that page is vm_normal_page's call, and the eras differ:

    - seed: the pfn is not vm_pgoff + offset and is pfn_valid, so a "COWed" page: released;
    - 2.6.15 (rc6's is_cow test) and before the seed (page_is_anon() says no): a raw pfn, so
      the ZERO_PAGE reference, its mapcount and file_rss are never given back;
    - 2.6.26 (no ZERO_PAGE, its own anonymous page): with pte_special on an arch that has the
      bit the page is not special, so it is released; without the bit the is_cow rule calls it
      raw and the anonymous page leaks.
    """
    with pfnmap_fixture(arch_name, era, check=False) as fx:
        machine = fx.machine
        assert _grow(fx) == fx.addr1
        grown = fx.addr1 + fx.size1
        assert fx.proc.read(grown, 4) == bytes(4)
        verdict = fx.proc.lookup(grown).verdict
        special = machine.rules.pte_special and machine.arch.special_mask
        leaks = era in ("unpaged", "2.6.15") or (era == "2.6.26" and not special)
        assert verdict is (Verdict.RAW_PFN if leaks else Verdict.COWED)
        fx.proc.munmap(fx.addr1, fx.size1 + fx.pagesize)
        assert fx.proc.rss()["rss"] == (1 if leaks else 0)
        if leaks:
            with pytest.raises(InvariantError):
                machine.check_invariants()
        else:
            finish(machine)


@eras
def test_fork(arch_name: str, era: str) -> None:
    """The child can read both pages: copy_page_range copies VM_PFNMAP ptes in every era (the
    forcing flags include the bit since VM_UNPAGED), and they stay raw in the child."""
    with pfnmap_fixture(arch_name, era) as fx:
        child = fx.proc.fork("child")
        assert fx.read_access(child, fx.addr1, fx.size1) == fx.read_access(
            fx.proc, fx.addr1, fx.size1
        )
        for k in range(NPAGES):
            assert child.lookup(fx.addr1 + k * fx.pagesize).verdict is Verdict.RAW_PFN
        child.exit()
        assert not fx.machine.bad_ptes
