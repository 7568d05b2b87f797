"""The HTML pages in a real browser: headless Chromium (Debian's chromium-driver) via selenium.

Each page loads from file:// with no console error, the step controls (slider, buttons, keys)
change what is shown, a known pte's bit box shows that pte's bits with the changed ones marked,
the compare page hides equal rows on request, and the decode page of a 70k-leaf real-kernel
dump (QEMU x86-64 fixture) opens and finds a VA. Skipped when chromium is not installed (see
tests/browser_helpers.py); the speed of the big page is measured in bench/test_bench_html.py.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
from browser_helpers import console_errors, start_chromium

from pfnmap.cli.main import main
from pfnmap.render.html import read_data

QEMU = Path(__file__).parent / "fixtures" / "qemu"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    drv = start_chromium(str(tmp_path_factory.mktemp("chromium")))
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def demo_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pages") / "demo.html"
    assert main(["demo", "--html", str(out)]) == 0
    return out


def open_page(drv, path: Path, hash_: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(path.resolve().as_uri() + hash_)
    WebDriverWait(drv, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == "1"
    )


def shown_step(drv) -> int:
    return int(drv.find_element("id", "step-head").get_attribute("data-step"))


def test_demo_page_loads_without_errors(browser, demo_html: Path) -> None:
    open_page(browser, demo_html)
    assert console_errors(browser) == []
    assert browser.find_element("id", "step-label").text == (
        f"step 1 of {len(read_data(demo_html.read_text())['steps'])}"
    )
    assert browser.find_elements("css selector", ".task")  # the parent's tree


def test_step_controls(browser, demo_html: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    open_page(browser, demo_html)
    total = len(read_data(demo_html.read_text())["steps"])
    body = browser.find_element("tag name", "body")
    assert shown_step(browser) == 1
    body.send_keys(Keys.ARROW_RIGHT)
    body.send_keys(Keys.ARROW_RIGHT)
    assert shown_step(browser) == 3
    body.send_keys(Keys.ARROW_LEFT)
    assert shown_step(browser) == 2
    browser.find_element("id", "next").click()
    assert shown_step(browser) == 3
    body.send_keys(Keys.END)
    assert shown_step(browser) == total
    assert browser.find_element("id", "next").get_attribute("disabled") is not None
    body.send_keys(Keys.HOME)
    assert shown_step(browser) == 1
    # the slider: set it as a drag would, then the "input" event
    browser.execute_script(
        "const s = document.getElementById('step'); s.value = 5;"
        "s.dispatchEvent(new Event('input'));"
    )
    assert shown_step(browser) == 6
    assert browser.current_url.endswith("#step=6")
    assert console_errors(browser) == []


def test_fork_step_bit_box_shows_the_pte(browser, demo_html: Path) -> None:
    """At the fork step the parent's COWed pte lost its write bit (copy_one_pte): the detail
    bit box shows that pte's value bit by bit, and exactly the rw bit outlined as changed."""
    data = read_data(demo_html.read_text())
    fork = next(s for s in data["steps"] if s["do"] == "fork")
    parent = next(t for t in fork["tasks"] if t["comm"] == "parent")
    cow_va = parent["vmas"][-1]["start"]
    leaf = next(leaf for leaf in parent["leaves"] if leaf["va"] == cow_va)
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, demo_html, f"#step={fork['number']}")
    WebDriverWait(browser, 10).until(lambda d: shown_step(d) == fork["number"])
    row = browser.find_element(
        "css selector", f'.task[data-task="parent"] .leaf[data-va="{cow_va}"]'
    )
    row.click()
    box = browser.find_element("css selector", "#detail svg.bitbox.detailed")
    assert box.get_attribute("data-raw") == leaf["raw"]
    raw = int(leaf["raw"], 16)
    fields = {f[0]: f[1] for f in data["arch"]["levels"][-1]["leaf"]["fields"]}
    bits = browser.execute_script(
        "return [...arguments[0].querySelectorAll('rect.bit')].map("
        "r => [Number(r.dataset.bit), r.classList.contains('set'),"
        " r.classList.contains('changed')])",
        box,
    )
    assert len(bits) == data["arch"]["levels"][-1]["leaf"]["width"]
    assert all(is_set == bool(raw >> b & 1) for b, is_set, _ in bits)
    assert [b for b, _, changed in bits if changed] == [fields["rw"]]
    # the field table marks the rw field as changed, and nothing else
    changed_rows = browser.find_elements("css selector", "#detail table.fields tr.changed")
    assert [r.get_attribute("data-field") for r in changed_rows] == ["rw"]


def test_screenshot_is_readable(browser, demo_html: Path, tmp_path: Path) -> None:
    """A screenshot to look at (kept in tmp_path; the docs' picture is made the same way)."""
    open_page(browser, demo_html, "#step=9")
    shot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one


def test_compare_page_toggles_equal_rows(browser, tmp_path: Path) -> None:
    out = tmp_path / "cmp.html"
    assert main(["compare", "sunffb", "--html", str(out)]) == 0
    open_page(browser, out, "#step=5")
    assert console_errors(browser) == []
    rows = browser.find_elements("css selector", "table.compare tr[data-key]")
    differing = browser.find_elements("css selector", "table.compare tr.differs")
    assert 0 < len(differing) < len(rows)
    browser.find_element("id", "only-diff").click()
    assert len(browser.find_elements("css selector", "table.compare tr[data-key]")) == len(
        differing
    )


def test_decode_page_of_a_real_kernel(browser, tmp_path: Path) -> None:
    """74k leaves of a Debian kernel under QEMU: the page opens, its top level lists the
    pgd entries in use, and a search by VA opens the path to the guest's anonymous page."""
    meta = json.loads((QEMU / "x86-64" / "meta.json").read_text())
    core = tmp_path / "pt.elf"
    core.write_bytes(lzma.decompress((QEMU / "x86-64" / meta["core"]).read_bytes()))
    out = tmp_path / "dump.html"
    argv = ["decode", str(core), "--arch", "x86-64", "--root", meta["root"], "--format", "csv"]
    assert main([*argv, "--html", str(out)]) == 0
    data = read_data(out.read_text())
    assert len(data["leaves"]["va"]) > 70_000
    open_page(browser, out)
    assert console_errors(browser) == []
    top = browser.find_elements("css selector", "#tree > li")
    assert 1 < len(top) < 512
    anon = int(meta["guest"]["maps"]["anon"]["start"], 16)
    search = browser.find_element("id", "search")
    search.send_keys(f"{anon + 0x123:#x}")
    browser.find_element("css selector", ".search button").click()
    hit = browser.find_element("css selector", "#tree .leaf.hit")
    assert int(hit.get_attribute("data-va"), 16) == anon
    assert "→ PA" in browser.find_element("id", "search-result").text
    # only the opened path is in the DOM, not 74k rows
    assert len(browser.find_elements("css selector", "#tree .leaf")) < 2000
