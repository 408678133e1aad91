"""Safe cryptographic recipes for kycedge: the ONLY package that imports ``cryptography``.

Everything above this package (envelope, keys, carrier, uplink, updates) calls these
functions through the facade ``from kycedge import crypto`` and never sees a
``cryptography`` exception: failures surface as :class:`~kycedge.core.errors.KeyStoreError`
(key files, certificates) or :class:`~kycedge.core.errors.EnvelopeError` (verification,
decryption) with a stable ``reason``.

Submodules (one concern each; the recipes are in their docstrings):

- :mod:`~kycedge.crypto.keys`     key types, key ids, raw 32-byte encodings
- :mod:`~kycedge.crypto.sign`     signatures (Ed25519)
- :mod:`~kycedge.crypto.hpke`     encryption to the carrier (HPKE, RFC 9180)
- :mod:`~kycedge.crypto.at_rest`  at-rest AEAD (ChaCha20-Poly1305)
- :mod:`~kycedge.crypto.keyfiles` PEM / secret key files, written atomically, 0600 checks
- :mod:`~kycedge.crypto.x509`     the CA, CSRs, certificate issuance (fleet, lab, tests)
- ``_vectors`` (private)          deterministic HPKE for test vectors: tools and tests only
"""

from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.crypto.at_rest import AtRestKeyLength, decrypt_at_rest, encrypt_at_rest, generate_at_rest_key
from kycedge.crypto.hpke import HPKE_OVERHEAD, HPKE_SUITES, HpkeAead, generate_kem_key, hpke_open, hpke_seal
from kycedge.crypto.keyfiles import (
    load_kem_private_key,
    load_kem_public_key,
    load_secret_key,
    load_signing_key,
    load_tls_key,
    load_verify_key,
    save_private_key,
    save_public_key,
    save_secret_key,
    write_public_file,
)
from kycedge.crypto.keys import (
    KemPrivateKey,
    KemPublicKey,
    PrivateKey,
    PublicKey,
    SigningKey,
    TlsPrivateKey,
    VerifyKey,
    kem_private_key_from_bytes,
    kem_public_key_from_bytes,
    key_id,
    private_key_bytes,
    public_key_bytes,
    signing_key_from_bytes,
    verify_key_from_bytes,
)
from kycedge.crypto.sign import generate_signing_key, sign, verify
from kycedge.crypto.x509 import (
    Certificate,
    CertificateSigningRequest,
    certificate_common_name,
    certificate_from_pem,
    certificate_to_pem,
    csr_common_name,
    csr_from_pem,
    csr_to_pem,
    generate_tls_key,
    issue_certificate,
    load_certificate,
    make_ca,
    make_csr,
    save_certificate,
)

__all__ = [
    "HPKE_OVERHEAD",
    "HPKE_SUITES",
    "AtRestKeyLength",
    "Certificate",
    "CertificateSigningRequest",
    "EnvelopeError",
    "HpkeAead",
    "KemPrivateKey",
    "KemPublicKey",
    "KeyStoreError",
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "TlsPrivateKey",
    "VerifyKey",
    "certificate_common_name",
    "certificate_from_pem",
    "certificate_to_pem",
    "csr_common_name",
    "csr_from_pem",
    "csr_to_pem",
    "decrypt_at_rest",
    "encrypt_at_rest",
    "generate_at_rest_key",
    "generate_kem_key",
    "generate_signing_key",
    "generate_tls_key",
    "hpke_open",
    "hpke_seal",
    "issue_certificate",
    "kem_private_key_from_bytes",
    "kem_public_key_from_bytes",
    "key_id",
    "load_certificate",
    "load_kem_private_key",
    "load_kem_public_key",
    "load_secret_key",
    "load_signing_key",
    "load_tls_key",
    "load_verify_key",
    "make_ca",
    "make_csr",
    "private_key_bytes",
    "public_key_bytes",
    "save_certificate",
    "save_private_key",
    "save_public_key",
    "save_secret_key",
    "sign",
    "signing_key_from_bytes",
    "verify",
    "verify_key_from_bytes",
    "write_public_file",
]
