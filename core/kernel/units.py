"""Sizes as people write them ("64M", "0x4000000") and as pfnmap prints them ("64 MiB").

Plain Python, so the command line can check its arguments without loading numpy.
"""

from __future__ import annotations

_SIZE_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(size: int | str) -> int:
    """``"64M"`` -> 67108864; ints pass through."""
    if isinstance(size, int):
        return size
    if not isinstance(size, str):
        raise TypeError(f"a size is an int or a string like '64M', not {type(size).__name__}")
    text = size.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in _SIZE_SUFFIX:
        number, mult = text[:-1], _SIZE_SUFFIX[text[-1]]
    else:
        number, mult = text, 1
    try:
        value = int(number, 0) * mult
    except ValueError:
        raise ValueError(f"not a size: {size!r} (use e.g. 65536, '64M', '1G')") from None
    return value


def format_size(n: int) -> str:
    """4096 -> "4 KiB"; sizes that are not a whole unit stay in bytes."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"
