"""The hook contract of pfnmap. Every hook a plugin may implement is declared and documented here.

Hooks are coarse: they register arches or observe events. Nothing here is called per pte. What an
arch does differently from the generic kernel (its own ``io_remap_pfn_range``, say) is a method of
its :class:`pfnmap.arch.Arch`, not a hook: it belongs to the arch, and a machine has one arch.

Every Machine has a plugin manager of its own
(:func:`pfnmap.plugins.manager.machine_plugin_manager`), so an observer registered on
``machine.plugin_manager`` sees that machine's events only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.plugins import hookspec

if TYPE_CHECKING:
    from pfnmap.arch import Arch
    from pfnmap.decode.images.registry import ImageFormat
    from pfnmap.kernel.reports import BadPteReport, FaultReport
    from pfnmap.machine import Machine


@hookspec
def pfnmap_arches() -> list[Arch]:
    """Contribute arch descriptions.

    Return a list of :class:`pfnmap.arch.Arch` instances. Each is validated when the registry is
    built (layouts cover every bit exactly once, geometry is consistent, every pte operation is
    implemented); a malformed arch is reported with the plugin's name. Called once per plugin
    manager, never on a hot path.
    """


@hookspec
def pfnmap_image_formats() -> list[ImageFormat]:
    """Contribute image formats ``pfnmap decode --image-format`` can read.

    Return a list of :class:`pfnmap.decode.images.registry.ImageFormat`: a name, a
    description, ``open(path)`` returning a :class:`pfnmap.decode.image.PhysImage` (or raising
    :class:`pfnmap.decode.image.ImageError` with one line), and ``sniff(head)`` that gets the
    file's first bytes and returns what it recognised (or None), which ``--image-format auto``
    asks. The built-in kdump, LiME, ELF and raw formats come through this hook too
    (:mod:`pfnmap.decode.images.builtin`); a name already taken is skipped with a warning.
    Called when a command first needs the formats, never on a hot path.
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
