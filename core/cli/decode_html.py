"""``pfnmap decode --html OUT``: the page of the tables that ``cmd_decode`` just printed
(:mod:`pfnmap.render.html.decode_model`); the note that it was written goes to stderr, so
stdout keeps only the chosen format."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from pfnmap.cli.main import UsageError

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.decode.hints import Hints
    from pfnmap.decode.image import PhysImage


def write_page(
    args: argparse.Namespace, image: PhysImage, arch: Arch, hints: Hints | None, root: int
) -> None:
    """``root`` is the table address the decode walked (``--root``, or what the dump said)."""
    from pfnmap.render.html import HtmlError, write_decode_html

    try:
        out = write_decode_html(
            args.html, image, arch, root, hints, image_name=args.image,
            max_tables=args.max_tables,
        )  # fmt: skip
    except HtmlError as exc:
        raise UsageError(f"argument --html: {exc}") from None
    print(f"wrote {out}", file=sys.stderr)
