"""The page-table walker: leaves as the emulator made them, large pages, canonical addresses,
problem records for bad entries, range merging, hints and their verdicts."""

from __future__ import annotations

import csv
import io
import itertools
import json

import numpy as np
import pytest
from decode_synth import Tables
from hypothesis import given, settings
from hypothesis import strategies as st

from pfnmap import MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE, Machine
from pfnmap.arch.vector import VecMap, VecPredicate, table_ops
from pfnmap.decode.dump import build_scenario, machine_hints
from pfnmap.decode.hints import (
    UNKNOWN,
    HintError,
    Hints,
    VmaHint,
    format_vmas,
    parse_ram_ranges,
    parse_vm_flags,
    parse_vmas,
)
from pfnmap.decode.image import PhysImage, Segment, machine_image
from pfnmap.decode.walker import (
    BUDGET,
    LOOP,
    MIN_TABLE_BUDGET,
    MISALIGNED,
    NON_CANONICAL,
    OUTSIDE,
    RESERVED,
    TRUNCATED,
    Leaf,
    Problem,
    Range,
    Walker,
    WalkError,
    describe_flags,
    leaves,
    ranges,
)
from pfnmap.kernel.constants import VM_IO, VM_MAYWRITE, VM_PFNMAP, VM_READ, VM_SHARED, VM_WRITE
from pfnmap.plugins import BUILTIN_ARCH_MODULES
from pfnmap.plugins.manager import default_registry

ARCHES = default_registry().names()
X86 = ["x86-64", "x86-2level", "x86-pae", "x86-la57"]


def arch_of(name: str):
    return default_registry().get(name)


def split(items) -> tuple[list, list[Problem]]:
    out, problems = [], []
    for it in items:
        (problems if isinstance(it, Problem) else out).append(it)
    return out, problems


# the emulator's own tables ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ARCHES)
def test_story_leaves_and_verdicts_equal_the_emulator(name: str) -> None:
    m = build_scenario(name)
    img = machine_image(m)
    for proc in m.processes.values():
        hints = machine_hints(m, proc)
        got, problems = split(leaves(Walker(img, m.arch, proc.mm.pgd), m.arch, hints))
        assert not problems
        expected = {(a, pte) for v in proc.vmas for a, pte in proc.ptes(v)}
        assert {(lf.va, lf.raw) for lf in got} == expected
        assert [lf.va for lf in got] == sorted(lf.va for lf in got)
        for lf in got:
            info = proc.lookup(lf.va)
            assert lf.verdict == info.verdict
            assert lf.pa >> m.arch.page_shift == info.pfn
            assert lf.present == info.present
            assert lf.size == m.arch.page_size and lf.name == "pte"
        verdicts = {lf.verdict for lf in got}
        assert {"raw pfn", "normal page"} <= verdicts


def test_without_ram_ranges_only_undecidable_ptes_are_unknown() -> None:
    m = build_scenario("x86-64")
    proc = next(iter(m.processes.values()))
    vmas = machine_hints(m, proc).vmas
    got, _ = split(leaves(Walker(machine_image(m), m.arch, proc.mm.pgd), m.arch, Hints(None, vmas)))
    for lf in got:
        truth = proc.lookup(lf.va).verdict
        if truth == "raw pfn" and proc.mm.find_vma(lf.va).vm_flags & VM_PFNMAP:
            # the linear rule pfn == vm_pgoff + offset needs no RAM knowledge
            assert lf.verdict == truth or lf.verdict == UNKNOWN
        if lf.verdict == UNKNOWN:
            assert "pfn_valid" in lf.reason and "--ram" in lf.reason
    assert any(lf.verdict == "raw pfn" for lf in got)
    assert any(lf.verdict == UNKNOWN for lf in got)


def test_protnone_ptes_are_leaves_that_linux_calls_present() -> None:
    m = Machine("x86-64", "16M")
    p = m.spawn()
    a = p.mmap(2 * 4096)
    p.write(a, b"x")
    p.mprotect(a, 2 * 4096, PROT_NONE)
    (lf,) = [x for x in leaves(Walker(machine_image(m), m.arch, p.mm.pgd), m.arch)]
    assert lf.present and not lf.raw & 1  # pte_present via PROTNONE, hardware bit clear
    assert "protnone" in describe_flags(m.arch, lf.level, lf.raw)


# large pages, canonical addresses --------------------------------------------------------------
@pytest.mark.parametrize("name", X86)
def test_large_page_leaves(name: str) -> None:
    arch = arch_of(name)
    t = Tables(arch)
    prot = arch.protection_map[VM_READ | VM_WRITE | VM_SHARED]
    want = []
    for size in arch.large_page_sizes():
        level = arch.large_page_level(size)
        va = 4 * size if size < 1 << 30 else size
        pfn = (8 * size) >> arch.page_shift
        entry = arch.mk_large_entry(size, pfn, prot)
        t.set_leaf(va, level, entry)
        want.append((va, pfn << arch.page_shift, size, arch.leaf_formats[level].name))
    got, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert not problems
    assert sorted((lf.va, lf.pa, lf.size, lf.name) for lf in got) == sorted(want)
    for lf in got:
        assert "pse" in describe_flags(arch, lf.level, lf.raw)


def test_pse36_bits_reach_above_4g() -> None:
    arch = arch_of("x86-2level")
    t = Tables(arch)
    fmt = arch.leaf_formats[0]
    entry = fmt.encode(present=True, rw=True, user=True, pse=True, large_pfn=0x3, pse36_pa=0x5)
    t.set_leaf(0x40000000, 0, entry)
    (lf,) = [x for x in leaves(Walker(t.image(), arch, t.root), arch)]
    assert lf.pa == (0x5 << 32) | (0x3 << 22)
    assert lf.size == 4 << 20


@pytest.mark.parametrize(("name", "bits"), [("x86-64", 48), ("x86-la57", 57)])
def test_top_half_addresses_are_sign_extended(name: str, bits: int) -> None:
    arch = arch_of(name)
    t = Tables(arch)
    va = (1 << 64) - (1 << (bits - 1)) + 0x5000  # canonical, top half
    t.set_leaf(va, len(arch.levels) - 1, arch.pfn_pte(0x77, arch.PAGE_SHARED))
    (lf,) = [x for x in leaves(Walker(t.image(), arch, t.root), arch)]
    assert lf.va == va
    assert lf.pa == 0x77 << 12


def test_sparc64_hole_is_non_canonical_and_top_half_is_sign_extended() -> None:
    arch = arch_of("sparc64")
    t = Tables(arch, size=4 << 20)
    pte = arch.pfn_pte(0x40, arch.PAGE_SHARED)
    top = (1 << 64) - (1 << 43) + 0x2000  # 0xfffff80000002000
    t.set_leaf(top, 2, pte)
    t.set_leaf(0x4000, 2, pte)
    hole = t.alloc()  # a pmd table under a pgd slot in the hole (index 700)
    t.write(0, t.root, 700, arch.mk_table_entry(0, hole))
    got, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert [lf.va for lf in got] == [0x4000, top]
    assert [p.kind for p in problems] == [NON_CANONICAL]
    assert problems[0].entry_addr == t.root + 700 * 4
    assert problems[0].level_name == "pgd"


# problems --------------------------------------------------------------------------------------
def _x86_64_with_two_pages():
    arch = arch_of("x86-64")
    t = Tables(arch, size=64 * 4096)
    pte = arch.pfn_pte(0x123, arch.PAGE_SHARED)
    t.set_leaf(0x1000, 3, pte)
    t.set_leaf(0x40000000, 3, pte)  # another pud slot: another pmd and pte table
    return arch, t


def test_an_entry_pointing_back_to_an_ancestor_is_a_loop() -> None:
    arch, t = _x86_64_with_two_pages()
    pmd = t.table_for(0x1000, 2)
    t.write(2, pmd, 5, arch.mk_table_entry(2, t.root))  # a pmd entry pointing at the pgd
    got, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert [p.kind for p in problems] == [LOOP]
    assert problems[0].entry_addr == pmd + 5 * 8
    assert problems[0].raw == arch.mk_table_entry(2, t.root)
    assert problems[0].va == 5 << 21
    assert len(got) == 2  # the walk went on


def test_entries_outside_the_image_and_truncated_tables() -> None:
    arch, t = _x86_64_with_two_pages()
    pmd = t.table_for(0x1000, 2)
    t.write(2, pmd, 7, arch.mk_table_entry(2, 0x10_0000_0000))
    img = t.image()
    cut = PhysImage([Segment(0, t.next - 2048)], bytes(t.buf[: t.next - 2048]), "cut", "raw")
    got, problems = split(leaves(Walker(img, arch, t.root), arch))
    assert [p.kind for p in problems] == [OUTSIDE]
    assert "outside the image" in problems[0].detail
    assert len(got) == 2
    # the last table allocated (a pte table) is cut off half way: the file is truncated
    seg = Segment(0, len(t.buf), 0, len(t.buf), t.next - 2048)
    trunc = PhysImage([seg], bytes(t.buf), "trunc", "raw")
    got, problems = split(leaves(Walker(trunc, arch, t.root), arch))
    assert sorted(p.kind for p in problems) == [OUTSIDE, TRUNCATED]
    assert len(got) == 1
    got, problems = split(leaves(Walker(cut, arch, t.root), arch))
    assert sorted(p.kind for p in problems) == [OUTSIDE, OUTSIDE]


def test_reserved_bits_are_reported_and_the_entry_still_decoded() -> None:
    arch, t = _x86_64_with_two_pages()
    pa_high = arch.pte_format.mask("pa_high")
    slot = t.set_leaf(0x2000, 3, arch.pfn_pte(0x124, arch.PAGE_SHARED) | (pa_high & -pa_high))
    # a 2 MiB leaf whose frame is not 2 MiB aligned sets reserved_pa bits
    large = arch.mk_large_entry(2 << 20, 0, arch.PAGE_SHARED) | (1 << 13)
    t.set_leaf(0x80000000, 2, large)
    got, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert [p.kind for p in problems] == [RESERVED, RESERVED]
    assert {p.entry_addr for p in problems} >= {slot}
    assert "pa_high" in problems[0].detail or "pa_high" in problems[1].detail
    assert any("reserved_pa" in p.detail for p in problems)
    assert len(got) == 4


def test_pae_pdpt_reserved_bits() -> None:
    arch = arch_of("x86-pae")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x1000, 2, arch.pfn_pte(0x10, arch.PAGE_SHARED))
    entry = t.read(0, t.root, 0)
    t.write(0, t.root, 0, entry | 0x2)  # RW in a PDPT entry is reserved
    got, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert [(p.kind, p.level_name) for p in problems] == [(RESERVED, "pgd")]
    assert "reserved_2_1" in problems[0].detail
    assert len(got) == 1


def test_sparc64_table_pointer_not_aligned_to_its_table() -> None:
    arch = arch_of("sparc64")
    t = Tables(arch, size=1 << 20)
    t.set_leaf(0x4000, 2, arch.pfn_pte(0x40, arch.PAGE_SHARED))
    t.write(0, t.root, 3, (t.next + 2048) >> 11)
    got, problems = split(leaves(Walker(t.image(), arch, t.root), arch))
    assert [p.kind for p in problems] == [MISALIGNED]
    assert len(got) == 1


def test_a_walk_over_shared_tables_stops_at_its_budget() -> None:
    arch = arch_of("x86-64")
    t = Tables(arch, size=8 * 4096)
    t.set_leaf(0x1000, 3, arch.pfn_pte(0x10, arch.PAGE_SHARED))
    pmd = t.table_for(0x1000, 2)
    pte_table = arch.table_entry_paddr(2, t.read(2, pmd, 0))
    pud = t.table_for(0x1000, 1)
    for i in range(512):  # every pmd entry and every pud entry share one table
        t.write(2, pmd, i, arch.mk_table_entry(2, pte_table))
        t.write(1, pud, i, arch.mk_table_entry(1, pmd))
    w = Walker(t.image(), arch, t.root, max_tables=300)
    got, problems = split(leaves(w, arch))
    assert w.stopped and w.finished
    assert [p.kind for p in problems] == [BUDGET]
    assert w.tables_read == 300
    assert len(got) == 297  # one leaf per pte table read (300 - the pgd, pud and pmd reads)
    default = Walker(t.image(), arch, t.root)
    assert default.max_tables == 2 * 8 + MIN_TABLE_BUDGET


@pytest.mark.parametrize(
    ("root", "message"),
    [(0x100000, "outside the image"), (0x1008, "not aligned"), (-1, "not a physical")],
)
def test_roots_that_cannot_start_a_walk(root: int, message: str) -> None:
    arch, t = _x86_64_with_two_pages()
    with pytest.raises(WalkError, match=message):
        Walker(t.image(), arch, root)


def test_root_cut_off_by_the_end_of_the_file() -> None:
    arch, t = _x86_64_with_two_pages()
    seg = Segment(0, len(t.buf), 0, len(t.buf), 100)
    with pytest.raises(WalkError, match="cut off"):
        Walker(PhysImage([seg], bytes(t.buf), "x", "raw"), arch, 0)


def test_pae_root_needs_only_32_byte_alignment() -> None:
    arch = arch_of("x86-pae")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x1000, 2, arch.pfn_pte(0x10, arch.PAGE_SHARED))
    buf = bytearray(t.buf)
    buf[0x20:0x40] = buf[t.root : t.root + 32]  # the same PDPT again at 0x20
    img = PhysImage([Segment(0, len(buf))], bytes(buf), "x", "raw")
    (lf,) = [x for x in leaves(Walker(img, arch, 0x20), arch)]
    assert lf.va == 0x1000


# ranges ------------------------------------------------------------------------------------------
@st.composite
def leaf_layouts(draw):
    """Random pte leaves of x86-64 in a few runs: (va page, pfn, writable) triples."""
    out = {}
    for _ in range(draw(st.integers(1, 6))):
        va = draw(st.integers(0, 4000))
        pfn = draw(st.integers(0x100, 0x10000))
        w = draw(st.booleans())
        for k in range(draw(st.integers(1, 40))):
            step = draw(st.sampled_from([1, 1, 1, 2]))
            out[va + k] = (pfn + k * step, w)
    return out


@settings(max_examples=60, deadline=None)
@given(layout=leaf_layouts())
def test_ranges_are_the_maximal_runs_of_leaves(layout) -> None:
    arch = arch_of("x86-64")
    t = Tables(arch, size=64 * 4096)
    for page, (pfn, w) in layout.items():
        prot = arch.PAGE_SHARED if w else arch.PAGE_READONLY
        t.set_leaf(page << 12, 3, arch.pfn_pte(pfn, prot))
    img = t.image()
    lfs = [x for x in leaves(Walker(img, arch, t.root), arch)]
    rs = [x for x in ranges(Walker(img, arch, t.root), arch)]
    assert all(isinstance(r, Range) for r in rs)
    # the ranges cover exactly the leaves, in order
    expanded = [
        (r.va + k * r.page_size, r.pa + k * r.page_size) for r in rs for k in range(r.pages)
    ]
    assert expanded == [(lf.va, lf.pa) for lf in lfs]
    flag_mask = table_ops(arch).levels[3].leaf_flag_mask
    for r in rs:
        assert r.size == r.pages * r.page_size
    for a, b in itertools.pairwise(rs):  # maximal: no two neighbours could merge
        assert not (a.end == b.va and a.pa + a.size == b.pa and (a.raw ^ b.raw) & flag_mask == 0)


def test_ranges_break_where_the_verdict_changes() -> None:
    arch = arch_of("x86-64")
    t = Tables(arch, size=64 * 4096)
    for k in range(4):
        t.set_leaf(0x10000 + k * 4096, 3, arch.pfn_pte(0x100 + k, arch.PAGE_SHARED))
    flags = VM_READ | VM_SHARED | VM_IO | VM_PFNMAP
    hints = Hints([(0, 0x101000)], [VmaHint(0x10000, 0x14000, flags, 0x100)])
    rs = [x for x in ranges(Walker(t.image(), arch, t.root), arch, hints)]
    assert [(r.va, r.pages, r.verdict) for r in rs] == [(0x10000, 4, "raw pfn")]
    # a private (COW) PFN mapping: pfns off the linear rule are COWed or bad
    hints = Hints(
        [(0, 0x102000)], [VmaHint(0x10000, 0x14000, VM_READ | VM_MAYWRITE | VM_PFNMAP, 0)]
    )
    rs = [x for x in ranges(Walker(t.image(), arch, t.root), arch, hints)]
    assert [(r.pages, r.verdict) for r in rs] == [(2, "COWed page in a PFN vma"), (2, "bad pte")]


# vectorised operations -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ARCHES)
def test_vectorised_operations_agree_with_the_arch_methods(name: str) -> None:
    arch = arch_of(name)
    ops = table_ops(arch)
    rng = np.random.default_rng(7)
    for i, lv in enumerate(ops.levels):
        width = lv.width
        vals = rng.integers(0, 1 << 62, size=2000, dtype=np.uint64) >> np.uint64(64 - width)
        vals = np.concatenate([vals, vals | np.uint64(1), vals & np.uint64(0x1FF)])
        ints = vals.tolist()
        if i == len(ops.levels) - 1:
            assert lv.present(vals).tolist() == [arch.pte_present(v) for v in ints]
        else:
            assert lv.present(vals).tolist() == [arch.table_entry_present(i, v) for v in ints]
            assert lv.leaf(vals).tolist() == [arch.table_entry_leaf(i, v) for v in ints]
            assert lv.table_paddr(vals).tolist() == [arch.table_entry_paddr(i, v) for v in ints]
        if lv.leaf_paddr is not None:
            assert lv.leaf_paddr(vals).tolist() == [arch.leaf_paddr(i, v) for v in ints]
    if default_registry().owners[name] in BUILTIN_ARCH_MODULES:
        # the built-in arches need no per-entry calls; a plugin's may (riscv's leaf test,
        # "present and any of R/W/X", has no single-mask form and is decoded per entry)
        assert all(ops.vectorised().values())


def test_operations_that_fit_no_mask_form_are_called_per_entry() -> None:
    square = VecMap(lambda e: (e * e) & 0xFFFF, 16)
    assert not square.vectorised
    vals = np.array([3, 5, 300], dtype=np.uint64)
    assert square(vals).tolist() == [9, 25, (300 * 300) & 0xFFFF]
    parity = VecPredicate(lambda e: bin(e).count("1") % 2 == 1, 16)
    assert not parity.vectorised
    assert parity(np.array([3, 7, 300], dtype=np.uint64)).tolist() == [False, True, False]
    any_bit = VecPredicate(lambda e: bool(e & 0x81), 16)
    assert any_bit.form == ("any", 0x81)
    all_bits = VecPredicate(lambda e: e & 0x81 == 0x81, 16)
    assert all_bits.form == ("all", 0x81)
    moved = VecMap(lambda e: ((e & 0xF0) << 4) | (e & 1), 16)
    assert moved.vectorised and moved(vals).tolist() == [1, 1, 0x200]


# hints parsing ---------------------------------------------------------------------------------
def test_vma_file_format_round_trips() -> None:
    vmas = [
        VmaHint(0x1000, 0x3000, VM_READ | VM_SHARED | VM_IO | VM_PFNMAP, 0xF0000),
        VmaHint(0x7000, 0x8000, 0x844FB, 0x7),
    ]
    text = format_vmas(vmas)
    assert parse_vmas(text) == vmas
    assert parse_vmas("0x1000-0x2000 read|pfnmap 0x10  # comment\n\n") == [
        VmaHint(0x1000, 0x2000, VM_READ | VM_PFNMAP, 0x10)
    ]
    assert parse_vm_flags("0x400") == VM_PFNMAP


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1000-2000 VM_READ", "expected 'START-END FLAGS PGOFF'"),
        ("2000-1000 VM_READ 0", "not above start"),
        ("1000-2000 VM_BOGUS 0", "'VM_BOGUS' is not a vm flag"),
        ("zz-2000 VM_READ 0", "'zz' is not a number"),
        ("1000-2000 0xzz 0", "not a hexadecimal number"),
    ],
)
def test_bad_vma_lines_name_their_line(text: str, message: str) -> None:
    with pytest.raises(HintError, match=message) as exc:
        parse_vmas("# header\n" + text, "f.vmas")
    assert str(exc.value).startswith("f.vmas:2:")


def test_ram_ranges() -> None:
    assert parse_ram_ranges("0-0x4000000, 0x100000000+1G") == [
        (0, 0x4000000),
        (0x100000000, 0x140000000),
    ]
    assert parse_ram_ranges("0+64M") == [(0, 64 << 20)]
    for bad in ("", "5", "3-1", "0-10,5-20", "x-y"):
        with pytest.raises(HintError):
            parse_ram_ranges(bad)


def test_overlapping_vmas_are_refused() -> None:
    with pytest.raises(HintError, match="overlap"):
        Hints(None, [VmaHint(0, 0x2000, 0, 0), VmaHint(0x1000, 0x3000, 0, 0)])


def test_hint_verdict_for_large_pages_and_addresses_outside_vmas() -> None:
    arch = arch_of("x86-64")
    t = Tables(arch)
    t.set_leaf(0x200000, 2, arch.mk_large_entry(2 << 20, 0x400, arch.PAGE_SHARED))
    t.set_leaf(0x1000, 3, arch.pfn_pte(0x10, arch.PAGE_SHARED))
    hints = Hints([(0, 1 << 30)], [VmaHint(0x200000, 0x400000, VM_READ, 0)])
    got = {lf.va: lf for lf in leaves(Walker(t.image(), arch, t.root), arch, hints)}
    assert got[0x1000].verdict is None and "no vma" in got[0x1000].reason
    assert got[0x200000].verdict is None and "large-page" in got[0x200000].reason


def test_leaf_records_carry_entry_addresses() -> None:
    m = Machine("x86-pae", "16M")
    p = m.spawn()
    fd = p.open("/dev/mem")
    a = p.mmap(4096, PROT_READ, MAP_SHARED, fd, offset=m.phys.io_regions[0].start)
    b = p.mmap(8192, PROT_READ | PROT_WRITE)
    p.write(b + 4096, b"x")
    from pfnmap.kernel.pgtable import pte_offset

    for lf in leaves(Walker(machine_image(m), m.arch, p.mm.pgd), m.arch):
        assert isinstance(lf, Leaf)
        assert lf.entry_addr == pte_offset(p.mm, lf.va)
    assert {lf.va for lf in leaves(Walker(machine_image(m), m.arch, p.mm.pgd), m.arch)} == {
        a,
        b + 4096,
    }


# the command line ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def story_files(tmp_path_factory) -> dict:
    from pfnmap.decode.dump import dump_machine

    tmp = tmp_path_factory.mktemp("story")
    m = build_scenario("x86-64")
    raw = dump_machine(m, tmp / "story.img", "raw")
    dump_machine(m, tmp / "story.elf", "elf")
    pae = build_scenario("x86-pae")
    dump_machine(pae, tmp / "pae.elf", "elf")
    root = raw["processes"][0]["root"]
    return {"dir": tmp, "root": root, "vmas": str(tmp / raw["processes"][0]["vmas_file"])}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    from pfnmap.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _bad_inputs(files: dict) -> list[tuple[list[str], int, str]]:
    d, root = files["dir"], files["root"]
    img, elf = str(d / "story.img"), str(d / "story.elf")
    (d / "empty.img").write_bytes(b"")
    exe = bytearray((d / "story.elf").read_bytes()[:4096])
    exe[16] = 2  # e_type ET_EXEC
    (d / "exec.elf").write_bytes(bytes(exe))
    (d / "bad.vmas").write_text("1000-2000 VM_NOPE 0\n")
    decode = ["decode"]
    return [
        (decode + [str(d / "missing.img"), "--arch", "x86-64", "--root", root], 1, "no such file"),
        (decode + [str(d), "--arch", "x86-64", "--root", root], 1, "is a directory"),
        (decode + [str(d / "empty.img"), "--arch", "x86-64", "--root", "0"], 1, "is empty"),
        (decode + [str(d / "exec.elf"), "--arch", "x86-64", "--root", "0"], 1, "not a core"),
        (decode + [str(d / "pae.elf"), "--arch", "x86-64", "--root", root], 1, "EM_386 core"),
        (decode + [img, "--arch", "x86-64", "--root", "0x40000000"], 1, "outside the image"),
        (decode + [img, "--arch", "x86-64", "--root", "0x11008"], 1, "not aligned"),
        (decode + [img, "--arch", "x86-64", "--root", root, "--vmas", str(d / "nope")], 1,
         "no such file"),
        (decode + [img, "--arch", "x86-64", "--root", root, "--vmas", str(d / "bad.vmas")], 1,
         "bad.vmas:1: flags"),
        (decode + [elf, "--arch", "x86-64", "--root", root, "--base", "0x1000"], 1,
         "--base is for raw images"),
        (decode + [img, "--arch", "vax", "--root", root], 2, "unknown arch 'vax'"),
        (decode + [img, "--arch", "x86-64", "--root", "0xZZ"], 2, "is not an address"),
        (decode + [img, "--arch", "x86-64", "--root", root, "--ram", "9-1"], 2, "--ram"),
        (decode + [img, "--arch", "sparc64", "--root", root, "--format", "qemu-tlb"], 2,
         "QEMU's monitor text for the paging modes"),
        (decode + [img, "--arch", "x86-64"], 2, "--root"),
    ]  # fmt: skip


def test_cli_bad_inputs_are_one_line_and_an_exit_code(story_files, capsys) -> None:
    for argv, code, fragment in _bad_inputs(story_files):
        got, out, err = _run(argv, capsys)
        assert (got, fragment in err) == (code, True), (argv, err)
        assert err.startswith("pfnmap: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err and out == ""


def test_cli_problems_do_not_change_the_exit_code(story_files, capsys) -> None:
    d, root = story_files["dir"], int(story_files["root"], 16)
    raw = bytearray((d / "story.img").read_bytes())
    raw[root + 8 * 300 : root + 8 * 301] = (0x0700_0000_0000 | 0x67).to_bytes(8, "little")
    (d / "damaged.img").write_bytes(bytes(raw))
    argv = ["decode", str(d / "damaged.img"), "--arch", "x86-64", "--root", hex(root)]
    code, out, err = _run([*argv, "--format", "jsonl", "--progress"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]  # nothing but JSON on stdout
    (prob,) = [r for r in rows if r["record"] == "problem"]
    assert prob["problem"] == "outside-image" and int(prob["entry_addr"], 16) == root + 8 * 300
    assert sum(r["record"] == "leaf" for r in rows) == 12
    code, out, err = _run([*argv, "--format", "qemu-tlb"], capsys)
    assert code == 0 and len(out.splitlines()) == 12
    assert err.splitlines()[0].startswith("pfnmap: problem: outside-image pgd entry at ")
    code, out, err = _run(argv, capsys)
    assert code == 0 and "problem: outside-image" in out and "1 problems" in out


def test_cli_csv_and_ranges(story_files, capsys) -> None:
    d, root = story_files["dir"], story_files["root"]
    argv = ["decode", str(d / "story.elf"), "--arch", "x86-64", "--root", root]
    code, out, _ = _run([*argv, "--format", "csv", "--ranges", "--ram", "0-16M",
                         "--vmas", story_files["vmas"]], capsys)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [r["record"] for r in rows] == ["range"] * 6 + ["summary"]
    assert [r["verdict"] for r in rows[:3]] == ["raw pfn", "raw pfn", "COWed page in a PFN vma"]
    assert rows[0]["pages"] == "4"


# memory -----------------------------------------------------------------------------------------
def _pte_image(path, n_tables: int) -> None:
    """An x86-64 image: pgd, pud, pmd tables, then ``n_tables`` full pte tables."""
    arch = arch_of("x86-64")
    n_pmd = -(-n_tables // 512)
    t = np.zeros((2 + n_pmd + n_tables, 512), dtype="<u8")
    t[0, 0] = arch.mk_table_entry(0, 4096)
    for i in range(n_pmd):
        t[1, i] = arch.mk_table_entry(1, (2 + i) * 4096)
    ptes = (2 + n_pmd + np.arange(n_tables, dtype=np.uint64)) * np.uint64(4096)
    t[2 : 2 + n_pmd].reshape(-1)[:n_tables] = ptes | np.uint64(arch.mk_table_entry(2, 0))
    pfns = np.arange(n_tables * 512, dtype=np.uint64)
    t[2 + n_pmd :] = ((pfns << np.uint64(12)) | np.uint64(arch.PAGE_SHARED)).reshape(-1, 512)
    path.write_bytes(t.tobytes())


def test_memory_does_not_grow_with_the_image(tmp_path) -> None:
    import tracemalloc

    from pfnmap.decode.formats import records
    from pfnmap.decode.image import open_raw

    arch = arch_of("x86-64")
    peaks = {}
    for n in (8, 256):
        _pte_image(tmp_path / f"{n}.raw", n)
        with open_raw(tmp_path / f"{n}.raw") as img:
            tracemalloc.start()
            count = sum(r.pages for r in ranges(Walker(img, arch, 0), arch))
            count += sum(1 for r in records(Walker(img, arch, 0), arch) if r["record"] == "leaf")
            peaks[n] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert count == 2 * n * 512
    # 32 times the tables (1 MiB of them, 131,072 leaves) cost about the same memory
    assert peaks[256] < 2 * peaks[8] + (128 << 10), peaks


def test_era_changes_the_verdicts(story_files, capsys) -> None:
    """The rc6 rule (2.6.15 final): in a shared VM_PFNMAP vma every pte is raw."""
    d = story_files["dir"]
    arch = arch_of("x86-64")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x10000, 3, arch.pfn_pte(0x100, arch.PAGE_SHARED))  # RAM, off the linear rule
    (d / "t.raw").write_bytes(bytes(t.buf))
    (d / "t.vmas").write_text("10000-11000 VM_READ|VM_SHARED|VM_MAYSHARE|VM_PFNMAP 5\n")
    argv = ["decode", str(d / "t.raw"), "--arch", "x86-64", "--root", "0", "--format", "jsonl",
            "--ram", "0-16M", "--vmas", str(d / "t.vmas")]  # fmt: skip
    verdicts = {}
    for era in ("seed", "2.6.15"):
        code, out, _ = _run([*argv, "--era", era], capsys)
        assert code == 0
        verdicts[era] = json.loads(out.splitlines()[0])["verdict"]
    assert verdicts == {"seed": "COWed page in a PFN vma", "2.6.15": "raw pfn"}
