"""The syscall-like process API: mmap, munmap, mprotect, madvise, mremap, fork, execve, exit,
read, write, open, get_user_pages and follow_page, and poke_pte for planting corrupt ptes.

User accesses go through the emulated MMU (:func:`pfnmap.kernel.uaccess.hw_translate`); a miss is a
page fault handled as x86's do_page_fault does (find_vma, access check, handle_mm_fault), and
SIGSEGV/SIGBUS arrive as exceptions carrying the faulting address.
"""

from __future__ import annotations

import errno
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pfnmap.errors import BusError, KernelError, KernelLivelock, OutOfMemory, SegmentationFault
from pfnmap.kernel.constants import (
    FOLL_TOUCH,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    O_RDWR,
    PROT_READ,
    PROT_WRITE,
    VM_EXEC,
    VM_FAULT_MAJOR,
    VM_FAULT_MINOR,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VM_READ,
    VM_WRITE,
)
from pfnmap.kernel.exec import exec_mmap, exit_mm, mm_alloc, mmput
from pfnmap.kernel.fault import handle_mm_fault
from pfnmap.kernel.files import OpenFile
from pfnmap.kernel.madvise import sys_madvise
from pfnmap.kernel.memory import follow_page, get_user_pages
from pfnmap.kernel.mm import MmStruct, VmArea
from pfnmap.kernel.mmap import do_mmap_pgoff, do_mprotect, do_munmap, dup_mmap, iter_ptes
from pfnmap.kernel.mremap import do_mremap
from pfnmap.kernel.normal_page import Verdict, vm_normal_page_verdict
from pfnmap.kernel.pgtable import WalkStep, lookup, pgd_alloc, pte_offset
from pfnmap.kernel.uaccess import hw_translate
from pfnmap.kernel.ulong import to_ulong, ulong_max

if TYPE_CHECKING:
    from pfnmap.machine.machine import Machine

#: how often one access may fault before pfnmap calls it a livelock
FAULT_RETRY_LIMIT = 4


@dataclass(frozen=True)
class PteInfo:
    """What :meth:`Process.lookup` reports for one virtual address."""

    address: int
    vma: VmArea | None
    walk: list[WalkStep]
    level: str  # the level of the last entry read ("pte", or "pmd" for a large page...)
    raw: int  # that entry's value
    fields: dict[str, Any]  # the entry decoded by its construct layout
    present: bool
    pfn: int | None
    verdict: Verdict | None  # vm_normal_page's decision, for a pte inside a vma
    reason: str


class Process:
    """One emulated task with its own mm. Created by :meth:`Machine.spawn` or :meth:`fork`."""

    def __init__(self, machine: Machine, pid: int, comm: str, mm: MmStruct) -> None:
        self.machine = machine
        self.pid = pid
        self.comm = comm
        self.mm = mm
        self.fds: dict[int, OpenFile] = {}
        self.alive = True

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.comm}{'' if self.alive else ' (exited)'}>"

    def _check_alive(self) -> None:
        if not self.alive:
            raise KernelError(errno.ESRCH, f"process {self.pid} has exited")

    def _enter(self) -> None:
        self._check_alive()
        self.machine.current = self

    # files ----------------------------------------------------------------------------------
    def open(self, path: str, flags: int = O_RDWR) -> int:
        """open(2): /dev/mem, /dev/zero, device files and files created on the machine."""
        self._enter()
        inode = self.machine.inodes.get(path)
        if inode is None:
            raise KernelError(errno.ENOENT, path)
        inode.opened += 1
        fd = min(set(range(len(self.fds) + 1)) - set(self.fds))
        self.fds[fd] = OpenFile(inode, flags)
        return fd

    def close(self, fd: int) -> None:
        self._enter()
        file = self.fds.pop(fd, None)
        if file is None:
            raise KernelError(errno.EBADF, f"fd {fd}")
        file.put()

    def _file(self, fd: int | None) -> OpenFile | None:
        if fd is None or fd == -1:
            return None
        try:
            return self.fds[fd]
        except KeyError:
            raise KernelError(errno.EBADF, f"fd {fd}") from None

    # memory map syscalls ---------------------------------------------------------------------
    def mmap(
        self,
        length: int,
        prot: int = PROT_READ | PROT_WRITE,
        flags: int = MAP_PRIVATE | MAP_ANONYMOUS,
        fd: int | None = None,
        offset: int = 0,
        addr: int | None = None,
    ) -> int:
        """mmap(2); returns the address. The length is rounded up to whole pages, as Linux
        does; the errors are sys_mmap's and do_mmap_pgoff's (docs/errors.rst).

        ``offset`` is in bytes and must be page aligned and not negative (EINVAL), as in
        x86-64's sys_mmap; on a 32-bit arch it may exceed 4 GiB, as mmap2 allows. The other
        integers are taken as the C ``unsigned long`` the kernel receives
        (:func:`pfnmap.kernel.ulong.to_ulong`).
        """
        self._enter()
        arch = self.machine.arch
        flags = to_ulong(arch, "flags", flags)
        try:
            offset = operator.index(offset)
        except TypeError:
            raise TypeError(f"offset must be an integer, not {type(offset).__name__}") from None
        if offset < 0 or offset & (arch.page_size - 1):
            raise KernelError(errno.EINVAL, f"offset {offset:#x} is not page aligned")
        pgoff = offset >> arch.page_shift
        if pgoff > ulong_max(arch):
            raise KernelError(errno.EOVERFLOW, f"offset {offset:#x} overflows a page offset")
        file = None if flags & MAP_ANONYMOUS else self._file(fd)
        if file is None and not flags & MAP_ANONYMOUS:
            raise KernelError(errno.EBADF, "a file mapping needs an fd")
        return do_mmap_pgoff(self.mm, file, addr or 0, length, prot, flags, pgoff)

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2): do_munmap's errors (EINVAL for a bad range)."""
        self._enter()
        do_munmap(self.mm, addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """mprotect(2): sys_mprotect's errors (EINVAL, ENOMEM, EACCES)."""
        self._enter()
        do_mprotect(self.mm, addr, length, prot)

    def fork(self, comm: str | None = None) -> Process:
        """fork(): a child with a copy of every vma (copy_page_range per vma) and the fds.

        When memory runs out part way (OutOfMemory), the half-built child is torn down as
        copy_process's failure path does (mmput, so exit_mmap) and nothing of it is left."""
        self._enter()
        machine = self.machine
        child_mm = MmStruct(machine, 0, comm or self.comm)
        child_mm.pgd = pgd_alloc(child_mm)
        child = machine._register(comm or self.comm, child_mm)
        try:
            dup_mmap(child_mm, self.mm)
        except BaseException:
            mmput(child_mm)
            child.alive = False
            machine._unregister(child)
            raise
        child.fds = {fd: f.get() for fd, f in self.fds.items()}
        return child

    def exit(self) -> None:
        """exit(): exit_mm (the task lets go of its mm, then mmput's exit_mmap zaps every pte
        and frees every table) and close the fds. The teardown runs with the task no longer
        owning the mm, so print_bad_pte names it ``???``, as 2.6.15 does. Afterwards
        ``self.mm`` is the torn-down mm again (no vmas, no tables, counters at zero), kept for
        inspection; it is also kept when the teardown oopses (a KernelBug)."""
        self._enter()
        mm = self.mm
        try:
            exit_mm(self)  # self.mm is None while exit_mmap runs, as tsk->mm is
        finally:
            self.mm = mm
        for fd in list(self.fds):
            self.fds.pop(fd).put()
        self.alive = False
        self.machine._unregister(self)

    def execve(self, comm: str | None = None) -> None:
        """execve(): a new, empty mm for the task (exec_mmap), the old one torn down after the
        task stopped owning it (its bad ptes print ``process = ???``), then the new program's
        name (``comm``, default: unchanged). pfnmap loads no binary: the new address space is
        empty, as right after flush_old_exec. Open files stay open (close-on-exec is not
        modelled)."""
        self._enter()
        name = comm or self.comm
        exec_mmap(self, mm_alloc(self.machine, name))
        self.comm = name  # flush_old_exec sets the name after exec_mmap

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """madvise(2) with the era's advice values (:mod:`pfnmap.kernel.madvise`): MADV_NORMAL,
        RANDOM, SEQUENTIAL, WILLNEED, DONTNEED in 2.6.15, plus REMOVE, DONTFORK, DOFORK from
        2.6.16. MADV_DONTNEED on a VM_PFNMAP vma is EINVAL; holes in the range are ENOMEM after
        the advice was applied to the vmas around them."""
        self._enter()
        sys_madvise(self.mm, addr, length, advice)

    def mremap(
        self, addr: int, old_len: int, new_len: int, flags: int = 0, new_addr: int = 0
    ) -> int:
        """mremap(2): shrink, grow in place, or move (MREMAP_MAYMOVE, MREMAP_FIXED with
        ``new_addr``); returns the address of the mapping (:func:`pfnmap.kernel.mremap.do_mremap`).
        The ptes move with the vma, raw PFN ptes included."""
        self._enter()
        return do_mremap(self.mm, addr, old_len, new_len, flags, new_addr)

    def follow_page(self, addr: int, flags: int = FOLL_TOUCH) -> int | None:
        """follow_page() at ``addr``: the pfn of the struct page mapped there, or None (no vma,
        no pte, a raw PFN pte, or FOLL_WRITE on a read-only pte). ``flags`` are the kernel's
        FOLL_* bits (:mod:`pfnmap.kernel.constants`); with FOLL_GET the page keeps a reference
        that the caller must drop (``machine.phys.put_page``). Nothing is faulted in."""
        self._enter()
        vma = self.mm.find_vma(addr)
        if vma is None or vma.vm_start > addr:
            return None
        return follow_page(vma, addr, flags)

    def poke_pte(self, addr: int, value: int, alloc: bool = False) -> int:
        """Write ``value`` as the raw pte for ``addr`` and return the old one. **This corrupts
        the machine on purpose**: nothing is accounted (no rss, no mapcount, no reference), the
        way a stray kernel write or a buggy driver would leave a page table. It exists to show
        what the kernel does with a bad pte (print_bad_pte at fork, munmap, exit; the COW of
        do_wp_page); put the old value back before the machine's invariants are checked.
        Without ``alloc`` the pte table must exist (KernelError ENOENT otherwise); with it the
        missing tables are allocated, as a fault would."""
        self._enter()
        slot = pte_offset(self.mm, addr, alloc=alloc)
        if slot is None:
            raise KernelError(errno.ENOENT, f"no pte table covers {addr:#x}")
        tables = self.machine.tables
        old = tables.read_pte(slot)
        tables.write_pte(slot, value)
        return old

    # user memory access ----------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        """Load ``n`` bytes from user memory, faulting pages in as the CPU would.

        SIGSEGV/SIGBUS as the access meets them; a negative ``n`` is EINVAL (the check
        rw_verify_area makes of a count)."""
        self._enter()
        addr = to_ulong(self.machine.arch, "addr", addr)
        n = operator.index(n)
        if n < 0:
            raise KernelError(errno.EINVAL, f"read of {n} bytes")
        out = bytearray()
        for vaddr, chunk, paddr in self._chunks(addr, n, write=False):
            try:
                out += self.machine.phys.read(paddr, chunk)
            except BusError as exc:
                raise BusError(vaddr, exc.reason) from None
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` to user memory, faulting (and COW-breaking) as the CPU would."""
        self._enter()
        addr = to_ulong(self.machine.arch, "addr", addr)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        pos = 0
        for vaddr, chunk, paddr in self._chunks(addr, len(data), write=True):
            try:
                self.machine.phys.write(paddr, data[pos : pos + chunk])
            except BusError as exc:
                raise BusError(vaddr, exc.reason) from None
            pos += chunk

    def _chunks(self, addr: int, n: int, write: bool):
        page_size = self.machine.arch.page_size
        while n > 0:
            chunk = min(n, page_size - (addr & (page_size - 1)))
            yield addr, chunk, self._translate(addr, write)
            addr += chunk
            n -= chunk

    def _translate(self, addr: int, write: bool) -> int:
        if not self.machine.arch.va_valid(addr):
            raise SegmentationFault(addr, "address outside the user address space")
        for _ in range(FAULT_RETRY_LIMIT):
            paddr = hw_translate(self.mm, addr, write)
            if paddr is not None:
                return paddr
            self.do_page_fault(addr, write)
        raise KernelLivelock(f"access at {addr:#x} keeps faulting")

    def do_page_fault(self, addr: int, write: bool) -> int:
        """do_page_fault(): the vma and permission checks, then handle_mm_fault."""
        mm = self.mm
        vma = mm.find_vma(addr)
        if vma is None or vma.vm_start > addr:
            raise SegmentationFault(addr, "no vma")
        if write:
            if not vma.vm_flags & VM_WRITE:
                raise SegmentationFault(addr, "write to a vma without VM_WRITE")
        elif not vma.vm_flags & (VM_READ | VM_EXEC):
            raise SegmentationFault(addr, "read of a vma without VM_READ")
        ret = handle_mm_fault(mm, vma, addr, write)
        if ret == VM_FAULT_MINOR:
            mm.min_flt += 1
        elif ret == VM_FAULT_MAJOR:
            mm.maj_flt += 1
        elif ret == VM_FAULT_SIGBUS:
            raise BusError(addr, "the fault handler returned VM_FAULT_SIGBUS")
        elif ret == VM_FAULT_OOM:
            raise OutOfMemory(f"VM_FAULT_OOM at {addr:#x}: the kernel would kill {self.comm}")
        return ret

    # pinning -------------------------------------------------------------------------------------
    def get_user_pages(self, addr: int, npages: int, write: bool = False) -> list[int]:
        """get_user_pages(): the pfns of ``npages`` pages from ``addr``, each pinned.

        Returns fewer pages when a later page fails (as the kernel returns a short count);
        raises EFAULT when the first page fails. Release them with :meth:`put_pages`. A
        negative ``npages`` is EINVAL (a pfnmap check: 2.6.15's loop on an int ``len`` would
        pin pages until the first one that fails).
        """
        self._enter()
        addr = to_ulong(self.machine.arch, "addr", addr)
        npages = operator.index(npages)
        if npages < 0:
            raise KernelError(errno.EINVAL, f"get_user_pages of {npages} pages")
        pages = get_user_pages(self.mm, addr, npages, write)
        for pfn in pages:
            self.machine.pins[pfn] = self.machine.pins.get(pfn, 0) + 1
        return pages

    def put_pages(self, pages: list[int]) -> None:
        """put_page() for pages pinned with :meth:`get_user_pages`."""
        pins = self.machine.pins
        for pfn in pages:
            if not pins.get(pfn):
                raise KernelError(errno.EINVAL, f"page {pfn:#x} is not pinned")
            pins[pfn] -= 1
            if not pins[pfn]:
                del pins[pfn]
            self.machine.phys.put_page(pfn)

    # inspection ----------------------------------------------------------------------------------
    @property
    def vmas(self) -> list[VmArea]:
        return list(self.mm.mmap)

    def rss(self) -> dict[str, int]:
        mm = self.mm
        return {"file_rss": mm.file_rss, "anon_rss": mm.anon_rss, "rss": mm.rss()}

    def lookup(self, addr: int) -> PteInfo:
        """Walk the tables for ``addr``: the entries read, the leaf decoded by construct, and
        vm_normal_page's verdict with its reason (without print_bad_pte's side effect).

        ESRCH once the process has exited (its tables are gone); EFAULT for an address
        outside ``[0, TASK_SIZE)``, which no user page table maps (access_ok's refusal)."""
        machine = self.machine
        arch = machine.arch
        self._check_alive()
        addr = to_ulong(arch, "addr", addr)
        if not arch.va_valid(addr):
            raise KernelError(errno.EFAULT, f"{addr:#x} is outside the user address space")
        steps = lookup(self.mm, addr)
        last = steps[-1]
        vma = self.mm.find_vma(addr)
        if vma is not None and vma.vm_start > addr:
            vma = None
        level = last.level
        is_leaf = level == len(arch.levels) - 1 or (
            last.value and arch.table_entry_leaf(level, last.value)
        )
        fmt = arch.leaf_formats[level] if is_leaf else arch.table_formats[level]
        fields = fmt.decode(last.value) if fmt is not None else {}
        present = bool(is_leaf and last.value and arch.pte_present(last.value))
        pfn = None
        if present and level == len(arch.levels) - 1:
            pfn = arch.pte_pfn(last.value)  # what the kernel reads (L1TF: PROT_NONE inverted)
        elif present:
            pfn = arch.leaf_paddr(level, last.value) >> arch.page_shift
        verdict = None
        reason = "no page table below this level" if not is_leaf else "not present"
        if is_leaf and level == len(arch.levels) - 1 and vma is not None:
            verdict, _, reason = vm_normal_page_verdict(vma, addr, last.value)
        elif vma is None:
            reason = "no vma"
        return PteInfo(
            addr, vma, steps, last.level_name, last.value, fields, present, pfn, verdict, reason
        )

    def ptes(self, vma: VmArea) -> list[tuple[int, int]]:
        """(address, raw pte) for every non-none pte of ``vma`` (one of this process's: else
        EINVAL; ESRCH once the process has exited)."""
        self._check_alive()
        if vma not in self.mm.mmap:
            raise KernelError(errno.EINVAL, f"{vma!r} is not a vma of {self!r}")
        return list(iter_ptes(self.mm, vma.vm_start, vma.vm_end))
