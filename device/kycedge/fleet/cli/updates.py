"""``kycedge-fleet`` commands for signed model bundles (TUF).

    kycedge-fleet keys init    --repo repo/ --keys keys/ [--root-keys 3 --root-threshold 2]
    kycedge-fleet keys rotate  --repo repo/ --keys keys/ --role targets
    kycedge-fleet bundle build --models models/ --golden a.jpg b.jpg c.jpg --version 2 --out b2/
    kycedge-fleet bundle sign  --repo repo/ --keys keys/ --bundle b2/
    kycedge-fleet rollout      --repo repo/ --keys keys/ --stable 1 --candidate 2 --percent 10
    kycedge-fleet publish      --repo repo/ --keys keys/ --out /srv/www/kycedge [--refresh-timestamp]
    kycedge-fleet announce     --uplink fleet.toml --tenant acme --version 2
    kycedge-fleet status       --uplink fleet.toml --tenant acme
    kycedge-fleet serve        --dir /srv/www/kycedge --port 8080   (development only)

``--uplink`` names a TOML file with an ``[uplink]`` table (kycedge.mqtt.UplinkConfig,
the fleet-admin identity). Heavy imports (tuf, the vision pipeline, paho) happen inside
the handlers.
"""

from __future__ import annotations

import argparse
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kycedge.core.errors import KycEdgeError
from kycedge.mqtt.config import UplinkConfig

__all__ = ["register"]


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="TUF repository keys: create the repository, rotate a role's key")
    ks = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = ks.add_parser("init", help="create keys and version 1 metadata of all four roles")
    _repo_args(init)
    for role, n, t in (("root", 3, 2), ("targets", 1, 1), ("snapshot", 1, 1), ("timestamp", 1, 1)):
        init.add_argument(f"--{role}-keys", type=int, default=n, help=f"number of {role} keys")
        init.add_argument(f"--{role}-threshold", type=int, default=t, help=f"{role} signature threshold")
    init.set_defaults(handler=_keys_init)
    rot = ks.add_parser("rotate", help="replace a role's keys with a new one (new root version)")
    _repo_args(rot)
    rot.add_argument("--role", required=True, choices=("root", "targets", "snapshot", "timestamp"))
    rot.set_defaults(handler=_keys_rotate)

    bundle = sub.add_parser("bundle", help="model bundles: build from a models dir, sign into the repository")
    bs = bundle.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    build = bs.add_parser("build", help="models + golden images + expected embeddings -> bundle dir")
    build.add_argument("--models", type=Path, required=True, help="models dir (manifest.json)")
    build.add_argument("--golden", type=Path, nargs="+", required=True,
                       help="face images: the first two of one person, the third another")
    build.add_argument("--version", type=int, required=True, help="bundle version (only goes up)")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--tolerance", type=float, default=0.02, help="allowed 1 - cosine per golden image")
    build.add_argument("--min-firmware", default=None, help="lowest firmware version (default: this one)")
    build.set_defaults(handler=_bundle_build)
    sign = bs.add_parser("sign", help="list the bundle's files as targets and sign targets metadata")
    _repo_args(sign)
    sign.add_argument("--bundle", type=Path, required=True)
    sign.set_defaults(handler=_bundle_sign)

    ro = sub.add_parser(
        "rollout", help="which units get which bundle (signed rollout.json)",
        description="Without a change option, only shows the signed rollout (and --device picks). "
        "A change replaces only the fields it names and signs a new targets version.")
    _repo_args(ro)
    ro.add_argument("--stable", type=int, help="bundle every unit runs unless chosen as candidate")
    ro.add_argument("--candidate", type=int, help="bundle being rolled out")
    ro.add_argument("--percent", type=float, default=None,
                    help="share of units (by device-id hash) that get the candidate")
    ro.add_argument("--cohort", action="append", default=None,
                    help="cohort that gets the candidate (repeat; replaces the signed list)")
    ro.add_argument("--clear-cohorts", action="store_true", help="no cohort gets the candidate")
    ro.add_argument("--clear-candidate", action="store_true", help="end the rollout: stable only")
    ro.add_argument("--force", action="store_true",
                    help="sign even if the result names no stable bundle (units on it keep their models)")
    ro.add_argument("--device", action="append", default=[], help="show the bundle this unit gets")
    ro.add_argument("--show", action="store_true", help="only print the current rollout (the default "
                    "when no change is given)")
    ro.set_defaults(handler=_rollout)

    pub = sub.add_parser("publish", help="copy the repository to the served directory")
    _repo_args(pub)
    pub.add_argument("--out", type=Path, required=True, help="directory the HTTPS server serves")
    pub.add_argument("--refresh-timestamp", action="store_true", help="re-sign timestamp first")
    pub.set_defaults(handler=_publish)

    ann = sub.add_parser("announce", help="retained MQTT message so units check now")
    ann.add_argument("--uplink", type=Path, required=True, help="TOML with an [uplink] table")
    ann.add_argument("--tenant", required=True)
    ann.add_argument("--version", type=int, required=True)
    ann.add_argument("--url", default="", help="repository URL (informational)")
    ann.set_defaults(handler=_announce)

    st = sub.add_parser("status", help="what each unit runs (retained status topic)")
    st.add_argument("--uplink", type=Path, required=True, help="TOML with an [uplink] table")
    st.add_argument("--tenant", required=True)
    st.add_argument("--wait", type=float, default=2.0, help="seconds to collect retained statuses")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=_status)

    srv = sub.add_parser("serve", help="serve a published repository over HTTP with Range (development)")
    srv.add_argument("--dir", type=Path, required=True)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8080)
    srv.set_defaults(handler=_serve)


def _repo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", type=Path, required=True, help="repository working directory")
    p.add_argument("--keys", type=Path, required=True, help="private keys directory (keep offline)")


def _repo(args: argparse.Namespace) -> Any:
    from kycedge.fleet.repository import FleetRepository

    return FleetRepository(args.repo, args.keys)


def _guard(fn: Any) -> Any:
    """Convert unexpected library errors of repository work into one clear CLI error."""
    def wrapper(args: argparse.Namespace) -> int:
        try:
            rc: int = fn(args)
            return rc
        except KycEdgeError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise KycEdgeError(f"{type(e).__name__}: {e}", reason="fleet-error") from e
    return wrapper


@_guard
def _keys_init(args: argparse.Namespace) -> int:
    from kycedge.fleet.repository import RoleSpec

    specs = {r: RoleSpec(getattr(args, f"{r}_keys"), getattr(args, f"{r}_threshold"))
             for r in ("root", "targets", "snapshot", "timestamp")}
    path = _repo(args).init(specs)
    print(f"created {path} (provision units with this file as updates.trusted_root)")
    return 0


@_guard
def _keys_rotate(args: argparse.Namespace) -> int:
    repo = _repo(args)
    key = repo.rotate_key(args.role)
    print(f"{args.role}: now key {key.keyid[:12]} (root v{repo.root().signed.version}); "
          f"run publish to make units follow")
    return 0


@_guard
def _bundle_build(args: argparse.Namespace) -> int:
    from kycedge import __version__
    from kycedge.fleet.bundle_build import build_bundle

    m = build_bundle(args.models, args.out, version=args.version, golden=args.golden,
                     tolerance=args.tolerance, min_firmware=args.min_firmware or __version__)
    print(f"bundle {m.bundle_version}: {len(m.files)} files, {m.total_bytes} bytes, "
          f"{m.matching.model_id}@{m.matching.model_version} threshold {m.matching.threshold} "
          f"(FAR {m.matching.far}) -> {args.out}")
    return 0


@_guard
def _bundle_sign(args: argparse.Namespace) -> int:
    from kycedge.fleet.bundle_build import sign_bundle

    v = sign_bundle(_repo(args), args.bundle)
    print(f"signed {args.bundle} into targets v{v}; run rollout and publish")
    return 0


def _rollout_change(args: argparse.Namespace) -> Any:
    from kycedge.protocol.rollout import RolloutChange

    if args.cohort is not None and args.clear_cohorts:
        raise KycEdgeError("--cohort and --clear-cohorts: expected one of them, got both",
                           reason="bad-arguments")
    cohorts = () if args.clear_cohorts else (tuple(args.cohort) if args.cohort is not None else None)
    return RolloutChange(stable=args.stable, candidate=args.candidate, percent=args.percent,
                         cohorts=cohorts, clear_candidate=args.clear_candidate)


@_guard
def _rollout(args: argparse.Namespace) -> int:
    """Show (default) or change the signed rollout; a change keeps every field it does not name."""
    from kycedge.fleet.bundle_build import current_rollout, set_rollout
    from kycedge.protocol.rollout import apply_change, choose

    repo = _repo(args)
    change = _rollout_change(args)
    r = current_rollout(repo)
    if args.show and not change.empty:
        raise KycEdgeError("--show: only shows the rollout; expected no change options with it",
                           reason="bad-arguments")
    if not change.empty:
        new = apply_change(r, change)
        if new == r:
            print("rollout unchanged (nothing signed)")
        else:
            if new.stable is None and not args.force:
                raise KycEdgeError(
                    "rollout: expected a stable bundle (--stable N): without one, units outside "
                    "the candidate have nothing to run; nothing signed (--force signs it anyway)",
                    reason="no-stable-bundle")
            v = set_rollout(repo, new)
            print(f"rollout signed into targets v{v}; run publish")
            r = new
    print(r.to_json().decode())
    for d in args.device:
        print(f"{d}: bundle {choose(r, d)}")
    return 0


@_guard
def _publish(args: argparse.Namespace) -> int:
    repo = _repo(args)
    if args.refresh_timestamp:
        repo.refresh_timestamp()
    n = repo.publish(args.out)
    print(f"published {n} files to {args.out} (timestamp v{repo.timestamp().signed.version})")
    return 0


@dataclass(frozen=True)
class UplinkFile:
    """A TOML file with the fleet admin's ``[uplink]`` table."""

    uplink: UplinkConfig


def _transport(path: Path) -> Any:
    from kycedge.core.config import load_toml
    from kycedge.mqtt import connect

    cfg = load_toml(path, UplinkFile).uplink
    t = connect(cfg, client_id=cfg.client_id or "fleet-admin")
    t.start()
    if not t.wait_connected(cfg.connect_timeout_s):
        t.stop()
        raise KycEdgeError(f"broker {cfg.host}:{cfg.port}: expected a connection within "
                           f"{cfg.connect_timeout_s} s, got: {t.last_error or 'no answer'}",
                           reason="uplink-error")
    return t


def _announce(args: argparse.Namespace) -> int:
    from kycedge.fleet.announce import announce

    t = _transport(args.uplink)
    try:
        topic = announce(t, args.tenant, args.version, args.url)
    finally:
        t.stop()
    print(f"announced bundle {args.version} on {topic} (retained)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kycedge.fleet.announce import collect_status

    t = _transport(args.uplink)
    try:
        units = collect_status(t, args.tenant, args.wait)
    finally:
        t.stop()
    if args.json:
        print(json.dumps({d: {"online": u.online, "bundle_version": u.bundle_version, "model": u.model,
                              "outcome": u.outcome, "reason": u.reason, "message": u.message,
                              "delivery": u.delivery}
                          for d, u in units.items()}, indent=1))
        return 0
    print(f"{'device':24} {'online':6} {'delivery':13} {'bundle':6} {'model':32} last update")
    for d, u in units.items():
        print(f"{d:24} {'yes' if u.online else 'no':6} {u.delivery or '-':13} {u.bundle_version!s:6} "
              f"{u.model:32} {u.outcome} {u.reason}".rstrip())
        if u.message and u.outcome in ("failed", "rolled-back"):
            print(f"{'':24}   why: {u.message}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from kycedge.fleet.static_server import serve_in_thread

    server = serve_in_thread(args.dir, args.host, args.port)
    print(f"serving {args.dir} on http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
    return 0
