"""The conformance kit (pfnmap.testing), its pytest plugin, and what validation tells an author.

The kit is run the way a third party runs it, through pytester (in-process) and through
``python -m pfnmap.testing`` (a subprocess), on the built-in arches, which must pass, and on
deliberately broken arches, each of which must fail the check that names its defect. The
validation half shows the messages a plugin author sees for malformed arches, and that none
of them can take the registry down.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pluggy
import pytest

from pfnmap import Machine
from pfnmap.arches.x86_64 import X86_64
from pfnmap.errors import LayoutError, PluginError
from pfnmap.machine.invariants import InvariantError
from pfnmap.plugins import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, hookimpl
from pfnmap.plugins.manager import (
    PluginWarning,
    build_registry,
    default_registry,
    make_plugin_manager,
)
from pfnmap.plugins.validation import validate_arch
from pfnmap.testing import conformance
from pfnmap.testing.checks import check_id, deviation
from pfnmap.testing.tables import SyntheticTables

pytest_plugins = ["pytester"]

PLUGIN = "pfnmap.testing.plugin"
#: what the in-process kit runs see: they share pfnmap's cached default registry (the
#: built-ins, and in ``tox -e riscv-sv39`` the example plugin too)
ARCHES = default_registry().names()


# the kit's own structure ----------------------------------------------------------------------
def test_every_check_has_an_id_and_is_collected_in_order() -> None:
    """Ids may repeat (one property, several tests); a test without one could not be
    declared as a deviation."""
    assert [fn.__name__ for fn in conformance.CHECKS if not check_id(fn)] == []
    assert len(set(conformance.CHECKS)) == len(conformance.CHECKS)
    collected = [
        value
        for name, value in vars(conformance).items()
        if name.startswith("test_") and inspect.isfunction(value)
    ]
    assert collected == conformance.CHECKS, "conformance.CHECKS and the module disagree"


def test_check_ids_and_deviations() -> None:
    assert check_id(conformance.CHECKS[0]) == "validation.clean"
    assert check_id(lambda: None) is None

    class Declares:
        conformance_xfail = {"ops.cow": "historic"}

    assert deviation(Declares(), "ops.cow") == "historic"  # type: ignore[arg-type]
    assert deviation(Declares(), "ops.write") is None  # type: ignore[arg-type]
    assert deviation(X86_64(), "ops.cow") is None


# running the kit through pytest ------------------------------------------------------------------
@pytest.fixture
def kit(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs load pfnmap's plugin explicitly and no pytest plugin from entry
    points, so the result does not depend on what else is installed."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pytester.syspathinsert()
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", PLUGIN, "-p", "no:cacheprovider", *args)


def test_the_kit_passes_on_every_registered_arch(kit: pytest.Pytester) -> None:
    """The one xfail is sparc64's declared ops.cow deviation (its 2.6.15 pte_mkdirty)."""
    result = run(kit, "--pfnmap-conformance=all", "-rx")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes["xfailed"] == 1
    result.stdout.fnmatch_lines(
        ["*XFAIL*test_mkdirty_never_makes_a_pte_writable?sparc64?*fa2e71a6fcee*"]
    )
    per_arch = len(conformance.CHECKS) + 1  # test_devmem_private_write_cows runs twice
    assert outcomes["passed"] + outcomes["xfailed"] + outcomes.get("skipped", 0) == per_arch * len(
        ARCHES
    )
    result.stdout.fnmatch_lines([f"pfnmap conformance kit: {', '.join(ARCHES)}"])


def test_without_the_option_the_plugin_only_adds_fixtures(kit: pytest.Pytester) -> None:
    kit.makepyfile(
        test_mine="""
        def test_uses_a_machine(pfnmap_machine):
            p = pfnmap_machine.spawn()
            addr = p.mmap(pfnmap_machine.arch.page_size)
            p.write(addr, b"mine")
            assert p.read(addr, 4) == b"mine"
        """
    )
    result = run(kit, "--collect-only", "-q")
    collected = [line for line in result.outlines if "::" in line]
    assert collected and all(line.startswith("test_mine.py::") for line in collected)
    assert len(collected) == len(ARCHES)  # pfnmap_arch defaults to every registered arch
    result = run(kit, "--pfnmap-arch=x86-64,sparc64", "-q")
    result.assert_outcomes(passed=2)


def test_naming_paths_runs_the_kit_next_to_them(kit: pytest.Pytester) -> None:
    kit.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = run(kit, "test_mine.py", "--pfnmap-conformance=x86-2level", "-q", "-k", "mine or pfn")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 3, result.stdout.str()  # mine + the kit's pfn checks
    result.stdout.fnmatch_lines(["*passed*"])


def test_an_unknown_arch_is_a_usage_error(kit: pytest.Pytester) -> None:
    result = run(kit, "--pfnmap-conformance=vax")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pfnmap-conformance: unknown arch 'vax' (registered: *x86-64*"])


def test_the_machine_fixture_audits_the_machine(kit: pytest.Pytester) -> None:
    """A test that leaves a page unaccounted for errors in teardown, naming the page."""
    kit.makepyfile(
        test_leak="""
        def test_leaks_a_page(pfnmap_machine):
            pfnmap_machine.phys.alloc_page()
        """
    )
    result = run(kit, "--pfnmap-arch=x86-64", "-q")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*InvariantError*expected count=0*"])


# broken arches: each must fail the check that names its defect -----------------------------------
BROKEN_HEADER = """
from pfnmap.arches.x86_64 import X86_64
from pfnmap.plugins import hookimpl


@hookimpl
def pfnmap_arches():
    return [Broken()]
"""

#: arches that pass the registry's validation but are wrong, one plugin module each
BROKEN = {
    "acme_oldwrite": """
class Broken(X86_64):
    # pte_mkold also clears RW: young and write are no longer independent
    name = "acme-oldwrite"

    def pte_mkold(self, pte):
        return super().pte_mkold(pte) & ~self._PAGE_RW
""",
    "acme_nowp": """
class Broken(X86_64):
    # the MMU model ignores RW: a write-protected pte is writable, so COW never happens
    name = "acme-nowp"

    def pte_hw_access_ok(self, pte, write):
        return super().pte_hw_access_ok(pte | self._PAGE_RW, write)
""",
    "acme_stale": """
class Broken(X86_64):
    # declares a deviation it does not have
    name = "acme-stale"
    conformance_xfail = {"ops.write": "we used to get this wrong"}
""",
    "acme_nc": """
class Broken(X86_64):
    # pgprot_noncached also drops USER: an O_SYNC /dev/mem mapping is unreachable
    name = "acme-nc"

    def pgprot_noncached(self, prot):
        return super().pgprot_noncached(prot) & ~self._PAGE_USER
""",
}


@pytest.mark.parametrize(
    ("module", "failing"),
    [
        ("acme_oldwrite", ["test_young_pair"]),
        ("acme_stale", ["test_write_pair"]),
        ("acme_nc", ["test_noncached_keeps_the_protection"]),
        (
            "acme_nowp",
            [
                "test_mkdirty_never_makes_a_pte_writable",
                "test_protection_map_means_what_mm_expects",
                "test_anon_read_maps_the_zero_page",
                "test_cow_after_fork",
                "test_devmem_private_write_cows",
                "test_mprotect",
            ],
        ),
    ],
)
def test_the_kit_catches_a_broken_arch(
    kit: pytest.Pytester, module: str, failing: list[str]
) -> None:
    """Each broken arch fails exactly the checks about its defect, and nothing else."""
    kit.makepyfile(**{module: BROKEN_HEADER + BROKEN[module]})
    arch = module.replace("_", "-")
    result = run(kit, f"--pfnmap-conformance={arch}", f"--pfnmap-plugin={module}", "-q", "-rfE")
    failed = {
        line.split("::")[1].split("[")[0]
        for line in result.outlines
        if line.startswith(("FAILED", "ERROR")) and "::" in line
    }
    assert failed == set(failing), result.stdout.str()
    if module == "acme_stale":
        result.stdout.fnmatch_lines(["*XPASS(strict)*we used to get this wrong*"])


def test_a_plugin_the_registry_refuses_is_a_usage_error_that_says_why(kit: pytest.Pytester) -> None:
    kit.makepyfile(
        acme_noop="""
        from pfnmap.arches.x86_64 import X86_64
        from pfnmap.plugins import hookimpl

        class NoYoung(X86_64):
            name = "acme-noop"
            pte_mkyoung = None

        @hookimpl
        def pfnmap_arches():
            return [NoYoung()]
        """
    )
    # the kit runs in this process, so the registry's warning about the plugin surfaces here
    with pytest.warns(PluginWarning, match="acme_noop"):
        result = run(kit, "--pfnmap-conformance=acme-noop", "--pfnmap-plugin=acme_noop")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*plugin 'acme_noop': acme-noop: missing pte operation(s): pte_mkyoung*"]
    )
    result = run(kit, "--pfnmap-conformance=x86-64", "--pfnmap-plugin=no_such_module")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pfnmap-plugin*no_such_module*"])


# python -m pfnmap.testing -------------------------------------------------------------------------
def _python_m(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, DISABLE_AUTOLOAD_ENV: "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pfnmap.testing", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_python_m_runs_the_kit(tmp_path: Path) -> None:
    done = _python_m(tmp_path, "x86-2level", "--", "-q", "-p", "no:randomly")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_python_m_refuses_an_unknown_arch(tmp_path: Path) -> None:
    done = _python_m(tmp_path, "vax")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unknown arch 'vax'" in done.stderr


def test_the_pytest11_entry_point_names_the_plugin() -> None:
    """What pyproject declares; an installed pfnmap exposes it (checked when it is)."""
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '[project.entry-points.pytest11]\npfnmap = "pfnmap.testing.plugin"' in text
    installed = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "pfnmap"
    ]
    for ep in installed:
        assert ep.value == PLUGIN


# synthetic page tables ----------------------------------------------------------------------------
@pytest.fixture
def tables() -> Any:
    machine = Machine(arch="x86-64", ram="8M")
    built = SyntheticTables(machine)
    yield built
    built.release()
    machine.check_invariants()


def test_synthetic_tables_map_walk_and_release(tables: SyntheticTables) -> None:
    arch = tables.arch
    prot = arch.protection_map[0b1011]  # shared read-write
    tables.map(0x7000_0000_0000, 0x1234, arch.pte_mkyoung(arch.pte_mkdirty(prot)))
    assert tables.translate(0x7000_0000_0010) == (0x1234 << 12) + 0x10
    assert tables.translate(0x7000_0000_1000) is None
    assert [step.level_name for step in tables.walk(0x7000_0000_0000)] == [
        "pgd",
        "pud",
        "pmd",
        "pte",
    ]
    assert len(tables.frames()) == 4 and len(tables.dump()) == 4
    with pytest.raises(InvariantError):  # held frames are visible to the audit until release
        tables.machine.check_invariants()


def test_synthetic_tables_refuse_what_cannot_be_mapped(tables: SyntheticTables) -> None:
    arch = tables.arch
    prot = arch.protection_map[0b1011]
    with pytest.raises(ValueError, match="not aligned"):
        tables.map(0x1008, 1, prot)
    with pytest.raises(ValueError, match="outside"):
        tables.map(1 << 48, 1, prot)
    tables.map(1 << 30, 1 << 18, prot, size=1 << 30)  # a 1 GiB leaf at the pud
    with pytest.raises(ValueError, match="not a table pointer"):
        tables.map((1 << 30) + 4096, 1, prot)
    with pytest.raises(ValueError, match="no 0x1000000-byte pages"):
        tables.map(0, 0, prot, size=1 << 24)


# validation messages (plugins/validation.py, plugins/manager.py) ----------------------------------
class ArchPlugin:
    def __init__(self, *arches: Any) -> None:
        self.arches = arches

    @hookimpl
    def pfnmap_arches(self) -> list[Any]:
        return [a() if isinstance(a, type) else a for a in self.arches]


def _refusal(*arches: Any) -> str:
    """build_registry with one third-party plugin "acme": its warning (the others stay fine)."""
    pm = make_plugin_manager(autoload=False)
    pm.register(ArchPlugin(*arches), name="acme")
    with pytest.warns(PluginWarning) as record:
        registry = build_registry(pm)
    assert "x86-64" in registry.arches and "acme" in registry.broken
    (message,) = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    assert "plugin 'acme'" in message
    return message


class WrongSignature(X86_64):
    name = "acme-sig"

    def pte_mkwrite(self) -> int:  # type: ignore[override]
        return 0


class Raises(X86_64):
    name = "acme-raises"

    def mk_table_entry(self, level: int, paddr: int) -> int:
        raise ZeroDivisionError("no tables today")


class OldIsYoung(X86_64):
    name = "acme-young"

    def pte_mkold(self, pte: int) -> int:
        return pte


class TableIsLeaf(X86_64):
    name = "acme-leaf"

    def table_entry_leaf(self, level: int, entry: int) -> bool:
        return bool(entry)


class UnalignedTask(X86_64):
    name = "acme-task"
    task_size = X86_64.task_size - 8


class TwoPmds(X86_64):
    name = "acme-levels"
    levels = (
        X86_64.levels[0],
        dataclasses.replace(X86_64.levels[1], name="pmd"),
        *X86_64.levels[2:],
    )


class ClashingFormats(X86_64):
    name = "acme-formats"
    levels = (
        *X86_64.levels[:2],
        dataclasses.replace(X86_64.levels[2], leaf_name="pud-1G"),
        X86_64.levels[3],
    )


class Uninitialised(X86_64):
    name = "acme-init"

    def __init__(self) -> None:  # forgets super().__init__()
        pass


@pytest.mark.parametrize(
    ("arch", "text"),
    [
        (WrongSignature, "acme-sig: pte_mkwrite(0x8000000000001025) raised TypeError"),
        (Raises, "acme-raises: mk_table_entry(0x0, 0x5000) raised ZeroDivisionError: no tables"),
        (OldIsYoung, "acme-young: pte_mkyoung/pte_mkold do not set and clear pte_young"),
        (TableIsLeaf, "acme-leaf: level pgd: a table entry is taken for a leaf"),
        (UnalignedTask, "acme-task: task_size 0x7fffffffeff8 is not page aligned"),
        (TwoPmds, "acme-levels: two levels are called 'pmd'"),
        (ClashingFormats, "acme-formats: two entry formats are called 'pud-1G'"),
        (Uninitialised, "acme-init: validation failed with AttributeError"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_validation_names_the_plugin_arch_and_problem(arch: type, text: str) -> None:
    assert text in _refusal(arch)


def test_a_layout_error_names_the_arch() -> None:
    import construct as cs

    class Gap(X86_64):
        name = "acme-gap"
        levels = (
            *X86_64.levels[:3],
            dataclasses.replace(
                X86_64.levels[3], leaf=cs.ByteSwapped(cs.BitStruct("pfn" / cs.BitsInteger(63)))
            ),
        )

    with pytest.raises(LayoutError, match=r"arch 'acme-gap': layout 'pte': bits 0\.\.0"):
        Gap()
    message = _refusal(Gap)
    assert "pfnmap_arches() raised LayoutError: arch 'acme-gap': layout 'pte'" in message


def test_validate_arch_never_raises() -> None:
    """Whatever an arch's methods do, validation answers with problems."""
    for arch in (WrongSignature(), Raises(), OldIsYoung(), TableIsLeaf()):
        problems = validate_arch(arch)
        assert problems and all(arch.name in p for p in problems), problems


class FakeEntryPoint:
    def __init__(self, name: str, obj: Any) -> None:
        self.name, self.group, self.value, self._obj = name, ENTRY_POINT_GROUP, f"{name}:p", obj

    def load(self) -> Any:
        return self._obj


def test_an_entry_point_pluggy_refuses_is_skipped_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hook implementation with arguments the hookspec lacks used to stop the manager; now
    that plugin is skipped with a warning naming it, and the next one still loads."""

    class BadArgs:
        @hookimpl
        def pfnmap_arches(self, extra: int) -> list[Any]:
            return []

    class Good(X86_64):
        name = "acme-good"

    eps = [FakeEntryPoint("badargs", BadArgs()), FakeEntryPoint("good", ArchPlugin(Good))]
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [e for e in eps if e.group == kw.get("group")],
    )
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    with pytest.warns(PluginWarning, match=r"(?s)skipping pfnmap plugin 'badargs'.*'extra'"):
        pm = make_plugin_manager()
    assert pm.get_plugin("badargs") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "acme-good" in build_registry(pm).arches


def test_a_broken_plugin_never_takes_the_registry_down() -> None:
    """Every malformed arch above at once, next to a good one: all refused, the rest works."""
    pm = make_plugin_manager(autoload=False)
    for i, arch in enumerate((WrongSignature, Raises, Uninitialised, OldIsYoung)):
        pm.register(ArchPlugin(arch), name=f"acme{i}")

    class Fine(X86_64):
        name = "acme-fine"

    pm.register(ArchPlugin(Fine), name="fine")
    with pytest.warns(PluginWarning):
        registry = build_registry(pm)
    assert set(registry.broken) == {"acme0", "acme1", "acme2", "acme3"}
    with pytest.raises(PluginError, match="pte_mkwrite"):
        registry.get("acme-sig")
    machine = Machine(arch=registry.get("acme-fine"), ram="8M", plugin_manager=pm)
    proc = machine.spawn()
    proc.write(proc.mmap(4096), b"ok")
    machine.check_invariants()


def test_pluggy_is_what_refuses_bad_arguments() -> None:
    """The refusal the manager now turns into a warning comes from pluggy itself."""

    class BadArgs:
        @hookimpl
        def pfnmap_arches(self, extra: int) -> list[Any]:
            return []

    with pytest.raises(pluggy.PluginValidationError, match="extra"):
        make_plugin_manager(autoload=False).register(BadArgs(), name="x")


def test_the_kit_docs_name_every_check() -> None:
    """docs/plugins.rst (its tutorial) lists the check ids an author may meet."""
    doc = (Path(__file__).parents[1] / "docs" / "plugins.rst").read_text()
    missing = [
        cid for cid in (check_id(fn) for fn in conformance.CHECKS) if f"``{cid}``" not in doc
    ]
    assert not missing, missing
