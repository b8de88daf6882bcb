"""Webhooks and their deliveries: the outbox's consumer side.

Events are rows written in the transaction of the change they describe (store.py `_emit`). The
fan-out takes events not yet fanned out and, in one transaction, inserts a delivery per matching
enabled webhook and marks those events: an event is turned into deliveries exactly once, and a
crash anywhere leaves either both or neither. Deliveries are then sent at least once: a sender
claims a due delivery by moving its `next_attempt_at` forward (a lease), so two senders never
send the same attempt, and a sender that dies leaves it due again when the lease runs out.

Why a mark per event and not a cursor (the highest ID done): event IDs are handed out when a
transaction inserts its event, not when it commits, so on PostgreSQL a lower ID can become visible
after a higher one; a cursor would step over it for good. A mark cannot miss a late event, and
rolled-back IDs (a refused change, a crash) leave nothing to wait for.

A webhook's secret and auth header are stored as the caller's `Sealing` makes them (sealed with the
row's ID as context: registry/webhooks.py); this module never sees them in clear.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ncr_trio.meta.db import Database, Tx


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


@dataclass(frozen=True)
class Attempt:
    """One try of a delivery: the receiver's HTTP status (None: no answer) or what went wrong."""

    delivery_id: int
    attempt: int
    at: float
    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class DuplicateWebhook(Exception):
    pass


# (webhook ID, field, value in clear) -> what is stored for it
Sealing = Callable[[int, str, str], str]
_SECRETS = ("secret", "auth_header")


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
                     event_types: Sequence[str], enabled: bool = True, seal: Sealing | None = None) -> Webhook:
        """A new webhook; `seal` turns its secret and auth header into what is stored (as given without)."""

        def run(tx: Tx) -> Webhook:
            row = tx.one("INSERT INTO webhooks (registry, name, kind, url, event_types, enabled, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (registry, name) DO NOTHING RETURNING id",
                         (registry, name, kind, url, ",".join(event_types), int(enabled), time.time()))
            if row is None:
                raise DuplicateWebhook(name)
            hook_id = int(row[0])
            given = zip(_SECRETS, (secret, auth_header), strict=True)
            stored = [seal(hook_id, field, value) if seal and value else value for field, value in given]
            tx.execute("UPDATE webhooks SET secret = ?, auth_header = ? WHERE id = ?", (*stored, hook_id))
            found = tx.one(_HOOK + "WHERE id = ?", (hook_id,))
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
        """Store every field of `hook`; False if it no longer exists, DuplicateWebhook if another
        webhook of its registry has its name."""

        def run(tx: Tx) -> bool:
            if tx.one("SELECT 1 FROM webhooks WHERE registry = ? AND name = ? AND id <> ?",
                      (hook.registry, hook.name, hook.id)):
                raise DuplicateWebhook(hook.name)
            return bool(tx.execute(
                "UPDATE webhooks SET name = ?, kind = ?, url = ?, secret = ?, auth_header = ?, event_types = ?, "
                "enabled = ? WHERE registry = ? AND id = ?",
                (hook.name, hook.kind, hook.url, hook.secret, hook.auth_header, ",".join(hook.event_types),
                 int(hook.enabled), hook.registry, hook.id)))

        return await self.db.write(run)

    def seal_stored_sync(self, seal: Sealing, is_sealed: Callable[[str], bool]) -> int:
        """Seal every secret and auth header still stored in clear (from before they were sealed);
        returns how many. Several processes may run it at once: each value is replaced only if it is
        still the clear one it read."""

        def run(tx: Tx) -> int:
            done = 0
            for r in tx.all("SELECT id, secret, auth_header FROM webhooks WHERE secret <> '' OR auth_header <> ''"):
                for field, value in zip(_SECRETS, (str(r[1]), str(r[2])), strict=True):
                    if value and not is_sealed(value):
                        done += tx.execute(f"UPDATE webhooks SET {field} = ? WHERE id = ? AND {field} = ?",
                                           (seal(int(r[0]), field, value), r[0], value))
            return done

        return self.db.write_sync(run)

    async def delete(self, registry: str, hook_id: int) -> bool:
        def run(tx: Tx) -> bool:
            tx.execute("DELETE FROM deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE registry = ? "
                       "AND id = ?)", (registry, hook_id))
            return bool(tx.execute("DELETE FROM webhooks WHERE registry = ? AND id = ?", (registry, hook_id)))

        return await self.db.write(run)

    @staticmethod
    def purge_registry(tx: Tx, registry: str) -> None:
        """Inside a registry's deletion: its webhooks and their deliveries go with it (a registry
        created later with that name starts without them)."""
        tx.execute("DELETE FROM deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE registry = ?)",
                   (registry,))
        tx.execute("DELETE FROM webhooks WHERE registry = ?", (registry,))

    # -- fan-out ------------------------------------------------------------------------------
    async def fan_out(self, render: Callable[[Webhook, Event], str | None], batch: int = 500) -> int:
        """Turn the next events not yet fanned out into deliveries (one per matching enabled webhook)
        and mark them, all in one transaction; returns how many events were consumed."""

        def run(tx: Tx) -> int:
            # Locked: a concurrent fan-out (another process or node) waits, then finds them marked.
            events = [Event(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], float(r[7])) for r in tx.all(
                "SELECT id, kind, repository, digest, tag, media_type, actor, created_at FROM events "
                "WHERE fanned_out = 0 ORDER BY id LIMIT ?" + tx.dialect.for_update, (batch,))]
            if not events:
                return 0
            now = time.time()
            hooks: dict[str, list[Webhook]] = {}
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
            ids = [e.id for e in events]
            tx.execute(f"UPDATE events SET fanned_out = 1 WHERE id IN ({', '.join('?' * len(ids))})", ids)
            return len(events)

        return await self.db.write(run)

    # -- deliveries ---------------------------------------------------------------------------
    async def enqueue(self, hook_id: int, event_type: str, payload: str, not_before: float | None = None) -> int:
        """A delivery outside the event stream (a webhook's "send test"), due at `not_before` (now):
        a caller that sends it itself enqueues it leased, as `claim` would."""

        def run(tx: Tx) -> int:
            now = time.time()
            row = tx.one("INSERT INTO deliveries (webhook_id, event_type, payload, status, attempts, next_attempt_at, "
                         "created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?) RETURNING id",
                         (hook_id, event_type, payload, now if not_before is None else not_before, now))
            assert row is not None
            return int(row[0])

        return await self.db.write(run)

    async def claim(self, now: float, lease: float, limit: int, per_webhook: int | None = None,
                    busy: Mapping[int, int] | None = None) -> list[Delivery]:
        """Due pending deliveries, each leased to the caller for `lease` seconds; with `per_webhook`,
        at most that many per webhook counting the caller's `busy` ones (webhook ID -> in flight),
        so that one slow receiver cannot take every sender."""

        def run(tx: Tx) -> list[Delivery]:
            taken = dict(busy or {})
            full = [h for h, n in taken.items() if per_webhook is not None and n >= per_webhook]
            skip = f"AND webhook_id NOT IN ({', '.join('?' * len(full))}) " if full else ""
            rows = tx.all(_DELIVERY + f"WHERE status = 'pending' AND next_attempt_at <= ? {skip}"
                          "ORDER BY next_attempt_at, id LIMIT ?" + tx.dialect.for_update,
                          (now, *full, limit if per_webhook is None else limit * 4))
            claimed: list[Delivery] = []
            for r in rows:
                d = _delivery(r)
                if len(claimed) == limit:
                    break
                if per_webhook is not None and taken.get(d.webhook_id, 0) >= per_webhook:
                    continue
                if tx.execute("UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND next_attempt_at = ? AND "
                              "status = 'pending'", (now + lease, d.id, d.next_attempt_at)):
                    claimed.append(d)
                    taken[d.webhook_id] = taken.get(d.webhook_id, 0) + 1
            return claimed

        return await self.db.write(run)

    async def release(self, delivery_ids: Sequence[int], at: float) -> None:
        """Make leased deliveries due again at `at` (a sender that stops before it is done, or holds
        off a disabled webhook's deliveries), without counting an attempt."""
        if not delivery_ids:
            return

        def run(tx: Tx) -> None:
            for delivery_id in delivery_ids:
                tx.execute("UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'",
                           (at, delivery_id))

        return await self.db.write(run)

    async def record_attempt(self, delivery_id: int, ok: bool, status: int | None, error: str | None,
                             retry_at: float | None, duration: float = 0.0) -> None:
        """After one attempt: delivered, retry at `retry_at`, or (retry_at None) failed for good. The
        attempt joins the delivery's history (`attempts_of`)."""

        def run(tx: Tx) -> None:
            now = time.time()
            row = tx.one("SELECT attempts FROM deliveries WHERE id = ?" + tx.dialect.for_update, (delivery_id,))
            if row is None:
                return  # its webhook was deleted meanwhile
            tx.execute("INSERT INTO delivery_attempts (delivery_id, attempt, at, status, error, duration_ms) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (delivery_id, int(row[0]) + 1, now, status, error,
                                                     max(0, round(duration * 1000))))
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

    async def delivery(self, hook_id: int, delivery_id: int) -> Delivery | None:
        row = await self.db.read(lambda tx: tx.one(_DELIVERY + "WHERE webhook_id = ? AND id = ?",
                                                   (hook_id, delivery_id)))
        return None if row is None else _delivery(row)

    async def attempts_of(self, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        """The attempts of these deliveries, in order, by delivery ID."""
        found: dict[int, list[Attempt]] = {d: [] for d in delivery_ids}
        if not delivery_ids:
            return found
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT delivery_id, attempt, at, status, error, duration_ms FROM delivery_attempts WHERE delivery_id "
            f"IN ({', '.join('?' * len(delivery_ids))}) ORDER BY delivery_id, attempt", tuple(delivery_ids)))
        for r in rows:
            found[int(r[0])].append(Attempt(int(r[0]), int(r[1]), float(r[2]), None if r[3] is None else int(r[3]),
                                            None if r[4] is None else str(r[4]), int(r[5])))
        return found

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

    async def work_due(self) -> tuple[bool, float | None]:
        """Cheap reads for a sender's loop: are there events to fan out, and when is the next pending
        delivery due (None: none is pending)?"""

        def run(tx: Tx) -> tuple[bool, float | None]:
            newer = tx.one("SELECT 1 FROM events WHERE fanned_out = 0 LIMIT 1")
            due = tx.one("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'")
            return newer is not None, None if due is None or due[0] is None else float(due[0])

        return await self.db.read(run)

    async def prune(self, cutoff: float) -> int:
        """Forget deliveries that finished before `cutoff` (with their attempts), and events older
        than `cutoff` that were fanned out and that no pending delivery still comes from."""

        def run(tx: Tx) -> int:
            n = tx.execute("DELETE FROM deliveries WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,))
            n += tx.execute("DELETE FROM events WHERE fanned_out = 1 AND created_at < ? AND NOT EXISTS "
                            "(SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = 'pending')",
                            (cutoff,))
            return n

        return await self.db.write(run)


__all__ = ["Attempt", "Delivery", "DuplicateWebhook", "Event", "Sealing", "Webhook", "WebhookStore"]
