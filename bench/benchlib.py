"""Helpers shared by the benchmark modules: the 1 GiB process and how it is built.

A module of its own (not conftest.py) so that the benchmark modules can import it by a name no
other directory of the repo uses.
"""

from __future__ import annotations

import json
import lzma
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pfnmap import MAP_SHARED, PROT_READ, PROT_WRITE, IORegion, Machine, Process
from pfnmap.decode.image import open_image
from pfnmap.plugins.manager import default_registry

ARCH = "x86-64"
#: each half of the mapping: 512 MiB of anonymous memory, 512 MiB of /dev/mem
HALF = 512 << 20
RAM = "1G"
#: the device region mapped through /dev/mem: above RAM, 4 GiB aligned, inside the PA width
IO_BASE = 1 << 32
#: rounds of each slow benchmark: the whole `tox -e bench` run stays well under five minutes
ROUNDS = 3

#: the names the baselines are recorded under, for the ratio table
PY_LOOP = "baseline: python loop"
NP_TABLES = "baseline: numpy per table"
NP_FLAT = "baseline: numpy one array"

#: names of the decode benchmarks the targets compare (see conftest.TARGETS)
DECODE_1G = "decode 1 GiB: grouped walk"
DECODE_COPY = "decode 1 GiB baseline: numpy copy"
DECODE_MEM_SMALL = "decode memory: 256 MiB"
DECODE_MEM_BIG = "decode memory: 1 GiB"
VOL_MAPPING = "fixture: volatility3 mapping"
VOL_PFNMAP = "fixture: pfnmap grouped walk"
#: the whole-process benchmarks (test_bench_cli.py)
CLI_PASS = "cli: python -c pass"
CLI_HELP = "cli: pfnmap --help"
CLI_STDLIB = "cli: stdlib walker qemu-tlb"
CLI_VOL = "cli: volatility3 translate every leaf"
CLI_FORMATS = ("qemu-tlb", "qemu-mem", "jsonl", "csv", "table", "summary")


def cli_decode_name(fmt: str) -> str:
    return f"cli: decode {fmt}"


FORK = "fork"
MUNMAP = "munmap: forked child"


@dataclass
class BigProcess:
    """A process with the 1 GiB mapping ``[start, start + length)``, the anonymous half first."""

    machine: Machine
    proc: Process
    start: int
    length: int
    npages: int


def fault_in(proc: Process, addr: int, length: int) -> None:
    """Write one byte per page, as a user program touching fresh memory would."""
    page_size = proc.machine.arch.page_size
    for off in range(0, length, page_size):
        proc.write(addr + off, b"\x01")


def new_machine() -> Machine:
    """1 GiB of RAM and a 512 MiB device region ("fb0") for /dev/mem to map."""
    return Machine(ARCH, ram=RAM, io=[IORegion("fb0", IO_BASE, HALF)])


def map_big(proc: Process, fd: int) -> int:
    """mmap the anonymous half (every page faulted in) and the /dev/mem half right above it
    (MAP_SHARED: remap_pfn_range fills its 131,072 raw PFN ptes at mmap time); returns the
    start of the 1 GiB."""
    anon = proc.mmap(HALF)
    fault_in(proc, anon, HALF)
    devmem = proc.mmap(HALF, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset=IO_BASE)
    if devmem != anon + HALF:
        raise RuntimeError(f"the two halves are not adjacent: {anon:#x}, {devmem:#x}")
    return anon


def build_big() -> BigProcess:
    machine = new_machine()
    proc = machine.spawn("bench")
    start = map_big(proc, proc.open("/dev/mem"))
    npages = 2 * HALF // machine.arch.page_size
    if sum(len(proc.ptes(vma)) for vma in proc.vmas) != npages:
        raise RuntimeError("the 1 GiB mapping does not have one pte per page")
    return BigProcess(machine, proc, start, 2 * HALF, npages)


# dump images -------------------------------------------------------------------------------------
PAGE = 4096
ENTRIES = 512
#: the pte tables of a 1 GiB image (1 GiB / 4 KiB) and of the 256 MiB one
TABLES_1G = 1 << 18
TABLES_256M = 1 << 16


def write_pte_image(path: Path, pte_tables: int) -> int:
    """A raw x86-64 image that is almost all last-level tables; returns the number of ptes.

    One pgd, one pud, ``pte_tables / 512`` pmd tables, then ``pte_tables`` full pte tables
    whose 512 ptes each map consecutive frames (PAGE_SHARED). Written a pmd's worth (2 MiB)
    at a time, so building the 1 GiB image takes little memory. The root is at 0.
    """
    arch = default_registry().get(ARCH)
    n_pmd = -(-pte_tables // ENTRIES)
    if n_pmd > ENTRIES:
        raise ValueError("one pud table holds at most 512 pmd tables")
    head = np.zeros((2 + n_pmd, ENTRIES), dtype="<u8")
    head[0, 0] = arch.mk_table_entry(0, PAGE)
    head[1, :n_pmd] = [arch.mk_table_entry(1, (2 + i) * PAGE) for i in range(n_pmd)]
    first = (2 + n_pmd) * PAGE
    addrs = first + np.arange(pte_tables, dtype=np.uint64) * np.uint64(PAGE)
    head[2:].reshape(-1)[:pte_tables] = addrs | np.uint64(arch.mk_table_entry(2, 0))
    prot = np.uint64(arch.PAGE_SHARED)
    with open(path, "wb") as f:
        f.write(head.tobytes())
        for chunk in range(0, pte_tables, ENTRIES):
            k = min(ENTRIES, pte_tables - chunk)
            pfns = np.arange(chunk * ENTRIES, (chunk + k) * ENTRIES, dtype=np.uint64)
            f.write((((pfns + np.uint64(1 << 20)) << np.uint64(12)) | prot).tobytes())
    return pte_tables * ENTRIES


FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "qemu" / "x86-64"


def fixture_as_raw(path: Path) -> tuple[int, int]:
    """The real-kernel x86-64 fixture (an ELF core of its page-table frames) as a raw image of
    the guest's whole RAM from physical address 0, holes as zeros (a sparse file), so that
    volatility3 sees every mapped frame as present; returns (root, RAM bytes)."""
    meta = json.loads((FIXTURE / "meta.json").read_text())
    core = path.with_suffix(".elf")
    core.write_bytes(lzma.decompress((FIXTURE / meta["core"]).read_bytes()))
    ram = int(meta["ram_bytes"])
    with open_image(core) as image, open(path, "wb") as out:
        out.truncate(ram)
        for seg in image.segments:
            out.seek(seg.start)
            out.write(image.read(seg.start, seg.size))
    return int(meta["root"], 16), ram
