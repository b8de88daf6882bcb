"""ncr-trio on S3 (versitygw): real clients push and pull; blob GETs are 307 redirects to the object store.

A counting TCP forwarder (tests/support/tcpcount.py) sits between the clients and the registry: it counts
the 307 answers, and the bytes the registry sent. Through the redirect the clients get every layer while
the registry sends far fewer bytes than the layers hold (the object store served them); with
`s3_redirect = false` there is no 307 and the layers' bytes come through the registry (200).
After every push no multipart upload is left in the bucket.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ncr_trio.storage.s3 import PART_BYTES
from tests.support.clients import Clients, clients_watching, make_image, random_bytes, sha256, write_layout
from tests.support.s3 import S3Server
from tests.support.server import Server
from tests.support.tcpcount import CountingProxy

MiB = 1 << 20
LAYER_BYTES = 6 * MiB


@dataclasses.dataclass
class S3Registry:
    server: Server  # as the clients see it: through the counting proxy
    proxy: CountingProxy
    s3: S3Server
    bucket: str


@pytest.fixture(params=[True, False], ids=["redirect", "no-redirect"])
def s3_registry(request: pytest.FixtureRequest, versitygw: S3Server, tmp_path: Path) -> Iterator[S3Registry]:
    with versitygw.bucket() as bucket:
        env = {**versitygw.env(bucket), "NCR_S3_REDIRECT": str(request.param).lower()}
        server = Server(data=tmp_path / "data", env=env).start()
        proxy = CountingProxy(server.port).start()
        try:
            yield S3Registry(dataclasses.replace(server, port=proxy.port), proxy, versitygw, bucket)
        finally:
            proxy.stop()
            server.stop()


@pytest.fixture
def clients(s3_registry: S3Registry, tmp_path: Path) -> Iterator[Clients]:
    yield from clients_watching(s3_registry.server, tmp_path / "clients")


def _pulled_through(reg: S3Registry, redirect: bool, layer_bytes: int, what: str) -> None:
    """After a pull: with redirects, 307s and few bytes from the registry; without, no 307 and every byte."""
    sent, redirects = reg.proxy.downstream_bytes, reg.proxy.count(307)
    if redirect:
        assert redirects >= 1, f"{what}: no 307 answered"
        assert sent < layer_bytes // 2, f"{what}: the registry sent {sent} bytes, the layers were redirected"
    else:
        assert redirects == 0, f"{what}: {redirects} redirects with s3_redirect = false"
        assert sent >= layer_bytes, f"{what}: the registry sent only {sent} bytes"
    reg.proxy.reset()


def test_clients_pull_through_the_redirect(s3_registry: S3Registry, clients: Clients, podman_runroot: Path) -> None:
    reg, c = s3_registry, clients
    redirect = reg.server.env["NCR_S3_REDIRECT"] == "true"
    host = reg.server.host
    image = make_image("s3", n_layers=1, extra_file_bytes=LAYER_BYTES)
    layout = c.path("layout")
    write_layout(layout, "t", [image])
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{host}/repo/s3:v1")
    assert reg.s3.multipart_uploads(reg.bucket) == []
    reg.proxy.reset()

    c.run("skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/repo/s3:v1", f"oci:{c.path('back')}:t")
    _pulled_through(reg, redirect, LAYER_BYTES, "skopeo")

    c.run("crane", "pull", "--insecure", "--format", "oci", f"{host}/repo/s3:v1", c.path("crane"))
    _pulled_through(reg, redirect, LAYER_BYTES, "crane")
    for layer in image.layers:
        assert (c.path("crane") / "blobs/sha256" / sha256(layer).split(":")[1]).read_bytes() == layer

    pod = ["podman", "--storage-driver", "vfs", "--root", str(c.path("storage")), "--runroot", str(podman_runroot),
           "--tmpdir", str(c.path("podman-tmp")), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    pulled = c.run(*pod, "pull", "--tls-verify=false", f"{host}/repo/s3:v1")
    assert f"sha256:{pulled.stdout.strip().splitlines()[-1]}" == sha256(image.config)
    _pulled_through(reg, redirect, LAYER_BYTES, "podman")

    work = c.path("work")
    work.mkdir()
    data = random_bytes(LAYER_BYTES, "oras-s3")
    (work / "data.bin").write_bytes(data)
    c.run("oras", "push", "--plain-http", f"{host}/repo/s3:files", "data.bin:application/octet-stream", cwd=work)
    assert reg.s3.multipart_uploads(reg.bucket) == []
    reg.proxy.reset()
    out = c.path("out")
    out.mkdir()
    c.run("oras", "pull", "--plain-http", f"{host}/repo/s3:files", "-o", out)
    assert (out / "data.bin").read_bytes() == data
    _pulled_through(reg, redirect, LAYER_BYTES, "oras")


def test_range_and_digest_header_match_the_filesystem(s3_registry: S3Registry) -> None:
    """GET with a Range through the redirect: the object store honours it; HEAD answers from the database."""
    reg = s3_registry
    redirect = reg.server.env["NCR_S3_REDIRECT"] == "true"
    data = random_bytes(3 * MiB + 5, "range")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    auth = reg.server.auth(actions="pull,push")
    with httpx.Client(base_url=reg.server.url, auth=auth, timeout=60) as http:
        r = http.post(f"/v2/repo/r/blobs/uploads/?digest={digest}", content=data)
        assert r.status_code == 201, r.text
        head = http.head(f"/v2/repo/r/blobs/{digest}")
        assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == digest
        assert int(head.headers["Content-Length"]) == len(data)
        got = http.get(f"/v2/repo/r/blobs/{digest}", headers={"Range": "bytes=100-199"}, follow_redirects=False)
        assert got.headers["Docker-Content-Digest"] == digest
        if redirect:
            assert got.status_code == 307
            located = httpx.get(got.headers["Location"], headers={"Range": "bytes=100-199"})
            assert located.status_code == 206 and located.content == data[100:200]
            whole = httpx.get(got.headers["Location"])
            assert whole.content == data
        else:
            assert got.status_code == 206 and got.content == data[100:200]
    io = reg.server.call("GET", "/io").json()  # no local disk writes to report, and no 500 for it
    assert io["direct_io"] == {"enabled": False, "direct_bytes": 0, "buffered_bytes": 0, "direct_refused": 0,
                               "read_back_bytes": 0, "read_back_skipped": 0}


def _stream(total: int, seed: bytes) -> tuple[Iterator[bytes], hashlib._Hash]:
    """`total` generated bytes in 1 MiB chunks (never all in memory), hashed as they are produced."""
    hasher = hashlib.sha256()
    block = hashlib.shake_256(seed).digest(MiB)

    def chunks() -> Iterator[bytes]:
        sent = 0
        n = 0
        while sent < total:
            chunk = (block[n % 251:] + block[:n % 251])[:total - sent]  # varies per chunk, cheap to make
            n += 1
            hasher.update(chunk)
            sent += len(chunk)
            yield chunk

    return chunks(), hasher


def _digest_of(total: int, seed: bytes) -> str:
    chunks, hasher = _stream(total, seed)
    for _ in chunks:
        pass
    return "sha256:" + hasher.hexdigest()


@pytest.mark.parametrize("s3_registry", [True], indirect=True, ids=["redirect"])
def test_big_monolithic_and_chunked_pushes(s3_registry: S3Registry) -> None:
    """A monolithic push of 20 parts (a generated stream; the 3 GiB one goes through HAProxy in
    test_cluster) and a chunked push with PATCHes of 1 B, 1 MiB, exactly 5 MiB and 17 MiB: digests
    right, the pulled bytes right, no multipart upload left in the bucket."""
    reg = s3_registry
    auth = reg.server.auth(actions="pull,push")
    big = 20 * PART_BYTES - 7
    with httpx.Client(base_url=reg.server.url, auth=auth, timeout=600) as http:
        digest = _digest_of(big, b"big")
        chunks, hasher = _stream(big, b"big")
        r = http.post(f"/v2/repo/big/blobs/uploads/?digest={digest}", content=chunks,
                      headers={"Content-Length": str(big)})
        assert r.status_code == 201, r.text
        assert "sha256:" + hasher.hexdigest() == digest
        assert int(http.head(f"/v2/repo/big/blobs/{digest}").headers["Content-Length"]) == big

        sizes = [1, MiB, 5 * MiB, 17 * MiB, 1, 17 * MiB, 5 * MiB]
        data = random_bytes(sum(sizes), "chunked-s3")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = http.post("/v2/repo/big/blobs/uploads/")
        assert r.status_code == 202, r.text
        location, pos = r.headers["Location"], 0
        for n in sizes:
            r = http.patch(location, content=data[pos:pos + n], headers={
                "Content-Range": f"{pos}-{pos + n - 1}", "Content-Type": "application/octet-stream"})
            assert r.status_code == 202, r.text
            pos += n
            assert r.headers["Range"] == f"0-{pos - 1}"
            location = r.headers["Location"]
        r = http.put(f"{location}{'&' if '?' in location else '?'}digest={digest}")
        assert r.status_code == 201, r.text
        got = http.get(f"/v2/repo/big/blobs/{digest}", follow_redirects=True)
        assert got.content == data
    assert reg.s3.multipart_uploads(reg.bucket) == []
    keys = json.dumps(list(reg.s3.driver(reg.bucket).list("uploads/")))
    assert keys == "[]", f"upload objects left: {keys}"


@pytest.fixture
def podman_runroot() -> Iterator[Path]:
    """podman refuses a --runroot longer than 50 characters: pytest's tmp_path is too long for it."""
    with tempfile.TemporaryDirectory(prefix="ncr-podman-", dir="/tmp") as d:
        yield Path(d)


def test_conformance_suite_on_s3(versitygw: S3Server, tmp_path: Path) -> None:
    """The OCI conformance suite against a server on S3. The blob GETs are 307s to the object store,
    which the suite follows; the object store's answer carries no Docker-Content-Digest (the 307 does),
    so that check is left to the redirect-free run in tests/test_conformance.py."""
    from tests.test_conformance import run_conformance

    with versitygw.bucket() as bucket:
        server = Server(data=tmp_path / "data", env=versitygw.env(bucket)).start()
        try:
            results = tmp_path / "results"
            proc = run_conformance(server, results, OCI_API_BLOBS_DIGEST_HEADER="false")
            summary = (results / "results.yaml").read_text() if (results / "results.yaml").exists() else ""
            assert proc.returncode == 0, (f"conformance failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}\n"
                                          f"{server.log()[-3000:]}")
            assert "FAIL" not in summary
        finally:
            server.stop()
        assert versitygw.multipart_uploads(bucket) == []


def test_gc_on_s3_removes_blobs_and_aborts_abandoned_multipart_uploads(moto_s3: S3Server, tmp_path: Path) -> None:
    """GC on S3 removes an unlinked blob's object. An upload left mid-way (parts in a multipart upload, a
    pending object) expires: GC removes its row, its objects and aborts its multipart upload; a multipart
    upload no session owns (a node died before saving it) is aborted too. On moto, which enforces S3's
    part-size rules."""
    with moto_s3.bucket() as bucket:
        env = {**moto_s3.env(bucket), "NCR_UPLOAD_TTL_SECONDS": "1", "NCR_GC_INTERVAL_SECONDS": "0",
               "NCR_GC_GRACE_SECONDS": "0"}
        server = Server(data=tmp_path / "data", env=env).start()
        try:
            data = random_bytes(17 * MiB + 3, "abandoned")
            garbage = random_bytes(1000, "garbage")
            garbage_digest = "sha256:" + hashlib.sha256(garbage).hexdigest()
            with httpx.Client(base_url=server.url, auth=server.auth(actions="pull,push,delete"), timeout=60) as http:
                # A blob pushed, then unlinked: GC removes its row and its object.
                r = http.post(f"/v2/repo/gc/blobs/uploads/?digest={garbage_digest}", content=garbage)
                assert r.status_code == 201, r.text
                assert http.delete(f"/v2/repo/gc/blobs/{garbage_digest}").status_code == 202
                assert len(list(moto_s3.driver(bucket).list("blobs/"))) == 1
                r = http.post("/v2/repo/gc/blobs/uploads/")
                location = r.headers["Location"]
                r = http.patch(location, content=data, headers={"Content-Range": f"0-{len(data) - 1}"})
                assert r.status_code == 202, r.text
            # (moto dates every multipart upload 2010: the server's periodic upload expiry may take this one first)
            stray = moto_s3.driver(bucket).client.create_multipart_upload(Bucket=bucket, Key="uploads/stray/data")
            assert len(moto_s3.multipart_uploads(bucket)) >= 1
            time.sleep(1.5)  # past the TTL
            r = server.call("POST", "/gc", json={})
            assert r.status_code == 200, r.text
            assert moto_s3.multipart_uploads(bucket) == [], stray
            assert list(moto_s3.driver(bucket).list("uploads/")) == []
            assert r.json()["blobs_removed"] == 1
            assert list(moto_s3.driver(bucket).list("blobs/")) == []
        finally:
            server.stop()


def test_object_store_down_is_503_not_500(tmp_path: Path) -> None:
    """With the object store gone, a pull served through the registry and a chunk upload are answered
    503 UNAVAILABLE with Retry-After (after botocore's retries), never 500, and nothing is recorded."""
    from tests.support.s3 import s3_server

    with s3_server("versitygw") as s3, s3.bucket() as bucket:
        server = Server(data=tmp_path / "data", env={**s3.env(bucket), "NCR_S3_REDIRECT": "false"}).start()
        try:
            data = random_bytes(MiB, "down")
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            with httpx.Client(base_url=server.url, auth=server.auth(actions="pull,push"), timeout=120) as http:
                assert http.post(f"/v2/repo/down/blobs/uploads/?digest={digest}", content=data).status_code == 201
                r = http.post("/v2/repo/down/blobs/uploads/")
                location = r.headers["Location"]
                s3.proc.terminate()
                s3.proc.wait(10)
                got = http.get(f"/v2/repo/down/blobs/{digest}")
                assert got.status_code == 503 and got.headers["Retry-After"], got.text
                assert got.json()["errors"][0]["code"] == "UNAVAILABLE"
                r = http.patch(location, content=b"x" * (6 * MiB), headers={"Content-Range": f"0-{6 * MiB - 1}"})
                assert r.status_code == 503, r.text
                r = http.get(location)
                assert r.status_code == 204 and r.headers["Range"] == "0-0"  # nothing acknowledged
        finally:
            server.stop()
