"""What ``pfnmap decode`` and ``pfnmap dump`` do once their arguments are parsed (the parser is
:mod:`pfnmap.cli.decode`; this module is imported only when one of them runs)."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from pfnmap.arch import Arch
from pfnmap.cli.decode import PROGRESS_MIN_BYTES
from pfnmap.cli.main import PROG, UsageError
from pfnmap.decode.dump import SCENARIOS, build_scenario, dump_machine
from pfnmap.decode.formats import (
    FormatError,
    qemu_mode,
    records,
    summary_record,
    write_csv,
    write_jsonl,
    write_qemu_mem,
    write_qemu_tlb,
    write_table,
)
from pfnmap.decode.hints import HintError, Hints, parse_ram_ranges, read_vmas_file
from pfnmap.decode.image import check_elf_arch, open_image
from pfnmap.decode.walker import Problem, Walker, summary_hint
from pfnmap.errors import KernelError, UnknownArch
from pfnmap.kernel.rules import rules_for
from pfnmap.kernel.units import format_size
from pfnmap.plugins.manager import default_registry


def _arch(name: str) -> Arch:
    try:
        return default_registry().get(name)
    except UnknownArch as exc:
        raise UsageError(f"argument --arch: {exc}") from None


def _hints(args: argparse.Namespace) -> Hints | None:
    ram = None
    if args.ram is not None:
        try:
            ram = parse_ram_ranges(args.ram)
        except HintError as exc:
            raise UsageError(f"argument --ram: {exc}") from None
    vmas = read_vmas_file(args.vmas) if args.vmas is not None else []
    if ram is None and not vmas:
        return None
    return Hints(ram, vmas, rules_for(args.era))


def _problem_line(problem: Problem) -> None:
    print(f"{PROG}: problem: {problem.line()}", file=sys.stderr)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _progress(args: argparse.Namespace, console: Console, image_size: int) -> Progress | None:
    """The progress bar, or None. By default it shows when stderr is a terminal, the image is
    large, and the output does not stream to the same terminal (the human table does: then
    the bar shares its console, which keeps it below the rows). Never on stdout's data."""
    want = args.progress
    if want is None:
        want = (
            _isatty(sys.stderr)
            and image_size >= PROGRESS_MIN_BYTES
            and (args.format == "table" or not _isatty(sys.stdout))
        )
    if not want:
        return None
    shared = args.format == "table" and console.is_terminal
    return Progress(
        TextColumn("decoding"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[tables]} tables"),
        TimeElapsedColumn(),
        console=console if shared else Console(stderr=True),
        transient=True,
        redirect_stdout=False,  # JSON lines and CSV go to stdout untouched
        redirect_stderr=not shared,
    )


def _root(arch: Arch, root: int | tuple[str, int]) -> tuple[int, int]:
    """(table address, VA of its first entry) from ``--root``: an address, or a register."""
    if isinstance(root, int):
        return root, 0
    register, value = root
    if not arch.root_registers:
        raise UsageError(f"argument --root: {arch.name} has no base registers; give an address")
    try:
        return arch.root_from_register(register, value)
    except ValueError as exc:
        raise UsageError(f"argument --root: {exc}") from None


def cmd_decode(args: argparse.Namespace, console: Console) -> int:
    arch = _arch(args.arch)
    if args.format in ("qemu-tlb", "qemu-mem"):
        try:
            qemu_mode(arch)
        except FormatError as exc:
            raise UsageError(f"argument --format: {exc}") from None
    hints = _hints(args)
    out = sys.stdout
    with open_image(args.image, args.base, args.image_format) as image:
        check_elf_arch(image, arch, default_registry().arches.values())
        root, va_base = _root(arch, args.root)
        walker = Walker(image, arch, root, max_tables=args.max_tables, va_base=va_base)
        bar = _progress(args, console, image.size)
        if bar is not None:
            task = bar.add_task("decode", total=walker.va_total, tables=0)

            def progress_cb(done: int, total: int) -> None:
                bar.update(task, completed=done, tables=walker.tables_read)

            walker.progress = progress_cb
            bar.start()
        try:
            _write(args, console, out, walker, arch, hints)
        finally:
            if bar is not None:
                bar.stop()
    return 0


def _summary(args: argparse.Namespace, walker: Walker) -> dict:
    return {
        "arch": walker.arch.name,
        "root": f"{walker.root:#x}",
        "image": args.image,
        "image_kind": walker.image.kind,
        "tables_read": walker.tables_read,
        "leaves": walker.leaf_entries,
        "problems": walker.problems,
        "complete": walker.finished and not walker.stopped,
    }


def _write(
    args: argparse.Namespace,
    console: Console,
    out: TextIO,
    walker: Walker,
    arch: Arch,
    hints: Hints | None,
) -> None:
    fmt = args.format
    if fmt in ("jsonl", "csv"):
        rows = records(walker, arch, hints, merge=args.ranges)

        def with_summary():
            yield from rows
            yield summary_record(_summary(args, walker))

        (write_jsonl if fmt == "jsonl" else write_csv)(out, with_summary())
        return
    if fmt == "qemu-tlb":
        write_qemu_tlb(out, walker, arch, _problem_line)
    elif fmt == "qemu-mem":
        write_qemu_mem(out, walker, arch, _problem_line)
    else:
        write_table(console, walker, arch, hints, merge=args.ranges)
        s = _summary(args, walker)
        line = Text(
            f"{arch.name} root {s['root']} in {args.image}: {s['leaves']} leaf entries, "
            f"{s['tables_read']} tables read, {s['problems']} problems"
            + ("" if s["complete"] else " (walk stopped early)"),
            style="bold",
        )
        console.print(line)
        hint = summary_hint(walker)
        if hint:
            console.print(Text(f"hint: {hint}", style="yellow"))
        return
    if walker.problems:
        print(f"{PROG}: {walker.problems} problems in the tables (above)", file=sys.stderr)


def cmd_dump(args: argparse.Namespace, console: Console) -> int:
    arch = _arch(args.arch)
    if args.scenario not in SCENARIOS:
        raise UsageError(
            f"argument --scenario: unknown scenario {args.scenario!r} "
            f"(known: {', '.join(SCENARIOS)})"
        )
    try:
        machine = build_scenario(arch.name, args.scenario, args.ram)
    except KernelError as exc:
        raise UsageError(
            f"argument --ram: {format_size(args.ram)} on {arch.name}: {exc.detail or exc}"
        ) from None
    info = dump_machine(machine, args.out, args.format)
    console.print(
        Text(
            f"wrote {args.out} ({info['format']}, {format_size(machine.phys.ram_bytes)} of "
            f"{arch.name} RAM) and {args.out}.json",
            style="bold",
        )
    )
    for proc in info["processes"]:
        console.print(f"pid {proc['pid']} {proc['comm']}: root {proc['root']}, "
                      f"{len(proc['vmas'])} vmas")  # fmt: skip
        console.print(Text(f"  {proc['decode']}", style="dim"), soft_wrap=True)
    return 0
