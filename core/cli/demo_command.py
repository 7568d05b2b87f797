"""``pfnmap demo``: the VM_PFNMAP story (:mod:`pfnmap.cli.demo`) on one arch or on all of them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.cli.main import UsageError, arch_names, ram_size
from pfnmap.errors import PfnmapError
from pfnmap.kernel.units import format_size, parse_size
from pfnmap.render.paths import html_path

if TYPE_CHECKING:
    from rich.console import Console

    from pfnmap.machine import Machine

DEFAULT_RAM = "64M"


def add_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="play the VM_PFNMAP story on an emulated machine",
        description="Map /dev/mem beyond and inside RAM, COW a private device mapping, fork, "
        "unmap and exit, and show at each step what vm_normal_page decided and why.",
    )
    demo.add_argument(
        "--arch",
        default=DEFAULT_ARCH,
        metavar="NAME|all",
        help="arch to run on, or 'all' for every registered arch side by side "
        f"(default: {DEFAULT_ARCH}; see `pfnmap arches`)",
    )
    demo.add_argument(
        "--ram",
        default=parse_size(DEFAULT_RAM),
        type=ram_size,
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
    demo.add_argument(
        "--html",
        metavar="OUT",
        type=html_path,
        help="also write the story as one self-contained HTML file: page-table trees, pte bit "
        "boxes and verdicts step by step (the steps of the shipped scenario file `demo`)",
    )
    demo.set_defaults(func=cmd_demo)


def _boot(name: str, ram: int, era: str = "seed") -> Machine:
    from pfnmap.errors import KernelError
    from pfnmap.machine import Machine

    try:
        return Machine(name, ram, era=era)
    except KernelError as exc:
        # the arch is known, so what the machine refuses is the RAM size
        raise UsageError(
            f"argument --ram: {format_size(ram)} on {name}: {exc.detail or exc}"
        ) from None


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from pfnmap.cli import demo
    from pfnmap.cli.demo_render import render_comparison, render_demo
    from pfnmap.kernel.rules import UnknownEra, rules_for

    names = arch_names(args.arch)
    try:
        rules_for(args.era)
    except UnknownEra as exc:
        raise UsageError(f"argument --era: {exc}") from None
    html_out = None
    if args.html:
        from pfnmap.cli.run_run import html_target

        if len(names) > 1:
            raise UsageError("argument --html: one arch at a time (not --arch all)")
        html_out = html_target(args.html)
    machines = [_boot(name, args.ram, args.era) for name in names]
    results: list[demo.DemoResult] = []
    for machine in machines:
        try:
            results.append(demo.run_demo(machine))
        except demo.DemoError as exc:
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
    if html_out is not None:
        from pfnmap.cli.run_run import write_story_html

        write_story_html(console, html_out, "demo", names[0], args.era, args.ram)
    failed = [r.arch for r in results if not r.ok]
    if failed:
        raise PfnmapError(
            f"bad ptes or failed invariant checks on {', '.join(failed)} (see the report)"
        )
    return 0
