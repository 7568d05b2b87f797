"""What ``pfnmap vtop`` and ``pfnmap ptov`` do once parsed (imported only when they run)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.cli.decode_output import problem_line
from pfnmap.cli.decode_run import _arch, _hints
from pfnmap.cli.main import PROG, UsageError
from pfnmap.decode.translate import (
    AddressError,
    Alias,
    Step,
    Translation,
    check_pa,
    ptov,
    step_dict,
    vtop,
    vtop_process,
)

if TYPE_CHECKING:
    from rich.console import Console

    from pfnmap.arch import Arch
    from pfnmap.decode.image import PhysImage


@contextlib.contextmanager
def _target(args: argparse.Namespace, n_addresses: str) -> Iterator[tuple]:
    """(image, arch, root, process or None, what, addresses) from the command line."""
    target = list(args.target)
    if args.scenario is not None:
        from pfnmap.decode.dump import SCENARIOS, build_scenario
        from pfnmap.decode.image import machine_image

        if args.scenario not in SCENARIOS:
            raise UsageError(f"argument --scenario: unknown scenario {args.scenario!r} "
                             f"(known: {', '.join(SCENARIOS)})")  # fmt: skip
        arch = _arch(args.arch or DEFAULT_ARCH)
        machine = build_scenario(arch.name, args.scenario)
        procs = machine.processes
        pid = args.pid if args.pid is not None else next(iter(procs))
        if pid not in procs:
            raise UsageError(f"argument --pid: no process {pid} (there are {sorted(procs)})")
        proc = procs[pid]
        image = machine_image(machine)
        yield image, arch, proc.mm.pgd, proc, f"pid {pid} {proc.comm} ({args.scenario})", target
        return
    if not target:
        raise UsageError(f"the image and {n_addresses} are required")
    image_name, addresses = target[0], target[1:]
    if args.arch is None or args.root is None:
        raise UsageError("an image needs --arch and --root (the paging mode and the "
                         "top-level table)")  # fmt: skip
    from pfnmap.decode.image import check_elf_arch, open_image
    from pfnmap.plugins.manager import default_registry

    arch = _arch(args.arch)
    with open_image(image_name, args.base, args.image_format) as image:
        check_elf_arch(image, arch, default_registry().arches.values())
        yield image, arch, args.root, None, image_name, addresses


def _addresses(texts: list[str], what: str) -> list[int]:
    from pfnmap.cli.main import address

    out = []
    for t in texts:
        try:
            out.append(address(t))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{what}: {exc}") from None
    return out


# vtop ------------------------------------------------------------------------------------------
def _fields_text(step: Step) -> str:
    parts = [k if v == 1 else f"{k}={v:#x}" for k, v in step.fields.items()]
    return " ".join(parts)


def render_translation(out: TextIO, t: Translation, what: str) -> None:
    """The translation for people, one line per level."""
    out.write(f"{t.arch} VA {t.va:#x}, root {t.root:#x} in {what}\n")
    width = max(len(f"{s.level_name}[{s.index}]") for s in t.steps)
    for s in t.steps:
        where = f"{s.level_name}[{s.index}]".ljust(width)
        raw = "-" if s.raw is None else f"{s.raw:#x}"
        line = f"  {where}  entry {s.entry_addr:#x} = {raw}"
        if s.layout:
            line += f"  {s.layout}"
        fields = " ".join(s.flags) if s.flags else _fields_text(s)
        if fields:
            line += f": {fields}"
        out.write(f"{line}\n  {' ' * width}  -> {s.detail}\n")
    if t.pa is None:
        out.write(f"not mapped: the walk stops at the {t.stop.level_name} entry "
                  f"({t.stop.outcome})\n")  # fmt: skip
        return
    assert t.page_pa is not None and t.page_size is not None
    out.write(f"PA {t.pa:#x}: the {t.leaf_level} page at {t.page_pa:#x} "
              f"({t.page_size:#x} bytes) + {t.pa - t.page_pa:#x}\n")  # fmt: skip
    if t.verdict is not None or t.reason is not None:
        out.write(f"vm_normal_page: {t.verdict or '-'} ({t.reason})\n")
    if t.page is not None:
        if t.page.get("struct_page"):
            out.write(f"struct page: pfn {t.page['pfn']}, flags {' '.join(t.page['flags']) or '-'},"
                      f" count {t.page['count']}, mapcount {t.page['mapcount']}\n")  # fmt: skip
        else:
            out.write(f"struct page: none (pfn {t.page['pfn']} is not RAM)\n")


def cmd_vtop(args: argparse.Namespace, console: Console) -> int:
    out = sys.stdout
    with _target(args, "a VA") as (image, arch, root, proc, what, texts):
        if len(texts) != 1:
            raise UsageError(f"one VA is required, got {len(texts)}: {' '.join(texts) or '-'}")
        (va,) = _addresses(texts, "VA")
        try:
            if proc is not None:
                t = vtop_process(proc, va)
            else:
                t = vtop(image, arch, root, va, _hints(args, arch))
        except AddressError as exc:
            raise UsageError(f"VA: {exc}") from None
        if args.format == "jsonl":
            for s in t.steps:
                out.write(json.dumps(step_dict(s)) + "\n")
            out.write(json.dumps(t.as_dict()) + "\n")
        else:
            render_translation(out, t, what)
    return 0


# ptov ------------------------------------------------------------------------------------------
def _alias_line(a: Alias, pa_width: int, va_width: int) -> str:
    return (f"{a.pa:#0{pa_width}x}  {a.va:#0{va_width}x}  {a.level_name:<7} "
            f"page {a.page_va:#x} -> {a.page_pa:#x}  {' '.join(a.flags)}\n")  # fmt: skip


def _alias_dict(a: Alias) -> dict:
    return {"record": "alias", "pa": f"{a.pa:#x}", "va": f"{a.va:#x}", "level": a.level_name,
            "size": a.size, "page_va": f"{a.page_va:#x}", "page_pa": f"{a.page_pa:#x}",
            "raw": f"{a.raw:#x}", "flags": " ".join(a.flags)}  # fmt: skip


def _read_pas(path: str) -> list[str]:
    try:
        f = sys.stdin if path == "-" else open(path)  # noqa: SIM115 (stdin is not ours to close)
    except OSError as exc:
        raise UsageError(f"argument --from: {exc.strerror}: {path}") from None
    with contextlib.ExitStack() as stack:
        if f is not sys.stdin:
            stack.enter_context(f)
        return [w for line in f for w in line.split("#", 1)[0].split()]


def cmd_ptov(args: argparse.Namespace, console: Console) -> int:
    from pfnmap.decode.walker import Walker

    out = sys.stdout
    with _target(args, "a PA") as (image, arch, root, _proc, _what, texts):
        if args.from_file is not None:
            texts = [*texts, *_read_pas(args.from_file)]
        pas = _addresses(texts, "PA")
        if not pas:
            raise UsageError("at least one PA is required (or --from FILE)")
        for pa in pas:
            try:
                check_pa(arch, pa)
            except AddressError as exc:
                raise UsageError(f"PA: {exc}") from None
        found = {pa: 0 for pa in pas}
        pa_w = 2 + max(8, -(-arch.phys_bits // 4))
        va_w = 2 + (16 if arch.va_bits > 32 else 8)
        walker = Walker(image, arch, root, grouped=True)
        problems: list = []
        for a in ptov(walker, arch, pas, problems):
            found[a.pa] += 1
            if args.format == "jsonl":
                out.write(json.dumps(_alias_dict(a)) + "\n")
            else:
                out.write(_alias_line(a, pa_w, va_w))
        for p in problems:
            problem_line(p)
        missing = [pa for pa, n in found.items() if not n]
        if args.format == "jsonl":
            for pa in missing:
                out.write(json.dumps({"record": "unmapped", "pa": f"{pa:#x}"}) + "\n")
        elif missing:
            out.write("not mapped: " + " ".join(f"{pa:#x}" for pa in missing) + "\n")
        _outside_note(image, arch, pas)
    return 0


def _outside_note(image: PhysImage, arch: Arch, pas: list[int]) -> None:
    """A PA the image does not hold is still a fair question (device memory, a core of the
    page tables only): say so on stderr, once."""
    outside = [pa for pa in pas if not image.contains(pa)]
    if outside:
        print(f"{PROG}: note: {len(outside)} of the PAs are not in the image "
              f"({image.describe_ranges()}); the tables can map them all the same",
              file=sys.stderr)  # fmt: skip
