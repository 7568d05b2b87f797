"""Conformance checks 3: upper-level entries (table pointers and large-page leaves)."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfnmap.arch import Arch
from pfnmap.errors import KernelError
from pfnmap.kernel.constants import VM_READ, VM_SHARED, VM_WRITE
from pfnmap.testing.checks import KIT, edge_pfns, large_levels


def table_addresses(arch: Arch) -> list[int]:
    """Page-aligned table addresses at the edges of the physical width (page 0 left out: a
    table never lives there, and sparc64's ``paddr >> 11`` entry would read as none)."""
    return [arch.page_size * pfn for pfn in edge_pfns(arch) if pfn]


def test_table_entries_round_trip_at_the_edges(pfnmap_arch: Arch) -> None:
    """upper.tables: mk_table_entry gives back its table address at every upper level and
    every edge of the physical width, and the entry is present, not bad, not a leaf."""
    arch = pfnmap_arch
    for level in range(len(arch.levels) - 1):
        name = arch.levels[level].name
        for paddr in table_addresses(arch):
            entry = arch.mk_table_entry(level, paddr)
            where = f"{name} entry for a table at {paddr:#x}: {entry:#x}"
            assert arch.table_entry_paddr(level, entry) == paddr, where
            assert arch.table_entry_present(level, entry), f"{where} is not present"
            assert not arch.table_entry_bad(level, entry), f"{where} is bad"
            assert not arch.table_entry_leaf(level, entry), f"{where} is taken for a leaf"
            assert entry < 1 << (arch.levels[level].entry_bytes * 8), f"{where}: too wide"


@KIT
@given(data=st.data())
def test_table_entry_round_trip(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """upper.tables: the same for any level and table address."""
    arch = pfnmap_arch
    if len(arch.levels) < 2:
        return
    level = data.draw(st.integers(0, len(arch.levels) - 2), label="level")
    pfn = data.draw(st.integers(1, arch.max_pfn), label="table pfn")
    entry = arch.mk_table_entry(level, pfn << arch.page_shift)
    assert arch.table_entry_paddr(level, entry) == pfn << arch.page_shift
    assert not arch.table_entry_bad(level, entry)


def test_large_leaves_round_trip(pfnmap_arch: Arch) -> None:
    """upper.leaves: where the arch builds large-page leaves (``mk_large_entry``), each is a
    leaf at its level and gives back its address at the edges of the physical width; a pfn
    not aligned to the page is EINVAL."""
    arch = pfnmap_arch
    levels = large_levels(arch)
    if not levels:
        pytest.skip(f"{arch.name} builds no large-page leaves")
    prot = arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]
    for level, size in levels:
        npages = size >> arch.page_shift
        last = (arch.max_pfn + 1 - npages) // npages * npages
        for pfn in sorted({0, npages, last}):
            entry = arch.mk_large_entry(size, pfn, prot)
            where = f"{arch.levels[level].name} leaf for pfn {pfn:#x}: {entry:#x}"
            assert arch.table_entry_leaf(level, entry), f"{where} is not a leaf"
            assert arch.table_entry_present(level, entry), f"{where} is not present"
            assert arch.leaf_paddr(level, entry) == pfn << arch.page_shift, where
        with pytest.raises(KernelError) as info:
            arch.mk_large_entry(size, npages + 1, prot)
        assert info.value.errno == errno.EINVAL
