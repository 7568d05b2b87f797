"""What the MMU does for a user access: translate through the tables, check, set A/D bits.

Used by the process layer's read/write (which faults on a miss) and by the kernel's
non-faulting user copy (``__copy_from_user_inatomic``), which fails instead of faulting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.errors import BusError

if TYPE_CHECKING:
    from pfnmap.kernel.mm import MmStruct


def hw_translate(mm: MmStruct, addr: int, write: bool) -> int | None:
    """The physical address a user access to ``addr`` reaches, or None if the MMU would fault.

    Updates the accessed/dirty bits of the leaf entry as the hardware does.
    """
    tables = mm.machine.tables
    arch = tables.arch
    ram = tables.ram
    last = tables.last
    table = mm.pgd
    for level, (unpack, shift, index_mask, entry_bytes) in enumerate(tables.walk_steps):
        slot = table + ((addr >> shift) & index_mask) * entry_bytes
        entry = unpack(ram, slot)[0]
        if level == last:
            break
        if not arch.table_entry_present(level, entry):
            return None
        if arch.table_entry_leaf(level, entry):
            # a large page: offset within it comes from the VA bits below this level
            return _leaf_access(mm, level, slot, entry, addr, write)
        table = arch.table_entry_paddr(level, entry)
    return _leaf_access(mm, last, slot, entry, addr, write)


def _leaf_access(mm: MmStruct, level: int, slot: int, entry: int, addr: int, write: bool):
    machine = mm.machine
    arch = machine.arch
    if not arch.pte_hw_access_ok(entry, write):
        return None
    updated = arch.pte_hw_update(entry, write)
    if updated != entry:
        machine.tables.write(level, slot, updated)
    return arch.hw_leaf_paddr(level, entry, addr)


def copy_from_user_inatomic(mm: MmStruct, addr: int, n: int) -> bytes | None:
    """__copy_from_user_inatomic(): read user memory without faulting; None if any byte fails.

    A byte fails when its page is not mapped readable or when the physical address is a hole.
    """
    machine = mm.machine
    page_size = machine.arch.page_size
    out = bytearray()
    while n > 0:
        chunk = min(n, page_size - (addr & (page_size - 1)))
        paddr = hw_translate(mm, addr, False)
        if paddr is None:
            return None
        try:
            out += machine.phys.read(paddr, chunk)
        except BusError:
            return None
        addr += chunk
        n -= chunk
    return bytes(out)
