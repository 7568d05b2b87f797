"""``pfnmap decode`` and ``pfnmap dump``: page tables out of physical memory images.

``pfnmap decode IMAGE [--arch NAME] [--root ADDR]`` walks the tables under ``ROOT`` in a raw
image (``--base``), an ELF core, a kdump-compressed file or a LiME image and prints the
mappings (``--arch`` and ``--root`` default to what the dump says: see
:mod:`pfnmap.decode.target`): a rich table by default, or JSON lines,
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

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.cli.main import lazy_command, physical_address, ram_size
from pfnmap.decode.catalog import (
    DUMP_FORMATS,
    IMAGE_FORMATS,
    KDUMP_COMPRESSIONS,
    OUTPUT_FORMATS,
)
from pfnmap.kernel.rules import ERAS, SEED
from pfnmap.render.paths import html_path

#: images from this size up get a progress bar when stderr is a terminal
PROGRESS_MIN_BYTES = 64 << 20


def _cpu(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a CPU number (0, 1, ...)")
    return value


def _root(text: str) -> int | tuple[str, int]:
    """A table address, or ``REGISTER:VALUE`` (``ttbr0:0x...``): a translation-table base
    register's value, whose other fields the arch strips (Arch.root_from_register)."""
    register, sep, value = text.partition(":")
    if not sep:
        return physical_address(text)
    if not register.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR or REGISTER:VALUE")
    return register.lower(), physical_address(value)


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _size(text: str) -> int:
    from pfnmap.kernel.units import parse_size

    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive size")
    return value


def _pfn(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a pfn (write 0x... or decimal)"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``decode`` and ``dump`` on the ``pfnmap`` subcommand parser."""
    decode = commands.add_parser(
        "decode",
        help="decode the page tables in a physical memory image",
        description="Walk the page tables under ROOT in a raw image, an ELF core (QEMU's "
        "dump-guest-memory, /proc/vmcore, pfnmap dump), a kdump-compressed file (makedumpfile, "
        "QEMU's dump-guest-memory -z; plain or flattened) or a LiME image, and print every "
        "mapping: VA, PA, page size, "
        "level, raw entry, flags, and with --ram/--vmas vm_normal_page()'s verdict. Bad "
        "entries are reported one by one and the walk goes on.",
    )
    decode.add_argument(
        "image", metavar="IMAGE", help="raw image, ELF core, kdump-compressed file or LiME image"
    )
    decode.add_argument(
        "--arch", metavar="NAME",
        help="paging mode (see arches; default: from the dump's CPU registers or VMCOREINFO)",
    )  # fmt: skip
    decode.add_argument(
        "--root", type=_root, metavar="ADDR",
        help="physical address of the top-level table (CR3 without its flag bits), or, for an "
        "arch that names its base registers, REGISTER:VALUE (ttbr0:0x..., ttbr1:0x...): the "
        "register's other fields (ASID, CnP) are stripped, and ttbr1 walks the kernel half "
        "(default: from the dump's CPU registers, pfnmap's note or VMCOREINFO)",
    )  # fmt: skip
    decode.add_argument(
        "--cpu", type=_cpu, metavar="N",
        help="whose registers give the arch and root when the dump has several CPUs (default: 0)",
    )  # fmt: skip
    decode.add_argument(
        "--base", type=physical_address, metavar="ADDR",
        help="physical address of a raw image's first byte (default 0)",
    )  # fmt: skip
    decode.add_argument(
        "--image-format", default="auto", metavar="FORMAT",
        help=f"how to read IMAGE: {', '.join(IMAGE_FORMATS)} or a plugin's format (default: "
        "auto, which recognises kdump, LiME and ELF files by their magic and reads anything "
        "else as raw)",
    )  # fmt: skip
    decode.add_argument(
        "--format", choices=OUTPUT_FORMATS, default="table",
        help="table (default), jsonl, csv, QEMU's monitor text (info tlb, info mem: qemu-tlb, "
        "qemu-mem), or summary (leaves per level and page size, problems per kind)",
    )  # fmt: skip
    decode.add_argument(
        "--va-range", metavar="RANGE",
        help="only leaves whose page overlaps START-END (END exclusive) or START+SIZE",
    )  # fmt: skip
    space = decode.add_mutually_exclusive_group()
    space.add_argument("--user", action="store_true",
                       help="only user space: below the arch's TASK_SIZE")  # fmt: skip
    space.add_argument("--kernel", action="store_true",
                       help="only kernel space: from the arch's TASK_SIZE up")  # fmt: skip
    decode.add_argument(
        "--min-size", type=_size, metavar="SIZE",
        help="only leaves of at least SIZE bytes (2M: the large pages)",
    )  # fmt: skip
    decode.add_argument(
        "--ranges", action="store_true",
        help="merge consecutive leaves (VA and PA contiguous, same flags and verdict)",
    )  # fmt: skip
    decode.add_argument(
        "--ram", metavar="RANGES",
        help="physical RAM, i.e. the pfns with a struct page: START-END or START+SIZE, "
        "comma-separated, or a file of /proc/iomem text (its System RAM lines; default: "
        "unknown)",
    )  # fmt: skip
    decode.add_argument(
        "--vmas", metavar="FILE",
        help="the process's vmas, one 'START-END FLAGS PGOFF' per line, PGOFF in pages "
        "(see docs)",
    )  # fmt: skip
    decode.add_argument(
        "--maps", metavar="FILE",
        help="the process's /proc/PID/maps or /proc/PID/smaps as the kernel prints them "
        "(byte offsets; smaps' VmFlags give the exact vm_flags)",
    )  # fmt: skip
    decode.add_argument(
        "--era", choices=tuple(ERAS), default=SEED.name, metavar="ERA",
        help="whose vm_normal_page() gives the verdicts: " + ", ".join(ERAS)
        + f" (default: {SEED.name})",
    )  # fmt: skip
    decode.add_argument(
        "--zero-pfn", type=_pfn, metavar="PFN",
        help="the shared zero page's pfn (hex with 0x, or decimal), for eras where "
        "vm_normal_page() tells it apart (6.1); /proc/PID/pagemap of a never-written "
        "anonymous page gives it",
    )  # fmt: skip
    decode.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a progress bar on stderr (default: when stderr is a terminal and the image "
        f"is {PROGRESS_MIN_BYTES >> 20} MiB or more; never while stdout is a terminal, where "
        "the rows stream)",
    )  # fmt: skip
    decode.add_argument(
        "--max-tables", type=_positive, metavar="N",
        help="stop after reading N tables (default: twice what the image can hold)",
    )  # fmt: skip
    decode.add_argument(
        "--html", type=html_path, metavar="OUT",
        help="also write the tables as one self-contained HTML file (a tree to open, search "
        "by VA or PA, the summary)",
    )  # fmt: skip
    decode.set_defaults(func=lazy_command("pfnmap.cli.decode_run", "cmd_decode"))

    dump = commands.add_parser(
        "dump",
        help="write an emulated machine's physical memory as a raw image, ELF core, kdump or LiME",
        description="Play a scenario on an emulated machine and write its RAM to OUT (raw, "
        "base 0, an ELF core, a kdump-compressed file or a LiME image), OUT.json with each "
        "live process's page-table root and vmas and the decode command line, and "
        "OUT.pid<N>.vmas for --vmas.",
    )
    dump.add_argument("out", metavar="OUT", help="the image file to write")
    dump.add_argument(
        "--arch", default=DEFAULT_ARCH, metavar="NAME", help=f"default: {DEFAULT_ARCH}"
    )
    dump.add_argument(
        "--format", choices=DUMP_FORMATS, default="raw",
        help="raw (default), elf, kdump (makedumpfile's kdump-compressed), kdump-flat (the "
        "same, flattened, as QEMU's dump-guest-memory -z writes it) or lime",
    )  # fmt: skip
    dump.add_argument(
        "--compression", choices=KDUMP_COMPRESSIONS, default="zlib",
        help="how kdump formats compress each page (default: zlib; lzo, snappy and zstd need "
        "the kdump extra)",
    )  # fmt: skip
    dump.add_argument(
        "--scenario", default="story", metavar="NAME",
        help="story (default): the demo's story right after its fork, plus anonymous memory",
    )  # fmt: skip
    dump.add_argument("--ram", default="16M", type=ram_size, metavar="SIZE",
                      help="emulated RAM (default: 16M)")  # fmt: skip
    dump.set_defaults(func=lazy_command("pfnmap.cli.decode_run", "cmd_dump"))
