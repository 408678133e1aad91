"""``kycedge-fleet rollout``: reading never writes, a change keeps what it does not name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.fleet.bundle_build import current_rollout, set_rollout, sign_bundle
from kycedge.fleet.cli import main
from kycedge.protocol.rollout import Candidate, Rollout, RolloutChange, apply_change
from kycedge.protocol.update_errors import BundleError
from unit.updates.helpers import Fleet


@pytest.fixture
def repo3(tmp_path: Path) -> tuple[Fleet, list[str]]:
    """A repository with bundles 1..3 signed and rollout stable 1, candidate 2 at 10 % + pilot."""
    fleet = Fleet(tmp_path / "fleet")
    fleet.close()
    for v in (1, 2, 3):
        sign_bundle(fleet.repo, fleet.bundle(v))
    set_rollout(fleet.repo, Rollout(1, Candidate(2, 10.0, ("pilot",))))
    return fleet, ["--repo", str(fleet.repo.repo_dir), "--keys", str(fleet.repo.keys_dir)]


def targets_version(fleet: Fleet) -> int:
    return int(fleet.repo.targets().signed.version)


def test_device_only_shows(repo3: tuple[Fleet, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    fleet, r = repo3
    before = targets_version(fleet)
    assert main(["rollout", *r, "--device", "unit-0001"]) == 0
    out = capsys.readouterr().out
    assert "unit-0001: bundle " in out
    assert "signed" not in out
    assert targets_version(fleet) == before
    assert current_rollout(fleet.repo) == Rollout(1, Candidate(2, 10.0, ("pilot",)))
    assert main(["rollout", *r]) == 0                          # no option at all: show
    assert main(["rollout", *r, "--show"]) == 0
    assert targets_version(fleet) == before
    assert json.loads(capsys.readouterr().out.splitlines()[0])["stable"] == 1


def test_widen_keeps_stable_and_cohort(repo3: tuple[Fleet, list[str]]) -> None:
    fleet, r = repo3
    assert main(["rollout", *r, "--percent", "25"]) == 0
    assert current_rollout(fleet.repo) == Rollout(1, Candidate(2, 25.0, ("pilot",)))
    assert main(["rollout", *r, "--candidate", "3", "--percent", "50"]) == 0
    assert current_rollout(fleet.repo) == Rollout(1, Candidate(3, 50.0, ("pilot",)))
    assert main(["rollout", *r, "--stable", "3"]) == 0         # promotion: candidate 3 is now everyone's
    assert current_rollout(fleet.repo) == Rollout(3, None)


def test_unchanged_signs_nothing(repo3: tuple[Fleet, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    fleet, r = repo3
    before = targets_version(fleet)
    assert main(["rollout", *r, "--percent", "10"]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert targets_version(fleet) == before


def test_no_stable_refused_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = Fleet(tmp_path / "fleet")
    fleet.close()
    sign_bundle(fleet.repo, fleet.bundle(1))
    r = ["--repo", str(fleet.repo.repo_dir), "--keys", str(fleet.repo.keys_dir)]
    before = targets_version(fleet)
    assert main(["rollout", *r, "--candidate", "1", "--percent", "10"]) == 2
    err = capsys.readouterr().err
    assert "no-stable-bundle" in err
    assert "--force" in err
    assert targets_version(fleet) == before
    assert main(["rollout", *r, "--candidate", "1", "--percent", "10", "--force"]) == 0
    assert current_rollout(fleet.repo) == Rollout(None, Candidate(1, 10.0, ()))


@pytest.mark.parametrize(("argv", "text"), [
    (["--percent", "25", "--clear-candidate"], "either a candidate change or clearing"),
    (["--percent", "101"], "expected a number in [0, 100]"),
    (["--show", "--stable", "2"], "only shows"),
    (["--cohort", "x", "--clear-cohorts"], "got both"),
    (["--stable", "9"], "expected bundle 9 to be signed first"),
])
def test_bad_changes_refused(repo3: tuple[Fleet, list[str]], capsys: pytest.CaptureFixture[str],
                             argv: list[str], text: str) -> None:
    fleet, r = repo3
    before = targets_version(fleet)
    assert main(["rollout", *r, *argv]) == 2
    assert text in capsys.readouterr().err
    assert targets_version(fleet) == before


def test_percent_without_any_candidate_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="expected a candidate bundle"):
        apply_change(Rollout(1, None), RolloutChange(percent=25.0))


versions = st.integers(1, 50)
rollouts = st.builds(Rollout, st.none() | versions, st.none() | st.builds(
    Candidate, versions, st.floats(0, 100), st.lists(st.sampled_from(["a", "b", "pilot"]), max_size=3)
    .map(tuple)))


@given(rollouts, st.none() | versions, st.none() | st.floats(0, 100))
def test_change_keeps_unnamed_fields(r: Rollout, stable: int | None, percent: float | None) -> None:
    try:
        out = apply_change(r, RolloutChange(stable=stable, percent=percent))
    except BundleError:
        assert percent is not None
        assert r.candidate is None
        return
    assert out.stable == (stable if stable is not None else r.stable)
    if out.candidate is None:
        assert r.candidate is None or r.candidate.bundle_version == out.stable
    else:
        assert r.candidate is not None
        assert out.candidate.bundle_version == r.candidate.bundle_version
        assert out.candidate.cohorts == r.candidate.cohorts
        assert out.candidate.percent == (percent if percent is not None else r.candidate.percent)
