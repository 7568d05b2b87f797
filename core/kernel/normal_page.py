"""vm_normal_page(): the one place its decision lives, for one pte and for a table of them.

The seed's rule (6aab341e, 2.6.15-rc3): inside a VM_PFNMAP vma a pte whose pfn is
``vm_pgoff + page offset`` is a raw pfn with no struct page behind it; any other pfn there is a
COWed anonymous page; elsewhere a pfn without a struct page is a bad pte. The eras change it
(:mod:`pfnmap.kernel.rules`): the pre-seed VM_UNPAGED rule with page_is_anon(), 2.6.15's is_cow
test, 2.6.26's VM_MIXEDMAP and pte_special, 6.1's zero page, devmap and highest_memmap_pfn.

- :func:`decide_pte` / :func:`classify_pte`: the decision from plain values, used by the
  emulator (:func:`vm_normal_page`), the invariant audit and the dump decoder's hints;
- :func:`pte_verdicts`: the same decision as numpy masks over a table of ptes, used by the bulk
  fork/munmap paths (:mod:`pfnmap.kernel.fastpath`); the tests check the two agree on every arch
  and era;
- :func:`vm_normal_page` and :func:`print_bad_pte`: what mm/memory.c's callers call.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from pfnmap.errors import KernelBug
from pfnmap.kernel.constants import VM_MIXEDMAP, VM_PFNMAP, PG_anon, is_cow_mapping
from pfnmap.kernel.reports import BadPteReport

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.kernel.mm import VmArea
    from pfnmap.kernel.rules import KernelRules


class Verdict(StrEnum):
    """What vm_normal_page() decides for one pte, with the why kept for inspection."""

    NOT_PRESENT = "not present"
    NORMAL = "normal page"
    RAW_PFN = "raw pfn"
    COWED = "COWed page in a PFN vma"
    BAD = "bad pte"
    #: the shared zero page: vm_normal_page() returns NULL without a report (2.6.32 on)
    ZERO = "zero page"
    #: a special pte with pte_devmap(): NULL without a report (legacy ZONE_DEVICE, 6.1)
    DEVMAP = "devmap page"


#: a decision with its reason still unformatted: verdict, pfn, str.format template, arguments
Decision = tuple[Verdict, int, str, tuple[object, ...]]


def classify_pte(
    arch: Arch,
    rules: KernelRules,
    pfn_valid: Callable[[int], bool],
    vm_flags: int,
    vm_start: int,
    vm_pgoff: int,
    addr: int,
    pte: int,
    page_is_anon: Callable[[int], bool] | None = None,
    *,
    is_zero_pfn: Callable[[int], bool] | None = None,
    highest_memmap_pfn: int | None = None,
) -> tuple[Verdict, int, str]:
    """vm_normal_page()'s decision from plain values: the verdict, the pfn and a reason.

    The one place the rule lives (:func:`decide_pte`). It needs no machine, so the dump decoder
    applies it to a pte read from an image with vma and RAM hints, exactly as the emulator
    does. Which rule applies is the era's: ``rules.pte_special`` on an arch with a special bit
    (2.6.26, 6.1), ``rules.vm_normal_page_rule`` otherwise ("vm_pgoff" from the seed on,
    "page_is_anon" before it). ``page_is_anon(pfn)`` answers the pre-seed page_is_anon() for
    this vma and address; without it (no struct page state, as in a dump) such a pte is taken
    as raw. ``is_zero_pfn(pfn)`` is is_zero_pfn() (eras with ``zero_pfn_is_special``; None:
    no pfn is the zero page) and ``highest_memmap_pfn`` the last pfn with a struct page (eras
    whose ``bad_pfn_test`` is "highest_memmap_pfn"; None: ``pfn_valid`` decides instead).
    """
    verdict, pfn, why, args = decide_pte(
        arch,
        rules,
        pfn_valid,
        vm_flags,
        vm_start,
        vm_pgoff,
        addr,
        pte,
        page_is_anon,
        is_zero_pfn=is_zero_pfn,
        highest_memmap_pfn=highest_memmap_pfn,
    )
    return verdict, pfn, why.format(*args)


def decide_pte(
    arch: Arch,
    rules: KernelRules,
    pfn_valid: Callable[[int], bool],
    vm_flags: int,
    vm_start: int,
    vm_pgoff: int,
    addr: int,
    pte: int,
    page_is_anon: Callable[[int], bool] | None = None,
    *,
    is_zero_pfn: Callable[[int], bool] | None = None,
    highest_memmap_pfn: int | None = None,
) -> Decision:
    """:func:`classify_pte` with the reason as a ``str.format`` template and its arguments, so
    that vm_normal_page(), which shows the reason only for a VM_BUG_ON, never formats it."""
    if not arch.pte_present(pte):
        return Verdict.NOT_PRESENT, 0, "pte is not present", ()
    pfn = arch.pte_pfn(pte)
    if rules.pte_special and arch.special_mask:
        if arch.pte_special(pte):
            return _vm_normal_page_special(arch, rules, vm_flags, pfn, pte, is_zero_pfn)
        return _check_pfn(rules, pfn_valid, vm_flags, pfn, highest_memmap_pfn, True)
    if rules.vm_normal_page_rule == "page_is_anon":
        return _vm_normal_page_unpaged(pfn_valid, vm_flags, pfn, page_is_anon)
    if vm_flags & VM_MIXEDMAP and rules.vm_mixedmap:
        if pfn_valid(pfn):
            why = "VM_MIXEDMAP and pfn {:#x} is pfn_valid: a normal page"
            return Verdict.NORMAL, pfn, why, (pfn,)
        return Verdict.RAW_PFN, pfn, "VM_MIXEDMAP and pfn {:#x} has no struct page", (pfn,)
    if vm_flags & VM_PFNMAP:
        off = (addr - vm_start) >> arch.page_shift
        if pfn == vm_pgoff + off:
            why = "VM_PFNMAP and pfn {:#x} == vm_pgoff {:#x} + {}"
            return Verdict.RAW_PFN, pfn, why, (pfn, vm_pgoff, off)
        if rules.vm_normal_page_is_cow_test and not is_cow_mapping(vm_flags):
            return Verdict.RAW_PFN, pfn, "VM_PFNMAP and not a COW mapping: every pte is raw", ()
    if rules.zero_pfn_is_special and is_zero_pfn is not None and is_zero_pfn(pfn):
        return Verdict.ZERO, pfn, "is_zero_pfn({:#x}): the shared zero page", (pfn,)
    return _check_pfn(rules, pfn_valid, vm_flags, pfn, highest_memmap_pfn, False)


def _check_pfn(
    rules: KernelRules,
    pfn_valid: Callable[[int], bool],
    vm_flags: int,
    pfn: int,
    highest_memmap_pfn: int | None,
    special_rule: bool,
) -> Decision:
    """The end of vm_normal_page(): a pfn without a struct page is a bad pte (the era's test:
    ``!pfn_valid`` or, from 2.6.29, ``pfn > highest_memmap_pfn``), else the page: a COWed one
    in a VM_PFNMAP vma. ``special_rule``: reached as a pte without the special bit."""
    if rules.bad_pfn_test == "highest_memmap_pfn" and highest_memmap_pfn is not None:
        if pfn > highest_memmap_pfn:
            why = "pfn {:#x} > highest_memmap_pfn {:#x}: no struct page"
            if special_rule:
                why = "not special, and " + why
            return Verdict.BAD, pfn, why, (pfn, highest_memmap_pfn)
    elif not pfn_valid(pfn):
        if special_rule:
            return Verdict.BAD, pfn, "not special, and pfn {:#x} has no struct page", (pfn,)
        return Verdict.BAD, pfn, "pfn {:#x} has no struct page (pfn_valid fails)", (pfn,)
    if vm_flags & VM_PFNMAP:
        if special_rule:
            why = "not special: pfn {:#x} is a COWed page in a PFN vma"
        else:
            why = "VM_PFNMAP but pfn {:#x} != vm_pgoff + offset: a COWed anonymous page"
        return Verdict.COWED, pfn, why, (pfn,)
    if special_rule:
        return Verdict.NORMAL, pfn, "not special: pfn {:#x} is a normal page", (pfn,)
    return Verdict.NORMAL, pfn, "pfn {:#x} is RAM with a struct page", (pfn,)


def _vm_normal_page_special(
    arch: Arch,
    rules: KernelRules,
    vm_flags: int,
    pfn: int,
    pte: int,
    is_zero_pfn: Callable[[int], bool] | None,
) -> Decision:
    """A special pte (2.6.26, 7e675137; 6.1): raw in a VM_PFNMAP/VM_MIXEDMAP vma; from 2.6.32
    the zero page, and in 6.1 a devmap pte, are NULL without a report; anything else is a bad
    pte (VM_BUG_ON in 2.6.26, print_bad_pte in 6.1). vm_ops->find_special_page (Xen's gntdev)
    is not modelled."""
    if vm_flags & (VM_PFNMAP | VM_MIXEDMAP):
        return Verdict.RAW_PFN, pfn, "pte_special: the pte's special bit is set", ()
    if rules.zero_pfn_is_special and is_zero_pfn is not None and is_zero_pfn(pfn):
        return Verdict.ZERO, pfn, "a special pte of the zero page (is_zero_pfn {:#x})", (pfn,)
    if rules.pte_devmap and arch.pte_devmap(pte):
        return Verdict.DEVMAP, pfn, "a special devmap pte (pte_devmap)", ()
    if rules.bad_pfn_vm_bug_on:
        why = "a special pte outside a VM_PFNMAP/VM_MIXEDMAP vma (VM_BUG_ON in vm_normal_page)"
    else:
        why = "a special pte outside a VM_PFNMAP/VM_MIXEDMAP vma, not the zero page"
    return Verdict.BAD, pfn, why, ()


def _vm_normal_page_unpaged(
    pfn_valid: Callable[[int], bool],
    vm_flags: int,
    pfn: int,
    page_is_anon: Callable[[int], bool] | None,
) -> Decision:
    """Before the seed (ee498ed7): ``page = pfn_valid(pfn) ? pfn_to_page(pfn) : NULL``, and in a
    VM_UNPAGED vma the page counts only when page_is_anon() says it is this vma's anonymous
    page at this address. Outside VM_UNPAGED an invalid pfn is a bad pte."""
    valid = pfn_valid(pfn)
    if vm_flags & VM_PFNMAP:  # VM_UNPAGED: the same bit
        if not valid:
            return Verdict.RAW_PFN, pfn, "VM_UNPAGED and pfn {:#x} has no struct page", (pfn,)
        if page_is_anon is None:
            why = "VM_UNPAGED; page_is_anon unknown here: taken as raw"
            return Verdict.RAW_PFN, pfn, why, ()
        if page_is_anon(pfn):
            why = "VM_UNPAGED and page_is_anon: pfn {:#x} is this vma's anon page here"
            return Verdict.COWED, pfn, why, (pfn,)
        why = "VM_UNPAGED and not page_is_anon: pfn {:#x} is not this vma's anon page here"
        return Verdict.RAW_PFN, pfn, why, (pfn,)
    if not valid:
        return Verdict.BAD, pfn, "pfn {:#x} has no struct page (pfn_valid fails)", (pfn,)
    return Verdict.NORMAL, pfn, "pfn {:#x} is RAM with a struct page", (pfn,)


def page_is_anon(vma: VmArea, addr: int, pfn: int) -> bool:
    """page_is_anon(page, vma, addr) before the seed: PageAnon, page_mapped, and
    page_address_in_vma() == addr, i.e. the page's anon_vma is this vma's and its index puts it
    at exactly this address (mm/memory.c at ee498ed7; rmap.c's vma_address)."""
    machine = vma.vm_mm.machine
    phys = machine.phys
    if not phys.flags[pfn] & PG_anon or phys.mapcount[pfn] <= 0:
        return False
    if vma.anon_vma is None or phys.mapping[pfn] is not vma.anon_vma:
        return False
    address = vma.vm_start + ((phys.index[pfn] - vma.vm_pgoff) << machine.arch.page_shift)
    return address == addr


def vm_normal_page_verdict(vma: VmArea, addr: int, pte: int) -> tuple[Verdict, int, str]:
    """The decision of vm_normal_page() for a vma of the machine, without print_bad_pte."""
    verdict, pfn, why, args = _vm_normal_page_decision(vma, addr, pte)
    return verdict, pfn, why.format(*args)


def _vm_normal_page_decision(vma: VmArea, addr: int, pte: int) -> Decision:
    machine = vma.vm_mm.machine
    rules = machine.rules
    anon = None
    if rules.vm_normal_page_rule == "page_is_anon":

        def anon(pfn: int) -> bool:
            return page_is_anon(vma, addr, pfn)

    phys = machine.phys
    return decide_pte(
        machine.arch,
        rules,
        phys.pfn_valid,
        vma.vm_flags,
        vma.vm_start,
        vma.vm_pgoff,
        addr,
        pte,
        anon,
        is_zero_pfn=phys.zero_pfn.__eq__,
        highest_memmap_pfn=phys.highest_memmap_pfn,
    )


#: the verdicts for which vm_normal_page() returns the struct page
_HAS_PAGE = frozenset((Verdict.NORMAL, Verdict.COWED))


def vm_normal_page(vma: VmArea, addr: int, pte: int, caller: str = "vm_normal_page") -> int | None:
    """vm_normal_page(vma, addr, pte): the struct page behind a present pte, or None.

    Seed rule: inside a VM_PFNMAP vma, ``pfn == vm_pgoff + page offset`` is a raw PFN; any
    other pfn there is a COWed anonymous page. A pfn without a struct page outside that rule is
    reported by print_bad_pte() and treated as raw (in 2.6.26, ``rules.bad_pfn_vm_bug_on``:
    VM_BUG_ON, a KernelBug). Reserved pages (the ZERO_PAGE) are normal until 2.6.32; from then
    (6.1: ``rules.zero_pfn_is_special``) the zero page, like a devmap pte, gives NULL without
    a report. Other eras' rules: :func:`classify_pte`.
    """
    verdict, pfn, why, args = _vm_normal_page_decision(vma, addr, pte)
    if verdict in _HAS_PAGE:
        return pfn
    if verdict is Verdict.BAD:
        if vma.vm_mm.machine.rules.bad_pfn_vm_bug_on:
            raise KernelBug(
                f"VM_BUG_ON in vm_normal_page from {caller} at {addr:#x}: {why.format(*args)}"
            )
        print_bad_pte(vma, pte, addr, caller)
    return None


def print_bad_pte(vma: VmArea, pte: int, vaddr: int, caller: str = "") -> BadPteReport:
    """print_bad_pte(): the kernel's report, into the machine log and the observer hook.

    The process is ``current->comm`` when the vma belongs to the current process, else "???".
    The seed's one KERN_ERR line is ``Bad pte = ...``; eras whose ``bad_pte_report`` is "6.1"
    print 2.6.29's ``BUG: Bad page map in process COMM  pte:PTE pmd:PMD`` and then 6.1's
    ``addr:... vm_flags:... anon_vma:... mapping:... index:...`` line (pfnmap has no kernel
    pointers: anon_vma and mapping are 0 when the vma has none, else 1; the "file:" line, the
    ratelimit and the taint are left out). pfnmap records the calling kernel function instead
    of a stack dump.
    """
    machine = vma.vm_mm.machine
    current = machine.current
    comm = current.comm if current is not None and current.mm is vma.vm_mm else "???"
    if machine.rules.bad_pte_report == "6.1":
        lines = _bad_page_map_lines(vma, pte, vaddr, comm)
    else:
        flags = vma.vm_flags
        lines = [f"Bad pte = {pte:08x}, process = {comm}, vm_flags = {flags:x}, vaddr = {vaddr:x}"]
    report = BadPteReport(lines[0], pte, comm, vma.vm_flags, vaddr, caller)
    for line in lines:
        machine.log_line(line)
    machine.bad_ptes.append(report)
    machine.hook.pfnmap_bad_pte(machine=machine, report=report)
    return report


def _bad_page_map_lines(vma: VmArea, pte: int, vaddr: int, comm: str) -> list[str]:
    """print_bad_pte()'s pr_alert lines of 6.1 (mm/memory.c)."""
    from pfnmap.kernel.pgtable import lookup

    mm = vma.vm_mm
    steps = lookup(mm, vaddr)
    last = len(mm.machine.arch.levels) - 1
    # the entry that points to the pte table (the pmd, or whatever level sits above the ptes)
    pmd = next((s.value for s in steps if s.level == last - 1), 0)
    index = ((vaddr - vma.vm_start) >> mm.machine.arch.page_shift) + vma.vm_pgoff
    mapping = 1 if vma.vm_file is not None else 0
    anon_vma = 1 if vma.anon_vma is not None else 0
    return [
        f"BUG: Bad page map in process {comm}  pte:{pte:08x} pmd:{pmd:08x}",
        f"addr:{vaddr:016x} vm_flags:{vma.vm_flags:08x} anon_vma:{anon_vma:016x} "
        f"mapping:{mapping:016x} index:{index:x}",
    ]


# rmap (mm/rmap.c) and the LRU, reduced to the struct page fields they change ------------------


# the decision for a whole table ---------------------------------------------------------------
#: the linear rule's expected pfns are built with np.arange, which older numpy does not take
#: beyond int64; no pte holds such a pfn, and the scalar path decides those ptes anyway
_PFN_LIMIT = (1 << 63) - 1


class PteVerdicts(NamedTuple):
    """vm_normal_page() for a run of ptes: which give a struct page, which are bad."""

    page: np.ndarray  # bool: NORMAL or COWED, vm_normal_page returns the pfn's struct page
    bad: np.ndarray  # bool: BAD, print_bad_pte (or VM_BUG_ON from 2.6.26)
    pfn: np.ndarray  # uint64: pte_pfn of every pte


def pte_verdicts(
    arch: Arch,
    rules: KernelRules,
    pfns_valid: Callable[[np.ndarray], np.ndarray],
    vma: VmArea,
    addr: int,
    ptes: np.ndarray,
    present: np.ndarray,
    *,
    zero_pfn: int | None = None,
    highest_memmap_pfn: int | None = None,
) -> PteVerdicts | None:
    """vm_normal_page()'s decision for the ptes mapping ``addr``, ``addr + PAGE_SIZE``, ...

    The rules of :func:`decide_pte`, as masks over the table (``pfns_valid`` is pfn_valid()
    over an array, :meth:`pfnmap.kernel.physmem.PhysMem.pfns_valid`; ``zero_pfn`` and
    ``highest_memmap_pfn`` are what decide_pte's ``is_zero_pfn`` and ``highest_memmap_pfn``
    answer, None where unknown); ``present`` says which ptes the decision looks at (the rest
    are "not present": neither a page nor bad). A zero-page or devmap pte is neither a page
    nor bad. It reads the same rules fields the scalar decision would read for these ptes and
    no others (a scenario's RulesTracer notes them). None when a pte needs struct page state
    to decide (the pre-seed page_is_anon() in a VM_UNPAGED vma), or the linear rule's pfns
    leave 63 bits: then only the scalar path decides.
    """
    rule = rules.vm_normal_page_rule  # vm_normal_page_verdict() reads it for every pte
    pfn = arch.ptes_pfn(ptes)
    nothing = np.zeros(ptes.shape, dtype=bool)
    if not present.any():
        return PteVerdicts(nothing, nothing, pfn)
    valid = pfns_valid(pfn)
    flags = vma.vm_flags
    if rules.pte_special and arch.special_mask:
        special = present & arch.ptes_special(ptes)
        plain = present & ~special
        page = bad = nothing
        if plain.any():
            no_page = _no_struct_page(rules, valid, pfn, highest_memmap_pfn)
            page, bad = plain & ~no_page, plain & no_page
        if not flags & (VM_PFNMAP | VM_MIXEDMAP):
            odd = special  # a special pte outside a PFN vma: the zero page, devmap, or bad
            if odd.any() and rules.zero_pfn_is_special and zero_pfn is not None:
                odd = odd & (pfn != np.uint64(zero_pfn))
            if odd.any() and rules.pte_devmap and arch.devmap_mask:
                odd = odd & ((ptes & np.uint64(arch.devmap_mask)) == 0)
            bad = bad | odd
        return PteVerdicts(page, bad, pfn)
    if rule == "page_is_anon":
        if flags & VM_PFNMAP:  # VM_UNPAGED
            if (present & valid).any():
                return None
            return PteVerdicts(nothing, nothing, pfn)
        return PteVerdicts(present & valid, present & ~valid, pfn)
    if flags & VM_MIXEDMAP and rules.vm_mixedmap:
        return PteVerdicts(present & valid, nothing, pfn)
    checked = present
    if flags & VM_PFNMAP:
        base = vma.vm_pgoff + ((addr - vma.vm_start) >> arch.page_shift)
        if base + ptes.size > _PFN_LIMIT:
            return None
        checked = present & (pfn != np.arange(base, base + ptes.size, dtype=np.uint64))
        if checked.any() and rules.vm_normal_page_is_cow_test and not is_cow_mapping(flags):
            return PteVerdicts(nothing, nothing, pfn)  # every pte of a shared PFN vma is raw
    if not checked.any():
        return PteVerdicts(nothing, nothing, pfn)
    if rules.zero_pfn_is_special and zero_pfn is not None:
        checked = checked & (pfn != np.uint64(zero_pfn))  # is_zero_pfn: NULL, no report
        if not checked.any():
            return PteVerdicts(nothing, nothing, pfn)
    no_page = _no_struct_page(rules, valid, pfn, highest_memmap_pfn)
    return PteVerdicts(checked & ~no_page, checked & no_page, pfn)


def _no_struct_page(
    rules: KernelRules, valid: np.ndarray, pfn: np.ndarray, highest_memmap_pfn: int | None
) -> np.ndarray:
    """:func:`_check_pfn`'s bad-pfn test over an array."""
    if rules.bad_pfn_test == "highest_memmap_pfn" and highest_memmap_pfn is not None:
        return pfn > np.uint64(highest_memmap_pfn)
    return ~valid
