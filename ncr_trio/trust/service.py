"""Image trust in the registry (issue 14): trusted keys, each artifact's verification result, enforcement.

Keys. cosign public keys are trusted by one registry or by the whole installation (meta/trust.py); a
registry's images are checked against both. A key is parsed (keys.py) when it is uploaded, so a
private key or a key cosign cannot make is refused then (INVALID_REQUEST), never stored.

Results. An artifact's result is its signatures (detect.py, read from this registry's own storage
through `StorageSource`: no HTTP, so enforcement never refuses the verifier's reads) each verified
(verify.py, in a worker thread: CPU) against its registry's keys, summarised (unsigned / signed /
verified / invalid) and stored. It is computed when first asked for, and again once stale: a
signature pushed or deleted in its repository (the runner's cursor over `events`, once across workers
and nodes) or a key added or deleted makes it stale, and `serve` (every process's lifespan) recomputes
stale results ahead of readers. A recomputation that finds more invalid signatures than before writes
a `signature.invalid` event (webhooks); a signature's push writes `signature.pushed`.

Enforcement. `check_pull` (manifest GET/HEAD, beside pull prevention) refuses with 412 DENIED an
artifact of a registry that requires a signature (`require_signature`) and has none, or requires a
verified one (`require_verified_signature`) and has none a trusted key verifies. Before refusing, the
result is recomputed from storage, so a signature pushed a moment ago counts at once. Never refused:
  - signatures and attestations themselves (a `subject`, or a cosign `.sig`/`.att`/`.sbom` tag);
  - a platform's image whose index meets the requirement (clients pull an index, then its images);
  - a principal that may push to the repository: cosign reads the image's manifest before it signs
    it, so the signer must be able to read an unsigned image (Harbor lets cosign through the same way;
    docs/trust.md). Anonymous and pull-only principals are refused.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ncr_trio.auth.control import Principal, TTLCache, registry_of
from ncr_trio.auth.roles import repository_actions
from ncr_trio.errors import RegistryError
from ncr_trio.meta import ManifestRecord
from ncr_trio.meta.db import Tx
from ncr_trio.meta.trust import (
    GLOBAL,
    KeyRow,
    RegistryTrustSettings,
    SignatureVerdict,
    TrustResult,
    TrustStore,
    emit,
)
from ncr_trio.registry.context import Registry
from ncr_trio.registry.manifests import Manifests
from ncr_trio.storage.keys import blob_key
from ncr_trio.trust.detect import BUNDLE_MEDIA_TYPE, SIGNATURE_ARTIFACT_TYPE, Signature, find_signatures, subject_of_tag
from ncr_trio.trust.keys import KeyRejected, TrustedKey, parse_public_key
from ncr_trio.trust.verify import State, Status, Verdict, summarize, verify
from ncr_trio.types import Digest

log = logging.getLogger("ncr_trio.trust")

KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_KEYS = 100  # per registry, and for the installation
PAGE = 200
# cosign's accessory tags: sha256-<hex>.sig (signatures), .att (attestations), .sbom (SBOMs).
ACCESSORY_TAG = re.compile(r"(sha256-[a-f0-9]{64}|sha512-[a-f0-9]{128})\.(sig|att|sbom)")
_SIGNATURE_TYPES = (SIGNATURE_ARTIFACT_TYPE, BUNDLE_MEDIA_TYPE)


@dataclass
class StorageSource:
    """detect.Source over one repository of this registry's own storage and metadata."""

    reg: Registry
    manifests: Manifests
    repository: str

    async def resolve_tag(self, tag: str) -> str | None:
        record = await self.reg.meta.get_tagged_manifest(self.repository, tag)
        return None if record is None else record.digest

    async def manifest(self, digest: str) -> bytes | None:
        record = await self.reg.meta.get_manifest(self.repository, digest)
        return None if record is None else record.content

    async def blob(self, digest: str, limit: int) -> bytes | None:
        if await self.reg.meta.blob_size(self.repository, digest) is None:
            return None  # not this repository's: never read another repository's blob

        def read() -> bytes | None:
            reader = self.reg.storage.open_read(blob_key(Digest.parse(digest)))
            if reader is None:
                return None
            try:
                return reader.read(0, min(reader.size, limit + 1))
            finally:
                reader.close()

        return await trio.to_thread.run_sync(read, limiter=self.reg.disk)

    async def referrers(self, subject: str) -> Sequence[Mapping[str, Any]]:
        index = await self.manifests.referrers(self.repository, Digest.parse(subject), None)
        return list(index["manifests"])


def classify(tag: str | None, subject: str | None, artifact_type: str | None) -> tuple[str, bool] | None:
    """What a pushed manifest changes: (the artifact whose result it changes, whether it is a signature),
    None for a manifest that is about no other artifact."""
    if subject is not None:
        return subject, artifact_type in _SIGNATURE_TYPES
    tagged = subject_of_tag(tag) if tag is not None else None
    return None if tagged is None else (tagged, True)


def _verify_all(signatures: list[Signature], keys: list[TrustedKey]) -> list[Verdict]:
    return [verify(s, keys) for s in signatures]


def validate_key_name(name: str) -> str:
    if not isinstance(name, str) or KEY_NAME_RE.fullmatch(name) is None:
        raise RegistryError("INVALID_REQUEST", "a key's name is 1 to 64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return name


def satisfies(result: TrustResult, settings: RegistryTrustSettings) -> bool:
    if settings.require_verified_signature and result.state != State.VERIFIED:
        return False
    return not (settings.require_signature and result.signatures == 0)


class Trust:
    def __init__(self, reg: Registry, store: TrustStore, manifests: Manifests) -> None:
        self.reg = reg
        self.store = store
        self.manifests = manifests
        self.limiter = trio.CapacityLimiter(2)
        self.settings_ttl = reg.config.access_cache_seconds
        self._settings: TTLCache[str, RegistryTrustSettings] = TTLCache(self.settings_ttl, time.monotonic)
        self._parsed: dict[str, TrustedKey] = {}  # PEM -> parsed key
        self._wake = trio.Event()

    # -- keys ----------------------------------------------------------------------------------
    async def keys(self, registry: str | None) -> list[KeyRow]:
        """A registry's own keys (None: the installation's)."""
        return await self.store.keys(GLOBAL if registry is None else registry)

    async def add_key(self, registry: str | None, name: str, pem: str) -> KeyRow:
        validate_key_name(name)
        try:
            key = parse_public_key(pem)
        except KeyRejected as e:
            raise RegistryError("INVALID_REQUEST", str(e)) from None
        row = KeyRow(GLOBAL if registry is None else registry, name, key.id, str(key.algorithm), key.pem, time.time())
        refused = await self.store.add_key(row, MAX_KEYS)
        scope = "the installation" if registry is None else f"registry {registry}"
        if refused == "registry":
            raise RegistryError("NOT_FOUND", f"registry {str(registry)[:80]!r} does not exist")
        if refused == "name":
            raise RegistryError("CONFLICT", f"{scope} already trusts a key named {name!r}")
        if refused == "key":
            raise RegistryError("CONFLICT", f"{scope} already trusts this key ({key.id}), under another name")
        if refused == "limit":
            raise RegistryError("CONFLICT", f"{scope} trusts {MAX_KEYS} keys already: delete one first")
        self._wake.set()
        return row

    async def delete_key(self, registry: str | None, name: str) -> None:
        if not await self.store.delete_key(GLOBAL if registry is None else registry, name):
            raise RegistryError("NOT_FOUND", f"no trusted key named {name[:80]!r}")
        self._wake.set()

    async def key_names(self, registry: str) -> dict[str, str]:
        """The name of each key a registry's images are checked against, by key ID (its own name for a
        key both the registry and the installation trust): results store IDs, people read names."""
        names: dict[str, str] = {}
        for row in await self.store.keys_for(registry):
            if row.registry != GLOBAL or row.key_id not in names:
                names[row.key_id] = row.name
        return names

    async def _trusted(self, registry: str) -> list[TrustedKey]:
        out = []
        for row in await self.store.keys_for(registry):
            key = self._parsed.get(row.pem)
            if key is None:
                try:
                    key = parse_public_key(row.pem)
                except KeyRejected:  # stored keys were parsed when uploaded; a later rule may refuse one
                    log.warning("trusted key %s of %r is no longer accepted; ignored", row.name, row.registry)
                    continue
                if len(self._parsed) >= 10_000:
                    self._parsed.clear()
                self._parsed[row.pem] = key
            out.append(key)
        return out

    # -- settings ------------------------------------------------------------------------------
    async def registry_settings(self, registry: str) -> RegistryTrustSettings:
        return await self.store.registry_settings(registry)

    async def update_registry_settings(self, registry: str, *, require_signature: bool | None = None,
                                       require_verified_signature: bool | None = None) -> RegistryTrustSettings:
        s = await self.store.registry_settings(registry)
        updated = RegistryTrustSettings(
            registry, s.require_signature if require_signature is None else require_signature,
            s.require_verified_signature if require_verified_signature is None else require_verified_signature)
        if not await self.store.set_registry_settings(updated):
            raise RegistryError("NOT_FOUND", f"registry {registry[:80]!r} does not exist")
        self._settings.drop(registry)
        return updated

    async def _cached_settings(self, registry: str) -> RegistryTrustSettings:
        hit, found = self._settings.get(registry)
        if not hit or found is None:
            found = await self.store.registry_settings(registry)
            self._settings.put(registry, found)
        return found

    # -- results -------------------------------------------------------------------------------
    async def compute(self, repository: str, digest: str) -> TrustResult:
        """The artifact's result from its signatures as stored now, stored (with its events)."""
        signatures = await find_signatures(digest, StorageSource(self.reg, self.manifests, repository))
        keys = await self._trusted(registry_of(repository)) if signatures else []
        verdicts = await trio.to_thread.run_sync(_verify_all, signatures, keys, limiter=self.limiter) \
            if signatures else []
        summary = summarize(verdicts)
        details = tuple(SignatureVerdict(str(s.layout), s.manifest, s.index, str(v.status), v.keys, v.reason)
                        for s, v in zip(signatures, verdicts, strict=True))
        invalid = sum(v.status is Status.INVALID for v in verdicts)
        result = TrustResult(repository, digest, str(summary.state), summary.signatures, invalid, summary.keys,
                             time.time(), False, details)

        def announce(tx: Tx, before: TrustResult | None) -> None:
            if invalid > (0 if before is None else before.invalid):
                emit(tx, "signature.invalid", repository, digest, None, None, "trust")

        with trio.CancelScope(shield=True):
            await self.store.store(result, announce)
        return result

    async def status(self, repository: str, digest: str) -> TrustResult:
        """The artifact's result: the stored one unless stale (then recomputed), computed if none.
        Signatures pushed or deleted since the runner last looked make their results stale first (one
        read when there are none), so a result read right after a push counts its signature."""
        await self._catch_up()
        row = await self.store.result(repository, digest)
        if row is not None and not row.stale:
            return row
        return await self.compute(repository, digest)

    async def statuses(self, repository: str, digests: Sequence[str]) -> dict[str, TrustResult]:
        """The results of these artifacts of one repository (those never looked at, or stale, computed),
        after the pushes not yet looked at (as `status`)."""
        if digests:
            await self._catch_up()
        rows = await self.store.results(repository, digests)
        for d in digests:
            if d not in rows or rows[d].stale:
                rows[d] = await self.compute(repository, d)
        return rows

    async def _catch_up(self) -> None:
        """Mark stale what the pushes and deletions the runner has not looked at yet change."""
        if await self.store.behind():
            await self.store.collect(classify)

    async def signatures(self, repository: str, digest: str) -> TrustResult:
        """The artifact's result with each signature's verdict (its existence checked first)."""
        Digest.parse(digest)
        if await self.reg.meta.get_manifest(repository, digest) is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": digest[:200]})
        return await self.status(repository, digest)

    # -- enforcement ---------------------------------------------------------------------------
    async def check_pull(self, repository: str, reference: str, record: ManifestRecord, principal: Principal) -> None:
        """Refuse (412) the pull of an artifact its registry's signature requirement does not let through."""
        if record.subject is not None or ACCESSORY_TAG.fullmatch(reference):
            return
        registry = registry_of(repository)
        settings = await self._cached_settings(registry)
        if not (settings.require_signature or settings.require_verified_signature):
            return
        result = await self.status(repository, record.digest)
        if satisfies(result, settings):
            return
        # Computed afresh before refusing: `status` counts the pushes the events say, and this counts a
        # signature whatever they say (an event the cursor passed over, committed out of id order).
        result = await self.compute(repository, record.digest)
        if satisfies(result, settings):
            return
        for parent in await self.store.parents(repository, record.digest):
            if satisfies(await self.status(repository, parent), settings):
                return  # a platform's image of a signed index
        if not principal.anonymous and "push" in repository_actions(principal.holds(registry)):
            return  # the signer reads the image before signing it (cosign sign): docs/trust.md
        raise refusal(repository, record.digest, result, settings)

    # -- running -------------------------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: notice signatures pushed or deleted (once across processes) and recompute
        the results they, or a key change, made stale."""
        poll = self.reg.config.trust_poll_seconds
        task_status.started()
        while True:
            more = False
            try:
                await self.store.collect(classify)
                stale = await self.store.stale(PAGE)
                for repository, digest in stale:
                    if await self.reg.meta.get_manifest(repository, digest) is None:
                        await self.store.forget(repository, digest)
                    else:
                        await self.compute(repository, digest)
                more = len(stale) == PAGE
            except Exception:
                log.exception("image trust: the results could not be brought up to date; retrying")
            if more:
                await trio.lowlevel.checkpoint()
                continue
            self._wake = trio.Event()
            with trio.move_on_after(poll):
                await self._wake.wait()


def refusal(repository: str, digest: str, result: TrustResult, settings: RegistryTrustSettings) -> RegistryError:
    """The 412 a refused pull answers: what the registry requires and what the image lacks."""
    registry = registry_of(repository)
    if result.signatures == 0:
        lacking = "it has no cosign signature"
    elif result.state == State.INVALID:
        lacking = f"none of its {result.signatures} signature(s) is valid"
    else:
        lacking = f"none of its {result.signatures} signature(s) is verified by a key the registry trusts"
    if settings.require_verified_signature:
        rule = (f"registry {registry} requires a signature verified by one of its trusted keys (sign the image "
                "with cosign sign --key, and register the public key with the registry)")
    else:
        rule = f"registry {registry} requires signed images (sign the image with cosign sign --key)"
    return RegistryError("DENIED", f"pull refused: {repository}@{digest[:19]}: {lacking}; {rule}", status=412,
                         detail={"state": result.state, "signatures": result.signatures,
                                 "require_signature": settings.require_signature,
                                 "require_verified_signature": settings.require_verified_signature})


__all__ = ["ACCESSORY_TAG", "KEY_NAME_RE", "MAX_KEYS", "StorageSource", "Trust", "classify", "refusal", "satisfies",
           "validate_key_name"]
