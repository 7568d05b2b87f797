"""Helpers shared by the benchmark modules: the 1 GiB process and how it is built.

A module of its own (not conftest.py) so that the benchmark modules can import it by a name no
other directory of the repo uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfnmap import MAP_SHARED, PROT_READ, PROT_WRITE, IORegion, Machine, Process

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
