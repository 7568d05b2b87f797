"""``pfnmap decode IMAGE`` without ``--arch``/``--root``: the paging mode and root from the dump.

The register facts follow the Intel SDM (vol. 3, 4.1.1: CR0.PG, CR4.PAE, CR4.LA57, EFER.LMA
select 32-bit, PAE, 4-level and 5-level paging; CR3 holds the top table) and QEMU 7.2's
target/i386/arch_dump.c (one "QEMU" note per vCPU, QEMUCPUState version 1, and the core's
e_machine is EM_X86_64 exactly when the first CPU is in long mode). The VMCOREINFO facts
follow the kernel's crash_core.c / arch/x86/kernel/machine_kexec_{32,64}.c (SYMBOL(...) run-time
addresses, NUMBER(phys_base), NUMBER(pgtable_l5_enabled), CONFIG_X86_PAE=y).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pfnmap.cli.main import main
from pfnmap.decode.image import open_image, write_elf_core, write_kdump
from pfnmap.decode.images.notes import elf_note, qemu_cpu_note
from pfnmap.decode.target import TargetError, choose_target
from pfnmap.plugins.manager import default_registry

REGISTRY = default_registry()
PG, PAE, LA57 = 1 << 31, 1 << 5, 1 << 12

#: (arch, cr0, cr4, cr3 with flag bits, the root it means)
MODES = [
    ("x86-64", PG | 0x33, 0x6F0, 0x6032000 | 0x18, 0x6032000),
    ("x86-la57", PG | 0x33, 0x6F0 | LA57, 0x2A0C000 | 0x800 | (1 << 63), 0x2A0C000),
    ("x86-pae", PG | 0x33, 0x6B0, 0x1234560 | 0x8, 0x1234560),
    ("x86-2level", PG | 0x33, 0x690, 0x00ABC000 | 0x18, 0x00ABC000),
]


def _core(path: Path, arch: str, regs: list[dict[str, int]], fmt: str = "elf") -> None:
    notes = [("QEMU", 0, qemu_cpu_note(r)) for r in regs]
    data = [(0, bytes(1 << 18))]
    if fmt == "elf":
        write_elf_core(path, data, arch, notes=notes)
    else:
        blob = b"".join(elf_note(n, t, d) for n, t, d in notes)
        write_kdump(path, data, arch, notes=blob, flattened=fmt == "kdump-flat")


@pytest.mark.parametrize("fmt", ["elf", "kdump", "kdump-flat"])
@pytest.mark.parametrize(("arch", "cr0", "cr4", "cr3", "root"), MODES, ids=[m[0] for m in MODES])
def test_qemu_cpu_note_gives_mode_and_root(tmp_path, fmt, arch, cr0, cr4, cr3, root) -> None:
    path = tmp_path / "core"
    _core(path, arch, [{"cr0": cr0, "cr3": cr3, "cr4": cr4}], fmt)
    with open_image(path) as img:
        got_arch, got_root, source = choose_target(img, REGISTRY.arches.values(), None, None, None)
    assert (got_arch.name, got_root) == (arch, root)
    assert "QEMU CPU note of CPU 0" in source and f"CR3={cr3:#x}" in source


def test_several_cpus_cpu_0_by_default_and_cpu_n_chooses(tmp_path: Path, capsys) -> None:
    path = tmp_path / "core"
    regs = [{"cr0": PG, "cr4": 0x6F0, "cr3": 0x10000 * (i + 1)} for i in range(3)]
    _core(path, "x86-64", regs)
    with open_image(path) as img:
        arches = REGISTRY.arches.values()
        assert choose_target(img, arches, None, None, None)[1] == 0x10000
        assert choose_target(img, arches, None, None, 2)[1] == 0x30000
        with pytest.raises(TargetError, match=r"--cpu 3: .* 3 CPU\(s\) \(0 to 2\)"):
            choose_target(img, arches, None, None, 3)
    # through the command line: the one line on stderr says what decided
    assert main(["decode", str(path), "--cpu", "1", "--format", "jsonl"]) == 0
    err = capsys.readouterr().err
    assert "x86-64 root 0x20000 from the QEMU CPU note of CPU 1" in err
    assert "3 CPUs: --cpu N picks another" in err


def test_arch_given_root_from_the_note_and_a_contradiction_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "core"
    _core(path, "x86-pae", [{"cr0": PG, "cr4": PAE, "cr3": 0x5000}])
    with open_image(path) as img:
        arches = REGISTRY.arches.values()
        arch, root, _ = choose_target(img, arches, REGISTRY.get("x86-pae"), None, None)
        assert (arch.name, root) == ("x86-pae", 0x5000)
        with pytest.raises(TargetError, match="select x86-pae, not x86-2level"):
            choose_target(img, arches, REGISTRY.get("x86-2level"), None, None)
        # --root given, --arch from the registers
        arch, root, source = choose_target(img, arches, None, 0x7000, None)
        assert (arch.name, root) == ("x86-pae", 0x7000) and "--root given" in source


def test_paging_off_or_unknown_registers_say_what_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "core"
    _core(path, "x86-64", [{"cr0": 0x11, "cr4": 0, "cr3": 0}])
    with open_image(path) as img, pytest.raises(TargetError) as exc:
        choose_target(img, REGISTRY.arches.values(), None, None, None)
    assert "select no paging mode" in str(exc.value) and exc.value.option == "--arch"


VMCOREINFO_64 = (
    b"OSRELEASE=6.1.0-57-amd64\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff82a0c000\n"
    b"NUMBER(phys_base)=-2097152\nKERNELOFFSET=0\nNUMBER(pgtable_l5_enabled)=0\n"
)


@pytest.mark.parametrize(
    ("arch", "info", "phys_base", "root"),
    [
        # __pa_symbol: 0xffffffff82a0c000 - __START_KERNEL_map + phys_base (-2 MiB)
        ("x86-64", VMCOREINFO_64, 0, 0x2A0C000 - 0x200000),
        ("x86-la57", VMCOREINFO_64.replace(b"l5_enabled)=0", b"l5_enabled)=1"), 0,
         0x2A0C000 - 0x200000),
        # no NUMBER(phys_base): the kdump sub header's
        ("x86-64", b"OSRELEASE=5.4\nSYMBOL(init_level4_pgt)=ffffffff81e0a000\n", 0x1000000,
         0x1E0A000 + 0x1000000),
        ("x86-pae", b"OSRELEASE=6.1\nSYMBOL(swapper_pg_dir)=c1b2c000\nCONFIG_X86_PAE=y\n", 0,
         0x1B2C000),
        ("x86-2level", b"OSRELEASE=6.1\nSYMBOL(swapper_pg_dir)=c1b2c000\n", 0, 0x1B2C000),
    ],
    ids=["x86-64", "la57", "phys-base-from-header", "pae", "2level"],
)  # fmt: skip
def test_vmcoreinfo_gives_the_kernels_own_tables(tmp_path, arch, info, phys_base, root) -> None:
    path = tmp_path / "vmcore"
    write_kdump(path, [(0, bytes(1 << 16))], arch, vmcoreinfo=info, phys_base=phys_base)
    with open_image(path) as img:
        got, got_root, source = choose_target(img, REGISTRY.arches.values(), None, None, None)
    assert (got.name, got_root) == (arch, root)
    assert "VMCOREINFO" in source


def test_the_cpu_note_wins_over_vmcoreinfo(tmp_path: Path) -> None:
    path = tmp_path / "vmcore"
    note = elf_note("QEMU", 0, qemu_cpu_note({"cr0": PG, "cr4": 0x6F0, "cr3": 0x9000}))
    write_kdump(path, [(0, bytes(1 << 16))], "x86-64", notes=note, vmcoreinfo=VMCOREINFO_64)
    with open_image(path) as img:
        assert choose_target(img, REGISTRY.arches.values(), None, None, None)[1] == 0x9000


def test_nothing_to_go_on_is_one_line_naming_the_option(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "ram.raw"
    raw.write_bytes(bytes(1 << 16))
    assert main(["decode", str(raw)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "a raw image says nothing about the machine: give --arch NAME and --root ADDR" in err
    assert main(["decode", str(raw), "--arch", "x86-64"]) == 2
    assert "give --root ADDR" in capsys.readouterr().err
    assert main(["decode", str(raw), "--root", "0"]) == 2
    assert "give --arch NAME" in capsys.readouterr().err
    assert main(["decode", str(raw), "--cpu", "0", "--arch", "x86-64", "--root", "0"]) == 2
    assert "no CPU registers" in capsys.readouterr().err


def test_root_alone_takes_the_one_arch_the_machine_type_allows(tmp_path: Path) -> None:
    path = tmp_path / "core"
    write_elf_core(path, [(0, bytes(1 << 16))], "sparc64")
    with open_image(path) as img:
        arch, root, source = choose_target(img, REGISTRY.arches.values(), None, 0x2000, None)
    assert (arch.name, root) == ("sparc64", 0x2000) and "machine type" in source


def test_damaged_notes_are_a_warning_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "core"
    good = elf_note("QEMU", 0, qemu_cpu_note({"cr0": PG, "cr4": 0x6F0, "cr3": 0x9000}))
    bad = good + b"\x05\x00\x00\x00\xff\xff\xff\x7f\x00\x00\x00\x00QEMU\x00\x00\x00\x00"
    write_kdump(path, [(0, bytes(1 << 16))], "x86-64", notes=bad)
    with open_image(path) as img:
        assert any("past the end" in w for w in img.facts.warnings)
        assert choose_target(img, REGISTRY.arches.values(), None, None, None)[1] == 0x9000
    short = elf_note("QEMU", 0, b"\x01\x00\x00\x00" + bytes(20))
    write_kdump(path, [(0, bytes(1 << 16))], "x86-64", notes=short)
    with open_image(path) as img, pytest.raises(TargetError):
        choose_target(img, REGISTRY.arches.values(), None, None, None)


def test_a_64_bit_kdump_of_a_32_bit_guest_is_told_by_its_prstatus(tmp_path: Path) -> None:
    """What an x86-64 QEMU writes for a PAE guest: a 64-bit kdump header with utsname.machine
    x86_64 (QEMU's ELF_MACHINE_UNAME), and per CPU the 144-byte i386 NT_PRSTATUS (QEMU's
    x86_elf_prstatus, chosen because the CPU is not in long mode) next to the QEMU note."""
    path = tmp_path / "vmcore"
    notes = elf_note("CORE", 1, bytes(144)) + elf_note(
        "QEMU", 0, qemu_cpu_note({"cr0": PG, "cr4": PAE | 0x690, "cr3": 0x3000})
    )
    write_kdump(path, [(0, bytes(1 << 16))], "x86-64", notes=notes)
    with open_image(path) as img:
        assert img.facts.word_bits == 64 and img.facts.uname_machine == "x86_64"
        arch, root, source = choose_target(img, REGISTRY.arches.values(), None, None, None)
    assert (arch.name, root) == ("x86-pae", 0x3000)
    assert "EM_386 by its 144-byte NT_PRSTATUS" in source
