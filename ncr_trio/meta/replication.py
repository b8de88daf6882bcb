"""Replication's records: remote endpoints, policies, executions, tasks and the work events leave for
event policies; and the `model.Journal` the engine writes a run through.

At most one Running execution per policy holds across workers and nodes: `start_execution` locks the
policy's row (`for_update`; SQLite serialises writers anyway) and looks for a Running one in the same
transaction. The events cursor is one row, locked the same way, so two collectors never turn one
`tag.created` into work twice. Secrets arrive sealed (replication/remotes.py): this module never sees
one in clear.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ncr_trio.meta.db import Database, Tx
from ncr_trio.patterns import InvalidPattern
from ncr_trio.replication.filters import Filters
from ncr_trio.replication.model import STALE_SECONDS, Execution, Pending, Policy, RemoteInfo, Task


@dataclass(frozen=True)
class RemoteRow:
    """A remote as stored: its secret sealed."""

    info: RemoteInfo
    access_secret: str  # sealed ("" = none)


class RemoteInUse(Exception):
    """The remote is used by these policies ("registry/name")."""

    def __init__(self, policies: Sequence[str]) -> None:
        super().__init__(", ".join(policies))
        self.policies = tuple(policies)


class DuplicatePolicy(Exception):
    """A policy of that name exists in the registry."""


_REMOTE = ("SELECT name, url, type, access_id, access_secret, ca_cert, insecure, description, status, reason, "
           "checked_at, created_at, updated_at FROM replication_remotes ")
_POLICY = ("SELECT id, registry, name, description, direction, remote, remote_namespace, name_filter, tag_filter, "
           "tag_filter_mode, trigger, schedule, override, bandwidth_kbps, enabled, status, reason, created_at, "
           "updated_at FROM replication_policies ")
# Counts come from the tasks, so they are never out of step with them.
_EXECUTION = (
    "SELECT e.id, e.policy_id, e.trigger, e.status, e.started_at, e.ended_at, "
    "(SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id AND t.status = 'Succeeded'), "
    "(SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id AND t.status = 'Skipped'), "
    "(SELECT COUNT(*) FROM replication_tasks t WHERE t.execution_id = e.id AND t.status = 'Failed'), "
    "e.bytes + (SELECT COALESCE(SUM(t.bytes), 0) FROM replication_tasks t WHERE t.execution_id = e.id), "
    "e.stop_requested, e.detail FROM replication_executions e ")
_TASK = ("SELECT id, execution_id, source, target, digest, status, attempts, bytes, error, started_at, ended_at "
         "FROM replication_tasks ")


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def _remote(r: Sequence[Any]) -> RemoteRow:
    info = RemoteInfo(str(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), str(r[5]), bool(r[6]), str(r[7]),
                      str(r[8]), str(r[9]), _f(r[10]), float(r[11]), float(r[12]))
    return RemoteRow(info, str(r[4]))


def _policy(r: Sequence[Any]) -> Policy:
    return Policy(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                  str(r[6]), str(r[7]), str(r[8]), str(r[9]), str(r[10]), str(r[11]), bool(r[12]),
                  int(r[13]), bool(r[14]), str(r[15]), str(r[16]), float(r[17]), float(r[18]))


def _execution(r: Sequence[Any]) -> Execution:
    return Execution(int(r[0]), int(r[1]), str(r[2]), str(r[3]), float(r[4]),
                     _f(r[5]), int(r[6]), int(r[7]), int(r[8]), int(r[9]),
                     bool(r[10]), str(r[11]))


def _task(r: Sequence[Any]) -> Task:
    return Task(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]),
                int(r[6]), int(r[7]), str(r[8]), _f(r[9]), _f(r[10]))


def _emit(tx: Tx, kind: str, policy: Policy, execution_id: int) -> None:
    """A replication event in the `events` outbox, beside the change it reports: repository = the
    policy's registry, tag = the policy's name, digest = `execution:<id>` (webhooks render it)."""
    tx.execute("INSERT INTO events (kind, repository, digest, tag, media_type, actor, created_at) "
               "VALUES (?, ?, ?, ?, NULL, NULL, ?)",
               (kind, policy.registry, f"execution:{execution_id}", policy.name, time.time()))


class ReplicationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- remotes --------------------------------------------------------------------------------
    async def create_remote(self, info: RemoteInfo, sealed_secret: str) -> bool:
        """Store a new remote ("invalid", not checked yet); False if one of that name exists."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "INSERT INTO replication_remotes (name, url, type, access_id, access_secret, ca_cert, insecure, "
            "description, status, reason, checked_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
            "'invalid', 'not checked yet', NULL, ?, ?) ON CONFLICT (name) DO NOTHING",
            (info.name, info.url, info.type, info.access_id, sealed_secret, info.ca_cert, int(info.insecure),
             info.description, info.created_at, info.updated_at))))

    async def remote(self, name: str) -> RemoteRow | None:
        row = await self.db.read(lambda tx: tx.one(_REMOTE + "WHERE name = ?", (name,)))
        return None if row is None else _remote(row)

    async def remotes(self) -> list[RemoteRow]:
        return [_remote(r) for r in await self.db.read(lambda tx: tx.all(_REMOTE + "ORDER BY name"))]

    async def update_remote(self, info: RemoteInfo, sealed_secret: str) -> bool:
        """Store every field but the name, creation time and status; the status goes back to "invalid"
        until the next check (the caller checks at once). False if it no longer exists."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE replication_remotes SET url = ?, type = ?, access_id = ?, access_secret = ?, ca_cert = ?, "
            "insecure = ?, description = ?, updated_at = ? WHERE name = ?",
            (info.url, info.type, info.access_id, sealed_secret, info.ca_cert, int(info.insecure),
             info.description, info.updated_at, info.name))))

    async def set_remote_status(self, name: str, valid: bool, reason: str, checked_at: float) -> None:
        """A check's outcome, on the remote and on every policy using it."""
        status = "valid" if valid else "invalid"

        def run(tx: Tx) -> None:
            tx.execute("UPDATE replication_remotes SET status = ?, reason = ?, checked_at = ? WHERE name = ?",
                       (status, reason, checked_at, name))
            tx.execute("UPDATE replication_policies SET status = ?, reason = ? WHERE remote = ?",
                       (status, reason, name))

        await self.db.write(run)

    async def delete_remote(self, name: str) -> bool:
        """Delete a remote no policy uses (RemoteInUse names those that do); False if there is none."""

        def run(tx: Tx) -> bool:
            if tx.one("SELECT 1 FROM replication_remotes WHERE name = ?" + tx.dialect.for_update, (name,)) is None:
                return False
            users = [f"{r[0]}/{r[1]}" for r in tx.all(
                "SELECT registry, name FROM replication_policies WHERE remote = ? ORDER BY registry, name", (name,))]
            if users:
                raise RemoteInUse(users)
            return bool(tx.execute("DELETE FROM replication_remotes WHERE name = ?", (name,)))

        return await self.db.write(run)

    # -- policies -------------------------------------------------------------------------------
    async def create_policy(self, p: Policy) -> Policy:
        """Store a new policy (its id and status are the store's: the remote's status); DuplicatePolicy if
        its registry has one of that name; LookupError if its remote is gone."""

        def run(tx: Tx) -> Policy:
            remote = tx.one("SELECT status, reason FROM replication_remotes WHERE name = ?" + tx.dialect.for_share,
                            (p.remote,))
            if remote is None:
                raise LookupError(p.remote)
            if tx.one("SELECT 1 FROM replication_policies WHERE registry = ? AND name = ?",
                      (p.registry, p.name)) is not None:
                raise DuplicatePolicy(p.name)
            row = tx.one(
                "INSERT INTO replication_policies (registry, name, description, direction, remote, remote_namespace, "
                "name_filter, tag_filter, tag_filter_mode, trigger, schedule, override, bandwidth_kbps, enabled, "
                "status, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (registry, name) DO NOTHING RETURNING id",
                (p.registry, p.name, p.description, p.direction, p.remote, p.remote_namespace, p.name_filter,
                 p.tag_filter, p.tag_filter_mode, p.trigger, p.schedule, int(p.override), p.bandwidth_kbps,
                 int(p.enabled), str(remote[0]), str(remote[1]), p.created_at, p.updated_at))
            if row is None:
                raise DuplicatePolicy(p.name)
            found = tx.one(_POLICY + "WHERE id = ?", (int(row[0]),))
            assert found is not None
            return _policy(found)

        return await self.db.write(run)

    async def update_policy(self, p: Policy) -> Policy | None:
        """Store every field but id, registry, creation time and status (the status follows the remote
        when it changes); None if it no longer exists; DuplicatePolicy on a name taken; LookupError when
        the remote is gone."""

        def run(tx: Tx) -> Policy | None:
            remote = tx.one("SELECT status, reason FROM replication_remotes WHERE name = ?" + tx.dialect.for_share,
                            (p.remote,))
            if remote is None:
                raise LookupError(p.remote)
            same = tx.one("SELECT id FROM replication_policies WHERE registry = ? AND name = ?", (p.registry, p.name))
            if same is not None and int(same[0]) != p.id:
                raise DuplicatePolicy(p.name)
            changed = tx.execute(
                "UPDATE replication_policies SET name = ?, description = ?, direction = ?, remote = ?, "
                "remote_namespace = ?, name_filter = ?, tag_filter = ?, tag_filter_mode = ?, trigger = ?, "
                "schedule = ?, "
                "override = ?, bandwidth_kbps = ?, enabled = ?, status = ?, reason = ?, updated_at = ? "
                "WHERE registry = ? AND id = ?",
                (p.name, p.description, p.direction, p.remote, p.remote_namespace, p.name_filter, p.tag_filter,
                 p.tag_filter_mode, p.trigger, p.schedule, int(p.override), p.bandwidth_kbps, int(p.enabled),
                 str(remote[0]), str(remote[1]), p.updated_at, p.registry, p.id))
            if not changed:
                return None
            found = tx.one(_POLICY + "WHERE id = ?", (p.id,))
            return None if found is None else _policy(found)

        return await self.db.write(run)

    async def get_policy(self, registry: str, policy_id: int) -> Policy | None:
        row = await self.db.read(lambda tx: tx.one(_POLICY + "WHERE registry = ? AND id = ?", (registry, policy_id)))
        return None if row is None else _policy(row)

    async def policy(self, policy_id: int) -> Policy | None:
        row = await self.db.read(lambda tx: tx.one(_POLICY + "WHERE id = ?", (policy_id,)))
        return None if row is None else _policy(row)

    async def policies(self, registry: str | None = None) -> list[Policy]:
        if registry is None:
            rows = await self.db.read(lambda tx: tx.all(_POLICY + "ORDER BY registry, name"))
        else:
            rows = await self.db.read(lambda tx: tx.all(_POLICY + "WHERE registry = ? ORDER BY name", (registry,)))
        return [_policy(r) for r in rows]

    async def delete_policy(self, registry: str, policy_id: int) -> bool:
        """The policy, its history and its pending work."""

        def run(tx: Tx) -> bool:
            ReplicationStore._purge(tx, "WHERE registry = ? AND id = ?", (registry, policy_id))
            return bool(tx.execute("DELETE FROM replication_policies WHERE registry = ? AND id = ?",
                                   (registry, policy_id)))

        return await self.db.write(run)

    @staticmethod
    def _purge(tx: Tx, where: str, params: Sequence[object]) -> None:
        ids = "SELECT id FROM replication_policies " + where
        tx.execute("DELETE FROM replication_tasks WHERE execution_id IN (SELECT id FROM replication_executions "
                   f"WHERE policy_id IN ({ids}))", params)
        tx.execute(f"DELETE FROM replication_executions WHERE policy_id IN ({ids})", params)
        tx.execute(f"DELETE FROM replication_pending WHERE policy_id IN ({ids})", params)

    @staticmethod
    def purge_registry(tx: Tx, registry: str) -> None:
        """Inside a registry's deletion: its replication policies and their history go with it."""
        ReplicationStore._purge(tx, "WHERE registry = ?", (registry,))
        tx.execute("DELETE FROM replication_policies WHERE registry = ?", (registry,))

    # -- history --------------------------------------------------------------------------------
    async def executions(self, policy_id: int, limit: int, offset: int) -> tuple[list[Execution], int]:
        """A policy's executions, newest first, and how many there are."""

        def run(tx: Tx) -> tuple[list[Execution], int]:
            rows = tx.all(_EXECUTION + "WHERE e.policy_id = ? ORDER BY e.id DESC LIMIT ? OFFSET ?",
                          (policy_id, limit, offset))
            total = tx.one("SELECT COUNT(*) FROM replication_executions WHERE policy_id = ?", (policy_id,))
            return [_execution(r) for r in rows], int(total[0]) if total else 0

        return await self.db.read(run)

    async def execution(self, execution_id: int) -> Execution | None:
        row = await self.db.read(lambda tx: tx.one(_EXECUTION + "WHERE e.id = ?", (execution_id,)))
        return None if row is None else _execution(row)

    async def tasks(self, execution_id: int, limit: int, offset: int) -> tuple[list[Task], int]:
        """An execution's tasks in the order they were added, and how many there are."""

        def run(tx: Tx) -> tuple[list[Task], int]:
            rows = tx.all(_TASK + "WHERE execution_id = ? ORDER BY id LIMIT ? OFFSET ?", (execution_id, limit, offset))
            total = tx.one("SELECT COUNT(*) FROM replication_tasks WHERE execution_id = ?", (execution_id,))
            return [_task(r) for r in rows], int(total[0]) if total else 0

        return await self.db.read(run)

    async def request_stop(self, execution_id: int) -> bool:
        """Mark a Pending or Running execution to stop; False if it has ended (or is unknown)."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE replication_executions SET stop_requested = 1 WHERE id = ? AND status IN ('Pending', 'Running')",
            (execution_id,))))

    # -- Journal --------------------------------------------------------------------------------
    async def start_execution(self, policy_id: int, trigger: str, *, record_skip: bool = True) -> int | None:
        def run(tx: Tx) -> int | None:
            row = tx.one(_POLICY + "WHERE id = ?" + tx.dialect.for_update, (policy_id,))
            if row is None:
                raise LookupError(policy_id)
            policy = _policy(row)
            now = time.time()
            for r in tx.all("SELECT id, COALESCE(heartbeat_at, started_at) FROM replication_executions "
                            "WHERE policy_id = ? AND status = 'Running'", (policy_id,)):
                if now - float(r[1]) < STALE_SECONDS:
                    if record_skip:
                        tx.execute("INSERT INTO replication_executions (policy_id, trigger, status, started_at, "
                                   "ended_at, detail) VALUES (?, ?, 'Skipped', ?, ?, ?)",
                                   (policy_id, trigger, now, now, f"execution {int(r[0])} of the policy is running"))
                    return None
                tx.execute("UPDATE replication_executions SET status = 'Failed', ended_at = ?, detail = ? WHERE id = ?",
                           (now, "its worker stopped (no heartbeat)", int(r[0])))
                tx.execute("UPDATE replication_tasks SET status = 'Failed', ended_at = ?, error = ? "
                           "WHERE execution_id = ? AND status IN ('Pending', 'Running')",
                           (now, "its worker stopped", int(r[0])))
                _emit(tx, "replication.failed", policy, int(r[0]))
            new = tx.one("INSERT INTO replication_executions (policy_id, trigger, status, started_at, heartbeat_at) "
                         "VALUES (?, ?, 'Running', ?, ?) RETURNING id", (policy_id, trigger, now, now))
            assert new is not None
            _emit(tx, "replication.started", policy, int(new[0]))
            return int(new[0])

        return await self.db.write(run)

    async def add_task(self, execution_id: int, source: str, target: str, digest: str) -> int:
        def run(tx: Tx) -> int:
            row = tx.one("INSERT INTO replication_tasks (execution_id, source, target, digest, status, started_at) "
                         "VALUES (?, ?, ?, ?, 'Running', ?) RETURNING id", (execution_id, source, target, digest,
                                                                           time.time()))
            assert row is not None
            return int(row[0])

        return await self.db.write(run)

    async def finish_task(self, task_id: int, status: str, attempts: int, bytes_sent: int, error: str = "") -> None:
        await self.db.write(lambda tx: tx.execute(
            "UPDATE replication_tasks SET status = ?, attempts = ?, bytes = ?, error = ?, ended_at = ? WHERE id = ?",
            (status, attempts, bytes_sent, error[:4000], time.time(), task_id)))

    async def finish_execution(self, execution_id: int, status: str, detail: str = "") -> None:
        def run(tx: Tx) -> None:
            row = tx.one("SELECT policy_id FROM replication_executions WHERE id = ?", (execution_id,))
            if row is None:
                return
            now = time.time()
            tx.execute("UPDATE replication_executions SET status = ?, ended_at = ?, detail = ? WHERE id = ?",
                       (status, now, detail[:4000], execution_id))
            p = tx.one(_POLICY + "WHERE id = ?", (int(row[0]),))
            if p is not None:
                kind = "replication.failed" if status == "Failed" else "replication.finished"
                _emit(tx, kind, _policy(p), execution_id)

        await self.db.write(run)

    async def stop_requested(self, execution_id: int) -> bool:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT stop_requested FROM replication_executions WHERE id = ?", (execution_id,)))
        return bool(row and row[0])

    async def heartbeat(self, execution_id: int) -> None:
        await self.db.write(lambda tx: tx.execute(
            "UPDATE replication_executions SET heartbeat_at = ? WHERE id = ? AND status = 'Running'",
            (time.time(), execution_id)))

    async def collect_events(self, limit: int = 500) -> int:
        def run(tx: Tx) -> int:
            cursor = tx.one("SELECT event_id FROM replication_cursor WHERE id = 1" + tx.dialect.for_update)
            after = int(cursor[0]) if cursor else 0
            events = tx.all("SELECT id, repository, tag, digest FROM events WHERE id > ? AND kind = 'tag.created' "
                            "ORDER BY id LIMIT ?", (after, limit))
            if not events:
                return 0
            policies: dict[str, list[tuple[Policy, Filters]]] = {}
            now = time.time()
            for _, repository, tag, digest in events:
                registry, _, path = str(repository).partition("/")
                if registry not in policies:
                    found = []
                    for r in tx.all(_POLICY + "WHERE registry = ? AND enabled = 1 AND direction = 'push' "
                                    "AND trigger = 'event'", (registry,)):
                        p = _policy(r)
                        try:
                            found.append((p, Filters.of(p)))
                        except (InvalidPattern, ValueError):
                            continue
                    policies[registry] = found
                for p, filters in policies[registry]:
                    if tag and digest and filters.selects_image(path) and filters.selects_tag(str(tag)):
                        tx.execute("INSERT INTO replication_pending (policy_id, repository, tag, digest, created_at) "
                                   "VALUES (?, ?, ?, ?, ?)", (p.id, str(repository), str(tag), str(digest), now))
            last = int(events[-1][0])
            # Events past the cursor that are not tag.created are passed over too.
            tx.execute("UPDATE replication_cursor SET event_id = ? WHERE id = 1", (last,))
            return len(events)

        return await self.db.write(run)

    async def pending(self, policy_id: int | None = None) -> list[Pending]:
        sql = "SELECT id, policy_id, repository, tag, digest FROM replication_pending "
        if policy_id is None:
            rows = await self.db.read(lambda tx: tx.all(sql + "ORDER BY id"))
        else:
            rows = await self.db.read(lambda tx: tx.all(sql + "WHERE policy_id = ? ORDER BY id", (policy_id,)))
        return [Pending(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

    async def done_pending(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        await self.db.write(lambda tx: tx.execute(f"DELETE FROM replication_pending WHERE id IN ({marks})", list(ids)))

    async def event_policies(self, registry: str) -> list[Policy]:
        rows = await self.db.read(lambda tx: tx.all(
            _POLICY + "WHERE registry = ? AND enabled = 1 AND direction = 'push' AND trigger = 'event' ORDER BY id",
            (registry,)))
        return [_policy(r) for r in rows]


__all__ = ["DuplicatePolicy", "RemoteInUse", "RemoteRow", "ReplicationStore"]
