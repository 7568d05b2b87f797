"""C ``unsigned long`` arithmetic for syscall arguments.

A system call receives its arguments in registers: ``-4096`` arrives as ``2**64 - 4096`` on a
64-bit kernel, and the kernel's checks are written for that wrapping arithmetic (PAGE_ALIGN of
a huge length wraps to 0, ``end <= start`` catches a range that wraps). pfnmap converts each
integer argument once, at the syscall boundary, and does the same arithmetic modulo
``2**BITS_PER_LONG`` where the kernel relies on it.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pfnmap.arch import Arch


def ulong_max(arch: Arch) -> int:
    """ULONG_MAX of the arch's kernel."""
    return (1 << arch.bits_per_long) - 1


def to_ulong(arch: Arch, name: str, value: object) -> int:
    """The value an ``unsigned long`` argument ``name`` holds when passed ``value``.

    Any int that a C caller could pass works: negative ones in two's complement, as a cast
    gives them. A non-integer is a TypeError and an int that fits no register of the arch's
    width (below ``-2**(BITS_PER_LONG-1)`` or above ULONG_MAX) a ValueError, both naming the
    argument and the value: those are Python-level mistakes no kernel could see.
    """
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
    bits = arch.bits_per_long
    if not -(1 << (bits - 1)) <= number < (1 << bits):
        raise ValueError(f"{name}={number:#x} does not fit a {bits}-bit unsigned long")
    return number & ((1 << bits) - 1)


def page_align(arch: Arch, length: int) -> int:
    """PAGE_ALIGN() in unsigned long arithmetic: a length within a page of ULONG_MAX wraps
    to 0, which is how the kernel's ``if (!len)`` after it catches huge lengths."""
    return (length + arch.page_size - 1) & arch.page_mask & ulong_max(arch)
