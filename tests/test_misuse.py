"""Misuse of the public API: each call ends in the kernel's errno or a documented pfnmap error,
and a refused call leaves the machine as it was (the invariant check passes, no page leaks).

The reproducers come from issue 18. Each test names the kernel function whose check it
follows: sys_mmap / do_mmap_pgoff / get_unmapped_area and do_munmap (mm/mmap.c, 2.6.15),
sys_mprotect (mm/mprotect.c, 2.6.15), shmem_file_setup (mm/shmem.c, 2.6.15); where pfnmap
refuses what the kernel would not see (a Python value, an exited process), the test says so.
"""

from __future__ import annotations

import errno

import pytest
from helpers import pattern

from pfnmap import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    KernelError,
    Machine,
    OutOfMemory,
    UnknownRegion,
)
from pfnmap.kernel.constants import PROT_GROWSDOWN, PROT_GROWSUP, PROT_SEM
from pfnmap.kernel.files import shmem_max_bytes

RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def _errno_of(call, *args, **kwargs) -> int:
    with pytest.raises(KernelError) as info:
        call(*args, **kwargs)
    return info.value.errno


# devices ---------------------------------------------------------------------------------
def test_unknown_io_region_names_the_known_ones() -> None:
    """Issue 18: add_iomem_device with a region name the machine lacks raised StopIteration.
    It is UnknownRegion (a KeyError) naming the value and the regions there are, and the
    path stays free."""
    m = Machine(arch="x86-64", ram="64M", era="2.6.15")
    with pytest.raises(UnknownRegion) as info:
        m.add_iomem_device("/dev/io11", "no-such-region")
    assert isinstance(info.value, KeyError)
    assert "'no-such-region'" in str(info.value) and "fb0" in str(info.value)
    assert "/dev/io11" not in m.inodes
    m.add_iomem_device("/dev/io11", "fb0")


def test_device_buffer_larger_than_ram_fails_cleanly() -> None:
    """Issue 18: a device buffer larger than free RAM left its pages allocated (1007 free
    pages -> 0) and the invariant check failing. Now the driver's probe fails with ENOMEM
    (OutOfMemory) before it takes a page, the path stays free, and a buffer that fits works."""
    m = Machine(arch="x86-64", ram="4M", era="2.6.15")
    free = m.phys.free_pages()
    with pytest.raises(OutOfMemory) as info:
        m.add_device_buffer("/dev/b19", 1048576)
    assert info.value.errno == errno.ENOMEM
    assert m.phys.free_pages() == free
    assert "/dev/b19" not in m.inodes
    m.check_invariants()
    m.add_device_buffer("/dev/b19", 4)
    assert m.phys.free_pages() == free - 4
    m.check_invariants()


def test_device_buffer_bad_arguments(machine: Machine) -> None:
    """A negative size is EINVAL, an existing path EEXIST (checked before any page is taken),
    a size that is not an int a TypeError; none of them allocates."""
    machine.add_device_buffer("/dev/buf", 2)
    free = machine.phys.free_pages()
    assert _errno_of(machine.add_device_buffer, "/dev/neg", -1) == errno.EINVAL
    assert _errno_of(machine.add_device_buffer, "/dev/buf", 2) == errno.EEXIST
    with pytest.raises(TypeError):
        machine.add_device_buffer("/dev/float", 2.0)
    assert machine.phys.free_pages() == free


def test_alloc_pages_is_all_or_nothing(machine: Machine) -> None:
    """PhysMem.alloc_pages: when RAM runs out part way the pages already taken go back."""
    phys = machine.phys
    free = phys.free_pages()
    with pytest.raises(OutOfMemory):
        phys.alloc_pages(free + 1)
    assert phys.free_pages() == free
    pages = phys.alloc_pages(3)
    assert len(set(pages)) == 3 and phys.free_pages() == free - 3
    for pfn in pages:
        phys.put_page(pfn)


def test_create_file_data_must_be_bytes(machine: Machine) -> None:
    """create_file(path, 10**12) would have built a terabyte of zeros: data is bytes or a
    TypeError."""
    with pytest.raises(TypeError):
        machine.create_file("/f", 10**12)
    assert "/f" not in machine.inodes


def test_machine_ram_beyond_what_pfnmap_emulates_is_einval() -> None:
    """RAM whose struct pages would not fit the host is EINVAL up front, not a MemoryError
    from building the page lists; a size of the wrong type is a TypeError."""
    from pfnmap.kernel.physmem import MAX_RAM_PAGES

    assert _errno_of(Machine, ram=(MAX_RAM_PAGES + 1) * 4096) == errno.EINVAL
    with pytest.raises(TypeError):
        Machine(ram=64.0)


# shmem -------------------------------------------------------------------------------------
def test_huge_shared_anonymous_mapping_is_einval_without_allocating() -> None:
    """Issue 18: MAP_SHARED|MAP_ANONYMOUS of 2**55 bytes on x86-la57 raised MemoryError (its
    backing was allocated at once). shmem_file_setup (mm/shmem.c, 2.6.15) refuses a size
    beyond SHMEM_MAX_BYTES with EINVAL, and nothing is mapped or allocated."""
    m = Machine(arch="x86-la57", ram="64M", era="2.6.26")
    p = m.spawn("init")
    free = m.phys.free_pages()
    err = _errno_of(p.mmap, 36028797018961920, 1, 0x21, None, 0, 24019198012665012)
    assert err == errno.EINVAL
    assert p.vmas == [] and m.phys.free_pages() == free
    m.check_invariants()


def test_shmem_max_bytes_follows_the_swap_vector() -> None:
    """SHMEM_MAX_BYTES (mm/shmem.c, 2.6.15) with 4 KiB pages: 512 entries per page on a 64-bit
    kernel, 1024 on a 32-bit one."""
    assert shmem_max_bytes(4096, 64) == (16 + (512 * 512 // 2) * 513) * 4096
    assert shmem_max_bytes(4096, 32) == (16 + (1024 * 1024 // 2) * 1025) * 4096


def test_shared_anonymous_mapping_larger_than_ram_is_lazy(machine: Machine) -> None:
    """A shared anonymous mapping far larger than RAM (within SHMEM_MAX_BYTES) costs nothing
    until touched; a write allocates the one page it faults in, and the data is shared with a
    child."""
    ps = machine.arch.page_size
    length = 16 * machine.phys.ram_bytes
    proc = machine.spawn()
    free = machine.phys.free_pages()
    addr = proc.mmap(length, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert machine.phys.free_pages() >= free - 8  # at most the page tables of a fault
    far = addr + length - ps
    proc.write(far, b"end of shmem")
    child = proc.fork()
    assert child.read(far, 12) == b"end of shmem"
    assert proc.read(addr + length // 2, 4) == bytes(4)
    machine.check_invariants()


# mmap --------------------------------------------------------------------------------------
def test_map_fixed_at_a_negative_address_is_enomem(machine: Machine, proc) -> None:
    """Issue 18: MAP_FIXED at addr -4096 created a vma [-0x1000, 0x1000) with pgoff -1. The
    kernel sees addr as the unsigned long 2**BITS_PER_LONG - 4096, and get_unmapped_area
    (2.6.15) refuses ``addr > TASK_SIZE - len`` with ENOMEM."""
    ps = machine.arch.page_size
    assert _errno_of(proc.mmap, 2 * ps, RW, ANON | MAP_FIXED, addr=-ps) == errno.ENOMEM
    assert proc.vmas == []


def test_mmap_length_checks_in_unsigned_long(machine: Machine, proc) -> None:
    """do_mmap_pgoff (2.6.15): len 0 is EINVAL; PAGE_ALIGN(len) wrapping to 0 (len -1, i.e.
    ULONG_MAX) or exceeding TASK_SIZE is ENOMEM; ``pgoff + pages`` past ULONG_MAX is
    EOVERFLOW. A value no unsigned long holds is a ValueError, a non-integer a TypeError."""
    arch = machine.arch
    bits = arch.bits_per_long
    assert _errno_of(proc.mmap, 0) == errno.EINVAL
    assert _errno_of(proc.mmap, -1) == errno.ENOMEM
    assert _errno_of(proc.mmap, (1 << bits) - arch.page_size + 1) == errno.ENOMEM
    assert _errno_of(proc.mmap, arch.task_size + 1) == errno.ENOMEM
    fd = proc.open("/dev/zero")
    huge_offset = 1 << (bits + arch.page_shift)
    assert _errno_of(proc.mmap, arch.page_size, RW, MAP_PRIVATE, fd, huge_offset) == (
        errno.EOVERFLOW
    )
    with pytest.raises(ValueError):
        proc.mmap(1 << bits)
    with pytest.raises(TypeError):
        proc.mmap("4096")
    assert proc.vmas == []


def test_mmap_type_must_be_exactly_shared_or_private(machine: Machine, proc) -> None:
    """do_mmap_pgoff (2.6.15) switches on ``flags & MAP_TYPE`` (0x0f): a value there other
    than MAP_SHARED or MAP_PRIVATE is EINVAL, even with one of them set."""
    ps = machine.arch.page_size
    assert _errno_of(proc.mmap, ps, RW, MAP_SHARED | 0x4 | MAP_ANONYMOUS) == errno.EINVAL
    assert _errno_of(proc.mmap, ps, RW, MAP_PRIVATE | 0x8 | MAP_ANONYMOUS) == errno.EINVAL
    assert proc.vmas == []
    proc.mmap(ps, RW, ANON | 0x40000)  # bits outside MAP_TYPE are ignored, as there


# mprotect ----------------------------------------------------------------------------------
def test_mprotect_refuses_unknown_prot_bits(machine: Machine, proc) -> None:
    """Issue 18: mprotect with prot 0x10 was accepted. sys_mprotect (2.6.15) allows only
    PROT_READ, PROT_WRITE, PROT_EXEC and PROT_SEM (EINVAL otherwise), refuses GROWSDOWN with
    GROWSUP (EINVAL) and either of them on a vma that does not grow (EINVAL); a range that
    wraps is ENOMEM. A refused call changes no vma."""
    ps = machine.arch.page_size
    addr = proc.mmap(2 * ps)
    before = [(v.vm_start, v.vm_end, v.vm_flags) for v in proc.vmas]
    assert _errno_of(proc.mprotect, addr, ps, 0x10) == errno.EINVAL
    assert _errno_of(proc.mprotect, addr, ps, PROT_GROWSDOWN | PROT_GROWSUP) == errno.EINVAL
    assert _errno_of(proc.mprotect, addr, ps, PROT_READ | PROT_GROWSDOWN) == errno.EINVAL
    assert _errno_of(proc.mprotect, addr, ps, PROT_READ | PROT_GROWSUP) == errno.EINVAL
    assert _errno_of(proc.mprotect, addr, -1, PROT_READ) == errno.ENOMEM
    assert [(v.vm_start, v.vm_end, v.vm_flags) for v in proc.vmas] == before
    proc.mprotect(addr, ps, RW | PROT_SEM)  # PROT_SEM is allowed and has no effect


def test_mprotect_to_the_same_protection_splits_nothing(machine: Machine, proc) -> None:
    """mprotect_fixup (2.6.15) returns at once when the new flags equal the old ones, so an
    mprotect that changes nothing leaves the vma whole."""
    ps = machine.arch.page_size
    addr = proc.mmap(4 * ps)
    proc.mprotect(addr + ps, ps, RW)
    assert [(v.vm_start, v.vm_end) for v in proc.vmas] == [(addr, addr + 4 * ps)]


# get_user_pages, read, write, lookup -------------------------------------------------------
def test_get_user_pages_negative_count_is_einval(machine: Machine, proc) -> None:
    """Issue 18: get_user_pages(a, -1) returned []. A negative count is EINVAL (a pfnmap
    check: 2.6.15's loop on an int len would pin pages until one failed); nothing is
    pinned."""
    addr = proc.mmap(machine.arch.page_size)
    assert _errno_of(proc.get_user_pages, addr, -1) == errno.EINVAL
    assert proc.get_user_pages(addr, 0) == []
    assert machine.pins == {}


def test_read_negative_count_is_einval(machine: Machine, proc) -> None:
    """rw_verify_area (2.6.15) refuses a count that is negative as a ssize_t: EINVAL."""
    addr = proc.mmap(machine.arch.page_size)
    assert _errno_of(proc.read, addr, -1) == errno.EINVAL
    with pytest.raises(TypeError):
        proc.write(addr, "text")


def test_lookup_of_an_exited_process_and_of_kernel_addresses() -> None:
    """Issue 18: lookup on an exited child at a kernel-half address raised struct.error. An
    exited process is ESRCH (its tables are gone); an address outside [0, TASK_SIZE) is
    EFAULT, as access_ok refuses it."""
    m = Machine(arch="x86-64", ram="16M", era="2.6.26")
    p = m.spawn("init")
    c = p.fork()
    c.exit()
    assert _errno_of(c.lookup, 18446603336221196288) == errno.ESRCH
    assert _errno_of(p.lookup, 18446603336221196288) == errno.EFAULT
    assert _errno_of(p.lookup, m.arch.task_size) == errno.EFAULT
    assert _errno_of(c.fork) == errno.ESRCH
    assert _errno_of(c.exit) == errno.ESRCH
    m.check_invariants()


def test_ptes_of_a_foreign_vma_is_einval(machine: Machine) -> None:
    """Process.ptes walks its own tables: a vma of another process is EINVAL."""
    a, b = machine.spawn("a"), machine.spawn("b")
    addr = a.mmap(machine.arch.page_size)
    a.write(addr, pattern(8))
    assert _errno_of(b.ptes, a.vmas[0]) == errno.EINVAL
    assert len(a.ptes(a.vmas[0])) == 1


# fork rollback -----------------------------------------------------------------------------
def test_fork_that_runs_out_of_memory_leaves_no_child(arch_name: str) -> None:
    """dup_mmap failing for lack of memory (copy_process's fail_nomem: mmput of the child's
    mm) leaves no child: no process, no table, every page count as before the fork."""
    m = Machine(arch=arch_name, ram="4M")
    parent = m.spawn()
    span = m.arch.levels[-2].span
    addr = parent.mmap(8 * span)
    for k in range(8):  # eight pte tables to copy
        parent.write(addr + k * span, pattern(16, k))
    m.add_device_buffer("/dev/hog", m.phys.free_pages() - 4)
    free = m.phys.free_pages()
    with pytest.raises(OutOfMemory):
        parent.fork()
    assert list(m.processes.values()) == [parent]
    assert m.phys.free_pages() == free
    m.check_invariants()
    assert parent.read(addr + 7 * span, 16) == pattern(16, 7)


# cost proportional to the tables present ----------------------------------------------------
def test_range_walks_visit_only_the_tables_present(machine: Machine, proc) -> None:
    """Issue 18: mprotect and check_invariants stepped through every pmd span of a vma, so a
    16 TiB vma took seconds (and a 2**55 one hours). The walk now descends only into upper
    entries that exist, as the kernel's p?d_none_or_clear_bad loops skip none entries: a huge
    vma with one page touched visits one table per level."""
    arch = machine.arch
    length = min(arch.task_size // 4, 1 << 44) & arch.page_mask
    addr = proc.mmap(length)
    proc.write(addr + length // 2, b"x")
    tables = machine.tables
    before = tables.tables_visited
    proc.mprotect(addr, length, PROT_READ)
    visited = tables.tables_visited - before
    assert visited <= len(arch.levels)
    assert not arch.pte_write(proc.lookup(addr + length // 2).raw)  # the one pte did change
    before = tables.tables_visited
    machine.check_invariants()
    assert tables.tables_visited - before <= len(arch.levels)
    assert proc.read(addr + length // 2, 1) == b"x"
