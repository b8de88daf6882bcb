"""A registry's webhooks in the management API (`/api/v1/registries/{registry}/webhooks...`).

Viewing webhooks and their delivery history needs *read* on the registry; creating, changing,
deleting and sending a test needs *manage* (the route table's action column; http/auth.py). A
webhook's secret and auth header are write-only: answers say only whether they are set.

How a delivery went is told in full (HTTP status, error, times, durations) to system administrators
only; others learn whether each attempt worked, nothing more: a registry manager who chooses a
webhook's URL must not be able to use the server to probe what answers where, and how fast.
"""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import urlsplit

from ncr_trio.auth.roles import Permission
from ncr_trio.http import models as m
from ncr_trio.http.asgi import Request
from ncr_trio.http.declare import bind, decode, given, handles
from ncr_trio.http.jsonapi import audit, numeric_id, paged
from ncr_trio.http.operations import OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.meta.webhooks import Webhook
from ncr_trio.registry import RegistryService
from ncr_trio.registry.webhooks import DeliveryRecord
from ncr_trio.types import iso_time as t


def masked_url(url: str) -> str:
    """The URL without its path and query (a Slack webhook's path is itself a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/***"


def webhook_model(h: Webhook, full: bool = True) -> m.Webhook:
    """`full`: the URL as set, for those who may change the webhook; readers see it masked."""
    return m.Webhook(h.id, h.registry, h.name, h.kind, h.url if full else masked_url(h.url), list(h.event_types),
                     h.enabled, bool(h.secret), bool(h.auth_header), t(h.created_at))


def delivery_model(r: DeliveryRecord, details: bool = True) -> m.Delivery:
    """`details`: the receiver's answers, errors and timings too (system administrators only)."""
    d = r.delivery
    try:
        payload: Any = json.loads(d.payload)
    except ValueError:
        payload = d.payload
    more: Any = {"last_status": d.last_status, "last_error": d.last_error, "finished_at": t(d.finished_at)}
    more = more if details else {}
    return m.Delivery(
        id=d.id, webhook_id=d.webhook_id, event_id=d.event_id, event_type=d.event_type, status=cast(Any, d.status),
        attempts=d.attempts, created_at=t(d.created_at), payload=payload,
        next_attempt_at=t(d.next_attempt_at) if d.status == "pending" else None,
        attempt_log=[m.Attempt(attempt=a.attempt, ok=a.ok, at=t(a.at), status=a.status, error=a.error,
                               duration_ms=a.duration_ms) if details else m.Attempt(attempt=a.attempt, ok=a.ok)
                     for a in r.attempts], **more)


def _may_manage(request: Request) -> bool:
    return Permission.MANAGE in request.principal.holds(request.params["registry"])


def _details(request: Request) -> bool:
    return request.principal.system_admin


def _hook_id(request: Request) -> int:
    return numeric_id(request, "webhook", f"no webhook {request.params['webhook'][:40]!r} in registry "
                      f"{request.params['registry'][:80]!r}")


class WebhooksAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return bind(self, OPERATIONS)

    def _audit(self, request: Request, action: str, hook_id: int, **detail: Any) -> None:
        audit(self.s.access, request, action, registry=request.params["registry"], target=f"webhook {hook_id}",
              detail=json.dumps(detail) if detail else None)

    @handles("api.webhooks")
    async def list_webhooks(self, request: Request) -> m.WebhookPage:
        hooks, total = await self.s.webhooks.in_registry(request.params["registry"], request.query_int("page"),
                                                         request.query_int("per_page"))
        full = _may_manage(request)
        return paged(request, m.WebhookPage, total, webhooks=[webhook_model(h, full) for h in hooks])

    @handles("api.webhook.create")
    async def create(self, request: Request) -> m.Webhook:
        hook = await self.s.webhooks.create(request.params["registry"], given(await decode(request, m.NewWebhook)))
        self._audit(request, "webhook.create", hook.id, name=hook.name, kind=hook.kind)
        return webhook_model(hook)

    @handles("api.webhook")
    async def get(self, request: Request) -> m.Webhook:
        hook = await self.s.webhooks.get(request.params["registry"], _hook_id(request))
        return webhook_model(hook, _may_manage(request))

    @handles("api.webhook.update")
    async def update(self, request: Request) -> m.Webhook:
        body = given(await decode(request, m.WebhookChanges))
        hook = await self.s.webhooks.update(request.params["registry"], _hook_id(request), body)
        self._audit(request, "webhook.update", hook.id, fields=sorted(body))
        return webhook_model(hook)

    @handles("api.webhook.delete")
    async def delete(self, request: Request) -> None:
        hook = await self.s.webhooks.delete(request.params["registry"], _hook_id(request))
        self._audit(request, "webhook.delete", hook.id, name=hook.name)

    @handles("api.webhook.test")
    async def test(self, request: Request) -> m.Delivery:
        record = await self.s.webhooks.send_test(request.params["registry"], _hook_id(request),
                                                 request.principal.user)
        self._audit(request, "webhook.test", record.delivery.webhook_id, status=record.delivery.last_status)
        return delivery_model(record, _details(request))

    @handles("api.webhook.deliveries")
    async def deliveries(self, request: Request) -> m.DeliveryPage:
        found, total = await self.s.webhooks.deliveries(request.params["registry"], _hook_id(request),
                                                        request.query_int("page"), request.query_int("per_page"))
        return paged(request, m.DeliveryPage, total, deliveries=[delivery_model(r, _details(request)) for r in found])


__all__ = ["WebhooksAPI", "delivery_model", "webhook_model"]
