"""Fixtures and the end-of-run ratio table of the pfnmap benchmarks.

The 1 GiB process (see benchlib) is built once per session and shared by the fork, munmap and
baseline benchmarks. Each benchmark records its mean time and how many entries (ptes or faults)
one round handles; after the run a table gives, for each, the rate and the per-entry cost as a
multiple of the plain Python loop and of the per-table numpy pass measured in the same run on
the same pte values.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from benchlib import (
    CLI_FORMATS,
    CLI_HELP,
    CLI_PASS,
    CLI_STDLIB,
    CLI_VOL,
    DECODE_1G,
    DECODE_COPY,
    DECODE_MEM_BIG,
    DECODE_MEM_SMALL,
    FORK,
    MUNMAP,
    NP_FLAT,
    NP_TABLES,
    PY_LOOP,
    VOL_MAPPING,
    VOL_PFNMAP,
    BigProcess,
    build_big,
    cli_decode_name,
)

from pfnmap.kernel.mmap import pte_tables


@pytest.fixture(scope="session")
def big() -> Iterator[BigProcess]:
    """The 1 GiB process, built once (about 4 s). It forks once here: the first fork
    write-protects the parent's anonymous ptes, so every timed fork starts from the same state."""
    b = build_big()
    b.proc.fork().exit()
    yield b
    b.machine.check_invariants()  # what the benchmarks left behind is consistent
    for proc in list(b.machine.processes.values()):
        proc.exit()


@pytest.fixture(scope="session")
def pte_values(big: BigProcess) -> list[int]:
    """The 262,144 raw pte values of the 1 GiB mapping, as Python ints."""
    return [pte for vma in big.proc.vmas for _, pte in big.proc.ptes(vma)]


@pytest.fixture(scope="session")
def pte_table_views(big: BigProcess) -> list[np.ndarray]:
    """numpy views of the pte-table slices the 1 GiB mapping uses (513 of them: the mapping
    starts at TASK_UNMAPPED_BASE, which is not 2 MiB aligned)."""
    tables = big.machine.tables
    return [
        tables.table_view(tables.last, table)[first : first + count]
        for _, table, first, count in pte_tables(big.proc.mm, big.start, big.start + big.length)
    ]


# results and the ratio table -------------------------------------------------------------------
RESULTS = pytest.StashKey[dict]()
MEMORY = pytest.StashKey[dict]()

#: side by side: (benchmark, baseline) pairs measured on the same data in the same run
PAIRS = [
    (DECODE_1G, DECODE_COPY),
    (DECODE_1G, "decode baseline: construct per entry"),
    (DECODE_1G, "decode 256 MiB: per-table walk"),
    ("decode 1 GiB: grouped ranges", DECODE_COPY),
    (FORK, PY_LOOP),
    (MUNMAP, PY_LOOP),
    ("munmap: sole owner", PY_LOOP),
    (VOL_PFNMAP, VOL_MAPPING),
    ("fixture: pfnmap per-table walk", VOL_MAPPING),
    ("fixture: pfnmap grouped ranges", VOL_MAPPING),
    ("mprotect: 16 TiB vma (la57)", "mprotect: 64 KiB vma (la57)"),
    ("check_invariants: 4 TiB vma", "check_invariants: 64 KiB vma"),
    (cli_decode_name("qemu-tlb"), CLI_VOL),
    (cli_decode_name("qemu-tlb"), CLI_STDLIB),
    (CLI_STDLIB, CLI_PASS),
    (CLI_HELP, CLI_PASS),
    *((cli_decode_name(f), cli_decode_name("qemu-tlb")) for f in CLI_FORMATS if f != "qemu-tlb"),
]

#: memory may grow this much from the 256 MiB image to the 1 GiB one and still be "flat"
MEMORY_SLACK = 1.25

#: the issue's targets: (what, benchmark, baseline or None, threshold). With a baseline the
#: measure is how many times the baseline's per-entry time the benchmark's is faster (fastest
#: rounds); without one it is the benchmark's rate over its mean round.
TARGETS = [
    ("bulk decode rate >= 0.25 x numpy copy rate", DECODE_1G, DECODE_COPY, 0.25),
    ("fork >= 1M ptes/s", FORK, None, 1e6),
    ("munmap >= 1M ptes/s", MUNMAP, None, 1e6),
    ("faster than volatility3 >= 10x (same fixture)", VOL_PFNMAP, VOL_MAPPING, 10.0),
    # cost follows the tables present: a huge vma within 4x of a small one (issue 18)
    (
        "16 TiB mprotect <= 4x a 64 KiB one",
        "mprotect: 16 TiB vma (la57)",
        "mprotect: 64 KiB vma (la57)",
        0.25,
    ),
    (
        "4 TiB check_invariants <= 4x a 64 KiB one",
        "check_invariants: 4 TiB vma",
        "check_invariants: 64 KiB vma",
        0.25,
    ),
    ("cli: decode >= 10x faster than volatility3", cli_decode_name("qemu-tlb"), CLI_VOL, 10.0),
    ("cli: decode >= 2x faster than a stdlib walker", cli_decode_name("qemu-tlb"), CLI_STDLIB, 2.0),
    ("cli: table <= 3x qemu-tlb", cli_decode_name("table"), cli_decode_name("qemu-tlb"), 1 / 3),
    ("cli: pfnmap --help <= 5x python -c pass", CLI_HELP, CLI_PASS, 1 / 5),
]


@pytest.fixture
def record_memory(request: pytest.FixtureRequest):
    """``record_memory(name, image_bytes, peak_bytes)``: a decode's memory peak."""

    def _record(name: str, image_bytes: int, peak: int) -> None:
        request.config.stash.setdefault(MEMORY, {})[name] = (image_bytes, peak)

    return _record


@pytest.fixture
def record(request: pytest.FixtureRequest, benchmark):
    """``record(name, items, unit)`` after a benchmark ran: keep its min and mean for the ratio
    table and put the rate into the benchmark's extra_info (so it reaches --benchmark-json)."""

    def _record(name: str, items: int, unit: str) -> None:
        meta = benchmark.stats
        if meta is None:  # --benchmark-disable: nothing was measured
            return
        stats = meta.stats
        benchmark.extra_info[unit] = items
        benchmark.extra_info[f"{unit}_per_s"] = items / stats.mean
        request.config.stash.setdefault(RESULTS, {})[name] = (stats.min, stats.mean, items, unit)

    return _record


def _fmt_time(seconds: float) -> str:
    for scale, suffix in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {suffix}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_rate(rate: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.3g}{suffix}"
    return f"{rate:.3g}"


def _fmt_ratio(ratio: float) -> str:
    return f"{ratio:.3g}x" if ratio < 100 else f"{ratio:,.0f}x"


def _fmt_bytes(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _speedup(results: dict, name: str, baseline: str) -> float | None:
    """How many times faster per entry ``name`` is than ``baseline`` (fastest rounds)."""
    if name not in results or baseline not in results:
        return None
    per = results[name][0] / results[name][2]
    base = results[baseline][0] / results[baseline][2]
    return base / per


def _write_pairs(tr, results: dict) -> None:
    rows = [(a, b, _speedup(results, a, b)) for a, b in PAIRS]
    rows = [r for r in rows if r[2] is not None]
    if not rows:
        return
    tr.write_sep("-", "pfnmap: side by side (same data, same run; per entry, fastest rounds)")
    for name, baseline, x in rows:
        how = f"{x:.3g}x faster than" if x >= 1 else f"{1 / x:.3g}x slower than"
        tr.write_line(f"{name:32} {how:>20}  {baseline}")


def _write_targets(tr, results: dict, memory: dict) -> None:
    lines = []
    for what, name, baseline, threshold in TARGETS:
        if baseline is None:
            if name not in results:
                continue
            _, mean, items, unit = results[name]
            value = items / mean
            shown = f"{_fmt_rate(value)} {unit}/s"
        else:
            x = _speedup(results, name, baseline)
            if x is None:
                continue
            value, shown = x, f"{x:.3g}x"
        lines.append((what, shown, "met" if value >= threshold else "MISSED"))
    if DECODE_MEM_SMALL in memory and DECODE_MEM_BIG in memory:
        (small_size, small), (big_size, big) = memory[DECODE_MEM_SMALL], memory[DECODE_MEM_BIG]
        shown = (
            f"{_fmt_bytes(small)} for {small_size >> 20} MiB, {_fmt_bytes(big)} for "
            f"{big_size >> 20} MiB"
        )
        flat = big <= MEMORY_SLACK * small
        lines.append(("decode memory flat (tracemalloc peak)", shown, "met" if flat else "MISSED"))
    if not lines:
        return
    tr.write_sep("-", "pfnmap: targets")
    for what, shown, status in lines:
        tr.write_line(f"{what:48} {shown:>40}  {status}")


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """The rate is items / mean. The ratios compare the *min* per-entry times, the estimate
    least disturbed by whatever else the machine runs."""
    results: dict = config.stash.get(RESULTS, {})
    if not results:
        return
    baselines = [k for k in (PY_LOOP, NP_TABLES, NP_FLAT) if k in results]
    per_entry = {k: results[k][0] / results[k][2] for k in baselines}
    cols = [k for k in (PY_LOOP, NP_TABLES) if k in per_entry]
    tr = terminalreporter
    if not cols:  # only some benchmarks ran (-k): the side-by-side tables still apply
        _write_pairs(tr, results)
        _write_targets(tr, results, config.stash.get(MEMORY, {}))
        return
    tr.write_sep("-", "pfnmap: rate (items/mean); cost per entry (min) as a multiple of baselines")
    header = f"{'benchmark':38} {'min':>8} {'mean':>8} {'per entry':>9} {'rate':>17}"
    header += "".join(f" {'x ' + k.removeprefix('baseline: '):>19}" for k in cols)
    tr.write_line(header)
    for name in [k for k in results if k not in baselines] + baselines:
        low, mean, items, unit = results[name]
        per = low / items
        line = f"{name:38} {_fmt_time(low):>8} {_fmt_time(mean):>8} {_fmt_time(per):>9} "
        line += f"{_fmt_rate(items / mean) + ' ' + unit + '/s':>17}"
        line += "".join(f" {_fmt_ratio(per / per_entry[k]):>19}" for k in cols)
        tr.write_line(line)
    _write_pairs(tr, results)
    _write_targets(tr, results, config.stash.get(MEMORY, {}))
