"""Three ncr-trio nodes on one PostgreSQL database and one S3 bucket (versitygw), behind HAProxy with the
shipped deploy/haproxy.cfg (tests/support/cluster.py). Each request of an upload goes to another node (the
test round-robins over the nodes itself, or HAProxy does): any node carries any request. A node
killed mid-PATCH loses nothing acknowledged; two nodes pushing the same content store it once while
a third collects garbage with no grace period; a scheduled job runs once per tick whatever the
number of nodes; real clients push and pull through the load balancer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.support.api import wait_for
from tests.support.auth import BearerAuth
from tests.support.clients import Clients, clients_watching, find_tool, layout_blobs, make_image, write_layout
from tests.support.cluster import HAPROXY_CFG, Cluster, cluster, haproxy_binary
from tests.support.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, canonical, descriptor, digest
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.s3 import S3Server
from tests.support.server import Server

pytestmark = pytest.mark.postgres

MiB = 1 << 20
REPO = "a/cluster"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed: run `make tools`")
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def three(pg: PostgresServer, versitygw: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three nodes on one bucket for the tests that leave every node up. GC runs only when asked, with no
    grace period."""
    env = {"NCR_GC_GRACE_SECONDS": "0", "NCR_TRUSTED_PROXIES": "127.0.0.1"}  # HAProxy connects from 127.0.0.1
    with pg.database("cluster") as url, versitygw.bucket() as bucket, cluster(
            tmp_path_factory.mktemp("cluster"), url, env=env, s3=(versitygw, bucket)) as c:
        yield c


def test_docs_show_the_tested_haproxy_config() -> None:
    """docs/cluster.md shows deploy/haproxy.cfg whole, the file these tests run."""
    doc = (HAPROXY_CFG.parents[1] / "docs" / "cluster.md").read_text()
    assert "```haproxy\n" + HAPROXY_CFG.read_text() + "```" in doc


def _auth(c: Cluster) -> BearerAuth:
    return c.via_lb().auth()


def _location(r: httpx.Response) -> str:
    """An upload's path (and query) from a Location header, to send to any node."""
    assert r.status_code == 202, r.text
    loc = urlsplit(r.headers["location"])
    return loc.path + (f"?{loc.query}" if loc.query else "")


def _chunked_push(http: httpx.Client, nodes: Iterator[Server], repo: str, data: bytes, chunk: int) -> str:
    """POST, one PATCH per `chunk` bytes and the closing PUT, each to the next node; answers the digest."""
    path = _location(http.post(f"{next(nodes).url}/v2/{repo}/blobs/uploads/"))
    for start in range(0, len(data), chunk):
        part = data[start:start + chunk]
        end = start + len(part) - 1
        r = http.patch(f"{next(nodes).url}{path}", content=part,
                       headers={"Content-Range": f"{start}-{end}", "Content-Type": "application/octet-stream"})
        path = _location(r)
        assert r.headers["range"] == f"0-{end}"
    d = digest(data)
    r = http.put(f"{next(nodes).url}{path}{'&' if '?' in path else '?'}digest={d}")
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == d
    return d


@pytest.mark.parametrize(("chunk", "size"), [(1, 40), (MiB, 3 * MiB + 17), (5 * MiB, 12 * MiB), (17 * MiB, 40 * MiB)],
                         ids=["1B", "1MiB", "5MiB", "17MiB"])
def test_chunked_push_round_robin(three: Cluster, chunk: int, size: int) -> None:
    data = os.urandom(size)
    with httpx.Client(auth=_auth(three), timeout=60) as http:
        d = _chunked_push(http, three.round_robin(), REPO, data, chunk)
        for node in three.nodes:  # every node serves it, and so does the load balancer
            assert http.head(f"{node.url}/v2/{REPO}/blobs/{d}").headers["content-length"] == str(size)
        r = http.get(f"{three.lb.url}/v2/{REPO}/blobs/{d}", follow_redirects=True)
        assert [h.status_code for h in r.history] == [307]  # the bytes come from the object store
        assert r.status_code == 200 and r.content == data
    assert three.leftover_uploads() == []


def test_monolithic_3gib_push_through_haproxy(three: Cluster) -> None:
    """POST then one PUT of 3 GiB through HAProxy (round-robin: two nodes), streamed, then pulled back."""
    block, blocks = os.urandom(MiB), 3 * 1024
    expected = hashlib.sha256()
    for i in range(blocks):
        expected.update(i.to_bytes(8, "big") + block[8:])
    d = f"sha256:{expected.hexdigest()}"

    def body() -> Iterator[bytes]:
        for i in range(blocks):
            yield i.to_bytes(8, "big") + block[8:]

    with httpx.Client(auth=_auth(three), timeout=300) as http:
        path = _location(http.post(f"{three.lb.url}/v2/{REPO}/blobs/uploads/"))
        r = http.put(f"{three.lb.url}{path}{'&' if '?' in path else '?'}digest={d}", content=body(),
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(blocks * MiB)})
        assert r.status_code == 201, r.text
        pulled = hashlib.sha256()
        with http.stream("GET", f"{three.lb.url}/v2/{REPO}/blobs/{d}", follow_redirects=True) as r:
            assert r.status_code == 200
            for piece in r.iter_bytes(4 * MiB):
                pulled.update(piece)
        assert f"sha256:{pulled.hexdigest()}" == d
        # Freed again (no manifest references it): 3 GiB is much for a test machine's disk.
        assert http.delete(f"{three.lb.url}/v2/{REPO}/blobs/{d}").status_code == 202
    assert three.leftover_uploads() == []


# -- the same content from two nodes at once, with GC looping on the third ---------------------------
def _image(seed: int) -> tuple[dict[str, bytes], bytes]:
    config = canonical({"architecture": "amd64", "os": "linux", "seed": seed})
    layer = os.urandom(64 * 1024 + seed)
    manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                          "layers": [descriptor(OCI_LAYER, layer)]})
    return {digest(config): config, digest(layer): layer}, manifest


def _push_image(http: httpx.Client, node: Server, repo: str, tag: str, blobs: dict[str, bytes],
                manifest: bytes) -> bool:
    """Push the blobs (one POST each) and the manifest to `node`, as a client would, again while the
    manifest names a blob the collector took first (MANIFEST_BLOB_UNKNOWN: with no grace period, an
    unreferenced blob may go at once). Answers whether the manifest was acknowledged; never a 5xx."""
    for _ in range(20):
        for d, data in blobs.items():
            r = http.post(f"{node.url}/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data,
                          headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        r = http.put(f"{node.url}/v2/{repo}/manifests/{tag}", content=manifest,
                     headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code < 500, r.text
        if r.status_code == 201:
            return True
        assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
    return False


def test_concurrent_pushes_of_the_same_content_while_gc_loops(three: Cluster) -> None:
    node1, node2, node3 = three.nodes
    stop = threading.Event()
    gc_runs = 0

    def collect() -> None:
        nonlocal gc_runs
        while not stop.is_set():
            r = node3.call("POST", "/gc", json={})
            assert r.status_code == 200, r.text
            gc_runs += 1

    pushed: list[tuple[str, str, dict[str, bytes], bytes]] = []
    with ThreadPoolExecutor(3) as pool, httpx.Client(auth=_auth(three), timeout=60) as http:
        collector = pool.submit(collect)
        try:
            for seed in range(12):
                blobs, manifest = _image(seed)
                tag = f"v{seed}"
                both = [pool.submit(_push_image, http, node, REPO, tag, blobs, manifest) for node in (node1, node2)]
                assert all(f.result() for f in both)
                pushed.append((REPO, tag, blobs, manifest))
        finally:
            stop.set()
            collector.result()
        assert gc_runs > 0
        node3.call("POST", "/gc", json={}).raise_for_status()  # and once more after the last push
        for repo, tag, blobs, manifest in pushed:  # every acknowledged push is whole
            r = http.get(f"{three.lb.url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and r.content == manifest
            for d, data in blobs.items():
                r = http.get(f"{three.lb.url}/v2/{repo}/blobs/{d}", follow_redirects=True)
                assert r.status_code == 200 and r.content == data, d
    blob_digests = [d for _, _, blobs, _ in pushed for d in blobs]
    manifest_digests = [digest(m) for *_, m in pushed]
    with psycopg.connect(three.database_url) as conn:  # one row each (primary keys: a 409 would have shown)
        rows = conn.execute("SELECT digest, count(*) FROM blobs WHERE digest = ANY(%s) GROUP BY digest",
                            (blob_digests,)).fetchall()
        assert sorted(rows) == sorted((d, 1) for d in blob_digests)
        rows = conn.execute("SELECT m.digest, count(*) FROM manifests m JOIN repositories r ON r.id = m.repo_id "
                            "WHERE r.name = %s AND m.digest = ANY(%s) GROUP BY m.digest",
                            (REPO, manifest_digests)).fetchall()
        assert sorted(rows) == sorted((d, 1) for d in manifest_digests)
        tags = conn.execute("SELECT t.name, count(*) FROM tags t JOIN repositories r ON r.id = t.repo_id "
                            "WHERE r.name = %s GROUP BY t.name", (REPO,)).fetchall()
        assert {t: n for t, n in tags if t.startswith("v")} == {tag: 1 for _, tag, _, _ in pushed}
    assert three.leftover_uploads() == []


# -- real clients through the load balancer --------------------------------------------------------
@pytest.mark.clients
@pytest.mark.skipif(find_tool("skopeo") is None or find_tool("crane") is None, reason="not installed: skopeo, crane")
def test_skopeo_and_crane_push_and_pull_through_haproxy(three: Cluster, tmp_path: Path) -> None:
    """skopeo pushes an image through HAProxy (its token from whichever node, its blob uploads spread
    over the nodes), crane reads it back, skopeo copies it out whole; every node logged no error."""
    lb = three.via_lb()
    starts = [len(node.log()) for node in three.nodes]
    for c in clients_watching(lb, tmp_path):
        _clients_round_trip(c, lb.host)
    for node, start in zip(three.nodes, starts, strict=True):
        logged = node.log()[start:]
        assert " ERROR " not in logged and "Traceback" not in logged, logged[-5000:]


def _clients_round_trip(c: Clients, host: str, repo: str = "a/clients") -> None:
    image = make_image("cluster", n_layers=3, extra_file_bytes=3 * MiB)
    write_layout(c.path("src"), "v1", [image])
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('src')}:v1", f"docker://{host}/{repo}:v1")
    assert c.run("crane", "digest", "--insecure", f"{host}/{repo}:v1").stdout.strip() == image.digest
    assert c.run("crane", "manifest", "--insecure", f"{host}/{repo}:v1").stdout.encode() == image.manifest
    c.run("crane", "copy", "--insecure", f"{host}/{repo}:v1", f"{host}/{repo}:copied")
    c.run("skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/{repo}:copied", f"oci:{c.path('out')}:v1")
    assert layout_blobs(c.path("out")) == layout_blobs(c.path("src"))


# -- the client's address behind the balancer -----------------------------------------------------
@contextlib.contextmanager
def _from(c: Cluster, address: str, repo: str) -> Iterator[httpx.Client]:
    """A client connecting from `address` (another loopback address), logged in from there too."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address), base_url=c.lb.url, timeout=30) as http:
        r = http.get("/auth/token", params={"service": "ncr-trio", "scope": f"repository:{repo}:pull,push"},
                     auth=c.nodes[0].admin)
        r.raise_for_status()
        http.headers["Authorization"] = f"Bearer {r.json()['token']}"
        yield http


def test_a_registry_allowlist_sees_the_client_behind_haproxy(three: Cluster) -> None:
    """With `trusted_proxies` naming the balancer, a registry's CIDR allowlist applies to the client's own
    address (HAProxy's X-Forwarded-For); a client cannot pass for another address by sending the header."""
    three.via_lb().api().call("api.registry.create", {"name": "fenced", "allowed_cidrs": ["127.0.0.2/32"]})
    repo, data = "fenced/app", os.urandom(1000)
    with _from(three, "127.0.0.2", repo) as inside:
        d = digest(data)
        r = inside.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data)
        assert r.status_code == 201, r.text
        assert inside.head(f"/v2/{repo}/blobs/{d}").status_code == 200
    with _from(three, "127.0.0.3", repo) as outside:
        assert outside.head(f"/v2/{repo}/blobs/{d}").status_code in (401, 403, 404)
        spoofed = outside.head(f"/v2/{repo}/blobs/{d}", headers={"X-Forwarded-For": "127.0.0.2"})
        assert spoofed.status_code in (401, 403, 404)


# -- a scheduled job, once per tick -----------------------------------------------------------------
def test_a_scheduled_job_runs_once_per_tick_with_three_nodes_up(three: Cluster) -> None:
    """Cleanup of one registry every minute: each node's scheduler looks for due jobs at least every
    10 s; once the first tick's run is in the history, and every node has looked again since, the
    history holds exactly one scheduled run per minute."""
    api = three.via_lb().api()
    three.via_lb().ensure_registries("tick")
    api.call("api.cleanup.policy.create", {"rule": "retain_pushed", "n": 10}, registry="tick")
    api.call("api.cleanup.schedule.set", {"schedule": "* * * * *"}, registry="tick")

    def scheduled_runs() -> list[dict[str, str]]:
        return [r for r in api.doc("api.cleanup.runs", registry="tick")["runs"] if r["triggered_by"] == "schedule"]

    wait_for(scheduled_runs, bool, timeout=200, every=1)
    time.sleep(12)  # every node's scheduler has looked for due jobs again (at least every 10 s)
    runs = scheduled_runs()
    api.call("api.cleanup.schedule.set", {"schedule": "None"}, registry="tick")
    minutes = [datetime.fromisoformat(r["started_at"]).replace(second=0, microsecond=0) for r in runs]
    assert len(set(minutes)) == len(minutes), runs
    assert all(r["status"] == "succeeded" for r in runs), runs


# -- the health check ----------------------------------------------------------------------------------
def test_haproxy_takes_out_nodes_that_cannot_reach_the_database(tmp_path: Path) -> None:
    """The shipped health check is /readyz: nodes that lose PostgreSQL stay alive (their /healthz is 200)
    but HAProxy stops sending them requests (it answers 503 itself) until the database is back."""
    with postgres_server() as own, own.database("health") as url, cluster(
            tmp_path, url, n=2, env={"NCR_READYZ_TIMEOUT_SECONDS": "2"}) as c:
        def through_lb() -> int:
            return httpx.get(f"{c.lb.url}/healthz", timeout=30).status_code

        assert through_lb() == 200
        own.stop()
        wait_for(through_lb, lambda status: status == 503)
        assert [httpx.get(f"{n.url}/healthz").status_code for n in c.nodes] == [200, 200]
        own.start_again()
        wait_for(through_lb, lambda status: status == 200)


# -- a node killed mid-PATCH --------------------------------------------------------------------------
def test_a_node_killed_mid_patch_loses_nothing_acknowledged(pg: PostgresServer, versitygw: S3Server,
                                                            tmp_path: Path) -> None:
    """The acknowledged first MiB survives a kill -9 of the node that was receiving the second PATCH; the
    client's next request, through HAProxy, reaches a live node and, once the dead node's lease on the
    upload has run out (429 until then; 5 s here), learns the acknowledged Range."""
    data = os.urandom(9 * MiB)
    with pg.database("killed") as url, versitygw.bucket() as bucket, cluster(
            tmp_path, url, env={"NCR_UPLOAD_LEASE_SECONDS": "5"}, s3=(versitygw, bucket)) as c:
        node1, node2, node3 = c.nodes
        auth = _auth(c)
        with httpx.Client(auth=auth, timeout=60) as http:
            path = _location(http.post(f"{node1.url}/v2/{REPO}/blobs/uploads/"))
            r = http.patch(f"{node2.url}{path}", content=data[:MiB],
                           headers={"Content-Range": f"0-{MiB - 1}", "Content-Type": "application/octet-stream"})
            path = _location(r)

            # A slow PATCH of the rest to node 3: its head and 2 MiB of body, then node 3 dies.
            token = auth.token(f"repository:{REPO}:pull,push,delete")
            with socket.create_connection(("127.0.0.1", node3.port)) as s:
                s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: {node3.host}\r\nAuthorization: Bearer {token}\r\n"
                           f"Content-Type: application/octet-stream\r\nContent-Range: {MiB}-{len(data) - 1}\r\n"
                           f"Content-Length: {len(data) - MiB}\r\n\r\n").encode())
                s.sendall(data[MiB:3 * MiB])
                node3.kill()

            status = _until_not_busy(lambda: http.get(f"{c.lb.url}{path}"))
            assert status.status_code == 204, status.text
            assert status.headers["range"] == f"0-{MiB - 1}"
            r = _until_not_busy(lambda: http.patch(
                f"{c.lb.url}{path}", content=data[MiB:],
                headers={"Content-Range": f"{MiB}-{len(data) - 1}", "Content-Type": "application/octet-stream"}))
            path = _location(r)
            d = digest(data)
            r = http.put(f"{c.lb.url}{path}{'&' if '?' in path else '?'}digest={d}")
            assert r.status_code == 201, r.text
            r = http.get(f"{c.lb.url}/v2/{REPO}/blobs/{d}", follow_redirects=True)
            assert r.status_code == 200 and r.content == data
        assert c.leftover_uploads() == []


def _until_not_busy(send: object, timeout: float = 60) -> httpx.Response:
    """Send until the answer is not 429 (the dead node's hold on the upload has to lapse first)."""
    assert callable(send)
    deadline = time.monotonic() + timeout
    while True:
        r: httpx.Response = send()
        if r.status_code != 429 or time.monotonic() > deadline:
            return r
        time.sleep(float(r.headers.get("retry-after", "1")))
