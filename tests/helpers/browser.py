"""A real headless Chromium (Debian's ``chromium`` + ``chromedriver``, driven by Selenium) reading the MLflow UI.

Skipped where no browser is installed, unless HPO_REQUIRE_BROWSER=1 (set by .ci/run), which makes a missing
browser a failure. The flags are the ones known to work in a container without a display or network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=2400,1000")


def _binaries() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "chromium and chromedriver not found; install Debian's `chromium chromium-driver`"
        if os.environ.get("HPO_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return chromium, driver


@contextmanager
def chromium() -> Iterator:
    """A Selenium driver of a fresh headless Chromium profile; quit (and its processes gone) on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _binaries()
    profile = tempfile.mkdtemp(prefix="hpo-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(find, timeout_s: float = 60.0, what: str = "element"):
    """Polls ``find()`` until it returns something truthy (the UI renders asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if found := find():
                return found
        except Exception:  # noqa: BLE001 - a half-rendered page: try again
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what} did not appear within {timeout_s:.0f}s")


def runs_table(driver, metric: str) -> list[tuple[str, str]]:
    """What an experiment's runs page shows on arrival, without a click: (run name, ``metric``'s cell text) per row,
    top to bottom. Fails if the metric's column is not there."""
    from selenium.webdriver.common.by import By

    cell = f"[col-id='metrics.`{metric}`']"
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, f".ag-center-cols-container {cell}"),
             what=f"the {metric} column")
    wait_for(lambda: [r for r in driver.find_elements(By.CSS_SELECTOR, ".ag-pinned-left-cols-container [role=row]")
                      if "trial_" in r.text], what="the trials' rows")
    names = {int(r.get_attribute("row-index")): r.text.splitlines() for r in
             driver.find_elements(By.CSS_SELECTOR, ".ag-pinned-left-cols-container [role=row]")}
    values = {}
    for row in driver.find_elements(By.CSS_SELECTOR, ".ag-center-cols-container [role=row]"):
        found = row.find_elements(By.CSS_SELECTOR, cell)
        values[int(row.get_attribute("row-index"))] = found[0].text if found else ""
    rows = []
    for index in sorted(names):
        name = next((line for line in names[index] if line.startswith("trial_") or line.strip()), "")
        name = next((line for line in names[index] if line.startswith("trial_")), name)
        rows.append((name, values.get(index, "")))
    return rows
