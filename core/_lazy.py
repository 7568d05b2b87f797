"""PEP 562 lazy exports: a package names what it offers, and each name imports its module on
first use. ``import pfnmap`` and ``pfnmap --help`` then load no numpy, construct or pluggy."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, where ``exports`` maps each public
    name to the module that defines it."""

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook PEP 562 names)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(exports) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
