"""Built-in arch plugins. Each module is a plain pluggy plugin with ``@hookimpl`` functions."""

BUILTIN_ARCH_MODULES = ("pfnmap.arches.x86_64",)
