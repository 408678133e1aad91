"""The agent's web app in a real headless Chromium against the lab (broker, receiver, daemon).

One lab and one browser for the module (the daemon and Chromium start once): a whole
registration with consent, guidance and the receipt; a declined consent; the offline
banner with the queue depth while the broker is down and the receipt once it is back;
the not-enrolled banner while the carrier does not know the unit;
the language switch incl. right to left; axe-core's WCAG 2.1 A/AA rules; layout at
800x480 and on a phone; and no frame bytes in the browser's profile or cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kycedge.unit.webapp import catalogue

from tests.support import browser
from tests.support.app_flow import GENUINE, IMPOSTOR, OUTAGE, app_lab, by_id, enter_reference, open_app, wait

pytestmark = [pytest.mark.browser, pytest.mark.broker, pytest.mark.slow]

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
LANG_DIR = "return [document.documentElement.lang, document.documentElement.dir]"
MESSAGES: dict[str, dict[str, str]] = catalogue()["messages"]  # type: ignore[assignment]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Path]]:
    why = browser.available()
    if why is not None:
        pytest.fail(f"browser tests need Chromium: {why}")  # CI installs it: never skip silently
    with app_lab(tmp_path_factory.mktemp("lab")) as lab, browser.chromium(800, 480) as (driver, profile):
        open_app(driver, lab)
        yield lab, driver, profile


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => done(JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})))))"
        ".catch(e => done(JSON.stringify([{id: 'axe-error', nodes: [String(e)]}])));")
    return list(json.loads(result))


def set_language(driver: Any, lang: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(by_id(driver, "lang")).select_by_value(lang)


def test_a_whole_registration_through_the_app(app: tuple[Any, Any, Path]) -> None:
    from selenium.webdriver.common.keys import Keys

    _, d, _ = app
    assert d.execute_script("return document.activeElement.id") == "ref"  # ready for the scanner
    assert d.execute_script(LANG_DIR) == ["en", "ltr"]
    enter_reference(d, GENUINE)
    consent = by_id(d, "consent-text").text
    for key in ("ui.consent.what", "ui.consent.why", "ui.consent.leaves", "ui.consent.retention"):
        assert MESSAGES["en"][key] in consent
    assert catalogue()["consent_version"] in consent
    assert axe_violations(d) == []
    button = by_id(d, "accept")
    rect = d.execute_script("return arguments[0].getBoundingClientRect().toJSON()", button)
    assert rect["bottom"] <= 480  # visible at 800x480 without scrolling
    assert rect["height"] >= 44  # big enough to touch
    button.send_keys(Keys.ENTER)  # keyboard operable

    seen: set[str] = set()
    outline = False

    def follow() -> bool:
        nonlocal outline
        reason = d.execute_script("return document.getElementById('guidance').dataset.reason || ''")
        if reason:
            seen.add(reason)
        outline = outline or by_id(d, "face").get_attribute("visibility") == "visible"
        return bool(d.execute_script("return document.body.dataset.receipt"))

    wait(d, follow, 60, "the receipt on screen")
    assert seen & {"no-face", "move-closer"}, seen  # the walk-up clip: guidance before the capture
    assert outline  # the face-position outline was drawn from the detector's box
    assert by_id(d, "result-main").text == MESSAGES["en"]["status.match"]
    rows = d.execute_script("return [...document.querySelectorAll('#today tbody tr')].map(r => r.innerText)")
    assert any("\u2026001" in r for r in rows)
    assert GENUINE not in d.execute_script("return document.querySelector('.today').innerText")
    assert axe_violations(d) == []


def test_declining_ends_with_nothing_captured(app: tuple[Any, Any, Path]) -> None:
    lab, d, _ = app
    by_id(d, "again").click()
    assert GENUINE not in d.execute_script("return document.body.innerText")  # the last ref is gone
    enter_reference(d, IMPOSTOR)
    by_id(d, "decline").click()
    declined = MESSAGES["en"]["reason.consent-declined"]
    wait(d, lambda: by_id(d, "result-detail").text == declined, 10, "declined")
    sessions = lab.client().request("GET", "/v1/sessions")["sessions"]
    assert sessions[0]["reason"] == "consent-declined"
    assert sessions[0]["state"] == "failed"


def test_language_switch_and_right_to_left(app: tuple[Any, Any, Path]) -> None:
    _, d, _ = app
    for lang, direction in (("ur", "rtl"), ("zh-Hans", "ltr"), ("fr", "ltr"), ("ur", "rtl")):
        set_language(d, lang)
        assert d.execute_script(LANG_DIR) == [lang, direction]
        assert by_id(d, "title").text == MESSAGES[lang]["ui.title"]
        assert by_id(d, "result-detail").text == MESSAGES[lang]["reason.consent-declined"]
    assert axe_violations(d) == []
    set_language(d, "en")


def test_offline_banner_with_queue_depth_then_the_receipt(app: tuple[Any, Any, Path]) -> None:
    lab, d, _ = app
    assert not by_id(d, "offline").is_displayed()
    lab.stop_broker()
    try:
        wait(d, lambda: by_id(d, "offline").is_displayed(), 20, "offline banner")
        by_id(d, "again").click()
        enter_reference(d, OUTAGE)
        by_id(d, "accept").click()
        wait(d, lambda: d.execute_script("return document.body.dataset.outcome") == "queued", 60, "queued")
        assert by_id(d, "result-main").text == MESSAGES["en"]["ui.queued"]
        wait(d, lambda: by_id(d, "offline").get_attribute("data-queue") == "1", 10, "queue depth 1")
        assert by_id(d, "offline").text == MESSAGES["en"]["ui.offline"].replace("{n}", "1")
    finally:
        lab.start_broker()
    wait(d, lambda: not by_id(d, "offline").is_displayed(), 30, "banner gone")
    wait(d, lambda: d.execute_script("return document.body.dataset.receipt") == "match", 60,
         "receipt after the outage")


def test_not_enrolled_banner_then_the_receipt_once_enrolled(app: tuple[Any, Any, Path]) -> None:
    """Connected, but the carrier does not know the unit (installed before its enrolment):
    the banner says why the registration stays queued, with the count; once enrolled it is
    delivered and the banner goes."""
    import sqlite3

    from kycedge.carrier.receiver import Receiver
    from kycedge.unit.identity import load_identity

    lab, d, _ = app
    wait(d, lambda: not by_id(d, "offline").is_displayed(), 30, "no banner to start with")
    db = sqlite3.connect(lab.carrier_config.database_target)
    with db:
        db.execute("DELETE FROM devices")
    db.close()
    try:
        by_id(d, "again").click()
        enter_reference(d, GENUINE)
        by_id(d, "accept").click()
        wait(d, lambda: d.execute_script("return document.body.dataset.outcome") == "queued", 60, "queued")
        wait(d, lambda: by_id(d, "offline").get_attribute("data-delivery") == "not-enrolled", 30,
             "not-enrolled banner")
        assert by_id(d, "offline").is_displayed()
        assert by_id(d, "offline").text == MESSAGES["en"]["ui.delivery.not-enrolled"].replace("{n}", "1")
    finally:
        with Receiver.from_config(lab.carrier_config) as rx:
            rx.registry.enroll(lab.tenant, lab.device, load_identity(lab.unit_state).public_key)
    wait(d, lambda: not by_id(d, "offline").is_displayed(), 40, "banner gone once enrolled")
    wait(d, lambda: d.execute_script("return document.body.dataset.receipt") == "match", 60,
         "receipt once enrolled")


def test_phone_layout(app: tuple[Any, Any, Path]) -> None:
    _, d, _ = app
    browser.set_viewport(d, 390, 844, mobile=True)
    try:
        by_id(d, "again").click()
        enter_reference(d, GENUINE)
        assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        small = d.execute_script(
            "return [...document.querySelectorAll('button, input, select')].filter(e => e.offsetParent)"
            ".filter(e => e.getBoundingClientRect().height < 44).map(e => e.id)")
        assert small == []
        assert axe_violations(d) == []
    finally:
        browser.set_viewport(d, 800, 480)


def _frame_bytes_in(profile: Path) -> list[str]:
    markers = (b"\xff\xd8\xff", b"YUV4MPEG2", b"\x89PNG\r\n")
    found = []
    for p in profile.rglob("*"):
        if p.is_file() and p.stat().st_size < 50_000_000:
            data = p.read_bytes()
            found += [f"{p.relative_to(profile)}: {m!r}" for m in markers if m in data]
    return found


def test_no_pixels_reach_the_page_by_default(app: tuple[Any, Any, Path]) -> None:
    lab, d, _ = app
    open_app(d, lab)
    enter_reference(d, GENUINE)
    by_id(d, "accept").click()
    wait(d, lambda: d.execute_script("return document.body.dataset.receipt"), 60, "receipt")
    assert d.execute_script("return document.getElementById('preview').hidden") is True
    assert d.execute_script("return performance.getEntriesByType('resource')"
                            ".filter(e => e.name.includes('/preview')).length") == 0


def test_no_frame_bytes_in_the_browser_profile(app: tuple[Any, Any, Path]) -> None:
    _, d, profile = app
    d.quit()  # Chromium writes its cache and profile out on the way down: read them after
    assert (profile / "Default").is_dir()
    assert _frame_bytes_in(profile) == []


def test_operator_enabled_preview_is_shown_and_never_cached(tmp_path: Path) -> None:
    why = browser.available()
    if why is not None:
        pytest.fail(f"browser tests need Chromium: {why}")
    with app_lab(tmp_path / "lab", preview=True) as lab, browser.chromium(800, 480) as (d, profile):
        open_app(d, lab)
        enter_reference(d, GENUINE)
        by_id(d, "accept").click()
        wait(d, lambda: d.execute_script(
            "const i = document.getElementById('preview'); return !i.hidden && i.naturalWidth > 0"),
            30, "a preview frame on screen")
        assert d.execute_script("return document.getElementById('preview').src").startswith("blob:")
        wait(d, lambda: d.execute_script("return document.body.dataset.receipt"), 60, "receipt")
        assert d.execute_script("return document.getElementById('preview').hidden") is True
        d.quit()  # Chromium writes its cache and profile out on the way down: read them after
        assert (profile / "Default").is_dir()
        assert _frame_bytes_in(profile) == []
