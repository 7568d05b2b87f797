"""The plugin manager: built-in arches first, then the ``pfnmap.arches`` entry-point group.

Modelled on pytest's: built-ins are registered by module name, third-party plugins come from
entry points unless ``PFNMAP_DISABLE_PLUGIN_AUTOLOAD`` is set, and ``check_pending()`` refuses
hook implementations that match no hookspec. The arch registry validates every contributed arch;
a broken built-in is an error, a broken third-party plugin is skipped with a warning (and its
error is the answer when that plugin's arch is asked for by name).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import pluggy

from pfnmap.arch import Arch
from pfnmap.errors import PluginError, PluginWarning, UnknownArch
from pfnmap.plugins import (
    BUILTIN_ARCH_MODULES,
    BUILTIN_IMAGE_FORMAT_MODULES,
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PROJECT_NAME,
    hookspecs,
)
from pfnmap.plugins.validation import validate_arch


def make_plugin_manager(autoload: bool | None = None) -> pluggy.PluginManager:
    """Create a manager with the hookspecs, the built-ins and (unless disabled) entry points."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for modname in BUILTIN_ARCH_MODULES + BUILTIN_IMAGE_FORMAT_MODULES:
        pm.register(importlib.import_module(modname), name=modname)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        load_entry_point_plugins(pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        # pluggy's error carries the plugin object; name it as it was registered
        raise PluginError(pm.get_name(exc.plugin) or repr(exc.plugin), str(exc)) from None
    return pm


def load_entry_point_plugins(pm: pluggy.PluginManager, group: str = ENTRY_POINT_GROUP) -> int:
    """Register every plugin published under ``group``; returns how many were registered.

    Unlike pluggy's ``load_setuptools_entrypoints``, which stops at the first entry point that
    fails to import, each entry point is loaded on its own: one that fails is reported with a
    PluginWarning naming it, and the others still load.
    """
    count = 0
    for ep in importlib.metadata.entry_points(group=group):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            warnings.warn(
                f"could not load pfnmap plugin {ep.name!r} ({ep.value}): "
                f"{type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        try:
            pm.register(plugin, name=ep.name)
        except pluggy.PluginValidationError as exc:
            # a hook implementation pluggy refuses (arguments the hookspec does not have);
            # pluggy has registered the name and possibly other hooks by then: undo that
            if pm.get_plugin(ep.name) is not None:
                pm.unregister(name=ep.name)
            warnings.warn(
                f"skipping pfnmap plugin {ep.name!r} ({ep.value}): {exc}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        count += 1
    return count


@dataclass
class ArchRegistry:
    """The validated arches, by name, and the plugins that failed."""

    arches: dict[str, Arch] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    broken: dict[str, PluginError] = field(default_factory=dict)
    #: plugin -> the names of the arches it returned before it was found broken
    broken_arches: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> Arch:
        if name in self.arches:
            return self.arches[name]
        for plugin, error in self.broken.items():
            if name == plugin or name in self.broken_arches.get(plugin, ()):
                raise error
        raise UnknownArch(name, sorted(self.arches))

    def names(self) -> list[str]:
        return list(self.arches)


def build_registry(pm: pluggy.PluginManager) -> ArchRegistry:
    """Call every ``pfnmap_arches`` implementation separately so errors name their plugin.

    A plugin's arches are registered all or nothing: one bad arch skips the whole plugin.
    """
    registry = ArchRegistry()
    for impl in pm.hook.pfnmap_arches.get_hookimpls():
        plugin = impl.plugin_name
        arches: list = []
        try:
            arches = _arches_of(plugin, impl.function)
            _check_arches(plugin, arches, registry)
        except PluginError as error:
            if plugin in BUILTIN_ARCH_MODULES:
                raise
            registry.broken[plugin] = error
            registry.broken_arches[plugin] = [
                a.name for a in arches if isinstance(a, Arch) and a.name
            ]
            warnings.warn(f"skipping {error}", PluginWarning, stacklevel=2)
            continue
        for arch in arches:
            registry.arches[arch.name] = arch
            registry.owners[arch.name] = plugin
    # built-ins come first in registration order; keep that order for listings
    return registry


def _arches_of(plugin: str, function) -> list:
    """One plugin's ``pfnmap_arches()`` result as a list; an exception is its PluginError."""
    try:
        result = function()
        if result is None:
            return []
        if isinstance(result, Arch):
            return [result]
        return list(result)
    except Exception as exc:
        raise PluginError(plugin, f"pfnmap_arches() raised {type(exc).__name__}: {exc}") from exc


def _check_arches(plugin: str, arches: list, registry: ArchRegistry) -> None:
    """Validate each arch and refuse a name already taken (by another plugin or this one)."""
    taken = dict(registry.owners)
    for arch in arches:
        try:
            problems = validate_arch(arch)
        except Exception as exc:  # validation itself must never take pfnmap down
            what = getattr(arch, "name", None) or type(arch).__name__
            raise PluginError(
                plugin, f"{what}: validation failed with {type(exc).__name__}: {exc}"
            ) from exc
        if problems:
            raise PluginError(plugin, "; ".join(problems))
        if arch.name in taken:
            raise PluginError(
                plugin, f"arch {arch.name!r} is already provided by {taken[arch.name]!r}"
            )
        taken[arch.name] = plugin


def machine_plugin_manager(base: pluggy.PluginManager) -> pluggy.PluginManager:
    """A manager of one Machine's own: every plugin of ``base`` (the built-ins, entry points and
    whatever the caller registered there) and, later, what is registered on the machine, which
    no other machine sees (a tracer registered on one machine never hears another's faults)."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name, plugin in base.list_name_plugin():
        if plugin is not None and not base.is_blocked(name):
            pm.register(plugin, name=name)
    return pm


@lru_cache(maxsize=1)
def default_plugin_manager() -> pluggy.PluginManager:
    return make_plugin_manager()


@lru_cache(maxsize=1)
def default_registry() -> ArchRegistry:
    return build_registry(default_plugin_manager())


def get_arch(name: str) -> Arch:
    """The registered arch called ``name`` (raises UnknownArch or the plugin's error)."""
    return default_registry().get(name)
