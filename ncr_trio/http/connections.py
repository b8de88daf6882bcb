"""Connection lifetimes over hypercorn's trio worker: a connection ends when its client goes, and a
client that stalls is dropped.

hypercorn 0.18 reads each connection in one task (`TCPServer._read_data`), writes from the task of
the request being answered (`TCPServer.protocol_send`), and runs a keep-alive timer from the
connection's start, or its last response, until a whole request head has come. Two small
wrappers mend what that version leaves open:

- `TCPServer._read_data`: when reading ended (the client closed or reset the connection), the
  keep-alive timer kept running and the connection's task group waited for it before closing the
  socket: every keep-alive client that hung up between requests left a socket in CLOSE-WAIT, with
  its descriptor, for `keep_alive_timeout` (75 s then; a burst of 64 clients left ~75, a client
  opening one connection per request one per request). The timer is now stopped when reading
  ends, and not restarted after that (`protocol_send` ignores the idle signal): no next request
  can come, so the socket closes as soon as the request in flight, if any, has ended.
  The loop is hypercorn's, with one change: its `read_timeout` applied to every read, so it also
  cut off a client that was quietly receiving a long response (it is waiting, not stalling); here
  the deadline (`read_timeout`) applies while an HTTP/1.x request body is awaited. A request head
  is bounded by the keep-alive timer (serve.py sets both from `read_timeout_seconds`). On HTTP/2,
  whose reads also carry the client's flow control, every read has the deadline, as in hypercorn.
- `TCPServer.protocol_send`: writes ran under a cancel shield (a cancelled request must not cut a
  response mid-frame) with no deadline, so a client that stopped reading held its connection and
  the response's file for ever. A write now waits for a full socket at most `send_timeout` at a
  time; past it the connection is reset and the request's stream closed. On plain TCP the bytes go
  out with non-blocking `write(2)` calls, so the deadline costs nothing until the socket is full
  (a cancel scope per write would cost more than the write); TLS writes get a deadline per SLICE.
  And hypercorn closes a connection (`_close`: `send_eof`, then `aclose`) outside that lock, while
  trio's `send_eof` holds the stream's send side across a checkpoint: a write or a close that meets
  the other raised `trio.BusyResourceError`, which hypercorn does not expect (from the reader task it
  escaped the listener's nursery and ended the whole worker: one client sending `Content-Length: 5`,
  two bytes and a FIN could do it). A stream found busy is a connection closing: it is treated as a
  write to a connection the client has closed.

The reader also hands every chunk it reads to `answerer`, when one is set, before hypercorn's
protocol sees it: http/fastpath.py answers repeated read-only requests there.

`install()` refuses a hypercorn other than the version these wrappers were checked against.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import trio

SUPPORTED = {"hypercorn": ("0.18.",), "h11": ("0.16.",)}  # what these wrappers and zerocopy.py were checked with
SLICE = 256 * 1024  # TLS: bytes a client must take within the send timeout

_installed = False
_read_timeout = 60.0
_send_timeout = 60.0
_READING_ENDED = "_ncr_reading_ended"
# Called with each chunk read on a connection before hypercorn's protocol sees it: True when it
# answered the chunk itself (http/fastpath.py), which then never reaches the protocol.
answerer: Callable[[Any, bytes], Awaitable[bool]] | None = None


def versions_ok() -> bool:
    from importlib.metadata import version

    return all(version(pkg).startswith(prefixes) for pkg, prefixes in SUPPORTED.items())


async def write(server: Any, send: Callable[[], Awaitable[None]]) -> None:
    """One write on a hypercorn `TCPServer`'s connection, as hypercorn makes it (under the send
    lock, shielded), for `send` that raises TooSlowError past its deadline: a client gone or too
    slow closes the request's stream, as a failed write does in hypercorn."""
    async with server.send_lock:
        try:
            with trio.CancelScope(shield=True):
                await send()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass  # the last: hypercorn's close is shutting the stream down
        except trio.TooSlowError:
            stream = server.stream  # a SocketStream, or an SSLStream over one
            sock = getattr(stream, "socket", None) or stream.transport_stream.socket
            with contextlib.suppress(OSError):  # reset: nothing more is sent, no close handshake waits
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await trio.aclose_forcefully(stream)
        else:
            return
    from hypercorn.events import Closed

    await server.protocol.handle(Closed())


async def send_nonblocking(sock: trio.socket.SocketType, count: int, step: Callable[[int, int], int]) -> None:
    """Write `count` bytes to `sock`: `step(fd, done)` writes from `done` on without blocking and
    says how many it wrote. A full socket is waited on for at most the send timeout at a time."""
    done = 0
    while done < count:
        try:
            sent = step(sock.fileno(), done)
        except BlockingIOError:
            with trio.fail_after(_send_timeout):  # a client that stops reading is dropped
                await trio.lowlevel.wait_writable(sock)
            continue
        if sent == 0:
            raise OSError(errno.EIO, "nothing more could be written")
        done += sent
        await trio.lowlevel.checkpoint()


async def send_all(stream: Any, data: bytes) -> None:
    """Write `data` to a connection's stream (call it through `write`)."""
    view = memoryview(data)
    if isinstance(stream, trio.SocketStream):
        await send_nonblocking(stream.socket, len(view), lambda fd, done: os.write(fd, view[done:]))
        return
    for start in range(0, len(view), SLICE):
        with trio.fail_after(_send_timeout):
            await stream.send_all(view[start:start + SLICE])


def _read_deadline(server: Any) -> float:
    connection = getattr(server.protocol.protocol, "connection", None)
    if isinstance(connection, h11.Connection) and connection.their_state is not h11.SEND_BODY:
        return math.inf  # a head is awaited (the keep-alive timer bounds it), or an answer is being sent
    return _read_timeout


def installed() -> bool:
    return _installed


def install(read_timeout: float, send_timeout: float) -> bool:
    """Patch hypercorn once per process; False when its version is not the one checked here."""
    global _installed, _read_timeout, _send_timeout
    _read_timeout, _send_timeout = read_timeout, send_timeout
    if _installed:
        return True
    if not versions_ok():
        return False
    from hypercorn.events import Closed, RawData, Updated
    from hypercorn.trio import tcp_server

    original_protocol_send = tcp_server.TCPServer.protocol_send

    async def read_data(self: Any) -> None:
        while True:
            try:
                deadline = _read_deadline(self)
                if deadline == math.inf:  # no cancel scope: one per request head costs more than the read
                    data = await self.stream.receive_some(tcp_server.MAX_RECV)
                else:
                    with trio.fail_after(deadline):
                        data = await self.stream.receive_some(tcp_server.MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            data = bytes(data)
            if answerer is not None and data and await answerer(self, data):
                continue
            await self.protocol.handle(RawData(data))
            if data == b"":
                break
        await self.protocol.handle(Closed())
        setattr(self, _READING_ENDED, True)
        await self.idle_task.stop()

    async def protocol_send(self: Any, event: Any) -> None:
        if isinstance(event, RawData):
            await write(self, lambda: send_all(self.stream, event.data))
        elif isinstance(event, Updated) and event.idle and getattr(self, _READING_ENDED, False):
            return  # no next request can come: the connection closes when its task group ends
        else:
            try:
                await original_protocol_send(self, event)
            except trio.BusyResourceError:  # `_close` met a write in another task: the connection is closing
                await self.protocol.handle(Closed())

    tcp_server.TCPServer._read_data = read_data  # type: ignore[method-assign]
    tcp_server.TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    _installed = True
    return True


__all__ = ["install", "installed", "send_all", "send_nonblocking", "versions_ok", "write"]
