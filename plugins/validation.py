"""Checks an arch description before it is registered; every failure names what is wrong."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

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
        try:
            problems += _check_round_trips(arch, name)
        except _OperationFailed as failed:
            problems.append(f"{name}: {failed}")
    return problems


class _OperationFailed(Exception):
    """An arch method raised while validation called it (a bug in the plugin, reported)."""


class _Calls:
    """The arch's methods, wrapped so that one that raises is named in the problem."""

    def __init__(self, arch: Arch) -> None:
        self._arch = arch

    def __getattr__(self, op: str) -> Callable[..., Any]:
        method = getattr(self._arch, op)

        def call(*args: Any) -> Any:
            try:
                return method(*args)
            except Exception as exc:
                shown = ", ".join(hex(a) if isinstance(a, int) else repr(a) for a in args)
                raise _OperationFailed(f"{op}({shown}) raised {type(exc).__name__}: {exc}") from exc

        return call


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
    seen: set[str] = set()
    for lv in levels:
        if lv.name in seen:
            problems.append(f"{name}: two levels are called {lv.name!r}")
        seen.add(lv.name)
        if lv.bits <= 0:
            problems.append(f"{name}: level {lv.name} has {lv.bits} index bits")
            continue
        if lv.entry_bytes not in (4, 8):
            problems.append(f"{name}: level {lv.name} entry size {lv.entry_bytes} is not 4 or 8")
        if lv.entries * lv.entry_bytes > (1 << arch.page_shift):
            problems.append(f"{name}: level {lv.name}'s table is larger than a page")
    problems += _check_format_names(arch, name)
    top = levels[0].shift + levels[0].bits
    if top < arch.va_bits:
        problems.append(f"{name}: the tables translate {top} VA bits, fewer than va_bits")
    if arch.task_size <= 0 or arch.task_size > (1 << top):
        problems.append(f"{name}: task_size {arch.task_size:#x} is outside the translated VA")
    elif arch.task_size % (1 << arch.page_shift):
        problems.append(f"{name}: task_size {arch.task_size:#x} is not page aligned")
    if not arch.page_shift < arch.phys_bits <= 64:
        problems.append(f"{name}: phys_bits {arch.phys_bits} is out of range")
    if len(arch.protection_map) != 16:
        problems.append(f"{name}: protection_map must have 16 entries (__P000..__S111)")
    return problems


def _check_format_names(arch: Arch, name: str) -> list[str]:
    """Each layout a level declares must be in ``arch.formats`` under its own name: two
    formats with one name (a ``leaf_name`` equal to another level's) would hide one."""
    declared = [f for f in (*arch.table_formats, *arch.leaf_formats) if f is not None]
    names = [f.name for f in declared]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        return [f"{name}: two entry formats are called {', '.join(map(repr, clashes))}"]
    return []


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
    """The smallest round trips; the conformance kit (pfnmap.testing) checks much more."""
    problems = []
    ops = _Calls(arch)
    prot = arch.protection_map[3]  # private read-write: PAGE_COPY
    for pfn in (0, 1, arch.max_pfn):
        pte = ops.pfn_pte(pfn, prot)
        back = ops.pte_pfn(pte)
        if back != pfn:
            problems.append(
                f"{name}: pte_pfn(pfn_pte({pfn:#x})) gives {back:#x} (does the pte's pfn "
                f"field hold {arch.phys_bits - arch.page_shift} bits, as phys_bits says?)"
            )
        if not ops.pte_present(pte):
            problems.append(f"{name}: pfn_pte with PAGE_COPY is not present")
    pte = ops.pfn_pte(1, prot)
    pairs = (
        ("pte_mkwrite", "pte_wrprotect", "pte_write"),
        ("pte_mkdirty", "pte_mkclean", "pte_dirty"),
        ("pte_mkyoung", "pte_mkold", "pte_young"),
    )
    for on, off, test in pairs:
        set_, cleared = getattr(ops, on)(pte), getattr(ops, off)(getattr(ops, on)(pte))
        if not getattr(ops, test)(set_) or getattr(ops, test)(cleared):
            problems.append(f"{name}: {on}/{off} do not set and clear {test}")
    for level in range(len(arch.levels) - 1):
        level_name = arch.levels[level].name
        paddr = 5 << arch.page_shift
        entry = ops.mk_table_entry(level, paddr)
        back = ops.table_entry_paddr(level, entry)
        if back != paddr:
            problems.append(
                f"{name}: level {level_name}: mk_table_entry({paddr:#x}) reads back as {back:#x}"
            )
        if not ops.table_entry_present(level, entry) or ops.table_entry_bad(level, entry):
            problems.append(f"{name}: level {level_name}: a new table entry is absent or bad")
        if ops.table_entry_leaf(level, entry):
            problems.append(f"{name}: level {level_name}: a table entry is taken for a leaf")
    return problems
