"""The source registry of the `cache-pull` figure, and how each server is made a pull-through cache of it.

The source is a Distribution (3.1.1 if built, else 2.8.2), anonymous, holding one image of random layers, behind the
counting proxy of the tests (tests/support/upstream.py), which tells how many blob bytes the caches fetched. It is
started once per run, before the rounds, and shared by every server: the caches differ, the source does not.

- ncr-trio: started with `cache_allowed_networks=127.0.0.0/8` and the source's port allowed, then (untimed) an image
  cache `up` of type "registry" pointing at the proxy, and a cache-type registry `hub` using it: the image is
  pulled as `hub/<source repository>` (management API: api.cache.create, api.registry.create with `cache`).
- Distribution: `proxy: remoteurl:` the proxy; the image keeps its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ncr_trio.client import Client
from tests.support.clients import find_tool
from tests.support.oci import Pushed, push_test_image
from tests.support.server import REGISTRY_V2, REGISTRY_V3, Distribution
from tests.support.upstream import Upstream

CACHE_NAME = "up"  # ncr-trio's image cache of the source
CACHE_REGISTRY = "hub"  # ncr-trio's cache-type registry using it
SOURCE_REPO = "bench/cached"
SOURCE_TAG = "v1"


@dataclass
class CacheSource:
    """The running source: Distribution with the image, and the counting proxy that caches pull from."""

    registry: Distribution
    proxy: Upstream
    image: Pushed

    @property
    def url(self) -> str:
        """Where caches pull from: the counting proxy."""
        return self.proxy.url

    @property
    def blob_bytes(self) -> int:
        """The image's config and layers, in bytes: what a cache fetching each blob once fetches."""
        return sum(len(b) for b in self.image.blobs.values())

    @property
    def pids(self) -> list[int]:
        """Its processes (the proxy's and the registry's), whose CPU time is not the machine's noise."""
        return [p.pid for p in (self.proxy.proc, self.registry.proc) if p is not None]

    def stop(self) -> None:
        self.proxy.stop()
        self.registry.stop()


def start_source(root: Path, layer_sizes: Sequence[int]) -> CacheSource:
    """Start the source under `root` with an image of random layers of `layer_sizes` as SOURCE_REPO:SOURCE_TAG."""
    binary = REGISTRY_V3 if find_tool(REGISTRY_V3) else REGISTRY_V2
    registry = Distribution(root=root / "registry", binary=binary).start()
    try:
        with httpx.Client(base_url=registry.url, timeout=120) as c:
            image = push_test_image(c, SOURCE_REPO, SOURCE_TAG, layer_sizes)
        proxy = Upstream(target=registry.url, log_path=root / "upstream.log").start()
    except BaseException:
        registry.stop()
        raise
    return CacheSource(registry, proxy, image)


def ncr_cache_env(source_url: str) -> dict[str, str]:
    """ncr-trio's settings that let an image cache reach the source on loopback, on its port."""
    port = httpx.URL(source_url).port
    return {"NCR_CACHE_ALLOWED_NETWORKS": "127.0.0.0/8", "NCR_CACHE_ALLOWED_PORTS": f"80,443,{port}"}


def make_ncr_cache(url: str, admin: str, password: str, source_url: str) -> None:
    """On a running ncr-trio: the image cache CACHE_NAME of the source, and the registry CACHE_REGISTRY using it."""
    api = Client(url, admin, password)
    api.call("api.cache.create", {"name": CACHE_NAME, "type": "registry", "url": source_url, "access_id": "",
                                  "access_secret": ""})
    api.call("api.registry.create", {"name": CACHE_REGISTRY, "cache": CACHE_NAME})
