"""Two ncr-trio nodes on one PostgreSQL and one bucket: the upload lease replaces the file lock.

Node A streams a PATCH and holds the session's lease; node B is refused (429 + Retry-After) meanwhile.
A is killed (-9) in the middle of its PATCH: B then answers the acknowledged Range, takes the session
over once A's lease has expired, and the push completes with the right digest and no multipart upload
left. (The three-node version behind a load balancer is tests/test_cluster.py's.)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import random_bytes
from tests.support.postgres import PostgresServer
from tests.support.postgres import postgres_server as _postgres_server
from tests.support.s3 import S3Server
from tests.support.server import Server

MiB = 1 << 20
LEASE_SECONDS = 3


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with _postgres_server() as server:
        yield server


def test_lease_moves_to_another_node_when_the_holder_dies(postgres_server: PostgresServer, versitygw: S3Server,
                                                           tmp_path: Path) -> None:
    data = random_bytes(12 * MiB, "lease")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    acknowledged = 7 * MiB
    with postgres_server.database("ncr_s3_lease") as url, versitygw.bucket() as bucket:
        env = {**versitygw.env(bucket), "NCR_DATABASE_URL": url, "NCR_UPLOAD_LEASE_SECONDS": str(LEASE_SECONDS)}
        a = Server(data=tmp_path / "a", env=env).start()
        b = Server(data=tmp_path / "b", env=env, registries=()).start()
        try:
            auth = a.auth(actions="pull,push")
            with httpx.Client(base_url=a.url, auth=auth, timeout=60) as on_a, \
                    httpx.Client(base_url=b.url, auth=b.auth(actions="pull,push"), timeout=60) as on_b:
                r = on_a.post("/v2/repo/lease/blobs/uploads/")
                assert r.status_code == 202, r.text
                path = r.headers["Location"]
                r = on_a.patch(path, content=data[:acknowledged], headers={"Content-Range": f"0-{acknowledged - 1}"})
                assert r.status_code == 202, r.text

                release = threading.Event()

                def slow_body() -> Iterator[bytes]:
                    yield data[acknowledged:acknowledged + MiB]
                    release.wait(60)  # A holds the lease while its body stalls
                    yield data[acknowledged + MiB:]

                def stalled_patch() -> None:
                    try:
                        on_a.patch(path, content=slow_body(),
                                   headers={"Content-Range": f"{acknowledged}-{len(data) - 1}"})
                    except httpx.HTTPError:
                        pass  # A is killed under it

                writer = threading.Thread(target=stalled_patch)
                writer.start()
                # B is refused while A writes: its (deliberately misplaced) chunk never gets to the range check.
                deadline = time.monotonic() + 30
                while True:
                    r = on_b.patch(path, content=b"x", headers={"Content-Range": "0-0"})
                    if r.status_code == 429:
                        assert r.headers["Retry-After"]
                        break
                    assert r.status_code == 416, r.text  # A has not taken the lease yet
                    assert time.monotonic() < deadline, "A never took the lease"
                    time.sleep(0.05)

                a.kill()
                release.set()
                writer.join(30)

                r = on_b.get(path)
                assert r.status_code == 204 and r.headers["Range"] == f"0-{acknowledged - 1}"
                deadline = time.monotonic() + LEASE_SECONDS * 10
                while True:  # A's lease outlives A for at most LEASE_SECONDS
                    r = on_b.patch(path, content=data[acknowledged:],
                                   headers={"Content-Range": f"{acknowledged}-{len(data) - 1}"})
                    if r.status_code != 429:
                        break
                    assert time.monotonic() < deadline, "the dead node's lease never expired"
                    time.sleep(0.2)
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
                r = on_b.put(f"{location}{'&' if '?' in location else '?'}digest={digest}")
                assert r.status_code == 201, r.text
                assert on_b.get(f"/v2/repo/lease/blobs/{digest}", follow_redirects=True).content == data
            assert versitygw.multipart_uploads(bucket) == []
        finally:
            a.stop()
            b.stop()


def test_chunked_push_round_robin_across_nodes(postgres_server: PostgresServer, versitygw: S3Server,
                                               tmp_path: Path) -> None:
    """POST on one node, each PATCH (1 B, 1 MiB, exactly 5 MiB, 17 MiB, ...) on the next, PUT on the other:
    each request resumes from the upload row alone; the digest is right and no multipart upload is left."""
    sizes = [1, MiB, 5 * MiB, 17 * MiB, 1, 5 * MiB, 17 * MiB, MiB]
    data = random_bytes(sum(sizes), "round-robin")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with postgres_server.database("ncr_s3_round_robin") as url, versitygw.bucket() as bucket:
        env = {**versitygw.env(bucket), "NCR_DATABASE_URL": url}
        nodes = [Server(data=tmp_path / "a", env=env).start()]
        try:
            nodes.append(Server(data=tmp_path / "b", env=env, registries=()).start())
            http = [httpx.Client(base_url=n.url, auth=n.auth(actions="pull,push"), timeout=120) for n in nodes]
            r = http[0].post("/v2/repo/rr/blobs/uploads/")
            assert r.status_code == 202, r.text
            location, pos = r.headers["Location"], 0
            for i, n in enumerate(sizes):
                r = http[(i + 1) % 2].patch(location, content=data[pos:pos + n],
                                            headers={"Content-Range": f"{pos}-{pos + n - 1}"})
                assert r.status_code == 202, r.text
                pos += n
                assert r.headers["Range"] == f"0-{pos - 1}"
                location = r.headers["Location"]
            r = http[len(sizes) % 2].put(f"{location}{'&' if '?' in location else '?'}digest={digest}")
            assert r.status_code == 201, r.text
            for client in http:
                assert client.get(f"/v2/repo/rr/blobs/{digest}", follow_redirects=True).content == data
                client.close()
            assert versitygw.multipart_uploads(bucket) == []
            assert list(versitygw.driver(bucket).list("uploads/")) == []
        finally:
            for node in nodes:
                node.stop()
