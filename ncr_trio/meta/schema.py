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
    (4, """
ALTER TABLE events ADD COLUMN actor TEXT;
CREATE TABLE webhooks (
    id {id},
    registry TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL DEFAULT '',
    auth_header TEXT NOT NULL DEFAULT '',
    event_types TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at {float} NOT NULL,
    UNIQUE (registry, name)
);
CREATE TABLE deliveries (
    id {id},
    webhook_id {bigint} NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id {bigint},
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {float} NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    created_at {float} NOT NULL,
    finished_at {float}
);
CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX deliveries_webhook ON deliveries(webhook_id, id);
CREATE TABLE cursors (
    name TEXT PRIMARY KEY,
    position {bigint} NOT NULL
);
CREATE TABLE cleanup_policies (
    id {id},
    registry TEXT NOT NULL,
    image_pattern TEXT NOT NULL,
    tag_pattern TEXT NOT NULL,
    untagged INTEGER NOT NULL,
    rule TEXT NOT NULL,
    n INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at {float} NOT NULL,
    UNIQUE (registry, image_pattern, tag_pattern, untagged, rule, n)
);
CREATE TABLE protection_policies (
    id {id},
    registry TEXT NOT NULL,
    image_pattern TEXT NOT NULL,
    tag_pattern TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at {float} NOT NULL,
    UNIQUE (registry, image_pattern, tag_pattern)
);
CREATE TABLE cleanup_runs (
    id {id},
    registry TEXT NOT NULL,
    triggered_by TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at {float} NOT NULL,
    finished_at {float},
    deleted INTEGER NOT NULL DEFAULT 0,
    kept INTEGER NOT NULL DEFAULT 0,
    policies TEXT NOT NULL DEFAULT '',
    error TEXT
);
CREATE INDEX cleanup_runs_registry ON cleanup_runs(registry, id);
CREATE TABLE cleanup_run_items (
    run_id {bigint} NOT NULL REFERENCES cleanup_runs(id) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    tags TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX cleanup_run_items_run ON cleanup_run_items(run_id);
CREATE TABLE schedules (
    job TEXT PRIMARY KEY,
    expression TEXT NOT NULL,
    last_run_at {float},
    next_run_at {float},
    lease_owner TEXT,
    lease_until {float}
);
"""),
    (5, """
CREATE TABLE delivery_attempts (
    delivery_id {bigint} NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at {float} NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id, attempt);
CREATE INDEX deliveries_finished ON deliveries(finished_at);
ALTER TABLE events ADD COLUMN fanned_out INTEGER NOT NULL DEFAULT 0;
UPDATE events SET fanned_out = 1;
CREATE INDEX events_to_fan_out ON events(id) WHERE fanned_out = 0;
"""),
    (6, """
CREATE TABLE image_caches (
    id {id},
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    url TEXT NOT NULL,
    access_id TEXT NOT NULL DEFAULT '',
    access_secret TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL
);
ALTER TABLE registries ADD COLUMN cache TEXT;
CREATE INDEX registries_cache ON registries(cache);
"""),
    # An image cache's fetch of a blob from its source keeps its bytes as an upload tagged with the
    # blob's digest (and, once the source has said, its size), so that a fetch cut off (deadline, source
    # gone) continues where it stopped, and other processes can follow one under way.
    (7, """
ALTER TABLE uploads ADD COLUMN cache_digest TEXT;
ALTER TABLE uploads ADD COLUMN cache_size {bigint};
CREATE INDEX uploads_cache_digest ON uploads(cache_digest);
"""),
    # One fetch of a blob per repository, whichever process starts it: the row is the claim.
    (8, """
CREATE UNIQUE INDEX uploads_one_cache_fetch ON uploads(repo_id, cache_digest);
"""),
    # Replication (issue 12): remote endpoints (secret sealed by the caller), policies per local
    # registry, their executions and tasks, the work events leave for event policies, and one cursor
    # row over `events` (so that every worker and node turns each `tag.created` into work once).
    (9, """
CREATE TABLE replication_remotes (
    id {id},
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    type TEXT NOT NULL,
    access_id TEXT NOT NULL DEFAULT '',
    access_secret TEXT NOT NULL DEFAULT '',
    ca_cert TEXT NOT NULL DEFAULT '',
    insecure INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'invalid',
    reason TEXT NOT NULL DEFAULT 'not checked yet',
    checked_at {float},
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL
);
CREATE TABLE replication_policies (
    id {id},
    registry TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    direction TEXT NOT NULL,
    remote TEXT NOT NULL,
    remote_namespace TEXT NOT NULL,
    name_filter TEXT NOT NULL DEFAULT '',
    tag_filter TEXT NOT NULL DEFAULT '',
    tag_filter_mode TEXT NOT NULL DEFAULT 'match',
    trigger TEXT NOT NULL,
    schedule TEXT NOT NULL DEFAULT '',
    override INTEGER NOT NULL DEFAULT 0,
    bandwidth_kbps INTEGER NOT NULL DEFAULT 0,
    enabled INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL DEFAULT 'invalid',
    reason TEXT NOT NULL DEFAULT 'not checked yet',
    created_at {float} NOT NULL,
    updated_at {float} NOT NULL,
    UNIQUE (registry, name)
);
CREATE INDEX replication_policies_remote ON replication_policies(remote);
CREATE TABLE replication_executions (
    id {id},
    policy_id {bigint} NOT NULL REFERENCES replication_policies(id) ON DELETE CASCADE,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at {float} NOT NULL,
    ended_at {float},
    heartbeat_at {float},
    bytes {bigint} NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX replication_executions_policy ON replication_executions(policy_id, id);
CREATE TABLE replication_tasks (
    id {id},
    execution_id {bigint} NOT NULL REFERENCES replication_executions(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    bytes {bigint} NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    started_at {float},
    ended_at {float}
);
CREATE INDEX replication_tasks_execution ON replication_tasks(execution_id, id);
CREATE TABLE replication_pending (
    id {id},
    policy_id {bigint} NOT NULL REFERENCES replication_policies(id) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at {float} NOT NULL
);
CREATE INDEX replication_pending_policy ON replication_pending(policy_id, id);
CREATE TABLE replication_cursor (
    id INTEGER PRIMARY KEY,
    event_id {bigint} NOT NULL
);
INSERT INTO replication_cursor (id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events
"""),
    # Vulnerability scanning (issue 13): one result per artifact (no row: Not Scanned), which is also
    # the durable queue (a `Scanning` row without a live lease is work for any process); the
    # installation's settings (one row: the global CVE allowlist; the periodic scan is the "scan" row
    # of `schedules`); each registry's
    # (scan on push, pull prevention threshold, its own allowlist or none); and one cursor row over
    # `events` (artifact.pushed/cached -> scan on push, once across workers and nodes).
    (10, """
CREATE TABLE scan_results (
    id {id},
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    requested_at {float} NOT NULL,
    started_at {float},
    ended_at {float},
    owner TEXT,
    lease_until {float},
    stop_requested INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    fixable INTEGER NOT NULL DEFAULT 0,
    severity TEXT,
    db_version TEXT NOT NULL DEFAULT '',
    findings TEXT,
    report TEXT,
    error TEXT NOT NULL DEFAULT '',
    UNIQUE (repository, digest)
);
CREATE INDEX scan_results_status ON scan_results(status);
CREATE TABLE scan_settings (
    id INTEGER PRIMARY KEY,
    allowlist TEXT NOT NULL DEFAULT '',
    db_version TEXT NOT NULL DEFAULT ''
);
INSERT INTO scan_settings (id, allowlist, db_version) VALUES (1, '', '');
CREATE TABLE scan_registry_settings (
    registry TEXT PRIMARY KEY,
    scan_on_push INTEGER NOT NULL DEFAULT 0,
    prevent_pull_severity TEXT,
    allowlist TEXT
);
CREATE TABLE scan_cursor (
    id INTEGER PRIMARY KEY,
    event_id {bigint} NOT NULL
);
INSERT INTO scan_cursor (id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events
"""),
    # Image trust (issue 14): cosign public keys trusted by a registry (`registry` = its name) or by the
    # whole installation (`registry` = ''); one verification result per artifact (its signatures'
    # verdicts, `stale` when a signature or a key changed since: recomputed before it is believed);
    # each registry's enforcement settings; and one cursor row over `events` (signature pushes and
    # deletions -> their subjects' results go stale, once across workers and nodes).
    (11, """
CREATE TABLE trust_keys (
    id {id},
    registry TEXT NOT NULL,
    name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    pem TEXT NOT NULL,
    created_at {float} NOT NULL,
    UNIQUE (registry, name),
    UNIQUE (registry, key_id)
);
CREATE TABLE trust_results (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    signatures INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0,
    keys TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '[]',
    stale INTEGER NOT NULL DEFAULT 0,
    computed_at {float} NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX trust_results_stale ON trust_results(stale);
CREATE TABLE trust_registry_settings (
    registry TEXT PRIMARY KEY,
    require_signature INTEGER NOT NULL DEFAULT 0,
    require_verified_signature INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE trust_cursor (
    id INTEGER PRIMARY KEY,
    event_id {bigint} NOT NULL
);
INSERT INTO trust_cursor (id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events
"""),
    # Uploads with no node-local state (issue 15): the storage driver's state of the acknowledged bytes
    # (an S3 multipart upload's parts, pending small objects: `UploadSink.state`), and a lease on the
    # session (owner, expiry) that a request writing it holds when the storage has no locks of its own.
    (12, """
ALTER TABLE uploads ADD COLUMN storage_state TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN lease_owner TEXT;
ALTER TABLE uploads ADD COLUMN lease_until {float}
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
