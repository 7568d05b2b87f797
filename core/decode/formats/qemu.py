"""QEMU's x86 monitor text: ``info tlb`` and ``info mem`` (target/i386/monitor.c), a batch at a
time with numpy (see :mod:`pfnmap.decode.formats` for the quirks they keep)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TextIO

import numpy as np

from pfnmap.arch import Arch
from pfnmap.decode.formats.base import FormatError
from pfnmap.decode.formats.text import BitGather, ByteSink, assemble, hex_column, text_rows
from pfnmap.decode.records import Item, LeafBatch, Problem


@dataclass(frozen=True)
class QemuMode:
    """How QEMU's monitor prints one x86 paging mode."""

    name: str
    #: physical-address mask ``print_pte`` applies, by level index of the leaf
    pa_masks: dict[int, int]
    #: the level indexes whose entries take part in ``info mem``'s effective protection
    prot_levels: tuple[int, ...]


_U64 = (1 << 64) - 1
#: QEMU's x86 paging modes, by the name :attr:`pfnmap.arch.Arch.qemu_monitor_mode` gives
QEMU_MODES = {
    "32": QemuMode("32", {0: ~((1 << 21) - 1) & 0xFFFFFFFF, 1: 0xFFFFF000}, (0, 1)),
    "pae32": QemuMode("pae32", {1: ~((1 << 20) - 1) & _U64, 2: ~0xFFF & _U64}, (1, 2)),
    "la48": QemuMode(
        "la48",
        {1: 0x3FFFFC0000000, 2: 0x3FFFFFFE00000, 3: 0x3FFFFFFFFF000},
        (0, 1, 2, 3),
    ),
    "la57": QemuMode(
        "la57",
        {2: 0x3FFFFC0000000, 3: 0x3FFFFFFE00000, 4: 0x3FFFFFFFFF000},
        (0, 1, 2, 3, 4),
    ),
}
#: QEMU's flag letters, in print order, with the x86 entry bit each one shows (by position:
#: the layouts of the eras name bit 7 "protnone" (2.6.15) or "pat" (6.1))
QEMU_FLAGS = (
    ("X", 63),
    ("G", 8),
    ("P", 7),  # bit 7: PSE in a large leaf, PAT (cleared before printing) in a pte
    ("D", 6),
    ("A", 5),
    ("C", 4),
    ("T", 3),
    ("U", 2),
    ("W", 1),
)


def qemu_mode(arch: Arch) -> QemuMode:
    mode = QEMU_MODES.get(arch.qemu_monitor_mode or "")
    if mode is None:
        raise FormatError(
            f"qemu-tlb and qemu-mem are QEMU's monitor text for the paging modes "
            f"{', '.join(QEMU_MODES)}; {arch.name} has none (its Arch names no "
            f"qemu_monitor_mode)"
        )
    return mode


class QemuBits:
    """The x86 pte bits QEMU's monitor looks at, from the arch's pte layout."""

    def flags(self, value: int) -> str:
        """The ``XGPDACTUW`` string of one entry (the scalar reference)."""
        return "".join(c if value & m else "-" for c, m in self.letters)

    def __init__(self, arch: Arch) -> None:
        fields = arch.pte_format.fields
        width = arch.pte_format.width_bits
        self.letters = [(c, 1 << bit if bit < width else 0) for c, bit in QEMU_FLAGS]
        self.present = fields["present"].mask
        self.bit7 = 1 << 7
        self.user = fields["user"].mask
        self.rw = fields["rw"].mask
        self.prot = self.user | self.rw | self.present
        self.last = len(arch.levels) - 1
        self.table_has_prot = [
            f is not None and "user" in f.fields and "rw" in f.fields for f in arch.table_formats
        ]
        mask = 0
        for _, m in self.letters:
            mask |= m
        self.gather = BitGather(mask)
        #: the letters of every flag word, by :meth:`BitGather.code`
        self.letter_table = text_rows(
            [self.flags(self.gather.word(c)) for c in range(1 << self.gather.bits)]
        )

    def letters_of(self, raw: np.ndarray) -> np.ndarray:
        """The ``XGPDACTUW`` strings of ``raw`` as a ``(n, 9)`` uint8 array."""
        return self.letter_table[self.gather.code(raw)]


@lru_cache(maxsize=16)
def qemu_bits(arch: Arch) -> QemuBits:
    """:class:`QemuBits` of ``arch``, made once (its letter table has 512 rows)."""
    return QemuBits(arch)


def _hw_present(bits: QemuBits, batch: LeafBatch) -> np.ndarray:
    return np.flatnonzero((batch.raw & np.uint64(bits.present)) != 0)


def write_qemu_tlb(
    out: TextIO, items: Iterable[Item], arch: Arch, on_problem: Callable[[Problem], None]
) -> int:
    """``info tlb``: ``<va:016x>: <pa:016x> XGPDACTUW`` for each hardware-present leaf."""
    mode = qemu_mode(arch)
    bits = qemu_bits(arch)
    sink = ByteSink(out)
    n = 0
    for item in items:
        if isinstance(item, Problem):
            on_problem(item)
            continue
        sel = _hw_present(bits, item)
        if not sel.size:
            continue
        raw = item.raw[sel]
        if item.level == bits.last:  # QEMU clears PAT (bit 7) of a 4 KiB pte before printing
            raw &= np.uint64(~bits.bit7 & _U64)
        pa = raw & np.uint64(mode.pa_masks[item.level])
        lines = assemble(
            sel.size,
            [hex_column(item.va[sel], 16), b": ", hex_column(pa, 16), b" ",
             bits.letters_of(raw), b"\n"],
        )  # fmt: skip
        sink.write(lines)
        n += sel.size
    sink.flush()
    return n


class _Canon:
    """Sign-extension of ``info mem``'s addresses (QEMU prints them canonical)."""

    def __init__(self, arch: Arch) -> None:
        bits = arch.va_bits if arch.canonical else 0
        self.bits = bits
        self.sign = np.uint64(1 << (bits - 1)) if bits else None
        self.high = np.uint64(_U64 ^ ((1 << bits) - 1)) if bits else None

    def __call__(self, v: np.ndarray) -> np.ndarray:
        if self.sign is None:
            return v
        return np.where((v & self.sign) != 0, v | self.high, v)


def write_qemu_mem(
    out: TextIO, items: Iterable[Item], arch: Arch, on_problem: Callable[[Problem], None]
) -> int:
    """``info mem``: ``<start:016x>-<end:016x> <size:016x> <u|->r<w|->`` per run of addresses
    with the same effective user/write/present bits (all levels ANDed)."""
    mode = qemu_mode(arch)
    bits = qemu_bits(arch)
    canon = _Canon(arch)
    prot_chars = text_rows(["-r-", "-rw", "ur-", "urw"])
    user, rw = np.uint64(bits.user), np.uint64(bits.rw)
    sink = ByteSink(out)
    lines = 0
    # the run still open at the end of the previous batch: start, end, protection
    open_run: tuple[int, int, int] | None = None

    def emit(start: np.ndarray, end: np.ndarray, prot: np.ndarray) -> None:
        nonlocal lines
        if not start.size:
            return
        code = ((prot & user) != 0).astype(np.intp) * 2 + ((prot & rw) != 0)
        columns = [
            hex_column(canon(start), 16), b"-", hex_column(canon(end), 16), b" ",
            hex_column(canon(end - start), 16), b" ", prot_chars[code], b"\n",
        ]  # fmt: skip
        sink.write(assemble(start.size, columns))
        lines += start.size

    for item in items:
        if isinstance(item, Problem):
            on_problem(item)
            continue
        sel = _hw_present(bits, item)
        if not sel.size:
            continue
        upper = bits.prot
        for lvl, value in enumerate(item.upper):
            if lvl in mode.prot_levels and bits.table_has_prot[lvl]:
                upper &= value
        p = item.raw[sel] & np.uint64(upper)
        ptr_level = item.level - 1
        if (
            item.tables is not None
            and ptr_level in mode.prot_levels
            and bits.table_has_prot[ptr_level]
        ):  # a grouped batch: each table's own pointer takes part too
            assert item.pointers is not None and item.starts is not None
            p &= np.repeat(item.pointers, np.diff(item.starts))[sel]
        va = item.va_raw[sel]
        size = np.uint64(item.size)
        brk = np.ones(sel.size, dtype=bool)
        brk[1:] = (va[1:] != va[:-1] + size) | (p[1:] != p[:-1])
        starts = np.flatnonzero(brk)
        ends = np.append(starts[1:], sel.size) - 1
        run_start, run_end, run_prot = va[starts], va[ends] + size, p[starts]
        if open_run is not None:
            o_start, o_end, o_prot = open_run
            if int(va[0]) == o_end and int(p[0]) == o_prot:
                run_start[0] = o_start
            else:
                one = np.array([o_start, o_end, o_prot], dtype=np.uint64)
                emit(one[:1], one[1:2], one[2:])
        emit(run_start[:-1], run_end[:-1], run_prot[:-1])
        open_run = int(run_start[-1]), int(run_end[-1]), int(run_prot[-1])
    if open_run is not None:
        one = np.array(open_run, dtype=np.uint64)
        emit(one[:1], one[1:2], one[2:])
    sink.flush()
    return lines
