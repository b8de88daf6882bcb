"""Uploads survive a SIGKILL, shutdown lets requests finish, big pushes stream, indexes round-trip."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.auth import scope_for, token
from tests.support.oci import OCI_INDEX, digest, image, index, push_image, push_manifest
from tests.support.server import Server

MiB = 1024 * 1024


def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_partial_patch(srv: Server, location: str, start: int, total: int, first: bytes) -> socket.socket:
    """Open a PATCH of `total` bytes and send only `first` of them."""
    bearer = token(srv.url, *srv.admin, scope_for(location, "pull,push"))
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(
        f"PATCH {location} HTTP/1.1\r\nHost: {srv.host}\r\nAuthorization: Bearer {bearer}\r\n"
        f"Content-Type: application/octet-stream\r\n"
        f"Content-Range: {start}-{start + total - 1}\r\nContent-Length: {total}\r\n\r\n".encode() + first
    )
    return s


def test_sigkill_mid_chunk_resumes_from_acknowledged_bytes(tmp_path: Path) -> None:
    srv = Server(data=tmp_path / "data").start()
    blob = os.urandom(6 * MiB)
    part1, part2 = blob[: 2 * MiB], blob[2 * MiB :]
    try:
        with srv.client() as c:
            loc = c.post("/v2/durable/repo/blobs/uploads/").headers["location"]
            r = c.patch(loc, content=part1, headers={"Content-Range": f"0-{len(part1) - 1}"})
            assert r.status_code == 202 and r.headers["range"] == f"0-{len(part1) - 1}"
        upload_file = srv.data / "uploads" / loc.rsplit("/", 1)[1]
        # A second chunk is on its way when the server dies: some of its bytes reached the file.
        sock = start_partial_patch(srv, loc, len(part1), len(part2), part2[: 3 * MiB])
        wait_for(lambda: upload_file.stat().st_size > len(part1), "unacknowledged bytes on disk")
        srv.kill()
        sock.close()
    finally:
        srv.stop()

    srv.start()
    try:
        with srv.client() as c:
            status = c.get(loc)
            assert status.status_code == 204
            # Only what was acknowledged counts; it was not lost, and the upload did not start over.
            assert status.headers["range"] == f"0-{len(part1) - 1}"
            r = c.patch(loc, content=part2, headers={"Content-Range": f"{len(part1)}-{len(blob) - 1}"})
            assert r.status_code == 202, r.text
            r = c.put(loc, params={"digest": digest(blob)})
            assert r.status_code == 201, r.text
            got = c.get(f"/v2/durable/repo/blobs/{digest(blob)}")
            assert got.status_code == 200 and got.content == blob
    finally:
        srv.stop()


def test_sigterm_lets_an_inflight_upload_finish(tmp_path: Path) -> None:
    srv = Server(data=tmp_path / "data").start()
    blob = os.urandom(4 * MiB)
    assert srv.proc is not None
    with srv.client() as c:
        loc = c.post("/v2/graceful/repo/blobs/uploads/").headers["location"]
    upload_file = srv.data / "uploads" / loc.rsplit("/", 1)[1]
    sock = start_partial_patch(srv, loc, 0, len(blob), blob[: MiB])
    wait_for(lambda: upload_file.exists() and upload_file.stat().st_size > 0, "the first bytes on disk")
    srv.proc.send_signal(signal.SIGTERM)
    sock.sendall(blob[MiB:])
    sock.settimeout(30)
    reply = sock.recv(65536)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
    assert srv.proc.wait(timeout=60) == 0
    srv.proc = None
    srv.start()
    try:
        with srv.client() as c:
            assert c.get(loc).headers["range"] == f"0-{len(blob) - 1}"
            assert c.put(loc, params={"digest": digest(blob)}).status_code == 201
    finally:
        srv.stop()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_push_streams_without_buffering(tmp_path: Path) -> None:
    """A 1 GiB push must not grow the server by anything like 1 GiB (the body is never buffered)."""
    srv = Server(data=tmp_path / "data").start()
    assert srv.proc is not None
    size, chunk = 1024 * MiB, os.urandom(MiB)
    h = hashlib.sha256()
    for _ in range(size // MiB):
        h.update(chunk)
    d = f"sha256:{h.hexdigest()}"

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield chunk

    try:
        with srv.client(timeout=300) as c:
            c.get("/v2/")
            before = _peak_rss(srv.proc.pid)
            r = c.post("/v2/big/blob/blobs/uploads/", params={"digest": d}, content=body(),
                       headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            assert r.status_code == 201, r.text
            growth = _peak_rss(srv.proc.pid) - before
            assert growth < 128 * MiB, f"server grew by {growth // MiB} MiB during a 1 GiB push"
            assert int(c.head(f"/v2/big/blob/blobs/{d}").headers["content-length"]) == size
            r = c.get(f"/v2/big/blob/blobs/{d}", headers={"Range": "bytes=1048570-1048581"})
            assert r.status_code == 206 and r.content == (chunk + chunk)[1048570:1048582]
            assert r.headers["content-range"] == f"bytes 1048570-1048581/{size}"
    finally:
        srv.stop()


def test_two_platform_index_round_trips_byte_identical(server: Server) -> None:
    amd64, arm64 = image("multi-amd64", platform=("linux", "amd64")), image("multi-arm64", platform=("linux", "arm64"))
    with server.client() as c:
        push_image(c, "multi/app", amd64, "amd64")
        push_image(c, "multi/app", arm64, "arm64")
        idx = index([(amd64, ("linux", "amd64")), (arm64, ("linux", "arm64"))])
        r = push_manifest(c, "multi/app", "v1", idx, media_type=OCI_INDEX)
        assert r.status_code == 201 and r.headers["docker-content-digest"] == digest(idx)
        got = c.get("/v2/multi/app/manifests/v1", headers={"Accept": OCI_INDEX})
        assert got.content == idx
        assert got.headers["content-type"] == OCI_INDEX
        assert got.headers["docker-content-digest"] == digest(idx)
        for img in (amd64, arm64):
            m = c.get(f"/v2/multi/app/manifests/{img.digest}")
            assert m.content == img.manifest
            for blob in img.blobs.values():
                assert c.get(f"/v2/multi/app/blobs/{digest(blob)}").content == blob
        assert sorted(c.get("/v2/multi/app/tags/list").json()["tags"]) == ["amd64", "arm64", "v1"]


def test_abandoned_upload_sessions_expire_and_their_bytes_go(tmp_path: Path) -> None:
    srv = Server(data=tmp_path / "data", env={"NCR_UPLOAD_TTL_SECONDS": "2"}).start()
    try:
        with srv.client() as c:
            loc = c.post("/v2/expiry/repo/blobs/uploads/").headers["location"]
            assert c.patch(loc, content=b"abandoned", headers={"Content-Range": "0-8"}).status_code == 202
            upload_file = srv.data / "uploads" / loc.rsplit("/", 1)[1]
            assert upload_file.exists()
            wait_for(lambda: c.get(loc).status_code == 404, "the session to expire")
            wait_for(lambda: not upload_file.exists(), "its bytes to be removed")
    finally:
        srv.stop()


def test_several_workers_share_one_store(tmp_path: Path) -> None:
    """Two hypercorn worker processes: whatever one stores, the other serves."""
    srv = Server(data=tmp_path / "data", extra_args=["--workers", "2"]).start()
    try:
        imgs = [image(f"workers-{i}") for i in range(8)]
        # Fresh connections spread the requests over both workers.
        for i, img in enumerate(imgs):
            with srv.client() as c:
                push_image(c, f"workers/r{i % 3}", img, f"v{i}")
        for i, img in enumerate(imgs):
            with srv.client() as c:
                assert c.get(f"/v2/workers/r{i % 3}/manifests/v{i}").content == img.manifest
                for d, blob in img.blobs.items():
                    assert c.get(f"/v2/workers/r{i % 3}/blobs/{d}").content == blob
        with srv.client() as c:
            assert c.get("/v2/_catalog").json()["repositories"] == ["workers/r0", "workers/r1", "workers/r2"]
    finally:
        assert srv.stop() == 0
