"""Kernel and user ABI constants of the 2.6.15 era (include/linux/mm.h at the seed, mman.h), and
the vm_flags of Linux 6.1 whose bits the 2.6.15 names do not cover (:data:`VM_FLAG_NAMES_6_1`)."""

from __future__ import annotations

# vm_flags, include/linux/mm.h at 6aab341e (the seed)
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_GROWSUP = 0x00000200
VM_SHM = 0x00000000
VM_PFNMAP = 0x00000400  # was VM_UNPAGED before the seed, VM_SHM before that
VM_DENYWRITE = 0x00000800
VM_EXECUTABLE = 0x00001000
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_SEQ_READ = 0x00008000
VM_RAND_READ = 0x00010000
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_RESERVED = 0x00080000
VM_ACCOUNT = 0x00100000
VM_HUGETLB = 0x00400000
VM_NONLINEAR = 0x00800000
VM_MAPPED_COPY = 0x01000000
VM_INSERTPAGE = 0x02000000  # 2.6.15-rc6 and later
VM_MIXEDMAP = 0x10000000  # 2.6.26 and later: struct-page and raw pfns, COW-able

VM_FLAG_NAMES: dict[int, str] = {
    value: name
    for name, value in list(globals().items())
    if name.startswith("VM_") and isinstance(value, int) and value
}


def vm_flag_names(flags: int, names: dict[int, str] | None = None) -> list[str]:
    """Names of the set vm_flags bits, lowest bit first (``names``: another era's table, such
    as :data:`VM_FLAG_NAMES_6_1`; default the 2.6.15 one)."""
    table = VM_FLAG_NAMES if names is None else names
    top = max(32, flags.bit_length())
    return [table.get(1 << b, f"0x{1 << b:x}") for b in range(top) if flags & (1 << b)]


# vm_flags of include/linux/mm.h in 6.1 that 2.6.15 did not have. Several reuse bits whose
# 2.6.15 names are above (VM_EXECUTABLE's bit is VM_UFFD_WP, VM_RESERVED's VM_LOCKONFAULT,
# VM_NONLINEAR's VM_SYNC, VM_MAPPED_COPY's VM_ARCH_1, VM_INSERTPAGE's VM_WIPEONFORK), so they
# stay out of VM_FLAG_NAMES and name bits only in VM_FLAG_NAMES_6_1.
VM_UFFD_MISSING = 0x00000200  # 4.3; x86 has no VM_GROWSUP
VM_UFFD_WP = 0x00001000  # 4.3 (VM_EXECUTABLE's old bit)
VM_LOCKONFAULT = 0x00080000  # 4.4 (VM_RESERVED's old bit; VM_RESERVED went in 3.7)
VM_NORESERVE = 0x00200000
VM_SYNC = 0x00800000  # 4.15, MAP_SYNC (VM_NONLINEAR's old bit)
VM_ARCH_1 = 0x01000000  # x86: VM_PAT, set by track_pfn_remap for a whole-vma remap
VM_WIPEONFORK = 0x02000000  # 4.14 (VM_INSERTPAGE's old bit; VM_INSERTPAGE went in 3.7)
VM_DONTDUMP = 0x04000000  # 3.7, replacing VM_RESERVED in remap_pfn_range
VM_SOFTDIRTY = 0x08000000  # 3.11, CONFIG_MEM_SOFT_DIRTY
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
#: x86-64 protection keys: VM_HIGH_ARCH_0..3 (bits 32..35), shown by smaps as ProtectionKey
VM_PKEY_BIT0 = 1 << 32
VM_PKEY_BIT1 = 1 << 33
VM_PKEY_BIT2 = 1 << 34
VM_PKEY_BIT3 = 1 << 35

#: vm_flags bit -> name in Linux 6.1 (x86-64): the 2.6.15 names of bits 6.1 still gives the
#: same meaning, and the 6.1 names above (VM_DENYWRITE, VM_EXECUTABLE, VM_RESERVED,
#: VM_NONLINEAR, VM_MAPPED_COPY and VM_INSERTPAGE are gone)
VM_FLAG_NAMES_6_1: dict[int, str] = {
    value: name
    for value, name in VM_FLAG_NAMES.items()
    if name
    not in (
        "VM_DENYWRITE",
        "VM_EXECUTABLE",
        "VM_RESERVED",
        "VM_NONLINEAR",
        "VM_MAPPED_COPY",
        "VM_INSERTPAGE",
        "VM_GROWSUP",
    )
}
VM_FLAG_NAMES_6_1.update(
    (value, name)
    for name, value in (
        ("VM_UFFD_MISSING", VM_UFFD_MISSING),
        ("VM_UFFD_WP", VM_UFFD_WP),
        ("VM_LOCKONFAULT", VM_LOCKONFAULT),
        ("VM_NORESERVE", VM_NORESERVE),
        ("VM_SYNC", VM_SYNC),
        ("VM_ARCH_1", VM_ARCH_1),
        ("VM_WIPEONFORK", VM_WIPEONFORK),
        ("VM_DONTDUMP", VM_DONTDUMP),
        ("VM_SOFTDIRTY", VM_SOFTDIRTY),
        ("VM_HUGEPAGE", VM_HUGEPAGE),
        ("VM_NOHUGEPAGE", VM_NOHUGEPAGE),
        ("VM_MERGEABLE", VM_MERGEABLE),
        ("VM_PKEY_BIT0", VM_PKEY_BIT0),
        ("VM_PKEY_BIT1", VM_PKEY_BIT1),
        ("VM_PKEY_BIT2", VM_PKEY_BIT2),
        ("VM_PKEY_BIT3", VM_PKEY_BIT3),
    )
)


def is_cow_mapping(flags: int) -> bool:
    """A private mapping that could ever become writable (2.6.15-rc6 names this test)."""
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


# follow_page flags
FOLL_WRITE = 0x01
FOLL_TOUCH = 0x02
FOLL_GET = 0x04
FOLL_ANON = 0x08

# fault results
VM_FAULT_OOM = 0x00
VM_FAULT_SIGBUS = 0x01
VM_FAULT_MINOR = 0x02
VM_FAULT_MAJOR = 0x03
VM_FAULT_WRITE = 0x10

VM_FAULT_NAMES = {
    VM_FAULT_OOM: "OOM",
    VM_FAULT_SIGBUS: "SIGBUS",
    VM_FAULT_MINOR: "MINOR",
    VM_FAULT_MAJOR: "MAJOR",
}

# mmap(2) ABI, named as in Python's mmap module
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8  # accepted by mprotect, no effect here (as on x86)
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_TYPE = 0x0F  # the bits that say shared or private; any other value there is EINVAL
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_ANON = MAP_ANONYMOUS

# open(2) access modes
O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_SYNC = 0o4010000
O_ACCMODE = 3

# struct page flags (a subset of include/linux/page-flags.h, same names)
PG_locked = 1 << 0
PG_referenced = 1 << 2
PG_uptodate = 1 << 3
PG_dirty = 1 << 4
PG_lru = 1 << 5
PG_active = 1 << 6
PG_reserved = 1 << 11
# pfnmap's own marks, for inspection: the kernel of the era keeps these facts elsewhere
PG_anon = 1 << 20  # kernel: PAGE_MAPPING_ANON in page->mapping
PG_pgtable = 1 << 21  # kernel: counted in nr_page_table_pages

PAGE_FLAG_NAMES = {
    PG_locked: "locked",
    PG_referenced: "referenced",
    PG_uptodate: "uptodate",
    PG_dirty: "dirty",
    PG_lru: "lru",
    PG_active: "active",
    PG_reserved: "reserved",
    PG_anon: "anon",
    PG_pgtable: "pgtable",
}

# madvise(2) advice values (include/asm-generic/mman.h; the same numbers on every arch pfnmap has)
MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8  # 4.5
MADV_REMOVE = 9  # 2.6.16
MADV_DONTFORK = 10  # 2.6.16
MADV_DOFORK = 11  # 2.6.16
MADV_WIPEONFORK = 18  # 4.14
MADV_COLD = 20  # 5.4
MADV_PAGEOUT = 21  # 5.4
MADV_POPULATE_READ = 22  # 5.14
MADV_POPULATE_WRITE = 23  # 5.14
MADV_DONTNEED_LOCKED = 24  # 5.18

MADV_NAMES: dict[int, str] = {
    value: name
    for name, value in list(globals().items())
    if name.startswith("MADV_") and isinstance(value, int)
}

# mremap(2) flags (include/linux/mman.h)
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
