"""sparc64 sun4u (UltraSPARC) paging, as in include/asm-sparc64/pgtable.h and page.h of 2.6.15.

Geometry (``CONFIG_SPARC64_PAGE_SIZE_8KB``): PAGE_SHIFT 13; a pte table is one 8 KiB page of
1024 8-byte ptes (PAGE_SHIFT - 3 index bits); a pmd table 2048 4-byte entries (PMD_BITS =
PAGE_SHIFT - 2, PMD_SHIFT 23); the pgd 2048 4-byte entries (PGDIR_SHIFT 34). The pud is folded
(asm-generic/pgtable-nopud.h), so the arch has three levels, and the tables translate
13 + 10 + 11 + 11 = 45 VA bits.

Entries. A pte is the sun4u TTE, a big-endian 64-bit word: the hardware fields (valid, size,
nfo, ie, the physical address in bits 42..13, locked, cacheable CP/CV, side effect E,
privileged P, hardware-writable W, global G) and Linux's software bits 12..7 (exec, modified
or file, accessed, read, write, present). pgd and pmd entries are 32-bit words holding the
physical address of the next table shifted right by 11 (pmd_set/pud_set store
``__pa(table) >> 11``); 0 is none, and pmd_bad/pud_bad are always 0. Tables are page aligned,
so nothing is lost, and 32 bits reach 43 bits of physical address.

How the software and hardware bits work together. The hardware checks only valid (a TLB miss
loads a TTE only when bit 63 is set), P (a user access to a privileged page traps) and W (a
store needs it); it never sets a bit. Linux keeps VALID clear on an "old" pte and W clear on a
clean one, so the first access, and the first store, trap; handle_pte_fault then sets VALID
with pte_mkyoung and W with pte_mkdirty. That is why pte_mkyoung sets ACCESSED|VALID,
pte_mkdirty sets MODIFIED|W, pte_mkwrite sets only the software WRITE, and why
:meth:`Sparc64.pte_hw_update` changes nothing.

VA and TASK_SIZE. UltraSPARC-I/II decode 44-bit VAs sign-extended from bit 43, leaving a hole
from 0x0000080000000000 to 0xfffff80000000000. 2.6.15's processor.h defines TASK_SIZE for
64-bit tasks as ``-VPTE_SIZE`` (0xfffffffc00000000, :data:`TASK_SIZE_2615`): it runs across the
hole and into the top half, where 2.6.15 put TASK_UNMAPPED_BASE (PAGE_OFFSET). pfnmap's core
models one contiguous user range ``[0, task_size)`` inside the translated VA, so this arch uses
the part of the era's range below the hole, ``[0, 1 << 43)``: every address in it is a valid
hardware VA, no address in the hole can be mapped, and the pgd slots the top half would use
(1536..2047) stay empty. It is also where later kernels put the 64-bit stack (STACK_TOP64 =
2**43 - 2**32).

Physical addresses are 43 bits (Cheetah's _PAGE_PADDR, bits 42..13; Spitfire decoded only
40..13). ``pfn_valid`` is RAM only, as ``(pfn - pfn_base) < max_mapnr`` is in the kernel.

I/O spaces and io_remap_pfn_range. A pfn given to io_remap_pfn_range carries an I/O-space
number in its top 4 bits (MK_IOSPACE_PFN, :meth:`pfnmap.arch.Arch.mk_iospace_pfn`); the TTE
gets ``space << 32`` ORed into its physical address. :func:`io_remap_pfn_range` below is
arch/sparc64/mm/generic.c after David Miller's follow-ups to the seed. ``Machine(...,
arch_options={...})`` takes these switches:

``sparc64_iomap_followup`` (default True)
    "sparc: convert IO remapping to VM_PFNMAP" (2.6.15-rc3): VM_PFNMAP and
    ``vm_pgoff = phys_base >> PAGE_SHIFT``. False runs the generic.c of before that commit
    (kernel-reference S-sparc64-pre): the flag bit is set (its VM_UNPAGED value, 0x400, is
    VM_PFNMAP after the seed) but vm_pgoff stays the mmap offset.
``sparc64_iomap_rc4_fix`` (default: the followup value)
    "[SPARC64]: Fix >8K I/O mappings." (2.6.15-rc4): each 8 KiB pte of a 64K/512K/4M run
    carries its own physical address. False stores the run's base address in every slot.

What vm_normal_page() makes of the ptes without the follow-ups. Without the conversion no pte
passes the linear rule ``pte_pfn == vm_pgoff + page offset`` (vm_pgoff is the driver-relative
mmap offset), so every pte falls through to pfn_valid. For device memory that fails: each pte
is Verdict.BAD and print_bad_pte() logs it from copy_one_pte at fork (the logged value is the
pte after the COW write-protect, or after mkclean for a shared mapping, and pte_mkold, as in
the sunffb report), from zap_pte_range at munmap and exit, and from do_wp_page on a COW fault;
the pte is then treated as raw, so fork and munmap take and drop no reference, no mapcount and
no rss. With the conversion but without the rc4 fix only the first 8 KiB pte of each large run
passes; the other 7, 63 or 511 are misread the same way. Where the physical address is RAM
(a window aliasing memory with struct pages), pfn_valid succeeds and the misread pte is taken
for a COWed page: fork gets a reference and a mapcount on that struct page per pte (and rss
in the child), and munmap drops them again, on a page the mapping never counted: the
mapcount underflows (KernelBug, the kernel's BUG_ON in page_remove_rmap) or, if the page has
a real owner, the owner's reference is released and the page freed under it.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import construct as cs
import numpy as np

from pfnmap.arch import Arch, Level
from pfnmap.errors import KernelBug, KernelError
from pfnmap.kernel.constants import VM_IO, VM_PFNMAP, VM_RESERVED
from pfnmap.kernel.pgtable import addr_end, walk_to_table
from pfnmap.plugins import hookimpl

if TYPE_CHECKING:
    from pfnmap.kernel.mm import VmArea
    from pfnmap.kernel.rules import KernelRules
    from pfnmap.machine import Machine

NAME = "sparc64"

# include/asm-sparc64/page.h and pgtable.h, 8 KiB pages
PAGE_SHIFT = 13
PAGE_SIZE = 1 << PAGE_SHIFT
PTE_BITS = PAGE_SHIFT - 3  # PTRS_PER_PTE 1024
PMD_SHIFT = PAGE_SHIFT + (PAGE_SHIFT - 3)  # 23
PMD_BITS = PAGE_SHIFT - 2  # PTRS_PER_PMD 2048
PMD_SIZE = 1 << PMD_SHIFT
PGDIR_SHIFT = PMD_SHIFT + PMD_BITS  # 34
PGDIR_BITS = PAGE_SHIFT - 2  # PTRS_PER_PGD 2048
#: pmd_set/pud_set store the table's physical address shifted right by this
TABLE_PADDR_SHIFT = 11
PHYS_BITS = 43  # _PAGE_PADDR covers PA bits 42..13 (Cheetah)
VA_BITS = 44  # include/asm-sparc64/processor.h
#: 2.6.15's TASK_SIZE for 64-bit tasks, ``-VPTE_SIZE``; see the module docstring
TASK_SIZE_2615 = (1 << 64) - (1 << (VA_BITS - PAGE_SHIFT + 3))
#: what this arch uses: the user VA below the Spitfire hole
TASK_SIZE = 1 << (VA_BITS - 1)
#: mk_pte_io ORs the I/O-space number into the physical address at this bit
IOSPACE_PADDR_SHIFT = 32

Bit = cs.Flag

#: the sun4u TTE (Spitfire/Cheetah), big-endian, fields from bit 63 down
TTE = cs.BitStruct(
    "valid" / Bit,  # 63 _PAGE_VALID, also _PAGE_R ("keep ref bit up to date")
    "size" / cs.BitsInteger(2),  # 62..61 _PAGE_SZ8K/64K/512K/4MB
    "nfo" / Bit,  # 60 _PAGE_NFO, no-fault only
    "ie" / Bit,  # 59 _PAGE_IE, invert endianness
    "soft2" / cs.BitsInteger(9),  # 58..50 _PAGE_SOFT2, software bits set 2 (unused)
    "res1" / Bit,  # 49 _PAGE_RES1
    "sz32mb" / Bit,  # 48 _PAGE_SZ32MB (Panther; with size 01 it is _PAGE_SZ256MB)
    "sn" / Bit,  # 47 _PAGE_SN, snoop (Cheetah)
    "res2" / cs.BitsInteger(4),  # 46..43 _PAGE_RES2
    "paddr" / cs.BitsInteger(30),  # 42..13 _PAGE_PADDR
    "exec" / Bit,  # 12 _PAGE_EXEC (software)
    "modified" / Bit,  # 11 _PAGE_MODIFIED; _PAGE_FILE when not present
    "accessed" / Bit,  # 10 _PAGE_ACCESSED (software)
    "read" / Bit,  # 9 _PAGE_READ (software)
    "write" / Bit,  # 8 _PAGE_WRITE (software)
    "present" / Bit,  # 7 _PAGE_PRESENT (software)
    "l" / Bit,  # 6 _PAGE_L, locked TTE
    "cp" / Bit,  # 5 _PAGE_CP, cacheable in the physically indexed cache
    "cv" / Bit,  # 4 _PAGE_CV, cacheable in the virtually indexed cache
    "e" / Bit,  # 3 _PAGE_E, side effect
    "p" / Bit,  # 2 _PAGE_P, privileged
    "w" / Bit,  # 1 _PAGE_W, hardware writable
    "g" / Bit,  # 0 _PAGE_G, global
)

#: a pgd or pmd entry: ``__pa(next table) >> 11`` in a 32-bit word
TABLE = cs.BitStruct("table_paddr_shr11" / cs.BitsInteger(32))


class Sparc64(Arch):
    """sun4u with 8 KiB pages: the 2.6.15 pte operations, masks derived from :data:`TTE`."""

    name = NAME
    description = "sparc64 sun4u (UltraSPARC), 8K pages, 3 levels, 44-bit VA, 43-bit PA, I/O spaces"
    page_shift = PAGE_SHIFT
    byteorder = "big"
    va_bits = VA_BITS
    canonical = True  # VAs are sign-extended from bit 43 (the hole)
    phys_bits = PHYS_BITS
    task_size = TASK_SIZE
    has_io_spaces = True
    elf_machine = 43  # EM_SPARCV9
    elf_class = 2
    uname_machine = "sparc64"
    #: checks of the conformance kit (pfnmap.testing) this arch fails on purpose, and why
    conformance_xfail = {
        "ops.cow": "2.6.15's pte_mkdirty sets the hardware-writable _PAGE_W even in a "
        "write-protected pte, so the MMU takes a store the kernel refused (fixed in 2023 by "
        "fa2e71a6fcee, 'sparc/mm: don't unconditionally set HW writable bit when setting PTE "
        "dirty on 64bit')",
    }
    levels = (
        Level("pgd", PGDIR_SHIFT, PGDIR_BITS, 4, TABLE, None),
        Level("pmd", PMD_SHIFT, PMD_BITS, 4, TABLE, None),
        Level("pte", PAGE_SHIFT, PTE_BITS, 8, None, TTE, "pte"),
    )

    def __init__(self) -> None:
        super().__init__()
        pte = self.pte_format
        m = pte.mask
        size_shift = pte.fields["size"].shift
        self._PAGE_VALID = self._PAGE_R = m("valid")
        self._PAGE_SZ8K = 0 << size_shift
        self._PAGE_SZ64K = 1 << size_shift
        self._PAGE_SZ512K = 2 << size_shift
        self._PAGE_SZ4MB = 3 << size_shift
        self._PAGE_SZ32MB = m("sz32mb")
        self._PAGE_SZ256MB = self._PAGE_SZ64K | self._PAGE_SZ32MB
        self._PAGE_NFO = m("nfo")
        self._PAGE_IE = m("ie")
        self._PAGE_SOFT2 = m("soft2")
        self._PAGE_RES1 = m("res1")
        self._PAGE_SN = m("sn")
        self._PAGE_RES2 = m("res2")
        self._PAGE_PADDR = m("paddr")
        self._PAGE_EXEC = m("exec")
        self._PAGE_MODIFIED = self._PAGE_FILE = m("modified")
        self._PAGE_ACCESSED = m("accessed")
        self._PAGE_READ = m("read")
        self._PAGE_WRITE = m("write")
        self._PAGE_PRESENT = m("present")
        self._PAGE_L = m("l")
        self._PAGE_CP = m("cp")
        self._PAGE_CV = m("cv")
        self._PAGE_E = m("e")
        self._PAGE_P = m("p")
        self._PAGE_W = m("w")
        self._PAGE_G = m("g")
        self._PAGE_SOFT = (
            self._PAGE_EXEC
            | self._PAGE_MODIFIED
            | self._PAGE_ACCESSED
            | self._PAGE_READ
            | self._PAGE_WRITE
            | self._PAGE_PRESENT
        )
        self._PAGE_SZBITS = self._PAGE_SZ8K  # the base page size, PAGE_SHIFT 13
        self._PAGE_CACHE = self._PAGE_CP | self._PAGE_CV
        dirty_bits = self._PAGE_MODIFIED | self._PAGE_WRITE | self._PAGE_W  # __DIRTY_BITS
        access_bits = self._PAGE_ACCESSED | self._PAGE_READ | self._PAGE_R  # __ACCESS_BITS
        priv_bits = self._PAGE_P  # __PRIV_BITS
        base = self._PAGE_PRESENT | self._PAGE_VALID | self._PAGE_CACHE | access_bits
        self.PAGE_NONE = self._PAGE_PRESENT | self._PAGE_ACCESSED | self._PAGE_CACHE
        # "Don't set the TTE _PAGE_W bit here, else the dirty bit never gets set."
        self.PAGE_SHARED = base | self._PAGE_WRITE | self._PAGE_EXEC
        self.PAGE_COPY = base | self._PAGE_EXEC
        self.PAGE_READONLY = base | self._PAGE_EXEC
        self.PAGE_KERNEL = base | priv_bits | dirty_bits | self._PAGE_EXEC
        self.PAGE_SHARED_NOEXEC = base | self._PAGE_WRITE
        self.PAGE_COPY_NOEXEC = base
        self.PAGE_READONLY_NOEXEC = base
        #: what io_remap_pfn_range forces on every I/O pte (until March 2006)
        self.pg_iobits = (
            self._PAGE_VALID | self._PAGE_PRESENT | dirty_bits | access_bits | self._PAGE_E
        )
        #: the bits pte_modify keeps from the old pte (its preserve_mask)
        self._PAGE_CHG_MASK = (
            self._PAGE_PADDR
            | self._PAGE_MODIFIED
            | self._PAGE_ACCESSED
            | self._PAGE_CACHE
            | self._PAGE_E
            | self._PAGE_PRESENT
            | self._PAGE_SZBITS
        )
        # __P000..__P111, __S000..__S111 (xwr), indexed by vm_flags & 0xf
        private = (
            self.PAGE_NONE,
            self.PAGE_READONLY_NOEXEC,
            self.PAGE_COPY_NOEXEC,
            self.PAGE_COPY_NOEXEC,
            self.PAGE_READONLY,
            self.PAGE_READONLY,
            self.PAGE_COPY,
            self.PAGE_COPY,
        )
        shared = (
            self.PAGE_NONE,
            self.PAGE_READONLY_NOEXEC,
            self.PAGE_SHARED_NOEXEC,
            self.PAGE_SHARED_NOEXEC,
            self.PAGE_READONLY,
            self.PAGE_READONLY,
            self.PAGE_SHARED,
            self.PAGE_SHARED,
        )
        self.protection_map = private + shared
        table = self.table_formats[0]
        self._table_mask = table.mask("table_paddr_shr11")
        self._size_shift = size_shift
        #: bytes mapped by a TTE, by (size code, sz32mb); 32M and 256M are Panther's
        self.tte_sizes = {
            (0, 0): 8 << 10,
            (1, 0): 64 << 10,
            (2, 0): 512 << 10,
            (3, 0): 4 << 20,
            (0, 1): 32 << 20,
            (1, 1): 256 << 20,
        }
        self._sz32mb_shift = pte.fields["sz32mb"].shift

    # pte operations (include/asm-sparc64/pgtable.h names) ----------------------------------------
    def pte_pfn(self, pte: int) -> int:
        return (pte & self._PAGE_PADDR) >> PAGE_SHIFT

    def pfn_pte(self, pfn: int, prot: int) -> int:
        return (pfn << PAGE_SHIFT) | prot | self._PAGE_SZBITS

    def pte_none(self, pte: int) -> bool:
        return pte == 0

    def pte_present(self, pte: int) -> bool:
        return bool(pte & self._PAGE_PRESENT)

    def pte_write(self, pte: int) -> bool:
        return bool(pte & self._PAGE_WRITE)

    def pte_dirty(self, pte: int) -> bool:
        return bool(pte & self._PAGE_MODIFIED)

    def pte_young(self, pte: int) -> bool:
        return bool(pte & self._PAGE_ACCESSED)

    def pte_file(self, pte: int) -> bool:
        return bool(pte & self._PAGE_FILE)

    def pte_wrprotect(self, pte: int) -> int:
        return pte & ~(self._PAGE_WRITE | self._PAGE_W)

    def pte_mkwrite(self, pte: int) -> int:
        """Only the software bit: W comes with pte_mkdirty, so the first store traps."""
        return pte | self._PAGE_WRITE

    def pte_mkclean(self, pte: int) -> int:
        return pte & ~(self._PAGE_MODIFIED | self._PAGE_W)

    def pte_mkdirty(self, pte: int) -> int:
        return pte | self._PAGE_MODIFIED | self._PAGE_W

    def pte_mkold(self, pte: int) -> int:
        """Clears ACCESSED and bit 63 (``(pte << 1) >> 1``), so the next access traps."""
        return pte & ~(self._PAGE_ACCESSED | self._PAGE_VALID)

    def pte_mkyoung(self, pte: int) -> int:
        return pte | self._PAGE_ACCESSED | self._PAGE_R

    def pte_modify(self, pte: int, prot: int) -> int:
        """Keep the physical address, MODIFIED, ACCESSED, the cache and side-effect bits,
        PRESENT and _PAGE_SZBITS; the rest comes from ``prot``. _PAGE_SZBITS is the base page
        size (0 for 8K), so an mprotect turns a large I/O TTE into an 8K one."""
        keep = self._PAGE_CHG_MASK
        return (pte & keep) | (prot & ~keep)

    def pgprot_noncached(self, prot: int) -> int:
        """Clear virtual and physical cachability, set the side-effect bit."""
        return (prot & ~self._PAGE_CACHE) | self._PAGE_E

    def mk_pte_io(self, page: int, prot: int, space: int) -> int:
        """mk_pte_io(page, prot, space): an uncached side-effect pte, space in PA bits 32+."""
        pte = (page | prot | self._PAGE_E) & ~self._PAGE_CACHE
        return pte | (space << IOSPACE_PADDR_SHIFT)

    def tte_size(self, pte: int) -> int:
        """Bytes the TLB maps with this TTE (8K, 64K, 512K, 4M; Panther's 32M and 256M)."""
        code = ((pte >> self._size_shift) & 3, (pte >> self._sz32mb_shift) & 1)
        return self.tte_sizes.get(code, self.tte_sizes[(code[0], 0)])

    # what the MMU itself does ------------------------------------------------------------------
    def pte_hw_access_ok(self, pte: int, write: bool) -> bool:
        """A TLB miss loads the TTE only when VALID is set; a user access to a privileged (P)
        page traps; a store needs W. Nothing else is looked at by the hardware."""
        if not pte & self._PAGE_VALID or pte & self._PAGE_P:
            return False
        return not write or bool(pte & self._PAGE_W)

    def pte_hw_update(self, pte: int, write: bool) -> int:
        """The sun4u MMU sets no bits: referenced and modified are kept by the fault path."""
        return pte

    def hw_leaf_paddr(self, level: int, entry: int, addr: int) -> int:
        """A large TTE maps its whole size-aligned VA page to the size-aligned address in it.

        The address bits below the TTE's size are taken from the VA (that the MMU ignores them
        in the TTE is an assumption, kernel-reference §9 item 9). So a 4M run written before
        the rc4 fix, with the same TTE in every 8K slot, still reaches the right bytes.
        """
        size = self.tte_size(entry)
        return (entry & self._PAGE_PADDR & ~(size - 1)) | (addr & (size - 1))

    # upper levels (pgd and pmd: 32-bit entries of paddr >> 11) -----------------------------------
    def mk_table_entry(self, level: int, paddr: int) -> int:
        """pmd_set / pud_set: ``__pa(table) >> 11``."""
        value = paddr >> TABLE_PADDR_SHIFT
        if paddr & ((1 << TABLE_PADDR_SHIFT) - 1) or value & ~self._table_mask:
            raise KernelBug(f"table at {paddr:#x} cannot be stored in a 32-bit sparc64 entry")
        return value

    def table_entry_paddr(self, level: int, entry: int) -> int:
        return (entry & self._table_mask) << TABLE_PADDR_SHIFT

    def table_entry_present(self, level: int, entry: int) -> bool:
        """pmd_present / pud_present: any nonzero value."""
        return entry != 0

    def table_entry_leaf(self, level: int, entry: int) -> bool:
        """sun4u maps large pages with TTE size bits in the ptes, never from a pmd or pgd."""
        return False

    def table_entry_bad(self, level: int, entry: int) -> bool:
        """pmd_bad / pud_bad are ``(0)``."""
        return False

    def leaf_paddr(self, level: int, entry: int) -> int:
        return entry & self._PAGE_PADDR if level == len(self.levels) - 1 else 0

    def option_defaults(self, rules: KernelRules) -> dict[str, object]:
        """Before the seed there was no VM_PFNMAP to convert sparc's I/O remapping to, so
        neither the rc3 follow-up nor rc4's fix of it can be there."""
        if rules.pfnmap_flag_name == "VM_UNPAGED":
            return {"sparc64_iomap_followup": False, "sparc64_iomap_rc4_fix": False}
        return {}

    def io_remap_pfn_range(self, vma: VmArea, addr: int, pfn: int, size: int, prot: int) -> int:
        return io_remap_pfn_range(vma, addr, pfn, size, prot)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["tte_sizes"] = sorted(set(self.tte_sizes.values()))
        return info


@hookimpl
def pfnmap_arches() -> list[Arch]:
    return [Sparc64()]


# io_remap_pfn_range (arch/sparc64/mm/generic.c) -------------------------------------------------

#: the ``arch_options`` keys this plugin reads, with what each selects
OPTIONS = {
    "sparc64_iomap_followup": 'the rc3 "sparc: convert IO remapping to VM_PFNMAP" (vm_pgoff)',
    "sparc64_iomap_rc4_fix": 'the rc4 "[SPARC64]: Fix >8K I/O mappings." (per-8K addresses)',
}


def iomap_options(machine: Machine) -> tuple[bool, bool]:
    """(follow-up, rc4 fix) from ``machine.arch_options``; unknown sparc64 keys are refused."""
    opts = machine.arch_options
    unknown = sorted(k for k in opts if k.startswith(NAME + "_") and k not in OPTIONS)
    if unknown:
        raise ValueError(f"unknown sparc64 arch option(s) {unknown}; known: {sorted(OPTIONS)}")
    for key in OPTIONS:
        if key in opts and not isinstance(opts[key], bool):
            raise TypeError(f"arch option {key} must be True or False, not {opts[key]!r}")
    followup = opts.get("sparc64_iomap_followup", True)
    return followup, opts.get("sparc64_iomap_rc4_fix", followup)


def io_pte_values(
    arch: Sparc64, addr: int, size: int, offset: int, space: int, rc4_fix: bool = True
) -> list[int]:
    """The ptes io_remap_pte_range writes for ``[addr, addr + size)``, one per 8 KiB page.

    Per pmd, a run starts at each page: 4M if the VA and the offset (bit 0 ignored) are 4M
    aligned and 4M remain before the end or the pmd boundary, else 512K under the same three
    conditions, else 64K (VA and offset 64K aligned, 64K remaining), else 8K; the run's size
    bits go into its prot. Every 8K slot of a run gets a pte; with ``rc4_fix`` each one's
    physical address is the previous one's plus PAGE_SIZE, without it all repeat the run's
    base. ``size`` is compared unrounded, as the kernel compares ``end``.
    """
    offset &= ~1  # the write-combine hack bit
    prot = arch.pg_iobits
    step = PAGE_SIZE if rc4_fix else 0
    end = addr + size
    out: list[int] = []
    a = addr
    while a < end:
        pmd_end = addr_end(a, PMD_SIZE, end)
        while a < pmd_end:
            run, szbits = PAGE_SIZE, 0
            if not a & 0xFFFF:
                if not a & 0x3FFFFF and not offset & 0x3FFFFE and pmd_end >= a + 0x400000:
                    run, szbits = 0x400000, arch._PAGE_SZ4MB
                elif not a & 0x7FFFF and not offset & 0x7FFFE and pmd_end >= a + 0x80000:
                    run, szbits = 0x80000, arch._PAGE_SZ512K
                elif not offset & 0xFFFE and pmd_end >= a + 0x10000:
                    run, szbits = 0x10000, arch._PAGE_SZ64K
            entry = arch.mk_pte_io(offset, prot | szbits, space)
            out.extend(entry + k * step for k in range(run >> PAGE_SHIFT))
            a += run
            offset += run
    return out


def _pte_chunks(addr: int, end: int):
    """(address, first index, count) for each pte table ``[addr, end)`` touches."""
    while addr < end:
        nxt = addr_end(addr, PMD_SIZE, end)
        yield addr, (addr >> PAGE_SHIFT) & ((1 << PTE_BITS) - 1), (nxt - addr) >> PAGE_SHIFT
        addr = nxt


def io_remap_pfn_range(vma: VmArea, addr: int, pfn: int, size: int, prot: int) -> int:
    """io_remap_pfn_range(vma, from, pfn, size, prot) of sparc64, 2.6.15 with the follow-ups.

    ``space = GET_IOSPACE(pfn)``, ``offset = GET_PFN(pfn) << PAGE_SHIFT``, ``phys_base =
    offset | space << 32``. The vma gains VM_IO|VM_RESERVED|VM_PFNMAP and ``vm_pgoff =
    phys_base >> PAGE_SHIFT`` (unconditionally: no COW or whole-vma check). ``prot`` is
    ignored: every pte gets ``pg_iobits`` (valid, present, dirty, writable, W, accessed,
    readable, side effect) through mk_pte_io, which also clears the cacheable bits, whatever
    the vma's protection. The arch options select the pre-follow-up behaviour (module
    docstring). Nothing is refcounted and no rss changes.

    Where pfnmap differs: an unaligned ``addr`` or a size of 0 is EINVAL, a range that leaves
    the 43-bit physical address space (or, for a nonzero space, its 4 GiB window, where the
    kernel's OR would alias) is EINVAL, ``BUG_ON(!pte_none)`` is checked for every target pte
    and the tables are allocated before anything is written or the vma changed, so a failure
    leaves nothing half-mapped. The cache and TLB flushes are not modelled, nor the
    io_remap_pud_range bug that tests ``pud`` instead of ``pmd`` after pmd_alloc.
    """
    mm = vma.vm_mm
    machine = mm.machine
    arch = machine.arch
    followup, rc4_fix = iomap_options(machine)
    if pfn < 0:
        raise KernelError(errno.EINVAL, f"negative pfn {pfn:#x}")
    space = arch.get_iospace(pfn)
    offset = arch.get_pfn(pfn) << PAGE_SHIFT
    phys_base = offset | (space << IOSPACE_PADDR_SHIFT)
    if addr & (PAGE_SIZE - 1):
        raise KernelError(errno.EINVAL, f"io_remap_pfn_range: address {addr:#x} is not aligned")
    if size <= 0:
        raise KernelError(errno.EINVAL, f"io_remap_pfn_range: size {size:#x}")
    end = addr + ((size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
    length = end - addr
    if phys_base + length > 1 << PHYS_BITS:
        raise KernelError(
            errno.EINVAL,
            f"I/O range {phys_base:#x}+{length:#x} (space {space}) exceeds the "
            f"{PHYS_BITS}-bit physical address field of the TTE",
        )
    if space and offset + length > 1 << IOSPACE_PADDR_SHIFT:
        raise KernelError(
            errno.EINVAL,
            f"I/O range {offset:#x}+{length:#x} leaves the 4 GiB window of I/O space {space}",
        )
    if addr < vma.vm_start or end > vma.vm_end:
        raise KernelBug(f"io_remap_pfn_range: [{addr:#x}, {end:#x}) is outside {vma!r}")
    tables = machine.tables
    last = tables.last
    chunks = list(_pte_chunks(addr, end))
    for a, first, count in chunks:
        table = walk_to_table(mm, a, alloc=False)
        if table is None:
            continue
        view = tables.table_view(last, table)[first : first + count]
        if view.any():
            k = int(np.flatnonzero(view)[0])
            raise KernelBug(f"io_remap_pte_range: pte at {a + k * PAGE_SIZE:#x} is not none")
    values = io_pte_values(arch, addr, size, offset, space, rc4_fix)
    table_of = [walk_to_table(mm, a, alloc=True) for a, _, _ in chunks]
    # See comment in mm/memory.c remap_pfn_range (before the conversion: VM_UNPAGED, the
    # same bit, and no vm_pgoff)
    vma.vm_flags |= VM_IO | VM_RESERVED | VM_PFNMAP
    if followup:
        vma.vm_pgoff = phys_base >> PAGE_SHIFT
    pos = 0
    for (_, first, count), table in zip(chunks, table_of, strict=True):
        view = tables.table_view(last, table)
        view[first : first + count] = np.array(values[pos : pos + count], dtype=np.uint64)
        pos += count
    return 0
