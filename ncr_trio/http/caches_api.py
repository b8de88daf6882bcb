"""Image caches in the management API (`/api/v1/caches...`): system administrators only (the route
table's action column; http/auth.py). The access secret is write-only: answers say whether one is set."""

from __future__ import annotations

import json

from ncr_trio.cache.caches import CacheInfo
from ncr_trio.http import models as m
from ncr_trio.http.asgi import Request
from ncr_trio.http.declare import bind, decode, given, handles
from ncr_trio.http.jsonapi import audit
from ncr_trio.http.operations import OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.registry import RegistryService
from ncr_trio.types import iso_time as t


def cache_model(c: CacheInfo) -> m.ImageCache:
    return m.ImageCache(name=c.name, type=c.type, url=c.url, access_id=c.access_id, has_secret=c.has_secret,
                        endpoint=c.endpoint, description=c.description, registries=list(c.registries),
                        created_at=t(c.created_at), updated_at=t(c.updated_at))


class CachesAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return bind(self, OPERATIONS)

    def _audit(self, request: Request, action: str, name: str, **detail: object) -> None:
        audit(self.s.access, request, action, target=f"image cache {name}",
              detail=json.dumps(detail) if detail else None)

    @handles("api.caches")
    async def list_caches(self, request: Request) -> m.CacheList:
        return m.CacheList([cache_model(c) for c in await self.s.caches.caches()])

    @handles("api.cache.create")
    async def create(self, request: Request) -> m.ImageCache:
        cache = await self.s.caches.create(given(await decode(request, m.NewCache)))
        self._audit(request, "cache.create", cache.name, type=cache.type, url=cache.url)
        return cache_model(cache)

    @handles("api.cache")
    async def get(self, request: Request) -> m.ImageCache:
        return cache_model(await self.s.caches.get(request.params["cache"]))

    @handles("api.cache.update")
    async def update(self, request: Request) -> m.ImageCache:
        body = given(await decode(request, m.CacheChanges))
        cache = await self.s.caches.update(request.params["cache"], body)
        self._audit(request, "cache.update", cache.name, fields=sorted(body))
        return cache_model(cache)

    @handles("api.cache.delete")
    async def delete(self, request: Request) -> None:
        await self.s.caches.delete(request.params["cache"])
        self._audit(request, "cache.delete", request.params["cache"])

    @handles("api.cache.test")
    async def test(self, request: Request) -> m.CacheTest:
        result = await self.s.caches.test(request.params["cache"])
        self._audit(request, "cache.test", request.params["cache"], ok=result.ok)
        return m.CacheTest(result.ok, result.detail)


__all__ = ["CachesAPI", "cache_model"]
