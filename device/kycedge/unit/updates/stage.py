"""Stage a verified bundle next to the active model set.

Layout of the update state directory (see :mod:`kycedge.unit.updates.switch`)::

    <state_dir>/sets/b000007-1a2b3c4d5e6f/   one complete model set per bundle
    <state_dir>/sets/.staging-7/             being downloaded (never read by the daemon)
    <state_dir>/current -> sets/…            what the daemon loads
    <state_dir>/previous -> sets/…           what a rollback returns to

Every file is verified by TUF (length and sha256 against signed targets metadata)
before it is written to the staging directory, then checked again against
``bundle.json`` (which is itself a signed target). Files identical to one in the active
set are copied locally instead of downloaded. Only a complete, verified, fsynced staging
directory is renamed into ``sets/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kycedge.core.fsutil import atomic_write, fsync_dir, fsync_file, storage_error
from kycedge.protocol.bundle import (
    BUNDLE_FILE,
    BundleManifest,
    bundle_target,
    firmware_at_least,
    parse_manifest,
    sha256_file,
)
from kycedge.protocol.update_errors import BundleError, MetadataError, StageError

__all__ = ["StagedSet", "TargetSource", "set_name", "stage_bundle", "verify_set"]

MAX_BUNDLE_JSON = 4 * 2**20


class TargetSource(Protocol):
    """What staging needs from the TUF client.

    See :class:`~kycedge.unit.updates.tuf_client.RepositoryClient`.
    """

    def read(self, path: str, *, max_bytes: int) -> bytes: ...
    def download(self, path: str, dest: Path, *, max_bytes: int) -> object: ...


@dataclass(frozen=True)
class StagedSet:
    path: Path
    manifest: BundleManifest
    downloaded_bytes: int
    reused_files: int


def set_name(manifest_bytes: bytes, version: int) -> str:
    return f"b{version:06d}-{hashlib.sha256(manifest_bytes).hexdigest()[:12]}"


def verify_set(set_dir: Path) -> BundleManifest:
    """Check every file of a set against its ``bundle.json``; :class:`StageError` if not."""
    try:
        raw = (set_dir / BUNDLE_FILE).read_bytes()
    except OSError as e:
        raise StageError(f"{set_dir}: expected {BUNDLE_FILE}, cannot read it: {e}") from e
    manifest = parse_manifest(raw)
    for f in manifest.files:
        p = set_dir / f.path
        try:
            digest, size = sha256_file(p)
        except OSError as e:
            raise StageError(f"{p}: expected a file of {f.size} bytes, cannot read it: {e}") from e
        if (digest, size) != (f.sha256, f.size):
            raise StageError(f"{p}: expected sha256 {f.sha256} and {f.size} bytes, "
                             f"got {digest} and {size} bytes", reason="hash-mismatch")
    return manifest


def stage_bundle(
    source: TargetSource,
    version: int,
    sets_dir: Path,
    *,
    active: Path | None,
    firmware_version: str,
    max_bundle_bytes: int,
    progress: Callable[[str], None] | None = None,
) -> StagedSet:
    """Download bundle ``version`` into a verified set under ``sets_dir`` and return it."""
    raw = source.read(bundle_target(version, BUNDLE_FILE), max_bytes=MAX_BUNDLE_JSON)
    manifest = parse_manifest(raw)
    if manifest.bundle_version != version:
        raise BundleError(f"bundle.json: expected bundle_version {version} (its target path), "
                          f"got {manifest.bundle_version}", reason="mix-and-match")
    if not firmware_at_least(firmware_version, manifest.min_firmware):
        raise BundleError(f"bundle {version}: expected firmware >= {manifest.min_firmware}, "
                          f"this unit runs {firmware_version}", reason="incompatible-firmware")
    if manifest.total_bytes > max_bundle_bytes:
        raise BundleError(f"bundle {version}: expected at most {max_bundle_bytes} bytes in total, "
                          f"manifest lists {manifest.total_bytes}", reason="oversized")
    final = sets_dir / set_name(raw, version)
    if final.is_dir():
        try:
            verify_set(final)
            return StagedSet(final, manifest, 0, len(manifest.files))
        except (StageError, BundleError):
            shutil.rmtree(final, ignore_errors=True)

    staging = sets_dir / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        local = _local_index(active)
        downloaded = reused = 0
        for f in manifest.files:
            dest = staging / f.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            have = local.get((f.sha256, f.size))
            if have is not None:
                shutil.copyfile(have, dest)
                digest, size = sha256_file(dest)
                if (digest, size) == (f.sha256, f.size):
                    reused += 1
                    fsync_file(dest)
                    continue
                dest.unlink()
            if progress is not None:
                progress(f.path)
            meta = source.download(bundle_target(version, f.path), dest, max_bytes=f.size)
            digest, size = sha256_file(dest)
            if (digest, size) != (f.sha256, f.size):
                # TUF verified the file against targets metadata; bundle.json disagrees.
                raise MetadataError(
                    f"{f.path}: bundle.json expects sha256 {f.sha256} ({f.size} bytes), signed "
                    f"target is {digest} ({size} bytes) [{meta}]", reason="hash-mismatch")
            fsync_file(dest)
            downloaded += size
        atomic_write(staging / BUNDLE_FILE, raw)
        for d in sorted({(staging / f.path).parent for f in manifest.files}, reverse=True):
            fsync_dir(d)
        os.replace(staging, final)
        fsync_dir(sets_dir)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        se = storage_error(e, f"{staging}: cannot write the staged set")
        # a full or read-only filesystem says so (storage-full / read-only); anything else
        # is the update path's own stage-failed
        reason = se.reason if se.reason != "storage-error" else StageError.reason
        raise StageError(f"{staging}: cannot write the staged set: {e}", reason=reason) from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StagedSet(final, manifest, downloaded, reused)


def _local_index(active: Path | None) -> dict[tuple[str, int], Path]:
    """(sha256, size) -> path for the files of the active set, per its bundle.json."""
    if active is None:
        return {}
    try:
        m = parse_manifest((active / BUNDLE_FILE).read_bytes())
    except (OSError, BundleError):
        return {}
    return {(f.sha256, f.size): active / f.path for f in m.files}
