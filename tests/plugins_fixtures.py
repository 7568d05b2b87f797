"""Fake third-party plugins for test_plugins.py: good ones, broken arches, a typo, observers.

Each plugin is a plain object with ``@hookimpl`` methods, registered on a fresh manager with
``pm.register(plugin, name="acme")`` the way an entry point would be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import construct as cs

from pfnmap.arch import Arch
from pfnmap.arches.x86_64 import PTE, X86_64
from pfnmap.plugins import hookimpl


class ArchPlugin:
    """Contributes whatever ``factory()`` returns from ``pfnmap_arches``."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory

    @hookimpl
    def pfnmap_arches(self) -> Any:
        return self._factory()


# a good third-party arch ---------------------------------------------------------------------
class Acme64(X86_64):
    """x86-64 under another name: what a well-formed third-party arch looks like."""

    name = "acme-64"
    description = "x86-64, renamed by a third party"


# broken arches: each breaks one rule, and the test checks the warning names it --------------
def _top_down_fields() -> list[cs.Construct]:
    return list(PTE.subcon.subcon.subcons)  # ByteSwapped -> BitStruct -> Struct


def _levels_with_pte(layout: cs.Construct) -> tuple:
    *upper, pte = X86_64.levels
    return (*upper, dataclasses.replace(pte, leaf=layout))


class GapArch(X86_64):
    """The pte layout leaves bit 0 to no field (63 of 64 bits named)."""

    name = "acme-gap"
    levels = _levels_with_pte(cs.ByteSwapped(cs.BitStruct(*_top_down_fields()[:-1])))


class OverlapArch(X86_64):
    """The pte layout names 65 bits: the last field overlaps the first."""

    name = "acme-overlap"
    levels = _levels_with_pte(cs.ByteSwapped(cs.BitStruct(*_top_down_fields(), "again" / cs.Flag)))


class WrongByteOrderArch(X86_64):
    """A little-endian arch whose pte layout forgot ByteSwapped: every derived mask is at the
    wrong place compared with what construct builds."""

    name = "acme-be"
    levels = _levels_with_pte(cs.BitStruct(*_top_down_fields()))


class BadGeometryArch(X86_64):
    """The pud claims VA bits from 31 though the pmd ends at bit 30."""

    name = "acme-geom"
    levels = (
        X86_64.levels[0],
        dataclasses.replace(X86_64.levels[1], shift=31),
        *X86_64.levels[2:],
    )


class MissingOpArch(X86_64):
    """Forgot pte_mkyoung."""

    name = "acme-noop"
    pte_mkyoung = None  # type: ignore[assignment]


class DuplicateNameArch(X86_64):
    """Claims the built-in's name."""

    name = "x86-64"


class BareArch(Arch):
    """An Arch with geometry but none of the pte operations (and no protection map)."""

    name = "acme-bare"
    phys_bits = 40
    va_bits = 48
    task_size = 1 << 47
    levels = X86_64.levels


def raising_factory() -> list[Arch]:
    raise RuntimeError("acme firmware table not found")


# not an arch plugin at all ---------------------------------------------------------------------
class TypoPlugin:
    """``pfnmap_arch`` (no s): matches no hookspec."""

    @hookimpl
    def pfnmap_arch(self) -> list[Arch]:
        return [Acme64()]


# observers -------------------------------------------------------------------------------------
class Tracer:
    """Collects the observer hooks' reports."""

    def __init__(self) -> None:
        self.faults: list[Any] = []
        self.bad_ptes: list[Any] = []
        self.machines: set[int] = set()

    @hookimpl
    def pfnmap_fault_handled(self, machine, report) -> None:
        self.machines.add(id(machine))
        self.faults.append(report)

    @hookimpl
    def pfnmap_bad_pte(self, machine, report) -> None:
        self.machines.add(id(machine))
        self.bad_ptes.append(report)


__all__ = [
    "Acme64",
    "ArchPlugin",
    "BadGeometryArch",
    "BareArch",
    "DuplicateNameArch",
    "GapArch",
    "MissingOpArch",
    "OverlapArch",
    "Tracer",
    "TypoPlugin",
    "WrongByteOrderArch",
    "raising_factory",
]
