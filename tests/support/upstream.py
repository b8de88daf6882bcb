"""A loopback upstream for tests: a small trio HTTP/1.1 proxy (raw sockets + h11) in front of a real registry,
which counts what it forwards and misbehaves on demand, as a source registry of an image cache can.

    up = Upstream(target=dist.url).start()               # a subprocess on 127.0.0.1:up.port (up.url, up.host)
    up.faults(Fault("blob", status=429, times=1))        # the next blob request gets 429 + Retry-After
    up.faults(Fault("blob", method="GET", rate=4 << 20)) # blob bodies trickle at 4 MiB/s (replaces the faults)
    up.faults()                                          # no faults
    t = up.traffic()                                     # t.count("GET", "blob"), t.blob_bytes, t.requests[i].range
    up.reset()                                           # counters and request log back to zero
    up.unreachable(); up.reachable()                     # close the listener (connections refused), open it again
    up.stop()                                            # or `with Upstream(...).start() as up:`

Every request is forwarded as it came (method, target, headers with Authorization and Range, streamed body) to
`target`, on a new connection per request; the answer comes back as the registry sent it, headers and body. A
Bearer challenge's realm is rewritten to point at the proxy (the Host the client used), and requests for the
realm's path are forwarded to the realm's origin (the registry itself if it named the realm after the Host it was
asked by, as ncr-trio does): token requests pass through the proxy too, and are counted.

Requests are counted by (method, kind), kind being "manifest" (`/v2/<name>/manifests/<ref>`), "blob"
(`/v2/<name>/blobs/<digest>`), "token" (the realm's path) or "other" (`/v2/`, uploads, tags...), as soon as the
request line is read; `blob_bytes` counts blob body bytes before they are written to the client, so once a client
has read a body, the count already includes it.

A fault applies to the requests it matches (kind, and method if given), to the next `times` of them or until
replaced. `status` answers at once without asking the registry (429 with `Retry-After`, 500...); the others act
on the forwarded answer's body, counting offsets in the body as sent: `rate` trickles it, `truncate` closes the
connection after that many bytes (a short body: the client sees the connection end early), `corrupt` flips the
bits of one byte, `stall_after` sends the headers and that many bytes then nothing more, `hold` never answers.
Both held kinds keep the connection open until the client closes it (or the listener is closed).
`cut_request_after` acts on the request's body instead: after forwarding that many bytes of it, the proxy closes
both connections, as a network dropping an upload does; each request's `received` counts its forwarded body bytes.

The proxy runs as a subprocess (`python -m tests.support.upstream`), so its work never competes with the test for
the GIL; it is driven over HTTP on a second port (`control_port`: JSON), which stays up while the proxy's own
port is closed to play an unreachable source.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import h11
import httpx
import trio

from tests.support.server import _OnLoopback, free_port, terminate

KINDS = ("manifest", "blob", "token", "other")
CHUNK = 1 << 20  # bytes read from a socket at a time
LOG_SIZE = 10_000  # requests kept in the log (the counters count them all)
_MANIFEST = re.compile(r"^/v2/.+/manifests/[^/]+$")
_BLOB = re.compile(r"^/v2/.+/blobs/(?!uploads/?$)[^/]+$")
_REALM = re.compile(r'realm="([^"]*)"')
_ERROR_CODES = {429: "TOOMANYREQUESTS", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NOT_FOUND"}


@dataclass(frozen=True)
class Fault:
    """How to misbehave on the requests of one kind ("manifest", "blob", "token", "other" or "any")."""

    kind: str = "blob"
    method: str | None = None  # only this method ("GET", "HEAD"); any when None
    status: int | None = None  # answer this status at once, without asking the registry
    retry_after: int = 1  # seconds, in the Retry-After of a 429
    rate: int | None = None  # send the body at this many bytes per second
    truncate: int | None = None  # close the connection after this many body bytes
    corrupt: int | None = None  # flip the bits of the body byte at this offset
    stall_after: int | None = None  # send the headers and this many body bytes, then nothing more
    hold: bool = False  # never answer
    cut_request_after: int | None = None  # close both connections after forwarding this many request body bytes
    times: int | None = None  # the next N matching requests only; None: until the faults are replaced
    after: int = 0  # let this many matching requests pass untouched first
    path: str | None = None  # only requests whose target contains this

    def __post_init__(self) -> None:
        if self.kind not in (*KINDS, "any"):
            raise ValueError(f"unknown kind {self.kind!r}")

    def matches(self, method: str, kind: str, target: str = "") -> bool:
        return (self.kind in (kind, "any") and self.method in (None, method)
                and (self.path is None or self.path in target))


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and what it sent back (status None: no answer yet, or none at all)."""

    method: str
    path: str  # with the query
    kind: str
    range: str | None  # the request's Range header
    authorization: str | None  # the request's Authorization header
    status: int | None = None
    sent: int = 0  # body bytes sent to the client
    received: int = 0  # request body bytes forwarded to the registry


@dataclass(frozen=True)
class Traffic:
    """What the proxy has seen since it started (or since `reset`)."""

    counts: dict[tuple[str, str], int]  # (method, kind) -> requests
    blob_bytes: int  # blob body bytes sent to clients
    requests: list[Seen]  # the last LOG_SIZE requests, oldest first

    def count(self, method: str | None = None, kind: str | None = None) -> int:
        """Requests of this method and kind (None: any)."""
        return sum(n for (m, k), n in self.counts.items() if method in (None, m) and kind in (None, k))


@dataclass
class Upstream(_OnLoopback):
    """The test side: starts the proxy subprocess in front of `target` (a registry's base URL) and drives it."""

    target: str
    port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    log_path: Path | None = None  # the subprocess's output (None: the test's own stderr)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Upstream:
        cmd = [sys.executable, "-m", "tests.support.upstream", "--port", str(self.port),
               "--control-port", str(self.control_port), "--target", self.target]
        root = Path(__file__).resolve().parents[2]
        if self.log_path is None:
            self.proc = subprocess.Popen(cmd, cwd=root)
        else:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._control("GET", "/traffic")
                return self
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the upstream proxy on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, f"http://127.0.0.1:{self.control_port}{path}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def faults(self, *faults: Fault) -> None:
        """Replace the faults by these (none: behave)."""
        self._control("PUT", "/faults", [asdict(f) for f in faults])

    def traffic(self) -> Traffic:
        doc = self._control("GET", "/traffic")
        return Traffic({(m, k): n for m, k, n in doc["counts"]}, doc["blob_bytes"],
                       [Seen(**s) for s in doc["requests"]])

    def reset(self) -> None:
        """Counters and the request log back to zero (faults stay)."""
        self._control("POST", "/reset")

    def unreachable(self) -> None:
        """Close the listening socket and every open connection: connections are refused until `reachable`."""
        self._control("POST", "/listening", {"on": False})

    def reachable(self) -> None:
        """Listen again, on the same port."""
        self._control("POST", "/listening", {"on": True})


# -- the proxy (the subprocess) ------------------------------------------------------------------------------------


class _Peer:
    """One side of an HTTP/1.1 exchange: a trio stream and its h11 state machine."""

    def __init__(self, stream: trio.abc.Stream, role: type[h11.CLIENT] | type[h11.SERVER]) -> None:
        self.stream = stream
        self.conn = h11.Connection(role)

    async def next(self) -> Any:
        """The next h11 event (Request, Response, Data, EndOfMessage, ConnectionClosed)."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(bytes(await self.stream.receive_some(CHUNK)))  # no copy: sockets give bytes

    async def send(self, event: Any) -> None:
        for data in self.conn.send_with_data_passthrough(event) or ():  # a body's bytes are not copied again
            await self.stream.send_all(data)

    async def wait_closed(self) -> None:
        """Read and drop whatever comes until the other side closes."""
        while await self.stream.receive_some(CHUNK):
            pass


def kind_of(path: str) -> str:
    """The kind of a registry request by its path (no query)."""
    return "manifest" if _MANIFEST.match(path) else "blob" if _BLOB.match(path) else "other"


def _header(headers: Any, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k.lower() == name), None)


@dataclass
class _Armed:
    fault: Fault
    left: int | None  # requests it still applies to (None: unlimited)
    passed: int = 0  # matching requests let through (see Fault.after)


class Proxy:
    """The proxy's state: faults, counters, the request log and the listener."""

    def __init__(self, port: int, target: str) -> None:
        self.port, self.target = port, urlsplit(target)
        self.faults: list[_Armed] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self.blob_bytes = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.realm: tuple[str, str] | None = None  # (origin, path) of the registry's token realm
        self.listener: trio.CancelScope | None = None
        self.stopped = trio.Event()

    # -- control --

    def traffic(self) -> dict[str, Any]:
        return {"counts": [[m, k, n] for (m, k), n in self.counts.items()], "blob_bytes": self.blob_bytes,
                "requests": list(self.log)}

    def reset(self) -> None:
        self.counts.clear()
        self.blob_bytes = 0
        self.log.clear()

    def set_faults(self, docs: list[dict[str, Any]]) -> None:
        self.faults = [_Armed(f, f.times) for f in (Fault(**d) for d in docs)]

    def take_fault(self, method: str, kind: str, target: str = "") -> Fault | None:
        """The first fault that matches, used up once."""
        armed = next((a for a in self.faults if a.fault.matches(method, kind, target)), None)
        if armed is None:
            return None
        if armed.passed < armed.fault.after:
            armed.passed += 1
            return None
        if armed.left is not None:
            armed.left -= 1
            if armed.left <= 0:
                self.faults.remove(armed)
        return armed.fault

    async def listen(self, nursery: trio.Nursery) -> None:
        """Open the listener (in `nursery`); returns once it accepts connections."""
        if self.listener is None:
            await nursery.start(self._serve)

    async def close(self) -> None:
        """Close the listener and every connection; returns once they are closed."""
        if self.listener is not None:
            self.listener.cancel()
            await self.stopped.wait()

    async def _serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self.listener, self.stopped = scope, trio.Event()
            try:
                listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, self._connection, listeners)
                    task_status.started()
            finally:
                self.listener = None
                self.stopped.set()

    # -- proxying --

    async def _connection(self, stream: trio.SocketStream) -> None:
        client = _Peer(stream, h11.SERVER)
        try:
            async with stream:
                while True:
                    request = await client.next()
                    if not isinstance(request, h11.Request):
                        return
                    if not await self._exchange(client, request):
                        return
                    if client.conn.our_state is not h11.DONE or client.conn.their_state is not h11.DONE:
                        return
                    client.conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, OSError):
            pass
        except Exception:  # noqa: BLE001 - one bad exchange must not stop the proxy
            traceback.print_exc()

    async def _exchange(self, client: _Peer, request: h11.Request) -> bool:
        """Answer one request; False when the connection must end (closed by a fault, or held until closed)."""
        method, target = request.method.decode(), request.target.decode("latin-1")
        path = target.split("?", 1)[0]
        to_realm = self.realm is not None and path == self.realm[1] and not path.startswith("/v2/")
        kind = "token" if to_realm else kind_of(path)
        self.counts[method, kind] += 1
        seen = {"method": method, "path": target, "kind": kind, "range": _header(request.headers, b"range"),
                "authorization": _header(request.headers, b"authorization"), "status": None, "sent": 0,
                "received": 0}
        self.log.append(seen)
        fault = self.take_fault(method, kind, target) or Fault("any")
        if fault.hold:
            await client.wait_closed()
            return False
        if fault.status is not None:
            await _drain(client)
            await self._answer(client, seen, fault.status, fault.retry_after)
            return True
        origin = self.realm[0] if to_realm and self.realm is not None else f"{self.target.scheme}://{self.target.netloc}"
        try:
            with trio.fail_after(30):
                stream = await trio.open_tcp_stream(*_host_port(origin))
        except (OSError, trio.TooSlowError):
            await _drain(client)
            await self._answer(client, seen, 502)
            return True
        async with stream:
            registry = _Peer(stream, h11.CLIENT)
            await registry.send(h11.Request(method=request.method, target=request.target,
                                            headers=request.headers.raw_items()))
            if not await _forward_body(client, registry, seen, fault.cut_request_after):
                return False  # cut: both connections close
            response = await registry.next()
            headers = [(k, self._rewrite_realm(v, request) if k.lower() == b"www-authenticate" else v)
                       for k, v in response.headers.raw_items()]
            seen["status"] = response.status_code
            return await self._relay(client, registry, h11.Response(status_code=response.status_code, headers=headers,
                                                                    reason=response.reason), seen, fault)

    async def _relay(self, client: _Peer, registry: _Peer, response: h11.Response, seen: dict[str, Any],
                     fault: Fault) -> bool:
        """Send the registry's answer to the client, through the fault."""
        await client.send(response)
        # where the body stops: a truncation closes the connection there, a stall holds it open
        stop = min((n for n in (fault.truncate, fault.stall_after) if n is not None), default=None)
        while not (stop is not None and seen["sent"] >= stop):
            event = await registry.next()
            if isinstance(event, h11.EndOfMessage):
                await client.send(event)
                return True
            if not isinstance(event, h11.Data):
                return False
            data: bytes | bytearray = event.data
            sent = seen["sent"]
            if fault.corrupt is not None and sent <= fault.corrupt < sent + len(data):
                data = bytearray(data)
                data[fault.corrupt - sent] ^= 0xFF
            view = memoryview(data)[: None if stop is None else stop - sent]
            step = max(1, fault.rate // 20) if fault.rate else len(view) or 1
            for chunk in (view[i:i + step] for i in range(0, len(view), step)):
                self._count_sent(seen, len(chunk))
                await client.send(h11.Data(data=cast(bytes, chunk)))  # h11 takes any buffer
                if fault.rate:
                    await trio.sleep(len(chunk) / fault.rate)
        if fault.stall_after is not None and (fault.truncate is None or fault.stall_after < fault.truncate):
            await client.wait_closed()
        return False  # the connection is closed under the client

    def _count_sent(self, seen: dict[str, Any], n: int) -> None:
        seen["sent"] += n
        if seen["kind"] == "blob":
            self.blob_bytes += n

    async def _answer(self, client: _Peer, seen: dict[str, Any], status: int, retry_after: int = 1) -> None:
        """An error answer of the proxy's own, in the registry error format."""
        code = _ERROR_CODES.get(status, "UNKNOWN")
        body = json.dumps({"errors": [{"code": code, "message": f"upstream fault: {status}"}]}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if status == 429:
            headers.append(("Retry-After", str(retry_after)))
        seen["status"] = status
        await client.send(h11.Response(status_code=status, headers=headers))
        if seen["method"] != "HEAD":
            self._count_sent(seen, len(body))
            await client.send(h11.Data(data=body))
        await client.send(h11.EndOfMessage())

    def _rewrite_realm(self, value: bytes, request: h11.Request) -> bytes:
        """A challenge's realm, pointed at this proxy (as the client named it); remembers where it pointed."""
        text = value.decode("latin-1")
        m = _REALM.search(text)
        if m is None:
            return value
        realm = urlsplit(m[1])
        host = _header(request.headers, b"host") or f"127.0.0.1:{self.port}"
        # A registry that names its realm after the Host it was asked by (ncr-trio does) names the proxy: it is its own.
        origin = self.target if realm.netloc == host else realm
        self.realm = (f"{origin.scheme}://{origin.netloc}", realm.path)
        own = f"http://{host}{realm.path}" + (f"?{realm.query}" if realm.query else "")
        return (text[:m.start(1)] + own + text[m.end(1):]).encode("latin-1")


def _host_port(origin: str) -> tuple[str, int]:
    u = urlsplit(origin)
    return u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)


async def _pipe_body(source: _Peer, send: Callable[[Any], Awaitable[None]]) -> None:
    """Forward a request's body events up to its EndOfMessage."""
    while True:
        event = await source.next()
        await send(event)
        if isinstance(event, h11.EndOfMessage):
            return


async def _forward_body(client: _Peer, registry: _Peer, seen: dict[str, Any], cut: int | None) -> bool:
    """Forward a request's body, counting it; False when cut after `cut` bytes (the rest is not sent)."""
    while True:
        event = await client.next()
        if isinstance(event, h11.Data) and cut is not None and seen["received"] + len(event.data) > cut:
            part = bytes(event.data[: cut - seen["received"]])
            seen["received"] += len(part)
            if part:
                await registry.send(h11.Data(data=part))
            return False
        if isinstance(event, h11.Data):
            seen["received"] += len(event.data)
        await registry.send(event)
        if isinstance(event, h11.EndOfMessage):
            return True


async def _drain(source: _Peer) -> None:
    async def drop(event: Any) -> None:
        pass

    await _pipe_body(source, drop)


# -- the control endpoint --------------------------------------------------------------------------------------------


async def _control(proxy: Proxy, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
    """One control request (one per connection): answers the traffic as JSON, after the change it asks for."""
    peer = _Peer(stream, h11.SERVER)
    async with stream:
        try:
            request = await peer.next()
            body = b""
            while isinstance(event := await peer.next(), h11.Data):
                body += bytes(event.data)
            route = (request.method.decode(), request.target.decode())
            doc: Any = json.loads(body) if body else None
            if route == ("PUT", "/faults"):
                proxy.set_faults(doc)
            elif route == ("POST", "/reset"):
                proxy.reset()
            elif route == ("POST", "/listening"):
                await (proxy.listen(nursery) if doc["on"] else proxy.close())
            elif route != ("GET", "/traffic"):
                raise ValueError(f"no control {route}")
            status, out = 200, json.dumps(proxy.traffic()).encode()
        except Exception as e:  # noqa: BLE001 - told to the test, the proxy goes on
            status, out = 400, json.dumps({"error": repr(e)}).encode()
        await peer.send(h11.Response(status_code=status, headers=[("Content-Type", "application/json"),
                                                                  ("Content-Length", str(len(out)))]))
        await peer.send(h11.Data(data=out))
        await peer.send(h11.EndOfMessage())


async def serve(port: int, control_port: int, target: str) -> None:
    """The proxy on 127.0.0.1:`port` in front of `target`, driven on 127.0.0.1:`control_port`."""
    proxy = Proxy(port, target)
    async with trio.open_nursery() as nursery:
        await proxy.listen(nursery)
        controls = await trio.open_tcp_listeners(control_port, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, lambda s: _control(proxy, nursery, s), controls)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.support.upstream", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--target", required=True, help="the registry's base URL, e.g. http://127.0.0.1:5000")
    a = p.parse_args()
    trio.run(serve, a.port, a.control_port, a.target)


if __name__ == "__main__":
    main()
