"""Output formats: JSON lines and CSV (one schema), the rich table, and QEMU's ``info tlb`` /
``info mem`` text, checked line for line against a transcription of QEMU's monitor loops."""

from __future__ import annotations

import csv
import io
import json

import pytest
from decode_synth import Tables
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from pfnmap.decode.dump import build_scenario, machine_hints
from pfnmap.decode.formats import (
    COLUMNS,
    SCHEMA,
    FormatError,
    records,
    summary_record,
    write_csv,
    write_jsonl,
    write_qemu_mem,
    write_qemu_tlb,
    write_table,
)
from pfnmap.decode.image import machine_image
from pfnmap.decode.walker import Walker
from pfnmap.plugins.manager import default_registry

U64 = (1 << 64) - 1
P, RW, US, PWT, PCD, A, D, PS, G = 1, 2, 4, 8, 16, 32, 64, 128, 256
NX = 1 << 63


def arch_of(name: str):
    return default_registry().get(name)


# JSON lines and CSV ----------------------------------------------------------------------------
def _story_rows(merge: bool):
    m = build_scenario("x86-64")
    proc = next(iter(m.processes.values()))
    w = Walker(machine_image(m), m.arch, proc.mm.pgd)
    rows = list(records(w, m.arch, machine_hints(m, proc), merge=merge))
    return m, proc, rows + [summary_record({"leaves": w.leaf_entries, "complete": w.finished})]


@pytest.mark.parametrize("merge", [False, True])
def test_jsonl_and_csv_carry_the_same_columns(merge: bool) -> None:
    _, proc, rows = _story_rows(merge)
    out = io.StringIO()
    assert write_jsonl(out, rows) == len(rows)
    parsed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(list(r) == list(COLUMNS) and r["schema"] == SCHEMA for r in parsed)
    out = io.StringIO()
    write_csv(out, rows)
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(table[0]) == list(COLUMNS)
    assert len(table) == len(parsed)
    for j, c in zip(parsed, table, strict=True):
        for k in COLUMNS:
            v = j[k]
            assert c[k] == ("" if v is None else "true" if v is True else "false" if v is False
                            else str(v))  # fmt: skip
    kinds = [r["record"] for r in parsed]
    assert kinds[-1] == "summary" and json.loads(parsed[-1]["detail"])["complete"]
    body = [r for r in parsed if r["record"] in ("leaf", "range")]
    assert {r["record"] for r in body} == {"range" if merge else "leaf"}
    # the leaves in the records are the emulator's ptes
    expanded = set()
    for r in body:
        va, size, pages = int(r["va"], 16), r["size"], r["pages"]
        expanded |= {va + k * (size // pages) for k in range(pages)}
        assert int(r["va_end"], 16) == va + size
    assert expanded == {a for v in proc.vmas for a, _ in proc.ptes(v)}
    first = next(r for r in body if int(r["va"], 16) == proc.vmas[0].vm_start)
    assert first["verdict"] == "raw pfn" and first["present"] is True
    assert first["flags"].startswith("present")


def test_problem_records_name_level_entry_and_reason() -> None:
    arch = arch_of("x86-64")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x1000, 3, arch.pfn_pte(0x10, arch.PAGE_SHARED))
    pmd = t.table_for(0x1000, 2)
    t.write(2, pmd, 9, arch.mk_table_entry(2, 0x7000_0000))
    rows = list(records(Walker(t.image(), arch, t.root), arch))
    (prob,) = [r for r in rows if r["record"] == "problem"]
    assert prob["problem"] == "outside-image"
    assert prob["level"] == "pmd"
    assert int(prob["entry_addr"], 16) == pmd + 9 * 8
    assert int(prob["raw"], 16) == arch.mk_table_entry(2, 0x7000_0000)
    assert int(prob["va"], 16) == 9 << 21
    assert "0x70000000" in prob["detail"]


# the human table --------------------------------------------------------------------------------
def test_table_is_printed_in_chunks_without_losing_rows() -> None:
    m = build_scenario("x86-pae")
    proc = next(iter(m.processes.values()))
    n = sum(len(proc.ptes(v)) for v in proc.vmas)

    def render(chunk: int) -> str:
        out = io.StringIO()
        console = Console(file=out, width=200, color_system=None)
        w = Walker(machine_image(m), m.arch, proc.mm.pgd)
        write_table(console, w, m.arch, machine_hints(m, proc), chunk=chunk)
        return out.getvalue()

    big, small = render(1000), render(2)
    rows = [line for line in big.splitlines() if line.strip().startswith("4")]
    assert len(rows) == n
    assert [line for line in small.splitlines() if line.strip().startswith("4")] == rows
    assert big.count("verdict") == 1 and small.count("verdict") == 1  # one header
    assert "COWed page in a PFN vma" in big


def test_table_shows_problems_between_rows() -> None:
    arch = arch_of("x86-64")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x1000, 3, arch.pfn_pte(0x10, arch.PAGE_SHARED))
    pmd = t.table_for(0x1000, 2)
    t.write(2, pmd, 9, arch.mk_table_entry(2, t.root))
    out = io.StringIO()
    write_table(Console(file=out, width=200), Walker(t.image(), arch, t.root), arch)
    text = out.getvalue()
    assert "problem: loop pmd entry at" in text
    assert "0000000000001000" in text


# QEMU's monitor --------------------------------------------------------------------------------
class QemuReference:
    """target/i386/monitor.c's tlb_info_* and mem_info_* loops, transcribed, over a buffer.

    The one departure: mem_info_la57 with its present tests the right way round.
    """

    def __init__(self, buf: bytes, mode: str) -> None:
        self.buf = buf
        self.mode = mode
        self.lines: list[str] = []

    def rd(self, addr: int, size: int) -> int:
        if addr + size > len(self.buf):
            return 0
        return int.from_bytes(self.buf[addr : addr + size], "little")

    def canon(self, addr: int) -> int:
        if self.mode == "la57":
            if addr & (1 << 56):
                addr |= U64 ^ ((1 << 57) - 1)
        elif self.mode in ("la48",) and addr & (1 << 47):
            addr |= U64 ^ ((1 << 48) - 1)
        return addr & U64

    def print_pte(self, addr: int, pte: int, mask: int) -> None:
        letters = "".join(
            c if pte & b else "-"
            for c, b in zip("XGPDACTUW", (NX, G, PS, D, A, PCD, PWT, US, RW), strict=True)
        )
        self.lines.append(f"{self.canon(addr):016x}: {pte & mask & U64:016x} {letters}")

    # info tlb
    def tlb(self, cr3: int) -> list[str]:
        self.lines = []
        if self.mode == "32":
            pgd = cr3 & ~0xFFF
            for l1 in range(1024):
                pde = self.rd(pgd + l1 * 4, 4)
                if pde & P:
                    if pde & PS:
                        self.print_pte(l1 << 22, pde, ~((1 << 21) - 1))
                    else:
                        for l2 in range(1024):
                            pte = self.rd((pde & ~0xFFF) + l2 * 4, 4)
                            if pte & P:
                                self.print_pte((l1 << 22) + (l2 << 12), pte & ~PS, ~0xFFF)
        elif self.mode == "pae32":
            for l1 in range(4):
                pdpe = self.rd((cr3 & ~0x1F) + l1 * 8, 8)
                if pdpe & P:
                    pd = pdpe & 0x3FFFFFFFFF000
                    for l2 in range(512):
                        pde = self.rd(pd + l2 * 8, 8)
                        if pde & P:
                            if pde & PS:
                                self.print_pte((l1 << 30) + (l2 << 21), pde, ~((1 << 20) - 1))
                            else:
                                pt = pde & 0x3FFFFFFFFF000
                                for l3 in range(512):
                                    pte = self.rd(pt + l3 * 8, 8)
                                    if pte & P:
                                        va = (l1 << 30) + (l2 << 21) + (l3 << 12)
                                        self.print_pte(va, pte & ~PS, ~0xFFF)
        elif self.mode == "la48":
            self.tlb_la48(0, cr3 & 0x3FFFFFFFFF000)
        else:
            for l0 in range(512):
                pml5e = self.rd((cr3 & 0x3FFFFFFFFF000) + l0 * 8, 8)
                if pml5e & P:
                    self.tlb_la48(l0, pml5e & 0x3FFFFFFFFF000)
        return self.lines

    def tlb_la48(self, l0: int, pml4: int) -> None:
        for l1 in range(512):
            pml4e = self.rd(pml4 + l1 * 8, 8)
            if not pml4e & P:
                continue
            pdp = pml4e & 0x3FFFFFFFFF000
            for l2 in range(512):
                pdpe = self.rd(pdp + l2 * 8, 8)
                if not pdpe & P:
                    continue
                if pdpe & PS:
                    self.print_pte((l0 << 48) + (l1 << 39) + (l2 << 30), pdpe, 0x3FFFFC0000000)
                    continue
                pd = pdpe & 0x3FFFFFFFFF000
                for l3 in range(512):
                    pde = self.rd(pd + l3 * 8, 8)
                    if not pde & P:
                        continue
                    base = (l0 << 48) + (l1 << 39) + (l2 << 30) + (l3 << 21)
                    if pde & PS:
                        self.print_pte(base, pde, 0x3FFFFFFE00000)
                        continue
                    pt = pde & 0x3FFFFFFFFF000
                    for l4 in range(512):
                        pte = self.rd(pt + l4 * 8, 8)
                        if pte & P:
                            self.print_pte(base + (l4 << 12), pte & ~PS, 0x3FFFFFFFFF000)

    # info mem
    def mem_print(self, end: int, prot: int) -> None:
        if prot != self.last_prot:
            if self.start != -1:
                s, e = self.start, end
                self.lines.append(
                    f"{self.canon(s):016x}-{self.canon(e):016x} {self.canon(e - s):016x} "
                    f"{'u' if self.last_prot & US else '-'}r{'w' if self.last_prot & RW else '-'}"
                )
            self.start = end if prot != 0 else -1
            self.last_prot = prot

    def mem(self, cr3: int) -> list[str]:
        self.lines, self.start, self.last_prot = [], -1, 0
        mask = US | RW | P
        if self.mode == "32":
            for l1 in range(1024):
                pde = self.rd((cr3 & ~0xFFF) + l1 * 4, 4)
                end = l1 << 22
                if pde & P:
                    if pde & PS:
                        self.mem_print(end, pde & mask)
                    else:
                        for l2 in range(1024):
                            pte = self.rd((pde & ~0xFFF) + l2 * 4, 4)
                            end = (l1 << 22) + (l2 << 12)
                            self.mem_print(end, pte & pde & mask if pte & P else 0)
                else:
                    self.mem_print(end, 0)
            self.mem_print(1 << 32, 0)
        elif self.mode == "pae32":
            for l1 in range(4):
                pdpe = self.rd((cr3 & ~0x1F) + l1 * 8, 8)
                end = l1 << 30
                if pdpe & P:
                    pd = pdpe & 0x3FFFFFFFFF000
                    for l2 in range(512):
                        pde = self.rd(pd + l2 * 8, 8)
                        end = (l1 << 30) + (l2 << 21)
                        if pde & P:
                            if pde & PS:
                                self.mem_print(end, pde & mask)
                            else:
                                pt = pde & 0x3FFFFFFFFF000
                                for l3 in range(512):
                                    pte = self.rd(pt + l3 * 8, 8)
                                    end = (l1 << 30) + (l2 << 21) + (l3 << 12)
                                    self.mem_print(end, pte & pde & mask if pte & P else 0)
                        else:
                            self.mem_print(end, 0)
                else:
                    self.mem_print(end, 0)
            self.mem_print(1 << 32, 0)
        elif self.mode == "la48":
            self.mem_la48(0, cr3 & 0x3FFFFFFFFF000, mask)
            self.mem_print(1 << 48, 0)
        else:
            for l0 in range(512):
                pml5e = self.rd((cr3 & 0x3FFFFFFFFF000) + l0 * 8, 8)
                if not pml5e & P:
                    self.mem_print(l0 << 48, 0)
                    continue
                self.mem_la48(l0, pml5e & 0x3FFFFFFFFF000, mask & pml5e)
            self.mem_print(1 << 57, 0)
        return self.lines

    def mem_la48(self, l0: int, pml4: int, upper: int) -> None:
        for l1 in range(512):
            pml4e = self.rd(pml4 + l1 * 8, 8)
            end = (l0 << 48) + (l1 << 39)
            if not pml4e & P:
                self.mem_print(end, 0)
                continue
            pdp = pml4e & 0x3FFFFFFFFF000
            for l2 in range(512):
                pdpe = self.rd(pdp + l2 * 8, 8)
                end = (l0 << 48) + (l1 << 39) + (l2 << 30)
                if not pdpe & P:
                    self.mem_print(end, 0)
                    continue
                if pdpe & PS:
                    self.mem_print(end, pdpe & upper & pml4e)
                    continue
                pd = pdpe & 0x3FFFFFFFFF000
                for l3 in range(512):
                    pde = self.rd(pd + l3 * 8, 8)
                    end = (l0 << 48) + (l1 << 39) + (l2 << 30) + (l3 << 21)
                    if not pde & P:
                        self.mem_print(end, 0)
                        continue
                    if pde & PS:
                        self.mem_print(end, pde & upper & pml4e & pdpe)
                        continue
                    pt = pde & 0x3FFFFFFFFF000
                    for l4 in range(512):
                        pte = self.rd(pt + l4 * 8, 8)
                        end = (l0 << 48) + (l1 << 39) + (l2 << 30) + (l3 << 21) + (l4 << 12)
                        prot = pte & upper & pml4e & pdpe & pde if pte & P else 0
                        self.mem_print(end, prot)


MODES = {"x86-2level": "32", "x86-pae": "pae32", "x86-64": "la48", "x86-la57": "la57"}
#: a few VA windows per mode (page index bases), the top of the address space included
WINDOWS = {
    "x86-2level": [0x400, 0xBFFF0, 0xFFFF0],
    "x86-pae": [0x400, 0xBFFF0, 0xFFFF0],
    "x86-64": [0x400, 0x7FFFFFFF0, 0xFFFFFFFFF0],
    "x86-la57": [0x400, 0xFFFFFFFFFF0, 0x1FFFFFFFFFFFF0],
}
FLAG_BITS = [RW, US, PWT, PCD, A, D, G]


@st.composite
def x86_tables(draw, name: str):
    arch = arch_of(name)
    t = Tables(arch, size=96 * 4096)
    last = len(arch.levels) - 1
    phys_pages = 1 << min(arch.phys_bits - 12, 24)
    high = [NX] if arch.levels[-1].entry_bytes == 8 else []
    for _ in range(draw(st.integers(1, 10))):
        base = draw(st.sampled_from(WINDOWS[name]))
        page = base + draw(st.integers(0, 15))
        va = page << 12
        flags = sum(draw(st.sets(st.sampled_from(FLAG_BITS + high))))
        if draw(st.integers(0, 4)) == 0 and arch.large_page_sizes():
            size = draw(st.sampled_from(arch.large_page_sizes()))
            va &= ~(size - 1)
            if va >> arch.va_bits:
                va &= (1 << arch.va_bits) - 1
            level = arch.large_page_level(size)
            pfn = draw(st.integers(0, phys_pages - 1)) & ~((size >> 12) - 1)
            entry = (pfn << 12) | flags | P | PS
            try:
                if t.read(level, t.table_for(va, level), arch.index(level, va)) == 0:
                    t.set_leaf(va, level, entry)
            except MemoryError:
                break
            except ValueError:
                pass  # a larger page covers it already
            continue
        pfn = draw(st.integers(0, phys_pages - 1))
        present = draw(st.integers(0, 5)) > 0
        pat = PS if draw(st.booleans()) else 0
        entry = (pfn << 12) | flags | pat | (P if present else 0)
        level = last
        try:
            table = t.table_for(va, level)
        except MemoryError:
            break
        except ValueError:
            continue  # a large page is there already
        t.write(level, table, arch.index(level, va), entry)
    # knock user or write permission out of some upper entries (not the PAE PDPT's)
    first = 1 if name == "x86-pae" else 0
    for _ in range(draw(st.integers(0, 3))):
        level = draw(st.integers(first, last - 1))
        try:
            table = t.table_for(draw(st.sampled_from(WINDOWS[name])) << 12, level)
        except (MemoryError, ValueError):
            continue
        for i in range(arch.levels[level].entries):
            e = t.read(level, table, i)
            if e and not e & PS:
                t.write(level, table, i, e & ~draw(st.sampled_from([RW, US, RW | US])))
    return arch, t


def _qemu(arch, t, writer) -> tuple[list[str], list]:
    out, problems = io.StringIO(), []
    writer(out, Walker(t.image(), arch, t.root), arch, problems.append)
    return out.getvalue().splitlines(), problems


@pytest.mark.parametrize("name", sorted(MODES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_qemu_tlb_and_mem_lines_equal_qemus(name: str, data) -> None:
    arch, t = data.draw(x86_tables(name))
    ref = QemuReference(bytes(t.buf), MODES[name])
    lines, _ = _qemu(arch, t, write_qemu_tlb)
    assert lines == ref.tlb(t.root)
    lines, _ = _qemu(arch, t, write_qemu_mem)
    assert lines == ref.mem(t.root)


def test_qemu_tlb_quirks_are_kept() -> None:
    arch = arch_of("x86-pae")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x1000, 2, (0x1234 << 12) | NX | PS | P | RW | US)  # NX and PAT in a 4K pte
    lines, _ = _qemu(arch, t, write_qemu_tlb)
    # NX leaks into the PAE physical address; bit 7 (PAT) is not shown as P for a 4K page
    assert lines == ["0000000000001000: 8000000001234000 X------UW"]
    arch = arch_of("x86-2level")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x400000, 0, (0x2 << 22) | (1 << 21) | PS | P)  # bit 21 stays in QEMU's 4M mask
    lines, _ = _qemu(arch, t, write_qemu_tlb)
    assert lines == ["0000000000400000: 0000000000a00000 --P------"]


@pytest.mark.parametrize("writer", [write_qemu_tlb, write_qemu_mem])
def test_qemu_formats_refuse_non_x86(writer) -> None:
    arch = arch_of("sparc64")
    t = Tables(arch)
    with pytest.raises(FormatError, match="sparc64 has none"):
        writer(io.StringIO(), Walker(t.image(), arch, t.root), arch, print)


def test_qemu_problems_go_to_the_callback_not_the_text() -> None:
    arch = arch_of("x86-64")
    t = Tables(arch, size=16 * 4096)
    t.set_leaf(0x1000, 3, arch.pfn_pte(0x10, arch.PAGE_SHARED))
    t.write(2, t.table_for(0x1000, 2), 3, arch.mk_table_entry(2, t.root))
    lines, problems = _qemu(arch, t, write_qemu_tlb)
    assert lines == ["0000000000001000: 0000000000010000 X---A--UW"]
    assert [p.kind for p in problems] == ["loop"]
