"""pfnmap and volatility3 decoding the same real kernel's page tables.

The image is the x86-64 QEMU fixture (tests/fixtures/qemu/x86-64: a Linux guest with 256 MiB
of RAM, its page-table frames in an ELF core) turned into a raw image of the whole RAM from
physical address 0 (``benchlib.fixture_as_raw``): volatility3's ``mapping`` reports only
frames its physical layer holds, and a raw image holds them all. Both sides start from the
same root (CR3) and open the file in every round:

- ``fixture: volatility3 mapping`` -- volatility3 used as a library: a context, a
  ``FileLayer`` over the raw file, a ``LinuxIntel32e`` layer with ``page_map_offset`` = the
  root, and ``list(layer.mapping(0, 1 << 48, ignore_errors=True))``: every mapped chunk of
  the 48-bit address space, contiguous chunks merged. A fresh context and layer each round,
  so its table and translation caches start cold, as pfnmap's walk does;
- ``fixture: pfnmap grouped walk`` -- ``Walker(..., grouped=True)``: every leaf with its VA,
  PA, flags and presence;
- ``fixture: pfnmap per-table walk`` and ``fixture: pfnmap ranges`` -- the default walk, and
  the walk merged into ranges (contiguous VA and PA, the same flags).

They do not do exactly the same work. volatility3 follows the hardware's view and skips what
it cannot translate, including every table whose entries are all identical (the kernel's
ESPFIX area: thousands of pmd entries pointing at one pte table, which pfnmap walks, like
QEMU's ``info tlb``); pfnmap reports every leaf entry, present or not. The extra_info of each
benchmark says what it found. The units are 4 KiB pages of address space found mapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from benchlib import VOL_MAPPING, VOL_PFNMAP, fixture_as_raw

from pfnmap.decode.image import open_raw
from pfnmap.decode.walker import LeafBatch, Range, Walker, ranges
from pfnmap.plugins.manager import default_registry

GROUP = "decode: a real kernel's tables (x86-64 fixture)"
ROUNDS = 5
PAGE = 4096


@dataclass
class Fixture:
    path: Path
    root: int
    #: 4 KiB pages volatility3 finds mapped (the unit of every benchmark here)
    vol_pages: int


def vol_mapping(path: Path, root: int) -> list[tuple[int, int, int, int, str]]:
    """volatility3's Intel layers over the raw image: every mapped chunk of the address space."""
    from volatility3.framework import contexts
    from volatility3.framework.layers import intel, physical

    ctx = contexts.Context()
    ctx.config["pfnmap.base.location"] = path.resolve().as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "pfnmap.base", "base"))
    ctx.config["pfnmap.intel.memory_layer"] = "base"
    ctx.config["pfnmap.intel.page_map_offset"] = root
    # LinuxIntel32e (PROT_NONE and the 46-bit physical mask of these kernels) where this
    # volatility3 has it
    layer_class = getattr(intel, "LinuxIntel32e", intel.Intel32e)
    layer = layer_class(ctx, "pfnmap.intel", "intel")
    ctx.add_layer(layer)
    try:
        return list(layer.mapping(0, 1 << 48, ignore_errors=True))
    finally:
        ctx.layers["base"].destroy()


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    pytest.importorskip("volatility3", reason="volatility3 is in the bench extra")
    path = tmp_path_factory.mktemp("vol") / "x86-64.raw"
    root, _ = fixture_as_raw(path)
    pages = sum(size for _, size, _, _, _ in vol_mapping(path, root)) // PAGE
    yield Fixture(path, root, pages)


@pytest.fixture(scope="module")
def arch():
    return default_registry().get("x86-64")


@pytest.mark.benchmark(group=GROUP)
def test_volatility3_mapping(benchmark, fixture: Fixture, record) -> None:
    chunks = benchmark.pedantic(
        vol_mapping, (fixture.path, fixture.root), rounds=ROUNDS, warmup_rounds=1
    )
    benchmark.extra_info["chunks"] = len(chunks)
    benchmark.extra_info["pages_mapped"] = fixture.vol_pages
    record(VOL_MAPPING, fixture.vol_pages, "pages")


def _pfnmap_walk(fixture: Fixture, arch, grouped: bool) -> tuple[int, int]:
    """(leaves, 4 KiB pages the present leaves map)."""
    with open_raw(fixture.path) as image:
        n = pages = 0
        for b in Walker(image, arch, fixture.root, grouped=grouped):
            if isinstance(b, LeafBatch):
                n += len(b)
                pages += int(b.present.sum()) * (b.size // PAGE)
        return n, pages


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "per-table"])
def test_pfnmap_walk(benchmark, fixture: Fixture, arch, grouped: bool, record) -> None:
    leaves, pages = benchmark.pedantic(
        _pfnmap_walk, (fixture, arch, grouped), rounds=ROUNDS, warmup_rounds=1
    )
    benchmark.extra_info["leaves"] = leaves
    benchmark.extra_info["pages_mapped"] = pages
    assert pages >= fixture.vol_pages  # everything volatility3 sees, and ESPFIX
    name = VOL_PFNMAP if grouped else "fixture: pfnmap per-table walk"
    record(name, fixture.vol_pages, "pages")


@pytest.mark.benchmark(group=GROUP)
def test_pfnmap_ranges(benchmark, fixture: Fixture, arch, record) -> None:
    def run() -> int:
        with open_raw(fixture.path) as image:
            walk = Walker(image, arch, fixture.root, grouped=True)
            return sum(1 for r in ranges(walk, arch) if isinstance(r, Range))

    benchmark.extra_info["ranges"] = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    record("fixture: pfnmap grouped ranges", fixture.vol_pages, "pages")
