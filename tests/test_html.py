"""The HTML view (pfnmap.render.html): the page is one self-contained file whose JSON block
holds the real values (verdicts, changed bits, counts), and --html paths that cannot be
written fail in one line and leave nothing behind. The page's drawing is tested in a real
browser in tests/test_browser.py."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pfnmap import Machine
from pfnmap.cli.main import main
from pfnmap.render.html import read_data
from pfnmap.scenarios.files import load, shipped
from pfnmap.scenarios.play import play


class _Page(HTMLParser):
    """Collects what a self-contained page must not have: references to other files."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
        for key in ("src", "href"):
            value = a.get(key)
            if value and not value.startswith("#"):
                self.external.append(f"{tag} {key}={value}")


def parse(path: Path) -> tuple[_Page, dict]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return page, read_data(text)


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[_Page, dict]:
    out = tmp_path_factory.mktemp("html") / "demo.html"
    assert main(["demo", "--html", str(out)]) == 0
    return parse(out)


def step_named(data: dict, do: str, nth: int = 1) -> dict:
    return [s for s in data["steps"] if s["do"] == do][nth - 1]


def test_page_is_self_contained(demo_page: tuple[_Page, dict]) -> None:
    page, data = demo_page
    assert not page.external
    assert all("src" not in s for s in page.scripts)
    assert {"style", "script", "input", "main"} <= page.tags
    assert data["kind"] == "steps" and data["version"] == 1


def test_demo_page_holds_the_verdicts(demo_page: tuple[_Page, dict]) -> None:
    """The write of step (c) leaves a COWed page at the mapping's start and a raw pfn next
    to it (the demo's step (c)); the page's data says so, with the reasons."""
    _, data = demo_page
    write = step_named(data, "write")
    parent = next(t for t in write["tasks"] if t["comm"] == "parent")
    cow_vma = parent["vmas"][-1]
    leaves = {int(leaf["va"], 16): leaf for leaf in parent["leaves"]}
    start = int(cow_vma["start"], 16)
    assert leaves[start]["verdict"] == "COWED"
    assert "COWed" in leaves[start]["reason"]
    assert leaves[start + data["arch"]["page_size"]]["verdict"] == "RAW_PFN"
    assert leaves[start]["pfn"] in {p["pfn"] for p in write["pages"]}


def test_changed_bits_are_the_ones_the_kernel_changed(demo_page: tuple[_Page, dict]) -> None:
    """fork write-protects the parent's COWed pte (copy_one_pte's ptep_set_wrprotect): the
    changed mask of that leaf is exactly the rw bit; the child's copy differs from the
    parent's pte before fork by the accessed bit (pte_mkold) and the rw bit."""
    _, data = demo_page
    fmt = data["arch"]["levels"][-1]["leaf"]
    bits = {name: 1 << shift for name, shift, width in fmt["fields"] if width == 1}
    fork = step_named(data, "fork")
    write = step_named(data, "write")
    parent = next(t for t in fork["tasks"] if t["comm"] == "parent")
    child = next(t for t in fork["tasks"] if t["comm"] == "child")
    cow_va = parent["vmas"][-1]["start"]
    p_leaf = next(leaf for leaf in parent["leaves"] if leaf["va"] == cow_va)
    c_leaf = next(leaf for leaf in child["leaves"] if leaf["va"] == cow_va)
    assert int(p_leaf["changed"], 16) == bits["rw"]
    assert c_leaf["prev_from"] == "parent" and c_leaf["shared"] == ["parent"]
    before = next(t for t in write["tasks"] if t["comm"] == "parent")
    was = next(leaf for leaf in before["leaves"] if leaf["va"] == cow_va)
    assert int(c_leaf["changed"], 16) == int(was["raw"], 16) ^ int(c_leaf["raw"], 16)
    assert int(c_leaf["changed"], 16) & bits["accessed"]
    page = next(p for p in fork["pages"] if p["pfn"] == c_leaf["pfn"])
    assert (page["count"], page["mapcount"]) == (2, 2)
    assert page["mapped_by"] == ["child", "parent"]


def test_run_page_on_every_arch(arch_name: str, tmp_path: Path) -> None:
    """The bit layout in the page is the arch's construct layout: fields cover every bit."""
    sc = load(shipped()["demo"])
    run = play(sc, Machine(arch_name, "64M"))
    from pfnmap.render.html import write_run_html

    out = write_run_html(tmp_path / "run.html", run)
    _, data = parse(out)
    m = Machine(arch_name, "64M")
    fmt = data["arch"]["levels"][-1]["leaf"]
    assert fmt["width"] == m.arch.pte_level.entry_bytes * 8
    assert sum(w for _, _, w in fmt["fields"]) == fmt["width"]
    assert [f[0] for f in fmt["fields"]] == list(m.arch.pte_format.fields)
    assert len(data["steps"]) == len(sc.steps) + 1
    assert data["result"]["ok"]


def test_html_path_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad, needle in [
        (tmp_path, "is a directory"),
        (tmp_path / "missing" / "x.html", "no directory"),
    ]:
        assert main(["run", "demo", "--html", str(bad)]) == 2
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
        assert not out  # checked before the run
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        assert main(["run", "demo", "--html", str(locked / "x.html")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["locked"])


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while the file is written (here: the disk is full) leaves no temp file and
    does not touch an existing page."""
    from pfnmap.render.html import HtmlError, page

    out = tmp_path / "page.html"
    out.write_text("old page")

    def full(*args: object, **kw: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(page.os, "replace", full)
    with pytest.raises(HtmlError, match="No space left"):
        page.write_html(out, "steps", "t", {"steps": []})
    assert out.read_text() == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_script_end_in_data_is_escaped(tmp_path: Path) -> None:
    from pfnmap.render.html import write_html

    out = write_html(tmp_path / "x.html", "steps", "t", {"note": "</script><b>"})
    text = out.read_text()
    assert "</script><b>" not in text
    assert read_data(text)["note"] == "</script><b>"


def test_compare_page_marks_the_differences(tmp_path: Path) -> None:
    """sunffb on x86-64 (library docstring): the seed reports a Bad pte per pte at fork
    (copy_one_pte), 2.6.15 none; 2.6.26's ptes carry _PAGE_SPECIAL, which the page's raw
    values show as the one bit (besides the accessed/dirty ones) they add."""
    out = tmp_path / "cmp.html"
    assert main(["compare", "sunffb", "--eras", "seed,2.6.15,2.6.26", "--html", str(out)]) == 0
    page, data = parse(out)
    assert not page.external and data["kind"] == "compare"
    assert data["eras"] == ["seed", "2.6.15", "2.6.26"]
    fork = next(s for s in data["steps"] if s["name"] == "X forks")
    bad = next(r for r in fork["rows"] if r["key"] == "Bad pte lines")
    assert bad["differs"]
    assert bad["cells"]["seed"]["value"] == "4" and bad["cells"]["2.6.15"]["value"] == "0"
    assert fork["differs"] == sum(r["differs"] for r in fork["rows"]) > 0
    special = Machine("x86-64").arch.special_mask
    pte = next(r for r in fork["rows"] if r["key"] == "pte fb[0] (X)")
    raw = {era: int(c["raw"], 16) for era, c in pte["cells"].items()}
    assert raw["2.6.26"] & special and not raw["2.6.15"] & special
    assert {r["field"] for r in data["rules_differ"]} >= {"pte_special"}
    assert data["differences"] == sum(s["differs"] for s in data["steps"])


QEMU = Path(__file__).parent / "fixtures" / "qemu"


def test_decode_page_holds_every_leaf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The page of a real-kernel dump (QEMU x86-pae fixture) lists the same leaves, in the same
    order with the same PA and entry, as `pfnmap decode --format jsonl` prints; the summary
    counts them."""
    import json
    import lzma

    meta = json.loads((QEMU / "x86-pae" / "meta.json").read_text())
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((QEMU / "x86-pae" / meta["core"]).read_bytes()))
    out = tmp_path / "dump.html"
    argv = ["decode", str(core), "--arch", meta["arch"], "--root", meta["root"]]
    assert main([*argv, "--format", "jsonl", "--html", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert f"wrote {out}" in err
    records = [json.loads(line) for line in stdout.splitlines()]
    want = [r for r in records if r["record"] == "leaf"]
    page, data = parse(out)
    assert not page.external and data["kind"] == "decode"
    got = data["leaves"]
    assert len(got["va"]) == len(want) == data["summary"]["leaves"]
    assert [int(v, 16) for v in got["va"]] == [int(r["va"], 16) for r in want]
    assert [int(v, 16) for v in got["pa"]] == [int(r["pa"], 16) for r in want]
    assert [int(v, 16) for v in got["raw"]] == [int(r["raw"], 16) for r in want]
    assert [data["sizes"][i] for i in got["size"]] == [r["size"] for r in want]
    assert [data["flags"][i] for i in got["flags"]] == [r["flags"] for r in want]
    assert data["summary"]["complete"] is True and not data["truncated"]


def test_bitbox_svg_covers_every_bit(arch_name: str) -> None:
    """The docs' register pictures (pfnmap.render.bitbox): each row's boxes cover its bits
    exactly once, in the arch's field order, with each box's bit range."""
    import xml.etree.ElementTree as ET

    from pfnmap.render.bitbox import CELL, bitbox_svg

    fmt = Machine(arch_name, "64M").arch.pte_format
    fields = [(f.name, f.shift, f.width) for f in fmt.fields.values()]
    svg = ET.fromstring(bitbox_svg(fields, fmt.width_bits, 32, title="pte"))
    ns = "{http://www.w3.org/2000/svg}"
    boxes = [r.attrib for r in svg.iter(f"{ns}rect")]
    covered: dict[int, str] = {}
    for box in boxes:
        hi, lo = int(box["data-hi"]), int(box["data-lo"])
        assert float(box["width"]) == (hi - lo + 1) * CELL
        for bit in range(lo, hi + 1):
            assert bit not in covered
            covered[bit] = box["data-field"]
    assert sorted(covered) == list(range(fmt.width_bits))
    assert all(covered[b] == n for n, s, w in fields for b in range(s, s + w))


def test_decode_page_is_bounded(tmp_path: Path) -> None:
    """A page keeps at most max_leaves leaves (the first ones, in VA order) and says so; the
    summary still counts the whole walk."""
    import json
    import lzma

    from pfnmap.decode.image import open_image
    from pfnmap.plugins.manager import default_registry
    from pfnmap.render.html.decode_model import decode_data

    meta = json.loads((QEMU / "x86-pae" / "meta.json").read_text())
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((QEMU / "x86-pae" / meta["core"]).read_bytes()))
    arch = default_registry().get(meta["arch"])
    with open_image(str(core), None, "auto") as image:
        full = decode_data(image, arch, int(meta["root"], 16))
        cut = decode_data(image, arch, int(meta["root"], 16), max_leaves=100)
    assert cut["truncated"] and not full["truncated"]
    assert cut["leaves"]["va"] == full["leaves"]["va"][:100]
    assert cut["summary"]["leaves"] == full["summary"]["leaves"] > 100


def test_compare_json_stays_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "c.html"
    args = ["compare", "shared_remaps", "--eras", "seed,2.6.15", "--format", "json"]
    assert main([*args, "--html", str(out)]) == 0
    stdout, err = capsys.readouterr()
    assert json.loads(stdout)["scenario"] == "shared_remaps"
    assert f"wrote {out}" in err and out.exists()
