"""Image formats as plugins: what an image format is, the registered ones, and ``auto``.

An :class:`ImageFormat` has a name (``--image-format NAME``), a ``sniff`` that looks at the
first bytes of a file and says what it found (or None), and an ``open`` that turns the file
into a :class:`~pfnmap.decode.images.base.PhysImage`. The built-ins (kdump, LiME, ELF, raw)
come from :mod:`pfnmap.decode.images.builtin`, a plugin like any other; a third-party plugin
adds one by implementing ``pfnmap_image_formats`` (see :mod:`pfnmap.plugins.hookspecs`).
``auto`` asks each format's ``sniff`` in turn (highest ``priority`` first) and falls back to
the ``fallback`` format (raw) when none recognises the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pfnmap.decode.images.base import ImageError, PhysImage, read_head
from pfnmap.errors import PluginWarning

if TYPE_CHECKING:
    import pluggy

#: bytes of a file that ``sniff`` functions see (a flattened dump's first record starts at 4096)
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class ImageFormat:
    """One image format a plugin contributes.

    ``open(path)`` (``open(path, base)`` when ``takes_base``) returns a PhysImage or raises
    ImageError with one line; ``sniff(head)`` gets the file's first :data:`SNIFF_BYTES` bytes
    and returns a short description of what it recognised, or None. ``fallback`` marks the
    format ``auto`` uses when nothing is recognised (raw).
    """

    name: str
    description: str
    open: Callable[..., PhysImage]
    sniff: Callable[[bytes], str | None] = lambda head: None
    takes_base: bool = False
    priority: int = 0
    fallback: bool = False


class UnknownImageFormat(ImageError):
    """An ``--image-format`` name no plugin provides."""


def image_formats(pm: pluggy.PluginManager | None = None) -> dict[str, ImageFormat]:
    """The registered formats by name, in sniffing order. Each plugin is asked on its own: one
    that raises or returns something else is skipped with a PluginWarning."""
    if pm is None:
        from pfnmap.plugins.manager import default_plugin_manager

        pm = default_plugin_manager()
    found: list[ImageFormat] = []
    names: dict[str, str] = {}
    # registration order: the built-ins first, so a plugin cannot take over their names
    for impl in pm.hook.pfnmap_image_formats.get_hookimpls():
        plugin = impl.plugin_name
        try:
            result = impl.function()
            items = [] if result is None else list(result)
        except Exception as exc:
            warnings.warn(
                f"skipping image formats of plugin {plugin!r}: pfnmap_image_formats() raised "
                f"{type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        for fmt in items:
            if not isinstance(fmt, ImageFormat) or not fmt.name or fmt.name == "auto":
                warnings.warn(
                    f"skipping an image format of plugin {plugin!r}: {fmt!r} is not an "
                    "ImageFormat with a name other than 'auto'",
                    PluginWarning,
                    stacklevel=2,
                )
                continue
            if fmt.name in names:
                warnings.warn(
                    f"skipping image format {fmt.name!r} of plugin {plugin!r}: already provided "
                    f"by {names[fmt.name]!r}",
                    PluginWarning,
                    stacklevel=2,
                )
                continue
            names[fmt.name] = plugin
            found.append(fmt)
    found.sort(key=lambda f: (f.fallback, -f.priority))
    return {f.name: f for f in found}


def sniff(path: str | os.PathLike[str], formats: dict[str, ImageFormat]) -> tuple[ImageFormat, str]:
    """The format ``auto`` picks for ``path`` and what its sniff said (the fallback's
    description when nothing matched)."""
    head = read_head(path, SNIFF_BYTES)
    fallback = None
    for fmt in formats.values():
        if fmt.fallback:
            fallback = fallback or fmt
            continue
        try:
            found = fmt.sniff(head) if head else None
        except Exception:  # a plugin's sniff must not take the command down
            found = None
        if found:
            return fmt, found
    if fallback is None:
        raise ImageError(f"{os.fspath(path)}: no image format recognises it")
    return fallback, fallback.description


def open_image(
    path: str | os.PathLike[str],
    base: int | None = None,
    kind: str = "auto",
    formats: dict[str, ImageFormat] | None = None,
) -> PhysImage:
    """Open ``path`` as image format ``kind`` (a registered name, or "auto": sniff it).
    ``base`` is the physical address of a raw image's first byte (default 0)."""
    formats = formats if formats is not None else image_formats()
    name = os.fspath(path)
    if kind == "auto":
        fmt, found = sniff(name, formats)
        if base is not None and not fmt.takes_base:
            raise ImageError(
                f"{name} is {_article(found)}, which carries its own physical addresses; --base "
                "is for raw images (read it as raw bytes with --image-format raw)"
            )
    else:
        fmt = formats.get(kind)
        if fmt is None:
            raise UnknownImageFormat(
                f"unknown image format {kind!r} (known: auto, {', '.join(formats)})"
            )
        if base is not None and not fmt.takes_base:
            raise ImageError(f"--base is for raw images; {fmt.description} has its own addresses")
        found = ""
    try:
        image = fmt.open(name, base or 0) if fmt.takes_base else fmt.open(name)
    except ImageError as exc:
        if kind != "auto":
            other, what = sniff(name, formats)
            if other is not fmt and not other.fallback:
                raise ImageError(
                    f"{exc} (it looks like {_article(what)}: try --image-format {other.name})"
                ) from None
        raise
    image.sniffed = found  # type: ignore[attr-defined]
    return image


def _article(what: str) -> str:
    return ("an " if what[:1].lower() in "aeiou" else "a ") + what


def describe_formats(formats: dict[str, Any]) -> str:
    return ", ".join(formats)
