"""The HTML page of a 74k-leaf real-kernel dump (the QEMU x86-64 fixture): how long it takes to
build, and to open in headless Chromium.

- ``html decode page: build`` -- :func:`pfnmap.render.html.decode_model.decode_data` and the
  write: the walk, one JSON array per column, the template;
- ``html decode page: open`` -- Chromium loads the page from file:// until its script has drawn
  the summary and the tree's top level (``data-ready``), then a search by VA opens the path to
  one leaf; the page must be usable within :data:`OPEN_BOUND_S`;
- ``html demo page: open`` -- the same for the demo's page (a few hundred entries): the baseline,
  the cost of starting the page's script at all.

Skipped where chromium and chromium-driver are not installed.
"""

from __future__ import annotations

import json
import lzma
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from browser_helpers import start_chromium

from pfnmap.cli.main import main

FIXTURE = Path(__file__).parent.parent / "tests" / "fixtures" / "qemu" / "x86-64"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("html")
    meta = json.loads((FIXTURE / "meta.json").read_text())
    core = tmp / "pt.elf"
    core.write_bytes(lzma.decompress((FIXTURE / meta["core"]).read_bytes()))
    demo = tmp / "demo.html"
    assert main(["demo", "--html", str(demo)]) == 0
    return {"core": core, "root": meta["root"], "demo": demo,
            "anon": int(meta["guest"]["maps"]["anon"]["start"], 16), "tmp": tmp}  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    drv = start_chromium(str(tmp_path_factory.mktemp("chromium")))
    yield drv
    drv.quit()


def _decode_page(pages: dict) -> Path:
    out = pages["tmp"] / "dump.html"
    argv = ["decode", str(pages["core"]), "--arch", "x86-64", "--root", pages["root"]]
    assert main([*argv, "--format", "csv", "--html", str(out)]) == 0
    return out


def _open(drv, path: Path) -> None:
    drv.get("about:blank")
    drv.get(path.resolve().as_uri())
    while drv.execute_script("return document.body && document.body.dataset.ready") != "1":
        time.sleep(0.01)


def test_build_decode_page(benchmark, pages: dict, capsys: pytest.CaptureFixture[str]) -> None:
    out = benchmark.pedantic(_decode_page, args=(pages,), rounds=3, iterations=1)
    capsys.readouterr()
    assert out.stat().st_size > 1_000_000


def test_open_decode_page(benchmark, browser, pages: dict, capsys) -> None:
    path = _decode_page(pages)
    capsys.readouterr()

    def open_and_search() -> str:
        _open(browser, path)
        box = browser.find_element("id", "search")
        box.send_keys(f"{pages['anon'] + 16:#x}")
        browser.find_element("css selector", ".search button").click()
        return browser.find_element("css selector", "#tree .leaf.hit").get_attribute("data-va")

    hit = benchmark.pedantic(open_and_search, rounds=3, iterations=1)
    assert int(hit, 16) == pages["anon"]
    benchmark.extra_info["leaves"] = 73918
    # the speed is read as a ratio to test_open_demo_page_baseline of the same run (see
    # docs/performance.rst), never as a time bound


def test_open_demo_page_baseline(benchmark, browser, pages: dict) -> None:
    benchmark.pedantic(_open, args=(browser, pages["demo"]), rounds=3, iterations=1)
