"""Exceptions: kernel-style failures carry an errno, a kernel BUG_ON is its own type, and the
signals a user access can raise carry the faulting address."""

from __future__ import annotations

import errno as _errno
import os


class PfnmapError(Exception):
    """Base of every pfnmap error."""


class KernelError(PfnmapError, OSError):
    """A system-call style failure: ``exc.errno`` is the errno the kernel would return."""

    def __init__(self, err: int, detail: str = "") -> None:
        message = os.strerror(err)
        if detail:
            message = f"{message}: {detail}"
        OSError.__init__(self, err, message)
        self.detail = detail

    @property
    def errname(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))

    def __str__(self) -> str:
        return f"[{self.errname}] {self.strerror}"


class KernelBug(PfnmapError):
    """A condition that is ``BUG_ON()`` in the kernel: the emulated kernel would oops here."""


class OutOfMemory(KernelError):
    """VM_FAULT_OOM or a failed allocation; the kernel would invoke the OOM killer."""

    def __init__(self, detail: str = "out of memory") -> None:
        super().__init__(_errno.ENOMEM, detail)


class Signal(PfnmapError):
    """A signal delivered to the emulated process by a user access."""

    signame = "SIG?"

    def __init__(self, address: int, reason: str = "") -> None:
        self.address = address
        self.reason = reason
        text = f"{self.signame} at {address:#x}"
        if reason:
            text += f": {reason}"
        super().__init__(text)


class SegmentationFault(Signal):
    """SIGSEGV: no vma, or the vma does not allow the access."""

    signame = "SIGSEGV"


class BusError(Signal):
    """SIGBUS: a fault handler returned VM_FAULT_SIGBUS, or a load hit a physical hole."""

    signame = "SIGBUS"


class LayoutError(PfnmapError, ValueError):
    """A construct layout that cannot describe an entry (gaps, overlaps, unnamed bits)."""


class PluginError(PfnmapError):
    """A malformed arch plugin; the message names the plugin and the problem."""

    def __init__(self, plugin: str, problem: str) -> None:
        self.plugin = plugin
        self.problem = problem
        super().__init__(f"plugin {plugin!r}: {problem}")


class PluginWarning(UserWarning):
    """A third-party plugin was skipped because it is malformed."""


class UnknownArch(PfnmapError, KeyError):
    """An arch name that no registered plugin provides."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown arch {self.name!r} (registered: {', '.join(self.known) or 'none'})"


class UnknownRegion(PfnmapError, KeyError):
    """An I/O region name the machine does not have (``Machine.add_iomem_device``)."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(name)

    def __str__(self) -> str:
        known = ", ".join(self.known) or "none"
        return f"unknown I/O region {self.name!r} (this machine has: {known})"


class KernelLivelock(PfnmapError):
    """A path where the emulated kernel would spin for ever (reported instead of hanging)."""
