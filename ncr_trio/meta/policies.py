"""Cleanup and protection policies, cleanup runs with their history, and the durable schedules of
periodic jobs. At most `limit` policies of each kind per registry, counted under the registry's
row lock; duplicates are refused by the unique constraints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ncr_trio.meta.db import Database, Tx


class PolicyLimitReached(Exception):
    pass


class DuplicatePolicy(Exception):
    def __init__(self, existing: int) -> None:
        super().__init__(f"a policy with the same filters and rule exists: #{existing}")
        self.existing = existing


class UnknownRegistry(Exception):
    pass


@dataclass(frozen=True)
class CleanupRow:
    id: int
    registry: str
    image: str
    tags: str
    untagged: bool
    rule: str
    n: int
    enabled: bool
    created_at: float


@dataclass(frozen=True)
class ProtectionRow:
    id: int
    registry: str
    image: str
    tags: str
    enabled: bool
    created_at: float


@dataclass(frozen=True)
class CleanupRun:
    id: int
    registry: str
    triggered_by: str  # "manual" | "test" | "schedule"
    dry_run: bool
    status: str  # "running" | "succeeded" | "failed"
    started_at: float
    finished_at: float | None
    deleted: int
    kept: int
    policies: str  # JSON: the policies the run applied
    error: str | None


@dataclass(frozen=True)
class StoredArtifact:
    """An artifact as a cleanup run plans over it."""

    repository: str
    digest: str
    tags: frozenset[str]
    pushed_at: float  # when the manifest was stored
    pulled_at: float | None
    children: frozenset[str]  # the manifests it references (an index's)
    subject: str | None
    tagged_at: float | None = None  # when a push last pointed one of its tags at it


@dataclass(frozen=True)
class ScheduleRow:
    job: str
    expression: str
    last_run_at: float | None
    next_run_at: float | None


_CLEANUP = ("SELECT id, registry, image_pattern, tag_pattern, untagged, rule, n, enabled, created_at "
            "FROM cleanup_policies ")
_PROTECTION = "SELECT id, registry, image_pattern, tag_pattern, enabled, created_at FROM protection_policies "
_RUN = ("SELECT id, registry, triggered_by, dry_run, status, started_at, finished_at, deleted, kept, policies, error "
        "FROM cleanup_runs ")


def _cleanup(r: Sequence[object]) -> CleanupRow:
    return CleanupRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), str(r[5]), int(r[6]),  # type: ignore[call-overload]
                      bool(r[7]), float(r[8]))  # type: ignore[arg-type]


def _protection(r: Sequence[object]) -> ProtectionRow:
    return ProtectionRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), float(r[5]))  # type: ignore[call-overload, arg-type]


def _run(r: Sequence[object]) -> CleanupRun:
    return CleanupRun(int(r[0]), str(r[1]), str(r[2]), bool(r[3]), str(r[4]), float(r[5]),  # type: ignore[call-overload, arg-type]
                      None if r[6] is None else float(r[6]), int(r[7]), int(r[8]), str(r[9]),  # type: ignore[call-overload, arg-type]
                      None if r[10] is None else str(r[10]))


def _lock_registry(tx: Tx, registry: str) -> None:
    if tx.one("SELECT 1 FROM registries WHERE name = ?" + tx.dialect.for_update, (registry,)) is None:
        raise UnknownRegistry(registry)


class PolicyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- cleanup policies ---------------------------------------------------------------------
    async def add_cleanup(self, registry: str, image: str, tags: str, untagged: bool, rule: str, n: int,
                          limit: int) -> CleanupRow:
        return await self.db.write(lambda tx: PolicyStore.add_cleanup_in(tx, registry, image, tags, untagged, rule,
                                                                         n, limit))

    @staticmethod
    def add_cleanup_in(tx: Tx, registry: str, image: str, tags: str, untagged: bool, rule: str, n: int,
                       limit: int) -> CleanupRow:
        """Inside a caller's transaction (the registry's creation, for its default policy): add a cleanup policy."""
        _lock_registry(tx, registry)
        same = tx.one("SELECT id FROM cleanup_policies WHERE registry = ? AND image_pattern = ? AND "
                      "tag_pattern = ? AND untagged = ? AND rule = ? AND n = ?",
                      (registry, image, tags, int(untagged), rule, n))
        if same is not None:
            raise DuplicatePolicy(int(same[0]))
        count = tx.one("SELECT COUNT(*) FROM cleanup_policies WHERE registry = ?", (registry,))
        if count is not None and int(count[0]) >= limit:
            raise PolicyLimitReached(registry)
        row = tx.one("INSERT INTO cleanup_policies (registry, image_pattern, tag_pattern, untagged, rule, n, "
                     "enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?) RETURNING id",
                     (registry, image, tags, int(untagged), rule, n, time.time()))
        assert row is not None
        found = tx.one(_CLEANUP + "WHERE id = ?", (row[0],))
        assert found is not None
        return _cleanup(found)

    async def cleanup_policies(self, registry: str) -> list[CleanupRow]:
        rows = await self.db.read(lambda tx: tx.all(_CLEANUP + "WHERE registry = ? ORDER BY id", (registry,)))
        return [_cleanup(r) for r in rows]

    async def set_cleanup_enabled(self, registry: str, policy_id: int, enabled: bool) -> bool:
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE cleanup_policies SET enabled = ? WHERE registry = ? AND id = ?",
            (int(enabled), registry, policy_id))))

    async def delete_cleanup(self, registry: str, policy_id: int) -> bool:
        return bool(await self.db.write(lambda tx: tx.execute(
            "DELETE FROM cleanup_policies WHERE registry = ? AND id = ?", (registry, policy_id))))

    # -- protection policies ------------------------------------------------------------------
    async def add_protection(self, registry: str, image: str, tags: str, limit: int) -> ProtectionRow:
        def run(tx: Tx) -> ProtectionRow:
            _lock_registry(tx, registry)
            same = tx.one("SELECT id FROM protection_policies WHERE registry = ? AND image_pattern = ? AND "
                          "tag_pattern = ?", (registry, image, tags))
            if same is not None:
                raise DuplicatePolicy(int(same[0]))
            count = tx.one("SELECT COUNT(*) FROM protection_policies WHERE registry = ?", (registry,))
            if count is not None and int(count[0]) >= limit:
                raise PolicyLimitReached(registry)
            row = tx.one("INSERT INTO protection_policies (registry, image_pattern, tag_pattern, enabled, created_at) "
                         "VALUES (?, ?, ?, 1, ?) RETURNING id", (registry, image, tags, time.time()))
            assert row is not None
            found = tx.one(_PROTECTION + "WHERE id = ?", (row[0],))
            assert found is not None
            return _protection(found)

        return await self.db.write(run)

    async def protection_policies(self, registry: str) -> list[ProtectionRow]:
        return await self.db.read(lambda tx: PolicyStore.protection_in(tx, registry))

    @staticmethod
    def protection_in(tx: Tx, registry: str) -> list[ProtectionRow]:
        """Inside a caller's transaction: the registry's protection policies as they are now."""
        return [_protection(r) for r in tx.all(_PROTECTION + "WHERE registry = ? ORDER BY id", (registry,))]

    @staticmethod
    def purge_registry(tx: Tx, registry: str) -> None:
        """Inside the transaction that deletes a registry: its policies, cleanup history and schedule."""
        tx.execute("DELETE FROM cleanup_policies WHERE registry = ?", (registry,))
        tx.execute("DELETE FROM protection_policies WHERE registry = ?", (registry,))
        tx.execute("DELETE FROM cleanup_runs WHERE registry = ?", (registry,))
        tx.execute("DELETE FROM schedules WHERE job = ?", (f"cleanup:{registry}",))

    # -- what a cleanup run plans over ------------------------------------------------------------
    async def cleanup_candidates(self, registry: str) -> list[StoredArtifact]:
        """Every artifact of the registry's repositories (`registry/...`), read in one transaction."""

        def run(tx: Tx) -> list[StoredArtifact]:
            c = tx.dialect.collate
            under = (f"r.name{c} >= ? AND r.name{c} < ?", (registry + "/", registry + "0"))
            tags: dict[tuple[str, str], set[str]] = {}
            tagged: dict[tuple[str, str], float] = {}
            for repo, digest, tag, at in tx.all("SELECT r.name, t.digest, t.name, t.updated_at FROM tags t JOIN "
                                                f"repositories r ON r.id = t.repo_id WHERE {under[0]}", under[1]):
                tags.setdefault((repo, digest), set()).add(tag)
                tagged[(repo, digest)] = max(float(at), tagged.get((repo, digest), 0.0))
            children: dict[tuple[str, str], set[str]] = {}
            for repo, parent, child in tx.all("SELECT r.name, x.parent, x.child FROM manifest_refs x JOIN "
                                              f"repositories r ON r.id = x.repo_id WHERE {under[0]} AND "
                                              "x.kind = 'manifest'", under[1]):
                children.setdefault((repo, parent), set()).add(child)
            rows = tx.all("SELECT r.name, m.digest, m.created_at, m.pulled_at, m.subject FROM manifests m "
                          f"JOIN repositories r ON r.id = m.repo_id WHERE {under[0]} ORDER BY r.name{c}, m.digest",
                          under[1])
            return [StoredArtifact(str(repo), str(digest), frozenset(tags.get((repo, digest), ())), float(pushed),
                                   None if pulled is None else float(pulled),
                                   frozenset(children.get((repo, digest), ())),
                                   None if subject is None else str(subject), tagged.get((repo, digest)))
                    for repo, digest, pushed, pulled, subject in rows]

        return await self.db.read(run)

    async def set_protection_enabled(self, registry: str, policy_id: int, enabled: bool) -> bool:
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE protection_policies SET enabled = ? WHERE registry = ? AND id = ?",
            (int(enabled), registry, policy_id))))

    async def delete_protection(self, registry: str, policy_id: int) -> bool:
        return bool(await self.db.write(lambda tx: tx.execute(
            "DELETE FROM protection_policies WHERE registry = ? AND id = ?", (registry, policy_id))))

    # -- cleanup runs -------------------------------------------------------------------------
    async def start_run(self, registry: str, triggered_by: str, dry_run: bool, policies: list[dict[str, object]]
                        ) -> int:
        def run(tx: Tx) -> int:
            row = tx.one("INSERT INTO cleanup_runs (registry, triggered_by, dry_run, status, started_at, policies) "
                         "VALUES (?, ?, ?, 'running', ?, ?) RETURNING id",
                         (registry, triggered_by, int(dry_run), time.time(), json.dumps(policies)))
            assert row is not None
            return int(row[0])

        return await self.db.write(run)

    async def add_run_items(self, run_id: int, items: Sequence[tuple[str, str, str, str, str | None]]) -> None:
        """(repository, digest, tags as JSON, outcome, reason) rows of a run's history."""
        if not items:
            return

        def run(tx: Tx) -> None:
            for repository, digest, tags, outcome, reason in items:
                tx.execute("INSERT INTO cleanup_run_items (run_id, repository, digest, tags, outcome, reason) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (run_id, repository, digest, tags, outcome, reason))

        await self.db.write(run)

    async def finish_run(self, run_id: int, status: str, deleted: int, kept: int, error: str | None = None) -> None:
        await self.db.write(lambda tx: tx.execute(
            "UPDATE cleanup_runs SET status = ?, finished_at = ?, deleted = ?, kept = ?, error = ? WHERE id = ?",
            (status, time.time(), deleted, kept, error, run_id)))

    async def runs(self, registry: str, limit: int, offset: int) -> tuple[list[CleanupRun], int]:
        def run(tx: Tx) -> tuple[list[CleanupRun], int]:
            total = tx.one("SELECT COUNT(*) FROM cleanup_runs WHERE registry = ?", (registry,))
            rows = tx.all(_RUN + "WHERE registry = ? ORDER BY id DESC LIMIT ? OFFSET ?", (registry, limit, offset))
            return [_run(r) for r in rows], int(total[0]) if total else 0

        return await self.db.read(run)

    async def run(self, registry: str, run_id: int) -> tuple[CleanupRun, list[dict[str, object]]] | None:
        def q(tx: Tx) -> tuple[CleanupRun, list[dict[str, object]]] | None:
            row = tx.one(_RUN + "WHERE registry = ? AND id = ?", (registry, run_id))
            if row is None:
                return None
            items = [{"repository": r[0], "digest": r[1], "tags": json.loads(r[2]), "outcome": r[3], "reason": r[4]}
                     for r in tx.all("SELECT repository, digest, tags, outcome, reason FROM cleanup_run_items "
                                     "WHERE run_id = ? ORDER BY repository, digest", (run_id,))]
            return _run(row), items

        return await self.db.read(q)

    # -- schedules ----------------------------------------------------------------------------
    async def set_schedule(self, job: str, expression: str, next_run_at: float | None) -> None:
        await self.db.write(lambda tx: PolicyStore.set_schedule_in(tx, job, expression, next_run_at))

    @staticmethod
    def set_schedule_in(tx: Tx, job: str, expression: str, next_run_at: float | None) -> None:
        tx.execute("INSERT INTO schedules (job, expression, next_run_at) VALUES (?, ?, ?) ON CONFLICT (job) DO UPDATE "
                   "SET expression = excluded.expression, next_run_at = excluded.next_run_at",
                   (job, expression, next_run_at))

    async def schedule(self, job: str) -> ScheduleRow | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT job, expression, last_run_at, next_run_at FROM schedules WHERE job = ?", (job,)))
        if row is None:
            return None
        return ScheduleRow(row[0], row[1], None if row[2] is None else float(row[2]),
                           None if row[3] is None else float(row[3]))

    async def schedules(self) -> list[ScheduleRow]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT job, expression, last_run_at, next_run_at FROM schedules ORDER BY job"))
        return [ScheduleRow(r[0], r[1], None if r[2] is None else float(r[2]), None if r[3] is None else float(r[3]))
                for r in rows]

    async def claim_due(self, owner: str, now: float, lease: float) -> list[ScheduleRow]:
        """Take the lease on every due job no live lease holds (so two nodes never run one job)."""

        def run(tx: Tx) -> list[ScheduleRow]:
            rows = tx.all("SELECT job, expression, last_run_at, next_run_at FROM schedules WHERE expression <> '' "
                          "AND next_run_at IS NOT NULL AND next_run_at <= ? "
                          "AND (lease_until IS NULL OR lease_until < ?)" + tx.dialect.for_update, (now, now))
            claimed = []
            for r in rows:
                if tx.execute("UPDATE schedules SET lease_owner = ?, lease_until = ? WHERE job = ? AND "
                              "(lease_until IS NULL OR lease_until < ?)", (owner, now + lease, r[0], now)):
                    claimed.append(ScheduleRow(r[0], r[1], None if r[2] is None else float(r[2]), float(r[3])))
            return claimed

        return await self.db.write(run)

    async def finish_job(self, job: str, owner: str, ran_at: float, next_run_at: float | None) -> None:
        await self.db.write(lambda tx: tx.execute(
            "UPDATE schedules SET last_run_at = ?, next_run_at = ?, lease_owner = NULL, lease_until = NULL "
            "WHERE job = ? AND lease_owner = ?", (ran_at, next_run_at, job, owner)))

    async def extend_lease(self, job: str, owner: str, until: float) -> bool:
        """Keep a running job's lease (False: the lease is no longer this owner's)."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE schedules SET lease_until = ? WHERE job = ? AND lease_owner = ?", (until, job, owner))))

    async def release_lease(self, job: str, owner: str) -> None:
        """Give a claimed job back without running it: it stays due."""
        await self.db.write(lambda tx: tx.execute(
            "UPDATE schedules SET lease_owner = NULL, lease_until = NULL WHERE job = ? AND lease_owner = ?",
            (job, owner)))

    async def delete_schedule(self, job: str) -> None:
        await self.db.write(lambda tx: tx.execute("DELETE FROM schedules WHERE job = ?", (job,)))


__all__ = ["CleanupRow", "CleanupRun", "DuplicatePolicy", "PolicyLimitReached", "PolicyStore", "ProtectionRow",
           "ScheduleRow", "StoredArtifact", "UnknownRegistry"]
