"""One self-contained HTML file per run: page-table trees, pte bit boxes, verdicts, step by step.

``pfnmap demo|run|compare|decode --html OUT`` write one file each, with the data as a JSON block
(``<script type="application/json" id="pfnmap-data">``) that inline JavaScript draws: no network,
no CDN, it opens from file://. The page is a Jinja2 template shipped with the package
(``templates/``); :mod:`.page` fills it and writes it atomically, :mod:`.run_model`,
:mod:`.compare_model` and :mod:`.decode_model` turn results into the JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .page import HtmlError, check_writable, read_data, write_html
from .run_model import run_data, write_run_html

__all__ = [
    "HtmlError",
    "check_writable",
    "read_data",
    "run_data",
    "write_compare_html",
    "write_decode_html",
    "write_html",
    "write_run_html",
]


def write_compare_html(path: str | os.PathLike[str], comparison: Any) -> Path:
    """:func:`.compare_model.write_compare_html` (imported when called)."""
    from .compare_model import write_compare_html as write

    return write(path, comparison)


def write_decode_html(path: str | os.PathLike[str], *args: Any, **kw: Any) -> Path:
    """:func:`.decode_model.write_decode_html` (imported when called)."""
    from .decode_model import write_decode_html as write

    return write(path, *args, **kw)
