"""JSON lines and CSV: one schema (:data:`COLUMNS`), written a batch at a time.

:func:`records` gives the rows as dicts (the library's view, one dict per leaf);
:func:`write_rows` is what ``pfnmap decode --format jsonl|csv`` runs: the same text, but each
leaf's line is one f-string over the batch's Python ints, with every string that repeats (the
flags of a flag word, the level, the verdicts) encoded once. The row dicts stay the
reference: the tests check both paths give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from pfnmap.arch import Arch
from pfnmap.arch.vector import table_ops
from pfnmap.decode.records import Item, Leaf, LeafBatch, Problem, Range
from pfnmap.decode.views import batch_verdicts, flag_names, leaves, ranges

SCHEMA = "pfnmap.decode.walker/2"
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
    "kind",
)
#: the formats :func:`write_rows` writes
ROW_FORMATS = ("jsonl", "csv")

if TYPE_CHECKING:
    from pfnmap.decode.hints import Hints


def _hex(v: int | None) -> str | None:
    return None if v is None else f"{v:#x}"


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
        kind=arch.leaf_kind(rec.level, rec.raw),  # era-dependent: x86's PROT_NONE (issue 12)
    )


def summary_record(info: dict[str, Any]) -> dict[str, Any]:
    return _row(record="summary", detail=json.dumps(info, sort_keys=True))


def records(
    items: Iterable[Item], arch: Arch, hints: Hints | None = None, merge: bool = False
) -> Iterator[dict[str, Any]]:
    view = ranges if merge else leaves
    for rec in view(items, arch, hints):
        yield record_of(arch, rec)


def _csv_cells(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("true" if v is True else "false" if v is False else "" if v is None else v)
        for k, v in row.items()
    }


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
        writer.writerow(_csv_cells(row))
        n += 1
    return n


# the fast path -------------------------------------------------------------------------------
class _Encoding:
    """How one format spells a row: the text between the leaf's variable cells, and its
    cells (each string encoded once and remembered)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._cache: dict[Any, str] = {}
        if fmt == "csv":
            self._buf = io.StringIO()
            self._writer = csv.writer(self._buf, lineterminator="")

    def cell(self, value: Any) -> str:
        """``value`` (a string, bool, int or None) as this format writes it in a row."""
        key = (type(value), value)
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = self._encode(value)
        return got

    def _encode(self, value: Any) -> str:
        if self.fmt == "jsonl":
            return json.dumps(value)
        if value is None or value == "":
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        self._buf.seek(0)
        self._buf.truncate()
        self._writer.writerow([value])
        return self._buf.getvalue()

    def line(self, row: dict[str, Any]) -> str:
        """A whole row (problems, ranges, the summary), as the reference writers print it."""
        if self.fmt == "jsonl":
            return json.dumps(row) + "\n"
        self._buf.seek(0)
        self._buf.truncate()
        csv.DictWriter(self._buf, fieldnames=COLUMNS, lineterminator="\n").writerow(_csv_cells(row))
        return self._buf.getvalue()

    def header(self) -> str:
        return ",".join(COLUMNS) + "\n" if self.fmt == "csv" else ""

    def leaf_segments(self, batch: LeafBatch) -> list[str]:
        """The text before, between and after a leaf row's variable cells (va, va_end, pa,
        raw, entry_addr, flags, present, verdict, reason) for the leaves of ``batch``."""
        if self.fmt == "jsonl":
            lvl = self.cell(batch.name)
            return [
                f'{{"schema": "{SCHEMA}", "record": "leaf", "va": "', '", "va_end": "',
                '", "pa": "', f'", "size": {batch.size}, "pages": 1, "level": {lvl}, "raw": "',
                '", "entry_addr": "', '", "flags": ', ', "present": ', ', "verdict": ',
                ', "reason": ', ', "problem": null, "detail": null, "kind": ',
            ]  # fmt: skip
        lvl = self.cell(batch.name)
        return [
            f"{SCHEMA},leaf,", ",", ",", f",{batch.size},1,{lvl},", ",", ",", ",", ",", ",",
            ",,,",
        ]  # fmt: skip


def _leaf_lines(
    enc: _Encoding, arch: Arch, batch: LeafBatch, hints: Hints | None, pfn_valid
) -> str:
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 = enc.leaf_segments(batch)
    size = batch.size
    level = batch.level
    mask = table_ops(arch).levels[level].leaf_flag_mask
    words = (batch.raw & mask).tolist() if mask else [0] * len(batch)
    # the flags cell and the kind cell (its closing text too) of each flag word: x86's
    # leaf_kind looks at the present and PROT_NONE bits only, both flag bits
    flags = {w: enc.cell(" ".join(flag_names(arch, level, w))) for w in set(words)}
    end = "}\n" if enc.fmt == "jsonl" else "\n"
    kinds = {w: enc.cell(arch.leaf_kind(level, w)) + end for w in set(words)}
    present = [enc.cell(p) for p in (False, True)]
    verdicts = batch_verdicts(arch, batch, hints, pfn_valid)
    if verdicts is None:
        tail = f"{s7}{enc.cell(None)}{s8}{enc.cell(None)}{s9}"
        return "".join([
            f"{s0}{va:#x}{s1}{va + size:#x}{s2}{pa:#x}{s3}{raw:#x}{s4}{ea:#x}{s5}{flags[w]}"
            f"{s6}{present[p]}{tail}{kinds[w]}"
            for va, pa, raw, ea, w, p in zip(
                batch.va.tolist(), batch.pa.tolist(), batch.raw.tolist(),
                batch.entry_addrs().tolist(), words, batch.present.tolist(), strict=True,
            )
        ])  # fmt: skip
    cell = enc.cell
    return "".join([
        f"{s0}{va:#x}{s1}{va + size:#x}{s2}{pa:#x}{s3}{raw:#x}{s4}{ea:#x}{s5}{flags[w]}"
        f"{s6}{present[p]}{s7}{cell(v)}{s8}{cell(r)}{s9}{kinds[w]}"
        for va, pa, raw, ea, w, p, (v, r) in zip(
            batch.va.tolist(), batch.pa.tolist(), batch.raw.tolist(),
            batch.entry_addrs().tolist(), words, batch.present.tolist(), verdicts, strict=True,
        )
    ])  # fmt: skip


def write_rows(
    out: TextIO,
    fmt: str,
    items: Iterable[Item],
    arch: Arch,
    hints: Hints | None = None,
    merge: bool = False,
    summary: Callable[[], dict[str, Any]] | None = None,
) -> int:
    """Write the walk as ``fmt`` (``jsonl`` or ``csv``): the text :func:`write_jsonl` /
    :func:`write_csv` make of :func:`records`, then the :func:`summary_record` of
    ``summary()`` (called after the walk) if given. Returns the rows written."""
    if fmt not in ROW_FORMATS:
        raise ValueError(f"not a row format: {fmt!r}")
    enc = _Encoding(fmt)
    write = out.write
    write(enc.header())
    n = 0
    if merge:
        for rec in ranges(items, arch, hints):
            write(enc.line(record_of(arch, rec)))
            n += 1
    else:
        pfn_valid = hints.pfn_valid_for(arch) if hints is not None else None
        for item in items:
            if isinstance(item, Problem):
                write(enc.line(record_of(arch, item)))
                n += 1
                continue
            write(_leaf_lines(enc, arch, item, hints, pfn_valid))
            n += len(item)
    if summary is not None:
        write(enc.line(summary_record(summary())))
        n += 1
    return n
