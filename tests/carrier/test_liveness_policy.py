"""The tenant liveness policy: required (default) rejects without a passed challenge, report matches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge.carrier.config import CarrierConfig, TenantPolicy
from kycedge.core.config import from_mapping
from kycedge.core.errors import ConfigError
from kycedge.protocol.envelope import Liveness, verify_receipt

from .helpers import TENANT, World, make_world, near, unit_vector

NONE = Liveness(passed=False, method="none", score=0.0)  # what units before the challenge send
PASSED = Liveness(passed=True, method="active-3d", score=2.4, version="1",
                  prompts=("liveness-turn-left", "liveness-blink", "liveness-move-closer"),
                  outcome="passed", nonce="app-nonce-000001")
FAILED = Liveness(passed=False, method="active-3d", score=0.0, version="1",
                  prompts=("liveness-turn-left", "liveness-blink"), outcome="planar")


@pytest.fixture
def required(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path, "")
    yield w
    w.receiver.close()


@pytest.fixture
def report(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path, "", tenants=(TenantPolicy(tenant=TENANT, liveness="report"),))
    yield w
    w.receiver.close()


@pytest.mark.parametrize("lv", [NONE, FAILED])
def test_required_rejects_without_a_passed_challenge_and_no_match(required: World, lv: Liveness) -> None:
    ref = unit_vector(1)
    required.add_reference(ref)
    unit = required.unit()
    out = required.receiver.handle(unit.seal(near(ref, 0.9), liveness=lv))
    assert (out.status, out.reason) == ("rejected", "liveness-not-passed")
    assert out.score is None  # no match was made
    assert out.receipt is not None
    r = verify_receipt(out.receipt, required.receiver.receipt_public_keys, expected_device_id="unit-0001",
                       expected_tenant=TENANT)
    assert (r.status, r.reason, r.score) == ("rejected", "liveness-not-passed", None)
    assert required.receiver.store.get_template(str(out.message_id)) is None  # nothing stored
    # the same envelope again gets the same signed receipt, byte for byte
    again = required.receiver.handle(unit.sent[-1].data)
    assert again.receipt == out.receipt


def test_required_matches_a_passed_challenge(required: World) -> None:
    ref = unit_vector(1)
    required.add_reference(ref)
    out = required.receiver.handle(required.unit().seal(near(ref, 0.9), liveness=PASSED))
    assert (out.status, out.reason) == ("accepted", "match")


def test_report_still_matches_old_units(report: World) -> None:
    ref = unit_vector(1)
    report.add_reference(ref)
    out = report.receiver.handle(report.unit().seal(near(ref, 0.9), liveness=NONE))
    assert (out.status, out.reason) == ("accepted", "match")


def test_policy_from_toml_mapping_and_errors() -> None:
    cfg = from_mapping(CarrierConfig, {"liveness": "required",
                                       "tenants": [{"tenant": "acme", "liveness": "report"}]})
    assert cfg.liveness_policy("acme") == "report"
    assert cfg.liveness_policy("other") == "required"
    with pytest.raises(ConfigError, match=r"liveness: expected one of 'required', 'report'"):
        from_mapping(CarrierConfig, {"tenants": [{"tenant": "acme", "liveness": "off"}]})
    with pytest.raises(ConfigError, match="each tenant once"):
        CarrierConfig(tenants=(TenantPolicy("a", "report"), TenantPolicy("a", "required")))
