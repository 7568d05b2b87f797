"""The plugin system: the manager, the arch registry's validation, entry-point loading, and the
hooks the core calls (the fault and bad-pte observers, scoped per machine), and the arch's own
io_remap_pfn_range.

Third-party plugins are simulated with the objects in plugins_fixtures, registered on a fresh
``make_plugin_manager(autoload=False)`` under the name "acme", or served as fake entry points.
Kernel facts used: x86's ``#define io_remap_pfn_range remap_pfn_range``
(include/asm-x86_64/pgtable.h, 2.6.15) and print_bad_pte's format in mm/memory.c at the seed.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Iterator
from typing import Any

import pluggy
import pytest
from plugins_fixtures import (
    Acme64,
    ArchPlugin,
    BadGeometryArch,
    BareArch,
    DuplicateNameArch,
    GapArch,
    MissingOpArch,
    OverlapArch,
    Tracer,
    TypoPlugin,
    WrongByteOrderArch,
    raising_factory,
)

import pfnmap.arches.x86_64
import pfnmap.plugins.manager as manager_module
from pfnmap import (
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    BusError,
    Machine,
    PluginError,
    UnknownArch,
)
from pfnmap.arches.x86_64 import X86_64
from pfnmap.kernel.constants import VM_IO, VM_PFNMAP, VM_RESERVED
from pfnmap.kernel.normal_page import Verdict
from pfnmap.kernel.pgtable import pte_offset
from pfnmap.kernel.remap import remap_pfn_range
from pfnmap.plugins import BUILTIN_ARCH_MODULES, DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, hookimpl
from pfnmap.plugins.manager import (
    ArchRegistry,
    PluginWarning,
    build_registry,
    default_plugin_manager,
    default_registry,
    get_arch,
    make_plugin_manager,
)
from pfnmap.plugins.validation import validate_arch
from pfnmap.testing.machines import finish


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return make_plugin_manager(autoload=False)


@pytest.fixture(scope="module")
def builtin_names() -> list[str]:
    """The arches the built-in modules provide, in registration order."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build_registry(make_plugin_manager(autoload=False)).names()


def _quiet_registry(pm: pluggy.PluginManager) -> ArchRegistry:
    """build_registry, failing the test on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return build_registry(pm)


def _broken_registry(pm: pluggy.PluginManager) -> tuple[ArchRegistry, str]:
    """build_registry, expecting exactly one PluginWarning; returns it as text."""
    with pytest.warns(PluginWarning) as record:
        registry = build_registry(pm)
    messages = [str(w.message) for w in record if issubclass(w.category, PluginWarning)]
    assert len(messages) == 1, messages
    return registry, messages[0]


def _usable(registry: ArchRegistry, name: str = "x86-64") -> None:
    """The arch is registered, valid, and boots a machine that maps memory."""
    arch = registry.get(name)
    assert validate_arch(arch) == []
    machine = Machine(arch=arch, ram="8M")
    proc = machine.spawn()
    addr = proc.mmap(arch.page_size)
    proc.write(addr, b"usable")
    assert proc.read(addr, 6) == b"usable"
    proc.exit()
    machine.check_invariants()


# the manager and its built-ins ---------------------------------------------------------------
def test_builtins_are_registered_and_pending_checks_pass(
    pm: pluggy.PluginManager, builtin_names: list[str]
) -> None:
    names = {name for name, _ in pm.list_name_plugin()}
    assert set(BUILTIN_ARCH_MODULES) <= names
    pm.check_pending()
    assert not pm.hook.pfnmap_arches.spec.opts["firstresult"]
    registry = _quiet_registry(pm)
    assert registry.broken == {}
    assert registry.names() == builtin_names
    assert "x86-64" in builtin_names
    assert registry.owners["x86-64"] == "pfnmap.arches.x86_64"
    assert set(registry.owners.values()) <= set(BUILTIN_ARCH_MODULES)
    assert type(registry.get("x86-64")) is X86_64
    for name in builtin_names:
        assert validate_arch(registry.get(name)) == [], name


def test_default_registry_is_shared() -> None:
    assert default_registry() is default_registry()
    assert default_plugin_manager() is default_plugin_manager()
    assert get_arch("x86-64") is default_registry().arches["x86-64"]


def test_unknown_arch_lists_the_registered_ones(
    pm: pluggy.PluginManager, builtin_names: list[str]
) -> None:
    registry = _quiet_registry(pm)
    listed = ", ".join(sorted(builtin_names))
    with pytest.raises(UnknownArch) as info:
        registry.get("vax")
    assert str(info.value) == f"unknown arch 'vax' (registered: {listed})"
    with pytest.raises(KeyError):
        registry.get("vax")


def test_good_third_party_arch_is_registered(
    pm: pluggy.PluginManager, builtin_names: list[str]
) -> None:
    pm.register(ArchPlugin(lambda: [Acme64()]), name="acme")
    registry = _quiet_registry(pm)
    assert registry.names() == [*builtin_names, "acme-64"]
    assert registry.owners["acme-64"] == "acme"
    _usable(registry, "acme-64")
    _usable(registry, "x86-64")


def test_a_single_arch_may_be_returned_without_a_list(pm: pluggy.PluginManager) -> None:
    pm.register(ArchPlugin(Acme64), name="acme")
    assert "acme-64" in _quiet_registry(pm).arches


def test_hookimpl_without_a_hookspec_is_refused(entry_points: list) -> None:
    """check_pending() refuses ``pfnmap_arch`` (a typo) and the error names the plugin."""
    entry_points.append(FakeEntryPoint("acme", TypoPlugin()))
    with pytest.raises(PluginError) as info:
        make_plugin_manager(autoload=True)
    assert info.value.plugin == "acme"
    assert "pfnmap_arch" in info.value.problem
    assert "plugin 'acme'" in str(info.value)


# malformed third-party arches ----------------------------------------------------------------
BROKEN = [
    # (id, factory, text the warning must contain, name that must raise the PluginError)
    ("gap", GapArch, "layout 'pte': bits 0..0 of the 64-bit entry belong to no field", "acme"),
    ("overlap", OverlapArch, "more than the 64-bit entry (overlap at 'again')", "acme"),
    (
        "byte-order",
        WrongByteOrderArch,
        "acme-be: pte.present: derived mask 0x1 but construct builds 0x100000000000000",
        "acme-be",
    ),
    (
        "geometry",
        BadGeometryArch,
        "acme-geom: level pud starts at VA bit 31, but pmd ends at bit 30",
        "acme-geom",
    ),
    ("missing-op", MissingOpArch, "acme-noop: missing pte operation(s): pte_mkyoung", "acme-noop"),
    ("bare", BareArch, "acme-bare: missing pte operation(s): pte_pfn, pfn_pte", "acme-bare"),
    (
        "duplicate",
        DuplicateNameArch,
        "arch 'x86-64' is already provided by 'pfnmap.arches.x86_64'",
        "acme",
    ),
    (
        "raises",
        raising_factory,
        "pfnmap_arches() raised RuntimeError: acme firmware table not found",
        "acme",
    ),
    ("not-an-arch", lambda: [object()], "is not a pfnmap.arch.Arch instance", "acme"),
]


@pytest.mark.parametrize(
    ("factory", "problem", "lookup"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_broken_third_party_arch_is_skipped_with_a_warning(
    pm: pluggy.PluginManager, builtin_names: list[str], factory: Any, problem: str, lookup: str
) -> None:
    def arches() -> Any:
        made = factory()
        return made if isinstance(made, list) else [made]

    pm.register(ArchPlugin(arches), name="acme")
    registry, warning = _broken_registry(pm)
    assert "plugin 'acme'" in warning
    assert problem in warning
    # the good arches stay usable
    assert registry.names() == builtin_names
    assert registry.owners["x86-64"] == "pfnmap.arches.x86_64"
    _usable(registry)
    # the broken one answers with its error
    error = registry.broken["acme"]
    assert isinstance(error, PluginError)
    assert error.plugin == "acme"
    assert problem in error.problem
    with pytest.raises(PluginError) as info:
        registry.get(lookup)
    assert info.value is error


def test_a_broken_plugin_is_skipped_as_a_whole(
    pm: pluggy.PluginManager, builtin_names: list[str]
) -> None:
    """One bad arch in a plugin's list: none of that plugin's arches is registered."""
    pm.register(ArchPlugin(lambda: [Acme64(), DuplicateNameArch()]), name="acme")
    registry, warning = _broken_registry(pm)
    assert "already provided" in warning
    assert "acme-64" not in registry.arches
    assert registry.names() == builtin_names


def test_a_result_that_is_not_a_list_is_the_plugins_error(pm: pluggy.PluginManager) -> None:
    pm.register(ArchPlugin(lambda: 5), name="acme")
    registry, warning = _broken_registry(pm)
    assert "plugin 'acme': pfnmap_arches() raised TypeError" in warning
    assert isinstance(registry.broken["acme"], PluginError)


def test_a_plugin_may_not_provide_the_same_name_twice(pm: pluggy.PluginManager) -> None:
    pm.register(ArchPlugin(lambda: [Acme64(), Acme64()]), name="acme")
    registry, warning = _broken_registry(pm)
    assert "arch 'acme-64' is already provided by 'acme'" in warning
    assert "acme-64" not in registry.arches


def test_good_and_broken_plugins_side_by_side(
    pm: pluggy.PluginManager, builtin_names: list[str]
) -> None:
    pm.register(ArchPlugin(lambda: [MissingOpArch()]), name="acme")
    pm.register(ArchPlugin(lambda: [Acme64()]), name="widgets")
    registry, warning = _broken_registry(pm)
    assert "plugin 'acme'" in warning
    assert registry.names() == [*builtin_names, "acme-64"]
    assert registry.owners["acme-64"] == "widgets"
    _usable(registry, "acme-64")


def test_unknown_names_are_not_blamed_on_a_broken_plugin(pm: pluggy.PluginManager) -> None:
    """Only the broken plugin's own name or its arch's name answers with its error; anything
    else is an unknown arch, even a name that happens to appear inside the error text."""
    pm.register(ArchPlugin(lambda: [MissingOpArch()]), name="acme")
    registry, _ = _broken_registry(pm)
    for name in ("acme-noop", "acme"):
        with pytest.raises(PluginError):
            registry.get(name)
    for name in ("x86", "pte_mkyoung", "acm", "noop", "missing"):
        with pytest.raises(UnknownArch):
            registry.get(name)


def test_machine_refuses_a_broken_arch_by_name(pm: pluggy.PluginManager) -> None:
    pm.register(ArchPlugin(lambda: [BadGeometryArch()]), name="acme")
    with pytest.warns(PluginWarning, match="acme"), pytest.raises(PluginError, match="acme-geom"):
        Machine(arch="acme-geom", ram="8M", plugin_manager=pm)


def test_broken_builtin_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A built-in arch module that fails validation is a bug in pfnmap: an error, not a
    warning, and it names the module."""

    @hookimpl
    def pfnmap_arches() -> list:
        return [BadGeometryArch()]

    monkeypatch.setattr(pfnmap.arches.x86_64, "pfnmap_arches", pfnmap_arches)
    pm = make_plugin_manager(autoload=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PluginError) as info:
            build_registry(pm)
    assert info.value.plugin == "pfnmap.arches.x86_64"
    assert "level pud starts at VA bit 31" in info.value.problem


# entry points ----------------------------------------------------------------------------------
class FakeEntryPoint:
    """Enough of importlib.metadata.EntryPoint for pluggy or a hand-written loader."""

    def __init__(self, name: str, obj: Any, group: str = ENTRY_POINT_GROUP) -> None:
        self.name = name
        self.group = group
        self.value = f"acme_pfnmap.plugins:{name}"
        self._obj = obj

    def load(self) -> Any:
        if isinstance(self._obj, BaseException):
            raise self._obj
        return self._obj


class FakeDistribution:
    def __init__(self, eps: list[FakeEntryPoint]) -> None:
        self.entry_points = eps
        self.metadata = {"name": "acme-pfnmap", "version": "1.0"}


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """The installed entry points, as a list the test fills (no real distribution is seen).

    Both importlib.metadata.distributions (what pluggy's loader walks) and entry_points are
    faked, so the tests hold whichever one the manager uses.
    """
    eps: list[FakeEntryPoint] = []

    def fake_distributions(**_: Any) -> list[FakeDistribution]:
        return [FakeDistribution(eps)]

    def fake_entry_points(**params: Any) -> list[FakeEntryPoint]:
        group = params.get("group")
        return [ep for ep in eps if group is None or ep.group == group]

    monkeypatch.setattr(importlib.metadata, "distributions", fake_distributions)
    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    return eps


def test_entry_point_plugin_is_loaded(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(FakeEntryPoint("acme", ArchPlugin(lambda: [Acme64()])))
    entry_points.append(FakeEntryPoint("other", ArchPlugin(Acme64), group="not.pfnmap"))
    pm = make_plugin_manager()
    assert pm.get_plugin("acme") is not None
    assert pm.get_plugin("other") is None
    registry = _quiet_registry(pm)
    assert registry.owners["acme-64"] == "acme"
    _usable(registry, "acme-64")


def test_disable_env_skips_entry_points(
    entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry_points.append(FakeEntryPoint("acme", ArchPlugin(lambda: [Acme64()])))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    pm = make_plugin_manager()
    assert pm.get_plugin("acme") is None
    assert "acme-64" not in _quiet_registry(pm).arches


@pytest.mark.parametrize(
    ("env", "autoload", "called"),
    [
        (None, None, True),
        ("", None, True),
        ("1", None, False),
        ("1", True, True),
        (None, False, False),
    ],
)
def test_autoload_switch(
    monkeypatch: pytest.MonkeyPatch, env: str | None, autoload: bool | None, called: bool
) -> None:
    """PFNMAP_DISABLE_PLUGIN_AUTOLOAD (any non-empty value) skips entry-point loading;
    an explicit ``autoload`` argument wins over the environment."""
    calls: list[tuple] = []

    def spy(pm: pluggy.PluginManager, group: str = ENTRY_POINT_GROUP) -> int:
        calls.append((group, None))
        return 0

    monkeypatch.setattr(manager_module, "load_entry_point_plugins", spy)
    if env is None:
        monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    else:
        monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, env)
    make_plugin_manager(autoload=autoload)
    assert calls == ([(ENTRY_POINT_GROUP, None)] if called else [])
    assert ENTRY_POINT_GROUP == "pfnmap.arches"
    assert DISABLE_AUTOLOAD_ENV == "PFNMAP_DISABLE_PLUGIN_AUTOLOAD"


def test_broken_entry_point_arch_is_skipped(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(FakeEntryPoint("acme", ArchPlugin(lambda: [MissingOpArch()])))
    pm = make_plugin_manager()
    registry, warning = _broken_registry(pm)
    assert "plugin 'acme'" in warning
    assert "pte_mkyoung" in warning
    _usable(registry)


def test_entry_point_that_fails_to_import_is_a_warning(
    entry_points: list[FakeEntryPoint],
) -> None:
    entry_points.append(FakeEntryPoint("acme", ImportError("No module named 'widgets'")))
    with pytest.warns(PluginWarning, match="No module named 'widgets'"):
        pm = make_plugin_manager()
    assert pm.get_plugin("acme") is None
    _usable(_quiet_registry(pm))


def test_one_failing_entry_point_does_not_hide_the_others(
    entry_points: list[FakeEntryPoint],
) -> None:
    entry_points.append(FakeEntryPoint("acme", ImportError("No module named 'widgets'")))
    entry_points.append(FakeEntryPoint("zeta", ArchPlugin(lambda: [Acme64()])))
    with pytest.warns(PluginWarning) as record:
        pm = make_plugin_manager()
    assert any("acme" in str(w.message) for w in record), "the warning names the entry point"
    assert pm.get_plugin("zeta") is not None
    assert "acme-64" in _quiet_registry(pm).arches


# io_remap_pfn_range --------------------------------------------------------------------------
def _map_fb0(machine: Machine, npages: int = 4, offset_pages: int = 0) -> tuple[Any, int, Any]:
    machine.add_iomem_device("/dev/fb0")
    proc = machine.spawn("fbtest")
    fd = proc.open("/dev/fb0")
    page = machine.arch.page_size
    addr = proc.mmap(
        npages * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset=offset_pages * page
    )
    return proc, addr, proc.mm.find_vma(addr)


def test_io_remap_default_is_remap_pfn_range() -> None:
    """x86: io_remap_pfn_range is remap_pfn_range: VM_IO|VM_RESERVED|VM_PFNMAP, vm_pgoff = the
    region's pfn, and raw pfn ptes that reach the device's bytes."""
    machine = Machine(ram="16M")
    region = machine.phys.io_regions[0]
    proc, addr, vma = _map_fb0(machine, npages=4, offset_pages=2)
    shift = machine.arch.page_shift
    pfn = (region.start >> shift) + 2
    assert vma.vm_flags & (VM_IO | VM_RESERVED | VM_PFNMAP) == VM_IO | VM_RESERVED | VM_PFNMAP
    assert vma.vm_pgoff == pfn
    for i in range(4):
        info = proc.lookup(addr + (i << shift))
        assert info.pfn == pfn + i
        assert info.verdict is Verdict.RAW_PFN
        assert info.raw == machine.arch.pfn_pte(pfn + i, vma.vm_page_prot)
    assert proc.read(addr + 100, 16) == machine.phys.read((pfn << shift) + 100, 16)
    assert proc.rss() == {"file_rss": 0, "anon_rss": 0, "rss": 0}
    finish(machine)


class UncachedIoRemap(X86_64):
    """x86-64 with an io_remap_pfn_range of its own: records each call, maps uncached (so the
    test can tell it ran) or hands back to the generic one."""

    def __init__(self, decline: bool = False) -> None:
        super().__init__()
        self.decline = decline
        self.calls: list[dict[str, Any]] = []

    def io_remap_pfn_range(self, vma, addr, pfn, size, prot):
        self.calls.append({"vma": vma, "addr": addr, "pfn": pfn, "size": size, "prot": prot})
        if self.decline:
            return NotImplemented  # the generic io_remap_pfn_range = remap_pfn_range runs
        return remap_pfn_range(vma, addr, pfn, size, self.pgprot_noncached(prot))


def test_arch_io_remap_wins() -> None:
    """An arch's own io_remap_pfn_range replaces the generic remap_pfn_range (as sparc64's
    does); it is called with the vma and the region's pfn, once."""
    arch = UncachedIoRemap()
    machine = Machine(arch, ram="16M")
    proc, addr, vma = _map_fb0(machine, npages=2)
    region = machine.phys.io_regions[0]
    assert len(arch.calls) == 1
    call = arch.calls[0]
    assert call["vma"] is vma
    assert call["addr"] == vma.vm_start == addr
    assert call["pfn"] == region.start >> arch.page_shift
    assert call["size"] == 2 * arch.page_size
    # the override's uncached ptes are what got mapped, and only once (no default run after)
    info = proc.lookup(addr)
    assert info.raw == arch.pfn_pte(call["pfn"], arch.pgprot_noncached(call["prot"]))
    assert info.raw != arch.pfn_pte(call["pfn"], call["prot"])
    finish(machine)


def test_arch_io_remap_may_hand_back() -> None:
    """NotImplemented from the arch's method: the generic remap_pfn_range runs."""
    arch = UncachedIoRemap(decline=True)
    machine = Machine(arch, ram="16M")
    proc, addr, vma = _map_fb0(machine, npages=1)
    assert len(arch.calls) == 1
    assert vma.vm_flags & VM_PFNMAP
    assert proc.lookup(addr).raw == machine.arch.pfn_pte(vma.vm_pgoff, vma.vm_page_prot)
    finish(machine)


def test_an_observer_on_one_machine_never_sees_another() -> None:
    """Two machines from the same (default) manager: a tracer registered on the first one's
    plugin_manager hears the first one's faults and bad ptes only."""
    first, second = Machine(ram="16M"), Machine(ram="16M")
    tracer = Tracer()
    first.plugin_manager.register(tracer, name="tracer")
    for machine in (second, first, second):
        proc = machine.spawn("t")
        proc.write(proc.mmap(machine.arch.page_size), b"x")
    assert tracer.machines == {id(first)}
    assert len(tracer.faults) == 1
    assert default_plugin_manager().get_plugin("tracer") is None
    assert second.plugin_manager.get_plugin("tracer") is None
    finish(first)
    finish(second)


def test_a_callers_manager_lends_its_plugins_to_the_machine() -> None:
    pm = make_plugin_manager(autoload=False)
    tracer = Tracer()
    pm.register(tracer, name="tracer")
    machine = Machine(ram="16M", plugin_manager=pm)
    proc = machine.spawn("t")
    proc.write(proc.mmap(machine.arch.page_size), b"x")
    assert tracer.machines == {id(machine)}
    finish(machine)


def test_default_machine_does_not_see_custom_managers() -> None:
    pm = make_plugin_manager(autoload=False)
    tracer = Tracer()
    pm.register(tracer, name="tracer")
    machine = Machine(ram="16M")  # default manager
    proc = machine.spawn("t")
    proc.write(proc.mmap(machine.arch.page_size), b"x")
    assert tracer.faults == []
    finish(machine)


# observers -----------------------------------------------------------------------------------
@pytest.fixture
def traced() -> Iterator[tuple[Machine, Tracer]]:
    pm = make_plugin_manager(autoload=False)
    tracer = Tracer()
    pm.register(tracer, name="tracer")
    machine = Machine(ram="16M", plugin_manager=pm)
    yield machine, tracer
    finish(machine)


def test_tracer_sees_every_fault(traced: tuple[Machine, Tracer]) -> None:
    machine, tracer = traced
    arch = machine.arch
    page = arch.page_size
    proc = machine.spawn("tracee")
    anon = proc.mmap(2 * page)
    proc.read(anon + 8, 1)  # do_anonymous_page: the ZERO_PAGE
    proc.write(anon + 8, b"x")  # do_wp_page on the ZERO_PAGE
    proc.write(anon + page + 3, b"y")  # do_anonymous_page, write
    machine.create_file("/data", b"A" * 100)
    fd = proc.open("/data")
    fmap = proc.mmap(2 * page, PROT_READ, MAP_PRIVATE, fd)
    assert proc.read(fmap, 2) == b"AA"  # filemap_nopage reads the page in: MAJOR
    with pytest.raises(BusError):
        proc.read(fmap + page, 1)  # beyond the end of the file: SIGBUS
    got = [(r.address, r.write, r.result_name) for r in tracer.faults]
    assert got == [
        (anon + 8, False, "MINOR"),
        (anon + 8, True, "MINOR"),
        (anon + page + 3, True, "MINOR"),
        (fmap, False, "MAJOR"),
        (fmap + page, False, "SIGBUS"),
    ]
    assert machine.faults == len(tracer.faults) == 5
    assert tracer.machines == {id(machine)}
    assert {(r.comm, r.pid) for r in tracer.faults} == {("tracee", proc.pid)}
    zero, first, second, filepage, _ = tracer.faults
    assert arch.pte_pfn(zero.pte) == machine.phys.zero_pfn
    assert arch.pte_pfn(first.pte) == proc.lookup(anon).pfn != machine.phys.zero_pfn
    assert arch.pte_pfn(second.pte) == proc.lookup(anon + page).pfn
    assert arch.pte_pfn(filepage.pte) == proc.lookup(fmap).pfn


def test_tracer_sees_print_bad_pte(traced: tuple[Machine, Tracer]) -> None:
    """An invalid pfn planted in an anonymous vma: zap_pte_range's vm_normal_page reports it
    with the kernel's KERN_ERR line and leaves it alone (no rss, no page)."""
    machine, tracer = traced
    arch = machine.arch
    page = arch.page_size
    proc = machine.spawn("victim")
    addr = proc.mmap(2 * page)
    proc.write(addr, b"real page")  # builds the page tables and one real anon page
    vma = proc.mm.find_vma(addr)
    bad_pfn = machine.phys.nr_pages + 0x100  # beyond RAM: no struct page
    assert not machine.phys.pfn_valid(bad_pfn)
    bad = arch.pfn_pte(bad_pfn, vma.vm_page_prot)
    slot = pte_offset(proc.mm, addr + page)
    assert slot is not None and machine.tables.read_pte(slot) == 0
    machine.tables.write_pte(slot, bad)
    flags = vma.vm_flags
    assert proc.lookup(addr + page).verdict is Verdict.BAD
    assert tracer.bad_ptes == []  # lookup() does not print
    proc.munmap(addr, 2 * page)
    # the kernel's printk format, with the C length modifiers (ll, l) dropped
    expected = "Bad pte = %08x, process = %s, vm_flags = %x, vaddr = %x" % (  # noqa: UP031
        bad,
        "victim",
        flags,
        addr + page,
    )
    assert [r.line for r in tracer.bad_ptes] == [expected]
    report = tracer.bad_ptes[0]
    assert (report.pte, report.comm, report.vm_flags, report.vaddr) == (
        bad,
        "victim",
        flags,
        addr + page,
    )
    assert report.caller == "zap_pte_range"
    assert machine.log[-1] == expected
    assert machine.bad_ptes == tracer.bad_ptes
    assert proc.rss()["anon_rss"] == 0
    assert machine.tables.read_pte(slot) == 0 or pte_offset(proc.mm, addr + page) is None
