"""Machines for tests: which registry an arch comes from, and the checks that end a test.

:class:`ArchSource` is the plugin manager and registry a test session draws its arches from:
pfnmap's default ones, or a fresh manager with extra plugin modules registered (how an author
tries a plugin before publishing it). :func:`finish` is the end-of-test audit every machine
the fixtures build goes through.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pfnmap.machine import Machine
from pfnmap.plugins.manager import (
    ArchRegistry,
    build_registry,
    default_plugin_manager,
    default_registry,
    make_plugin_manager,
)

if TYPE_CHECKING:
    import pluggy

    from pfnmap.arch import Arch

#: RAM of the machines the fixtures build: room for every scenario on every arch, 8 KiB pages
#: included, and still quick to boot
DEFAULT_RAM = "16M"


@dataclass
class ArchSource:
    """A plugin manager and the arch registry built from it."""

    pm: pluggy.PluginManager
    registry: ArchRegistry

    @classmethod
    def default(cls) -> ArchSource:
        """pfnmap's shared manager: the built-ins plus installed entry points (unless
        PFNMAP_DISABLE_PLUGIN_AUTOLOAD is set)."""
        return cls(default_plugin_manager(), default_registry())

    @classmethod
    def with_modules(cls, modules: list[str]) -> ArchSource:
        """A fresh manager (entry points as the environment says) plus ``modules``, each
        imported and registered under its module name, as an entry point would be."""
        pm = make_plugin_manager()
        for name in modules:
            if pm.get_plugin(name) is None:
                pm.register(importlib.import_module(name), name=name)
        pm.check_pending()
        return cls(pm, build_registry(pm))

    def arch(self, name: str | Arch) -> Arch:
        """The arch called ``name`` (UnknownArch, or the broken plugin's PluginError)."""
        return name if not isinstance(name, str) else self.registry.get(name)

    def machine(self, arch: str | Arch, ram: int | str = DEFAULT_RAM, **kwargs: object) -> Machine:
        """A machine on ``arch`` whose hooks come from this source's manager."""
        return Machine(arch=self.arch(arch), ram=ram, plugin_manager=self.pm, **kwargs)


def leaked_table_frames(machine: Machine) -> list[int]:
    """RAM pages still marked as page tables."""
    phys = machine.phys
    return [pfn for pfn in range(phys.nr_pages) if "pgtable" in phys.flag_names(pfn)]


def finish(machine: Machine) -> None:
    """The end of a test: the machine is consistent, every process exits, it still is, and
    no page-table frame is left behind. Raises InvariantError or AssertionError."""
    machine.check_invariants()
    for proc in list(machine.processes.values()):
        proc.exit()
    machine.check_invariants()
    assert not machine.processes, f"processes left after exit: {machine.processes}"
    leaked = leaked_table_frames(machine)
    assert not leaked, f"page-table frames left after every process exited: {leaked}"
