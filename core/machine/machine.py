"""The emulated machine: one arch, RAM and devices, the kernel's rules, processes and a log."""

from __future__ import annotations

import errno
from dataclasses import dataclass

import pluggy

from pfnmap.arch import Arch
from pfnmap.arches import DEFAULT_ARCH
from pfnmap.errors import KernelError
from pfnmap.kernel.files import Inode, RegularFile
from pfnmap.kernel.mm import MmStruct
from pfnmap.kernel.pgtable import TableAccess, pgd_alloc
from pfnmap.kernel.physmem import IORegion, PhysMem
from pfnmap.kernel.reports import BadPteReport
from pfnmap.kernel.rules import KernelRules, resolve_rules
from pfnmap.kernel.units import parse_size
from pfnmap.machine.process import Process

#: where the default device (a framebuffer-like PCI BAR) sits when RAM leaves room for it
DEFAULT_IO_BASE = 0xF000_0000
DEFAULT_IO_SIZE = 16 << 20
#: ... and at least this many pages of it (the scenarios remap pages up to 512 in; 64 KiB pages)
DEFAULT_IO_PAGES = 1024


@dataclass(frozen=True)
class PageInfo:
    """A snapshot of one struct page, for inspection (see physmem for the count conventions)."""

    pfn: int
    count: int
    mapcount: int
    flags: tuple[str, ...]
    mapping: object
    index: int

    @property
    def anon(self) -> bool:
        return "anon" in self.flags

    @property
    def reserved(self) -> bool:
        return "reserved" in self.flags


class Machine:
    """``Machine(arch="x86-64", ram="64M")``: boot an emulated machine.

    ``io`` lists the device memory regions beyond RAM (default: one 16 MiB region "fb0" at
    0xF0000000, or just above RAM when RAM reaches that far). ``rules`` picks the kernel's
    decisions (the seed's by default); ``era`` picks them by name instead ("unpaged", "seed",
    "2.6.15", "2.6.26": :data:`pfnmap.kernel.rules.ERAS`), and ``rules`` also takes such a name.
    ``plugin_manager`` lets a caller take the plugins of its own pluggy manager (the default one
    has the built-ins and entry points); the machine copies them into a manager of its own,
    ``machine.plugin_manager``, where an observer registered sees this machine's events only.
    ``arch_options`` are switches an arch plugin documents and reads (``machine.arch_options``); the
    arch may default some of them by era (:meth:`pfnmap.arch.Arch.option_defaults`), and the ones
    given here win.
    """

    def __init__(
        self,
        arch: str | Arch = DEFAULT_ARCH,
        ram: int | str = "64M",
        io: list[IORegion] | None = None,
        rules: KernelRules | str | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        arch_options: dict[str, object] | None = None,
        era: str | None = None,
    ) -> None:
        from pfnmap.plugins import manager

        base = plugin_manager or manager.default_plugin_manager()
        if isinstance(arch, Arch):
            self.arch = arch
        else:
            registry = manager.default_registry() if plugin_manager is None else None
            self.arch = (registry or manager.build_registry(base)).get(arch)
        #: this machine's own manager: ``base``'s plugins, plus what is registered on it
        self.plugin_manager = manager.machine_plugin_manager(base)
        self.hook = self.plugin_manager.hook
        self.rules: KernelRules = resolve_rules(rules, era)
        # the arch as the era's headers describe it (x86's 6.1 software bits and PROT_NONE)
        self.arch = self.arch.for_rules(self.rules)
        #: per-arch switches read by arch plugins (e.g. sparc64's io_remap_pfn_range follow-up)
        self.arch_options: dict[str, object] = dict(self.arch.option_defaults(self.rules))
        self.arch_options.update(arch_options or {})
        ram_bytes = parse_size(ram)
        if io is None:
            base = max(DEFAULT_IO_BASE, -(-ram_bytes // (1 << 28)) << 28)
            size = max(DEFAULT_IO_SIZE, DEFAULT_IO_PAGES << self.arch.page_shift)
            io = [IORegion("fb0", base, size)]
        self.phys = PhysMem(ram_bytes, self.arch.page_shift, io, phys_bits=self.arch.phys_bits)
        self.tables = TableAccess(self.arch, self.phys)
        self.log: list[str] = []
        self.bad_ptes: list[BadPteReport] = []
        self.faults = 0
        self.current: Process | None = None
        self.processes: dict[int, Process] = {}
        self.pins: dict[int, int] = {}
        self._next_pid = 1
        from pfnmap.machine.devices import DevMem, DevZero

        self.inodes: dict[str, Inode] = {}
        self.add_inode(DevMem(self, "/dev/mem"))
        self.add_inode(DevZero(self, "/dev/zero"))

    def __repr__(self) -> str:
        return (
            f"<Machine {self.arch.name} ram={self.phys.ram_bytes >> 20}M rules={self.rules.name}>"
        )

    # processes --------------------------------------------------------------------------------
    def spawn(self, comm: str = "init") -> Process:
        """A new process with an empty address space."""
        mm = MmStruct(self, 0, comm)
        mm.pgd = pgd_alloc(mm)
        return self._register(comm, mm)

    def _register(self, comm: str, mm: MmStruct) -> Process:
        proc = Process(self, self._next_pid, comm, mm)
        self._next_pid += 1
        self.processes[proc.pid] = proc
        return proc

    def _unregister(self, proc: Process) -> None:
        self.processes.pop(proc.pid, None)
        if self.current is proc:
            self.current = None

    # files and devices ------------------------------------------------------------------------
    def add_inode(self, inode: Inode) -> Inode:
        """Make ``inode`` reachable by its path (EEXIST if the path is taken)."""
        self._check_new_path(inode.path)
        self.inodes[inode.path] = inode
        return inode

    def _check_new_path(self, path: str) -> None:
        if not isinstance(path, str):
            raise TypeError(f"a path must be a str, not {type(path).__name__}")
        if path in self.inodes:
            raise KernelError(errno.EEXIST, path)

    def create_file(self, path: str, data: bytes = b"") -> Inode:
        """Create a regular file whose pages come through the page cache when mapped.

        EEXIST if ``path`` exists; TypeError unless ``data`` is bytes-like."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"{path}: data must be bytes, not {type(data).__name__}")
        self._check_new_path(path)
        return self.add_inode(RegularFile(self, path, data))

    def add_device_buffer(self, path: str, npages: int) -> Inode:
        """A driver with its own RAM pages, mapped through ->nopage (do_no_page's device case).

        EEXIST if ``path`` exists, EINVAL for a negative ``npages``, OutOfMemory (ENOMEM) when
        free RAM cannot hold the buffer; a failed call allocates nothing."""
        from pfnmap.machine.devices import DevBuffer

        self._check_new_path(path)
        return self.add_inode(DevBuffer(self, path, npages))

    def add_iomem_device(self, path: str, region: str | IORegion = "fb0") -> Inode:
        """A device file whose mmap maps an I/O region (by name, or any IORegion window, even
        one over RAM) with io_remap_pfn_range.

        EEXIST if ``path`` exists; :class:`~pfnmap.errors.UnknownRegion` (a KeyError) for a
        region name the machine does not have."""
        from pfnmap.machine.devices import DevIoMem

        self._check_new_path(path)
        return self.add_inode(DevIoMem(self, path, region))

    def add_remap_device(
        self,
        path: str,
        window: str | IORegion = "fb0",
        pieces: list | None = None,
        *,
        io: bool = True,
        prot: str = "vma",
        clear_vm_io: bool = False,
    ) -> Inode:
        """A device file whose ->mmap remaps a physical window into the vma in ``pieces``
        (:class:`pfnmap.machine.devices.Piece`: vma page, page count, byte offset in the
        window), one io_remap_pfn_range (``io=True``) or remap_pfn_range call each: a partial
        remap (pieces that leave part of the vma unmapped) or a scattered one (pieces from
        discontiguous parts of the window), as 2.6.15's sbus framebuffer drivers built one vma
        from several calls. Without ``pieces`` the whole vma maps the window from the mmap
        offset. ``window`` is an I/O region name or any :class:`IORegion` (even one over RAM);
        ``prot`` is ``"vma"`` (vm_page_prot) or ``"io"`` (writable and uncached, as sparc's
        io_remap_pfn_range forced); ``clear_vm_io`` clears VM_IO after the remaps, as some
        drivers did. See :class:`pfnmap.machine.devices.RemapDriver`."""
        from pfnmap.machine.devices import RemapDriver

        if not isinstance(window, IORegion):
            found = [r for r in self.phys.io_regions if r.name == window]
            if not found:
                raise KernelError(errno.ENODEV, f"no I/O region named {window!r}")
            window = found[0]
        return self.add_inode(
            RemapDriver(self, path, window, pieces, io=io, prot=prot, clear_vm_io=clear_vm_io)
        )

    # inspection -------------------------------------------------------------------------------
    def page(self, pfn: int) -> PageInfo:
        """The struct page of a RAM pfn (KernelError EINVAL for a pfn without one)."""
        phys = self.phys
        if not phys.pfn_valid(pfn):
            raise KernelError(errno.EINVAL, f"pfn {pfn:#x} has no struct page")
        return PageInfo(
            pfn,
            phys.count[pfn],
            phys.mapcount[pfn],
            tuple(phys.flag_names(pfn)),
            phys.mapping[pfn],
            phys.index[pfn],
        )

    def log_line(self, line: str) -> None:
        self.log.append(line)

    def check_invariants(self) -> None:
        """Raise InvariantError if any struct page count, mapcount, rss counter or page-table
        frame disagrees with what the live page tables, caches and pins account for."""
        from pfnmap.machine.invariants import check_invariants

        check_invariants(self)
