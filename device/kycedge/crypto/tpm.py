"""A device signing key held by a TPM 2.0 (the only module that imports ``tpm2_pytss``).

The key is generated INSIDE the TPM as an ECC P-256 signing key under the storage primary
key of the owner hierarchy, with ``fixedTPM | fixedParent | sensitiveDataOrigin``: the
private part never exists outside that TPM. What the unit keeps on disk (the key blob:
the public area and the private area wrapped by that TPM's storage key) is useless
anywhere else: loading it into another TPM, or using it without the TPM, fails, so a
copied state directory cannot sign.

    blob = create_key(tcti)                 # bytes for <state_dir>/device-tpm.key (0600)
    signer = TpmSigner.open(tcti, blob)     # algorithm "es256", protection "tpm"
    sig = signer.sign(data)                 # the TPM signs SHA-256(data): ES256 r || s

``tcti`` is a TCTI string: ``device:/dev/tpmrm0`` on a unit, ``swtpm:host=127.0.0.1,port=N``
against swtpm in tests. TPM errors become :class:`~kycedge.core.errors.KeyStoreError`
with reason ``tpm-error``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import threading
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from kycedge.core.errors import KeyStoreError
from kycedge.crypto.keys import ec_verify_key_from_bytes
from kycedge.crypto.sign import KeyProtection, SignatureAlgorithm, es256_from_ints

__all__ = ["BLOB_MAGIC", "TCTI_NAMES", "TpmSigner", "create_key", "parse_tcti"]

BLOB_MAGIC: Final = b"KYTP\x01"
TCTI_NAMES: Final = ("device", "swtpm", "mssim", "tabrmd")  # what a TCTI string may start with
_LEN: Final = struct.Struct(">H")


def _tss() -> Any:
    os.environ.setdefault("TSS2_LOG", "all+none")  # errors come back as exceptions, not stderr noise
    try:
        import tpm2_pytss
        import tpm2_pytss.utils
    except ImportError as e:  # pragma: no cover - depends on the install
        raise KeyStoreError(f"TPM support needs tpm2-pytss (pip install tpm2-pytss): {e}",
                            reason="tpm-error") from e
    return tpm2_pytss


def parse_tcti(tcti: str) -> tuple[str, str]:
    """``"swtpm:host=...,port=..."`` -> ``("swtpm", "host=...,port=...")``."""
    name, _, conf = tcti.partition(":")
    if name not in TCTI_NAMES:
        raise KeyStoreError(f"tpm tcti: expected one of {', '.join(n + ':' for n in TCTI_NAMES)}..., "
                            f"got {tcti!r:.80}", reason="tpm-error")
    return name, conf


def _context(tcti: str) -> Any:
    t = _tss()
    name, conf = parse_tcti(tcti)
    try:
        return t.ESAPI(t.TCTILdr(name, conf))
    except Exception as e:
        raise KeyStoreError(f"tpm {tcti}: cannot connect: {e}", reason="tpm-error") from e


_BASE: Final = ("FIXEDTPM", "FIXEDPARENT", "SENSITIVEDATAORIGIN", "USERWITHAUTH")


def _attrs(*names: str) -> Any:
    a = _tss().TPMA_OBJECT
    out = a(0)
    for n in (*_BASE, *names):
        out |= getattr(a, n)
    return out


def _storage_primary(ctx: Any) -> Any:
    """The owner hierarchy's ECC P-256 storage key: re-derived identically from the TPM's seed."""
    t = _tss()
    attrs = _attrs("RESTRICTED", "DECRYPT", "NODA")
    template = t.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs)
    handle, *_ = ctx.create_primary(t.TPM2B_SENSITIVE_CREATE(), template, t.ESYS_TR.OWNER)
    return handle


def create_key(tcti: str) -> bytes:
    """Generate a non-exportable ES256 key inside the TPM; return its blob (public + wrapped private)."""
    t = _tss()
    ctx = _context(tcti)
    srk = None
    try:
        srk = _storage_primary(ctx)
        template = t.TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=_attrs("SIGN_ENCRYPT"))
        priv, pub, *_ = ctx.create(srk, t.TPM2B_SENSITIVE_CREATE(), template)
    except Exception as e:
        raise KeyStoreError(f"tpm {tcti}: key creation failed: {e}", reason="tpm-error") from e
    finally:
        if srk is not None:  # transient objects outlive the connection without a resource manager
            with contextlib.suppress(Exception):
                ctx.flush_context(srk)
        ctx.close()
    p, s = bytes(pub.marshal()), bytes(priv.marshal())
    return BLOB_MAGIC + _LEN.pack(len(p)) + p + _LEN.pack(len(s)) + s


def _split_blob(blob: bytes) -> tuple[bytes, bytes]:
    if not blob.startswith(BLOB_MAGIC) or len(blob) < len(BLOB_MAGIC) + 4:
        raise KeyStoreError("tpm key blob: expected KYTP version 1", reason="tpm-error")
    off = len(BLOB_MAGIC)
    (n,) = _LEN.unpack_from(blob, off)
    pub = blob[off + 2 : off + 2 + n]
    off += 2 + n
    if off + 2 > len(blob):
        raise KeyStoreError("tpm key blob: truncated", reason="tpm-error")
    (m,) = _LEN.unpack_from(blob, off)
    priv = blob[off + 2 : off + 2 + m]
    if len(pub) != n or len(priv) != m or off + 2 + m != len(blob):
        raise KeyStoreError("tpm key blob: truncated or trailing bytes", reason="tpm-error")
    return pub, priv


class TpmSigner:
    """The unit's ES256 key inside a TPM; implements :class:`kycedge.crypto.Signer`."""

    def __init__(self, ctx: Any, handle: Any, public_key: ec.EllipticCurvePublicKey, tcti: str) -> None:
        self._ctx, self._handle, self._public, self.tcti = ctx, handle, public_key, tcti
        self._lock = threading.Lock()  # one ESAPI context, one command at a time

    @classmethod
    def open(cls, tcti: str, blob: bytes) -> TpmSigner:
        """Load the key blob into the TPM; KeyStoreError(tpm-error) if this TPM did not make it."""
        t = _tss()
        pub_b, priv_b = _split_blob(blob)
        ctx = _context(tcti)
        srk = None
        try:
            pub, _ = t.TPM2B_PUBLIC.unmarshal(pub_b)
            priv, _ = t.TPM2B_PRIVATE.unmarshal(priv_b)
            srk = _storage_primary(ctx)
            handle = ctx.load(srk, priv, pub)
            ctx.flush_context(srk)
        except Exception as e:
            if srk is not None:
                with contextlib.suppress(Exception):
                    ctx.flush_context(srk)
            ctx.close()
            raise KeyStoreError(
                f"tpm {tcti}: cannot load the device key (a key blob loads only into the TPM "
                f"that made it): {e}",
                reason="tpm-error",
            ) from e
        ecc = pub.publicArea.unique.ecc
        point = b"\x04" + bytes(ecc.x).rjust(32, b"\x00") + bytes(ecc.y).rjust(32, b"\x00")
        return cls(ctx, handle, ec_verify_key_from_bytes(point), tcti)

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return "es256"

    @property
    def protection(self) -> KeyProtection:
        return "tpm"

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        t = _tss()
        digest = hashlib.sha256(data).digest()
        scheme = t.TPMT_SIG_SCHEME(scheme=t.TPM2_ALG.ECDSA, details=t.TPMU_SIG_SCHEME(
            ecdsa=t.TPMS_SCHEME_HASH(hashAlg=t.TPM2_ALG.SHA256)))
        ticket = t.TPMT_TK_HASHCHECK(tag=t.TPM2_ST.HASHCHECK, hierarchy=t.TPM2_RH.NULL)
        try:
            with self._lock:
                sig = self._ctx.sign(self._handle, t.TPM2B_DIGEST(digest), scheme, ticket)
        except Exception as e:
            raise KeyStoreError(f"tpm {self.tcti}: signing failed: {e}", reason="tpm-error") from e
        r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
        s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
        return es256_from_ints(r, s)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(Exception):  # closing anyway
                self._ctx.flush_context(self._handle)
            self._ctx.close()
