"""Conformance checks 2: the pte operations, one property at a time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfnmap.arch import Arch
from pfnmap.kernel.constants import VM_SHARED
from pfnmap.testing.checks import (
    KIT,
    PRIVATE_WRITE,
    READABLE,
    SHARED_WRITE,
    edge_pfns,
    pfns,
    prot_name,
    ptes,
    same_but,
    state,
)


def test_every_pte_operation_is_implemented(pfnmap_arch: Arch) -> None:
    """ops.present: every name in Arch.PTE_OPERATIONS is a method of the arch."""
    missing = [op for op in Arch.PTE_OPERATIONS if not callable(getattr(pfnmap_arch, op, None))]
    assert not missing, f"missing pte operation(s): {', '.join(missing)}"


def test_pfn_round_trip_at_the_edges(pfnmap_arch: Arch) -> None:
    """ops.pfn: pte_pfn(pfn_pte(pfn, prot)) == pfn for every protection and every edge of the
    physical width (0, each power of two and its predecessor, max_pfn); the pte is present,
    not none, and its leaf address is the page's."""
    arch = pfnmap_arch
    last = len(arch.levels) - 1
    for pfn in edge_pfns(arch):
        for index, prot in enumerate(arch.protection_map):
            pte = arch.pfn_pte(pfn, prot)
            where = f"pfn {pfn:#x}, {prot_name(index)}: pte {pte:#x}"
            assert arch.pte_pfn(pte) == pfn, f"{where}: pte_pfn gives {arch.pte_pfn(pte):#x}"
            assert arch.pte_present(pte), f"{where}: not present"
            assert not arch.pte_none(pte), f"{where}: pte_none"
            assert arch.leaf_paddr(last, pte) == pfn << arch.page_shift, where
            assert pte < 1 << (arch.levels[last].entry_bytes * 8), f"{where}: wider than a pte"


@KIT
@given(data=st.data())
def test_pfn_round_trip(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """ops.pfn: the same for any pfn and protection."""
    arch = pfnmap_arch
    pfn = data.draw(pfns(arch), label="pfn")
    prot = data.draw(st.sampled_from(arch.protection_map), label="prot")
    assert arch.pte_pfn(arch.pfn_pte(pfn, prot)) == pfn


def test_the_pfn_does_not_leak_into_the_flags(pfnmap_arch: Arch) -> None:
    """ops.pfn: what a pte says about write, dirty, young, presence and the MMU's access
    does not depend on its pfn (a pfn field overlapping a flag shows up here)."""
    arch = pfnmap_arch
    for index, prot in enumerate(arch.protection_map):
        ref = arch.pfn_pte(0, prot)
        for pfn in edge_pfns(arch):
            pte = arch.pfn_pte(pfn, prot)
            got = {k: v for k, v in state(arch, pte).items() if k != "pfn"}
            want = {k: v for k, v in state(arch, ref).items() if k != "pfn"}
            assert got == want, f"pfn {pfn:#x}, {prot_name(index)}: {got} != {want}"
            for write in (False, True):
                assert arch.pte_hw_access_ok(pte, write) == arch.pte_hw_access_ok(ref, write)


def _pair(arch: Arch, pte: int, on: Callable, off: Callable, test: Callable, name: str) -> None:
    """``on`` sets and ``off`` clears one property and touch nothing else the generic code
    can see; each undoes the other (as debug_vm_pgtable checks it: by what the predicates
    say, since an arch may keep hardware bits that only a fault restores, as sparc64's W)."""
    a, b = on(pte), off(pte)
    assert test(a), f"{on.__name__}({pte:#x}) = {a:#x}: {name} is not set"
    assert not test(b), f"{off.__name__}({pte:#x}) = {b:#x}: {name} is still set"
    assert state(arch, off(a)) == state(arch, b), f"{off.__name__} does not undo {on.__name__}"
    assert state(arch, on(b)) == state(arch, a), f"{on.__name__} does not undo {off.__name__}"
    assert on(a) == a and off(b) == b, f"{on.__name__}/{off.__name__} are not idempotent"
    same_but(arch, pte, a, name)
    same_but(arch, pte, b, name)


@KIT
@given(data=st.data())
def test_write_pair(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """ops.write: pte_mkwrite sets and pte_wrprotect clears pte_write, and nothing else."""
    arch = pfnmap_arch
    pte = data.draw(ptes(arch), label="pte")
    _pair(arch, pte, arch.pte_mkwrite, arch.pte_wrprotect, arch.pte_write, "write")


@KIT
@given(data=st.data())
def test_dirty_pair(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """ops.dirty: pte_mkdirty sets and pte_mkclean clears pte_dirty, and nothing else."""
    arch = pfnmap_arch
    pte = data.draw(ptes(arch), label="pte")
    _pair(arch, pte, arch.pte_mkdirty, arch.pte_mkclean, arch.pte_dirty, "dirty")


@KIT
@given(data=st.data())
def test_young_pair(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """ops.young: pte_mkyoung sets and pte_mkold clears pte_young, and nothing else."""
    arch = pfnmap_arch
    pte = data.draw(ptes(arch), label="pte")
    _pair(arch, pte, arch.pte_mkyoung, arch.pte_mkold, arch.pte_young, "young")


def test_mkdirty_never_makes_a_pte_writable(pfnmap_arch: Arch) -> None:
    """ops.cow: a write-protected pte stays unwritable for the kernel and for the MMU however
    dirty and young it is (the lesson of tools/testing/selftests/mm/mkdirty.c), so COW after
    fork cannot be bypassed."""
    arch = pfnmap_arch
    for index, prot in enumerate(arch.protection_map):
        for pfn in (1, arch.max_pfn):
            pte = arch.pte_wrprotect(arch.pfn_pte(pfn, prot))
            touched = arch.pte_mkyoung(arch.pte_mkdirty(pte))
            where = f"{prot_name(index)}, pfn {pfn:#x}: {touched:#x}"
            assert not arch.pte_write(touched), where
            assert not arch.pte_hw_access_ok(touched, write=True), f"MMU writes {where}"
            assert not arch.pte_hw_access_ok(arch.pte_hw_update(touched, True), write=True)


@KIT
@given(data=st.data())
def test_pte_modify(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """ops.modify: pte_modify keeps the page and its dirty and young state, takes write
    permission from the new protection, and is idempotent (what mprotect relies on)."""
    arch = pfnmap_arch
    pte = data.draw(ptes(arch), label="pte")
    prot = data.draw(st.sampled_from(arch.protection_map), label="newprot")
    new = arch.pte_modify(pte, prot)
    fresh = arch.pfn_pte(arch.pte_pfn(pte), prot)
    assert arch.pte_pfn(new) == arch.pte_pfn(pte)
    for what, test in (("dirty", arch.pte_dirty), ("young", arch.pte_young)):
        # kept from the old pte; whether the new protection may add it is the arch's choice
        # (x86 ORs newprot in, sparc64 keeps the old bit alone)
        if test(pte):
            assert test(new), f"pte_modify({pte:#x}, {prot:#x}) lost {what}"
        elif not test(fresh):
            assert not test(new), f"pte_modify({pte:#x}, {prot:#x}) invented {what}"
    assert arch.pte_write(new) == arch.pte_write(fresh)
    assert arch.pte_present(new)
    assert arch.pte_modify(new, prot) == new


def test_noncached_keeps_the_protection(pfnmap_arch: Arch) -> None:
    """ops.noncached: pgprot_noncached changes caching only (/dev/mem with O_SYNC)."""
    arch = pfnmap_arch
    for index, prot in enumerate(arch.protection_map):
        nc = arch.pgprot_noncached(prot)
        pte, ncpte = arch.pfn_pte(9, prot), arch.pfn_pte(9, nc)
        same_but(arch, pte, ncpte)
        for write in (False, True):
            assert arch.pte_hw_access_ok(ncpte, write) == arch.pte_hw_access_ok(pte, write), (
                prot_name(index)
            )
        assert arch.pgprot_noncached(nc) == nc, f"{prot_name(index)}: not idempotent"


def test_protection_map_means_what_mm_expects(pfnmap_arch: Arch) -> None:
    """ops.protections: PROT_NONE is present for Linux but refused by the MMU; a private
    writable mapping starts write-protected (COW) and becomes writable by pte_mkwrite; a
    shared writable one is pte_write; a young pte of a readable protection can be read, a
    young dirty writable one written."""
    arch = pfnmap_arch
    pmap = arch.protection_map
    assert len(pmap) == 16
    for index in (0, VM_SHARED):
        none = arch.pfn_pte(3, pmap[index])
        assert arch.pte_present(none), f"{prot_name(index)}: PROT_NONE pte is not present"
        for write in (False, True):
            assert not arch.pte_hw_access_ok(none, write), f"{prot_name(index)}: MMU allows it"
    for index in PRIVATE_WRITE:
        pte = arch.pfn_pte(3, pmap[index])
        assert not arch.pte_write(pte), f"{prot_name(index)} is writable before COW"
        assert not arch.pte_hw_access_ok(pte, write=True), f"the MMU writes {prot_name(index)}"
        writable = arch.pte_mkyoung(arch.pte_mkdirty(arch.pte_mkwrite(pte)))
        assert arch.pte_hw_access_ok(writable, write=True), prot_name(index)
    for index in SHARED_WRITE:
        pte = arch.pfn_pte(3, pmap[index])
        assert arch.pte_write(pte), f"{prot_name(index)} is not writable"
        assert arch.pte_hw_access_ok(arch.pte_mkyoung(arch.pte_mkdirty(pte)), True)
    for index in READABLE:
        pte = arch.pte_mkyoung(arch.pfn_pte(3, pmap[index]))
        assert arch.pte_hw_access_ok(pte, write=False), f"{prot_name(index)} is not readable"


@KIT
@given(data=st.data())
def test_mmu_changes_only_accessed_and_dirty(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """ops.hardware: on an access the MMU may set young (and dirty, for a write), nothing else;
    doing it twice changes nothing more."""
    arch = pfnmap_arch
    pte = data.draw(ptes(arch), label="pte")
    write = data.draw(st.booleans(), label="write")
    after = arch.pte_hw_update(pte, write)
    same_but(arch, pte, after, "young", "dirty")
    assert arch.pte_young(after) or not arch.pte_young(pte)
    assert arch.pte_dirty(after) or not arch.pte_dirty(pte)
    if not write:
        assert arch.pte_dirty(after) == arch.pte_dirty(pte), "a read dirtied the pte"
    assert arch.pte_hw_update(after, write) == after


def test_the_zero_entry_is_none(pfnmap_arch: Arch) -> None:
    """ops.none: 0 is pte_none, not present, and refused by the MMU; at every upper level it
    is neither present nor a leaf."""
    arch = pfnmap_arch
    assert arch.pte_none(0) and not arch.pte_present(0)
    assert not arch.pte_hw_access_ok(0, False) and not arch.pte_hw_access_ok(0, True)
    for level in range(len(arch.levels) - 1):
        assert not arch.table_entry_present(level, 0), arch.levels[level].name
        assert not arch.table_entry_leaf(level, 0), arch.levels[level].name


def test_special_bit(pfnmap_arch: Arch) -> None:
    """ops.special: where the arch spares a special bit (2.6.26's pte_special), it marks a
    pte and changes nothing else."""
    arch = pfnmap_arch
    if not getattr(arch, "special_mask", 0):
        pytest.skip(f"{arch.name} has no pte_special bit")
    for prot in arch.protection_map:
        pte = arch.pfn_pte(7, prot)
        special = arch.pte_mkspecial(pte)
        assert arch.pte_special(special) and not arch.pte_special(pte)
        same_but(arch, pte, special)
