"""``python -m pfnmap.testing ARCH [ARCH ...]``: run the conformance kit on the named arches.

Everything after ``--`` goes to pytest unchanged (``-x``, ``-k pfn``, ``-q`` ...).
``--plugin MODULE`` registers a plugin module that is not installed yet, as
``--pfnmap-plugin`` does. The exit status is pytest's (0: every check passed).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

PLUGIN_MODULE = "pfnmap.testing.plugin"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pfnmap.testing",
        description="Run pfnmap's conformance kit on arch plugins (see `pfnmap arches`).",
        epilog="Arguments after -- are passed to pytest.",
    )
    parser.add_argument("arches", nargs="+", metavar="ARCH", help="arch names, or 'all'")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE and register it as an arch plugin first (repeatable)",
    )
    return parser


def pytest_args(arches: Sequence[str], plugins: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The pytest command line that runs the kit (without the plugin-loading part)."""
    args = [f"--pfnmap-conformance={','.join(arches)}"]
    args += [f"--pfnmap-plugin={module}" for module in plugins]
    # ``python -m`` imported pfnmap before pytest could mark it for assertion rewriting (it
    # does that for every distribution with a pytest11 entry point): nothing to warn about
    quiet = ["-W", "ignore:Module already imported so cannot be rewritten"]
    return args + ["-p", "no:cacheprovider", *quiet, *extra]


def _entry_point_name() -> str | None:
    """The name pfnmap's pytest plugin is installed under, if its entry point is installed."""
    for ep in importlib.metadata.entry_points(group="pytest11"):
        if ep.value == PLUGIN_MODULE:
            return ep.name
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    ns = build_parser().parse_args(argv)
    import pytest

    from pfnmap.testing.plugin import kit_path

    # the kit as the one path: only it runs, and the current directory's config is not used
    args = [str(kit_path()), *pytest_args(ns.arches, ns.plugin, extra)]
    name = _entry_point_name()
    if name is not None:  # loaded by entry-point name, so autoloading cannot load it twice
        return int(pytest.main(["-p", name, *args]))
    import pfnmap.testing.plugin as plugin

    return int(pytest.main(args, plugins=[plugin]))


if __name__ == "__main__":
    sys.exit(main())
