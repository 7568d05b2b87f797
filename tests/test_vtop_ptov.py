"""vtop and ptov agree with decode: every leaf the walk finds translates through vtop to its
own PA (and a non-present one stops as not present), addresses between leaves are not mapped,
and ptov finds each leaf's VA from its PA. On the real kernels' tables (the QEMU fixtures)
and on emulator dumps of the arch under test; the filters and --format summary too."""

from __future__ import annotations

import json
import lzma
import random
from pathlib import Path

import numpy as np
import pytest

from pfnmap.cli.main import main
from pfnmap.decode.dump import build_scenario
from pfnmap.decode.filters import FilterError, filter_items, make_filter, parse_va_range
from pfnmap.decode.formats.summary import count_items
from pfnmap.decode.image import machine_image, open_image
from pfnmap.decode.translate import (
    NONE,
    NOT_PRESENT,
    PAGE,
    AddressError,
    check_va,
    ptov,
    vtop,
    vtop_process,
)
from pfnmap.decode.walker import Walker, leaves
from pfnmap.plugins.manager import default_registry

QEMU = Path(__file__).parent / "fixtures" / "qemu"
QEMU_DIRS = sorted(p.parent for p in QEMU.glob("*/meta.json"))
SAMPLE = 300


def _unpack(fixture: Path, tmp_path: Path) -> tuple[Path, dict]:
    meta = json.loads((fixture / "meta.json").read_text())
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((fixture / meta["core"]).read_bytes()))
    return core, meta


def _check_agreement(image, arch, root, rng: random.Random) -> int:
    """vtop of a sample of the walk's leaves (plus the first and last) lands where the walk
    says; the address right after a leaf that no leaf maps is not mapped; ptov inverts."""
    recs = [r for r in leaves(Walker(image, arch, root, grouped=True), arch) if hasattr(r, "pa")]
    assert recs
    starts = {r.va for r in recs}
    sample = [recs[0], recs[-1], *rng.sample(recs, min(SAMPLE, len(recs)))]
    targets = []
    for r in sample:
        off = rng.randrange(r.size) & ~7
        t = vtop(image, arch, root, r.va + off)
        assert t.steps[-1].raw == r.raw and t.steps[-1].entry_addr == r.entry_addr
        if r.present:
            assert (t.pa, t.page_size, t.leaf_level) == (r.pa + off, r.size, r.name), r
            assert t.stop.outcome == PAGE
            assert t.stop.flags == r.flags
            if r.va < arch.task_size:  # (the kernel's ESPFIX area maps a frame 65,536 times)
                targets.append((r.pa + off, r.va + off))
        else:
            assert t.pa is None and t.stop.outcome == NOT_PRESENT
        nxt = (r.va + r.size) & ((1 << 64) - 1)
        if nxt not in starts and nxt:
            try:
                after = vtop(image, arch, root, nxt)
            except AddressError:
                continue  # the end of the lower half: the hole follows
            # no leaf starts there: either nothing, or a larger page that began earlier
            assert after.pa is None or after.page_size > r.size or after.page_pa != r.pa
    found = {(a.pa, a.va) for a in ptov(Walker(image, arch, root, grouped=True), arch,
                                        [pa for pa, _ in targets])}  # fmt: skip
    for pa, va in targets:
        assert (pa, va) in found
    for pa, va in rng.sample(sorted(found), min(50, len(found))):
        assert vtop(image, arch, root, va).pa == pa
    return len(sample)


@pytest.mark.parametrize("fixture", QEMU_DIRS, ids=lambda d: d.name)
def test_vtop_and_ptov_agree_with_decode_on_real_kernels(fixture: Path, tmp_path: Path) -> None:
    core, meta = _unpack(fixture, tmp_path)
    arch = default_registry().get(meta["arch"])
    with open_image(str(core)) as image:
        assert _check_agreement(image, arch, int(meta["root"], 16), random.Random(13)) > 2


def test_vtop_and_ptov_agree_with_decode_on_an_emulator_dump(arch_name: str) -> None:
    m = build_scenario(arch_name)
    for proc in m.processes.values():
        _check_agreement(machine_image(m), m.arch, proc.mm.pgd, random.Random(5))


def test_vtop_process_gives_the_verdict_and_the_struct_page(arch_name: str) -> None:
    m = build_scenario(arch_name)
    proc = next(iter(m.processes.values()))
    seen = set()
    for vma in proc.vmas:
        for va, pte in proc.ptes(vma):
            t = vtop_process(proc, va)
            assert t.steps[-1].raw == pte
            if t.pa is None:
                continue
            seen.add(t.verdict)
            pfn = t.pa >> m.arch.page_shift
            if m.phys.pfn_valid(pfn):
                assert t.page["struct_page"] and t.page["mapcount"] == m.phys.mapcount[pfn]
            else:
                assert t.page == {"pfn": f"{pfn:#x}", "struct_page": False}
    assert "raw pfn" in seen and "normal page" in seen


def test_vtop_stops_at_an_empty_entry_and_refuses_bad_addresses() -> None:
    arch = default_registry().get("x86-64")
    m = build_scenario("x86-64")
    proc = next(iter(m.processes.values()))
    t = vtop(machine_image(m), arch, proc.mm.pgd, 0x1000)
    assert t.pa is None and t.stop.outcome == NONE and t.stop.raw == 0
    with pytest.raises(AddressError, match="not canonical"):
        check_va(arch, 1 << 47)
    assert check_va(arch, (1 << 64) - 4096) == (1 << 48) - 4096
    with pytest.raises(AddressError, match="32-bit virtual address space"):
        check_va(default_registry().get("x86-pae"), 1 << 32)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["vtop", "--scenario", "story", "0x800000000000"], "is not canonical on x86-64"),
        (["vtop", "--scenario", "story", "--arch", "x86-pae", "0x100000000"], "32-bit virtual"),
        (["vtop", "--scenario", "story", "zz"], "'zz' is not an address"),
        (["vtop", "--scenario", "story", "1", "2"], "one VA is required, got 2"),
        (["ptov", "--scenario", "story", str(1 << 50)], "beyond x86-64's 46-bit physical"),
        (["ptov", "--scenario", "story"], "at least one PA is required"),
        (["vtop", "img", "0x1000"], "an image needs --arch and --root"),
        (["decode", "img", "--arch", "x86-64", "--root", "0", "--user", "--kernel"],
         "not allowed with argument"),
    ],
)  # fmt: skip
def test_bad_addresses_are_one_line_errors(capsys, argv, message) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_vtop_and_ptov_commands_print_the_walk(capsys) -> None:
    assert main(["vtop", "--scenario", "story", "0x2aaaaaab5010"]) == 0
    out = capsys.readouterr().out
    assert "pte[181]" in out and "PA 0x16010" in out and "normal page" in out
    assert "struct page: pfn 0x16" in out
    assert main(["vtop", "--scenario", "story", "0x2aaaaaab5010", "--format", "jsonl"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["record"] for r in recs] == ["step"] * 4 + ["translation"]
    assert recs[-1]["pa"] == "0x16010"
    assert main(["ptov", "--scenario", "story", "0x16010", "0x5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any("0x00002aaaaaab5010" in line for line in out)
    assert out[-1] == "not mapped: 0x5" or any("0x000000000005" in line for line in out)


# filters and the summary ---------------------------------------------------------------------
def test_filters_keep_what_overlaps_and_nothing_else(arch_name: str) -> None:
    m = build_scenario(arch_name)
    arch = m.arch
    proc = next(iter(m.processes.values()))
    img = machine_image(m)
    every = [r for r in leaves(Walker(img, arch, proc.mm.pgd), arch)]
    mid = every[len(every) // 2]
    lo, hi = mid.va + 1, mid.va + 3 * mid.size  # starts inside a page: that page counts
    f = make_filter(arch, (lo, hi))
    got = list(leaves(filter_items(Walker(img, arch, proc.mm.pgd, grouped=True), f), arch))
    assert got == [r for r in every if r.va < hi and r.va + r.size > lo]
    user = make_filter(arch, user=True)
    got = list(leaves(filter_items(Walker(img, arch, proc.mm.pgd, grouped=True), user), arch))
    assert got == [r for r in every if r.va < arch.task_size]
    big = make_filter(arch, min_size=arch.page_size * 2)
    assert not list(filter_items(Walker(img, arch, proc.mm.pgd), big))  # the story maps ptes
    with pytest.raises(FilterError):
        make_filter(arch, (arch.task_size, arch.task_size + 4096), user=True)


def test_va_range_syntax() -> None:
    assert parse_va_range("0x1000-0x3000") == (0x1000, 0x3000)
    assert parse_va_range("0x7f0000000000+2M") == (0x7F0000000000, 0x7F0000200000)
    for bad in ("5-3", "0x1000", "x-y", "0+0"):
        with pytest.raises(FilterError):
            parse_va_range(bad)


def test_grouped_selection_keeps_each_tables_leaves(tmp_path: Path) -> None:
    """A cut grouped batch still knows which table each leaf is in (entry addresses)."""
    core, meta = _unpack(QEMU / "x86-64", tmp_path)
    arch = default_registry().get("x86-64")
    with open_image(str(core)) as image:
        root = int(meta["root"], 16)
        f = make_filter(arch, kernel=True)
        fast = [(r.va, r.entry_addr) for r in
                leaves(filter_items(Walker(image, arch, root, grouped=True), f), arch)]  # fmt: skip
        slow = [(r.va, r.entry_addr) for r in leaves(Walker(image, arch, root), arch)
                if r.va >= arch.task_size]  # fmt: skip
        assert fast == slow and len(fast) > 1000


def test_summary_counts_every_leaf(tmp_path: Path, capsys) -> None:
    core, meta = _unpack(QEMU / "x86-pae", tmp_path)
    arch = default_registry().get("x86-pae")
    with open_image(str(core)) as image:
        w = Walker(image, arch, int(meta["root"], 16), grouped=True)
        per_level, _present, problems = count_items(w)
        assert sum(per_level.values()) == w.leaf_entries
        assert sum(problems.values()) == w.problems
    assert main(["decode", str(core), "--arch", "x86-pae", "--root", meta["root"],
                 "--format", "summary"]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"{w.leaf_entries} leaf entries, {w.tables_read} tables read, "
                           f"{w.problems} problems")  # fmt: skip
    assert any(line.split()[0] == "pte" for line in out[1:])
    assert np.sum([int(line.split()[2]) for line in out[1:] if "leaves" in line]) == (
        w.leaf_entries
    )


def test_decode_filters_on_the_command_line(tmp_path: Path, capsys) -> None:
    core, meta = _unpack(QEMU / "x86-64", tmp_path)
    start = int(meta["guest"]["maps"]["thp"]["start"], 16)
    argv = ["decode", str(core), "--arch", "x86-64", "--root", meta["root"], "--format",
            "jsonl", "--va-range", f"{start:#x}+4M", "--min-size", "2M"]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    leaves_ = [r for r in rows if r["record"] == "leaf"]
    assert [r["va"] for r in leaves_] == [f"{start:#x}", f"{start + (2 << 20):#x}"]
    assert rows[-1]["record"] == "summary"
