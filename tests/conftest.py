"""Shared fixtures, options and hypothesis profiles.

The arch-dependent tests (every test that asks for ``arch_name``, directly or through ``machine``
and the other fixtures built on it) run on one arch per session, chosen with ``--arch`` (default
x86-64): ``pytest --arch x86-pae`` runs them on another encoding. ``--arch-only`` keeps only
those (plus the tests parametrized with that arch by name when it is not a built-in one, which
the main run covers), so the per-arch tox envs do not run the arch-independent tests again.

Hypothesis: every test runs under the profile named by ``HYPOTHESIS_PROFILE`` ("default", or
"nightly" for long runs); both have no deadline, because a loaded machine must not fail a test.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from pfnmap import Machine
from pfnmap.plugins import BUILTIN_ARCH_MODULES
from pfnmap.plugins.manager import default_registry
from pfnmap.testing.machines import finish

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "nightly",
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--arch",
        action="store",
        default="x86-64",
        help="arch to run the semantic suite on (see `pfnmap arches`)",
    )
    parser.addoption(
        "--arch-only",
        action="store_true",
        help="run only the tests that depend on --arch (the per-arch tox envs)",
    )


def _builtin(arch: str) -> bool:
    registry = default_registry()
    owner = registry.owners.get(arch)
    return owner in BUILTIN_ARCH_MODULES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--arch-only"):
        return
    arch = config.getoption("--arch")
    named = not _builtin(arch)
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        by_name = named and arch in params.values()
        (keep if "arch_name" in item.fixturenames or by_name else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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
    finish(m)


@pytest.fixture
def proc(machine: Machine):
    return machine.spawn("test")


@pytest.fixture
def page_size(machine: Machine) -> int:
    return machine.arch.page_size
