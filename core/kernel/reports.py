"""Records the emulated kernel hands to observer hooks and keeps in the machine log."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BadPteReport:
    """What print_bad_pte() printed: the kernel's line plus its parts."""

    line: str
    pte: int
    comm: str
    vm_flags: int
    vaddr: int
    caller: str


@dataclass(frozen=True)
class FaultReport:
    """One handled page fault."""

    comm: str
    pid: int
    address: int
    write: bool
    result: int
    result_name: str
    pte: int
