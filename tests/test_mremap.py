"""mremap(2): the oracle is mm/mremap.c of 2.6.15 (do_mremap, move_vma, move_page_tables,
move_ptes): shrink, grow in place, move, MREMAP_MAYMOVE/MREMAP_FIXED, and the errors in the
order do_mremap checks them."""

from __future__ import annotations

import errno

import pytest
from helpers import aligned_free_address, io_bytes, io_pfn, pattern, pfn_of, rss, vma_at

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PROT_READ,
    PROT_WRITE,
    KernelError,
    Machine,
    Verdict,
)
from pfnmap.kernel.constants import VM_DONTEXPAND, VM_PFNMAP

RW = PROT_READ | PROT_WRITE
ANON_FIXED = MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS
MOVE_TO = MREMAP_FIXED | MREMAP_MAYMOVE


def errno_of(call) -> int:
    with pytest.raises(KernelError) as excinfo:
        call()
    return excinfo.value.errno


def devmem(proc, npages: int, addr: int | None = None) -> int:
    machine = proc.machine
    ps = machine.arch.page_size
    fd = proc.open("/dev/mem")
    flags = MAP_SHARED | (MAP_FIXED if addr is not None else 0)
    return proc.mmap(npages * ps, RW, flags, fd, offset=io_pfn(machine) * ps, addr=addr)


def state(proc) -> list[tuple[int, int, int, int, list[tuple[int, int]]]]:
    return [(v.vm_start, v.vm_end, v.vm_flags, v.vm_pgoff, proc.ptes(v)) for v in proc.vmas]


def test_shrink_unmaps_the_tail(machine: Machine, proc, page_size: int) -> None:
    """ "Always allow a shrinking remap": do_munmap of the tail, the same address back."""
    addr = proc.mmap(3 * page_size)
    proc.write(addr, pattern(3 * page_size))
    assert proc.mremap(addr, 3 * page_size, page_size) == addr
    assert [(v.vm_start, v.vm_end) for v in proc.vmas] == [(addr, addr + page_size)]
    assert rss(proc) == (0, 1)
    assert proc.read(addr, 8) == pattern(8)


def test_grow_in_place_when_the_gap_allows(machine: Machine, proc, page_size: int) -> None:
    """The vma ends at addr + old_len and the next vma is far enough: vma_adjust, same address;
    the new part faults in like the rest of the vma."""
    addr = aligned_free_address(proc, 8 * page_size, page_size)
    proc.mmap(page_size, addr=addr, flags=ANON_FIXED)
    proc.write(addr, b"kept")
    assert proc.mremap(addr, page_size, 4 * page_size) == addr
    assert vma_at(proc, addr).vm_end == addr + 4 * page_size
    proc.write(addr + 3 * page_size, b"new")
    assert proc.read(addr, 4) == b"kept"


def test_move_carries_the_ptes(machine: Machine, proc, page_size: int) -> None:
    """No room to grow: with MREMAP_MAYMOVE the vma moves (move_vma); move_ptes carries every
    pte over unchanged, so the same pages are mapped (no copy, rss and mapcounts unchanged) and
    the old range is gone."""
    addr = proc.mmap(2 * page_size)
    proc.mmap(page_size, addr=addr + 2 * page_size, flags=ANON_FIXED)  # a blocker
    proc.write(addr, pattern(2 * page_size))
    pages = [pfn_of(proc, addr), pfn_of(proc, addr + page_size)]
    counts = [machine.page(p).count for p in pages]
    assert errno_of(lambda: proc.mremap(addr, 2 * page_size, 3 * page_size)) == errno.ENOMEM
    new = proc.mremap(addr, 2 * page_size, 3 * page_size, MREMAP_MAYMOVE)
    assert new != addr
    assert [pfn_of(proc, new), pfn_of(proc, new + page_size)] == pages
    assert [machine.page(p).count for p in pages] == counts
    assert rss(proc) == (0, 2)
    assert proc.read(new, 2 * page_size) == pattern(2 * page_size)
    assert proc.mm.find_vma(addr).vm_start == addr + 2 * page_size  # only the blocker is left


def test_fixed_move_of_a_pfnmap_part_keeps_the_linear_rule(
    machine: Machine, proc, page_size: int
) -> None:
    """move_vma gives the new vma vm_pgoff + the offset moved from, and move_ptes never asks
    vm_normal_page: the moved raw ptes still pass the seed's linear rule, nothing is counted,
    and the device bytes read the same."""
    addr = devmem(proc, 4)
    target = aligned_free_address(proc, 2 * page_size, page_size)
    new = proc.mremap(addr + page_size, 2 * page_size, 2 * page_size, MOVE_TO, target)
    assert new == target
    vma = vma_at(proc, new)
    assert vma.vm_flags & VM_PFNMAP and vma.vm_pgoff == io_pfn(machine) + 1
    assert [proc.lookup(new + k * page_size).verdict for k in (0, 1)] == [Verdict.RAW_PFN] * 2
    assert proc.read(new, 8) == io_bytes(machine, page_size, 8)
    assert [(v.vm_start - addr, v.vm_end - addr) for v in proc.vmas if v.vm_start < target] == [
        (0, page_size),
        (3 * page_size, 4 * page_size),
    ]
    assert rss(proc) == (0, 0) and not machine.bad_ptes


def test_pfnmap_grows_in_2615_but_not_with_vm_dontexpand(
    machine: Machine, proc, page_size: int
) -> None:
    """2.6.15's do_mremap refuses growth only for VM_DONTEXPAND (EFAULT), which
    remap_pfn_range did not set then: a /dev/mem vma grows, and the grown part has no ptes."""
    addr = aligned_free_address(proc, 8 * page_size, page_size)
    devmem(proc, 1, addr=addr)
    assert proc.mremap(addr, page_size, 2 * page_size) == addr
    assert not proc.lookup(addr + page_size).present
    vma_at(proc, addr).vm_flags |= VM_DONTEXPAND
    before = state(proc)
    err = errno_of(lambda: proc.mremap(addr, 2 * page_size, 3 * page_size, MREMAP_MAYMOVE))
    assert err == errno.EFAULT
    assert state(proc) == before
    assert proc.mremap(addr, 2 * page_size, page_size) == addr  # shrinking still works


def test_bad_arguments_change_nothing(machine: Machine, proc, page_size: int) -> None:
    """do_mremap's EINVAL checks (flags, alignment, zero new length, MREMAP_FIXED without
    MAYMOVE, outside TASK_SIZE, overlapping ranges) and EFAULT for a range that is not one
    vma: each leaves the address space as it was."""
    addr = proc.mmap(2 * page_size)
    other = proc.mmap(page_size)
    proc.write(addr, b"x")
    before = state(proc)
    task = machine.arch.task_size
    calls = {
        errno.EINVAL: [
            lambda: proc.mremap(addr, page_size, page_size, 4),
            lambda: proc.mremap(addr + 1, page_size, page_size),
            lambda: proc.mremap(addr, page_size, 0),
            lambda: proc.mremap(addr, page_size, page_size, MREMAP_FIXED, other),
            lambda: proc.mremap(addr, page_size, page_size, MOVE_TO, other + 1),
            lambda: proc.mremap(addr, page_size, page_size, MOVE_TO, task),
            lambda: proc.mremap(addr, 2 * page_size, page_size, MOVE_TO, addr + page_size),
        ],
        errno.EFAULT: [
            lambda: proc.mremap(addr, 3 * page_size, 4 * page_size, MREMAP_MAYMOVE),
            lambda: proc.mremap(task - page_size, page_size, 2 * page_size, MREMAP_MAYMOVE),
        ],
    }
    for err, items in calls.items():
        for call in items:
            assert errno_of(call) == err
            assert state(proc) == before


def test_zero_old_len_duplicates_a_shared_mapping(machine: Machine, proc, page_size: int):
    """old_len 0 (DOS-emu's duplicate): move_vma makes a second vma of the same file pages and
    moves nothing; the failed do_munmap(old, 0) is ignored, as in the kernel."""
    addr = devmem(proc, 1)
    new = proc.mremap(addr, 0, page_size, MREMAP_MAYMOVE)
    assert new != addr and len(proc.vmas) == 2
    assert vma_at(proc, new).vm_pgoff == vma_at(proc, addr).vm_pgoff
    assert proc.lookup(addr).present and not proc.lookup(new).present


def test_overflowing_lengths(machine: Machine, proc, page_size: int) -> None:
    """Lengths are unsigned long: one that rounds up past the top wraps to zero, so a huge
    new_len is "zero" (EINVAL), and a huge old_len cannot lie in one vma (EFAULT)."""
    addr = proc.mmap(page_size)
    before = state(proc)
    word = 1 << (32 if machine.arch.elf_class == 1 else 64)
    assert errno_of(lambda: proc.mremap(addr, page_size, word - 1)) == errno.EINVAL
    assert errno_of(lambda: proc.mremap(addr, page_size, -1)) == errno.EINVAL
    err = errno_of(lambda: proc.mremap(addr, word - 2 * page_size, word - page_size, 1))
    assert err == errno.EFAULT
    assert state(proc) == before


def test_fixed_unmaps_the_target_before_failing(machine: Machine, proc, page_size: int) -> None:
    """do_mremap's MREMAP_FIXED path unmaps the target range before it looks for the old
    vma, so a call that then fails (EFAULT: nothing mapped at ``addr``) has already removed
    whatever was at ``new_addr``: the kernel's order, kept on purpose."""
    target = proc.mmap(page_size)
    proc.write(target, b"victim")
    hole = aligned_free_address(proc, 4 * page_size, page_size)
    err = errno_of(lambda: proc.mremap(hole, page_size, page_size, MOVE_TO, target))
    assert err == errno.EFAULT
    assert proc.vmas == [] and rss(proc) == (0, 0)
