"""Operations endpoints: `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (ready to serve).

- `/metrics`: every metric of ncr_trio/metrics.py in the Prometheus text format, summed over the
  worker processes. The access gate's "metrics" action lets clients from `metrics_allowed_networks`
  (loopback by default) in as they are, and anyone else only as a system administrator.
- `/healthz`: 200 as long as the process answers; it asks nothing of the database or the storage
  (an orchestrator restarts a process that fails it, and restarting does not mend a database).
- `/readyz`: probes the database (`SELECT 1`) and the storage (a stat of a key) at once, each within
  `readyz_timeout_seconds`: 200 when both answer, else 503 naming what failed ("unreachable" or
  "timeout"). The body names no hosts, paths or errors (the route is open to anyone): those go to the
  log. Probes run in worker threads that a timeout abandons (a hung connect stays bounded to one
  thread per probe: the next probe waits for its limiter, and times out, instead of piling up).

Both health routes are open (they reveal nothing); their answers are never cached.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import trio

from ncr_trio import metrics
from ncr_trio.http.asgi import Request, Response, json_response
from ncr_trio.http.routes import Route, route
from ncr_trio.meta.db import Tx
from ncr_trio.registry import RegistryService

log = logging.getLogger("ncr_trio.health")

_NO_STORE = {"Cache-Control": "no-store"}
# A key no blob, upload or quarantined blob can have (keys.py): the storage answers "absent" if it answers.
PROBE_KEY = "readyz-probe"


def _ping(tx: Tx) -> object:
    return tx.one("SELECT 1")


class Health:
    def __init__(self, service: RegistryService) -> None:
        self.service = service
        self._exposition = trio.CapacityLimiter(1)  # one scrape reads the metric files at a time
        self._probes = {"database": trio.CapacityLimiter(1), "storage": trio.CapacityLimiter(1)}

    def routes(self) -> list[Route]:
        return [
            route("metrics", "GET", "/metrics", "metrics", self.metrics),
            route("healthz", "GET HEAD", "/healthz", None, self.healthz),
            route("readyz", "GET HEAD", "/readyz", None, self.readyz),
        ]

    async def metrics(self, request: Request) -> Response:
        body = await trio.to_thread.run_sync(metrics.exposition, limiter=self._exposition)
        return Response(200, {"Content-Type": metrics.CONTENT_TYPE, **_NO_STORE}, body)

    async def healthz(self, request: Request) -> Response:
        return json_response(200, b'{"status":"alive"}', _NO_STORE)

    async def readyz(self, request: Request) -> Response:
        db = self.service.meta.db
        storage = self.service.reg.storage
        probes: dict[str, Callable[[], object]] = {
            "database": lambda: db.write_sync(_ping),
            "storage": lambda: storage.stat(PROBE_KEY),
        }
        checks: dict[str, str] = {}

        async def probe(name: str, fn: Callable[[], object]) -> None:
            checks[name] = "timeout"
            with trio.move_on_after(self.service.config.readyz_timeout_seconds):
                try:
                    if name == "database" and db.dialect.name == "sqlite":
                        await db.read(_ping)  # inline: a local file (meta/db.py)
                    else:
                        await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._probes[name])
                    checks[name] = "ok"
                except Exception as e:
                    checks[name] = "unreachable"
                    log.warning("readyz: the %s is unreachable: %s", name, e)
            if checks[name] == "timeout":
                log.warning("readyz: the %s did not answer within %.1fs", name,
                            self.service.config.readyz_timeout_seconds)

        async with trio.open_nursery() as nursery:
            for name, fn in probes.items():
                nursery.start_soon(probe, name, fn)
        ready = all(v == "ok" for v in checks.values())
        body = json.dumps({"status": "ready" if ready else "unready", "checks": checks}, sort_keys=True).encode()
        return json_response(200 if ready else 503, body, _NO_STORE)


__all__ = ["Health"]
