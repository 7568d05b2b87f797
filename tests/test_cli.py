"""The pfnmap command line: output of `arches` and `demo`, exit codes, one-line errors."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import warnings

import pytest
from rich.console import Console

from pfnmap import Machine, __version__
from pfnmap.cli import demo as demo_module
from pfnmap.cli.arches import render_arches
from pfnmap.cli.demo import DemoError, run_demo
from pfnmap.cli.main import main
from pfnmap.errors import KernelBug, PluginError
from pfnmap.kernel.units import format_size
from pfnmap.plugins import manager as manager_module
from pfnmap.plugins.manager import ArchRegistry, PluginWarning, default_registry


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pfnmap: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in err


# arches -------------------------------------------------------------------------------------
def test_arches_lists_every_registered_arch(capsys):
    code, out, err = run(capsys, "arches")
    assert code == 0 and err == ""
    registry = default_registry()
    assert registry.names()
    for name in registry.names():
        arch = registry.get(name)
        assert name in out
        assert format_size(arch.page_size) in out
        for level in arch.levels:
            assert f"{level.name} {level.entries} x {level.entry_bytes} B" in out


def test_arches_lists_broken_plugins_after_the_table():
    registry = ArchRegistry()
    good = default_registry().get("x86-64")
    registry.arches["x86-64"] = good
    registry.broken["acme_arch"] = PluginError("acme_arch", "pte layout: fields overlap at 'pfn'")
    out = io.StringIO()
    render_arches(Console(file=out, width=120), registry)
    lines = out.getvalue().splitlines()
    warning = [i for i, line in enumerate(lines) if "acme_arch" in line]
    table_end = max(i for i, line in enumerate(lines) if "x86-64" in line)
    assert len(warning) == 1 and warning[0] > table_end
    assert "fields overlap at 'pfn'" in lines[warning[0]]


def test_plugin_warnings_become_one_line_each(capsys, monkeypatch):
    real = manager_module.default_registry

    def noisy():
        warnings.warn("could not load a pfnmap plugin: no module acme", PluginWarning, stacklevel=1)
        warnings.warn("skipping plugin 'acme': bad layout", PluginWarning, stacklevel=1)
        return real()

    monkeypatch.setattr(manager_module, "default_registry", noisy)
    code, out, err = run(capsys, "arches")
    assert code == 0 and "x86-64" in out
    # the load failure is news; the skipped plugin is already in the listing
    assert err.splitlines() == ["pfnmap: warning: could not load a pfnmap plugin: no module acme"]


# demo ---------------------------------------------------------------------------------------
def test_demo_tells_the_whole_story(capsys, arch_name):
    code, out, err = run(capsys, "demo", "--arch", arch_name)
    assert code == 0, err
    assert err == ""
    for key in "abcdef":
        assert f"({key}) " in out
    for needle in (
        f"pfnmap demo on {arch_name}",
        "VM_PFNMAP|VM_IO|VM_RESERVED",
        "raw pfn",
        "COWed page in a PFN vma",
        "do_wp_page",
        "cow_user_page",
        "copy_one_pte",
        "zap_pte_range",
        "machine log: empty",
        "check_invariants: ok",
        "every invariant check passed",
    ):
        assert needle in out
    assert "FAILED" not in out
    # no terminal here: the console is 120 columns
    assert max(len(line) for line in out.splitlines()) <= 120


def test_demo_default_is_x86_64(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "pfnmap demo on x86-64" in out


def test_demo_all_runs_every_arch_side_by_side(capsys):
    code, out, err = run(capsys, "demo", "--arch", "all", "--ram", "32M")
    assert code == 0, err
    names = default_registry().names()
    for name in names:
        assert f"pfnmap demo on {name}" in out
    summary = out[out.index("the same story on every arch") :]
    headers = [line for line in summary.splitlines() if line.startswith("┃")]
    # one column per arch, its name unbroken (more arches than fit the width: several tables)
    assert all(sum(name in h.split() for h in headers) == 1 for name in names)
    assert "Every arch made the same decisions" in summary


def test_demo_ram_moves_the_io_region_above_ram(capsys):
    code, out, _ = run(capsys, "demo", "--ram", "4G")
    assert code == 0
    io = Machine("x86-64", "4G").phys.io_regions[0]
    assert io.start >= 4 << 30
    assert "RAM 4 GiB" in out
    assert f"{io.name} at {io.start:#x}" in out


# bad input: exit 2, one line ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["demo", "--arch", "nope"], ["unknown arch 'nope'", "x86-64"]),
        (["demo", "--ram", "lots"], ["--ram", "not a size"]),
        (["demo", "--ram", "0"], ["--ram", "not a positive size"]),
        (["demo", "--ram", "-4M"], ["--ram"]),
        (["demo", "--ram", "1T"], ["--ram", "more than the demo allows"]),
        (["demo", "--ram", "4K"], ["--ram", "too small to boot"]),
        (["demo", "--ram", "5000"], ["--ram", "multiple of a page"]),
        (["demo", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["frobnicate"], ["invalid choice"]),
        ([], ["a command is required"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needles):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, *needles)


def _ram_too_small_for_the_story(arch: str) -> int | None:
    """A RAM size that boots ``arch`` but runs out of memory during the story."""
    page_size = default_registry().get(arch).page_size
    failing = None
    for pages in range(1, 64):
        try:
            machine = Machine(arch, pages * page_size)
        except Exception:
            continue
        try:
            run_demo(machine)
        except DemoError as exc:
            if exc.out_of_memory:
                failing = pages * page_size
            continue
        return failing
    return failing


def test_ram_too_small_for_the_story_is_bad_input(capsys):
    ram = _ram_too_small_for_the_story("x86-64")
    if ram is None:
        pytest.skip("every bootable RAM size is enough for the story")
    code, out, err = run(capsys, "demo", "--ram", str(ram))
    assert code == 2 and out == ""
    assert_one_line_error(err, "--ram", "too small for the demo", "out of memory in step")


# runtime failures: exit 1, one line ---------------------------------------------------------
def test_a_kernel_failure_during_the_demo_is_exit_1(capsys, monkeypatch):
    def broken(machine):
        raise DemoError(machine.arch.name, "c", "writing", KernelBug("do_wp_page: bad state"))

    monkeypatch.setattr(demo_module, "run_demo", broken)
    code, out, err = run(capsys, "demo")
    assert code == 1 and out == ""  # every run finishes before anything is printed
    assert_one_line_error(err, "step (c)", "do_wp_page: bad state")


def test_failed_invariants_print_the_report_and_exit_1(capsys, monkeypatch):
    def audited(machine):
        result = run_demo(machine)
        result.step("d").invariants = "page 0x15 (anon): count=3 mapcount=2, expected count=2"
        return result

    monkeypatch.setattr(demo_module, "run_demo", audited)
    code, out, err = run(capsys, "demo")
    assert code == 1
    assert "count=3 mapcount=2" in out and "FAILED" in out
    assert_one_line_error(err, "failed invariant checks on x86-64")


# --version, --help ----------------------------------------------------------------------------
def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"pfnmap {__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["arches", "--help"]])
def test_help(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "usage: pfnmap" in out
    if argv[0] == "demo":
        assert "--arch" in out and "--ram" in out


# a real process ----------------------------------------------------------------------------
def _commands() -> list[list[str]]:
    commands = [[sys.executable, "-m", "pfnmap"]]
    script = shutil.which("pfnmap")
    if script:
        commands.append([script])
    return commands


@pytest.mark.parametrize("command", _commands(), ids=lambda c: "script" if len(c) == 1 else "-m")
def test_subprocess_exit_codes_and_one_line_errors(command):
    # as in CI: output to a pipe, and nobody forcing colours on
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    ok = subprocess.run([*command, "demo"], capture_output=True, text=True, check=False, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "(f) the machine log and the invariant check" in ok.stdout
    assert max(len(line) for line in ok.stdout.splitlines()) <= 120
    assert "\x1b[" not in ok.stdout  # no colour codes into a pipe

    bad = subprocess.run(
        [*command, "demo", "--arch", "no-such-arch"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert_one_line_error(bad.stderr, "unknown arch 'no-such-arch'")
