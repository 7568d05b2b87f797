"""Arch descriptions: paging geometry, construct entry layouts, derived masks, pte operations.

An arch plugin contributes instances of :class:`Arch` subclasses. The construct layouts are the
single source of truth for where each bit lives; :func:`derive_fields` turns a layout into plain
``(shift, width)`` pairs once, at construction, and every hot path works with those ints. The
construct objects are only used where a person looks at an entry (decode into named fields) or
builds one from names.

Linux's generic code thinks in four levels, pgd -> pud -> pmd -> pte, and folds the levels a
machine lacks. pfnmap describes only the levels the hardware has, top first, and the core walks
however many there are.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import construct as cs
import numpy as np

from pfnmap.errors import KernelError, LayoutError


@dataclass(frozen=True)
class Field:
    """One named bit field of an entry, as derived from its construct layout."""

    name: str
    shift: int
    width: int

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift

    def get(self, value: int) -> int:
        return (value >> self.shift) & ((1 << self.width) - 1)


def _unwrap_struct(layout: cs.Construct) -> cs.Struct:
    """Find the Struct inside BitStruct / ByteSwapped wrappers."""
    node = layout
    seen = 0
    while not isinstance(node, cs.Struct):
        node = getattr(node, "subcon", None)
        seen += 1
        if node is None or seen > 8:
            raise LayoutError("layout is not a BitStruct (optionally ByteSwapped)")
    return node


def derive_fields(layout: cs.Construct, width_bits: int) -> dict[str, Field]:
    """Derive ``name -> Field`` from a BitStruct whose fields are listed from the top bit down.

    Every bit must belong to a named field (an anonymous ``Padding`` would drop bits on
    rebuild, so it is refused) and the widths must add up to exactly ``width_bits``.
    """
    struct = _unwrap_struct(layout)
    fields: dict[str, Field] = {}
    pos = width_bits
    for sub in struct.subcons:
        name = getattr(sub, "name", None)
        if not name:
            raise LayoutError("a field without a name (anonymous padding drops bits)")
        try:
            width = sub.sizeof()
        except cs.SizeofError as exc:
            raise LayoutError(f"field {name!r} has no fixed width") from exc
        if width <= 0:
            raise LayoutError(f"field {name!r} has width {width}")
        if name in fields:
            raise LayoutError(f"field {name!r} is named twice")
        pos -= width
        if pos < 0:
            raise LayoutError(
                f"fields add up to more than the {width_bits}-bit entry (overlap at {name!r})"
            )
        fields[name] = Field(name, pos, width)
    if pos != 0:
        raise LayoutError(f"bits 0..{pos - 1} of the {width_bits}-bit entry belong to no field")
    return fields


@dataclass(frozen=True)
class EntryFormat:
    """One entry format (a pte, a table pointer, a large-page leaf) with its derived fields."""

    name: str
    layout: cs.Construct
    width_bits: int
    byteorder: str
    fields: dict[str, Field]

    @classmethod
    def from_layout(
        cls, name: str, layout: cs.Construct, entry_bytes: int, byteorder: str
    ) -> EntryFormat:
        try:
            fields = derive_fields(layout, entry_bytes * 8)
        except LayoutError as exc:
            raise LayoutError(f"layout {name!r}: {exc}") from None
        return cls(name, layout, entry_bytes * 8, byteorder, fields)

    def mask(self, name: str) -> int:
        return self.fields[name].mask

    def decode(self, value: int) -> dict[str, Any]:
        """Parse ``value`` with construct; returns the named fields (no construct internals)."""
        raw = value.to_bytes(self.width_bits // 8, self.byteorder)
        parsed = self.layout.parse(raw)
        return {k: parsed[k] for k in self.fields}

    def encode(self, **values: Any) -> int:
        """Build an entry from named fields with construct (missing fields are 0)."""
        full = {k: values.get(k, 0) for k in self.fields}
        unknown = set(values) - set(self.fields)
        if unknown:
            raise LayoutError(f"layout {self.name!r} has no field(s) {sorted(unknown)}")
        return int.from_bytes(self.layout.build(full), self.byteorder)

    def decode_fast(self, value: int) -> dict[str, int]:
        """The same split as :meth:`decode`, from the derived masks (ints only)."""
        return {f.name: f.get(value) for f in self.fields.values()}


def standard_protection_map(
    none: int,
    readonly: int,
    copy: int,
    shared: int,
    readonly_exec: int,
    copy_exec: int,
    shared_exec: int,
) -> tuple[int, ...]:
    """``protection_map`` from an arch's named protections, in mm/mmap.c's order: index
    ``vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED)``, __P000..__P111 then __S000..__S111.
    A private writable mapping gets ``copy`` (read-only until COW), a shared one ``shared``."""
    private = (none, readonly, copy, copy, readonly_exec, readonly_exec, copy_exec, copy_exec)
    public = (
        none,
        readonly,
        shared,
        shared,
        readonly_exec,
        readonly_exec,
        shared_exec,
        shared_exec,
    )
    return private + public


@dataclass(frozen=True)
class Level:
    """One hardware page-table level.

    ``shift`` is the lowest VA bit this level's index covers and ``bits`` how many index bits it
    has, so the table holds ``1 << bits`` entries of ``entry_bytes`` each. ``table`` is the
    layout of an entry that points to the next table (None for the last level); ``leaf`` is the
    layout of an entry that maps memory at this level (the pte for the last level, a large page
    above it, None where the level cannot map).
    """

    name: str
    shift: int
    bits: int
    entry_bytes: int
    table: cs.Construct | None
    leaf: cs.Construct | None
    leaf_name: str = ""

    @property
    def entries(self) -> int:
        return 1 << self.bits

    @property
    def span(self) -> int:
        """Bytes of VA one entry of this level covers."""
        return 1 << self.shift


class Arch:
    """Base class of every arch description.

    Subclasses set the class attributes below and implement the pte operations the kernel asks
    of an arch (each named as in the kernel's pgtable headers). Entries are plain ints; the
    arch's byte order and entry width say how they are stored in RAM.
    """

    #: name users type (``--arch x86-64``)
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    page_shift: ClassVar[int] = 12
    byteorder: ClassVar[str] = "little"
    #: VA bits translated by the tables
    va_bits: ClassVar[int] = 0
    #: whether VAs above ``va_bits`` are sign extensions (x86-64 canonical addresses)
    canonical: ClassVar[bool] = False
    #: physical address width the kernel of the era supports for this mode
    phys_bits: ClassVar[int] = 0
    #: top of the user address space (TASK_SIZE)
    task_size: ClassVar[int] = 0
    #: BITS_PER_LONG of the kernel: the width of a syscall's ``unsigned long`` arguments, in
    #: which the kernel's overflow checks (PAGE_ALIGN wrapping to 0, ``end <= start``) happen
    bits_per_long: ClassVar[int] = 64
    levels: ClassVar[tuple[Level, ...]] = ()
    #: whether pfns may carry an I/O-space number (sparc64); x86 has none
    has_io_spaces: ClassVar[bool] = False
    #: where MK_IOSPACE_PFN puts the space number in a pfn (sparc64: BITS_PER_LONG - 4)
    iospace_shift: ClassVar[int] = 60
    #: the pte bit the arch gives pte_special() (_PAGE_SPECIAL, from 2.6.26's "mm: introduce
    #: pte_special pte bit"), or 0 where it spares none: then the kernel keeps vm_normal_page's
    #: VM_PFNMAP / VM_MIXEDMAP rules. Read only by eras whose rules have ``pte_special``.
    special_mask: int = 0
    #: the pte bit of pte_devmap() (x86-64's _PAGE_DEVMAP, bit 58, in the eras that have it),
    #: or 0: read by eras whose rules have ``pte_devmap``
    devmap_mask: int = 0
    #: ELF ``e_machine`` of this arch's cores (EM_386 = 3, EM_SPARCV9 = 43, EM_X86_64 = 62),
    #: 0 (EM_NONE) where none is defined; the dump decoder checks a core against it
    elf_machine: ClassVar[int] = 0
    #: the ELF class a core of this arch gets by default (1 = ELFCLASS32, 2 = ELFCLASS64), as
    #: QEMU's dump-guest-memory picks it (an i386 guest: ELFCLASS32 unless memory passes 4 GiB)
    elf_class: ClassVar[int] = 2
    #: the paging mode QEMU's monitor ``info tlb``/``info mem`` prints this arch as ("32",
    #: "pae32", "la48", "la57"), or None where QEMU's monitor walks no such tables
    qemu_monitor_mode: ClassVar[str | None] = None
    #: what ``uname -m`` prints on this arch ("x86_64", "i686", "sparc64"): kdump headers
    #: record it (``utsname.machine``), and the dump reader matches it; "" where unknown
    uname_machine: ClassVar[str] = ""
    #: other ``utsname.machine`` values a dump of this mode may carry ("i386" ... "i586" next
    #: to "i686"; "x86_64" too, which an x86-64 QEMU writes for a 32-bit guest)
    uname_aliases: ClassVar[tuple[str, ...]] = ()
    #: the size of the kernel's ``struct elf_prstatus`` on this arch, what the NT_PRSTATUS
    #: ("CORE") note of each CPU in its cores holds (x86-64: 336, i386: 144; QEMU writes the
    #: same layouts), so a dump without an ELF machine (kdump) still says it; 0 where unknown
    elf_prstatus_size: ClassVar[int] = 0

    #: the names of the pte operations every arch must provide
    PTE_OPERATIONS: ClassVar[tuple[str, ...]] = (
        "pte_pfn",
        "pfn_pte",
        "pte_none",
        "pte_present",
        "pte_write",
        "pte_dirty",
        "pte_young",
        "pte_file",
        "pte_wrprotect",
        "pte_mkwrite",
        "pte_mkclean",
        "pte_mkdirty",
        "pte_mkold",
        "pte_mkyoung",
        "pte_modify",
        "pgprot_noncached",
        "pte_hw_access_ok",
        "pte_hw_update",
        "mk_table_entry",
        "table_entry_paddr",
        "table_entry_present",
        "table_entry_leaf",
        "table_entry_bad",
        "leaf_paddr",
    )

    def __init__(self) -> None:
        self.page_size = 1 << self.page_shift
        self.page_mask = ~(self.page_size - 1)
        self.max_pfn = (1 << (self.phys_bits - self.page_shift)) - 1
        self.formats: dict[str, EntryFormat] = {}
        self.table_formats: list[EntryFormat | None] = []
        self.leaf_formats: list[EntryFormat | None] = []
        for level in self.levels:
            table = leaf = None
            if level.table is not None:
                table = self._entry_format(f"{level.name}-table", level.table, level.entry_bytes)
                self.formats[table.name] = table
            if level.leaf is not None:
                leaf = self._entry_format(
                    level.leaf_name or level.name, level.leaf, level.entry_bytes
                )
                self.formats[leaf.name] = leaf
            self.table_formats.append(table)
            self.leaf_formats.append(leaf)
        self.pte_format = self.leaf_formats[-1] if self.levels else None
        #: protection_map[vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED)], as __P000..__S111
        self.protection_map: tuple[int, ...] = ()

    # pte_special (2.6.26; a no-op on an arch without a special bit, as in the kernel) ------
    def pte_special(self, pte: int) -> bool:
        return bool(pte & self.special_mask)

    def pte_mkspecial(self, pte: int) -> int:
        return pte | self.special_mask

    def pte_devmap(self, pte: int) -> bool:
        return bool(pte & self.devmap_mask)

    # the era's headers ------------------------------------------------------------------------
    def for_rules(self, rules: Any) -> Arch:
        """This arch as the kernel of ``rules`` (a :class:`pfnmap.kernel.rules.KernelRules`)
        describes it: an arch whose pgtable headers changed between eras (x86's software bits
        and PROT_NONE encoding in 6.1) returns a variant with that era's layouts and
        operations; the default is the arch itself. The Machine and the dump decoder use
        what this returns."""
        return self

    def leaves_frame_paddr(self, level: int, raw: np.ndarray, paddr: np.ndarray) -> np.ndarray:
        """The physical addresses the kernel's pte_pfn()/pmd_pfn() read for leaf entries
        ``raw`` whose address fields give ``paddr`` (from ``leaf_paddr``). The default is
        ``paddr``; an arch that stores some entries' frames encoded (x86's L1TF inversion of
        PROT_NONE ptes, 4.19 on) returns the decoded addresses, in ``paddr`` itself."""
        return paddr

    def leaf_kind(self, level: int, entry: int) -> str | None:
        """A name for a leaf entry that is present to the kernel but not to the MMU
        (``"protnone"`` for x86's PROT_NONE ptes), or None."""
        return None

    # whole-table forms of the pte operations ------------------------------------------------
    # The bulk paths (pfnmap.kernel.fastpath) work on a pte table at a time, as numpy uint64 arrays
    # in native byte order. The defaults are built once per arch from the scalar operations above by
    # probing (pfnmap.arch.vector: a mask, or "any/all of these bits"; an operation that fits
    # neither form is called per entry), so an arch needs to override these only to be faster.
    def ptes_present(self, ptes: np.ndarray) -> np.ndarray:
        """pte_present() of each pte: a bool array."""
        return self._pte_vector("pte_present")(ptes)

    def ptes_special(self, ptes: np.ndarray) -> np.ndarray:
        """pte_special() of each pte: a bool array."""
        return self._pte_vector("pte_special")(ptes)

    def ptes_pfn(self, ptes: np.ndarray) -> np.ndarray:
        """pte_pfn() of each pte: a uint64 array."""
        return self._pte_vector("pte_pfn")(ptes)

    def ptes_wrprotect(self, ptes: np.ndarray) -> np.ndarray:
        """pte_wrprotect() of each pte: a new uint64 array."""
        return self._pte_vector("pte_wrprotect")(ptes)

    def ptes_mkclean(self, ptes: np.ndarray) -> np.ndarray:
        """pte_mkclean() of each pte: a new uint64 array."""
        return self._pte_vector("pte_mkclean")(ptes)

    def ptes_mkold(self, ptes: np.ndarray) -> np.ndarray:
        """pte_mkold() of each pte: a new uint64 array."""
        return self._pte_vector("pte_mkold")(ptes)

    def _pte_vector(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        cache: dict[str, Callable[[np.ndarray], np.ndarray]] = self.__dict__.setdefault(
            "_pte_vectors", {}
        )
        op = cache.get(name)
        if op is None:
            from pfnmap.arch.vector import pte_vector_op

            op = cache[name] = pte_vector_op(self, name)
        return op

    def _entry_format(self, name: str, layout: cs.Construct, entry_bytes: int) -> EntryFormat:
        try:
            return EntryFormat.from_layout(name, layout, entry_bytes, self.byteorder)
        except LayoutError as exc:  # name the arch too: a plugin may contribute several
            raise LayoutError(f"arch {self.name or type(self).__name__!r}: {exc}") from None

    # geometry helpers -------------------------------------------------------------------
    @property
    def pte_level(self) -> Level:
        return self.levels[-1]

    def large_page_sizes(self) -> list[int]:
        return [lv.span for lv in self.levels[:-1] if lv.leaf is not None]

    def index(self, level: int, addr: int) -> int:
        lv = self.levels[level]
        return (addr >> lv.shift) & (lv.entries - 1)

    def va_valid(self, addr: int) -> bool:
        """Whether a user VA is below TASK_SIZE (and so canonical on 4/5-level x86)."""
        return 0 <= addr < self.task_size

    # I/O-space pfns (MK_IOSPACE_PFN, GET_IOSPACE, GET_PFN of the era's pgtable headers) ----
    def mk_iospace_pfn(self, space: int, pfn: int) -> int:
        """MK_IOSPACE_PFN(space, pfn): the pfn io_remap_pfn_range() takes for I/O space ``space``.

        On an arch with I/O spaces the space number goes in the pfn's top 4 bits. Elsewhere the
        kernel's macro is the identity and drops ``space``; pfnmap refuses a nonzero space there
        with EINVAL instead of silently mapping the wrong address.
        """
        if not self.has_io_spaces:
            if space:
                raise KernelError(
                    errno.EINVAL, f"{self.name} has no I/O spaces (asked for space {space})"
                )
            return pfn
        if not 0 <= space < 16:
            raise KernelError(errno.EINVAL, f"I/O space {space} does not fit in 4 bits")
        return pfn | (space << self.iospace_shift)

    def get_iospace(self, pfn: int) -> int:
        """GET_IOSPACE(pfn): the space number (always 0 on an arch without I/O spaces)."""
        return pfn >> self.iospace_shift if self.has_io_spaces else 0

    def get_pfn(self, pfn: int) -> int:
        """GET_PFN(pfn): the pfn without its space number (the identity without I/O spaces)."""
        return pfn & ((1 << self.iospace_shift) - 1) if self.has_io_spaces else pfn

    def hw_leaf_paddr(self, level: int, entry: int, addr: int) -> int:
        """The physical address the MMU reaches for ``addr`` through the leaf ``entry``.

        The default is the leaf's address plus the VA bits below the level's span. An arch
        whose last-level entries can carry their own page size (sparc64's large TTEs)
        overrides this.
        """
        return self.leaf_paddr(level, entry) | (addr & (self.levels[level].span - 1))

    def entry_struct_format(self, level: int) -> str:
        size = self.levels[level].entry_bytes
        return ("<" if self.byteorder == "little" else ">") + {4: "I", 8: "Q"}[size]

    def numpy_dtype(self, level: int) -> str:
        size = self.levels[level].entry_bytes
        return ("<" if self.byteorder == "little" else ">") + f"u{size}"

    def option_defaults(self, rules: Any) -> dict[str, object]:
        """Defaults for this arch's ``arch_options`` under an era's rules (a
        :class:`pfnmap.kernel.rules.KernelRules`): an arch whose own kernel code changed
        between eras says here what the era had. The options given to Machine win."""
        return {}

    def io_remap_pfn_range(self, vma: Any, addr: int, pfn: int, size: int, prot: int) -> Any:
        """The arch's own ``io_remap_pfn_range()``, or NotImplemented for the generic one
        (``#define io_remap_pfn_range remap_pfn_range``, every arch without I/O spaces). An arch
        that overrides it returns 0 or raises KernelError, as remap_pfn_range does."""
        return NotImplemented

    # what a dump says about this paging mode (pfnmap decode without --arch/--root) ----------
    def root_from_registers(
        self, registers: dict[str, int], elf_machine: int | None, word_bits: int | None
    ) -> int | None:
        """The physical address of the top table this arch's MMU walks for a dumped CPU whose
        control registers are ``registers`` (lower-case names: ``cr0``..``cr4``, ``efer``
        where the dump has it), or None when they select another paging mode or paging is
        off. ``elf_machine`` (an ELF core's e_machine) and ``word_bits`` (the word size a
        kdump header is written in) say what else the dump knows, or are None. The default
        knows no registers: None."""
        return None

    def root_from_vmcoreinfo(self, vmcoreinfo: dict[str, str], phys_base: int | None) -> int | None:
        """The physical address of the kernel's own top table (``swapper_pg_dir`` and its
        successors) from the dumped kernel's VMCOREINFO, when its keys say the kernel ran in
        this paging mode; else None (the default). ``phys_base`` is the kdump sub header's,
        when the dump has one."""
        return None

    # decoder facts (neutral defaults: an arch without them decodes as before) -----------------
    #: names of the registers a root may be given as (arm64: "ttbr0", "ttbr1"); see
    #: :meth:`root_from_register`
    root_registers: ClassVar[tuple[str, ...]] = ()
    #: the bit that marks a leaf as part of a contiguous-hint group (arm64's PTE_CONT), 0 if none
    contiguous_mask: int = 0

    def root_from_register(self, register: str, value: int) -> tuple[int, int]:
        """(table address, VA of the table's first entry) for a translation-table base register
        value: the register's other fields (ASID, CnP) stripped. ValueError for a register the
        arch lacks or a value with reserved bits set."""
        raise ValueError(f"{self.name} has no root register {register!r}")

    def contiguous_entries(self, level: int) -> int:
        """Entries in a contiguous-hint group of ``level``'s leaves (0: no such groups)."""
        return 0

    def contiguous_attr_mask(self, level: int) -> int:
        """The bits every leaf of a contiguous group must share (besides its address)."""
        return 0

    def reserved_encodings(self, level: int, raw: np.ndarray) -> tuple[np.ndarray, str] | None:
        """Which of a table's non-zero entries ``raw`` (uint64) use an encoding the MMU treats
        as a fault though the layout would decode them (arm64: a block descriptor at level 3
        or where the granule has no blocks), with the reason; None where there are none."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "page_size": self.page_size,
            "levels": [(lv.name, lv.entries, lv.entry_bytes, lv.span) for lv in self.levels],
            "large_pages": self.large_page_sizes(),
            "va_bits": self.va_bits,
            "phys_bits": self.phys_bits,
            "byteorder": self.byteorder,
        }

    def __repr__(self) -> str:
        return f"<Arch {self.name}>"
