"""Headless Chromium for the browser tests (tests/test_browser.py) and the page benchmark.

Debian's ``chromium`` and ``chromium-driver`` driven by selenium. :func:`chromium_paths` finds
them or says why not; the tests skip cleanly then, unless ``PFNMAP_REQUIRE_BROWSER=1`` (set by
the CI's browser env once it has installed them), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1600",
)


def chromium_paths() -> tuple[str, str] | str:
    """(browser, driver) or the reason they cannot be used."""
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    if browser is None or driver is None:
        return "chromium and chromium-driver are not installed (apt-get install chromium-driver)"
    return browser, driver


def need_browser() -> tuple[str, str]:
    found = chromium_paths()
    if isinstance(found, str):
        if os.environ.get("PFNMAP_REQUIRE_BROWSER") == "1":
            pytest.fail(found)
        pytest.skip(found)
    return found


def start_chromium(tmp_dir: str | None = None) -> Any:
    """A headless Chromium with a fresh profile, its console log kept."""
    if os.environ.get("PFNMAP_REQUIRE_BROWSER") == "1":
        import selenium  # noqa: F401  (fail, do not skip, where the browser is required)
    else:
        pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = need_browser()
    options = Options()
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="pfnmap-chromium-", dir=tmp_dir)
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def console_errors(drv: Any) -> list[str]:
    return [e["message"] for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
