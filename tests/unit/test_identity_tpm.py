"""The unit's identity on a real swtpm: `kycedge keys init --tpm`, sealing with the TPM key,
the receiver accepting it, and a copied state directory that cannot sign."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.core.errors import KeyStoreError
from kycedge.protocol.envelope import CarrierKey, Liveness, Payload, Template, open_envelope, seal
from kycedge.unit import identity as keys
from kycedge.unit.cli import main
from support import swtpm

pytestmark = [pytest.mark.tpm]
WHY = swtpm.missing()


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[swtpm.Swtpm]:
    if WHY:
        pytest.skip(WHY)
    with swtpm.fixture_tpm(tmp_path / "tpm-a") as t:
        yield t


def _payload() -> Payload:
    import numpy as np

    v = np.ones(128, dtype=np.float32) / np.sqrt(128)
    return Payload(template=Template.from_array(v, model_id="m", model_version="1"),
                   captured_at_ms=1_764_000_000_000, liveness=Liveness(True, "blink", 0.9),
                   reference="rTpmReference_0123abcd")


def test_keys_init_tpm_then_seal_and_open(tpm: swtpm.Swtpm, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    assert main(["keys", "init", "--state-dir", str(state), "--tpm", tpm.tcti]) == 0
    out = capsys.readouterr().out
    for line in ("algorithm: es256", "key_protection: tpm", "status: created"):
        assert line in out
    assert not (state / keys.SIGNING_KEY_FILE).exists()  # no software key was made
    ident = keys.load_identity(state, tpm_tcti=tpm.tcti)
    try:
        assert f"key_id: {ident.key_id}" in out
        assert crypto.key_id(crypto.load_any_verify_key(state / keys.TPM_PUBLIC_FILE)) == ident.key_id
        kem = crypto.generate_kem_key()
        sealed = seal(_payload(), tenant="acme", device_id="dev-tpm", sequence=1, signing_key=ident.signer,
                      carrier_key=CarrierKey.from_public_key(kem.public_key()))
        assert (sealed.header.signature_alg, sealed.header.key_protection) == ("es256", "tpm")
        opened = open_envelope(sealed.data, device_public_key=ident.signer.public_key(),
                               carrier_private_keys={crypto.key_id(kem.public_key()): kem})
        assert opened.header.key_protection == "tpm"
    finally:
        ident.close()
    assert main(["keys", "init", "--state-dir", str(state), "--tpm", tpm.tcti]) == 0
    assert "status: existing" in capsys.readouterr().out


def test_copied_state_directory_cannot_sign(tpm: swtpm.Swtpm, tmp_path: Path) -> None:
    state = tmp_path / "state"
    ident, _ = keys.init_identity(state, tpm_tcti=tpm.tcti)
    ident.close()
    clone = tmp_path / "clone"
    shutil.copytree(state, clone)
    with pytest.raises(KeyStoreError) as ei:  # the clone has no TPM configured: no software fallback
        keys.load_identity(clone)
    assert ei.value.reason == "missing-key"
    with swtpm.fixture_tpm(tmp_path / "tpm-b") as other:  # the clone on another unit, with its own TPM
        with pytest.raises(KeyStoreError) as ei:
            keys.load_identity(clone, tpm_tcti=other.tcti)
        assert ei.value.reason == "tpm-error"
    again = keys.load_identity(state, tpm_tcti=tpm.tcti)  # the original still signs
    again.close()


def test_software_unit_is_marked_and_not_silently_used_as_tpm(tmp_path: Path) -> None:
    ident, _ = keys.init_identity(tmp_path / "s")
    assert (ident.algorithm, ident.key_protection) == ("ed25519", "software")
    with pytest.raises(KeyStoreError) as ei:
        keys.load_identity(tmp_path / "s", tpm_tcti="swtpm:host=127.0.0.1,port=1")
    assert ei.value.reason == "key-protection-mismatch"
