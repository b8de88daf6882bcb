"""The fast path: a keep-alive connection that repeats a read-only request gets the answer the app
gave to that same request, written by the connection's reader without h11, hypercorn's per-request
task and channels, or the app.

Where a worker's time went on manifest GETs and blob HEADs (docs/performance/request-rates.md):
trio's scheduling of hypercorn's per-request task and channels, h11 parsing and serializing, and
hypercorn's events; the app itself (routing, the access gate with its cached token, one database
read) was about a tenth. Registry clients repeat the same few requests (a CI fleet pulls the same
tags, each `docker pull` asks for the same manifest and HEADs the same layers), each with the same
token, so the answer to a request head seen before is mostly already known.

The app stays the one place where behaviour lives; this module only replays what it answered:

- Remembering (a miss): the reader (http/connections.py calls `_answer` with every chunk it reads)
  takes a chunk that is exactly one whole HTTP/1.1 GET or HEAD head, with no body, on an idle
  plain-TCP HTTP/1.1 connection, and only headers from `_ALLOWED` (no `Range`, no conditional, no
  `Expect`, no `Connection` other than keep-alive, no body framing: anything else goes the normal
  way, always). It hands the request on to hypercorn as usual, with a `Capture` in the ASGI scope
  (extension `ncr.fastpath`) and notes the node's change counter (ncr_trio/changes.py). The app,
  when it answers a request it knows how to replay (http/app.py: manifest GET/HEAD, blob HEAD, 200,
  not a cache-type registry), calls `Capture.offer(seconds, replay)`: how long the answer may be
  replayed (at most `access_cache_seconds`, never past the token's expiry) and what to do on each
  replay (count the request in /metrics, record the pull and the audit entry, note the access key's
  use: what the normal path does besides answering). The bytes hypercorn writes for that request
  (status line, headers, body, as h11 made them) are kept once the connection is idle again.
- Replaying (a hit): the same head, from the same client address to the same listener (the key),
  while the change counter has not moved (any write to the metadata store on this node: a tag
  moved, a manifest deleted, a registry made private, a role or key revoked, a scan result, a trust
  policy) and before the answer's deadline: the remembered bytes are written, with a fresh `Date`,
  under the connection's send lock as every write (connections.write), and the replay actions run.
  Hypercorn's keep-alive request count and worker request count move as for any request, so a
  connection still closes after `keep_alive_max_requests` (that request goes the normal way). In
  the last quarter of an answer's time, one request goes to the app again and its answer replaces
  the remembered one, while the others are still replayed: no burst of requests all asking the app
  at once when the time is up.

The keep-alive timer is not restarted per fast answer (a task per request is what this avoids):
the timer, when it fires, looks at the time of the connection's last fast answer and waits on.
`install()` refuses a hypercorn other than the version checked (connections.SUPPORTED).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import time
from collections.abc import Callable
from typing import Any
from wsgiref.handlers import format_date_time

import h11
import trio

from ncr_trio import changes
from ncr_trio.http import connections

EXTENSION = "ncr.fastpath"
MAX_ENTRIES = 4096  # remembered answers per worker process; when full, all are forgotten
MAX_BYTES = 32 * 1024 * 1024  # and the same when their bytes would pass this
MAX_HEAD = 8 * 1024  # longer request heads are not remembered
MAX_ANSWER = 256 * 1024  # nor longer answers
# Request headers a remembered request may carry: what registry clients send on pulls. The app sees
# them all and they are part of the key; a header outside this list may change how the connection
# layer answers (Expect, Connection, Upgrade, body framing) or asks for a partial or conditional
# answer, so such requests always go the normal way.
_ALLOWED = frozenset({b"host", b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"authorization",
                      b"connection", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip",
                      b"docker-distribution-api-version"})

_installed = False
_entries: dict[tuple[Any, Any, bytes], _Entry] = {}
_held = [0]  # bytes of the remembered answers
_pending: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("ncr_fastpath_pending", default=None)
_date: list[Any] = [-1, b""]  # the second, and the Date value for it


class Capture:
    """One request that may be remembered: the app offers its answer, the connection collects its bytes."""

    __slots__ = ("generation", "key", "parts", "replay", "settle", "size", "until")

    def __init__(self, key: tuple[Any, Any, bytes], generation: int) -> None:
        self.key = key
        self.generation = generation
        self.parts: list[bytes] = []
        self.size = 0
        self.until = -math.inf
        self.settle = 0.0
        self.replay: Callable[[float], None] | None = None

    def offer(self, seconds: float, replay: Callable[[float], None], settle: float) -> None:
        """The app's word: this answer may be replayed for `seconds`; `replay(elapsed)` on each replay;
        its own caches may hold what was true before a change for up to `settle` seconds after it."""
        if seconds > 0:
            self.until = trio.current_time() + seconds
            self.replay = replay
            self.settle = settle


class _Entry:
    __slots__ = ("after", "before", "generation", "renew_within", "renewing", "replay", "until")

    def __init__(self, before: bytes, after: bytes | None, generation: int, until: float, renew_within: float,
                 replay: Callable[[float], None]) -> None:
        self.before, self.after = before, after  # the answer around its Date value (after: None without one)
        self.generation, self.until, self.replay = generation, until, replay
        self.renew_within = renew_within  # in its last quarter, one request asks the app again
        self.renewing = False


def installed() -> bool:
    return _installed


def _date_value() -> bytes:
    now = time.time()
    second = int(now)
    if second != _date[0]:
        _date[0], _date[1] = second, format_date_time(now).encode("ascii")
    return bytes(_date[1])


def _simple_head(head: bytes) -> bool:
    """Whether `head` (one whole request head) is an HTTP/1.1 GET or HEAD with only `_ALLOWED` headers."""
    if len(head) > MAX_HEAD or head.find(b"\r\n\r\n") != len(head) - 4:
        return False
    lines = head[:-4].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[0] not in (b"GET", b"HEAD") or request_line[2] != b"HTTP/1.1":
        return False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        name = name.lower()
        if not sep or name not in _ALLOWED:
            return False
        if name == b"connection" and value.strip().lower() != b"keep-alive":
            return False
    return True


async def _answer(server: Any, data: bytes) -> bool:
    """Called by the connection's reader with each chunk read: True when it answered the chunk."""
    if _pending.get() is not None:
        _pending.set(None)
    if not data.endswith(b"\r\n\r\n") or not isinstance(server.stream, trio.SocketStream):
        return False
    protocol = server.protocol.protocol
    connection = protocol.connection
    if protocol.stream is not None:
        # The previous request's answer has gone out (the client sent this one) but its task has
        # not ended: wait for the connection to be idle again, as hypercorn would hold this head
        # until then too. Only when that request is whole: else these bytes are its body.
        if type(connection) is not h11.Connection or connection.their_state is not h11.DONE:
            return False
        idle = server._ncr_idle = trio.Event()
        await idle.wait()
        if protocol.stream is not None:
            return False
        connection = protocol.connection
    if server.context.terminated.is_set():
        return False
    if (type(connection) is not h11.Connection or connection.our_state is not h11.IDLE
            or connection.their_state is not h11.IDLE or connection.trailing_data[0]):
        return False
    client = protocol.client
    key = (protocol.server, client[0] if client else None, data)
    entry = _entries.get(key)
    if entry is not None:
        now = trio.current_time()
        if entry.until > now and entry.generation == changes.current():
            if entry.until - now < entry.renew_within and not entry.renewing:
                # Near its end: this request asks the app again (and its answer replaces this one)
                # while the others are still answered, rather than all of them asking at once when
                # it has ended.
                entry.renewing = True
            elif protocol.keep_alive_requests + 1 < server.config.keep_alive_max_requests:
                started = time.perf_counter()
                protocol.keep_alive_requests += 1
                await server.context.mark_request()
                answer = entry.before if entry.after is None else entry.before + _date_value() + entry.after
                # Counted before it is written (the write yields to other tasks): a client that
                # reads /metrics once it has its answer finds it counted.
                entry.replay(time.perf_counter() - started)
                sent = 0
                if not server.send_lock.locked():
                    # Most answers fit in the socket's buffer: one write(2), no lock, cancel scope or
                    # task switch (nothing else writes on an idle connection; the read that brought
                    # this request was the checkpoint). The rest, or an error, goes the usual way.
                    with contextlib.suppress(OSError):
                        sent = os.write(server.stream.socket.fileno(), answer)
                if sent < len(answer):
                    rest = answer[sent:]
                    await connections.write(server, lambda: connections.send_all(server.stream, rest))
                server._ncr_fast_at = trio.current_time()
                return True
        else:
            _forget(key)
    if _simple_head(data):
        capture = Capture(key, changes.current())
        server._ncr_capture = capture
        _pending.set(capture)
    return False


def _forget(key: tuple[Any, Any, bytes]) -> None:
    entry = _entries.pop(key, None)
    if entry is not None:
        _held[0] -= len(entry.before) + len(entry.after or b"")


def _remember(capture: Capture) -> None:
    if capture.replay is None or capture.until <= trio.current_time():
        return
    answer = b"".join(capture.parts)
    end = answer.find(b"\r\n\r\n")
    if end < 0:
        return
    head = answer[:end + 2].lower()
    if b"\r\nconnection:" in head:  # the server closes this connection after it: never replayed
        return
    at = head.find(b"\r\ndate: ")
    before, after = answer, None
    if at >= 0:
        value_end = head.index(b"\r\n", at + 2)
        before, after = answer[:at + 8], answer[value_end:]
    size = len(before) + len(after or b"")
    _forget(capture.key)
    if len(_entries) >= MAX_ENTRIES or _held[0] + size > MAX_BYTES:
        _entries.clear()
        _held[0] = 0
    _held[0] += size
    now = trio.current_time()
    until = capture.until
    # An answer given while the app's caches (another worker's, which saw the change only through
    # the database) may still be stale is replayed no longer than they may stay so.
    settling = changes.changed_at() + capture.settle - time.time()
    if settling > 0:
        until = min(until, now + settling)
    _entries[capture.key] = _Entry(before, after, capture.generation, until, (until - now) / 4, capture.replay)


def install() -> bool:
    """Patch hypercorn once per process (after connections.install); False when it cannot be."""
    global _installed
    if _installed:
        return True
    if not connections.installed() or not connections.versions_ok():
        return False
    from hypercorn.events import Closed, RawData, Updated
    from hypercorn.protocol.events import Request
    from hypercorn.protocol.http_stream import HTTPStream
    from hypercorn.trio.tcp_server import TCPServer

    original_handle = HTTPStream.handle
    original_protocol_send = TCPServer.protocol_send

    async def handle(self: Any, event: Any) -> None:
        capture = _pending.get() if isinstance(event, Request) else None
        if capture is not None:
            _pending.set(None)
        await original_handle(self, event)
        scope = getattr(self, "scope", None)
        # The app task is started, not yet run: it sees the capture when it reads its scope.
        if capture is not None and scope is not None:
            scope["extensions"][EXTENSION] = capture

    async def protocol_send(self: Any, event: Any) -> None:
        idle = self._ncr_idle
        if idle is not None and (isinstance(event, Closed) or (isinstance(event, Updated) and event.idle)):
            self._ncr_idle = None
            idle.set()
        capture = self._ncr_capture
        if capture is not None:
            if isinstance(event, RawData):
                capture.size += len(event.data)
                capture.parts.append(event.data)
                if capture.size > MAX_ANSWER:
                    self._ncr_capture = None
            elif isinstance(event, Updated):
                if event.idle:  # the answer is whole and the connection is ready for the next request
                    self._ncr_capture = None
                    _remember(capture)
            else:  # closed, or a file range (never offered)
                self._ncr_capture = None
        await original_protocol_send(self, event)

    async def idle_timeout(self: Any) -> None:
        # hypercorn's timer (close after keep_alive_timeout idle, or at once on shutdown), counted
        # from the connection's last answer, fast ones included.
        timeout = self.config.keep_alive_timeout
        deadline = trio.current_time() + timeout
        while True:
            with trio.move_on_at(deadline):
                await self.context.terminated.wait()
            if self.context.terminated.is_set():
                break
            deadline = self._ncr_fast_at + timeout
            if deadline <= trio.current_time():
                break
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()

    TCPServer._ncr_capture = None  # type: ignore[attr-defined]
    TCPServer._ncr_idle = None  # type: ignore[attr-defined]
    TCPServer._ncr_fast_at = -math.inf  # type: ignore[attr-defined]
    HTTPStream.handle = handle  # type: ignore[method-assign]
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    TCPServer._idle_timeout = idle_timeout  # type: ignore[method-assign]
    connections.answerer = _answer
    _installed = True
    return True


__all__ = ["EXTENSION", "Capture", "install", "installed"]
