"""The human table of ``pfnmap decode``: aligned plain text, streamed a batch at a time.

One line per leaf (or per range with ``--ranges``): VA, PA, page size, [pages], level, [raw
entry], flags, and with vmas vm_normal_page()'s verdict. Every column but the last two has a
fixed width, so the rows of every batch line up without looking ahead; flags and verdicts come
from a table of strings built once per distinct flag word (and per distinct verdict), so a
batch costs a few numpy operations, not a formatted string per cell. Problems are a
``problem: ...`` line between the rows. With ``colour`` the header is bold, verdicts and
problems are coloured (ANSI SGR codes, as on a terminal).

Why not a rich table: rich measured each cell and laid out each chunk, about 0.8 ms a row
(61 s for the 73,880 leaves of the x86-64 fixture); the columns here have known widths, which
is all the layout a stream of rows needs. See docs/performance.rst for the figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

import numpy as np

from pfnmap.arch import Arch
from pfnmap.arch.vector import table_ops
from pfnmap.decode.formats.text import ByteSink, assemble, hex_column
from pfnmap.decode.records import Item, LeafBatch, Problem, Range
from pfnmap.decode.views import batch_verdicts, flag_names, ranges

if TYPE_CHECKING:
    from pfnmap.decode.hints import Hints

#: rows formatted as one array at most (a grouped batch holds up to 262,144 leaves): bounds
#: the memory a batch's text takes
TABLE_CHUNK = 1 << 14
#: the flags column is padded to this width when a verdict follows it
FLAGS_WIDTH = 40
VERDICT_WIDTH = 23
#: between two columns
GAP = "  "

#: ANSI SGR codes of each verdict (what rich's "bold cyan"... printed before)
VERDICT_SGR = {
    "raw pfn": "1;36",
    "COWed page in a PFN vma": "1;35",
    "normal page": "1;32",
    "bad pte": "1;31",
    "zero page": "32",
    "devmap page": "36",
    "unknown": "33",
}
_DIM, _BOLD, _RED = "2", "1", "31"


def sgr(text: str, code: str, colour: bool) -> str:
    """``text`` in SGR style ``code`` when ``colour``, else as it is."""
    return f"\x1b[{code}m{text}\x1b[0m" if colour and text else text


def size_text(n: int) -> str:
    """A page size for people: 4K, 2M, 1G (bytes when it is no whole unit)."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def _padded(strings: list[str], width: int) -> np.ndarray:
    """Strings as rows of a uint8 table, padded with NUL bytes to the longest (NULs are
    squeezed out of the finished text, so each row keeps its own length)."""
    data = [s.encode("utf-8") for s in strings]
    longest = max((len(d) for d in data), default=0)
    table = np.zeros((len(data), max(width, longest)), dtype=np.uint8)
    for i, d in enumerate(data):
        table[i, : len(d)] = np.frombuffer(d, dtype=np.uint8)
    return table


class _Layout:
    """The table's columns for one arch and view."""

    def __init__(self, arch: Arch, merge: bool, show_verdict: bool, colour: bool) -> None:
        self.arch = arch
        self.merge = merge
        self.show_verdict = show_verdict
        self.colour = colour
        self.va_width = 16 if arch.va_bits > 32 else 8
        self.pa_width = max(8, -(-arch.phys_bits // 4))
        self.raw_width = max(lv.entry_bytes for lv in arch.levels) * 2
        # at least as wide as its name, as every fixed column is
        self.level_width = max(5, *(len(f.name) for f in arch.leaf_formats if f is not None))
        self._flag_cells: dict[tuple[int, int], str] = {}
        self._verdict_cells: dict[tuple[str | None, str | None], str] = {}

    def header(self) -> str:
        """The column names and a rule under them."""
        columns: list[tuple[str, int, bool]] = [  # name, width, right-justified
            ("VA range" if self.merge else "VA",
             2 * self.va_width + 1 if self.merge else self.va_width, False),
            ("PA", self.pa_width, False),
            ("size", 5, True),
        ]  # fmt: skip
        if self.merge:
            columns.append(("pages", 6, True))
        columns.append(("level", self.level_width, False))
        if not self.merge:
            columns.append(("entry", self.raw_width, False))
        columns.append(("flags", FLAGS_WIDTH, False))
        if self.show_verdict:
            columns.append(("verdict", VERDICT_WIDTH, False))
        cells = [name.rjust(w) if right else name.ljust(w) for name, w, right in columns]
        line = GAP.join(cells)
        return sgr(line.rstrip(), _BOLD, self.colour) + "\n" + "-" * len(line) + "\n"

    def flag_cell(self, level: int, word: int) -> str:
        """The flags column of a leaf (with the gap before it), padded when a verdict
        follows."""
        key = (level, word)
        cell = self._flag_cells.get(key)
        if cell is None:
            kind = self.arch.leaf_kind(level, word)  # era-dependent: x86's PROT_NONE
            names = flag_names(self.arch, level, word)
            text = " ".join((*names, kind) if kind else names)
            if self.show_verdict:
                text = text.ljust(FLAGS_WIDTH)
            cell = self._flag_cells[key] = GAP + text if text else ""
        return cell

    def verdict_cell(self, verdict: str | None, reason: str | None) -> str:
        key = (verdict, reason)
        cell = self._verdict_cells.get(key)
        if cell is None:
            text = sgr(verdict or "-", VERDICT_SGR.get(verdict or "", _DIM), self.colour)
            if reason and verdict in ("bad pte", "unknown"):
                text += sgr(f" ({reason})", _DIM, self.colour)
            cell = self._verdict_cells[key] = GAP + text
        return cell

    def problem(self, problem: Problem) -> str:
        return sgr(f"problem: {problem.line()}", _RED, self.colour) + "\n"

    def range_row(self, rec: Range) -> str:
        w = self.va_width
        cells = [
            f"{rec.va:0{w}x}-{rec.va + rec.size:0{w}x}",
            f"{rec.pa:0{self.pa_width}x}",
            size_text(rec.size).rjust(5),
            str(rec.pages).rjust(6),
            rec.name.ljust(self.level_width),
        ]
        kind = self.arch.leaf_kind(rec.level, rec.raw)
        flags = " ".join((*rec.flags, kind) if kind else rec.flags)
        if self.show_verdict:
            flags = flags.ljust(FLAGS_WIDTH)
        line = GAP.join(cells) + (GAP + flags if flags else "")
        if self.show_verdict:
            line += self.verdict_cell(rec.verdict, rec.reason)
        return line + "\n"


def _leaf_rows(
    layout: _Layout, batch: LeafBatch, lo: int, hi: int, verdicts, flag_mask: int
) -> np.ndarray:
    """The text of leaves ``[lo, hi)`` of ``batch`` as bytes (an array)."""
    n = hi - lo
    raw = batch.raw[lo:hi]
    words, inverse = np.unique(raw & np.uint64(flag_mask), return_inverse=True)
    flags = _padded([layout.flag_cell(batch.level, w) for w in words.tolist()], 0)
    fixed = (
        GAP + size_text(batch.size).rjust(5) + GAP + batch.name.ljust(layout.level_width) + GAP
    ).encode("ascii")
    parts: list[np.ndarray | bytes] = [
        hex_column(batch.va[lo:hi], layout.va_width), GAP.encode("ascii"),
        hex_column(batch.pa[lo:hi], layout.pa_width), fixed,
        hex_column(raw, layout.raw_width), flags[inverse.reshape(-1)],
    ]  # fmt: skip
    if verdicts is not None:
        cells: dict[tuple[str | None, str | None], int] = {}
        codes = np.fromiter(
            (cells.setdefault(v, len(cells)) for v in verdicts[lo:hi]), dtype=np.intp, count=n
        )
        parts.append(_padded([layout.verdict_cell(*v) for v in cells], 0)[codes])
    parts.append(b"\n")
    text = assemble(n, parts).reshape(-1)
    return text[text != 0]


def write_table(
    out: TextIO,
    items: Iterable[Item],
    arch: Arch,
    hints: Hints | None = None,
    merge: bool = False,
    chunk: int = TABLE_CHUNK,
    colour: bool = False,
) -> int:
    """The table on ``out`` (a text stream, or a rich Console: its file), written as the walk
    goes, at most ``chunk`` rows at a time (memory stays flat); a problem is a line between
    rows. Returns the rows written (leaves or ranges)."""
    out = getattr(out, "file", out)
    show_verdict = hints is not None and hints.has_vmas
    layout = _Layout(arch, merge, show_verdict, colour)
    sink = ByteSink(out)
    sink.text(layout.header())
    rows = 0
    if merge:
        for rec in ranges(items, arch, hints):
            if isinstance(rec, Problem):
                sink.text(layout.problem(rec))
            else:
                sink.text(layout.range_row(rec))
                rows += 1
        sink.flush()
        return rows
    ops = table_ops(arch)
    pfn_valid = hints.pfn_valid_for(arch) if hints is not None else None
    for item in items:
        if isinstance(item, Problem):
            sink.text(layout.problem(item))
            continue
        verdicts = batch_verdicts(arch, item, hints, pfn_valid) if show_verdict else None
        mask = ops.levels[item.level].leaf_flag_mask
        for lo in range(0, len(item), chunk):
            hi = min(lo + chunk, len(item))
            sink.write(_leaf_rows(layout, item, lo, hi, verdicts, mask))
        rows += len(item)
    sink.flush()
    return rows
