"""The carrier's own keys: HPKE (X25519) decryption keys, the receipt-signing Ed25519
key and the at-rest AEAD key: 0600 files through :mod:`kycedge.crypto`, except the
receipt key, which may live in an HSM (``carrier.receipt_hsm_*``, PKCS#11: generated in the
token, never extractable). The HPKE key stays a file: see :mod:`kycedge.crypto.pkcs11`.

Rotation: ``keys init --rotate`` adds a new HPKE key ``hpke-<UTC time>-<key id>.pem``;
every key listed stays able to decrypt until its file is removed, the newest is the one
to publish to devices. The envelope header names the carrier key id, so the receiver
picks the right key without trying each.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kycedge import crypto
from kycedge.carrier.config import CarrierConfig
from kycedge.core.errors import KeyStoreError

__all__ = ["CarrierKeys", "init_keys"]


@dataclass(frozen=True)
class CarrierKeys:
    hpke: Mapping[str, crypto.KemPrivateKey]  # key id -> private key, newest first
    receipt_key: crypto.Signer | crypto.SigningKey  # a file key, or a Pkcs11Signer (protection pkcs11)
    at_rest_key: bytes

    @property
    def receipt_key_id(self) -> str:
        return crypto.key_id(self.receipt_key.public_key())

    @property
    def receipt_public_key(self) -> crypto.AnyVerifyKey:
        return self.receipt_key.public_key()

    @property
    def receipt_key_protection(self) -> crypto.KeyProtection:
        return crypto.as_signer(self.receipt_key).protection

    @property
    def newest_hpke_key_id(self) -> str:
        return next(iter(self.hpke))

    @classmethod
    def load(cls, config: CarrierConfig) -> CarrierKeys:
        paths = config.hpke_key_paths()
        if not paths:
            raise KeyStoreError(
                "carrier: expected at least one HPKE key (carrier.hpke_keys or "
                f"{config.keys_dir}/hpke-*.pem), got none; run `kycedge-carrier keys init`",
                reason="missing-key",
            )
        hpke: dict[str, crypto.KemPrivateKey] = {}
        for p in paths:
            k = crypto.load_kem_private_key(p)
            hpke.setdefault(crypto.key_id(k.public_key()), k)
        return cls(
            hpke=hpke,
            receipt_key=_receipt_key(config),
            at_rest_key=crypto.load_secret_key(config.at_rest_key_path),
        )


def init_keys(config: CarrierConfig, *, rotate: bool = False) -> list[str]:
    """Create whatever carrier key is missing (and a new HPKE key with ``rotate``).

    Never overwrites an existing key. Returns one line per key: ``kind path key-id``.
    """
    out: list[str] = []
    keys_dir = config.keys_dir
    hpke_paths = config.hpke_key_paths()
    if not hpke_paths or rotate:
        k = crypto.generate_kem_key()
        kid = crypto.key_id(k.public_key())
        ns = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9 // 1000:06d}Z"
        path = keys_dir / f"hpke-{stamp}-{kid[:8]}.pem"
        crypto.save_private_key(path, k)
        crypto.save_public_key(_pub(path), k.public_key())
        out.append(f"hpke {path} {kid} (new)")
    for p in config.hpke_key_paths():
        if not any(str(p) in line for line in out):
            out.append(f"hpke {p} {crypto.key_id(crypto.load_kem_private_key(p).public_key())}")
    rk_path = config.receipt_key_path
    if config.receipt_hsm_module is not None:
        out.append(_init_hsm_receipt_key(config))
    elif not rk_path.exists():
        rk = crypto.generate_signing_key()
        crypto.save_private_key(rk_path, rk)
        crypto.save_public_key(_pub(rk_path), rk.public_key())
        out.append(f"receipt {rk_path} {crypto.key_id(rk.public_key())} (new)")
    else:
        out.append(f"receipt {rk_path} {crypto.key_id(crypto.load_signing_key(rk_path).public_key())}")
    ar_path = config.at_rest_key_path
    if not ar_path.exists():
        crypto.save_secret_key(ar_path, crypto.generate_at_rest_key())
        out.append(f"at-rest {ar_path} (new)")
    else:
        crypto.load_secret_key(ar_path)
        out.append(f"at-rest {ar_path}")
    return out


def _hsm(config: CarrierConfig) -> tuple[Path, str, Path]:
    if config.receipt_hsm_module is None or config.receipt_hsm_pin_file is None:
        raise KeyStoreError("carrier.receipt_hsm_module and receipt_hsm_pin_file: expected both")
    return config.receipt_hsm_module, config.receipt_hsm_token, config.receipt_hsm_pin_file


def _receipt_key(config: CarrierConfig) -> crypto.Signer | crypto.SigningKey:
    if config.receipt_hsm_module is None:
        return crypto.load_signing_key(config.receipt_key_path)
    from kycedge.crypto.pkcs11 import Pkcs11Signer, Token

    module, label, pin_file = _hsm(config)
    pin = crypto.read_key_file(pin_file, secret=True).decode("utf-8", "replace").strip()
    token = Token(module, label, pin)
    return Pkcs11Signer.open(token, config.receipt_hsm_key)


def _init_hsm_receipt_key(config: CarrierConfig) -> str:
    """Generate the receipt key in the token unless it is there; write its public PEM for units."""
    from kycedge.crypto.pkcs11 import Pkcs11Signer, Token, generate_key

    module, label, pin_file = _hsm(config)
    pin = crypto.read_key_file(pin_file, secret=True).decode("utf-8", "replace").strip()
    token = Token(module, label, pin)
    where = f"pkcs11:{label}/{config.receipt_hsm_key}"
    try:
        signer = Pkcs11Signer.open(token, config.receipt_hsm_key)
        new = ""
    except KeyStoreError:
        generate_key(token, config.receipt_hsm_key)
        signer = Pkcs11Signer.open(token, config.receipt_hsm_key)
        new = " (new)"
    try:
        pub = signer.public_key()
        crypto.save_public_key(_pub(config.receipt_key_path), pub)
        return f"receipt {where} {crypto.key_id(pub)} {signer.algorithm} hsm{new}"
    finally:
        signer.close()


def _pub(path: Path) -> Path:
    """``x.pem`` (private) → ``x.pub`` (public PEM, for devices / fleet tools)."""
    return path.with_name(path.name.removesuffix(".pem") + ".pub")
