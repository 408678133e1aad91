"""The fleet-side TUF repository (python-tuf ``Metadata`` API): keys, signing, publishing.

Directory layout (``repo_dir``), servable as-is by any static HTTP(S) server::

    metadata/1.root.json  2.root.json …     every root version (units walk the chain)
    metadata/N.targets.json                  consistent snapshots: versioned files
    metadata/N.snapshot.json
    metadata/timestamp.json                  the only unversioned file, written last
    targets/rollout.json as <sha256>.rollout.json
    targets/bundles/<v>/<sha256>.<file>      hash-prefixed target files

Keys live apart from the repository (``keys_dir``): one ``<role>-<keyid[:12]>.pem``
(PKCS#8, mode 0600) and ``.pub.json`` per key. Roles and thresholds are those of TUF:
``root`` (offline, threshold of several keys, signs every key change), ``targets``
(offline, signs bundles and rollouts), ``snapshot`` and ``timestamp`` (online keys,
short expiry, re-signed on every publish).

This and :mod:`kycedge.unit.updates.tuf_client` are the only modules that import ``tuf``;
key generation goes through securesystemslib's ``CryptoSigner``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer, SSlibKey  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from kycedge.core.errors import UpdateError
from kycedge.core.fsutil import atomic_write, fsync_dir

__all__ = ["DEFAULT_EXPIRY_DAYS", "ROLES", "FleetRepository", "RepoError", "RoleSpec"]

ROLES = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRY_DAYS = {"root": 365.0, "targets": 90.0, "snapshot": 7.0, "timestamp": 1.0}


class RepoError(UpdateError):
    """The fleet repository or key store cannot do what was asked."""

    reason = "repo-error"


@dataclass(frozen=True)
class RoleSpec:
    keys: int = 1
    threshold: int = 1


def _expiry(days: float) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=days)


class FleetRepository:
    """Read, change, sign and write the repository's metadata."""

    def __init__(self, repo_dir: Path, keys_dir: Path,
                 expiry_days: Mapping[str, float] | None = None) -> None:
        self.repo_dir = repo_dir
        self.keys_dir = keys_dir
        self.meta_dir = repo_dir / "metadata"
        self.targets_dir = repo_dir / "targets"
        self.expiry_days = {**DEFAULT_EXPIRY_DAYS, **(expiry_days or {})}

    # ---- keys ------------------------------------------------------------------------
    def new_key(self, role: str) -> SSlibKey:
        """Generate an Ed25519 key for ``role`` and store it in ``keys_dir`` (0600)."""
        signer = CryptoSigner.generate_ed25519()
        key = signer.public_key
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        base = self.keys_dir / f"{role}-{key.keyid[:12]}"
        atomic_write(base.with_suffix(".pem"), signer.private_bytes, mode=0o600)
        atomic_write(base.with_suffix(".pub.json"),
                     json.dumps({"keyid": key.keyid, "key": key.to_dict()}, indent=1).encode(), mode=0o644)
        return key

    def signer(self, keyid: str) -> Signer:
        for pub in self.keys_dir.glob(f"*-{keyid[:12]}.pub.json"):
            info = json.loads(pub.read_text())
            if info["keyid"] != keyid:
                continue
            key = SSlibKey.from_dict(keyid, dict(info["key"]))
            pem = pub.with_name(pub.name.replace(".pub.json", ".pem"))
            return CryptoSigner.from_priv_key_uri(f"file2:{pem}", key)
        raise RepoError(f"{self.keys_dir}: expected the private key {keyid[:12]}…, not found")

    def signers(self, role: str, root: Root | None = None) -> list[Signer]:
        """The signers for ``role`` available in ``keys_dir`` (all of the role's keys we hold)."""
        root = root or self.root().signed
        out = []
        for keyid in root.roles[role].keyids:
            try:
                out.append(self.signer(keyid))
            except RepoError:
                continue
        if len(out) < root.roles[role].threshold:
            raise RepoError(f"{role}: expected at least {root.roles[role].threshold} private keys in "
                            f"{self.keys_dir}, found {len(out)}")
        return out

    # ---- reading ---------------------------------------------------------------------
    def _latest(self, role: str) -> Path:
        if role == "timestamp":
            return self.meta_dir / "timestamp.json"
        versions = [int(p.name.split(".", 1)[0]) for p in self.meta_dir.glob(f"*.{role}.json")
                    if p.name.split(".", 1)[0].isdigit()]
        if not versions:
            raise RepoError(f"{self.meta_dir}: expected {role} metadata, found none (run keys init)")
        return self.meta_dir / f"{max(versions)}.{role}.json"

    def root(self) -> Metadata[Root]:
        return Metadata[Root].from_file(str(self._latest("root")))

    def targets(self) -> Metadata[Targets]:
        return Metadata[Targets].from_file(str(self._latest("targets")))

    def snapshot(self) -> Metadata[Snapshot]:
        return Metadata[Snapshot].from_file(str(self._latest("snapshot")))

    def timestamp(self) -> Metadata[Timestamp]:
        return Metadata[Timestamp].from_file(str(self._latest("timestamp")))

    # ---- writing ---------------------------------------------------------------------
    def _write(self, md: Metadata[Any], name: str) -> Path:
        self.meta_dir.mkdir(parents=True, exist_ok=True)
        path = self.meta_dir / name
        atomic_write(path, md.to_bytes(JSONSerializer(compact=False)))
        return path

    def _sign(self, md: Metadata[Any], signers: Iterable[Signer]) -> None:
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)

    def init(self, specs: Mapping[str, RoleSpec]) -> Path:
        """Create keys and version 1 of all four roles; returns the path of 1.root.json."""
        if self.meta_dir.exists() and any(self.meta_dir.glob("*.root.json")):
            raise RepoError(f"{self.meta_dir}: expected an empty repository, found root metadata")
        root = Root(expires=_expiry(self.expiry_days["root"]), consistent_snapshot=True)
        for role in ROLES:
            spec = specs.get(role, RoleSpec())
            if not 1 <= spec.threshold <= spec.keys:
                raise RepoError(f"{role}: expected 1 <= threshold <= keys, got threshold "
                                f"{spec.threshold} of {spec.keys} keys")
            root.roles[role] = Role([], spec.threshold)
            for _ in range(spec.keys):
                root.add_key(self.new_key(role), role)
        md = Metadata(root)
        self._sign(md, self.signers("root", root))
        path = self._write(md, "1.root.json")
        targets = Metadata(Targets(expires=_expiry(self.expiry_days["targets"])))
        self._sign(targets, self.signers("targets", root))
        self._write(targets, "1.targets.json")
        snap = Metadata(Snapshot(expires=_expiry(self.expiry_days["snapshot"])))
        snap.signed.meta["targets.json"] = MetaFile(version=1)
        self._sign(snap, self.signers("snapshot", root))
        snap_path = self._write(snap, "1.snapshot.json")
        self._write_timestamp(snap_path, 1, version=1)
        return path

    def _write_timestamp(self, snap_path: Path, snap_version: int, *, version: int,
                         signers: Iterable[Signer] | None = None) -> Path:
        ts = Metadata(Timestamp(version=version, expires=_expiry(self.expiry_days["timestamp"])))
        ts.signed.snapshot_meta = MetaFile.from_data(snap_version, snap_path.read_bytes(), ["sha256"])
        self._sign(ts, signers if signers is not None else self.signers("timestamp"))
        return self._write(ts, "timestamp.json")

    def add_target_file(self, targets: Targets, target_path: str, src: Path) -> TargetFile:
        """Copy ``src`` into targets/ (hash-prefixed name) and list it in ``targets``."""
        tf = TargetFile.from_file(target_path, str(src), ["sha256"])
        dirname, _, base = target_path.rpartition("/")
        dest = self.targets_dir / dirname / f"{tf.hashes['sha256']}.{base}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        targets.targets[target_path] = tf
        return tf

    def commit_targets(self, md: Metadata[Targets], signers: Iterable[Signer] | None = None) -> int:
        """Bump, sign and write targets, then a new snapshot and timestamp."""
        md.signed.version += 1
        md.signed.expires = _expiry(self.expiry_days["targets"])
        self._sign(md, signers if signers is not None else self.signers("targets"))
        self._write(md, f"{md.signed.version}.targets.json")
        self.commit_snapshot()
        return md.signed.version

    def commit_snapshot(self) -> None:
        snap = self.snapshot()
        snap.signed.version += 1
        snap.signed.expires = _expiry(self.expiry_days["snapshot"])
        snap.signed.meta["targets.json"] = MetaFile(version=self.targets().signed.version)
        self._sign(snap, self.signers("snapshot"))
        path = self._write(snap, f"{snap.signed.version}.snapshot.json")
        self.refresh_timestamp(snap_path=path, snap_version=snap.signed.version)

    def refresh_timestamp(self, *, snap_path: Path | None = None, snap_version: int | None = None) -> int:
        """Re-sign the timestamp (new version, new expiry); the online key's daily job."""
        if snap_path is None or snap_version is None:
            snap_path = self._latest("snapshot")
            snap_version = int(snap_path.name.split(".", 1)[0])
        version = self.timestamp().signed.version + 1
        self._write_timestamp(snap_path, snap_version, version=version)
        return version

    def rotate_key(self, role: str) -> SSlibKey:
        """Replace every key of ``role`` with one new key, through a new root version.

        The new root is signed by the old root keys (and, when rotating root, by the new
        ones too), so units follow the rotation on their next refresh. The role's
        metadata is then re-signed with the new key.
        """
        old_root = self.root()
        new = Metadata(Root.from_dict(old_root.signed.to_dict()))
        new.signed.version += 1
        new.signed.expires = _expiry(self.expiry_days["root"])
        old_signers = self.signers("root", old_root.signed)
        for keyid in list(new.signed.roles[role].keyids):
            new.signed.revoke_key(keyid, role)
        key = self.new_key(role)
        new.signed.add_key(key, role)
        new.signed.roles[role].threshold = 1
        signers = list(old_signers)
        if role == "root":
            signers.append(self.signer(key.keyid))
        self._sign(new, signers)
        self._write(new, f"{new.signed.version}.root.json")
        if role == "targets":
            self.commit_targets(self.targets())
        elif role == "snapshot":
            self.commit_snapshot()
        elif role == "timestamp":
            self.refresh_timestamp()
        return key

    def publish(self, out_dir: Path) -> int:
        """Copy the repository to ``out_dir`` (what the HTTPS server serves).

        Targets first, then versioned metadata, then ``timestamp.json`` last, each by
        temp file + ``os.replace``: a unit fetching during the publish sees either the
        old or the new release, never a mix. Returns the number of files written.
        """
        written = 0
        order = sorted(p for p in self.targets_dir.rglob("*") if p.is_file()) if self.targets_dir.exists() \
            else []
        order += sorted(p for p in self.meta_dir.glob("*.json") if p.name != "timestamp.json")
        order.append(self.meta_dir / "timestamp.json")
        for src in order:
            dest = out_dir / src.relative_to(self.repo_dir)
            if dest.exists() and src.name != "timestamp.json" and dest.stat().st_size == src.stat().st_size:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
            written += 1
        for d in {p.parent for p in (out_dir / "metadata", out_dir / "targets")}:
            if d.exists():
                fsync_dir(d)
        return written
