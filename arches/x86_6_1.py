"""x86 as the headers of Linux 6.1 describe it: software bits by name, PROT_NONE at bit 8, L1TF.

arch/x86/include/asm/pgtable_types.h of 6.1 names the bits 2.6.15 left free: bit 9
``_PAGE_BIT_SOFTW1`` is ``_PAGE_SPECIAL``, bit 10 (SOFTW2) ``_PAGE_UFFD_WP``, bit 11 (SOFTW3)
``_PAGE_SOFT_DIRTY``, bit 58 (SOFTW4) ``_PAGE_DEVMAP``, bits 59..62 the protection key; soft-dirty,
uffd-wp and devmap exist only on x86-64 (HAVE_ARCH_SOFT_DIRTY, HAVE_ARCH_USERFAULTFD_WP,
ARCH_HAS_PTE_DEVMAP), so the 32-bit modes call bits 10 and 11 ``softw2`` and ``softw3``. Bit 7 of
a 4 KiB pte is ``_PAGE_PAT``; a PROT_NONE pte is marked by ``_PAGE_PROTNONE`` =
``_PAGE_GLOBAL`` (bit 8) without ``_PAGE_PRESENT`` (2.6.15 used bit 7). ``PTE_PFN_MASK`` covers
physical-address bits 12..51 in the 64-bit entries (``__PHYSICAL_MASK_SHIFT`` 52; PAE too, for
L1TF), so those modes have no "pa_high" field.

L1TF (4.19, arch/x86/include/asm/pgtable-invert.h): a non-present, non-zero entry
(``__pte_needs_invert``) stores its pfn bits inverted. ``pfn_pte`` and ``pte_modify`` (through
``flip_protnone_guard``) invert when an entry becomes one, ``pte_pfn`` undoes it; the 2-level
mode has no inversion (its ``protnone_mask`` is 0). The decoder shows the raw entry as it is and
the real frame as its PA (:meth:`X86Headers61.leaves_frame_paddr`).

:func:`variant_for` builds the 6.1 form of a built-in x86 mode (a subclass with these layouts and
operations), which :meth:`pfnmap.arches.x86.X86Arch.for_rules` returns for eras from 6.1.
"""

from __future__ import annotations

from typing import Any

import construct as cs
import numpy as np

from pfnmap.arch import Level
from pfnmap.arches.x86 import ENTRY_PA_LIMIT, PAGE_SHIFT, Bit, X86Arch, table_layout

#: the kernel release whose headers this module describes
RELEASE = (6, 1)


def _software_names(x86_64: bool) -> tuple[str, str, str]:
    """Bits 11, 10, 9 of a 4 KiB pte."""
    return ("soft_dirty", "uffd_wp", "special") if x86_64 else ("softw3", "softw2", "special")


def _low(bits_11_9: tuple[str, str, str], bit8: str, bit7: str) -> list[cs.Construct]:
    return [
        bits_11_9[0] / Bit,
        bits_11_9[1] / Bit,
        bits_11_9[2] / Bit,
        bit8 / Bit,
        bit7 / Bit,
        "dirty" / Bit,
        "accessed" / Bit,
        "pcd" / Bit,
        "pwt" / Bit,
        "user" / Bit,
        "rw" / Bit,
        "present" / Bit,
    ]


def _high(entry_bits: int, x86_64: bool) -> list[cs.Construct]:
    """Bits 63..52: NX, then x86-64's protection key, devmap and free bits 57..52, or PAE's
    reserved bits."""
    if entry_bits == 32:
        return []
    if x86_64:
        return [
            "nx" / Bit,
            "pkey" / cs.BitsInteger(4),
            "devmap" / Bit,
            "avail_high" / cs.BitsInteger(58 - ENTRY_PA_LIMIT),
        ]
    return ["nx" / Bit, "reserved_high" / cs.BitsInteger(63 - ENTRY_PA_LIMIT)]


def _wrap(fields: list[cs.Construct]) -> cs.Construct:
    return cs.ByteSwapped(cs.BitStruct(*fields))


def pte_layout(entry_bits: int, x86_64: bool) -> cs.Construct:
    """A 4 KiB pte of 6.1: PAT at bit 7, GLOBAL (= PROTNONE when not present) at bit 8."""
    pa_bits = ENTRY_PA_LIMIT if entry_bits == 64 else 32
    return _wrap(
        _high(entry_bits, x86_64)
        + ["pfn" / cs.BitsInteger(pa_bits - PAGE_SHIFT)]
        + _low(_software_names(x86_64), "global_", "pat")
    )


def large_layout(entry_bits: int, page_shift: int, x86_64: bool) -> cs.Construct:
    """A 64-bit huge pmd/pud of 6.1: PAT at bit 12 (_PAGE_BIT_PAT_LARGE), PSE at 7; bit 9 is
    SOFTW1 (huge entries have no special bit in 6.1)."""
    names = _software_names(x86_64)
    return _wrap(
        _high(entry_bits, x86_64)
        + ["large_pfn" / cs.BitsInteger(ENTRY_PA_LIMIT - page_shift)]
        + ["reserved_pa" / cs.BitsInteger(page_shift - PAGE_SHIFT - 1), "pat" / Bit]
        + _low((names[0], names[1], "softw1"), "global_", "pse")
    )


def _levels(arch: X86Arch) -> tuple[Level, ...]:
    """The mode's levels with 6.1's layouts (the PAE PDPT and 2-level's PSE-36 large pages keep
    theirs: 6.1 did not change them)."""
    x86_64 = arch.va_bits > 32
    out = []
    last = len(arch.levels) - 1
    for i, lv in enumerate(arch.levels):
        width = lv.entry_bytes * 8
        table, leaf = lv.table, lv.leaf
        if table is not None and width == 64:
            fields = arch.table_formats[i].fields
            if "ignored8" in fields:  # a table_layout entry (not the PAE PDPT)
                high = "reserved_high" if "reserved_high" in fields else "avail_high"
                table = table_layout(64, ENTRY_PA_LIMIT, high)
        if i == last:
            leaf = pte_layout(width, x86_64)
        elif leaf is not None and width == 64:
            leaf = large_layout(64, lv.shift, x86_64)
        out.append(Level(lv.name, lv.shift, lv.bits, lv.entry_bytes, table, leaf, lv.leaf_name))
    return tuple(out)


class X86Headers61:
    """The 6.1 pte operations that differ from 2.6.15's (mixed in before the mode's class)."""

    #: the 2.6.15 arch this variant was made from
    base_arch: X86Arch
    #: whether the mode inverts PROT_NONE pfns (pgtable-invert.h: PAE and 64-bit)
    l1tf_inverts: bool

    def __init__(self) -> None:
        super().__init__()  # type: ignore[misc]
        arch: Any = self
        pte = arch.pte_format
        m = pte.mask
        arch._PAGE_PROTNONE = m("global_")  # _PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL
        arch._PAGE_PSE = m("pat")  # bit 7 (PSE in pmd/pud entries)
        arch._PAGE_PAT = m("pat")
        arch.special_mask = m("special")
        arch.devmap_mask = m("devmap") if "devmap" in pte.fields else 0
        soft = [m(n) for n in ("soft_dirty", "uffd_wp") if n in pte.fields]
        arch.PAGE_NONE = arch._PAGE_PROTNONE | arch._PAGE_ACCESSED
        private = list(arch.protection_map[:8])
        shared = list(arch.protection_map[8:])
        private[0] = shared[0] = arch.PAGE_NONE
        arch.protection_map = tuple(private + shared)
        # _PAGE_CHG_MASK of 6.1: the pfn, PCD/PWT, special, accessed, dirty, soft-dirty,
        # devmap and uffd-wp survive pte_modify (I386's keeps every high bit but NX too)
        arch._PAGE_CHG_MASK |= (
            arch._PAGE_PCD | arch._PAGE_PWT | arch.special_mask | arch.devmap_mask | sum(soft)
        )
        #: pte bits inverted by the L1TF guard: PTE_PFN_MASK
        self._invert_mask = arch.PTE_MASK if self.l1tf_inverts else 0

    # L1TF (pgtable-invert.h) ---------------------------------------------------------------
    def _needs_invert(self, value: int) -> bool:
        """__pte_needs_invert(): a non-zero entry without _PAGE_PRESENT."""
        arch: Any = self
        return bool(self._invert_mask) and value != 0 and not value & arch._PAGE_PRESENT

    def pte_pfn(self, pte: int) -> int:
        arch: Any = self
        if self._needs_invert(pte):
            pte ^= self._invert_mask
        return (pte & arch.pte_pfn_mask) >> arch._pfn_shift

    def pfn_pte(self, pfn: int, prot: int) -> int:
        arch: Any = self
        paddr = pfn << arch.page_shift
        if self._needs_invert(prot):
            paddr ^= self._invert_mask
        return ((paddr & arch.PTE_MASK) | prot) & arch.supported_pte_mask

    def pte_modify(self, pte: int, prot: int) -> int:
        new = super().pte_modify(pte, prot)  # type: ignore[misc]
        if self._needs_invert(pte) != self._needs_invert(new):  # flip_protnone_guard()
            new ^= self._invert_mask
        return new

    def ptes_pfn(self, ptes: np.ndarray) -> np.ndarray:
        arch: Any = self
        values = ptes
        if self._invert_mask:
            flip = (ptes != 0) & ((ptes & np.uint64(arch._PAGE_PRESENT)) == 0)
            values = np.where(flip, ptes ^ np.uint64(self._invert_mask), ptes)
        return (values & np.uint64(arch.pte_pfn_mask)) >> np.uint64(arch._pfn_shift)

    def leaves_frame_paddr(self, level: int, raw: np.ndarray, paddr: np.ndarray) -> np.ndarray:
        """PROT_NONE ptes (``_PAGE_PROTNONE`` without ``_PAGE_PRESENT``) with their pfn
        un-inverted, as pte_pfn() reads them; every other leaf as ``paddr`` says."""
        arch: Any = self
        if not self._invert_mask or level != len(arch.levels) - 1 or not raw.size:
            return paddr
        protnone = (raw & np.uint64(arch._PAGE_PRESENT | arch._PAGE_PROTNONE)) == np.uint64(
            arch._PAGE_PROTNONE
        )
        if protnone.any():
            fixed = (raw ^ np.uint64(self._invert_mask)) & np.uint64(arch.PTE_MASK)
            np.copyto(paddr, fixed, where=protnone)
        return paddr

    def leaf_kind(self, level: int, entry: int) -> str | None:
        arch: Any = self
        if level == len(arch.levels) - 1:
            both = arch._PAGE_PRESENT | arch._PAGE_PROTNONE
            if entry & both == arch._PAGE_PROTNONE:
                return "protnone"
        return None

    def for_rules(self, rules: Any) -> Any:
        return self.base_arch.for_rules(rules)


def variant_for(arch: X86Arch, invert: bool = True) -> X86Arch:
    """The 6.1 form of ``arch`` (a built-in x86 mode): same name and geometry, 6.1's layouts
    and pte operations; the L1TF inversion where ``invert`` and the mode has one (PAE and the
    64-bit modes)."""
    cls = type(arch)
    attrs = {
        "levels": _levels(arch),
        "base_arch": arch,
        "l1tf_inverts": invert and arch.pte_format.width_bits == 64,
        "description": f"{cls.description} (Linux 6.1 headers)",
        "__doc__": f"{cls.__name__} with the pgtable headers of Linux 6.1.",
        "__module__": __name__,
    }
    variant = type(f"{cls.__name__}_6_1", (X86Headers61, cls), attrs)
    return variant()
