"""The machine layer: an emulated computer (:class:`Machine`) with its processes
(:class:`Process`), device files (:mod:`~pfnmap.machine.devices`) and the whole-machine audit
(:mod:`~pfnmap.machine.invariants`). It drives :mod:`pfnmap.kernel` the way system calls do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap._lazy import lazy_exports

if TYPE_CHECKING:
    from pfnmap.machine.devices import Piece
    from pfnmap.machine.machine import Machine, PageInfo
    from pfnmap.machine.process import Process, PteInfo

_LAZY = {
    "Machine": "pfnmap.machine.machine",
    "PageInfo": "pfnmap.machine.machine",
    "Process": "pfnmap.machine.process",
    "PteInfo": "pfnmap.machine.process",
    "Piece": "pfnmap.machine.devices",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = ["Machine", "PageInfo", "Piece", "Process", "PteInfo"]
