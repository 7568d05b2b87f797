"""The hook contract of pfnmap. Every hook a plugin may implement is declared and documented here.

Hooks are coarse: they register arches, replace a whole kernel function an arch may override, or
observe events. Nothing here is called per pte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pfnmap.plugins import hookspec

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.kernel.mm import VmArea
    from pfnmap.kernel.reports import BadPteReport, FaultReport
    from pfnmap.machine import Machine


@hookspec
def pfnmap_arches() -> list[Arch]:
    """Contribute arch descriptions.

    Return a list of :class:`pfnmap.arch.contract.Arch` instances. Each is validated when the registry is
    built (layouts cover every bit exactly once, geometry is consistent, every pte operation is
    implemented); a malformed arch is reported with the plugin's name. Called once per plugin
    manager, never on a hot path.
    """


@hookspec(firstresult=True)
def pfnmap_io_remap_pfn_range(
    machine: Machine, vma: VmArea, addr: int, pfn: int, size: int, prot: int
) -> Any:
    """Map device memory into ``vma``, as the kernel's ``io_remap_pfn_range()``.

    ``pfn`` may carry an I/O-space number on arches that have them (sparc64's MK_IOSPACE_PFN).
    The first implementation that returns a non-None value wins; it returns 0 on success and
    raises :class:`pfnmap.errors.KernelError` on failure. An implementation must return None for
    machines whose arch it does not handle (check ``machine.arch``). The generic default, used
    by x86, is plain ``remap_pfn_range`` (``#define io_remap_pfn_range remap_pfn_range``).
    """


@hookspec
def pfnmap_bad_pte(machine: Machine, report: BadPteReport) -> None:
    """Observe a ``print_bad_pte()`` report.

    ``report.line`` is the kernel's message; ``report`` also carries the vma flags, address,
    raw pte and the calling kernel function. The line is already in ``machine.log``.
    """


@hookspec
def pfnmap_fault_handled(machine: Machine, report: FaultReport) -> None:
    """Observe a page fault after ``handle_mm_fault()`` returned.

    ``report`` has the process, address, whether it was a write, the VM_FAULT_* result and the
    pte after the fault. Called once per fault; a tracer plugin implements this.
    """
