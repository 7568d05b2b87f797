"""What ``pfnmap decode`` and ``pfnmap dump`` do once their arguments are parsed (the parser is
:mod:`pfnmap.cli.decode`; this module is imported only when one of them runs)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, TextIO

from pfnmap.arch import Arch
from pfnmap.cli.decode import PROGRESS_MIN_BYTES
from pfnmap.cli.decode_output import write_output
from pfnmap.cli.main import PROG, UsageError
from pfnmap.decode.formats import FormatError, qemu_mode
from pfnmap.decode.hints import HintError, Hints, parse_ram_ranges, read_vmas_file
from pfnmap.decode.image import UnknownImageFormat
from pfnmap.decode.procfs import read_iomem_file, read_maps_file
from pfnmap.decode.target import Target, TargetError, resolve_target
from pfnmap.decode.walker import Walker
from pfnmap.errors import KernelError, UnknownArch
from pfnmap.kernel.rules import rules_for
from pfnmap.kernel.units import format_size
from pfnmap.plugins.manager import default_registry

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def _arch(name: str) -> Arch:
    try:
        return default_registry().get(name)
    except UnknownArch as exc:
        raise UsageError(f"argument --arch: {exc}") from None


def _hints(args: argparse.Namespace, arch: Arch) -> Hints | None:
    rules = rules_for(args.era)
    ram = None
    if args.ram is not None:
        try:
            if os.path.isfile(args.ram):  # /proc/iomem text
                ram = read_iomem_file(args.ram)
            else:
                ram = parse_ram_ranges(args.ram)
        except HintError as exc:
            raise UsageError(f"argument --ram: {exc}") from None
    vmas = []
    if args.vmas is not None and getattr(args, "maps", None) is not None:
        raise UsageError("argument --maps: give the vmas once, with --maps or with --vmas")
    if args.vmas is not None:
        vmas = read_vmas_file(args.vmas, arch.page_shift)
    elif getattr(args, "maps", None) is not None:
        maps = read_maps_file(args.maps, arch.page_shift, rules)
        for note in maps.notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        vmas = maps.hints()
    if ram is None and not vmas:
        return None
    return Hints(ram, vmas, rules, zero_pfn=getattr(args, "zero_pfn", None))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _progress(args: argparse.Namespace, image_size: int) -> Progress | None:
    """The progress bar (on stderr), or None. By default it shows when stderr is a terminal
    and the image is large; never while stdout is a terminal too, where the rows stream (they
    are the progress, and a live bar would be drawn through them). Never on stdout's data."""
    want = args.progress
    if want is None:
        want = _isatty(sys.stderr) and image_size >= PROGRESS_MIN_BYTES
    if not want or _isatty(sys.stdout):
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("decoding"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[tables]} tables"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=False,  # the rows go to stdout untouched
        redirect_stderr=True,
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
    if args.arch is not None:
        _arch(args.arch)
    out = sys.stdout
    target = _target(args)
    # the arch as the era's headers describe it (x86 6.1: software bit names, L1TF)
    arch = target.arch.for_rules(rules_for(args.era))
    with target.image as image:
        hints = _hints(args, arch)
        if args.format in ("qemu-tlb", "qemu-mem"):
            try:
                qemu_mode(arch)
            except FormatError as exc:
                raise UsageError(f"argument --format: {exc}") from None
        root, va_base = (target.root, 0) if target.register is None else _root(arch, args.root)
        if target.source:
            print(f"{PROG}: {target.source}", file=sys.stderr)
        walker = Walker(image, arch, root, max_tables=args.max_tables, va_base=va_base,
                        grouped=True)  # fmt: skip
        bar = _progress(args, image.size)
        if bar is not None:
            task = bar.add_task("decode", total=walker.va_total, tables=0)

            def progress_cb(done: int, total: int) -> None:
                bar.update(task, completed=done, tables=walker.tables_read)

            walker.progress = progress_cb
            bar.start()
        try:
            write_output(args, console, out, walker, arch, hints)
        finally:
            if bar is not None:
                bar.stop()
        if args.html:
            from pfnmap.cli.decode_html import write_page

            write_page(args, image, arch, hints, walker.root)
    return 0


def _target(args: argparse.Namespace) -> Target:
    """The image, arch and root (pfnmap.decode.target), bad options as UsageError."""
    # a REGISTER:VALUE root needs the arch first: the dump may still say which arch it is
    register = args.root if isinstance(args.root, tuple) else None
    try:
        return resolve_target(
            args.image,
            arches=default_registry().arches,
            arch_name=args.arch,
            root=args.root if register is None else 0,
            register=register,
            cpu=args.cpu,
            base=args.base,
            image_format=args.image_format,
        )
    except UnknownImageFormat as exc:
        raise UsageError(f"argument --image-format: {exc}") from None
    except TargetError as exc:
        raise UsageError(str(exc)) from None


def cmd_dump(args: argparse.Namespace, console: Console) -> int:
    from rich.text import Text

    from pfnmap.decode.dump import SCENARIOS, build_scenario, dump_machine

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
    info = dump_machine(machine, args.out, args.format, compression=args.compression)
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
