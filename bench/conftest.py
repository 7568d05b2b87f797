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
from benchlib import NP_FLAT, NP_TABLES, PY_LOOP, BigProcess, build_big

from pfnmap.mmap import pte_tables


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
    tr.write_sep("-", "pfnmap: rate (items/mean); cost per entry (min) as a multiple of baselines")
    header = f"{'benchmark':30} {'min':>8} {'mean':>8} {'per entry':>9} {'rate':>17}"
    header += "".join(f" {'x ' + k.removeprefix('baseline: '):>19}" for k in cols)
    tr.write_line(header)
    for name in [k for k in results if k not in baselines] + baselines:
        low, mean, items, unit = results[name]
        per = low / items
        line = f"{name:30} {_fmt_time(low):>8} {_fmt_time(mean):>8} {_fmt_time(per):>9} "
        line += f"{_fmt_rate(items / mean) + ' ' + unit + '/s':>17}"
        line += "".join(f" {_fmt_ratio(per / per_entry[k]):>19}" for k in cols)
        tr.write_line(line)
