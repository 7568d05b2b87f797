"""The ``pfnmap`` command: the parser, the dispatch and how every failure ends.

Every failure a user can cause ends in one line on stderr (``pfnmap: error: ...``): exit code 2
for bad input (unknown arch, a RAM size that cannot be parsed or cannot hold the story), 1 for a
failure while the emulated kernel runs. Each command lives in its own module
(:data:`COMMANDS`), whose top level is as light as argparse: what a command needs (numpy,
construct, rich, the plugin manager) is imported when it runs, so ``pfnmap --help`` costs less
than importing numpy.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

from pfnmap import __version__
from pfnmap.errors import PfnmapError, PluginWarning
from pfnmap.kernel.units import format_size, parse_size

if TYPE_CHECKING:
    from rich.console import Console

PROG = "pfnmap"
#: the modules that add a command each (their ``add_parser``), in the order --help lists them
COMMANDS = (
    "pfnmap.cli.arches",
    "pfnmap.cli.demo_command",
    "pfnmap.cli.run",
    "pfnmap.cli.compare",
    "pfnmap.cli.decode",
    "pfnmap.cli.vtop",
    "pfnmap.cli.info",
)
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
    from rich.console import Console

    file = file if file is not None else sys.stdout
    try:
        tty = file.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Console(file=file, width=None if tty else PIPE_WIDTH, highlight=False)


class LazyConsole:
    """The console :func:`make_console` makes, made when a command first uses it: commands
    that print through it pay for rich, the others (``decode --format jsonl``...) do not."""

    def __init__(self, file: TextIO | None = None) -> None:
        object.__setattr__(self, "_file", file)
        object.__setattr__(self, "_console", None)

    def real(self) -> Console:
        """The rich console itself."""
        console = object.__getattribute__(self, "_console")
        if console is None:
            console = make_console(object.__getattribute__(self, "_file"))
            object.__setattr__(self, "_console", console)
        return console

    def __getattr__(self, name: str):
        return getattr(self.real(), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self.real(), name, value)


def ram_size(text: str) -> int:
    """argparse type of an emulated RAM size ("64M"): positive and at most MAX_DEMO_RAM."""
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


def arch_names(choice: str) -> list[str]:
    """The arches an ``--arch`` value names: one registered arch, or every one for "all"."""
    from pfnmap.errors import UnknownArch
    from pfnmap.plugins import manager

    registry = manager.default_registry()
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


def lazy_command(module: str, function: str) -> Callable[[argparse.Namespace, Console], int]:
    """A command's ``func`` that imports ``module`` only when the command runs."""

    def run(args: argparse.Namespace, console: Console) -> int:
        return getattr(importlib.import_module(module), function)(args, console)

    return run


def address(text: str, kind: str = "address") -> int:
    """argparse type of a 64-bit address: decimal or 0x hex, underscores allowed."""
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address (write it as 0x1000 or 4096)"
        ) from None
    if value < 0 or value >= 1 << 64:
        raise argparse.ArgumentTypeError(f"{text} is not a 64-bit {kind}")
    return value


def physical_address(text: str) -> int:
    """:func:`address` for a physical address (a table root, an image base)."""
    return address(text, "physical address")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="An emulator of the Linux 2.6.15 VM_PFNMAP memory-management core "
        "(mm: re-architect the VM_UNPAGED logic, 6aab341e) on real MMU encodings.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).add_parser(commands)
    # what a bare `pfnmap` lists as the commands to choose from
    parser.set_defaults(command_names=list(commands.choices))
    return parser


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
        return args.func(args, LazyConsole()), command  # type: ignore[arg-type]
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
