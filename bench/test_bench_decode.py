"""Dump decoding throughput: a 32 MiB x86-64 image of pte tables, read through mmap.

The image (built once per session in a temporary file) is one pgd, one pud, 16 pmd tables and
8,192 full pte tables: 4,194,304 present ptes mapping consecutive frames. Three ways through
the same entries, each recorded per pte for the ratio table:

- ``decode: walk`` -- :class:`pfnmap.decode.Walker` over the whole image: every table read as a
  numpy view and decoded with masks (present, leaf, addresses), yielding one batch per table;
- ``decode: ranges`` -- the same walk merged into ranges (vectorised, per table);
- ``decode baseline: numpy copy`` -- one copy of the image's bytes as a uint64 array (memory
  bandwidth);
- ``decode baseline: construct`` -- the pte layout's construct parser on 8,192 of the ptes:
  what decoding one entry at a time with construct costs (the walk must be far below it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pfnmap.decode import LeafBatch, Range, Walker, ranges
from pfnmap.image import PhysImage, open_raw
from pfnmap.plugins.manager import default_registry

GROUP = "decode: 32 MiB image of pte tables"
PTE_TABLES = 8192
ENTRIES = 512
PAGE = 4096
CONSTRUCT_SAMPLE = 8192


def _build(path: Path) -> int:
    """Write the image; returns the root table's address (0)."""
    arch = default_registry().get("x86-64")
    n_pmd = PTE_TABLES // ENTRIES
    first_pte = (2 + n_pmd) * PAGE
    tables = np.zeros((2 + n_pmd + PTE_TABLES, ENTRIES), dtype="<u8")
    tables[0, 0] = arch.mk_table_entry(0, PAGE)  # pgd -> pud
    for i in range(n_pmd):  # pud -> pmd tables
        tables[1, i] = arch.mk_table_entry(1, (2 + i) * PAGE)
    pte_addrs = first_pte + np.arange(PTE_TABLES, dtype=np.uint64) * np.uint64(PAGE)
    table_bits = np.uint64(arch.mk_table_entry(2, 0))
    tables[2 : 2 + n_pmd] = (pte_addrs | table_bits).reshape(n_pmd, ENTRIES)
    pfns = np.arange(PTE_TABLES * ENTRIES, dtype=np.uint64) + np.uint64(0x100000)
    prot = np.uint64(arch.PAGE_SHARED)
    tables[2 + n_pmd :] = ((pfns << np.uint64(12)) | prot).reshape(PTE_TABLES, ENTRIES)
    path.write_bytes(tables.tobytes())
    return 0


@pytest.fixture(scope="module")
def image() -> Iterator[PhysImage]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ptes.raw"
        _build(path)
        img = open_raw(path)
        yield img
        img.close()


@pytest.fixture(scope="module")
def arch():
    return default_registry().get("x86-64")


NPTES = PTE_TABLES * ENTRIES


@pytest.mark.benchmark(group=GROUP)
def test_decode_walk(benchmark, image: PhysImage, arch, record) -> None:
    def run() -> int:
        return sum(len(b) for b in Walker(image, arch, 0) if isinstance(b, LeafBatch))

    assert benchmark.pedantic(run, rounds=3, warmup_rounds=1) == NPTES
    record("decode: walk", NPTES, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_decode_ranges(benchmark, image: PhysImage, arch, record) -> None:
    def run() -> int:
        return sum(r.pages for r in ranges(Walker(image, arch, 0), arch) if isinstance(r, Range))

    assert benchmark.pedantic(run, rounds=3, warmup_rounds=1) == NPTES
    record("decode: ranges", NPTES, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_numpy_copy(benchmark, image: PhysImage, record) -> None:
    size = image.size

    def run() -> int:
        arr = image.table(0, size // 8, "<u8").copy()
        return int(arr.size)

    assert benchmark(run) == size // 8
    record("decode baseline: numpy copy", NPTES, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_construct_per_entry(benchmark, image: PhysImage, arch, record) -> None:
    first = (2 + PTE_TABLES // ENTRIES) * PAGE
    values = image.table(first, CONSTRUCT_SAMPLE, "<u8").tolist()
    fmt = arch.pte_format

    def run() -> int:
        return sum(1 for v in values if fmt.decode(v)["present"])

    assert benchmark.pedantic(run, rounds=3, warmup_rounds=1) == CONSTRUCT_SAMPLE
    record("decode baseline: construct", CONSTRUCT_SAMPLE, "ptes")
