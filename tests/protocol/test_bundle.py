"""bundle.json and rollout.json parsing: strict, specific errors, round trips."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.protocol.bundle import (
    BundleManifest,
    firmware_at_least,
    parse_manifest,
    safe_relpath,
)
from kycedge.protocol.rollout import Candidate, Rollout, bucket, choose, parse_rollout
from kycedge.protocol.update_errors import BundleError

from tests.unit.updates.helpers import Fleet


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> BundleManifest:
    fleet = Fleet(tmp_path_factory.mktemp("b") / "fleet")
    try:
        fleet.bundle(5)
        return fleet.bundles[5]
    finally:
        fleet.close()


def mutate(m: BundleManifest, fn: Any) -> bytes:
    obj = json.loads(m.to_json())
    fn(obj)
    return json.dumps(obj).encode()


def test_round_trip(manifest: BundleManifest) -> None:
    assert parse_manifest(manifest.to_json()) == manifest
    assert manifest.total_bytes == sum(f.size for f in manifest.files)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda o: o.update(format=2), "format: expected 1, got 2"),
    (lambda o: o.update(bundle_version=0), "bundle_version: expected an integer in [1"),
    (lambda o: o.update(bundle_version=True), "bundle_version"),
    (lambda o: o["files"][0].update(path="../etc/passwd"), "files[0].path"),
    (lambda o: o["files"][0].update(path="/abs"), "files[0].path"),
    (lambda o: o["files"][0].update(path="bundle.json"), "may not list itself"),
    (lambda o: o["files"][0].update(path=".hidden"), "files[0].path"),
    (lambda o: o["files"][1].update(sha256="ABC"), "files[1].sha256: expected 64 lowercase hex"),
    (lambda o: o["files"][1].update(size=-1), "files[1].size"),
    (lambda o: o["files"].append(dict(o["files"][0])), "expected unique paths"),
    (lambda o: o["models"][0].update(size=1), "models[0]: expected"),
    (lambda o: o["matching"].update(threshold=float("nan")), "matching.threshold"),
    (lambda o: o["matching"].update(threshold=2.0), "matching.threshold"),
    (lambda o: o["matching"].update(model_version="nope"), "matching: expected model"),
    (lambda o: o["selftest"].update(tolerance=0.9), "selftest.tolerance"),
    (lambda o: o["selftest"].update(genuine=["g0-x", "g0-x"]), "selftest.genuine"),
    (lambda o: o["selftest"]["images"][1].update(embedding=[1.0]), "expected 16..2048 entries, got 1"),
    (lambda o: o["selftest"]["images"][0].update(file="golden/missing.jpg"), "listed in files"),
    (lambda o: o.update(min_firmware="latest"), "min_firmware"),
])
def test_rejections_name_the_field(manifest: BundleManifest, change: Any, needle: str) -> None:
    with pytest.raises(BundleError) as e:
        parse_manifest(mutate(manifest, change))
    assert needle in e.value.message


def test_model_id_must_fit_templates(manifest: BundleManifest) -> None:
    def change(o: dict[str, Any]) -> None:
        long = "v" * 40
        o["matching"]["model_version"] = long
        for m in o["models"]:
            m["version"] = long
    with pytest.raises(BundleError) as e:
        parse_manifest(mutate(manifest, change))
    assert "templates can carry" in e.value.message


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        parse_manifest(data)
    with contextlib.suppress(BundleError):
        parse_rollout(data)


@given(st.text(max_size=80))
def test_safe_relpath_never_escapes(p: str) -> None:
    try:
        out = safe_relpath(p, "x")
    except BundleError:
        return
    assert not out.startswith("/")
    assert ".." not in out.split("/")
    assert "\\" not in out
    assert Path("/base", out).resolve().is_relative_to("/base")


def test_firmware_compare() -> None:
    assert firmware_at_least("0.1.0", "0.1.0")
    assert firmware_at_least("0.2.0", "0.1.9")
    assert firmware_at_least("1.0", "0.9.9")
    assert not firmware_at_least("0.1.0", "0.1.1")
    assert not firmware_at_least("0.9.0", "0.10.0")


@given(st.integers(1, 10**6), st.one_of(st.none(), st.integers(1, 10**6)),
       st.floats(0, 100), st.lists(st.text(min_size=1, max_size=8), max_size=3))
def test_rollout_round_trip(stable: int, cand: int | None, pct: float, cohorts: list[str]) -> None:
    r = Rollout(stable, Candidate(cand, pct, tuple(cohorts)) if cand else None)
    assert parse_rollout(r.to_json()) == r


def test_rollout_percentages_are_monotonic_and_deterministic() -> None:
    devices = [f"unit-{i}" for i in range(2000)]
    chosen = {p: {d for d in devices if choose(Rollout(1, Candidate(2, p, ())), d) == 2}
              for p in (0.0, 10.0, 50.0, 100.0)}
    assert chosen[0.0] == set()
    assert chosen[100.0] == set(devices)
    assert chosen[10.0] <= chosen[50.0]
    assert 140 <= len(chosen[10.0]) <= 260          # ~10 % of 2000
    assert all(0 <= bucket(d) < 100 for d in devices[:50])
    assert choose(Rollout(1, Candidate(2, 0.0, ("pilot",))), "unit-1", "pilot") == 2
    assert choose(Rollout(1, Candidate(2, 0.0, ("pilot",))), "unit-1", "") == 1


@pytest.mark.parametrize("raw", [b"[]", b'{"format": 1, "stable": 0}', b'{"format": 1, "stable": "2"}',
                                 b'{"format": 1, "stable": 1, "candidate": {"bundle_version": 2, '
                                 b'"percent": 101}}'])
def test_rollout_rejections(raw: bytes) -> None:
    with pytest.raises(BundleError):
        parse_rollout(raw)
