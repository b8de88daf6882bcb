"""The cosign signatures of an image, in the three layouts cosign writes them.

    tag        cosign sign (default): the tag `sha256-<hex>.sig` in the subject's repository holds an
               image manifest whose layers are simple-signing payloads
               (application/vnd.dev.cosign.simplesigning.v1+json), each with its base64 signature in
               the layer annotation `dev.cosignproject.cosign/signature`. Signing again appends a
               layer: one layer, one signature.
    referrer   COSIGN_EXPERIMENTAL=1 cosign sign --registry-referrers-mode=oci-1-1: the same layers in
               a manifest with `subject` = the image and artifactType (and config.mediaType)
               application/vnd.dev.cosign.artifact.sig.v1+json, found through the referrers API.
    bundle     cosign sign --new-bundle-format: a referrer with artifactType
               application/vnd.dev.sigstore.bundle.v0.3+json, one layer holding a sigstore bundle whose
               DSSE envelope wraps an in-toto statement about the image; the manifest annotation
               `dev.sigstore.bundle.predicateType` is https://sigstore.dev/cosign/sign/v1 for a
               signature (`cosign attest --new-bundle-format` writes the same with another predicate
               type: an attestation, not a signature, so not listed here).

Reading is split in two. `parse_signature_manifest` is pure: given a manifest's bytes (and the tag
it was pushed under, if any) it says whether it is a signature manifest, of which subject, and which
layers to read; the registry can call it when a manifest arrives. `find_signatures` walks a subject's
.sig tag and referrers through a `Source` (the caller's storage) and reads each signature's layer,
bounded in size, into a `Signature` for verify.py. Nothing here trusts what it reads: a layer that
is missing, too large or malformed becomes a Signature with a `problem`, which verify.py reports as
invalid; an unreadable manifest is skipped as "not a signature".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from ncr_trio.types import load_json

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "CERTIFICATE_ANNOTATION",
    "COSIGN_SIGN_PREDICATE",
    "MAX_BUNDLE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_SIGNATURE_BYTES",
    "MAX_SIGNATURE_MANIFESTS",
    "MAX_SIGNATURES",
    "MAX_SIGNATURES_PER_MANIFEST",
    "SIGNATURE_ANNOTATION",
    "SIGNATURE_ARTIFACT_TYPE",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "Layer",
    "Layout",
    "Signature",
    "SignatureManifest",
    "Source",
    "find_signatures",
    "parse_signature_manifest",
    "read_signatures",
    "signature_tag",
    "subject_of_tag",
]

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
# Keyless signing (Fulcio): the signing certificate rides along; no registered key can verify it offline.
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

# cosign's payloads are ~250 bytes (more with `-a key=value` annotations); bundles a few KiB (more
# with a certificate chain and transparency log entries). Far beyond both, and still small.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_BUNDLE_BYTES = 256 * 1024
MAX_SIGNATURE_BYTES = 4096  # base64 of a signature: RSA-4096 is 684 characters
# A subject signed by many keys, many times: bounded work per subject all the same.
MAX_SIGNATURES_PER_MANIFEST = 64
MAX_SIGNATURE_MANIFESTS = 128  # manifests read per subject (the .sig tag's and referrers, readable or not)
MAX_SIGNATURES = 256  # signatures read per subject: the first ones found (tag first, then referrers)

_IMAGE_MANIFESTS = ("application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json")
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
_SIG_TAG = re.compile(r"(sha256)-([a-f0-9]{64})\.sig|(sha512)-([a-f0-9]{128})\.sig")


class Layout(StrEnum):
    TAG = "tag"
    REFERRER = "referrer"
    BUNDLE = "bundle"


def signature_tag(subject: str) -> str:
    """The tag cosign stores `subject`'s signatures under: sha256:abc... -> sha256-abc....sig."""
    algorithm, _, encoded = subject.partition(":")
    return f"{algorithm}-{encoded}.sig"


def subject_of_tag(tag: str) -> str | None:
    """The subject digest a `.sig` tag names, None for any other tag."""
    m = _SIG_TAG.fullmatch(tag)
    if m is None:
        return None
    algorithm, encoded = (m[1], m[2]) if m[1] else (m[3], m[4])
    return f"{algorithm}:{encoded}"


@dataclass(frozen=True)
class Layer:
    """One signature inside a signature manifest: the blob to read, and (simple signing) its signature."""

    index: int
    digest: str
    size: int
    signature: str | None  # the base64 annotation; None for a bundle (its signature is inside it)
    problem: str | None = None  # what is wrong with the descriptor itself
    keyless: bool = False  # a certificate annotation: signed keylessly (Fulcio)


@dataclass(frozen=True)
class SignatureManifest:
    """A manifest recognised as holding signatures of `subject`."""

    subject: str
    layout: Layout
    digest: str
    layers: tuple[Layer, ...]
    truncated: bool = False  # more than MAX_SIGNATURES_PER_MANIFEST layers: the rest are not read

    @property
    def limit(self) -> int:
        return MAX_BUNDLE_BYTES if self.layout is Layout.BUNDLE else MAX_PAYLOAD_BYTES


@dataclass(frozen=True)
class Signature:
    """One signature of `subject`, read: `content` is the simple-signing payload or the bundle's JSON.

    `manifest` and `index` identify it (the signature manifest's digest, the layer's position);
    `problem` says why it could not be read (verify.py reports it as invalid)."""

    subject: str
    layout: Layout
    manifest: str
    index: int
    blob: str
    content: bytes
    signature: str | None
    problem: str | None = None
    keyless: bool = False  # simple signing with a certificate annotation (bundles say so inside)


class Source(Protocol):
    """The caller's view of one repository (the subject's): storage reads, no network."""

    async def resolve_tag(self, tag: str) -> str | None:
        """The digest `tag` points at, None when there is no such tag."""
        ...

    async def manifest(self, digest: str) -> bytes | None:
        """A manifest's bytes by digest, None when absent."""
        ...

    async def blob(self, digest: str, limit: int) -> bytes | None:
        """A blob's bytes, None when absent; never more than `limit` + 1 bytes need be read."""
        ...

    async def referrers(self, subject: str) -> Sequence[Mapping[str, Any]]:
        """The descriptors the referrers API lists for `subject` (its image index's `manifests`)."""
        ...


def parse_signature_manifest(raw: bytes, digest: str, tag: str | None = None) -> SignatureManifest | None:
    """`raw` (a manifest whose digest is `digest`, pushed under `tag` if any) as a signature manifest,
    or None when it is not one (or not readable as one)."""
    try:
        doc = load_json(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("mediaType", _IMAGE_MANIFESTS[0]) not in _IMAGE_MANIFESTS:
        return None
    layers = doc.get("layers")
    if not isinstance(layers, list):
        return None
    subject = _subject_digest(doc.get("subject"))
    artifact_type = doc.get("artifactType")
    config = doc.get("config")
    config_type = config.get("mediaType") if isinstance(config, dict) else None
    tagged = subject_of_tag(tag) if tag is not None else None
    if subject is not None and SIGNATURE_ARTIFACT_TYPE in (artifact_type, config_type):
        layout = Layout.REFERRER
    elif subject is not None and artifact_type == BUNDLE_MEDIA_TYPE:
        annotations = doc.get("annotations")
        predicate = annotations.get(BUNDLE_PREDICATE_ANNOTATION) if isinstance(annotations, dict) else None
        if predicate not in (None, COSIGN_SIGN_PREDICATE):
            return None  # an attestation (cosign attest --new-bundle-format)
        layout = Layout.BUNDLE
    elif tagged is not None:
        subject, layout = tagged, Layout.TAG
    else:
        return None
    wanted = BUNDLE_MEDIA_TYPE if layout is Layout.BUNDLE else SIMPLE_SIGNING_MEDIA_TYPE
    found = [(i, d) for i, d in enumerate(layers) if isinstance(d, dict) and d.get("mediaType") == wanted]
    if not found:
        return None
    return SignatureManifest(subject, layout, digest,
                             tuple(_layer(i, d, layout) for i, d in found[:MAX_SIGNATURES_PER_MANIFEST]),
                             truncated=len(found) > MAX_SIGNATURES_PER_MANIFEST)


def _subject_digest(subject: object) -> str | None:
    if not isinstance(subject, dict):
        return None
    digest = subject.get("digest")
    return digest if isinstance(digest, str) and _DIGEST.fullmatch(digest) else None


def _layer(index: int, d: dict[str, Any], layout: Layout) -> Layer:
    digest, size = d.get("digest"), d.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return Layer(index, "", 0, None, "the layer's digest is not a sha256/sha512 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return Layer(index, digest, 0, None, "the layer has no valid size")
    limit = MAX_BUNDLE_BYTES if layout is Layout.BUNDLE else MAX_PAYLOAD_BYTES
    if size > limit:
        return Layer(index, digest, size, None, f"the layer is {size} bytes, more than the {limit} read")
    if layout is Layout.BUNDLE:
        return Layer(index, digest, size, None)
    annotations = d.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    signature = annotations.get(SIGNATURE_ANNOTATION)
    if not isinstance(signature, str) or not signature:
        return Layer(index, digest, size, None, f"the layer has no {SIGNATURE_ANNOTATION} annotation")
    if len(signature) > MAX_SIGNATURE_BYTES:
        return Layer(index, digest, size, None, f"the signature annotation is longer than {MAX_SIGNATURE_BYTES}")
    return Layer(index, digest, size, signature, keyless=isinstance(annotations.get(CERTIFICATE_ANNOTATION), str))


async def read_signatures(manifest: SignatureManifest, source: Source) -> list[Signature]:
    """Each layer of a signature manifest, read through `source` (bounded, its digest checked)."""
    out: list[Signature] = []
    for layer in manifest.layers:
        content, problem = b"", layer.problem
        if problem is None:
            blob = await source.blob(layer.digest, manifest.limit)
            if blob is None:
                problem = f"the layer {layer.digest} is missing"
            elif len(blob) != layer.size:
                problem = f"the layer is {len(blob)} bytes, its descriptor says {layer.size}"
            elif _digest_of(blob, layer.digest) != layer.digest:
                problem = "the layer's content does not match its digest"
            else:
                content = blob
        out.append(Signature(manifest.subject, manifest.layout, manifest.digest, layer.index, layer.digest,
                             content, layer.signature, problem, layer.keyless))
    return out


async def find_signatures(subject: str, source: Source) -> list[Signature]:
    """Every cosign signature of `subject` in its repository: the .sig tag's, then the referrers'
    (in the order the referrers API lists them), each read and ready for verify.py. Bounded: at most
    MAX_SIGNATURE_MANIFESTS manifests read, MAX_SIGNATURES signatures returned."""
    manifests: list[SignatureManifest] = []
    reads = 0
    tagged = await source.resolve_tag(signature_tag(subject))
    if tagged is not None:
        raw = await source.manifest(tagged)
        found = None if raw is None else parse_signature_manifest(raw, tagged, signature_tag(subject))
        if found is not None and found.subject == subject:
            manifests.append(found)
    for descriptor in await source.referrers(subject):
        digest = descriptor.get("digest")
        if descriptor.get("artifactType") not in (SIGNATURE_ARTIFACT_TYPE, BUNDLE_MEDIA_TYPE) \
                or not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            continue
        reads += 1
        if reads > MAX_SIGNATURE_MANIFESTS:
            break
        raw = await source.manifest(digest)
        found = None if raw is None else parse_signature_manifest(raw, digest)
        if found is not None and found.subject == subject and found.layout is not Layout.TAG \
                and all(m.digest != digest for m in manifests):  # a .sig manifest may have a subject too
            manifests.append(found)
    signatures: list[Signature] = []
    for manifest in manifests:
        room = MAX_SIGNATURES - len(signatures)
        if room <= 0:
            break
        signatures.extend(await read_signatures(replace(manifest, layers=manifest.layers[:room]), source))
    return signatures


def _digest_of(data: bytes, like: str) -> str:
    algorithm = like.partition(":")[0]
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
