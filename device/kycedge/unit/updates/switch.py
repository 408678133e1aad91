"""Atomic activation of a model set, automatic rollback, recovery after power loss.

The daemon loads models from ``<state_dir>/current``, a symlink to one complete set in
``<state_dir>/sets/``. Activating a new set is a sequence of steps, each durable and each
leaving a servable state if power fails right after it:

1. journal ``switching`` (from, to)                    - current still old
2. ``previous`` := old set  (temp symlink + ``os.replace``)  - current still old
3. ``current``  := new set  (temp symlink + ``os.replace``)  - current new (atomic)
4. fsync of the state directory
5. journal ``trial`` (boots = 0)

A reader of ``current`` sees the old or the new set, never a missing or partial one.
:meth:`ModelStore.recover` runs at every daemon start: an interrupted switch is undone
(current := old set, the bundle stays staged and is retried later); a trial that
survives more than ``max_trial_boots`` restarts is a crash loop and is rolled back. The
agent commits a trial after the daemon's health checks pass, or rolls it back with the
reason. Rejected bundle versions are remembered with why (outcome, reason, message,
time) and not retried: a rolled-back bundle, and one that failed its self-test
(:meth:`ModelStore.reject`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from kycedge.core.errors import KycEdgeError
from kycedge.core.fsutil import atomic_write, fsync_dir, swap_symlink
from kycedge.protocol.bundle import BUNDLE_FILE, BundleManifest, parse_manifest
from kycedge.protocol.update_errors import BundleError, StageError, SwitchError
from kycedge.unit.updates.stage import verify_set
from kycedge.vision.models import load_manifest

__all__ = ["Journal", "ModelStore", "Recovery", "StepHook"]

StepHook = Callable[[str], None]
State = Literal["stable", "switching", "trial"]
FACTORY = "factory"


@dataclass(frozen=True)
class Journal:
    state: State = "stable"
    from_set: str | None = None
    to_set: str | None = None
    boots: int = 0
    rejected: tuple[int, ...] = ()
    last_rollback: dict[str, Any] | None = None
    # str(bundle version) -> {"outcome", "reason", "message", "at"}: why it was rejected
    rejections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({
            "state": self.state, "from": self.from_set, "to": self.to_set, "boots": self.boots,
            "rejected": list(self.rejected), "last_rollback": self.last_rollback,
            "rejections": {k: dict(v) for k, v in self.rejections.items()},
        }, sort_keys=True).encode()

    def rejection(self, version: int) -> Mapping[str, Any] | None:
        """Why ``version`` was rejected here (None if it was not, or if the journal predates it)."""
        if version not in self.rejected:
            return None
        return self.rejections.get(str(version), {})

    def with_rejection(self, version: int, outcome: str, reason: str, message: str,
                       at: float) -> Journal:
        rejected = self.rejected if version in self.rejected else (*self.rejected, version)
        why = {**self.rejections, str(version): {"outcome": outcome, "reason": reason,
                                                 "message": message[:500], "at": round(at, 3)}}
        return replace(self, rejected=rejected, rejections=why)

    @staticmethod
    def parse(data: bytes) -> Journal:
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("state") not in ("stable", "switching", "trial"):
            raise ValueError(f"expected a journal object, got {str(obj)[:80]!r}")
        rejected = obj.get("rejected") or []
        if not isinstance(rejected, list) or not all(isinstance(v, int) for v in rejected):
            raise ValueError(f"rejected: expected a list of versions, got {rejected!r}")
        why = obj.get("rejections") or {}
        if not isinstance(why, dict) or not all(isinstance(v, dict) for v in why.values()):
            raise ValueError(f"rejections: expected an object of objects, got {str(why)[:80]!r}")
        return Journal(obj["state"], obj.get("from"), obj.get("to"), int(obj.get("boots", 0)),
                       tuple(rejected), obj.get("last_rollback"), {str(k): v for k, v in why.items()})


@dataclass(frozen=True)
class Recovery:
    """What :meth:`ModelStore.recover` did (``action`` is ``none`` on a clean start)."""

    action: Literal["none", "undid-interrupted-switch", "rolled-back", "repaired-link", "trial"]
    current: Path | None
    reason: str = ""
    message: str = ""


class ModelStore:
    """The on-disk model sets of one unit and the links the daemon reads."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir
        self.sets_dir = state_dir / "sets"
        self.current_link = state_dir / "current"
        self.previous_link = state_dir / "previous"
        self.journal_path = state_dir / "update-journal.json"

    # ---- reading -------------------------------------------------------------------
    def journal(self) -> Journal:
        try:
            return Journal.parse(self.journal_path.read_bytes())
        except FileNotFoundError:
            return Journal()
        except (ValueError, OSError) as e:
            # A torn journal cannot happen (atomic writes); a corrupted one is treated as
            # "stable" and the links are checked by recover().
            return Journal(last_rollback={"reason": "bad-journal", "message": str(e)})

    def _resolve(self, link: Path) -> Path | None:
        try:
            target = os.readlink(link)
        except OSError:
            return None
        path = (link.parent / target).resolve()
        return path if path.is_dir() and path.parent == self.sets_dir.resolve() else None

    def current(self) -> Path | None:
        """The directory the daemon should load models from (resolved), or None."""
        return self._resolve(self.current_link)

    def previous(self) -> Path | None:
        return self._resolve(self.previous_link)

    def manifest(self, set_dir: Path | None = None) -> BundleManifest | None:
        """The bundle manifest of ``set_dir`` (default: current); None for the factory set."""
        d = set_dir if set_dir is not None else self.current()
        if d is None:
            return None
        try:
            return parse_manifest((d / BUNDLE_FILE).read_bytes())
        except (OSError, BundleError):
            return None

    def model_of(self, set_dir: Path | None = None) -> tuple[str, str]:
        """``(model_id, model_version)`` that ``set_dir`` (default: current) scores with.

        A bundle names it in its manifest; the factory set (seeded, no bundle manifest) in
        its models manifest, as the loaded pipeline reports it. ``("factory", "factory")``
        only when neither can be read.
        """
        m = self.manifest(set_dir)
        if m is not None:
            return m.matching.model_id, m.matching.model_version
        d = set_dir if set_dir is not None else self.current()
        if d is not None:
            with contextlib.suppress(KycEdgeError):
                return load_manifest(d).identity
        return FACTORY, FACTORY

    def installed_version(self) -> int:
        m = self.manifest()
        return m.bundle_version if m is not None else 0

    # ---- writing -------------------------------------------------------------------
    def _write_journal(self, j: Journal) -> None:
        atomic_write(self.journal_path, j.to_json())

    def seed(self, models_dir: Path) -> Path:
        """Install the shipped models as the factory set if the unit has no current set."""
        cur = self.current()
        if cur is not None:
            return cur
        self.sets_dir.mkdir(parents=True, exist_ok=True)
        dest = self.sets_dir / FACTORY
        tmp = self.sets_dir / ".staging-factory"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(models_dir, tmp, symlinks=False)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        swap_symlink(self.current_link, f"sets/{FACTORY}")
        fsync_dir(self.root)
        return dest

    def activate(self, new_set: Path, *, on_step: StepHook | None = None) -> None:
        """Make ``new_set`` current, keep the old one as previous, start a trial."""
        step = on_step or (lambda _s: None)
        j = self.journal()
        if j.state != "stable":
            raise SwitchError(f"activate: expected a stable store, journal is {j.state!r}")
        if new_set.parent.resolve() != self.sets_dir.resolve() or not new_set.is_dir():
            raise SwitchError(f"activate: expected a set under {self.sets_dir}, got {new_set}")
        old = self.current()
        old_name = old.name if old is not None else None
        try:
            self._write_journal(replace(j, state="switching", from_set=old_name, to_set=new_set.name,
                                        boots=0))
            step("journal-switching")
            if old_name is not None:
                swap_symlink(self.previous_link, f"sets/{old_name}", lambda: step("previous-tmp"))
                step("previous-linked")
            swap_symlink(self.current_link, f"sets/{new_set.name}", lambda: step("current-tmp"))
            step("current-linked")
            fsync_dir(self.root)
            step("dir-fsynced")
            self._write_journal(replace(j, state="trial", from_set=old_name, to_set=new_set.name,
                                        boots=0))
            step("journal-trial")
        except OSError as e:
            raise SwitchError(f"activate {new_set.name}: {e}") from e

    def commit(self, keep_sets: int = 2) -> None:
        """End a successful trial: the new set stays, older sets beyond ``keep_sets`` go."""
        j = self.journal()
        if j.state == "stable":
            return
        self._write_journal(replace(j, state="stable", from_set=None, to_set=None, boots=0))
        self.prune(keep_sets)

    def reject(self, version: int, outcome: str, reason: str, message: str) -> None:
        """Record that bundle ``version`` must not be tried again here, and why (the set is
        not being served: call this for a failure before the switch, e.g. the self-test)."""
        j = self.journal()
        self._write_journal(j.with_rejection(version, outcome, reason, message, time.time()))

    def rollback(self, reason: str, message: str, *, on_step: StepHook | None = None) -> Path | None:
        """Return to the set that was current before the trial/switch; remember the reason."""
        step = on_step or (lambda _s: None)
        j = self.journal()
        back_name = j.from_set if j.state != "stable" else None
        back = self.sets_dir / back_name if back_name else self.previous()
        bad = self.sets_dir / j.to_set if j.state != "stable" and j.to_set else self.current()
        bad_m = self.manifest(bad) if bad is not None else None
        bad_version = bad_m.bundle_version if bad_m is not None else None
        if back is None or not back.is_dir():
            raise SwitchError(f"rollback ({reason}): expected a previous set to return to, got none")
        done = j
        # An interrupted switch is not the bundle's fault: retry it later.
        if reason != "interrupted-switch" and bad_version is not None:
            done = j.with_rejection(bad_version, "rolled-back", reason, message, time.time())
        try:
            swap_symlink(self.current_link, f"sets/{back.name}", lambda: step("rollback-tmp"))
            step("rollback-linked")
            fsync_dir(self.root)
            self._write_journal(replace(done, state="stable", from_set=None, to_set=None, boots=0,
                                        last_rollback={"reason": reason, "message": message,
                                                       "bundle_version": bad_version,
                                                       "restored": back.name}))
            step("rollback-journal")
        except OSError as e:
            raise SwitchError(f"rollback ({reason}): {e}") from e
        return back

    def recover(self, *, max_trial_boots: int = 2) -> Recovery:
        """Bring the store to a consistent, servable state; call once at daemon start."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stray in (self.current_link, self.previous_link):
            with contextlib.suppress(FileNotFoundError):
                stray.with_name(f".{stray.name}.tmp").unlink()
        if self.sets_dir.is_dir():
            for d in self.sets_dir.glob(".staging-*"):
                shutil.rmtree(d, ignore_errors=True)
        j = self.journal()
        if j.state == "switching" and j.from_set is None:
            self._write_journal(replace(j, state="stable", from_set=None, to_set=None, boots=0))
            j = self.journal()
        if j.state == "switching":
            back = self.rollback("interrupted-switch",
                                 f"switch {j.from_set} -> {j.to_set} was interrupted; kept {j.from_set}")
            return Recovery("undid-interrupted-switch", back, "interrupted-switch")
        if j.state == "trial" and (self.current() is None or self.current() != self.sets_dir.resolve() / str(
                j.to_set)):
            # Power failed during a rollback, after the link swap: finish it.
            back = self.rollback("interrupted-rollback",
                                 f"a rollback from {j.to_set} to {j.from_set} was interrupted; finished it")
            return Recovery("rolled-back", back, "interrupted-rollback")
        if j.state == "trial":
            boots = j.boots + 1
            if boots > max_trial_boots:
                msg = (f"daemon restarted {boots} times while trying {j.to_set}; expected at most "
                       f"{max_trial_boots}")
                back = self.rollback("crash-loop", msg)
                return Recovery("rolled-back", back, "crash-loop", msg)
            self._write_journal(replace(j, boots=boots))
        cur = self.current()
        if cur is not None and self._servable(cur):
            return Recovery("trial" if j.state == "trial" else "none", cur)
        # current missing or broken: fall back to previous, then to any servable set.
        candidates = [p for p in (self.previous(),) if p is not None]
        if self.sets_dir.is_dir():
            candidates += sorted((p for p in self.sets_dir.iterdir() if p.is_dir()
                                  and not p.name.startswith(".")), reverse=True)
        for c in candidates:
            if self._servable(c):
                swap_symlink(self.current_link, f"sets/{c.name}")
                fsync_dir(self.root)
                self._write_journal(replace(j, state="stable", from_set=None, to_set=None, boots=0,
                                            last_rollback={"reason": "repaired-link",
                                                           "message": f"current was unusable; now {c.name}",
                                                           "restored": c.name}))
                return Recovery("repaired-link", c, "repaired-link")
        return Recovery("none", None, "no-models", "no servable model set on this unit")

    def _servable(self, set_dir: Path) -> bool:
        if (set_dir / BUNDLE_FILE).exists():
            try:
                verify_set(set_dir)
            except (StageError, BundleError):
                return False
            return True
        return (set_dir / "manifest.json").is_file()  # factory set: vision checks its hashes

    def prune(self, keep_sets: int) -> list[str]:
        """Delete sets beyond ``keep_sets`` (current and previous always stay; then the newest).

        The factory set counts like any other: the shipped models stay installed with the
        firmware, and :meth:`seed` reinstalls them if no set is left. Rejected sets are
        never kept for their own sake. Only a stable store is pruned (a switch or trial
        still needs both of its sets). Returns the names deleted.
        """
        if self.journal().state != "stable" or not self.sets_dir.is_dir():
            return []
        keep = {p.name for p in (self.current(), self.previous()) if p is not None}
        rejected = set(self.journal().rejected)

        def rank(p: Path) -> tuple[bool, float]:
            m = self.manifest(p)
            return (m is None or m.bundle_version not in rejected, p.stat().st_mtime)

        others = sorted((p for p in self.sets_dir.iterdir() if p.is_dir() and not p.is_symlink()
                         and not p.name.startswith(".") and p.name not in keep),
                        key=rank, reverse=True)
        gone = []
        for p in others[max(0, keep_sets - len(keep)):]:
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
        return gone
