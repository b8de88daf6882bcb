"""Zero-copy blob downloads: the ASGI `http.response.zerocopysend` extension over hypercorn.

hypercorn 0.18 does not implement that extension, so every byte of a blob download would be
copied from the page cache into Python and back into the socket. For plain HTTP/1.x connections
this module adds it: the app sends `{"type": "http.response.zerocopysend", "file": fd,
"offset": n, "count": n, "more_body": bool}` and the bytes go from the page cache to the socket
with `sendfile(2)`. Four small wrappers, each around one hypercorn method:

- `HTTPStream.handle` advertises the extension in the scope of HTTP/1.x requests on plain TCP;
- `HTTPStream.app_send` turns the message into a `FileRange` event;
- `H11Protocol.stream_send` counts its bytes against the response's Content-Length in h11 (the
  bytes never pass through h11), then hands the event on;
- `TCPServer.protocol_send` writes it with `os.sendfile` under the connection's send lock, as
  connections.py makes every write: shielded, with a deadline for progress.

The app only uses it for ranges already in the page cache (`sendfile` would otherwise block the
event loop on the disk). `stats()` counts the ranges and bytes this process sent so (GET /api/v1/io).
The wrappers are checked against the pinned hypercorn and h11 versions; `install()` refuses (and
the registry copies bytes as before) if they do not match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import trio

from ncr_trio.http import connections

EXTENSION = "http.response.zerocopysend"

_installed = False
_sent = {"ranges": 0, "bytes": 0}  # updated on the trio thread only


@dataclass(frozen=True)
class FileRange:
    """A body part to send straight from a file: `count` bytes of `fd` from `offset`."""

    stream_id: int
    fd: int
    offset: int
    count: int


def installed() -> bool:
    return _installed


def stats() -> dict[str, int]:
    """File ranges this process has sent with sendfile, and their bytes (a range cut short by a
    client that went away counts what was sent)."""
    return dict(_sent)


def install() -> bool:
    """Patch hypercorn once per process; False when its version is not the one checked here."""
    global _installed
    if _installed:
        return True
    if not connections.versions_ok():
        return False
    import h11
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
    from hypercorn.trio.tcp_server import TCPServer

    original_handle = HTTPStream.handle
    original_app_send = HTTPStream.app_send
    original_stream_send = H11Protocol.stream_send
    original_protocol_send = TCPServer.protocol_send

    async def handle(self: Any, event: Any) -> None:
        await original_handle(self, event)
        scope = getattr(self, "scope", None)
        # The app task is started, not yet run: it sees the extension when it reads its scope.
        if (scope is not None and scope.get("scheme") == "http" and scope.get("http_version") in ("1.0", "1.1")
                and EXTENSION not in scope["extensions"]):
            scope["extensions"][EXTENSION] = {}

    async def app_send(self: Any, message: Any) -> None:
        if message is not None and message.get("type") == EXTENSION and self.state == ASGIHTTPState.RESPONSE:
            count = int(message["count"])
            if count:
                await self.send(FileRange(self.stream_id, int(message["file"]), int(message.get("offset", 0)), count))
            if not message.get("more_body", False):
                await self._send_closed()
            return
        await original_app_send(self, message)

    async def stream_send(self: Any, event: Any) -> None:
        if isinstance(event, FileRange):
            writer = self.connection._writer
            if not isinstance(writer, h11._writers.ContentLengthWriter) or writer._length < event.count:
                if self.connection.their_state == h11.ERROR:
                    return  # the client broke the connection: h11 dropped the response, as hypercorn does
                raise h11.LocalProtocolError("zero-copy bodies need a Content-Length that covers them")
            writer._length -= event.count
            await self.send(event)
            return
        await original_stream_send(self, event)

    async def protocol_send(self: Any, event: Any) -> None:
        if isinstance(event, FileRange):
            await connections.write(self, lambda: _sendfile(self.stream.socket, event))
            return
        await original_protocol_send(self, event)

    HTTPStream.handle = handle  # type: ignore[method-assign]
    HTTPStream.app_send = app_send  # type: ignore[method-assign]
    H11Protocol.stream_send = stream_send  # type: ignore[method-assign]
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    _installed = True
    return True


async def _sendfile(sock: trio.socket.SocketType, part: FileRange) -> None:
    _sent["ranges"] += 1
    await connections.send_nonblocking(
        sock, part.count, lambda fd, done: os.sendfile(fd, part.fd, part.offset + done, part.count - done))
    _sent["bytes"] += part.count


__all__ = ["EXTENSION", "FileRange", "install", "installed", "stats"]
