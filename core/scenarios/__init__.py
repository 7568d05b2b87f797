"""The scenario library: short, named stories that the eras tell differently.

A scenario is a plain function of a machine and an :class:`~pfnmap.scenarios.observe.Observer`
that uses the process API (spawn, open, mmap, read, write, fork, exit, get_user_pages) and the
test drivers of :mod:`pfnmap.scenarios.drivers`. Registered with :func:`scenario`, it becomes a
:class:`Scenario`: ``SCENARIOS[name].run(machine)`` plays it on a fresh machine and returns its
:class:`~pfnmap.scenarios.observe.Observations`. ``pfnmap compare NAME --eras ...`` runs one
scenario under several eras and prints where they differ (:mod:`pfnmap.scenarios.compare`)::

    from pfnmap import Machine
    from pfnmap.scenarios import run_scenario

    obs = run_scenario("sunffb", Machine("x86-64", era="seed"))
    obs.step("X forks").bad_pte_callers   # ['copy_one_pte', ...]

Scenarios need a fresh machine: they add their driver's device files and spawn their own tasks.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pfnmap.errors import PfnmapError

from .observe import FAILED, Observations, Observer, StopScenario

if TYPE_CHECKING:
    from pfnmap.machine import Machine

__all__ = [
    "FAILED",
    "SCENARIOS",
    "Observations",
    "Observer",
    "Scenario",
    "UnknownScenario",
    "get_scenario",
    "run_scenario",
    "scenario",
]


@dataclass(frozen=True)
class Scenario:
    """A registered scenario: its name, a one-line title, the kernel functions it exercises
    and the function that plays it."""

    name: str
    title: str
    kernel: tuple[str, ...]
    body: Callable[[Machine, Observer], None]

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.body) or ""

    def run(self, machine: Machine) -> Observations:
        """Play the scenario on ``machine`` (a fresh one) and return what it observed.

        The run ends with every task exited and the invariant check, unless the emulated
        kernel hit a BUG (then ``observations.stopped`` says where).
        """
        observer = Observer(machine, self.name)
        try:
            with contextlib.suppress(StopScenario):
                self.body(machine, observer)
            return observer.finish()
        finally:
            machine.rules = observer.tracer.rules  # even if the scenario itself is broken

    __call__ = run


#: name -> scenario, in the order they were registered
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, title: str, kernel: tuple[str, ...] = ()):
    """Register ``fn(machine, observer)`` as the scenario ``name``."""

    def register(fn: Callable[[Machine, Observer], None]) -> Callable[[Machine, Observer], None]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is registered twice")
        SCENARIOS[name] = Scenario(name, title, kernel, fn)
        return fn

    return register


class UnknownScenario(PfnmapError, KeyError):
    """A scenario name that is not registered."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown scenario {self.name!r} (known: {', '.join(SCENARIOS)})"


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenario(name) from None


def run_scenario(name: str, machine: Machine) -> Observations:
    """Play the registered scenario ``name`` on ``machine``."""
    return get_scenario(name).run(machine)


# registering imports: the library, then the kernel's pfnmap selftest
from . import library, selftest  # noqa: E402,F401
