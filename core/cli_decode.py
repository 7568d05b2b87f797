"""``pfnmap decode`` and ``pfnmap dump``: page tables out of physical memory images.

``pfnmap decode IMAGE --arch NAME --root ADDR`` walks the tables under ``ROOT`` in a raw image
(``--base``) or an ELF core and prints the mappings: a rich table by default, or JSON lines,
CSV, or QEMU's ``info tlb`` / ``info mem`` text. ``--ram`` and ``--vmas`` add what the tables do
not say, and each pte gets vm_normal_page()'s verdict.

``pfnmap dump OUT --arch NAME`` plays a scenario on an emulated machine and writes its RAM with
the JSON that says how to decode it.

Exit codes: 0 when the walk ran to its end (problems in the tables are reported, one record or
line each, and are not failures), 1 when it could not start (a missing or damaged file, an ELF
file that is not a core, a core of another machine, a root outside the image) or a dump could
not be written, 2 for a bad command line (unknown arch, unparseable address or RAM range).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from pfnmap.plugins.manager import default_registry

from .arch import Arch
from .cli import PROG, UsageError, _ram_size
from .decode import Problem, Walker, summary_hint
from .decode_formats import (
    FORMATS,
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
from .decode_hints import HintError, Hints, parse_ram_ranges, read_vmas_file
from .demo_render import format_size
from .dump import DUMP_FORMATS, SCENARIOS, build_scenario, dump_machine
from .errors import KernelError, UnknownArch
from .image import check_elf_arch, open_image
from .rules import ERAS, SEED, rules_for

#: images from this size up get a progress bar when stderr is a terminal
PROGRESS_MIN_BYTES = 64 << 20


def _address(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address (write it as 0x1000 or 4096)"
        ) from None
    if value < 0 or value >= 1 << 64:
        raise argparse.ArgumentTypeError(f"{text} is not a 64-bit physical address")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``decode`` and ``dump`` on the ``pfnmap`` subcommand parser."""
    decode = commands.add_parser(
        "decode",
        help="decode the page tables in a physical memory image",
        description="Walk the page tables under ROOT in a raw image or an ELF core (QEMU's "
        "dump-guest-memory, kdump, pfnmap dump) and print every mapping: VA, PA, page size, "
        "level, raw entry, flags, and with --ram/--vmas vm_normal_page()'s verdict. Bad "
        "entries are reported one by one and the walk goes on.",
    )
    decode.add_argument("image", metavar="IMAGE", help="raw image or ELF core")
    decode.add_argument("--arch", required=True, metavar="NAME", help="paging mode (see arches)")
    decode.add_argument(
        "--root", required=True, type=_address, metavar="ADDR",
        help="physical address of the top-level table (CR3 without its flag bits)",
    )  # fmt: skip
    decode.add_argument(
        "--base", type=_address, metavar="ADDR",
        help="physical address of a raw image's first byte (default 0)",
    )  # fmt: skip
    decode.add_argument(
        "--image-format", choices=("auto", "raw", "elf"), default="auto",
        help="how to read IMAGE (default: ELF if it starts with the ELF magic, else raw)",
    )  # fmt: skip
    decode.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table (default), jsonl, csv, or QEMU's x86 monitor text: qemu-tlb, qemu-mem",
    )  # fmt: skip
    decode.add_argument(
        "--ranges", action="store_true",
        help="merge consecutive leaves (VA and PA contiguous, same flags and verdict)",
    )  # fmt: skip
    decode.add_argument(
        "--ram", metavar="RANGES",
        help="physical RAM, i.e. the pfns with a struct page: START-END or START+SIZE, "
        "comma-separated (default: unknown)",
    )  # fmt: skip
    decode.add_argument(
        "--vmas", metavar="FILE",
        help="the process's vmas, one 'START-END FLAGS PGOFF' per line (see docs)",
    )  # fmt: skip
    decode.add_argument(
        "--era", choices=tuple(ERAS), default=SEED.name, metavar="ERA",
        help="whose vm_normal_page() gives the verdicts: " + ", ".join(ERAS)
        + f" (default: {SEED.name})",
    )  # fmt: skip
    decode.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a progress bar on stderr (default: when stderr is a terminal and the image "
        f"is {PROGRESS_MIN_BYTES >> 20} MiB or more)",
    )  # fmt: skip
    decode.add_argument(
        "--max-tables", type=_positive, metavar="N",
        help="stop after reading N tables (default: twice what the image can hold)",
    )  # fmt: skip
    decode.set_defaults(func=cmd_decode)

    dump = commands.add_parser(
        "dump",
        help="write an emulated machine's physical memory as a raw image or ELF core",
        description="Play a scenario on an emulated machine and write its RAM to OUT (raw, "
        "base 0, or an ELF core), OUT.json with each live process's page-table root and vmas "
        "and the decode command line, and OUT.pid<N>.vmas for --vmas.",
    )
    dump.add_argument("out", metavar="OUT", help="the image file to write")
    dump.add_argument("--arch", default="x86-64", metavar="NAME", help="default: x86-64")
    dump.add_argument("--format", choices=DUMP_FORMATS, default="raw", help="default: raw")
    dump.add_argument(
        "--scenario", choices=tuple(SCENARIOS), default="story",
        help="story (default): the demo's story right after its fork, plus anonymous memory",
    )  # fmt: skip
    dump.add_argument("--ram", default="16M", type=_ram_size, metavar="SIZE",
                      help="emulated RAM (default: 16M)")  # fmt: skip
    dump.set_defaults(func=cmd_dump)


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
        check_elf_arch(image, arch)
        walker = Walker(image, arch, args.root, max_tables=args.max_tables)
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


__all__ = ["add_commands", "cmd_decode", "cmd_dump"]
