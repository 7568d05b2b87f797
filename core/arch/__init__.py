"""The arch layer: what an arch plugin describes (:mod:`~pfnmap.arch.contract`) and the
vectorised entry operations derived from it (:mod:`~pfnmap.arch.vector`), which the kernel's bulk
paths and the dump decoder both use. It imports nothing of pfnmap but :mod:`pfnmap.errors`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap._lazy import lazy_exports

if TYPE_CHECKING:
    from pfnmap.arch.contract import Arch, EntryFormat, Field, Level, derive_fields

_LAZY = dict.fromkeys(
    ("Arch", "EntryFormat", "Field", "Level", "derive_fields"), "pfnmap.arch.contract"
)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = ["Arch", "EntryFormat", "Field", "Level", "derive_fields"]
