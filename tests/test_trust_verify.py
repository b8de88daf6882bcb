"""Offline checks of ncr_trio.trust.verify and detect: hostile input never raises, bounds hold, and
the Ed25519ph arithmetic matches RFC 8032's published vector.

The signatures cosign writes are in tests/test_trust_cosign.py; here they are built in the test
with `cryptography` the way cosign builds them (simple signing: a signature over the payload bytes;
bundle: a DSSE signature over the PAE of an in-toto statement), so that every field can be broken.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from ncr_trio.trust import (
    Layout,
    State,
    Status,
    TrustedKey,
    Verdict,
    parse_public_key,
    parse_signature_manifest,
    signature_tag,
    subject_of_tag,
    summarize,
)
from ncr_trio.trust._ed25519ph import verify_ed25519ph
from ncr_trio.trust.verify import verify_bundle, verify_simple_signing

SUBJECT = "sha256:" + hashlib.sha256(b"an image manifest").hexdigest()
OTHER = "sha256:" + hashlib.sha256(b"another image manifest").hexdigest()
PRIVATE = ec.generate_private_key(ec.SECP256R1())
KEY = parse_public_key(PRIVATE.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def ecdsa(data: bytes) -> str:
    return base64.b64encode(PRIVATE.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def payload(subject: str = SUBJECT) -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": "example.test/app"},
                                    "image": {"docker-manifest-digest": subject},
                                    "type": "cosign container image signature"}, "optional": None}).encode()


def pae(payload_type: str, body: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(body), body)


def bundle_doc(subject: str = SUBJECT, key: TrustedKey = KEY) -> dict[str, Any]:
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                            "subject": [{"digest": {"sha256": subject.split(":")[1]}}],
                            "predicateType": "https://sigstore.dev/cosign/sign/v1"}).encode()
    return {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"publicKey": {"hint": key.hint}},
            "dsseEnvelope": {"payload": base64.b64encode(statement).decode(),
                             "payloadType": "application/vnd.in-toto+json",
                             "signatures": [{"sig": ecdsa(pae("application/vnd.in-toto+json", statement))}]}}


def as_bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_baseline_signatures_verify() -> None:
    """The documents the fuzzing below starts from are good ones."""
    p = payload()
    assert verify_simple_signing(p, ecdsa(p), SUBJECT, [KEY]) == Verdict(Status.VERIFIED, (KEY.id,))
    assert verify_bundle(as_bytes(bundle_doc()), SUBJECT, [KEY]) == Verdict(Status.VERIFIED, (KEY.id,))
    # The claim is checked against the subject the caller gives, not the one the document names.
    assert verify_simple_signing(payload(OTHER), ecdsa(payload(OTHER)), SUBJECT, [KEY]).status is Status.INVALID
    assert verify_bundle(as_bytes(bundle_doc(OTHER)), SUBJECT, [KEY]).status is Status.INVALID


def test_rfc8032_ed25519ph_vector() -> None:
    """RFC 8032 section 7.3, the one Ed25519ph test vector ("abc")."""
    public = bytes.fromhex("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
    signature = bytes.fromhex("98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
                              "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406")
    assert verify_ed25519ph(public, signature, b"abc")
    assert not verify_ed25519ph(public, signature, b"abd")
    assert not verify_ed25519ph(public, signature[:63] + bytes([signature[63] ^ 1]), b"abc")
    assert not verify_ed25519ph(public, signature[:32] + b"\xff" * 32, b"abc")  # S >= L
    assert not verify_ed25519ph(public[:31], signature, b"abc")
    assert not verify_ed25519ph(b"\xff" * 32, signature, b"abc")  # not a point


def test_pure_ed25519_still_verifies() -> None:
    """Older cosign signed Ed25519 keys with pure Ed25519: both variants are accepted."""
    private = ed25519.Ed25519PrivateKey.generate()
    key = parse_public_key(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    p = payload()
    good = base64.b64encode(private.sign(p)).decode()
    assert verify_simple_signing(p, good, SUBJECT, [key]).keys == (key.id,)
    assert verify_simple_signing(p + b" ", good, SUBJECT, [key]).status is Status.INVALID


def test_huge_and_deep_fields_are_bounded() -> None:
    p = payload()
    sig = ecdsa(p)
    doc = bundle_doc()
    doc["dsseEnvelope"]["signatures"] = [{"sig": ecdsa(b"x")}] * 1000
    many_signatures = as_bytes(doc)
    doc = bundle_doc()
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(
        {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://sigstore.dev/cosign/sign/v1",
         "subject": [{"digest": {"sha256": "0" * 64}}] * 1100}).encode()).decode()
    many_subjects = as_bytes(doc)
    deep = b"[" * 30_000 + b"]" * 30_000  # within the size bound, past any parser's recursion
    cases = [
        (verify_simple_signing(p + b" " * 10_000_000, sig, SUBJECT, [KEY]), "payload is larger than"),
        (verify_simple_signing(p, "A" * 5_000_000, SUBJECT, [KEY]), "signature is longer than"),
        (verify_simple_signing(deep, sig, SUBJECT, [KEY]), "nested deeper"),
        (verify_simple_signing(b'{"critical": ' * 4000, sig, SUBJECT, [KEY]), "nested deeper"),
        (verify_simple_signing(json.dumps({"critical": {"image": {"docker-manifest-digest": "9" * 50_000}}})
                               .encode(), sig, SUBJECT, [KEY]), "the payload signs '999"),
        (verify_bundle(b" " * 10_000_000, SUBJECT, [KEY]), "bundle is larger than"),
        (verify_bundle(b"{" * 60_000, SUBJECT, [KEY]), "nested deeper"),
        (verify_bundle(many_signatures, SUBJECT, [KEY]), "has 1000 signatures"),
        (verify_bundle(many_subjects, SUBJECT, [KEY]), "more than 1024 subjects"),
    ]
    for verdict, reason in cases:
        assert verdict.status is Status.INVALID and reason in verdict.reason, verdict
        assert len(verdict.reason) <= 300


# Values of every JSON type, including ones that are wrong everywhere.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


BUNDLE = bundle_doc()
PAYLOAD = json.loads(payload())


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_field_of_a_bundle_replaced_never_raises(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(paths(BUNDLE)))
    value = data.draw(json_values | st.text(alphabet="ABCD+/=_-!", max_size=20))
    doc = replaced(BUNDLE, path, value)
    verdict = verify_bundle(as_bytes(doc), SUBJECT, [KEY])
    assert verdict.reason.isprintable() and len(verdict.reason) <= 300, verdict
    if verdict.status is Status.VERIFIED:  # only changes that keep the signed content and claim
        assert base64.b64decode(doc["dsseEnvelope"]["payload"]) == base64.b64decode(BUNDLE["dsseEnvelope"]["payload"])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_field_of_a_payload_replaced_never_raises(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(paths(PAYLOAD)))
    changed = as_bytes(replaced(PAYLOAD, path, data.draw(json_values)))
    signature = data.draw(st.sampled_from([ecdsa(payload()), ecdsa(changed)]) | st.text(max_size=100))
    verdict = verify_simple_signing(changed, signature, SUBJECT, [KEY])
    assert verdict.reason.isprintable() and len(verdict.reason) <= 300, verdict
    if verdict.status is Status.VERIFIED:
        assert json.loads(changed)["critical"]["image"]["docker-manifest-digest"] == SUBJECT


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=120))
def test_arbitrary_bytes_never_raise_and_never_verify(content: bytes, signature: str) -> None:
    assert verify_simple_signing(content, signature, SUBJECT, [KEY]).status is not Status.VERIFIED
    assert verify_bundle(content, SUBJECT, [KEY]).status is not Status.VERIFIED
    assert parse_signature_manifest(content, SUBJECT, signature_tag(SUBJECT)) is None or content.startswith(b"{")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_signature_manifests_with_any_field_replaced_never_raise(data: st.DataObject) -> None:
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.dev.cosign.artifact.sig.v1+json", "size": 2,
                           "digest": OTHER},
                "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": 250,
                            "digest": OTHER, "annotations": {"dev.cosignproject.cosign/signature": "AAAA"}}],
                "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10, "digest": SUBJECT},
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"}
    found = parse_signature_manifest(as_bytes(manifest), OTHER)
    assert found is not None and found.layout is Layout.REFERRER and found.subject == SUBJECT
    path = data.draw(st.sampled_from(paths(manifest)))
    parse_signature_manifest(as_bytes(replaced(manifest, path, data.draw(json_values))), OTHER,
                             data.draw(st.none() | st.just(signature_tag(SUBJECT)) | st.text(max_size=80)))


def test_signature_tags() -> None:
    assert signature_tag(SUBJECT) == f"sha256-{SUBJECT[7:]}.sig"
    assert subject_of_tag(signature_tag(SUBJECT)) == SUBJECT
    sha512 = "sha512:" + "a" * 128
    assert subject_of_tag(signature_tag(sha512)) == sha512
    for tag in ["latest", f"sha256-{SUBJECT[7:]}.att", f"sha256-{SUBJECT[7:-1]}.sig", f"sha256-{SUBJECT[7:]}.sig.x",
                f"SHA256-{SUBJECT[7:]}.sig"]:
        assert subject_of_tag(tag) is None, tag


@pytest.mark.parametrize(("statuses", "state"), [
    ([], State.UNSIGNED),
    ([Status.INVALID], State.INVALID),
    ([Status.INVALID, Status.UNVERIFIED], State.SIGNED),
    ([Status.UNVERIFIED, Status.UNVERIFIED], State.SIGNED),
    ([Status.INVALID, Status.VERIFIED], State.VERIFIED),
])
def test_an_images_state(statuses: list[Status], state: State) -> None:
    verdicts = [Verdict(s, ("sha256:k",) if s is Status.VERIFIED else ()) for s in statuses]
    summary = summarize(verdicts)
    assert (summary.state, summary.signatures) == (state, len(statuses))
    assert summary.keys == (("sha256:k",) if state is State.VERIFIED else ())


def test_keyless_signatures_say_why_they_are_not_verified() -> None:
    """A keyless (Fulcio certificate) signature verifies with no registered key offline: its reason
    says so, rather than blaming the keys."""
    doc = bundle_doc()
    del doc["verificationMaterial"]["publicKey"]
    doc["verificationMaterial"]["certificate"] = {"rawBytes": "MIIB"}
    other = parse_public_key(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    verdict = verify_bundle(as_bytes(doc), SUBJECT, [other])
    assert verdict.status is Status.UNVERIFIED and "keyless" in verdict.reason, verdict
    assert verify_bundle(as_bytes(doc), SUBJECT, [other, KEY]).keys == (KEY.id,)
    p = payload()
    verdict = verify_simple_signing(p, ecdsa(p), SUBJECT, [other], keyless=True)
    assert verdict.status is Status.UNVERIFIED and "keyless" in verdict.reason, verdict
    assert "keyless" not in verify_simple_signing(p, ecdsa(p), SUBJECT, [other]).reason
    # The certificate annotation of a simple-signing layer is what marks it keyless.
    layer = {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": len(p), "digest": OTHER,
             "annotations": {"dev.cosignproject.cosign/signature": ecdsa(p)}}
    for certificate, keyless in [(None, False), ("-----BEGIN CERTIFICATE-----\n...", True)]:
        if certificate is not None:
            layer["annotations"]["dev.sigstore.cosign/certificate"] = certificate
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": OTHER},
                    "layers": [layer]}
        found = parse_signature_manifest(as_bytes(manifest), OTHER, signature_tag(SUBJECT))
        assert found is not None and found.layout is Layout.TAG and found.subject == SUBJECT
        assert [entry.keyless for entry in found.layers] == [keyless]
