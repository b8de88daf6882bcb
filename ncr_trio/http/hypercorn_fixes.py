"""A fix to hypercorn 0.18's trio connection, installed in every worker process.

hypercorn closes a connection (`TCPServer._close`: `send_eof`, then `aclose`) outside the lock its
writes take, and trio's `send_eof` holds the stream's send side across a checkpoint. A write that
runs meanwhile (the response of the request being served, or hypercorn's own 400 when a client
half-closes in the middle of a body) raises `trio.BusyResourceError`, which hypercorn does not
expect: from the application's task it is a traceback and a lost answer, from the connection's reader
task it escapes the listener's nursery and stops the whole worker. One client sending
`Content-Length: 5`, two bytes and a FIN could take a worker down.

A write that finds the stream busy is a write to a connection that is closing: it is treated as
hypercorn treats a write to a connection the client has closed.
"""

from __future__ import annotations

from typing import Any

import trio

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from hypercorn.events import Closed
    from hypercorn.trio.tcp_server import TCPServer

    original_protocol_send = TCPServer.protocol_send

    async def protocol_send(self: Any, event: Any) -> None:
        try:
            await original_protocol_send(self, event)
        except trio.BusyResourceError:  # `_close` is shutting the stream down in another task
            await self.protocol.handle(Closed())

    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    _installed = True


__all__ = ["install"]
