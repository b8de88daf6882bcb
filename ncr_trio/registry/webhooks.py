"""Webhooks: what a registry's webhooks may be (validation), what they send (the JSON payload of
docs/webhooks.md, Slack's message, the signed request) and the engine that delivers them.

Every change writes its event in the transaction that makes it (meta/store.py); meta/webhooks.py
turns events into deliveries exactly once and leases due deliveries to one sender at a time. Here,
`EventDelivery.run` runs in the lifespan nursery of every worker process and node, and loops:

  1. two cheap reads: are there events not yet fanned out? is a delivery due?
  2. fan-out: the next events become one delivery per matching enabled webhook (one transaction);
  3. claim as many due deliveries as there are free senders (8; at most 2 per webhook), each
     leased for 2 x `webhook_timeout_seconds` + 5 s;
  4. send each in a task of its own: one POST of at most `webhook_timeout_seconds`. A 2xx answer
     delivers it; anything else (another status, a refused connection, no answer in time) is tried
     again after base, 2 base, 4 base ... seconds (at most cap; longer if the receiver asks with
     Retry-After, up to cap), until `webhook_max_attempts` attempts have failed.

Where a POST may go is `webhook_allowed_networks` (registry/egress.py): its host is resolved at each
attempt, every address checked, and the connection made to a checked address; a URL naming an
address outside those networks is refused when the webhook is set. Redirects are never followed.
Secrets and auth headers are stored sealed (ncr_trio/sealing.py, the webhook's ID and the field as
context) and opened only to sign and send a request.

A push only writes its event row: it never waits for any of this. A slow or dead receiver holds at
most two senders and delays only its own deliveries. A sender that dies (crash, SIGKILL) leaves its
delivery leased: it is due again when the lease ends, on this node or another; one that is stopped
(shutdown) makes it due at once. Deliveries are at least once: receivers deduplicate on the
`X-NCR-Delivery` header or the payload's `id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from ncr_trio import changes
from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.limits import EVENT_TYPES
from ncr_trio.limits import WEBHOOK_KINDS as KINDS
from ncr_trio.limits import WEBHOOK_MAX_AUTH_HEADER as MAX_AUTH_HEADER
from ncr_trio.limits import WEBHOOK_MAX_SECRET as MAX_SECRET
from ncr_trio.limits import WEBHOOK_MAX_URL as MAX_URL
from ncr_trio.limits import WEBHOOK_NAME_RE as NAME_RE
from ncr_trio.limits import WEBHOOK_TEST_EVENT as TEST_EVENT
from ncr_trio.meta import AccessStore
from ncr_trio.meta.webhooks import Attempt, Delivery, DuplicateWebhook, Event, Webhook, WebhookStore
from ncr_trio.registry import egress
from ncr_trio.registry.catalog import page_bounds
from ncr_trio.sealing import Sealer, SealError
from ncr_trio.types import iso_time

log = logging.getLogger("ncr_trio.webhooks")

FIELDS = frozenset({"name", "kind", "url", "secret", "auth_header", "event_types", "enabled"})


SENDERS = 8  # deliveries in flight per process
PER_WEBHOOK = 2  # ... of which at most this many to one webhook
POLL_SECONDS = 0.5
HISTORY_DAYS = 30  # finished deliveries are forgotten after this
USER_AGENT = "ncr-trio-webhook/1"


# -- what a webhook may be ------------------------------------------------------------------------
def _invalid(message: str) -> RegistryError:
    return RegistryError("INVALID_REQUEST", message)


def validate_name(value: object) -> str:
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise _invalid("name must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def validate_kind(value: object) -> str:
    if value not in KINDS:
        raise _invalid(f"kind must be one of {', '.join(KINDS)}")
    return str(value)


def validate_url(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise _invalid(f"url must be an http:// or https:// URL of at most {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _invalid("url must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        raise _invalid("url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("url must be an http:// or https:// URL with a host")
    try:  # a host no request could ever name (an empty label, a label over 63 characters, bad punycode)
        parts.hostname.encode("idna")
    except UnicodeError:
        raise _invalid("url's host is not a valid host name") from None
    return value


def validate_event_types(value: object) -> tuple[str, ...]:
    """The event types a webhook wants, in declared order; none (empty or null): every type."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("event_types must be a list of event types")
    unknown = [v for v in value if v not in EVENT_TYPES]
    if unknown:
        raise _invalid(f"unknown event type {unknown[0][:60]!r}: use {', '.join(EVENT_TYPES)}")
    return tuple(t for t in EVENT_TYPES if t in value)


def validate_secret(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_SECRET:
        raise _invalid(f"secret must be a string of at most {MAX_SECRET} characters")
    try:
        value.encode()  # it is sealed as UTF-8
    except UnicodeEncodeError:
        raise _invalid("secret must be valid Unicode (no lone surrogates)") from None
    return value


def validate_auth_header(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_AUTH_HEADER \
            or any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise _invalid(f"auth_header must be at most {MAX_AUTH_HEADER} printable ASCII characters")
    if value != value.strip():
        raise _invalid("auth_header must not start or end with spaces (no HTTP client could send it)")
    return value


def validate_enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise _invalid("enabled must be true or false")
    return value


_VALIDATORS = {"name": validate_name, "kind": validate_kind, "url": validate_url, "secret": validate_secret,
               "auth_header": validate_auth_header, "event_types": validate_event_types,
               "enabled": validate_enabled}


def _validated(fields: Mapping[str, object]) -> dict[str, Any]:
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise _invalid(f"unknown field {unknown[0][:60]!r}: a webhook has {', '.join(sorted(FIELDS))}")
    return {k: _VALIDATORS[k](v) for k, v in fields.items()}


# -- what a webhook sends -------------------------------------------------------------------------
def event_payload(event_id: str, event_type: str, occurred_at: float, operator: str | None, registry: str,
                  repository: str | None, digest: str | None, tag: str | None, media_type: str | None,
                  host: str) -> dict[str, Any]:
    """The JSON body of an HTTP webhook (docs/webhooks.md). A replication event (stored with the policy's
    name as `tag` and `execution:<id>` as `digest`: meta/replication.py) names no artifact: its
    `replication` member says which policy and execution."""
    replication = None
    if event_type.startswith("replication."):
        execution = (digest or "").removeprefix("execution:")
        replication = {"policy": tag, "execution": int(execution) if execution.isdigit() else None}
        repository = digest = tag = media_type = None
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": iso_time(occurred_at),
        "operator": operator,
        "registry": registry,
        "repository": repository,
        "image": repository.split("/", 1)[1] if repository and "/" in repository else None,
        "digest": digest,
        "tags": [tag] if tag else [],
        "media_type": media_type,
        "pull_reference": f"{host}/{repository}@{digest}" if repository and digest else None,
        "replication": replication,
    }


_VERBS = {"artifact.pushed": "pushed", "artifact.cached": "cached from its source", "artifact.pulled": "pulled",
          "artifact.deleted": "deleted",
          "tag.created": "tagged", "tag.deleted": "removed tag", "scan.completed": "scanned",
          "scan.failed": "could not scan", "signature.pushed": "signed",
          "signature.invalid": "found an invalid signature on"}
_REPLICATION = {"replication.started": "started", "replication.finished": "finished",
                "replication.failed": "failed"}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(p: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (`text`, and the same in `blocks`) for a payload."""
    who = _slack_escape(p["operator"] or "someone")
    if p["type"] == TEST_EVENT:
        text = f"ncr-trio: test message for the webhooks of registry *{_slack_escape(p['registry'])}* (sent by {who})"
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    if p.get("replication"):
        r = p["replication"]
        verb = _REPLICATION.get(p["type"], p["type"])
        text = (f"ncr-trio: replication policy `{_slack_escape(str(r['policy']))}` of registry "
                f"*{_slack_escape(p['registry'])}* {verb} (execution {r['execution']})")
        return {"text": text, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"*{p['type']}* at {p['occurred_at']}"}]},
        ]}
    what = p["repository"] + (f":{p['tags'][0]}" if p["tags"] else "")
    digest = p["digest"] or ""
    text = (f"ncr-trio: {who} {_VERBS.get(p['type'], p['type'])} `{_slack_escape(what)}`"
            + (f" ({digest[:19]})" if digest else "") + f" in registry *{_slack_escape(p['registry'])}*")
    context = [f"*{p['type']}* at {p['occurred_at']}"]
    if p["pull_reference"]:
        context.append(f"`{_slack_escape(p['pull_reference'])}`")
    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in context]},
    ]}


def body_for(hook: Webhook, payload: Mapping[str, Any]) -> str:
    """What `hook` sends for `payload`: the payload itself, or (Slack) a message about it."""
    return json.dumps(slack_message(payload) if hook.kind == "slack" else payload, separators=(",", ":"))


def signature(secret: str, body: bytes) -> str:
    """The `X-NCR-Signature` header: HMAC-SHA256 of the exact body with the webhook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sealing_context(hook_id: int, field: str) -> str:
    """What a webhook's sealed `field` (secret, auth_header) is bound to: its row and the field."""
    return f"webhook/{hook_id}/{field}"


def request_headers(hook: Webhook, delivery_id: int, event_type: str, body: bytes, sealer: Sealer) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-NCR-Event": event_type,
               "X-NCR-Delivery": str(delivery_id)}
    if hook.secret:
        headers["X-NCR-Signature"] = signature(sealer.open(hook.secret, sealing_context(hook.id, "secret")), body)
    if hook.auth_header:
        headers["Authorization"] = sealer.open(hook.auth_header, sealing_context(hook.id, "auth_header"))
    return headers


@dataclass(frozen=True)
class Outcome:
    """One attempt: the receiver's status (None: no answer) or what went wrong."""

    status: int | None
    error: str | None
    duration: float
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None  # an HTTP date is not worth parsing here: the backoff applies
    return float(value.strip())


def _described(e: BaseException) -> str:
    """`Type: message`, with the message of the first cause that has one when `e` has none (httpx
    reports a TLS certificate refused as a ConnectError with no message of its own)."""
    cause: BaseException | None = e
    while cause is not None and not str(cause):
        cause = cause.__cause__ or cause.__context__
    return f"{type(e).__name__}: {cause if cause is not None else ''}"


@dataclass(frozen=True)
class Sender:
    """How deliveries are sent: where they may go, the key their secrets are sealed with, how long
    an attempt may take."""

    networks: egress.NetworkPolicy
    sealer: Sealer
    timeout: float

    @classmethod
    def of(cls, config: Config, sealer: Sealer) -> Sender:
        networks = egress.NetworkPolicy.parse(config.webhook_allowed_networks, "webhook_allowed_networks")
        return cls(networks, sealer, config.webhook_timeout_seconds)

    def client(self) -> httpx.AsyncClient:
        return egress.client(self.timeout)

    async def send(self, client: httpx.AsyncClient, hook: Webhook, delivery_id: int, event_type: str,
                   payload: str) -> Outcome:
        """POST one delivery to its webhook's URL; never raises for anything the receiver does."""
        body = payload.encode()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        started = time.monotonic()
        with trio.move_on_after(self.timeout) as scope:
            try:
                headers = request_headers(hook, delivery_id, event_type, body, self.sealer)
                response = await egress.post(client, self.networks, hook.url, body, headers)
                status = response.status_code  # the body is not read: only the status matters
                retry_after = _retry_after(response.headers.get("retry-after"))
            # The last two: a host IDNA refuses (`a..b`), a secret sealed with another key.
            except (httpx.HTTPError, httpx.InvalidURL, egress.EgressError, UnicodeError, SealError) as e:
                error = _described(e)[:300]
        duration = time.monotonic() - started
        if status is None and scope.cancelled_caught:
            error = f"no answer within {self.timeout:g} s"
        elif status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
        return Outcome(status, error, duration, retry_after)


def retry_delay(failed: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after `failed` failed attempts: base, 2 base, 4 base ... at most `cap` (or the
    receiver's Retry-After, up to `cap`, when that is longer), less up to 10% jitter."""
    delay = min(cap, base * 2.0 ** min(max(failed, 1) - 1, 60))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay * random.uniform(0.9, 1.0)


# -- the engine -----------------------------------------------------------------------------------
class EventDelivery:
    def __init__(self, config: Config, store: WebhookStore, sender: Sender) -> None:
        self.config = config
        self.store = store
        self.sender = sender
        self.host = config.external_host or (config.listen[0] if config.listen else "localhost")
        self.timeout = config.webhook_timeout_seconds
        self.lease = 2 * self.timeout + 5
        self.senders = trio.CapacityLimiter(SENDERS)
        self._busy: Counter[int] = Counter()  # webhook ID -> its deliveries in flight here
        self._wake = trio.Event()
        self._pruned = 0.0

    def wake(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    def render(self, hook: Webhook, event: Event) -> str | None:
        """The body a webhook is sent for an event (None: not for this webhook)."""
        if event.kind not in EVENT_TYPES or event.created_at < hook.created_at:
            return None  # a kind not declared yet, or from before the webhook existed
        payload = event_payload(str(event.id), event.kind, event.created_at, event.actor,
                                event.repository.split("/", 1)[0], event.repository, event.digest, event.tag,
                                event.media_type, self.host)
        return body_for(hook, payload)

    def test_body(self, hook: Webhook, operator: str | None) -> str:
        return body_for(hook, event_payload(f"test-{uuid.uuid4().hex}", TEST_EVENT, time.time(), operator,
                                            hook.registry, None, None, None, None, self.host))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self.sender.client() as client, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._wake = trio.Event()
                with changes.unseen():  # deliveries' bookkeeping: no answer shows it (http/fastpath.py)
                    pause = await self._step(client, nursery)
                if pause > 0:
                    with trio.move_on_after(pause):
                        await self._wake.wait()

    async def _step(self, client: httpx.AsyncClient, nursery: trio.Nursery) -> float:
        """One round of fan-out and claims; how long to wait before the next (unless woken)."""
        now = time.time()
        free = int(self.senders.available_tokens)
        claimed: list[Delivery] = []
        try:
            events_waiting, next_due = await self.store.work_due()
            moved = await self.store.fan_out(self.render) if events_waiting else 0
            if free and (moved or (next_due is not None and next_due <= now)):
                claimed = await self.store.claim(time.time(), self.lease, free, PER_WEBHOOK, dict(self._busy))
            if now - self._pruned > 3600:
                self._pruned = now
                await self.store.prune(now - HISTORY_DAYS * 86400)
        except Exception:
            log.exception("webhook deliveries: reading the outbox failed; trying again in 5 s")
            return 5.0
        for d in claimed:
            borrower = object()
            self.senders.acquire_on_behalf_of_nowait(borrower)  # only this loop acquires: never blocks
            self._busy[d.webhook_id] += 1
            nursery.start_soon(self._deliver, client, d, borrower)
        if moved or (claimed and len(claimed) == free):
            return 0.0  # there may be more at once
        if next_due is not None and next_due > now:
            return min(POLL_SECONDS, next_due - now)  # a retry due before the next poll
        return POLL_SECONDS

    async def _deliver(self, client: httpx.AsyncClient, d: Delivery, borrower: object) -> None:
        settled = False
        try:
            hook = await self.store.by_id(d.webhook_id)
            if hook is None:
                pass  # deleted, with its deliveries
            elif not hook.enabled and d.event_type != TEST_EVENT:
                # Held while the webhook is disabled; sent if it is enabled again.
                await self.store.release([d.id], time.time() + self.config.webhook_retry_cap_seconds)
            else:
                try:
                    outcome = await self.sender.send(client, hook, d.id, d.event_type, d.payload)
                except Exception as e:  # not the receiver's doing: still an attempt, so retries stay bounded
                    log.exception("webhook delivery %d: sending failed", d.id)
                    outcome = Outcome(None, _described(e)[:300], 0.0)
                await self._record(hook, d, outcome)
            settled = True
        except Exception:
            settled = True  # it stays leased, and is tried again when the lease ends
            log.exception("webhook delivery %d: recording the attempt failed", d.id)
        finally:
            if not settled:  # cancelled (the server is stopping): due again at once, here or elsewhere
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self.store.release([d.id], time.time())
            self._busy[d.webhook_id] -= 1
            if self._busy[d.webhook_id] <= 0:
                del self._busy[d.webhook_id]
            self.senders.release_on_behalf_of(borrower)
            self.wake()

    async def _record(self, hook: Webhook, d: Delivery, outcome: Outcome) -> None:
        failed = d.attempts + 1
        limit = 1 if d.event_type == TEST_EVENT else max(1, self.config.webhook_max_attempts)
        if outcome.ok:
            await self.store.record_attempt(d.id, True, outcome.status, None, None, outcome.duration)
        elif failed >= limit:
            await self.store.record_attempt(d.id, False, outcome.status, outcome.error, None, outcome.duration)
            log.warning("webhook %d (%s): delivery %d failed after %d attempts: %s", hook.id, hook.name, d.id,
                        failed, outcome.error)
        else:
            retry_at = time.time() + retry_delay(failed, self.config.webhook_retry_base_seconds,
                                                 self.config.webhook_retry_cap_seconds, outcome.retry_after)
            await self.store.record_attempt(d.id, False, outcome.status, outcome.error, retry_at, outcome.duration)

    async def send_now(self, hook: Webhook, event_type: str, body: str) -> int:
        """Send one delivery from the caller's task (a "send test"): recorded in the history like any
        other, tried once. It is enqueued leased to the caller, so no sender takes it meanwhile."""
        delivery_id = await self.store.enqueue(hook.id, event_type, body, not_before=time.time() + self.lease)
        async with self.sender.client() as client:
            outcome = await self.sender.send(client, hook, delivery_id, event_type, body)
        await self.store.record_attempt(delivery_id, outcome.ok, outcome.status, outcome.error, None,
                                        outcome.duration)
        return delivery_id


# -- the use cases --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery with its attempts, oldest first."""

    delivery: Delivery
    attempts: list[Attempt]


class Webhooks:
    def __init__(self, config: Config, store: WebhookStore, registries: AccessStore, sender: Sender) -> None:
        self.store = store
        self.registries = registries
        self.sender = sender
        self.sealer = sender.sealer
        self.delivery = EventDelivery(config, store, sender)

    def _seal(self, hook_id: int, field: str, value: str) -> str:
        return self.sealer.seal(value, sealing_context(hook_id, field))

    def seal_stored(self) -> int:
        """At start: seal the secrets and auth headers stored in clear by an older version."""
        return self.store.seal_stored_sync(self._seal, self.sealer.is_sealed)

    def _reachable(self, url: str) -> None:
        """Refuse a URL whose host is an address outside `webhook_allowed_networks` (a name is
        checked at each delivery, when it is resolved)."""
        try:
            self.sender.networks.check_literal(urlsplit(url).hostname or "")
        except egress.TargetRefused as e:
            raise _invalid(f"url: {e}") from None

    async def _registry(self, registry: str) -> None:
        if await self.registries.registry(registry) is None:
            raise RegistryError("NOT_FOUND", f"registry {registry[:80]!r} does not exist")

    async def in_registry(self, registry: str, page: int | None = None, per_page: int | None = None
                   ) -> tuple[list[Webhook], int]:
        limit, offset = page_bounds(page, per_page)
        await self._registry(registry)
        hooks = await self.store.for_registry(registry)
        return hooks[offset:offset + limit], len(hooks)

    async def get(self, registry: str, hook_id: int) -> Webhook:
        hook = await self.store.get(registry, hook_id)
        if hook is None:
            await self._registry(registry)
            raise RegistryError("NOT_FOUND", f"no webhook {hook_id} in registry {registry[:80]!r}")
        return hook

    async def create(self, registry: str, fields: Mapping[str, object]) -> Webhook:
        """A new webhook from `fields` (name, kind, url; secret, auth_header, event_types, enabled)."""
        for required in ("name", "kind", "url"):
            if required not in fields:
                raise _invalid(f"{required} is required")
        v = _validated(fields)
        self._reachable(v["url"])
        await self._registry(registry)
        try:
            return await self.store.create(registry, v["name"], v["kind"], v["url"], v.get("secret", ""),
                                           v.get("auth_header", ""), v.get("event_types", ()),
                                           v.get("enabled", True), seal=self._seal)
        except DuplicateWebhook:
            raise RegistryError("CONFLICT", f"registry {registry!r} already has a webhook named {v['name']!r}") \
                from None

    async def update(self, registry: str, hook_id: int, fields: Mapping[str, object]) -> Webhook:
        """Change the given fields (a null or empty secret or auth_header clears it); all or nothing."""
        v = _validated(fields)
        if "url" in v:
            self._reachable(v["url"])
        for field in ("secret", "auth_header"):
            if field in v:
                v[field] = self._seal(hook_id, field, v[field])
        hook = replace(await self.get(registry, hook_id), **v)
        try:
            if not await self.store.update(hook):
                raise RegistryError("NOT_FOUND", f"no webhook {hook_id} in registry {registry[:80]!r}")
        except DuplicateWebhook:
            raise RegistryError("CONFLICT", f"registry {registry!r} already has a webhook named {hook.name!r}") \
                from None
        return hook

    async def delete(self, registry: str, hook_id: int) -> Webhook:
        hook = await self.get(registry, hook_id)
        if not await self.store.delete(registry, hook_id):
            raise RegistryError("NOT_FOUND", f"no webhook {hook_id} in registry {registry[:80]!r}")
        return hook

    async def send_test(self, registry: str, hook_id: int, operator: str | None) -> DeliveryRecord:
        """Send a `test` event now (enabled or not) and answer how it went."""
        hook = await self.get(registry, hook_id)
        delivery_id = await self.delivery.send_now(hook, TEST_EVENT, self.delivery.test_body(hook, operator))
        found = await self.store.delivery(hook.id, delivery_id)
        if found is None:
            raise RegistryError("NOT_FOUND", f"webhook {hook_id} was deleted meanwhile")
        return DeliveryRecord(found, (await self.store.attempts_of([delivery_id]))[delivery_id])

    async def deliveries(self, registry: str, hook_id: int, page: int | None, per_page: int | None
                         ) -> tuple[list[DeliveryRecord], int]:
        """A webhook's deliveries, newest first, with their attempts."""
        limit, offset = page_bounds(page, per_page)
        hook = await self.get(registry, hook_id)
        found, total = await self.store.deliveries(hook.id, limit, offset)
        attempts = await self.store.attempts_of([d.id for d in found])
        return [DeliveryRecord(d, attempts[d.id]) for d in found], total


__all__ = ["EVENT_TYPES", "KINDS", "TEST_EVENT", "DeliveryRecord", "EventDelivery", "Outcome", "Sender", "Webhooks",
           "body_for", "event_payload", "retry_delay", "sealing_context", "signature", "slack_message"]
