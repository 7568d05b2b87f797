"""The kernel's VM_PFNMAP selftest (tools/testing/selftests/mm/pfnmap.c, written for 6.x) as
scenarios, so ``pfnmap compare pfnmap_selftest`` shows each era's answer to each of its cases.

The selftest maps two pages of the first "System RAM" range of /dev/mem, read-only and
shared; on a PC that range starts at 0x1000, which is pfn 1 here (a boot-reserved RAM page
with a struct page that nobody else maps). ``tests/test_pfnmap_selftest.py`` checks the same
cases one by one on every arch and era.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.kernel.constants import (
    MADV_COLD,
    MADV_DONTNEED,
    MADV_DONTNEED_LOCKED,
    MADV_FREE,
    MADV_NAMES,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_WIPEONFORK,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    O_RDONLY,
    PROT_READ,
)

from . import scenario
from .observe import FAILED

if TYPE_CHECKING:
    from pfnmap.machine import Machine, Process

    from .observe import Observer

#: the selftest's DEV_MEM_NPAGES, and the pfn of the first "System RAM" page of a PC
NPAGES = 2
RAM_TARGET_PFN = 1

#: TEST_F(pfnmap, madvise_disallowed): the advice values the selftest expects EINVAL for
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


def _setup(m: Machine, obs: Observer, case: str) -> tuple[Process, int, int] | None:
    """FIXTURE_SETUP: a task of its own per case, /dev/mem O_RDONLY, two pages mapped."""
    ps = m.arch.page_size
    proc = m.spawn(case)
    fd = proc.open("/dev/mem", O_RDONLY)
    addr = obs.do(
        f"{case}: mmap",
        lambda: proc.mmap(NPAGES * ps, PROT_READ, MAP_SHARED, fd, offset=RAM_TARGET_PFN * ps),
        proc,
    )
    if addr is FAILED:
        return None
    return proc, fd, addr


@scenario(
    "pfnmap_selftest",
    "the kernel's tools/testing/selftests/mm/pfnmap.c, case by case",
    ("sys_madvise", "do_munmap", "do_mremap", "move_page_tables", "copy_page_range"),
)
def pfnmap_selftest(m: Machine, obs: Observer) -> None:
    """Each TEST_F of the 6.x selftest on a /dev/mem mapping of RAM (pfn 1, two pages).

    madvise_disallowed: every advice EINVAL in every era, MADV_DONTNEED because
    madvise_dontneed refuses VM_PFNMAP (VM_UNPAGED before the seed), the rest because 2.6.x
    has no such advice. munmap_split, mremap_fixed, mremap_shrink and fork: ok in every era,
    the moved and the forked ptes still raw pfns. mremap_expand: the selftest wants a failure
    (6.x refuses VM_DONTEXPAND|VM_PFNMAP), but 2.6.15 and 2.6.26 (every era here) grow the vma
    in place, since remap_pfn_range did not set VM_DONTEXPAND until 3.7.
    """
    ps = m.arch.page_size
    size = NPAGES * ps
    fixture = _setup(m, obs, "madvise_disallowed")
    if fixture is not None:
        proc, _, addr = fixture
        for advice in DISALLOWED:
            name = MADV_NAMES[advice]
            obs.do(f"madvise_disallowed: {name}", lambda a=advice: proc.madvise(addr, ps, a), proc)
        obs.ptes("madvise_disallowed", proc, addr, NPAGES)
        obs.do("madvise_disallowed: exit", proc.exit, proc)

    fixture = _setup(m, obs, "munmap_split")
    if fixture is not None:
        proc, fd, addr = fixture
        obs.do("munmap_split: munmap the first page", lambda: proc.munmap(addr, ps), proc)
        obs.vma("munmap_split rest", proc, addr + ps)
        again = obs.do(
            "munmap_split: map the first page again",
            lambda: proc.mmap(ps, PROT_READ, MAP_SHARED, fd, offset=RAM_TARGET_PFN * ps),
            proc,
        )
        if again is not FAILED:
            obs.ptes("munmap_split again", proc, again)
        obs.do("munmap_split: exit", proc.exit, proc)

    fixture = _setup(m, obs, "mremap_fixed")
    if fixture is not None:
        proc, _, addr = fixture
        addr2 = obs.do(
            "mremap_fixed: reserve",
            lambda: proc.mmap(size, PROT_READ, MAP_ANONYMOUS | MAP_PRIVATE),
            proc,
        )
        if addr2 is not FAILED:
            flags = MREMAP_FIXED | MREMAP_MAYMOVE
            moved = obs.do(
                "mremap_fixed: mremap", lambda: proc.mremap(addr, size, size, flags, addr2), proc
            )
            if moved is not FAILED:
                obs.ptes("mremap_fixed moved", proc, moved, NPAGES)
        obs.do("mremap_fixed: exit", proc.exit, proc)

    fixture = _setup(m, obs, "mremap_shrink")
    if fixture is not None:
        proc, _, addr = fixture
        obs.do("mremap_shrink: mremap", lambda: proc.mremap(addr, size, size - ps), proc)
        obs.do("mremap_shrink: exit", proc.exit, proc)

    fixture = _setup(m, obs, "mremap_expand")
    if fixture is not None:
        proc, _, addr = fixture
        grown = obs.do(
            "mremap_expand: mremap",
            lambda: proc.mremap(addr, size, size + ps, MREMAP_MAYMOVE),
            proc,
        )
        obs.fact("mremap_expand fails, as the selftest wants", grown is FAILED)
        obs.do("mremap_expand: exit", proc.exit, proc)

    fixture = _setup(m, obs, "fork")
    if fixture is not None:
        proc, _, addr = fixture
        child = obs.do("fork: fork", lambda: proc.fork("child"), proc)
        if child is not FAILED:
            seen = obs.do("fork: the child reads", lambda: child.read(addr, size), child)
            if seen is not FAILED:
                obs.fact("fork: the child sees the pages", seen == proc.read(addr, size))
            obs.ptes("fork child", child, addr, NPAGES)
            obs.do("fork: the child exits", child.exit, child)
        obs.do("fork: exit", proc.exit, proc)


@scenario(
    "devmem_grow",
    "mremap grows a /dev/mem mapping and the task reads the grown page",
    ("do_mremap", "do_anonymous_page", "vm_normal_page", "zap_pte_range"),
)
def devmem_grow(m: Machine, obs: Observer) -> None:
    """Why the 6.x selftest wants mremap_expand to fail: in 2.6.x it works, and /dev/mem's vma
    has no ->nopage, so a read of the grown page takes do_anonymous_page inside a VM_PFNMAP
    vma. Whether munmap gives that page back is vm_normal_page's decision.

    Seed: not vm_pgoff + offset and pfn_valid, so a "COWed" page, released. 2.6.15 (rc6's
    is_cow test on a shared vma) and before the seed (not page_is_anon): a raw pfn, so the
    ZERO_PAGE reference, mapcount and file_rss are never given back. 2.6.26: its own anonymous
    page (no ZERO_PAGE); released where the arch has a special bit (the page is not special),
    leaked on sparc64, where the is_cow rule calls it raw.
    """
    ps = m.arch.page_size
    size = NPAGES * ps
    fixture = _setup(m, obs, "devmem_grow")
    if fixture is None:
        return
    proc, _, addr = fixture
    grown = obs.do("grow", lambda: proc.mremap(addr, size, size + ps, MREMAP_MAYMOVE), proc)
    if grown is FAILED:
        return
    obs.vma("devmem", proc, grown)
    obs.do("read the grown page", lambda: proc.read(grown + size, 8), proc)
    obs.ptes("devmem", proc, grown, NPAGES + 1)
    obs.rss(proc)
    obs.do("munmap", lambda: proc.munmap(grown, size + ps), proc)
    obs.rss(proc)
