"""Small helpers shared by the semantic test modules.

Everything arch-specific comes from the machine: page size, pfns of the I/O region and of RAM,
pte encodings. Nothing here hard-codes an x86 bit or a 4 KiB page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from pfnmap import SEED, IORegion, Machine, Process
from pfnmap.kernel.constants import VM_INSERTPAGE, VM_IO, VM_PFNMAP
from pfnmap.kernel.mm import VmArea
from pfnmap.kernel.pgtable import pte_offset
from pfnmap.testing.machines import finish


def io_region(machine: Machine) -> IORegion:
    """The default device region ("fb0"), beyond RAM and without struct pages."""
    return machine.phys.io_regions[0]


def io_pfn(machine: Machine, page: int = 0) -> int:
    """The pfn of page ``page`` of the default I/O region."""
    return (io_region(machine).start >> machine.arch.page_shift) + page


def io_bytes(machine: Machine, offset: int, n: int) -> bytes:
    """What the device holds at ``offset`` bytes into the default I/O region."""
    return machine.phys.read(io_region(machine).start + offset, n)


def pattern(n: int, salt: int = 0) -> bytes:
    """Deterministic, non-zero-heavy test data (so a zero-filled page cannot pass for it)."""
    return bytes(((i * 131 + salt * 17 + 1) % 251) + 1 for i in range(n))


def vma_at(proc: Process, addr: int) -> VmArea:
    vma = proc.mm.find_vma(addr)
    assert vma is not None and vma.vm_start <= addr, f"no vma at {addr:#x}"
    return vma


def pte_slot(proc: Process, addr: int) -> int | None:
    """Physical address of the pte slot for ``addr`` (None when no pte table covers it)."""
    return pte_offset(proc.mm, addr)


def counts(machine: Machine, pfn: int) -> tuple[int, int]:
    """(page count, mapcount) of a RAM pfn."""
    page = machine.page(pfn)
    return page.count, page.mapcount


def rss(proc: Process) -> tuple[int, int]:
    """(file_rss, anon_rss)."""
    return proc.mm.file_rss, proc.mm.anon_rss


def pfn_of(proc: Process, addr: int) -> int:
    info = proc.lookup(addr)
    assert info.present, f"nothing mapped at {addr:#x}: {info.reason}"
    return info.pfn


def shared_prot(machine: Machine) -> int:
    """The arch's PAGE_SHARED, taken from its protection_map (VM_SHARED|VM_WRITE|VM_READ)."""
    from pfnmap.kernel.constants import VM_READ, VM_SHARED, VM_WRITE

    return machine.arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]


def table_span(machine: Machine) -> int:
    """Bytes of VA one pte table covers."""
    return machine.arch.levels[-2].span


def aligned_free_address(proc: Process, length: int, align: int) -> int:
    """An ``align``-aligned start address for ``length`` bytes that no vma covers."""
    arch = proc.machine.arch
    addr = -(-(arch.task_size // 3) // align) * align
    while addr + length <= arch.task_size:
        if not proc.mm.vmas_in(addr, addr + length):
            return addr
        addr += align
    raise AssertionError("no free aligned range")


@contextmanager
def planted_pte(proc: Process, addr: int, value: int) -> Iterator[int]:
    """Write a raw pte for ``addr`` (whose table must exist) and put the old one back after.

    Yields the old value. Restoring keeps the teardown invariants true, since a planted pte
    is not accounted anywhere.
    """
    slot = pte_slot(proc, addr)
    assert slot is not None, f"no pte table for {addr:#x}"
    tables = proc.machine.tables
    old = tables.read_pte(slot)
    tables.write_pte(slot, value)
    try:
        yield old
    finally:
        tables.write_pte(slot, old)


#: the "2.6.15 / 2.6.16" row of kernel-reference §7, as changes to the seed's rules: rc4's
#: aligned cow_user_page copy and do_no_page BUG_ON, rc6's is_cow test in vm_normal_page,
#: whole-vma COW remaps, gup refusing VM_PFNMAP, and VM_INSERTPAGE forcing copy_page_range
FINAL_2_6_15: dict[str, object] = {
    "name": "2.6.15",
    "vm_normal_page_is_cow_test": True,
    "remap_cow_whole_vma": True,
    "gup_refused_flags": VM_IO | VM_PFNMAP,
    "cow_copy_aligned": True,
    "copy_forcing_flags": SEED.copy_forcing_flags | VM_INSERTPAGE,
    "do_no_page_bug_on_pfnmap": True,
}


@contextmanager
def rules_machine(arch_name: str, **changes: object) -> Iterator[Machine]:
    """A machine running the seed's rules with ``changes`` (a later era's decisions)."""
    rules = dataclasses.replace(SEED, **changes)
    machine = Machine(arch=arch_name, ram="64M", rules=rules)
    yield machine
    finish(machine)
