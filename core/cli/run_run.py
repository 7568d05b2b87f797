"""What ``pfnmap run`` does once its arguments are parsed (the parser is :mod:`pfnmap.cli.run`;
this module is imported only when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pfnmap.cli.main import UsageError, arch_names
from pfnmap.cli.run_render import render_run, where
from pfnmap.errors import KernelError, PfnmapError
from pfnmap.kernel.rules import UnknownEra, rules_for
from pfnmap.kernel.units import format_size
from pfnmap.scenarios.files import ScenarioFile, ScenarioFileError, load, shipped
from pfnmap.scenarios.play import Run, play


def resolve(name: str) -> str:
    """A path as given, or the path of a shipped scenario file of that name."""
    if Path(name).exists():
        return name
    files = shipped()
    if name in files:
        return files[name]
    if name.endswith(".toml") or "/" in name:
        return name  # load() says "no such file" with the name as given
    raise UsageError(f"no file {name!r} and no shipped scenario of that name (known: "
                     f"{', '.join(files)}; see pfnmap run --list)")  # fmt: skip


def load_file(name: str) -> ScenarioFile:
    try:
        return load(resolve(name))
    except ScenarioFileError as exc:
        raise UsageError(str(exc)) from None


def boot_for(sc: ScenarioFile, arch: str, era: str, ram: int):
    from pfnmap.machine import Machine

    try:
        rules_for(era)
    except UnknownEra as exc:
        raise UsageError(f"era {era!r}: {exc}") from None
    try:
        return Machine(arch, ram, era=era)
    except KernelError as exc:
        raise UsageError(f"RAM {format_size(ram)} on {arch}: {exc.detail or exc}") from None


def play_file(sc: ScenarioFile, arch: str, era: str, ram: int) -> Run:
    return play(sc, boot_for(sc, arch, era, ram))


def html_target(path: str) -> Path:
    """The --html path, checked before any work: a bad one is exit 2 (one line)."""
    from pfnmap.render.html import HtmlError, check_writable

    try:
        return check_writable(path)
    except HtmlError as exc:
        raise UsageError(f"argument --html: {exc}") from None


def write_run_html(console: Console, out: Path, run: Run) -> None:
    from pfnmap.render.html import HtmlError
    from pfnmap.render.html import write_run_html as write

    try:
        write(out, run)
    except HtmlError as exc:
        raise UsageError(f"argument --html: {exc}") from None
    console.print(f"wrote {out}")


def write_story_html(console: Console, out: Path, name: str, arch: str, era: str, ram: int) -> None:
    """Play the shipped scenario file ``name`` on a fresh machine and write its page."""
    sc = load(shipped()[name])
    write_run_html(console, out, play_file(sc, arch, era, ram))


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    if args.list:
        table = Table(title="shipped scenario files", title_justify="left", header_style="bold")
        table.add_column("name", no_wrap=True)
        table.add_column("what happens")
        for name, path in shipped().items():
            table.add_row(name, load(path).title)
        console.print(table)
        return 0
    if not args.file:
        raise UsageError("a scenario file is required (see pfnmap run --list)")
    sc = load_file(args.file)
    arches = arch_names(args.arch or sc.arch)
    era = args.era or sc.era
    ram = args.ram or sc.ram
    if args.html and len(arches) > 1:
        raise UsageError("argument --html: one arch at a time (not --arch all)")
    html_out = html_target(args.html) if args.html else None
    runs = [play_file(sc, arch, era, ram) for arch in arches]
    for run in runs:
        render_run(console, run, quiet=args.quiet)
    if html_out is not None:
        write_run_html(console, html_out, runs[0])
    failed = [(run, c) for run in runs for c in run.failed]
    if failed:
        lines = sorted({where(run, c.line) for run, c in failed})
        total = sum(len(run.checks) for run in runs)
        raise PfnmapError(
            f"{len(failed)} of {total} expectations failed ({', '.join(lines)})"
            + (f" on {', '.join(sorted({r.arch for r, _ in failed}))}" if len(runs) > 1 else "")
        )
    return 0
