"""``pfnmap vtop`` and ``pfnmap ptov``: one address through the tables, and every address
that maps a physical one (the parsers; the work is in :mod:`pfnmap.cli.vtop_run`).

``pfnmap vtop IMAGE VA --arch NAME --root ADDR`` prints each level of the walk for ``VA``:
index, table, entry address, raw entry, its fields and what it says, where and why the walk
stops, the page's size and PA, and with ``--ram``/``--vmas`` vm_normal_page()'s verdict.
``pfnmap vtop --scenario story VA`` does it on an emulated process (the demo's machine), with
its struct page. ``pfnmap ptov IMAGE PA...`` lists every VA whose leaf maps each PA.

Exit codes: 0 when the walk ran (an unmapped VA, a PA nothing maps are answers, not
failures), 1 when it could not start, 2 for bad input (a VA the paging mode cannot translate,
a PA beyond the arch's physical width, an unknown arch).
"""

from __future__ import annotations

import argparse

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.cli.main import address, lazy_command
from pfnmap.decode.catalog import IMAGE_FORMATS
from pfnmap.kernel.rules import SEED


def _target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", metavar="NAME",
                   help=f"paging mode (see arches); with --scenario {DEFAULT_ARCH}")  # fmt: skip
    p.add_argument("--root", type=address, metavar="ADDR",
                   help="physical address of the top-level table (an image needs it)")  # fmt: skip
    p.add_argument("--base", type=address, metavar="ADDR",
                   help="physical address of a raw image's first byte (default 0)")  # fmt: skip
    p.add_argument("--image-format", choices=IMAGE_FORMATS, default="auto",
                   help="how to read IMAGE (default: by its magic)")  # fmt: skip
    p.add_argument("--scenario", metavar="NAME",
                   help="no image: an emulated machine with this scenario played "
                   "(story: the demo's), and one of its processes (--pid)")  # fmt: skip
    p.add_argument("--pid", type=int, metavar="N",
                   help="with --scenario: the process (default: the first)")  # fmt: skip
    p.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="text (default) or JSON lines")  # fmt: skip


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``vtop`` and ``ptov``."""
    vtop = commands.add_parser(
        "vtop",
        help="translate one virtual address, level by level",
        description="Follow VA through the page tables as the MMU does: each level's index, "
        "entry address, raw entry and fields, where and why the walk stops, the page's size "
        "and physical address, and with --ram/--vmas (or --scenario) vm_normal_page()'s "
        "verdict.",
    )
    vtop.add_argument("target", nargs="+", metavar="[IMAGE] VA",
                      help="the image and the VA (only the VA with --scenario)")  # fmt: skip
    _target_options(vtop)
    vtop.add_argument("--ram", metavar="RANGES", help="physical RAM (as decode --ram)")
    vtop.add_argument("--vmas", metavar="FILE", help="the process's vmas (as decode --vmas)")
    vtop.set_defaults(func=lazy_command("pfnmap.cli.vtop_run", "cmd_vtop"), era=SEED.name)

    ptov = commands.add_parser(
        "ptov",
        help="list every virtual address that maps a physical address",
        description="Walk the tables once and list, for each PA, every VA whose present leaf "
        "maps it (with the leaf's level, size and flags): aliases of one frame, the "
        "kernel's direct map next to a user mapping, a device mapped twice.",
    )
    ptov.add_argument("target", nargs="*", metavar="[IMAGE] PA",
                      help="the image and PAs (no IMAGE with --scenario)")  # fmt: skip
    _target_options(ptov)
    ptov.add_argument("--from", dest="from_file", metavar="FILE",
                      help="more PAs, one per line ('-': stdin)")  # fmt: skip
    ptov.set_defaults(func=lazy_command("pfnmap.cli.vtop_run", "cmd_ptov"))
