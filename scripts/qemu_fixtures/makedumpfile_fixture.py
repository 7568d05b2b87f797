#!/usr/bin/env python3
"""Make tests/fixtures/makedumpfile/: kdump files written by makedumpfile itself.

    python scripts/qemu_fixtures/makedumpfile_fixture.py [--out DIR]

makedumpfile turns an ELF vmcore into a kdump-compressed file only when the vmcore's
VMCOREINFO lets it check the kernel (``check_release`` reads ``init_uts_ns`` through the
kernel's page tables) and tell the memory model (``SYMBOL(mem_map)`` and the ``struct page``
offsets). This script writes such a vmcore with pfnmap's ELF writer: two 256 KiB RAM ranges,
at 0 and 2 MiB, holding x86-64 kernel page tables (``init_top_pgt`` at physical 0x10000, mapping
the kernel image's 2 MiB at ``__START_KERNEL_map`` to physical 0), a ``new_utsname`` where the
``init_uts_ns`` symbol points, varied page contents and a few all-zero pages. Then it runs:

- ``makedumpfile -c -d 0``: zlib, every page (``zlib.kdump.xz``);
- ``makedumpfile -l -d 1``: LZO, dump level 1 (``lzo-d1.kdump.xz``: the zero pages' descriptors
  all point at one stored zero page);
- ``makedumpfile -F -c -d 1``: the flattened format (``zlib-d1.flat.xz``);

and keeps the vmcore (``vmcore.elf.xz``) and ``meta.json`` (the makedumpfile version, the
commands, the zero pages, the root). Needs makedumpfile (Debian's has zlib and LZO only).
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from pfnmap.decode.image import write_elf_core

REPO = Path(__file__).resolve().parent.parent.parent
RELEASE = b"6.1.0-pfnmap-amd64"
START_KERNEL_MAP = 0xFFFF_FFFF_8000_0000
PGD, PUD, PMD = 0x10000, 0x11000, 0x12000
UTS_NS = 0x30000  # physical; the symbol is START_KERNEL_MAP + this
MEM_MAP = 0x31000
ZERO_PAGES = (5, 6, 20)  # page numbers within each range left all zero
RANGE = 256 << 10


def build_memory() -> bytes:
    data = bytearray()
    for i in range(RANGE // 4096):
        if i in ZERO_PAGES:
            data += bytes(4096)
        else:
            data += (f"page {i:3d} ".encode() * 456)[:4096]
    assert len(data) == RANGE
    for table in (PGD, PUD, PMD):
        data[table : table + 4096] = bytes(4096)
    # __START_KERNEL_map: pgd 511 -> pud 510 -> pmd 0, a 2 MiB page (PSE) at physical 0
    struct.pack_into("<Q", data, PGD + 511 * 8, PUD | 0x63)
    struct.pack_into("<Q", data, PUD + 510 * 8, PMD | 0x63)
    struct.pack_into("<Q", data, PMD, 0x0 | 0xE3)
    uts = bytearray(6 * 65)
    for i, field in enumerate([b"Linux", b"pfnmap", RELEASE, b"#1 SMP", b"x86_64", b"(none)"]):
        uts[65 * i : 65 * i + len(field)] = field
    data[UTS_NS + 4 : UTS_NS + 4 + len(uts)] = uts
    struct.pack_into("<Q", data, MEM_MAP, 0xFFFF_EA00_0000_0000)
    return bytes(data)


def vmcoreinfo() -> bytes:
    lines = [
        f"OSRELEASE={RELEASE.decode()}",
        "PAGESIZE=4096",
        f"SYMBOL(init_uts_ns)={START_KERNEL_MAP + UTS_NS:x}",
        "OFFSET(uts_namespace.name)=4",
        f"SYMBOL(init_top_pgt)={START_KERNEL_MAP + PGD:x}",
        f"SYMBOL(mem_map)={START_KERNEL_MAP + MEM_MAP:x}",
        "SIZE(page)=64",
        "OFFSET(page.flags)=0",
        "OFFSET(page._refcount)=52",
        "OFFSET(page.mapping)=24",
        "OFFSET(page.lru)=8",
        "OFFSET(page._mapcount)=48",
        "OFFSET(page.private)=40",
        "OFFSET(page.compound_head)=8",
        "NUMBER(phys_base)=0",
        "KERNELOFFSET=0",
        "NUMBER(pgtable_l5_enabled)=0",
    ]
    return ("\n".join(lines) + "\n").encode()


RUNS = {
    "zlib.kdump.xz": ["-c", "-d", "0"],
    "lzo-d1.kdump.xz": ["-l", "-d", "1"],
    "zlib-d1.flat.xz": ["-F", "-c", "-d", "1"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "makedumpfile")
    args = p.parse_args(argv)
    tool = shutil.which("makedumpfile")
    if tool is None:
        raise SystemExit("makedumpfile is not installed (apt-get install makedumpfile)")
    version = subprocess.run([tool, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    args.out.mkdir(parents=True, exist_ok=True)
    mem = build_memory()
    with tempfile.TemporaryDirectory() as tmp:
        core = Path(tmp) / "vmcore.elf"
        write_elf_core(core, [(0, mem), (2 << 20, mem)], "x86-64",
                       notes=[("VMCOREINFO", 0, vmcoreinfo())])  # fmt: skip
        files = {"vmcore.elf.xz": core.read_bytes()}
        for name, opts in RUNS.items():
            out = Path(tmp) / name.removesuffix(".xz")
            if "-F" in opts:
                with open(out, "wb") as f:
                    subprocess.run([tool, *opts, str(core)], stdout=f, check=True,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
            else:
                subprocess.run([tool, *opts, str(core), str(out)], check=True,
                               capture_output=True)  # fmt: skip
            files[name] = out.read_bytes()
    for name, blob in files.items():
        (args.out / name).write_bytes(lzma.compress(blob, preset=9))
    meta = {
        "makedumpfile": version,
        "commands": {name: ["makedumpfile", *opts, "vmcore.elf"] for name, opts in RUNS.items()},
        "ranges": [["0x0", f"{RANGE:#x}"], [f"{2 << 20:#x}", f"{(2 << 20) + RANGE:#x}"]],
        "zero_pages": [f"{base + 4096 * i:#x}" for base in (0, 2 << 20) for i in ZERO_PAGES],
        "root": f"{PGD:#x}",
        "osrelease": RELEASE.decode(),
        "kernel_mapping": {"va": f"{START_KERNEL_MAP:#x}", "pa": "0x0", "size": "0x200000"},
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({n: (args.out / n).stat().st_size for n in files}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
