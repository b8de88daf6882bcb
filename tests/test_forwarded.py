"""X-Forwarded-For is believed from trusted proxies only, read from the right (ncr_trio/http/forwarded.py);
tests/test_cluster.py shows it through HAProxy."""

from __future__ import annotations

import pytest

from ncr_trio.http.forwarded import ForwardedFor

LB = "10.0.0.5"


def xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"Host", b"registry"), *((b"X-Forwarded-For", v.encode()) for v in values)]


@pytest.mark.parametrize(("peer", "headers", "client"), [
    (LB, xff("198.51.100.7"), "198.51.100.7"),                       # one balancer
    (LB, xff("203.0.113.9, 198.51.100.7"), "198.51.100.7"),          # the client's own entry is not believed
    (LB, xff("203.0.113.9", "198.51.100.7"), "198.51.100.7"),        # repeated headers are one list
    (LB, xff("198.51.100.7, 10.0.0.6"), "198.51.100.7"),             # two balancers, both trusted
    (LB, xff("10.0.0.7, 10.0.0.6"), "10.0.0.7"),                     # only proxies: the leftmost
    (LB, xff("not-an-address, 10.0.0.6"), "10.0.0.6"),               # garbage: the last proxy's peer
    (LB, xff("fe80::1%eth0"), "fe80::1"),
    (LB, [], LB),                                                    # no header: the balancer itself
    ("198.51.100.7", xff("10.0.0.9"), "198.51.100.7"),               # not a proxy: its header is ignored
    (None, xff("198.51.100.7"), None),
])
def test_the_client_is_the_rightmost_untrusted_hop(peer: str | None, headers: list[tuple[bytes, bytes]],
                                                   client: str | None) -> None:
    assert ForwardedFor(["10.0.0.0/29", ""]).client(peer, headers) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    forwarded = ForwardedFor([])
    assert not forwarded
    assert forwarded.client(LB, xff("198.51.100.7")) == LB


def test_a_bad_block_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="trusted_proxies: '10.0.0.300/8'"):
        ForwardedFor(["10.0.0.0/8", "10.0.0.300/8"])
