"""The built-in image formats, contributed through the same hook as a plugin's
(``pfnmap_image_formats``). Light at import: each reader is imported when a file is opened."""

from __future__ import annotations

import os
from typing import Any

from pfnmap.decode.images.registry import ImageFormat
from pfnmap.plugins import hookimpl


def _sniff_kdump(head: bytes) -> str | None:
    from pfnmap.decode.images.kdump import sniff_kdump

    return sniff_kdump(head)


def _open_kdump(path: str | os.PathLike[str]) -> Any:
    from pfnmap.decode.images.kdump import open_kdump

    return open_kdump(path)


def _sniff_lime(head: bytes) -> str | None:
    from pfnmap.decode.images.lime import sniff_lime

    return sniff_lime(head)


def _open_lime(path: str | os.PathLike[str]) -> Any:
    from pfnmap.decode.images.lime import open_lime

    return open_lime(path)


def _sniff_elf(head: bytes) -> str | None:
    from pfnmap.decode.images.elf import sniff_elf

    found = sniff_elf(head)
    return f"ELF core ({found})" if found else None


def _open_elf(path: str | os.PathLike[str]) -> Any:
    from pfnmap.decode.images.elf import open_elf

    return open_elf(path)


def _open_raw(path: str | os.PathLike[str], base: int = 0) -> Any:
    from pfnmap.decode.images.raw import open_raw

    return open_raw(path, base)


KDUMP = ImageFormat(
    "kdump",
    "kdump-compressed file (makedumpfile, QEMU dump-guest-memory -z), plain or flattened",
    _open_kdump,
    _sniff_kdump,
    priority=30,
)
LIME = ImageFormat("lime", "LiME image", _open_lime, _sniff_lime, priority=20)
ELF = ImageFormat(
    "elf", "ELF core (QEMU dump-guest-memory, /proc/vmcore)", _open_elf, _sniff_elf, priority=10
)
RAW = ImageFormat(
    "raw", "raw image (no header: physical memory from --base on)", _open_raw, takes_base=True,
    fallback=True,
)  # fmt: skip


@hookimpl
def pfnmap_image_formats() -> list[ImageFormat]:
    return [KDUMP, LIME, ELF, RAW]
