"""Build a model bundle directory (models + golden images + ``bundle.json``) and sign it.

``build_bundle`` copies a models directory (``manifest.json`` and the files it lists,
plus ``LICENSES/``) and the golden images into ``out_dir`` and writes ``bundle.json``
with sizes, sha256, model ids/versions, the matching threshold and its FAR, and the
expected embeddings of the golden images, computed with the same
:class:`kycedge.vision.Pipeline` the units run. ``sign_bundle`` lists every file of the
bundle as a TUF target ``bundles/<version>/<path>`` and commits new targets, snapshot and
timestamp metadata.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kycedge import __version__
from kycedge.fleet.repository import FleetRepository, RepoError
from kycedge.protocol.bundle import (
    BUNDLE_FILE,
    BundleFile,
    BundleManifest,
    BundleModel,
    GoldenImage,
    Matching,
    SelfTestSpec,
    bundle_target,
    golden_pair_scores,
    parse_manifest,
    safe_relpath,
    sha256_file,
)
from kycedge.protocol.rollout import ROLLOUT_TARGET, Rollout, parse_rollout

__all__ = ["build_bundle", "describe_models", "set_rollout", "sign_bundle"]

Embed = Callable[[Path, Sequence[Path]], list[list[float]]]


def regular_file(base: Path, rel: str) -> Path:
    """``base/rel`` if every component below ``base`` is a real directory and the last a
    regular file; :class:`RepoError` for a symlink (it could publish a file from outside the
    bundle) or a special file (device, FIFO, socket)."""
    path = base
    parts = rel.split("/")
    for i, seg in enumerate(parts):
        path = path / seg
        try:
            mode = path.lstat().st_mode
        except OSError as e:
            raise RepoError(f"{path}: expected a file of the bundle, cannot read it: {e}") from e
        if stat.S_ISLNK(mode):
            raise RepoError(f"{path}: expected a regular file inside {base}, got a symlink "
                            f"(to {path.readlink()}); copy the file instead")
        last = i == len(parts) - 1
        if (last and not stat.S_ISREG(mode)) or (not last and not stat.S_ISDIR(mode)):
            kind = "a directory" if stat.S_ISDIR(mode) else "a special file"
            raise RepoError(f"{path}: expected a regular file{'' if last else ' below a directory'}, "
                            f"got {kind}")
    return path


def _license_files(models_dir: Path) -> list[str]:
    """Every entry of ``LICENSES/`` (recursive); symlinks and special files are refused."""
    out = []
    for p in sorted((models_dir / "LICENSES").rglob("*")):
        rel = str(p.relative_to(models_dir))
        if p.is_dir() and not p.is_symlink():
            continue
        regular_file(models_dir, rel)
        out.append(rel)
    return out


def describe_models(models_dir: Path) -> tuple[list[BundleModel], Matching, list[str]]:
    """Model entries, matching and the files to ship, read with the vision manifest loader.

    Only the models the manifest's ``pipeline`` section uses (detector, landmarks,
    embedder, fallback detector) are shipped, with ``manifest.json`` and ``LICENSES/``. Ids, versions and the
    threshold are taken exactly as :class:`kycedge.vision.Pipeline` reports them (and as
    templates will carry them).
    """
    from kycedge.vision.models import ROLES, load_manifest

    vm = load_manifest(models_dir)
    roles = {}
    for role in ROLES:
        entry = vm.role(role)
        if entry is not None:
            roles[entry.name] = role
    emb = vm.role("embedder")
    if emb is None:
        raise RepoError(f"{models_dir}/manifest.json: expected pipeline.embedder naming a model, got none")
    model_id = str(vm.pipeline.get("model_id", getattr(emb, "id", emb.name)))
    model_version = str(vm.pipeline.get("model_version", emb.version))
    entries: list[BundleModel] = []
    files = ["manifest.json"]
    for name, e in vm.models.items():
        if name not in roles:
            continue  # not in the pipeline: not shipped (the bundle's manifest.json omits it)
        digest, size = sha256_file(models_dir / e.file)
        if digest != e.sha256:
            raise RepoError(f"{models_dir / e.file}: expected sha256 {e.sha256} (manifest), got {digest}")
        inp = e.raw.get("input") or e.raw.get("inputs") or {}
        ident = (model_id, model_version) if e is emb else (str(getattr(e, "id", name)), e.version)
        entries.append(BundleModel(roles.get(name, "unused"), ident[0], ident[1], e.file, digest, size,
                                  inp if isinstance(inp, Mapping) else {"tensors": inp}))
        files.append(e.file)
    m = Matching(model_id, model_version, vm.threshold, vm.far)
    if (models_dir / "LICENSES").is_dir():
        files += _license_files(models_dir)
    return entries, m, files


def _trim_manifest(path: Path, shipped: set[str]) -> None:
    """Drop from the bundle's copy of ``manifest.json`` the models whose files it does not carry."""
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return  # not a vision manifest (describe() decided what it is)
    models = obj.get("models") if isinstance(obj, dict) else None
    if isinstance(models, dict):
        kept: Any = {k: v for k, v in models.items() if isinstance(v, dict) and v.get("file") in shipped}
    elif isinstance(models, list):
        kept = [m for m in models if isinstance(m, dict) and m.get("file") in shipped]
    else:
        return
    if len(kept) != len(models):
        obj["models"] = kept
        path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def pipeline_embed(models_dir: Path, images: Sequence[Path]) -> list[list[float]]:
    """Embeddings of ``images`` with the vision pipeline loaded from ``models_dir``."""
    from kycedge.vision import Pipeline

    pipe = Pipeline.load(models_dir)
    out = []
    for p in images:
        res = pipe.process_image_bytes(p.read_bytes())
        if not res.ok or res.template is None:
            raise RepoError(f"golden image {p}: expected a face template, got {res.reason}: {res.message}")
        out.append([float(x) for x in res.template])
    return out


def build_bundle(
    models_dir: Path,
    out_dir: Path,
    *,
    version: int,
    golden: Sequence[Path],
    genuine: tuple[int, int] = (0, 1),
    impostor: tuple[int, int] = (0, 2),
    tolerance: float = 0.02,
    min_firmware: str = __version__,
    embed: Embed | None = None,
    describe: Callable[[Path], tuple[list[BundleModel], Matching, list[str]]] = describe_models,
) -> BundleManifest:
    """Write the bundle for ``models_dir`` into ``out_dir`` (must not exist).

    Refused (:class:`RepoError`, nothing written) when the golden images' own pairs fail
    the threshold: the genuine pair must match and the impostor pair must not, exactly
    as the units' self-test will check.
    """
    if out_dir.exists():
        raise RepoError(f"{out_dir}: expected a new directory, it exists")
    if len(golden) < 3:
        raise RepoError(f"golden images: expected at least 3 (genuine pair + impostor), got {len(golden)}")
    models, matching, files = describe(models_dir)
    vectors = (embed or pipeline_embed)(models_dir, golden)
    images = []
    for i, (p, vec) in enumerate(zip(golden, vectors, strict=True)):
        name = f"g{i}-{p.stem}"
        images.append(GoldenImage(name, safe_relpath(f"golden/{name}{p.suffix.lower()}", "golden image"),
                                  tuple(vec)))
    spec = SelfTestSpec(tolerance, tuple(images),
                        (images[genuine[0]].name, images[genuine[1]].name),
                        (images[impostor[0]].name, images[impostor[1]].name))
    _g, _i, problem = golden_pair_scores(spec, {g.name: g.embedding for g in images}, matching.threshold)
    if problem:
        raise RepoError(f"golden images with {matching.model_id}@{matching.model_version} "
                        f"(threshold {matching.threshold}): {problem}; units would refuse this "
                        f"bundle at their self-test, nothing built")
    out_dir.mkdir(parents=True)
    for rel in files:
        src = regular_file(models_dir, safe_relpath(rel, "models dir"))
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    _trim_manifest(out_dir / "manifest.json", {m.file for m in models})
    for p, img in zip(golden, images, strict=True):
        (out_dir / "golden").mkdir(exist_ok=True)
        shutil.copyfile(p, out_dir / img.file)
        files.append(img.file)
    listed = []
    for rel in files:
        digest, size = sha256_file(out_dir / rel)
        listed.append(BundleFile(rel, digest, size))
    manifest = BundleManifest(
        bundle_version=version,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        min_firmware=min_firmware,
        models=tuple(models),
        matching=matching,
        files=tuple(listed),
        selftest=spec,
    )
    data = manifest.to_json()
    parse_manifest(data)  # what the unit will check, checked here first
    (out_dir / BUNDLE_FILE).write_bytes(data)
    return manifest


def sign_bundle(repo: FleetRepository, bundle_dir: Path, signers: Any = None) -> int:
    """Add every file of ``bundle_dir`` as a target and commit; returns the targets version.

    Only regular files are signed: a symlink anywhere in the bundle (it could publish a
    file from outside it) or a special file is refused before anything is written.
    """
    manifest = parse_manifest(regular_file(bundle_dir, BUNDLE_FILE).read_bytes())
    for p in sorted(bundle_dir.rglob("*")):  # rglob does not descend into symlinked dirs
        if p.is_symlink() or not (p.is_dir() or p.is_file()):
            regular_file(bundle_dir, p.relative_to(bundle_dir).as_posix())  # raises, says why
    for f in manifest.files:
        digest, size = sha256_file(regular_file(bundle_dir, f.path))
        if (digest, size) != (f.sha256, f.size):
            raise RepoError(f"{bundle_dir / f.path}: expected sha256 {f.sha256} ({f.size} bytes) per "
                            f"bundle.json, got {digest} ({size} bytes)")
    md = repo.targets()
    v = manifest.bundle_version
    prefix = f"bundles/{v}/"
    if any(p.startswith(prefix) for p in md.signed.targets):
        raise RepoError(f"bundle {v}: expected a new bundle version, it is already signed")
    for f in manifest.files:
        repo.add_target_file(md.signed, bundle_target(v, f.path), bundle_dir / f.path)
    repo.add_target_file(md.signed, bundle_target(v, BUNDLE_FILE), bundle_dir / BUNDLE_FILE)
    return repo.commit_targets(md, signers)


def current_rollout(repo: FleetRepository) -> Rollout:
    tf = repo.targets().signed.targets.get(ROLLOUT_TARGET)
    if tf is None:
        return Rollout(None, None)
    path = repo.targets_dir / f"{tf.hashes['sha256']}.{ROLLOUT_TARGET}"
    return parse_rollout(path.read_bytes())


def set_rollout(repo: FleetRepository, rollout: Rollout, signers: Any = None) -> int:
    """Sign ``rollout`` as the ``rollout.json`` target; bundles it names must be signed."""
    md = repo.targets()
    for v in (rollout.stable, rollout.candidate.bundle_version if rollout.candidate else None):
        if v is not None and bundle_target(v, BUNDLE_FILE) not in md.signed.targets:
            raise RepoError(f"rollout: expected bundle {v} to be signed first, it is not")
    tmp = repo.repo_dir / ".rollout.json"
    tmp.write_bytes(rollout.to_json())
    try:
        repo.add_target_file(md.signed, ROLLOUT_TARGET, tmp)
    finally:
        tmp.unlink()
    return repo.commit_targets(md, signers)
