"""Schema migrations, applied in order, once each, recorded in `schema_migrations`.

DDL is written once; `{id}`, `{blob}`, `{float}` and `{bigint}` become each engine's types.
Never edit a released migration: append a new one.
"""

from __future__ import annotations

import time

from ncr_trio.meta.db import Database, Tx

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
CREATE TABLE repositories (
    id {id},
    name TEXT NOT NULL UNIQUE,
    created_at {float} NOT NULL
);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size {bigint} NOT NULL,
    created_at {float} NOT NULL
);
CREATE TABLE repo_blobs (
    repo_id {bigint} NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL REFERENCES blobs(digest),
    linked_at {float} NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE manifests (
    repo_id {bigint} NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    subject TEXT,
    size {bigint} NOT NULL,
    content {blob} NOT NULL,
    annotations TEXT,
    created_at {float} NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repo_id, subject);
CREATE TABLE manifest_refs (
    repo_id {bigint} NOT NULL,
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (repo_id, parent, child),
    FOREIGN KEY (repo_id, parent) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_child ON manifest_refs(child);
CREATE TABLE tags (
    repo_id {bigint} NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_at {float} NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest)
);
CREATE INDEX tags_digest ON tags(repo_id, digest);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repo_id {bigint} NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    size {bigint} NOT NULL,
    hash_state {blob} NOT NULL,
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL
);
CREATE INDEX uploads_updated ON uploads(updated_at);
CREATE TABLE events (
    id {id},
    kind TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT,
    tag TEXT,
    media_type TEXT,
    created_at {float} NOT NULL
);
CREATE TABLE gc_runs (
    id {id},
    started_at {float} NOT NULL,
    finished_at {float},
    dry_run INTEGER NOT NULL,
    blobs_removed {bigint} NOT NULL DEFAULT 0,
    manifests_removed {bigint} NOT NULL DEFAULT 0,
    uploads_removed {bigint} NOT NULL DEFAULT 0,
    bytes_freed {bigint} NOT NULL DEFAULT 0
);
"""),
    (2, """
CREATE TABLE registries (
    id {id},
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    public_read INTEGER NOT NULL DEFAULT 0,
    public_uri INTEGER NOT NULL DEFAULT 1,
    allowed_cidrs TEXT NOT NULL DEFAULT '',
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL
);
CREATE TABLE users (
    id {id},
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    system_admin INTEGER NOT NULL DEFAULT 0,
    created_at {float} NOT NULL
);
CREATE TABLE access_keys (
    id TEXT PRIMARY KEY,
    user_id {bigint} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at {float} NOT NULL,
    last_used_at {float},
    revoked_at {float}
);
CREATE INDEX access_keys_user ON access_keys(user_id);
CREATE TABLE role_bindings (
    user_id {bigint} NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    registry TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_at {float} NOT NULL,
    PRIMARY KEY (user_id, registry)
);
CREATE INDEX role_bindings_registry ON role_bindings(registry);
CREATE TABLE audit_log (
    id {id},
    at {float} NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    registry TEXT,
    repository TEXT,
    target TEXT,
    client TEXT,
    detail TEXT
);
CREATE INDEX audit_log_at ON audit_log(at);
"""),
    (3, """
ALTER TABLE manifests ADD COLUMN pulled_at {float};
CREATE INDEX manifests_created ON manifests(repo_id, created_at);
CREATE TABLE gc_run_items (
    run_id {bigint} NOT NULL REFERENCES gc_runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    item TEXT NOT NULL
);
CREATE INDEX gc_run_items_run ON gc_run_items(run_id);
"""),
)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def migrate(db: Database) -> int:
    """Apply pending migrations; returns the schema version. Safe to call from several nodes."""

    def run(tx: Tx) -> int:
        if tx.dialect.name == "postgresql":
            # Serialise concurrent starters on one advisory lock for the transaction.
            tx.execute("SELECT pg_advisory_xact_lock(7146835)")
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at "
            + tx.dialect.types["float"] + " NOT NULL)"
        )
        row = tx.one("SELECT MAX(version) FROM schema_migrations")
        current = int(row[0]) if row and row[0] is not None else 0
        for version, script in MIGRATIONS:
            if version > current:
                for stmt in _statements(tx.dialect.ddl(script)):
                    tx.execute(stmt)
                tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time()))
                current = version
        return current

    return db.write_sync(run)


__all__ = ["MIGRATIONS", "migrate"]
