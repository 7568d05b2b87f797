"""The plugin manager: built-in arches first, then the ``pfnmap.arches`` entry-point group.

Modelled on pytest's: built-ins are registered by module name, third-party plugins come from
entry points unless ``PFNMAP_DISABLE_PLUGIN_AUTOLOAD`` is set, and ``check_pending()`` refuses
hook implementations that match no hookspec. The arch registry validates every contributed arch;
a broken built-in is an error, a broken third-party plugin is skipped with a warning (and its
error is the answer when that plugin's arch is asked for by name).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import pluggy

from pfnmap.arch import Arch
from pfnmap.arches import BUILTIN_ARCH_MODULES
from pfnmap.errors import PluginError, UnknownArch
from pfnmap.plugins import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from pfnmap.plugins.validation import validate_arch

DEFAULT_PLUGINS = ("pfnmap.plugins.defaults",)


class PluginWarning(UserWarning):
    """A third-party plugin was skipped because it is malformed."""


def make_plugin_manager(autoload: bool | None = None) -> pluggy.PluginManager:
    """Create a manager with the hookspecs, the built-ins and (unless disabled) entry points."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for modname in DEFAULT_PLUGINS + BUILTIN_ARCH_MODULES:
        pm.register(importlib.import_module(modname), name=modname)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # an entry point that fails to import
            warnings.warn(f"could not load a pfnmap plugin: {exc}", PluginWarning, stacklevel=2)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(getattr(exc, "plugin_name", "?"), str(exc)) from None
    return pm


@dataclass
class ArchRegistry:
    """The validated arches, by name, and the plugins that failed."""

    arches: dict[str, Arch] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    broken: dict[str, PluginError] = field(default_factory=dict)

    def get(self, name: str) -> Arch:
        if name in self.arches:
            return self.arches[name]
        for plugin, error in self.broken.items():
            if name in plugin or name in error.problem:
                raise error
        raise UnknownArch(name, sorted(self.arches))

    def names(self) -> list[str]:
        return list(self.arches)


def build_registry(pm: pluggy.PluginManager) -> ArchRegistry:
    """Call every ``pfnmap_arches`` implementation separately so errors name their plugin."""
    registry = ArchRegistry()
    for impl in pm.hook.pfnmap_arches.get_hookimpls():
        plugin = impl.plugin_name
        builtin = plugin in BUILTIN_ARCH_MODULES
        try:
            arches = _arches_of(plugin, impl.function)
            for arch in arches:
                if arch.name in registry.arches:
                    raise PluginError(
                        plugin,
                        f"arch {arch.name!r} is already provided by {registry.owners[arch.name]!r}",
                    )
                registry.arches[arch.name] = arch
                registry.owners[arch.name] = plugin
        except PluginError as error:
            if builtin:
                raise
            registry.broken[plugin] = error
            warnings.warn(f"skipping {error}", PluginWarning, stacklevel=2)
    # built-ins come first in registration order; keep that order for listings
    return registry


def _arches_of(plugin: str, function) -> list[Arch]:
    try:
        result = function()
    except Exception as exc:
        raise PluginError(plugin, f"pfnmap_arches() raised {type(exc).__name__}: {exc}") from exc
    if result is None:
        return []
    if isinstance(result, Arch):
        result = [result]
    arches = list(result)
    for arch in arches:
        problems = validate_arch(arch)
        if problems:
            raise PluginError(plugin, "; ".join(problems))
    return arches


@lru_cache(maxsize=1)
def default_plugin_manager() -> pluggy.PluginManager:
    return make_plugin_manager()


@lru_cache(maxsize=1)
def default_registry() -> ArchRegistry:
    return build_registry(default_plugin_manager())


def get_arch(name: str) -> Arch:
    """The registered arch called ``name`` (raises UnknownArch or the plugin's error)."""
    return default_registry().get(name)
