"""Bulk decoding of a 1 GiB x86-64 image of last-level tables: 134,217,728 ptes.

The images (built once per session in a temporary directory, about 2 s): one pgd, one pud,
512 pmd tables and 262,144 full pte tables (``benchlib.write_pte_image``), and the same with
65,536 pte tables (256 MiB). Both are read through mmap, as ``pfnmap decode`` reads a file.

- ``decode 1 GiB: grouped walk`` -- :class:`pfnmap.decode.walker.Walker` with ``grouped=True``: the
  512 pte tables under each pmd table are read and decoded as one array (present, leaf
  addresses, VAs, reserved bits), one batch per pmd table;
- ``decode 1 GiB: grouped ranges`` -- the same walk merged into ranges;
- ``decode 256 MiB: per-table walk`` -- the default walk, one batch per pte table (256 MiB
  only: it is 30 times slower);
- ``decode 1 GiB baseline: numpy copy`` -- one copy of the image's bytes into a new array, the
  memory-bandwidth floor the grouped walk is compared with;
- ``decode baseline: construct per entry`` -- the pte layout's construct parser on 8,192 of the
  ptes, per pte: what decoding one entry at a time with construct would cost;
- ``decode memory: 256 MiB`` / ``1 GiB`` -- one grouped walk each under tracemalloc, whose peak
  (numpy's buffers included) the run reports; decoding must not grow with the image.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from benchlib import (
    DECODE_1G,
    DECODE_COPY,
    DECODE_MEM_BIG,
    DECODE_MEM_SMALL,
    TABLES_1G,
    TABLES_256M,
    write_pte_image,
)

from pfnmap.decode.image import PhysImage, open_raw
from pfnmap.decode.walker import LeafBatch, Range, Walker, ranges
from pfnmap.plugins.manager import default_registry

GROUP = "decode: images of pte tables"
CONSTRUCT_SAMPLE = 8192
#: slow rounds: the 1 GiB walk takes a fraction of a second, the per-table walk seconds
ROUNDS = 5


@dataclass
class Image:
    image: PhysImage
    ptes: int
    path: Path


def _image(tmp: Path, name: str, tables: int) -> Image:
    path = tmp / name
    ptes = write_pte_image(path, tables)
    return Image(open_raw(path), ptes, path)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Image]]:
    tmp = tmp_path_factory.mktemp("decode")
    made = {
        "1G": _image(tmp, "ptes-1g.raw", TABLES_1G),
        "256M": _image(tmp, "ptes-256m.raw", TABLES_256M),
    }
    yield made
    for img in made.values():
        img.image.close()
        img.path.unlink()


@pytest.fixture(scope="module")
def arch():
    return default_registry().get("x86-64")


def _walk(img: Image, arch, grouped: bool) -> int:
    return sum(
        len(b) for b in Walker(img.image, arch, 0, grouped=grouped) if isinstance(b, LeafBatch)
    )


@pytest.mark.benchmark(group=GROUP)
def test_decode_1g_grouped_walk(benchmark, images, arch, record) -> None:
    img = images["1G"]
    assert benchmark.pedantic(_walk, (img, arch, True), rounds=ROUNDS, warmup_rounds=1) == img.ptes
    record(DECODE_1G, img.ptes, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_decode_1g_grouped_ranges(benchmark, images, arch, record) -> None:
    img = images["1G"]

    def run() -> int:
        walk = Walker(img.image, arch, 0, grouped=True)
        return sum(r.pages for r in ranges(walk, arch) if isinstance(r, Range))

    assert benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1) == img.ptes
    record("decode 1 GiB: grouped ranges", img.ptes, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_decode_256m_per_table_walk(benchmark, images, arch, record) -> None:
    img = images["256M"]
    assert benchmark.pedantic(_walk, (img, arch, False), rounds=2, warmup_rounds=0) == img.ptes
    record("decode 256 MiB: per-table walk", img.ptes, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_numpy_copy(benchmark, images, record) -> None:
    img = images["1G"]
    size = img.image.size

    def run() -> int:
        return int(img.image.table(0, size // 8, "<u8").copy().size)

    assert benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1) == size // 8
    # per pte of the image, like the walks (the image also holds 514 upper tables)
    record(DECODE_COPY, img.ptes, "ptes")


@pytest.mark.benchmark(group=GROUP)
def test_construct_per_entry(benchmark, images, arch, record) -> None:
    img = images["1G"]
    first = img.image.size - img.ptes * 8  # the pte tables come after the upper ones
    values = img.image.table(first, CONSTRUCT_SAMPLE, "<u8").tolist()
    fmt = arch.pte_format

    def run() -> int:
        return sum(1 for v in values if fmt.decode(v)["present"])

    assert benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1) == CONSTRUCT_SAMPLE
    record("decode baseline: construct per entry", CONSTRUCT_SAMPLE, "ptes")


def _peak(img: Image, arch) -> int:
    """tracemalloc's peak over one grouped walk of the image (the image's mmap is not counted:
    the kernel's page cache holds it; numpy's buffers are)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        n = _walk(img, arch, True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == img.ptes
    return peak


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("size", ["256M", "1G"])
def test_decode_memory(benchmark, images, arch, size, record_memory) -> None:
    """Not a speed: the walk runs under tracemalloc, and its peak goes to the targets table."""
    img = images[size]
    peaks: list[int] = []
    benchmark.pedantic(lambda: peaks.append(_peak(img, arch)), rounds=1, warmup_rounds=0)
    if peaks:  # --benchmark-disable still runs it once
        name = DECODE_MEM_SMALL if size == "256M" else DECODE_MEM_BIG
        record_memory(name, img.image.size, max(peaks))
        benchmark.extra_info["tracemalloc_peak_bytes"] = max(peaks)
