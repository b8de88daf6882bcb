"""Accounts with access keys, the admin's view of a repository, and throwaway TLS material.

For the tests that log real clients in (tests/test_client_logins.py, tests/test_tls.py): each
test makes a user of its own, holding one access key and (optionally) one role, and checks
what clients did through the admin's eyes (token auth as `admin`), never through the clients.
"""

from __future__ import annotations

import itertools
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import Server

# Server environment for files that log in with wrong or revoked secrets on purpose: every client
# here is 127.0.0.1, and by default 3 failed logins slow down, and 10 lock out, that address for
# 15 minutes (login throttling, ncr_trio/auth/throttle.py); the tests would lock each other out.
NO_LOGIN_THROTTLE = {"NCR_LOGIN_SLOW_AFTER": "100000", "NCR_LOGIN_LOCK_AFTER": "100000"}

_serial = itertools.count(1)


@dataclass(frozen=True)
class Account:
    """A user and one access key of theirs: clients log in with `key_id` / `secret`."""

    user: str
    password: str
    key_id: str
    secret: str


def new_account(server: Server, prefix: str, role: str | None = None, registry: str | None = None) -> Account:
    """A new user (`<prefix>-<n>`), created by the admin, with one access key and `role` on `registry`."""
    user = f"{prefix}-{next(_serial)}"
    password = f"{user}-password-0"
    assert role is None or registry is not None
    key = server.new_user(user, {registry: role} if registry and role else None, password, key=f"{user} test key")
    return Account(user, password, key["id"], key["secret"])


def admin_get(server: Server, path: str, accept: str | None = None) -> httpx.Response:
    """GET a registry API path as the admin (token auth, whatever the path's scope)."""
    with server.client() as client:
        return client.get(path, headers={"Accept": accept} if accept else {})


def admin_tags(server: Server, repo: str) -> list[str]:
    """The repository's tags as the admin sees them ([] for a repository that does not exist)."""
    r = admin_get(server, f"/v2/{repo}/tags/list")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, f"GET tags of {repo}: {r.status_code} {r.text[:300]}"
    return sorted(r.json().get("tags") or [])


MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def admin_manifest(server: Server, repo: str, reference: str) -> bytes | None:
    """The stored manifest bytes as the admin gets them, or None when there is none."""
    r = admin_get(server, f"/v2/{repo}/manifests/{reference}", MANIFEST_ACCEPT)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, f"GET manifest {repo}:{reference}: {r.status_code} {r.text[:300]}"
    return r.content


def stored_logins(home: Path) -> dict[str, dict[str, Any]]:
    """What clients stored in a Clients home: host -> entry, from docker's config.json and
    containers' auth.json (the two files every client here writes to or reads from)."""
    found: dict[str, dict[str, Any]] = {}
    for path in (home / ".docker/config.json", home / ".config/containers/auth.json"):
        if path.exists():
            for host, entry in (json.loads(path.read_text() or "{}").get("auths") or {}).items():
                found.setdefault(host, {}).update(entry)
    return found


# -- TLS --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    chain: Path  # the server's certificate chain (PEM)
    key: Path  # its private key (PEM)
    ca: Path  # the throwaway CA's certificate (PEM): what clients must be told to trust

    @property
    def server_tls(self) -> tuple[Path, Path, Path]:
        return self.chain, self.key, self.ca


def issue_tls(directory: Path, *identities: str) -> TLSFiles:
    """A throwaway CA (trustme) and a server certificate for `identities` (IP or DNS SANs)."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(*identities)
    files = TLSFiles(directory / "server-chain.pem", directory / "server-key.pem", directory / "ca.pem")
    cert.private_key_pem.write_to_path(str(files.key))
    files.chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine outside 127.0.0.0/8 that a server can listen on, if any.

    (No packet is sent: connecting a UDP socket only picks the source address of the route.)
    """
    for probe in ("192.0.2.1", "10.255.255.255", "172.16.0.1"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                address = str(s.getsockname()[0])
        except OSError:
            continue
        if not address.startswith("127.") and address != "0.0.0.0":
            try:
                with socket.socket() as s:
                    s.bind((address, 0))
            except OSError:
                continue
            return address
    return None
