"""Checks an arch description before it is registered; every failure names what is wrong."""

from __future__ import annotations

import itertools

from pfnmap.arch import Arch
from pfnmap.errors import LayoutError


def validate_arch(arch: object) -> list[str]:
    """Return the problems with ``arch`` (an empty list means it is usable)."""
    if not isinstance(arch, Arch):
        return [f"{arch!r} is not a pfnmap.arch.Arch instance"]
    problems: list[str] = []
    name = arch.name or "<unnamed>"
    if not arch.name:
        problems.append("the arch has no name")
    if arch.byteorder not in ("little", "big"):
        problems.append(f"{name}: byteorder must be 'little' or 'big', not {arch.byteorder!r}")
    if not arch.levels:
        return problems + [f"{name}: no page-table levels"]
    problems += _check_geometry(arch, name)
    problems += _check_operations(arch, name)
    if not problems:
        problems += _check_masks(arch, name)
        problems += _check_round_trips(arch, name)
    return problems


def _check_geometry(arch: Arch, name: str) -> list[str]:
    problems = []
    levels = arch.levels
    if levels[-1].shift != arch.page_shift:
        problems.append(f"{name}: the last level's shift {levels[-1].shift} != page_shift")
    if levels[-1].leaf is None:
        problems.append(f"{name}: the last level has no pte layout")
    for upper, lower in itertools.pairwise(levels):
        if upper.shift != lower.shift + lower.bits:
            problems.append(
                f"{name}: level {upper.name} starts at VA bit {upper.shift}, "
                f"but {lower.name} ends at bit {lower.shift + lower.bits}"
            )
        if upper.table is None:
            problems.append(f"{name}: level {upper.name} has no table-entry layout")
    for lv in levels:
        if lv.entry_bytes not in (4, 8):
            problems.append(f"{name}: level {lv.name} entry size {lv.entry_bytes} is not 4 or 8")
        if lv.entries * lv.entry_bytes > (1 << arch.page_shift):
            problems.append(f"{name}: level {lv.name}'s table is larger than a page")
    top = levels[0].shift + levels[0].bits
    if top < arch.va_bits:
        problems.append(f"{name}: the tables translate {top} VA bits, fewer than va_bits")
    if arch.task_size <= 0 or arch.task_size > (1 << top):
        problems.append(f"{name}: task_size {arch.task_size:#x} is outside the translated VA")
    if not arch.page_shift < arch.phys_bits <= 64:
        problems.append(f"{name}: phys_bits {arch.phys_bits} is out of range")
    if len(arch.protection_map) != 16:
        problems.append(f"{name}: protection_map must have 16 entries (__P000..__S111)")
    return problems


def _check_operations(arch: Arch, name: str) -> list[str]:
    missing = [
        op
        for op in Arch.PTE_OPERATIONS
        if not callable(getattr(arch, op, None)) or getattr(type(arch), op, None) is None
    ]
    return [f"{name}: missing pte operation(s): {', '.join(missing)}"] if missing else []


def _check_masks(arch: Arch, name: str) -> list[str]:
    """Every field's derived mask must be exactly what construct builds for that field alone."""
    problems = []
    for fmt in arch.formats.values():
        for field in fmt.fields.values():
            top = (1 << field.width) - 1
            try:
                value = fmt.encode(**{field.name: top if field.width > 1 else True})
            except (LayoutError, Exception) as exc:  # construct raises many types
                problems.append(f"{name}: {fmt.name}.{field.name}: construct cannot build: {exc}")
                continue
            if value != field.mask:
                problems.append(
                    f"{name}: {fmt.name}.{field.name}: derived mask {field.mask:#x} but "
                    f"construct builds {value:#x} (byte order or field order wrong?)"
                )
    return problems


def _check_round_trips(arch: Arch, name: str) -> list[str]:
    problems = []
    prot = arch.protection_map[3]  # private read-write: PAGE_COPY
    for pfn in (0, 1, arch.max_pfn):
        pte = arch.pfn_pte(pfn, prot)
        if arch.pte_pfn(pte) != pfn:
            problems.append(f"{name}: pte_pfn(pfn_pte({pfn:#x})) != {pfn:#x}")
        if not arch.pte_present(pte):
            problems.append(f"{name}: pfn_pte with PAGE_COPY is not present")
    pte = arch.pfn_pte(1, prot)
    if not arch.pte_write(arch.pte_mkwrite(pte)) or arch.pte_write(
        arch.pte_wrprotect(arch.pte_mkwrite(pte))
    ):
        problems.append(f"{name}: pte_mkwrite/pte_wrprotect do not round-trip")
    if not arch.pte_dirty(arch.pte_mkdirty(pte)) or arch.pte_dirty(
        arch.pte_mkclean(arch.pte_mkdirty(pte))
    ):
        problems.append(f"{name}: pte_mkdirty/pte_mkclean do not round-trip")
    for level in range(len(arch.levels) - 1):
        paddr = 5 << arch.page_shift
        entry = arch.mk_table_entry(level, paddr)
        if arch.table_entry_paddr(level, entry) != paddr:
            problems.append(f"{name}: level {arch.levels[level].name} table entry round trip")
        if not arch.table_entry_present(level, entry) or arch.table_entry_bad(level, entry):
            problems.append(f"{name}: level {arch.levels[level].name} table entry looks bad")
    return problems
