"""The page: the Jinja2 template filled with a title and the JSON data, written atomically.

The file is written to a temporary name next to ``OUT`` and renamed over it, so a failure
(a full disk, an interrupt) leaves no half-written page behind. :func:`check_writable` is
called before the work starts, so a path that cannot be written fails in a second, not after
the run.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from pfnmap import __version__
from pfnmap.errors import PfnmapError
from pfnmap.render import paths

#: the format of the JSON block (a page says which it holds, tests and tools read it)
DATA_VERSION = 1


class HtmlError(PfnmapError):
    """An HTML file that cannot be written."""


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if a file can be written there; HtmlError (one line) if not."""
    try:
        return paths.check_writable(path)
    except paths.OutputPathError as exc:
        raise HtmlError(str(exc)) from None


_env: jinja2.Environment | None = None


def _environment() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(
            loader=jinja2.PackageLoader("pfnmap.render.html", "templates"),
            autoescape=jinja2.select_autoescape(["html", "j2"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
    return _env


def _json_block(data: Any) -> str:
    # inside <script> only "</" could end the block: \u003c keeps every "<" out of it
    return json.dumps(data, separators=(",", ":"), default=str).replace("<", "\\u003c")


def render(kind: str, title: str, data: dict[str, Any]) -> str:
    """The whole page as text."""
    payload = {"version": DATA_VERSION, "kind": kind, "pfnmap": __version__, **data}
    template = _environment().get_template("page.html.j2")
    return template.render(
        title=title, kind=kind, data_json=jinja2.utils.markupsafe.Markup(_json_block(payload))
    )


def write_html(path: str | os.PathLike[str], kind: str, title: str, data: dict[str, Any]) -> Path:
    """Render and write the page to ``path`` atomically; returns the path."""
    out = check_writable(path)
    text = render(kind, title, data)
    folder = out.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise HtmlError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise HtmlError(f"cannot write {out}: {exc.strerror or exc}") from None
        raise
    return out


_DATA = re.compile(r'<script type="application/json" id="pfnmap-data">(.*?)</script>', re.DOTALL)


def read_data(text: str) -> dict[str, Any]:
    """The JSON block of a page that :func:`write_html` wrote (for tests and tools)."""
    m = _DATA.search(text)
    if m is None:
        raise ValueError("no pfnmap data block in this page")
    return json.loads(m.group(1))
