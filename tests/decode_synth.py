"""Page tables built by hand in a bytearray, for decoder tests that need what the emulator never
writes (large pages, corrupt entries, loops). Entries come from the arch's own operations."""

from __future__ import annotations

from pfnmap.arch import Arch
from pfnmap.decode.image import PhysImage, Segment


class Tables:
    """A physical image of ``size`` bytes at ``base`` with a root table and a table allocator."""

    def __init__(self, arch: Arch, size: int = 1 << 20, base: int = 0) -> None:
        self.arch = arch
        self.base = base
        self.buf = bytearray(size)
        self.page = max(arch.page_size, *(lv.entries * lv.entry_bytes for lv in arch.levels))
        self.next = base
        self.root = self.alloc()

    def alloc(self) -> int:
        paddr = self.next
        self.next += self.page
        if self.next > self.base + len(self.buf):
            raise MemoryError("synthetic image full")
        return paddr

    def read(self, level: int, table: int, index: int) -> int:
        lv = self.arch.levels[level]
        off = table - self.base + index * lv.entry_bytes
        return int.from_bytes(self.buf[off : off + lv.entry_bytes], self.arch.byteorder)

    def write(self, level: int, table: int, index: int, value: int) -> None:
        lv = self.arch.levels[level]
        off = table - self.base + index * lv.entry_bytes
        self.buf[off : off + lv.entry_bytes] = value.to_bytes(lv.entry_bytes, self.arch.byteorder)

    def table_for(self, va: int, level: int) -> int:
        """The table of ``level`` that covers ``va``, creating the tables above it."""
        arch = self.arch
        table = self.root
        for lv in range(level):
            i = arch.index(lv, va)
            entry = self.read(lv, table, i)
            if entry == 0:
                child = self.alloc()
                self.write(lv, table, i, arch.mk_table_entry(lv, child))
                table = child
            elif arch.table_entry_leaf(lv, entry):
                raise ValueError(f"{va:#x}: a large page at level {lv} is in the way")
            else:
                table = arch.table_entry_paddr(lv, entry)
        return table

    def set_leaf(self, va: int, level: int, value: int) -> int:
        """Put ``value`` in the entry of ``level`` for ``va``; returns the entry's address."""
        table = self.table_for(va, level)
        i = self.arch.index(level, va)
        self.write(level, table, i, value)
        return table + i * self.arch.levels[level].entry_bytes

    def image(self) -> PhysImage:
        seg = Segment(self.base, len(self.buf), 0)
        return PhysImage([seg], bytes(self.buf), "<synthetic>", "raw")
