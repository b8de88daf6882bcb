"""Requests to addresses users choose (webhook URLs, image caches' source registries): which
addresses the server may connect to, and requests that connect only to an address checked first.

`webhook_allowed_networks` and `cache_allowed_networks` (config) list CIDR blocks, and `public` for
every globally routable unicast address: not loopback, private, link-local, shared (100.64.0.0/10),
multicast, unspecified, reserved or documentation ranges. An address is judged by where it leads:
an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) or a NAT64 one (`64:ff9b::a00:1`) is judged as the
IPv4 address in it, and a 6to4 address (`2002:7f00:1::`) needs its IPv4 address allowed as well.

Each request resolves its host once, and every address the name has must be allowed: one that is
not refuses the request (a name with a public and a private address is not sent to at all). The
connection then goes to a checked address: the URL's host becomes the address, while the Host
header and TLS (server name and certificate check) keep the name. Nothing resolves the name again
in between, so DNS rebinding (a name that answers a public address to the check and loopback to
the connection) gets no second answer. Redirects are never followed here: a 3xx is the answer (the
image cache follows a blob's redirects itself, each hop through `send` again). A client that keeps
connections (pooled by address) must only ever send to one name; `client()` keeps none unless
told, so one opened for a name never carries a request for another name.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import trio

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PUBLIC = "public"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressError(Exception):
    """A request that was not sent: its host does not resolve, or leads somewhere not allowed."""


class ResolveError(EgressError):
    pass


class TargetRefused(EgressError):
    pass


def _leads_to(address: Address) -> Address:
    """The address a connection to `address` reaches, as far as the address itself says."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address


def is_public(address: Address) -> bool:
    """Globally routable unicast (Python's `is_global` alone lets multicast and IPv6 site-local pass)."""
    a = _leads_to(address)
    return a.is_global and not (a.is_multicast or a.is_reserved or a.is_unspecified or a.is_loopback
                                or a.is_link_local or a.is_private
                                or (isinstance(a, ipaddress.IPv6Address) and a.is_site_local))


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[Address]:
    """The distinct addresses of getaddrinfo's answer, in its order (IPv6 zones dropped)."""
    found: dict[Address, None] = {}
    for info in infos:
        found[ipaddress.ip_address(str(info[4][0]).partition("%")[0])] = None
    return list(found)


@dataclass(frozen=True)
class NetworkPolicy:
    """Where outgoing requests may connect, from a setting like `webhook_allowed_networks`."""

    public: bool
    networks: tuple[Network, ...]
    setting: str

    @classmethod
    def parse(cls, entries: Iterable[str], setting: str) -> NetworkPolicy:
        public, networks = False, []
        for entry in (e.strip() for e in entries):
            if entry.lower() == PUBLIC:
                public = True
            elif entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{setting}: {entry!r} is neither a CIDR block nor {PUBLIC!r}") from None
        return cls(public, tuple(networks), setting)

    def allows(self, address: Address) -> bool:
        a = _leads_to(address)
        ok = (self.public and is_public(a)) or any(a.version == n.version and a in n for n in self.networks)
        if ok and isinstance(a, ipaddress.IPv6Address) and a.sixtofour is not None:
            return self.allows(a.sixtofour)
        return ok

    def _check(self, host: str, addresses: list[Address]) -> None:
        for a in addresses:
            if not self.allows(a):
                named = "" if str(a) == host else f" ({host})"
                raise TargetRefused(f"address {a}{named} is outside the networks allowed by {self.setting}")

    def check_literal(self, host: str) -> None:
        """Refuse `host` if it is an address outside the allowed networks, in any form the resolver
        reads as one (`127.1`, `2130706433`, `::ffff:127.0.0.1`); a name is checked when resolved."""
        try:
            infos = socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)  # never asks DNS
        except (socket.gaierror, UnicodeError, ValueError):
            return
        self._check(host, _addresses(infos))

    async def resolve(self, host: str, port: int) -> list[Address]:
        """Every address of `host`, each allowed (TargetRefused if any is not)."""
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise ResolveError(f"cannot resolve {host}: {e}") from None
        addresses = _addresses(infos)
        self._check(host, addresses)
        return addresses


def client(timeout: float | httpx.Timeout, keep_connections: bool = False, *, ca_cert: str = "",
           insecure: bool = False) -> httpx.AsyncClient:
    """A client for `send`: no redirects followed, no connection kept for another request unless
    `keep_connections` (for a client that only ever sends to one name). https verifies certificates
    against the system's and `ca_cert` (PEM), or not at all when `insecure`."""
    limits = httpx.Limits() if keep_connections else httpx.Limits(max_keepalive_connections=0)
    verify: bool | ssl.SSLContext = True
    if insecure:
        verify = False
    elif ca_cert:
        verify = ssl.create_default_context()
        verify.load_verify_locations(cadata=ca_cert)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, limits=limits, verify=verify)


async def send(client: httpx.AsyncClient, policy: NetworkPolicy, method: str, url: str | httpx.URL,
               headers: Mapping[str, str], body: bytes | httpx.AsyncByteStream | None = None) -> httpx.Response:
    """Send a request to `url` through an address `policy` allows (the name's addresses in turn
    while connecting fails); the answer, its body not read yet: the caller reads or closes it.
    A streamed `body` (an upload's chunk) is read once, as it is sent: a connection refused before
    sending reads none of it, so trying the name's next address is still sound."""
    target = httpx.URL(url)
    host = target.raw_host.decode("ascii")
    addresses = await policy.resolve(host, target.port or (443 if target.scheme == "https" else 80))
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    headers = {**headers, "Host": target.netloc.decode("ascii")}
    for i, address in enumerate(addresses):
        streamed = isinstance(body, httpx.AsyncByteStream)
        request = client.build_request(method, target.copy_with(host=str(address)), headers=headers,
                                       content=None if streamed else body, extensions=extensions)
        if isinstance(body, httpx.AsyncByteStream):
            request.stream = body  # sent as it is read (the caller gives its Content-Length)
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError:
            if i + 1 == len(addresses):
                raise
            continue  # the name's next address
    raise ResolveError(f"{host} has no address")  # getaddrinfo answers at least one or raises


async def post(client: httpx.AsyncClient, policy: NetworkPolicy, url: str, body: bytes,
               headers: Mapping[str, str]) -> httpx.Response:
    """POST `body` to `url` through an address `policy` allows; the answer (its body unread)."""
    response = await send(client, policy, "POST", url, headers, body)
    await response.aclose()
    return response


__all__ = ["PUBLIC", "EgressError", "NetworkPolicy", "ResolveError", "TargetRefused", "client", "is_public", "post",
           "send"]
