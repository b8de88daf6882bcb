"""Manifests, tags and referrers: validation, storage, lookup.

Validation follows image-spec and the Docker schema 2 spec: a manifest is a JSON object whose
media type comes from its `mediaType` field or, when it has none (Helm charts), from the request's
`Content-Type`; the two must agree when both are present. Each descriptor needs a media type, a
valid digest and a non-negative size. Every blob and child manifest referenced must already be in
the repository (MANIFEST_BLOB_UNKNOWN); a `subject` need not exist (distribution-spec 1.1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ncr_trio.errors import RegistryError
from ncr_trio.meta import ManifestRecord, Reference
from ncr_trio.meta.store import Protected
from ncr_trio.registry.context import Registry
from ncr_trio.registry.protection import Protection, denied
from ncr_trio.types import Digest, MediaType, load_json, parse_reference


@dataclass(frozen=True)
class PutManifest:
    digest: Digest
    subject: str | None
    created: bool


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail=detail or None)


def _unknown(reference: str) -> RegistryError:
    return RegistryError("MANIFEST_UNKNOWN", detail={"reference": reference[:200]})


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        Digest.parse(digest)
    except RegistryError:
        raise _invalid(f"{where}.digest {digest[:160]!r} is not a valid digest") from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    annotations = value.get("annotations")
    if annotations is not None and not _string_map(annotations):
        raise _invalid(f"{where}.annotations must map strings to strings")
    return value


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _descriptors(doc: dict[str, Any], field: str) -> list[dict[str, Any]]:
    items = doc.get(field)
    if not isinstance(items, list):
        raise _invalid(f"{field} must be an array of descriptors")
    return [_descriptor(d, f"{field}[{i}]") for i, d in enumerate(items)]


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    field = doc.get("mediaType")
    if field is not None and not isinstance(field, str):
        raise _invalid("mediaType must be a string")
    header = (content_type or "").split(";")[0].strip().lower() or None
    if header in (None, MediaType.OCTET_STREAM, "application/json"):
        header = None
    if field and header and field != header:
        raise _invalid(f"mediaType {field!r} does not match Content-Type {header!r}")
    media_type = field or header
    if media_type is None:
        raise _invalid("the manifest has no mediaType field and the request no Content-Type")
    return media_type


def parse_manifest(content: bytes, content_type: str | None, digest: Digest) -> tuple[ManifestRecord, list[Reference]]:
    try:
        doc = load_json(content)
    except ValueError as e:  # not UTF-8, not JSON, or nested too deep
        raise _invalid(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _invalid("a manifest is a JSON object")
    media_type = _media_type(doc, content_type)
    if media_type in (MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED):
        raise _invalid("Docker schema 1 manifests are not supported: push schema 2 or OCI")
    if media_type not in MediaType.MANIFESTS:
        raise _invalid(f"unsupported manifest media type {media_type[:200]!r}")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")

    refs: list[Reference] = []
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    if media_type in MediaType.IMAGES:
        config = _descriptor(doc.get("config"), "config")
        layers = _descriptors(doc, "layers")
        refs.append(Reference(config["digest"], "blob"))
        # Foreign (non-distributable) layers with URLs live elsewhere and are not required here.
        refs.extend(Reference(layer["digest"], "blob") for layer in layers if not layer.get("urls"))
        if artifact_type is None and media_type == MediaType.OCI_MANIFEST:
            artifact_type = config["mediaType"]
    else:
        refs.extend(Reference(m["digest"], "manifest") for m in _descriptors(doc, "manifests"))

    subject = None
    if "subject" in doc:
        if media_type not in (MediaType.OCI_MANIFEST, MediaType.OCI_INDEX):
            raise _invalid("only OCI manifests and indexes may have a subject")
        subject = _descriptor(doc["subject"], "subject")["digest"]
    annotations = doc.get("annotations")
    if annotations is not None and not _string_map(annotations):
        raise _invalid("annotations must map strings to strings")

    record = ManifestRecord(
        digest=str(digest), media_type=media_type, size=len(content), content=content,
        artifact_type=artifact_type, subject=subject,
        annotations=json.dumps(annotations) if annotations else None,
    )
    return record, refs


def compute_digest(content: bytes, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, content).hexdigest())


class Manifests:
    def __init__(self, reg: Registry, protection: Protection | None = None) -> None:
        self.reg = reg
        self.protection = protection

    async def put(self, repository: str, reference: str, content: bytes, content_type: str | None) -> PutManifest:
        ref = parse_reference(reference)
        if len(content) > self.reg.config.max_manifest_bytes:
            raise RegistryError("SIZE_INVALID", f"manifests are limited to {self.reg.config.max_manifest_bytes} bytes",
                                status=413)
        if isinstance(ref, Digest):
            digest = compute_digest(content, ref.algorithm)
            if digest != ref:
                raise RegistryError("DIGEST_INVALID", "the manifest's digest does not match the reference",
                                    detail={"expected": str(ref), "computed": str(digest)})
            tag = None
        else:
            digest, tag = compute_digest(content), ref
        record, refs = parse_manifest(content, content_type, digest)
        guard = await self.protection.guard(repository) if tag is not None and self.protection else None
        try:
            result = await self.reg.meta.put_manifest(repository, record, refs, tag, guard)
        except Protected as e:
            raise denied(e) from None
        if result.missing:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", detail={"missing": list(result.missing)[:20]})
        return PutManifest(digest, record.subject, result.created)

    async def get(self, repository: str, reference: str) -> ManifestRecord:
        try:
            ref = parse_reference(reference)
        except RegistryError:
            # Neither a tag nor a digest: no manifest can have it (404 as in Distribution; only a
            # push with such a reference is the client's mistake, TAG_INVALID or DIGEST_INVALID).
            raise _unknown(reference) from None
        if isinstance(ref, Digest):
            record = await self.reg.meta.get_manifest(repository, str(ref))
        else:
            record = await self.reg.meta.get_tagged_manifest(repository, ref)
        if record is None:
            raise _unknown(reference)
        return record

    async def delete(self, repository: str, reference: str) -> None:
        ref = parse_reference(reference)
        guard = await self.protection.guard(repository) if self.protection else None
        try:
            if isinstance(ref, Digest):
                found = await self.reg.meta.delete_manifest(repository, str(ref), guard)
            else:
                found = await self.reg.meta.delete_tag(repository, ref, guard)
        except Protected as e:
            raise denied(e) from None
        if not found:
            raise _unknown(reference)

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        tags = await self.reg.meta.list_tags(repository, limit, last)
        if tags is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": repository})
        return tags

    async def referrers(self, repository: str, digest: Digest, artifact_type: str | None) -> dict[str, Any]:
        descriptors = []
        for m in await self.reg.meta.referrers(repository, str(digest)):
            if artifact_type is not None and m.artifact_type != artifact_type:
                continue
            d: dict[str, Any] = {"mediaType": m.media_type, "digest": m.digest, "size": m.size}
            if m.artifact_type:
                d["artifactType"] = m.artifact_type
            if m.annotations:
                d["annotations"] = json.loads(m.annotations)
            descriptors.append(d)
        return {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": descriptors}


__all__ = ["Manifests", "PutManifest", "compute_digest", "parse_manifest"]
