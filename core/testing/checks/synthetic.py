"""Conformance checks 4: synthetic page tables read back by the core's walker and MMU model."""

from __future__ import annotations

import numpy as np
import pytest

from pfnmap.arch import Arch
from pfnmap.kernel.constants import VM_READ, VM_SHARED, VM_WRITE
from pfnmap.testing.checks import edge_pfns, large_levels
from pfnmap.testing.tables import SyntheticTables


def _probe_addresses(arch: Arch) -> list[int]:
    """User pages at the edges of every level: the first, the last below TASK_SIZE, and the
    first and last page of the second entry of each level."""
    page = arch.page_size
    out = {0, (arch.task_size - 1) & arch.page_mask}
    for lv in arch.levels[:-1]:
        for addr in (lv.span, 2 * lv.span - page):
            if addr < arch.task_size:
                out.add(addr)
    return sorted(out)


def _rw_young_dirty(arch: Arch, pfn: int) -> int:
    prot = arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]
    return arch.pte_mkyoung(arch.pte_mkdirty(arch.pfn_pte(pfn, prot)))


def test_synthetic_tables_translate(pfnmap_arch: Arch, pfnmap_tables: SyntheticTables) -> None:
    """tables.walk: ptes written by hand at the edges of the VA, pointing at the edges of the
    physical width, are where the core's walker finds them and where its MMU model sends a
    read and a write; an address mapped by nothing faults."""
    arch = pfnmap_arch
    tables = pfnmap_tables
    targets = edge_pfns(arch)
    mapped = {}
    for i, va in enumerate(_probe_addresses(arch)):
        pfn = targets[(i * 7) % len(targets)]
        tables.set_entry(va, len(arch.levels) - 1, _rw_young_dirty(arch, pfn))
        mapped[va] = pfn
    for va, pfn in mapped.items():
        offset = 8 * (va % 5)
        steps = tables.walk(va)
        assert len(steps) == len(arch.levels), f"{va:#x}: walk stopped at {steps[-1]}"
        assert arch.pte_pfn(steps[-1].value) == pfn
        for write in (False, True):
            got = tables.translate(va + offset, write=write)
            want = (pfn << arch.page_shift) + offset
            assert got == want, f"{va:#x}+{offset}: {'write' if write else 'read'} -> {got}"
    unmapped = next(va for va in range(0, arch.task_size, arch.page_size) if va not in mapped)
    assert tables.translate(unmapped) is None


def test_synthetic_tables_dump_decodes(pfnmap_arch: Arch, pfnmap_tables: SyntheticTables) -> None:
    """tables.dump: the RAM image of the tables decodes, with numpy and with construct, to the
    entries the walker read."""
    arch = pfnmap_arch
    tables = pfnmap_tables
    for va in _probe_addresses(arch):
        tables.set_entry(va, len(arch.levels) - 1, _rw_young_dirty(arch, 1))
    image = tables.dump()
    levels = dict((paddr, level) for level, paddr in tables.frames())
    for va in _probe_addresses(arch):
        for step in tables.walk(va):
            page = step.slot & arch.page_mask
            level = levels[page]
            assert level == step.level
            size = arch.levels[level].entry_bytes
            raw = image[page][step.slot - page : step.slot - page + size]
            assert int(np.frombuffer(raw, dtype=arch.numpy_dtype(level))[0]) == step.value
            fmt = arch.table_formats[level] if level < len(arch.levels) - 1 else arch.pte_format
            assert fmt is not None
            assert fmt.encode(**fmt.decode(step.value)) == step.value


def test_synthetic_large_pages_translate(pfnmap_arch: Arch, pfnmap_tables: SyntheticTables) -> None:
    """tables.leaves: a large-page leaf written by hand covers its whole span: the offset
    inside the page comes from the VA."""
    arch = pfnmap_arch
    levels = large_levels(arch)
    if not levels:
        pytest.skip(f"{arch.name} builds no large-page leaves")
    prot = arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]
    for level, size in levels:
        va = size  # the second entry of the level
        if va + size > arch.task_size:
            continue
        npages = size >> arch.page_shift
        pfn = (arch.max_pfn + 1 - npages) // npages * npages
        entry = arch.pte_mkyoung(arch.pte_mkdirty(arch.mk_large_entry(size, pfn, prot)))
        pfnmap_tables.set_entry(va, level, entry)
        for offset in (0, arch.page_size + 8, size - 8):
            got = pfnmap_tables.translate(va + offset)
            assert got == (pfn << arch.page_shift) + offset, (
                f"{arch.levels[level].name} +{offset:#x}"
            )
        assert pfnmap_tables.walk(va)[-1].level == level
