"""An observer plugin that keeps one machine's fault and print_bad_pte reports, in order.

Registered on ``machine.plugin_manager`` (each machine has its own), it hears that machine
only; the check on ``machine`` keeps it exact on a manager shared by several machines too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.plugins import hookimpl

if TYPE_CHECKING:
    from pfnmap.kernel.reports import BadPteReport, FaultReport
    from pfnmap.machine.machine import Machine


class EventRecorder:
    """Observer plugin: the faults and bad-pte reports of one machine."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.faults: list[FaultReport] = []
        self.bad: list[BadPteReport] = []

    @hookimpl
    def pfnmap_fault_handled(self, machine: Machine, report: FaultReport) -> None:
        if machine is self.machine:
            self.faults.append(report)

    @hookimpl
    def pfnmap_bad_pte(self, machine: Machine, report: BadPteReport) -> None:
        if machine is self.machine:
            self.bad.append(report)
