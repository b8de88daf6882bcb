"""Accessories: the manifests that are about another artifact of their repository, and live and die with it.

An accessory of a subject S (in the same repository) is
  - a manifest whose `subject` is S (OCI 1.1 referrers: cosign's `--registry-referrers-mode=oci-1-1`
    signatures, sigstore bundles, attestations, SBOMs, any other referrer), or
  - a manifest tagged `<algorithm>-<hex>.sig`, `.att` or `.sbom` (cosign's legacy layout), S being the
    digest the tag names.

While S exists, its accessories are not artifacts of their own: the artifact list leaves them out and
lists them under S (`accessories`), deleting S deletes them (with their `.sig` tag: `_delete_manifest`
in store.py), garbage collection keeps them (a live subject or their tag), and cleanup policies
neither count nor select them (registry/policies.py). A manifest whose subject is not in the
repository (cosign's `COSIGN_REPOSITORY` puts signatures in another repository; a subject deleted
before this rule) is an ordinary artifact, so an image made only of accessories still lists them.

The SQL here is shared by the catalog (listing), the store (cascade) and cleanup; it is portable
between SQLite and PostgreSQL (substr, ||, EXISTS).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ncr_trio.meta.db import Tx

# What a legacy tag's extension says the accessory is.
TAG_KINDS = {"sig": "signature", "att": "attestation", "sbom": "sbom"}
_TAG = re.compile(r"(sha256)-([a-f0-9]{64})\.(sig|att|sbom)|(sha512)-([a-f0-9]{128})\.(sig|att|sbom)")

SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
MAX_PER_PAGE = 2000  # accessories read for one page of artifacts (each subject's newest first)
MAX_CASCADE = 10_000  # accessories deleted with one subject (and theirs), in its transaction


def tag_subject(tag: str) -> tuple[str, str] | None:
    """(subject digest, kind) a cosign accessory tag names, None for any other tag."""
    m = _TAG.fullmatch(tag)
    if m is None:
        return None
    algorithm, encoded, ext = (m[1], m[2], m[3]) if m[1] else (m[4], m[5], m[6])
    return f"{algorithm}:{encoded}", TAG_KINDS[ext]


def accessory_tags(digest: str) -> list[str]:
    """The cosign tags an accessory of `digest` may have."""
    algorithm, _, encoded = digest.partition(":")
    return [f"{algorithm}-{encoded}.{ext}" for ext in TAG_KINDS]


def referrer_kind(artifact_type: str | None, annotations: str | None) -> str:
    """What a referrer is, from its artifact type (and a sigstore bundle's predicate type)."""
    t = (artifact_type or "").lower()
    if t == SIGNATURE_ARTIFACT_TYPE:
        return "signature"
    if t == BUNDLE_MEDIA_TYPE:
        try:
            found = json.loads(annotations or "{}")
        except ValueError:
            found = {}
        predicate = found.get(BUNDLE_PREDICATE_ANNOTATION) if isinstance(found, dict) else None
        return "signature" if predicate == COSIGN_SIGN_PREDICATE else "attestation"
    if "in-toto" in t or ".att." in t or "attestation" in t:
        return "attestation"
    if "spdx" in t or "cyclonedx" in t or "sbom" in t:
        return "sbom"
    return "referrer"


def _tag_names_live_subject(tag: str, manifest: str) -> str:
    """SQL: tag `tag` (an alias of tags) is a cosign accessory tag whose subject is in the repository of
    manifests alias `manifest`."""
    checks = []
    for algorithm, hex_len in (("sha256", 64), ("sha512", 128)):
        checks.append(
            f"(substr({tag}.name, 1, 7) = '{algorithm}-' AND substr({tag}.name, {8 + hex_len}) IN "
            f"('.sig', '.att', '.sbom') AND EXISTS (SELECT 1 FROM manifests s2 WHERE s2.repo_id = {manifest}.repo_id "
            f"AND s2.digest = '{algorithm}:' || substr({tag}.name, 8, {hex_len})))")
    return "(" + " OR ".join(checks) + ")"


def is_accessory_sql(m: str = "m") -> str:
    """SQL: manifest alias `m` is an accessory of an artifact of its repository."""
    return (f"(({m}.subject IS NOT NULL AND EXISTS (SELECT 1 FROM manifests s1 WHERE s1.repo_id = {m}.repo_id "
            f"AND s1.digest = {m}.subject)) OR EXISTS (SELECT 1 FROM tags ta WHERE ta.repo_id = {m}.repo_id "
            f"AND ta.digest = {m}.digest AND {_tag_names_live_subject('ta', m)}))")


@dataclass(frozen=True)
class Accessory:
    subject: str
    digest: str
    type: str  # "signature" | "attestation" | "sbom" | "referrer"
    tag: str | None
    artifact_type: str | None
    size: int  # the manifest and its blobs
    pushed_at: float


def _marks(n: int) -> str:
    return ",".join("?" * n)


def direct_accessories(tx: Tx, repo_id: int, subjects: Sequence[str]) -> dict[str, list[Accessory]]:
    """Each subject's accessories (referrers, then tagged ones, each newest first), up to MAX_PER_PAGE."""
    if not subjects:
        return {}
    found: list[tuple[str, str, str, str | None, str | None, int, float]] = []
    for digest, subject, artifact_type, notes, size, created in tx.all(
            "SELECT digest, subject, artifact_type, annotations, size, created_at FROM manifests "
            f"WHERE repo_id = ? AND subject IN ({_marks(len(subjects))}) ORDER BY created_at DESC, digest LIMIT ?",
            [repo_id, *subjects, MAX_PER_PAGE]):
        found.append((str(subject), str(digest), referrer_kind(artifact_type, notes), None,
                      artifact_type, int(size), float(created)))
    names = [name for s in subjects for name in accessory_tags(s)]
    for name, digest, artifact_type, size, created in tx.all(
            "SELECT t.name, t.digest, m.artifact_type, m.size, m.created_at FROM tags t JOIN manifests m ON "
            f"m.repo_id = t.repo_id AND m.digest = t.digest WHERE t.repo_id = ? AND t.name IN ({_marks(len(names))}) "
            "ORDER BY m.created_at DESC, t.name LIMIT ?", [repo_id, *names, MAX_PER_PAGE]):
        named = tag_subject(str(name))
        assert named is not None
        found.append((named[0], str(digest), named[1], str(name), artifact_type, int(size), float(created)))
    blob_sizes: dict[str, int] = {}
    digests = sorted({f[1] for f in found})
    if digests:
        blob_sizes = {str(p): int(s) for p, s in tx.all(
            "SELECT x.parent, COALESCE(SUM(b.size), 0) FROM manifest_refs x JOIN blobs b ON b.digest = x.child "
            f"WHERE x.repo_id = ? AND x.kind = 'blob' AND x.parent IN ({_marks(len(digests))}) GROUP BY x.parent",
            [repo_id, *digests])}
    out: dict[str, list[Accessory]] = {}
    for subject, digest, kind, tag, artifact_type, size, created in found:
        out.setdefault(subject, []).append(Accessory(subject, digest, kind, tag, artifact_type,
                                                     size + blob_sizes.get(digest, 0), created))
    return out


def accessory_digests(tx: Tx, repo_id: int, subject: str) -> list[str]:
    """The digests of `subject`'s accessories (not theirs), for deletion with it."""
    found = [str(r[0]) for r in tx.all("SELECT digest FROM manifests WHERE repo_id = ? AND subject = ? LIMIT ?",
                                       (repo_id, subject, MAX_CASCADE))]
    names = accessory_tags(subject)
    found += [str(r[0]) for r in tx.all(f"SELECT digest FROM tags WHERE repo_id = ? AND name IN ({_marks(len(names))})",
                                        [repo_id, *names])]
    return sorted(set(found) - {subject})


__all__ = ["MAX_CASCADE", "TAG_KINDS", "Accessory", "accessory_digests", "accessory_tags", "direct_accessories",
           "is_accessory_sql", "referrer_kind", "tag_subject"]
