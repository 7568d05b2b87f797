"""Fixed-width text made with numpy: a column of hex numbers for a whole batch in a few array
operations, lines assembled as one byte array, written to a text stream's byte buffer.

The formats that print one line per leaf (QEMU's ``info tlb``, the human table) spend far more
on Python string formatting than on the walk: 16 shifts and one lookup per column over the
whole batch replace tens of thousands of f-strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

import numpy as np

#: the ASCII codes of the lower-case hex digits
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: each byte value's two hex digits
_HEX_PAIRS = np.stack([np.repeat(HEX_DIGITS, 16), np.tile(HEX_DIGITS, 16)], axis=1)


def hex_column(values: np.ndarray, width: int) -> np.ndarray:
    """``values`` (uint64) as zero-padded lower-case hex, ``width`` digits each (at most 16):
    a ``(n, width)`` uint8 array of the low ``width`` nibbles (callers pick widths that hold
    their values). Two array operations whatever the width: each byte, most significant
    first, looks up its two digits."""
    v = np.asarray(values, dtype=np.uint64)
    big_endian = v.astype(">u8", copy=False).view(np.uint8).reshape(v.size, 8)
    digits = _HEX_PAIRS[big_endian].reshape(v.size, 16)
    return digits[:, 16 - width :] if width < 16 else digits


class BitGather:
    """The bits of ``mask`` packed into a small number, lowest first, with a few shifts per
    run of adjacent bits: a code that indexes a table with one row per distinct flag word
    (the table is built once, from the scalar code, for every ``1 << bits`` word)."""

    #: codes index tables: more bits than this would make a table no one should build
    MAX_BITS = 20

    def __init__(self, mask: int) -> None:
        if mask.bit_count() > self.MAX_BITS:
            raise ValueError(f"{mask:#x} has more than {self.MAX_BITS} bits to gather")
        self.mask = mask
        runs: list[tuple[int, int, int]] = []  # (shift in the entry, width, shift in the code)
        pos = bit = 0
        while mask >> bit:
            if mask >> bit & 1:
                width = 0
                while mask >> (bit + width) & 1:
                    width += 1
                runs.append((bit, width, pos))
                pos += width
                bit += width
            else:
                bit += 1
        self.runs = runs
        self.bits = pos

    def code(self, raw: np.ndarray) -> np.ndarray:
        """Each entry's gathered bits (an index array)."""
        code = np.zeros(raw.size, dtype=np.uint64)
        for shift, width, pos in self.runs:
            part = (raw >> np.uint64(shift)) & np.uint64((1 << width) - 1)
            code |= part << np.uint64(pos) if pos else part
        return code.astype(np.intp)

    def word(self, code: int) -> int:
        """The entry bits a code stands for (the inverse of :meth:`code`)."""
        out = 0
        for shift, width, pos in self.runs:
            out |= (code >> pos & ((1 << width) - 1)) << shift
        return out


def text_rows(strings: Sequence[str], width: int | None = None) -> np.ndarray:
    """Short ASCII strings as a ``(len, width)`` uint8 array, left-aligned, space-padded (a
    lookup table: index it with codes to make a column)."""
    width = max((len(s) for s in strings), default=0) if width is None else width
    data = "".join(s.ljust(width)[:width] for s in strings).encode("ascii")
    return np.frombuffer(data, dtype=np.uint8).reshape(len(strings), width).copy()


def assemble(rows: int, parts: Sequence[np.ndarray | bytes]) -> np.ndarray:
    """One ``(rows, width)`` uint8 array from column blocks (``(rows, w)`` arrays) and
    constant separators (bytes, the same on every row), left to right."""
    widths = [p.shape[1] if isinstance(p, np.ndarray) else len(p) for p in parts]
    out = np.empty((rows, sum(widths)), dtype=np.uint8)
    pos = 0
    for part, w in zip(parts, widths, strict=True):
        if isinstance(part, np.ndarray):
            out[:, pos : pos + w] = part
        elif w:
            out[:, pos : pos + w] = np.frombuffer(part, dtype=np.uint8)
        pos += w
    return out


class ByteSink:
    """Writes bytes to a text stream: straight into its binary buffer when it has one (what
    was written to the stream as text is flushed first, so the order holds), else decoded.
    Call :meth:`flush` before anything else writes to the stream again."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.buffer = getattr(out, "buffer", None)
        if self.buffer is not None:
            out.flush()

    def write(self, data: bytes | np.ndarray) -> None:
        if isinstance(data, np.ndarray):
            data = data.tobytes()
        if self.buffer is None:
            self.out.write(data.decode("utf-8"))
        else:
            self.buffer.write(data)

    def text(self, s: str) -> None:
        """Write ``s`` (lines that are not worth an array)."""
        if self.buffer is None:
            self.out.write(s)
        else:
            self.buffer.write(s.encode("utf-8"))

    def flush(self) -> None:
        if self.buffer is not None:
            self.buffer.flush()
        self.out.flush()
