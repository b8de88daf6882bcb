"""Real webhook receivers for tests: small threaded HTTP servers on 127.0.0.1 that record every
request (method, path, headers, body, and what they answered).

A receiver can be scripted: `fail_next(n)` answers the next n requests with 500, `redirect_next(n, url)`
with a redirect to `url`, `hold()` keeps
requests waiting until the test releases them, and `stop()` / `start()` take it down and bring it
back on the same port. `Receiver(slack=True)` is shaped like a Slack incoming webhook: it wants a
JSON object with a `text` string and answers `ok` (400 `invalid_payload` otherwise).
`Receiver(tls=(chain, key))` speaks HTTPS with that certificate (its `url` then names `localhost`).

They listen on loopback, which ncr-trio refuses to deliver to by default: a server that sends to
them must allow it (`ALLOW_RECEIVERS` in its environment).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.server import free_port

# The environment of a server whose webhooks go to these receivers.
ALLOW_RECEIVERS = {"NCR_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"}
HOLD_AT_MOST = 5.0  # a held request is answered after this long even if nobody releases it


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    answered: int  # the status the receiver answered with

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.answered < 300


class Receiver:
    def __init__(self, *, slack: bool = False, port: int | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.slack = slack
        self.tls = tls
        self.port = port or free_port()
        self.requests: list[Received] = []
        self.holding = threading.Event()  # set once a request is being held
        self._changed = threading.Condition()
        self._script: list[tuple[int, str | None]] = []  # the next answers: status, Location
        self._release: threading.Event | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        path = "/services/T0001/B0001/xoxo" if self.slack else "/hook"
        return f"https://localhost:{self.port}{path}" if self.tls else f"http://127.0.0.1:{self.port}{path}"

    # -- script -----------------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 500) -> None:
        with self._changed:
            self._script.extend([(status, None)] * n)

    def redirect_next(self, n: int, location: str, status: int = 307) -> None:
        with self._changed:
            self._script.extend([(status, location)] * n)

    def hold(self) -> threading.Event:
        """Hold every request from now on until the returned event is set (or HOLD_AT_MOST passed)."""
        release = threading.Event()
        with self._changed:
            self._release = release
        return release

    # -- look -------------------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0) -> list[Received]:
        """The requests so far, once `predicate` holds for them (AssertionError after `timeout`)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self.requests)), timeout=timeout):
                raise AssertionError(f"receiver on port {self.port} did not get what was expected in {timeout}s; "
                                     f"got {[(r.headers.get('x-ncr-event'), r.answered) for r in self.requests]}")
            return list(self.requests)

    def delivered(self) -> list[Received]:
        with self._changed:
            return [r for r in self.requests if r.ok]

    # -- run --------------------------------------------------------------------------------------
    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._answer(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=f"receiver-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            if self._release is not None:
                self._release.set()
        self.stop()

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._changed:
            status, location = self._script.pop(0) if self._script else (200, None)
            release = self._release
        answer = b"ok" if self.slack else b'{"received": true}'
        if status == 200 and self.slack:
            try:
                message = json.loads(body)
                valid = isinstance(message, dict) and isinstance(message.get("text"), str) and message["text"]
            except ValueError:
                valid = False
            if not valid:
                status, answer = 400, b"invalid_payload"
        if release is not None:
            self.holding.set()
            release.wait(HOLD_AT_MOST)
        received = Received(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()},
                            body, status)
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain" if self.slack else "application/json")
        handler.send_header("Content-Length", str(len(answer)))
        if location is not None:
            handler.send_header("Location", location)
        handler.end_headers()
        handler.wfile.write(answer)
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()


__all__ = ["ALLOW_RECEIVERS", "HOLD_AT_MOST", "Received", "Receiver"]
