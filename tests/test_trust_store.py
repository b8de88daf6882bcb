"""Image trust's records on SQLite and on a real PostgreSQL (meta/trust.py): keys per scope (names and
keys unique per scope, a missing registry refused, the limit), results stored with their details and
the event of a new invalid signature, key changes making the right results stale, signature pushes
collected once (a `signature.pushed` event, the subject's result stale), settings, and a registry's
deletion taking its keys, settings and results along."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from ncr_trio.meta import Database, ManifestRecord, MetaStore
from ncr_trio.meta.db import Tx
from ncr_trio.meta.trust import GLOBAL, KeyRow, RegistryTrustSettings, SignatureVerdict, TrustResult, TrustStore, emit
from ncr_trio.trust.service import classify
from tests.test_scan_store import BACKENDS, OCI_MANIFEST, postgres_server, registry  # noqa: F401
from tests.test_scan_store import db as db  # noqa: F401 (the parametrized fixture)

S1, S2 = "sha256:" + "a" * 64, "sha256:" + "b" * 64
SIG_TAG = f"sha256-{'a' * 64}.sig"


def key(registry: str, name: str, key_id: str) -> KeyRow:
    return KeyRow(registry, name, key_id, "ecdsa-p256", "-----BEGIN PUBLIC KEY-----\n...", time.time())


def result(repository: str, digest: str, state: str, invalid: int = 0) -> TrustResult:
    return TrustResult(repository, digest, state, 1, invalid, ("sha256:" + "c" * 64,) if state == "verified" else (),
                       time.time(), False, (SignatureVerdict("tag", S2, 0, "verified" if not invalid else "invalid",
                                                             (), "" if not invalid else "bad"),))


async def kinds(db: Database) -> list[tuple[str, str]]:
    rows = await db.read(lambda tx: tx.all("SELECT kind, digest FROM events WHERE kind LIKE 'signature.%' ORDER BY id"))
    return [(str(r[0]), str(r[1])) for r in rows]


def test_keys_results_staleness_collection_and_purge(db: Database) -> None:  # noqa: F811
    async def main() -> None:
        store = TrustStore(db)
        await registry(db, "team")
        await registry(db, "other")
        assert await store.add_key(key("team", "k1", "sha256:1"), 2) is None
        assert await store.add_key(key("team", "k1", "sha256:2"), 2) == "name"
        assert await store.add_key(key("team", "k2", "sha256:1"), 2) == "key"
        assert await store.add_key(key("nowhere", "k", "sha256:3"), 2) == "registry"
        assert await store.add_key(key("team", "k2", "sha256:2"), 2) is None
        assert await store.add_key(key("team", "k3", "sha256:3"), 2) == "limit"
        assert await store.add_key(key(GLOBAL, "k1", "sha256:1"), 2) is None  # another scope
        assert [k.name for k in await store.keys("team")] == ["k1", "k2"]
        assert [(k.registry, k.name) for k in await store.keys_for("team")] == [("", "k1"), ("team", "k1"),
                                                                                 ("team", "k2")]
        # results: stored with details; a new invalid signature is announced once
        def announce(r: TrustResult) -> Callable[[Tx, TrustResult | None], None]:
            def run(tx: Tx, before: TrustResult | None) -> None:
                if r.invalid > (0 if before is None else before.invalid):
                    emit(tx, "signature.invalid", r.repository, r.digest, None, None, "trust")
            return run

        for r in (result("team/app", S1, "verified"), result("team/app", S1, "invalid", 1),
                  result("team/app", S1, "invalid", 1), result("other/app", S1, "signed")):
            await store.store(r, announce(r))
        assert await kinds(db) == [("signature.invalid", S1)]
        got = await store.result("team/app", S1)
        assert got is not None and (got.state, got.invalid, got.stale) == ("invalid", 1, False)
        assert got.details == (SignatureVerdict("tag", S2, 0, "invalid", (), "bad"),)
        # a registry's key change: only its results go stale; the installation's: every result
        assert await store.delete_key("team", "k2") and not await store.delete_key("team", "k2")
        assert await store.stale(10) == [("team/app", S1)]
        await store.store(result("team/app", S1, "signed"))
        assert await store.delete_key(GLOBAL, "k1")
        assert sorted(await store.stale(10)) == [("other/app", S1), ("team/app", S1)]
        await store.store(result("team/app", S1, "signed"))
        await store.store(result("other/app", S1, "signed"))
        # a .sig tag pushed: collected once, its subject's result stale, signature.pushed written
        meta = MetaStore(db)
        config = ManifestRecord(S2, OCI_MANIFEST, 2, b"{}")
        await store.collect(classify)
        assert not await store.behind()
        await db.write(lambda tx: emit(tx, "artifact.pulled", "team/app", S1, None, None, "someone"))
        assert not await store.behind()  # a pull changes no result: a reader asking need not collect
        assert (await meta.put_manifest("team/app", config, [], SIG_TAG)).created
        assert await store.behind()
        assert await store.collect(classify) == 2  # artifact.pushed and tag.created: the one subject
        assert not await store.behind()
        assert await store.collect(classify) == 0
        assert await store.stale(10) == [("team/app", S1)]
        assert (await kinds(db))[-1] == ("signature.pushed", S1)
        # settings, then the registry's deletion takes its records along
        assert await store.set_registry_settings(RegistryTrustSettings("team", True, False))
        assert not await store.set_registry_settings(RegistryTrustSettings("nowhere", True, False))
        assert await store.registry_settings("team") == RegistryTrustSettings("team", True, False)
        await db.write(lambda tx: TrustStore.purge_registry(tx, "team"))
        assert await store.keys("team") == [] and await store.result("team/app", S1) is None
        assert await store.registry_settings("team") == RegistryTrustSettings("team")
        assert await store.result("other/app", S1) is not None

    trio.run(main)
