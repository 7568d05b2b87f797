"""Shared fixtures. The semantic tests run on one arch per session, chosen with ``--arch``
(default x86-64), so ``pytest --arch x86-pae`` runs the same suite on another encoding."""

from __future__ import annotations

import pytest

from pfnmap import Machine
from pfnmap.plugins.manager import default_registry


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--arch",
        action="store",
        default="x86-64",
        help="arch to run the semantic suite on (see `pfnmap arches`)",
    )


@pytest.fixture(scope="session")
def arch_name(request: pytest.FixtureRequest) -> str:
    name = request.config.getoption("--arch")
    default_registry().get(name)  # fail early and clearly on a typo
    return name


@pytest.fixture
def machine(arch_name: str):
    """A fresh 64 MiB machine; after the test every process is exited and the whole machine
    must be consistent (every count and mapcount back where its holders say, no table leaked)."""
    m = Machine(arch=arch_name, ram="64M")
    yield m
    m.check_invariants()
    for proc in list(m.processes.values()):
        proc.exit()
    m.check_invariants()
    assert not m.processes
    leaked = [pfn for pfn in range(m.phys.nr_pages) if "pgtable" in m.phys.flag_names(pfn)]
    assert not leaked, f"page-table frames left after every process exited: {leaked}"


@pytest.fixture
def proc(machine: Machine):
    return machine.spawn("test")


@pytest.fixture
def page_size(machine: Machine) -> int:
    return machine.arch.page_size
