"""Baselines over the same 262,144 pte values, to express the emulator's costs as ratios.

- a plain Python loop doing the least per-entry work (``acc += pte & mask``);
- numpy over the 513 pte-table views, one masked count per table: the floor of a per-table
  vectorised copy_pte_range / zap_pte_range (the per-table Python overhead included);
- numpy over one contiguous array of the same bytes: the memory-bandwidth floor.

These are timed with pytest-benchmark's own calibration (many rounds: they are short).
"""

from __future__ import annotations

import numpy as np
import pytest
from benchlib import NP_FLAT, NP_TABLES, PY_LOOP, BigProcess

GROUP = "1 GiB mapping: 262,144 ptes"


def _mask(big: BigProcess) -> int:
    """The pte's low bits (flags on every arch the project has): any int mask would do."""
    return big.machine.arch.page_size - 1


@pytest.mark.benchmark(group=GROUP)
def test_python_loop(benchmark, big: BigProcess, pte_values: list[int], record) -> None:
    mask = _mask(big)

    def loop() -> int:
        acc = 0
        for x in pte_values:
            acc += x & mask
        return acc

    assert benchmark(loop) > 0
    record(PY_LOOP, len(pte_values), "entries")


@pytest.mark.benchmark(group=GROUP)
def test_numpy_per_table(benchmark, big: BigProcess, pte_table_views, record) -> None:
    mask = _mask(big)

    def per_table() -> int:
        acc = 0
        for view in pte_table_views:
            acc += int(np.count_nonzero(view & mask))
        return acc

    assert benchmark(per_table) == big.npages
    record(NP_TABLES, sum(v.size for v in pte_table_views), "entries")


@pytest.mark.benchmark(group=GROUP)
def test_numpy_one_array(benchmark, big: BigProcess, pte_table_views, record) -> None:
    mask = _mask(big)
    flat = np.concatenate(pte_table_views)  # a copy of the same table bytes, contiguous

    def one_pass() -> int:
        return int(np.count_nonzero(flat & mask))

    assert benchmark(one_pass) == big.npages
    record(NP_FLAT, flat.size, "entries")
