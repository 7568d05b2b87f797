"""``pfnmap run FILE [--arch NAME|all] [--era ERA] [--ram SIZE] [--html OUT]``.

Plays a scenario file (docs/scenario-files.rst; :mod:`pfnmap.scenarios.files`) and prints a
report per step: how it ended, the ptes it touched with vm_normal_page's verdict, struct page
counts, rss, print_bad_pte lines and each expectation's result. ``FILE`` is a path, or the name
of a scenario file shipped with pfnmap (``--list``).

Exit codes: 0 when every expectation held, 1 when one failed (each failure is listed with its
file:line), 2 for a file that cannot be run (one line, ``FILE:LINE: what is wrong``) or a bad
command line. Registered in :mod:`pfnmap.cli.main`; it runs in :mod:`pfnmap.cli.run_run`.
"""

from __future__ import annotations

import argparse

from pfnmap.cli.main import lazy_command, ram_size
from pfnmap.render.paths import html_path


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand to the ``pfnmap`` parser."""
    parser = commands.add_parser(
        "run",
        help="play a scenario file and check its expectations",
        description="Play a scenario file (TOML: a machine, then steps such as spawn, open, "
        "mmap, write, fork, munmap, exit, with optional expectations) and print what each "
        "step did. Exits 1 when an expectation fails, so a scenario doubles as a test.",
    )
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="scenario file, or a shipped name (see --list)"
    )
    parser.add_argument(
        "--arch", metavar="NAME|all", help="arch to run on instead of the file's, or 'all'"
    )
    parser.add_argument("--era", metavar="ERA", help="kernel era instead of the file's")
    parser.add_argument(
        "--ram", type=ram_size, metavar="SIZE", help="emulated RAM instead of the file's"
    )
    parser.add_argument(
        "--html",
        metavar="OUT",
        type=html_path,
        help="also write the run as one self-contained HTML file",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="print only the expectations and the result"
    )
    parser.add_argument("--list", action="store_true", help="list the shipped scenario files")
    parser.set_defaults(func=lazy_command("pfnmap.cli.run_run", "cmd_run"))
