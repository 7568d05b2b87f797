"""kdump files that makedumpfile 1.7.2 itself wrote (tests/fixtures/makedumpfile/, made by
scripts/qemu_fixtures/makedumpfile_fixture.py from an ELF vmcore with VMCOREINFO): zlib with
every page, LZO and flattened zlib with dump level 1 (zero pages share one stored copy).
The oracle is makedumpfile's writer (makedumpfile.c, write_kdump_header /
write_kdump_pages_cyclic) and the vmcore it read: every page is the vmcore's, and
VMCOREINFO's init_top_pgt gives the kernel's tables without --arch/--root."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from pfnmap.cli.main import main
from pfnmap.decode.image import open_image

FIXTURE = Path(__file__).parent / "fixtures" / "makedumpfile"
META = json.loads((FIXTURE / "meta.json").read_text())
DUMPS = sorted(META["commands"])


def _unpack(name: str, tmp_path: Path) -> Path:
    if name.startswith("lzo"):
        pytest.importorskip("lzallright", reason="the LZO codec (lzallright, the kdump extra)")
    out = tmp_path / name.removesuffix(".xz")
    out.write_bytes(lzma.decompress((FIXTURE / name).read_bytes()))
    return out


@pytest.mark.parametrize("name", DUMPS)
def test_makedumpfile_pages_are_the_vmcores(name: str, tmp_path: Path) -> None:
    vmcore = _unpack("vmcore.elf.xz", tmp_path)
    dump = _unpack(name, tmp_path)
    zero = {int(a, 16) for a in META["zero_pages"]}
    level1 = "-d" in META["commands"][name] and META["commands"][name][-2] == "1"
    with open_image(vmcore) as elf, open_image(dump) as kd:
        assert kd.kind == "kdump"
        assert ("flattened" in kd.facts.format) == ("-F" in META["commands"][name])
        assert kd.facts.vmcoreinfo["OSRELEASE"] == META["osrelease"]
        assert kd.facts.header["dump_level"] == (1 if level1 else 0)
        assert kd.ranges() == [(int(a, 16), int(b, 16)) for a, b in META["ranges"]]
        for start, end in kd.ranges():
            for page in range(start, end, 4096):
                assert kd.read(page, 4096) == elf.read(page, 4096), hex(page)
        if level1:  # dump level 1: each zero page's descriptor points at one shared copy
            offsets = {kd.kdump.view.read(kd.kdump.desc_offset + kd.kdump.rank(z // 4096) * 24, 8)
                       for z in zero}  # fmt: skip
            assert len(offsets) == 1
        assert kd.facts.not_dumped == []


@pytest.mark.parametrize("name", DUMPS)
def test_vmcoreinfo_decodes_the_kernels_tables_without_options(
    name: str, tmp_path: Path, capsys
) -> None:
    dump = _unpack(name, tmp_path)
    capsys.readouterr()
    assert main(["decode", str(dump), "--format", "jsonl"]) == 0
    out, err = capsys.readouterr()
    assert f"x86-64 root {META['root']} from VMCOREINFO (Linux {META['osrelease']}" in err
    rows = [json.loads(line) for line in out.splitlines()]
    leaf_rows = [r for r in rows if r["record"] == "leaf"]
    leaves = [(int(r["va"], 16), int(r["pa"], 16), r["size"]) for r in leaf_rows]
    k = META["kernel_mapping"]
    assert leaves == [(int(k["va"], 16), int(k["pa"], 16), int(k["size"], 16))]
