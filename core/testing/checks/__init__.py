"""Helpers shared by the conformance checks: edge values, strategies, what a pte says.

The checks themselves are in the modules next to this one; :mod:`pfnmap.testing.conformance`
collects them in order. Every check's docstring starts with its id (``ops.cow:``), the name an
arch uses in ``conformance_xfail`` to declare a deviation it keeps on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable

try:
    from hypothesis import settings
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'the pfnmap conformance kit needs hypothesis: pip install "pfnmap[test]"'
    ) from exc

from pfnmap.arch import Arch, EntryFormat
from pfnmap.kernel.constants import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE

#: property checks are cheap per example; no deadline (construct is slow on a busy machine)
KIT = settings(deadline=None)

PRIVATE_WRITE = [VM_WRITE, VM_READ | VM_WRITE, VM_EXEC | VM_WRITE, VM_EXEC | VM_READ | VM_WRITE]
SHARED_WRITE = [VM_SHARED | i for i in PRIVATE_WRITE]
READABLE = [i for i in range(16) if i & VM_READ]


def prot_name(index: int) -> str:
    """``__P011`` style name of a protection_map index (bits x, w, r)."""
    bits = "".join("1" if index & b else "0" for b in (VM_EXEC, VM_WRITE, VM_READ))
    return f"__{'S' if index & VM_SHARED else 'P'}{bits}"


def formats_of(arch: Arch) -> list[EntryFormat]:
    """Every distinct entry format of the arch (tables and leaves of every level)."""
    seen: dict[int, EntryFormat] = {}
    for fmt in [*arch.formats.values(), *arch.table_formats, *arch.leaf_formats]:
        if fmt is not None:
            seen[id(fmt)] = fmt
    return list(seen.values())


def edge_words(width: int) -> list[int]:
    """0, all ones, each single bit, and each all-ones-but-one word of ``width`` bits."""
    top = (1 << width) - 1
    return [0, top] + [1 << b for b in range(width)] + [top ^ (1 << b) for b in range(width)]


def edge_pfns(arch: Arch) -> list[int]:
    """0, 1, every power of two of the pfn width and its predecessor, max_pfn."""
    width = arch.max_pfn.bit_length()
    out = {0, 1, arch.max_pfn, arch.max_pfn - 1}
    for b in range(width):
        out |= {1 << b, (1 << b) - 1}
    return sorted(p for p in out if 0 <= p <= arch.max_pfn)


def pfns(arch: Arch) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, arch.max_pfn), st.sampled_from(edge_pfns(arch)))


def ptes(arch: Arch) -> st.SearchStrategy[int]:
    """Present ptes as the kernel makes them: any pfn, any protection, touched or not."""
    mods = [arch.pte_mkyoung, arch.pte_mkold, arch.pte_mkdirty, arch.pte_mkclean]
    return st.builds(
        lambda pfn, prot, ops: _apply(ops, arch.pfn_pte(pfn, prot)),
        pfns(arch),
        st.sampled_from(arch.protection_map),
        st.lists(st.sampled_from(mods), max_size=3),
    )


def _apply(ops: list[Callable[[int], int]], pte: int) -> int:
    for op in ops:
        pte = op(pte)
    return pte


def state(arch: Arch, pte: int) -> dict[str, object]:
    """What the generic code can ask of a pte."""
    return {
        "pfn": arch.pte_pfn(pte),
        "present": arch.pte_present(pte),
        "write": arch.pte_write(pte),
        "dirty": arch.pte_dirty(pte),
        "young": arch.pte_young(pte),
    }


def same_but(arch: Arch, before: int, after: int, *changed: str) -> None:
    """Assert that only the named properties differ between two ptes."""
    a, b = state(arch, before), state(arch, after)
    for key in a:
        if key not in changed:
            assert a[key] == b[key], (
                f"{key} changed ({a[key]} -> {b[key]}): {before:#x} -> {after:#x}"
            )


def large_levels(arch: Arch) -> list[tuple[int, int]]:
    """``(level, bytes)`` of each level with large-page leaves the arch can build."""
    if not callable(getattr(arch, "mk_large_entry", None)):
        return []
    return [(i, lv.span) for i, lv in enumerate(arch.levels[:-1]) if lv.leaf is not None]


#: a check's id: the first word of its docstring, before the colon (``ops.cow``)
CHECK_ID = re.compile(r"^\s*([a-z][a-z0-9-]*(?:\.[a-z0-9-]+)+):")


def check_id(function: Callable[..., object]) -> str | None:
    """The id a check's docstring starts with, or None."""
    match = CHECK_ID.match(getattr(function, "__doc__", None) or "")
    return match.group(1) if match else None


def deviation(arch: Arch, cid: str | None) -> str | None:
    """Why ``arch`` fails check ``cid`` on purpose, if it says so in ``conformance_xfail``."""
    table = getattr(arch, "conformance_xfail", None) or {}
    return table.get(cid) if cid else None
