"""The pytest plugin of pfnmap (entry point ``pfnmap`` in the ``pytest11`` group).

Loading it costs an import of pfnmap and nothing else: it adds options and fixtures, and the
conformance kit runs only when asked for.

Options (group "pfnmap")::

    --pfnmap-conformance=ARCH   add the conformance kit to the run, on ARCH (repeat it,
                                separate names with commas, or say "all")
    --pfnmap-arch=ARCH          the arches the ``pfnmap_arch`` fixture runs your own tests on
                                (same syntax; default: every registered arch)
    --pfnmap-plugin=MODULE      import MODULE and register it as an arch plugin first, to try
                                a plugin that is not installed yet (repeatable)

Fixtures: ``pfnmap_arch`` (an :class:`pfnmap.arch.Arch`; a test that asks for it runs once per
selected arch), ``pfnmap_machine`` (a fresh machine on it, audited after the test),
``pfnmap_machine_factory`` (more machines, any arch or RAM size, audited the same way),
``pfnmap_tables`` (:class:`pfnmap.testing.tables.SyntheticTables` on it), and
``pfnmap_registry`` / ``pfnmap_plugin_manager`` (where the arches come from).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pluggy

    from pfnmap.arch import Arch
    from pfnmap.machine import Machine
    from pfnmap.plugins.manager import ArchRegistry
    from pfnmap.testing.machines import ArchSource
    from pfnmap.testing.tables import SyntheticTables

#: the conformance kit, collected by canonical module name (see :class:`KitModule`)
KIT_MODULE = "pfnmap.testing.conformance"
#: modules whose plain asserts pytest rewrites, as in any test file
REWRITTEN = (KIT_MODULE, "pfnmap.testing.checks")

_SOURCE = pytest.StashKey["ArchSource"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pfnmap", "pfnmap arch plugins and their conformance kit")
    group.addoption(
        "--pfnmap-conformance",
        action="append",
        default=[],
        metavar="ARCH",
        help="add pfnmap's conformance kit to the run, on ARCH (comma-separated, "
        "repeatable, or 'all')",
    )
    group.addoption(
        "--pfnmap-arch",
        action="append",
        default=[],
        metavar="ARCH",
        help="arches the pfnmap_arch fixture runs tests on (default: every registered arch)",
    )
    group.addoption(
        "--pfnmap-plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE and register it as a pfnmap arch plugin (repeatable)",
    )


def _names(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out += [name.strip() for name in value.split(",") if name.strip()]
    return out


def arch_source(config: pytest.Config) -> ArchSource:
    """The manager and registry of this session (built on first use)."""
    if _SOURCE not in config.stash:
        from pfnmap.testing.machines import ArchSource

        modules = _names(config.getoption("pfnmap_plugin"))
        try:
            source = ArchSource.with_modules(modules) if modules else ArchSource.default()
        except ImportError as exc:
            raise pytest.UsageError(f"--pfnmap-plugin: {exc}") from None
        except Exception as exc:  # a plugin that pluggy or pfnmap refuses
            raise pytest.UsageError(f"--pfnmap-plugin: {type(exc).__name__}: {exc}") from None
        config.stash[_SOURCE] = source
    return config.stash[_SOURCE]


def selected_arches(config: pytest.Config, option: str | None = None) -> list[str]:
    """The arch names chosen on the command line, checked against the registry.

    ``option`` "pfnmap_conformance" or "pfnmap_arch" reads one option; None reads both (what
    the ``pfnmap_arch`` fixture runs on). Nothing chosen, or "all", means every registered
    arch. An unknown name, or the arch of a broken plugin, is a usage error that says why.
    """
    options = [option] if option else ["pfnmap_conformance", "pfnmap_arch"]
    names = _names([v for opt in options for v in config.getoption(opt)])
    registry = arch_source(config).registry
    if not names or "all" in names:
        names = registry.names() + [n for n in names if n != "all"]
    flag = "--" + (option or "pfnmap-arch").replace("_", "-")
    from pfnmap.errors import PfnmapError

    for name in names:
        try:
            registry.get(name)
        except PfnmapError as exc:
            raise pytest.UsageError(f"{flag}: {exc}") from None
    return list(dict.fromkeys(names))


@functools.cache
def kit_path() -> Path:
    """Where the kit module is installed."""
    spec = importlib.util.find_spec(KIT_MODULE)
    assert spec is not None and spec.origin is not None, KIT_MODULE
    return Path(spec.origin).resolve()


def pytest_configure(config: pytest.Config) -> None:
    not_yet = [name for name in REWRITTEN if name not in sys.modules]
    if not_yet:  # (a module imported already, by an outer session, keeps plain asserts)
        pytest.register_assert_rewrite(*not_yet)
    if not config.getoption("pfnmap_conformance"):
        return
    selected_arches(config, "pfnmap_conformance")  # refuse a bad name before collecting
    kit = kit_path()
    named = {arg.split("::")[0] for arg in config.args}
    if KIT_MODULE not in named and not any(_same_file(arg, kit) for arg in named):
        config.args.append(str(kit))


def _same_file(arg: str, kit: Path) -> bool:
    try:
        return Path(arg).resolve() == kit
    except OSError:
        return False


class KitModule(pytest.Module):
    """The conformance kit, imported by its canonical name ``pfnmap.testing.conformance``.

    pytest would import a test file by a name derived from the directories around it; in a
    source checkout installed in development mode that is ``core.testing.conformance`` (the
    package lives in core/), a second copy of pfnmap under another name. Importing by the
    canonical name gives the one copy everybody else uses.
    """

    def _getobj(self) -> Any:
        try:
            return importlib.import_module(KIT_MODULE)
        except ImportError as exc:  # hypothesis missing, most likely: say so, not a traceback
            raise self.CollectError(f"cannot import {KIT_MODULE}: {exc}") from exc


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    if module_path.resolve() == kit_path():
        # named by module, not by a path that may lie outside the rootdir (site-packages)
        return KitModule.from_parent(parent, path=module_path, nodeid=KIT_MODULE)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pfnmap_arch" not in metafunc.fixturenames:
        return
    config = metafunc.config
    in_kit = metafunc.module.__name__ == KIT_MODULE
    names = selected_arches(config, "pfnmap_conformance" if in_kit else None)
    metafunc.parametrize("pfnmap_arch", names, indirect=True, ids=names, scope="session")


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not config.getoption("pfnmap_conformance"):
        return []
    names = ", ".join(selected_arches(config, "pfnmap_conformance"))
    return [f"pfnmap conformance kit: {names}"]


# fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pfnmap_plugin_manager(request: pytest.FixtureRequest) -> pluggy.PluginManager:
    """The pluggy manager the session's arches and machines come from."""
    return arch_source(request.config).pm


@pytest.fixture(scope="session")
def pfnmap_registry(request: pytest.FixtureRequest) -> ArchRegistry:
    """The validated arches of the session (broken plugins are in ``.broken``)."""
    return arch_source(request.config).registry


@pytest.fixture(scope="session")
def pfnmap_arch(request: pytest.FixtureRequest) -> Arch:
    """The arch under test; a test that asks for it runs once per selected arch."""
    name = getattr(request, "param", None)
    if name is None:
        name = selected_arches(request.config)[0]
    return arch_source(request.config).arch(name)


@pytest.fixture
def pfnmap_machine_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Machine]]:
    """``make(arch=None, ram="16M", **machine_kwargs)``: machines audited after the test.

    ``arch`` None is the test's ``pfnmap_arch`` (or the first selected arch). After the test
    every machine made must pass :func:`pfnmap.testing.machines.finish`.
    """
    from pfnmap.testing.machines import DEFAULT_RAM, finish

    source = arch_source(request.config)
    made: list[Machine] = []

    def make(arch: str | Arch | None = None, ram: int | str = DEFAULT_RAM, **kw: Any) -> Machine:
        if arch is None:
            arch = request.getfixturevalue("pfnmap_arch")
        machine = source.machine(arch, ram=ram, **kw)
        made.append(machine)
        return machine

    yield make
    for machine in made:
        finish(machine)


@pytest.fixture
def pfnmap_machine(pfnmap_arch: Arch, pfnmap_machine_factory: Callable[..., Machine]) -> Machine:
    """A fresh 16 MiB machine on the arch under test, audited after the test."""
    return pfnmap_machine_factory(pfnmap_arch)


@pytest.fixture
def pfnmap_tables(
    pfnmap_arch: Arch, pfnmap_machine_factory: Callable[..., Machine]
) -> Iterator[SyntheticTables]:
    """An empty synthetic page-table tree on the arch under test, released after the test."""
    from pfnmap.testing.tables import SyntheticTables

    tables = SyntheticTables(pfnmap_machine_factory(pfnmap_arch))
    yield tables
    tables.release()
