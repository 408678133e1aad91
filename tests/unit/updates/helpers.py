"""Test helpers: a fleet repository with small fake bundles, a faulty static server, a fake daemon."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kycedge.fleet.bundle_build import build_bundle, set_rollout, sign_bundle
from kycedge.fleet.repository import FleetRepository, RoleSpec
from kycedge.fleet.static_server import RangeRequestHandler, serve_in_thread
from kycedge.protocol.bundle import BundleManifest, BundleModel, Matching, sha256_file
from kycedge.protocol.rollout import Rollout
from kycedge.unit.updates.agent import UpdateAgent, UpdateReport
from kycedge.unit.updates.config import UpdatesConfig
from kycedge.unit.updates.stage import verify_set

DIM = 16


def fake_models_dir(path: Path, seed: int, size: int = 20_000) -> Path:
    """A models dir with two small "model" files and a manifest (not real TFLite)."""
    path.mkdir(parents=True)
    rnd = bytes((seed * 31 + i * 7) % 251 for i in range(size))
    (path / "det.tflite").write_bytes(b"DET" + rnd)
    (path / "emb.tflite").write_bytes(b"EMB" + rnd[::-1])
    (path / "manifest.json").write_text(json.dumps({"seed": seed}))
    return path


def fake_describe(models_dir: Path) -> tuple[list[BundleModel], Matching, list[str]]:
    seed = json.loads((models_dir / "manifest.json").read_text())["seed"]
    entries = []
    for role, name in (("detector", "det"), ("embedder", "emb")):
        digest, size = sha256_file(models_dir / f"{name}.tflite")
        entries.append(BundleModel(role, name, f"v{seed}", f"{name}.tflite", digest, size, {"shape": [1, 3]}))
    return entries, Matching("emb", f"v{seed}", 0.4, 1e-4), ["manifest.json", "det.tflite", "emb.tflite"]


def fake_embed(_models: Path, images: list[Path]) -> list[list[float]]:
    """Images 0 and 1 close to one axis (the genuine pair), image 2 near another (impostor)."""
    return [[(1.0 if j == (0 if i < 2 else 4) else 0.0) + 0.05 * ((i + j) % 3) for j in range(DIM)]
            for i in range(len(images))]


class FaultyHandler(RangeRequestHandler):
    """Serve files, with faults configured on the server object (``server.faults``)."""

    def send_file_range(self, path: str) -> None:
        faults: Faults = self.server.faults  # type: ignore[attr-defined]
        with faults.lock:
            faults.requests.append((self.path, self.headers.get("Range")))
        super().send_file_range(path)

    def write_body(self, f: Any, length: int) -> None:
        faults: Faults = self.server.faults  # type: ignore[attr-defined]
        with faults.lock:
            cut = None
            for suffix, budget in list(faults.truncate.items()):
                if re.search(suffix, self.path) and budget[0] > 0:
                    budget[0] -= 1
                    cut = budget[1]
            drip = next((rate for pattern, rate in faults.drip.items() if re.search(pattern, self.path)),
                        None)
        if drip is not None:
            self.drip(f, length, drip, faults)
            return
        if cut is None:
            super().write_body(f, length)
            return
        self.wfile.write(f.read(min(cut, length)))
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)


    def drip(self, f: Any, length: int, bytes_per_s: float, faults: Faults) -> None:
        """Send the body one byte at a time at ``bytes_per_s`` until done, the client goes or
        the test ends (``faults.stop``)."""
        try:
            for _ in range(length):
                if faults.stop.is_set():
                    break
                self.wfile.write(f.read(1))
                self.wfile.flush()
                faults.stop.wait(1.0 / bytes_per_s)
        except OSError:
            pass  # the client cut the transfer
        self.close_connection = True


@dataclass
class Faults:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    # path regex -> [times left, bytes sent before the connection is cut]
    truncate: dict[str, list[int]] = field(default_factory=dict)
    # path regex -> bytes per second: the body is dripped one byte at a time
    drip: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)


class Fleet:
    """Publisher side: repository, keys, the served directory and its server."""

    def __init__(self, tmp: Path, specs: dict[str, RoleSpec] | None = None) -> None:
        self.tmp = tmp
        self.repo = FleetRepository(tmp / "repo", tmp / "keys")
        self.root_path = self.repo.init(specs or {"root": RoleSpec(2, 2)})
        self.www = tmp / "www"
        self.www.mkdir()
        self.server = serve_in_thread(self.www, handler=FaultyHandler)
        self.faults = Faults()
        self.server.faults = self.faults  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.bundles: dict[int, BundleManifest] = {}

    def bundle(self, version: int, seed: int | None = None, size: int = 20_000, **kw: Any) -> Path:
        models = fake_models_dir(self.tmp / f"models-{version}", seed if seed is not None else version,
                                 size)
        out = self.tmp / f"bundle-{version}"
        golden = []
        for i in range(3):
            p = self.tmp / f"g{version}-{i}.jpg"
            p.write_bytes(b"golden" + bytes([i, version]) * 50)
            golden.append(p)
        self.bundles[version] = build_bundle(models, out, version=version, golden=golden,
                                             embed=fake_embed, describe=fake_describe, **kw)
        return out

    def release(self, version: int, *, percent: float = 100.0, stable: int | None = None,
                publish: bool = True, **kw: Any) -> None:
        sign_bundle(self.repo, self.bundle(version, **kw))
        if percent >= 100.0:
            set_rollout(self.repo, Rollout(version, None))
        else:
            from kycedge.protocol.rollout import Candidate
            set_rollout(self.repo, Rollout(stable, Candidate(version, percent, ())))
        if publish:
            self.repo.publish(self.www)

    def close(self) -> None:
        self.faults.stop.set()
        self.server.shutdown()
        self.server.server_close()


class FakeDaemon:
    """Stands in for the daemon: loads a set (verifying it), serves, answers health checks."""

    def __init__(self) -> None:
        self.loaded: Path | None = None
        self.healthy: Callable[[], bool] = lambda: True
        self.fail_load_prefix: str | None = None
        self.reports: list[UpdateReport] = []

    def reload_models(self, path: Path) -> None:
        if self.fail_load_prefix and path.name.startswith(self.fail_load_prefix):
            raise RuntimeError(f"cannot load {path.name}")
        verify_set(path)
        self.loaded = path

    def health(self) -> bool:
        return self.healthy()

    def serve(self, store_current: Path | None) -> str:
        """One "session": the loaded set must be the store's current one and be intact."""
        assert self.loaded is not None
        assert store_current == self.loaded
        m = verify_set(self.loaded)
        return f"{m.matching.model_id}@{m.matching.model_version}"


def unit_config(tmp: Path, fleet: Fleet, **kw: Any) -> UpdatesConfig:
    root = tmp / "unit-root.json"
    if not root.exists():
        root.write_bytes(fleet.root_path.read_bytes())
    base = UpdatesConfig(repository_url=fleet.url, trusted_root=root, state_dir=tmp / "unit",
                         retry_backoff_s=0.0, health_interval_s=0.0, download_retries=2,
                         connect_timeout_s=2.0, read_timeout_s=5.0)
    return replace(base, **kw)


def make_agent(tmp: Path, fleet: Fleet, daemon: FakeDaemon, *, selftest: Any = None,
               **kw: Any) -> UpdateAgent:
    cfg = unit_config(tmp, fleet, **kw)
    return UpdateAgent(cfg, device_id="unit-1", reload_models=daemon.reload_models,
                       health_check=daemon.health, report=daemon.reports.append,
                       selftest=selftest or (lambda p, m: None))


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def bundle_variant(src: Path, dst: Path, version: int, mutate: Callable[[dict[str, Any]], None] | None = None,
                   ) -> Path:
    """A copy of bundle ``src`` as ``version``, with ``bundle.json`` changed by ``mutate``."""
    import shutil

    shutil.copytree(src, dst)
    obj = json.loads((dst / "bundle.json").read_text())
    obj["bundle_version"] = version
    if mutate is not None:
        mutate(obj)
    (dst / "bundle.json").write_text(json.dumps(obj))
    return dst


def publish_dir(fleet: Fleet, bundle_dir: Path, version: int) -> None:
    sign_bundle(fleet.repo, bundle_dir)
    set_rollout(fleet.repo, Rollout(version, None))
    fleet.repo.publish(fleet.www)
