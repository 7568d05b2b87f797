"""The kernel decisions that changed around the seed, in one place, and the eras that made them.

Every path in memory.c that an earlier or later kernel decided differently reads its choice from
a :class:`KernelRules` instead of hard-coding it. pfnmap models the seed (6aab341e, 2.6.15-rc3)
by default; :data:`ERAS` names four profiles (kernel-reference §7):

``unpaged``
    2.6.15-rc2/rc3 before the seed: ``VM_UNPAGED`` (the same bit, 0x400) and ``page_is_anon()``
    in the place vm_normal_page() later took (mm/memory.c at ee498ed7, kernel-reference §4).
``seed``
    Linus' "mm: re-architect the VM_UNPAGED logic" (6aab341e): :data:`SEED`, the default.
``2.6.15``
    2.6.15 final: the seed plus the rc4 and rc6 fixes.
``2.6.26``
    ``pte_special`` (7e675137) and ``VM_MIXEDMAP``, on top of 2.6.15's rules, and 2.6.24's
    anonymous read faults without the ZERO_PAGE.
``6.1``
    today's kernel (the Debian 12 one): the special-pte vm_normal_page with the zero page,
    devmap and print_bad_pte instead of VM_BUG_ON, the highest_memmap_pfn test, the zero page
    back on read faults (2.6.32) as a special pte, remap_pfn_range's 3.7 flags, vm_insert_page
    marking VM_MIXEDMAP, and x86's L1TF PROT_NONE inversion (4.19). docs/eras/v6_1.rst says
    what of 6.1's mm pfnmap does not model.

A later kernel is a ``replace(V6_1, name=..., release=..., <what changed>)`` and a line in
:data:`ERAS`; :func:`era_for_release` then picks it for a dump of that kernel.

Each field names the kernel function that reads it and the change that set its value. A
profile is data: the few functions that differ by era (vm_normal_page's rule, copy_one_pte's
order, do_wp_page's copy source) read these fields where the kernel made the decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

from pfnmap.errors import PfnmapError
from pfnmap.kernel.constants import (
    MADV_DOFORK,
    MADV_DONTFORK,
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    VM_DONTDUMP,
    VM_DONTEXPAND,
    VM_FLAG_NAMES,
    VM_FLAG_NAMES_6_1,
    VM_HUGETLB,
    VM_INSERTPAGE,
    VM_IO,
    VM_LOCKED,
    VM_MIXEDMAP,
    VM_NONLINEAR,
    VM_PFNMAP,
    VM_RESERVED,
    vm_flag_names,
)

#: VM_UNPAGED (2.6.15-rc3 before the seed) is the bit the seed renamed VM_PFNMAP
VM_UNPAGED = VM_PFNMAP

#: madvise_vma()'s advice values in 2.6.15 (mm/madvise.c of 2.6.15)
_MADV_2_6_15 = (MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED)

#: the values of :attr:`KernelRules.vm_normal_page_rule`
VM_NORMAL_PAGE_RULES = ("vm_pgoff", "page_is_anon")
#: the values of :attr:`KernelRules.bad_pfn_test`
BAD_PFN_TESTS = ("pfn_valid", "highest_memmap_pfn")
#: the values of :attr:`KernelRules.bad_pte_report`
BAD_PTE_REPORTS = ("2.6.15", "6.1")
#: the values of :attr:`KernelRules.vm_flag_names`: bit -> name tables of include/linux/mm.h
VM_FLAG_TABLES: dict[str, dict[int, str]] = {"2.6.15": VM_FLAG_NAMES, "6.1": VM_FLAG_NAMES_6_1}


@dataclass(frozen=True)
class KernelRules:
    """The decisions of one kernel, read by the mm paths that make them.

    The fields after ``do_no_page_bug_on_pfnmap`` default to the seed's values, so
    ``dataclasses.replace(SEED, ...)`` and a KernelRules built with the first seven fields keep
    meaning what they meant.
    """

    name: str
    #: vm_normal_page(), 2.6.15-rc6 "Allow arbitrary shared PFNMAP's": in a VM_PFNMAP vma that
    #: is not a COW mapping every pte is raw, whatever its pfn
    vm_normal_page_is_cow_test: bool
    #: remap_pfn_range(), 2.6.15-rc6: a COW mapping must be remapped in one call covering exactly
    #: [vm_start, vm_end) (else -EINVAL), and only then gets vm_pgoff = pfn
    remap_cow_whole_vma: bool
    #: get_user_pages() refuses vmas with any of these flags (seed: VM_IO; rc6, 1ff80389:
    #: VM_IO|VM_PFNMAP)
    gup_refused_flags: int
    #: cow_user_page(), 2.6.15-rc4 "cow_user_page: fix page alignment": copy from va & PAGE_MASK
    cow_copy_aligned: bool
    #: copy_page_range() copies ptes at fork for vmas with any of these flags (or an anon_vma)
    copy_forcing_flags: int
    #: do_no_page(), 2.6.15-rc4 "pfnmap: do_no_page BUG_ON again": BUG_ON(VM_PFNMAP)
    do_no_page_bug_on_pfnmap: bool
    #: vm_normal_page()'s decision: "vm_pgoff" (the seed's linear rule, 6aab341e) or
    #: "page_is_anon" (before the seed: pfn_valid, and in a VM_UNPAGED vma page_is_anon(),
    #: ee498ed7 "unpaged: anon in VM_UNPAGED")
    vm_normal_page_rule: str = "vm_pgoff"
    #: remap_pfn_range() records the first pfn in vm_pgoff (the seed); before it, vm_pgoff was
    #: left alone
    remap_sets_pgoff: bool = True
    #: copy_one_pte() before the seed: the page is looked up first and a pte without one is
    #: copied as it is (no COW write-protect, no mkclean, no mkold)
    copy_raw_pte_verbatim: bool = False
    #: do_wp_page() before the seed: an invalid pfn is print_bad_pte + VM_FAULT_OOM, and a raw
    #: pte with a valid pfn is copied from its struct page (not through the user address)
    wp_copy_from_struct_page: bool = False
    #: follow_page() before the seed: any pfn_valid pfn is a page (no vm_normal_page)
    follow_page_pfn_valid: bool = False
    #: 2.6.15-rc4 "VM: add vm_insert_page() function", marking the vma VM_INSERTPAGE (rc6)
    vm_insert_page: bool = False
    #: 2.6.26 VM_MIXEDMAP (Jared Hulbert, Nick Piggin): vm_normal_page()'s pfn_valid rule in
    #: VM_MIXEDMAP vmas, and vm_insert_mixed() / vm_insert_pfn()
    vm_mixedmap: bool = False
    #: 2.6.26 "mm: introduce pte_special pte bit" (7e675137): where the arch names a special bit
    #: (Arch.special_mask), remap_pfn_range and insert_pfn set it and vm_normal_page tests only it
    pte_special: bool = False
    #: 2.6.26 (same commit): vm_normal_page's pfn_valid check became VM_BUG_ON(!pfn_valid(pfn))
    #: instead of print_bad_pte; pfnmap models a CONFIG_DEBUG_VM kernel and raises KernelBug
    bad_pfn_vm_bug_on: bool = False
    #: do_anonymous_page() maps the ZERO_PAGE on a read fault (until 2.6.23; 2.6.24 removed it)
    anon_read_zero_page: bool = True
    #: what the kernel of the era called bit 0x400, for people reading flags
    pfnmap_flag_name: str = "VM_PFNMAP"
    #: the kernel release the era follows ("2.6.15", "6.1"): what arches read to pick the
    #: headers of that release (:meth:`pfnmap.arch.Arch.for_rules`), and
    #: :func:`era_for_release` compares
    release: str = "2.6.15"
    #: remap_pfn_range() sets these vm_flags (VM_IO|VM_RESERVED|VM_PFNMAP until 3.7, then
    #: VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP: "mm: kill vma flag VM_RESERVED")
    remap_vm_flags: int = VM_IO | VM_RESERVED | VM_PFNMAP
    #: vm_insert_page() marks the vma with this flag (VM_INSERTPAGE from 2.6.15-rc6; 3.7's
    #: "mm: kill vma flag VM_INSERTPAGE" made it VM_MIXEDMAP)
    insert_page_vm_flags: int = VM_INSERTPAGE
    #: vm_normal_page(): a pfn without a struct page is found by ``!pfn_valid(pfn)`` (to
    #: 2.6.26) or by ``pfn > highest_memmap_pfn`` (2.6.29 on: a pfn in a hole below the top of
    #: RAM then has a struct page, pfn_to_page of the memmap)
    bad_pfn_test: str = "pfn_valid"
    #: vm_normal_page() returns NULL for the zero page without a report (2.6.32, 62eede62
    #: "mm: ZERO_PAGE without PTE_SPECIAL"): a special zero pte outside a PFN vma is fine,
    #: and without a special bit is_zero_pfn() is tested after the VM_PFNMAP rules
    zero_pfn_is_special: bool = False
    #: vm_normal_page(): a special pte with pte_devmap() is NULL without a report (legacy
    #: ZONE_DEVICE pages, fs-dax; in 6.1), where the arch has a devmap bit
    pte_devmap: bool = False
    #: do_anonymous_page() maps the zero page with pte_mkspecial: no reference, no rmap, no
    #: rss (2.6.32 on); at the seed it was a refcounted, file-rmapped, file_rss page
    zero_page_special_pte: bool = False
    #: print_bad_pte()'s first line: the seed's "Bad pte = ..." or 2.6.29's
    #: "BUG: Bad page map in process COMM  pte:PTE pmd:PMD" (6.1 follows it with addr/vm_flags
    #: and file lines)
    bad_pte_report: str = "2.6.15"
    #: x86 since 4.19 (L1TF, "x86/speculation/l1tf: Protect PROT_NONE PTEs against
    #: speculation"): a PROT_NONE pte holds its pfn inverted. The arch says whether its modes
    #: do it (x86 PAE and 64-bit, not 2-level); read through Arch.for_rules
    l1tf_protnone_inversion: bool = False
    #: whose names the vm_flags bits have in this era: a key of :data:`VM_FLAG_TABLES`
    #: ("2.6.15": VM_FLAG_NAMES; "6.1": VM_FLAG_NAMES_6_1, where 0x80000 is VM_LOCKONFAULT)
    vm_flag_names: str = "2.6.15"
    #: sys_madvise(): the advice values madvise_vma() knows (2.6.15: NORMAL, RANDOM,
    #: SEQUENTIAL, WILLNEED, DONTNEED; 2.6.16 added REMOVE, DONTFORK and DOFORK)
    madvise_advices: tuple[int, ...] = _MADV_2_6_15
    #: sys_madvise() checks the advice before walking the range (madvise_behavior_valid(),
    #: 2.6.16 on); in 2.6.15 an unknown advice is EINVAL only when a vma is reached, so over a
    #: hole it is ENOMEM
    madvise_advice_checked_first: bool = False
    #: madvise_dontneed() refuses vmas with any of these flags: VM_UNPAGED, the same bit, from
    #: Hugh Dickins' unpaged series (2.6.15-rc2); the seed renamed it VM_PFNMAP
    madvise_dontneed_refused_flags: int = VM_LOCKED | VM_HUGETLB | VM_PFNMAP
    #: do_mremap() refuses to grow vmas with any of these flags (EFAULT). 2.6.15: VM_DONTEXPAND
    #: only, and remap_pfn_range() did not set it (that came with 3.7's VM_DONTDUMP change), so a
    #: /dev/mem mapping could grow; later kernels test VM_DONTEXPAND|VM_PFNMAP (vma_to_resize,
    #: 2.6.33 on; when VM_PFNMAP joined the test is unverified)
    mremap_grow_refused_flags: int = VM_DONTEXPAND

    def __post_init__(self) -> None:
        if self.vm_normal_page_rule not in VM_NORMAL_PAGE_RULES:
            raise ValueError(
                f"vm_normal_page_rule {self.vm_normal_page_rule!r} is not one of "
                f"{', '.join(VM_NORMAL_PAGE_RULES)}"
            )
        if self.bad_pfn_test not in BAD_PFN_TESTS:
            raise ValueError(
                f"bad_pfn_test {self.bad_pfn_test!r} is not one of {', '.join(BAD_PFN_TESTS)}"
            )
        if self.bad_pte_report not in BAD_PTE_REPORTS:
            raise ValueError(
                f"bad_pte_report {self.bad_pte_report!r} is not one of {', '.join(BAD_PTE_REPORTS)}"
            )
        release_version(self.release)
        if self.vm_flag_names not in VM_FLAG_TABLES:
            raise ValueError(
                f"vm_flag_names {self.vm_flag_names!r} is not one of {', '.join(VM_FLAG_TABLES)}"
            )

    def version(self) -> tuple[int, ...]:
        """The release as numbers: ``(6, 1)``, ``(2, 6, 15)``."""
        return release_version(self.release)

    def vm_flag_names_table(self) -> dict[int, str]:
        """bit -> vm_flags name in this era."""
        return VM_FLAG_TABLES[self.vm_flag_names]

    def as_dict(self) -> dict[str, object]:
        """Every field by name (flags as their names), for reports and JSON."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_flags") and isinstance(value, int):
                value = "|".join(self.flag_names(value)) or "0"
            elif isinstance(value, tuple) and all(isinstance(v, tuple) for v in value):
                value = {k: v for k, v in value}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def flag_names(self, flags: int) -> list[str]:
        """vm_flags names as this era spelled them (VM_UNPAGED for 0x400 before the seed,
        VM_DONTDUMP for 0x04000000 in 6.1)."""
        table = self.vm_flag_names_table()
        return [
            self.pfnmap_flag_name if name == "VM_PFNMAP" else name
            for name in vm_flag_names(flags, table)
        ]


def release_version(release: str) -> tuple[int, ...]:
    """``"6.1.0-56-amd64"`` -> ``(6, 1, 0)``, ``"2.6.15-rc3"`` -> ``(2, 6, 15)``: the leading
    dotted numbers of a kernel release (UTS_RELEASE, VMCOREINFO's OSRELEASE)."""
    m = re.match(r"\s*(\d+(?:\.\d+)*)", release)
    if m is None:
        raise ValueError(f"kernel release {release!r} does not start with a version number")
    return tuple(int(x) for x in m.group(1).split("."))


#: The seed: Linus' "mm: re-architect the VM_UNPAGED logic" (6aab341e, 2.6.15-rc3)
SEED = KernelRules(
    name="seed",
    vm_normal_page_is_cow_test=False,
    remap_cow_whole_vma=False,
    gup_refused_flags=VM_IO,
    cow_copy_aligned=False,
    copy_forcing_flags=VM_HUGETLB | VM_NONLINEAR | VM_PFNMAP,
    do_no_page_bug_on_pfnmap=False,
)

#: 2.6.15-rc3 before the seed: mm/memory.c at ee498ed7 (Hugh Dickins, "unpaged: anon in
#: VM_UNPAGED"), kernel-reference §3 "before the seed" paragraphs and §4
UNPAGED = KernelRules(
    name="unpaged",
    vm_normal_page_is_cow_test=False,
    remap_cow_whole_vma=False,
    gup_refused_flags=VM_IO,
    cow_copy_aligned=False,  # never read: a raw pte is copied from its struct page or refused
    copy_forcing_flags=VM_HUGETLB | VM_NONLINEAR | VM_UNPAGED,
    do_no_page_bug_on_pfnmap=False,
    vm_normal_page_rule="page_is_anon",
    remap_sets_pgoff=False,
    copy_raw_pte_verbatim=True,
    wp_copy_from_struct_page=True,
    follow_page_pfn_valid=True,
    pfnmap_flag_name="VM_UNPAGED",
)

#: 2.6.15 final (2006-01-02): the seed plus rc4's aligned COW copy, do_no_page BUG_ON and
#: vm_insert_page(), and rc6's is_cow test, whole-vma COW remaps, gup refusing VM_PFNMAP and
#: VM_INSERTPAGE forcing copy_page_range (kernel-reference §1, §7)
V2_6_15 = KernelRules(
    name="2.6.15",
    vm_normal_page_is_cow_test=True,
    remap_cow_whole_vma=True,
    gup_refused_flags=VM_IO | VM_PFNMAP,
    cow_copy_aligned=True,
    copy_forcing_flags=VM_HUGETLB | VM_NONLINEAR | VM_PFNMAP | VM_INSERTPAGE,
    do_no_page_bug_on_pfnmap=True,
    vm_insert_page=True,
)

#: 2.6.26 (July 2008): 2.6.15's rules plus VM_MIXEDMAP and pte_special (both 2008-04-28), the
#: VM_BUG_ON in vm_normal_page, and do_anonymous_page without the ZERO_PAGE (2.6.24)
V2_6_26 = replace(
    V2_6_15,
    name="2.6.26",
    release="2.6.26",
    vm_mixedmap=True,
    pte_special=True,
    bad_pfn_vm_bug_on=True,
    anon_read_zero_page=False,
    madvise_advices=_MADV_2_6_15 + (MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK),
    madvise_advice_checked_first=True,
)

#: Linux 6.1 (December 2022; Debian 12's kernel): mm/memory.c's vm_normal_page with
#: ARCH_HAS_PTE_SPECIAL (special: NULL in VM_PFNMAP/VM_MIXEDMAP, for the zero page and devmap,
#: else print_bad_pte; not special: pfn > highest_memmap_pfn is print_bad_pte), the zero page
#: on read faults as a special pte, remap_pfn_range's VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP
#: (3.7), vm_insert_page marking VM_MIXEDMAP (3.7), vma_needs_copy() (VM_PFNMAP|VM_MIXEDMAP or
#: an anon_vma; hugetlb has its own copy), no BUG_ON in __do_fault for a VM_PFNMAP vma, and
#: x86's L1TF PROT_NONE inversion (4.19)
V6_1 = replace(
    V2_6_26,
    name="6.1",
    release="6.1",
    copy_forcing_flags=VM_HUGETLB | VM_PFNMAP | VM_MIXEDMAP,
    do_no_page_bug_on_pfnmap=False,
    bad_pfn_vm_bug_on=False,
    anon_read_zero_page=True,
    remap_vm_flags=VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP,
    insert_page_vm_flags=VM_MIXEDMAP,
    bad_pfn_test="highest_memmap_pfn",
    zero_pfn_is_special=True,
    pte_devmap=True,
    zero_page_special_pte=True,
    bad_pte_report="6.1",
    l1tf_protnone_inversion=True,
    vm_flag_names="6.1",
    # vma_to_resize(): a VM_DONTEXPAND or VM_PFNMAP vma may not grow (EFAULT)
    mremap_grow_refused_flags=VM_DONTEXPAND | VM_PFNMAP,
)

#: era name -> rules, oldest first
ERAS: dict[str, KernelRules] = {r.name: r for r in (UNPAGED, SEED, V2_6_15, V2_6_26, V6_1)}


class UnknownEra(PfnmapError, KeyError):
    """An era name that :data:`ERAS` does not define."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown era {self.name!r} (known: {', '.join(ERAS)})"


def rules_for(era: str | KernelRules) -> KernelRules:
    """The rules of an era by name (a KernelRules is returned as it is)."""
    if isinstance(era, KernelRules):
        return era
    try:
        return ERAS[era]
    except KeyError:
        raise UnknownEra(era) from None


def resolve_rules(rules: KernelRules | str | None, era: str | None) -> KernelRules:
    """What ``Machine(rules=..., era=...)`` runs: the era's rules, the rules given, or SEED.

    Giving both is allowed only when they agree (same rules object or same name).
    """
    if era is not None:
        chosen = rules_for(era)
        if rules is not None and rules_for(rules) != chosen:
            raise ValueError(f"rules={rules_for(rules).name!r} contradicts era={era!r}")
        return chosen
    return SEED if rules is None else rules_for(rules)


def era_for_release(osrelease: str) -> str:
    """The era to decode a dump of kernel ``osrelease`` with (VMCOREINFO's OSRELEASE, uname -r).

    The newest era whose release is not newer than ``osrelease``: ``"6.1.0-56-amd64"`` and any
    later kernel give ``"6.1"``, ``"2.6.26-2-686"`` and kernels up to 6.0 give ``"2.6.26"``
    (6.1's rules grew between them; docs/eras/v6_1.rst lists when), ``"2.6.15"`` and 2.6.16
    to 2.6.25 give ``"2.6.15"``. ValueError for a release older than 2.6.15 or not starting
    with a version.
    """
    version = release_version(osrelease)
    best: KernelRules | None = None
    for rules in ERAS.values():
        if rules.name in ("unpaged", "seed"):  # development snapshots, never a release
            continue
        if rules.version() <= version and (best is None or rules.version() > best.version()):
            best = rules
    if best is None:
        raise ValueError(f"kernel {osrelease!r} is older than every era ({', '.join(ERAS)})")
    return best.name
