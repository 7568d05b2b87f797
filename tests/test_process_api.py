"""The syscall-like process API: bad input and the behaviour user space relies on.

The oracle is the 2.6.15 syscall layer: sys_mmap / do_mmap_pgoff / get_unmapped_area,
do_munmap and sys_mprotect (mm/mmap.c, mm/mprotect.c), the x86 do_page_fault checks, and
mmap_mem (drivers/char/mem.c). Each test names the function whose rule it checks.
"""

from __future__ import annotations

import errno

import pytest
from helpers import io_pfn, pattern, pfn_of, rss, vma_at

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    KernelError,
    Machine,
    SegmentationFault,
)
from pfnmap.kernel.constants import VM_MAYWRITE, VM_SHARED

RW = PROT_READ | PROT_WRITE


def _errno(excinfo: pytest.ExceptionInfo[KernelError]) -> int:
    return excinfo.value.errno


# mmap ------------------------------------------------------------------------------------
def test_mmap_rejects_bad_arguments(machine: Machine, proc, page_size: int) -> None:
    """sys_mmap and do_mmap_pgoff (2.6.15): an unaligned or negative offset, zero length, an
    unaligned MAP_FIXED address, and a mapping type other than exactly one of MAP_SHARED /
    MAP_PRIVATE are EINVAL; a length beyond TASK_SIZE is ENOMEM. Nothing gets mapped."""
    task_size = machine.arch.task_size
    fd = proc.open("/dev/zero")
    cases = [
        (dict(length=page_size, flags=MAP_PRIVATE, fd=fd, offset=page_size // 2), errno.EINVAL),
        (dict(length=page_size, flags=MAP_PRIVATE, fd=fd, offset=-page_size), errno.EINVAL),
        (dict(length=0), errno.EINVAL),
        (
            dict(
                length=page_size,
                flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                addr=(task_size // 2 + 1),
            ),
            errno.EINVAL,
        ),
        (dict(length=page_size, flags=MAP_ANONYMOUS), errno.EINVAL),
        (dict(length=page_size, flags=MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS), errno.EINVAL),
        (dict(length=task_size + page_size), errno.ENOMEM),
    ]
    for kwargs, expected in cases:
        with pytest.raises(KernelError) as info:
            proc.mmap(**kwargs)
        assert _errno(info) == expected, kwargs
    assert proc.vmas == []


def test_map_fixed_beyond_task_size_is_enomem(machine: Machine, proc, page_size: int) -> None:
    """get_unmapped_area (mm/mmap.c, 2.6.15): MAP_FIXED with addr > TASK_SIZE - len is
    ENOMEM."""
    task_size = machine.arch.task_size
    with pytest.raises(KernelError) as info:
        proc.mmap(
            2 * page_size, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr=task_size - page_size
        )
    assert _errno(info) == errno.ENOMEM
    # the last page below TASK_SIZE is a valid fixed address
    last = proc.mmap(
        page_size, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr=task_size - page_size
    )
    proc.write(last + page_size - 1, b"!")


def test_mmap_bad_file_descriptors(machine: Machine, proc, page_size: int) -> None:
    """sys_mmap (2.6.15): a file mapping with an fd that is not open is EBADF; open(2) of a
    missing path is ENOENT."""
    with pytest.raises(KernelError) as info:
        proc.mmap(page_size, PROT_READ, MAP_PRIVATE, 7)
    assert _errno(info) == errno.EBADF
    with pytest.raises(KernelError) as info:
        proc.mmap(page_size, PROT_READ, MAP_PRIVATE, None)
    assert _errno(info) == errno.EBADF
    with pytest.raises(KernelError) as info:
        proc.open("/no/such/file")
    assert _errno(info) == errno.ENOENT


def test_mmap_access_mode_checks(machine: Machine, proc, page_size: int) -> None:
    """do_mmap_pgoff (2.6.15): any file mapping needs a readable file (EACCES); a shared
    writable one needs a writable file (EACCES); a shared read-only mapping of an O_RDONLY
    file loses VM_SHARED and VM_MAYWRITE, while a private writable one is fine."""
    machine.create_file("/etc/passwd", pattern(page_size))
    wronly = proc.open("/etc/passwd", O_WRONLY)
    rdonly = proc.open("/etc/passwd", O_RDONLY)
    for fd, prot, flags in ((wronly, PROT_READ, MAP_PRIVATE), (rdonly, RW, MAP_SHARED)):
        with pytest.raises(KernelError) as info:
            proc.mmap(page_size, prot, flags, fd)
        assert _errno(info) == errno.EACCES
    assert proc.vmas == []

    shared_ro = proc.mmap(page_size, PROT_READ, MAP_SHARED, rdonly)
    assert not vma_at(proc, shared_ro).vm_flags & (VM_SHARED | VM_MAYWRITE)
    private_rw = proc.mmap(page_size, RW, MAP_PRIVATE, rdonly)
    proc.write(private_rw, b"private copy")
    assert proc.read(shared_ro, 12) == pattern(page_size)[:12]


def test_mmap_hint_and_map_fixed_replacement(machine: Machine, proc, page_size: int) -> None:
    """get_unmapped_area (2.6.15) honours a free hint; MAP_FIXED over a mapping unmaps the old
    pages first (do_munmap), freeing them and lowering rss."""
    addr = proc.mmap(4 * page_size)
    proc.write(addr, pattern(4 * page_size))
    old = [pfn_of(proc, addr + k * page_size) for k in (1, 2)]
    hint = addr + 64 * page_size
    assert proc.mmap(page_size, addr=hint) == hint
    # a taken hint is moved elsewhere
    assert proc.mmap(page_size, addr=addr) not in (addr, hint)
    fixed = proc.mmap(
        2 * page_size, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, addr=addr + page_size
    )
    assert fixed == addr + page_size
    assert rss(proc) == (0, 2)
    assert all(machine.page(pfn).count == 0 for pfn in old)
    assert proc.read(fixed, 2 * page_size) == bytes(2 * page_size)
    assert proc.read(addr, page_size) == pattern(4 * page_size)[:page_size]


def test_failed_device_mmap_leaves_nothing(machine: Machine, proc, page_size: int) -> None:
    """mmap_mem with an offset beyond the arch's physical address width is EINVAL (a pfnmap
    check, DevMem.mmap); do_mmap_pgoff then unmaps and frees the half-built vma."""
    arch = machine.arch
    fd = proc.open("/dev/mem")
    with pytest.raises(KernelError) as info:
        proc.mmap(page_size, PROT_READ, MAP_SHARED, fd, offset=(arch.max_pfn + 1) * page_size)
    assert _errno(info) == errno.EINVAL
    with pytest.raises(KernelError) as info:
        proc.mmap(4 * page_size, PROT_READ, MAP_SHARED, fd, offset=(arch.max_pfn - 2) * page_size)
    assert _errno(info) == errno.EINVAL
    assert proc.vmas == [] and rss(proc) == (0, 0)


# munmap ----------------------------------------------------------------------------------
def test_munmap_rejects_bad_ranges(machine: Machine, proc, page_size: int) -> None:
    """do_munmap (2.6.15): an unaligned start, a range past TASK_SIZE and a zero length are
    EINVAL; unmapping a hole succeeds and changes nothing."""
    task_size = machine.arch.task_size
    addr = proc.mmap(page_size)
    for start, length in (
        (addr + 1, page_size),
        (task_size, page_size),
        (addr, 0),
        (addr, task_size),
    ):
        with pytest.raises(KernelError) as info:
            proc.munmap(start, length)
        assert _errno(info) == errno.EINVAL, (start, length)
    proc.munmap(addr + 8 * page_size, page_size)
    assert [v.vm_start for v in proc.vmas] == [addr]


# mprotect --------------------------------------------------------------------------------
def test_mprotect_errors(machine: Machine, proc, page_size: int) -> None:
    """sys_mprotect (mm/mprotect.c, 2.6.15): an unaligned start is EINVAL, a range starting in
    a hole is ENOMEM, a zero length succeeds, and a permission beyond the vma's VM_MAY* bits
    (writing a shared O_RDONLY mapping) is EACCES."""
    addr = proc.mmap(2 * page_size)
    with pytest.raises(KernelError) as info:
        proc.mprotect(addr + 1, page_size, PROT_READ)
    assert _errno(info) == errno.EINVAL
    with pytest.raises(KernelError) as info:
        proc.mprotect(addr - page_size, 2 * page_size, PROT_READ)
    assert _errno(info) == errno.ENOMEM
    with pytest.raises(KernelError) as info:
        proc.mprotect(addr + 16 * page_size, page_size, PROT_READ)
    assert _errno(info) == errno.ENOMEM
    proc.mprotect(addr + 16 * page_size, 0, PROT_READ)

    machine.create_file("/ro", pattern(page_size))
    fd = proc.open("/ro", O_RDONLY)
    shared = proc.mmap(page_size, PROT_READ, MAP_SHARED, fd)
    with pytest.raises(KernelError) as info:
        proc.mprotect(shared, page_size, RW)
    assert _errno(info) == errno.EACCES
    private = proc.mmap(page_size, PROT_READ, MAP_PRIVATE, fd)
    proc.mprotect(private, page_size, RW)  # VM_MAYWRITE: a private copy may be written
    proc.write(private, b"ok")


def test_mprotect_up_to_a_hole_changes_what_precedes_it(machine: Machine, proc, page_size):
    """sys_mprotect (mm/mprotect.c, 2.6.15) walks the vmas applying mprotect_fixup as it goes
    and only finds the hole after the first vma: that vma is already read-only when ENOMEM
    comes back."""
    addr = proc.mmap(page_size)
    proc.mmap(page_size, addr=addr + 2 * page_size)
    with pytest.raises(KernelError) as info:
        proc.mprotect(addr, 3 * page_size, PROT_READ)
    assert _errno(info) == errno.ENOMEM
    with pytest.raises(SegmentationFault):
        proc.write(addr, b"x")


def test_mprotect_splits_and_protects(machine: Machine, proc, page_size: int) -> None:
    """mprotect_fixup / change_protection (2.6.15): the range becomes its own vma, its present
    ptes lose write permission, a store there is SIGSEGV at its address, and making it
    writable again lets do_wp_page reuse the same page."""
    arch = machine.arch
    addr = proc.mmap(3 * page_size)
    proc.write(addr, pattern(3 * page_size))
    middle = addr + page_size
    pfn = pfn_of(proc, middle)
    proc.mprotect(middle, page_size, PROT_READ)
    assert [(v.vm_start, v.vm_end) for v in proc.vmas] == [
        (addr, middle),
        (middle, middle + page_size),
        (middle + page_size, addr + 3 * page_size),
    ]
    assert not arch.pte_write(proc.lookup(middle).raw)
    assert arch.pte_write(proc.lookup(addr).raw)
    with pytest.raises(SegmentationFault) as info:
        proc.write(middle + 9, b"no")
    assert info.value.address == middle + 9
    proc.mprotect(middle, page_size, RW)
    proc.write(middle + 9, b"ok")
    assert pfn_of(proc, middle) == pfn


def test_prot_none_keeps_the_pages(machine: Machine, proc, page_size: int) -> None:
    """change_protection (2.6.15) to PROT_NONE rewrites the ptes with PAGE_NONE but keeps the
    pages mapped: accesses are SIGSEGV, rss is unchanged, and the data is back after
    PROT_READ."""
    addr = proc.mmap(page_size)
    proc.write(addr, b"kept")
    pfn = pfn_of(proc, addr)
    proc.mprotect(addr, page_size, PROT_NONE)
    for access in (lambda: proc.read(addr, 1), lambda: proc.write(addr, b"x")):
        with pytest.raises(SegmentationFault) as info:
            access()
        assert info.value.address == addr
    assert rss(proc) == (0, 1)
    assert proc.lookup(addr).pfn == pfn
    proc.mprotect(addr, page_size, PROT_READ)
    assert proc.read(addr, 4) == b"kept"


# user accesses ---------------------------------------------------------------------------
def test_access_outside_any_vma_is_sigsegv(machine: Machine, proc, page_size: int) -> None:
    """do_page_fault (arch/x86_64/mm/fault.c, 2.6.15): no vma covering the address is
    SIGSEGV, reported at the faulting address; so is an address beyond TASK_SIZE."""
    addr = proc.mmap(page_size)
    for bad in (addr + page_size, addr - 1, machine.arch.task_size + page_size):
        with pytest.raises(SegmentationFault) as info:
            proc.read(bad, 1)
        assert info.value.address == bad
    assert rss(proc) == (0, 0)


def test_access_permission_is_sigsegv(machine: Machine, proc, page_size: int) -> None:
    """do_page_fault (2.6.15): a write to a vma without VM_WRITE and a read of one without
    VM_READ are SIGSEGV at the address, before any fault handling."""
    ro = proc.mmap(page_size, PROT_READ)
    none = proc.mmap(page_size, PROT_NONE)
    with pytest.raises(SegmentationFault) as info:
        proc.write(ro + 100, b"x")
    assert info.value.address == ro + 100
    with pytest.raises(SegmentationFault) as info:
        proc.read(none + 7, 1)
    assert info.value.address == none + 7
    assert not proc.lookup(none).present and rss(proc) == (0, 0)


def test_access_running_into_a_hole(machine: Machine, proc, page_size: int) -> None:
    """do_page_fault (2.6.15) for a store that runs off the end of a mapping: the bytes inside
    the vma land, and the first byte past it is SIGSEGV at exactly that address."""
    addr = proc.mmap(page_size)
    with pytest.raises(SegmentationFault) as info:
        proc.write(addr + page_size - 4, b"12345678")
    assert info.value.address == addr + page_size
    assert proc.read(addr + page_size - 4, 4) == b"1234"


def test_access_across_two_different_vmas(machine: Machine, proc, page_size: int) -> None:
    """handle_pte_fault at the seed (6aab341e) picks the handler per vma: one write spanning an
    anon vma and an adjacent shared file vma is served by do_anonymous_page on one side and
    do_no_page on the other."""
    inode = machine.create_file("/next", bytes(page_size))
    anon = proc.mmap(page_size)
    fd = proc.open("/next", O_RDWR)
    filemap = proc.mmap(page_size, RW, MAP_SHARED | MAP_FIXED, fd, addr=anon + page_size)
    proc.write(filemap - 3, b"abcdef")
    assert proc.read(anon + page_size - 3, 6) == b"abcdef"
    assert rss(proc) == (1, 1)
    proc.munmap(filemap, page_size)
    inode.writeback()
    assert bytes(inode.data[:3]) == b"def"


# fork, exit, files -----------------------------------------------------------------------
def test_fork_shares_open_files(machine: Machine, proc, page_size: int) -> None:
    """copy_files / dup_fd (kernel/fork.c, 2.6.15) give the child the parent's struct files
    with a reference each: the child may close its copy and the parent's fd keeps working;
    sys_close of a closed fd is EBADF."""
    fd = proc.open("/dev/mem")
    child = proc.fork("child")
    child.close(fd)
    with pytest.raises(KernelError) as info:
        child.close(fd)
    assert _errno(info) == errno.EBADF
    addr = proc.mmap(page_size, PROT_READ, MAP_SHARED, fd, offset=io_pfn(machine) * page_size)
    assert proc.lookup(addr).present


def test_exited_process_refuses_syscalls(machine: Machine, proc, page_size: int) -> None:
    """After do_exit (2.6.15) the task and its mm are gone; pfnmap answers any later call on
    the dead Process with ESRCH, as a pid lookup of an exited task would."""
    addr = proc.mmap(page_size)
    proc.exit()
    calls = [
        lambda: proc.mmap(page_size),
        lambda: proc.munmap(addr, page_size),
        lambda: proc.mprotect(addr, page_size, PROT_READ),
        lambda: proc.read(addr, 1),
        lambda: proc.write(addr, b"x"),
        lambda: proc.fork(),
        lambda: proc.open("/dev/zero"),
        lambda: proc.get_user_pages(addr, 1),
        lambda: proc.exit(),
    ]
    for call in calls:
        with pytest.raises(KernelError) as info:
            call()
        assert _errno(info) == errno.ESRCH
