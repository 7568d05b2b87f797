"""Kernel-era profiles: one test per row of kernel-reference §7 that concerns these eras.

``unpaged`` is mm/memory.c at ee498ed7 (2.6.15-rc3 before the seed; §3 "before the seed", §4),
``seed`` is 6aab341e, ``2.6.15`` the seed plus the rc4 and rc6 fixes (§1, §3.7), ``2.6.26``
adds VM_MIXEDMAP and pte_special (§8). Each test names the kernel function and the version it
follows. They run on the session's ``--arch``; where an arch's special bit matters the test
says what the arch without one does.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from helpers import (
    FINAL_2_6_15,
    counts,
    finish,
    io_bytes,
    io_pfn,
    pattern,
    pfn_of,
    planted_pte,
    rss,
    vma_at,
)

from pfnmap import (
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    SEED,
    BusError,
    KernelBug,
    KernelError,
    KernelLivelock,
    Machine,
    OutOfMemory,
    Verdict,
)
from pfnmap.kernel.constants import (
    VM_INSERTPAGE,
    VM_IO,
    VM_MIXEDMAP,
    VM_PFNMAP,
    VM_READ,
    VM_RESERVED,
    VM_SHARED,
    VM_WRITE,
)
from pfnmap.kernel.normal_page import classify_pte
from pfnmap.kernel.remap import remap_pfn_range, vm_insert_mixed, vm_insert_page, vm_insert_pfn
from pfnmap.kernel.rules import ERAS, UNPAGED, V2_6_15, V2_6_26, VM_UNPAGED, UnknownEra, rules_for
from pfnmap.machine.invariants import InvariantError

RW = PROT_READ | PROT_WRITE
PFN_FLAGS = VM_IO | VM_RESERVED | VM_PFNMAP


@contextmanager
def era(arch_name: str, name: str, check: bool = True) -> Iterator[Machine]:
    """A 64 MiB machine under ``name``'s rules; afterwards the usual teardown checks."""
    machine = Machine(arch_name, "64M", era=name)
    yield machine
    if check:
        finish(machine)


def writable_prot(machine: Machine) -> int:
    """PAGE_SHARED: what a driver passes to get writable ptes in any vma."""
    return machine.arch.protection_map[VM_SHARED | VM_WRITE | VM_READ]


def remapped_private(machine: Machine, proc, npages: int, pfn: int, prot: int | None = None):
    """A private writable anonymous vma remapped whole onto ``pfn...``."""
    ps = machine.arch.page_size
    addr = proc.mmap(npages * ps)
    vma = vma_at(proc, addr)
    remap_pfn_range(vma, addr, pfn, npages * ps, vma.vm_page_prot if prot is None else prot)
    return addr, vma


# the era switch ---------------------------------------------------------------------------------
def test_era_names_map_to_rules(arch_name: str) -> None:
    """Machine(era=...) picks ERAS[name]; rules= takes a KernelRules or a name; the seed is the
    default; contradicting era= and rules= is refused; an unknown name is UnknownEra."""
    assert list(ERAS) == ["unpaged", "seed", "2.6.15", "2.6.26", "6.1"]
    assert ERAS["seed"] is SEED
    assert Machine(arch_name).rules is SEED
    for name, rules in ERAS.items():
        assert Machine(arch_name, era=name).rules is rules
        assert Machine(arch_name, rules=name).rules is rules
        assert Machine(arch_name, rules=rules, era=name).rules is rules
        assert repr(Machine(arch_name, era=name)).endswith(f"rules={name}>")
    with pytest.raises(ValueError, match="contradicts"):
        Machine(arch_name, rules=SEED, era="2.6.15")
    with pytest.raises(UnknownEra, match=r"known: unpaged, seed, 2\.6\.15, 2\.6\.26"):
        Machine(arch_name, era="2.6.16")
    with pytest.raises(ValueError, match="vm_normal_page_rule"):
        replace(rules_for("seed"), vm_normal_page_rule="guess")


def test_the_2_6_15_profile_agrees_with_the_rules_the_suite_already_used() -> None:
    """tests/helpers.FINAL_2_6_15 (the §7 "2.6.15 / 2.6.16" row) is the 2.6.15 profile's subset."""
    for field, value in FINAL_2_6_15.items():
        assert getattr(V2_6_15, field) == value, field


def test_era_arch_options_default_only_for_their_arch() -> None:
    """Before the seed, sparc64's io_remap_pfn_range had neither rc3's VM_PFNMAP conversion
    (vm_pgoff) nor rc4's >8K fix: the era defaults those sparc64 switches, options given to
    the Machine win, and other arches get none."""
    assert Machine("sparc64", era="unpaged").arch_options == {
        "sparc64_iomap_followup": False,
        "sparc64_iomap_rc4_fix": False,
    }
    mine = Machine("sparc64", era="unpaged", arch_options={"sparc64_iomap_rc4_fix": True})
    assert mine.arch_options["sparc64_iomap_rc4_fix"] is True
    assert Machine("x86-64", era="unpaged").arch_options == {}
    assert Machine("sparc64").arch_options == {}


def test_flag_names_follow_the_era() -> None:
    """Bit 0x400 was VM_UNPAGED before the seed (0b14c179) and VM_PFNMAP after (6aab341e)."""
    assert VM_UNPAGED == VM_PFNMAP == 0x400
    assert "VM_UNPAGED" in UNPAGED.flag_names(PFN_FLAGS)
    assert "VM_PFNMAP" in V2_6_15.flag_names(PFN_FLAGS)
    assert UNPAGED.as_dict()["copy_forcing_flags"] == "VM_UNPAGED|VM_HUGETLB|VM_NONLINEAR"


# before the seed: VM_UNPAGED and page_is_anon (§4, §7 row "unpaged") ---------------------------
def test_unpaged_remap_sets_unpaged_and_leaves_vm_pgoff(arch_name: str) -> None:
    """remap_pfn_range at ee498ed7: VM_IO|VM_RESERVED|VM_UNPAGED, vm_pgoff untouched; the ptes
    are raw because the vma is VM_UNPAGED, not because of any pfn arithmetic."""
    with era(arch_name, "unpaged") as m:
        proc = m.spawn("t")
        addr = proc.mmap(2 * m.arch.page_size)
        vma = vma_at(proc, addr)
        pgoff = vma.vm_pgoff
        remap_pfn_range(vma, addr, io_pfn(m, 3), 2 * m.arch.page_size, vma.vm_page_prot)
        assert vma.vm_flags & PFN_FLAGS == PFN_FLAGS
        assert vma.vm_pgoff == pgoff != io_pfn(m, 3)
        info = proc.lookup(addr)
        assert info.verdict is Verdict.RAW_PFN
        assert "VM_UNPAGED" in info.reason


def test_unpaged_page_is_anon_decides_in_unpaged_vmas(arch_name: str) -> None:
    """vm_normal_page's place before the seed (ee498ed7): in a VM_UNPAGED vma an invalid pfn is
    raw (no report), a RAM pfn is raw unless page_is_anon() says it is this vma's anonymous
    page at this address, which a COWed page is; outside VM_UNPAGED an invalid pfn is bad."""
    with era(arch_name, "unpaged") as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        fd = proc.open("/dev/mem")
        ram = proc.mmap(2 * ps, RW, MAP_PRIVATE, fd, offset=4 * ps)
        assert proc.lookup(ram).verdict is Verdict.RAW_PFN  # firmware page: not anon
        proc.write(ram, b"cow")
        assert proc.lookup(ram).verdict is Verdict.COWED
        assert "page_is_anon" in proc.lookup(ram).reason
        io = proc.mmap(ps, RW, MAP_SHARED, fd, offset=io_pfn(m) * ps)
        assert proc.lookup(io).verdict is Verdict.RAW_PFN
        anon = proc.mmap(ps)
        proc.write(anon, b"x")
        vma = vma_at(proc, anon)
        pte = m.arch.pfn_pte(io_pfn(m), vma.vm_page_prot)
        assert (
            classify_pte(
                m.arch,
                m.rules,
                m.phys.pfn_valid,
                vma.vm_flags,
                vma.vm_start,
                vma.vm_pgoff,
                anon,
                pte,
            )[0]
            is Verdict.BAD
        )
        assert m.bad_ptes == []


def test_unpaged_foreign_anon_page_through_devmem_is_raw(arch_name: str) -> None:
    """page_is_anon (ee498ed7) checks the page's anon_vma and address, so another task's
    anonymous page seen through /dev/mem MAP_PRIVATE is left alone ("try not to be deceived by
    foreign anonymous pages"), even after fork."""
    with era(arch_name, "unpaged") as m:
        ps = m.arch.page_size
        owner = m.spawn("owner")
        buf = owner.mmap(ps)
        owner.write(buf, pattern(ps, 3))
        pfn = pfn_of(owner, buf)
        before = counts(m, pfn)
        spy = m.spawn("spy")
        addr = spy.mmap(ps, RW, MAP_PRIVATE, spy.open("/dev/mem"), offset=pfn * ps)
        info = spy.lookup(addr)
        assert info.verdict is Verdict.RAW_PFN and "not page_is_anon" in info.reason
        child = spy.fork("child")
        assert counts(m, pfn) == before
        child.exit()
        spy.exit()
        assert counts(m, pfn) == before


def test_unpaged_fork_copies_raw_ptes_without_write_protect(arch_name: str) -> None:
    """copy_one_pte at ee498ed7 looks the page up first and copies a raw pte as it is: parent
    and child keep sharing a writable, young device pte. The seed write-protects the parent's
    pte in a COW vma and gives the child an old copy."""
    for name in ("unpaged", "seed"):
        with era(arch_name, name) as m:
            arch = m.arch
            proc = m.spawn("t")
            addr, _ = remapped_private(m, proc, 1, io_pfn(m), writable_prot(m))
            before = proc.lookup(addr).raw
            assert arch.pte_write(before) and arch.pte_young(before)
            child = proc.fork("child")
            parent_after, child_pte = proc.lookup(addr).raw, child.lookup(addr).raw
            if name == "unpaged":
                assert parent_after == child_pte == before
            else:
                assert not arch.pte_write(parent_after) and not arch.pte_write(child_pte)
                assert not arch.pte_young(child_pte)
            assert rss(child) == (0, 0)


def test_unpaged_cow_of_device_memory_is_bad_pte_and_oom(arch_name: str) -> None:
    """do_wp_page at ee498ed7: a pte whose pfn has no struct page is "Page table corrupted: show
    pte and kill process. Or it's an attempt to COW an out-of-map VM_UNPAGED entry":
    print_bad_pte and VM_FAULT_OOM. The seed copies it through the user address instead."""
    with era(arch_name, "unpaged") as m:
        proc = m.spawn("t")
        addr, _ = remapped_private(m, proc, 2, io_pfn(m))
        with pytest.raises(OutOfMemory, match="VM_FAULT_OOM"):
            proc.write(addr + 8, b"x")
        assert [r.caller for r in m.bad_ptes] == ["do_wp_page"]
        assert proc.lookup(addr).verdict is Verdict.RAW_PFN
        assert rss(proc) == (0, 0)
    with era(arch_name, "seed") as m:
        proc = m.spawn("t")
        addr, _ = remapped_private(m, proc, 2, io_pfn(m))
        proc.write(addr + 8, b"x")
        assert proc.lookup(addr).verdict is Verdict.COWED and m.bad_ptes == []


def test_unpaged_cow_of_a_ram_raw_pte_copies_from_the_struct_page(arch_name: str) -> None:
    """do_wp_page at ee498ed7: a raw pte with a valid pfn (VM_UNPAGED, not page_is_anon) is
    copied with copy_user_highpage from its struct page, so even an unaligned write gets the
    whole page unshifted (the seed's user-address copy is shifted until rc4); anon_rss + 1 and
    the RAM page's counts do not move."""
    with era(arch_name, "unpaged") as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        addr = proc.mmap(2 * ps, RW, MAP_PRIVATE, proc.open("/dev/mem"), offset=4 * ps)
        original = m.phys.read(4 * ps, ps)
        before = counts(m, 4)
        proc.write(addr + 16, b"tail")
        assert proc.read(addr, ps) == original[:16] + b"tail" + original[20:]
        assert counts(m, 4) == before
        assert rss(proc) == (0, 1)
        assert proc.lookup(addr).verdict is Verdict.COWED


def test_unpaged_gup_refuses_only_vm_io_and_follows_pfn_valid(arch_name: str) -> None:
    """get_user_pages / follow_page at ee498ed7: only VM_IO is refused, and follow_page takes any
    pfn_valid pfn as a page, so a raw RAM pte in a VM_UNPAGED vma without VM_IO is handed out
    with a reference. Device memory there spins (pfnmap: KernelLivelock)."""
    with era(arch_name, "unpaged") as m:
        proc = m.spawn("t")
        ram, vma = remapped_private(m, proc, 1, 9)
        vma.vm_flags &= ~VM_IO
        assert proc.get_user_pages(ram, 1) == [9]
        assert counts(m, 9) == (2, 0)
        proc.put_pages([9])
        io, vma = remapped_private(m, proc, 1, io_pfn(m))
        vma.vm_flags &= ~VM_IO
        with pytest.raises(KernelLivelock):
            proc.get_user_pages(io, 1)
        vma.vm_flags |= VM_IO
        with pytest.raises(KernelError) as info:
            proc.get_user_pages(io, 1)
        assert info.value.errno == errno.EFAULT


def test_unpaged_unaligned_write_fault_misses_page_is_anon(arch_name: str) -> None:
    """do_wp_page at ee498ed7 passes the fault address, not page aligned, to page_is_anon(),
    whose page_address_in_vma() is page aligned: a write-protect fault at an offset on this
    vma's own COWed page takes it for a raw pte, copies it again and never drops the old page
    (its count, mapcount and anon_rss stay). An aligned fault reuses the page. (Inferred from
    the code; the seed replaced page_is_anon a day later.)"""
    with era(arch_name, "unpaged", check=False) as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        addr = proc.mmap(ps, RW, MAP_PRIVATE, proc.open("/dev/mem"), offset=4 * ps)
        proc.write(addr, b"first")  # COW of the raw pte
        cowed = pfn_of(proc, addr)
        child = proc.fork("child")
        child.exit()  # the page is mapped once again, write-protected in the parent
        proc.write(addr, b"aligned")  # reuse: same page
        assert pfn_of(proc, addr) == cowed
        child = proc.fork("child")
        child.exit()
        proc.write(addr + 8, b"offset")  # page_is_anon(page, vma, addr + 8) is false
        assert pfn_of(proc, addr) != cowed
        assert counts(m, cowed) == (1, 1)
        assert rss(proc) == (0, 2)
        with pytest.raises(InvariantError, match=f"page {cowed:#x}"):
            m.check_invariants()


def test_unpaged_zero_page_in_a_vm_unpaged_hole_is_not_given_back(arch_name: str) -> None:
    """At ee498ed7 do_anonymous_page maps the ZERO_PAGE (file_rss + 1, a reference and a
    mapcount) in a hole of a VM_UNPAGED vma, but zap_pte_range drops only page_is_anon pages,
    so exit never gives them back (Hugh's next patch, "unpaged: ZERO_PAGE in VM_UNPAGED", is
    not in this profile; its diff was not read)."""
    with era(arch_name, "unpaged", check=False) as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        addr = proc.mmap(2 * ps)
        vma = vma_at(proc, addr)
        remap_pfn_range(vma, addr, io_pfn(m), ps, vma.vm_page_prot)  # partial: allowed
        zero = m.phys.zero_pfn
        before = counts(m, zero)
        proc.read(addr + ps, 8)
        assert pfn_of(proc, addr + ps) == zero and rss(proc) == (1, 0)
        assert proc.lookup(addr + ps).verdict is Verdict.RAW_PFN
        proc.exit()
        assert counts(m, zero) == (before[0] + 1, before[1] + 1)


# 2.6.15 final (§7 row "2.6.15 / 2.6.16") --------------------------------------------------------
def test_2615_non_cow_pfnmap_ptes_are_all_raw(arch_name: str) -> None:
    """vm_normal_page from rc6 ("Allow arbitrary shared PFNMAP's"): in a shared VM_PFNMAP vma
    every pte is raw whatever its pfn, so repeated remaps work. At the seed each call sets
    vm_pgoff to its own first pfn, counted from vm_start: after a second call at page 1 neither
    page fits, and fork and exit report both as bad ptes."""
    for name, verdict in (("seed", Verdict.BAD), ("2.6.15", Verdict.RAW_PFN)):
        with era(arch_name, name) as m:
            ps = m.arch.page_size
            proc = m.spawn("t")
            addr = proc.mmap(2 * ps, RW, MAP_SHARED, proc.open("/dev/zero"))
            vma = vma_at(proc, addr)
            remap_pfn_range(vma, addr, io_pfn(m, 40), ps, vma.vm_page_prot)
            remap_pfn_range(vma, addr + ps, io_pfn(m, 7), ps, vma.vm_page_prot)
            assert vma.vm_pgoff == (io_pfn(m, 7) if name == "seed" else 0)
            assert proc.lookup(addr).verdict is verdict
            assert proc.lookup(addr + ps).verdict is verdict
            proc.fork("child").exit()
            callers = ["copy_one_pte"] * 2 + ["zap_pte_range"] * 2
            assert [r.caller for r in m.bad_ptes] == (callers if name == "seed" else [])


def test_2615_partial_cow_remap_is_einval_and_pgoff_only_for_cow(arch_name: str) -> None:
    """remap_pfn_range in 2.6.15 final (rc6): a COW mapping must be remapped in one call
    covering [vm_start, vm_end), else EINVAL with the flags unchanged; only COW mappings get
    vm_pgoff = pfn. The seed accepts the partial remap and always sets vm_pgoff."""
    with era(arch_name, "2.6.15") as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        addr = proc.mmap(2 * ps)
        vma = vma_at(proc, addr)
        flags = vma.vm_flags
        with pytest.raises(KernelError) as info:
            remap_pfn_range(vma, addr, io_pfn(m), ps, vma.vm_page_prot)
        assert info.value.errno == errno.EINVAL and vma.vm_flags == flags
        shared = proc.mmap(ps, RW, MAP_SHARED, proc.open("/dev/zero"))
        svma = vma_at(proc, shared)
        pgoff = svma.vm_pgoff
        remap_pfn_range(svma, shared, io_pfn(m), ps, svma.vm_page_prot)
        assert svma.vm_pgoff == pgoff
    with era(arch_name, "seed") as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        addr = proc.mmap(2 * ps)
        vma = vma_at(proc, addr)
        remap_pfn_range(vma, addr, io_pfn(m), ps, vma.vm_page_prot)
        assert vma.vm_pgoff == io_pfn(m)


def test_2615_gup_refuses_pfnmap_without_vm_io(arch_name: str) -> None:
    """get_user_pages from rc6 (1ff80389 "don't try to follow PFNMAP pages"): VM_IO|VM_PFNMAP is
    refused (EFAULT) where the seed spins on the raw pte (pfnmap: KernelLivelock)."""
    for name in ("seed", "2.6.15", "2.6.26"):
        with era(arch_name, name) as m:
            proc = m.spawn("t")
            addr, vma = remapped_private(m, proc, 1, io_pfn(m))
            vma.vm_flags &= ~VM_IO
            if name == "seed":
                with pytest.raises(KernelLivelock):
                    proc.get_user_pages(addr, 1)
            else:
                with pytest.raises(KernelError) as info:
                    proc.get_user_pages(addr, 1)
                assert info.value.errno == errno.EFAULT


def test_2615_cow_copy_is_aligned(arch_name: str) -> None:
    """cow_user_page from rc4 ("cow_user_page: fix page alignment"): an unaligned write fault on a
    raw pte copies the page from its start; the seed's copy is shifted by the offset."""
    for name in ("seed", "2.6.15"):
        with era(arch_name, name) as m:
            ps = m.arch.page_size
            proc = m.spawn("t")
            addr, _ = remapped_private(m, proc, 2, io_pfn(m))
            device = io_bytes(m, 0, 2 * ps)
            proc.write(addr + 32, b"!")
            page = proc.read(addr, ps)
            if name == "2.6.15":
                assert page == device[:32] + b"!" + device[33:ps]
            else:
                assert page[33:] == device[32 + 33 : 32 + ps]


def test_2615_do_no_page_bug_on_pfnmap(arch_name: str) -> None:
    """do_no_page from rc4 ("pfnmap: do_no_page BUG_ON again"): a fault in the hole of a
    VM_PFNMAP vma with ->nopage is a BUG; the seed asks ->nopage."""
    for name in ("seed", "2.6.15"):
        with era(arch_name, name) as m:
            ps = m.arch.page_size
            m.add_device_buffer("/dev/buf", 2)
            proc = m.spawn("t")
            addr = proc.mmap(2 * ps, RW, MAP_SHARED, proc.open("/dev/buf"))
            vma = vma_at(proc, addr)
            remap_pfn_range(vma, addr, io_pfn(m), ps, vma.vm_page_prot)
            if name == "2.6.15":
                with pytest.raises(KernelBug, match="do_no_page"):
                    proc.read(addr + ps, 4)
            else:  # ->nopage is asked; with vm_pgoff now the pfn it finds no such page
                with pytest.raises(BusError):
                    proc.read(addr + ps, 4)


def test_2615_vm_insert_page_counts_and_marks_insertpage(arch_name: str) -> None:
    """vm_insert_page (rc4; VM_INSERTPAGE from rc6): the driver's page gets a reference, a file
    rmap and file_rss + 1; outside the vma is EFAULT, an occupied pte EBUSY, an anonymous page
    EINVAL, a free page EINVAL. The seed has no such function (ENOSYS here)."""
    with era(arch_name, "2.6.15") as m:
        ps = m.arch.page_size
        page = m.phys.alloc_page()
        proc = m.spawn("t")
        addr = proc.mmap(2 * ps, RW, MAP_SHARED, proc.open("/dev/zero"))
        vma = vma_at(proc, addr)
        assert vm_insert_page(vma, addr, page) == 0
        assert vma.vm_flags & VM_INSERTPAGE
        assert counts(m, page) == (2, 1) and rss(proc) == (1, 0)
        assert proc.lookup(addr).verdict is Verdict.NORMAL
        for where, target, err in (
            (addr + 2 * ps, page, errno.EFAULT),
            (addr, page, errno.EBUSY),
        ):
            with pytest.raises(KernelError) as info:
                vm_insert_page(vma, where, target)
            assert info.value.errno == err
        anon = proc.mmap(ps)
        proc.write(anon, b"a")
        with pytest.raises(KernelError) as info:
            vm_insert_page(vma, addr + ps, pfn_of(proc, anon))
        assert info.value.errno == errno.EINVAL
        proc.exit()
        assert counts(m, page) == (1, 0)
        m.phys.put_page(page)
    with era(arch_name, "seed") as m:
        proc = m.spawn("t")
        addr = proc.mmap(m.arch.page_size)
        with pytest.raises(KernelError) as info:
            vm_insert_page(vma_at(proc, addr), addr, m.phys.zero_pfn)
        assert info.value.errno == errno.ENOSYS


def test_2615_insertpage_forces_copy_at_fork(arch_name: str) -> None:
    """copy_page_range from rc6 ("Make sure we copy pages inserted with vm_insert_page() on
    fork"): a VM_INSERTPAGE vma without anon_vma is copied at fork, so the child sees the
    driver's page; without VM_INSERTPAGE in the forcing flags (rc4, rc5) the child would refault
    a vma with no ->nopage and read zeroes."""
    for forcing in (True, False):
        with era(arch_name, "2.6.15") as m:
            if not forcing:  # rc4/rc5: vm_insert_page without the fork fix
                m.rules = replace(V2_6_15, copy_forcing_flags=SEED.copy_forcing_flags)
            ps = m.arch.page_size
            page = m.phys.alloc_page()
            m.phys.write(page * ps, b"driver")
            proc = m.spawn("t")
            addr = proc.mmap(ps)  # a vma with no ->nopage and no anon_vma yet
            vm_insert_page(vma_at(proc, addr), addr, page)
            child = proc.fork("child")
            if forcing:
                assert child.read(addr, 6) == b"driver" and counts(m, page) == (3, 2)
                assert rss(child) == (1, 0)
            else:
                assert child.lookup(addr).raw == 0
                assert child.read(addr, 6) == bytes(6)
            child.exit()
            proc.exit()
            m.phys.put_page(page)


# 2.6.26: VM_MIXEDMAP and pte_special (§8) -------------------------------------------------------
def test_2626_remap_marks_ptes_special_where_the_arch_has_a_bit(arch_name: str) -> None:
    """remap_pfn_range in 2.6.26 pte_mkspecial()s every pte, and vm_normal_page then asks only
    the bit: a special pte is raw even where the vm_pgoff rule would fail. On an arch without a
    bit (sparc64) pte_mkspecial is a no-op and the 2.6.15 rules decide."""
    with era(arch_name, "2.6.26") as m:
        arch = m.arch
        proc = m.spawn("t")
        addr, vma = remapped_private(m, proc, 2, io_pfn(m))
        pte = proc.lookup(addr).raw
        assert arch.pte_special(pte) == bool(arch.special_mask)
        vma.vm_pgoff += 1  # break the linear rule
        info = proc.lookup(addr)
        if arch.special_mask:
            assert info.verdict is Verdict.RAW_PFN and "pte_special" in info.reason
        else:
            assert info.verdict is Verdict.BAD
        vma.vm_pgoff -= 1


def test_2626_x86_special_bit_is_avl_bit_9() -> None:
    """x86's _PAGE_SPECIAL is _PAGE_BIT_UNUSED1 = bit 9, the lowest software-available bit
    ("x86: implement pte_special", 2008); sparc64 spares none in pfnmap."""
    for name in ("x86-64", "x86-2level", "x86-pae", "x86-la57"):
        arch = Machine(name).arch
        assert arch.special_mask == 1 << 9
        assert arch.pte_format.fields["avl"].shift == 9
        assert arch.pte_mkspecial(0) == 0x200 and arch.pte_special(0x200)
    assert Machine("sparc64").arch.special_mask == 0


def test_2626_cowed_page_is_not_special(arch_name: str) -> None:
    """do_wp_page in 2.6.26 installs an ordinary pte for the copy: not special, a COWed page;
    fork keeps the special bit on the raw pte in both tasks."""
    with era(arch_name, "2.6.26") as m:
        arch = m.arch
        proc = m.spawn("t")
        addr, _ = remapped_private(m, proc, 2, io_pfn(m))
        proc.write(addr, b"x")
        assert not arch.pte_special(proc.lookup(addr).raw)
        assert proc.lookup(addr).verdict is Verdict.COWED
        child = proc.fork("child")
        raw_child = child.lookup(addr + m.arch.page_size).raw
        assert arch.pte_special(raw_child) == bool(arch.special_mask)
        assert child.lookup(addr + m.arch.page_size).verdict is Verdict.RAW_PFN


def test_2626_mprotect_keeps_the_special_bit(arch_name: str) -> None:
    """change_protection in 2.6.26: pte_modify keeps _PAGE_SPECIAL (x86's _PAGE_CHG_MASK has it
    in the kernels that set it), so mprotect of a remapped vma leaves its ptes raw."""
    with era(arch_name, "2.6.26") as m:
        proc = m.spawn("t")
        fd = proc.open("/dev/mem")
        addr = proc.mmap(
            m.arch.page_size, RW, MAP_SHARED, fd, offset=io_pfn(m) << m.arch.page_shift
        )
        proc.mprotect(addr, m.arch.page_size, PROT_READ)
        info = proc.lookup(addr)
        assert info.verdict is Verdict.RAW_PFN
        assert m.arch.pte_special(info.raw) == bool(m.arch.special_mask)


def test_2626_bad_pfn_is_vm_bug_on(arch_name: str) -> None:
    """vm_normal_page in 2.6.26: the pfn_valid check is VM_BUG_ON(!pfn_valid(pfn)) instead of
    print_bad_pte (pfnmap models a CONFIG_DEBUG_VM kernel: KernelBug); seed: print_bad_pte."""
    with era(arch_name, "2.6.26", check=False) as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        addr = proc.mmap(ps)
        proc.write(addr, b"x")
        pte = m.arch.pfn_pte(io_pfn(m), vma_at(proc, addr).vm_page_prot)
        with planted_pte(proc, addr, pte), pytest.raises(KernelBug, match="VM_BUG_ON"):
            proc.fork("child")
        assert m.bad_ptes == []


def test_2626_mixedmap_rule_and_vm_insert_mixed(arch_name: str) -> None:
    """VM_MIXEDMAP (2.6.26): vm_insert_mixed puts a pfn_valid pfn in as a refcounted page
    (insert_page: reference, mapcount, file_rss) where the arch has no special bit, and as a
    special raw pte where it has one; a pfn without a struct page is always raw; vm_normal_page
    in a VM_MIXEDMAP vma says normal iff pfn_valid (without the bit)."""
    with era(arch_name, "2.6.26") as m:
        arch = m.arch
        ps = arch.page_size
        page = m.phys.alloc_page()
        proc = m.spawn("t")
        addr = proc.mmap(3 * ps, RW, MAP_PRIVATE, proc.open("/dev/zero"))
        vma = vma_at(proc, addr)
        vma.vm_flags |= VM_MIXEDMAP
        vm_insert_mixed(vma, addr, page)
        vm_insert_mixed(vma, addr + 2 * ps, io_pfn(m, 5))  # any order: no linear rule
        ram, io = proc.lookup(addr), proc.lookup(addr + 2 * ps)
        assert io.verdict is Verdict.RAW_PFN
        if arch.special_mask:
            assert ram.verdict is Verdict.RAW_PFN and counts(m, page) == (1, 0)
            assert rss(proc) == (0, 0)
        else:
            assert ram.verdict is Verdict.NORMAL and "VM_MIXEDMAP" in ram.reason
            assert counts(m, page) == (2, 1) and rss(proc) == (1, 0)
        proc.write(addr + 8, b"cow")  # a COW of the RAM page works in either case
        assert pfn_of(proc, addr) != page and rss(proc) == (0, 1)
        assert counts(m, page) == (1, 0)
        proc.exit()
        m.phys.put_page(page)


def test_2626_driver_api_bug_ons(arch_name: str) -> None:
    """vm_insert_mixed BUG_ONs outside VM_MIXEDMAP; vm_insert_pfn BUG_ONs on a COW VM_PFNMAP vma
    and on a pfn_valid pfn in VM_MIXEDMAP (2.6.26 memory.c). Neither exists before 2.6.26."""
    with era(arch_name, "2.6.26") as m:
        ps = m.arch.page_size
        proc = m.spawn("t")
        addr = proc.mmap(ps)
        vma = vma_at(proc, addr)
        with pytest.raises(KernelBug, match="VM_MIXEDMAP"):
            vm_insert_mixed(vma, addr, io_pfn(m))
        vma.vm_flags |= VM_PFNMAP
        with pytest.raises(KernelBug, match="COW"):
            vm_insert_pfn(vma, addr, io_pfn(m))
        vma.vm_flags ^= VM_PFNMAP | VM_MIXEDMAP
        with pytest.raises(KernelBug, match="struct page"):
            vm_insert_pfn(vma, addr, 3)
        vma.vm_flags &= ~VM_MIXEDMAP
    with era(arch_name, "2.6.15") as m:
        proc = m.spawn("t")
        addr = proc.mmap(m.arch.page_size)
        with pytest.raises(KernelError) as info:
            vm_insert_mixed(vma_at(proc, addr), addr, io_pfn(m))
        assert info.value.errno == errno.ENOSYS


def test_2626_anonymous_read_fault_gets_its_own_page(arch_name: str) -> None:
    """do_anonymous_page from 2.6.24 (so 2.6.26): no ZERO_PAGE on a read fault, a zeroed page of
    the task's own (anon_rss + 1, dirty, writable); 2.6.15 maps the ZERO_PAGE (file_rss + 1)."""
    for name, expect in (("2.6.15", (1, 0)), ("2.6.26", (0, 1))):
        with era(arch_name, name) as m:
            proc = m.spawn("t")
            addr = proc.mmap(m.arch.page_size)
            assert proc.read(addr, 4) == bytes(4)
            assert rss(proc) == expect
            zero = pfn_of(proc, addr) == m.phys.zero_pfn
            assert zero == (name == "2.6.15")
            assert m.arch.pte_write(proc.lookup(addr).raw) == (name == "2.6.26")


def test_2626_profile_is_2615_plus_its_own_fields() -> None:
    """2.6.26 keeps every 2.6.15 decision (is_cow test, whole-vma COW remaps, gup refusing
    VM_PFNMAP, aligned copy, VM_INSERTPAGE forcing copy_page_range: VM_MIXEDMAP was not added
    to that list in 2.6.26) and adds VM_MIXEDMAP, pte_special, the VM_BUG_ON, no ZERO_PAGE, and
    2.6.16's madvise (MADV_REMOVE/DONTFORK/DOFORK, the advice checked before the range)."""
    same = {k for k, v in V2_6_15.as_dict().items() if V2_6_26.as_dict()[k] == v}
    changed = set(V2_6_15.as_dict()) - same
    assert changed == {
        "name",
        "release",
        "vm_mixedmap",
        "pte_special",
        "bad_pfn_vm_bug_on",
        "anon_read_zero_page",
        "madvise_advices",
        "madvise_advice_checked_first",
    }
    assert not V2_6_26.copy_forcing_flags & VM_MIXEDMAP
