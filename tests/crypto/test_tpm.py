"""The device key inside a real swtpm: generated in the TPM, signs ES256 that verifies, and a
copied key blob (a cloned state directory) cannot sign without that TPM."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.core.errors import KeyStoreError
from support import swtpm

pytestmark = [pytest.mark.tpm]
WHY = swtpm.missing()


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[swtpm.Swtpm]:
    if WHY:
        pytest.skip(WHY)
    state, ca = swtpm.manufacture(tmp_path / "tpm-a")
    with swtpm.running(state, ca) as t:
        yield t


def test_tpm_key_signs_es256_that_verifies(tpm: swtpm.Swtpm) -> None:
    from kycedge.crypto.tpm import TpmSigner, create_key

    blob = create_key(tpm.tcti)
    signer = TpmSigner.open(tpm.tcti, blob)
    try:
        assert isinstance(signer, crypto.Signer)
        assert (signer.algorithm, signer.protection) == ("es256", "tpm")
        sig = signer.sign(b"envelope bytes")
        assert len(sig) == 64
        crypto.verify(signer.public_key(), sig, b"envelope bytes")
        with pytest.raises(crypto.EnvelopeError):
            crypto.verify(signer.public_key(), sig, b"other bytes")
    finally:
        signer.close()
    again = TpmSigner.open(tpm.tcti, blob)  # the blob reloads into the same TPM (reboot)
    try:
        assert crypto.key_id(again.public_key()) == crypto.key_id(signer.public_key())
    finally:
        again.close()


def test_the_blob_holds_no_usable_private_key(tpm: swtpm.Swtpm) -> None:
    from cryptography.hazmat.primitives import serialization
    from kycedge.crypto.tpm import create_key

    blob = create_key(tpm.tcti)
    for loader in (serialization.load_pem_private_key, serialization.load_der_private_key):
        with pytest.raises((ValueError, TypeError)):
            loader(blob, password=None)


def test_copied_state_without_the_tpm_cannot_sign(tpm: swtpm.Swtpm, tmp_path: Path) -> None:
    """A clone: the unit's key blob copied to another unit (another TPM) does not load."""
    from kycedge.crypto.tpm import TpmSigner, create_key

    blob = create_key(tpm.tcti)
    copied = tmp_path / "clone" / "device-tpm.key"
    copied.parent.mkdir()
    copied.write_bytes(blob)
    state_b, ca_b = swtpm.manufacture(tmp_path / "tpm-b")
    with swtpm.running(state_b, ca_b) as other:
        with pytest.raises(KeyStoreError) as ei:
            TpmSigner.open(other.tcti, copied.read_bytes())
        assert ei.value.reason == "tpm-error"
    shutil.rmtree(tmp_path / "tpm-b")
    with pytest.raises(KeyStoreError):  # and with no TPM at all
        TpmSigner.open("swtpm:host=127.0.0.1,port=1", blob)
