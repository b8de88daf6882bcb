"""Connections end when their client goes or stalls: no socket left in CLOSE-WAIT, no request
that a closed connection answers, and a client that sends (or reads) nothing is dropped.

Everything is observed from outside, on real server processes: the server's sockets in
/proc/net/tcp{,6} and the socket descriptors its processes hold.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.auth import token
from tests.support.oci import digest, push_blob
from tests.support.server import Server

MiB = 1024 * 1024
BLOB = os.urandom(8 * MiB + 7)
REPO = "a/connections"
BOUND = 20.0  # seconds: well below the 60 s read timeout and the keep-alive timer, both of which close anyway
CLOSE_WAIT, LISTEN, TIME_WAIT = "08", "0A", "06"


# -- what the server holds ------------------------------------------------------------------------

def server_sockets(port: int) -> list[tuple[str, int, int]]:
    """The server side of every TCP socket on `port`: (state, client port, bytes unread by the server)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    rows.append((fields[3], int(fields[2].rsplit(":", 1)[1], 16), int(fields[4].split(":")[1], 16)))
    return rows


def connections(port: int) -> list[tuple[str, int, int]]:
    """Server-side connection sockets still open (TIME-WAIT holds no descriptor)."""
    return [row for row in server_sockets(port) if row[0] not in (LISTEN, TIME_WAIT)]


def close_waits(port: int) -> int:
    return sum(state == CLOSE_WAIT for state, _, _ in server_sockets(port))


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the workers of `--workers N`)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(parents.get(p, []))
    return tree


def held_sockets(srv: Server) -> int:
    """Socket descriptors the server's processes hold, whatever their TCP state (a reset socket
    is in no table but still holds its descriptor until the server closes it)."""
    assert srv.proc is not None
    count = 0
    for pid in process_tree(srv.proc.pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except OSError:
                pass
    return count


def wait_until(condition: Callable[[], bool], what: str, bound: float = BOUND) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound:.0f} s: {what}")
        time.sleep(0.05)


# -- raw HTTP -----------------------------------------------------------------------------------

def connect(srv: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=BOUND)


def reset(s: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def head(method: str, path: str, bearer: str | None = None, **headers: str | int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if bearer is not None:
        lines.append(f"Authorization: Bearer {bearer}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response (Content-Length framed) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection instead of answering ({data[:80]!r})")
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(max(65536, length - len(body)))
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        body += chunk
    return int(status_line.split()[1]), headers, body


def ended_by_server(s: socket.socket) -> bool:
    """Read until the server ends the connection (EOF or reset); False if it is still open at BOUND."""
    s.settimeout(BOUND)
    try:
        while s.recv(1 << 20):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def new_upload(srv: Server) -> str:
    with srv.client() as c:
        r = c.post(f"/v2/{REPO}/blobs/uploads/")
        assert r.status_code == 202, r.text
        return str(r.headers["location"])


# -- 200 abrupt endings, then 1,000 requests on new connections ---------------------------------

@pytest.fixture(scope="module", params=[1, 2], ids=["workers=1", "workers=2"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(data=tmp_path_factory.mktemp("connections") / "data",
               extra_args=["--workers", str(request.param)]).start()
    with s.client() as c:
        push_blob(c, REPO, BLOB)
    yield s
    s.stop()


def test_abrupt_endings_leave_no_connection_behind(srv: Server) -> None:
    bearer = token(srv.url, *srv.admin, f"repository:{REPO}:pull,push")
    ping, blob = head("GET", "/v2/", bearer), head("GET", f"/v2/{REPO}/blobs/{digest(BLOB)}", bearer)

    def idle_keep_alive_close() -> None:  # what keep-alive clients do when they are done
        s = connect(srv)
        s.sendall(ping)
        assert read_response(s)[0] == 200
        s.close()

    for _ in range(20):  # every worker has served (and set itself up) before the count is taken
        idle_keep_alive_close()
    # The sockets a quiet server holds: listeners and its own, once the warm-up's connections are
    # gone (a closing socket can be in the table without a descriptor, in LAST-ACK or FIN-WAIT, or
    # hold one without being in it, reset: counting neither while any remain keeps the baseline exact).
    wait_until(lambda: connections(srv.port) == [], "the warm-up's connections end")
    baseline = held_sockets(srv)

    def silent() -> None:
        connect(srv).close()

    def partial_head() -> None:
        s = connect(srv)
        s.sendall(ping[:20])
        s.close()

    def request_then_close() -> None:  # the answer meets a closed socket
        s = connect(srv)
        s.sendall(blob)
        s.close()

    def request_then_reset() -> None:
        s = connect(srv)
        s.sendall(blob)
        reset(s)

    def download_abandoned() -> None:
        s = connect(srv)
        s.sendall(blob)
        s.recv(65536)
        s.close()  # unread bytes: the kernel resets

    def download_reset() -> None:
        s = connect(srv)
        s.sendall(blob)
        s.recv(65536)
        reset(s)

    def body_abandoned() -> None:
        s = connect(srv)
        s.sendall(head("PATCH", new_upload(srv), bearer, content_type="application/octet-stream",
                       content_length=MiB) + BLOB[:1000])
        s.close()

    endings = [silent, partial_head, request_then_close, request_then_reset, idle_keep_alive_close,
               download_abandoned, download_reset, body_abandoned]
    for i in range(200):
        endings[i % len(endings)]()

    failures = []
    for i in range(1000):
        try:
            s = connect(srv)
            s.sendall(ping)
            status = read_response(s)[0]
            s.close()
            if status != 200:
                failures.append(f"request {i}: {status}")
        except OSError as e:
            failures.append(f"request {i}: {e!r}")
    assert failures == []

    wait_until(lambda: close_waits(srv.port) == 0, f"no socket in CLOSE-WAIT (still {close_waits(srv.port)})")
    wait_until(lambda: held_sockets(srv) <= baseline,
               f"the server holds no more sockets than when quiet ({held_sockets(srv)} vs {baseline})")
    assert "Traceback" not in srv.log()


def test_an_answer_given_before_the_body_ends_the_connection(srv: Server) -> None:
    """The server answers (401, after checking a password: tens of milliseconds) without reading
    the body, while the client keeps sending it: the connection must still end."""
    basic = base64.b64encode(b"nobody-at-all:wrong-password").decode()
    with connect(srv) as s:
        s.sendall(f"GET /auth/token?service=ncr-trio HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n"
                  f"Content-Length: {64 * MiB}\r\n\r\n".encode())
        client_port = s.getsockname()[1]

        def send_body() -> None:
            try:
                s.sendall(bytes(64 * MiB))
            except OSError:
                pass  # the server reset the connection

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        assert ended_by_server(s), "the server answered but kept the connection open"
        sender.join(BOUND)
    wait_until(lambda: all(port != client_port for _, port, _ in connections(srv.port)),
               "the server closed its side")


# -- timeouts -----------------------------------------------------------------------------------

TIMEOUT = 2  # seconds, for the server below


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that drops clients after TIMEOUT seconds without progress."""
    s = Server(data=tmp_path_factory.mktemp("timeouts") / "data",
               env={"NCR_READ_TIMEOUT_SECONDS": str(TIMEOUT), "NCR_SEND_TIMEOUT_SECONDS": str(TIMEOUT)}).start()
    with s.client() as c:
        push_blob(c, REPO, BLOB)
    yield s
    s.stop()


def test_a_client_that_sends_nothing_is_dropped(strict: Server) -> None:
    with connect(strict) as s:
        assert ended_by_server(s)


def test_a_request_head_sent_too_slowly_is_dropped(strict: Server) -> None:
    """Slowloris: one header line at a time, each well within the timeout, never the end of the head."""
    with connect(strict) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + BOUND
        try:
            while time.monotonic() < deadline:
                s.sendall(b"X-Slow: 1\r\n")
                time.sleep(TIMEOUT / 8)
        except (ConnectionResetError, BrokenPipeError):
            return
        assert ended_by_server(s)


def test_a_request_without_its_body_is_dropped(strict: Server) -> None:
    with connect(strict) as s:
        bearer = token(strict.url, *strict.admin, f"repository:{REPO}:pull,push")
        s.sendall(head("PATCH", new_upload(strict), bearer, content_type="application/octet-stream",
                       content_length=1000))
        assert ended_by_server(s)


def test_a_stalled_body_is_dropped_and_only_acknowledged_bytes_stay(strict: Server) -> None:
    location = new_upload(strict)
    first, rest = BLOB[:MiB], BLOB[MiB:]
    with strict.client() as c:
        r = c.patch(location, content=first, headers={"Content-Range": f"0-{len(first) - 1}"})
        assert r.status_code == 202, r.text
    bearer = token(strict.url, *strict.admin, f"repository:{REPO}:pull,push")
    with connect(strict) as s:
        s.sendall(head("PATCH", location, bearer, content_type="application/octet-stream",
                       content_range=f"{len(first)}-{len(BLOB) - 1}", content_length=len(rest)) + rest[:MiB])
        assert ended_by_server(s)
    with strict.client() as c:
        wait_until(lambda: c.get(location).headers.get("range") == f"0-{len(first) - 1}",
                   "the upload is free again, with only the acknowledged bytes")
        r = c.patch(location, content=rest, headers={"Content-Range": f"{len(first)}-{len(BLOB) - 1}"})
        assert r.status_code == 202, r.text
        assert c.put(location, params={"digest": digest(BLOB)}).status_code == 201


def test_a_slow_but_steady_client_is_not_dropped(strict: Server) -> None:
    location = new_upload(strict)
    body = BLOB[:64 * 1024]
    pieces = [body[i:i + 4096] for i in range(0, len(body), 4096)]  # 16 pieces over 4 timeouts
    bearer = token(strict.url, *strict.admin, f"repository:{REPO}:pull,push")
    with connect(strict) as s:
        s.sendall(head("PATCH", location, bearer, content_type="application/octet-stream",
                       content_range=f"0-{len(body) - 1}", content_length=len(body)))
        for piece in pieces:
            time.sleep(TIMEOUT / 4)
            s.sendall(piece)
        status, headers, _ = read_response(s)
    assert status == 202 and headers["range"] == f"0-{len(body) - 1}"


def test_a_client_that_reads_nothing_is_dropped(strict: Server) -> None:
    """A download whose client stops reading (and keeps its socket open) does not hold the server."""
    bearer = token(strict.url, *strict.admin, f"repository:{REPO}:pull")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # set before connecting: a small window
        s.settimeout(BOUND)
        s.connect(("127.0.0.1", strict.port))
        s.sendall(head("GET", f"/v2/{REPO}/blobs/{digest(BLOB)}", bearer))
        client_port = s.getsockname()[1]
        wait_until(lambda: all(port != client_port for _, port, _ in connections(strict.port)),
                   "the server dropped the client that stopped reading")
        received = 0
        try:
            while chunk := s.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < len(BLOB)


def test_a_client_receiving_a_long_response_is_not_timed_out(strict: Server) -> None:
    """A client reading a download slowly, for longer than the timeout, sends nothing meanwhile: it
    gets the whole blob, and its connection stays open for the next request."""
    bearer = token(strict.url, *strict.admin, f"repository:{REPO}:pull")
    request = head("GET", f"/v2/{REPO}/blobs/{digest(BLOB)}", bearer)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.settimeout(BOUND)
        s.connect(("127.0.0.1", strict.port))
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        body = data.partition(b"\r\n\r\n")[2]
        while len(body) < len(BLOB):
            mib = len(body) // MiB
            body += s.recv(MiB)
            if len(body) // MiB > mib:
                time.sleep(TIMEOUT / 4)  # a pause a MiB: 8 of them, twice the timeout
        assert body == BLOB
        s.sendall(request)
        status, _, again = read_response(s)
        assert status == 200 and again == BLOB

