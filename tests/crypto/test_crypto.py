"""Tests for kycedge.crypto: recipes round-trip, failures become kycedge errors."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from kycedge import crypto
from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.crypto import _vectors


def test_sign_verify_and_key_id() -> None:
    sk = crypto.generate_signing_key()
    sig = crypto.sign(sk, b"msg")
    assert len(sig) == 64
    crypto.verify(sk.public_key(), sig, b"msg")
    with pytest.raises(EnvelopeError) as ei:
        crypto.verify(sk.public_key(), sig, b"msh")
    assert ei.value.reason == "bad-signature"
    with pytest.raises(EnvelopeError):
        crypto.verify(sk.public_key(), sig[:63], b"msg")
    kid = crypto.key_id(sk.public_key())
    assert len(kid) == 32
    assert kid == kid.lower()
    assert int(kid, 16) >= 0
    raw = crypto.public_key_bytes(sk.public_key())
    assert crypto.key_id(crypto.verify_key_from_bytes(raw)) == kid
    with pytest.raises(KeyStoreError):
        crypto.verify_key_from_bytes(raw[:31])


@pytest.mark.parametrize("aead", ["chacha20-poly1305", "aes-128-gcm"])
def test_hpke_round_trip_and_info_binding(aead: crypto.HpkeAead) -> None:
    k = crypto.generate_kem_key()
    ct = crypto.hpke_seal(k.public_key(), b"plain", info=b"hdr", aead=aead)
    assert len(ct) == 5 + crypto.HPKE_OVERHEAD
    assert crypto.hpke_open(k, ct, info=b"hdr", aead=aead) == b"plain"
    for bad_info, bad_ct, key in [
        (b"hdx", ct, k),
        (b"hdr", ct[:-1] + bytes([ct[-1] ^ 1]), k),
        (b"hdr", ct, crypto.generate_kem_key()),
        (b"hdr", ct[:10], k),
    ]:
        with pytest.raises(EnvelopeError) as ei:
            crypto.hpke_open(key, bad_ct, info=bad_info, aead=aead)
        assert ei.value.reason == "undecryptable"


@pytest.mark.parametrize("aead", ["chacha20-poly1305", "aes-128-gcm"])
def test_deterministic_hpke_opens_with_library_implementation(aead: crypto.HpkeAead) -> None:
    """Our RFC 9180 key schedule (used only for vectors) agrees with cryptography's HPKE."""
    k = crypto.generate_kem_key()
    eph = crypto.kem_private_key_from_bytes(bytes(range(32)))
    ct1 = _vectors.hpke_seal(k.public_key(), b"x" * 100, info=b"i", aead=aead, ephemeral_key=eph)
    ct2 = _vectors.hpke_seal(k.public_key(), b"x" * 100, info=b"i", aead=aead, ephemeral_key=eph)
    assert ct1 == ct2
    assert ct1[:32] == crypto.public_key_bytes(eph.public_key())
    assert crypto.hpke_open(k, ct1, info=b"i", aead=aead) == b"x" * 100


@pytest.mark.parametrize("point", [
    bytes(32), b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),  # order 8
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p - 1
], ids=["zero", "one", "order-8", "p-1"])
def test_hpke_low_order_points(point: bytes) -> None:
    k = crypto.generate_kem_key()
    with pytest.raises(EnvelopeError) as ei:  # a hostile enc in a received envelope
        crypto.hpke_open(k, point + bytes(40), info=b"")
    assert ei.value.reason == "undecryptable"
    with pytest.raises(KeyStoreError):  # a bad carrier key in the unit's config
        crypto.hpke_seal(crypto.kem_public_key_from_bytes(point), b"x", info=b"")


def test_hpke_key_schedule_matches_rfc9180_a1_1() -> None:
    """RFC 9180 Appendix A.1.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    sk_e = crypto.kem_private_key_from_bytes(
        bytes.fromhex("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736"))
    sk_r = crypto.kem_private_key_from_bytes(
        bytes.fromhex("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"))
    assert crypto.public_key_bytes(sk_r.public_key()).hex() == (
        "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")
    info = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")  # "Ode on a Grecian Urn"
    enc, key, base_nonce = _vectors.setup_base_sender(sk_r.public_key(), info, "aes-128-gcm", sk_e)
    assert enc.hex() == "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431"
    assert key.hex() == "4531685d41d65f03dc48f6b8302c05b0"
    assert base_nonce.hex() == "56d890e5accaaf011cff4b7d"
    ct = AESGCM(key).encrypt(base_nonce, b"Beauty is truth, truth beauty", b"Count-0")
    assert ct.hex() == ("f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a9"
                        "6d8770ac83d07bea87e13c512a")


def test_at_rest_round_trip_and_failures() -> None:
    key = crypto.generate_at_rest_key()
    blob = crypto.encrypt_at_rest(key, b"secret", b"row-1")
    assert blob != crypto.encrypt_at_rest(key, b"secret", b"row-1")  # random nonce
    assert crypto.decrypt_at_rest(key, blob, b"row-1") == b"secret"
    for k, b, aad in [
        (key, blob, b"row-2"),
        (crypto.generate_at_rest_key(), blob, b"row-1"),
        (key, blob[:-1], b"row-1"),
        (key, b"\x02" + blob[1:], b"row-1"),
        (key, b"", b"row-1"),
    ]:
        with pytest.raises(EnvelopeError) as ei:
            crypto.decrypt_at_rest(k, b, aad)
        assert ei.value.reason == "undecryptable"
    with pytest.raises(KeyStoreError):
        crypto.encrypt_at_rest(key[:16], b"x", b"")


def test_private_key_files_are_0600_and_unsafe_modes_refused(tmp_path: Path) -> None:
    sk = crypto.generate_signing_key()
    path = tmp_path / "sub" / "device.pem"
    crypto.save_private_key(path, sk)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert crypto.key_id(crypto.load_signing_key(path).public_key()) == crypto.key_id(sk.public_key())
    assert [p.name for p in path.parent.iterdir()] == ["device.pem"]  # no temp file left
    os.chmod(path, 0o640)
    with pytest.raises(KeyStoreError) as ei:
        crypto.load_signing_key(path)
    assert ei.value.reason == "unsafe-key-permissions"
    assert "0640" in ei.value.message
    assert "0600" in ei.value.message
    with pytest.raises(KeyStoreError) as ei:
        crypto.load_signing_key(tmp_path / "missing.pem")
    assert ei.value.reason == "missing-key"


def test_key_type_confusion_and_garbage_refused(tmp_path: Path) -> None:
    kem = crypto.generate_kem_key()
    crypto.save_private_key(tmp_path / "kem.pem", kem)
    assert crypto.load_kem_private_key(tmp_path / "kem.pem").public_key() is not None
    with pytest.raises(KeyStoreError, match="Ed25519"):
        crypto.load_signing_key(tmp_path / "kem.pem")
    crypto.save_public_key(tmp_path / "kem.pub", kem.public_key())
    assert stat.S_IMODE(os.stat(tmp_path / "kem.pub").st_mode) == 0o644
    pub = crypto.load_kem_public_key(tmp_path / "kem.pub")
    assert crypto.key_id(pub) == crypto.key_id(kem.public_key())
    with pytest.raises(KeyStoreError):
        crypto.load_verify_key(tmp_path / "kem.pub")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    os.chmod(garbage, 0o600)
    with pytest.raises(KeyStoreError):
        crypto.load_kem_private_key(garbage)
    with pytest.raises(KeyStoreError):
        crypto.load_tls_key(tmp_path)  # a directory


def test_secret_key_file(tmp_path: Path) -> None:
    key = crypto.generate_at_rest_key()
    crypto.save_secret_key(tmp_path / "k", key)
    assert crypto.load_secret_key(tmp_path / "k") == key
    os.chmod(tmp_path / "k", 0o644)
    with pytest.raises(KeyStoreError):
        crypto.load_secret_key(tmp_path / "k")
    (tmp_path / "short").write_text("abcd\n")
    os.chmod(tmp_path / "short", 0o600)
    with pytest.raises(KeyStoreError, match="32-byte"):
        crypto.load_secret_key(tmp_path / "short")


def _pki(tmp_path: Path) -> dict[str, Path]:
    ca_key, ca_cert = crypto.make_ca("kycedge test CA")
    srv_key = crypto.generate_tls_key()
    srv_cert = crypto.issue_certificate(
        ca_key, ca_cert, crypto.make_csr(srv_key, "localhost"), days=2, server=True,
        dns_names=("localhost",), ip_addresses=("127.0.0.1",),
    )
    dev_key = crypto.generate_tls_key()
    csr = crypto.csr_from_pem(crypto.csr_to_pem(crypto.make_csr(dev_key, "dev-0001")))
    assert crypto.csr_common_name(csr) == "dev-0001"
    dev_cert = crypto.issue_certificate(ca_key, ca_cert, csr, days=2)
    assert crypto.certificate_common_name(dev_cert) == "dev-0001"
    out = {}
    for name, obj in [("ca.crt", ca_cert), ("srv.crt", srv_cert), ("dev.crt", dev_cert)]:
        crypto.save_certificate(tmp_path / name, obj)
        out[name] = tmp_path / name
    for name, k in [("srv.key", srv_key), ("dev.key", dev_key)]:
        crypto.save_private_key(tmp_path / name, k)
        out[name] = tmp_path / name
    assert crypto.load_certificate(out["dev.crt"]).serial_number == dev_cert.serial_number
    return out


def test_x509_mutual_tls_handshake_with_openssl(tmp_path: Path) -> None:
    """The CA, server and client certificates work in a real OpenSSL mutual-TLS handshake."""
    p = _pki(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(p["srv.crt"], p["srv.key"])
    server_ctx.load_verify_locations(p["ca.crt"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(p["ca.crt"]))
    client_ctx.load_cert_chain(p["dev.crt"], p["dev.key"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            seen["peer"] = tls.getpeercert()
            tls.sendall(tls.recv(5))

    t = threading.Thread(target=serve)
    t.start()
    with socket.create_connection(("127.0.0.1", port)) as raw, client_ctx.wrap_socket(
        raw, server_hostname="localhost"
    ) as tls:
        tls.sendall(b"hello")
        assert tls.recv(5) == b"hello"
    t.join(10)
    listener.close()
    peer = seen["peer"]
    assert isinstance(peer, dict)
    assert peer["subject"] == ((("commonName", "dev-0001"),),)


def test_x509_refuses_bad_input() -> None:
    with pytest.raises(KeyStoreError):
        crypto.make_ca("")
    with pytest.raises(KeyStoreError):
        crypto.csr_from_pem(b"junk")
    with pytest.raises(KeyStoreError):
        crypto.certificate_from_pem(b"junk")
    ca_key, ca_cert = crypto.make_ca("ca")
    csr = crypto.make_csr(crypto.generate_tls_key(), "d")
    with pytest.raises(KeyStoreError):
        crypto.issue_certificate(ca_key, ca_cert, csr, days=0)
    with pytest.raises(KeyStoreError):
        crypto.make_csr(crypto.generate_tls_key(), "d", ip_addresses=("not-an-ip",))
