"""Client addresses and the CIDR blocks that name clients: a registry's allowlist (`allowed_cidrs`),
`trusted_proxies` and `metrics_allowed_networks` are all checked here, by the same code.

An address is read as a client's: a zone (`%eth0`) is dropped, and an IPv4-mapped IPv6 address is the
IPv4 address it carries (a dual-stack `::` listener reports IPv4 clients as `::ffff:a.b.c.d`, and an
allowlist written `10.0.0.0/8` must hold them). Outgoing requests have their own rules
(registry/egress.py: NAT64 and 6to4 addresses are looked through there, for another reason)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(text: str | None) -> Address | None:
    """The address a client's text stands for, or None if it is not one."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def client_text(text: str | None) -> str | None:
    """A client's address as the audit log and the login throttle record it: `::ffff:a.b.c.d` (an IPv4
    client of a dual-stack listener) is `a.b.c.d`, as it is for the allowlists; text that is no address
    is kept as it is."""
    address = client_address(text)
    return text if address is None else str(address)


class Networks:
    """The CIDR blocks of a setting that names clients: a bare address is its /32 or /128, blanks are
    skipped, and ValueError names a bad block."""

    def __init__(self, blocks: Sequence[str], setting: str) -> None:
        self.networks: list[Network] = []
        for cidr in (c.strip() for c in blocks):
            if not cidr:
                continue
            try:
                self.networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(f"{setting}: {cidr[:60]!r} is not a CIDR block") from None

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: Address | str | None) -> bool:
        if address is None or isinstance(address, str):
            address = client_address(address)
        return address is not None and any(address in n for n in self.networks)


@functools.lru_cache(maxsize=4096)
def allowlist(blocks: tuple[str, ...]) -> Networks:
    """A registry's `allowed_cidrs`, parsed once (they were checked when stored: registry/namespaces.py)."""
    return Networks(blocks, "allowed_cidrs")


__all__ = ["Address", "Network", "Networks", "allowlist", "client_address", "client_text"]
