"""The bundle manifest (``bundle.json``): what a model bundle contains and promises.

A bundle is a complete models directory (the ``manifest.json`` that
:class:`kycedge.vision.Pipeline` reads, the ``.tflite`` files, licences) plus golden
images for the on-unit self-test, described by ``bundle.json``::

    {
      "format": 1,
      "bundle_version": 7,                      # integer, only goes up
      "created_utc": "2026-11-26T15:00:00Z",
      "min_firmware": "0.1.0",
      "models": [{"role": "embedder", "id": "sface", "version": "2021dec-int8",
                  "file": "sface.tflite", "sha256": "…", "size": 123, "input": {…}}],
      "matching": {"model_id": "sface", "model_version": "2021dec-int8",
                   "threshold": 0.36, "far": 0.0001},
      "files": [{"path": "manifest.json", "sha256": "…", "size": 456}, …],
      "selftest": {"tolerance": 0.02,
                   "images": [{"name": "a", "file": "golden/a.jpg", "embedding": [..]}],
                   "genuine": ["a", "b"], "impostor": ["a", "c"]}
    }

``files`` lists every file of the set except ``bundle.json`` itself. Parsing is pure and
strict: the manifest arrives from the network (signed, but still parsed defensively),
so every field is type- and range-checked and paths must stay inside the set.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kycedge.protocol.match import MAX_DIM, MIN_DIM, cosine, decide
from kycedge.protocol.update_errors import BundleError

__all__ = [
    "BUNDLE_FILE",
    "FORMAT",
    "BundleFile",
    "BundleManifest",
    "BundleModel",
    "GoldenImage",
    "Matching",
    "SelfTestSpec",
    "bundle_target",
    "firmware_at_least",
    "golden_pair_scores",
    "parse_manifest",
    "safe_relpath",
    "sha256_file",
]

FORMAT = 1
BUNDLE_FILE = "bundle.json"
MAX_FILES = 256
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


@dataclass(frozen=True)
class BundleFile:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class BundleModel:
    role: str
    id: str
    version: str
    file: str
    sha256: str
    size: int
    input: Mapping[str, Any]


@dataclass(frozen=True)
class Matching:
    model_id: str
    model_version: str
    threshold: float
    far: float


@dataclass(frozen=True)
class GoldenImage:
    name: str
    file: str
    embedding: tuple[float, ...]


@dataclass(frozen=True)
class SelfTestSpec:
    tolerance: float
    images: tuple[GoldenImage, ...]
    genuine: tuple[str, str]
    impostor: tuple[str, str]

    def image(self, name: str) -> GoldenImage:
        for img in self.images:
            if img.name == name:
                return img
        raise BundleError(f"selftest: expected an image named {name!r}, got none")


@dataclass(frozen=True)
class BundleManifest:
    bundle_version: int
    created_utc: str
    min_firmware: str
    models: tuple[BundleModel, ...]
    matching: Matching
    files: tuple[BundleFile, ...]
    selftest: SelfTestSpec

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> BundleFile:
        for f in self.files:
            if f.path == path:
                return f
        raise BundleError(f"files: expected an entry for {path!r}, got none")

    def to_json(self) -> bytes:
        return canonical_json(manifest_to_dict(self))


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def manifest_to_dict(m: BundleManifest) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "bundle_version": m.bundle_version,
        "created_utc": m.created_utc,
        "min_firmware": m.min_firmware,
        "models": [
            {"role": e.role, "id": e.id, "version": e.version, "file": e.file,
             "sha256": e.sha256, "size": e.size, "input": dict(e.input)}
            for e in m.models
        ],
        "matching": {"model_id": m.matching.model_id, "model_version": m.matching.model_version,
                     "threshold": m.matching.threshold, "far": m.matching.far},
        "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in m.files],
        "selftest": {
            "tolerance": m.selftest.tolerance,
            "images": [{"name": g.name, "file": g.file, "embedding": list(g.embedding)}
                       for g in m.selftest.images],
            "genuine": list(m.selftest.genuine),
            "impostor": list(m.selftest.impostor),
        },
    }


def bundle_target(version: int, path: str) -> str:
    """The TUF target path of a file of bundle ``version`` (what the fleet signs, the unit fetches)."""
    return f"bundles/{version}/{path}"


def golden_pair_scores(spec: SelfTestSpec, vectors: Mapping[str, Sequence[float]],
                       threshold: float) -> tuple[float, float, str]:
    """(genuine score, impostor score, problem) of the bundle's golden pairs.

    ``problem`` is "" when the genuine pair matches (score >= threshold) and the impostor
    pair does not, else the sentence that says which pair fails; the fleet refuses to
    build such a bundle, the unit refuses to install it (one rule, written here).
    """
    genuine = cosine(vectors[spec.genuine[0]], vectors[spec.genuine[1]])
    impostor = cosine(vectors[spec.impostor[0]], vectors[spec.impostor[1]])
    if not decide(genuine, threshold):
        return genuine, impostor, (f"genuine pair {spec.genuine}: expected score >= {threshold}, "
                                   f"got {genuine:.4f}")
    if decide(impostor, threshold):
        return genuine, impostor, (f"impostor pair {spec.impostor}: expected score < {threshold}, "
                                   f"got {impostor:.4f}")
    return genuine, impostor, ""


def safe_relpath(path: Any, where: str) -> str:
    """``path`` if it is a relative POSIX path of safe segments, else :class:`BundleError`."""
    if not isinstance(path, str) or not path or len(path) > 512:
        raise BundleError(f"{where}: expected a relative file path, got {path!r}")
    parts = path.split("/")
    for seg in parts:
        if not _SEGMENT.match(seg) or seg in (".", ".."):
            raise BundleError(
                f"{where}: expected path segments of [A-Za-z0-9._+-] not starting with '.', "
                f"got {path!r}")
    if path == BUNDLE_FILE:
        raise BundleError(f"{where}: {BUNDLE_FILE} may not list itself")
    return path


def firmware_at_least(current: str, minimum: str) -> bool:
    """True when dotted version ``current`` >= ``minimum`` (numeric segments only)."""
    def key(v: str) -> tuple[int, ...]:
        core = re.match(r"^(\d+(?:\.\d+)*)", v)
        nums = [int(x) for x in core.group(1).split(".")] if core else [0]
        return tuple(nums + [0] * (4 - len(nums)))
    return key(current) >= key(minimum)


def sha256_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of the file at ``path``."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def parse_manifest(data: bytes, *, max_file_bytes: int = 512 * 2**20) -> BundleManifest:
    """Parse and validate ``bundle.json`` bytes; :class:`BundleError` names what is wrong."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"bundle.json: expected UTF-8 JSON, got undecodable data ({e})") from e
    obj = _mapping(raw, "bundle.json")
    fmt = obj.get("format")
    if fmt != FORMAT:
        raise BundleError(f"format: expected {FORMAT}, got {fmt!r}")
    version = _int(obj.get("bundle_version"), "bundle_version", lo=1)
    created = _str(obj.get("created_utc"), "created_utc")
    min_fw = _str(obj.get("min_firmware"), "min_firmware")
    if not _VERSION.match(min_fw):
        raise BundleError(f"min_firmware: expected a dotted numeric version, got {min_fw!r}")

    files_raw = _seq(obj.get("files"), "files", max_len=MAX_FILES)
    files: list[BundleFile] = []
    seen: set[str] = set()
    for i, item in enumerate(files_raw):
        f = _mapping(item, f"files[{i}]")
        path = safe_relpath(f.get("path"), f"files[{i}].path")
        if path in seen:
            raise BundleError(f"files[{i}].path: expected unique paths, got {path!r} twice")
        seen.add(path)
        files.append(BundleFile(path, _hex64(f.get("sha256"), f"files[{i}].sha256"),
                                _int(f.get("size"), f"files[{i}].size", lo=0, hi=max_file_bytes)))
    for p in seen:
        # A file "a" and a file "a/b" cannot both exist in one directory tree.
        if any(q.startswith(p + "/") for q in seen):
            raise BundleError(f"files: {p!r} is both a file and a directory")
    by_path = {f.path: f for f in files}

    models: list[BundleModel] = []
    for i, item in enumerate(_seq(obj.get("models"), "models", min_len=1, max_len=16)):
        m = _mapping(item, f"models[{i}]")
        entry = BundleModel(
            role=_str(m.get("role"), f"models[{i}].role"),
            id=_str(m.get("id"), f"models[{i}].id"),
            version=_str(m.get("version"), f"models[{i}].version"),
            file=safe_relpath(m.get("file"), f"models[{i}].file"),
            sha256=_hex64(m.get("sha256"), f"models[{i}].sha256"),
            size=_int(m.get("size"), f"models[{i}].size", lo=1, hi=max_file_bytes),
            input=_mapping(m.get("input", {}), f"models[{i}].input"),
        )
        listed = by_path.get(entry.file)
        if listed is None or (listed.sha256, listed.size) != (entry.sha256, entry.size):
            raise BundleError(
                f"models[{i}]: expected {entry.file!r} in files with sha256 {entry.sha256} and "
                f"size {entry.size}, got {listed!r}")
        models.append(entry)

    mt = _mapping(obj.get("matching"), "matching")
    matching = Matching(
        model_id=_str(mt.get("model_id"), "matching.model_id"),
        model_version=_str(mt.get("model_version"), "matching.model_version"),
        threshold=_float(mt.get("threshold"), "matching.threshold", -1.0, 1.0),
        far=_float(mt.get("far"), "matching.far", 0.0, 1.0),
    )
    from kycedge.protocol.ids import MODEL_ID_RE, MODEL_VERSION_RE

    if not (MODEL_ID_RE.fullmatch(matching.model_id) and MODEL_VERSION_RE.fullmatch(matching.model_version)):
        raise BundleError(
            f"matching: expected a model id / version that templates can carry ({MODEL_ID_RE.pattern} / "
            f"{MODEL_VERSION_RE.pattern}), got {matching.model_id!r} / {matching.model_version!r}")
    if not any(e.id == matching.model_id and e.version == matching.model_version for e in models):
        raise BundleError(
            f"matching: expected model {matching.model_id}@{matching.model_version} among models, "
            f"got {[f'{e.id}@{e.version}' for e in models]}")

    st = _mapping(obj.get("selftest"), "selftest")
    images: list[GoldenImage] = []
    dim: int | None = None
    for i, item in enumerate(_seq(st.get("images"), "selftest.images", min_len=2, max_len=16)):
        g = _mapping(item, f"selftest.images[{i}]")
        file = safe_relpath(g.get("file"), f"selftest.images[{i}].file")
        if file not in by_path:
            raise BundleError(f"selftest.images[{i}].file: expected a path listed in files, got {file!r}")
        emb_raw = _seq(g.get("embedding"), f"selftest.images[{i}].embedding", min_len=MIN_DIM,
                       max_len=MAX_DIM)
        emb = tuple(_float(x, f"selftest.images[{i}].embedding", -1e6, 1e6) for x in emb_raw)
        if dim is not None and len(emb) != dim:
            raise BundleError(
                f"selftest.images[{i}].embedding: expected {dim} values, got {len(emb)}")
        dim = len(emb)
        images.append(GoldenImage(_str(g.get("name"), f"selftest.images[{i}].name"), file, emb))
    names = {g.name for g in images}
    if len(names) != len(images):
        raise BundleError("selftest.images: expected unique names, got duplicates")

    def pair(key: str) -> tuple[str, str]:
        p = _seq(st.get(key), f"selftest.{key}", min_len=2, max_len=2)
        a, b = _str(p[0], f"selftest.{key}[0]"), _str(p[1], f"selftest.{key}[1]")
        if a not in names or b not in names or a == b:
            raise BundleError(
                f"selftest.{key}: expected two different image names from {sorted(names)}, "
                f"got {[a, b]}")
        return a, b

    selftest = SelfTestSpec(
        tolerance=_float(st.get("tolerance"), "selftest.tolerance", 0.0, 0.5),
        images=tuple(images), genuine=pair("genuine"), impostor=pair("impostor"))
    return BundleManifest(version, created, min_fw, tuple(models), matching, tuple(files), selftest)


def _mapping(v: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise BundleError(f"{where}: expected an object, got {type(v).__name__}")
    return v


def _seq(v: Any, where: str, *, min_len: int = 0, max_len: int = 1 << 16) -> Sequence[Any]:
    if not isinstance(v, list):
        raise BundleError(f"{where}: expected an array, got {type(v).__name__}")
    if not min_len <= len(v) <= max_len:
        raise BundleError(f"{where}: expected {min_len}..{max_len} entries, got {len(v)}")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v or len(v) > 256:
        raise BundleError(f"{where}: expected a non-empty string of <= 256 chars, got {v!r}")
    return v


def _int(v: Any, where: str, *, lo: int, hi: int = 2**53) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BundleError(f"{where}: expected an integer in [{lo}, {hi}], got {v!r}")
    return v


def _float(v: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or not lo <= v <= hi:
        raise BundleError(f"{where}: expected a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def _hex64(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _HEX64.match(v):
        raise BundleError(f"{where}: expected 64 lowercase hex digits (sha256), got {v!r}")
    return v
