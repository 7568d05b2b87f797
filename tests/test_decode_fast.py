"""The CLI's fast output path: the grouped walk, formats written a batch at a time with numpy
and f-strings. Each is checked against the slow reference it replaces (row dicts through
json/csv, QEMU's letters one entry at a time, the per-table walk), byte for byte."""

from __future__ import annotations

import csv
import io
import json
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfnmap.decode.dump import build_scenario, machine_hints
from pfnmap.decode.formats import (
    QemuBits,
    records,
    summary_record,
    write_csv,
    write_jsonl,
    write_qemu_mem,
    write_qemu_tlb,
    write_rows,
)
from pfnmap.decode.formats.text import BitGather, ByteSink, assemble, hex_column, text_rows
from pfnmap.decode.image import machine_image, open_image
from pfnmap.decode.walker import Walker
from pfnmap.plugins.manager import default_registry

QEMU = Path(__file__).parent / "fixtures" / "qemu"
QEMU_DIRS = sorted(p.parent for p in QEMU.glob("*/meta.json"))


# the text kit -----------------------------------------------------------------------------------
@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(0, (1 << 64) - 1), max_size=40), st.integers(1, 16))
def test_hex_column_is_format_x(values: list[int], width: int) -> None:
    got = hex_column(np.array(values, dtype=np.uint64), width)
    assert got.shape == (len(values), width)
    want = [f"{v:0{width}x}"[-width:] for v in values]  # the low `width` nibbles
    assert [row.tobytes().decode() for row in got] == want


@settings(deadline=None, max_examples=50)
@given(
    st.sets(st.integers(0, 63), max_size=BitGather.MAX_BITS),
    st.lists(st.integers(0, (1 << 64) - 1), max_size=20),
)
def test_bit_gather_packs_and_unpacks_the_mask_bits(bits: set[int], raws: list[int]) -> None:
    mask = sum(1 << b for b in bits)
    g = BitGather(mask)
    assert g.bits == mask.bit_count()
    codes = g.code(np.array(raws, dtype=np.uint64)).tolist()
    assert all(0 <= c < 1 << g.bits for c in codes)
    assert [g.word(c) for c in codes] == [r & mask for r in raws]


def test_assemble_and_text_rows() -> None:
    names = text_rows(["ab", "c", "defg"], width=3)
    got = assemble(3, [b"<", names[[2, 0, 1]], b">", hex_column(np.arange(3, dtype=np.uint64), 2)])
    assert got.tobytes() == b"<def>00<ab >01<c  >02"


def test_byte_sink_keeps_the_order_of_text_and_bytes() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    out.write("before\n")
    sink = ByteSink(out)  # flushes "before" into the buffer first
    sink.write(b"bytes\n")
    sink.text("text\n")
    sink.flush()
    out.write("after\n")
    out.flush()
    assert raw.getvalue() == b"before\nbytes\ntext\nafter\n"
    plain = io.StringIO()  # no byte buffer: decoded
    ByteSink(plain).write(np.frombuffer(b"xy\n", dtype=np.uint8))
    assert plain.getvalue() == "xy\n"


# QEMU's letters ---------------------------------------------------------------------------------
X86 = [n for n in default_registry().names() if default_registry().get(n).qemu_monitor_mode]


@pytest.mark.parametrize("name", X86)
@settings(deadline=None, max_examples=30)
@given(raws=st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=30))
def test_letters_from_the_lookup_table_are_the_scalar_letters(name: str, raws: list[int]) -> None:
    bits = QemuBits(default_registry().get(name))
    got = [row.tobytes().decode() for row in bits.letters_of(np.array(raws, dtype=np.uint64))]
    assert got == [bits.flags(r) for r in raws]


# the real kernels: grouped and per-table walks print the same QEMU text -------------------------
@pytest.fixture(params=QEMU_DIRS, ids=lambda d: d.name)
def qemu_fixture(request, tmp_path: Path):
    meta = json.loads((request.param / "meta.json").read_text())
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((request.param / meta["core"]).read_bytes()))
    with open_image(str(core)) as image:
        yield image, default_registry().get(meta["arch"]), int(meta["root"], 16)


@pytest.mark.parametrize("writer", [write_qemu_tlb, write_qemu_mem])
def test_grouped_walk_prints_the_per_table_text(qemu_fixture, writer) -> None:
    """The grouped batches carry each table's pointer apart from ``upper``: info mem must AND
    it in (QEMU's mem_info_la48 ANDs every level's entry)."""
    image, arch, root = qemu_fixture
    texts = []
    for grouped in (False, True):
        out = io.StringIO()
        writer(out, Walker(image, arch, root, grouped=grouped), arch, lambda p: None)
        texts.append(out.getvalue())
    assert texts[0] == texts[1]
    assert texts[0].count("\n") > 100 or writer is write_qemu_mem


# JSON lines and CSV: the fast rows are the reference rows --------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("with_hints", [False, True])
def test_write_rows_is_the_reference_text(arch_name: str, fmt, merge, with_hints) -> None:
    m = build_scenario(arch_name)
    for proc in m.processes.values():
        hints = machine_hints(m, proc) if with_hints else None
        ref = io.StringIO()
        w = Walker(machine_image(m), m.arch, proc.mm.pgd)
        rows = [*records(w, m.arch, hints, merge=merge), summary_record({"leaves": 1})]
        (write_jsonl if fmt == "jsonl" else write_csv)(ref, rows)
        fast = io.StringIO()
        w = Walker(machine_image(m), m.arch, proc.mm.pgd, grouped=True)
        n = write_rows(fast, fmt, w, m.arch, hints, merge=merge, summary=lambda: {"leaves": 1})
        assert fast.getvalue() == ref.getvalue()
        assert n == len(rows)
        if with_hints and not merge:
            assert '"raw pfn"' in fast.getvalue() or "raw pfn" in fast.getvalue()


def test_write_rows_quotes_csv_cells_and_escapes_json() -> None:
    """Strings that need quoting (a comma, a quote) come out as the csv and json modules
    write them: the cell encoder is theirs, applied once per distinct string."""
    from pfnmap.decode.formats.rows import _Encoding

    jsonl, csv_enc = _Encoding("jsonl"), _Encoding("csv")
    for s in ["a,b", 'say "x"', "", "plain", "é", "two\nlines"]:
        assert jsonl.cell(s) == json.dumps(s)
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(["x", s])
        assert "x," + csv_enc.cell(s) == line.getvalue()
    assert (jsonl.cell(None), csv_enc.cell(None)) == ("null", "")
    assert (jsonl.cell(True), csv_enc.cell(False)) == ("true", "false")


# what the command loads -------------------------------------------------------------------------
def test_qemu_text_does_not_load_rich(tmp_path: Path) -> None:
    meta = json.loads((QEMU / "x86-pae" / "meta.json").read_text())
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((QEMU / "x86-pae" / meta["core"]).read_bytes()))
    code = (
        "import sys; from pfnmap.cli.main import main; "
        f"rc = main(['decode', {str(core)!r}, '--arch', 'x86-pae', '--root', {meta['root']!r}, "
        "'--format', 'qemu-tlb']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich'}), rc, "
        "file=sys.stderr)"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stderr.strip().splitlines()[-1] == "[] 0"
    assert got.stdout.count("\n") == meta["tlb_lines"]


# the human table --------------------------------------------------------------------------------
def _reference_table_rows(arch, walker, hints) -> list[str]:
    """Each leaf's table row written the plain way, from the Leaf records (the view the
    library has always offered), one f-string per cell."""
    from pfnmap.decode.formats.table import FLAGS_WIDTH, VERDICT_SGR, size_text
    from pfnmap.decode.walker import leaves

    va_w = 16 if arch.va_bits > 32 else 8
    pa_w = max(8, -(-arch.phys_bits // 4))
    raw_w = max(lv.entry_bytes for lv in arch.levels) * 2
    lvl_w = max(5, *(len(f.name) for f in arch.leaf_formats if f is not None))
    show = hints is not None and hints.has_vmas
    rows = []
    for rec in leaves(walker, arch, hints):
        flags = " ".join(rec.flags)
        line = (
            f"{rec.va:0{va_w}x}  {rec.pa:0{pa_w}x}  {size_text(rec.size):>5}  "
            f"{rec.name:<{lvl_w}}  {rec.raw:0{raw_w}x}"
        )
        if show:
            flags = flags.ljust(FLAGS_WIDTH)
        if flags:
            line += "  " + flags
        if show:
            line += "  " + (rec.verdict or "-")
            if rec.reason and rec.verdict in ("bad pte", "unknown"):
                line += f" ({rec.reason})"
            assert rec.verdict is None or rec.verdict in VERDICT_SGR
        rows.append(line)
    return rows


@pytest.mark.parametrize("with_hints", [False, True])
def test_table_rows_are_the_leaves(arch_name: str, with_hints: bool) -> None:
    from pfnmap.decode.formats import write_table

    m = build_scenario(arch_name)
    for proc in m.processes.values():
        hints = machine_hints(m, proc) if with_hints else None
        want = _reference_table_rows(m.arch, Walker(machine_image(m), m.arch, proc.mm.pgd), hints)
        for chunk in (2, 1 << 14):
            out = io.StringIO()
            w = Walker(machine_image(m), m.arch, proc.mm.pgd, grouped=True)
            assert write_table(out, w, m.arch, hints, chunk=chunk) == len(want)
            head, rule, *rows = out.getvalue().splitlines()
            assert head.split() == ["VA", "PA", "size", "level", "entry", "flags"] + (
                ["verdict"] if with_hints else []
            )
            assert set(rule) == {"-"} and len(rule) >= len(head)
            assert rows == want


def test_table_of_a_real_kernel_has_a_row_per_leaf(qemu_fixture) -> None:
    from pfnmap.decode.formats import write_table

    image, arch, root = qemu_fixture
    out = io.StringIO()
    w = Walker(image, arch, root, grouped=True)
    n = write_table(out, w, arch)
    lines = out.getvalue().splitlines()[2:]
    rows = [line for line in lines if not line.startswith("problem: ")]
    assert n == w.leaf_entries == len(rows)
    assert len(lines) - len(rows) == w.problems  # x86-pae: PDPTEs with reserved bits set
    widths = {len(line.split("  ")[0]) for line in rows}
    assert widths == {16 if arch.va_bits > 32 else 8}  # every VA cell the same width


def test_table_colour_follows_the_terminal_conventions(monkeypatch) -> None:
    from pfnmap.cli.decode_output import colour_for

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for var in ("FORCE_COLOR", "NO_COLOR", "TERM"):
        monkeypatch.delenv(var, raising=False)
    assert colour_for(Tty()) and not colour_for(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_for(Tty())
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert colour_for(io.StringIO())
