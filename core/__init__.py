"""pfnmap: the Linux 2.6.15 VM_PFNMAP memory-management core, emulated on real MMU encodings.

Start with :class:`Machine`::

    from pfnmap import Machine, MAP_SHARED, PROT_READ

    m = Machine(arch="x86-64", ram="64M")
    p = m.spawn()
    fd = p.open("/dev/mem")
    addr = p.mmap(4096, PROT_READ, MAP_SHARED, fd, offset=0xF0000000)
    p.read(addr, 16)
    p.lookup(addr).verdict   # Verdict.RAW_PFN
"""

from .constants import (
    MAP_ANON,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDONLY,
    O_RDWR,
    O_SYNC,
    O_WRONLY,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from .errors import (
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
)
from .machine import Machine, PageInfo
from .memory import Verdict
from .physmem import IORegion
from .process import Process, PteInfo
from .rules import SEED, KernelRules

__version__ = "0.1.0"

__all__ = [
    "MAP_ANON",
    "MAP_ANONYMOUS",
    "MAP_FIXED",
    "MAP_PRIVATE",
    "MAP_SHARED",
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
    "PluginError",
    "Process",
    "PteInfo",
    "SegmentationFault",
    "Signal",
    "UnknownArch",
    "Verdict",
]
