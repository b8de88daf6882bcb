"""One request at a time writes an upload session; others to the same session are refused at once
(429 TOOMANYREQUESTS, as for any busy resource a client may retry), and never hold a disk slot that
the worker's other pushes, pulls and GC need."""

from __future__ import annotations

import fcntl
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.auth import scope_for, token
from tests.support.oci import digest, image, push_image
from tests.support.server import Server
from tests.test_durability import start_partial_patch, wait_for

MiB = 1024 * 1024
CONTENDERS = 24  # more than the worker's 16 disk slots


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _upload_file(srv: Server, location: str) -> Path:
    return srv.data / "uploads" / location.rsplit("/", 1)[1]


def _busy(r: httpx.Response) -> bool:
    return r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS" and "retry-after" in r.headers


def test_a_slow_patch_does_not_stall_the_worker(server: Server) -> None:
    blob = os.urandom(4 * MiB)
    with server.client() as c:
        loc = c.post("/v2/a/locks/blobs/uploads/").headers["location"]
    # A slow client: it declares 4 MiB, sends 2 and waits, holding the session.
    slow = start_partial_patch(server, loc, 0, len(blob), blob[: 2 * MiB])
    try:
        wait_for(lambda: _upload_file(server, loc).exists() and _upload_file(server, loc).stat().st_size > 0,
                 "the slow PATCH writing")
        bearer = token(server.url, *server.admin, scope_for(loc, "pull,push"))
        auth = {"Authorization": f"Bearer {bearer}"}
        limits = httpx.Limits(max_connections=CONTENDERS)
        with httpx.Client(base_url=server.url, timeout=30, limits=limits) as raw, \
                ThreadPoolExecutor(CONTENDERS) as pool:
            # More requests to the same session than the worker has disk slots, PATCHes and PUTs alike.
            contenders = [pool.submit(raw.patch, loc, content=b"x" * 10, headers={**auth, "Content-Range": "0-9"}) for _ in range(CONTENDERS)]
            contenders += [pool.submit(raw.put, loc, params={"digest": digest(blob)}, headers=auth) for _ in range(2)]
            # Meanwhile the same worker serves other pushes (monolithic and chunked) and pulls.
            with server.client() as c:
                img = image("locks-other", layers=2)
                push_image(c, "a/other", img, "v1")
                assert c.get("/v2/a/other/manifests/v1").content == img.manifest
                for d, data in img.blobs.items():
                    assert c.get(f"/v2/a/other/blobs/{d}").content == data
                other = os.urandom(3 * MiB)
                loc2 = c.post("/v2/a/other/blobs/uploads/").headers["location"]
                assert c.patch(loc2, content=other, headers={"Content-Range": f"0-{len(other) - 1}"}).status_code == 202
                assert c.put(loc2, params={"digest": digest(other)}).status_code == 201
                # The busy session's acknowledged state can still be read, to resume from.
                assert c.get(loc).status_code == 204
            answers = [f.result() for f in contenders]
        assert all(_busy(r) for r in answers), [(r.status_code, r.text) for r in answers]
        # A refusal sent before its body was read closes the connection, and says so: a client
        # reusing it would otherwise find it closed under its next request.
        assert all(r.headers.get("connection") == "close" for r in answers[:CONTENDERS])

        # The slow client finishes: its chunk counts whole, and the session is free again.
        slow.sendall(blob[2 * MiB:])
        head = _response(slow)
        assert head.startswith(b"HTTP/1.1 202"), head
        assert f"range: 0-{len(blob) - 1}".encode() in head.lower()
    finally:
        slow.close()
    with server.client() as c:
        assert c.put(loc, params={"digest": digest(blob)}).status_code == 201
        assert c.get(f"/v2/a/locks/blobs/{digest(blob)}").content == blob
    assert "Traceback" not in server.log()


def test_a_session_held_by_another_process_is_refused_at_once(server: Server) -> None:
    with server.client() as c:
        loc = c.post("/v2/a/locks/blobs/uploads/").headers["location"]
        assert c.patch(loc, content=b"abc", headers={"Content-Range": "0-2"}).status_code == 202
        # Another process (here: this test) holds the session's file lock, as a second worker would.
        fd = os.open(_upload_file(server, loc), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            assert _busy(c.patch(loc, content=b"def", headers={"Content-Range": "3-5"}))
            assert _busy(c.put(loc, params={"digest": digest(b"abcdef")}, content=b"def"))
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        assert c.patch(loc, content=b"def", headers={"Content-Range": "3-5"}).status_code == 202
        assert c.put(loc, params={"digest": digest(b"abcdef")}).status_code == 201
