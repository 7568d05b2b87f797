"""Old module paths (before the layer subpackages) as aliases of the modules that replaced them.

``import pfnmap.remap`` keeps working for plugins written against 0.1.0: the import system is
given the new module itself (one module object, never a second copy) and a DeprecationWarning
names the new path.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

#: old path -> the module that has its contents now
MOVED = {
    "pfnmap.constants": "pfnmap.kernel.constants",
    "pfnmap.physmem": "pfnmap.kernel.physmem",
    "pfnmap.mm": "pfnmap.kernel.mm",
    "pfnmap.pgtable": "pfnmap.kernel.pgtable",
    "pfnmap.memory": "pfnmap.kernel.memory",
    "pfnmap.fault": "pfnmap.kernel.fault",
    "pfnmap.mmap": "pfnmap.kernel.mmap",
    "pfnmap.remap": "pfnmap.kernel.remap",
    "pfnmap.uaccess": "pfnmap.kernel.uaccess",
    "pfnmap.rules": "pfnmap.kernel.rules",
    "pfnmap.reports": "pfnmap.kernel.reports",
    "pfnmap.fastpath": "pfnmap.kernel.fastpath",
    "pfnmap.files": "pfnmap.kernel.files",
    "pfnmap.process": "pfnmap.machine.process",
    "pfnmap.devices": "pfnmap.machine.devices",
    "pfnmap.invariants": "pfnmap.machine.invariants",
    "pfnmap.image": "pfnmap.decode.image",
    "pfnmap.decode_ops": "pfnmap.arch.vector",
    "pfnmap.decode_hints": "pfnmap.decode.hints",
    "pfnmap.decode_records": "pfnmap.decode.records",
    "pfnmap.decode_views": "pfnmap.decode.views",
    "pfnmap.decode_formats": "pfnmap.decode.formats",
    "pfnmap.dump": "pfnmap.decode.dump",
    "pfnmap.compare": "pfnmap.scenarios.compare",
    "pfnmap.cli_compare": "pfnmap.cli.compare",
    "pfnmap.cli_decode": "pfnmap.cli.decode",
    "pfnmap.demo": "pfnmap.cli.demo",
    "pfnmap.demo_render": "pfnmap.cli.demo_render",
}


# importlib.abc's base classes would cost a tenth of ``pfnmap --help``'s time to import (it
# loads typing and more); the import system needs only these methods
class _AliasLoader:
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        # the target module is already executed; record it under the old name too
        pass


class _AliasFinder:
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        from importlib.machinery import ModuleSpec  # already loaded: the import system's own

        return ModuleSpec(fullname, _AliasLoader(new))

    def invalidate_caches(self) -> None:
        pass


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
