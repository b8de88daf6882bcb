"""The client's address behind a load balancer: X-Forwarded-For, believed from trusted proxies only.

Behind HAProxy (deploy/haproxy.cfg sets `option forwardfor`) every request reaches a node from the
balancer's address. The access gate's CIDR allowlists, the login throttle (which also counts failures
per client address: one guesser would lock out everyone behind the balancer) and the audit log need
the client's own. With `trusted_proxies` set (CIDR blocks of the balancers), a request whose peer is
in them is taken as coming from the last address X-Forwarded-For names that is not itself a trusted
proxy, read from the right: each proxy appends the address it saw, so only the right end is known
true; what a client wrote on the left is never believed. A peer outside those blocks is the client,
whatever header it sends. Empty (the default): the peer, always.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ncr_trio.networks import Address, Networks, client_address

_HEADER = b"x-forwarded-for"


class ForwardedFor:
    def __init__(self, trusted: Sequence[str]) -> None:
        """`trusted`: the load balancers' CIDR blocks."""
        self.networks = Networks(trusted, "trusted_proxies")

    def __bool__(self) -> bool:
        return bool(self.networks)

    def _trusted(self, address: Address | None) -> bool:
        return address in self.networks

    def client(self, peer: str | None, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The client's address, given the connection's peer and the request's headers."""
        if peer is None or not self._trusted(client_address(peer)):
            return peer
        hops = [hop for name, value in headers if name.lower() == _HEADER
                for hop in bytes(value).decode("latin-1").split(",")]
        client = peer
        for hop in reversed(hops):
            address = client_address(hop)
            if address is None:  # not written by a proxy of ours: the last proxy's peer is all we know
                return client
            client = str(address)
            if not self._trusted(address):
                return client
        return client


__all__ = ["ForwardedFor"]
