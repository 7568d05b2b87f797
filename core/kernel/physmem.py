"""Physical memory: RAM frames as real bytes, the struct page array, I/O memory and holes.

RAM is an anonymous ``mmap`` (the host gives zero pages lazily, so a large emulated RAM costs
only what is touched). ``struct page`` exists only for RAM pfns (``pfn_valid``); device memory
beyond RAM has none, which is the whole reason VM_PFNMAP exists.

struct page is kept as parallel lists indexed by pfn (``count``, ``mapcount``, ``flags``,
``mapping``, ``index``): a per-pte update is then one list store, not an object lookup.
Deliberate differences from the kernel: ``count`` is the real reference count (the kernel stores
``_count`` as count-1) and ``mapcount`` the real number of mappings (the kernel's ``_mapcount``
starts at -1). Anon-ness is a flag here, where the kernel tags ``page->mapping``.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pfnmap.errors import BusError, KernelBug, KernelError, OutOfMemory
from pfnmap.kernel.constants import PAGE_FLAG_NAMES, PG_reserved
from pfnmap.kernel.units import parse_size  # noqa: F401  (re-exported: RAM sizes are parsed here)


def device_byte_pattern(paddr: np.ndarray) -> np.ndarray:
    """Deterministic contents of device memory: a byte that depends on its physical address."""
    return ((paddr * 0x9E3779B1) >> 24).astype(np.uint8) ^ (paddr >> 12).astype(np.uint8)


@dataclass
class IORegion:
    """Device memory at ``[start, start+size)`` of the physical address space (no struct page).

    Unwritten bytes read as :func:`device_byte_pattern`; writes are kept per page.

    ``space`` is the I/O space the device decodes (sparc's MK_IOSPACE_PFN number, 0..15). A
    driver passes the region's bus ``offset`` with the space number to io_remap_pfn_range, and
    sparc64 builds the physical address as ``offset | space << 32``; so a region in space
    ``s != 0`` lies in ``[s << 32, (s + 1) << 32)`` and ``start`` is still its physical
    address. Build one with :meth:`in_space`.
    """

    name: str
    start: int
    size: int
    pattern: Callable[[np.ndarray], np.ndarray] = device_byte_pattern
    written: dict[int, bytearray] = field(default_factory=dict)
    space: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.space < 16:
            raise KernelError(22, f"I/O region {self.name}: space {self.space} is not 0..15")
        if self.space and not (
            self.space << 32 <= self.start and self.start + self.size <= (self.space + 1) << 32
        ):
            raise KernelError(
                22,
                f"I/O region {self.name} [{self.start:#x}, {self.start + self.size:#x}) is not "
                f"inside I/O space {self.space} [{self.space << 32:#x}, "
                f"{(self.space + 1) << 32:#x})",
            )

    @classmethod
    def in_space(cls, name: str, space: int, offset: int, size: int, **kw: Any) -> IORegion:
        """The region a device of I/O space ``space`` decodes at bus ``offset``."""
        return cls(name, offset | (space << 32), size, space=space, **kw)

    @property
    def offset(self) -> int:
        """The bus offset a driver passes (the physical address without the space bits)."""
        return self.start - (self.space << 32)

    @property
    def end(self) -> int:
        return self.start + self.size

    def _page(self, page_addr: int, page_size: int) -> bytearray:
        buf = self.written.get(page_addr)
        if buf is None:
            addrs = np.arange(page_addr, page_addr + page_size, dtype=np.uint64)
            buf = bytearray(self.pattern(addrs).tobytes())
            self.written[page_addr] = buf
        return buf

    @staticmethod
    def _pieces(paddr: int, n: int, page_size: int):
        """(page address, offset in it, byte count) for each device page ``[paddr, +n)`` hits."""
        while n > 0:
            page_addr = paddr & ~(page_size - 1)
            off = paddr - page_addr
            chunk = min(n, page_size - off)
            yield page_addr, off, chunk
            paddr += chunk
            n -= chunk

    def read(self, paddr: int, n: int, page_size: int) -> bytes:
        out = bytearray()
        for page_addr, off, chunk in self._pieces(paddr, n, page_size):
            buf = self.written.get(page_addr)
            if buf is not None:
                out += buf[off : off + chunk]
            else:
                start = page_addr + off
                out += self.pattern(np.arange(start, start + chunk, dtype=np.uint64)).tobytes()
        return bytes(out)

    def write(self, paddr: int, data: bytes, page_size: int) -> None:
        pos = 0
        for page_addr, off, chunk in self._pieces(paddr, len(data), page_size):
            self._page(page_addr, page_size)[off : off + chunk] = data[pos : pos + chunk]
            pos += chunk


#: the most RAM pages a machine may have: each struct page costs host memory (about 90 bytes
#: in the parallel lists), so 2**22 pages (16 GiB of 4 KiB pages) take some 360 MiB already
MAX_RAM_PAGES = 1 << 22


class PhysMem:
    """RAM, struct pages, the page allocator, the zero page and the I/O regions of a machine."""

    def __init__(
        self,
        ram_bytes: int,
        page_shift: int,
        io_regions: list[IORegion] | None = None,
        reserved_low_pages: int = 16,
        phys_bits: int = 64,
    ) -> None:
        self.page_shift = page_shift
        self.page_size = 1 << page_shift
        if ram_bytes <= 0 or ram_bytes % self.page_size:
            raise KernelError(22, f"RAM size {ram_bytes:#x} is not a positive multiple of a page")
        self.ram_bytes = ram_bytes
        self.nr_pages = ram_bytes >> page_shift
        if reserved_low_pages + 8 > self.nr_pages:
            raise KernelError(22, f"RAM of {ram_bytes} bytes is too small to boot")
        if self.nr_pages > MAX_RAM_PAGES:
            raise KernelError(
                22,
                f"RAM of {ram_bytes:#x} bytes is {self.nr_pages} pages, more than the "
                f"{MAX_RAM_PAGES} pfnmap emulates (each struct page costs host memory)",
            )
        if ram_bytes > (1 << phys_bits):
            raise KernelError(22, f"RAM of {ram_bytes:#x} bytes exceeds {phys_bits}-bit PAs")
        self.ram = mmap.mmap(-1, ram_bytes)
        self.io_regions: list[IORegion] = sorted(io_regions or [], key=lambda r: r.start)
        for region in self.io_regions:
            if region.start < ram_bytes or region.end > (1 << phys_bits):
                raise KernelError(
                    22,
                    f"I/O region {region.name} [{region.start:#x}, {region.end:#x}) overlaps RAM "
                    f"or lies beyond the {phys_bits}-bit physical address space",
                )
        n = self.nr_pages
        # struct page, one slot per RAM pfn
        self.count = [0] * n
        self.mapcount = [0] * n
        self.flags = [0] * n
        self.mapping: list[object | None] = [None] * n
        self.index = [0] * n
        # the boot allocator hands out low pfns first; reserved low pages play firmware
        self.reserved_low_pages = reserved_low_pages
        for pfn in range(reserved_low_pages):
            self.count[pfn] = 1
            self.flags[pfn] = PG_reserved
            lo = pfn << page_shift
            addrs = np.arange(lo, lo + self.page_size, dtype=np.uint64)
            self.ram[lo : lo + self.page_size] = device_byte_pattern(addrs).tobytes()
        self._free: list[int] = list(range(n - 1, reserved_low_pages - 1, -1))
        self.allocated = 0  # pages handed out by alloc_page and not yet freed
        # ZERO_PAGE: reserved, shared by every read fault of anonymous memory
        self.zero_pfn = self.alloc_page()
        self.flags[self.zero_pfn] |= PG_reserved

    # pfn and address helpers -----------------------------------------------------------------
    @property
    def highest_memmap_pfn(self) -> int:
        """The last pfn the memmap covers (mm/memory.c's highest_memmap_pfn, the top of RAM)."""
        return self.nr_pages - 1

    def pfn_valid(self, pfn: int) -> bool:
        """Whether ``pfn`` has a struct page (is RAM)."""
        return 0 <= pfn < self.nr_pages

    def pfns_valid(self, pfns: np.ndarray) -> np.ndarray:
        """:meth:`pfn_valid` over an array of (unsigned) pfns."""
        return pfns < np.uint64(self.nr_pages)

    def io_region_of(self, paddr: int) -> IORegion | None:
        for region in self.io_regions:
            if region.start <= paddr < region.end:
                return region
        return None

    # the page allocator ----------------------------------------------------------------------
    def alloc_page(self, zero: bool = True) -> int:
        """alloc_page(): a free RAM page with count 1 (raises OutOfMemory when none is left)."""
        if not self._free:
            raise OutOfMemory("no free RAM pages")
        pfn = self._free.pop()
        self.count[pfn] = 1
        self.allocated += 1
        if zero:
            start = pfn << self.page_shift
            self.ram[start : start + self.page_size] = bytes(self.page_size)
        return pfn

    def alloc_pages(self, n: int, zero: bool = True) -> list[int]:
        """``n`` pages from :meth:`alloc_page`, all or none: when RAM runs out part way, the
        pages already taken are freed again before OutOfMemory is raised."""
        pages: list[int] = []
        try:
            for _ in range(n):
                pages.append(self.alloc_page(zero))
        except OutOfMemory:
            for pfn in pages:
                self.put_page(pfn)
            raise
        return pages

    def get_page(self, pfn: int) -> None:
        self.count[pfn] += 1

    def put_page(self, pfn: int) -> None:
        """put_page(): drop a reference; the last one frees the page."""
        count = self.count[pfn] - 1
        if count < 0:
            raise KernelBug(f"put_page on free page {pfn:#x}")
        self.count[pfn] = count
        if count == 0:
            if self.flags[pfn] & PG_reserved:
                raise KernelBug(f"freeing reserved page {pfn:#x}")
            if self.mapcount[pfn]:
                raise KernelBug(f"Bad page state: freeing mapped page {pfn:#x}")
            self.flags[pfn] = 0
            self.mapping[pfn] = None
            self.index[pfn] = 0
            self.allocated -= 1
            self._free.append(pfn)

    def free_pages(self) -> int:
        return len(self._free)

    def flag_names(self, pfn: int) -> list[str]:
        flags = self.flags[pfn]
        return [name for bit, name in PAGE_FLAG_NAMES.items() if flags & bit]

    # byte access ------------------------------------------------------------------------------
    def read(self, paddr: int, n: int) -> bytes:
        """Read physical memory; a hole (neither RAM nor device) is a bus error."""
        if paddr >= 0 and paddr + n <= self.ram_bytes:
            return self.ram[paddr : paddr + n]
        region = self.io_region_of(paddr)
        if region is None or paddr + n > region.end:
            raise BusError(paddr, "no RAM or device at this physical address")
        return region.read(paddr, n, self.page_size)

    def write(self, paddr: int, data: bytes) -> None:
        n = len(data)
        if paddr >= 0 and paddr + n <= self.ram_bytes:
            self.ram[paddr : paddr + n] = data
            return
        region = self.io_region_of(paddr)
        if region is None or paddr + n > region.end:
            raise BusError(paddr, "no RAM or device at this physical address")
        region.write(paddr, data, self.page_size)

    def copy_page(self, dst_pfn: int, src_pfn: int) -> None:
        src = src_pfn << self.page_shift
        dst = dst_pfn << self.page_shift
        self.ram[dst : dst + self.page_size] = self.read(src, self.page_size)

    def table(self, paddr: int, entries: int, dtype: str) -> np.ndarray:
        """A writable numpy view of one page table in RAM (per-table bulk work)."""
        return np.frombuffer(self.ram, dtype=dtype, count=entries, offset=paddr)
