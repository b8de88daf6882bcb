"""Image trust's records (issue 14): trusted keys, verification results, settings, the push cursor.

`trust_keys`: cosign public keys, each trusted by one registry (`registry` its name) or by the whole
installation (`registry` = ''), named uniquely there; a key is stored once per scope (its `key_id`,
ncr_trio/trust/keys.py). A registry's images are checked against its own keys and the installation's.

`trust_results`: one row per artifact whose signatures were looked at: its state (unsigned, signed,
verified, invalid), how many signatures and how many invalid, the keys that verify it (newline
separated), and each signature's verdict (`details`, JSON, what the API's signatures view answers).
A row is `stale` once something it depends on changed (a signature pushed or deleted in its
repository, a key added or deleted): readers recompute a stale row before believing it, and the
background runner recomputes them ahead of readers. No row: never looked at (computed when asked).

`trust_registry_settings`: enforcement per registry (no row: nothing required). `trust_cursor`: the
last event looked at (a signature's push or deletion makes its subject's result stale, in the same
transaction that moves the cursor, and adds a `signature.pushed` event for webhooks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ncr_trio.meta.db import Database, Tx

GLOBAL = ""  # the `registry` of installation-wide keys
_GONE = ("artifact.deleted", "tag.deleted")  # the events `collect` acts on
_MADE = ("artifact.pushed", "artifact.cached", "tag.created")
_COLLECTED = _GONE + _MADE
MAX_DETAILS = 256  # signatures described per result (the library reads at most this many)


@dataclass(frozen=True)
class KeyRow:
    registry: str  # '' = the whole installation
    name: str
    key_id: str
    algorithm: str
    pem: str
    created_at: float


@dataclass(frozen=True)
class SignatureVerdict:
    """One signature's verdict as stored (and shown)."""

    layout: str
    manifest: str  # the signature manifest's digest
    index: int  # the layer's position in it
    status: str  # verified | unverified | invalid
    keys: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class TrustResult:
    repository: str
    digest: str
    state: str  # unsigned | signed | verified | invalid
    signatures: int
    invalid: int
    keys: tuple[str, ...]
    computed_at: float
    stale: bool = False
    details: tuple[SignatureVerdict, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class RegistryTrustSettings:
    registry: str
    require_signature: bool = False
    require_verified_signature: bool = False


_KEY_COLUMNS = "SELECT registry, name, key_id, algorithm, pem, created_at FROM trust_keys "
_RESULT_COLUMNS = ("SELECT repository, digest, state, signatures, invalid, keys, computed_at, stale, details "
                   "FROM trust_results ")


def _key(r: Sequence[Any]) -> KeyRow:
    return KeyRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(r[5]))


def _details(text: str) -> tuple[SignatureVerdict, ...]:
    try:
        items = json.loads(text)
    except ValueError:
        return ()
    return tuple(SignatureVerdict(str(d["layout"]), str(d["manifest"]), int(d["index"]), str(d["status"]),
                                  tuple(str(k) for k in d.get("keys", ())), str(d.get("reason", "")))
                 for d in items if isinstance(d, dict))


def _result(r: Sequence[Any]) -> TrustResult:
    return TrustResult(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), tuple(k for k in str(r[5]).split("\n")
                       if k), float(r[6]), bool(r[7]), _details(str(r[8])))


def _like_registry(registry: str) -> str:
    return registry.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def emit(tx: Tx, kind: str, repository: str, digest: str, tag: str | None, media_type: str | None,
         actor: str) -> None:
    """signature.pushed / signature.invalid in the events outbox, beside the change it announces."""
    tx.execute("INSERT INTO events (kind, repository, digest, tag, media_type, actor, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", (kind, repository, digest, tag, media_type, actor, time.time()))


class TrustStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- keys ------------------------------------------------------------------------------------
    async def keys(self, registry: str) -> list[KeyRow]:
        """The keys of one scope (a registry's own, or GLOBAL's), by name."""
        rows = await self.db.read(lambda tx: tx.all(_KEY_COLUMNS + "WHERE registry = ? ORDER BY name", (registry,)))
        return [_key(r) for r in rows]

    async def keys_for(self, registry: str) -> list[KeyRow]:
        """The keys a registry's images are checked against: its own and the installation's."""
        rows = await self.db.read(lambda tx: tx.all(
            _KEY_COLUMNS + "WHERE registry = ? OR registry = ? ORDER BY registry, name", (registry, GLOBAL)))
        return [_key(r) for r in rows]

    async def add_key(self, key: KeyRow, limit: int) -> str | None:
        """Store a key; None when stored, else why not ("registry", "name", "key", "limit")."""

        def run(tx: Tx) -> str | None:
            if key.registry != GLOBAL and tx.one("SELECT 1 FROM registries WHERE name = ?" + tx.dialect.for_update,
                                                 (key.registry,)) is None:
                return "registry"
            if tx.one("SELECT 1 FROM trust_keys WHERE registry = ? AND name = ?", (key.registry, key.name)):
                return "name"
            if tx.one("SELECT 1 FROM trust_keys WHERE registry = ? AND key_id = ?", (key.registry, key.key_id)):
                return "key"
            row = tx.one("SELECT COUNT(*) FROM trust_keys WHERE registry = ?", (key.registry,))
            if row is not None and int(row[0]) >= limit:
                return "limit"
            tx.execute("INSERT INTO trust_keys (registry, name, key_id, algorithm, pem, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (key.registry, key.name, key.key_id, key.algorithm, key.pem, key.created_at))
            self._stale_scope(tx, key.registry)
            return None

        return await self.db.write(run)

    async def delete_key(self, registry: str, name: str) -> bool:
        """Delete a key of one scope by name (False: no such key); the results it may change go stale."""

        def run(tx: Tx) -> bool:
            if not tx.execute("DELETE FROM trust_keys WHERE registry = ? AND name = ?", (registry, name)):
                return False
            self._stale_scope(tx, registry)
            return True

        return await self.db.write(run)

    @staticmethod
    def _stale_scope(tx: Tx, registry: str) -> None:
        if registry == GLOBAL:
            tx.execute("UPDATE trust_results SET stale = 1 WHERE stale = 0")
        else:
            tx.execute("UPDATE trust_results SET stale = 1 WHERE stale = 0 AND repository LIKE ? ESCAPE '\\'",
                       (_like_registry(registry),))

    # -- results ---------------------------------------------------------------------------------
    async def result(self, repository: str, digest: str) -> TrustResult | None:
        row = await self.db.read(lambda tx: tx.one(_RESULT_COLUMNS + "WHERE repository = ? AND digest = ?",
                                                   (repository, digest)))
        return None if row is None else _result(row)

    async def results(self, repository: str, digests: Sequence[str]) -> dict[str, TrustResult]:
        if not digests:
            return {}
        marks = ", ".join("?" for _ in digests)
        rows = await self.db.read(lambda tx: tx.all(
            _RESULT_COLUMNS + f"WHERE repository = ? AND digest IN ({marks})", (repository, *digests)))
        return {r.digest: r for r in map(_result, rows)}

    async def store(self, result: TrustResult, announce: Callable[[Tx, TrustResult | None], None] | None = None
                    ) -> None:
        """Store a freshly computed result; `announce` (in the same transaction) sees the row it replaces."""
        details = json.dumps([{"layout": d.layout, "manifest": d.manifest, "index": d.index, "status": d.status,
                               "keys": list(d.keys), "reason": d.reason} for d in result.details[:MAX_DETAILS]],
                             separators=(",", ":"))

        def run(tx: Tx) -> None:
            before = tx.one(_RESULT_COLUMNS + "WHERE repository = ? AND digest = ?" + tx.dialect.for_update,
                            (result.repository, result.digest))
            tx.execute("INSERT INTO trust_results (repository, digest, state, signatures, invalid, keys, details, "
                       "stale, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (repository, digest) DO "
                       "UPDATE SET state = excluded.state, signatures = excluded.signatures, "
                       "invalid = excluded.invalid, keys = excluded.keys, details = excluded.details, stale = 0, "
                       "computed_at = excluded.computed_at",
                       (result.repository, result.digest, result.state, result.signatures, result.invalid,
                        "\n".join(result.keys), details, result.computed_at))
            if announce is not None:
                announce(tx, None if before is None else _result(before))

        await self.db.write(run)

    async def stale(self, limit: int) -> list[tuple[str, str]]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT repository, digest FROM trust_results WHERE stale = 1 ORDER BY computed_at LIMIT ?", (limit,)))
        return [(str(r[0]), str(r[1])) for r in rows]

    async def forget(self, repository: str, digest: str) -> None:
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM trust_results WHERE repository = ? AND digest = ?", (repository, digest)))

    async def parents(self, repository: str, digest: str, limit: int = 16) -> list[str]:
        """The indexes of `repository` that hold the manifest `digest` (a platform's image)."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT x.parent FROM manifest_refs x JOIN repositories r ON r.id = x.repo_id WHERE r.name = ? "
            "AND x.child = ? AND x.kind = 'manifest' ORDER BY x.parent LIMIT ?", (repository, digest, limit)))
        return [str(r[0]) for r in rows]

    # -- settings --------------------------------------------------------------------------------
    async def registry_settings(self, registry: str) -> RegistryTrustSettings:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT require_signature, require_verified_signature FROM trust_registry_settings WHERE registry = ?",
            (registry,)))
        return RegistryTrustSettings(registry) if row is None else RegistryTrustSettings(registry, bool(row[0]),
                                                                                            bool(row[1]))

    async def set_registry_settings(self, s: RegistryTrustSettings) -> bool:
        """Store a registry's settings; False if the registry does not exist (checked in the transaction)."""

        def run(tx: Tx) -> bool:
            if tx.one("SELECT 1 FROM registries WHERE name = ?" + tx.dialect.for_update, (s.registry,)) is None:
                return False
            tx.execute("INSERT INTO trust_registry_settings (registry, require_signature, require_verified_signature) "
                       "VALUES (?, ?, ?) ON CONFLICT (registry) DO UPDATE SET require_signature = "
                       "excluded.require_signature, require_verified_signature = excluded.require_verified_signature",
                       (s.registry, int(s.require_signature), int(s.require_verified_signature)))
            return True

        return await self.db.write(run)

    @staticmethod
    def purge_registry(tx: Tx, registry: str) -> None:
        """Inside the deletion of a registry: its keys, settings and its artifacts' results."""
        tx.execute("DELETE FROM trust_keys WHERE registry = ?", (registry,))
        tx.execute("DELETE FROM trust_registry_settings WHERE registry = ?", (registry,))
        tx.execute("DELETE FROM trust_results WHERE repository LIKE ? ESCAPE '\\'", (_like_registry(registry),))

    # -- signature pushes ------------------------------------------------------------------------
    async def behind(self, kinds: tuple[str, ...] | None = _COLLECTED) -> bool:
        """Whether an event of `kinds` (None: of any kind) is past the cursor. By default the kinds
        `collect` acts on: pulls and the like are not among them, so a reader that asks this on every
        pull does not write because of them."""
        where = "" if kinds is None else f" AND kind IN ({', '.join('?' for _ in kinds)})"
        return bool(await self.db.read(lambda tx: tx.one(
            f"SELECT 1 FROM events WHERE id > (SELECT event_id FROM trust_cursor WHERE id = 1){where} LIMIT 1",
            kinds or ())))

    async def collect(self, classify: Callable[[str | None, str | None, str | None], tuple[str, bool] | None],
                      limit: int = 500) -> int:
        """Look at the events since the last call, once across every worker and node (the cursor row is
        locked for the transaction). `classify(tag, subject, artifact_type)` (pure: ncr_trio/trust) says
        of a pushed manifest which artifact it is about (its `subject`, or the image its `.sig` tag
        names) and whether it is a signature: that artifact's result goes stale, and a signature's push
        writes a `signature.pushed` event. A deleted artifact's result goes, and its repository's results
        go stale (it may have been a signature). Answers how many results went stale."""
        if not await self.behind(None):  # any event: the cursor moves past pulls too
            return 0

        def run(tx: Tx) -> int:
            cursor = tx.one("SELECT event_id FROM trust_cursor WHERE id = 1" + tx.dialect.for_update)
            after = int(cursor[0]) if cursor else 0
            events = tx.all("SELECT e.id, e.kind, e.repository, e.digest, e.tag, e.media_type, e.actor, m.subject, "
                            "m.artifact_type "
                            "FROM events e LEFT JOIN repositories r ON r.name = e.repository "
                            "LEFT JOIN manifests m ON m.repo_id = r.id AND m.digest = e.digest "
                            "WHERE e.id > ? ORDER BY e.id LIMIT ?", (after, limit))
            if not events:
                return 0
            staled = 0
            now = time.time()
            for _, kind, repository, digest, tag, media_type, actor, subject, artifact_type in events:
                repository = str(repository)
                if kind in _GONE:
                    if kind == "artifact.deleted" and digest is not None:
                        tx.execute("DELETE FROM trust_results WHERE repository = ? AND digest = ?",
                                   (repository, digest))
                    staled += tx.execute("UPDATE trust_results SET stale = 1 WHERE repository = ? AND stale = 0",
                                         (repository,))
                    continue
                if kind not in _MADE or digest is None:
                    continue
                about = classify(None if tag is None else str(tag), None if subject is None else str(subject),
                                 None if artifact_type is None else str(artifact_type))
                if about is None:
                    continue
                signed, signature = about
                staled += tx.execute(
                    "INSERT INTO trust_results (repository, digest, state, stale, computed_at) VALUES (?, ?, ?, 1, ?) "
                    "ON CONFLICT (repository, digest) DO UPDATE SET stale = 1", (repository, signed, "unsigned", now))
                if signature and kind == "artifact.pushed":
                    emit(tx, "signature.pushed", repository, signed, None if tag is None else str(tag),
                         None if media_type is None else str(media_type), str(actor or ""))
            tx.execute("UPDATE trust_cursor SET event_id = ? WHERE id = 1", (int(events[-1][0]),))
            return staled

        return await self.db.write(run)


__all__ = ["GLOBAL", "KeyRow", "RegistryTrustSettings", "SignatureVerdict", "TrustResult", "TrustStore", "emit"]
