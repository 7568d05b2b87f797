"""``pfnmap info IMAGE``: what a memory image is and what it says about its machine.

Prints the format it was read as (and what sniffing recognised), the byte order and word
size, the machine type, the physical ranges (dumped, and RAM that was not dumped), the notes
found, the VMCOREINFO keys, each CPU's registers that select the paging mode, and the
``pfnmap decode`` command it would run (see :mod:`pfnmap.decode.target`). ``--json`` prints
the same as one JSON object. Exit codes as ``pfnmap decode``: 1 when the image cannot be
opened, 2 for a bad command line. Runs in :mod:`pfnmap.cli.info_run`.
"""

from __future__ import annotations

import argparse

from pfnmap.cli.main import lazy_command, physical_address
from pfnmap.decode.catalog import IMAGE_FORMATS


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand to the ``pfnmap`` parser."""
    parser = commands.add_parser(
        "info",
        help="describe a memory image: format, machine, ranges, notes, CPUs, decode command",
        description="Read IMAGE's headers and notes (no page tables) and describe it: format, "
        "byte order, machine, physical ranges dumped and not dumped, notes, VMCOREINFO keys, "
        "the CPU registers that give the paging mode, and the pfnmap decode command.",
    )
    parser.add_argument("image", metavar="IMAGE", help="the image file")
    parser.add_argument(
        "--image-format", default="auto", metavar="FORMAT",
        help=f"how to read IMAGE: {', '.join(IMAGE_FORMATS)} or a plugin's (default: auto)",
    )  # fmt: skip
    parser.add_argument(
        "--base", type=physical_address, metavar="ADDR", help="a raw image's first physical address"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.set_defaults(func=lazy_command("pfnmap.cli.info_run", "cmd_info"))
