"""Safe cryptographic recipes for kycedge: the ONLY package that imports ``cryptography``.

Everything above this package (envelope, keys, carrier, uplink, updates) calls these
functions through the facade ``from kycedge import crypto`` and never sees a
``cryptography`` exception: failures surface as :class:`~kycedge.core.errors.KeyStoreError`
(key files, certificates) or :class:`~kycedge.core.errors.EnvelopeError` (verification,
decryption) with a stable ``reason``.

Submodules (one concern each; the recipes are in their docstrings):

- :mod:`~kycedge.crypto.keys`     key types, key ids, raw 32-byte encodings
- :mod:`~kycedge.crypto.sign`     signatures: Ed25519 (software keys), ES256 (TPM / HSM keys)
- :mod:`~kycedge.crypto.signer`   one Signer interface over the key backends (software, tpm, pkcs11)
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
    load_any_verify_key,
    load_kem_private_key,
    load_kem_public_key,
    load_secret_key,
    load_signing_key,
    load_tls_key,
    load_verify_key,
    read_key_file,
    save_private_key,
    save_public_key,
    save_secret_key,
    write_key_file,
    write_public_file,
)
from kycedge.crypto.keys import (
    AnyVerifyKey,
    EcSigningKey,
    EcVerifyKey,
    KemPrivateKey,
    KemPublicKey,
    PrivateKey,
    PublicKey,
    SigningKey,
    TlsPrivateKey,
    VerifyKey,
    ec_signing_key_from_bytes,
    ec_verify_key_from_bytes,
    kem_private_key_from_bytes,
    kem_public_key_from_bytes,
    key_id,
    private_key_bytes,
    public_key_bytes,
    signing_key_from_bytes,
    verify_key_from_bytes,
)
from kycedge.crypto.sign import (
    COSE_ALGORITHMS,
    KEY_PROTECTIONS,
    SIGNATURE_ALGORITHMS,
    KeyProtection,
    SignatureAlgorithm,
    algorithm_of,
    es256_from_der,
    es256_from_ints,
    generate_es256_key,
    generate_signing_key,
    sign,
    sign_es256,
    verify,
    verify_key_from_raw,
)
from kycedge.crypto.signer import Signer, SoftwareSigner, as_signer, software_signer
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
    load_certificates,
    make_ca,
    make_csr,
    save_certificate,
)

__all__ = [
    "COSE_ALGORITHMS",
    "HPKE_OVERHEAD",
    "HPKE_SUITES",
    "KEY_PROTECTIONS",
    "SIGNATURE_ALGORITHMS",
    "AnyVerifyKey",
    "AtRestKeyLength",
    "Certificate",
    "CertificateSigningRequest",
    "EcSigningKey",
    "EcVerifyKey",
    "EnvelopeError",
    "HpkeAead",
    "KemPrivateKey",
    "KemPublicKey",
    "KeyProtection",
    "KeyStoreError",
    "PrivateKey",
    "PublicKey",
    "SignatureAlgorithm",
    "Signer",
    "SigningKey",
    "SoftwareSigner",
    "TlsPrivateKey",
    "VerifyKey",
    "algorithm_of",
    "as_signer",
    "certificate_common_name",
    "certificate_from_pem",
    "certificate_to_pem",
    "csr_common_name",
    "csr_from_pem",
    "csr_to_pem",
    "decrypt_at_rest",
    "ec_signing_key_from_bytes",
    "ec_verify_key_from_bytes",
    "encrypt_at_rest",
    "es256_from_der",
    "es256_from_ints",
    "generate_at_rest_key",
    "generate_es256_key",
    "generate_kem_key",
    "generate_signing_key",
    "generate_tls_key",
    "hpke_open",
    "hpke_seal",
    "issue_certificate",
    "kem_private_key_from_bytes",
    "kem_public_key_from_bytes",
    "key_id",
    "load_any_verify_key",
    "load_certificate",
    "load_certificates",
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
    "read_key_file",
    "save_certificate",
    "save_private_key",
    "save_public_key",
    "save_secret_key",
    "sign",
    "sign_es256",
    "signing_key_from_bytes",
    "software_signer",
    "verify",
    "verify_key_from_bytes",
    "verify_key_from_raw",
    "write_key_file",
    "write_public_file",
]
