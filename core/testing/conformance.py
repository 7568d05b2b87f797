"""The pfnmap conformance kit: what every arch plugin must do, checked on one arch at a time.

In the spirit of the kernel's mm/debug_vm_pgtable.c (a much later kernel): each pte helper
does what its name says and nothing else, entries survive a round trip, and the generic mm
code then runs correctly on the arch. Run it with::

    python -m pfnmap.testing ARCH
    pytest --pfnmap-conformance=ARCH

The checks, in the order they run (each test names the check in its docstring):

1. layouts: every bit of every entry format is named once, construct parses and rebuilds any
   entry losslessly, the derived masks agree with construct, RAM storage uses the layout's
   byte order, and the registry's validation finds nothing;
2. pte operations: pfn round trips at the edges of the physical width, the flags of a pte do
   not depend on its pfn, the write/dirty/young pairs set and clear one property each,
   pte_mkdirty never makes a pte writable, pte_modify, pgprot_noncached, the protection map's
   meaning, and what the MMU may change on an access;
3. upper levels: table entries round-trip their table address at the edges and look like
   tables; large-page leaves (where the arch builds them) round-trip their address;
4. synthetic page tables: entries written by hand are found by the core's walker and MMU
   model at the address they map, and the RAM image decodes with the layouts;
5. semantics: anonymous faults, COW after fork, /dev/mem beyond RAM and inside RAM (shared
   and private), the top of the physical address space, mprotect, munmap and exit, each
   ending with the machine's invariants checked and every page back.

It needs hypothesis (``pip install "pfnmap[test]"``). An arch that keeps a deviation on purpose
(a historical bug it reproduces) names the check in ``conformance_xfail = {"ops.cow": "why"}``;
that check is then expected to fail (strict xfail: if it passes, the declaration is stale).

This module is the kit's manifest: the checks live in :mod:`pfnmap.testing.checks` and are
collected here, in order.
"""

from __future__ import annotations

import pytest

from pfnmap.testing.checks import check_id, deviation, layouts, pte_ops, semantics, synthetic, upper

#: every check, in the order the docstring above lists them
CHECKS = [
    layouts.test_validation_is_clean,
    layouts.test_layout_fields_tile_every_entry,
    layouts.test_layout_lossless_at_the_edges,
    layouts.test_layout_lossless_and_masks_agree,
    layouts.test_layout_each_field_builds_its_mask,
    layouts.test_ram_storage_uses_the_layout_byte_order,
    pte_ops.test_every_pte_operation_is_implemented,
    pte_ops.test_pfn_round_trip_at_the_edges,
    pte_ops.test_pfn_round_trip,
    pte_ops.test_the_pfn_does_not_leak_into_the_flags,
    pte_ops.test_write_pair,
    pte_ops.test_dirty_pair,
    pte_ops.test_young_pair,
    pte_ops.test_mkdirty_never_makes_a_pte_writable,
    pte_ops.test_pte_modify,
    pte_ops.test_noncached_keeps_the_protection,
    pte_ops.test_protection_map_means_what_mm_expects,
    pte_ops.test_mmu_changes_only_accessed_and_dirty,
    pte_ops.test_the_zero_entry_is_none,
    pte_ops.test_special_bit,
    upper.test_table_entries_round_trip_at_the_edges,
    upper.test_table_entry_round_trip,
    upper.test_large_leaves_round_trip,
    synthetic.test_synthetic_tables_translate,
    synthetic.test_synthetic_tables_dump_decodes,
    synthetic.test_synthetic_large_pages_translate,
    semantics.test_anon_read_maps_the_zero_page,
    semantics.test_cow_after_fork,
    semantics.test_devmem_beyond_ram_is_a_raw_pfn_mapping,
    semantics.test_devmem_inside_ram_leaves_struct_pages_alone,
    semantics.test_devmem_private_write_cows,
    semantics.test_devmem_at_the_top_of_the_physical_space,
    semantics.test_mprotect,
    semantics.test_munmap_and_exit_give_every_page_back,
]

# pytest collects the test functions it finds in this module's namespace, in this order
globals().update({check.__name__: check for check in CHECKS})


@pytest.fixture(autouse=True)
def _declared_deviations(request: pytest.FixtureRequest) -> None:
    """A check the arch declares it fails on purpose is a strict xfail, with its reason."""
    if "pfnmap_arch" not in request.fixturenames:
        return
    arch = request.getfixturevalue("pfnmap_arch")
    reason = deviation(arch, check_id(request.function))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=f"{arch.name}: {reason}", strict=True))
