"""Blob downloads: byte-exact whichever path serves them (zero-copy sendfile or copies), ranges,
many at once, and clients that hang up halfway."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator

import pytest

from ncr_trio.http import zerocopy
from ncr_trio.storage import blob_key
from ncr_trio.types import Digest
from tests.support.auth import token
from tests.support.oci import digest, push_blob
from tests.support.server import Server
from tests.support.storage import NO_DIRECT_IO, why_no_direct_io

MiB = 1024 * 1024
BLOB = os.urandom(20 * MiB + 12345)


@pytest.fixture(scope="module", params=["zero-copy", "copying"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"NCR_ZERO_COPY": "true" if request.param == "zero-copy" else "false"}
    s = Server(data=tmp_path_factory.mktemp(request.param) / "data", env=env).start()
    with s.client() as c:
        push_blob(c, "dl/repo", BLOB)
        c.get(f"/v2/dl/repo/blobs/{digest(BLOB)}")  # now surely in the page cache
    yield s
    s.stop()


def pull_token(srv: Server) -> str:
    """A bearer token to pull dl/repo, for the requests written by hand on raw sockets."""
    return token(srv.url, *srv.admin, "repository:dl/repo:pull")


def test_zero_copy_is_available_with_the_pinned_hypercorn() -> None:
    assert zerocopy.install(), "hypercorn or h11 changed version: re-check ncr_trio/http/zerocopy.py"


def test_whole_blob_is_byte_exact(srv: Server) -> None:
    with srv.client(timeout=60) as c:
        for _ in range(3):
            r = c.get(f"/v2/dl/repo/blobs/{digest(BLOB)}")
            assert r.status_code == 200
            assert int(r.headers["content-length"]) == len(BLOB)
            assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(BLOB).hexdigest()


@pytest.mark.parametrize("first,last", [(0, 0), (1, 8 * MiB), (8 * MiB - 1, 16 * MiB + 1), (len(BLOB) - 10, None)])
def test_ranges(srv: Server, first: int, last: int | None) -> None:
    header = f"bytes={first}-{'' if last is None else last}"
    end = len(BLOB) - 1 if last is None else last
    with srv.client(timeout=60) as c:
        r = c.get(f"/v2/dl/repo/blobs/{digest(BLOB)}", headers={"Range": header})
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes {first}-{end}/{len(BLOB)}"
        assert r.content == BLOB[first:end + 1]


def test_keep_alive_after_a_download_and_http_1_0(srv: Server) -> None:
    auth = f"Authorization: Bearer {pull_token(srv)}\r\n"
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        path = f"/v2/dl/repo/blobs/{digest(BLOB)}"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Range: bytes=0-99\r\n\r\n"
                  f"GET /v2/ HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"{}"):
            chunk = s.recv(65536)
            assert chunk, data[:300]
            data += chunk
        assert BLOB[:100] in data
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(f"GET /v2/dl/repo/blobs/{digest(BLOB)} HTTP/1.0\r\n{auth}\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 20):  # HTTP/1.0: the server closes when done
            data += chunk
        assert data.split(b"\r\n\r\n", 1)[1] == BLOB


def test_clients_hanging_up_midway_leave_the_server_well(srv: Server) -> None:
    auth = f"Authorization: Bearer {pull_token(srv)}\r\n"
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(f"GET /v2/dl/repo/blobs/{digest(BLOB)} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
            s.recv(256 * 1024)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    with srv.client(timeout=60) as c:
        assert c.get(f"/v2/dl/repo/blobs/{digest(BLOB)}").content == BLOB
    assert "Traceback" not in srv.log()


def test_many_downloads_at_once(srv: Server) -> None:
    import concurrent.futures

    def fetch(_: int) -> str:
        with srv.client(timeout=120) as c:
            return hashlib.sha256(c.get(f"/v2/dl/repo/blobs/{digest(BLOB)}").content).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(fetch, range(16))) == {hashlib.sha256(BLOB).hexdigest()}



@pytest.mark.allow_skip(NO_DIRECT_IO)
def test_the_server_wrote_the_blob_with_o_direct_and_sends_it_with_sendfile(srv: Server) -> None:
    """GET /api/v1/io: the worker's own counters, no strace. The 20 MiB push went to disk with
    O_DIRECT (all but its last partial block), and a download from the page cache goes out with
    sendfile when zero-copy is on, never when it is off."""
    before = srv.call("GET", "/io").json()
    with srv.client(timeout=60) as c:
        assert c.get(f"/v2/dl/repo/blobs/{digest(BLOB)}").content == BLOB
    after = srv.call("GET", "/io").json()
    assert after["pid"] == before["pid"]  # one worker: the counters are the server's
    zero_copy = srv.env["NCR_ZERO_COPY"] == "true"
    assert after["zero_copy"]["enabled"] is zero_copy
    sent = after["zero_copy"]["bytes"] - before["zero_copy"]["bytes"]
    assert sent == (len(BLOB) if zero_copy else 0)
    assert (after["zero_copy"]["ranges"] > before["zero_copy"]["ranges"]) is zero_copy
    assert srv.call("POST", "/users", json={"name": "io-viewer", "password": "io-viewer-password"}).status_code == 201
    assert srv.call("GET", "/io", auth=("io-viewer", "io-viewer-password")).status_code == 403  # administrators only
    if (reason := why_no_direct_io(srv.data)) is not None:
        assert after["direct_io"]["direct_refused"] > 0
        pytest.skip(reason)
    assert after["direct_io"]["enabled"] is True and after["direct_io"]["direct_refused"] == 0
    assert after["direct_io"]["direct_bytes"] >= len(BLOB) - 4096  # the push, in the fixture


def test_a_blob_not_in_the_page_cache_is_sent_whole_with_sendfile(srv: Server) -> None:
    """A blob whose pages are not cached (a push writes with O_DIRECT; memory pressure evicts) is not
    copied through the worker when zero-copy is on: a thread has the kernel read each range in, and the
    range goes out with sendfile (docs/performance/pulls.md). Byte-exact either way."""
    path = srv.data / blob_key(Digest.parse(digest(BLOB)))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    before = srv.call("GET", "/io").json()
    with srv.client(timeout=60) as c:
        assert c.get(f"/v2/dl/repo/blobs/{digest(BLOB)}").content == BLOB
    after = srv.call("GET", "/io").json()
    assert after["pid"] == before["pid"]
    sent = after["zero_copy"]["bytes"] - before["zero_copy"]["bytes"]
    assert sent == (len(BLOB) if srv.env["NCR_ZERO_COPY"] == "true" else 0)
