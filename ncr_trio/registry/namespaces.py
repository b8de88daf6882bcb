"""Registries (namespaces): created before anything is pushed into them; a repository belongs to
the registry named by its first path component (`team/app` is image `app` in registry `team`).

Names follow the guide's image-name rules for one path component: lower-case letters and digits,
separated by `.`, `_`, `__` or dashes, at most 64 characters.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import replace

from ncr_trio.auth.control import AccessControl
from ncr_trio.cron import parse_schedule
from ncr_trio.errors import RegistryError
from ncr_trio.meta import MetaStore, RegistryInfo
from ncr_trio.meta.caches import CacheStore
from ncr_trio.meta.db import Tx
from ncr_trio.meta.policies import PolicyStore
from ncr_trio.meta.replication import ReplicationStore
from ncr_trio.meta.scans import ScanStore
from ncr_trio.meta.store import Protected
from ncr_trio.meta.trust import TrustStore
from ncr_trio.meta.webhooks import WebhookStore
from ncr_trio.registry.context import Registry
from ncr_trio.registry.policies import CACHE_CLEANUP, CACHE_CLEANUP_SCHEDULE, MAX_POLICIES, cleanup_job
from ncr_trio.registry.protection import Protection, denied
from ncr_trio.types import REGISTRY_NAME_MAX, REGISTRY_NAME_RE, validate_registry_name

NAME_RE = REGISTRY_NAME_RE
MAX_NAME = REGISTRY_NAME_MAX


def parse_cidrs(values: object) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [v for v in values.replace(",", " ").split() if v]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RegistryError("INVALID_REQUEST", "allowed_cidrs must be a list of CIDR blocks")
    out = []
    for v in values:
        try:
            out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
        except ValueError:
            raise RegistryError("INVALID_REQUEST", f"not a CIDR block: {v[:60]!r}") from None
    return tuple(out)


class Namespaces:
    def __init__(self, reg: Registry, access: AccessControl, protection: Protection | None = None) -> None:
        self.meta: MetaStore = reg.meta
        self.access = access
        self.protection = protection

    async def create(self, name: str, actor: str, *, description: str = "", public_read: bool = False,
                     public_uri: bool = True, allowed_cidrs: tuple[str, ...] = (), cache: str | None = None
                     ) -> RegistryInfo:
        """A registry; with `cache`, a cache-type registry pulling through that image cache, created
        with the guide's default cleanup policy and a daily schedule, in the same transaction."""
        validate_registry_name(name)
        if cache is not None:
            validate_registry_name(cache, "image cache")
        now = time.time()
        info = RegistryInfo(name, description, public_read, public_uri, allowed_cidrs, now, now, cache)

        def cache_defaults(tx: Tx) -> None:
            assert cache is not None
            if not CacheStore.lock_in(tx, cache):
                raise RegistryError("NOT_FOUND", f"image cache {cache[:80]!r} does not exist: create it first "
                                    "(ncr-trio cache create), or leave `cache` out for a normal registry")
            p = CACHE_CLEANUP
            PolicyStore.add_cleanup_in(tx, name, p.image, p.tags, p.untagged, p.rule, p.n, MAX_POLICIES)
            schedule = parse_schedule(CACHE_CLEANUP_SCHEDULE)
            PolicyStore.set_schedule_in(tx, cleanup_job(name), schedule.expression, schedule.next_at(now))

        if not await self.access.store.create_registry(info, actor, None if cache is None else cache_defaults):
            raise RegistryError("CONFLICT", f"registry {name!r} already exists")
        self.access.forget(registry=name)
        return info

    async def get(self, name: str) -> RegistryInfo:
        info = await self.access.store.registry(name)
        if info is None:
            raise RegistryError("NOT_FOUND", f"registry {name[:80]!r} does not exist")
        return info

    async def list(self) -> list[RegistryInfo]:
        return await self.access.store.registries()

    async def images(self, name: str) -> int:
        return await self.meta.count_repositories(name)

    async def update(self, name: str, actor: str, *, description: str | None = None,
                     public_read: bool | None = None, public_uri: bool | None = None,
                     allowed_cidrs: tuple[str, ...] | None = None) -> RegistryInfo:
        info = await self.get(name)
        changes: dict[str, object] = {"updated_at": time.time()}
        for key, value in (("description", description), ("public_read", public_read),
                           ("public_uri", public_uri), ("allowed_cidrs", allowed_cidrs)):
            if value is not None:
                changes[key] = value
        updated = replace(info, **changes)  # type: ignore[arg-type]
        if not await self.access.store.update_registry(updated, actor):
            raise RegistryError("NOT_FOUND", f"registry {name[:80]!r} does not exist")
        self.access.forget(registry=name)
        return updated

    async def delete(self, name: str, actor: str, *, force: bool = False) -> int:
        """Delete a registry; one that still holds images needs `force` (its images go with it,
        and GC reclaims their blobs). Returns how many images were deleted. Refused while a
        protection policy covers one of its tags; its policies, cleanup history, schedule and webhooks go with it."""
        guard = await self.protection.registry_guard(name) if self.protection else None

        def purge(tx: Tx) -> int:
            held = MetaStore.count_repositories_in(tx, name)
            if held and not force:
                raise RegistryError("CONFLICT", f"registry {name!r} still holds {held} image(s): delete them "
                                    "first, or delete the registry with force")
            removed = MetaStore.purge_repositories(tx, name, guard=guard)
            PolicyStore.purge_registry(tx, name)
            WebhookStore.purge_registry(tx, name)
            ReplicationStore.purge_registry(tx, name)
            ScanStore.purge_registry(tx, name)
            TrustStore.purge_registry(tx, name)
            return removed

        try:
            removed = await self.access.store.delete_registry(name, actor, purge=purge)
        except Protected as e:
            raise denied(e) from None
        self.access.forget(registry=name)
        if self.protection:
            self.protection.forget(name)
        if removed is None:
            raise RegistryError("NOT_FOUND", f"registry {name[:80]!r} does not exist")
        return removed


__all__ = ["MAX_NAME", "Namespaces", "parse_cidrs", "validate_registry_name"]
