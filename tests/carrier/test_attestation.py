"""Enrolment of a TPM-held unit key against real swtpms, through both CLIs:
`kycedge keys attest` -> `kycedge-carrier device challenge` -> `kycedge keys activate` ->
`kycedge-carrier device enroll --attestation --proof`; then the unit's envelopes are
accepted as tpm, and every way to cheat is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge.carrier.cli import load_config
from kycedge.carrier.cli import main as carrier
from kycedge.carrier.receiver import Receiver
from kycedge.protocol import attestation as msg
from kycedge.protocol.envelope import CarrierKey
from kycedge.unit import identity as keys
from kycedge.unit.cli import main as unit
from support import swtpm

from .helpers import TENANT, Clock, Unit

pytestmark = [pytest.mark.tpm]
WHY = swtpm.missing()
DEVICE = "dev-tpm-1"


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[swtpm.Swtpm]:
    if WHY:
        pytest.skip(WHY)
    with swtpm.fixture_tpm(tmp_path / "tpm-a") as t:
        yield t


def _carrier_config(tmp_path: Path, ca_dir: Path) -> Path:
    cfg = tmp_path / "carrier.toml"
    cas = [str(ca_dir / "issuercert.pem"), str(ca_dir / "swtpm-localca-rootca-cert.pem")]
    cfg.write_text(f'[carrier]\nstate_dir = "{tmp_path / "carrier"}"\n'
                   f'tpm_ca_certificates = {json.dumps(cas)}\nrequire_hardware_key = ["{TENANT}"]\n')
    assert carrier(["keys", "init", "--config", str(cfg)]) == 0
    return cfg


def _attest(tmp_path: Path, t: swtpm.Swtpm, state: Path, device: str = DEVICE) -> Path:
    req = tmp_path / f"{device}.att"
    assert unit(["keys", "attest", "--tenant", TENANT, "--device", device, "--tpm", t.tcti,
                 "--state-dir", str(state), "--out", str(req)]) == 0
    return req


def test_attested_enrolment_end_to_end(tpm: swtpm.Swtpm, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _carrier_config(tmp_path, tpm.ca_dir)
    state = tmp_path / "unit"
    assert unit(["keys", "init", "--state-dir", str(state), "--tpm", tpm.tcti]) == 0
    req = _attest(tmp_path, tpm, state)
    ch, proof = tmp_path / "ch", tmp_path / "proof"
    assert carrier(["device", "challenge", str(req), "--out", str(ch), "--config", str(cfg)]) == 0
    assert unit(["keys", "activate", str(ch), "--tpm", tpm.tcti, "--out", str(proof)]) == 0
    capsys.readouterr()
    assert carrier(["device", "enroll", TENANT, DEVICE, "--attestation", str(req), "--proof", str(proof),
                    "--config", str(cfg)]) == 0
    assert "key protection tpm (attested)" in capsys.readouterr().out
    assert carrier(["device", "list", "--config", str(cfg)]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["signature_alg"], row["key_protection"], row["attested"]) == ("es256", "tpm", True)

    # the policy tenant refuses a software key
    software = tmp_path / "soft"
    assert unit(["keys", "init", "--state-dir", str(software)]) == 0
    pub = keys.load_identity(software).public_key.hex()
    capsys.readouterr()
    assert carrier(["device", "enroll", TENANT, "dev-soft", pub, "--config", str(cfg)]) == 2
    assert "software-key-refused" in capsys.readouterr().err

    # the unit's envelopes are accepted, as tpm
    config = load_config(cfg)
    receiver = Receiver.from_config(config, clock=Clock())
    ident = keys.load_identity(state, tpm_tcti=tpm.tcti)
    try:
        kid = receiver.keys.newest_hpke_key_id
        u = Unit(DEVICE, ident.signer, CarrierKey.from_public_key(receiver.keys.hpke[kid].public_key()))
        out = receiver.handle(u.seal())
        assert out.status == "accepted", out
    finally:
        ident.close()
        receiver.close()


def test_cheating_is_refused(tpm: swtpm.Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _carrier_config(tmp_path, tpm.ca_dir)

    def challenge(request: Path) -> int:
        out = str(tmp_path / "x")
        return carrier(["device", "challenge", str(request), "--out", out, "--config", str(cfg)])

    state = tmp_path / "unit"
    keys.init_identity(state, tpm_tcti=tpm.tcti)[0].close()
    req = _attest(tmp_path, tpm, state)
    data = req.read_bytes()

    # 1. the request relabelled for another device: the AK's certification covers the device id
    m = msg.decode_request(data)
    forged = tmp_path / "forged.att"
    forged.write_bytes(msg.encode_request(msg.AttestationMessage(
        m.tenant, "dev-other", m.ek_certificate, m.ek_public, m.ak_public, m.key_public, m.certify_info,
        m.certify_signature)))
    capsys.readouterr()
    assert challenge(forged) == 2
    assert "qualifying data" in capsys.readouterr().err

    # 2. a software key presented as the certified key: the certified name differs
    from kycedge import crypto

    soft = crypto.generate_es256_key()
    swapped = tmp_path / "swapped.att"
    bad_pub = m.key_public[:-64] + crypto.public_key_bytes(soft.public_key())[1:]
    swapped.write_bytes(msg.encode_request(msg.AttestationMessage(
        m.tenant, m.device_id, m.ek_certificate, m.ek_public, m.ak_public, bad_pub, m.certify_info,
        m.certify_signature)))
    assert challenge(swapped) == 2
    assert "bad-attestation" in capsys.readouterr().err

    # 3. another TPM, manufactured by a CA the carrier does not trust
    with swtpm.fixture_tpm(tmp_path / "tpm-b") as other:
        state_b = tmp_path / "unit-b"
        keys.init_identity(state_b, tpm_tcti=other.tcti)[0].close()
        req_b = _attest(tmp_path, other, state_b, device="dev-b")
        capsys.readouterr()
        assert challenge(req_b) == 2
        assert "no trusted TPM CA certificate" in capsys.readouterr().err

        # 4. a challenge answered by another TPM (the AK is not in the EK's TPM)
        ch = tmp_path / "ch"
        assert carrier(["device", "challenge", str(req), "--out", str(ch), "--config", str(cfg)]) == 0
        capsys.readouterr()
        assert unit(["keys", "activate", str(ch), "--tpm", other.tcti, "--out", str(tmp_path / "p")]) == 2
        assert "tpm-error" in capsys.readouterr().err

    # 5. a made-up proof, and an attestation enrolled under another device id
    (tmp_path / "guess").write_bytes(bytes(32))
    assert carrier(["device", "enroll", TENANT, DEVICE, "--attestation", str(req), "--proof",
                    str(tmp_path / "guess"), "--config", str(cfg)]) == 2
    assert "proof does not match" in capsys.readouterr().err
    assert unit(["keys", "activate", str(ch), "--tpm", tpm.tcti, "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    assert carrier(["device", "enroll", TENANT, "dev-else", "--attestation", str(req), "--proof",
                    str(tmp_path / "p"), "--config", str(cfg)]) == 2
    assert "attestation names" in capsys.readouterr().err
    assert carrier(["device", "list", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == ""  # nothing was enrolled


def _enrol_attested(tmp_path: Path, t: swtpm.Swtpm, cfg: Path, state: Path) -> None:
    req = _attest(tmp_path, t, state)
    ch, proof = tmp_path / "ch", tmp_path / "proof"
    assert carrier(["device", "challenge", str(req), "--out", str(ch), "--config", str(cfg)]) == 0
    assert unit(["keys", "activate", str(ch), "--tpm", t.tcti, "--out", str(proof)]) == 0
    assert carrier(["device", "enroll", TENANT, DEVICE, "--attestation", str(req), "--proof", str(proof),
                    "--config", str(cfg)]) == 0


def test_tpm_key_rotation_by_signed_handover(tpm: swtpm.Swtpm, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _carrier_config(tmp_path, tpm.ca_dir)
    state = tmp_path / "unit"
    keys.init_identity(state, tpm_tcti=tpm.tcti)[0].close()
    _enrol_attested(tmp_path, tpm, cfg, state)
    old = keys.load_identity(state, tpm_tcti=tpm.tcti)
    old.close()
    handover = tmp_path / "handover"
    assert unit(["keys", "rotate", "--tenant", TENANT, "--device", DEVICE, "--tpm", tpm.tcti,
                 "--state-dir", str(state), "--out", str(handover)]) == 0
    data = handover.read_bytes()

    # tampering with the hand-over breaks the old key's signature
    bad = tmp_path / "bad"
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    capsys.readouterr()
    assert carrier(["device", "rotate", str(bad), "--config", str(cfg)]) == 2
    assert "bad-handover" in capsys.readouterr().err

    assert carrier(["device", "rotate", str(handover), "--config", str(cfg)]) == 0
    assert "key protection tpm (hand-over)" in capsys.readouterr().out
    assert carrier(["device", "rotate", str(handover), "--config", str(cfg)]) == 2  # replayed: refused
    capsys.readouterr()
    assert unit(["keys", "rotate", "--commit", "--tpm", tpm.tcti, "--state-dir", str(state)]) == 0
    new = keys.load_identity(state, tpm_tcti=tpm.tcti)
    try:
        assert new.key_id != old.key_id
        assert new.key_protection == "tpm"
        assert "status: switched" in capsys.readouterr().out
        assert carrier(["device", "list", "--config", str(cfg)]) == 0
        rows = {r["key_id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
        assert set(rows) == {old.key_id, new.key_id}  # the old key stays until revoked (its outbox)
        assert (rows[new.key_id]["key_protection"], rows[new.key_id]["attested"]) == ("tpm", True)
        receiver = Receiver.from_config(load_config(cfg), clock=Clock())
        try:
            kid = receiver.keys.newest_hpke_key_id
            u = Unit(DEVICE, new.signer, CarrierKey.from_public_key(receiver.keys.hpke[kid].public_key()))
            assert receiver.handle(u.seal()).status == "accepted"
        finally:
            receiver.close()
    finally:
        new.close()


def test_handover_certified_by_another_tpm_is_refused(tpm: swtpm.Swtpm, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A clone that stole the old key's signature power cannot move the unit to a key in ITS TPM:
    the AK recorded at enrolment does not certify it."""
    from kycedge.crypto import attest
    from kycedge.crypto.tpm import create_key
    from kycedge.protocol.envelope.cose import sign1

    cfg = _carrier_config(tmp_path, tpm.ca_dir)
    state = tmp_path / "unit"
    keys.init_identity(state, tpm_tcti=tpm.tcti)[0].close()
    _enrol_attested(tmp_path, tpm, cfg, state)
    old = keys.load_identity(state, tpm_tcti=tpm.tcti)
    try:
        with swtpm.fixture_tpm(tmp_path / "tpm-b") as other:
            blob = create_key(other.tcti)
            info, sig = attest.certify_blob(other.tcti, blob, msg.qualifying_data(TENANT, DEVICE, "rotate"))
        import time

        m = msg.HandoverMessage(TENANT, DEVICE, old.key_id, attest.key_area(blob), "es256", "tpm", info, sig,
                                int(time.time() * 1000))
        forged = tmp_path / "forged"
        forged.write_bytes(sign1(old.signer, msg.encode_handover(m), msg.CT_HANDOVER))
        capsys.readouterr()
        assert carrier(["device", "rotate", str(forged), "--config", str(cfg)]) == 2
        assert "the enrolled AK does not certify the next key" in capsys.readouterr().err
    finally:
        old.close()
