"""Built-in arch plugins. Each module is a plain pluggy plugin with ``@hookimpl`` functions."""

BUILTIN_ARCH_MODULES = (
    "pfnmap.arches.x86_64",
    "pfnmap.arches.x86_2level",
    "pfnmap.arches.x86_pae",
    "pfnmap.arches.x86_la57",
    "pfnmap.arches.sparc64",
    "pfnmap.arches.arm64",
)
