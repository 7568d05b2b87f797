"""The end of an mm: exit_mm() and exec_mmap() hand the task's mm over, then mmput() tears it down.

kernel/exit.c, kernel/fork.c and fs/exec.c of 2.6.15. In both paths the task stops owning its
old mm *before* the last reference goes: exit_mm() clears ``tsk->mm`` and exec_mmap() points it
at the new mm, and only then does mmput() run exit_mmap() on the old one. So every
print_bad_pte() of that teardown finds ``vma->vm_mm != current->mm`` and prints
``process = ???``: the 2.6.15-rc6 sunffb report on LKML ("More info for DSM w/r/t sunffb on
2.6.15-rc6", 2005-12-23) shows the task's name for the bad ptes of fork and munmap and ``???``
for the same pte's teardown when X exec'd.

The task object is duck-typed (anything with a settable ``mm``, such as
:class:`pfnmap.machine.Process`), so this layer needs nothing from the machine layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pfnmap.kernel.mm import MmStruct
from pfnmap.kernel.mmap import exit_mmap
from pfnmap.kernel.pgtable import pgd_alloc

if TYPE_CHECKING:
    from pfnmap.machine import Machine


class Task(Protocol):
    """What these functions need of a task: its mm (None once it has none)."""

    mm: MmStruct | None


def mm_alloc(machine: Machine, comm: str) -> MmStruct:
    """mm_alloc(): a new mm with an empty vma list and its own pgd (mm_init's pgd_alloc)."""
    mm = MmStruct(machine, 0, comm)
    mm.pgd = pgd_alloc(mm)
    return mm


def mmput(mm: MmStruct) -> None:
    """mmput(): drop a user of ``mm``; the last one runs exit_mmap(). pfnmap has no threads or
    other mm_users (no CLONE_VM, no get_task_mm), so the caller's reference is the last."""
    exit_mmap(mm)


def exit_mm(task: Task) -> None:
    """exit_mm(): ``tsk->mm = NULL`` under task_lock, then mmput() of the old mm."""
    mm = task.mm
    if mm is None:
        return
    task.mm = None
    mmput(mm)


def exec_mmap(task: Task, new_mm: MmStruct) -> None:
    """exec_mmap(): the task switches to ``new_mm`` (activate_mm), then mmput() of the old one."""
    old_mm = task.mm
    task.mm = new_mm
    if old_mm is not None:
        mmput(old_mm)
