"""The kernel decisions that changed in the weeks after the seed, in one place.

Every path in memory.c that later kernels decided differently reads its choice from a
:class:`KernelRules` instead of hard-coding it. pfnmap models the seed (6aab341e, 2.6.15-rc3);
kernel-reference §7 lists what 2.6.15 final changed, and each field names its row there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import VM_HUGETLB, VM_IO, VM_NONLINEAR, VM_PFNMAP


@dataclass(frozen=True)
class KernelRules:
    name: str
    #: 2.6.15-rc6 "Allow arbitrary shared PFNMAP's": in a VM_PFNMAP vma that is not a COW
    #: mapping, vm_normal_page() treats every pte as raw, whatever its pfn
    vm_normal_page_is_cow_test: bool
    #: 2.6.15-rc6: remap_pfn_range() of a COW mapping must cover exactly [vm_start, vm_end)
    #: (else -EINVAL), and only then sets vm_pgoff = pfn
    remap_cow_whole_vma: bool
    #: get_user_pages() refuses vmas with any of these flags (seed: VM_IO; rc6: VM_IO|VM_PFNMAP)
    gup_refused_flags: int
    #: 2.6.15-rc4 "cow_user_page: fix page alignment": copy from ``va & PAGE_MASK``
    cow_copy_aligned: bool
    #: copy_page_range() copies ptes eagerly for vmas with any of these flags (or an anon_vma)
    copy_forcing_flags: int
    #: 2.6.15-rc4 "pfnmap: do_no_page BUG_ON again"
    do_no_page_bug_on_pfnmap: bool


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
