"""The app's one message catalogue: every language has every key; the codes the API sends are there."""

from __future__ import annotations

import re

from kycedge.protocol.envelope.receipt import ACCEPTED_REASONS, REJECTED_REASONS
from kycedge.protocol.ids import CONSENT_VERSION_RE
from kycedge.unit.api.config import LANGUAGES
from kycedge.unit.webapp import catalogue, consent_version


def test_every_language_has_every_key_and_the_same_placeholders() -> None:
    cat = catalogue()
    messages = cat["messages"]
    assert set(messages) == set(LANGUAGES) == set(cat["languages"])
    assert cat["languages"]["ur"]["dir"] == "rtl"
    keys = set(messages["en"])
    for lang in LANGUAGES:
        assert set(messages[lang]) == keys, lang
        for k in keys:
            assert messages[lang][k].strip(), (lang, k)
            placeholders = set(re.findall(r"\{\w+\}", messages[lang][k]))
            assert placeholders == set(re.findall(r"\{\w+\}", messages["en"][k])), (lang, k)


def test_the_codes_the_unit_sends_have_words() -> None:
    en = catalogue()["messages"]["en"]
    guidance = {"ok", "no-face", "multiple-faces", "move-closer", "face-the-camera", "too-dark", "too-bright",
                "blurry", "liveness-hold-still", "liveness-turn-left", "liveness-turn-right",
                "liveness-blink", "liveness-move-closer"}
    failures = {"timeout", "cancelled", "consent-declined", "outbox-full", "storage-full", "capture-failed",
                "capture-unavailable", "internal-error", "busy", "bad-reference", "consent-outdated",
                "too-many-connections", "liveness-failed"}
    for code in guidance | failures | ACCEPTED_REASONS | REJECTED_REASONS:
        assert f"reason.{code}" in en, code
    for status in ("match", "no-match", "accepted", "rejected"):
        assert f"status.{status}" in en


def test_every_held_delivery_state_has_words() -> None:
    """The banner shows why a connected unit's registrations stay queued (``delivery`` in
    ``/v1/info``): every state but ``ok`` needs its words, and no stale key may linger."""
    from kycedge.protocol.status import DELIVERY_STATES

    en = catalogue()["messages"]["en"]
    assert {k for k in en if k.startswith("ui.delivery.")} == {
        f"ui.delivery.{s}" for s in DELIVERY_STATES if s != "ok"}


def test_the_consent_version_is_a_valid_one() -> None:
    assert CONSENT_VERSION_RE.fullmatch(consent_version())
