"""``pfnmap dump``: an emulated machine's physical memory as an image, and what decodes it.

:func:`dump_machine` writes the machine's RAM as a raw image (base 0), an ELF core (one
PT_LOAD at physical 0, like QEMU's ``dump-guest-memory``), a kdump-compressed file (plain or
flattened, like ``dump-guest-memory -z``) or a LiME image, and next to it ``OUT.json``: the
arch, the RAM ranges, the I/O regions, and for each live process its page-table root (the
physical address of its pgd), its vmas, and the ``pfnmap decode`` command line that decodes
it; each process's vmas are also written as ``OUT.pid<N>.vmas`` in the ``--vmas`` format. So
emulator -> dump -> decode round-trips. Device memory is not written (page tables never live
there, and it can be far above RAM); the JSON lists it.

The JSON (schema ``pfnmap.decode.dump/1``; addresses as hexadecimal strings)::

    {"schema": "pfnmap.decode.dump/1", "arch": "x86-64", "image": "story.img", "format": "raw",
     "base": "0x0", "page_size": 4096, "rules": "seed", "ram": [["0x0", "0x4000000"]],
     "io": [{"name": "fb0", "start": "0xf0000000", "end": "0xf1000000", "space": 0}],
     "processes": [{"pid": 1, "comm": "parent", "root": "0x11000", "vmas": [...],
                    "vmas_file": "story.img.pid1.vmas", "decode": "pfnmap decode ..."}]}

:data:`SCENARIOS` are the machine states ``pfnmap dump`` can produce; ``story`` is the demo's
story stopped right after its fork (steps (a) to (d): shared ``/dev/mem`` over device memory
and over RAM, a private ``/dev/mem`` mapping with one page COWed, then fork), plus a small
anonymous mapping, so the dump has every verdict vm_normal_page() can give.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pfnmap.decode.catalog import DUMP_FORMATS, KDUMP_COMPRESSIONS
from pfnmap.decode.hints import Hints, VmaHint, format_vmas
from pfnmap.decode.images.codecs import CodecMissing
from pfnmap.decode.images.elf import write_elf_core
from pfnmap.decode.images.kdump_write import write_kdump
from pfnmap.decode.images.lime import write_lime
from pfnmap.decode.images.notes import NT_PFNMAP_DUMP as _NOTE_TYPE
from pfnmap.decode.images.notes import elf_note
from pfnmap.decode.images.raw import write_raw
from pfnmap.errors import PfnmapError
from pfnmap.kernel.constants import MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE
from pfnmap.kernel.rules import ERAS, SEED
from pfnmap.machine import Machine, Process

DUMP_SCHEMA = "pfnmap.decode.dump/1"
#: the ELF note pfnmap adds to its cores (name "PFNMAP"): the dump's JSON, without the vmas
NT_PFNMAP_DUMP = _NOTE_TYPE


class DumpError(PfnmapError):
    """A dump that cannot be written (a file error, an unknown format or scenario)."""


# scenarios ---------------------------------------------------------------------------------
def story_scenario(machine: Machine) -> list[Process]:
    """The demo story up to its fork, plus anonymous memory; returns the live processes."""
    arch = machine.arch
    ps = arch.page_size
    io = machine.phys.io_regions[0]
    parent = machine.spawn("parent")
    fd = parent.open("/dev/mem")
    # (a) shared /dev/mem over device memory: raw PFN ptes
    io_addr = parent.mmap(4 * ps, PROT_READ, MAP_SHARED, fd, offset=io.start)
    for i in range(4):
        parent.read(io_addr + i * ps, 8)
    # (b) shared /dev/mem over the first RAM pages: raw PFN ptes on pages with struct pages
    npages = min(4, machine.phys.reserved_low_pages)
    ram_addr = parent.mmap(npages * ps, PROT_READ, MAP_SHARED, fd, offset=0)
    for i in range(npages):
        parent.read(ram_addr + i * ps, 8)
    # (c) private /dev/mem over device memory, one page COWed by a write
    cow = parent.mmap(2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, offset=io.start + 4 * ps)
    parent.read(cow + ps, 8)
    parent.write(cow + ps // 16, b"written by pfnmap dump")
    # anonymous memory: two written pages and a hole between them
    anon = parent.mmap(3 * ps)
    parent.write(anon, b"anon page 0")
    parent.write(anon + 2 * ps, b"anon page 2")
    # (d) fork: the child gets copies of the PFN mappings' ptes
    child = parent.fork("child")
    return [parent, child]


SCENARIOS: dict[str, Callable[[Machine], list[Process]]] = {"story": story_scenario}


def build_scenario(arch: str, name: str = "story", ram: int | str = "16M") -> Machine:
    """A fresh machine with scenario ``name`` played on it."""
    if name not in SCENARIOS:
        raise DumpError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    machine = Machine(arch, ram)
    SCENARIOS[name](machine)
    return machine


# hints and info -----------------------------------------------------------------------------
def process_vmas(proc: Process) -> list[VmaHint]:
    return [VmaHint(v.vm_start, v.vm_end, v.vm_flags, v.vm_pgoff) for v in proc.vmas]


def machine_hints(machine: Machine, proc: Process) -> Hints:
    """What a dump of ``machine`` tells the decoder about ``proc``: RAM and its vmas."""
    return Hints(
        [(0, machine.phys.ram_bytes)],
        process_vmas(proc),
        machine.rules,
        zero_pfn=machine.phys.zero_pfn,
    )


def ram_arg(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{a:#x}-{b:#x}" for a, b in ranges)


def dump_info(machine: Machine, image: str, fmt: str) -> dict[str, Any]:
    """The JSON description of a dump of ``machine`` written to ``image``."""
    arch = machine.arch
    ram = [(0, machine.phys.ram_bytes)]
    procs = []
    for proc in machine.processes.values():
        if not proc.alive:
            continue
        vmas_file = f"{image}.pid{proc.pid}.vmas"
        command = [
            "pfnmap", "decode", image, "--arch", arch.name, "--root", f"{proc.mm.pgd:#x}",
            "--ram", ram_arg(ram), "--vmas", vmas_file,
        ]  # fmt: skip
        if machine.rules.name != SEED.name and ERAS.get(machine.rules.name) == machine.rules:
            command += ["--era", machine.rules.name]
        if machine.rules.zero_pfn_is_special:  # is_zero_pfn decides (2.6.32 on)
            command += ["--zero-pfn", f"{machine.phys.zero_pfn:#x}"]
        procs.append(
            {
                "pid": proc.pid,
                "comm": proc.comm,
                "root": f"{proc.mm.pgd:#x}",
                "vmas": [
                    {
                        "start": f"{v.start:#x}",
                        "end": f"{v.end:#x}",
                        "flags": f"{v.flags:#x}",
                        "flag_names": v.flag_names(),
                        "pgoff": f"{v.pgoff:#x}",
                    }
                    for v in process_vmas(proc)
                ],
                "vmas_file": vmas_file,
                "decode": shlex.join(command),
            }
        )
    return {
        "schema": DUMP_SCHEMA,
        "arch": arch.name,
        "image": image,
        "format": fmt,
        "base": "0x0",
        "page_size": arch.page_size,
        "rules": machine.rules.name,
        "zero_pfn": f"{machine.phys.zero_pfn:#x}",
        "ram": [[f"{a:#x}", f"{b:#x}"] for a, b in ram],
        "io": [
            {"name": r.name, "start": f"{r.start:#x}", "end": f"{r.end:#x}", "space": r.space}
            for r in machine.phys.io_regions
        ],
        "processes": procs,
    }


def hints_from_info(info: dict[str, Any], pid: int) -> Hints:
    """The hints a dump's JSON gives for process ``pid``."""
    ram = [(int(a, 16), int(b, 16)) for a, b in info["ram"]]
    for proc in info["processes"]:
        if proc["pid"] == pid:
            vmas = [
                VmaHint(int(v["start"], 16), int(v["end"], 16), int(v["flags"], 16),
                        int(v["pgoff"], 16))
                for v in proc["vmas"]
            ]  # fmt: skip
            zero = info.get("zero_pfn")
            return Hints(
                ram,
                vmas,
                ERAS.get(info.get("rules", ""), SEED),
                zero_pfn=None if zero is None else int(zero, 16),
            )
    raise DumpError(f"the dump has no process {pid}")


# writing ------------------------------------------------------------------------------------
def dump_machine(
    machine: Machine,
    path: str | os.PathLike[str],
    fmt: str = "raw",
    *,
    compression: str = "zlib",
) -> dict:
    """Write ``machine``'s RAM to ``path`` (one of :data:`DUMP_FORMATS`), ``path.json`` and one
    ``path.pid<N>.vmas`` per live process; returns the JSON's content. ELF and kdump files
    carry pfnmap's note (the JSON without the vmas, each process's root), so ``pfnmap decode``
    needs no ``--arch``/``--root`` for them; ``compression`` is the kdump page codec."""
    if fmt not in DUMP_FORMATS:
        raise DumpError(f"unknown dump format {fmt!r} ({', '.join(DUMP_FORMATS)})")
    if compression not in KDUMP_COMPRESSIONS:
        raise DumpError(f"unknown compression {compression!r} ({', '.join(KDUMP_COMPRESSIONS)})")
    out = Path(path)
    info = dump_info(machine, out.name, fmt)
    if fmt.startswith("kdump"):
        info["compression"] = compression
    ram = memoryview(machine.phys.ram)
    note = {k: v for k, v in info.items() if k != "processes"}
    note["roots"] = {str(p["pid"]): p["root"] for p in info["processes"]}
    note_bytes = json.dumps(note).encode()
    try:
        if fmt == "raw":
            write_raw(out, ram)
        elif fmt == "lime":
            write_lime(out, [(0, ram)])
        elif fmt == "elf":
            write_elf_core(
                out, [(0, ram)], machine.arch, notes=[("PFNMAP", NT_PFNMAP_DUMP, note_bytes)]
            )
        else:
            arch = machine.arch
            write_kdump(
                out,
                [(0, ram)],
                arch,
                compression=compression,
                flattened=fmt == "kdump-flat",
                notes=elf_note("PFNMAP", NT_PFNMAP_DUMP, note_bytes, arch.byteorder),
                vmcoreinfo=f"OSRELEASE=2.6.15-pfnmap\nPAGESIZE={arch.page_size}\n".encode(),
            )
        for proc in machine.processes.values():
            if proc.alive:
                vmas_path = out.with_name(f"{out.name}.pid{proc.pid}.vmas")
                vmas_path.write_text(format_vmas(process_vmas(proc)), encoding="utf-8")
        out.with_name(out.name + ".json").write_text(
            json.dumps(info, indent=2) + "\n", encoding="utf-8"
        )
    except OSError as exc:
        raise DumpError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None
    except CodecMissing as exc:
        with contextlib.suppress(OSError):
            out.unlink()  # nothing half-written
        raise DumpError(str(exc)) from None
    finally:
        ram.release()
    return info
