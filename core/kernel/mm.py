"""mm_struct and vm_area_struct (include/linux/mm.h, include/linux/sched.h of 2.6.15)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pfnmap.kernel.constants import vm_flag_names

if TYPE_CHECKING:
    from pfnmap.machine import Machine


class AnonVma:
    """anon_vma: the object anonymous pages point to through ``page->mapping``.

    Shared by a vma and its copies in forked children, as in the kernel.
    """

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self._ids)

    def __repr__(self) -> str:
        return f"<anon_vma {self.id}>"


@dataclass
class VmOperations:
    """vm_operations_struct: only ``nopage`` matters to the paths modelled here.

    ``nopage(vma, address) -> (pfn | NOPAGE_SIGBUS | NOPAGE_OOM, fault_type)`` returns a page
    with a reference held for the caller, as the kernel's ->nopage does.
    """

    name: str
    nopage: Callable[[VmArea, int], tuple[int, int]] | None = None


NOPAGE_SIGBUS = -1  # the kernel's NULL
NOPAGE_OOM = -2  # the kernel's (struct page *)-1


@dataclass(eq=False)
class VmArea:
    """vm_area_struct: ``[vm_start, vm_end)`` with its flags, offset, protection and backing."""

    vm_mm: MmStruct
    vm_start: int
    vm_end: int
    vm_flags: int
    vm_pgoff: int = 0
    vm_page_prot: int = 0
    vm_file: Any = None
    vm_ops: VmOperations | None = None
    anon_vma: AnonVma | None = None

    @property
    def size(self) -> int:
        return self.vm_end - self.vm_start

    def flag_names(self) -> list[str]:
        return vm_flag_names(self.vm_flags)

    def linear_page_index(self, address: int) -> int:
        """linear_page_index(): the file page that ``address`` maps in a linear vma."""
        return ((address - self.vm_start) >> self.vm_mm.machine.arch.page_shift) + self.vm_pgoff

    def __repr__(self) -> str:
        backing = getattr(self.vm_file, "path", None) or "anon"
        return (
            f"<vma {self.vm_start:#x}-{self.vm_end:#x} {'|'.join(self.flag_names())} "
            f"pgoff={self.vm_pgoff:#x} {backing}>"
        )


@dataclass(eq=False)
class MmStruct:
    """mm_struct: the page-table root, the vma list and the rss counters."""

    machine: Machine
    pgd: int  # physical address of the top-level table
    comm: str = "init"
    mmap: list[VmArea] = field(default_factory=list)
    file_rss: int = 0
    anon_rss: int = 0
    hiwater_rss: int = 0
    nr_ptes: int = 0  # pte tables in use, as mm->nr_ptes
    nr_pgtables: int = 0  # every table frame, the pgd included (pfnmap's own count)
    min_flt: int = 0
    maj_flt: int = 0

    def rss(self) -> int:
        return self.file_rss + self.anon_rss

    def add_mm_rss(self, file_rss: int, anon_rss: int) -> None:
        """add_mm_rss(): the batched counter update done once per page table."""
        self.file_rss += file_rss
        self.anon_rss += anon_rss

    def update_hiwater_rss(self) -> None:
        self.hiwater_rss = max(self.hiwater_rss, self.rss())

    # the vma list, kept sorted by vm_start ---------------------------------------------------
    def find_vma(self, addr: int) -> VmArea | None:
        """find_vma(): the first vma with ``vm_end > addr`` (it may start above ``addr``)."""
        i = bisect.bisect_right([v.vm_end for v in self.mmap], addr)
        return self.mmap[i] if i < len(self.mmap) else None

    def insert_vma(self, vma: VmArea) -> None:
        starts = [v.vm_start for v in self.mmap]
        self.mmap.insert(bisect.bisect_left(starts, vma.vm_start), vma)

    def remove_vma(self, vma: VmArea) -> None:
        self.mmap.remove(vma)

    def vmas_in(self, start: int, end: int) -> list[VmArea]:
        return [v for v in self.mmap if v.vm_start < end and v.vm_end > start]
