"""What ``pfnmap info`` does once its arguments are parsed (the parser is
:mod:`pfnmap.cli.info`)."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from rich.console import Console
from rich.text import Text

from pfnmap.cli.main import UsageError
from pfnmap.decode.image import PhysImage, UnknownImageFormat, em_name, open_image
from pfnmap.decode.target import (
    TargetError,
    choose_target,
    cpu_states,
    dump_elf_machine,
    fitting_arches,
)
from pfnmap.kernel.units import format_size
from pfnmap.plugins.manager import default_registry

#: the registers shown per CPU (the ones that pick the paging mode and its root)
CPU_REGISTERS = ("cr0", "cr3", "cr4", "efer", "rip", "rsp", "cs_selector")
#: VMCOREINFO keys shown with their values (besides every NUMBER(...), CONFIG_... and the
#: page-table symbols); the others are only counted
VMCOREINFO_SHOWN = ("OSRELEASE", "PAGESIZE", "KERNELOFFSET")


def _shown_vmcoreinfo(info: dict[str, str]) -> dict[str, str]:
    def shown(key: str) -> bool:
        return (
            key in VMCOREINFO_SHOWN
            or key.startswith(("NUMBER(", "CONFIG_"))
            or (key.startswith("SYMBOL(") and ("pgt" in key or "pg_dir" in key))
        )

    return {k: v for k, v in info.items() if shown(k)}


RANGES_SHOWN = 8


def cmd_info(args: argparse.Namespace, console: Console) -> int:
    try:
        image = open_image(args.image, args.base, args.image_format)
    except UnknownImageFormat as exc:
        raise UsageError(f"argument --image-format: {exc}") from None
    with image:
        info = describe(image, args)
    if args.json:
        console.file.write(json.dumps(info, indent=2) + "\n")
        return 0
    for line in _lines(info):
        console.print(Text(line), soft_wrap=True)
    return 0


def _ranges(ranges: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "count": len(ranges),
        "bytes": sum(b - a for a, b in ranges),
        "ranges": [[f"{a:#x}", f"{b:#x}"] for a, b in ranges],
    }


def describe(image: PhysImage, args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``pfnmap info`` says about ``image``, as plain JSON values."""
    facts = image.facts
    registry = default_registry()
    states = cpu_states(image)
    arches = registry.arches.values()
    cpu_machine, cpu_machine_text = dump_elf_machine(facts, arches)
    cpus = []
    for state in states:
        regs = state.registers
        modes = [
            f"{a.name} root {r:#x}"
            for a in fitting_arches(facts, arches)
            if (r := a.root_from_registers(regs, cpu_machine, facts.word_bits)) is not None
        ]
        cpus.append(
            {
                "cpu": state.index,
                "source": state.source,
                "registers": {k: f"{regs[k]:#x}" for k in CPU_REGISTERS if k in regs},
                "paging": modes,
            }
        )
    notes: dict[str, int] = {}
    for n in facts.notes:
        key = f"{n.name} type {n.type:#x}"
        notes[key] = notes.get(key, 0) + 1
    command = ["pfnmap", "decode", args.image]
    if args.image_format != "auto":
        command += ["--image-format", args.image_format]
    if args.base is not None:
        command += ["--base", f"{args.base:#x}"]
    try:
        arch, root, source = choose_target(image, arches, None, None, None)
        decode = {
            "command": shlex.join([*command, "--arch", arch.name, "--root", f"{root:#x}"]),
            "source": source,
            "without_options": shlex.join(command),
        }
    except TargetError as exc:
        decode = {"command": None, "source": str(exc), "without_options": None}
    machine = {}
    if facts.elf_machine:
        machine["elf_machine"] = em_name(facts.elf_machine)
    elif cpu_machine_text:
        machine["cpu_machine"] = cpu_machine_text
    if facts.uname_machine:
        machine["uname_machine"] = facts.uname_machine
    if facts.vmcoreinfo.get("OSRELEASE"):
        machine["osrelease"] = facts.vmcoreinfo["OSRELEASE"]
    warnings = list(facts.warnings)
    kdump = getattr(image, "kdump", None)
    if kdump is not None:
        check = kdump.check_descriptors()
        damaged = {k: v for k, v in check.items() if k != "descriptors" and v}
        if damaged:
            what = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in damaged.items())
            warnings.append(f"of {check['descriptors']} page descriptors: {what}")
    return {
        "image": args.image,
        "format": image.kind,
        "description": facts.format,
        "sniffed": getattr(image, "sniffed", ""),
        "byteorder": facts.byteorder,
        "word_bits": facts.word_bits,
        "machine": machine,
        "dumped": _ranges(image.ranges()),
        "not_dumped": _ranges(facts.not_dumped),
        "notes": notes,
        "vmcoreinfo": _shown_vmcoreinfo(facts.vmcoreinfo),
        "vmcoreinfo_keys": len(facts.vmcoreinfo),
        "phys_base": None if facts.phys_base is None else f"{facts.phys_base:#x}",
        "cpus": cpus,
        "header": {k: v for k, v in facts.header.items() if isinstance(v, int | str | bool)},
        "warnings": warnings,
        "decode": decode,
    }


def _show_ranges(label: str, r: dict[str, Any]) -> str:
    parts = [f"{a}-{b}" for a, b in r["ranges"][:RANGES_SHOWN]]
    if r["count"] > RANGES_SHOWN:
        parts.append(f"... ({r['count'] - RANGES_SHOWN} more)")
    return f"{label}: {format_size(r['bytes'])} in {r['count']} ranges: {', '.join(parts)}"


def _lines(info: dict[str, Any]) -> list[str]:
    out = [f"{info['image']}: {info['description']}"]
    if info["sniffed"]:
        out.append(f"  recognised as: {info['sniffed']}")
    order = info["byteorder"] or "unknown"
    bits = f", {info['word_bits']}-bit" if info["word_bits"] else ""
    machine = ", ".join(f"{k} {v}" for k, v in info["machine"].items()) or "not recorded"
    out.append(f"  byte order: {order}{bits}; machine: {machine}")
    out.append("  " + _show_ranges("memory", info["dumped"]))
    if info["not_dumped"]["count"]:
        out.append("  " + _show_ranges("RAM not dumped", info["not_dumped"]))
    if info["phys_base"] is not None:
        out.append(f"  phys_base: {info['phys_base']}")
    notes = ", ".join(f"{n} x{c}" for n, c in info["notes"].items()) or "none"
    out.append(f"  notes: {notes}")
    if info["vmcoreinfo_keys"]:
        shown = " ".join(f"{k}={v}" for k, v in info["vmcoreinfo"].items())
        out.append(f"  VMCOREINFO: {info['vmcoreinfo_keys']} keys; {shown}")
    for cpu in info["cpus"]:
        regs = " ".join(f"{k.upper()}={v}" for k, v in cpu["registers"].items())
        paging = "; ".join(cpu["paging"]) or "no paging mode pfnmap has"
        out.append(f"  CPU {cpu['cpu']} ({cpu['source']}): {regs} -> {paging}")
    if info["header"]:
        shown = " ".join(f"{k}={v}" for k, v in info["header"].items())
        out.append(f"  header: {shown}")
    for w in info["warnings"]:
        out.append(f"  warning: {w}")
    d = info["decode"]
    if d["command"]:
        out.append(f"  decode: {d['command']}")
        out.append(f"    ({d['source']}; `{d['without_options']}` finds the same by itself)")
    else:
        out.append(f"  decode: {d['source']}")
    return out
