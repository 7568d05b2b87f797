"""``pfnmap compare SCENARIO --eras unpaged,seed,2.6.15 [--arch NAME] [--format table|json]``.

Runs one scenario of :mod:`pfnmap.scenarios` under several kernel eras and prints where the
outcomes differ: per-pte verdicts, struct page counts, rss, print_bad_pte lines, errors, with
each era's reason and the rules fields that made the difference. ``--list`` names the
scenarios. Registered in :mod:`pfnmap.cli.main` by :func:`add_parser`; it runs in
:mod:`pfnmap.cli.compare_run`.
"""

from __future__ import annotations

import argparse

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.cli.main import UsageError, lazy_command
from pfnmap.kernel.rules import ERAS, UnknownEra, rules_for
from pfnmap.render.paths import html_path


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand to the ``pfnmap`` parser."""
    parser = commands.add_parser(
        "compare",
        help="run one scenario under several kernel eras and show where they differ",
        description="Run a scenario (see --list) on one emulated machine per era and print "
        "the observations that differ: pte verdicts, struct page counts, rss, print_bad_pte "
        "lines and errors, with each era's reason and the rules fields behind the difference.",
    )
    parser.add_argument("scenario", nargs="?", metavar="SCENARIO", help="scenario name")
    parser.add_argument(
        "--eras",
        default=",".join(ERAS),
        metavar="ERA,ERA...",
        help=f"eras to compare, comma separated (default: all: {','.join(ERAS)})",
    )
    parser.add_argument(
        "--arch",
        default=DEFAULT_ARCH,
        metavar="NAME",
        help=f"arch to run on (default: {DEFAULT_ARCH})",
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )
    parser.add_argument(
        "--all", action="store_true", help="show every observation, not only the differing ones"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--html",
        metavar="OUT",
        type=html_path,
        help="also write the eras side by side as one HTML file",
    )
    parser.set_defaults(func=lazy_command("pfnmap.cli.compare_run", "cmd_compare"))


def eras_arg(text: str) -> list[str]:
    eras = [e.strip() for e in text.split(",") if e.strip()]
    if not eras:
        raise UsageError("argument --eras: name at least one era")
    for era in eras:
        try:
            rules_for(era)
        except UnknownEra as exc:
            raise UsageError(f"argument --eras: {exc}") from None
    if len(set(eras)) != len(eras):
        raise UsageError(f"argument --eras: an era is named twice in {text!r}")
    return eras
