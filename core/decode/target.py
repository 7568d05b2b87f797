"""What to decode: the image, the paging mode and the root table, from the options or the dump.

``pfnmap decode IMAGE`` needs an arch (paging mode) and the physical address of the top
table. When ``--arch`` or ``--root`` is left out, :func:`choose_target` takes them from what
the dump itself says (:class:`~pfnmap.decode.images.base.DumpFacts`), in this order:

1. the CPU's registers from QEMU's per-CPU note (CPU 0 unless ``--cpu N``): each registered
   arch says whether they select its mode and where its root is
   (:meth:`pfnmap.arch.Arch.root_from_registers`: CR0.PG, CR4.PAE/LA57 and long mode, which a
   QEMU core shows as EM_X86_64, give the x86 mode; CR3 the root);
2. pfnmap's own note (``pfnmap dump``): the arch and each process's root (the lowest pid's);
3. the kernel's VMCOREINFO (:meth:`pfnmap.arch.Arch.root_from_vmcoreinfo`: swapper_pg_dir /
   init_top_pgt with phys_base, pgtable_l5_enabled, CONFIG_X86_PAE): the kernel's own tables;
4. for ``--root`` alone, the one arch whose ELF machine / ``uname -m`` and byte order fit.

Only arches whose ELF machine (or a kdump header's ``utsname.machine``) and byte order fit
the dump are asked. The result says which source decided, for one line on stderr; when
nothing decides, :class:`TargetError` names the option that is needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from pfnmap.arch import Arch
from pfnmap.decode.images.base import DumpFacts, ImageError, PhysImage
from pfnmap.decode.images.elf import check_elf_arch, em_name
from pfnmap.decode.images.notes import CpuState, pfnmap_note, qemu_cpu_states
from pfnmap.decode.images.registry import open_image
from pfnmap.errors import PfnmapError


class TargetError(PfnmapError):
    """The options and the dump together do not say what to decode; ``option`` is the
    command-line option that would settle it."""

    def __init__(self, message: str, option: str = "") -> None:
        self.option = option
        super().__init__(message)


@dataclass
class Target:
    image: PhysImage
    arch: Arch
    root: int
    #: which source decided, one line ("" when --arch and --root were both given)
    source: str
    #: a root given as (register, value), which the arch turns into a table address
    register: tuple[str, int] | None = None


def resolve_target(
    path: str | os.PathLike[str],
    *,
    arches: dict[str, Arch],
    arch_name: str | None = None,
    root: int | None = None,
    cpu: int | None = None,
    base: int | None = None,
    image_format: str = "auto",
    register: tuple[str, int] | None = None,
) -> Target:
    """Open the image and settle the arch and root (see the module docstring). The caller
    owns the image (close it); on an error it is closed here."""
    arch = arches[arch_name] if arch_name is not None else None
    image = open_image(path, base, image_format)
    try:
        arch, root, source = choose_target(image, arches.values(), arch, root, cpu)
        check_elf_arch(image, arch, arches.values())
        check_byte_order(image, arch)
    except BaseException:
        image.close()
        raise
    return Target(image, arch, root, source, register)


NT_PRSTATUS = 1


def dump_elf_machine(facts: DumpFacts, arches: Iterable[Arch]) -> tuple[int | None, str]:
    """The ELF machine of the dumped CPUs and how it is known: an ELF core's e_machine, or,
    in a dump without one (kdump), the arch whose ``struct elf_prstatus`` has the size of
    the NT_PRSTATUS notes (:attr:`pfnmap.arch.Arch.elf_prstatus_size`)."""
    if facts.elf_machine:
        return facts.elf_machine, em_name(facts.elf_machine)
    sizes = {len(n.desc) for n in facts.notes if n.name == "CORE" and n.type == NT_PRSTATUS}
    machines = {
        a.elf_machine
        for a in arches
        if a.elf_prstatus_size and a.elf_prstatus_size in sizes and a.elf_machine
    }
    if len(machines) == 1 and len(sizes) == 1:
        (machine,) = machines
        return machine, f"{em_name(machine)} by its {sizes.pop()}-byte NT_PRSTATUS"
    return None, ""


def check_byte_order(image: PhysImage, arch: Arch) -> None:
    """Refuse a dump whose recorded byte order is not the arch's (ELF cores: check_elf_arch)."""
    order = image.facts.byteorder
    if image.kind != "elf" and order and order != arch.byteorder:
        raise ImageError(
            f"{image.name} is a {order}-endian dump but {arch.name} is {arch.byteorder}-endian: "
            "wrong --arch?"
        )


def fitting_arches(facts: DumpFacts, arches: Iterable[Arch]) -> list[Arch]:
    """The arches the dump's machine type and byte order allow."""
    known = list(arches)
    machine, _ = dump_elf_machine(facts, known)
    out = []
    for a in known:
        if facts.byteorder and facts.byteorder != a.byteorder:
            continue
        if machine:
            if a.elf_machine != machine:
                continue
        elif (
            facts.uname_machine
            and a.uname_machine
            and facts.uname_machine not in (a.uname_machine, *a.uname_aliases)
        ):
            continue
        out.append(a)
    return out


def cpu_states(image: PhysImage) -> list[CpuState]:
    states, problems = qemu_cpu_states(image.facts.notes)
    for p in problems:
        if p not in image.facts.warnings:
            image.facts.warnings.append(p)
    return states


def choose_target(
    image: PhysImage,
    arches: Iterable[Arch],
    arch: Arch | None,
    root: int | None,
    cpu: int | None,
) -> tuple[Arch, int, str]:
    """(arch, root, which source decided) for ``image`` given what the user said."""
    facts = image.facts
    known = list(arches)
    states = cpu_states(image)
    if cpu is not None and not states:
        raise TargetError(
            f"--cpu {cpu}: {image.name} has no CPU registers (no QEMU CPU note)", "--cpu"
        )
    if cpu is not None and cpu >= len(states):
        raise TargetError(
            f"--cpu {cpu}: {image.name} has the registers of {len(states)} CPU(s) "
            f"(0 to {len(states) - 1})",
            "--cpu",
        )
    if arch is not None and root is not None:
        return arch, root, ""
    candidates = [arch] if arch is not None else fitting_arches(facts, known)
    machine, machine_text = dump_elf_machine(facts, known)
    tried: list[str] = []

    # 1. the CPU's own registers
    if states:
        state = states[cpu or 0]
        regs = state.registers
        fits = []
        for a in candidates:
            r = a.root_from_registers(regs, machine, facts.word_bits)
            if r is not None:
                fits.append((a, r))
        shown = _registers_text(regs, facts, machine_text)
        more = f" ({len(states)} CPUs: --cpu N picks another)" if len(states) > 1 else ""
        if len(fits) == 1:
            a, r = fits[0]
            what = f"the {state.source} of CPU {state.index} ({shown}){more}"
            if root is not None:
                return a, root, f"{a.name} (--root given) from {what}"
            return a, r, f"{a.name} root {r:#x} from {what}"
        if len(fits) > 1:
            names = ", ".join(a.name for a, _ in fits)
            raise TargetError(
                f"the registers of CPU {state.index} ({shown}) fit several arches ({names}): "
                "give --arch",
                "--arch",
            )
        if arch is not None:
            others = [
                a.name
                for a in fitting_arches(facts, known)
                if a is not arch
                and a.root_from_registers(regs, machine, facts.word_bits) is not None
            ]
            if others:
                raise TargetError(
                    f"CPU {state.index}'s registers ({shown}) select {others[0]}, not "
                    f"{arch.name}: leave --arch out, or give --root",
                    "--root",
                )
        tried.append(f"CPU {state.index}'s registers ({shown}) select no paging mode pfnmap has")

    # 2. pfnmap's own note
    note = pfnmap_note(facts.notes)
    if note is not None:
        a = next((c for c in known if c.name == note.get("arch")), None)
        roots = note.get("roots") or {}
        if a is not None and (arch is None or a is arch) and roots:
            pid = min(roots, key=lambda p: int(p) if str(p).isdigit() else 1 << 30)
            try:
                r = int(str(roots[pid]), 16)
            except ValueError:
                r = None
            if r is not None:
                what = f"pfnmap dump's note (pid {pid} of {len(roots)})"
                if root is not None:
                    return a, root, f"{a.name} (--root given) from {what}"
                return a, r, f"{a.name} root {r:#x} from {what}"
        tried.append(f"pfnmap's note names arch {note.get('arch')!r}")

    # 3. the kernel's VMCOREINFO
    if facts.vmcoreinfo:
        fits = []
        for a in candidates:
            r = a.root_from_vmcoreinfo(facts.vmcoreinfo, facts.phys_base)
            if r is not None:
                fits.append((a, r))
        release = facts.vmcoreinfo.get("OSRELEASE", "?")
        if len(fits) == 1:
            a, r = fits[0]
            what = f"VMCOREINFO (Linux {release}; the kernel's own page tables)"
            if root is not None:
                return a, root, f"{a.name} (--root given) from {what}"
            return a, r, f"{a.name} root {r:#x} from {what}"
        tried.append(f"VMCOREINFO (Linux {release}) names no root pfnmap can place")

    # 4. --root alone: the one arch the machine type allows
    if root is not None and arch is None:
        fit = fitting_arches(facts, known)
        if len(fit) == 1 and (facts.elf_machine or facts.uname_machine):
            a = fit[0]
            return a, root, f"{a.name} (--root given) from the dump's machine type"

    need = "--root ADDR" if arch is not None else "--arch NAME" if root is not None else None
    if need is None:
        need = "--arch NAME and --root ADDR"
    why = "; ".join(tried) if tried else _nothing(image)
    raise TargetError(f"{image.name}: {why}: give {need}", need.split()[0])


def _nothing(image: PhysImage) -> str:
    if image.kind == "raw":
        return "a raw image says nothing about the machine"
    return f"{image.facts.format or image.kind} carries no CPU registers, pfnmap note or VMCOREINFO"


def _registers_text(regs: dict[str, int], facts: DumpFacts, machine: str = "") -> str:
    parts = [f"{k.upper()}={regs[k]:#x}" for k in ("cr0", "cr3", "cr4", "efer") if k in regs]
    if machine:
        parts.append(machine)
    elif facts.word_bits:
        parts.append(f"{facts.word_bits}-bit")
    return " ".join(parts)
