"""``pfnmap decode`` against QEMU itself, on page tables of real Debian kernels.

Each directory under tests/fixtures/qemu/ was made by scripts/qemu_fixtures/regen.py (see
docs/qemu-fixtures.rst): QEMU booted a Debian kernel with a small guest program (anonymous
memory, fork, /dev/mem mappings shared and private), was stopped while the program ran in user
mode, and its monitor's ``info tlb`` and ``info mem`` were saved next to an ELF core holding
only the page-table frames those commands read. The decoder must print the same text, line
for line. Nothing here needs QEMU.
"""

from __future__ import annotations

import bisect
import json
import lzma
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "qemu"
DIRS = sorted(p.parent for p in FIXTURES.glob("*/meta.json"))
FORMATS = {"qemu-tlb": "info_tlb.txt.xz", "qemu-mem": "info_mem.txt.xz"}


def _meta(fixture: Path) -> dict:
    return json.loads((fixture / "meta.json").read_text())


def _qemu_lines(fixture: Path, name: str) -> list[str]:
    return lzma.decompress((fixture / name).read_bytes()).decode().splitlines()


def _params():
    for fixture in DIRS:
        for fmt, name in FORMATS.items():
            yield pytest.param(fixture, fmt, name, id=f"{fixture.name}-{fmt}")


def _decode(fixture: Path, fmt: str, tmp_path: Path, capsys) -> tuple[list[str], str]:
    """``pfnmap decode CORE --arch A --root R --format FMT`` in process: stdout lines, stderr."""
    pytest.importorskip("pfnmap.decode.walker", reason="the dump decoder is not in this tree yet")
    from pfnmap.cli.main import main

    meta = _meta(fixture)
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((fixture / meta["core"]).read_bytes()))
    argv = ["decode", str(core), "--arch", meta["arch"], "--root", meta["root"], "--format", fmt]
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out.splitlines(), err


def test_fixtures_present() -> None:
    assert {d.name for d in DIRS} >= {"x86-64", "x86-pae", "x86-2level"}


@pytest.mark.parametrize("fixture", DIRS, ids=[d.name for d in DIRS])
def test_capture_is_the_guest_in_user_mode(fixture: Path) -> None:
    """The capture was taken in the guest program: CPL 3, and QEMU's ``info tlb`` maps each of
    its regions at the address it printed."""
    meta = _meta(fixture)
    assert meta["cpl"] == 3
    tlb = {line.split(":")[0] for line in _qemu_lines(fixture, "info_tlb.txt.xz")}
    for name, region in meta["guest"]["maps"].items():
        assert f"{int(region['start'], 16):016x}" in tlb, name


@pytest.mark.parametrize(("fixture", "fmt", "name"), list(_params()))
def test_decode_matches_qemu(fixture: Path, fmt: str, name: str, tmp_path: Path, capsys) -> None:
    bug = _meta(fixture).get("qemu_bugs", {}).get(fmt)
    if bug:
        pytest.skip(f"QEMU's own text is wrong here: {bug}; see test_la57_info_mem")
    got, err = _decode(fixture, fmt, tmp_path, capsys)
    want = _qemu_lines(fixture, name)
    if got != want:
        diff = [
            f"line {i + 1}: qemu {w!r} / pfnmap {g!r}"
            for i, (w, g) in enumerate(zip(want, got, strict=False))
            if w != g
        ]
        problems = [ln for ln in err.splitlines() if ln][-3:]
        pytest.fail(
            f"{fixture.name} {fmt}: QEMU printed {len(want)} lines, pfnmap {len(got)}; "
            f"{len(diff)} differ in the common part; first: {'; '.join(diff[:5]) or '-'}; "
            f"decoder's stderr ends: {problems}"
        )


@pytest.mark.parametrize(
    "fixture",
    [d for d in DIRS if _meta(d).get("qemu_bugs", {}).get("qemu-mem")],
    ids=lambda d: d.name,
)
def test_la57_info_mem(fixture: Path, tmp_path: Path, capsys) -> None:
    """QEMU's mem_info_la57 tests PDPTE/PDE presence the wrong way round and prints nothing, so
    there is no text to diff. Check pfnmap's ``info mem`` against QEMU's ``info tlb`` instead:
    every page QEMU lists lies in exactly one of pfnmap's ranges, with the user and write bits
    of its leaf (the upper levels of a Linux user mapping allow both)."""
    assert _qemu_lines(fixture, "info_mem.txt.xz") == []
    ranges = []
    lines, _err = _decode(fixture, "qemu-mem", tmp_path, capsys)
    for line in lines:
        span, _size, prot = line.split()
        start, end = (int(x, 16) for x in span.split("-"))
        ranges.append((start, end, prot))
    assert ranges == sorted(ranges)
    starts = [r[0] for r in ranges]
    for line in _qemu_lines(fixture, "info_tlb.txt.xz"):
        va_text, _pa, flags = line.split()
        va = int(va_text.rstrip(":"), 16)
        i = bisect.bisect_right(starts, va) - 1
        assert i >= 0 and ranges[i][0] <= va < ranges[i][1], line
        if va < 1 << 47:  # user space: Linux's upper entries allow U and W, the leaf decides
            want = ("u" if "U" in flags else "-") + "r" + ("w" if "W" in flags else "-")
            assert ranges[i][2] == want, (line, ranges[i])
