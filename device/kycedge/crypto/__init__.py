"""Safe cryptographic recipes for kycedge: the ONLY module that imports ``cryptography``.

Everything above this module (envelope, keys, carrier, uplink, updates) calls these
functions and never sees a ``cryptography`` exception: failures surface as
:class:`~kycedge.core.errors.KeyStoreError` (key files, certificates) or
:class:`~kycedge.core.errors.EnvelopeError` (verification, decryption) with a stable ``reason``.

Recipes
-------
Signatures (device identity, receipts)::

    sk = generate_signing_key()                 # Ed25519
    sig = sign(sk, b"msg")                      # 64 bytes, deterministic
    verify(sk.public_key(), sig, b"msg")        # raises EnvelopeError(reason="bad-signature")
    kid = key_id(sk.public_key())               # 32 lowercase hex chars

Encryption to the carrier (HPKE base mode, RFC 9180, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305 -- see docs/decisions/0003-wire-format.md)::

    kem = generate_kem_key()                    # X25519, the carrier keeps it
    ct = hpke_seal(kem.public_key(), b"pt", info=b"context")   # enc(32) || ciphertext || tag(16)
    pt = hpke_open(kem, ct, info=b"context")    # raises EnvelopeError(reason="undecryptable")

At-rest encryption (carrier store, 32-byte key from a 0600 file)::

    key = generate_at_rest_key(); save_secret_key(path, key); key = load_secret_key(path)
    blob = encrypt_at_rest(key, b"pt", aad=b"row-id")
    pt = decrypt_at_rest(key, blob, aad=b"row-id")

Key files: ``save_private_key`` writes PKCS#8 PEM, mode 0600, via temp file + fsync +
``os.replace``; ``load_signing_key`` / ``load_kem_private_key`` / ``load_tls_key`` refuse
files readable by group or others. Public keys: ``save_public_key`` /
``load_verify_key`` / ``load_kem_public_key`` (SubjectPublicKeyInfo PEM), raw 32-byte
forms via ``public_key_bytes`` / ``verify_key_from_bytes`` / ``kem_public_key_from_bytes``.

X.509 for the broker's mutual TLS (EC P-256 keys: every OpenSSL/Mosquitto/paho build
handles them; the Ed25519 identity key is never reused for TLS)::

    ca_key, ca_cert = make_ca("kycedge test CA")                     # self-signed, 10 years
    broker_key = generate_tls_key()
    broker_csr = make_csr(broker_key, "localhost")
    broker_cert = issue_certificate(ca_key, ca_cert, broker_csr, days=30, server=True,
                                    dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    dev_key = generate_tls_key()
    dev_cert = issue_certificate(ca_key, ca_cert, make_csr(dev_key, "dev-0001"), days=365)
    save_private_key(dir / "broker.key", broker_key)
    save_certificate(dir / "broker.crt", broker_cert)     # also certificate_to_pem(cert)
    save_certificate(dir / "ca.crt", ca_cert)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import stat
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.core.fsutil import atomic_write

__all__ = [
    "HPKE_SUITES",
    "AtRestKeyLength",
    "Certificate",
    "CertificateSigningRequest",
    "KemPrivateKey",
    "KemPublicKey",
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

# Public aliases so callers can type their code without importing `cryptography`.
SigningKey = Ed25519PrivateKey
VerifyKey = Ed25519PublicKey
KemPrivateKey = X25519PrivateKey
KemPublicKey = X25519PublicKey
TlsPrivateKey = ec.EllipticCurvePrivateKey
Certificate = x509.Certificate
CertificateSigningRequest = x509.CertificateSigningRequest
PrivateKey = Ed25519PrivateKey | X25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | X25519PublicKey | ec.EllipticCurvePublicKey

AtRestKeyLength = 32
_AT_REST_VERSION = b"\x01"
_NONCE = 12
_MAX_KEY_FILE = 64 * 1024

# --------------------------------------------------------------------------- key ids


def key_id(public_key: VerifyKey | KemPublicKey) -> str:
    """First 16 bytes of SHA-256 over the raw 32-byte public key, as 32 lowercase hex chars."""
    return hashlib.sha256(public_key_bytes(public_key)).digest()[:16].hex()


def public_key_bytes(public_key: VerifyKey | KemPublicKey) -> bytes:
    """The raw 32-byte encoding of an Ed25519 or X25519 public key (RFC 8032 / RFC 7748)."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_bytes(private_key: SigningKey | KemPrivateKey) -> bytes:
    """The raw 32-byte private key (for test vectors only; files use PEM)."""
    return private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def verify_key_from_bytes(raw: bytes) -> VerifyKey:
    """An Ed25519 public key from its raw 32 bytes; KeyStoreError if not 32 valid bytes."""
    _expect_len(raw, 32, "Ed25519 public key")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise KeyStoreError(f"expected a valid Ed25519 public key, got invalid bytes: {e}") from e


def kem_public_key_from_bytes(raw: bytes) -> KemPublicKey:
    """An X25519 public key from its raw 32 bytes."""
    _expect_len(raw, 32, "X25519 public key")
    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise KeyStoreError(f"expected a valid X25519 public key, got invalid bytes: {e}") from e


def signing_key_from_bytes(raw: bytes) -> SigningKey:
    """An Ed25519 private key from its raw 32-byte seed (test vectors)."""
    _expect_len(raw, 32, "Ed25519 private key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def kem_private_key_from_bytes(raw: bytes) -> KemPrivateKey:
    """An X25519 private key from its raw 32 bytes (test vectors)."""
    _expect_len(raw, 32, "X25519 private key")
    return X25519PrivateKey.from_private_bytes(raw)


def _expect_len(raw: bytes, n: int, what: str) -> None:
    if not isinstance(raw, bytes | bytearray) or len(raw) != n:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes | bytearray) else type(raw).__name__
        raise KeyStoreError(f"expected a {n}-byte {what}, got {got}")


# --------------------------------------------------------------------------- signatures


def generate_signing_key() -> SigningKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def sign(private_key: SigningKey, data: bytes) -> bytes:
    """A 64-byte Ed25519 signature over ``data`` (deterministic, RFC 8032)."""
    return private_key.sign(data)


def verify(public_key: VerifyKey, signature: bytes, data: bytes) -> None:
    """Check an Ed25519 signature; raise EnvelopeError(reason="bad-signature") if it fails."""
    if len(signature) != 64:
        raise EnvelopeError(
            f"expected a 64-byte Ed25519 signature, got {len(signature)} bytes", reason="bad-signature"
        )
    try:
        public_key.verify(signature, data)
    except InvalidSignature as e:
        raise EnvelopeError(
            f"Ed25519 signature does not verify under key {key_id(public_key)}", reason="bad-signature"
        ) from e


# --------------------------------------------------------------------------- HPKE

HpkeAead = Literal["chacha20-poly1305", "aes-128-gcm"]
# RFC 9180 identifiers: (kem_id, kdf_id, aead_id)
HPKE_SUITES: dict[str, tuple[int, int, int]] = {
    "chacha20-poly1305": (0x0020, 0x0001, 0x0003),
    "aes-128-gcm": (0x0020, 0x0001, 0x0001),
}
_SUITES = {
    "chacha20-poly1305": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
    "aes-128-gcm": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM),
}
HPKE_OVERHEAD = 32 + 16  # enc + AEAD tag


def generate_kem_key() -> KemPrivateKey:
    """A fresh X25519 private key (the carrier's HPKE key)."""
    return X25519PrivateKey.generate()


def hpke_seal(
    public_key: KemPublicKey,
    plaintext: bytes,
    *,
    info: bytes,
    aead: HpkeAead = "chacha20-poly1305",
    ephemeral_key: KemPrivateKey | None = None,
) -> bytes:
    """HPKE base-mode single-shot seal: ``enc (32) || ciphertext || tag (16)``.

    ``info`` binds context (kycedge passes a digest of the clear header). A public key
    that yields no shared secret (low-order point) raises KeyStoreError. Normally the
    ephemeral key comes from ``cryptography``'s HPKE; passing ``ephemeral_key`` runs the
    RFC 9180 key schedule here instead so test vectors are reproducible (tests check the
    result opens with ``cryptography``'s own implementation). Never pass it in production.
    """
    try:
        if ephemeral_key is None:
            return _SUITES[aead].encrypt(plaintext, public_key, info=info)
        return _hpke_seal_deterministic(public_key, plaintext, info, aead, ephemeral_key)
    except ValueError as e:  # e.g. a low-order X25519 point: no shared secret
        raise KeyStoreError(
            f"carrier public key {key_id(public_key)} is unusable for HPKE (expected a valid X25519 "
            f"public key, got one that yields no shared secret): {e}"
        ) from e


def hpke_open(
    private_key: KemPrivateKey, data: bytes, *, info: bytes, aead: HpkeAead = "chacha20-poly1305"
) -> bytes:
    """Open what :func:`hpke_seal` made; EnvelopeError(reason="undecryptable") on any failure."""
    if len(data) < HPKE_OVERHEAD:
        raise EnvelopeError(
            f"expected an HPKE ciphertext of at least {HPKE_OVERHEAD} bytes, got {len(data)}",
            reason="undecryptable",
        )
    try:
        return _SUITES[aead].decrypt(data, private_key, info=info)
    except (InvalidTag, ValueError) as e:
        raise EnvelopeError(
            f"HPKE decryption failed with carrier key {key_id(private_key.public_key())} "
            "(wrong key, altered ciphertext or altered header)",
            reason="undecryptable",
        ) from e


def _i2osp(n: int, length: int) -> bytes:
    return n.to_bytes(length, "big")


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or b"\x00" * 32, b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = _i2osp(length, 2) + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def _hpke_seal_deterministic(
    public_key: KemPublicKey, plaintext: bytes, info: bytes, aead: HpkeAead, eph: KemPrivateKey
) -> bytes:
    enc, key, base_nonce = _hpke_setup_base_sender(public_key, info, aead, eph)
    cipher = ChaCha20Poly1305(key) if aead == "chacha20-poly1305" else AESGCM(key)
    return enc + cipher.encrypt(base_nonce, plaintext, b"")  # sequence 0: nonce = base_nonce


def _hpke_setup_base_sender(
    public_key: KemPublicKey, info: bytes, aead: HpkeAead, eph: KemPrivateKey
) -> tuple[bytes, bytes, bytes]:
    """RFC 9180 SetupBaseS with a given ephemeral key: ``(enc, key, base_nonce)``."""
    kem_id, kdf_id, aead_id = HPKE_SUITES[aead]
    # DHKEM(X25519, HKDF-SHA256) Encap, RFC 9180 section 4.1
    kem_suite = b"KEM" + _i2osp(kem_id, 2)
    dh = eph.exchange(public_key)
    enc = public_key_bytes(eph.public_key())
    kem_context = enc + public_key_bytes(public_key)
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(kem_suite, eae_prk, b"shared_secret", kem_context, 32)
    # KeySchedule, mode_base, section 5.1
    suite_id = b"HPKE" + _i2osp(kem_id, 2) + _i2osp(kdf_id, 2) + _i2osp(aead_id, 2)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    nk = 32 if aead == "chacha20-poly1305" else 16
    key = _labeled_expand(suite_id, secret, b"key", context, nk)
    base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return enc, key, base_nonce


# --------------------------------------------------------------------------- at rest


def generate_at_rest_key() -> bytes:
    """32 random bytes for :func:`encrypt_at_rest` (ChaCha20-Poly1305)."""
    return os.urandom(AtRestKeyLength)


def encrypt_at_rest(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """``0x01 || nonce (12, random) || ChaCha20-Poly1305(plaintext, aad=0x01||aad)``.

    Bind ``aad`` to where the blob lives (table, row id) so blobs cannot be swapped.
    """
    _expect_len(key, AtRestKeyLength, "at-rest key")
    nonce = os.urandom(_NONCE)
    return _AT_REST_VERSION + nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, _AT_REST_VERSION + aad)


def decrypt_at_rest(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Reverse :func:`encrypt_at_rest`; EnvelopeError(reason="undecryptable") on any failure."""
    _expect_len(key, AtRestKeyLength, "at-rest key")
    if len(blob) < 1 + _NONCE + 16 or blob[:1] != _AT_REST_VERSION:
        raise EnvelopeError(
            f"expected an at-rest blob (version 0x01, >= {1 + _NONCE + 16} bytes), "
            f"got {len(blob)} bytes starting {blob[:1].hex() or 'empty'}",
            reason="undecryptable",
        )
    try:
        return ChaCha20Poly1305(key).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], _AT_REST_VERSION + aad)
    except InvalidTag as e:
        raise EnvelopeError(
            "at-rest blob does not decrypt (wrong key, wrong aad or altered data)", reason="undecryptable"
        ) from e


# --------------------------------------------------------------------------- files


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=mode)
    except OSError as e:
        raise KeyStoreError(f"{path}: cannot write key file: {e.strerror or e}") from e


def _read_key_file(path: Path, *, secret: bool) -> bytes:
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise KeyStoreError(f"{path}: key file does not exist", reason="missing-key") from e
    except OSError as e:
        raise KeyStoreError(f"{path}: cannot stat key file: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise KeyStoreError(f"{path}: expected a regular file, got mode {stat.filemode(st.st_mode)}")
    if secret and st.st_mode & 0o077:
        raise KeyStoreError(
            f"{path}: private key file is readable or writable by group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}, expected 0600 or stricter); fix with chmod 600",
            reason="unsafe-key-permissions",
        )
    if st.st_size > _MAX_KEY_FILE:
        raise KeyStoreError(f"{path}: expected a key file <= {_MAX_KEY_FILE} bytes, got {st.st_size}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise KeyStoreError(f"{path}: cannot read key file: {e.strerror or e}") from e


def save_private_key(path: Path, private_key: PrivateKey) -> None:
    """Write an unencrypted PKCS#8 PEM, mode 0600, atomically (temp file, fsync, os.replace)."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _atomic_write(path, pem, 0o600)


def save_public_key(path: Path, public_key: PublicKey) -> None:
    """Write a SubjectPublicKeyInfo PEM, mode 0644, atomically."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _atomic_write(path, pem, 0o644)


def save_secret_key(path: Path, key: bytes) -> None:
    """Write a raw symmetric key as one line of hex, mode 0600, atomically."""
    _atomic_write(path, key.hex().encode() + b"\n", 0o600)


def load_secret_key(path: Path, *, length: int = AtRestKeyLength) -> bytes:
    """Read a key written by :func:`save_secret_key` (refuses group/world-accessible files)."""
    raw = _read_key_file(path, secret=True).strip()
    try:
        key = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise KeyStoreError(f"{path}: expected {2 * length} hex characters, got unparsable text") from e
    if len(key) != length:
        raise KeyStoreError(f"{path}: expected a {length}-byte key, got {len(key)} bytes")
    return key


def _load_private(path: Path) -> object:
    data = _read_key_file(path, secret=True)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyStoreError(f"{path}: expected an unencrypted PKCS#8 PEM private key, got: {e}") from e


def _load_public(path: Path) -> object:
    data = _read_key_file(path, secret=False)
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyStoreError(f"{path}: expected a PEM public key, got: {e}") from e


def _wrong_type(path: Path, expected: str, got: object) -> KeyStoreError:
    return KeyStoreError(f"{path}: expected an {expected} key, got {type(got).__name__}")


def load_signing_key(path: Path) -> SigningKey:
    """An Ed25519 private key from a 0600 PEM file."""
    key = _load_private(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise _wrong_type(path, "Ed25519 private", key)
    return key


def load_kem_private_key(path: Path) -> KemPrivateKey:
    """An X25519 private key from a 0600 PEM file."""
    key = _load_private(path)
    if not isinstance(key, X25519PrivateKey):
        raise _wrong_type(path, "X25519 private", key)
    return key


def load_tls_key(path: Path) -> TlsPrivateKey:
    """An EC (P-256) private key from a 0600 PEM file."""
    key = _load_private(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _wrong_type(path, "EC private", key)
    return key


def load_verify_key(path: Path) -> VerifyKey:
    """An Ed25519 public key from a PEM file."""
    key = _load_public(path)
    if not isinstance(key, Ed25519PublicKey):
        raise _wrong_type(path, "Ed25519 public", key)
    return key


def load_kem_public_key(path: Path) -> KemPublicKey:
    """An X25519 public key from a PEM file."""
    key = _load_public(path)
    if not isinstance(key, X25519PublicKey):
        raise _wrong_type(path, "X25519 public", key)
    return key


# --------------------------------------------------------------------------- X.509


def generate_tls_key() -> TlsPrivateKey:
    """A fresh EC P-256 key for mutual TLS (CA, broker or device)."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= 64:
        raise KeyStoreError(f"expected a common name of 1..64 characters, got {common_name!r}")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def make_ca(
    common_name: str,
    *,
    key: TlsPrivateKey | None = None,
    days: int = 3650,
    now: datetime | None = None,
) -> tuple[TlsPrivateKey, Certificate]:
    """A self-signed CA (basicConstraints CA:true, pathlen 0, keyCertSign+cRLSign).

    Returns ``(ca_key, ca_cert)``; a fresh P-256 key is generated unless ``key`` is given.
    """
    if not 1 <= days <= 36500:
        raise KeyStoreError(f"expected CA validity days in [1, 36500], got {days}")
    key = key or generate_tls_key()
    start = _now(now) - timedelta(minutes=5)
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_csr(
    private_key: TlsPrivateKey,
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> CertificateSigningRequest:
    """A PKCS#10 request with subject CN=``common_name`` (and optional SANs), signed SHA-256."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    sans = _sans(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(private_key, hashes.SHA256())


def _sans(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    for ip in ip_addresses:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as e:
            raise KeyStoreError(f"expected an IP address for subjectAltName, got {ip!r}") from e
    return out


def issue_certificate(
    ca_key: TlsPrivateKey,
    ca_cert: Certificate,
    csr: CertificateSigningRequest,
    *,
    days: int = 365,
    server: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    now: datetime | None = None,
) -> Certificate:
    """Sign ``csr`` with the CA: an end-entity certificate (CA:false).

    The CSR's own signature is checked first. Subject = the CSR's subject. EKU is
    clientAuth (devices, carrier consumers) or, with ``server=True``, serverAuth (the
    broker: pass its host names / IPs, which become subjectAltName; SANs in the CSR are
    ignored: the CA decides them).
    """
    if not csr.is_signature_valid:
        raise KeyStoreError("certificate signing request: its signature does not verify")
    if not 1 <= days <= 3650:
        raise KeyStoreError(f"expected certificate validity days in [1, 3650], got {days}")
    pub = csr.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey | Ed25519PublicKey):
        raise KeyStoreError(f"expected an EC or Ed25519 key in the CSR, got {type(pub).__name__}")
    start = _now(now) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans = _sans(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def certificate_to_pem(cert: Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_from_pem(data: bytes) -> Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise KeyStoreError(f"expected a PEM X.509 certificate, got: {e}") from e


def csr_to_pem(csr: CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_from_pem(data: bytes) -> CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as e:
        raise KeyStoreError(f"expected a PEM certificate signing request, got: {e}") from e


def write_public_file(path: Path, data: bytes) -> None:
    """Write non-secret bytes (a CSR, a PEM bundle), mode 0644, atomically."""
    _atomic_write(path, data, 0o644)


def save_certificate(path: Path, cert: Certificate) -> None:
    """Write a certificate PEM, mode 0644, atomically."""
    _atomic_write(path, certificate_to_pem(cert), 0o644)


def load_certificate(path: Path) -> Certificate:
    return certificate_from_pem(_read_key_file(path, secret=False))


def certificate_common_name(cert: Certificate) -> str:
    """The subject CN (e.g. the device id on a device's client certificate)."""
    return _cn(cert.subject)


def csr_common_name(csr: CertificateSigningRequest) -> str:
    return _cn(csr.subject)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise KeyStoreError(f"expected exactly one subject common name, got {len(attrs)}")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
