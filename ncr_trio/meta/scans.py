"""Vulnerability scanning's records (issue 13): results per artifact, the settings, the push cursor.

`scan_results` holds one row per artifact (repository, digest); no row means Not Scanned. The row is
the scan's durable queue entry too:

    status      Scanning (asked for, or running) -> Done | Failed | Stopped
    owner       the process running it, with `lease_until`; a Scanning row whose lease has ended
                (never claimed, or its process died) is claimed by any process (`claim`)
    stop_requested  set by a stop request from any process; the runner polls it and cancels

A new scan of an artifact keeps the previous outcome's `findings` (what pull prevention reads) until
it ends Done, so a rescan, a stopped rescan or a failed one never lets a vulnerable image through.

`findings` is the compact list pull prevention reads, worst first: [[severity, id, [aliases...],
package, installed], ...]; `report` the whole report (JSON) the API's vulnerability view answers.

The settings: `scan_settings` one row (the global allowlist, and the last vulnerability database
version seen, for the rescan on import; the periodic scan's schedule is the "scan" job of
`schedules`, ncr_trio/scheduler.py);
`scan_registry_settings` one row per registry that changed its defaults (`allowlist` NULL: the global
list applies; any text, even empty: the registry's own list, which replaces the global one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ncr_trio.meta.db import Database, Tx
from ncr_trio.types import MediaType

SCANNING, DONE, FAILED, STOPPED = "Scanning", "Done", "Failed", "Stopped"
STATUSES = (SCANNING, DONE, FAILED, STOPPED)
TRIGGERS = ("manual", "push", "schedule", "import", "index")


@dataclass(frozen=True)
class ScanRow:
    repository: str
    digest: str
    status: str
    trigger: str
    requested_at: float
    started_at: float | None
    ended_at: float | None
    stop_requested: bool
    total: int
    fixable: int
    severity: str | None
    db_version: str
    error: str


@dataclass(frozen=True)
class RegistryScanSettings:
    registry: str
    scan_on_push: bool = False
    prevent_pull_severity: str | None = None  # None: pulls are never refused
    allowlist: tuple[str, ...] | None = None  # None: the global list applies


@dataclass(frozen=True)
class Outcome:
    """What a finished scan stores."""

    status: str  # Done | Failed | Stopped
    total: int = 0
    fixable: int = 0
    severity: str | None = None
    db_version: str = ""
    findings: list[list[Any]] | None = None
    report: dict[str, Any] | None = None
    error: str = ""


_COLUMNS = ("SELECT repository, digest, status, trigger, requested_at, started_at, ended_at, stop_requested, "
            "total, fixable, severity, db_version, error FROM scan_results ")


# Queue a scan of an artifact unless one is under way (then the row is left as it is: rowcount 0).
_QUEUE = ("INSERT INTO scan_results (repository, digest, status, trigger, requested_at) VALUES (?, ?, ?, ?, ?) "
          "ON CONFLICT (repository, digest) DO UPDATE SET status = excluded.status, trigger = excluded.trigger, "
          "requested_at = excluded.requested_at, started_at = NULL, ended_at = NULL, owner = NULL, lease_until = NULL, "
          "stop_requested = 0, error = '' WHERE scan_results.status <> ?")
_INSERT = ("INSERT INTO scan_results (repository, digest, status, trigger, requested_at) VALUES (?, ?, ?, ?, ?) "
           "ON CONFLICT (repository, digest) DO NOTHING")


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def _row(r: Sequence[Any]) -> ScanRow:
    return ScanRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4]), _f(r[5]), _f(r[6]), bool(r[7]),
                   int(r[8]), int(r[9]), None if r[10] is None else str(r[10]), str(r[11]), str(r[12]))


def _list(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(i for i in text.split("\n") if i)


def _emit(tx: Tx, kind: str, repository: str, digest: str) -> None:
    """scan.completed / scan.failed in the events outbox, beside the result it announces."""
    tx.execute("INSERT INTO events (kind, repository, digest, tag, media_type, actor, created_at) "
               "VALUES (?, ?, ?, NULL, NULL, ?, ?)", (kind, repository, digest, "scanner", time.time()))


class ScanStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- results ---------------------------------------------------------------------------------
    async def result(self, repository: str, digest: str) -> ScanRow | None:
        row = await self.db.read(lambda tx: tx.one(_COLUMNS + "WHERE repository = ? AND digest = ?",
                                                   (repository, digest)))
        return None if row is None else _row(row)

    async def results(self, repository: str, digests: Sequence[str]) -> dict[str, ScanRow]:
        """The rows of these artifacts of one repository (those never scanned are left out)."""
        if not digests:
            return {}
        marks = ", ".join("?" for _ in digests)
        rows = await self.db.read(lambda tx: tx.all(
            _COLUMNS + f"WHERE repository = ? AND digest IN ({marks})", (repository, *digests)))
        return {r.digest: r for r in map(_row, rows)}

    async def report(self, repository: str, digest: str) -> dict[str, Any] | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT report FROM scan_results WHERE repository = ? AND digest = ?", (repository, digest)))
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    async def findings(self, repository: str, digest: str) -> list[list[Any]] | None:
        """The last finished scan's findings, worst first (None: never scanned to the end)."""
        row = await self.db.read(lambda tx: tx.one(
            "SELECT findings FROM scan_results WHERE repository = ? AND digest = ?", (repository, digest)))
        return None if row is None or row[0] is None else list(json.loads(row[0]))

    async def request(self, repository: str, digest: str, trigger: str, now: float) -> bool:
        """Queue a scan of the artifact; False if one is already under way (nothing changes)."""

        def run(tx: Tx) -> bool:
            return bool(tx.execute(_QUEUE, (repository, digest, SCANNING, trigger, now, SCANNING)))

        return await self.db.write(run)

    async def request_many(self, artifacts: Sequence[tuple[str, str]], trigger: str, now: float) -> int:
        """Queue scans of these artifacts (those under way are left alone); answers how many were queued."""

        def run(tx: Tx) -> int:
            queued = 0
            for repository, digest in artifacts:
                queued += tx.execute(_QUEUE, (repository, digest, SCANNING, trigger, now, SCANNING))
            return queued

        return await self.db.write(run)

    async def due(self, now: float, limit: int) -> list[tuple[str, str]]:
        """Queued scans no live process holds, oldest request first."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT repository, digest FROM scan_results WHERE status = ? AND (lease_until IS NULL OR lease_until < ?) "
            "ORDER BY requested_at LIMIT ?", (SCANNING, now, limit)))
        return [(str(r[0]), str(r[1])) for r in rows]

    async def claim(self, repository: str, digest: str, owner: str, now: float, lease_seconds: float) -> bool:
        """Take a queued scan (one process wins); its start time is now."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE scan_results SET owner = ?, lease_until = ?, started_at = ? WHERE repository = ? AND digest = ? "
            "AND status = ? AND (lease_until IS NULL OR lease_until < ?)",
            (owner, now + lease_seconds, now, repository, digest, SCANNING, now))))

    async def extend(self, repository: str, digest: str, owner: str, until: float) -> tuple[bool, bool]:
        """Renew the lease of a scan this process runs: (still ours, stop requested)."""

        def run(tx: Tx) -> tuple[bool, bool]:
            ours = tx.execute("UPDATE scan_results SET lease_until = ? WHERE repository = ? AND digest = ? "
                              "AND owner = ? AND status = ?", (until, repository, digest, owner, SCANNING))
            row = tx.one("SELECT stop_requested FROM scan_results WHERE repository = ? AND digest = ?",
                         (repository, digest))
            return bool(ours), bool(row and row[0])

        return await self.db.write(run)

    async def stop_requested(self, repository: str, digest: str) -> bool:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT stop_requested FROM scan_results WHERE repository = ? AND digest = ?", (repository, digest)))
        return bool(row and row[0])

    async def request_stop(self, repository: str, digest: str, now: float) -> str | None:
        """Ask a scan under way to stop: one nobody runs yet ends Stopped at once; a running one when
        its runner sees the request. Answers the status now (None: never scanned)."""

        def run(tx: Tx) -> str | None:
            row = tx.one("SELECT status, owner, lease_until FROM scan_results WHERE repository = ? AND digest = ?"
                         + tx.dialect.for_update, (repository, digest))
            if row is None:
                return None
            if row[0] != SCANNING:
                return str(row[0])
            if row[1] is None or row[2] is None or float(row[2]) < now:
                tx.execute("UPDATE scan_results SET status = ?, ended_at = ?, owner = NULL, lease_until = NULL, "
                           "stop_requested = 0 WHERE repository = ? AND digest = ?", (STOPPED, now, repository, digest))
                return STOPPED
            tx.execute("UPDATE scan_results SET stop_requested = 1 WHERE repository = ? AND digest = ?",
                       (repository, digest))
            return SCANNING

        return await self.db.write(run)

    async def finish(self, repository: str, digest: str, owner: str | None, outcome: Outcome, now: float,
                     *, event: bool = True) -> bool:
        """Store a scan's outcome (only if `owner` still holds it; None: any), with its event
        (scan.completed for Done, scan.failed for Failed). Stopped and Failed keep the last findings."""

        def run(tx: Tx) -> bool:
            held = "" if owner is None else " AND owner = ?"
            key: tuple[Any, ...] = (repository, digest) if owner is None else (repository, digest, owner)
            if outcome.status == DONE:
                changed = tx.execute(
                    "UPDATE scan_results SET status = ?, ended_at = ?, owner = NULL, lease_until = NULL, "
                    "stop_requested = 0, total = ?, fixable = ?, severity = ?, db_version = ?, findings = ?, "
                    "report = ?, error = '' WHERE repository = ? AND digest = ?" + held,
                    (DONE, now, outcome.total, outcome.fixable, outcome.severity, outcome.db_version,
                     json.dumps(outcome.findings or [], separators=(",", ":")),
                     json.dumps(outcome.report or {}, separators=(",", ":")), *key))
            else:
                changed = tx.execute(
                    "UPDATE scan_results SET status = ?, ended_at = ?, owner = NULL, lease_until = NULL, "
                    "stop_requested = 0, error = ? WHERE repository = ? AND digest = ?" + held,
                    (outcome.status, now, outcome.error[:2000], *key))
            if changed and event and outcome.status in (DONE, FAILED):
                _emit(tx, "scan.completed" if outcome.status == DONE else "scan.failed", repository, digest)
            return bool(changed)

        return await self.db.write(run)

    async def release(self, repository: str, digest: str, owner: str) -> None:
        """Give a scan back to the queue (this process is shutting down): due again at once."""
        await self.db.write(lambda tx: tx.execute(
            "UPDATE scan_results SET owner = NULL, lease_until = NULL WHERE repository = ? AND digest = ? "
            "AND owner = ? AND status = ?", (repository, digest, owner, SCANNING)))

    async def store_child(self, repository: str, digest: str, outcome: Outcome, now: float) -> None:
        """The outcome of a platform's image scanned as part of its index, stored as that image's own
        result (so that pulling it by digest is judged too) unless a scan of it is under way."""

        def run(tx: Tx) -> None:
            tx.execute(_INSERT, (repository, digest, DONE, "index", now))
            tx.execute("UPDATE scan_results SET status = ?, started_at = ?, ended_at = ?, total = ?, fixable = ?, "
                       "severity = ?, db_version = ?, findings = ?, report = ?, error = '' "
                       "WHERE repository = ? AND digest = ? AND status <> ?",
                       (DONE, now, now, outcome.total, outcome.fixable, outcome.severity, outcome.db_version,
                        json.dumps(outcome.findings or [], separators=(",", ":")),
                        json.dumps(outcome.report or {}, separators=(",", ":")), repository, digest, SCANNING))

        await self.db.write(run)

    async def scannable(self, after: tuple[str, str], limit: int) -> list[tuple[str, str]]:
        """A page of the artifacts a periodic scan covers, after `after` (repository, digest): image
        manifests and indexes without a subject (not signatures or attestations) that no index holds
        (an index's images are scanned with it)."""
        kinds = sorted(MediaType.MANIFESTS)
        marks = ", ".join("?" for _ in kinds)

        def run(tx: Tx) -> list[tuple[str, str]]:
            c = tx.dialect.collate
            return [(str(r[0]), str(r[1])) for r in tx.all(
                f"SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repo_id "
                f"WHERE m.subject IS NULL AND m.media_type IN ({marks}) AND NOT EXISTS (SELECT 1 FROM manifest_refs x "
                f"WHERE x.repo_id = m.repo_id AND x.child = m.digest AND x.kind = 'manifest') "
                f"AND (r.name{c} > ? OR (r.name = ? AND m.digest{c} > ?)) ORDER BY r.name{c}, m.digest{c} LIMIT ?",
                (*kinds, after[0], after[0], after[1], limit))]

        return await self.db.read(run)

    async def forget(self, repository: str, digest: str) -> None:
        await self.db.write(lambda tx: tx.execute(
            "DELETE FROM scan_results WHERE repository = ? AND digest = ?", (repository, digest)))

    # -- settings --------------------------------------------------------------------------------
    async def allowlist(self) -> tuple[str, ...]:
        """The installation's (global) CVE allowlist."""
        row = await self.db.read(lambda tx: tx.one("SELECT allowlist FROM scan_settings WHERE id = 1"))
        return () if row is None else _list(str(row[0])) or ()

    async def claim_db_version(self, version: str) -> bool:
        """Record the vulnerability database version the installation has seen; True for the one process
        (of every worker and node) that records a new one (it then queues the rescan, if configured)."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE scan_settings SET db_version = ? WHERE id = 1 AND db_version <> ?", (version, version))))

    async def set_allowlist(self, ids: Sequence[str]) -> None:
        await self.db.write(lambda tx: tx.execute("UPDATE scan_settings SET allowlist = ? WHERE id = 1",
                                                  ("\n".join(ids),)))

    async def registry_settings(self, registry: str) -> RegistryScanSettings:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT scan_on_push, prevent_pull_severity, allowlist FROM scan_registry_settings WHERE registry = ?",
            (registry,)))
        if row is None:
            return RegistryScanSettings(registry)
        return RegistryScanSettings(registry, bool(row[0]), None if row[1] is None else str(row[1]),
                                    _list(None if row[2] is None else str(row[2])))

    async def set_registry_settings(self, s: RegistryScanSettings) -> bool:
        """Store a registry's settings; False if the registry does not exist (checked in the transaction)."""

        def run(tx: Tx) -> bool:
            if tx.one("SELECT 1 FROM registries WHERE name = ?" + tx.dialect.for_update, (s.registry,)) is None:
                return False
            tx.execute("INSERT INTO scan_registry_settings (registry, scan_on_push, prevent_pull_severity, allowlist) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (registry) DO UPDATE SET scan_on_push = excluded.scan_on_push, "
                       "prevent_pull_severity = excluded.prevent_pull_severity, allowlist = excluded.allowlist",
                       (s.registry, int(s.scan_on_push), s.prevent_pull_severity,
                        None if s.allowlist is None else "\n".join(s.allowlist)))
            return True

        return await self.db.write(run)

    @staticmethod
    def purge_registry(tx: Tx, registry: str) -> None:
        """Inside the deletion of a registry: its settings and its artifacts' results."""
        tx.execute("DELETE FROM scan_registry_settings WHERE registry = ?", (registry,))
        tx.execute("DELETE FROM scan_results WHERE repository LIKE ? ESCAPE '\\'",
                   (registry.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%",))

    # -- scan on push ----------------------------------------------------------------------------
    async def collect_pushes(self, limit: int = 500) -> list[tuple[str, str]]:
        """The artifacts pushed since the last call into registries that scan on push, once across every
        worker and node (the cursor row is locked for the transaction); each is queued here, in the
        same transaction, unless a scan of it is under way. The results of deleted artifacts go.

        Artifacts cached from an image cache's source (`artifact.cached`) are not scanned on arrival:
        their layers come when a client first pulls them, so a scan then would find them missing."""

        if not await self.db.read(lambda tx: tx.one(
                "SELECT 1 FROM events WHERE id > (SELECT event_id FROM scan_cursor WHERE id = 1) LIMIT 1")):
            return []  # nothing new: no write transaction (this runs every second in every process)

        def run(tx: Tx) -> list[tuple[str, str]]:
            cursor = tx.one("SELECT event_id FROM scan_cursor WHERE id = 1" + tx.dialect.for_update)
            after = int(cursor[0]) if cursor else 0
            events = tx.all("SELECT id, kind, repository, digest, media_type FROM events WHERE id > ? "
                            "ORDER BY id LIMIT ?", (after, limit))
            if not events:
                return []
            on_push = {str(r[0]) for r in tx.all("SELECT registry FROM scan_registry_settings WHERE scan_on_push = 1")}
            queued: list[tuple[str, str]] = []
            now = time.time()
            for _, kind, repository, digest, _media_type in events:
                if kind == "artifact.deleted" and digest is not None:  # its result goes with it
                    tx.execute("DELETE FROM scan_results WHERE repository = ? AND digest = ?", (repository, digest))
                    continue
                if kind != "artifact.pushed" or digest is None:
                    continue
                if _media_type not in MediaType.MANIFESTS:
                    continue
                if str(repository).split("/", 1)[0] not in on_push:
                    continue
                if tx.execute(_QUEUE, (repository, digest, SCANNING, "push", now, SCANNING)):
                    queued.append((str(repository), str(digest)))
            tx.execute("UPDATE scan_cursor SET event_id = ? WHERE id = 1", (int(events[-1][0]),))
            return queued

        return await self.db.write(run)


__all__ = ["DONE", "FAILED", "SCANNING", "STATUSES", "STOPPED", "TRIGGERS", "Outcome", "RegistryScanSettings",
           "ScanRow", "ScanStore"]
