"""The ``[updates]`` config section of the unit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kycedge.core.config import section

__all__ = ["UPDATES_STATE_DEFAULT", "UpdatesConfig"]

#: the model store's default place; in a unit config it follows ``[daemon] state_dir``
UPDATES_STATE_DEFAULT = Path("/var/lib/kycedge/models")


@dataclass(frozen=True)
class UpdatesConfig:
    """Signed model updates: where to fetch, how often, limits and trial period."""

    enabled: bool = section(True, help="poll and apply signed model bundles")
    repository_url: str = section(
        "https://updates.invalid/kycedge", help="base URL of the TUF repository (metadata/ and targets/)")
    trusted_root: Path = section(  # noqa: RUF009
        Path("/etc/kycedge/tuf-root.json"), help="trusted TUF root.json provisioned on the unit")
    state_dir: Path = section(  # noqa: RUF009
        UPDATES_STATE_DEFAULT,
        help="model sets, current/previous links, TUF metadata cache (default: daemon.state_dir/models)")
    ca_file: Path | None = section(None, help="CA bundle for the repository's HTTPS certificate")  # noqa: RUF009
    cohort: str = section("", help="rollout cohort this unit belongs to (empty: none)")
    poll_interval_s: float = section(3600.0, min=10.0, max=7 * 86400.0, help="poll period")
    poll_jitter_s: float = section(300.0, min=0.0, max=86400.0, help="random delay added to each poll")
    connect_timeout_s: float = section(10.0, min=0.5, max=120.0, help="TCP/TLS connect timeout")
    read_timeout_s: float = section(30.0, min=0.5, max=600.0, help="timeout between received bytes")
    min_download_bytes_per_s: int = section(
        1024, min=0, max=2**30, help="cut a transfer slower than this on average after slow_grace_s (0: off)")
    slow_grace_s: float = section(
        30.0, min=1.0, max=3600.0, help="grace period of the slow-retrieval guard (metadata and targets)")
    download_retries: int = section(5, min=0, max=100, help="resume attempts per file per check")
    retry_backoff_s: float = section(1.0, min=0.0, max=300.0, help="wait before a resume attempt")
    max_metadata_bytes: int = section(
        512 * 1024, min=4096, max=64 * 2**20, help="length limit for root/timestamp metadata")
    max_bundle_bytes: int = section(
        256 * 2**20, min=2**20, max=4 * 2**30, help="length limit for all files of one bundle")
    selftest_tolerance_cap: float = section(
        0.05, min=0.0, max=0.5, help="largest embedding tolerance (1 - cosine) a bundle may ask for")
    health_checks: int = section(3, min=1, max=100, help="health checks that must pass after a switch")
    health_interval_s: float = section(1.0, min=0.0, max=600.0, help="pause between health checks")
    max_trial_boots: int = section(
        2, min=1, max=20, help="restarts during the trial period before rolling back (crash loop)")
    keep_sets: int = section(2, min=2, max=10, help="model sets kept on disk (current, previous, ...)")
