"""Output formats of ``pfnmap decode``: a rich table, JSON lines, CSV, and QEMU's monitor text.

JSON lines and CSV carry the same columns (:data:`COLUMNS`) in every record, with the schema
version in the ``schema`` column (``pfnmap.decode.walker/1``). Record types:

``leaf``
    one leaf entry: ``va`` (canonical), ``va_end``, ``pa``, ``size`` (bytes), ``pages`` (1),
    ``level`` (the leaf's layout name: ``pte``, ``pmd-2M``...), ``raw`` (the entry),
    ``entry_addr`` (its physical address), ``flags`` (set flag bits and non-zero fields,
    space-separated), ``present`` (the arch's pte_present), ``verdict`` and ``reason``
    (vm_normal_page()'s, with hints; else null);
``range``
    consecutive leaves merged (``--ranges``): the same columns, ``pages`` leaves of
    ``size / pages`` bytes, ``raw`` and ``entry_addr`` of the first;
``problem``
    a bad entry: ``problem`` (its kind), ``level`` (the table level), ``entry_addr``, ``raw``,
    ``va`` (the first address it maps) and ``detail`` (why);
``summary``
    the last record: ``detail`` holds a JSON object (arch, root, image, tables read, leaves,
    problems, whether the walk completed).

Addresses and raw entries are hexadecimal strings (``"0x2aaaaaaab000"``: 64-bit values do not
survive JSON numbers everywhere); ``size`` and ``pages`` are integers; empty CSV cells are null.

``qemu-tlb`` and ``qemu-mem`` print the lines of QEMU's x86 monitor commands ``info tlb`` and
``info mem`` (target/i386/monitor.c) for each x86 paging mode, so the output diffs cleanly
against QEMU's for the same guest. Their quirks are kept on purpose: ``info tlb`` prints the
physical address with the mode's own mask (the PAE modes leave NX and bits 62..52 in it, the
2-level 4 MiB mask is ``~((1 << 21) - 1)``, the 64-bit masks keep 50 bits), clears bit 7 of a
4 KiB pte before printing its flags, and shows only entries with the hardware present bit;
``info mem`` merges by the effective user/write/present bits of the whole walk, physically
contiguous or not. pfnmap's ``info mem`` for LA57 is what the function means to print: QEMU's
own mem_info_la57 had its pdpe/pde present tests inverted (a fix was posted to qemu-devel).
Problems go to ``on_problem`` (the CLI prints them on stderr), never into QEMU's text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pfnmap.arch import Arch
from pfnmap.decode.catalog import OUTPUT_FORMATS
from pfnmap.decode.hints import Hints
from pfnmap.decode.walker import Item, Leaf, LeafBatch, Problem, Range, leaves, ranges
from pfnmap.errors import PfnmapError

SCHEMA = "pfnmap.decode.walker/1"
COLUMNS = (
    "schema",
    "record",
    "va",
    "va_end",
    "pa",
    "size",
    "pages",
    "level",
    "raw",
    "entry_addr",
    "flags",
    "present",
    "verdict",
    "reason",
    "problem",
    "detail",
)
FORMATS = OUTPUT_FORMATS
#: rows per rich table chunk: the human table is printed as it is decoded
TABLE_CHUNK = 256
#: widths of the human table's wrapping columns
FLAGS_WIDTH = 40
VERDICT_WIDTH = 23


class FormatError(PfnmapError):
    """An output format that does not apply (QEMU's x86 text for a non-x86 arch)."""


def _hex(v: int | None) -> str | None:
    return None if v is None else f"{v:#x}"


# records -------------------------------------------------------------------------------------
def _row(**values: Any) -> dict[str, Any]:
    row = dict.fromkeys(COLUMNS)
    row["schema"] = SCHEMA
    row.update(values)
    return row


def record_of(arch: Arch, rec: Leaf | Range | Problem) -> dict[str, Any]:
    """The :data:`COLUMNS` dict of one leaf, range or problem."""
    if isinstance(rec, Problem):
        return _row(
            record="problem",
            va=_hex(rec.va),
            level=rec.level_name,
            raw=_hex(rec.raw),
            entry_addr=_hex(rec.entry_addr),
            problem=rec.kind,
            detail=rec.detail,
        )
    pages = rec.pages if isinstance(rec, Range) else 1
    return _row(
        record="range" if isinstance(rec, Range) else "leaf",
        va=_hex(rec.va),
        va_end=_hex(rec.va + rec.size),
        pa=_hex(rec.pa),
        size=rec.size,
        pages=pages,
        level=rec.name,
        raw=_hex(rec.raw),
        entry_addr=_hex(rec.entry_addr),
        flags=" ".join(rec.flags),
        present=rec.present,
        verdict=rec.verdict,
        reason=rec.reason,
    )


def summary_record(info: dict[str, Any]) -> dict[str, Any]:
    return _row(record="summary", detail=json.dumps(info, sort_keys=True))


def records(
    items: Iterable[Item], arch: Arch, hints: Hints | None = None, merge: bool = False
) -> Iterator[dict[str, Any]]:
    view = ranges if merge else leaves
    for rec in view(items, arch, hints):
        yield record_of(arch, rec)


def write_jsonl(out: TextIO, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    for row in rows:
        out.write(json.dumps(row) + "\n")
        n += 1
    return n


def write_csv(out: TextIO, rows: Iterable[dict[str, Any]]) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for row in rows:
        cells = {
            k: ("true" if v is True else "false" if v is False else "" if v is None else v)
            for k, v in row.items()
        }
        writer.writerow(cells)
        n += 1
    return n


# the human table ---------------------------------------------------------------------------
_VERDICT_STYLE = {
    "raw pfn": "bold cyan",
    "COWed page in a PFN vma": "bold magenta",
    "normal page": "bold green",
    "bad pte": "bold red",
    "unknown": "yellow",
}


def _size(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def write_table(
    console: Console,
    items: Iterable[Item],
    arch: Arch,
    hints: Hints | None = None,
    merge: bool = False,
    chunk: int = TABLE_CHUNK,
) -> None:
    """The rich table, printed in chunks of ``chunk`` rows as the walk goes (memory stays
    flat); a problem is a red line between rows."""
    va_width = 16 if arch.va_bits > 32 else 8
    pa_width = max(8, -(-arch.phys_bits // 4))
    raw_width = max(lv.entry_bytes for lv in arch.levels) * 2
    level_width = max(len(f.name) for f in arch.leaf_formats if f is not None)
    show_verdict = hints is not None and hints.has_vmas
    # fixed widths, so the chunks line up as one table
    columns: list[tuple[str, int, str]] = [
        ("VA range" if merge else "VA", 2 * va_width + 1 if merge else va_width, "left"),
        ("PA", pa_width, "left"),
        ("size", 5, "right"),
    ]
    if merge:
        columns.append(("pages", 6, "right"))
    columns.append(("level", level_width, "left"))
    if not merge:
        columns.append(("entry", raw_width, "left"))
    columns.append(("flags", FLAGS_WIDTH, "left"))
    if show_verdict:
        columns.append(("verdict", VERDICT_WIDTH, "left"))
    columns = [(name, max(width, len(name)), justify) for name, width, justify in columns]
    needed = sum(w + 3 for _, w, _ in columns) + 4  # padding and the box's column dividers
    if console.width < needed:
        # never squeeze the columns (rich would cut hex numbers short): a narrow terminal wraps
        console.width = needed
    first = True
    table: Table | None = None

    def new_table() -> Table:
        nonlocal first
        t = Table(
            box=box.SIMPLE_HEAD,
            show_header=first,
            show_edge=False,
            header_style="bold",
            pad_edge=False,
        )
        first = False
        for name, width, justify in columns:
            wrap = name in ("flags", "verdict")
            t.add_column(name, width=width, justify=justify, no_wrap=not wrap)  # type: ignore[arg-type]
        return t

    def flush() -> None:
        nonlocal table
        if table is not None and table.row_count:
            console.print(table)
        table = None

    view = ranges if merge else leaves
    for rec in view(items, arch, hints):
        if isinstance(rec, Problem):
            flush()
            console.print(Text(f"problem: {rec.line()}", style="red"))
            continue
        if table is None:
            table = new_table()
        if merge:
            va = f"{rec.va:0{va_width}x}-{rec.va + rec.size:0{va_width}x}"
        else:
            va = f"{rec.va:0{va_width}x}"
        cells: list[Any] = [va, f"{rec.pa:0{pa_width}x}", _size(rec.size)]
        if merge:
            cells.append(str(rec.pages))
        flags = " ".join(rec.flags)
        cells.append(rec.name)
        if not merge:
            cells.append(f"{rec.raw:0{raw_width}x}")
        cells.append(flags)
        if show_verdict:
            v = Text(rec.verdict or "-", style=_VERDICT_STYLE.get(rec.verdict or "", "dim"))
            if rec.reason and rec.verdict in ("bad pte", "unknown"):
                v.append(f" ({rec.reason})", style="dim")
            cells.append(v)
        table.add_row(*cells)
        if table.row_count >= chunk:
            flush()
    flush()


# QEMU monitor text -----------------------------------------------------------------------------
@dataclass(frozen=True)
class QemuMode:
    """How QEMU's monitor prints one x86 paging mode."""

    name: str
    #: physical-address mask ``print_pte`` applies, by level index of the leaf
    pa_masks: dict[int, int]
    #: the level indexes whose entries take part in ``info mem``'s effective protection
    prot_levels: tuple[int, ...]


_U64 = (1 << 64) - 1
#: QEMU's x86 paging modes, by the name :attr:`pfnmap.arch.Arch.qemu_monitor_mode` gives
QEMU_MODES = {
    "32": QemuMode("32", {0: ~((1 << 21) - 1) & 0xFFFFFFFF, 1: 0xFFFFF000}, (0, 1)),
    "pae32": QemuMode("pae32", {1: ~((1 << 20) - 1) & _U64, 2: ~0xFFF & _U64}, (1, 2)),
    "la48": QemuMode(
        "la48",
        {1: 0x3FFFFC0000000, 2: 0x3FFFFFFE00000, 3: 0x3FFFFFFFFF000},
        (0, 1, 2, 3),
    ),
    "la57": QemuMode(
        "la57",
        {2: 0x3FFFFC0000000, 3: 0x3FFFFFFE00000, 4: 0x3FFFFFFFFF000},
        (0, 1, 2, 3, 4),
    ),
}
#: QEMU's flag letters, in print order, with the x86 layout field each one shows
QEMU_FLAGS = (
    ("X", "nx"),
    ("G", "global_"),
    ("P", "protnone"),  # bit 7: PSE in a large leaf, PAT (cleared before printing) in a pte
    ("D", "dirty"),
    ("A", "accessed"),
    ("C", "pcd"),
    ("T", "pwt"),
    ("U", "user"),
    ("W", "rw"),
)


def qemu_mode(arch: Arch) -> QemuMode:
    mode = QEMU_MODES.get(arch.qemu_monitor_mode or "")
    if mode is None:
        raise FormatError(
            f"qemu-tlb and qemu-mem are QEMU's monitor text for the paging modes "
            f"{', '.join(QEMU_MODES)}; {arch.name} has none (its Arch names no "
            f"qemu_monitor_mode)"
        )
    return mode


class _QemuBits:
    def __init__(self, arch: Arch) -> None:
        pte = arch.pte_format
        fields = pte.fields
        self.letters = [(c, fields[f].mask if f in fields else 0) for c, f in QEMU_FLAGS]
        self.present = fields["present"].mask
        self.bit7 = fields["protnone"].mask
        self.user = fields["user"].mask
        self.rw = fields["rw"].mask
        self.prot = self.user | self.rw | self.present
        self.last = len(arch.levels) - 1
        self.table_has_prot = [
            f is not None and "user" in f.fields and "rw" in f.fields for f in arch.table_formats
        ]

    def flags(self, value: int) -> str:
        return "".join(c if value & m else "-" for c, m in self.letters)


def _hw_present(bits: _QemuBits, batch: LeafBatch) -> np.ndarray:
    return np.flatnonzero((batch.raw & np.uint64(bits.present)) != 0)


def write_qemu_tlb(
    out: TextIO, items: Iterable[Item], arch: Arch, on_problem: Callable[[Problem], None]
) -> int:
    """``info tlb``: ``<va:016x>: <pa:016x> XGPDACTUW`` for each hardware-present leaf."""
    mode = qemu_mode(arch)
    bits = _QemuBits(arch)
    n = 0
    for item in items:
        if isinstance(item, Problem):
            on_problem(item)
            continue
        mask = mode.pa_masks[item.level]
        is_pte = item.level == bits.last
        sel = _hw_present(bits, item)
        for va, raw in zip(item.va[sel].tolist(), item.raw[sel].tolist(), strict=True):
            if is_pte:
                raw &= ~bits.bit7
            out.write(f"{va:016x}: {raw & mask:016x} {bits.flags(raw)}\n")
            n += 1
    return n


def write_qemu_mem(
    out: TextIO, items: Iterable[Item], arch: Arch, on_problem: Callable[[Problem], None]
) -> int:
    """``info mem``: ``<start:016x>-<end:016x> <size:016x> <u|->r<w|->`` per run of addresses
    with the same effective user/write/present bits (all levels ANDed)."""
    mode = qemu_mode(arch)
    bits = _QemuBits(arch)
    canon_bits = arch.va_bits if arch.canonical else 0

    def canon(v: int) -> int:
        if canon_bits and v >> (canon_bits - 1) & 1:
            return (v | (_U64 ^ ((1 << canon_bits) - 1))) & _U64
        return v

    lines = 0
    start = end = prot = -1

    def emit() -> None:
        nonlocal lines
        if start < 0:
            return
        out.write(
            f"{canon(start):016x}-{canon(end):016x} {canon(end - start):016x} "
            f"{'u' if prot & bits.user else '-'}r{'w' if prot & bits.rw else '-'}\n"
        )
        lines += 1

    for item in items:
        if isinstance(item, Problem):
            on_problem(item)
            continue
        upper = bits.prot
        for lvl, value in enumerate(item.upper):
            if lvl in mode.prot_levels and bits.table_has_prot[lvl]:
                upper &= value
        sel = _hw_present(bits, item)
        size = item.size
        for va, raw in zip(item.va_raw[sel].tolist(), item.raw[sel].tolist(), strict=True):
            p = raw & upper
            if va == end and p == prot:
                end += size
                continue
            emit()
            start, end, prot = va, va + size, p
    emit()
    return lines
