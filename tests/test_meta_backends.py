"""One test suite for the metadata store, run on SQLite and on a real PostgreSQL server.

Everything goes through the public API (`connect`, `migrate`, `MetaStore`, and `Database.read`
to look at the event outbox). PostgreSQL tests get a fresh database each from one session server
(tests/support/postgres.py).
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ncr_trio.config import Config
from ncr_trio.meta import (
    AccessStore,
    AuditEntry,
    BlobMissing,
    Database,
    KeyLimitReached,
    ManifestRecord,
    MetaStore,
    Reference,
    RegistryInfo,
    UnknownUser,
    connect,
    migrate,
)
from ncr_trio.meta.catalog import CatalogQueries
from ncr_trio.meta.db import Tx
from ncr_trio.meta.policies import DuplicatePolicy, PolicyLimitReached, PolicyStore, UnknownRegistry
from ncr_trio.meta.store import ACTOR, Guard, Protected
from ncr_trio.meta.webhooks import DuplicateWebhook, Event, Webhook, WebhookStore
from ncr_trio.registry.protection import current_guard
from ncr_trio.registry.webhooks import Sender, Webhooks, request_headers, signature
from ncr_trio.sealing import Sealer, SealError
from tests.support.postgres import PostgresServer
from tests.support.postgres import postgres_server as _postgres_server
from tests.support.server import Server

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]

_db_names = itertools.count()


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the session server's `postgres` database (superuser, trust auth)."""
    return postgres_server.url()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A `database_url` for `connect()`: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'meta.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database(f"ncr_test_{next(_db_names)}") as url:
        yield url


def _open(database_url: str, tmp_path: Path) -> Database:
    return connect(database_url, tmp_path / "unused.sqlite3")


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[MetaStore]:
    db = _open(database_url, tmp_path)
    migrate(db)
    try:
        yield MetaStore(db)
    finally:
        db.close()


# -- helpers ----------------------------------------------------------------------------------------
def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def stored(size: int) -> bool:
    """What a blob's transaction checks in storage: here, where there is none, every blob is there."""
    return True


def blob(store: MetaStore, repository: str, data: bytes, upload_id: str | None = None) -> str:
    d = digest_of(data)
    store.commit_blob_sync(repository, d, len(data), upload_id, stored)
    return d


def manifest(*layers: str, config: str | None = None, subject: str | None = None,
             artifact_type: str | None = None, annotations: dict[str, str] | None = None,
             ) -> tuple[ManifestRecord, list[Reference]]:
    """An image manifest record over blob digests, and the references a manifest PUT passes."""
    config = config or layers[0]
    body: dict[str, object] = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": 1} for d in layers],
    }
    if subject:
        body["subject"] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1}
    if artifact_type:
        body["artifactType"] = artifact_type
    if annotations:
        body["annotations"] = annotations
    content = json.dumps(body, sort_keys=True).encode()
    record = ManifestRecord(digest=digest_of(content), media_type=str(body["mediaType"]), size=len(content),
                            content=content, artifact_type=artifact_type, subject=subject,
                            annotations=json.dumps(annotations) if annotations else None)
    refs = [Reference(config, "blob"), *(Reference(d, "blob") for d in layers)]
    return record, refs


def index(*children: str) -> tuple[ManifestRecord, list[Reference]]:
    body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": c, "size": 1}
                          for c in children]}
    content = json.dumps(body).encode()
    record = ManifestRecord(digest=digest_of(content), media_type=str(body["mediaType"]), size=len(content),
                            content=content)
    return record, [Reference(c, "manifest") for c in children]


async def events(store: MetaStore) -> list[tuple[str, str, str | None, str | None]]:
    rows = await store.db.read(lambda tx: tx.all("SELECT kind, repository, digest, tag FROM events ORDER BY id"))
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def repo_id_of(store: MetaStore, digest: str) -> int:
    """The repository id GC works with, from `stale_links` (the link must be unreferenced)."""
    ids = [rid for rid, d in await store.stale_links(time.time() + 60) if d == digest]
    assert len(ids) == 1, ids
    return ids[0]


# -- schema -----------------------------------------------------------------------------------------
def test_migrate_is_idempotent(database_url: str, tmp_path: Path) -> None:
    db = _open(database_url, tmp_path)
    try:
        version = migrate(db)
        assert version >= 1
        assert migrate(db) == version
        MetaStore(db).commit_blob_sync("a", digest_of(b"x"), 1, None, stored)
    finally:
        db.close()
    db = _open(database_url, tmp_path)  # a restart: a new connection finds the schema in place
    try:
        assert migrate(db) == version
        assert MetaStore(db).blob_known_sync(digest_of(b"x"))
    finally:
        db.close()


def test_migrate_from_several_nodes_at_once(database_url: str, tmp_path: Path) -> None:
    dbs = [_open(database_url, tmp_path) for _ in range(4)]
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(dbs))

    def run(db: Database) -> None:
        try:
            barrier.wait()
            results.append(migrate(db))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for db in dbs:
            db.close()
    assert not errors, errors
    assert len(set(results)) == 1 and results[0] >= 1


async def test_sql_literals_and_bytes(store: MetaStore) -> None:
    """One SQL text for both engines: a literal `%` and `?` placeholders, bytes in and out."""
    row = await store.db.read(lambda tx: tx.one("SELECT '100%', ?, ?", ("a%s?b", b"\x00\xff")))
    assert row is not None and row[:2] == ("100%", "a%s?b") and bytes(row[2]) == b"\x00\xff"


async def test_failed_write_leaves_store_usable(store: MetaStore) -> None:
    await store.create_upload("dup", "app", b"s")
    for _ in range(3):
        with pytest.raises(Exception, match="(?i)unique"):
            await store.create_upload("dup", "app", b"s")  # an upload id is never reused
    gc.collect()  # a connection dropped without close() would warn (an error here) now
    assert await store.upload_ids() == {"dup"}
    assert await store.advance_upload("dup", 0, 1, b"t")


async def test_a_cached_blob_has_one_fetch_per_repository_whoever_claims_it(store: MetaStore) -> None:
    """The image cache's claim (cache/proxy.py): two processes starting a fetch of one blob at once get one row."""
    digest = "sha256:" + "ab" * 32
    assert await store.create_upload("first", "hub/app", b"s", cache_digest=digest)
    assert not await store.create_upload("second", "hub/app", b"s", cache_digest=digest)
    assert await store.create_upload("elsewhere", "hub/other", b"s", cache_digest=digest)  # another repository
    found = await store.cache_fetch("hub/app", digest)
    assert found is not None and found[0].id == "first" and found[1] is None
    await store.set_cache_size("first", 1234)
    assert (await store.cache_fetch("hub/app", digest) or (None, None))[1] == 1234
    assert await store.upload_ids() == {"first", "elsewhere"}


# -- repositories and blobs -------------------------------------------------------------------------
async def test_list_repositories_paginates(store: MetaStore) -> None:
    names = ["alpha", "beta/one", "beta/two", "gamma", "zeta"]
    for name in reversed(names):
        blob(store, name, name.encode())
    assert await store.list_repositories(None, None) == names
    assert await store.list_repositories(2, None) == names[:2]
    assert await store.list_repositories(2, "beta/one") == names[2:4]
    assert await store.list_repositories(10, "gamma") == ["zeta"]
    assert await store.list_repositories(10, "zeta") == []
    assert await store.list_repositories(0, None) == []
    assert await store.repository_exists("gamma")
    assert not await store.repository_exists("gam")


async def test_blob_commit_link_and_size(store: MetaStore) -> None:
    await store.create_upload("up-1", "app", b"state")
    d = blob(store, "app", b"hello", upload_id="up-1")
    assert await store.blob_size("app", d) == 5
    assert await store.get_upload("app", "up-1") is None  # committing ends the upload
    assert await store.blob_size("other", d) is None  # links are per repository
    assert await store.blob_size("app", digest_of(b"nope")) is None
    blob(store, "app", b"hello")  # committing again is harmless
    assert await store.blob_size("app", d) == 5
    assert store.blob_known_sync(d)
    assert not store.blob_known_sync(digest_of(b"nope"))


async def test_mount(store: MetaStore) -> None:
    d = blob(store, "src", b"layer")
    assert await store.mount_blob("dst", d, "src", stored) == 5
    assert await store.blob_size("dst", d) == 5
    assert await store.mount_blob("dst", d, "src", stored) == 5  # again: idempotent
    # Absent source (unknown repository, or a blob it does not hold): nothing linked, nothing created.
    assert await store.mount_blob("other", d, "nowhere", stored) is None
    assert await store.mount_blob("other", digest_of(b"missing"), "src", stored) is None
    assert not await store.repository_exists("other")
    assert await store.blob_size("other", d) is None


async def test_blobs_are_recorded_only_with_their_bytes_in_storage(store: MetaStore) -> None:
    """Recording a blob checks, with its row locked, that its bytes are stored (the `stored` callback);
    deduplicating needs a recorded blob; and a mount of a blob whose bytes are gone links nothing."""
    await store.create_upload("up-2", "app", b"state")
    d, size = digest_of(b"bytes"), len(b"bytes")
    with pytest.raises(BlobMissing):  # the bytes are gone: nothing is recorded, the upload goes on
        store.commit_blob_sync("app", d, size, "up-2", lambda n: False)
    with pytest.raises(BlobMissing):  # deduplicating against a blob nobody recorded
        store.commit_blob_sync("app", d, size, "up-2", lambda n: n == size, dedup=True)
    assert not store.blob_known_sync(d) and await store.get_upload("app", "up-2") is not None
    store.commit_blob_sync("app", d, size, "up-2", lambda n: n == size)
    assert await store.blob_size("app", d) == size and await store.get_upload("app", "up-2") is None
    store.commit_blob_sync("other", d, size, None, lambda n: n == size, dedup=True)
    assert await store.blob_size("other", d) == size
    assert await store.mount_blob("dst", d, "app", lambda n: False) is None
    assert await store.blob_size("dst", d) is None
    assert await store.mount_blob("dst", d, "app", lambda n: n == size) == size


async def test_gc_removes_bytes_inside_the_transaction_that_drops_the_row(store: MetaStore) -> None:
    loose, linked = blob(store, "app", b"loose"), blob(store, "app", b"linked")
    assert await store.unlink_blob("app", loose) == "deleted"
    removed: list[str] = []
    assert not store.drop_blob_sync(linked, time.time() + 60, lambda: removed.append(linked))
    assert store.drop_blob_sync(loose, time.time() + 60, lambda: removed.append(loose))
    assert removed == [loose] and not store.blob_known_sync(loose)

    def fail() -> None:
        raise OSError("the disk said no")

    spare = blob(store, "app", b"spare")
    assert await store.unlink_blob("app", spare) == "deleted"
    with pytest.raises(OSError):
        store.drop_blob_sync(spare, time.time() + 60, fail)
    assert store.blob_known_sync(spare)  # rolled back with the failed removal
    # A file without a row goes, under a placeholder row that leaves no trace; one with a row stays.
    assert store.drop_orphan_sync(digest_of(b"orphan"), lambda: True)
    assert not store.blob_known_sync(digest_of(b"orphan"))
    assert not store.drop_orphan_sync(linked, lambda: pytest.fail("a recorded blob is no orphan"))


async def test_unlink(store: MetaStore) -> None:
    config, layer, spare = (blob(store, "app", x) for x in (b"config", b"layer", b"spare"))
    record, refs = manifest(layer, config=config)
    assert (await store.put_manifest("app", record, refs, "v1")).created
    assert await store.unlink_blob("app", layer) == "referenced"
    assert await store.blob_size("app", layer) == len(b"layer")
    assert await store.unlink_blob("nowhere", layer) == "unknown"
    assert await store.unlink_blob("app", digest_of(b"never")) == "unknown"
    assert await store.unlink_blob("app", spare) == "deleted"
    assert await store.blob_size("app", spare) is None
    assert await store.unlink_blob("app", spare) == "unknown"
    assert store.blob_known_sync(spare)  # the blob row stays for GC
    assert await store.delete_manifest("app", record.digest)
    assert await store.unlink_blob("app", layer) == "deleted"


# -- uploads ----------------------------------------------------------------------------------------
async def test_upload_lifecycle(store: MetaStore) -> None:
    before = time.time()
    await store.create_upload("u1", "app", b"\x00state-0\xff")
    up = await store.get_upload("app", "u1")
    assert up is not None
    assert (up.id, up.repository, up.size, up.hash_state) == ("u1", "app", 0, b"\x00state-0\xff")
    assert type(up.hash_state) is bytes
    assert before <= up.created_at == up.updated_at <= time.time()
    assert await store.get_upload("other", "u1") is None
    assert await store.get_upload("app", "u2") is None

    assert await store.advance_upload("u1", 0, 100, b"state-100")
    assert not await store.advance_upload("u1", 0, 50, b"stale")  # compare-and-set: someone moved it
    assert not await store.advance_upload("nope", 0, 50, b"x")
    up = await store.get_upload("app", "u1")
    assert up is not None and (up.size, up.hash_state) == (100, b"state-100")
    assert up.updated_at >= up.created_at
    big = 5 * 1024**3  # past 32 bits
    assert await store.advance_upload("u1", 100, big, b"state-big")
    up = await store.get_upload("app", "u1")
    assert up is not None and up.size == big

    await store.create_upload("u2", "app", b"s")
    assert await store.upload_ids() == {"u1", "u2"}
    assert set(await store.expired_uploads(time.time() + 1)) == {"u1", "u2"}
    assert await store.expired_uploads(before - 1) == []
    assert await store.delete_upload("u1")
    assert not await store.delete_upload("u1")
    assert await store.upload_ids() == {"u2"}


# -- manifests and tags -----------------------------------------------------------------------------
async def test_put_manifest_with_missing_references_stores_nothing(store: MetaStore) -> None:
    config = blob(store, "app", b"config")
    layer1, layer2 = digest_of(b"l1"), digest_of(b"l2")
    record, refs = manifest(layer1, layer2, config=config)
    result = await store.put_manifest("app", record, refs, "v1")
    assert not result.created
    assert result.missing == (layer1, layer2)
    assert await store.get_manifest("app", record.digest) is None
    assert await store.get_tagged_manifest("app", "v1") is None
    assert await store.list_tags("app", None, None) == []
    assert await events(store) == []
    # A child manifest that is not there is missing too.
    idx, idx_refs = index(record.digest)
    assert (await store.put_manifest("app", idx, idx_refs, None)).missing == (record.digest,)


async def test_put_manifest_with_all_references(store: MetaStore) -> None:
    config, layer = blob(store, "app", b"config"), blob(store, "app", b"layer")
    record, refs = manifest(layer, layer, config=config)  # a duplicate reference is recorded once
    result = await store.put_manifest("app", record, refs, "v1")
    assert result.created and result.missing == ()
    got = await store.get_manifest("app", record.digest)
    assert got == record
    assert type(got.content) is bytes
    assert await store.get_tagged_manifest("app", "v1") == record
    assert await store.list_tags("app", None, None) == ["v1"]
    assert await events(store) == [("artifact.pushed", "app", record.digest, "v1"),
                                   ("tag.created", "app", record.digest, "v1")]
    # The references are recorded: both blobs are held by the manifest.
    assert await store.unlink_blob("app", config) == "referenced"
    assert await store.unlink_blob("app", layer) == "referenced"
    assert await store.stale_links(time.time() + 60) == []

    # The same manifest again (same tag): nothing new, no events.
    again = await store.put_manifest("app", record, refs, "v1")
    assert not again.created and again.missing == ()
    assert len(await events(store)) == 2
    # The same manifest with another tag: tag event only.
    assert not (await store.put_manifest("app", record, refs, "latest")).created
    assert await store.list_tags("app", None, None) == ["latest", "v1"]
    assert (await events(store))[2:] == [("tag.created", "app", record.digest, "latest")]


async def test_tag_moves_and_delete_tag(store: MetaStore) -> None:
    config = blob(store, "app", b"config")
    a, a_refs = manifest(blob(store, "app", b"a"), config=config)
    b, b_refs = manifest(blob(store, "app", b"b"), config=config)
    await store.put_manifest("app", a, a_refs, "latest")
    assert (await store.put_manifest("app", b, b_refs, "latest")).created
    assert await store.get_tagged_manifest("app", "latest") == b
    assert await store.get_manifest("app", a.digest) == a  # the old one stays, untagged
    assert (await events(store))[-1] == ("tag.created", "app", b.digest, "latest")
    assert await store.get_tagged_manifest("app", "nope") is None
    assert await store.get_tagged_manifest("other", "latest") is None
    assert await store.get_manifest("other", b.digest) is None

    assert await store.delete_tag("app", "latest")
    assert not await store.delete_tag("app", "latest")
    assert not await store.delete_tag("nowhere", "latest")
    assert await store.get_tagged_manifest("app", "latest") is None
    assert await store.get_manifest("app", b.digest) == b
    assert (await events(store))[-1] == ("tag.deleted", "app", b.digest, "latest")


async def test_delete_manifest(store: MetaStore) -> None:
    config, layer = blob(store, "app", b"config"), blob(store, "app", b"layer")
    record, refs = manifest(layer, config=config)
    await store.put_manifest("app", record, refs, "v1")
    await store.put_manifest("app", record, refs, "v2")
    n = len(await events(store))
    assert await store.delete_manifest("app", record.digest)
    assert await store.get_manifest("app", record.digest) is None
    assert await store.get_tagged_manifest("app", "v1") is None
    assert await store.list_tags("app", None, None) == []
    assert sorted((await events(store))[n:]) == [("artifact.deleted", "app", record.digest, None),
                                                  ("tag.deleted", "app", record.digest, "v1"),
                                                  ("tag.deleted", "app", record.digest, "v2")]
    assert (await events(store))[-1][0] == "artifact.deleted"
    assert not await store.delete_manifest("app", record.digest)
    assert not await store.delete_manifest("nowhere", record.digest)
    # Its references are gone with it; the links stay until GC or an explicit unlink.
    assert sorted(d for _, d in await store.stale_links(time.time() + 60)) == sorted([config, layer])
    # Pushed again after deletion: created anew.
    assert (await store.put_manifest("app", record, refs, None)).created


async def test_list_tags_paginates(store: MetaStore) -> None:
    config = blob(store, "app", b"config")
    record, refs = manifest(config)
    tags = sorted(["1.0", "1.1", "2.0", "Latest", "latest", "v1", "v1.0-rc_1"])
    for t in reversed(tags):
        await store.put_manifest("app", record, refs, t)
    assert await store.list_tags("app", None, None) == tags
    assert await store.list_tags("app", 3, None) == tags[:3]
    assert await store.list_tags("app", 3, tags[2]) == tags[3:6]
    assert await store.list_tags("app", 3, tags[-1]) == []
    assert await store.list_tags("app", None, "1.1") == tags[2:]
    assert await store.list_tags("nowhere", None, None) is None
    blob(store, "empty", b"x")
    assert await store.list_tags("empty", 10, None) == []


async def test_referrers(store: MetaStore) -> None:
    config = blob(store, "app", b"config")
    subject, subject_refs = manifest(config)
    await store.put_manifest("app", subject, subject_refs, "v1")
    sig, sig_refs = manifest(blob(store, "app", b"sig"), config=config, subject=subject.digest,
                             artifact_type="application/vnd.example.sig", annotations={"k": "v"})
    sbom, sbom_refs = manifest(blob(store, "app", b"sbom"), config=config, subject=subject.digest,
                               artifact_type="application/vnd.example.sbom")
    other, other_refs = manifest(blob(store, "app", b"other"), config=config, subject=digest_of(b"else"))
    for rec, refs in ((sig, sig_refs), (sbom, sbom_refs), (other, other_refs)):
        assert (await store.put_manifest("app", rec, refs, None)).created
    found = await store.referrers("app", subject.digest)
    assert found == [sig, sbom]  # in push order
    assert found[0].annotations == json.dumps({"k": "v"})
    assert found[1].artifact_type == "application/vnd.example.sbom"
    assert await store.referrers("other", subject.digest) == []
    assert await store.referrers("app", digest_of(b"none")) == []


# -- accessories ------------------------------------------------------------------------------------
async def test_accessories_are_listed_under_their_subject_and_deleted_with_it(store: MetaStore) -> None:
    """The catalog's and the cascade's SQL (meta/accessories.py) on both backends."""
    config = blob(store, "acc", b"config")
    image, r1 = manifest(blob(store, "acc", b"image"), config=config)
    await store.put_manifest("acc", image, r1, "v1")
    legacy, r2 = manifest(blob(store, "acc", b"sig"), config=config)
    await store.put_manifest("acc", legacy, r2, f"sha256-{image.digest[7:]}.sig")
    referrer, r3 = manifest(blob(store, "acc", b"ref"), config=config, subject=image.digest,
                            artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json")
    sbom, r4 = manifest(blob(store, "acc", b"sbom"), config=config, subject=image.digest,
                        artifact_type="application/spdx+json")
    stray, r5 = manifest(blob(store, "acc", b"stray"), config=config, subject=digest_of(b"elsewhere"))
    for rec, refs in ((referrer, r3), (sbom, r4), (stray, r5)):
        await store.put_manifest("acc", rec, refs, None)
    queries = CatalogQueries(store.db)

    page = await queries.artifacts("acc", 50, 0)
    assert page is not None
    listed, total = page
    assert sorted(a.digest for a in listed) == sorted([image.digest, stray.digest]) and total == 2
    [subject] = [a for a in listed if a.digest == image.digest]
    assert sorted((x.type, x.tag or "", x.digest) for x in subject.accessories) == sorted([
        ("signature", f"sha256-{image.digest[7:]}.sig", legacy.digest), ("signature", "", referrer.digest),
        ("sbom", "", sbom.digest)])
    assert all(x.size > 0 for x in subject.accessories)
    one = await queries.artifacts("acc", 1, 0, legacy.digest)  # an accessory is still found by its digest
    assert one is not None and [a.digest for a in one[0]] == [legacy.digest]
    summary = await queries.image("acc")
    assert summary is not None and summary.artifacts == 2

    assert await store.delete_manifest("acc", image.digest)
    for gone in (image, legacy, referrer, sbom):
        assert await store.get_manifest("acc", gone.digest) is None
    assert await store.list_tags("acc", None, None) == []
    assert await store.get_manifest("acc", stray.digest) is not None  # not this repository's subject


# -- garbage collection -----------------------------------------------------------------------------
async def test_untagged_manifests(store: MetaStore) -> None:
    config = blob(store, "app", b"config")
    tagged, r1 = manifest(blob(store, "app", b"t"), config=config)
    loose, r2 = manifest(blob(store, "app", b"l"), config=config)
    child, r3 = manifest(blob(store, "app", b"c"), config=config)
    referrer, r4 = manifest(blob(store, "app", b"r"), config=config, subject=tagged.digest)
    orphan, r5 = manifest(blob(store, "app", b"o"), config=config, subject=digest_of(b"gone"))
    await store.put_manifest("app", tagged, r1, "v1")
    for rec, refs in ((loose, r2), (child, r3), (referrer, r4), (orphan, r5)):
        await store.put_manifest("app", rec, refs, None)
    idx, idx_refs = index(child.digest)
    await store.put_manifest("app", idx, idx_refs, "multi")

    before = time.time() - 60
    assert await store.untagged_manifests(before) == []  # the grace period protects everything
    untagged = await store.untagged_manifests(time.time() + 60)
    assert sorted(untagged) == sorted([("app", loose.digest), ("app", orphan.digest)])

    # GC deletes one: the index is removed with its tag, and its child becomes collectable.
    assert await store.delete_tag("app", "multi")
    untagged = await store.untagged_manifests(time.time() + 60)
    assert ("app", idx.digest) in untagged and ("app", child.digest) not in untagged
    assert await store.delete_manifest("app", idx.digest)
    assert ("app", child.digest) in await store.untagged_manifests(time.time() + 60)


async def test_delete_untagged_manifest_rechecks_under_lock(store: MetaStore) -> None:
    """What GC listed as untagged may have been tagged, or put in an index, since: then it stays."""
    config = blob(store, "app", b"config")
    retagged, r1 = manifest(blob(store, "app", b"x"), config=config)
    adopted, r2 = manifest(blob(store, "app", b"y"), config=config)
    loose, r3 = manifest(blob(store, "app", b"z"), config=config)
    for rec, refs in ((retagged, r1), (adopted, r2), (loose, r3)):
        await store.put_manifest("app", rec, refs, None)
    later = time.time() + 60
    assert len(await store.untagged_manifests(later)) == 3
    await store.put_manifest("app", retagged, r1, "v2")
    idx, idx_refs = index(adopted.digest)
    await store.put_manifest("app", idx, idx_refs, "multi")
    assert not await store.delete_untagged_manifest("app", retagged.digest, later)
    assert not await store.delete_untagged_manifest("app", adopted.digest, later)
    assert not await store.delete_untagged_manifest("app", loose.digest, time.time() - 60)  # too young
    assert await store.delete_untagged_manifest("app", loose.digest, later)
    assert await store.get_manifest("app", retagged.digest) is not None
    assert await store.get_manifest("app", adopted.digest) is not None
    assert await store.get_manifest("app", loose.digest) is None


async def test_refused_push_creates_no_repository(store: MetaStore) -> None:
    record, refs = manifest(digest_of(b"never"), config=digest_of(b"never-config"))
    result = await store.put_manifest("ghost/repo", record, refs, "v1")
    assert result.missing == (digest_of(b"never-config"), digest_of(b"never"))
    assert not await store.repository_exists("ghost/repo")
    assert await store.list_repositories(None, None) == []


async def test_names_sort_bytewise_on_every_engine(store: MetaStore) -> None:
    for name in ("b", "a-z", "a.z", "a_z", "a/z", "az"):
        blob(store, name, b"x")
    expected = sorted(["b", "a-z", "a.z", "a_z", "a/z", "az"])
    assert await store.list_repositories(None, None) == expected
    assert await store.list_repositories(2, expected[1]) == expected[2:4]


async def test_stale_links_and_drop_link(store: MetaStore) -> None:
    config, used, loose = (blob(store, "app", x) for x in (b"config", b"used", b"loose"))
    used_repo = await repo_id_of(store, used)
    record, refs = manifest(used, config=config)
    await store.put_manifest("app", record, refs, "v1")
    assert await store.stale_links(time.time() - 60) == []  # grace period
    stale = await store.stale_links(time.time() + 60)
    assert stale == [(used_repo, loose)]
    repo_id, _ = stale[0]

    assert not await store.drop_link(repo_id, loose, time.time() - 60)  # linked after the cutoff
    assert not await store.drop_link(used_repo, used, time.time() + 60)  # referenced
    assert not await store.drop_link(repo_id, digest_of(b"nothing"), time.time() + 60)
    assert await store.drop_link(repo_id, loose, time.time() + 60)
    assert await store.blob_size("app", loose) is None
    assert not await store.drop_link(repo_id, loose, time.time() + 60)
    assert await store.blob_size("app", used) == len(b"used")


async def test_unreferenced_blobs_and_drop_blob(store: MetaStore) -> None:
    linked, loose = blob(store, "app", b"linked"), blob(store, "app", b"loose")
    repo_id = await repo_id_of(store, linked)
    assert await store.unlink_blob("app", loose) == "deleted"
    assert await store.unreferenced_blobs(time.time() - 60) == []  # grace period
    # (digest, size, repositories still linking it), in digest order.
    assert await store.unreferenced_blobs(time.time() + 60) == sorted(
        [(loose, len(b"loose"), frozenset()), (linked, len(b"linked"), frozenset({repo_id}))])
    assert not store.drop_blob_sync(loose, time.time() - 60)  # created after the cutoff
    assert not store.drop_blob_sync(linked, time.time() + 60)  # a repository links it
    assert not store.drop_blob_sync(digest_of(b"nothing"), time.time() + 60)
    assert store.drop_blob_sync(loose, time.time() + 60)
    assert not store.blob_known_sync(loose)
    assert not store.drop_blob_sync(loose, time.time() + 60)

    # A blob a manifest references in one repository survives its link being dropped in another.
    record, refs = manifest(linked)
    await store.put_manifest("app", record, refs, None)
    await store.mount_blob("copy", linked, "app", stored)
    assert await store.unlink_blob("copy", linked) == "deleted"
    assert await store.unreferenced_blobs(time.time() + 60) == []  # referenced
    assert not store.drop_blob_sync(linked, time.time() + 60)
    await store.record_gc(time.time(), False, 1, 0, 0, len(b"loose"))
    await store.record_gc(time.time(), True, 0, 0, 0, 0)


# -- concurrency ------------------------------------------------------------------------------------
ROUNDS = 150


async def _race(store: MetaStore, gc_side: str, rounds: int = ROUNDS) -> dict[str, int]:
    """Race a manifest PUT referencing a fresh blob against GC (or a DELETE) removing its link."""
    outcomes = {"manifest": 0, "gc": 0}
    for i in range(rounds):
        config, layer = blob(store, "race", b"config"), blob(store, "race", f"layer-{i}".encode())
        repo_id = await repo_id_of(store, layer)
        record, refs = manifest(layer, config=config)
        cutoff = time.time() + 60  # everything is old enough for this GC
        results: dict[str, object] = {}

        async def put() -> None:
            results["put"] = await store.put_manifest("race", record, refs, None)

        async def collect() -> None:
            if gc_side == "drop_link":
                results["gc"] = await store.drop_link(repo_id, layer, cutoff)
            else:
                results["gc"] = await store.unlink_blob("race", layer) == "deleted"

        async with trio.open_nursery() as nursery:
            if i % 2:
                nursery.start_soon(put)
                nursery.start_soon(collect)
            else:
                nursery.start_soon(collect)
                nursery.start_soon(put)

        put_result = results["put"]
        stored = await store.get_manifest("race", record.digest)
        link = await store.blob_size("race", layer)
        if stored is not None:
            # The invariant: a stored manifest's blobs are still linked in its repository.
            assert link is not None, f"round {i}: manifest stored but its layer link was removed"
            assert results["gc"] is False
            outcomes["manifest"] += 1
        else:
            assert put_result.missing == (layer,)  # type: ignore[attr-defined]
            assert results["gc"] is True and link is None
            outcomes["gc"] += 1
        if stored is not None:
            assert await store.delete_manifest("race", record.digest)
    return outcomes


@pytest.mark.parametrize("gc_side", ["drop_link", "unlink_blob"])
async def test_put_manifest_races_link_removal(store: MetaStore, gc_side: str) -> None:
    outcomes = await _race(store, gc_side)
    assert sum(outcomes.values()) == ROUNDS


@pytest.mark.postgres
async def test_postgresql_ignores_a_stricter_default_isolation(postgres_server: PostgresServer,
                                                                tmp_path: Path) -> None:
    """The store relies on READ COMMITTED (each statement sees what committed before it)."""
    name = f"ncr_test_{next(_db_names)}"
    with postgres_server.database(name) as url:
        postgres_server.execute(f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'")
        test_migrate_from_several_nodes_at_once(url, tmp_path)
        db = _open(url, tmp_path)
        try:
            migrate(db)
            store = MetaStore(db)
            for gc_side in ("drop_link", "unlink_blob"):
                await _race(store, gc_side, rounds=40)
        finally:
            db.close()


# -- end to end -------------------------------------------------------------------------------------
@pytest.mark.postgres
def test_server_on_postgresql(postgres_server: PostgresServer, tmp_path: Path) -> None:
    with postgres_server.database(f"ncr_e2e_{next(_db_names)}") as url:
        srv = Server(data=tmp_path / "data", env={"NCR_DATABASE_URL": url}).start()
        try:
            _push_and_pull(srv)
        except BaseException:
            print(srv.log())
            raise
        finally:
            srv.stop()
        # The metadata went to PostgreSQL, not to a SQLite file.
        assert not (tmp_path / "data" / "meta.sqlite3").exists()
        import psycopg

        with psycopg.connect(url) as conn:
            kinds = [r[0] for r in conn.execute("SELECT kind FROM events ORDER BY id").fetchall()]
        assert kinds[:2] == ["artifact.pushed", "tag.created"]
        assert set(kinds[2:]) == {"artifact.pulled"}  # pulls are announced in batches


def _push_and_pull(srv: Server) -> None:
    name = "e2e/app"
    srv.ensure_registries("e2e")
    layer = b"layer bytes " * 1000
    config = b'{"architecture":"amd64","os":"linux"}'
    with srv.client(timeout=30) as c:
        # Chunked push: POST, PATCH, PUT.
        r = c.post(f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        r = c.patch(location, content=layer[:5000], headers={"Content-Type": "application/octet-stream",
                                                              "Content-Range": "0-4999"})
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == "0-4999"
        location = r.headers["Location"]
        r = c.put(location, params={"digest": digest_of(layer)}, content=layer[5000:],
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest_of(layer)
        # Monolithic push of the config.
        r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(config)}, content=config,
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text

        r = c.head(f"/v2/{name}/blobs/{digest_of(layer)}")
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(layer)
        assert c.get(f"/v2/{name}/blobs/{digest_of(layer)}").content == layer

        body = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(layer),
                        "size": len(layer)}],
        }).encode()
        mtype = "application/vnd.oci.image.manifest.v1+json"
        r = c.put(f"/v2/{name}/manifests/v1", content=body, headers={"Content-Type": mtype})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == digest_of(body)

        for ref in ("v1", digest_of(body)):
            r = c.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": mtype})
            assert r.status_code == 200, r.text
            assert r.content == body
            assert r.headers["Content-Type"] == mtype
            assert r.headers["Docker-Content-Digest"] == digest_of(body)
        assert c.get(f"/v2/{name}/tags/list").json() == {"name": name, "tags": ["v1"]}
        assert c.get("/v2/_catalog").json() == {"repositories": [name]}
        # The referenced layer cannot be deleted while the manifest uses it.
        assert c.delete(f"/v2/{name}/blobs/{digest_of(layer)}").status_code != 202


@pytest.mark.postgres
async def test_postgresql_restart_costs_a_reconnect_not_a_failed_request(postgres_server: PostgresServer,
                                                                        tmp_path: Path) -> None:
    with postgres_server.database("ncr_restart") as url:
        db = _open(url, tmp_path)
        try:
            db.IDLE_CHECK_SECONDS = 0.0  # type: ignore[attr-defined]  # probe every pooled connection
            migrate(db)
            store = MetaStore(db)
            blob(store, "app", b"before")
            postgres_server.restart()
            # The pooled connection died with the old server; the next unit of work must not fail.
            assert await store.blob_size("app", digest_of(b"before")) == len(b"before")
            blob(store, "app", b"after")
        finally:
            db.close()


# -- the access store (registries, users, keys, roles, audit) on both engines ----------------------


def _registry_info(name: str, **kw: object) -> RegistryInfo:
    now = time.time()
    fields: dict[str, object] = {"description": "", "public_read": False, "public_uri": True, "allowed_cidrs": (),
                                 "created_at": now, "updated_at": now, **kw}
    return RegistryInfo(name, **fields)  # type: ignore[arg-type]


async def test_access_store_registries(store: MetaStore) -> None:
    access = AccessStore(store.db)
    assert await access.create_registry(_registry_info("team", allowed_cidrs=("10.0.0.0/8",)), "admin")
    assert not await access.create_registry(_registry_info("team"), "admin")
    info = await access.registry("team")
    assert info is not None and info.allowed_cidrs == ("10.0.0.0/8",) and info.public_uri
    assert await access.update_registry(dataclasses.replace(info, public_uri=False, allowed_cidrs=()), "admin")
    updated = await access.registry("team")
    assert updated is not None and not updated.public_uri and updated.allowed_cidrs == ()
    # Images of the registry, and only of it ("team2/..." and "teamx" are not under "team/").
    blob(store, "team/app", b"a")
    await store.put_manifest("team/app", *manifest(digest_of(b"a")), tag="v1")
    blob(store, "team2/app", b"b")
    await store.put_manifest("team2/app", *manifest(digest_of(b"b")), tag="v1")
    blob(store, "team/only-blobs", b"c")
    assert await store.count_repositories("team") == 1
    removed = await access.delete_registry("team", "admin", purge=lambda tx: MetaStore.purge_repositories(tx, "team"))
    assert removed == 2  # the image and the repository holding only an upload's blob
    assert await access.registry("team") is None
    assert await store.list_tags("team/app", None, None) is None
    assert await store.list_tags("team2/app", None, None) == ["v1"]
    assert ("artifact.deleted", "team/app") in {(k, r) for k, r, _, _ in await events(store)}
    assert await access.delete_registry("team", "admin", purge=lambda tx: 0) is None


async def test_access_store_keys_limit_holds_under_concurrent_creation(store: MetaStore) -> None:
    access = AccessStore(store.db)
    assert access.ensure_user_sync("ci", "hash", False)
    assert not access.ensure_user_sync("ci", "other", True)  # the first one wins; nothing changes
    created: list[str] = []
    refused: list[str] = []

    async def create(i: int) -> None:
        try:
            await access.create_key("ci", f"NCRKEY{i:017d}", f"hash{i}", "", 5, "admin")
            created.append(str(i))
        except KeyLimitReached:
            refused.append(str(i))

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(create, i)
    assert len(created) == 5 and len(refused) == 3
    keys = await access.keys("ci")
    assert len(keys) == 5
    first = keys[0].id
    found = await access.key_for_login(first)
    assert found is not None and found[1].startswith("hash") and found[2] is False
    assert await access.revoke_key("ci", first, "admin")
    assert not await access.revoke_key("ci", first, "admin")
    assert await access.key_for_login(first) is None
    assert await access.revoked_keys() == {first}
    await access.touch_keys({keys[1].id: 1234.5})
    assert (await access.keys("ci"))[0].last_used_at == 1234.5
    with pytest.raises(UnknownUser):
        await access.create_key("nobody", "NCRX", "h", "", 5, "admin")


async def test_access_store_roles_users_and_audit(store: MetaStore) -> None:
    access = AccessStore(store.db)
    access.ensure_user_sync("dev", "hash", False)
    await access.create_key("dev", "NCRDEVKEY", "h", "", 5, "admin")
    assert await access.set_role("dev", "team", "service-viewer", "admin")
    assert await access.set_role("dev", "team", "project-admin", "admin")  # replaces
    assert await access.set_role("dev", "*", "image-uploader", "admin")
    assert await access.roles("dev") == {"team": "project-admin", "*": "image-uploader"}
    assert await access.members("team") == [("dev", "project-admin")]
    assert await access.set_role("dev", "*", None, "admin")
    assert not await access.set_role("dev", "*", None, "admin")
    await access.write_audit([AuditEntry(time.time(), "dev", "pull", "ok", "team", "team/app", "sha256:x", "1.2.3.4")])
    assert await access.delete_user("dev", "admin")
    assert await access.user("dev") is None
    assert await access.revoked_keys() == {"NCRDEVKEY"}  # a deleted user's keys stop working
    actions = [e.action for e in await access.audit(limit=50)]
    assert actions[:1] == ["user.delete"]
    assert {"role.grant", "role.revoke", "key.create", "pull", "user.create"} <= set(actions)
    assert [e.action for e in await access.audit(action="role")] == ["role.revoke", "role.grant", "role.grant",
                                                                     "role.grant"]
    pulls = await access.audit(actor="dev")
    assert [(e.repository, e.client) for e in pulls] == [("team/app", "1.2.3.4")]
    newest = await access.audit(limit=2)
    assert [e.id for e in await access.audit(before=newest[-1].id, limit=1)] == [newest[-1].id - 1]  # type: ignore[operator]


# -- policies, schedules and webhooks on both engines -----------------------------------------------


async def test_policy_store_limits_duplicates_runs_and_schedules(store: MetaStore) -> None:
    access, policies = AccessStore(store.db), PolicyStore(store.db)
    await access.create_registry(_registry_info("team"), "admin")
    with pytest.raises(UnknownRegistry):
        await policies.add_protection("nowhere", "**", "v*", 15)
    first = await policies.add_cleanup("team", "**", "v*", False, "older_than", 30, 15)
    with pytest.raises(DuplicatePolicy) as dup:
        await policies.add_cleanup("team", "**", "v*", False, "older_than", 30, 15)
    assert dup.value.existing == first.id
    for n in range(14):
        await policies.add_cleanup("team", "**", "v*", False, "older_than", 31 + n, 15)
    with pytest.raises(PolicyLimitReached):
        await policies.add_cleanup("team", "**", "x", False, "older_than", 1, 15)
    assert await policies.set_cleanup_enabled("team", first.id, False)
    assert not (await policies.cleanup_policies("team"))[0].enabled
    guard = await policies.add_protection("team", "**", "release-*", 15)
    with pytest.raises(DuplicatePolicy):
        await policies.add_protection("team", "**", "release-*", 15)
    assert [p.id for p in await policies.protection_policies("team")] == [guard.id]
    run_id = await policies.start_run("team", "manual", True, [{"id": first.id}])
    await policies.add_run_items(run_id, [("team/app", "sha256:a", '["v1"]', "would-delete", None)])
    await policies.finish_run(run_id, "succeeded", 1, 0)
    found = await policies.run("team", run_id)
    assert found is not None and found[0].status == "succeeded" and found[1][0]["tags"] == ["v1"]
    assert (await policies.runs("team", 10, 0))[1] == 1
    # Two nodes never take the same due job.
    await policies.set_schedule("cleanup:team", "0 * * * *", 100.0)
    a, b = await policies.claim_due("node-a", 200.0, 60), await policies.claim_due("node-b", 200.0, 60)
    assert [j.job for j in a] == ["cleanup:team"] and b == []
    await policies.finish_job("cleanup:team", "node-a", 200.0, 3600.0)
    assert await policies.claim_due("node-b", 300.0, 60) == []
    row = await policies.schedule("cleanup:team")
    assert row is not None and row.last_run_at == 200.0 and row.next_run_at == 3600.0


async def test_guards_refuse_inside_the_transaction_and_planned_deletes_recheck(store: MetaStore) -> None:
    access, policies = AccessStore(store.db), PolicyStore(store.db)
    await access.create_registry(_registry_info("team"), "admin")

    def guard(tx: Tx, repository: str, tag: str) -> str | None:
        return f"{tag} of {repository} is kept" if tag.startswith("v") else None

    one, two = manifest(blob(store, "team/app", b"g1")), manifest(blob(store, "team/app", b"g2"))
    await store.put_manifest("team/app", *one, tag="v1", guard=guard)  # creating a guarded tag is fine
    with pytest.raises(Protected, match="v1 of team/app is kept"):
        await store.put_manifest("team/app", *two, tag="v1", guard=guard)
    found = await store.get_tagged_manifest("team/app", "v1")
    assert found is not None and found.digest == one[0].digest
    assert await store.get_manifest("team/app", two[0].digest) is None  # the refused push stored nothing
    await store.put_manifest("team/app", *one, tag="v1", guard=guard)  # the same digest again: no change
    await store.put_manifest("team/app", *two, tag="dev", guard=guard)
    held = index(two[0].digest)
    await store.put_manifest("team/app", *held, tag="v-index", guard=guard)
    for refused in (store.delete_tag("team/app", "v1", guard), store.delete_manifest("team/app", one[0].digest, guard),
                    store.delete_repository("team/app", guard)):
        with pytest.raises(Protected):
            await refused
    with pytest.raises(Protected, match=f"is part of {held[0].digest}: v-index"):
        await store.delete_manifest("team/app", two[0].digest, guard)
    with pytest.raises(Protected):
        await store.db.write(lambda tx: MetaStore.purge_repositories(tx, "team", guard=guard))
    assert await store.list_tags("team/app", None, None) == ["dev", "v-index", "v1"]

    # What a cleanup plans over, and deletions that re-check what the plan saw.
    a, b = manifest(blob(store, "team/plan", b"pa")), manifest(blob(store, "team/plan", b"pb"))
    child = manifest(blob(store, "team/plan", b"pc"))
    await store.put_manifest("team/plan", *a, tag="a")
    await store.put_manifest("team/plan", *b, tag="b")
    await store.put_manifest("team/plan", *child, tag=None)
    parent = index(child[0].digest)
    await store.put_manifest("team/plan", *parent, tag="c")
    seen = {x.digest: x for x in await policies.cleanup_candidates("team") if x.repository == "team/plan"}
    assert seen[parent[0].digest].children == {child[0].digest} and seen[child[0].digest].tags == frozenset()
    assert seen[a[0].digest].tags == {"a"} and seen[a[0].digest].tagged_at is not None

    async def planned(d: str, tags: frozenset[str] | None = None, g: Guard | None = None) -> tuple[str, str | None]:
        x = seen[d]
        return await store.delete_planned("team/plan", d, x.tags if tags is None else tags, x.pushed_at, x.pulled_at,
                                          g)

    assert await planned(a[0].digest) == ("deleted", None)
    assert await planned(a[0].digest) == ("changed", "deleted meanwhile")
    assert (await planned(b[0].digest, frozenset({"other"})))[0] == "changed"
    assert await planned(child[0].digest) == ("needed", f"referenced by {parent[0].digest}")
    await store.record_pulls({("team/plan", b[0].digest): time.time() + 60})
    assert await planned(b[0].digest) == ("changed", "pulled since the plan")
    await policies.add_protection("team", "plan", "c", 15)
    outcome, reason = await planned(parent[0].digest, g=current_guard)
    assert outcome == "protected" and reason is not None and "tag c of team/plan is protected" in reason

    # Leases are kept, given back, and only by their owner; a deleted registry takes its policies along.
    await policies.set_schedule("cleanup:team", "* * * * *", 100.0)
    assert [j.job for j in await policies.claim_due("node-a", 200.0, 60)] == ["cleanup:team"]
    assert await policies.extend_lease("cleanup:team", "node-a", 400.0)
    assert not await policies.extend_lease("cleanup:team", "node-b", 400.0)
    assert await policies.claim_due("node-b", 300.0, 60) == []
    await policies.release_lease("cleanup:team", "node-a")
    assert [j.job for j in await policies.claim_due("node-b", 300.0, 60)] == ["cleanup:team"]
    await policies.add_cleanup("team", "**", "**", True, "older_than", 1, 15)
    await policies.start_run("team", "manual", True, [])
    await store.db.write(lambda tx: PolicyStore.purge_registry(tx, "team"))
    assert await policies.cleanup_policies("team") == [] and await policies.protection_policies("team") == []
    assert (await policies.runs("team", 10, 0))[1] == 0 and await policies.schedule("cleanup:team") is None


async def test_webhook_fan_out_is_exactly_once_and_claims_are_exclusive(store: MetaStore) -> None:
    hooks = WebhookStore(store.db)
    all_events = await hooks.create("team", "all", "http", "http://127.0.0.1:1/", "s", "", [])
    pushes = await hooks.create("team", "pushes", "slack", "http://127.0.0.1:1/", "", "", ["artifact.pushed"])
    with pytest.raises(DuplicateWebhook):
        await hooks.create("team", "all", "http", "http://x/", "", "", [])
    token = ACTOR.set("alice")
    try:
        blob(store, "team/app", b"x")
        await store.put_manifest("team/app", *manifest(digest_of(b"x")), tag="v1")  # pushed + tag.created
        blob(store, "other/app", b"y")
        await store.put_manifest("other/app", *manifest(digest_of(b"y")), tag="v1")  # another registry
    finally:
        ACTOR.reset(token)
    seen: list[tuple[str, str, str | None]] = []

    def render(hook: Webhook, event: Event) -> str:
        seen.append((hook.name, event.kind, event.actor))
        return json.dumps({"type": event.kind})

    assert await hooks.fan_out(render) >= 4
    assert await hooks.fan_out(render) == 0  # the cursor moved with the deliveries
    assert sorted(seen) == [("all", "artifact.pushed", "alice"), ("all", "tag.created", "alice"),
                            ("pushes", "artifact.pushed", "alice")]
    now = time.time()
    first = await hooks.claim(now + 1, 30, 10)
    assert len(first) == 3 and await hooks.claim(now + 1, 30, 10) == []  # leased
    await hooks.record_attempt(first[0].id, True, 200, None, None)
    await hooks.record_attempt(first[1].id, False, 500, "HTTP 500", now + 5)
    await hooks.record_attempt(first[2].id, False, None, "refused", None)
    assert [d.id for d in await hooks.claim(now + 6, 30, 10)] == [first[1].id]
    history, total = await hooks.deliveries(all_events.id, 10, 0)
    assert total == 2 and {d.status for d in history} <= {"delivered", "pending", "failed"}
    # Pruning: finished deliveries and fanned-out events older than the cutoff go; pending ones stay.
    pending_event = first[1].event_id
    assert await hooks.prune(time.time() + 3600) > 0
    left = {r[0] for r in await store.db.read(lambda tx: tx.all("SELECT id FROM events"))}
    assert left == {pending_event}
    kept = {r[0] for r in await store.db.read(lambda tx: tx.all("SELECT id FROM deliveries"))}
    assert kept == {first[1].id}
    assert await hooks.enqueue(pushes.id, "test", "{}") > 0
    assert await hooks.delete("team", pushes.id) and await hooks.by_id(pushes.id) is None


async def test_webhook_fan_out_takes_late_events_and_claims_leave_room_for_other_webhooks(store: MetaStore) -> None:
    hooks = WebhookStore(store.db)
    first = await hooks.create("team", "first", "http", "http://127.0.0.1:1/", "", "", [])
    second = await hooks.create("team", "second", "http", "http://127.0.0.1:2/", "", "", [], enabled=False)
    assert not second.enabled
    with pytest.raises(DuplicateWebhook):
        await hooks.update(dataclasses.replace(second, name="first"))
    assert await hooks.update(dataclasses.replace(second, enabled=True))

    async def event(event_id: int, at: float) -> None:
        # Written with its ID: on PostgreSQL a transaction still open holds a lower ID while higher
        # ones commit, so a lower ID can appear after a higher one was fanned out.
        def run(tx: Tx) -> None:
            override = " OVERRIDING SYSTEM VALUE" if tx.dialect.name == "postgresql" else ""
            tx.execute(f"INSERT INTO events (id, kind, repository, tag, created_at){override} "
                       "VALUES (?, 'tag.created', 'team/app', 'v1', ?)", (event_id, at))

        await store.db.write(run)

    def render(hook: Webhook, e: Event) -> str:
        return json.dumps({"event": e.id})

    now = time.time()
    await event(2, now)
    assert (await hooks.work_due())[0] and await hooks.fan_out(render) == 1
    await event(1, now)  # late, below one already done: not skipped
    assert (await hooks.work_due())[0] and await hooks.fan_out(render) == 1
    await event(4, now)  # 3 never comes (rolled back): nothing waits for it
    assert await hooks.fan_out(render) == 1 and not (await hooks.work_due())[0]
    assert await hooks.fan_out(render) == 0

    # Three deliveries per webhook; a caller already sending one to `first` gets one more of it.
    claimed = await hooks.claim(now + 1, 30, 10, per_webhook=2, busy={first.id: 1})
    assert Counter(d.webhook_id for d in claimed) == {first.id: 1, second.id: 2}
    assert (await hooks.work_due())[1] == pytest.approx(now + 1)  # the rest are due
    mine = claimed[0]
    await hooks.release([mine.id], now)
    again = await hooks.claim(now + 1, 30, 10, per_webhook=2, busy={first.id: 1, second.id: 2})
    assert [d.id for d in again] == [mine.id]
    await hooks.record_attempt(mine.id, False, 500, "HTTP 500", now + 2, duration=0.25)
    await hooks.record_attempt(mine.id, True, 204, None, None)
    log = await hooks.attempts_of([mine.id, 999_999])
    assert [(a.attempt, a.status, a.error) for a in log[mine.id]] == [(1, 500, "HTTP 500"), (2, 204, None)]
    assert log[mine.id][0].duration_ms == 250 and log[999_999] == []
    done = await hooks.delivery(mine.webhook_id, mine.id)
    assert done is not None and (done.status, done.attempts, done.last_status) == ("delivered", 2, 204)
    assert await hooks.prune(time.time() + 1) == 1  # only the finished one
    assert await hooks.delivery(mine.webhook_id, mine.id) is None and await hooks.pending() == 5


async def test_webhook_secrets_are_sealed_at_rest_and_rows_stored_in_clear_are_sealed_at_start(
        store: MetaStore, tmp_path: Path) -> None:
    """The database holds no webhook secret or auth header in clear: they open only with the key in the
    data directory, and only in their own row and field. Rows an older version stored in clear are
    sealed when the service opens (`seal_stored`, run by every process at start: idempotent)."""
    access = AccessStore(store.db)
    assert await access.create_registry(_registry_info("team"), "admin")
    hooks = WebhookStore(store.db)
    sealer = Sealer.in_directory(tmp_path / "keys")
    assert (tmp_path / "keys" / "secrets.key").stat().st_mode & 0o777 == 0o600
    config = Config(data_dir=tmp_path)
    webhooks = Webhooks(config, hooks, access, Sender.of(config, sealer))
    new = await webhooks.create("team", {"name": "new", "kind": "http", "url": "https://ci.example/hook",
                                         "secret": "new-s3cret", "auth_header": "Bearer new-t0ken"})
    old = await hooks.create("team", "old", "http", "https://old.example/", "old-s3cret", "Bearer old-t0ken", [])
    changed = await webhooks.create("team", {"name": "changed", "kind": "slack", "url": "https://x.example/"})
    await webhooks.update("team", changed.id, {"auth_header": "Bearer changed-t0ken"})

    async def stored() -> str:
        return repr(await store.db.read(lambda tx: tx.all("SELECT * FROM webhooks ORDER BY id")))

    clear = ("new-s3cret", "new-t0ken", "changed-t0ken")
    rows = await stored()
    assert not any(c in rows for c in clear) and "old-s3cret" in rows
    assert webhooks.seal_stored() == 2 and webhooks.seal_stored() == 0
    rows = await stored()
    assert not any(c in rows for c in (*clear, "old-s3cret", "old-t0ken"))

    body = b'{"type": "test"}'
    expected = {new.id: ("new-s3cret", "Bearer new-t0ken"), old.id: ("old-s3cret", "Bearer old-t0ken"),
                changed.id: (None, "Bearer changed-t0ken")}
    for hook_id, (secret, auth) in expected.items():
        headers = request_headers(await webhooks.get("team", hook_id), 7, "test", body, sealer)
        assert headers.get("X-NCR-Signature") == (secret and signature(secret, body))
        assert headers["Authorization"] == auth
    # A sealed value copied into another row or field, or opened with another key, opens nothing.
    theirs, mine = await webhooks.get("team", new.id), await webhooks.get("team", changed.id)
    for copied in (dataclasses.replace(mine, auth_header=theirs.auth_header),
                   dataclasses.replace(theirs, auth_header=theirs.secret)):
        with pytest.raises(SealError):
            request_headers(copied, 7, "test", body, sealer)
    with pytest.raises(SealError):
        request_headers(theirs, 7, "test", body, Sealer.in_directory(tmp_path / "another"))
