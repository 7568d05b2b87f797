"""QEMU's own dumps against QEMU's own monitor: the kdump-zlib file and the ELF core of each
fixture, decoded with and without ``--arch``/``--root``, print what ``info tlb`` and
``info mem`` printed at the same stopped moment.

scripts/qemu_fixtures/regen.py (docs/qemu-fixtures.rst) ran QEMU 7.2's
``dump-guest-memory`` twice at the stop: ``format=kdump-zlib`` (makedumpfile's flattened
format, written by QEMU's dump/dump.c) refiltered to the page-table frames, and the ELF core,
whose notes (``CORE`` NT_PRSTATUS and ``QEMU`` QEMUCPUState per vCPU) go with the frames into
``pt.elf.xz``. The oracle is QEMU's monitor (target/i386/monitor.c); nothing here needs QEMU.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from pfnmap.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "qemu"
DIRS = sorted(
    p.parent for p in FIXTURES.glob("*/meta.json") if "kdump" in json.loads(p.read_text())
)
FORMATS = {"qemu-tlb": "info_tlb.txt.xz", "qemu-mem": "info_mem.txt.xz"}


def _meta(fixture: Path) -> dict:
    return json.loads((fixture / "meta.json").read_text())


def _unpack(fixture: Path, name: str, tmp_path: Path) -> Path:
    out = tmp_path / name.removesuffix(".xz")
    out.write_bytes(lzma.decompress((fixture / name).read_bytes()))
    return out


def _params():
    for fixture in DIRS:
        for fmt, text in FORMATS.items():
            for kind in ("kdump", "core"):
                for options in (True, False):
                    ids = f"{fixture.name}-{kind}-{fmt}-{'options' if options else 'bare'}"
                    yield pytest.param(fixture, fmt, text, kind, options, id=ids)


def test_every_fixture_has_qemus_dumps() -> None:
    assert {d.name for d in DIRS} >= {"x86-64", "x86-la57", "x86-pae", "x86-2level"}


@pytest.mark.parametrize(("fixture", "fmt", "text", "kind", "options"), list(_params()))
def test_qemus_dumps_decode_as_qemu_prints(
    fixture: Path, fmt: str, text: str, kind: str, options: bool, tmp_path: Path, capsys
) -> None:
    meta = _meta(fixture)
    bug = meta.get("qemu_bugs", {}).get(fmt)
    if bug:
        pytest.skip(f"QEMU's own text is wrong here: {bug} (test_qemu_fixtures checks it)")
    image = _unpack(fixture, meta[kind], tmp_path)
    argv = ["decode", str(image), "--format", fmt]
    if options:
        argv += ["--arch", meta["arch"], "--root", meta["root"]]
    capsys.readouterr()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    want = lzma.decompress((fixture / text).read_bytes()).decode().splitlines()
    got = out.splitlines()
    assert len(got) == len(want)
    assert got == want
    if not options:  # the one line that says what decided
        assert (
            f"{meta['arch']} root {meta['root']} from the QEMU CPU note of CPU 0 "
            f"(CR0={meta['cr0']} CR3={meta['cr3']} CR4={meta['cr4']}"
        ) in err


@pytest.mark.parametrize("fixture", DIRS, ids=[d.name for d in DIRS])
def test_info_describes_each_fixture(fixture: Path, tmp_path: Path, capsys) -> None:
    meta = _meta(fixture)
    for kind in ("kdump", "core"):
        image = _unpack(fixture, meta[kind], tmp_path)
        capsys.readouterr()
        assert main(["info", str(image), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["format"] == ("kdump" if kind == "kdump" else "elf")
        assert info["byteorder"] == "little"
        assert info["notes"].get("QEMU type 0x0") == 1
        assert info["notes"].get("CORE type 0x1") == 1  # NT_PRSTATUS
        (cpu,) = info["cpus"]
        assert cpu["registers"]["cr3"] == meta["cr3"] and cpu["registers"]["cr4"] == meta["cr4"]
        assert cpu["paging"] == [f"{meta['arch']} root {meta['root']}"]
        assert info["decode"]["command"].endswith(f"--arch {meta['arch']} --root {meta['root']}")
        if kind == "kdump":
            assert "flattened" in info["description"] and "zlib" in info["description"]
            header = info["header"]
            # QEMU's header: one CPU, every RAM page in the first bitmap, and the refilter
            # kept exactly the frames QEMU's monitor read
            assert header["nr_cpus"] == 1 and header["dump_level"] == 1
            assert header["dumped_pages"] == meta["frames"]
            assert header["ram_pages"] * 4096 >= meta["ram_bytes"]
            assert info["not_dumped"]["count"] > 0
            assert info["machine"]["uname_machine"] == (
                "x86_64" if meta["arch"] in ("x86-64", "x86-la57") else "i686"
            )
            # QEMU's cpu_get_dump_info makes the dump ELFCLASS64 (so the kdump header 64-bit)
            # once a block ends above 4 GiB - 1, and the BIOS ROM ends at 4 GiB: the i386 modes
            # too, so the mode comes from the CPU note and the 144- or 336-byte NT_PRSTATUS
            assert info["word_bits"] == 64
            prstatus = 336 if meta["arch"] in ("x86-64", "x86-la57") else 144
            assert info["machine"]["cpu_machine"].endswith(f"{prstatus}-byte NT_PRSTATUS")
