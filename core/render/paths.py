"""Whether an output file can be written, checked before the work that fills it (plain Python,
so the command line's argument types can use it without loading a renderer)."""

from __future__ import annotations

import os
from pathlib import Path


class OutputPathError(ValueError):
    """An output path that cannot be written; the message is one line."""


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if a file can be created or replaced there, else OutputPathError."""
    out = Path(path)
    if not str(path):
        raise OutputPathError("an empty path")
    if out.is_dir():
        raise OutputPathError(f"{out} is a directory")
    folder = out.parent
    if not folder.is_dir():
        raise OutputPathError(f"cannot write {out}: no directory {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {out}: {folder} is not writable")
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputPathError(f"cannot write {out}: permission denied")
    return out


def html_path(text: str) -> Path:
    """argparse type of an ``--html OUT`` option: a file that can be written."""
    import argparse

    try:
        return check_writable(text)
    except OutputPathError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
