"""The ``pfnmap`` command: ``pfnmap arches`` and ``pfnmap demo``.

Every failure a user can cause ends in one line on stderr (``pfnmap: error: ...``): exit code 2
for bad input (unknown arch, a RAM size that cannot be parsed or cannot hold the story), 1 for a
failure while the emulated kernel runs. Output is rich tables; with no terminal (CI, a pipe)
the console is 120 columns wide and has no colours.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pfnmap import __version__
from pfnmap.plugins.manager import ArchRegistry, PluginWarning, default_registry

from .demo import DemoError, DemoResult, run_demo
from .demo_render import format_size, render_comparison, render_demo
from .errors import KernelError, PfnmapError, UnknownArch
from .machine import Machine
from .physmem import parse_size
from .rules import UnknownEra, rules_for

PROG = "pfnmap"
DEFAULT_RAM = "64M"
#: struct pages cost host memory per emulated page; the story needs only a few MiB
MAX_DEMO_RAM = 16 << 30
#: width used when stdout is not a terminal
PIPE_WIDTH = 120


class UsageError(Exception):
    """Bad input from the command line: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is the one line ``pfnmap: error: ...`` (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def make_console(file: TextIO | None = None) -> Console:
    """A console for ``file`` (stdout by default) that needs no terminal."""
    file = file if file is not None else sys.stdout
    try:
        tty = file.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Console(file=file, width=None if tty else PIPE_WIDTH, highlight=False)


def _ram_size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    if value > MAX_DEMO_RAM:
        raise argparse.ArgumentTypeError(
            f"{text} is more than the demo allows ({format_size(MAX_DEMO_RAM)}); every emulated "
            f"page costs host memory and the story needs only a few MiB"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="An emulator of the Linux 2.6.15 VM_PFNMAP memory-management core "
        "(mm: re-architect the VM_UNPAGED logic, 6aab341e) on real MMU encodings.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    arches = commands.add_parser(
        "arches",
        help="list the registered arches and their paging geometry",
        description="List the registered arches: page size, table levels, large pages, "
        "address widths and byte order. Broken third-party plugins are listed after the table.",
    )
    arches.set_defaults(func=cmd_arches)
    demo = commands.add_parser(
        "demo",
        help="play the VM_PFNMAP story on an emulated machine",
        description="Map /dev/mem beyond and inside RAM, COW a private device mapping, fork, "
        "unmap and exit, and show at each step what vm_normal_page decided and why.",
    )
    demo.add_argument(
        "--arch",
        default="x86-64",
        metavar="NAME|all",
        help="arch to run on, or 'all' for every registered arch side by side "
        "(default: x86-64; see `pfnmap arches`)",
    )
    demo.add_argument(
        "--ram",
        default=parse_size(DEFAULT_RAM),
        type=_ram_size,
        metavar="SIZE",
        help=f"emulated RAM, e.g. 64M, 1G, 0x4000000 (default: {DEFAULT_RAM})",
    )
    demo.add_argument(
        "--era",
        default="seed",
        metavar="NAME",
        help="kernel era whose rules run: unpaged, seed, 2.6.15 or 2.6.26 (default: seed; "
        "see `pfnmap compare --help`)",
    )
    demo.set_defaults(func=cmd_demo)
    from .cli_compare import add_compare_parser

    add_compare_parser(commands)
    from .cli_decode import add_commands as add_decode_commands

    add_decode_commands(commands)
    # what a bare `pfnmap` lists as the commands to choose from
    parser.set_defaults(command_names=list(commands.choices))
    return parser


# arches -------------------------------------------------------------------------------------
def render_arches(console: Console, registry: ArchRegistry) -> None:
    """The arch table, then one warning line per broken plugin."""
    table = Table(
        title="registered arches",
        title_justify="left",
        header_style="bold",
        caption="levels: top first, entries per table x entry size",
        caption_justify="left",
    )
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for col in ("page size", "levels", "large pages", "VA bits", "PA bits", "byte order"):
        table.add_column(col, no_wrap=True, justify="right" if "bits" in col else "left")
    for name in registry.names():
        d = registry.arches[name].describe()
        levels = "\n".join(
            f"{lv_name} {entries} x {entry_bytes} B"
            for lv_name, entries, entry_bytes, _span in d["levels"]
        )
        large = ", ".join(format_size(size) for size in d["large_pages"]) or "-"
        table.add_row(
            Text(name, style="bold"),
            d["description"],
            format_size(d["page_size"]),
            levels,
            large,
            str(d["va_bits"]),
            str(d["phys_bits"]),
            d["byteorder"],
        )
    console.print(table)
    for plugin, error in registry.broken.items():
        console.print(
            Text(f"warning: skipped broken plugin {plugin!r}: {error.problem}"), style="yellow"
        )


def cmd_arches(args: argparse.Namespace, console: Console) -> int:
    render_arches(console, default_registry())
    return 0


# demo ---------------------------------------------------------------------------------------
def _arch_names(choice: str) -> list[str]:
    registry = default_registry()
    if choice == "all":
        names = registry.names()
        if not names:
            raise PfnmapError("no arch is registered")
        return names
    try:
        registry.get(choice)
    except UnknownArch as exc:
        raise UsageError(f"argument --arch: {exc}") from None
    return [choice]


def _boot(name: str, ram: int, era: str = "seed") -> Machine:
    try:
        return Machine(name, ram, era=era)
    except KernelError as exc:
        # the arch is known, so what the machine refuses is the RAM size
        raise UsageError(
            f"argument --ram: {format_size(ram)} on {name}: {exc.detail or exc}"
        ) from None


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    names = _arch_names(args.arch)
    try:
        rules_for(args.era)
    except UnknownEra as exc:
        raise UsageError(f"argument --era: {exc}") from None
    machines = [_boot(name, args.ram, args.era) for name in names]
    results: list[DemoResult] = []
    for machine in machines:
        try:
            results.append(run_demo(machine))
        except DemoError as exc:
            if exc.out_of_memory:
                raise UsageError(
                    f"argument --ram: {format_size(args.ram)} is too small for the demo on "
                    f"{exc.arch} (out of memory in step ({exc.key}))"
                ) from None
            raise
    for result in results:
        render_demo(console, result)
    if args.arch == "all":
        render_comparison(console, results)
    failed = [r.arch for r in results if not r.ok]
    if failed:
        raise PfnmapError(
            f"bad ptes or failed invariant checks on {', '.join(failed)} (see the report)"
        )
    return 0


# entry point --------------------------------------------------------------------------------
def _error(message: str) -> None:
    # one line, whatever the message held
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 runtime error, 2 bad input)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        code, command = _run(argv)
    _report_warnings(caught, command)
    return code


def _run(argv: Sequence[str] | None) -> tuple[int, str]:
    """Parse and run one command; returns (exit code, command name)."""
    command = ""
    try:
        args = build_parser().parse_args(argv)
        command = args.command or ""
        if not command:
            names = ", ".join(args.command_names)
            raise UsageError(f"a command is required: {names} (see pfnmap --help)")
        return args.func(args, make_console()), command
    except SystemExit as exc:  # --help and --version end here
        return (exc.code if isinstance(exc.code, int) else 0), command
    except UsageError as exc:
        _error(str(exc))
        return 2, command
    except PfnmapError as exc:
        _error(str(exc))
        return 1, command
    except BrokenPipeError:
        # the reader went away (pfnmap demo | head): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1, command
    except KeyboardInterrupt:
        return 130, command


def _report_warnings(caught: list[warnings.WarningMessage], command: str) -> None:
    """Plugin warnings as one line each; any other warning as Python would show it."""
    seen: set[str] = set()
    for w in caught:
        if not issubclass(w.category, PluginWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
            continue
        text = " ".join(str(w.message).split())
        # `pfnmap arches` already lists the skipped plugins after its table
        if command == "arches" and text.startswith("skipping "):
            continue
        if text not in seen:
            seen.add(text)
            print(f"{PROG}: warning: {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
