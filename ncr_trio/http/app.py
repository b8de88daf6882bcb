"""The ASGI application: lifespan (open the registry, run background jobs) and request dispatch
through the access gate."""

from __future__ import annotations

import logging
import time

import trio

from ncr_trio import changes, metrics
from ncr_trio.background import run_background
from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.http.api import ManagementAPI
from ncr_trio.http.asgi import ClientDisconnected, Receive, Request, Response, Scope, Send, error_response
from ncr_trio.http.auth import Gate
from ncr_trio.http.caches_api import CachesAPI
from ncr_trio.http.console import Console
from ncr_trio.http.fastpath import EXTENSION as FAST_PATH
from ncr_trio.http.fastpath import Capture
from ncr_trio.http.forwarded import ForwardedFor
from ncr_trio.http.health import Health
from ncr_trio.http.policies_api import PoliciesAPI
from ncr_trio.http.replication_api import ReplicationAPI
from ncr_trio.http.routes import RouteTable
from ncr_trio.http.scans_api import ScansAPI
from ncr_trio.http.trust_api import TrustAPI
from ncr_trio.http.v2 import V2API
from ncr_trio.http.webhooks_api import WebhooksAPI
from ncr_trio.meta.store import ACTOR
from ncr_trio.registry import RegistryService
from ncr_trio.storage import StorageUnavailable
from ncr_trio.types import validate_name

log = logging.getLogger("ncr_trio.http")

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
# Answers the fast path may replay (http/fastpath.py): (route, method). Read-only, small, and the
# same for the same request until something is written (or the access caches' TTL passes).
REPLAYABLE = frozenset({("manifest", "GET"), ("manifest", "HEAD"), ("blob", "HEAD")})


class App:
    """ASGI 3 application. The registry opens at lifespan startup and closes at shutdown."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.service: RegistryService | None = None
        self.routes = RouteTable([])
        self.gate: Gate | None = None
        self.forwarded = ForwardedFor(())

    def open(self) -> RegistryService:
        self.forwarded = ForwardedFor(self.config.trusted_proxies)  # a bad block fails the start
        self.service = service = RegistryService.open(self.config)
        changes.attach(self.config.data_dir / "changes.counter")  # shared by this node's workers
        service.access.bootstrap()
        self.gate = Gate(self.config, service.access)
        self.routes = RouteTable(V2API(service).routes() + self.gate.routes() + ManagementAPI(service).routes()
                                 + CachesAPI(service).routes() + WebhooksAPI(service).routes()
                                 + PoliciesAPI(service).routes() + ReplicationAPI(service).routes()
                                 + ScansAPI(service).routes()
                                 + TrustAPI(service).routes()
                                 + Health(service).routes()
                                 + Console().routes())
        return service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            service = self.open()
        except Exception as e:
            log.exception("startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(e)})
            return
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(service.replicator.serve)  # before the scheduler, which starts runs
                await nursery.start(run_background, service)
                await nursery.start(service.access.run)
                await nursery.start(service.catalog.pulls.run)
                await nursery.start(service.webhooks.delivery.run)
                await nursery.start(service.pull_through.run)
                await nursery.start(service.scans.serve)
                await nursery.start(service.trust.serve)
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await service.replicator.aclose()
            service.close()
        await send({"type": "lifespan.shutdown.complete"})

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.forwarded and scope.get("client"):
            peer = scope["client"]
            scope = {**scope, "client": (self.forwarded.client(str(peer[0]), scope["headers"]), peer[1])}
        started = time.perf_counter()
        tally = metrics.Tally(receive, send)  # body bytes in and out, for /metrics
        request = Request(scope, tally.receive)
        try:
            response = await self.dispatch(request)
        except RegistryError as e:
            response = error_response(e)
        except ClientDisconnected:
            metrics.observe_request(request.route, request.method, 499, time.perf_counter() - started,
                                    tally.received, tally.sent)
            return
        except StorageUnavailable as e:
            log.warning("%s %s: %s", request.method, request.path, e)
            response = error_response(RegistryError("UNAVAILABLE", "the storage did not answer: retry later",
                                                    headers={"Retry-After": "5"}))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = error_response(RegistryError("UNAVAILABLE", "internal error", status=500))
        response.headers.update(API_VERSION)
        capture = (scope.get("extensions") or {}).get(FAST_PATH)
        if capture is not None:
            self.offer(capture, request, response)
        if request.unread:
            # hypercorn queues at most 10 body messages per request and, when the response ends,
            # puts a disconnect message in that same queue from within our last send: with the
            # queue full, that send would never return and the connection would stay open for
            # ever. So what the client still sends is read, and dropped, while the answer goes
            # out. The answer says `Connection: close` (RFC 9112 9.6): hypercorn closes such a
            # connection after the answer, and a client that reused it would find it gone.
            response.headers["Connection"] = "close"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(request.discard)
                await self.respond(request, response, tally.send)
        else:
            await self.respond(request, response, tally.send)
        elapsed = time.perf_counter() - started
        metrics.observe_request(request.route, request.method, response.status, elapsed, tally.received, tally.sent)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %d %.1fms", request.method, request.path, response.status, elapsed * 1000)

    def offer(self, capture: Capture, request: Request, response: Response) -> None:
        """Let the fast path replay this answer, if it is one it may: what the normal path does
        besides answering (count it, record the pull and the audit entry, note the access key's use)
        is done again on each replay. A replay lasts at most `access_cache_seconds` (what another
        node's change takes to reach the access caches here) and never past the token's expiry; and
        within that time of a change on this node, no longer than the access caches of the worker
        that answered may still hold what was true before it."""
        info, principal = request.registry, request.principal
        if ((request.route, request.method) not in REPLAYABLE or response.status != 200
                or not isinstance(response.body, bytes) or request.unread or info is None or info.cache is not None):
            return
        seconds = self.config.access_cache_seconds
        if principal.token_expires_at is not None:
            seconds = min(seconds, principal.token_expires_at - time.time())
        assert self.service is not None and self.gate is not None
        route, method, name = request.route, request.method, request.params["name"]
        digest = response.headers.get("Docker-Content-Digest", "")
        sent = 0 if method == "HEAD" else len(response.body)
        pulls, access, gate, key_id = self.service.catalog.pulls, self.service.access, self.gate, principal.key_id
        actor = ACTOR.get()  # the replay runs in the connection's reader, not in this request's task

        def replay(elapsed: float) -> None:
            if key_id is not None:
                access.key_used(key_id)
            if route == "manifest" and method == "GET":
                reset = ACTOR.set(actor)  # the artifact.pulled event names who pulled
                try:
                    pulls.record(name, digest)
                finally:
                    ACTOR.reset(reset)
            gate.audit(request, route, response)
            metrics.observe_request(route, method, 200, elapsed, 0, sent, fast=True)

        capture.offer(seconds, replay, self.config.access_cache_seconds)

    @staticmethod
    async def respond(request: Request, response: Response, send: Send) -> None:
        try:
            await response.send(send, head_only=request.method == "HEAD")
        except OSError:
            log.info("client went away during %s %s", request.method, request.path)

    async def dispatch(self, request: Request) -> Response:
        by_method, params = self.routes.match(request.path)
        if not by_method:
            raise RegistryError("UNSUPPORTED", f"no endpoint at {request.path[:200]}", status=404)
        chosen = by_method.get(request.method)
        if chosen is None:
            allowed = ", ".join(sorted(by_method))
            raise RegistryError("UNSUPPORTED", f"{request.method} is not allowed here", headers={"Allow": allowed})
        request.route = chosen.name
        if "name" in params:
            validate_name(params["name"])
        request.params = params
        assert self.gate is not None
        request.principal = await self.gate.check(request, chosen)
        ACTOR.set(request.principal.user or "anonymous")  # for the events this request's changes write
        if chosen.name in metrics.UPLOAD_ROUTES:
            with metrics.UPLOADS.track_inprogress():
                response = await chosen.handler(request)
        else:
            response = await chosen.handler(request)
        self.gate.audit(request, chosen.name, response)
        return response


__all__ = ["API_VERSION", "App"]
