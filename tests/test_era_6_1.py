"""The 6.1 era: Linux 6.1's vm_normal_page, zero page, remap_pfn_range and x86 pte headers.

The oracle is Linux 6.1: mm/memory.c (vm_normal_page with CONFIG_ARCH_HAS_PTE_SPECIAL,
print_bad_pte, remap_pfn_range_notrack, vm_insert_page, do_anonymous_page, wp_page_copy,
follow_page_pte), arch/x86/include/asm/pgtable_types.h (the software bits, _PAGE_PROTNONE =
_PAGE_GLOBAL) and pgtable-invert.h (L1TF, 4.19). Each test names the function it follows. Tests
that take ``arch_name`` run on the session's ``--arch`` and say what an arch without a special
bit (sparc64) does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import finish, io_pfn, planted_pte, vma_at
from hypothesis import given, settings
from hypothesis import strategies as st

from pfnmap import MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE, KernelBug, Machine, Verdict
from pfnmap.kernel.constants import (
    VM_DONTDUMP,
    VM_DONTEXPAND,
    VM_FLAG_NAMES_6_1,
    VM_HUGETLB,
    VM_INSERTPAGE,
    VM_IO,
    VM_LOCKONFAULT,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_MIXEDMAP,
    VM_PFNMAP,
    VM_READ,
    VM_RESERVED,
    VM_WRITE,
)
from pfnmap.kernel.memory import follow_page
from pfnmap.kernel.normal_page import classify_pte, pte_verdicts, vm_normal_page_verdict
from pfnmap.kernel.remap import remap_pfn_range, vm_insert_page
from pfnmap.kernel.rules import ERAS, V2_6_26, V6_1, era_for_release, rules_for
from pfnmap.plugins.manager import default_registry
from pfnmap.scenarios.compare import compare

RW = PROT_READ | PROT_WRITE
ANON = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE


def machine_6_1(arch_name: str) -> Machine:
    return Machine(arch_name, "64M", era="6.1")


# the profile ------------------------------------------------------------------------------------
def test_6_1_profile_is_2626_plus_what_came_since() -> None:
    """6.1 keeps 2.6.26's pte_special, VM_MIXEDMAP, is_cow test, whole-vma COW remap and gup
    refusal, and changes what later kernels changed (each field names its kernel change)."""
    assert ERAS["6.1"] is V6_1 and rules_for("6.1") is V6_1
    changed = {k for k, v in V2_6_26.as_dict().items() if V6_1.as_dict()[k] != v}
    assert changed == {
        "name",
        "release",
        "copy_forcing_flags",  # vma_needs_copy(): VM_PFNMAP|VM_MIXEDMAP (+ hugetlb's own copy)
        "do_no_page_bug_on_pfnmap",  # __do_fault() has no BUG_ON
        "bad_pfn_vm_bug_on",  # print_bad_pte again
        "anon_read_zero_page",  # 2.6.32 brought the zero page back
        "remap_vm_flags",  # 3.7
        "insert_page_vm_flags",  # 3.7
        "bad_pfn_test",  # highest_memmap_pfn
        "zero_pfn_is_special",
        "pte_devmap",
        "zero_page_special_pte",
        "bad_pte_report",
        "l1tf_protnone_inversion",
        "vm_flag_names",
        "mremap_grow_refused_flags",  # vma_to_resize(): VM_DONTEXPAND|VM_PFNMAP may not grow
    }
    assert V6_1.remap_vm_flags == VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP
    assert V6_1.copy_forcing_flags == VM_HUGETLB | VM_PFNMAP | VM_MIXEDMAP
    assert V6_1.version() == (6, 1) and V2_6_26.version() == (2, 6, 26)
    with pytest.raises(ValueError, match="bad_pfn_test"):
        replace(V6_1, bad_pfn_test="guess")


def test_6_1_flag_names_are_the_era_s() -> None:
    """include/linux/mm.h of 6.1 reuses 2.6.15's bits: 0x80000 is VM_LOCKONFAULT (VM_RESERVED
    went in 3.7), 0x02000000 VM_WIPEONFORK; names of bits 6.1 kept stay."""
    assert V6_1.flag_names(VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP) == [
        "VM_PFNMAP",
        "VM_IO",
        "VM_DONTEXPAND",
        "VM_DONTDUMP",
    ]
    assert V6_1.flag_names(VM_RESERVED) == ["VM_LOCKONFAULT"] == [VM_FLAG_NAMES_6_1[VM_LOCKONFAULT]]
    assert V2_6_26.flag_names(VM_RESERVED) == ["VM_RESERVED"]
    assert V6_1.flag_names(VM_INSERTPAGE) == ["VM_WIPEONFORK"]
    assert V6_1.flag_names(1 << 32) == ["VM_PKEY_BIT0"]


@pytest.mark.parametrize(
    ("release", "era"),
    [
        ("6.1.0-56-amd64", "6.1"),
        ("6.1", "6.1"),
        ("6.12.9+bpo-amd64", "6.1"),
        ("6.0.12", "2.6.26"),
        ("5.10.0-30-amd64", "2.6.26"),
        ("2.6.26-2-686", "2.6.26"),
        ("2.6.18-6-amd64", "2.6.15"),
        ("2.6.15", "2.6.15"),
    ],
)
def test_era_for_release(release: str, era: str) -> None:
    """VMCOREINFO's OSRELEASE -> the newest era not newer than it (never the snapshots)."""
    assert era_for_release(release) == era


@pytest.mark.parametrize("release", ["2.6.14", "2.4.37", "linux", ""])
def test_era_for_release_refuses(release: str) -> None:
    with pytest.raises(ValueError):
        era_for_release(release)


# vm_normal_page ---------------------------------------------------------------------------------
def test_6_1_remap_pfn_range_flags_and_special_ptes(arch_name: str) -> None:
    """remap_pfn_range_notrack() in 6.1: VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP and no
    VM_RESERVED; every pte pte_mkspecial'd (where the arch has the bit) and raw."""
    m = machine_6_1(arch_name)
    proc = m.spawn("t")
    fd = proc.open("/dev/mem")
    ps = m.arch.page_size
    addr = proc.mmap(2 * ps, RW, MAP_SHARED, fd, offset=io_pfn(m) << m.arch.page_shift)
    vma = vma_at(proc, addr)
    wanted = VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP
    assert vma.vm_flags & wanted == wanted and not vma.vm_flags & VM_RESERVED
    for k in range(2):
        info = proc.lookup(addr + k * ps)
        assert info.verdict is Verdict.RAW_PFN and info.pfn == io_pfn(m) + k
        assert m.arch.pte_special(info.raw) == bool(m.arch.special_mask)
    finish(m)


def test_6_1_anonymous_read_maps_the_zero_page_special_and_uncounted(arch_name: str) -> None:
    """do_anonymous_page() in 6.1: a read fault maps my_zero_pfn with pte_mkspecial, taking no
    reference and no rss; vm_normal_page() returns NULL for it without a report (is_zero_pfn);
    fork copies it without a report; a write replaces it with a zeroed page (wp_page_copy);
    follow_page_pte() hands out the zero page. The read fault makes no anon_vma, so fork
    (vma_needs_copy) copies no ptes of such a vma."""
    m = machine_6_1(arch_name)
    zero = m.phys.zero_pfn
    count = m.page(zero).count
    proc = m.spawn("t")
    ps = m.arch.page_size
    addr = proc.mmap(2 * ps)
    assert proc.read(addr, 2 * ps) == bytes(2 * ps)
    for k in range(2):
        info = proc.lookup(addr + k * ps)
        assert info.pfn == zero and info.verdict is Verdict.ZERO, info.reason
        assert m.arch.pte_special(info.raw) == bool(m.arch.special_mask)
        assert not m.arch.pte_write(info.raw)
    assert proc.rss()["rss"] == 0 and m.page(zero).count == count
    assert follow_page(vma_at(proc, addr), addr, 0) == zero
    # zero ptes alone give the vma no anon_vma, so vma_needs_copy() leaves the child to fault
    assert vma_at(proc, addr).anon_vma is None
    child = proc.fork("child")
    assert child.lookup(addr).verdict is None
    assert child.read(addr, 1) == b"\0" and child.lookup(addr).verdict is Verdict.ZERO
    proc.write(addr + 3, b"six")
    info = proc.lookup(addr)
    assert info.pfn != zero and m.page(info.pfn).anon and info.verdict is Verdict.NORMAL
    assert proc.read(addr, 6) == b"\0\0\0six" and child.read(addr, 6) == bytes(6)
    assert proc.rss() == {"file_rss": 0, "anon_rss": 1, "rss": 1}
    assert not m.bad_ptes
    child.exit()
    finish(m)


def test_6_1_special_pte_outside_a_pfn_vma_is_print_bad_pte(arch_name: str) -> None:
    """vm_normal_page() in 6.1: a special pte in a vma without VM_PFNMAP/VM_MIXEDMAP that is
    neither the zero page nor devmap is print_bad_pte() ("BUG: Bad page map in process") and
    NULL, where 2.6.26 had VM_BUG_ON."""
    m = machine_6_1(arch_name)
    if not m.arch.special_mask:
        pytest.skip(f"{arch_name} has no special bit: the pte cannot say it is special")
    proc = m.spawn("bad")
    ps = m.arch.page_size
    addr = proc.mmap(ps)
    proc.write(addr, b"x")
    raw = proc.lookup(addr).raw
    with planted_pte(proc, addr, m.arch.pte_mkspecial(raw)):
        vma = vma_at(proc, addr)
        verdict, _, reason = vm_normal_page_verdict(vma, addr, m.arch.pte_mkspecial(raw))
        assert verdict is Verdict.BAD and "not the zero page" in reason
        assert follow_page(vma, addr, 0) is None  # print_bad_pte, then NULL: no KernelBug
    report = m.bad_ptes[-1]
    assert report.caller == "follow_page"
    assert report.line.startswith("BUG: Bad page map in process bad  pte:")
    assert f"addr:{addr:016x} vm_flags:{vma.vm_flags:08x}" in m.log[-1]
    finish(m)
    with pytest.raises(KernelBug, match="VM_BUG_ON"):  # the same pte under 2.6.26
        m26 = Machine(arch_name, "64M", era="2.6.26")
        p26 = m26.spawn("bad")
        a26 = p26.mmap(ps)
        p26.write(a26, b"x")
        r26 = p26.lookup(a26).raw
        with planted_pte(p26, a26, m26.arch.pte_mkspecial(r26)):
            follow_page(vma_at(p26, a26), a26, 0)


def test_6_1_bad_pfn_is_above_highest_memmap_pfn_not_a_hole() -> None:
    """check_pfn in 6.1's vm_normal_page: ``pfn > highest_memmap_pfn`` is a bad pte; a pfn in
    a hole below it has a struct page (pfn_to_page) and is a page. 2.6.26 asked pfn_valid."""
    arch = Machine("x86-64", era="6.1").arch
    prot = arch.protection_map[VM_READ]

    def pfn_valid(pfn: int) -> bool:
        return pfn < 0x100 or 0x200 <= pfn <= 0x3FF  # a hole at 0x100..0x1ff

    def verdict(rules, pfn: int) -> Verdict:
        pte = arch.pfn_pte(pfn, prot)
        v, _, _ = classify_pte(
            arch, rules, pfn_valid, ANON, 0, 0, 0, pte, is_zero_pfn=None, highest_memmap_pfn=0x3FF
        )
        return v

    assert verdict(V6_1, 0x180) is Verdict.NORMAL
    assert verdict(V6_1, 0x400) is Verdict.BAD
    assert verdict(V2_6_26, 0x180) is Verdict.BAD


def test_6_1_devmap_and_zero_special_ptes() -> None:
    """vm_normal_page() in 6.1, special branch: NULL for VM_PFNMAP/VM_MIXEDMAP, is_zero_pfn and
    pte_devmap (x86-64's _PAGE_DEVMAP, bit 58), no report; anything else print_bad_pte."""
    arch = Machine("x86-64", era="6.1").arch
    assert arch.devmap_mask == 1 << 58
    prot = arch.protection_map[VM_READ]
    special = arch.pte_mkspecial(arch.pfn_pte(0x42, prot))
    cases = {
        (special, ANON): Verdict.BAD,
        (special | arch.devmap_mask, ANON): Verdict.DEVMAP,
        (special, ANON | VM_PFNMAP): Verdict.RAW_PFN,
        (special, ANON | VM_MIXEDMAP): Verdict.RAW_PFN,
        (arch.pfn_pte(0x42, prot), ANON): Verdict.NORMAL,
    }
    for (pte, flags), want in cases.items():
        got, _, reason = classify_pte(
            arch, V6_1, lambda p: True, flags, 0, 0, 0, pte, is_zero_pfn=(0x43).__eq__
        )
        assert got is want, (hex(pte), flags, reason)
    zero = arch.pte_mkspecial(arch.pfn_pte(0x43, prot))
    got, _, _ = classify_pte(
        arch, V6_1, lambda p: True, ANON, 0, 0, 0, zero, is_zero_pfn=(0x43).__eq__
    )
    assert got is Verdict.ZERO


def test_6_1_pte_verdicts_agree_with_the_scalar_decision(arch_name: str) -> None:
    """pte_verdicts() against vm_normal_page_verdict() under 6.1, pte by pte, on vmas of each
    kind, with the zero pfn, pfns beyond highest_memmap_pfn, special and devmap bits planted."""
    m = machine_6_1(arch_name)
    arch, phys = m.arch, m.phys
    proc = m.spawn("v")
    ps = arch.page_size
    vmas = []
    anon = proc.mmap(16 * ps)
    vmas.append(vma_at(proc, anon))
    fd = proc.open("/dev/mem")
    pfnmap = proc.mmap(16 * ps, RW, MAP_SHARED, fd, offset=io_pfn(m) << arch.page_shift)
    vmas.append(vma_at(proc, pfnmap))
    cow = proc.mmap(16 * ps)
    cow_vma = vma_at(proc, cow)
    remap_pfn_range(cow_vma, cow, io_pfn(m), 16 * ps, cow_vma.vm_page_prot)
    vmas.append(cow_vma)
    rng = np.random.default_rng(61)
    for vma in vmas:
        for mixed in (False, True):
            if mixed:
                vma.vm_flags ^= VM_MIXEDMAP
            pfns = rng.integers(0, phys.nr_pages + 64, 16).tolist()
            pfns[:4] = [phys.zero_pfn, phys.highest_memmap_pfn, phys.highest_memmap_pfn + 1, 0]
            pfns[4] = vma.vm_pgoff
            values = [arch.pfn_pte(p, vma.vm_page_prot) for p in pfns]
            for k in range(0, 16, 3):
                values[k] = arch.pte_mkspecial(values[k])
            values[7] |= arch.devmap_mask | arch.special_mask
            ptes = np.array(values, dtype=np.uint64)
            present = arch.ptes_present(ptes)
            got = pte_verdicts(
                arch, m.rules, phys.pfns_valid, vma, vma.vm_start, ptes, present,
                zero_pfn=phys.zero_pfn, highest_memmap_pfn=phys.highest_memmap_pfn,
            )  # fmt: skip
            assert got is not None
            seen = set()
            for k, pte in enumerate(values):
                verdict, _, _ = vm_normal_page_verdict(vma, vma.vm_start + k * ps, pte)
                seen.add(verdict)
                paged = verdict in (Verdict.NORMAL, Verdict.COWED)
                assert bool(got.page[k]) == paged, (vma, mixed, k, verdict)
                assert bool(got.bad[k]) == (verdict is Verdict.BAD), (vma, mixed, k, verdict)
            if mixed:
                vma.vm_flags ^= VM_MIXEDMAP
    assert Verdict.ZERO in {vm_normal_page_verdict(vmas[0], anon, arch.pte_mkspecial(
        arch.pfn_pte(phys.zero_pfn, vmas[0].vm_page_prot)))[0]}  # fmt: skip
    proc.exit()


def test_6_1_vm_insert_page_marks_mixedmap_and_fork_copies(arch_name: str) -> None:
    """vm_insert_page() from 3.7 sets VM_MIXEDMAP (not VM_INSERTPAGE), BUG_ON(VM_PFNMAP);
    vma_needs_copy() copies a VM_MIXEDMAP vma at fork, the page refcounted in both."""
    m = machine_6_1(arch_name)
    proc = m.spawn("drv")
    ps = m.arch.page_size
    addr = proc.mmap(ps, RW, MAP_SHARED, proc.open("/dev/zero"))
    vma = vma_at(proc, addr)
    page = m.phys.alloc_page(zero=True)
    vm_insert_page(vma, addr, page)
    assert vma.vm_flags & VM_MIXEDMAP and not vma.vm_flags & VM_INSERTPAGE
    child = proc.fork("child")
    assert child.lookup(addr).pfn == page and child.lookup(addr).verdict is Verdict.NORMAL
    assert m.page(page).count == 3  # the driver's and two ptes
    child.exit()
    proc.exit()
    m.phys.put_page(page)
    pfn_vma = Machine(arch_name, "64M", era="6.1")
    p = pfn_vma.spawn("drv")
    a = p.mmap(ps, RW, MAP_SHARED, p.open("/dev/mem"), offset=io_pfn(pfn_vma) << 12)
    with pytest.raises(KernelBug, match="VM_PFNMAP"):
        vm_insert_page(vma_at(p, a), a, pfn_vma.phys.alloc_page(zero=True))


# x86's 6.1 headers --------------------------------------------------------------------------
X86 = ("x86-64", "x86-la57", "x86-pae", "x86-2level")


@pytest.mark.parametrize("name", X86)
def test_6_1_x86_software_bits_have_the_kernel_s_names(name: str) -> None:
    """pgtable_types.h of 6.1: bit 9 _PAGE_SPECIAL, 10 _PAGE_UFFD_WP and 11 _PAGE_SOFT_DIRTY
    (x86-64 only; SOFTW2/SOFTW3 elsewhere), 7 _PAGE_PAT, 8 _PAGE_GLOBAL = _PAGE_PROTNONE, 58
    _PAGE_DEVMAP and 59..62 the pkey on x86-64. 2.6.15's layout stays for the old eras."""
    old = Machine(name).arch
    arch = old.for_rules(V6_1)
    assert arch is not old and arch.name == old.name and arch.for_rules(V6_1) is arch
    assert old.for_rules(V2_6_26) is old and arch.for_rules(V2_6_26) is old
    plain = old.for_rules(replace(V6_1, l1tf_protnone_inversion=False))
    assert plain is not arch and plain.pte_pfn(plain.pfn_pte(5, plain.PAGE_NONE)) == 5
    assert plain.pfn_pte(5, plain.PAGE_NONE) & plain.PTE_MASK == 5 << 12  # not inverted
    fields = arch.pte_format.fields
    x86_64 = name in ("x86-64", "x86-la57")
    want = {9: "special", 8: "global_", 7: "pat"}
    want |= (
        {10: "uffd_wp", 11: "soft_dirty", 58: "devmap", 59: "pkey"}
        if x86_64
        else {10: "softw2", 11: "softw3"}
    )
    for shift, field in want.items():
        assert fields[field].shift == shift, field
    assert "avl" not in fields and "protnone" not in fields
    assert arch._PAGE_PROTNONE == 1 << 8 and arch.special_mask == 1 << 9
    assert arch.PAGE_NONE == (1 << 8) | (1 << 5)  # __pg(___A | ___G)
    if arch.pte_format.width_bits == 64:
        assert fields["pfn"].shift == 12 and fields["pfn"].width == 40  # PTE_PFN_MASK: 52 bits


@pytest.mark.parametrize("name", X86)
def test_6_1_protnone_pfn_is_inverted_and_read_back(name: str) -> None:
    """pgtable-invert.h (4.19): pfn_pte() of a PROT_NONE prot, and pte_modify() to it
    (flip_protnone_guard), store ~pfn in PTE_PFN_MASK; pte_pfn() undoes it. 2-level x86 has no
    inversion. mprotect(PROT_NONE) and back keeps the frame and the data."""
    m = Machine(name, "64M", era="6.1")
    arch = m.arch
    proc = m.spawn("pn")
    ps = arch.page_size
    addr = proc.mmap(ps)
    proc.write(addr, b"l1tf")
    pfn = proc.lookup(addr).pfn
    proc.mprotect(addr, ps, PROT_NONE)
    info = proc.lookup(addr)
    raw = info.raw
    assert arch.pte_present(raw) and not raw & arch._PAGE_PRESENT
    assert arch.leaf_kind(len(arch.levels) - 1, raw) == "protnone"
    assert info.pfn == pfn == arch.pte_pfn(raw)
    stored = (raw & arch.PTE_MASK) >> 12
    inverted = arch.pte_format.width_bits == 64
    assert (stored != pfn) == inverted
    if inverted:
        assert stored == (~pfn & (arch.PTE_MASK >> 12))
    assert arch.ptes_pfn(
        np.array([raw, 0, arch.pfn_pte(pfn, arch.PAGE_NONE)], np.uint64)
    ).tolist() == [
        pfn,
        0,
        pfn,
    ]
    proc.mprotect(addr, ps, RW)
    assert proc.lookup(addr).raw & arch.PTE_MASK == pfn << 12
    assert proc.read(addr, 4) == b"l1tf"
    finish(m)


# the scenario library ------------------------------------------------------------------------
def test_zero_page_scenario_across_eras(arch_name: str) -> None:
    """``pfnmap compare zero_page``: the seed maps the refcounted ZERO_PAGE (file_rss 2),
    2.6.26 gives each read its own page (2.6.24), 6.1 maps the uncounted special zero page
    (do_anonymous_page of 2.6.32 on; the verdict names it)."""
    result = compare("zero_page", ["seed", "2.6.26", "6.1"], arch_name)
    rows = {(r.step, r.key): r for r in result.rows}
    pte = rows[("read both pages", "pte anon[0] (reader)")].cells
    assert [pte[e].value for e in ("seed", "2.6.26", "6.1")] == [
        "normal page",
        "normal page",
        "zero page",
    ]
    rss = rows[("read both pages", "rss (reader)")].cells
    assert [rss[e].value for e in ("seed", "2.6.26", "6.1")] == [
        "file 2 anon 0",
        "file 0 anon 2",
        "file 0 anon 0",
    ]
    assert "zero_page_special_pte" in rows[("read both pages", "rss (reader)")].fields


@pytest.mark.parametrize("name", X86)
@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_6_1_x86_variant_layouts_and_operations_agree(name: str, data: st.DataObject) -> None:
    """The 6.1 variant keeps the arch contract (pfnmap.testing's layout and pte checks, on a
    variant the registry does not list): construct and the derived masks split every entry the
    same way, pfn_pte/pte_pfn round-trip every pfn under every protection (PAGE_NONE's
    inverted too), pte_modify into and out of PAGE_NONE keeps the frame (flip_protnone_guard),
    and the whole-table ptes_pfn/ptes_present agree with the scalar ones."""
    arch = default_registry().get(name).for_rules(V6_1)
    width = arch.pte_format.width_bits
    value = data.draw(st.integers(0, (1 << width) - 1))
    for fmt in arch.formats.values():
        v = value & ((1 << fmt.width_bits) - 1)
        assert fmt.decode(v) == fmt.decode_fast(v)
        assert fmt.encode(**fmt.decode(v)) == v
    pfn = data.draw(st.integers(0, arch.max_pfn))
    for prot in set(arch.protection_map):
        pte = arch.pfn_pte(pfn, prot)
        assert arch.pte_pfn(pte) == pfn, hex(prot)
        assert arch.pte_present(pte) == bool(prot & (arch._PAGE_PRESENT | arch._PAGE_PROTNONE))
        none = arch.pte_modify(pte, arch.PAGE_NONE)
        back = arch.pte_modify(none, prot)
        assert arch.pte_pfn(none) == arch.pte_pfn(back) == pfn
        assert back == pte
    values = np.array([value, arch.pfn_pte(pfn, arch.PAGE_NONE), 0], dtype=np.uint64)
    assert arch.ptes_pfn(values).tolist() == [arch.pte_pfn(int(v)) for v in values.tolist()]
    assert arch.ptes_present(values).tolist() == [arch.pte_present(int(v)) for v in values.tolist()]
