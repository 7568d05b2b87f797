"""The floor a Python page-table tool must beat: a walker with nothing but the standard library
that prints QEMU's ``info tlb`` text for x86-64 4-level paging (target/i386/monitor.c's
tlb_info_la48: every present entry, 1 GiB and 2 MiB leaves where PSE is set, the physical
address under the level's mask, PAT cleared in a 4 KiB pte before its letters).

    python bench/stdlib_walker.py CORE ROOT > tlb.txt

CORE is an ELF core (its PT_LOAD segments by physical address) or, with ``--raw``, a raw image
from physical address 0. Written for the benchmarks (bench/test_bench_cli.py): one file, no
numpy, tables read with one ``struct.unpack_from`` each, lines joined per table.
"""

from __future__ import annotations

import mmap
import struct
import sys

PRESENT, PSE, NX = 1, 1 << 7, 1 << 63
ADDR = 0x3FFFFFFFFF000  # the table-pointer and 4 KiB address bits QEMU keeps (52-bit PA)
MASKS = {1: 0x3FFFFC0000000, 2: 0x3FFFFFFE00000, 3: 0x3FFFFFFFFF000}
LETTERS = ((NX, "X"), (1 << 8, "G"), (PSE, "P"), (1 << 6, "D"), (1 << 5, "A"), (1 << 4, "C"),
           (1 << 3, "T"), (1 << 2, "U"), (1 << 1, "W"))  # fmt: skip
TABLE = struct.Struct("<512Q")


class Memory:
    """Physical memory from an ELF core's PT_LOAD segments, or a raw file."""

    def __init__(self, path: str, raw: bool) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 (lives as long as the process)
        self.m = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
        if raw:
            self.segments = [(0, len(self.m), 0)]
            return
        if self.m[:4] != b"\x7fELF":
            raise SystemExit(f"{path}: not an ELF file")
        (phoff,) = struct.unpack_from("<Q", self.m, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", self.m, 0x36)
        self.segments = []
        for i in range(phnum):
            p_type, _, p_offset, _, p_paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", self.m, phoff + i * phentsize
            )
            if p_type == 1 and p_filesz:
                self.segments.append((p_paddr, p_filesz, p_offset))

    def table(self, paddr: int) -> tuple[int, ...]:
        for start, size, offset in self.segments:
            if start <= paddr and paddr + 4096 <= start + size:
                return TABLE.unpack_from(self.m, offset + paddr - start)
        return (0,) * 512  # QEMU reads what the guest has there; a core holds all tables


def flags(e: int) -> str:
    return "".join(c if e & m else "-" for m, c in LETTERS)


def canon(va: int) -> int:
    return va | 0xFFFF000000000000 if va >> 47 & 1 else va


def walk(mem: Memory, root: int, out) -> None:
    for i0, e0 in enumerate(mem.table(root)):
        if not e0 & PRESENT:
            continue
        for i1, e1 in enumerate(mem.table(e0 & ADDR)):
            if not e1 & PRESENT:
                continue
            va1 = (i0 << 39) | (i1 << 30)
            if e1 & PSE:
                out.write(f"{canon(va1):016x}: {e1 & MASKS[1]:016x} {flags(e1)}\n")
                continue
            for i2, e2 in enumerate(mem.table(e1 & ADDR)):
                if not e2 & PRESENT:
                    continue
                va2 = va1 | (i2 << 21)
                if e2 & PSE:
                    out.write(f"{canon(va2):016x}: {e2 & MASKS[2]:016x} {flags(e2)}\n")
                    continue
                lines = []
                for i3, e3 in enumerate(mem.table(e2 & ADDR)):
                    if e3 & PRESENT:
                        e3 &= ~PSE  # PAT in a pte: QEMU clears it before printing
                        lines.append(
                            f"{canon(va2 | (i3 << 12)):016x}: {e3 & MASKS[3]:016x} {flags(e3)}\n"
                        )
                out.write("".join(lines))


def main(argv: list[str]) -> int:
    raw = "--raw" in argv
    args = [a for a in argv if a != "--raw"]
    if len(args) != 2:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    walk(Memory(args[0], raw), int(args[1], 0), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
