"""The plugin system: hook markers, the hookspecs contract, the manager and validation.

A plugin is a plain module (or object) with functions marked ``@hookimpl``::

    from pfnmap.plugins import hookimpl

    @hookimpl
    def pfnmap_arches():
        return [MyArch()]
"""

import pluggy

PROJECT_NAME = "pfnmap"
#: the entry-point group third-party arch plugins are published under
ENTRY_POINT_GROUP = "pfnmap.arches"
#: any non-empty value skips loading entry-point plugins (like PYTEST_DISABLE_PLUGIN_AUTOLOAD)
DISABLE_AUTOLOAD_ENV = "PFNMAP_DISABLE_PLUGIN_AUTOLOAD"

#: the built-in arch plugins (arches/), registered by module name before any entry point, as
#: pytest registers its builtin plugins
BUILTIN_ARCH_MODULES = (
    "pfnmap.arches.x86_64",
    "pfnmap.arches.x86_2level",
    "pfnmap.arches.x86_pae",
    "pfnmap.arches.x86_la57",
    "pfnmap.arches.sparc64",
    "pfnmap.arches.arm64",
)

#: the built-in image formats (raw, ELF, kdump, LiME): a plugin module of the decoder's,
#: registered by name like the arches (imported when a manager is made)
BUILTIN_IMAGE_FORMAT_MODULES = ("pfnmap.decode.images.builtin",)

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "BUILTIN_ARCH_MODULES",
    "BUILTIN_IMAGE_FORMAT_MODULES",
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
]
