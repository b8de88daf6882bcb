"""Trusted public keys: what an administrator uploads (a cosign.pub), parsed once, with an ID.

cosign writes a PEM `PUBLIC KEY` block (PKIX SubjectPublicKeyInfo) for every key type it
generates or imports (`cosign generate-key-pair`, `cosign import-key-pair`). The key types and the
hash each one signs with follow sigstore's defaults (`signature.LoadDefaultSignerVerifier`):

    ECDSA P-256 / P-384 / P-521   ASN.1 DER signature over SHA-256 / SHA-384 / SHA-512
    RSA 2048 to 4096 bits         PKCS #1 v1.5 over SHA-256
    Ed25519                       Ed25519ph (cosign's default since hashedrekord entries need it),
                                  or pure Ed25519 (older cosign)

Anything else is refused here, once, with a message meant for the person who uploaded it
(`KeyRejected`, a ValueError: the API answers INVALID_REQUEST with it). Private keys are refused
outright: an administrator pasting cosign.key by mistake must not have it stored.

A key's ID is `sha256:` + the hex SHA-256 of its DER SubjectPublicKeyInfo: the same hash cosign puts,
base64-encoded, in a bundle's `verificationMaterial.publicKey.hint` (`hint` below), so a bundle names
the key that made it and the verifier can tell "this trusted key rejects it" from "an unknown key".
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["MAX_PEM_BYTES", "KeyAlgorithm", "KeyRejected", "TrustedKey", "parse_public_key"]

# A 4096-bit RSA key is about 800 bytes of PEM; anything much larger is not a key cosign made.
MAX_PEM_BYTES = 16 * 1024
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 4096


class KeyRejected(ValueError):
    """An uploaded key that cannot be trusted as it is; the message says why, for the uploader."""


class KeyAlgorithm(StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    ECDSA_P521 = "ecdsa-p521"
    RSA = "rsa"
    ED25519 = "ed25519"


_CURVES: dict[str, KeyAlgorithm] = {
    "secp256r1": KeyAlgorithm.ECDSA_P256,
    "secp384r1": KeyAlgorithm.ECDSA_P384,
    "secp521r1": KeyAlgorithm.ECDSA_P521,
}

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class TrustedKey:
    """One parsed public key. `pem` is the canonical PEM (what to store and show back)."""

    id: str
    algorithm: KeyAlgorithm
    pem: str
    key: PublicKey = field(repr=False, compare=False)

    @property
    def hint(self) -> str:
        """The key as a sigstore bundle names it (base64 of the SHA-256 of the DER SubjectPublicKeyInfo)."""
        return base64.b64encode(bytes.fromhex(self.id.removeprefix("sha256:"))).decode()

    @property
    def description(self) -> str:
        if isinstance(self.key, rsa.RSAPublicKey):
            return f"RSA {self.key.key_size}"
        return {KeyAlgorithm.ECDSA_P256: "ECDSA P-256", KeyAlgorithm.ECDSA_P384: "ECDSA P-384",
                KeyAlgorithm.ECDSA_P521: "ECDSA P-521", KeyAlgorithm.ED25519: "Ed25519"}[self.algorithm]


def parse_public_key(pem: bytes | str) -> TrustedKey:
    """A cosign public key (PEM) -> TrustedKey; KeyRejected for anything else."""
    raw = pem.encode("utf-8", "replace") if isinstance(pem, str) else bytes(pem)
    if len(raw) > MAX_PEM_BYTES:
        raise KeyRejected(f"a public key is at most {MAX_PEM_BYTES} bytes of PEM; this is {len(raw)}")
    if b"PRIVATE KEY" in raw:
        raise KeyRejected("this is a private key: upload the public key (cosign.pub), never cosign.key")
    if raw.count(b"-----BEGIN ") != 1:
        raise KeyRejected("expected exactly one PEM block '-----BEGIN PUBLIC KEY-----' (the content of cosign.pub)")
    if b"-----BEGIN PUBLIC KEY-----" not in raw:
        raise KeyRejected("expected a PEM 'PUBLIC KEY' block (the content of cosign.pub)")
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyRejected(f"not a readable PEM public key: {str(e)[:200]}") from None
    algorithm = _algorithm(key)
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    canonical = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return TrustedKey("sha256:" + hashlib.sha256(der).hexdigest(), algorithm, canonical.decode(), key)


def _algorithm(key: object) -> KeyAlgorithm:
    if isinstance(key, ec.EllipticCurvePublicKey):
        found = _CURVES.get(key.curve.name)
        if found is None:
            raise KeyRejected(f"ECDSA keys on {key.curve.name} are not supported: use P-256, P-384 or P-521")
        return found
    if isinstance(key, rsa.RSAPublicKey):
        if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
            raise KeyRejected(f"RSA keys of {key.key_size} bits are not supported: "
                              f"use {RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
        return KeyAlgorithm.RSA
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    raise KeyRejected(f"{type(key).__name__.removeprefix('_')} keys are not supported: "
                      "cosign signs with ECDSA (P-256, P-384, P-521), RSA or Ed25519")
