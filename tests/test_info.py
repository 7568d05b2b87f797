"""``pfnmap info IMAGE``: format, byte order, machine, ranges, notes, VMCOREINFO, CPUs, and the
decode command, as text and as JSON; bad input is one line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from pfnmap.cli.main import main
from pfnmap.decode.dump import build_scenario, dump_machine
from pfnmap.decode.image import write_kdump
from pfnmap.decode.images.notes import elf_note, qemu_cpu_note

PG = 1 << 31


def _info_json(path: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["info", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_kdump_file_with_a_cpu_note_and_vmcoreinfo(tmp_path: Path, capsys) -> None:
    path = tmp_path / "vmcore"
    notes = b"".join(
        elf_note("QEMU", 0, qemu_cpu_note({"cr0": PG | 0x33, "cr4": 0x6F0, "cr3": cr3}))
        for cr3 in (0x8000, 0xA000)
    )
    data = bytes(range(256)) * 16 * 16  # 16 pages
    write_kdump(
        path, [(0, data)], "x86-64", notes=notes, flattened=True,
        vmcoreinfo=b"OSRELEASE=6.1.0-57-amd64\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff82a0c000\n",
        exclude=lambda pfn: pfn in (3, 4),
    )  # fmt: skip
    info = _info_json(path, capsys)
    assert info["format"] == "kdump" and "flattened" in info["description"]
    assert info["byteorder"] == "little" and info["word_bits"] == 64
    assert info["machine"] == {"uname_machine": "x86_64", "osrelease": "6.1.0-57-amd64"}
    assert info["dumped"]["ranges"] == [["0x0", "0x10000"]]
    assert info["not_dumped"] == {"count": 1, "bytes": 0x2000, "ranges": [["0x3000", "0x5000"]]}
    assert info["notes"] == {"QEMU type 0x0": 2}
    assert info["vmcoreinfo"]["SYMBOL(init_top_pgt)"] == "ffffffff82a0c000"
    assert [c["registers"]["cr3"] for c in info["cpus"]] == ["0x8000", "0xa000"]
    assert info["cpus"][1]["paging"] == ["x86-64 root 0xa000"]
    assert info["header"]["dumped_pages"] == 14 and info["header"]["ram_pages"] == 16
    assert info["decode"]["command"] == f"pfnmap decode {path} --arch x86-64 --root 0x8000"
    # the text form says the same things
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    for words in ("kdump-compressed, flattened, zlib", "RAM not dumped: 8 KiB in 1 ranges",
                  "CPU 1 (QEMU CPU note)", "CR3=0xa000", "VMCOREINFO: 3 keys",
                  "decode: pfnmap decode"):  # fmt: skip
        assert words in text, words


@pytest.mark.parametrize("fmt", ["elf", "kdump", "lime", "raw"])
def test_info_names_the_decode_command_that_works(
    tmp_path: Path, fmt: str, capsys, monkeypatch
) -> None:
    m = build_scenario("x86-pae")
    dump_machine(m, tmp_path / "d", fmt)
    monkeypatch.chdir(tmp_path)
    info = _info_json(Path("d"), capsys)
    if fmt in ("lime", "raw"):  # nothing in the file names the machine
        assert info["decode"]["command"] is None
        assert "give --arch NAME and --root ADDR" in info["decode"]["source"]
        return
    assert info["notes"] == {"PFNMAP type 0x5046": 1}
    argv = shlex.split(info["decode"]["command"])[1:]
    assert main([*argv, "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert json.loads(rows[-1]["detail"])["leaves"] > 0


def test_info_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "x").write_bytes(b"KDUMP   " + bytes(100))
    assert main(["info", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["info", str(tmp_path / "x"), "--image-format", "vhdx"]) == 2
    assert "unknown image format 'vhdx'" in capsys.readouterr().err
