"""A counting TCP forwarder on 127.0.0.1: put it in front of a server to see what went through.

It forwards bytes unchanged in both directions (so HTTP, signatures and keep-alive are untouched) and
counts the bytes the server sent back and the HTTP status lines of a given status among them. Tests use
it in front of ncr-trio to show where blob bytes came from: through a 307 redirect, the client fetched
them from the object store, and the registry sent only headers.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

from tests.support.server import free_port

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@dataclass
class CountingProxy:
    target_port: int
    port: int = field(default_factory=free_port)
    downstream_bytes: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None

    def start(self) -> CountingProxy:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def reset(self) -> None:
        with self._lock:
            self.downstream_bytes = 0
            self.statuses = {}

    def count(self, status: int) -> int:
        with self._lock:
            return self.statuses.get(status, 0)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        tail = b""
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if downstream:
                    seen = tail + data
                    # A status line split across reads is found once whole; one counted already is not
                    # counted again (it lies in the part kept as tail only if it is not yet whole).
                    found = [int(m.group(1)) for m in _STATUS.finditer(seen) if m.end() > len(tail)]
                    tail = seen[-15:]
                    with self._lock:
                        self.downstream_bytes += len(data)
                        for status in found:
                            self.statuses[status] = self.statuses.get(status, 0) + 1
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()


__all__ = ["CountingProxy"]
