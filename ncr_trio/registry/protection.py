"""Protection policies, enforced: a protected tag is never moved by a push nor deleted, and an
artifact with a protected tag (or held by an index that has one) is never deleted, by a user, a
cleanup run or GC.

The check runs inside the write transaction that would move or remove the tag (a `Guard` passed
to the metadata store), against the tag state read there, so no race slips past it. The policies
themselves come from a small per-registry cache: a change made on this node applies at once, on
other nodes (and other worker processes) within `access_cache_seconds`. A cleanup run re-reads
them inside each deletion's transaction instead (`current_guard`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ncr_trio.auth.control import registry_of
from ncr_trio.errors import RegistryError
from ncr_trio.meta.db import Tx
from ncr_trio.meta.policies import PolicyStore, ProtectionRow
from ncr_trio.meta.store import Guard, Protected
from ncr_trio.registry.policies import ProtectionPolicy, protecting


def describe(p: ProtectionPolicy) -> str:
    return f'protection policy #{p.id} (image "{p.image}", tag "{p.tags}")'


def refusal(p: ProtectionPolicy, repository: str, tag: str) -> str:
    return f"tag {tag} of {repository} is protected by {describe(p)}"


def policy_of(row: ProtectionRow) -> ProtectionPolicy:
    return ProtectionPolicy(row.id, row.image, row.tags, row.enabled)


def guard_of(policies: Sequence[ProtectionPolicy]) -> Guard:
    """A guard over fixed policies (the image a policy matches is the repository without its registry)."""

    def check(tx: Tx, repository: str, tag: str) -> str | None:
        p = protecting(policies, repository.partition("/")[2], tag)
        return None if p is None else refusal(p, repository, tag)

    return check


def current_guard(tx: Tx, repository: str, tag: str) -> str | None:
    """A guard that reads the registry's policies inside the transaction it checks."""
    policies = [policy_of(r) for r in PolicyStore.protection_in(tx, registry_of(repository))]
    return guard_of(policies)(tx, repository, tag)


def denied(e: Protected) -> RegistryError:
    return RegistryError("DENIED", str(e))


class Protection:
    """The enabled protection policies of each registry, cached for `ttl` seconds."""

    def __init__(self, store: PolicyStore, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[ProtectionPolicy, ...]]] = {}

    async def policies(self, registry: str) -> tuple[ProtectionPolicy, ...]:
        hit = self._cache.get(registry)
        now = self._clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        found = tuple(policy_of(r) for r in await self.store.protection_policies(registry) if r.enabled)
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[registry] = (now + self.ttl, found)
        return found

    def forget(self, registry: str) -> None:
        """After a change made here (other nodes catch up within the TTL)."""
        self._cache.pop(registry, None)

    async def guard(self, repository: str) -> Guard | None:
        """The guard for changes to `repository` (None: its registry protects nothing)."""
        return await self.registry_guard(registry_of(repository))

    async def registry_guard(self, registry: str) -> Guard | None:
        policies = await self.policies(registry)
        return guard_of(policies) if policies else None


__all__ = ["Protection", "current_guard", "denied", "describe", "guard_of", "policy_of", "refusal"]
