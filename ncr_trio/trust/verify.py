"""Offline verification of cosign signatures against trusted public keys (no network, no Rekor).

Simple signing (the tag and referrer layouts): the layer's annotation is the base64 signature over
the exact payload bytes, and the payload's `critical.image.docker-manifest-digest` must be the
subject's digest. The `docker-reference` is not compared (as `cosign verify` does not): a signature
stays valid when the image is replicated, cached or copied under another name.

Bundle (`--new-bundle-format`): the DSSE envelope's signature is over its PAE,

    "DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload

and the payload, an in-toto statement of predicate type https://sigstore.dev/cosign/sign/v1, must
name the subject's digest among its `subject` entries.

A verdict per signature:

    verified    one or more trusted keys verify it (`keys`: their IDs)
    invalid     unreadable or malformed; a claim about another image (e.g. a signature copied from
                one image's .sig to another's); or, with trusted keys to check it against, none of
                them verifies it: altered bytes, or a key that is not trusted (a simple signature
                names no key, so the two cannot be told apart; the reason says which when a bundle
                names its key)
    unverified  well formed and about this image, with nothing to check it against: no trusted
                keys at all, or a keyless (certificate) signature, which needs Sigstore's services

Verification never raises on what it reads: every field is checked for type and size, base64 and
JSON errors become "invalid" with a reason. Synchronous and CPU-bound (microseconds per key, a few
milliseconds for Ed25519ph): the server runs it in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ncr_trio.trust._ed25519ph import verify_ed25519ph
from ncr_trio.trust.detect import (
    COSIGN_SIGN_PREDICATE,
    MAX_BUNDLE_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURE_BYTES,
    Layout,
    Signature,
)
from ncr_trio.trust.keys import KeyAlgorithm, TrustedKey
from ncr_trio.types import load_json

__all__ = ["State", "Status", "Summary", "Verdict", "summarize", "verify", "verify_bundle", "verify_simple_signing"]

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_BUNDLE_MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle"
_MAX_DSSE_SIGNATURES = 16
_MAX_STATEMENT_SUBJECTS = 1024
_MAX_REASON = 300


class Status(StrEnum):
    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    INVALID = "invalid"


@dataclass(frozen=True)
class Verdict:
    status: Status
    keys: tuple[str, ...] = ()  # IDs of the trusted keys that verify it
    reason: str = ""  # why it is not verified (empty when it is)


class _Invalid(Exception):
    """Raised inside this module only, caught in `verify_*`: the reason a signature is invalid."""


def verify(signature: Signature, keys: Sequence[TrustedKey]) -> Verdict:
    """The verdict on one detected signature (detect.find_signatures) against the trusted `keys`."""
    if signature.problem is not None:
        return Verdict(Status.INVALID, reason=signature.problem[:_MAX_REASON])
    if signature.layout is Layout.BUNDLE:
        return verify_bundle(signature.content, signature.subject, keys)
    return verify_simple_signing(signature.content, signature.signature or "", signature.subject, keys,
                                 keyless=signature.keyless)


def verify_simple_signing(payload: bytes, signature_b64: str, subject: str, keys: Sequence[TrustedKey], *,
                          keyless: bool = False) -> Verdict:
    """A simple-signing payload and its base64 signature (the layer annotation), for `subject`;
    `keyless`: the layer carries a signing certificate (only the reason of a failure changes)."""
    try:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise _Invalid(f"the payload is larger than {MAX_PAYLOAD_BYTES} bytes")
        raw_signature = _b64(signature_b64, "the signature", MAX_SIGNATURE_BYTES)
        claim = _json_object(payload, "the payload")
        critical = _field(claim, "critical", dict, "the payload")
        image = _field(critical, "image", dict, "the payload's critical")
        named = _field(image, "docker-manifest-digest", str, "the payload's critical.image")
        if named != subject:
            raise _Invalid(f"the payload signs {_shown(named)}, not this image ({subject})")
    except _Invalid as e:
        return Verdict(Status.INVALID, reason=str(e)[:_MAX_REASON])
    return _judge([k.id for k in keys if _signed_by(k, raw_signature, payload)], keys, None, keyless)


def verify_bundle(bundle: bytes, subject: str, keys: Sequence[TrustedKey]) -> Verdict:
    """A sigstore bundle (v0.3 JSON, DSSE envelope over an in-toto statement), for `subject`."""
    try:
        if len(bundle) > MAX_BUNDLE_BYTES:
            raise _Invalid(f"the bundle is larger than {MAX_BUNDLE_BYTES} bytes")
        doc = _json_object(bundle, "the bundle")
        media_type = _field(doc, "mediaType", str, "the bundle")
        if not media_type.startswith(_BUNDLE_MEDIA_TYPE_PREFIX):
            raise _Invalid(f"the bundle's media type is {_shown(media_type)}, not a sigstore bundle")
        envelope = doc.get("dsseEnvelope", doc.get("dsse_envelope"))
        if envelope is None:
            raise _Invalid("the bundle holds no DSSE envelope (a message signature is not an image signature)")
        if not isinstance(envelope, dict):
            raise _Invalid("the bundle's dsseEnvelope is not an object")
        payload_type = _field(envelope, "payloadType", str, "the DSSE envelope")
        if payload_type != INTOTO_PAYLOAD_TYPE:
            raise _Invalid(f"the DSSE payload type is {_shown(payload_type)}, not {INTOTO_PAYLOAD_TYPE}")
        payload = _b64(_field(envelope, "payload", str, "the DSSE envelope"), "the DSSE payload",
                       MAX_BUNDLE_BYTES)
        signatures = _field(envelope, "signatures", list, "the DSSE envelope")
        if not signatures or len(signatures) > _MAX_DSSE_SIGNATURES:
            raise _Invalid(f"the DSSE envelope has {len(signatures)} signatures (1 to {_MAX_DSSE_SIGNATURES})")
        raw_signatures = [_b64(_field(s, "sig", str, "a DSSE signature") if isinstance(s, dict) else None,
                               "a DSSE signature", MAX_SIGNATURE_BYTES) for s in signatures]
        _check_statement(_json_object(payload, "the in-toto statement"), subject)
        hint = _hint(doc)
        keyless = _keyless(doc)
    except _Invalid as e:
        return Verdict(Status.INVALID, reason=str(e)[:_MAX_REASON])
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type.encode()), payload_type.encode(), len(payload), payload)
    verified = [k.id for k in keys if any(_signed_by(k, sig, pae) for sig in raw_signatures)]
    return _judge(verified, keys, hint, keyless)


def _check_statement(statement: dict[str, Any], subject: str) -> None:
    kind = _field(statement, "_type", str, "the statement")
    if not kind.startswith("https://in-toto.io/Statement/"):
        raise _Invalid(f"the DSSE payload is not an in-toto statement (_type {_shown(kind)})")
    predicate = _field(statement, "predicateType", str, "the statement")
    if predicate != COSIGN_SIGN_PREDICATE:
        raise _Invalid(f"the statement's predicate type is {_shown(predicate)}, not a cosign signature")
    subjects = _field(statement, "subject", list, "the statement")
    if len(subjects) > _MAX_STATEMENT_SUBJECTS:
        raise _Invalid(f"the statement names more than {_MAX_STATEMENT_SUBJECTS} subjects")
    algorithm, _, encoded = subject.partition(":")
    named: list[str] = []
    for entry in subjects:
        digests = entry.get("digest") if isinstance(entry, dict) else None
        if isinstance(digests, dict):
            value = digests.get(algorithm)
            if value == encoded:
                return
            named.extend(_shown(f"{a}:{v}") for a, v in list(digests.items())[:4] if isinstance(v, str))
    raise _Invalid(f"the statement is about {', '.join(named[:3]) or 'no digest'}, not this image ({subject})")


def _material(bundle: dict[str, Any]) -> dict[str, Any]:
    material = bundle.get("verificationMaterial", bundle.get("verification_material"))
    return material if isinstance(material, dict) else {}


def _keyless(bundle: dict[str, Any]) -> bool:
    material = _material(bundle)
    return any(name in material for name in ("certificate", "x509CertificateChain", "x509_certificate_chain"))


def _shown(text: str) -> str:
    """Text from a signature, in a reason: quoted and escaped (no control characters), at most 80 characters."""
    return repr(text[:80])


def _hint(bundle: dict[str, Any]) -> str | None:
    public_key = _material(bundle).get("publicKey", _material(bundle).get("public_key"))
    hint = public_key.get("hint") if isinstance(public_key, dict) else None
    return hint if isinstance(hint, str) else None


def _judge(verified: list[str], keys: Sequence[TrustedKey], hint: str | None, keyless: bool) -> Verdict:
    if verified:
        return Verdict(Status.VERIFIED, tuple(verified))
    named = next((k for k in keys if hint is not None and k.hint == hint), None)
    if named is not None:
        return Verdict(Status.INVALID, reason=f"the signature does not verify with the trusted key {named.id}, "
                                              "which the bundle names as its signer")
    if keyless:
        return Verdict(Status.UNVERIFIED, reason="a keyless (certificate) signature: it needs Sigstore's "
                                                 "certificate authority and transparency log, not checked here")
    if not keys:
        return Verdict(Status.UNVERIFIED, reason="no trusted keys to verify it with")
    if hint is not None:
        return Verdict(Status.INVALID, reason=f"signed by the key {_shown(_key_id(hint))}, which is not trusted "
                                              f"(none of the {len(keys)} trusted keys verifies it)")
    return Verdict(Status.INVALID, reason=f"none of the {len(keys)} trusted keys verifies it "
                                          "(signed by another key, or altered)")


def _key_id(hint: str) -> str:
    """A bundle's key hint as a key ID (the hint itself when it is not the base64 of a SHA-256)."""
    try:
        raw = base64.b64decode(hint, validate=True)
    except (binascii.Error, ValueError):
        return hint
    return "sha256:" + raw.hex() if len(raw) == 32 else hint


def _signed_by(key: TrustedKey, signature: bytes, message: bytes) -> bool:
    """Whether `signature` over `message` verifies with `key`, the way cosign signs with that key type."""
    k = key.key
    try:
        if isinstance(k, ec.EllipticCurvePublicKey):
            hash_ = {KeyAlgorithm.ECDSA_P256: hashes.SHA256(), KeyAlgorithm.ECDSA_P384: hashes.SHA384(),
                     KeyAlgorithm.ECDSA_P521: hashes.SHA512()}[key.algorithm]
            k.verify(signature, message, ec.ECDSA(hash_))
        elif isinstance(k, rsa.RSAPublicKey):
            k.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(k, ed25519.Ed25519PublicKey):
            raw = k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if verify_ed25519ph(raw, signature, message):
                return True
            k.verify(signature, message)  # pure Ed25519: cosign before Ed25519ph became its default
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64(text: object, what: str, limit: int) -> bytes:
    """Standard base64 (what cosign writes), or base64url (protobuf JSON accepts both), at most `limit`
    decoded bytes."""
    if not isinstance(text, str):
        raise _Invalid(f"{what} is missing or not a string")
    if len(text) > (limit * 4) // 3 + 4:
        raise _Invalid(f"{what} is longer than {limit} bytes")
    data: bytes | None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = None
    if data is None and not set(text) - _URLSAFE:
        try:
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            data = None
    if data is None:
        raise _Invalid(f"{what} is not valid base64")
    if not data:
        raise _Invalid(f"{what} decodes from base64 to nothing")
    return data


_URLSAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = load_json(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise _Invalid(f"{what} is not valid JSON ({str(e)[:100]})") from None
    if not isinstance(doc, dict):
        raise _Invalid(f"{what} is not a JSON object")
    return doc


_T = TypeVar("_T")


def _field(doc: dict[str, Any], name: str, kind: type[_T], where: str) -> _T:
    value = doc.get(name)
    if not isinstance(value, kind):
        raise _Invalid(f"{where} has no {name}" if value is None else f"{where}'s {name} is not a {kind.__name__}")
    return value


# -- the state of an image (the API's `signed` field and the console column) ------------------------


class State(StrEnum):
    UNSIGNED = "unsigned"
    SIGNED = "signed"  # signatures, none verified, not all invalid
    VERIFIED = "verified"
    INVALID = "invalid"  # signatures, every one invalid


@dataclass(frozen=True)
class Summary:
    state: State
    signatures: int
    keys: tuple[str, ...]  # the trusted keys that verify at least one signature


def summarize(verdicts: Iterable[Verdict]) -> Summary:
    """An image's state from its signatures' verdicts: verified as soon as one is."""
    verdicts = list(verdicts)
    keys = tuple(dict.fromkeys(k for v in verdicts for k in v.keys))
    if not verdicts:
        state = State.UNSIGNED
    elif keys:
        state = State.VERIFIED
    elif all(v.status is Status.INVALID for v in verdicts):
        state = State.INVALID
    else:
        state = State.SIGNED
    return Summary(state, len(verdicts), keys)
