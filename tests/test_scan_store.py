"""The scan records on SQLite and on a real PostgreSQL: one scan under way per artifact, one process
claims it, a stop of a queued scan ends it at once, outcomes and their events, findings kept across a
rescan, scan on push collected once and only for registries that ask, settings, and a registry's
deletion taking its results along."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ncr_trio.meta import Database, ManifestRecord, MetaStore, Reference, connect, migrate
from ncr_trio.meta.scans import DONE, FAILED, SCANNING, STOPPED, Outcome, RegistryScanSettings, ScanStore
from tests.support.postgres import PostgresServer
from tests.support.postgres import postgres_server as _postgres_server

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]
_db_names = itertools.count()
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _postgres_server() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = connect(f"sqlite:{tmp_path / 'meta.sqlite3'}", tmp_path / "unused.sqlite3")
        migrate(database)
        try:
            yield database
        finally:
            database.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database(f"ncr_scan_{next(_db_names)}") as url:
        database = connect(url, tmp_path / "unused.sqlite3")
        migrate(database)
        try:
            yield database
        finally:
            database.close()


async def registry(db: Database, name: str) -> None:
    await db.write(lambda tx: tx.execute(
        "INSERT INTO registries (name, created_at, updated_at) VALUES (?, ?, ?)", (name, time.time(), time.time())))


async def event(db: Database, kind: str, repository: str, digest: str, media_type: str = OCI_MANIFEST) -> None:
    await db.write(lambda tx: tx.execute(
        "INSERT INTO events (kind, repository, digest, media_type, created_at) VALUES (?, ?, ?, ?, ?)",
        (kind, repository, digest, media_type, time.time())))


async def kinds(db: Database) -> list[tuple[str, str]]:
    rows = await db.read(lambda tx: tx.all("SELECT kind, digest FROM events WHERE kind LIKE 'scan.%' ORDER BY id"))
    return [(str(r[0]), str(r[1])) for r in rows]


def test_queue_claim_stop_and_outcomes(db: Database) -> None:
    async def main() -> None:
        store = ScanStore(db)
        now = time.time()
        assert await store.result("team/app", D1) is None  # Not Scanned
        assert await store.request("team/app", D1, "manual", now)
        assert not await store.request("team/app", D1, "manual", now)  # one under way
        assert await store.due(now, 10) == [("team/app", D1)]
        won: list[bool] = []

        async def claim(owner: str) -> None:
            won.append(await store.claim("team/app", D1, owner, now, 60))

        async with trio.open_nursery() as nursery:
            for owner in ("a", "b", "c"):
                nursery.start_soon(claim, owner)
        assert sorted(won) == [False, False, True]
        assert await store.due(now, 10) == []  # leased
        assert await store.due(now + 61, 10) == [("team/app", D1)]  # the lease ended: anyone's again
        outcome = Outcome(DONE, 3, 2, "High", "v1", [[3, "CVE-1", ["GHSA-x"], "openssl", "1.0"]], {"platforms": []})
        assert not await store.finish("team/app", D1, "someone-else", outcome, now)
        holder = await db.read(lambda tx: tx.one("SELECT owner FROM scan_results WHERE digest = ?", (D1,)))
        assert holder is not None
        owner = str(holder[0])
        assert await store.finish("team/app", D1, owner, outcome, now)
        row = await store.result("team/app", D1)
        assert row is not None and (row.status, row.total, row.fixable, row.severity) == (DONE, 3, 2, "High")
        assert await store.findings("team/app", D1) == [[3, "CVE-1", ["GHSA-x"], "openssl", "1.0"]]
        # a rescan, stopped before anyone runs it: Stopped at once, the last findings kept
        assert await store.request("team/app", D1, "manual", now)
        assert (await store.result("team/app", D1)).status == SCANNING  # type: ignore[union-attr]
        assert await store.request_stop("team/app", D1, now) == STOPPED
        assert await store.findings("team/app", D1) == [[3, "CVE-1", ["GHSA-x"], "openssl", "1.0"]]
        # a running one: asked to stop, its runner ends it
        assert await store.request("team/app", D1, "manual", now)
        assert await store.claim("team/app", D1, "a", now, 60)
        assert await store.request_stop("team/app", D1, now) == SCANNING
        assert await store.extend("team/app", D1, "a", now + 60) == (True, True)
        assert await store.finish("team/app", D1, "a", Outcome(STOPPED), now)
        assert (await store.result("team/app", D1)).status == STOPPED  # type: ignore[union-attr]
        assert await store.request("team/app", D2, "manual", now)
        assert await store.finish("team/app", D2, None, Outcome(FAILED, error="boom"), now)
        assert (await store.result("team/app", D2)).error == "boom"  # type: ignore[union-attr]
        assert await kinds(db) == [("scan.completed", D1), ("scan.failed", D2)]
        assert set(await store.results("team/app", [D1, D2, "sha256:" + "3" * 64])) == {D1, D2}

    trio.run(main)


def test_scan_on_push_settings_and_purge(db: Database) -> None:
    async def main() -> None:
        store = ScanStore(db)
        await registry(db, "team")
        await registry(db, "other")
        await event(db, "artifact.pushed", "team/app", D1)
        assert await store.collect_pushes() == []  # no registry scans on push: passed over
        assert await store.set_registry_settings(RegistryScanSettings("team", True, "High", ("CVE-1",)))
        assert not await store.set_registry_settings(RegistryScanSettings("ghost", True))
        await event(db, "artifact.pushed", "team/app", D2)
        await event(db, "artifact.pushed", "other/app", D2)  # its registry does not scan on push
        await event(db, "tag.created", "team/app", D2)
        await event(db, "artifact.pushed", "team/chart", D1, "application/vnd.cncf.helm.chart.content.v1.tar+gzip")
        assert await store.collect_pushes() == [("team/app", D2)]
        assert await store.collect_pushes() == []  # once
        row = await store.result("team/app", D2)
        assert row is not None and row.trigger == "push" and row.status == SCANNING
        s = await store.registry_settings("team")
        assert (s.scan_on_push, s.prevent_pull_severity, s.allowlist) == (True, "High", ("CVE-1",))
        assert (await store.registry_settings("other")).allowlist is None  # the global list applies
        await event(db, "artifact.cached", "team/app", D1)  # its layers come later: not scanned on arrival
        await event(db, "artifact.deleted", "team/app", D2)  # the result goes with the artifact
        assert await store.collect_pushes() == []
        assert await store.result("team/app", D1) is None and await store.result("team/app", D2) is None
        await store.set_allowlist(["CVE-2", "GHSA-abcd"])
        assert await store.allowlist() == ("CVE-2", "GHSA-abcd")
        await db.write(lambda tx: ScanStore.purge_registry(tx, "team"))
        assert await store.result("team/app", D2) is None
        assert (await store.registry_settings("team")).scan_on_push is False

    trio.run(main)


def test_the_periodic_scan_covers_images_and_indexes_but_not_what_an_index_holds(db: Database) -> None:
    async def main() -> None:
        meta, store = MetaStore(db), ScanStore(db)
        index_type = "application/vnd.oci.image.index.v1+json"
        d3 = "sha256:" + "3" * 64
        for repo, d, media_type, refs, subject in [
                ("team/app", D1, OCI_MANIFEST, [], None),  # held by the index below
                ("team/app", D2, OCI_MANIFEST, [], None),  # on its own
                ("team/app", d3, index_type, [Reference(D1, "manifest")], None),
                ("team/sig", D1, OCI_MANIFEST, [], D2)]:  # a signature: has a subject
            record = ManifestRecord(d, media_type, 2, b"{}", subject=subject)
            await meta.put_manifest(repo, record, refs, None, cached=True)
        pages, after = [], ("", "")
        while page := await store.scannable(after, 1):
            pages.append(page)
            after = page[-1]
        assert pages == [[("team/app", D2)], [("team/app", d3)]]
        assert await store.request("team/app", D2, "manual", time.time())
        # those under way are left alone; the others are queued (again)
        assert await store.request_many([("team/app", D2), ("team/app", d3)], "schedule", time.time()) == 1
        row = await store.result("team/app", D2)
        assert row is not None and row.trigger == "manual"

    trio.run(main)
