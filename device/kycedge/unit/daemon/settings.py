"""The unit's whole TOML config, composed from each component's own section dataclass.

One file (``/etc/kycedge/kycedge.toml``), one table per component::

    [daemon]        this module: identity, directories, lifecycle
    [capture]       kycedge.unit.capture.CaptureConfig
    [session]       kycedge.unit.session.SessionConfig
    [liveness]      kycedge.unit.liveness.LivenessConfig
    [api]           kycedge.unit.api.ApiConfig
    [vision]        kycedge.vision.VisionConfig
    [carrier_keys]  kycedge.unit.carrier_keys.CarrierKeysConfig
    [outbox]        kycedge.unit.outbox.OutboxConfig
    [uplink]        kycedge.mqtt.UplinkConfig       (required: where the broker is)
    [forwarder]     kycedge.unit.forwarder.ForwarderConfig
    [updates]       kycedge.unit.updates.config.UpdatesConfig

Validation is :func:`kycedge.core.config.from_mapping`'s: unknown keys, wrong types and
out-of-range values stop the start with one message naming the dotted key, the expected
and the actual value. :func:`check_files` then checks that every file the config names
exists and is readable (secrets are always file paths, never inline values).

``kycedge config check PATH`` and ``kycedge config schema`` expose both.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kycedge.core.config import from_mapping, json_schema, load_toml, section
from kycedge.core.errors import ConfigError, IdError
from kycedge.mqtt.config import UplinkConfig
from kycedge.protocol import ids
from kycedge.unit.api import ApiConfig
from kycedge.unit.capture.base import CaptureConfig
from kycedge.unit.carrier_keys import CarrierKeysConfig
from kycedge.unit.forwarder import ForwarderConfig
from kycedge.unit.liveness import LivenessConfig
from kycedge.unit.metrics import MetricsConfig
from kycedge.unit.outbox import OutboxConfig
from kycedge.unit.session import SessionConfig
from kycedge.unit.updates.config import UPDATES_STATE_DEFAULT, UpdatesConfig
from kycedge.vision.pipeline import VisionConfig

__all__ = ["RELOADABLE", "DaemonConfig", "Settings", "check_files", "load", "reload_diff", "schema"]

_STATE = Path("/var/lib/kycedge")
_MODELS = Path("/opt/kycedge/models")


@dataclass(frozen=True)
class DaemonConfig:
    """[daemon] identity of the unit, directories and lifecycle."""

    tenant: str = section(help="carrier tenant id (lowercase, as enrolled)")
    device_id: str = section(help="this unit's device id (as enrolled at the carrier)")
    state_dir: Path = section(  # noqa: RUF009 - Path is immutable
        _STATE, help="keys, outbox, chain state (systemd StateDirectory)"
    )
    models_dir: Path = section(  # noqa: RUF009
        _MODELS, help="factory model set (manifest.json); the update store's current set wins"
    )
    selftest_image: Path | None = section(  # noqa: RUF009
        None, help="a face photo the models must turn into a template before READY (optional)"
    )
    tpm_tcti: str = section(
        "", help="the TPM 2.0 that holds the device key, as a TCTI (device:/dev/tpmrm0); empty = the "
        "key is software (Ed25519 in state_dir), which every envelope and the carrier mark as such")
    log_level: Literal["debug", "info", "warning", "error"] = section("info", help="log verbosity")
    stop_grace_s: float = section(
        10.0, min=0.0, max=120.0,
        help="on SIGTERM, let a session in progress finish this long before cancelling it "
        "(keep below the unit's TimeoutStopSec)",
    )
    status_interval_s: float = section(5.0, min=0.5, max=600.0, help="STATUS= update period to systemd")
    outbox_file: str = section("outbox.sqlite", help="outbox database file name inside state_dir")

    def __post_init__(self) -> None:
        try:
            ids.check_tenant(self.tenant, "daemon.tenant")
            ids.check_device_id(self.device_id, "daemon.device_id")
        except IdError as e:
            raise ConfigError(e.message) from e
        if self.tpm_tcti:
            from kycedge.crypto.tpm import TCTI_NAMES  # the binding itself loads only when used

            if self.tpm_tcti.partition(":")[0] not in TCTI_NAMES:
                raise ConfigError(f"daemon.tpm_tcti: expected empty or a TCTI starting with one of "
                                  f"{', '.join(n + ':' for n in TCTI_NAMES)}, got {self.tpm_tcti!r:.80}")
        if "/" in self.outbox_file or self.outbox_file in ("", ".", ".."):
            raise ConfigError(f"daemon.outbox_file: expected a plain file name, got {self.outbox_file!r}")


def _disabled_updates() -> UpdatesConfig:
    return UpdatesConfig(enabled=False)


@dataclass(frozen=True)
class Settings:
    """kycedge unit configuration (one TOML file)."""

    daemon: DaemonConfig
    uplink: UplinkConfig
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    carrier_keys: CarrierKeysConfig = field(default_factory=CarrierKeysConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    forwarder: ForwarderConfig = field(default_factory=ForwarderConfig)
    updates: UpdatesConfig = field(default_factory=_disabled_updates)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def __post_init__(self) -> None:
        own = ids.device_common_name(self.daemon.tenant, self.daemon.device_id)
        if self.uplink.client_id not in ("", own):
            raise ConfigError(
                f"uplink.client_id: expected empty or {own!r} (the unit's certificate CN: the broker refuses "
                f"any other client id for this unit), got {self.uplink.client_id!r:.80}"
            )
        # The model store follows the state directory unless [updates] state_dir names
        # another place: under systemd the state directory is the only writable one.
        if self.updates.state_dir == UPDATES_STATE_DEFAULT and self.daemon.state_dir != _STATE:
            object.__setattr__(self, "updates", dataclasses.replace(
                self.updates, state_dir=self.daemon.state_dir / "models"))


def load(path: Path) -> Settings:
    """Read and validate ``path``; :class:`ConfigError` names the key, expected and actual value."""
    return load_toml(Path(path), Settings)


def from_dict(data: dict[str, Any]) -> Settings:
    return from_mapping(Settings, data)


def schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the whole file."""
    out = json_schema(Settings)
    out["title"] = "kycedge unit configuration"
    return out


def _paths(obj: Any, prefix: str) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            out += _paths(getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(obj, tuple):
        for i, v in enumerate(obj):
            out += _paths(v, f"{prefix}[{i}]")
    elif isinstance(obj, Path):
        out.append((prefix, obj))
    return out


# Paths that name directories the daemon creates, or inputs used only by one source.
_CREATED_OR_OPTIONAL = {"daemon.state_dir", "updates.state_dir", "capture.replay_path", "daemon.models_dir",
                        "metrics.textfile"}


def check_files(s: Settings) -> list[str]:
    """Problems with the files the config names (missing, unreadable), one message each."""
    problems: list[str] = []
    for key, p in _paths(s, ""):
        if key in _CREATED_OR_OPTIONAL:
            continue
        if key.startswith("updates.") and not s.updates.enabled:
            continue
        if key.startswith("uplink.") and not s.uplink.tls:
            continue
        if not p.exists():
            problems.append(f"{key}: expected an existing file, got missing path {p}")
        elif not os.access(p, os.R_OK):
            problems.append(f"{key}: expected a readable file, got unreadable {p}")
    if s.capture.source == "replay" and not s.capture.replay_path.exists():
        problems.append(f"capture.replay_path: expected a directory or .y4m file, got missing path "
                        f"{s.capture.replay_path}")
    if s.updates.enabled and not s.updates.state_dir.is_relative_to(s.daemon.state_dir):
        problems.append(
            f"updates.state_dir: expected a directory inside daemon.state_dir {s.daemon.state_dir} "
            f"(the only one the systemd unit lets the daemon write), got {s.updates.state_dir}")
    if not s.carrier_keys.hpke:
        problems.append("carrier_keys.hpke: expected at least one carrier HPKE public key, got none")
    if not s.carrier_keys.receipt:
        problems.append("carrier_keys.receipt: expected at least one receipt key, got none")
    return problems


#: Sections/keys SIGHUP applies without a restart; everything else is reported as needing one.
RELOADABLE = frozenset({"daemon.log_level", "daemon.status_interval_s", "daemon.stop_grace_s", "session"})


def reload_diff(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """``(applied, needs_restart)``: the dotted keys that differ, split by :data:`RELOADABLE`."""
    applied: list[str] = []
    restart: list[str] = []
    for f in dataclasses.fields(Settings):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        for g in dataclasses.fields(a):
            if getattr(a, g.name) != getattr(b, g.name):
                key = f"{f.name}.{g.name}"
                (applied if f.name in RELOADABLE or key in RELOADABLE else restart).append(key)
    return applied, restart
