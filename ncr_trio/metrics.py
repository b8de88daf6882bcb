"""The process's Prometheus metrics, and their exposition at `/metrics` (http/health.py).

Every metric is declared here, once, with labels whose values come from bounded sets: a route's
*name* from the route table (one per path template, never the raw path), an HTTP method from the
methods the API has (anything else is "other"), a status code, a job's kind (the scheduler's job
name up to its ":", never the registry it names), and operation names from the code.

Several worker processes (`workers` > 1): prometheus-client's multiprocess mode. The supervisor
(serve.py) gives the workers a directory in PROMETHEUS_MULTIPROC_DIR before it starts them (a
fresh private one per run, or `metrics_dir`, emptied at start); each worker's values live in
memory-mapped files there, named by its pid, and `/metrics` on any worker sums every file. A worker
that dies is marked dead (`process_dead`) so that its "live" gauges stop counting; its counters
keep counting, as counters must. One in-process worker uses the plain registry.

prometheus-client picks its value storage when it is first imported, from that environment
variable: a worker inherits it from the supervisor, so the metrics below, created at import, land
in the right place.

The hot path stays cheap: per request, `observe_request` costs one dict lookup for the labelled
children (cached here), two counter increments and one histogram observation.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# No `_created` series beside every counter and histogram: Prometheus reads none of them from the
# text format, and they would double what a scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Requests last from microseconds (a HEAD) to many minutes (a large push): the default buckets,
# stretched at the top.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 1800.0)
_OPERATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                      2.5, 5.0, 10.0, 30.0)
_JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)

REQUESTS = Counter("ncr_http_requests", "HTTP requests answered, by route (its name in the route table), "
                   "method and status (499: the client went away before the answer)",
                   ["route", "method", "status"])
REQUEST_SECONDS = Histogram("ncr_http_request_duration_seconds", "Time from a request's head to its answer's "
                            "last byte, by route and method", ["route", "method"], buckets=_REQUEST_BUCKETS)
BYTES_IN = Counter("ncr_http_received_bytes", "Request body bytes received, by route", ["route"])
BYTES_OUT = Counter("ncr_http_sent_bytes", "Response body bytes sent (file spans included), by route", ["route"])
FAST_ANSWERS = Counter("ncr_http_fast_path_answers", "Of the requests answered, those the fast path answered "
                       "with the app's earlier answer to the same request (http/fastpath.py), by route", ["route"])
UPLOADS = Gauge("ncr_uploads_in_progress", "Blob upload requests (POST, PATCH, PUT of an upload) being "
                "served now", multiprocess_mode="livesum")
TOKENS = Counter("ncr_token_requests", "Requests to the token endpoint, by outcome: issued (a token was "
                 "handed out) or refused (any error answer)", ["outcome"])
JOBS = Counter("ncr_jobs", "Background jobs run, by kind (gc, fsck, cleanup, replication, scan, upload-expiry) "
               "and outcome (ok, failed)", ["job", "outcome"])
JOB_SECONDS = Histogram("ncr_job_duration_seconds", "How long background jobs ran, by kind", ["job"],
                        buckets=_JOB_BUCKETS)
DB_SECONDS = Histogram("ncr_db_operation_seconds", "Metadata database units of work, by operation (read, write, "
                       "write_sync), waiting for a connection included", ["operation"], buckets=_OPERATION_BUCKETS)
STORAGE_SECONDS = Histogram("ncr_storage_operation_seconds", "Storage driver calls, by operation",
                            ["operation"], buckets=_OPERATION_BUCKETS)

_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})
UPLOAD_ROUTES = frozenset({"upload.start", "upload.patch", "upload.finish"})
_Children = tuple[Any, Any, Any, Any]  # requests counter, duration histogram, bytes in, bytes out
_children: dict[tuple[str, str, int], _Children] = {}
_fast_children: dict[str, Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float, received: int, sent: int,
                    fast: bool = False) -> None:
    """Count one answered request (`route`: its route's name, or "none" when no route matched; `fast`:
    the fast path replayed the app's answer, http/fastpath.py)."""
    if method not in _METHODS:  # any token is a method to HTTP: the cache below must stay bounded too
        method = "other"
    key = (route, method, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (REQUESTS.labels(route, method, str(status)),
                                     REQUEST_SECONDS.labels(route, method), BYTES_IN.labels(route),
                                     BYTES_OUT.labels(route))
    count, duration, bytes_in, bytes_out = children
    count.inc()
    duration.observe(seconds)
    if received:
        bytes_in.inc(received)
    if sent:
        bytes_out.inc(sent)
    if fast:
        fast_count = _fast_children.get(route)
        if fast_count is None:
            fast_count = _fast_children[route] = FAST_ANSWERS.labels(route)
        fast_count.inc()
    if route == "token":
        TOKENS.labels("issued" if status < 400 else "refused").inc()


class Tally:
    """An exchange's ASGI `receive` and `send`, counting the body bytes that pass through them."""

    __slots__ = ("_receive", "_send", "received", "sent")

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]],
                 send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._receive = receive
        self._send = send
        self.received = 0
        self.sent = 0

    async def receive(self) -> dict[str, Any]:
        message = await self._receive()
        body = message.get("body")
        if body:
            self.received += len(body)
        return message

    async def send(self, message: dict[str, Any]) -> None:
        body = message.get("body")
        if body:
            self.sent += len(body)
        elif "count" in message:  # a file span (http.response.zerocopysend)
            self.sent += int(message["count"])
        await self._send(message)


def job_kind(job: str) -> str:
    """A scheduled job's label: its name up to ":" ("cleanup:team" is "cleanup")."""
    return job.split(":", 1)[0]


@contextmanager
def timed_job(job: str) -> Iterator[Callable[[], None]]:
    """Time a background job and count it; call the yielded function when the job failed. A job
    cancelled mid-way (shutdown) is not counted."""
    kind = job_kind(job)
    failed = False

    def fail() -> None:
        nonlocal failed
        failed = True

    started = time.perf_counter()
    yield fail
    JOB_SECONDS.labels(kind).observe(time.perf_counter() - started)
    JOBS.labels(kind, "failed" if failed else "ok").inc()


# -- exposition and the multiprocess directory -------------------------------------------------------------


def exposition() -> bytes:
    """Every metric in the Prometheus text format: summed over every worker's files in multiprocess
    mode (blocking file reads: call it from a worker thread)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def prepare_multiprocess(metrics_dir: str) -> tuple[Path, bool]:
    """Set up the directory of the workers' metric files and name it in the environment they
    inherit: `metrics_dir`, emptied (files of a previous run would be summed with this one's), or a
    fresh private directory. Answers it and whether it is this run's own (to remove at exit)."""
    if metrics_dir:
        path = Path(metrics_dir)
        path.mkdir(parents=True, exist_ok=True)
        for stale in glob.glob(str(path / "*.db")):
            os.remove(stale)
        own = False
    else:
        path = Path(tempfile.mkdtemp(prefix="ncr-trio-metrics-"))
        own = True
    os.environ[MULTIPROC_ENV] = str(path)
    return path, own


def process_dead(pid: int) -> None:
    """A worker exited: its live gauges (uploads in progress) stop counting."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def remove_multiprocess(path: Path, own: bool) -> None:
    if own:
        shutil.rmtree(path, ignore_errors=True)


__all__ = ["BYTES_IN", "BYTES_OUT", "CONTENT_TYPE", "DB_SECONDS", "JOBS", "JOB_SECONDS", "MULTIPROC_ENV",
           "REQUESTS", "REQUEST_SECONDS", "STORAGE_SECONDS", "TOKENS", "UPLOADS", "UPLOAD_ROUTES", "Tally",
           "exposition", "job_kind", "observe_request", "prepare_multiprocess", "process_dead",
           "remove_multiprocess", "timed_job"]
