"""Signing keys inside a real SoftHSM2 token through python-pkcs11."""

from __future__ import annotations

import pytest
from kycedge import crypto
from kycedge.core.errors import KeyStoreError
from support import softhsm

pytestmark = [pytest.mark.hsm]
WHY = softhsm.missing()


@pytest.fixture
def token(request: pytest.FixtureRequest) -> object:
    if WHY:
        pytest.skip(WHY)
    from kycedge.crypto.pkcs11 import Token

    return Token(softhsm.MODULE, softhsm.token_label(), softhsm.USER_PIN)


@pytest.fixture
def label(request: pytest.FixtureRequest) -> str:
    import hashlib

    return "k-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


@pytest.mark.parametrize("algorithm", ["ed25519", "es256"])
def test_key_generated_in_token_signs_and_never_leaves(token: object, label: str, algorithm: str) -> None:
    from kycedge.crypto.pkcs11 import Pkcs11Signer, Token, generate_key

    assert isinstance(token, Token)
    pub = generate_key(token, label, algorithm=algorithm)  # type: ignore[arg-type]
    signer = Pkcs11Signer.open(token, label)
    try:
        assert isinstance(signer, crypto.Signer)
        assert (signer.algorithm, signer.protection) == (algorithm, "pkcs11")
        assert crypto.key_id(signer.public_key()) == crypto.key_id(pub)
        sig = signer.sign(b"receipt payload")
        crypto.verify(signer.public_key(), sig, b"receipt payload")
        with pytest.raises(crypto.EnvelopeError):
            crypto.verify(signer.public_key(), sig, b"another payload")
        import pkcs11

        with token.open() as session:  # the private value cannot be read out
            priv = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
            with pytest.raises(pkcs11.exceptions.PKCS11Error):
                priv[pkcs11.Attribute.VALUE]
    finally:
        signer.close()
    with pytest.raises(KeyStoreError):  # never overwritten
        generate_key(token, label)


def test_wrong_pin_and_missing_key(token: object, label: str) -> None:
    from kycedge.crypto.pkcs11 import Pkcs11Signer, Token

    assert isinstance(token, Token)
    with pytest.raises(KeyStoreError) as ei:
        Pkcs11Signer.open(Token(token.module, token.label, "wrong"), label)
    assert ei.value.reason == "hsm-error"
    with pytest.raises(KeyStoreError):
        Pkcs11Signer.open(token, "no-such-key")


def test_token_offers_no_x25519(token: object) -> None:
    """Measured: SoftHSM2 2.6 cannot hold the carrier's X25519 HPKE key (no Montgomery key
    generation; ECDH1_DERIVE is for Weierstrass curves), so the HPKE key stays a 0600 file.
    If this fails, the token gained X25519: move the HPKE key into it (docs/tpm.md)."""
    from kycedge.crypto.pkcs11 import Token, mechanisms

    assert isinstance(token, Token)
    have = mechanisms(token)
    assert {"EDDSA", "EC_EDWARDS_KEY_PAIR_GEN", "ECDSA", "ECDH1_DERIVE"} <= have
    assert "EC_MONTGOMERY_KEY_PAIR_GEN" not in have
