"""Which listener a request came in on: public (`listen`) or private (`private_listen`).

A listener is an address *and* a port: `--listen 203.0.113.5:443 --private-listen 10.0.0.5:443` are two
sockets on one port. A connection's local address (ASGI `scope["server"]`, the accepted socket's
`getsockname()`) names the socket that accepted it the way the kernel chose it: a socket bound to that
exact address and port if there is one, else the wildcard socket (`0.0.0.0`, `::`) of that family on that
port. A dual-stack `::` socket reports IPv4 clients as `::ffff:a.b.c.d`, an IPv4 socket as `a.b.c.d`, so
the reported family also tells the two apart. Binds are parsed as hypercorn parses them
(`host:port`, `[v6]:port`, `unix:path`); a host name is resolved once, at start.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_UNSPECIFIED = {4: ipaddress.ip_address("0.0.0.0"), 6: ipaddress.ip_address("::")}


def _addresses(host: str) -> list[Address]:
    """The addresses a bind's host stands for (hypercorn binds IPv6 when the host holds a ':')."""
    host = host.split("%", 1)[0]
    try:
        return [ipaddress.ip_address(host or "0.0.0.0")]
    except ValueError:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
        except OSError:
            return []
        return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def parse_binds(binds: Iterable[str]) -> tuple[set[tuple[Address, int]], bool]:
    """(address, port) of every TCP bind, and whether any bind is a unix socket."""
    sockets: set[tuple[Address, int]] = set()
    unix = False
    for bind in binds:
        if bind.startswith("unix:"):
            unix = True
            continue
        if bind.startswith("fd://"):
            continue
        host, _, port = bind.replace("[", "").replace("]", "").rpartition(":")
        if not port.isdigit():
            continue
        sockets.update((address, int(port)) for address in _addresses(host))
    return sockets, unix


class Listeners:
    def __init__(self, public: Iterable[str], private: Iterable[str]) -> None:
        public_sockets, public_unix = parse_binds(public)
        self._private, private_unix = parse_binds(private)
        self._bound = public_sockets | self._private
        self._unix_private = private_unix and not public_unix

    def private(self, server: object) -> bool:
        """Whether the connection whose local address is `server` ((host, port) or None) was accepted by
        a private listener."""
        if not isinstance(server, (tuple, list)) or len(server) < 2 or server[1] is None:
            return self._unix_private  # a unix socket: the server reports no address
        try:
            address = ipaddress.ip_address(str(server[0]).split("%", 1)[0])
            port = int(server[1])
        except ValueError:
            return False
        exact = (address, port)
        if exact in self._bound:
            return exact in self._private
        return (_UNSPECIFIED[address.version], port) in self._private


__all__ = ["Listeners", "parse_binds"]
