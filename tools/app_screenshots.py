#!/usr/bin/env python3
"""Screenshots of the agent's web app at 800x480 (and one phone view) for docs/agent-app.md.

Runs a lab (Mosquitto, the carrier receiver, the real daemon on a replay camera over the
fixture faces) and drives the app in headless Debian Chromium, as the browser tests do.
CJK and Urdu text need fonts (apt-get install fonts-droid-fallback fonts-noto-core).

    .venv/bin/python tools/app_screenshots.py [--out docs/img/agent-app]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.app_flow import GENUINE, app_lab, by_id, enter_reference, open_app, screen, wait
from tests.support.browser import chromium, set_viewport


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/img/agent-app"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    def shot(driver: object, name: str) -> None:
        path = args.out / f"{name}.png"
        driver.save_screenshot(str(path))  # type: ignore[attr-defined]
        shots.append(path)

    with app_lab() as lab, chromium(800, 480) as (d, _profile):
        open_app(d, lab)
        by_id(d, "ref").send_keys(GENUINE)
        shot(d, "1-reference")
        enter_reference(d, GENUINE)
        shot(d, "2-consent")
        by_id(d, "accept").click()
        wait(d, lambda: by_id(d, "guidance").text.strip()
             and by_id(d, "face").get_attribute("visibility") == "visible", what="guidance and outline")
        shot(d, "3-capture-guidance")
        wait(d, lambda: d.execute_script("return document.body.dataset.receipt"), 60, "receipt")
        shot(d, "4-result-match")
        lab.stop_broker()
        wait(d, lambda: by_id(d, "offline").is_displayed(), 20, "offline banner")
        shot(d, "5-offline")
        for lang in ("ur", "zh-Hans", "fr"):
            d.execute_script(f"const s = document.getElementById('lang'); s.value = '{lang}';"
                             "s.dispatchEvent(new Event('change'));")
            shot(d, f"6-result-{lang}")
        by_id(d, "again").click()
        enter_reference(d, GENUINE)
        shot(d, "7-consent-fr")
        d.execute_script("const s = document.getElementById('lang'); s.value = 'ur';"
                         "s.dispatchEvent(new Event('change'));")
        set_viewport(d, 390, 844, mobile=True)
        shot(d, "8-phone-consent-ur")
        assert screen(d) == "consent"
    for p in shots:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
