"""TPM key attestation: prove that a device key was generated in, and never leaves, a real TPM.

Three statements, checked by the carrier at enrolment (:func:`verify_request`, :func:`check_proof`):

1. the **endorsement key** (EK) is a TPM's: its certificate chains to a TPM manufacturer CA
   the carrier trusts, and the EK public area the unit sent carries that certificate's key;
2. the **attestation key** (AK, a restricted signing key, a primary of the endorsement
   hierarchy so the TPM re-derives the same AK on every call) lives in the same TPM as
   that EK: the carrier encrypts a secret to the EK bound to the AK's name
   (TPM2_MakeCredential, in software), and only that TPM can return it
   (TPM2_ActivateCredential);
3. the AK **certifies the device key** (TPM2_Certify): the signed TPMS_ATTEST names the
   key (nameAlg || SHA-256 of its public area), whose attributes say fixedTPM,
   fixedParent and sensitiveDataOrigin (generated inside, never exportable).

    req = make_request(tcti, key_blob, qualifying_data)            # unit
    checked = verify_request(req, trusted_cas, qualifying_data)    # carrier: statements 1 and 3
    challenge = make_challenge(req, secret)                        # carrier -> unit
    proof = activate(tcti, challenge)                              # unit: statement 2
    check_proof(proof, secret)                                     # carrier

The TPM binding is :mod:`kycedge.crypto.tpm` (the only importer of ``tpm2_pytss``).
Failures are :class:`~kycedge.core.errors.KeyStoreError` with reason ``bad-attestation``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kycedge.core.errors import KeyStoreError
from kycedge.crypto.keys import EcVerifyKey, ec_verify_key_from_bytes
from kycedge.crypto.sign import es256_from_ints
from kycedge.crypto.tpm import _context, _split_blob, _storage_primary, _tss

__all__ = [
    "AttestationRequest",
    "Challenge",
    "VerifiedAttestation",
    "activate",
    "certify_blob",
    "certify_with_ak",
    "check_proof",
    "key_area",
    "make_challenge",
    "make_request",
    "public_key_of_area",
    "verify_certify",
    "verify_request",
]

_TPM_GENERATED: Final = 0xFF544347
_ST_ATTEST_CERTIFY: Final = 0x8017
_MAX_CHAIN: Final = 4


def _bad(message: str) -> KeyStoreError:
    return KeyStoreError(f"attestation: {message}", reason="bad-attestation")


@dataclass(frozen=True)
class AttestationRequest:
    """What the unit sends: raw TPM structures (marshalled) and the EK certificate (DER)."""

    ek_certificate: bytes
    ek_public: bytes      # TPM2B_PUBLIC
    ak_public: bytes      # TPM2B_PUBLIC
    key_public: bytes     # TPM2B_PUBLIC of the device key
    certify_info: bytes   # TPM2B_ATTEST (the AK's statement about the key)
    certify_signature: bytes  # ES256 r || s by the AK over certify_info


@dataclass(frozen=True)
class Challenge:
    credential_blob: bytes    # TPM2B_ID_OBJECT
    encrypted_secret: bytes   # TPM2B_ENCRYPTED_SECRET


@dataclass(frozen=True)
class VerifiedAttestation:
    public_key: EcVerifyKey   # the device key, held by the TPM
    ak_public: bytes          # recorded: the AK certifies the unit's next key at rotation
    ak_name: bytes
    ek_certificate_sha256: str
    ek_issuer: str


def _attrs(*names: str) -> Any:
    a = _tss().TPMA_OBJECT
    out = a(0)
    for n in names:
        out |= getattr(a, n)
    return out


_KEY_ATTRS: Final = ("FIXEDTPM", "FIXEDPARENT", "SENSITIVEDATAORIGIN", "SIGN_ENCRYPT")
_AK_ATTRS: Final = ("FIXEDTPM", "FIXEDPARENT", "SENSITIVEDATAORIGIN", "RESTRICTED", "SIGN_ENCRYPT")


def _ak(ctx: Any) -> Any:
    """The AK: an ECC P-256 restricted signing primary of the endorsement hierarchy."""
    t = _tss()
    attrs = _attrs(*_AK_ATTRS, "USERWITHAUTH")
    template = t.TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=attrs)
    template.publicArea.parameters.eccDetail.symmetric.algorithm = t.TPM2_ALG.NULL  # a signing key
    handle, pub, *_ = ctx.create_primary(t.TPM2B_SENSITIVE_CREATE(), template, t.ESYS_TR.ENDORSEMENT)
    return handle, pub


def _ek(ctx: Any) -> tuple[bytes, Any, Any]:
    """``(ek certificate DER, handle, TPM2B_PUBLIC)`` for the TPM's ECC P-256 or RSA 2048 EK."""
    t = _tss()
    u = t.utils

    nv_read = u.NVReadEK(ctx)  # raises NoSuchIndex for an undefined index, as create_ek_template wants

    for ektype in ("EK-ECC256", "EK-RSA2048"):
        try:
            cert, template = u.create_ek_template(ektype, nv_read)
        except (ValueError, u.NoSuchIndex):
            continue
        if cert:
            handle, pub, *_ = ctx.create_primary(t.TPM2B_SENSITIVE_CREATE(), template, t.ESYS_TR.ENDORSEMENT)
            return bytes(cert), handle, pub
    raise _bad("the TPM has no ECC P-256 or RSA 2048 EK certificate in NV (0x01c0000a / 0x01c00002)")


def _flush(ctx: Any, *handles: Any) -> None:
    for h in handles:
        try:
            ctx.flush_context(h)
        except Exception:  # noqa: S112 - best effort on the way out
            continue


def certify_with_ak(ctx: Any, key_handle: Any, qualifying_data: bytes) -> tuple[bytes, bytes, bytes]:
    """``(ak TPM2B_PUBLIC, TPM2B_ATTEST, ES256 signature)``: the AK certifies ``key_handle``."""
    t = _tss()
    ak, ak_pub = _ak(ctx)
    try:
        scheme = t.TPMT_SIG_SCHEME(scheme=t.TPM2_ALG.NULL)
        info, sig = ctx.certify(key_handle, ak, t.TPM2B_DATA(qualifying_data), scheme,
                                session1=t.ESYS_TR.PASSWORD, session2=t.ESYS_TR.PASSWORD)
    finally:
        _flush(ctx, ak)
    r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
    s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
    return bytes(ak_pub.marshal()), bytes(info.marshal()), es256_from_ints(r, s)


def make_request(tcti: str, key_blob: bytes, qualifying_data: bytes) -> AttestationRequest:
    """Unit side: the EK certificate, EK and AK public areas and the AK's certification of the key."""
    t = _tss()
    pub_b, priv_b = _split_blob(key_blob)
    ctx = _context(tcti)
    handles: list[Any] = []
    try:  # a TPM holds few transient objects (swtpm: 3): load them one after another
        ek_cert, ek, ek_pub = _ek(ctx)
        _flush(ctx, ek)
        srk = _storage_primary(ctx)
        handles.append(srk)
        key = ctx.load(srk, t.TPM2B_PRIVATE.unmarshal(priv_b)[0], t.TPM2B_PUBLIC.unmarshal(pub_b)[0])
        handles.append(key)
        _flush(ctx, handles.pop(0))
        ak_pub, info, sig = certify_with_ak(ctx, key, qualifying_data)
    except KeyStoreError:
        raise
    except Exception as e:
        raise KeyStoreError(f"tpm {tcti}: attestation failed: {e}", reason="tpm-error") from e
    finally:
        _flush(ctx, *handles)
        ctx.close()
    return AttestationRequest(ek_cert, bytes(ek_pub.marshal()), ak_pub, pub_b, info, sig)


def certify_blob(tcti: str, key_blob: bytes, qualifying_data: bytes) -> tuple[bytes, bytes]:
    """``(TPM2B_ATTEST, ES256 signature)``: the AK certifies the key of ``key_blob`` (rotation)."""
    t = _tss()
    pub_b, priv_b = _split_blob(key_blob)
    ctx = _context(tcti)
    handles: list[Any] = []
    try:
        srk = _storage_primary(ctx)
        handles.append(srk)
        key = ctx.load(srk, t.TPM2B_PRIVATE.unmarshal(priv_b)[0], t.TPM2B_PUBLIC.unmarshal(pub_b)[0])
        handles.append(key)
        _flush(ctx, handles.pop(0))
        _, info, sig = certify_with_ak(ctx, key, qualifying_data)
        return info, sig
    except Exception as e:
        raise KeyStoreError(f"tpm {tcti}: certification failed: {e}", reason="tpm-error") from e
    finally:
        _flush(ctx, *handles)
        ctx.close()


def key_area(key_blob: bytes) -> bytes:
    """The TPM2B_PUBLIC area inside a key blob (what a certification names)."""
    return _split_blob(key_blob)[0]


def _public(raw: bytes, what: str) -> Any:
    t = _tss()
    try:
        pub, used = t.TPM2B_PUBLIC.unmarshal(raw)
    except Exception as e:
        raise _bad(f"{what}: expected a TPM2B_PUBLIC, got unparsable bytes ({e})") from e
    if used != len(raw):
        raise _bad(f"{what}: trailing bytes after the TPM2B_PUBLIC")
    return pub


def _name(pub: Any) -> bytes:
    """TPM object name: nameAlg (SHA-256) || SHA-256(marshalled TPMT_PUBLIC)."""
    t = _tss()
    if pub.publicArea.nameAlg != t.TPM2_ALG.SHA256:
        raise _bad(f"expected nameAlg SHA-256, got {pub.publicArea.nameAlg}")
    return b"\x00\x0b" + hashlib.sha256(bytes(pub.publicArea.marshal())).digest()


def _require_attrs(pub: Any, names: tuple[str, ...], what: str) -> None:
    attrs = int(pub.publicArea.objectAttributes)
    missing = [n for n in names if not attrs & int(getattr(_tss().TPMA_OBJECT, n))]
    if missing:
        raise _bad(f"{what}: expected attributes {', '.join(names)}, missing {', '.join(missing)}")


def public_key_of_area(raw: bytes, what: str = "key") -> EcVerifyKey:
    """The P-256 public key of a marshalled TPM2B_PUBLIC (ECC, NIST P-256)."""
    t = _tss()
    pub = _public(raw, what)
    area = pub.publicArea
    if area.type != t.TPM2_ALG.ECC or area.parameters.eccDetail.curveID != t.TPM2_ECC.NIST_P256:
        raise _bad(f"{what}: expected an ECC NIST P-256 key")
    ecc = area.unique.ecc
    x, y = bytes(ecc.x).rjust(32, b"\x00"), bytes(ecc.y).rjust(32, b"\x00")
    return ec_verify_key_from_bytes(b"\x04" + x + y)


def _verify_es256(key: EcVerifyKey, signature: bytes, data: bytes, what: str) -> None:
    if len(signature) != 64:
        raise _bad(f"{what}: expected a 64-byte ES256 signature")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise _bad(f"{what}: the signature does not verify") from e


def verify_certify(ak_public: bytes, key_public: bytes, certify_info: bytes, signature: bytes,
                   qualifying_data: bytes) -> EcVerifyKey:
    """Statement 3: the AK signed a TPMS_ATTEST naming ``key_public``, a non-exportable key."""
    t = _tss()
    ak = _public(ak_public, "attestation key")
    _require_attrs(ak, _AK_ATTRS, "attestation key")
    key = _public(key_public, "device key")
    _require_attrs(key, _KEY_ATTRS, "device key")
    if int(key.publicArea.objectAttributes) & int(t.TPMA_OBJECT.RESTRICTED):
        raise _bad("device key: expected an unrestricted signing key")
    try:
        attest_b, used = t.TPM2B_ATTEST.unmarshal(certify_info)
        attest, _ = t.TPMS_ATTEST.unmarshal(bytes(attest_b))
    except Exception as e:
        raise _bad(f"certify info: expected a TPM2B_ATTEST, got unparsable bytes ({e})") from e
    if used != len(certify_info):
        raise _bad("certify info: trailing bytes")
    if int(attest.magic) != _TPM_GENERATED or int(attest.type) != _ST_ATTEST_CERTIFY:
        raise _bad("certify info: expected a TPM-generated TPM_ST_ATTEST_CERTIFY")
    if not hmac.compare_digest(bytes(attest.extraData), qualifying_data):
        raise _bad("certify info: the qualifying data names another unit or enrolment")
    if bytes(attest.attested.certify.name) != _name(key):
        raise _bad("certify info: the certified name is not the device key's")
    _verify_es256(public_key_of_area(ak_public, "attestation key"), signature, bytes(attest_b),
                  "certify signature")
    return public_key_of_area(key_public, "device key")


def _chain(leaf: x509.Certificate, trusted: list[x509.Certificate], now: datetime) -> x509.Certificate:
    """Walk issuers from ``trusted`` (intermediates and roots) up to a self-signed root."""
    cert = leaf
    for _ in range(_MAX_CHAIN):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise _bad(f"certificate {cert.subject.rfc4514_string() or '(EK)'} is outside its validity")
        issuer = None
        for candidate in (c for c in trusted if c.subject == cert.issuer):  # names can repeat
            try:
                cert.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = candidate
            break
        if issuer is None:
            raise _bad(f"no trusted TPM CA certificate named {cert.issuer.rfc4514_string()} signed "
                       f"{'the EK certificate' if cert is leaf else cert.subject.rfc4514_string()}")
        if issuer.subject == issuer.issuer:
            return issuer
        cert = issuer
    raise _bad(f"expected a chain of at most {_MAX_CHAIN} certificates to a trusted root")


def _same_key(cert_key: Any, ek: Any) -> bool:
    t = _tss()
    area = ek.publicArea
    if isinstance(cert_key, ec.EllipticCurvePublicKey) and area.type == t.TPM2_ALG.ECC:
        n = cert_key.public_numbers()
        return (n.x, n.y) == (int.from_bytes(bytes(area.unique.ecc.x), "big"),
                              int.from_bytes(bytes(area.unique.ecc.y), "big"))
    if isinstance(cert_key, rsa.RSAPublicKey) and area.type == t.TPM2_ALG.RSA:
        return cert_key.public_numbers().n == int.from_bytes(bytes(area.unique.rsa), "big")
    return False


def verify_request(req: AttestationRequest, trusted_cas: list[x509.Certificate], qualifying_data: bytes,
                   *, now: datetime | None = None) -> VerifiedAttestation:
    """Carrier side, statements 1 and 3 (statement 2 needs the unit: :func:`make_challenge`)."""
    try:
        ek_cert = x509.load_der_x509_certificate(req.ek_certificate)
    except ValueError as e:
        raise _bad(f"EK certificate: expected DER X.509, got: {e}") from e
    _chain(ek_cert, trusted_cas, (now or datetime.now(timezone.utc)))
    if not _same_key(ek_cert.public_key(), _public(req.ek_public, "endorsement key")):
        raise _bad("the EK public area does not carry the EK certificate's key")
    key = verify_certify(req.ak_public, req.key_public, req.certify_info, req.certify_signature,
                         qualifying_data)
    return VerifiedAttestation(
        public_key=key, ak_public=req.ak_public, ak_name=_name(_public(req.ak_public, "attestation key")),
        ek_certificate_sha256=hashlib.sha256(req.ek_certificate).hexdigest(),
        ek_issuer=ek_cert.issuer.rfc4514_string(),
    )


def make_challenge(req: AttestationRequest, secret: bytes) -> Challenge:
    """TPM2_MakeCredential in software: ``secret`` for the EK, bound to the AK's name."""
    t = _tss()
    if not 16 <= len(secret) <= 32:
        raise KeyStoreError(f"credential secret: expected 16..32 bytes, got {len(secret)}")
    ak_name = _name(_public(req.ak_public, "attestation key"))
    blob, enc = t.utils.make_credential(_public(req.ek_public, "endorsement key"), secret,
                                        t.TPM2B_NAME(ak_name))
    return Challenge(bytes(blob.marshal()), bytes(enc.marshal()))


def activate(tcti: str, challenge: Challenge) -> bytes:
    """Unit side: TPM2_ActivateCredential with its EK and AK; only that TPM recovers the secret."""
    t = _tss()
    ctx = _context(tcti)
    handles: list[Any] = []
    try:
        _, ek, _ = _ek(ctx)
        handles.append(ek)
        ak, _ = _ak(ctx)
        handles.append(ak)
        sess = ctx.start_auth_session(t.ESYS_TR.NONE, t.ESYS_TR.NONE, t.TPM2_SE.POLICY,
                                      t.TPMT_SYM_DEF(algorithm=t.TPM2_ALG.NULL), t.TPM2_ALG.SHA256)
        handles.append(sess)
        ctx.policy_secret(t.ESYS_TR.ENDORSEMENT, sess)
        blob, _ = t.TPM2B_ID_OBJECT.unmarshal(challenge.credential_blob)
        enc, _ = t.TPM2B_ENCRYPTED_SECRET.unmarshal(challenge.encrypted_secret)
        secret = ctx.activate_credential(ak, ek, blob, enc, session1=t.ESYS_TR.PASSWORD, session2=sess)
        return bytes(secret)
    except Exception as e:
        raise KeyStoreError(f"tpm {tcti}: credential activation failed (not the TPM the challenge "
                            f"was made for?): {e}", reason="tpm-error") from e
    finally:
        _flush(ctx, *handles)
        ctx.close()


def check_proof(proof: bytes, secret: bytes) -> None:
    """Statement 2: the unit's TPM returned the secret (constant-time comparison)."""
    if not hmac.compare_digest(proof, secret):
        raise _bad("the credential proof does not match: the AK is not in the TPM of that EK")
