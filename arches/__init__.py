"""Built-in arch plugins. Each module is a plain pluggy plugin with ``@hookimpl`` functions; the
plugin manager registers them by name (:data:`pfnmap.plugins.BUILTIN_ARCH_MODULES`). This
package's own top level stays import-free: the command line reads :data:`DEFAULT_ARCH` from it."""

#: the arch a Machine, the demo and the commands use when none is named
DEFAULT_ARCH = "x86-64"
