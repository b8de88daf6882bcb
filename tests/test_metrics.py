"""`/metrics`, `/healthz` and `/readyz` on real servers: the Prometheus text format as prometheus-client
parses it, counters that move with a push and a pull, the sums of two worker processes (one of them
killed on the way), who may read the metrics, and readiness following a real PostgreSQL that stops
and comes back. In this process: the metered storage driver and database forward every member of
their protocols and time each call."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from ncr_trio.meta.db import Database, SQLiteDatabase
from ncr_trio.meta.metered import MeteredDatabase
from ncr_trio.storage import FilesystemDriver, StorageDriver
from ncr_trio.storage.metered import MeteredDriver
from tests.support.metrics import Samples, scrape
from tests.support.oci import OCI_MANIFEST, image, push_image
from tests.support.postgres import postgres_server
from tests.support.server import Server

REQUESTS = "ncr_http_requests_total"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """`check()`'s first true answer, asked again every tenth of a second until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker, GC every second (so that a scheduled job runs while the tests look)."""
    srv = Server(data=tmp_path_factory.mktemp("metrics") / "data", env={"NCR_GC_INTERVAL_SECONDS": "1"}).start()
    yield srv
    srv.stop()


def test_counters_move_with_a_push_and_a_pull(metered: Server) -> None:
    img = image("metrics", layer_sizes=[2_000, 3_000_000])
    sizes = sum(len(b) for b in img.blobs.values())
    before = scrape(metered.url)
    with metered.client() as client:
        push_image(client, "repo/metrics", img, "v1")
        r = client.get("/v2/repo/metrics/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        for d, data in img.blobs.items():
            r = client.get(f"/v2/repo/metrics/blobs/{d}")
            assert r.status_code == 200 and r.content == data
    after = scrape(metered.url)

    def moved(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    n = len(img.blobs)
    assert moved(REQUESTS, route="upload.start", method="POST", status="201") == n
    assert moved(REQUESTS, route="manifest.put", method="PUT", status="201") == 1
    assert moved(REQUESTS, route="manifest", method="GET", status="200") == 1
    assert moved(REQUESTS, route="blob", method="GET", status="200") == n
    assert moved("ncr_http_request_duration_seconds_count", route="blob", method="GET") >= n
    assert moved("ncr_http_request_duration_seconds_bucket", route="blob", method="GET", le="+Inf") >= n
    # Bodies, counted as they pass: the blobs in, the manifest in, the blobs out (sendfile spans included).
    assert moved("ncr_http_received_bytes_total", route="upload.start") == sizes
    assert moved("ncr_http_received_bytes_total", route="manifest.put") == len(img.manifest)
    assert moved("ncr_http_sent_bytes_total", route="blob") == sizes
    assert moved("ncr_token_requests_total", outcome="issued") >= 1
    assert after.get("ncr_uploads_in_progress") == 0
    # The database and the storage under it: every kind of call the push and the pull made.
    assert moved("ncr_db_operation_seconds_count", operation="read") > 0
    assert moved("ncr_db_operation_seconds_count", operation="write") > 0
    for op in ("open_upload", "publish", "publish.durable", "stat"):
        assert moved("ncr_storage_operation_seconds_count", operation=op) >= n, op
    # Labels are the route table's names: no raw path (with its digest or repository) became a label.
    assert not any("/" in v for _, labels in after.values for _, v in labels if _ == "route")


def test_a_refused_token_is_counted(metered: Server) -> None:
    before = scrape(metered.url).get("ncr_token_requests_total", outcome="refused")
    r = httpx.get(f"{metered.url}/auth/token", params={"service": "ncr-trio"}, auth=("admin", "wrong-password"))
    assert r.status_code == 401
    assert scrape(metered.url).get("ncr_token_requests_total", outcome="refused") == before + 1


def test_made_up_methods_share_one_label(metered: Server) -> None:
    """Any token is an HTTP method: the label (and the process's cache of labelled series) stays bounded."""
    before = scrape(metered.url)
    for method in ("BREW", "WHEN", "BREW"):
        assert httpx.request(method, f"{metered.url}/healthz").status_code == 405
    after = scrape(metered.url)
    wanted = {"route": "none", "method": "other", "status": "405"}
    assert after.get(REQUESTS, **wanted) - before.get(REQUESTS, **wanted) == 3
    assert not any(v in ("BREW", "WHEN") for _, labels in after.values for _, v in labels)


def test_scheduled_jobs_are_counted_and_timed(metered: Server) -> None:
    samples: Samples = wait_for("a GC run counted", lambda: (s := scrape(metered.url)).get(
        "ncr_jobs_total", job="gc", outcome="ok") >= 1 and s)
    assert samples.get("ncr_job_duration_seconds_count", job="gc") >= 1
    assert samples.get("ncr_jobs_total", job="gc", outcome="failed") == 0


def test_health_endpoints_are_open(metered: Server) -> None:
    r = httpx.get(f"{metered.url}/healthz")
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    r = httpx.get(f"{metered.url}/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}
    assert r.headers["cache-control"] == "no-store"
    assert httpx.head(f"{metered.url}/readyz").status_code == 200


def test_metrics_outside_the_allowed_networks_need_an_administrator(tmp_path: Path) -> None:
    """Loopback left out of metrics_allowed_networks: the test's client is just anyone."""
    srv = Server(data=tmp_path / "data", env={"NCR_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,fd00::/8"}).start()
    try:
        r = httpx.get(f"{srv.url}/metrics")
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers
        assert "ncr_http" not in r.text
        user = srv.new_user("watcher", {"repo": "project-admin"})
        r = httpx.get(f"{srv.url}/metrics", auth=(user["id"], user["secret"]))
        assert r.status_code == 403, r.text
        r = httpx.get(f"{srv.url}/metrics", auth=("admin", "wrong-password"))
        assert r.status_code == 401
        scrape(srv.url, auth=srv.admin)  # the admin's password
        key = srv.api().doc("api.key.create", {"description": "prometheus"}, user="admin")
        samples = scrape(srv.url, auth=(key["id"], key["secret"]))  # the admin's access key
        assert samples.get(REQUESTS, route="metrics", method="GET", status="401") >= 2
        # What reveals nothing stays open.
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
        assert httpx.get(f"{srv.url}/readyz").status_code == 200
    finally:
        srv.stop()


def _worker_files(metrics_dir: Path, kind: str) -> set[int]:
    """The pids of the workers that have `kind` files (counter, gauge_livesum, histogram) in the directory."""
    return {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob(f"{kind}_*.db")}


def test_two_workers_add_up(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")  # emptied at start
    srv = Server(data=tmp_path / "data", extra_args=["--workers", "2"],
                 env={"NCR_METRICS_DIR": str(metrics_dir)}).start()
    try:
        # Each request on a connection of its own: the kernel spreads them over the two workers' sockets.
        n = 40
        for _ in range(n):
            assert httpx.get(f"{srv.url}/healthz").status_code == 200
        assert len(_worker_files(metrics_dir, "counter")) == 2, "both workers answered some"
        for _ in range(4):  # whichever worker answers the scrape, it sums both
            assert scrape(srv.url).get(REQUESTS, route="healthz", method="GET", status="200") == n

        # A worker killed: the supervisor starts another and marks the dead one dead (its live gauge
        # goes); what it counted still counts.
        victim = min(_worker_files(metrics_dir, "counter"))
        os.kill(victim, signal.SIGKILL)
        wait_for("the dead worker's live gauge removed",
                 lambda: victim not in _worker_files(metrics_dir, "gauge_livesum"))
        wait_for("a new worker up", lambda: len(_worker_files(metrics_dir, "gauge_livesum")) == 2)
        for _ in range(4):
            samples = scrape(srv.url)
            assert samples.get(REQUESTS, route="healthz", method="GET", status="200") == n
            assert samples.get("ncr_uploads_in_progress") == 0
    finally:
        srv.stop()
    assert metrics_dir.is_dir()  # a directory named in the settings is the operator's: kept


@pytest.mark.postgres
def test_readyz_follows_postgresql(tmp_path: Path) -> None:
    with postgres_server() as pg, pg.database("readyz") as url:
        srv = Server(data=tmp_path / "data", env={"NCR_DATABASE_URL": url, "NCR_READYZ_TIMEOUT_SECONDS": "3"}).start()
        try:
            def readyz() -> httpx.Response:
                return httpx.get(f"{srv.url}/readyz", timeout=30)

            assert readyz().status_code == 200
            pg.stop()
            down = wait_for("/readyz 503", lambda: (r := readyz()).status_code == 503 and r)
            body = json.loads(down.text)
            assert body["status"] == "unready"
            assert body["checks"]["database"] in ("unreachable", "timeout")
            assert body["checks"]["storage"] == "ok"
            assert "127.0.0.1" not in down.text and "postgres" not in down.text.lower()  # names nothing
            assert httpx.get(f"{srv.url}/healthz").status_code == 200
            assert scrape(srv.url).get(REQUESTS, route="readyz", method="GET", status="503") >= 1

            pg.start_again()
            wait_for("/readyz 200 again", lambda: readyz().status_code == 200)
            assert httpx.get(f"{srv.url}/healthz").status_code == 200
        finally:
            srv.stop()


# -- the metered wrappers, in this process --------------------------------------------------------------


def _protocol_members(protocol: type) -> set[str]:
    return {n for n in [*vars(protocol), *protocol.__annotations__] if not n.startswith("_")}


def _count(name: str, operation: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count", {"operation": operation}) or 0.0


def test_the_metered_driver_forwards_every_member_and_times_each_call(tmp_path: Path) -> None:
    inner = FilesystemDriver(tmp_path / "store", direct_io=False)
    driver: StorageDriver = MeteredDriver(inner)
    # Every member of the protocol is the wrapper's own (none left to __getattr__ by accident).
    assert _protocol_members(StorageDriver) <= set(vars(MeteredDriver)) | set(vars(driver))
    assert (driver.name, driver.local) == (inner.name, inner.local)
    assert driver.root == inner.root  # type: ignore[attr-defined]  # a driver's own extra, through __getattr__

    before = {op: _count("ncr_storage_operation_seconds", op) for op in (
        "open_upload", "publish", "publish.durable", "open_read", "stat", "modified", "writing", "publishing",
        "move", "delete")}
    sink = driver.open_upload("uploads/u1")
    try:
        assert sink.write([b"metered bytes"]) == 13
        sink.flush()
    finally:
        sink.close()
    assert not driver.writing("uploads/u1")
    driver.publish("uploads/u1", "blobs/x")()
    assert driver.publishing("blobs/x")
    reader = driver.open_read("blobs/x")
    assert reader is not None
    reader.close()
    assert driver.stat("blobs/x") == 13 and driver.modified("blobs/x") is not None
    assert driver.redirect_url("blobs/x") is None
    assert sorted(driver.list("blobs")) == ["blobs/x"]
    assert driver.move("blobs/x", "blobs/y") and driver.delete("blobs/y") and driver.stat("blobs/y") is None
    assert driver.write_stats() == inner.write_stats()
    for op, count in before.items():
        assert _count("ncr_storage_operation_seconds", op) > count, op


async def test_the_metered_database_times_every_unit_of_work(tmp_path: Path) -> None:
    inner = SQLiteDatabase(tmp_path / "meta.sqlite3")
    db: Database = MeteredDatabase(inner)
    try:
        assert _protocol_members(Database) <= set(vars(MeteredDatabase)) | set(vars(db))
        assert db.dialect is inner.dialect
        before = {op: _count("ncr_db_operation_seconds", op) for op in ("read", "write", "write_sync")}
        await db.write(lambda tx: tx.execute("CREATE TABLE t (v INTEGER)"))
        db.write_sync(lambda tx: tx.execute("INSERT INTO t VALUES (1)"))
        assert await db.read(lambda tx: tx.one("SELECT v FROM t")) == (1,)
        assert db.path == inner.path  # type: ignore[attr-defined]  # the engine's own, through __getattr__
        for op, count in before.items():
            assert _count("ncr_db_operation_seconds", op) == count + 1, op
    finally:
        db.close()
