"""The whole demo flow with the unit's key in a real swtpm: attested enrolment, the real
daemon sealing with the TPM key through the broker to the carrier, signed receipts, and
the carrier's registry showing the key as attested hardware."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import swtpm

pytestmark = [pytest.mark.tpm, pytest.mark.broker, pytest.mark.slow]
WHY = swtpm.missing()


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[swtpm.Swtpm]:
    if WHY:
        pytest.skip(WHY)
    with swtpm.fixture_tpm(tmp_path / "tpm") as t:
        yield t


def test_demo_flow_with_a_tpm_held_key(tpm: swtpm.Swtpm, repo_root: Path) -> None:
    from kycedge.lab.demo import run_flow
    from kycedge.vision import default_models_dir

    if not (default_models_dir() / "manifest.json").exists():
        pytest.skip(f"no model manifest at {default_models_dir()}")
    out = io.StringIO()
    cas = (tpm.ca_dir / "issuercert.pem", tpm.ca_dir / "swtpm-localca-rootca-cert.pem")
    res = run_flow(out, tpm_tcti=tpm.tcti, tpm_ca_certificates=cas)
    text = out.getvalue()
    assert res.ok, text
    assert "es256, key protection tpm; attested" in text
    assert res.steps["genuine"]["receipt"]["reason"] == "match"
    assert res.steps["impostor"]["receipt"]["reason"] == "no-match"
    assert res.steps["outage"]["receipt"]["state"] == "receipted"
