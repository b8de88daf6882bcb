"""The metadata store: the one owner of repositories, blob links, manifests, tags, uploads and events.

Every change that announces itself writes its event row (the outbox) in the same transaction.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ncr_trio.meta.accessories import accessory_digests
from ncr_trio.meta.db import Database, Tx


@dataclass(frozen=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int
    content: bytes
    artifact_type: str | None = None
    subject: str | None = None
    annotations: str | None = None  # JSON text, as pushed


@dataclass(frozen=True)
class Reference:
    """A manifest's reference to a blob or to a child manifest (in an index)."""

    digest: str
    kind: str  # "blob" | "manifest"


@dataclass(frozen=True)
class Upload:
    id: str
    repository: str
    size: int
    hash_state: bytes
    created_at: float
    updated_at: float
    storage_state: str = ""  # the storage driver's (UploadSink.state) for the acknowledged bytes


@dataclass(frozen=True)
class PutResult:
    missing: tuple[str, ...] = ()
    created: bool = False


# Who is acting (a user, "anonymous", or a job such as "cleanup"), for the events a change writes.
# Set once per request or job; read by each write method *before* its transaction function runs
# (which may run on the writer's thread, outside this context).
ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("ncr_trio_actor", default=None)


class BlobMissing(Exception):
    """A blob's bytes are not in storage, or its row is gone, at the moment of recording it: a GC
    (maybe another node's) removed it meanwhile. Nothing was recorded; store the bytes again."""


# Whether a blob's `size` bytes are in storage: the check its transaction runs with its row locked.
Stored = Callable[[int], bool]


class Protected(Exception):
    """A change refused inside its transaction: a protection policy covers a tag it would move or
    remove. The message says which (the guard's reason)."""


# A protection check, run inside a write transaction against the tag state read there:
# guard(tx, repository, tag) is the reason a change may not move or remove `tag` of `repository`,
# or None. Every write that moves or removes tags takes one; the default (None) protects nothing.
Guard = Callable[[Tx, str, str], str | None]


def _check(tx: Tx, guard: Guard | None, repository: str, tags: Sequence[str], prefix: str = "") -> None:
    if guard is None:
        return
    for tag in tags:
        reason = guard(tx, repository, tag)
        if reason is not None:
            raise Protected(prefix + reason)


def _emit(tx: Tx, kind: str, repository: str, digest: str | None = None, tag: str | None = None,
          media_type: str | None = None, actor: str | None = None) -> None:
    tx.execute(
        "INSERT INTO events (kind, repository, digest, tag, media_type, actor, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (kind, repository, digest, tag, media_type, actor, time.time()),
    )


def _repo_id(tx: Tx, name: str) -> int | None:
    row = tx.one("SELECT id FROM repositories WHERE name = ?", (name,))
    return int(row[0]) if row else None


# The columns `_manifest` reads, in its order.
_MANIFEST_COLUMNS = "SELECT m.digest, m.media_type, m.size, m.content, m.artifact_type, m.subject, m.annotations "


def _link_blob(tx: Tx, repo_id: int, digest: str, now: float) -> None:
    tx.execute("INSERT INTO repo_blobs (repo_id, digest, linked_at) VALUES (?, ?, ?) "
               "ON CONFLICT (repo_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
               (repo_id, digest, now))


def _ensure_repo(tx: Tx, name: str) -> int:
    tx.execute("INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
               (name, time.time()))
    repo_id = _repo_id(tx, name)
    assert repo_id is not None
    return repo_id


def _tags_of(tx: Tx, repo_id: int, digest: str) -> list[str]:
    return [r[0] for r in tx.all("SELECT name FROM tags WHERE repo_id = ? AND digest = ?", (repo_id, digest))]


def _check_parents(tx: Tx, guard: Guard | None, repo_id: int, repository: str, digest: str) -> None:
    """A manifest an index holds is part of that index: the index's protected tags keep it too."""
    if guard is None:
        return
    seen, todo = {digest}, [digest]
    while todo:
        child = todo.pop()
        for (parent,) in tx.all("SELECT parent FROM manifest_refs WHERE repo_id = ? AND child = ? AND "
                                "kind = 'manifest'", (repo_id, child)):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
                _check(tx, guard, repository, sorted(_tags_of(tx, repo_id, parent)),
                       f"artifact {digest} of {repository} is part of {parent}: ")


def _delete_manifest(tx: Tx, repo_id: int, repository: str, digest: str, actor: str | None = None,
                     guard: Guard | None = None, depth: int = 0) -> bool:
    """Delete a manifest, its tags and its accessories (meta/accessories.py: its referrers and cosign
    `.sig`/`.att`/`.sbom` tagged manifests, and theirs, a few levels deep): an accessory never outlives
    its subject. The guard checks the subject's tags only: accessories follow their subject."""
    # Lock the row first: a concurrent PUT that tags it holds it FOR SHARE until it commits.
    if tx.one("SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?" + tx.dialect.for_update,
              (repo_id, digest)) is None:
        return False
    tags = _tags_of(tx, repo_id, digest)
    _check(tx, guard, repository, sorted(tags))
    _check_parents(tx, guard, repo_id, repository, digest)
    tx.execute("DELETE FROM tags WHERE repo_id = ? AND digest = ?", (repo_id, digest))
    tx.execute("DELETE FROM manifest_refs WHERE repo_id = ? AND parent = ?", (repo_id, digest))
    tx.execute("DELETE FROM manifests WHERE repo_id = ? AND digest = ?", (repo_id, digest))
    for tag in tags:
        _emit(tx, "tag.deleted", repository, digest, tag, actor=actor)
    _emit(tx, "artifact.deleted", repository, digest, actor=actor)
    if depth < _CASCADE_DEPTH:
        for accessory in accessory_digests(tx, repo_id, digest):
            _delete_manifest(tx, repo_id, repository, accessory, actor, None, depth + 1)
    return True


_CASCADE_DEPTH = 4  # a signature of an attestation of an image is two levels: room to spare


_KEPT = (
    "EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest) "
    "OR EXISTS (SELECT 1 FROM manifest_refs x WHERE x.repo_id = m.repo_id AND x.child = m.digest) "
    "OR (m.subject IS NOT NULL AND EXISTS (SELECT 1 FROM manifests s WHERE s.repo_id = m.repo_id "
    "AND s.digest = m.subject))"
)


# Names under "prefix/": from "prefix/" up to "prefix0" ('0' follows '/' in byte order).
_UNDER = "name{c} >= ? AND name{c} < ?"


class MetaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- repositories -------------------------------------------------------------------------
    async def repository_exists(self, name: str) -> bool:
        return await self.db.read(lambda tx: _repo_id(tx, name) is not None)

    async def list_repositories(self, limit: int | None, last: str | None) -> list[str]:
        def run(tx: Tx) -> list[str]:
            c = tx.dialect.collate
            sql = f"SELECT name FROM repositories WHERE name{c} > ? ORDER BY name{c}"
            params: list[object] = [last or ""]
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            return [r[0] for r in tx.all(sql, params)]

        return await self.db.read(run)

    async def count_repositories(self, prefix: str) -> int:
        """How many repositories named `prefix/...` hold a manifest (the images of a registry)."""
        return await self.db.read(lambda tx: MetaStore.count_repositories_in(tx, prefix))

    @staticmethod
    def count_repositories_in(tx: Tx, prefix: str) -> int:
        row = tx.one(f"SELECT COUNT(*) FROM repositories r WHERE {_UNDER.format(c=tx.dialect.collate)} "
                     "AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)", (prefix + "/", prefix + "0"))
        return int(row[0]) if row else 0

    @staticmethod
    def purge_repositories(tx: Tx, prefix: str, actor: str | None = None, guard: Guard | None = None) -> int:
        """Inside a caller's transaction: delete every repository named `prefix/...`, with its
        manifests and tags (each announced as an event); GC reclaims the blobs later. Raises
        `Protected` (and the caller's transaction rolls back) if `guard` refuses a tag."""
        rows = tx.all(f"SELECT id, name FROM repositories WHERE {_UNDER.format(c=tx.dialect.collate)}"
                      + tx.dialect.for_update, (prefix + "/", prefix + "0"))
        for repo_id, name in rows:
            for (digest,) in tx.all("SELECT digest FROM manifests WHERE repo_id = ?", (repo_id,)):
                _delete_manifest(tx, int(repo_id), name, digest, actor, guard)
            tx.execute("DELETE FROM repositories WHERE id = ?", (repo_id,))
        return len(rows)

    # -- blobs --------------------------------------------------------------------------------
    async def blob_size(self, repository: str, digest: str) -> int | None:
        """Size of a blob linked into `repository`, or None."""
        row = await self.db.read(lambda tx: tx.one(
            "SELECT b.size FROM blobs b JOIN repo_blobs l ON l.digest = b.digest "
            "JOIN repositories r ON r.id = l.repo_id WHERE r.name = ? AND b.digest = ?",
            (repository, digest)))
        return int(row[0]) if row else None

    async def blob_repositories(self, digest: str, limit: int = 8) -> list[str]:
        """Repositories a blob is linked into, the most recently linked first (at most `limit`)."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT r.name FROM repo_blobs l JOIN repositories r ON r.id = l.repo_id WHERE l.digest = ? "
            "ORDER BY l.linked_at DESC, r.name LIMIT ?", (digest, limit)))
        return [str(row[0]) for row in rows]

    def commit_blob_sync(self, repository: str, digest: str, size: int, upload_id: str | None, stored: Stored, *,
                         durable: Callable[[], None] | None = None, dedup: bool = False) -> None:
        """Record a blob and link it into `repository` (and end its upload), holding the blob's row
        locked while `stored(size)` checks that its bytes are in storage. `durable`, which makes those
        bytes durable, runs first and must succeed. With `dedup` the bytes are another push's, and
        only a recorded blob's are durable: its row must exist already.

        Raises `BlobMissing` (and records nothing) when the bytes are not stored, or with `dedup`
        when the row is gone: a GC, maybe another node's, removed the blob meanwhile."""

        def run(tx: Tx) -> None:
            repo_id = _ensure_repo(tx, repository)
            now = time.time()
            # Either statement locks the row (SQLite: its single writer does) until the commit.
            if dedup:
                if not tx.execute("UPDATE blobs SET created_at = ? WHERE digest = ?", (now, digest)):
                    raise BlobMissing(digest)
            else:
                tx.execute("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) "
                           "ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at",
                           (digest, size, now))
            if not stored(size):
                raise BlobMissing(digest)
            _link_blob(tx, repo_id, digest, now)
            if upload_id is not None:
                tx.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

        self.db.write_sync(run, before=durable)

    async def mount_blob(self, repository: str, digest: str, source: str, stored: Stored) -> int | None:
        """Link a blob that `source` holds into `repository`; returns its size, or None. The blob's
        row stays locked (shared) while `stored(size)` checks its bytes, as in `commit_blob_sync`."""

        def run(tx: Tx) -> int | None:
            row = tx.one(
                "SELECT b.size FROM blobs b JOIN repo_blobs l ON l.digest = b.digest "
                "JOIN repositories r ON r.id = l.repo_id WHERE r.name = ? AND b.digest = ?" + tx.dialect.for_share,
                (source, digest))
            if row is None or not stored(int(row[0])):
                return None
            repo_id = _ensure_repo(tx, repository)
            _link_blob(tx, repo_id, digest, time.time())
            return int(row[0])

        return await self.db.write(run)

    async def unlink_blob(self, repository: str, digest: str) -> str:
        """Remove a blob from a repository: "deleted", "unknown" or "referenced" (a manifest uses it)."""

        def run(tx: Tx) -> str:
            repo_id = _repo_id(tx, repository)
            if repo_id is None:
                return "unknown"
            # As in drop_link: lock the link first (a manifest PUT holds it FOR SHARE), then check the
            # references in a new statement, which sees those of a PUT that committed meanwhile.
            tx.one("SELECT 1 FROM repo_blobs WHERE repo_id = ? AND digest = ?" + tx.dialect.for_update,
                   (repo_id, digest))
            if tx.one("SELECT 1 FROM manifest_refs WHERE repo_id = ? AND child = ? LIMIT 1", (repo_id, digest)):
                return "referenced"
            n = tx.execute("DELETE FROM repo_blobs WHERE repo_id = ? AND digest = ?", (repo_id, digest))
            return "deleted" if n else "unknown"

        return await self.db.write(run)

    # -- uploads ------------------------------------------------------------------------------
    async def create_upload(self, upload_id: str, repository: str, hash_state: bytes,
                            cache_digest: str | None = None) -> bool:
        """A new upload session; with `cache_digest`, an image cache's fetch of that blob from its source,
        of which a repository has at most one: False when another (maybe another process's) was first."""

        def run(tx: Tx) -> bool:
            repo_id = _ensure_repo(tx, repository)
            now = time.time()
            return tx.execute(
                "INSERT INTO uploads (id, repo_id, size, hash_state, created_at, updated_at, cache_digest) "
                "VALUES (?, ?, 0, ?, ?, ?, ?) ON CONFLICT (repo_id, cache_digest) DO NOTHING",
                (upload_id, repo_id, hash_state, now, now, cache_digest)) == 1

        return await self.db.write(run)

    async def cache_fetch(self, repository: str, digest: str) -> tuple[Upload, int | None] | None:
        """An image cache's fetch of `digest` into `repository` (under way, or cut off with its bytes kept),
        with the blob's size once the source has answered it."""
        row = await self.db.read(lambda tx: tx.one(
            "SELECT u.id, r.name, u.size, u.hash_state, u.created_at, u.updated_at, u.cache_size, u.storage_state "
            "FROM uploads u JOIN repositories r ON r.id = u.repo_id WHERE u.cache_digest = ? AND r.name = ? "
            "ORDER BY u.size DESC LIMIT 1", (digest, repository)))
        if row is None:
            return None
        upload = Upload(row[0], row[1], int(row[2]), bytes(row[3]), float(row[4]), float(row[5]), row[7] or "")
        return upload, None if row[6] is None else int(row[6])

    async def drop_empty_repository(self, name: str) -> None:
        """Delete `name` if it holds nothing: no manifest, no blob, no upload session."""
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM repositories WHERE name = ? "
            "AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = repositories.id) "
            "AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.repo_id = repositories.id) "
            "AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.repo_id = repositories.id)", (name,)))

    async def set_cache_size(self, upload_id: str, size: int) -> None:
        await self.db.write(lambda tx: tx.execute("UPDATE uploads SET cache_size = ? WHERE id = ?", (size, upload_id)))

    async def get_upload(self, repository: str, upload_id: str) -> Upload | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT u.id, r.name, u.size, u.hash_state, u.created_at, u.updated_at, u.storage_state FROM uploads u "
            "JOIN repositories r ON r.id = u.repo_id WHERE u.id = ? AND r.name = ?", (upload_id, repository)))
        if row is None:
            return None
        return Upload(row[0], row[1], int(row[2]), bytes(row[3]), float(row[4]), float(row[5]), row[6] or "")

    async def advance_upload(self, upload_id: str, from_size: int, to_size: int, hash_state: bytes,
                             storage_state: str = "", lease_owner: str | None = None) -> bool:
        """Record acknowledged bytes (and the storage's state of them); False when another request moved
        the upload meanwhile, or, with `lease_owner`, took the session's lease over."""
        sql = ("UPDATE uploads SET size = ?, hash_state = ?, storage_state = ?, updated_at = ? "
               "WHERE id = ? AND size = ?")
        params: tuple[object, ...] = (to_size, hash_state, storage_state, time.time(), upload_id, from_size)
        if lease_owner is not None:
            sql += " AND lease_owner = ?"
            params += (lease_owner,)
        return await self.db.write(lambda tx: tx.execute(sql, params)) == 1

    async def take_upload_lease(self, upload_id: str, owner: str, seconds: float) -> bool:
        """Hold the session for `seconds` (compare-and-set: free, expired, or already `owner`'s, which
        renews it). A node that dies holding it loses it when it expires; no one needs to clean up."""
        now = time.time()
        return await self.db.write(lambda tx: tx.execute(
            "UPDATE uploads SET lease_owner = ?, lease_until = ? WHERE id = ? "
            "AND (lease_owner IS NULL OR lease_until < ? OR lease_owner = ?)",
            (owner, now + seconds, upload_id, now, owner))) == 1

    async def upload_leased(self, upload_id: str) -> bool:
        """Whether a request (of any node) holds the session's lease now."""
        row = await self.db.read(lambda tx: tx.one(
            "SELECT 1 FROM uploads WHERE id = ? AND lease_until >= ?", (upload_id, time.time())))
        return row is not None

    async def release_upload_lease(self, upload_id: str, owner: str) -> None:
        await self.db.write(lambda tx: tx.execute(
            "UPDATE uploads SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
            (upload_id, owner)))

    async def delete_upload(self, upload_id: str) -> bool:
        return await self.db.write(lambda tx: tx.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))) == 1

    async def expired_uploads(self, cutoff: float, cache_cutoff: float | None = None) -> list[str]:
        """Sessions idle since before `cutoff`; image cache fetches idle since before `cache_cutoff`."""
        cache_cutoff = cutoff if cache_cutoff is None else cache_cutoff
        return await self.db.read(lambda tx: [r[0] for r in tx.all(
            "SELECT id FROM uploads WHERE (cache_digest IS NULL AND updated_at < ?) "
            "OR (cache_digest IS NOT NULL AND updated_at < ?)", (cutoff, cache_cutoff))])

    async def upload_ids(self) -> set[str]:
        return await self.db.read(lambda tx: {r[0] for r in tx.all("SELECT id FROM uploads")})

    # -- manifests and tags ---------------------------------------------------------------------
    async def get_manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        row = await self.db.read(lambda tx: tx.one(
            _MANIFEST_COLUMNS +
            "FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE r.name = ? AND m.digest = ?",
            (repository, digest)))
        return _manifest(row)

    async def get_tagged_manifest(self, repository: str, tag: str) -> ManifestRecord | None:
        row = await self.db.read(lambda tx: tx.one(
            _MANIFEST_COLUMNS +
            "FROM tags t JOIN repositories r ON r.id = t.repo_id "
            "JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest WHERE r.name = ? AND t.name = ?",
            (repository, tag)))
        return _manifest(row)

    async def put_manifest(self, repository: str, record: ManifestRecord, refs: Sequence[Reference],
                           tag: str | None, guard: Guard | None = None, *, cached: bool = False) -> PutResult:
        """Store a manifest and its references, then point `tag` at it: all or nothing.

        Every referenced blob and child manifest must already be in the repository; the rows are
        locked for the transaction so that a concurrent GC cannot remove them meanwhile. Moving an
        existing `tag` to another digest raises `Protected` if `guard` refuses it (nothing is stored).
        A `cached` manifest comes from an image cache's source, verified by its digest: its blobs and
        children are fetched when first pulled, so they need not be here yet.
        """

        actor = ACTOR.get()

        def run(tx: Tx) -> PutResult:
            existing = _repo_id(tx, repository)
            if existing is None and refs and not cached:
                # Nothing can be in a repository that does not exist; and a refused push creates none.
                return PutResult(missing=tuple(dict.fromkeys(r.digest for r in refs)))
            repo_id = existing if existing is not None else _ensure_repo(tx, repository)
            missing: list[str] = []
            for ref in () if cached else refs:
                if ref.kind == "blob":
                    found = tx.one("SELECT 1 FROM repo_blobs WHERE repo_id = ? AND digest = ?" + tx.dialect.for_share,
                                   (repo_id, ref.digest))
                else:
                    found = tx.one("SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?" + tx.dialect.for_share,
                                   (repo_id, ref.digest))
                if found is None:
                    missing.append(ref.digest)
            if missing:
                return PutResult(missing=tuple(missing))
            now = time.time()
            insert = ("INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, size, content, "
                      "annotations, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (repo_id, digest) DO NOTHING")
            values = (repo_id, record.digest, record.media_type, record.artifact_type, record.subject, record.size,
                      record.content, record.annotations, now)
            created = tx.execute(insert, values) == 1
            # An existing row is locked against a concurrent delete until the tag below points at it;
            # if such a delete committed in between, the row is inserted again.
            if not created and tx.one("SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?" + tx.dialect.for_share,
                                      (repo_id, record.digest)) is None:
                created = tx.execute(insert, values) == 1
            if created:
                for ref in {r.digest: r for r in refs}.values():
                    tx.execute("INSERT INTO manifest_refs (repo_id, parent, child, kind) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT DO NOTHING", (repo_id, record.digest, ref.digest, ref.kind))
                _emit(tx, "artifact.cached" if cached else "artifact.pushed", repository, record.digest, tag,
                      record.media_type, actor)
            if tag is not None:
                tag_sql = "SELECT digest FROM tags WHERE repo_id = ? AND name = ?" + tx.dialect.for_update
                previous = tx.one(tag_sql, (repo_id, tag))
                if previous is None and guard is not None:
                    # Create, never overwrite: a tag a concurrent push created meanwhile is a move, checked below.
                    if tx.execute("INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                                  "ON CONFLICT (repo_id, name) DO NOTHING", (repo_id, tag, record.digest, now)):
                        _emit(tx, "tag.created", repository, record.digest, tag, record.media_type, actor)
                        return PutResult(created=created)
                    previous = tx.one(tag_sql, (repo_id, tag))
                if previous is None or previous[0] != record.digest:
                    if previous is not None:
                        _check(tx, guard, repository, (tag,))
                    tx.execute("INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, "
                               "updated_at = excluded.updated_at", (repo_id, tag, record.digest, now))
                    _emit(tx, "tag.created", repository, record.digest, tag, record.media_type, actor)
            return PutResult(created=created)

        return await self.db.write(run)

    async def delete_manifest(self, repository: str, digest: str, guard: Guard | None = None) -> bool:
        """Delete a manifest and every tag that points at it (`Protected` if `guard` refuses one of
        them, or a tag of an index that holds it)."""

        actor = ACTOR.get()

        def run(tx: Tx) -> bool:
            repo_id = _repo_id(tx, repository)
            return repo_id is not None and _delete_manifest(tx, repo_id, repository, digest, actor, guard)

        return await self.db.write(run)

    async def delete_tag(self, repository: str, tag: str, guard: Guard | None = None) -> bool:
        actor = ACTOR.get()

        def run(tx: Tx) -> bool:
            row = tx.one("SELECT t.repo_id, t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id "
                         "WHERE r.name = ? AND t.name = ?", (repository, tag))
            if row is None:
                return False
            _check(tx, guard, repository, (tag,))
            tx.execute("DELETE FROM tags WHERE repo_id = ? AND name = ?", (row[0], tag))
            _emit(tx, "tag.deleted", repository, row[1], tag, actor=actor)
            return True

        return await self.db.write(run)

    async def tag_artifact(self, repository: str, tag: str, digest: str) -> str:
        """Point a new tag at an artifact: "created", "exists" (the tag is taken) or "unknown"."""

        actor = ACTOR.get()

        def run(tx: Tx) -> str:
            repo_id = _repo_id(tx, repository)
            if repo_id is None:
                return "unknown"
            row = tx.one("SELECT media_type FROM manifests WHERE repo_id = ? AND digest = ?" + tx.dialect.for_share,
                         (repo_id, digest))
            if row is None:
                return "unknown"
            n = tx.execute("INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (repo_id, name) DO NOTHING", (repo_id, tag, digest, time.time()))
            if not n:
                return "exists"
            _emit(tx, "tag.created", repository, digest, tag, row[0], actor)
            return "created"

        return await self.db.write(run)

    async def delete_repository(self, repository: str, guard: Guard | None = None) -> int | None:
        """Delete a repository with its artifacts and tags (each announced); None if unknown.
        All or nothing: `Protected` if `guard` refuses one of its tags."""

        actor = ACTOR.get()

        def run(tx: Tx) -> int | None:
            repo_id = _repo_id(tx, repository)
            if repo_id is None:
                return None
            tx.one("SELECT 1 FROM repositories WHERE id = ?" + tx.dialect.for_update, (repo_id,))
            digests = [r[0] for r in tx.all("SELECT digest FROM manifests WHERE repo_id = ?", (repo_id,))]
            for digest in digests:
                _delete_manifest(tx, repo_id, repository, digest, actor, guard)
            tx.execute("DELETE FROM repositories WHERE id = ?", (repo_id,))
            return len(digests)

        return await self.db.write(run)

    async def delete_planned(self, repository: str, digest: str, tags: frozenset[str], pushed_at: float,
                             pulled_at: float | None, guard: Guard | None = None) -> tuple[str, str | None]:
        """Delete an artifact a cleanup plan chose, only if, once locked, it is still as the plan saw
        it: the same push, no newer pull, exactly `tags`, no index holding it and no tag `guard`
        refuses (its accessories go with it). Answers (outcome, reason): ("deleted", None), ("changed",
        why), ("needed", by what) or ("protected", the guard's reason); only "deleted" changed anything."""

        actor = ACTOR.get()

        def run(tx: Tx) -> tuple[str, str | None]:
            repo_id = _repo_id(tx, repository)
            row = None if repo_id is None else tx.one(
                "SELECT created_at, pulled_at FROM manifests WHERE repo_id = ? AND digest = ?" + tx.dialect.for_update,
                (repo_id, digest))
            if repo_id is None or row is None:
                return "changed", "deleted meanwhile"
            if float(row[0]) != pushed_at:
                return "changed", "pushed again since the plan"
            if row[1] is not None and float(row[1]) > (pulled_at or 0.0):
                return "changed", "pulled since the plan"
            now_tags = frozenset(_tags_of(tx, repo_id, digest))
            if now_tags != tags:
                return "changed", f"its tags changed since the plan: now {sorted(now_tags) or 'untagged'}"
            parent = tx.one("SELECT parent FROM manifest_refs WHERE repo_id = ? AND child = ? AND kind = 'manifest' "
                            "LIMIT 1", (repo_id, digest))
            if parent is not None:
                return "needed", f"referenced by {parent[0]}"
            try:
                _check(tx, guard, repository, sorted(now_tags))
            except Protected as e:
                return "protected", str(e)
            _delete_manifest(tx, repo_id, repository, digest, actor)
            return "deleted", None

        return await self.db.write(run)

    async def record_pulls(self, pulls: dict[tuple[str, str], float],
                           actors: Mapping[tuple[str, str], str | None] | None = None) -> None:
        """When artifacts were last pulled (batched by the caller), with one `artifact.pulled` event
        per artifact and batch (its actor: the last puller in `actors`) in the same transaction."""
        if not pulls:
            return

        def run(tx: Tx) -> None:
            for (repository, digest), at in pulls.items():
                row = tx.one("SELECT m.repo_id, m.media_type FROM manifests m JOIN repositories r ON r.id = m.repo_id "
                             "WHERE r.name = ? AND m.digest = ?", (repository, digest))
                if row is None:
                    continue  # deleted since it was pulled
                tx.execute("UPDATE manifests SET pulled_at = ? WHERE repo_id = ? AND digest = ? AND "
                           "(pulled_at IS NULL OR pulled_at < ?)", (at, row[0], digest, at))
                _emit(tx, "artifact.pulled", repository, digest, media_type=row[1],
                      actor=(actors or {}).get((repository, digest)))

        await self.db.write(run)

    async def list_tags(self, repository: str, limit: int | None, last: str | None) -> list[str] | None:
        def run(tx: Tx) -> list[str] | None:
            repo_id = _repo_id(tx, repository)
            if repo_id is None:
                return None
            c = tx.dialect.collate
            sql = f"SELECT name FROM tags WHERE repo_id = ? AND name{c} > ? ORDER BY name{c}"
            params: list[object] = [repo_id, last or ""]
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            return [r[0] for r in tx.all(sql, params)]

        return await self.db.read(run)

    async def referrers(self, repository: str, subject: str) -> list[ManifestRecord]:
        rows = await self.db.read(lambda tx: tx.all(
            _MANIFEST_COLUMNS +
            "FROM manifests m JOIN repositories r ON r.id = m.repo_id WHERE r.name = ? AND m.subject = ? "
            "ORDER BY m.created_at, m.digest", (repository, subject)))
        return [m for m in map(_manifest, rows) if m is not None]


    # -- garbage collection -------------------------------------------------------------------
    async def untagged_manifests(self, cutoff: float) -> list[tuple[str, str]]:
        """(repository, digest) of manifests no tag, index or live subject keeps, older than `cutoff`."""
        return await self.db.read(lambda tx: [(r[0], r[1]) for r in tx.all(
            "SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id "
            f"WHERE m.created_at < ? AND NOT ({_KEPT}) ORDER BY r.name, m.digest", (cutoff,))])

    async def delete_untagged_manifest(self, repository: str, digest: str, cutoff: float) -> bool:
        """Delete a manifest only if, once locked, it is still untagged, unreferenced and old."""

        def run(tx: Tx) -> bool:
            row = tx.one("SELECT m.repo_id FROM manifests m JOIN repositories r ON r.id = m.repo_id "
                         "WHERE r.name = ? AND m.digest = ?" + tx.dialect.for_update, (repository, digest))
            if row is None:
                return False
            repo_id = int(row[0])
            if tx.one(f"SELECT 1 FROM manifests m WHERE m.repo_id = ? AND m.digest = ? AND m.created_at < ? "
                      f"AND NOT ({_KEPT})", (repo_id, digest, cutoff)) is None:
                return False
            return _delete_manifest(tx, repo_id, repository, digest, "gc")

        return await self.db.write(run)

    async def stale_links(self, cutoff: float) -> list[tuple[int, str]]:
        """Blob links no manifest of their repository references, older than `cutoff`."""
        return await self.db.read(lambda tx: [(int(r[0]), r[1]) for r in tx.all(
            "SELECT l.repo_id, l.digest FROM repo_blobs l WHERE l.linked_at < ? AND NOT EXISTS "
            "(SELECT 1 FROM manifest_refs x WHERE x.repo_id = l.repo_id AND x.child = l.digest)", (cutoff,))])

    async def drop_link(self, repo_id: int, digest: str, cutoff: float) -> bool:
        def run(tx: Tx) -> bool:
            # Lock the link first (a manifest PUT holds it FOR SHARE), then re-check in a new statement.
            row = tx.one("SELECT linked_at FROM repo_blobs WHERE repo_id = ? AND digest = ?" + tx.dialect.for_update,
                         (repo_id, digest))
            if row is None or float(row[0]) >= cutoff:
                return False
            if tx.one("SELECT 1 FROM manifest_refs WHERE repo_id = ? AND child = ? LIMIT 1", (repo_id, digest)):
                return False
            return tx.execute("DELETE FROM repo_blobs WHERE repo_id = ? AND digest = ?", (repo_id, digest)) == 1

        return await self.db.write(run)

    async def unreferenced_blobs(self, cutoff: float) -> list[tuple[str, int, frozenset[int]]]:
        """Blobs no manifest references, older than `cutoff`: (digest, size, ids of repositories linking it)."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT b.digest, b.size, l.repo_id FROM blobs b LEFT JOIN repo_blobs l ON l.digest = b.digest "
            "WHERE b.created_at < ? AND NOT EXISTS (SELECT 1 FROM manifest_refs x WHERE x.child = b.digest) "
            "ORDER BY b.digest", (cutoff,)))
        found: dict[str, tuple[int, set[int]]] = {}
        for d, size, repo_id in rows:
            entry = found.setdefault(d, (int(size), set()))
            if repo_id is not None:
                entry[1].add(int(repo_id))
        return [(d, size, frozenset(repos)) for d, (size, repos) in found.items()]

    def drop_blob_sync(self, digest: str, cutoff: float, remove: Callable[[], object] = lambda: None) -> bool:
        """Delete a blob's row, if nothing links or references it, and `remove()` its bytes, in one
        transaction holding the row locked: a push that deduplicates against the blob waits for it,
        then finds the row gone and stores its own bytes (see `commit_blob_sync`)."""

        def run(tx: Tx) -> bool:
            row = tx.one("SELECT created_at FROM blobs WHERE digest = ?" + tx.dialect.for_update, (digest,))
            if row is None or float(row[0]) >= cutoff:
                return False
            if tx.one("SELECT 1 FROM repo_blobs WHERE digest = ? LIMIT 1", (digest,)):
                return False
            if tx.one("SELECT 1 FROM manifest_refs WHERE child = ? LIMIT 1", (digest,)):
                return False
            tx.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
            remove()
            return True

        return self.db.write_sync(run)

    def drop_orphan_sync(self, digest: str, remove: Callable[[], bool]) -> bool:
        """`remove()` the bytes of a blob that has no row (a crash between storing and recording it);
        returns what `remove` did. A placeholder row, inserted and deleted in the same transaction,
        holds off (and so fails) a push recording the same blob meanwhile."""

        def run(tx: Tx) -> bool:
            if not tx.execute("INSERT INTO blobs (digest, size, created_at) VALUES (?, 0, ?) "
                              "ON CONFLICT (digest) DO NOTHING", (digest, time.time())):
                return False  # recorded, or being recorded
            removed = remove()
            tx.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
            return removed

        return self.db.write_sync(run)

    def with_blob_locked_sync(self, digest: str, action: Callable[[], bool]) -> bool:
        """Run `action` holding the blob's row locked (False if there is no row): no push records or
        re-publishes the blob meanwhile (see `commit_blob_sync`)."""

        def run(tx: Tx) -> bool:
            if tx.one("SELECT 1 FROM blobs WHERE digest = ?" + tx.dialect.for_update, (digest,)) is None:
                return False
            return action()

        return self.db.write_sync(run)

    def blob_known_sync(self, digest: str) -> bool:
        return self.db.write_sync(lambda tx: tx.one("SELECT 1 FROM blobs WHERE digest = ?", (digest,)) is not None)

    async def blobs_after(self, after: str, limit: int) -> list[tuple[str, int]]:
        """The next `limit` blobs (digest, size) in digest order after `after` ("": from the first)."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT digest, size FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?", (after, limit)))
        return [(str(r[0]), int(r[1])) for r in rows]

    async def blob_totals(self) -> tuple[int, int]:
        """How many blobs there are, and their bytes."""
        row = await self.db.read(lambda tx: tx.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs"))
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def record_gc(self, started: float, dry_run: bool, blobs: int, manifests: int, uploads: int,
                        freed: int, items: Sequence[tuple[str, str]] = ()) -> int:
        """Record a GC run and (at most 10,000 of) what it removed; returns the run's ID."""

        def run(tx: Tx) -> int:
            row = tx.one(
                "INSERT INTO gc_runs (started_at, finished_at, dry_run, blobs_removed, manifests_removed, "
                "uploads_removed, bytes_freed) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (started, time.time(), int(dry_run), blobs, manifests, uploads, freed))
            assert row is not None
            for kind, item in items[:10_000]:
                tx.execute("INSERT INTO gc_run_items (run_id, kind, item) VALUES (?, ?, ?)", (row[0], kind, item))
            return int(row[0])

        return await self.db.write(run)


def _manifest(row: tuple[object, ...] | None) -> ManifestRecord | None:
    if row is None:
        return None
    return ManifestRecord(
        digest=str(row[0]), media_type=str(row[1]), size=int(row[2]),  # type: ignore[call-overload]
        content=bytes(row[3]),  # type: ignore[call-overload]
        artifact_type=row[4] if row[4] is None else str(row[4]),
        subject=row[5] if row[5] is None else str(row[5]),
        annotations=row[6] if row[6] is None else str(row[6]),
    )


__all__ = ["ACTOR", "BlobMissing", "Guard", "ManifestRecord", "MetaStore", "Protected", "PutResult", "Reference",
           "Stored", "Upload"]
