"""emulator -> ``pfnmap dump --format kdump|kdump-flat|lime`` -> ``pfnmap decode``, on every arch:
the decoded ptes are the emulator's own, with and without ``--arch``/``--root`` (pfnmap's note
in the kdump file names both)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pfnmap.cli.main import main
from pfnmap.decode.dump import build_scenario, dump_machine, hints_from_info
from pfnmap.decode.image import open_image
from pfnmap.decode.walker import Leaf, Walker, leaves
from pfnmap.plugins.manager import default_registry

ARCHES = default_registry().names()


def _expected(proc) -> dict[int, tuple]:
    out = {}
    for vma in proc.vmas:
        for addr, pte in proc.ptes(vma):
            info = proc.lookup(addr)
            out[addr] = (pte, info.pfn, info.present, info.verdict)
    return out


def _decoded(path: Path, machine, proc, info: dict) -> dict[int, tuple]:
    arch = machine.arch
    root = next(int(p["root"], 16) for p in info["processes"] if p["pid"] == proc.pid)
    out = {}
    with open_image(path) as img:
        for rec in leaves(Walker(img, arch, root), arch, hints_from_info(info, proc.pid)):
            assert isinstance(rec, Leaf), rec
            pfn = rec.pa >> arch.page_shift if rec.present else None
            out[rec.va] = (rec.raw, pfn, rec.present, rec.verdict)
    return out


@pytest.mark.parametrize("name", ARCHES)
@pytest.mark.parametrize("fmt", ["kdump", "kdump-flat", "lime"])
def test_story_dump_decodes_to_the_emulators_ptes(tmp_path: Path, name: str, fmt: str) -> None:
    m = build_scenario(name)
    path = tmp_path / "d.img"
    info = dump_machine(m, path, fmt)
    with open_image(path) as img:
        assert img.kind == ("lime" if fmt == "lime" else "kdump")
    for proc in m.processes.values():
        assert _decoded(path, m, proc, info) == _expected(proc)


@pytest.mark.parametrize("name", ARCHES)
def test_kdump_decodes_with_no_options_from_pfnmaps_note(
    tmp_path: Path, name: str, monkeypatch, capsys
) -> None:
    m = build_scenario(name)
    info = dump_machine(m, tmp_path / "d.kdump", "kdump-flat")
    monkeypatch.chdir(tmp_path)
    assert main(["decode", "d.kdump", "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    first = info["processes"][0]
    assert f"{name} root {first['root']} from pfnmap dump's note (pid 1 of 2)" in captured.err
    rows = [json.loads(line) for line in captured.out.splitlines()]
    got = {int(r["va"], 16) for r in rows if r["record"] == "leaf"}
    assert got == set(_expected(m.processes[first["pid"]]))


@pytest.mark.parametrize("codec", ["lzo", "snappy", "zstd", "none"])
def test_dump_compressions(tmp_path: Path, codec: str) -> None:
    module = {"lzo": "lzallright", "snappy": "cramjam", "zstd": "zstandard"}.get(codec)
    if module:
        pytest.importorskip(module)
    m = build_scenario("x86-64")
    assert main(["dump", str(tmp_path / "d"), "--format", "kdump", "--compression", codec]) == 0
    with open_image(tmp_path / "d") as img:
        assert (codec in img.facts.format) == (codec != "none")
        assert img.read(0, m.phys.ram_bytes) == bytes(m.phys.ram)


def test_html_page_of_a_kdump_decoded_without_options(tmp_path: Path, monkeypatch, capsys) -> None:
    m = build_scenario("x86-64")
    info = dump_machine(m, tmp_path / "d.kdump", "kdump")
    monkeypatch.chdir(tmp_path)
    assert main(["decode", "d.kdump", "--format", "jsonl", "--html", "d.html"]) == 0
    err = capsys.readouterr().err
    assert "from pfnmap dump's note" in err and "wrote" in err
    page = (tmp_path / "d.html").read_text()
    assert f'root":"{info["processes"][0]["root"]}"' in page  # the page's summary
