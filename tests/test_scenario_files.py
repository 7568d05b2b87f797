"""Scenario files (pfnmap.scenarios.files, .play) and `pfnmap run`: the format's checks with
their file:line errors, expectations that hold and that fail, exit codes, and the shipped demo
file against the demo itself (pfnmap.cli.demo.run_demo, the same story in Python)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pfnmap import Machine
from pfnmap.cli.demo import run_demo
from pfnmap.cli.main import main
from pfnmap.kernel.rules import ERAS
from pfnmap.scenarios.files import ScenarioFileError, load, loads, parse_expr, shipped
from pfnmap.scenarios.play import play

HEAD = """\
format = 1
[machine]
ram = "64M"
"""

STORY = HEAD + textwrap.dedent("""\
[[step]]
do = "spawn"
task = "p"

[[step]]
do = "open"
path = "/dev/mem"
fd = "mem"

[[step]]
do = "mmap"
name = "dev"
length = "2 pages"
prot = "rw"
flags = "private"
file = "mem"
offset = "fb0"

  [[step.expect]]
  at = "dev"
  verdict = "RAW_PFN"

[[step]]
do = "write"
at = "dev + 1 page + 16"
data = "hello"

  [[step.expect]]
  at = "dev + 1 page"
  verdict = "COWED"
  count = 1
  mapcount = 1

  [[step.expect]]
  anon_rss = 1
""")


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the nth line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth - 1]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# the shipped demo file --------------------------------------------------------------------
@pytest.mark.parametrize("era", list(ERAS))
def test_demo_file_holds_on_every_era(arch_name: str, era: str) -> None:
    sc = load(shipped()["demo"])
    run = play(sc, Machine(arch_name, sc.ram, era=era))
    assert run.ok, [(c.line, c.got) for c in run.failed]
    # the expectations restricted to other eras or arches are not counted as held
    assert len(run.checks) < sum(len(s.expects) for s in sc.steps) + len(sc.end) + 1


def test_demo_file_agrees_with_run_demo(arch_name: str) -> None:
    """The file tells the story of run_demo: the same verdicts and counts at each stage."""
    demo = run_demo(Machine(arch_name, "64M"))
    sc = load(shipped()["demo"])
    run = play(sc, Machine(arch_name, "64M"))
    by_kind = {(s.step.do, s.step.args.get("name")): s for s in run.steps}
    io = by_kind["mmap", "io"].snapshot.task("parent")
    assert [leaf.verdict for leaf in io.leaves] == [r.verdict.name for r in demo.step("a").ptes]
    assert [leaf.pfn for leaf in io.leaves] == demo.step("a").facts["pfns"]
    fork = by_kind["fork", None].snapshot
    child = fork.task("child")
    d = demo.step("d")
    # the child's ptes of the four mappings, in the order step (d) lists them
    child_leaves = {leaf.va: leaf for leaf in child.leaves}
    assert sorted(leaf.verdict for leaf in child_leaves.values()).count("COWED") == 1
    cow_leaf = next(v for v in child_leaves.values() if v.verdict == "COWED")
    assert fork.pages[cow_leaf.pfn].count == d.facts["cow_count"]
    assert fork.pages[cow_leaf.pfn].mapcount == d.facts["cow_mapcount"]
    assert child.anon_rss == d.facts["child_rss"]["anon_rss"]


def test_every_shipped_file_loads_and_runs() -> None:
    for name, path in shipped().items():
        sc = load(path)
        assert play(sc, Machine(sc.arch, sc.ram, era=sc.era)).ok, name


# expectations -----------------------------------------------------------------------------
def test_expectations_hold_and_fail(tmp_path: Path) -> None:
    run = play(loads(STORY), Machine("x86-64", "64M"))
    assert run.ok and len(run.checks) == 4  # three written, plus the implicit invariant check
    wrong = STORY.replace('verdict = "COWED"', 'verdict = "RAW_PFN"')
    run = play(loads(wrong, "w.toml"), Machine("x86-64", "64M"))
    assert [c.line for c in run.failed] == [line_of(wrong, "[[step.expect]]", 2)]
    assert "verdict = 'COWED'" in run.failed[0].got


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, STORY)
    code, out, err = run_cli(capsys, "run", str(good))
    assert code == 0 and not err
    assert "all 4 expectations held" in out and "COWED" in out
    bad_text = STORY.replace("anon_rss = 1", "anon_rss = 7")
    bad = write(tmp_path, bad_text, "bad.toml")
    code, out, err = run_cli(capsys, "run", str(bad))
    assert code == 1
    assert f"{bad}:{line_of(bad_text, '[[step.expect]]', 3)}" in err
    assert err.count("\n") == 1 and "1 of 4 expectations failed" in err
    assert "FAIL expect anon_rss = 7: got anon_rss = 1" in " ".join(out.split())


def test_unexpected_failure_is_a_failed_check(tmp_path: Path) -> None:
    text = STORY.replace('prot = "rw"', 'prot = "r"')  # the write then SIGSEGVs
    run = play(loads(text), Machine("x86-64", "64M"))
    write_step = run.steps[3]
    assert write_step.outcome == "SIGSEGV"
    assert not write_step.ok
    assert any(c.got == "outcome = 'SIGSEGV'" for c in write_step.checks)
    # the signal killed the task, so the pte checks find it gone
    assert any("gone" in c.got for c in write_step.checks)


def test_era_restricted_expectations(tmp_path: Path) -> None:
    text = STORY + '  eras = ["2.6.26"]\n'  # only the last expectation is restricted
    text = text.replace("anon_rss = 1\n  eras", "anon_rss = 9\n  eras")
    assert play(loads(text), Machine("x86-64", "64M", era="seed")).ok
    assert not play(loads(text), Machine("x86-64", "64M", era="2.6.26")).ok


def test_poke_and_fields(arch_name: str) -> None:
    """Clearing a pte's present bit by hand: vm_normal_page is no longer asked about a page."""
    m = Machine(arch_name, "64M")
    arch = m.arch
    probe = arch.pfn_pte(1, arch.protection_map[1])  # a present read-only pte
    # the arch's present bit, whatever its layout calls it: the one-bit field without which
    # the pte is not present
    present = next(
        f.name
        for f in arch.pte_format.fields.values()
        if f.width == 1 and not arch.pte_present(probe & ~f.mask)
    )
    text = STORY + textwrap.dedent(f"""
        [[step]]
        do = "poke"
        at = "dev"
        fields = {{ {present} = 0 }}

          [[step.expect]]
          at = "dev"
          present = false
          fields = {{ {present} = 0 }}
        """)
    run = play(loads(text), m)
    poke = run.steps[-1]
    assert poke.outcome == "ok" and poke.ok, [c.got for c in poke.checks]


def test_gup_pins_and_releases() -> None:
    """get_user_pages takes a reference on an anonymous page; a VM_PFNMAP vma refuses it."""
    text = STORY + textwrap.dedent("""
        [[step]]
        do = "mmap"
        name = "anon"
        length = "1 page"

        [[step]]
        do = "write"
        at = "anon"
        data = "x"

        [[step]]
        do = "gup"
        at = "anon"
        release = false

          [[step.expect]]
          at = "anon"
          count = 2
          mapcount = 1

        [[step]]
        do = "gup"
        at = "dev"

          [[step.expect]]
          outcome = "EFAULT"
        """)
    run = play(loads(text), Machine("x86-64", "64M"))
    pin, refused = run.steps[-2], run.steps[-1]
    assert pin.ok and "pinned pfns" in pin.data, [c.got for c in pin.checks]
    assert refused.outcome == "EFAULT" and refused.ok


# bad files: one line with file:line -------------------------------------------------------
BAD_CASES = [
    # (replace, with, line needle, message part)
    ('fd = "mem"', 'fd = "mem"\ncolour = "red"', "colour", "unknown key 'colour'"),
    ('length = "2 pages"', "length = true", "length = true", "length: expected an int"),
    ('length = "2 pages"', 'length = "2 bananas"', "bananas", "is not a number"),
    ('at = "dev + 1 page + 16"', 'at = "nowhere + 16"', "nowhere", "no mapping named 'nowhere'"),
    ('do = "write"', 'do = "scribble"', "scribble", "do = one of"),
    ('verdict = "COWED"', 'verdict = "COWISH"', "COWISH", "not one of"),
    ('prot = "rw"', 'prot = "rwq"', "rwq", "is not a protection"),
    ('task = "p"', 'task = "p"\n[[step]]\ndo = "exit"\ntask = "q"', 'task = "q"', "'q' does not"),
    ('path = "/dev/mem"', 'path = "/dev/nothing"', "/dev/nothing", "no file '/dev/nothing'"),
    ('name = "dev"', 'name = "dev"\nlength = "3 pages"', 'length = "2', "not valid TOML"),
]


@pytest.mark.parametrize(("old", "new", "needle", "message"), BAD_CASES)
def test_bad_files_name_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, needle: str,
    message: str,
) -> None:  # fmt: skip
    text = STORY.replace(old, new, 1)
    assert text != STORY
    path = write(tmp_path, text)
    with pytest.raises(ScenarioFileError) as info:
        load(path)
    line = line_of(text, needle)
    # an error inside a step may name the step's first line when the key is the step's kind
    assert info.value.line in (line, line - 1, line - 2), (info.value, line)
    assert message in str(info.value)
    code, out, err = run_cli(capsys, "run", str(path))
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pfnmap: error: {path}:")
    assert "Traceback" not in err


def test_step_before_its_mapping_is_refused(tmp_path: Path) -> None:
    """A write to a mapping that a later step creates: steps out of order."""
    text = HEAD + textwrap.dedent("""
        [[step]]
        do = "spawn"
        task = "p"

        [[step]]
        do = "write"
        at = "buf"
        data = "x"

        [[step]]
        do = "mmap"
        name = "buf"
        length = 4096
        """)
    with pytest.raises(ScenarioFileError) as info:
        loads(text, "o.toml")
    assert info.value.line == line_of(text, 'at = "buf"')
    assert "no mapping named 'buf' yet" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[machine]\n", "must start with 'format = 1'"),
        ("format = 2\n", "format 2 is not one"),
        ("format = 1\n[[step]]\ndo = 'exit'\n", "which task?"),
        ("format = 1\n[[step]]\ndo = 'spawn'\ntask = 'a'\n[[step]]\ndo = 'spawn'\ntask = 'a'\n",
         "exists already"),
    ],
)  # fmt: skip
def test_file_level_errors(text: str, message: str) -> None:
    with pytest.raises(ScenarioFileError, match=message.replace("?", r"\?")):
        loads(text)


def test_missing_file_and_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "run", "/nonexistent/x.toml")
    assert code == 2 and "/nonexistent/x.toml: no such file" in err
    code, _, err = run_cli(capsys, "run", "nosuchscenario")
    assert code == 2 and "demo" in err
    code, out, _ = run_cli(capsys, "run", "--list")
    assert code == 0 and "demo" in out


def test_expressions() -> None:
    assert parse_expr("a + 2 pages - 0x10", True).eval(4096, {"a": 0x1000}) == 0x1000 + 8192 - 16
    assert parse_expr("16K + 1", False).eval(8192) == 16385
    assert parse_expr(12, False).eval(4096) == 12
    with pytest.raises(ValueError, match="takes no names"):
        parse_expr("a + 1", False)


LIBRARY_TWINS = [n for n in shipped() if n != "demo"]


@pytest.mark.parametrize("name", LIBRARY_TWINS)
@pytest.mark.parametrize("era", list(ERAS))
def test_shipped_file_agrees_with_its_library_scenario(arch_name: str, name: str, era: str) -> None:
    """A shipped file named after a library scenario (pfnmap.scenarios.library) tells the same
    story: each step titled with a library step's name ends the same way and makes the same
    number of print_bad_pte lines, and the file's own expectations hold."""
    from pfnmap.scenarios import run_scenario

    sc = load(shipped()[name])
    run = play(sc, Machine(arch_name, "64M", era=era))
    assert run.ok, [(c.line, c.got) for c in run.failed]
    obs = run_scenario(name, Machine(arch_name, "64M", era=era))
    library = {s.name: s for s in obs.steps}
    compared = 0
    for record in run.steps:
        twin = library.get(record.step.title)
        if twin is None:
            continue
        compared += 1
        assert record.outcome == twin.outcome, record.step.title
        assert len(record.bad_ptes) == len(twin.bad_pte_callers), record.step.title
    assert compared >= 4


DOCS = Path(__file__).parent.parent / "docs"


def test_the_docs_tutorial_runs_and_can_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/scenario-files.rst: the tutorial file holds; with the parent's mapcount after the
    child's write changed to 2 (the docs' edit) it fails at that expectation's line."""
    tutorial = DOCS / "examples" / "tutorial.toml"
    code, out, _ = run_cli(capsys, "run", str(tutorial))
    assert code == 0 and "all 6 expectations held" in out
    text = tutorial.read_text()
    lines = text.splitlines()
    assert lines[56] == "  mapcount = 1" and lines[55] == '  task = "parent"'
    lines[56] = "  mapcount = 2"
    edited = write(tmp_path, "\n".join(lines) + "\n", "tutorial.toml")
    code, out, err = run_cli(capsys, "run", str(edited))
    assert code == 1
    assert err.strip() == f"pfnmap: error: 1 of 6 expectations failed ({edited}:54)"
    assert "FAIL expect mapcount = 2 at buf (parent): got mapcount = 1" in out


def test_the_docs_name_every_key() -> None:
    """docs/scenario-files.rst describes every key the format takes (pfnmap.scenarios.schema)."""
    from pfnmap.scenarios import schema

    doc = (DOCS / "scenario-files.rst").read_text()
    keys = {*schema.TOP, *schema.MACHINE, *schema.STEP_COMMON, *schema.STEPS, *schema.EXPECT}
    for args in [*schema.STEPS.values(), *schema.DEVICES.values()]:
        keys |= set(args)
    keys |= set(schema.DEVICES)
    import re

    def named(key: str) -> bool:  # ``key``, **key**, or a table header such as ``[[step]]``
        return bool(re.search(rf"``[^`]*\b{key}\b[^`]*``|\*\*{key}\*\*", doc))

    missing = sorted(k for k in keys if not named(k))
    assert not missing
