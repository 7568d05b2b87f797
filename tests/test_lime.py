"""LiME images (LiME's lime.h: 32-byte ``lime_mem_range_header`` per range, magic 0x4C694D45,
version 1, first and last address) read in place, and damaged ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pfnmap.cli.main import main
from pfnmap.decode.image import ImageError, OutsideImage, open_image, write_lime

PAGE = 4096


def pattern(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt * 13 + 1) & 0xFF for i in range(n))


def test_lime_ranges_read_in_place(tmp_path: Path) -> None:
    segs = [(0x1000, pattern(2 * PAGE, 1)), (0x100000, pattern(PAGE, 2))]
    write_lime(tmp_path / "l", segs)
    with open_image(tmp_path / "l") as img:
        assert img.ranges() == [(0x1000, 0x3000), (0x100000, 0x101000)]
        assert img.read(0x1000, 2 * PAGE) == segs[0][1]
        assert img.table(0x100000, 512, "<u8").tobytes() == segs[1][1]
    raw = (tmp_path / "l").read_bytes()
    (tmp_path / "cut").write_bytes(raw[:-100])
    with open_image(tmp_path / "cut") as img:
        assert any("cut off" in w for w in img.facts.warnings)
        with pytest.raises(OutsideImage) as exc:
            img.read(0x100000, PAGE)
        assert exc.value.kind == "truncated"
    bad = bytearray(raw)
    bad[2 * PAGE + 32 : 2 * PAGE + 36] = b"XXXX"  # the second header's magic
    (tmp_path / "bad").write_bytes(bytes(bad))
    with pytest.raises(ImageError, match="no LiME range header at file offset 0x2020"):
        open_image(tmp_path / "bad")
    backwards = bytearray(raw)
    struct.pack_into("<QQ", backwards, 8, 0x5000, 0x1000)
    (tmp_path / "back").write_bytes(bytes(backwards))
    with pytest.raises(ImageError, match="ends"):
        open_image(tmp_path / "back")


def test_lime_layout_is_lime_h(tmp_path: Path) -> None:
    write_lime(tmp_path / "l", [(0x1000, pattern(PAGE))])
    raw = (tmp_path / "l").read_bytes()
    assert raw[:4] == b"EMiL"
    assert struct.unpack_from("<IIQQ", raw) == (0x4C694D45, 1, 0x1000, 0x1FFF)
    assert raw[32 : 32 + PAGE] == pattern(PAGE) and len(raw) == 32 + PAGE


def test_lime_decodes_with_arch_and_root(tmp_path: Path, capsys) -> None:
    from pfnmap.decode.dump import build_scenario, dump_machine

    m = build_scenario("x86-64")
    info = dump_machine(m, tmp_path / "d.lime", "lime")
    root = info["processes"][0]["root"]
    assert main(["decode", str(tmp_path / "d.lime"), "--arch", "x86-64", "--root", root]) == 0
    assert "0 problems" in capsys.readouterr().out
