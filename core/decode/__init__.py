"""The decode layer: reading page tables out of memory images.

Images (:mod:`~pfnmap.decode.image`), the table walker (:mod:`~pfnmap.decode.walker`), its
records and views (:mod:`~pfnmap.decode.records`, :mod:`~pfnmap.decode.views`), hints that give
each leaf vm_normal_page's verdict (:mod:`~pfnmap.decode.hints`), the output formats
(:mod:`~pfnmap.decode.formats`) and the writer that dumps an emulated machine
(:mod:`~pfnmap.decode.dump`). :mod:`~pfnmap.decode.catalog` names what is offered without
loading any of it. The names below load their module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap._lazy import lazy_exports

if TYPE_CHECKING:
    from pfnmap.decode.records import Item, Leaf, LeafBatch, Problem, Range
    from pfnmap.decode.views import leaves, ranges
    from pfnmap.decode.walker import Walker, summary_hint

_LAZY = {
    "Item": "pfnmap.decode.records",
    "Leaf": "pfnmap.decode.records",
    "LeafBatch": "pfnmap.decode.records",
    "Problem": "pfnmap.decode.records",
    "Range": "pfnmap.decode.records",
    "leaves": "pfnmap.decode.views",
    "ranges": "pfnmap.decode.views",
    "Walker": "pfnmap.decode.walker",
    "summary_hint": "pfnmap.decode.walker",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = [
    "Item",
    "Leaf",
    "LeafBatch",
    "Problem",
    "Range",
    "Walker",
    "leaves",
    "ranges",
    "summary_hint",
]
