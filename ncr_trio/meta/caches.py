"""Image caches: the source registries that cache-type registries pull through (ncr_trio/cache).

A registry's `cache` column names the image cache it uses (NULL: a normal registry). An image cache
is deleted only in a transaction that holds its row locked and finds no registry naming it; a
registry is created naming a cache only in a transaction that holds the same row locked and finds
it there (`lock_in`), so neither can slip past the other, on one node or several.

The access secret is stored as the caller seals it (cache/caches.py): this module never sees it in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ncr_trio.meta.db import Database, Tx


@dataclass(frozen=True)
class ImageCache:
    name: str
    type: str  # one of cache/sources.py's SOURCE_TYPES
    url: str  # scheme://host[:port]
    access_id: str
    access_secret: str  # sealed ("" = none)
    endpoint: str  # ECR only: its API endpoint ("" = the default)
    description: str
    created_at: float
    updated_at: float


class CacheInUse(Exception):
    """The image cache is the cache of these registries."""

    def __init__(self, registries: Sequence[str]) -> None:
        super().__init__(", ".join(registries))
        self.registries = tuple(registries)


_COLUMNS = ("SELECT name, type, url, access_id, access_secret, endpoint, description, created_at, updated_at "
            "FROM image_caches ")


def _cache(r: Sequence[object]) -> ImageCache:
    return ImageCache(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]),
                      float(r[7]), float(r[8]))  # type: ignore[arg-type]


class CacheStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, cache: ImageCache) -> bool:
        """Store a new image cache; False if one of that name exists."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "INSERT INTO image_caches (name, type, url, access_id, access_secret, endpoint, description, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (cache.name, cache.type, cache.url, cache.access_id, cache.access_secret, cache.endpoint,
             cache.description, cache.created_at, cache.updated_at))))

    async def get(self, name: str) -> ImageCache | None:
        row = await self.db.read(lambda tx: tx.one(_COLUMNS + "WHERE name = ?", (name,)))
        return None if row is None else _cache(row)

    async def caches(self) -> list[ImageCache]:
        return [_cache(r) for r in await self.db.read(lambda tx: tx.all(_COLUMNS + "ORDER BY name"))]

    async def update(self, cache: ImageCache) -> bool:
        """Store every field of `cache` but its name and creation time; False if it no longer exists."""
        return bool(await self.db.write(lambda tx: tx.execute(
            "UPDATE image_caches SET type = ?, url = ?, access_id = ?, access_secret = ?, endpoint = ?, "
            "description = ?, updated_at = ? WHERE name = ?",
            (cache.type, cache.url, cache.access_id, cache.access_secret, cache.endpoint, cache.description,
             cache.updated_at, cache.name))))

    async def delete(self, name: str) -> bool:
        """Delete an image cache no registry uses (CacheInUse names those that do); False if there is none."""

        def run(tx: Tx) -> bool:
            if not CacheStore.lock_in(tx, name):
                return False
            users = [str(r[0]) for r in tx.all("SELECT name FROM registries WHERE cache = ? ORDER BY name", (name,))]
            if users:
                raise CacheInUse(users)
            return bool(tx.execute("DELETE FROM image_caches WHERE name = ?", (name,)))

        return await self.db.write(run)

    async def registries(self) -> dict[str, list[str]]:
        """Image cache -> the registries that use it, by name."""
        found: dict[str, list[str]] = {}
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT cache, name FROM registries WHERE cache IS NOT NULL ORDER BY name"))
        for cache, registry in rows:
            found.setdefault(str(cache), []).append(str(registry))
        return found

    @staticmethod
    def lock_in(tx: Tx, name: str) -> bool:
        """Inside a caller's transaction: whether the image cache exists, its row locked until the end."""
        return tx.one("SELECT 1 FROM image_caches WHERE name = ?" + tx.dialect.for_update, (name,)) is not None


__all__ = ["CacheInUse", "CacheStore", "ImageCache"]
