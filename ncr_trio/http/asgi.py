"""A thin request/response layer over raw ASGI.

Request bodies are pulled from ASGI `receive` one message at a time, so backpressure reaches the
socket and a 1 GiB push never sits in memory (Quart's request object buffers whole bodies: the
registry API does not use it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from ncr_trio.auth.control import ANONYMOUS, Principal, reachable
from ncr_trio.errors import RegistryError
from ncr_trio.meta import RegistryInfo
from ncr_trio.networks import client_text
from ncr_trio.storage import FileSpan

ZEROCOPY = "http.response.zerocopysend"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientDisconnected(Exception):
    """The client went away mid-request; nothing can be answered."""


@dataclass
class Request:
    scope: Scope
    receive: Receive
    params: dict[str, str] = field(default_factory=dict)
    principal: Principal = ANONYMOUS  # set by the access gate before the handler runs
    private_listener: bool = False  # the request came in on a private listener (set by the gate)
    registry: RegistryInfo | None = None  # the registry the repository in the path belongs to (set by the gate)
    route: str = "none"  # the name of the route that serves it (set by dispatch; a metrics label)
    _consumed: bool = False
    _ended: bool = False  # the body's last message (or the client's disconnect) has been received

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    @property
    def client(self) -> str | None:
        """The client's IP address (an IPv4-mapped one as its IPv4 address: networks.py)."""
        client = self.scope.get("client")
        return client_text(str(client[0])) if client else None

    def reaches(self, info: RegistryInfo) -> bool:
        """Whether this request's client, on this listener, may reach the registry `info`."""
        return reachable(info, self.private_listener, self.client)

    def query_all(self, name: str) -> list[str]:
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get(name, [])
        # Every parameter of the API is printable ASCII by its grammar (names, tags, digests, media
        # types, numbers, user names, patterns); anything else, once echoed into a header or handed to
        # the database (NUL), would break it.
        if not all(v.isascii() and v.isprintable() for v in values):
            raise RegistryError("INVALID_REQUEST", f"the {name[:40]} query parameter must be printable ASCII")
        return values

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.scope["headers"]:
            if k == key:
                return bytes(v).decode("latin-1")
        return None

    @property
    def zero_copy(self) -> bool:
        """The server can send file ranges without copying them (see http/zerocopy.py)."""
        return ZEROCOPY in self.scope.get("extensions", {})

    def query(self, name: str) -> str | None:
        values = self.query_all(name)
        return values[0] if values else None

    def query_int(self, name: str) -> int | None:
        """A non-negative integer in ASCII digits, of any size: where it meets a 64-bit database
        column, the caller decides what a larger one means."""
        value = self.query(name)
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()):  # int() would take " 5", "+5", "1_000", "٣"
            raise RegistryError("PAGINATION_NUMBER_INVALID", f"{name} must be a non-negative integer")
        try:
            return int(value)
        except ValueError:  # more digits than Python converts (4300)
            raise RegistryError("PAGINATION_NUMBER_INVALID", f"{name} has too many digits") from None

    def content_length(self) -> int | None:
        value = self.header("content-length")
        if value is None:
            return None
        if not value.strip().isdigit():
            raise RegistryError("SIZE_INVALID", f"bad Content-Length {value[:40]!r}")
        return int(value)

    async def body(self) -> AsyncIterator[bytes]:
        """The body, message by message, pulled as the consumer asks for it."""
        if self._consumed:
            return
        self._consumed = True
        while True:
            message = await self._next()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if self._ended:
                return

    async def _next(self) -> Message:
        message = await self.receive()
        self._ended = message["type"] == "http.disconnect" or not message.get("more_body", False)
        return message

    @property
    def unread(self) -> bool:
        """The client sent, or is sending, body bytes that were not read to the end."""
        return not self._ended and any(k == b"transfer-encoding" or (k == b"content-length" and v.strip() != b"0")
                                       for k, v in self.scope["headers"])

    async def discard(self) -> None:
        """Read what is left of the body, and drop it, until its end or the client's disconnect."""
        while not self._ended:
            await self._next()

    async def read(self, limit: int) -> bytes:
        """A small body, whole; SIZE_INVALID (413) past `limit` bytes."""
        declared = self.content_length()
        if declared is not None and declared > limit:
            raise RegistryError("SIZE_INVALID", f"the body is limited to {limit} bytes", status=413)
        parts: list[bytes] = []
        total = 0
        async for chunk in self.body():
            total += len(chunk)
            if total > limit:
                raise RegistryError("SIZE_INVALID", f"the body is limited to {limit} bytes", status=413)
            parts.append(chunk)
        return b"".join(parts)

    async def drain(self) -> None:
        async for _ in self.body():
            pass


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body may mix bytes and file spans (sent with `http.response.zerocopysend`).
    body: bytes | AsyncIterator[bytes | FileSpan] = b""
    length: int | None = None  # Content-Length of a streamed body

    async def send(self, send: Send, head_only: bool = False) -> None:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            headers.setdefault("Content-Length", str(len(self.body)))
        elif self.length is not None:
            headers["Content-Length"] = str(self.length)
        await send({"type": "http.response.start", "status": self.status, "headers": _encode(headers.items())})
        if head_only or isinstance(self.body, bytes):
            if isinstance(self.body, AsyncIterator):
                await _close(self.body)
            await send({"type": "http.response.body", "body": b"" if head_only else self.body})
            return
        try:
            async for chunk in self.body:
                if isinstance(chunk, FileSpan):
                    await send({"type": ZEROCOPY, "file": chunk.fd, "offset": chunk.offset, "count": chunk.count,
                                "more_body": True})
                else:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await _close(self.body)
        await send({"type": "http.response.body", "body": b""})


async def _close(body: AsyncIterator[Any]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()


def _encode(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> Response:
    return Response(status, {"Content-Type": content_type, **(headers or {})}, body)


def error_response(error: RegistryError) -> Response:
    return json_response(error.status, error.body(), error.headers)


__all__ = ["ClientDisconnected", "Receive", "Request", "Response", "Scope", "Send", "error_response", "json_response"]
