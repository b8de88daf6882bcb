"""Untimed registry calls (httpx) that set up and check what the timed loads then drive.

Each takes the server's `Access` (benchmarks/auth.py): a bearer token per repository for ncr-trio, nothing for
Distribution."""

from __future__ import annotations

import os
from urllib.parse import urljoin

import httpx

from benchmarks.auth import Access
from benchmarks.blobs import OCI_MANIFEST, SmallImage, sha256_digest

TIMEOUT = httpx.Timeout(60.0)


class RegistryError(RuntimeError):
    pass


def _expect(r: httpx.Response, *codes: int) -> httpx.Response:
    if r.status_code not in codes:
        raise RegistryError(f"{r.request.method} {r.request.url.path} -> {r.status_code} (want {codes}): {r.text[:300]}")
    return r


def absolute(base: str, location: str) -> str:
    """A Location header may be absolute or relative to the registry."""
    return urljoin(base + "/", location)


def with_digest(url: str, digest: str) -> str:
    """The upload URL with `digest=` added, keeping the server's own query (e.g. Distribution's _state) as is."""
    return f"{url}{'&' if '?' in url else '?'}digest={digest}"


def resolve_location(base: str, location: str | None, what: str) -> str:
    if not location:
        raise RegistryError(f"{what}: response without Location")
    return absolute(base, location)


def elsewhere(repo: str) -> str:
    """A repository nothing is pushed to, where the HEAD figure's blob must be unknown."""
    return repo + "-elsewhere"


def start_upload(base: str, repo: str, auth: Access) -> str:
    r = _expect(httpx.post(f"{base}/v2/{repo}/blobs/uploads/", headers=auth.headers(repo), timeout=TIMEOUT), 202)
    return resolve_location(base, r.headers.get("location"), "POST blobs/uploads/")


def push_small_blob(base: str, repo: str, data: bytes, auth: Access) -> str:
    digest = sha256_digest(data)
    url = with_digest(start_upload(base, repo, auth), digest)
    _expect(httpx.put(url, content=data, headers={"Content-Type": "application/octet-stream", **auth.headers(repo)},
                      timeout=TIMEOUT), 201)
    return digest


def warm_up(base: str, repo: str, auth: Access, connections: int = 16, blobs: int = 8) -> None:
    """Untimed requests before a memory baseline, on new connections, so that every worker process has
    imported and built what serving and pushing need (ncr-trio's spawned workers build the app on first use)."""
    for _ in range(connections):
        _expect(httpx.get(f"{base}/v2/", headers=auth.headers(repo), timeout=TIMEOUT), 200)
    for _ in range(blobs):
        push_small_blob(base, repo, os.urandom(64 * 1024), auth)


def blob_exists(base: str, repo: str, digest: str, auth: Access) -> bool:
    r = _expect(httpx.head(f"{base}/v2/{repo}/blobs/{digest}", headers=auth.headers(repo), timeout=TIMEOUT), 200, 404)
    return r.status_code == 200


def check_blob_head(base: str, repo: str, digest: str, size: int, auth: Access) -> None:
    r = _expect(httpx.head(f"{base}/v2/{repo}/blobs/{digest}", headers=auth.headers(repo), timeout=TIMEOUT), 200)
    if int(r.headers.get("content-length", -1)) != size:
        raise RegistryError(f"HEAD blob {digest}: Content-Length {r.headers.get('content-length')}, want {size}")


def push_small_image(base: str, repo: str, tag: str, image: SmallImage, auth: Access) -> None:
    """Push the image, then check what the request-rate figures will hit answers as it should (the repository
    `elsewhere(repo)` needs a token too)."""
    for data in image.blobs():
        push_small_blob(base, repo, data, auth)
    _expect(
        httpx.put(f"{base}/v2/{repo}/manifests/{tag}", content=image.manifest,
                  headers={"Content-Type": OCI_MANIFEST, **auth.headers(repo)}, timeout=TIMEOUT),
        201,
    )
    r = _expect(httpx.get(f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST, **auth.headers(repo)},
                          timeout=TIMEOUT), 200)
    if r.content != image.manifest:
        raise RegistryError(f"GET manifest {repo}:{tag} returned other bytes than were pushed")
    check_blob_head(base, repo, sha256_digest(image.empty), 0, auth)
    # A server that answered HEAD of the empty blob without looking in the repository would be cheating
    # on the HEAD figure: it must be unknown in a repository it was never pushed to.
    if blob_exists(base, elsewhere(repo), sha256_digest(image.empty), auth):
        raise RegistryError("HEAD of the empty blob answers 200 in a repository it was never pushed to")
