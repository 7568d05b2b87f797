"""``pfnmap compare`` (pfnmap.scenarios.compare, pfnmap.cli.compare) and ``pfnmap demo --era``.

The kernel facts behind each expectation are the scenarios' (see tests/test_scenarios.py);
here the point is that the comparison lines the eras up, finds what differs, names the rules
fields behind it, and that the command line reports it as a table or as JSON, with one-line
errors for bad input.
"""

from __future__ import annotations

import json

import pytest

from pfnmap.cli.main import main
from pfnmap.kernel.rules import ERAS, SEED, V2_6_15
from pfnmap.scenarios.compare import MISSING, compare, differing_fields


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pfnmap: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_differing_fields_lists_the_decisions_that_changed() -> None:
    """seed -> 2.6.15 is rc4's alignment, do_no_page BUG_ON and vm_insert_page, and rc6's
    is_cow test, whole-vma remaps, gup and VM_INSERTPAGE (kernel-reference §1)."""
    assert differing_fields([SEED, V2_6_15]) == [
        "vm_normal_page_is_cow_test",
        "remap_cow_whole_vma",
        "gup_refused_flags",
        "cow_copy_aligned",
        "copy_forcing_flags",
        "do_no_page_bug_on_pfnmap",
        "vm_insert_page",
    ]
    assert differing_fields([SEED, SEED]) == []
    # the same bits under their two names are not a difference
    assert "copy_forcing_flags" not in differing_fields([ERAS["unpaged"], SEED])
    assert "vm_normal_page_rule" in differing_fields([ERAS["unpaged"], SEED])


def test_compare_lines_up_rows_and_names_the_fields(arch_name: str) -> None:
    """shared_remaps, seed against 2.6.15: the pte verdicts differ (bad against raw); the row
    names vm_normal_page_is_cow_test, which the lookups read, and remap_cow_whole_vma, which the
    remaps read (the fields that can have made the difference); the steps that exist in both
    eras line up, and equal observations are not differences."""
    result = compare("shared_remaps", ["seed", "2.6.15"], arch_name)
    assert result.eras == ["seed", "2.6.15"]
    assert set(result.runs) == {"seed", "2.6.15"}
    rows = {(r.step, r.key): r for r in result.rows}
    pte = rows[("mmap", "pte aperture[0] (X)")]
    assert pte.differs
    assert pte.cells["seed"].value == "bad pte" and pte.cells["2.6.15"].value == "raw pfn"
    # read by the lookup, and by the step that made the pte (the remaps)
    assert pte.fields == ["vm_normal_page_is_cow_test", "remap_cow_whole_vma"]
    assert set(pte.fields) <= set(result.rules_differ)
    result_row = rows[("mmap", "result")]
    assert not result_row.differs and result_row.cells["seed"].value == "ok"
    assert rows[("fork", "Bad pte lines")].cells["seed"].value == 4
    assert all(r.differs for r in result.differing())
    assert result.rows[0].step == "mmap"


def test_compare_keeps_era_only_steps_in_place() -> None:
    """sunffb on x86: 2.6.15 takes a step the seed never takes (the MAP_SHARED fallback); it is
    placed right after the failed mmap, and its rows are missing ("-") under the seed."""
    result = compare("sunffb", ["seed", "2.6.15"], "x86-64")
    steps = list(dict.fromkeys(r.step for r in result.rows))
    assert steps[:3] == [
        "X mmaps the framebuffer MAP_PRIVATE",
        "X falls back to MAP_SHARED",
        "X has the framebuffer mapped",
    ]
    fallback = next(r for r in result.rows if r.step == "X falls back to MAP_SHARED")
    assert fallback.cells["seed"].value == MISSING and fallback.differs
    mmap = next(r for r in result.rows if r.step == steps[0] and r.key == "result")
    assert mmap.fields == ["remap_cow_whole_vma"]


def test_compare_refuses_unknown_or_repeated_eras() -> None:
    with pytest.raises(KeyError, match="unknown era"):
        compare("sunffb", ["seed", "2.6.99"])
    with pytest.raises(ValueError, match="twice"):
        compare("sunffb", ["seed", "seed"])


def test_cli_sunffb_json_seed_goes_wrong_2615_refuses(capsys) -> None:
    """`pfnmap compare sunffb --eras seed,2.6.15 --format json` on x86-64 (the default arch):
    under the seed the private framebuffer maps, fork logs "Bad pte" from copy_one_pte, X's
    drawing COWs into RAM; under 2.6.15 the mmap is EINVAL and nothing is logged."""
    code, out, err = run(capsys, "compare", "sunffb", "--eras", "seed,2.6.15", "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["scenario"] == "sunffb" and data["arch"] == "x86-64"
    assert data["eras"] == ["seed", "2.6.15"]
    assert data["rules"]["seed"]["remap_cow_whole_vma"] is False
    assert data["rules"]["2.6.15"]["remap_cow_whole_vma"] is True
    assert "remap_cow_whole_vma" in data["rules_differ"]

    seed = {s["name"]: s for s in data["runs"]["seed"]["steps"]}
    assert seed["X mmaps the framebuffer MAP_PRIVATE"]["outcome"] == "ok"
    assert seed["X forks"]["bad_pte_callers"] == ["copy_one_pte"] * 4
    assert all(line.startswith("Bad pte = ") for line in seed["X forks"]["log"])
    assert seed["X draws"]["bad_pte_callers"] == ["do_wp_page"]
    assert any("Bad pte" in line for line in data["runs"]["seed"]["log"])

    final = {s["name"]: s for s in data["runs"]["2.6.15"]["steps"]}
    refused = final["X mmaps the framebuffer MAP_PRIVATE"]
    assert refused["outcome"] == "EINVAL"
    assert "remapped as a whole" in refused["why"]
    assert "remap_cow_whole_vma" in refused["fields"]
    assert data["runs"]["2.6.15"]["log"] == []

    rows = {(r["step"], r["key"]): r for r in data["rows"]}
    mmap = rows[("X mmaps the framebuffer MAP_PRIVATE", "result")]
    assert mmap["differs"] and mmap["values"]["2.6.15"]["value"] == "EINVAL"
    drawing = rows[("X draws", "X's drawing reached the framebuffer")]
    assert drawing["values"]["seed"]["value"] is False
    assert drawing["values"]["2.6.15"]["value"] is True
    assert data["differences"] == sum(r["differs"] for r in data["rows"])


def test_cli_table_shows_header_differences_and_rules(capsys) -> None:
    code, out, err = run(capsys, "compare", "gup_no_vm_io", "--eras", "unpaged,seed,2.6.15")
    assert code == 0 and err == ""
    assert "gup_no_vm_io: get_user_pages on PFN vmas whose driver cleared VM_IO" in out
    assert "arch x86-64, eras unpaged, seed, 2.6.15" in out
    assert "livelock" in out and "EFAULT" in out
    assert "rules fields that differ" in out and "gup_refused_flags" in out
    code, full, _ = run(capsys, "compare", "gup_no_vm_io", "--eras", "seed,2.6.15", "--all")
    assert code == 0 and "gup /dev/mem (VM_IO)" in full  # equal in every era: only with --all


def test_cli_list(capsys) -> None:
    code, out, err = run(capsys, "compare", "--list")
    assert code == 0 and err == ""
    for name in ("partial_private", "shared_remaps", "sunffb", "gup_no_vm_io", "mixedmap_cow"):
        assert name in out


def test_cli_runs_on_another_arch(capsys) -> None:
    code, out, _ = run(capsys, "compare", "sunffb", "--eras", "2.6.15", "--arch", "sparc64")
    assert code == 0 and "arch sparc64" in out


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["compare"], ["a scenario is required", "--list"]),
        (["compare", "nope"], ["unknown scenario 'nope'", "sunffb"]),
        (["compare", "sunffb", "--eras", "seed,2.6.99"], ["--eras", "unknown era '2.6.99'"]),
        (["compare", "sunffb", "--eras", "seed,seed"], ["--eras", "twice"]),
        (["compare", "sunffb", "--eras", ","], ["--eras", "at least one"]),
        (["compare", "sunffb", "--arch", "vax"], ["--arch", "unknown arch 'vax'"]),
        (["compare", "sunffb", "--arch", "all"], ["--arch", "one arch"]),
        (["compare", "sunffb", "--format", "xml"], ["--format", "invalid choice"]),
        (["demo", "--era", "2.6.99"], ["--era", "unknown era '2.6.99'"]),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(capsys, argv, needles) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(err, *needles)


@pytest.mark.parametrize("era", list(ERAS))
def test_cli_demo_runs_under_every_era(capsys, era: str) -> None:
    """`pfnmap demo --era NAME`: the story runs and its header names the rules; before the seed
    step (c) ends in print_bad_pte and VM_FAULT_OOM, which the demo expects of that era."""
    code, out, err = run(capsys, "demo", "--era", era)
    assert code == 0, err
    assert f"kernel rules: {era}" in out
    if era == "unpaged":
        assert "VM_FAULT_OOM" in out
