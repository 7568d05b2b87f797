"""The bulk copy_pte_range / zap_pte_range (pfnmap.kernel.fastpath) against the scalar reference.

Every registered arch, every era: two machines play the same program, one with the bulk
paths (the default) and one with ``machine.tables.fast_paths = False``; after every step both
must hold the same ptes in every process, the same struct pages (count, mapcount, flags,
index, whether a mapping is set), the same rss and table counts, the same log lines and bad
pte reports, and must have ended the step the same way (or with the same exception). The
programs are random mixes (hypothesis) of anonymous, file, /dev/mem over device memory and
over RAM, driver-buffer, shmem and io_remap mappings, touched for reading or writing, forked,
unmapped in part, made PROT_NONE, and salted with bad and not-present ptes. The scenario
library is played both ways too, and the whole observation record must agree.

The bulk decoder (``Walker(..., grouped=True)``) is held to the per-table walk the same way:
split per table, its batches, problems (in the same places), counters, leaves and ranges
must be the ungrouped walk's, on damaged synthetic tables of every arch, on the QEMU
fixtures and on a running machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import lzma
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from decode_synth import Tables
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pfnmap import Machine
from pfnmap.arch.vector import reserved_mask
from pfnmap.decode.image import machine_image, open_image
from pfnmap.decode.walker import LeafBatch, Problem, Walker, leaves, ranges
from pfnmap.errors import PfnmapError
from pfnmap.kernel import memory
from pfnmap.kernel.constants import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from pfnmap.kernel.normal_page import Verdict, pte_verdicts, vm_normal_page_verdict
from pfnmap.kernel.pgtable import pte_offset
from pfnmap.kernel.rules import ERAS
from pfnmap.plugins.manager import default_registry
from pfnmap.scenarios import SCENARIOS, run_scenario

ARCHES = default_registry().names()
ERA_NAMES = list(ERAS)
RW = PROT_READ | PROT_WRITE
QEMU_FIXTURES = Path(__file__).parent / "fixtures" / "qemu"

#: what a program may map (see _map)
KINDS = (
    "anon",
    "devmem-io-shared",
    "devmem-io-private",
    "devmem-ram-shared",
    "devmem-ram-private",
    "file-shared",
    "file-private",
    "zero-shared",
    "buffer",
    "iomem",
)
FILE_PAGES = 24
BUFFER_PAGES = 24


def _machine(arch: str, era: str, fast: bool) -> Machine:
    m = Machine(arch, ram="16M", era=era)
    m.tables.fast_paths = fast
    m.create_file("/data", bytes(range(256)) * (FILE_PAGES * m.arch.page_size // 256))
    m.add_device_buffer("/dev/buf", BUFFER_PAGES)
    m.add_iomem_device("/dev/fb", "fb0")
    return m


def snapshot(m: Machine) -> tuple[Any, ...]:
    """Everything fork and munmap may change, in a form two machines can compare."""
    procs = []
    for pid, proc in sorted(m.processes.items()):
        vmas = [(v.vm_start, v.vm_end, v.vm_flags, v.vm_pgoff, proc.ptes(v)) for v in proc.vmas]
        procs.append((pid, proc.rss(), proc.mm.nr_ptes, proc.mm.nr_pgtables, vmas))
    phys = m.phys
    return (
        procs,
        list(phys.count),
        list(phys.mapcount),
        list(phys.flags),
        list(phys.index),
        [x is None for x in phys.mapping],
        phys.free_pages(),
        list(m.log),
        [(r.line, r.caller) for r in m.bad_ptes],
        m.faults,
    )


# the programs ------------------------------------------------------------------------------
@dataclasses.dataclass
class World:
    """One machine playing a program: its processes and, per process, its mappings."""

    m: Machine
    procs: list = dataclasses.field(default_factory=list)
    maps: list[dict[int, tuple[int, int]]] = dataclasses.field(default_factory=list)

    def live(self, i: int):
        live = [k for k, p in enumerate(self.procs) if p.alive]
        if not live:
            return None, None
        k = live[i % len(live)]
        return self.procs[k], self.maps[k]


def _slot_base(m: Machine, n: int) -> int:
    """A region of its own for mapping ``n``: four pte-table spans, from a table boundary."""
    span = m.arch.levels[-2].span
    first = -(-(m.arch.task_size // 3) // span) * span
    return first + (4 * n + 1) * span


def _map(w: World, proc, maps, kind: str, npages: int, shift: int) -> None:
    m = w.m
    ps = m.arch.page_size
    n = len(maps) + 100 * len(w.maps)
    # start a few pages before a pte-table boundary, so most mappings use two tables
    hint = _slot_base(m, n) - (shift % (npages + 1)) * ps
    if hint >= m.arch.task_size:  # past the top (32-bit arches): let get_unmapped_area search
        hint = 0
    length = npages * ps
    io = m.phys.io_regions[0]
    if kind == "anon":
        addr = proc.mmap(length, RW, MAP_PRIVATE | MAP_ANONYMOUS, addr=hint)
    elif kind.startswith("devmem"):
        fd = proc.open("/dev/mem")
        # RAM: from the boot-reserved low pages on, which have struct pages
        offset = io.start if "-io-" in kind else 0
        flags = MAP_SHARED if kind.endswith("shared") else MAP_PRIVATE
        addr = proc.mmap(length, RW, flags, fd, offset=offset, addr=hint)
    elif kind.startswith("file"):
        fd = proc.open("/data")
        flags = MAP_SHARED if kind.endswith("shared") else MAP_PRIVATE
        length = min(length, FILE_PAGES * ps)
        addr = proc.mmap(length, RW, flags, fd, addr=hint)
    elif kind == "zero-shared":
        addr = proc.mmap(length, RW, MAP_SHARED, proc.open("/dev/zero"), addr=hint)
    elif kind == "buffer":
        length = min(length, BUFFER_PAGES * ps)
        addr = proc.mmap(length, RW, MAP_SHARED, proc.open("/dev/buf"), addr=hint)
    else:  # iomem: io_remap_pfn_range over the device region
        addr = proc.mmap(length, RW, MAP_SHARED, proc.open("/dev/fb"), addr=hint)
    maps[len(maps)] = (addr, length // ps)


def _pick(maps, i: int):
    if not maps:
        return None
    return maps[sorted(maps)[i % len(maps)]]


def _inject(w: World, proc, maps, i: int, page: int, what: str) -> None:
    """Write a pte the kernel paths did not write: one with a pfn that has no struct page and
    breaks the linear rule ("bad"), one with the special bit ("special"), one that is not
    present but not none ("not-present")."""
    picked = _pick(maps, i)
    if picked is None:
        return
    m = w.m
    arch = m.arch
    addr = picked[0] + (page % picked[1]) * arch.page_size
    slot = pte_offset(proc.mm, addr)
    if slot is None:
        return
    vma = proc.mm.find_vma(addr)
    if vma is None or vma.vm_start > addr:  # unmapped meanwhile
        return
    if what == "bad":
        value = arch.pfn_pte(m.phys.nr_pages + 3, vma.vm_page_prot)
    elif what == "special":
        old = m.tables.read_pte(slot)
        if not arch.pte_present(old):
            return
        value = arch.pte_mkspecial(old)
    else:
        value = arch.pfn_pte(m.phys.nr_pages + 5, 0)
        if not value or arch.pte_present(value):
            return
    m.tables.write_pte(slot, value)


def step(w: World, op: tuple) -> None:
    kind = op[0]
    if kind == "map":
        proc, maps = w.live(op[1])
        if proc is not None:
            _map(w, proc, maps, op[2], op[3], op[4])
    elif kind == "touch":
        proc, maps = w.live(op[1])
        picked = _pick(maps or {}, op[2])
        if picked is not None:
            addr = picked[0] + (op[3] % picked[1]) * w.m.arch.page_size
            if op[4]:
                proc.write(addr, b"\x5a")
            else:
                proc.read(addr, 1)
    elif kind == "fork":
        proc, maps = w.live(op[1])
        if proc is not None:
            w.procs.append(proc.fork())
            w.maps.append(dict(maps))
    elif kind == "munmap":
        proc, maps = w.live(op[1])
        picked = _pick(maps or {}, op[2])
        if picked is not None:
            ps = w.m.arch.page_size
            first = op[3] % picked[1]
            proc.munmap(picked[0] + first * ps, max(1, op[4] % (picked[1] - first + 1)) * ps)
    elif kind == "protnone":
        proc, maps = w.live(op[1])
        picked = _pick(maps or {}, op[2])
        if picked is not None:
            proc.mprotect(picked[0], picked[1] * w.m.arch.page_size, PROT_NONE)
    elif kind == "inject":
        proc, maps = w.live(op[1])
        if proc is not None:
            _inject(w, proc, maps, op[2], op[3], op[4])
    elif kind == "exit":
        proc, _ = w.live(op[1])
        if proc is not None:
            proc.exit()


def play(
    arch: str, era: str, fast: bool, program: list[tuple], keep: list[Machine] | None = None
) -> list[tuple[Any, ...]]:
    """Run the program; the snapshot (and how each step ended) after every step. The machine
    is appended to ``keep`` when one is given."""
    w = World(_machine(arch, era, fast))
    if keep is not None:
        keep.append(w.m)
    w.procs.append(w.m.spawn("p0"))
    w.maps.append({})
    out = []
    for op in program:
        try:
            step(w, op)
            outcome = "ok"
        except PfnmapError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        out.append((op, outcome, snapshot(w.m)))
        if outcome.startswith("KernelBug"):
            return out  # the emulated kernel oopsed: nothing after it means anything
    for proc in w.procs:
        if proc.alive:
            try:
                proc.exit()
                outcome = "ok"
            except PfnmapError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            out.append((("exit at the end",), outcome, snapshot(w.m)))
    return out


idx = st.integers(0, 7)
ops = st.one_of(
    st.tuples(st.just("map"), idx, st.sampled_from(KINDS), st.integers(1, 12), st.integers(0, 12)),
    st.tuples(st.just("map"), idx, st.sampled_from(KINDS), st.integers(1, 12), st.integers(0, 12)),
    st.tuples(st.just("touch"), idx, idx, st.integers(0, 15), st.booleans()),
    st.tuples(st.just("touch"), idx, idx, st.integers(0, 15), st.booleans()),
    st.tuples(st.just("touch"), idx, idx, st.integers(0, 15), st.booleans()),
    st.tuples(st.just("fork"), idx),
    st.tuples(st.just("fork"), idx),
    st.tuples(st.just("munmap"), idx, idx, st.integers(0, 15), st.integers(0, 15)),
    st.tuples(st.just("protnone"), idx, idx),
    st.tuples(
        st.just("inject"),
        idx,
        idx,
        st.integers(0, 15),
        st.sampled_from(("bad", "special", "not-present")),
    ),
    st.tuples(st.just("exit"), idx),
)


@pytest.mark.parametrize("era", ERA_NAMES)
@pytest.mark.parametrize("arch", ARCHES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(ops, min_size=3, max_size=14))
def test_bulk_paths_match_the_scalar_reference(arch: str, era: str, program) -> None:
    fast = play(arch, era, True, program)
    scalar = play(arch, era, False, program)
    for (op, out_f, snap_f), (_, out_s, snap_s) in zip(fast, scalar, strict=True):
        assert out_f == out_s, op
        assert snap_f == snap_s, op


A_PROGRAM = [
    ("map", 0, "anon", 12, 3),
    ("map", 0, "devmem-io-shared", 10, 4),
    ("map", 0, "devmem-io-private", 9, 2),
    ("map", 0, "devmem-ram-shared", 6, 1),
    ("map", 0, "devmem-ram-private", 6, 5),
    ("map", 0, "file-shared", 8, 2),
    ("map", 0, "file-private", 8, 6),
    ("map", 0, "zero-shared", 5, 2),
    ("map", 0, "buffer", 7, 3),
    ("map", 0, "iomem", 9, 8),
    *[("touch", 0, k, p, (p + k) % 3 != 0) for k in range(10) for p in (0, 2, 5, 7)],
    ("fork", 0),
    *[("touch", 1, k, p, True) for k in range(10) for p in (1, 2)],
    ("fork", 1),
    ("munmap", 1, 0, 2, 5),
    ("munmap", 0, 4, 0, 15),
    ("protnone", 2, 6),
    ("fork", 2),
    ("inject", 0, 1, 3, "not-present"),
    ("fork", 0),
    ("exit", 1),
    ("inject", 0, 0, 2, "bad"),
    ("fork", 0),
    ("exit", 0),
]


@pytest.mark.parametrize("era", ERA_NAMES)
@pytest.mark.parametrize("arch", ARCHES)
def test_every_kind_of_pte_both_ways(arch: str, era: str) -> None:
    """One program with every mapping kind, COW in the children, partial unmaps, PROT_NONE,
    a not-present and (last) a bad pte: the bulk and scalar runs agree step by step."""
    fast = play(arch, era, True, A_PROGRAM)
    scalar = play(arch, era, False, A_PROGRAM)
    assert [o for _, o, _ in fast] == [o for _, o, _ in scalar]
    for (op, _, snap_f), (_, _, snap_s) in zip(fast, scalar, strict=True):
        assert snap_f == snap_s, op
    # the program reaches the fork after the bad pte (a print_bad_pte line, or the VM_BUG_ON)
    assert len(fast) >= len(A_PROGRAM) - 1


#: A_PROGRAM without its planted ptes: every pte is one the kernel itself wrote
WELL_FORMED = [op for op in A_PROGRAM if op[0] != "inject"]


def assert_bulk_never_falls_back(arch: str, era: str) -> None:
    machines: list[Machine] = []
    outcomes = play(arch, era, True, WELL_FORMED, keep=machines)
    assert not [o for _, o, _ in outcomes if o.startswith("KernelBug")], outcomes
    bulk = machines[0].tables.bulk
    assert bulk.copy_tables > 0 and bulk.zap_tables > 0, bulk
    assert bulk.fallbacks == 0, bulk


#: before the seed, a VM_UNPAGED pte whose pfn has a struct page (a COWed /dev/mem page) needs
#: page_is_anon(), which reads struct page state: the scalar path decides those tables by design
LINEAR_RULE_ERAS = [name for name, rules in ERAS.items() if rules.vm_normal_page_rule == "vm_pgoff"]


@pytest.mark.parametrize("era", LINEAR_RULE_ERAS)
@pytest.mark.parametrize("arch", ARCHES)
def test_well_formed_ptes_never_fall_back(arch: str, era: str) -> None:
    """Every mapping kind, COW children, partial unmaps and PROT_NONE, and no planted pte: fork
    and munmap do every pte table in bulk (the counters say so), none by the scalar loop."""
    assert_bulk_never_falls_back(arch, era)


@pytest.mark.parametrize("which", ["try_copy_pte_range", "try_zap_pte_range"])
def test_a_bulk_path_switched_off_is_noticed(which: str, monkeypatch) -> None:
    """If either bulk form stopped working (it refuses every table), the test above fails: the
    scalar fallback alone would keep every other test green."""
    monkeypatch.setattr(memory, which, lambda *args: False)
    with pytest.raises(AssertionError, match="fallbacks"):
        assert_bulk_never_falls_back("x86-64", "seed")


def test_planted_bad_ptes_fall_back_to_the_scalar_path() -> None:
    machines: list[Machine] = []
    play("x86-64", "seed", True, [*WELL_FORMED[:-2], ("inject", 0, 0, 2, "bad"), ("fork", 0)],
         keep=machines)  # fmt: skip
    assert machines[0].tables.bulk.copy_fallbacks >= 1


@pytest.mark.parametrize("era", ERA_NAMES)
@pytest.mark.parametrize("arch", ARCHES)
def test_scenarios_observe_the_same_both_ways(arch: str, era: str) -> None:
    """Every library scenario: the same observations (outcomes, ptes, pages, rss, log lines,
    and the rules fields each step read) and the same machine at the end."""
    for name in SCENARIOS:
        machines = []
        records = []
        for fast in (True, False):
            m = Machine(arch, ram="32M", era=era)
            m.tables.fast_paths = fast
            records.append(run_scenario(name, m).as_dict())
            machines.append(m)
        assert records[0] == records[1], name
        assert snapshot(machines[0]) == snapshot(machines[1]), name


@pytest.mark.parametrize("arch", ARCHES)
def test_pte_verdicts_agree_with_classify_pte(arch: str) -> None:
    """The mask form of vm_normal_page() against the scalar verdict, pte by pte, for every
    era on a vma of each kind."""
    for era in ERA_NAMES:
        m = _machine(arch, era, True)
        p = m.spawn("v")
        w = World(m, [p], [{}])
        for k, kind in enumerate(KINDS):
            _map(w, p, w.maps[0], kind, 6, k)
        for addr, _ in list(w.maps[0].values())[:3]:
            with contextlib.suppress(PfnmapError):  # before the seed a raw COW is VM_FAULT_OOM
                p.write(addr, b"\x01")
        ps = m.arch.page_size
        rng = np.random.default_rng(len(arch))
        for vma in p.vmas:
            n = (vma.vm_end - vma.vm_start) // ps
            pfns = [*rng.integers(0, m.phys.nr_pages + 8, n).tolist()]
            pfns[0] = vma.vm_pgoff  # one that passes the linear rule
            pfns[1] = m.phys.zero_pfn  # is_zero_pfn (6.1)
            values = [m.arch.pfn_pte(pfn, vma.vm_page_prot) for pfn in pfns]
            values[-1] = m.arch.pte_mkspecial(values[-1])
            ptes = np.array(values, dtype=np.uint64)
            present = m.arch.ptes_present(ptes)
            got = pte_verdicts(
                m.arch, m.rules, m.phys.pfns_valid, vma, vma.vm_start, ptes, present,
                zero_pfn=m.phys.zero_pfn, highest_memmap_pfn=m.phys.highest_memmap_pfn,
            )  # fmt: skip
            for k, pte in enumerate(values):
                verdict, _, _ = vm_normal_page_verdict(vma, vma.vm_start + k * ps, pte)
                if got is None:  # page_is_anon decides: the scalar path must be taken
                    assert m.rules.vm_normal_page_rule == "page_is_anon"
                    continue
                paged = verdict in (Verdict.NORMAL, Verdict.COWED)
                assert bool(got.page[k]) == paged, (era, vma, k, verdict)
                assert bool(got.bad[k]) == (verdict is Verdict.BAD), (era, vma, k, verdict)


@pytest.mark.parametrize("arch", ARCHES)
def test_whole_table_pte_operations_match_the_scalar_ones(arch: str) -> None:
    """Arch.ptes_* (derived by probing) against the scalar operations on random entries."""
    a = default_registry().get(arch)
    width = a.levels[-1].entry_bytes * 8
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1 << 63, 2000, dtype=np.uint64, endpoint=True)
    values = values >> np.uint64(64 - width) if width < 64 else values
    values = values & rng.integers(0, 1 << 63, 2000, dtype=np.uint64, endpoint=True)
    ints = values.tolist()
    for vec, scalar in (
        (a.ptes_present, a.pte_present),
        (a.ptes_special, a.pte_special),
    ):
        assert vec(values).tolist() == [bool(scalar(v)) for v in ints]
    for vec, scalar in (
        (a.ptes_pfn, a.pte_pfn),
        (a.ptes_wrprotect, a.pte_wrprotect),
        (a.ptes_mkclean, a.pte_mkclean),
        (a.ptes_mkold, a.pte_mkold),
    ):
        assert vec(values).tolist() == [scalar(v) for v in ints]


# bulk decoding: Walker(grouped=True) --------------------------------------------------------
def _flat(items) -> list[Any]:
    """Walk items with every grouped batch split per table, as plain values."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, Problem):
            out.append(item)
            continue
        for b in item.split():
            out.append((
                b.level, b.name, b.size, b.table, b.entry_bytes, b.upper, b.index.dtype,
                b.raw.dtype, b.index.tolist(), b.raw.tolist(), b.va_raw.tolist(), b.va.tolist(),
                b.pa.tolist(), b.present.tolist(), b.entry_addrs().tolist(),
            ))  # fmt: skip
    return out


def _walk_both_ways(image, arch, root, **kw) -> None:
    """The grouped walk gives the ungrouped walk's items (per table), counters, leaves and
    ranges; its batches' own entry addresses agree with the split ones."""
    plain = Walker(image, arch, root, **{k: v for k, v in kw.items() if k != "group_entries"})
    items = list(plain)
    grouped = Walker(image, arch, root, grouped=True, **kw)
    gitems = list(grouped)
    assert _flat(gitems) == _flat(items)
    for attr in ("tables_read", "leaf_entries", "problems", "stopped", "finished"):
        assert getattr(grouped, attr) == getattr(plain, attr), attr
    for b in gitems:
        if isinstance(b, LeafBatch):
            addrs = b.entry_addrs().tolist()
            assert addrs == [a for part in b.split() for a in part.entry_addrs().tolist()]
            assert [b.entry_addr(k) for k in range(len(b))] == addrs
    assert list(ranges(iter(gitems), arch)) == list(ranges(iter(items), arch))
    assert list(leaves(iter(gitems), arch)) == list(leaves(iter(items), arch))


def _pte_tables(arch, kinds: list[int], gap_every: int, seed: int) -> tuple[Tables, list[int]]:
    """Last-level tables one after the other (several under each parent, with a VA gap after
    every ``gap_every``), each full (kind 0), sparse (1), empty (2) or with not-present but
    not none entries (3); returns the image and the tables' VAs."""
    t = Tables(arch, size=(len(kinds) + 16) * max(arch.page_size, 8192) * 2)
    last = len(arch.levels) - 1
    lv = arch.levels[last]
    span = arch.levels[last - 1].span
    base = -(-(arch.task_size // 3) // (span * lv.entries)) * span * lv.entries
    rng = np.random.default_rng(seed)
    dtype = np.dtype(arch.numpy_dtype(last))
    present = next(b for b in range(64) if arch.pte_present(1 << b))
    vas = []
    for k, kind in enumerate(kinds):
        va = base + (k + (k // gap_every if gap_every else 0)) * span
        table = t.table_for(va, last)
        vas.append(va)
        pfns = rng.integers(1, 1 << 20, lv.entries).tolist()
        values = [arch.pfn_pte(pfn, arch.protection_map[3]) for pfn in pfns]
        if kind == 1:
            values = [v if i % 7 == 0 else 0 for i, v in enumerate(values)]
        elif kind == 2:
            values = [0] * lv.entries
        elif kind == 3:
            values = [v if i % 2 else v & ~(1 << present) for i, v in enumerate(values)]
        off = table - t.base
        t.buf[off : off + lv.entries * lv.entry_bytes] = np.array(values, dtype=dtype).tobytes()
    return t, vas


def _damage(t: Tables, arch, vas: list[int], what: str, r: int) -> None:
    """Break the tables: reserved bits in a pte, a pointer outside the image or back to its
    own table, to an empty table, a large page among the pointers, misaligned pointers."""
    last = len(arch.levels) - 1
    up = last - 1
    va = vas[r % len(vas)]
    if what == "reserved":
        mask = reserved_mask(arch.leaf_formats[last])
        if mask:
            table = t.table_for(va, last)
            i = r % arch.levels[last].entries
            value = t.read(last, table, i) or arch.pfn_pte(5, arch.protection_map[3])
            t.write(last, table, i, value | (mask & -mask))
    else:
        parent = t.table_for(va, up)
        i = arch.index(up, va)
        if what == "outside":
            t.write(up, parent, i, arch.mk_table_entry(up, t.base + len(t.buf) + (1 << 22)))
        elif what == "loop":
            t.write(up, parent, i, arch.mk_table_entry(up, parent))
        elif what == "zero":
            t.write(up, parent, i, arch.mk_table_entry(up, t.alloc()))
        elif what == "large" and arch.levels[up].leaf is not None:
            size = arch.levels[up].span
            t.write(up, parent, i, arch.mk_large_entry(size, 0, arch.protection_map[3]))
        elif what == "misaligned" and arch.name == "sparc64":  # every pointer, by 2 KiB
            for other in vas:
                parent, slot = t.table_for(other, up), arch.index(up, other)
                table = arch.table_entry_paddr(up, t.read(up, parent, slot))
                if table:
                    t.write(up, parent, slot, (table + 2048) >> 11)


@pytest.mark.parametrize("arch_name", ARCHES)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from([0, 0, 0, 1, 2, 3]), min_size=1, max_size=10),
    gap_every=st.sampled_from([0, 0, 1, 2, 3]),
    damage=st.lists(
        st.tuples(
            st.sampled_from(["reserved", "outside", "loop", "misaligned", "large", "zero"]),
            st.integers(0, 1 << 30),
        ),
        max_size=3,
    ),
    group=st.sampled_from([2, 3, None]),
    budget=st.sampled_from([None, None, 3, 6, 9]),
)
@example(kinds=[0, 0, 0], gap_every=0, damage=[("misaligned", 0)], group=None, budget=None)
@example(kinds=[0, 0, 0, 0], gap_every=2, damage=[], group=None, budget=None)
@example(kinds=[0, 1, 0, 3], gap_every=0, damage=[("reserved", 1)], group=None, budget=5)
def test_grouped_walk_is_the_walk_regrouped(
    arch_name, kinds, gap_every, damage, group, budget
) -> None:
    arch = default_registry().get(arch_name)
    t, vas = _pte_tables(arch, kinds, gap_every, len(kinds))
    last = len(arch.levels) - 1
    for what, r in damage:
        with contextlib.suppress(ValueError):  # a large page in the way of a later one
            _damage(t, arch, vas, what, r)
    kw: dict[str, Any] = {}
    if group is not None:
        kw["group_entries"] = group * arch.levels[last].entries
    if budget is not None:
        kw["max_tables"] = budget
    _walk_both_ways(t.image(), arch, t.root, **kw)


@pytest.mark.parametrize("name", sorted(p.name for p in QEMU_FIXTURES.iterdir() if p.is_dir()))
def test_grouped_walk_of_the_qemu_fixtures(name: str, tmp_path) -> None:
    """Real kernels' tables (ESPFIX maps one pte table from every entry of some pmd tables,
    and the direct map uses large pages)."""
    fixture = QEMU_FIXTURES / name
    meta = json.loads((fixture / "meta.json").read_text())
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((fixture / meta["core"]).read_bytes()))
    arch = default_registry().get(meta["arch"])
    with open_image(core) as img:
        _walk_both_ways(img, arch, int(meta["root"], 16))
        _walk_both_ways(img, arch, int(meta["root"], 16), group_entries=3 * 512)


@pytest.mark.parametrize("arch_name", ARCHES)
def test_grouped_walk_of_a_running_machine(arch_name: str) -> None:
    """A machine's RAM is a writable buffer: grouped batches are copies, which do not change
    when the machine goes on running."""
    m = _machine(arch_name, "seed", True)
    p = m.spawn("g")
    w = World(m, [p], [{}])
    for k, kind in enumerate(("anon", "devmem-io-shared", "file-private", "iomem")):
        _map(w, p, w.maps[0], kind, 40, k)
    for addr, n in w.maps[0].values():
        for page in range(0, n, 3):
            p.read(addr + page * m.arch.page_size, 1)
    image = machine_image(m)
    _walk_both_ways(image, m.arch, p.mm.pgd)
    before = _flat(Walker(image, m.arch, p.mm.pgd, grouped=True))
    kept = list(Walker(image, m.arch, p.mm.pgd, grouped=True))
    p.fork().exit()  # write-protects the anonymous ptes
    assert _flat(kept) == before


def test_kept_grouped_batches_are_never_written_over() -> None:
    """The walker recycles the memory of grouped batches only when nothing refers to it:
    batches a caller keeps stay as they were, batches it drops are reused."""
    arch = default_registry().get("x86-64")
    t, _ = _pte_tables(arch, [0] * 96, 0, 3)  # every table full: 128 KiB arrays
    image = t.image()
    expected = _flat(Walker(image, arch, t.root))
    kept = list(Walker(image, arch, t.root, grouped=True, group_entries=32 * 512))
    assert len([b for b in kept if isinstance(b, LeafBatch)]) == 3
    assert _flat(kept) == expected
    sliced = [b.pa[5:9] for b in kept if isinstance(b, LeafBatch)]  # views keep memory too
    walker = Walker(image, arch, t.root, grouped=True, group_entries=32 * 512)
    del kept
    assert [len(b) for b in walker if isinstance(b, LeafBatch)] == [32 * 512] * 3
    assert len(walker._pool._slabs) <= walker._pool.SLABS
    pas = [x[12] for x in expected if isinstance(x, tuple)]
    assert [s.tolist() for s in sliced] == [pas[k * 32][5:9] for k in range(3)]
