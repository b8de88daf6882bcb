"""Untimed registry calls (httpx) that set up and check what the timed loads then drive."""

from __future__ import annotations

import os
from urllib.parse import urljoin

import httpx

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


def start_upload(base: str, repo: str) -> str:
    r = _expect(httpx.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT), 202)
    return resolve_location(base, r.headers.get("location"), "POST blobs/uploads/")


def push_small_blob(base: str, repo: str, data: bytes) -> str:
    digest = sha256_digest(data)
    url = with_digest(start_upload(base, repo), digest)
    _expect(httpx.put(url, content=data, headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT), 201)
    return digest


def warm_up(base: str, repo: str, connections: int = 16, blobs: int = 8) -> None:
    """Untimed requests before a memory baseline, on new connections, so that every worker process has
    imported and built what serving and pushing need (ncr-trio's spawned workers build the app on first use)."""
    for _ in range(connections):
        _expect(httpx.get(f"{base}/v2/", timeout=TIMEOUT), 200)
    for _ in range(blobs):
        push_small_blob(base, repo, os.urandom(64 * 1024))


def blob_exists(base: str, repo: str, digest: str) -> bool:
    r = _expect(httpx.head(f"{base}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT), 200, 404)
    return r.status_code == 200


def check_blob_head(base: str, repo: str, digest: str, size: int) -> None:
    r = _expect(httpx.head(f"{base}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT), 200)
    if int(r.headers.get("content-length", -1)) != size:
        raise RegistryError(f"HEAD blob {digest}: Content-Length {r.headers.get('content-length')}, want {size}")


def push_small_image(base: str, repo: str, tag: str, image: SmallImage) -> None:
    """Push the image, then check what the request-rate figures will hit answers as it should."""
    for data in image.blobs():
        push_small_blob(base, repo, data)
    _expect(
        httpx.put(f"{base}/v2/{repo}/manifests/{tag}", content=image.manifest,
                  headers={"Content-Type": OCI_MANIFEST}, timeout=TIMEOUT),
        201,
    )
    r = _expect(httpx.get(f"{base}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=TIMEOUT), 200)
    if r.content != image.manifest:
        raise RegistryError(f"GET manifest {repo}:{tag} returned other bytes than were pushed")
    check_blob_head(base, repo, sha256_digest(image.empty), 0)
    # A server that answered HEAD of the empty blob without looking in the repository would be cheating
    # on the HEAD figure: it must be unknown in a repository it was never pushed to.
    if blob_exists(base, repo + "-elsewhere", sha256_digest(image.empty)):
        raise RegistryError("HEAD of the empty blob answers 200 in a repository it was never pushed to")
