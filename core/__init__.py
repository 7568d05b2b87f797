"""pfnmap: the Linux 2.6.15 VM_PFNMAP memory-management core, emulated on real MMU encodings.

Start with :class:`Machine`::

    from pfnmap import Machine, MAP_SHARED, PROT_READ

    m = Machine(arch="x86-64", ram="64M")
    p = m.spawn()
    fd = p.open("/dev/mem")
    addr = p.mmap(4096, PROT_READ, MAP_SHARED, fd, offset=0xF0000000)
    p.read(addr, 16)
    p.lookup(addr).verdict   # Verdict.RAW_PFN

The package is layered; imports run one way, from the top of this list down:

- :mod:`pfnmap.cli`: the ``pfnmap`` command, the demo and its rendering;
- :mod:`pfnmap.scenarios`: the scenario library and the era comparison;
- :mod:`pfnmap.decode`: dump images, the table walker, hints, output formats;
- :mod:`pfnmap.machine`: Machine, Process, devices, the invariant audit;
- :mod:`pfnmap.kernel`: the 2.6.15 mm (physical memory, page tables, memory.c, faults, mmap);
- :mod:`pfnmap.arch`: the arch contract a plugin implements, and its vectorised entry ops;
- :mod:`pfnmap.errors`: the exceptions every layer raises.

The names below are loaded on first use, so ``import pfnmap`` (and ``pfnmap --help``) does not
pay for numpy, construct or the plugin manager until a Machine is wanted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap import _moved
from pfnmap._lazy import lazy_exports
from pfnmap.errors import (
    BusError,
    KernelBug,
    KernelError,
    KernelLivelock,
    OutOfMemory,
    PfnmapError,
    PluginError,
    SegmentationFault,
    Signal,
    UnknownArch,
    UnknownRegion,
)
from pfnmap.kernel.constants import (
    MADV_DOFORK,
    MADV_DONTFORK,
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MAP_ANON,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    O_RDONLY,
    O_RDWR,
    O_SYNC,
    O_WRONLY,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)

if TYPE_CHECKING:
    from pfnmap.kernel.normal_page import Verdict
    from pfnmap.kernel.physmem import IORegion
    from pfnmap.kernel.rules import SEED, KernelRules
    from pfnmap.machine import Machine, PageInfo, Piece, Process, PteInfo

__version__ = "0.1.0"

#: public names that pull in numpy/construct, and the module each one comes from
_LAZY = {
    "Machine": "pfnmap.machine",
    "PageInfo": "pfnmap.machine",
    "Piece": "pfnmap.machine",
    "Process": "pfnmap.machine",
    "PteInfo": "pfnmap.machine",
    "Verdict": "pfnmap.kernel.normal_page",
    "IORegion": "pfnmap.kernel.physmem",
    "SEED": "pfnmap.kernel.rules",
    "KernelRules": "pfnmap.kernel.rules",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

_moved.install()

__all__ = [
    "MADV_DOFORK",
    "MADV_DONTFORK",
    "MADV_DONTNEED",
    "MADV_NORMAL",
    "MADV_RANDOM",
    "MADV_REMOVE",
    "MADV_SEQUENTIAL",
    "MADV_WILLNEED",
    "MAP_ANON",
    "MAP_ANONYMOUS",
    "MAP_FIXED",
    "MAP_PRIVATE",
    "MAP_SHARED",
    "MREMAP_FIXED",
    "MREMAP_MAYMOVE",
    "O_RDONLY",
    "O_RDWR",
    "O_SYNC",
    "O_WRONLY",
    "PROT_EXEC",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "SEED",
    "BusError",
    "IORegion",
    "KernelBug",
    "KernelError",
    "KernelLivelock",
    "KernelRules",
    "Machine",
    "OutOfMemory",
    "PageInfo",
    "PfnmapError",
    "Piece",
    "PluginError",
    "Process",
    "PteInfo",
    "SegmentationFault",
    "Signal",
    "UnknownArch",
    "UnknownRegion",
    "Verdict",
]
