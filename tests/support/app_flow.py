"""Drive the agent's web app in Chromium against a lab (broker, receiver, daemon on a replay camera).

Shared by the browser tests (``tests/unit/webapp``) and the screenshot tool
(``tools/app_screenshots.py``), so the pictures in docs/agent-app.md show what the tests check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kycedge.core.paths import data_dir
from kycedge.lab.harness import Lab, approach
from kycedge.vision import default_models_dir

GENUINE = "rBrowserGenuine-0001"
IMPOSTOR = "rBrowserImpostor-0002"
OUTAGE = "rBrowserOutage-0003"


@contextmanager
def app_lab(root: Path | None = None, *, preview: bool = False) -> Iterator[Lab]:
    faces = data_dir("faces")
    lab = Lab.create(root, session_timeout_s=15.0, receipt_wait_s=30.0, settle_s=0.2, best_of=2,
                     session_extra="guidance_repeat_s = 0.5\n",
                     api_extra="preview_enabled = true\n" if preview else "")
    try:
        refs = {ref: faces / "obama.jpg" for ref in (GENUINE, IMPOSTOR, OUTAGE)}
        lab.provision(default_models_dir().resolve(), refs)
        lab.start_broker()
        lab.start_receiver()
        lab.show_clip("approach", approach(faces / "obama2.jpg"))
        lab.start_daemon()
        yield lab
    finally:
        lab.close()


def wait(driver: Any, cond: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = cond()
        except Exception:  # element not there yet
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}; screen "
                                 f"{driver.execute_script('return document.body.dataset.screen')}")
        time.sleep(0.05)


def by_id(driver: Any, id_: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, id_)


def open_app(driver: Any, lab: Lab) -> None:
    driver.get(lab.app_url)
    wait(driver, lambda: driver.execute_script("return document.body.dataset.ready") == "1", what="app ready")


def enter_reference(driver: Any, ref: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = by_id(driver, "ref")
    box.clear()
    box.send_keys(ref, Keys.ENTER)  # keyboard only
    wait(driver, lambda: by_id(driver, "screen-consent").is_displayed(), what="consent screen")


def screen(driver: Any) -> str:
    return str(driver.execute_script("return document.body.dataset.screen"))
