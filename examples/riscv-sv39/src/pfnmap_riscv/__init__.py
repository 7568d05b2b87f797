"""pfnmap-arch-riscv-sv39: RISC-V Sv39 paging as an out-of-tree pfnmap arch plugin.

The plugin module is :mod:`pfnmap_riscv.sv39`; it is published under the ``pfnmap.arches``
entry-point group as ``riscv``.
"""

__version__ = "0.1.0"
