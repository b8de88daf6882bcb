"""Webhooks and their deliveries: the outbox's consumer side.

Events are rows written in the transaction of the change they describe (store.py `_emit`). The
fan-out reads events past its cursor and, in one transaction, inserts a delivery per matching
enabled webhook and advances the cursor: an event is turned into deliveries exactly once, and a
crash anywhere leaves either both or neither. Deliveries are then sent at least once: a sender
claims a due delivery by moving its `next_attempt_at` forward (a lease), so two senders never
send the same attempt, and a sender that dies leaves it due again when the lease runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ncr_trio.meta.db import Database, Tx

CURSOR = "webhooks"


@dataclass(frozen=True)
class Webhook:
    id: int
    registry: str
    name: str
    kind: str  # "http" | "slack"
    url: str
    secret: str
    auth_header: str
    event_types: tuple[str, ...]  # empty: every type
    enabled: bool
    created_at: float


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    repository: str
    digest: str | None
    tag: str | None
    media_type: str | None
    actor: str | None
    created_at: float


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: int
    event_id: int | None
    event_type: str
    payload: str
    status: str  # "pending" | "delivered" | "failed"
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    created_at: float
    finished_at: float | None


class DuplicateWebhook(Exception):
    pass


_HOOK = ("SELECT id, registry, name, kind, url, secret, auth_header, event_types, enabled, created_at "
         "FROM webhooks ")
_DELIVERY = ("SELECT id, webhook_id, event_id, event_type, payload, status, attempts, next_attempt_at, "
             "last_status, last_error, created_at, finished_at FROM deliveries ")


def _hook(r: Sequence[object]) -> Webhook:
    types = tuple(t for t in str(r[7]).split(",") if t)
    return Webhook(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]), types,  # type: ignore[call-overload]
                   bool(r[8]), float(r[9]))  # type: ignore[arg-type]


def _delivery(r: Sequence[object]) -> Delivery:
    def f(v: object) -> float | None:
        return None if v is None else float(v)  # type: ignore[arg-type]

    return Delivery(int(r[0]), int(r[1]), None if r[2] is None else int(r[2]), str(r[3]), str(r[4]),  # type: ignore[call-overload]
                    str(r[5]), int(r[6]), float(r[7]), None if r[8] is None else int(r[8]),  # type: ignore[call-overload, arg-type]
                    None if r[9] is None else str(r[9]), float(r[10]), f(r[11]))  # type: ignore[arg-type]


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- webhooks -----------------------------------------------------------------------------
    async def create(self, registry: str, name: str, kind: str, url: str, secret: str, auth_header: str,
                     event_types: Sequence[str]) -> Webhook:
        def run(tx: Tx) -> Webhook:
            row = tx.one("INSERT INTO webhooks (registry, name, kind, url, secret, auth_header, event_types, enabled, "
                         "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT (registry, name) DO NOTHING "
                         "RETURNING id", (registry, name, kind, url, secret, auth_header, ",".join(event_types),
                                          time.time()))
            if row is None:
                raise DuplicateWebhook(name)
            found = tx.one(_HOOK + "WHERE id = ?", (row[0],))
            assert found is not None
            return _hook(found)

        return await self.db.write(run)

    async def get(self, registry: str, hook_id: int) -> Webhook | None:
        row = await self.db.read(lambda tx: tx.one(_HOOK + "WHERE registry = ? AND id = ?", (registry, hook_id)))
        return None if row is None else _hook(row)

    async def by_id(self, hook_id: int) -> Webhook | None:
        row = await self.db.read(lambda tx: tx.one(_HOOK + "WHERE id = ?", (hook_id,)))
        return None if row is None else _hook(row)

    async def for_registry(self, registry: str) -> list[Webhook]:
        rows = await self.db.read(lambda tx: tx.all(_HOOK + "WHERE registry = ? ORDER BY id", (registry,)))
        return [_hook(r) for r in rows]

    async def update(self, hook: Webhook) -> bool:
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE webhooks SET name = ?, kind = ?, url = ?, secret = ?, auth_header = ?, event_types = ?, "
            "enabled = ? WHERE registry = ? AND id = ?",
            (hook.name, hook.kind, hook.url, hook.secret, hook.auth_header, ",".join(hook.event_types),
             int(hook.enabled), hook.registry, hook.id))))

    async def delete(self, registry: str, hook_id: int) -> bool:
        def run(tx: Tx) -> bool:
            tx.execute("DELETE FROM deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE registry = ? "
                       "AND id = ?)", (registry, hook_id))
            return bool(tx.execute("DELETE FROM webhooks WHERE registry = ? AND id = ?", (registry, hook_id)))

        return await self.db.write(run)

    # -- fan-out ------------------------------------------------------------------------------
    async def fan_out(self, render: Callable[[Webhook, Event], str | None], batch: int = 500) -> int:
        """Turn the next events into deliveries (one per matching enabled webhook) and advance the
        cursor, all in one transaction; returns how many events were consumed."""

        def run(tx: Tx) -> int:
            tx.execute("INSERT INTO cursors (name, position) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (CURSOR,))
            row = tx.one("SELECT position FROM cursors WHERE name = ?" + tx.dialect.for_update, (CURSOR,))
            position = int(row[0]) if row else 0
            events = [Event(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], float(r[7])) for r in tx.all(
                "SELECT id, kind, repository, digest, tag, media_type, actor, created_at FROM events WHERE id > ? "
                "ORDER BY id LIMIT ?", (position, batch))]
            if not events:
                return 0
            hooks: dict[str, list[Webhook]] = {}
            now = time.time()
            for event in events:
                registry = event.repository.split("/", 1)[0]
                if registry not in hooks:
                    hooks[registry] = [_hook(r) for r in tx.all(_HOOK + "WHERE registry = ? AND enabled = 1",
                                                                (registry,))]
                for hook in hooks[registry]:
                    if hook.event_types and event.kind not in hook.event_types:
                        continue
                    payload = render(hook, event)
                    if payload is None:
                        continue
                    tx.execute("INSERT INTO deliveries (webhook_id, event_id, event_type, payload, status, attempts, "
                               "next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
                               (hook.id, event.id, event.kind, payload, now, now))
            tx.execute("UPDATE cursors SET position = ? WHERE name = ?", (events[-1].id, CURSOR))
            return len(events)

        return await self.db.write(run)

    # -- deliveries ---------------------------------------------------------------------------
    async def enqueue(self, hook_id: int, event_type: str, payload: str) -> int:
        """A delivery outside the event stream (a webhook's "send test")."""

        def run(tx: Tx) -> int:
            now = time.time()
            row = tx.one("INSERT INTO deliveries (webhook_id, event_type, payload, status, attempts, next_attempt_at, "
                         "created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?) RETURNING id",
                         (hook_id, event_type, payload, now, now))
            assert row is not None
            return int(row[0])

        return await self.db.write(run)

    async def claim(self, now: float, lease: float, limit: int) -> list[Delivery]:
        """Due pending deliveries, each leased to the caller for `lease` seconds."""

        def run(tx: Tx) -> list[Delivery]:
            rows = tx.all(_DELIVERY + "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id "
                          "LIMIT ?" + tx.dialect.for_update, (now, limit))
            claimed = []
            for r in rows:
                d = _delivery(r)
                if tx.execute("UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND next_attempt_at = ? AND "
                              "status = 'pending'", (now + lease, d.id, d.next_attempt_at)):
                    claimed.append(d)
            return claimed

        return await self.db.write(run)

    async def record_attempt(self, delivery_id: int, ok: bool, status: int | None, error: str | None,
                             retry_at: float | None) -> None:
        """After one attempt: delivered, retry at `retry_at`, or (retry_at None) failed for good."""

        def run(tx: Tx) -> None:
            now = time.time()
            if ok:
                tx.execute("UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, last_status = ?, "
                           "last_error = NULL, finished_at = ? WHERE id = ?", (status, now, delivery_id))
            elif retry_at is not None:
                tx.execute("UPDATE deliveries SET attempts = attempts + 1, last_status = ?, last_error = ?, "
                           "next_attempt_at = ? WHERE id = ?", (status, error, retry_at, delivery_id))
            else:
                tx.execute("UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_status = ?, "
                           "last_error = ?, finished_at = ? WHERE id = ?", (status, error, now, delivery_id))

        await self.db.write(run)

    async def deliveries(self, hook_id: int, limit: int, offset: int) -> tuple[list[Delivery], int]:
        def run(tx: Tx) -> tuple[list[Delivery], int]:
            total = tx.one("SELECT COUNT(*) FROM deliveries WHERE webhook_id = ?", (hook_id,))
            rows = tx.all(_DELIVERY + "WHERE webhook_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                          (hook_id, limit, offset))
            return [_delivery(r) for r in rows], int(total[0]) if total else 0

        return await self.db.read(run)

    async def pending(self) -> int:
        row = await self.db.read(lambda tx: tx.one("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"))
        return int(row[0]) if row else 0


__all__ = ["CURSOR", "Delivery", "DuplicateWebhook", "Event", "Webhook", "WebhookStore"]
