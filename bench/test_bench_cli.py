"""The ``pfnmap`` command as a whole process, against whole-process baselines of the same run.

Each round runs one process to completion, its stdout into a file (as ``> out.txt`` would):
start Python, import, open the x86-64 real-kernel fixture (tests/fixtures/qemu/x86-64: 73,918
present leaves QEMU's ``info tlb`` lists), walk, write. The units are those leaves, so every
ratio in the end-of-run tables is a ratio of whole-process times:

- ``cli: python -c pass`` and ``cli: pfnmap --help``: startup (the target: at most 5x);
- ``cli: stdlib walker qemu-tlb``: bench/stdlib_walker.py, the same ``info tlb`` text from a
  standard-library walker (the floor a Python tool must beat);
- ``cli: volatility3 translate every leaf``: bench/vol_translate.py, volatility3's
  LinuxIntel32e layer translating each of those leaf VAs in one process;
- ``cli: decode FORMAT``: ``pfnmap decode`` in each output format.
"""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
from benchlib import (
    CLI_FORMATS,
    CLI_HELP,
    CLI_PASS,
    CLI_STDLIB,
    CLI_VOL,
    FIXTURE,
    cli_decode_name,
    fixture_as_raw,
)

GROUP = "cli: whole process (x86-64 fixture)"
ROUNDS = 5
BENCH = Path(__file__).parent


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    meta = json.loads((FIXTURE / "meta.json").read_text())
    tmp = tmp_path_factory.mktemp("cli")
    core = tmp / "pt.elf"
    core.write_bytes(lzma.decompress((FIXTURE / meta["core"]).read_bytes()))
    tlb = tmp / "info_tlb.txt"
    tlb.write_bytes(lzma.decompress((FIXTURE / "info_tlb.txt.xz").read_bytes()))
    return {"core": core, "root": meta["root"], "tlb": tlb, "leaves": meta["tlb_lines"],
            "tmp": tmp}  # fmt: skip


def _run(argv: list[str], out: Path) -> None:
    with open(out, "wb") as f:
        subprocess.run(argv, stdout=f, stderr=subprocess.DEVNULL, check=True)


def _bench(benchmark, record, name: str, argv: list[str], out: Path, items: int) -> None:
    benchmark.group = GROUP
    benchmark.name = name
    benchmark.pedantic(_run, args=(argv, out), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record(name, items, "leaves")


def test_python_startup(benchmark, record, files) -> None:
    _bench(benchmark, record, CLI_PASS, [sys.executable, "-c", "pass"], files["tmp"] / "o",
           files["leaves"])  # fmt: skip


def test_pfnmap_help(benchmark, record, files) -> None:
    _bench(benchmark, record, CLI_HELP, [sys.executable, "-m", "pfnmap", "--help"],
           files["tmp"] / "o", files["leaves"])  # fmt: skip


def test_stdlib_walker(benchmark, record, files) -> None:
    out = files["tmp"] / "stdlib.txt"
    argv = [sys.executable, str(BENCH / "stdlib_walker.py"), str(files["core"]), files["root"]]
    _bench(benchmark, record, CLI_STDLIB, argv, out, files["leaves"])
    assert out.read_bytes() == files["tlb"].read_bytes()  # the same text as QEMU's


def test_volatility_translate(benchmark, record, files) -> None:
    pytest.importorskip("volatility3", reason="volatility3 is in the bench extra")
    raw = files["tmp"] / "x86-64.raw"
    if not raw.exists():
        fixture_as_raw(raw)
    out = files["tmp"] / "vol.txt"
    argv = [sys.executable, str(BENCH / "vol_translate.py"), str(raw), files["root"],
            str(files["tlb"])]  # fmt: skip
    _bench(benchmark, record, CLI_VOL, argv, out, files["leaves"])
    assert out.read_text().count("\n") == files["leaves"]


@pytest.mark.parametrize("fmt", CLI_FORMATS)
def test_decode(benchmark, record, files, fmt: str) -> None:
    out = files["tmp"] / f"decode.{fmt}"
    argv = [sys.executable, "-m", "pfnmap", "decode", str(files["core"]), "--arch", "x86-64",
            "--root", files["root"], "--format", fmt]  # fmt: skip
    _bench(benchmark, record, cli_decode_name(fmt), argv, out, files["leaves"])
    if fmt == "qemu-tlb":
        assert out.read_bytes() == files["tlb"].read_bytes()
