"""``kycedge-carrier`` commands, run in-process through the shared dispatcher."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from kycedge import crypto
from kycedge.carrier.cli import load_config, main
from kycedge.carrier.keyring import CarrierKeys
from kycedge.protocol.envelope import CarrierKey, verify_receipt

from .helpers import NOW_MS, TENANT, Unit


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_keys_device_ingest_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = ["--state-dir", str(tmp_path / "st")]
    code, out, _ = run(capsys, "keys", "init", *st)
    assert code == 0
    assert "hpke " in out
    assert "receipt " in out
    for f in (tmp_path / "st" / "keys").iterdir():
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o644 if f.suffix == ".pub" else 0o600), f
    device_key = crypto.generate_signing_key()
    pub = crypto.public_key_bytes(device_key.public_key()).hex()
    code, out, _ = run(capsys, "device", "enroll", TENANT, "unit-0001", pub, *st)
    assert code == 0
    assert crypto.key_id(device_key.public_key()) in out
    code, _, err = run(capsys, "device", "enroll", TENANT, "unit-0001", pub, *st)
    assert code == 2
    assert "already-enrolled" in err
    code, _, err = run(capsys, "device", "enroll", TENANT, "unit-0002", "nothex", *st)
    assert code == 2
    assert "expected 64 or 130 hex characters or a PEM file" in err

    keys = CarrierKeys.load(load_config(state_dir=tmp_path / "st"))
    kid = keys.newest_hpke_key_id
    unit = Unit("unit-0001", device_key, CarrierKey.from_public_key(keys.hpke[kid].public_key()))
    env = tmp_path / "env.bin"
    import time

    env.write_bytes(unit.seal(captured_at_ms=int(time.time() * 1000)))
    code, out, _ = run(capsys, "ingest", str(env), "--receipt-out", str(tmp_path / "r.bin"), *st)
    assert code == 0
    res = json.loads(out)
    assert res["reason"] == "no-reference"
    assert res["receipt_topic"] == f"kyc/v1/{TENANT}/unit-0001/receipts"
    r = verify_receipt((tmp_path / "r.bin").read_bytes(), {keys.receipt_key_id: keys.receipt_public_key},
                       expected_device_id="unit-0001")
    assert r.reason == "no-reference"
    code, out, _ = run(capsys, "ingest", str(env), *st)  # a second delivery: same receipt
    assert json.loads(out)["receipt"] == res["receipt"]
    assert json.loads(out)["duplicate"] is True

    code, out, _ = run(capsys, "device", "list", *st)
    row = json.loads(out.splitlines()[0])
    assert (row["status"], row["last_sequence"]) == ("active", 1)
    code, out, _ = run(capsys, "device", "revoke", TENANT, "unit-0001", *st)
    assert code == 0
    code, out, _ = run(capsys, "db", "status", *st)
    assert "receipts 1" in out
    assert "templates 1" in out
    code, out, _ = run(capsys, "purge", *st)
    assert out.strip() == "purged templates=0 receipts=0 sequences=0"


def test_config_file_carrier_table(tmp_path: Path) -> None:
    cfg = tmp_path / "carrier.toml"
    cfg.write_text(f'[carrier]\nstate_dir = "{tmp_path}/x"\nreplay_window_s = 3600\n[mqtt]\nhost = "b"\n')
    c = load_config(cfg)
    assert c.state_dir == tmp_path / "x"
    assert c.replay_window_s == 3600
    cfg.write_text("[carrier]\nreplay_window_s = 99999999\n")
    from kycedge.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"carrier.replay_window_s: expected an integer in"):
        load_config(cfg)
    cfg.write_text("[carrier]\nreceipt_retention_s = 3600\n")
    with pytest.raises(ConfigError, match="receipt_retention_s: expected >="):
        load_config(cfg)


def _pipeline_or_skip() -> object:
    """The vision pipeline from the repository's models/, or skip (models not installed)."""
    from kycedge.core.errors import ModelError
    from kycedge.vision import Pipeline, default_models_dir

    d = default_models_dir()
    if not (d / "manifest.json").exists():
        pytest.skip(f"no models in {d}")
    try:
        return Pipeline.load(d)
    except ModelError as e:
        pytest.skip(f"models in {d} not loadable here: {e.message}")


@pytest.mark.slow
def test_reference_add_and_match_through_the_pipeline(
    tmp_path: Path, faces_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reference from one photo, probe from another of the same person: the carrier matches."""
    from kycedge.carrier.receiver import Receiver

    pipe: Any = _pipeline_or_skip()
    st = ["--state-dir", str(tmp_path / "st")]
    run(capsys, "keys", "init", *st)
    ref = "rObamaIdDocumentPhoto"
    photo = str(faces_dir / "obama.jpg")
    code, out, err = run(capsys, "reference", "add", ref, photo, "--tenant", TENANT, *st)
    assert code == 0, err
    assert f"model {pipe.model_id} {pipe.model_version}" in out
    cfg = load_config(state_dir=tmp_path / "st")
    rx = Receiver.from_config(cfg, clock=lambda: NOW_MS / 1000)
    try:
        key = crypto.generate_signing_key()
        rx.registry.enroll(TENANT, "unit-0001", crypto.public_key_bytes(key.public_key()))
        kid = rx.keys.newest_hpke_key_id
        unit = Unit("unit-0001", key, CarrierKey.from_public_key(rx.keys.hpke[kid].public_key()))
        outs = {}
        for name in ("obama2.jpg", "biden.jpg"):
            res = pipe.process_image_bytes((faces_dir / name).read_bytes())
            assert res.ok, res.reason
            outs[name] = rx.handle(unit.seal(res.template, reference=ref,
                                             model=(pipe.model_id, pipe.model_version)))
        assert outs["obama2.jpg"].reason == "match"
        assert outs["biden.jpg"].reason == "no-match"
    finally:
        rx.close()



def test_reference_add_refuses_special_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`reference add ... /dev/zero` is refused before reading (it used to read until memory
    ran out); run in a child under a 3 GiB address-space limit so a regression fails, not OOMs."""
    import subprocess
    import sys
    import textwrap

    _pipeline_or_skip()
    st = ["--state-dir", str(tmp_path / "st")]
    run(capsys, "keys", "init", *st)
    argv = ["reference", "add", "rZeroesIdDocumentPhoto", "/dev/zero", "--tenant", TENANT, *st]
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({3 * 2**30}, {3 * 2**30}))
        from kycedge.carrier.cli import main
        sys.exit(main({argv!r}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "not-a-file: /dev/zero: expected a regular image file" in out.stderr


@pytest.mark.slow
def test_reference_add_decode_memory_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The review's 6300x6300 16-bit RGBA PNG (400 kB) through `reference add`: refused,
    and the child's peak RSS over its baseline stays far below what decoding it took (1 GB)."""
    import struct
    import subprocess
    import sys
    import textwrap
    import zlib

    _pipeline_or_skip()
    st = ["--state-dir", str(tmp_path / "st")]
    run(capsys, "keys", "init", *st)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    comp = zlib.compressobj(9)
    row = bytes(1 + 6300 * 8)
    idat = b"".join(comp.compress(row) for _ in range(6300)) + comp.flush()
    png = tmp_path / "id-photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 6300, 6300, 16, 6, 0, 0, 0))
                    + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    argv = ["reference", "add", "rBigPngIdDocumentPhoto", str(png), "--tenant", TENANT, *st]
    code = textwrap.dedent(f"""
        import sys
        def hwm_mb():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        from kycedge.carrier.cli import main
        from kycedge.vision import Pipeline, default_models_dir
        Pipeline.load(default_models_dir())           # the models' memory counts in the baseline
        base = hwm_mb()
        rc = main({argv!r})
        print(f"{{base}} {{hwm_mb()}}")
        sys.exit(rc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "image-too-large" in out.stderr
    base, peak = map(float, out.stdout.split())
    assert peak - base < 150, (base, peak)
