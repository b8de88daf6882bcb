"""Cleanup and protection policies as use cases, and the cleanup runs that apply them (the guide's
"container image cleanup" and "container image protection"; docs/policies.md).

`Policies` validates and stores the policies (at most 15 of each kind per registry, duplicates
refused with the existing policy named), the registry's cleanup schedule (job "cleanup:<registry>"
of the scheduler, ncr_trio/scheduler.py) and runs cleanups through its `CleanupRunner`.

A run:
1. snapshots the registry's enabled cleanup and protection policies (recorded in the run's row:
   a policy added, changed or removed during a run applies from the next run);
2. reads every artifact of the registry and plans with the pure `plan_cleanup` (registry/policies.py)
   at the clock's `now`;
3. records each decision in the run's history: would-delete (a test run), deleted, kept-protected
   (by which policy), kept-needed (by which manifest) or skipped-changed (why);
4. in a real run, deletes each planned artifact through `MetaStore.delete_planned`, which re-checks
   in the deleting transaction that the artifact is still as planned (same push, no newer pull,
   exactly the tags the plan saw: a tag re-pushed or added meanwhile keeps it), that nothing
   references it, and that no protection policy covers it now. Indexes go before the manifests
   they hold. Accessories (signatures, attestations, referrers of an artifact of their image) are
   not planned over: the store deletes them with their subject (meta/accessories.py).
   Events name "cleanup" as their actor.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ncr_trio.cron import PRESETS, InvalidSchedule, parse_schedule
from ncr_trio.errors import RegistryError
from ncr_trio.limits import CLEANUP_MAX_N as MAX_N
from ncr_trio.limits import CLEANUP_OUTCOMES as OUTCOMES
from ncr_trio.meta.policies import (
    CleanupRow,
    CleanupRun,
    DuplicatePolicy,
    PolicyLimitReached,
    PolicyStore,
    ProtectionRow,
    ScheduleRow,
    StoredArtifact,
    UnknownRegistry,
)
from ncr_trio.meta.store import ACTOR
from ncr_trio.patterns import InvalidPattern, compile_pattern
from ncr_trio.registry.catalog import page_bounds
from ncr_trio.registry.context import Registry
from ncr_trio.registry.namespaces import Namespaces
from ncr_trio.registry.policies import (
    MAX_POLICIES,
    RULES,
    Artifact,
    CleanupPlan,
    CleanupPolicy,
    Decision,
    ProtectionPolicy,
    cleanup_job,
    plan_cleanup,
)
from ncr_trio.registry.protection import Protection, current_guard, describe, policy_of

log = logging.getLogger("ncr_trio.cleanup")

_STORE_OUTCOMES = {"changed": "skipped-changed", "needed": "kept-needed", "protected": "kept-protected"}


def describe_rule(rule: str, n: int) -> str:
    if rule == "older_than":
        return f"exclude artifacts pushed or pulled within {n} day{'s' * (n != 1)}"
    what = "pushed" if rule == "retain_pushed" else "pulled"
    return f"retain the {n} most recently {what} artifact{'s' * (n != 1)} of each image"


def cleanup_policy(row: CleanupRow) -> CleanupPolicy:
    return CleanupPolicy(row.id, row.image, row.tags, row.untagged, row.rule, row.n, row.enabled)


@dataclass(frozen=True)
class Item:
    """One decision of a run, as its history records it."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    outcome: str  # one of OUTCOMES
    reason: str | None


@dataclass
class PreparedRun:
    """A run that has taken its snapshot and made its plan, and not yet carried it out."""

    id: int
    registry: str
    dry_run: bool
    triggered_by: str
    now: float
    cleanup: tuple[CleanupPolicy, ...]
    protection: tuple[ProtectionPolicy, ...]
    artifacts: dict[tuple[str, str], Artifact]  # by (image, digest)
    stored: dict[tuple[str, str], StoredArtifact]  # the same, as the store read them
    plan: CleanupPlan
    items: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class Schedule:
    expression: str  # five cron fields, or "" (None: never)
    preset: str | None  # "None", "Hourly", "Daily", "Weekly" when the expression is one of them
    next_run_at: float | None
    last_run_at: float | None


def _preset(expression: str) -> str | None:
    if not expression:
        return "None"
    for name, value in PRESETS.items():
        if value == expression:
            return name.capitalize()
    return None


def _deletion_order(decisions: Sequence[Decision], artifacts: dict[tuple[str, str], Artifact]) -> list[Decision]:
    """Whatever holds another doomed manifest (an index its children, a referrer its subject) first."""
    doomed = {(d.image, d.digest): d for d in decisions}
    holders: dict[tuple[str, str], int] = {key: 0 for key in doomed}
    held: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key in doomed:
        a = artifacts[key]
        for target in (*a.children, *((a.subject,) if a.subject else ())):
            t = (a.image, target)
            if t in doomed and t != key:
                holders[t] += 1
                held.setdefault(key, []).append(t)
    ready = deque(sorted(k for k, n in holders.items() if n == 0))
    order: list[Decision] = []
    while ready:
        key = ready.popleft()
        order.append(doomed[key])
        for t in held.get(key, ()):
            holders[t] -= 1
            if holders[t] == 0:
                ready.append(t)
    # Content addressing makes cycles impossible; anything left would simply be tried last.
    order.extend(d for k, d in sorted(doomed.items()) if holders[k] > 0)
    return order


class CleanupRunner:
    def __init__(self, reg: Registry, store: PolicyStore, clock: Callable[[], float] = time.time) -> None:
        self.reg = reg
        self.store = store
        self.clock = clock

    async def run(self, registry: str, *, dry_run: bool, triggered_by: str, now: float | None = None
                  ) -> tuple[CleanupRun, list[dict[str, Any]]]:
        """One whole run: the finished run's row and its history."""
        prepared = await self.prepare(registry, dry_run=dry_run, triggered_by=triggered_by, now=now)
        return await self.execute(prepared)

    async def prepare(self, registry: str, *, dry_run: bool, triggered_by: str, now: float | None = None
                      ) -> PreparedRun:
        """Snapshot the enabled policies, start the run's row and plan (nothing is deleted yet)."""
        now = self.clock() if now is None else now
        cleanup = tuple(cleanup_policy(r) for r in await self.store.cleanup_policies(registry) if r.enabled)
        protection = tuple(policy_of(r) for r in await self.store.protection_policies(registry) if r.enabled)
        snapshot: list[dict[str, object]] = [
            {"kind": "cleanup", "id": p.id, "image": p.image, "tag": p.tags, "untagged": p.untagged,
             "rule": p.rule, "n": p.n} for p in cleanup]
        snapshot += [{"kind": "protection", "id": p.id, "image": p.image, "tag": p.tags} for p in protection]
        run_id = await self.store.start_run(registry, triggered_by, dry_run, snapshot)
        try:
            prefix = len(registry) + 1
            stored = {(s.repository[prefix:], s.digest): s for s in await self.store.cleanup_candidates(registry)}
            # Pushed: when the manifest was stored, or a later push pointed one of its tags at it.
            artifacts = {key: Artifact(key[0], s.digest, s.tags, max(s.pushed_at, s.tagged_at or 0.0), s.pulled_at,
                                       s.children, s.subject) for key, s in stored.items()}
            plan = plan_cleanup(list(artifacts.values()), cleanup, protection, now)
        except BaseException as e:
            with trio.CancelScope(shield=True):
                await self.store.finish_run(run_id, "failed", 0, 0, f"{type(e).__name__}: {e}"[:500])
            raise
        return PreparedRun(run_id, registry, dry_run, triggered_by, now, cleanup, protection, artifacts, stored,
                           plan)

    async def execute(self, run: PreparedRun) -> tuple[CleanupRun, list[dict[str, Any]]]:
        """Carry out a prepared run and record its history; answers the finished run and its items."""
        by_id = {p.id: p for p in run.protection}
        deleted = kept = 0
        status, error = "succeeded", None
        token = ACTOR.set("cleanup")
        try:
            for d in run.plan.kept:
                if d.protected_by is not None:
                    guard = by_id[d.protected_by]
                    run.items.append(self._item(run, d, "kept-protected", f"protected by {describe(guard)}"))
                else:
                    run.items.append(self._item(run, d, "kept-needed", f"referenced by {d.needed_by}"))
                kept += 1
            selected_by = {(d.image, d.digest): d.policies for d in run.plan.delete}
            for d in _deletion_order(run.plan.delete, run.artifacts):
                why = "selected by cleanup policy " + ", ".join(f"#{i}" for i in selected_by[(d.image, d.digest)])
                if run.dry_run:
                    run.items.append(self._item(run, d, "would-delete", why))
                    deleted += 1
                    continue
                a = run.stored[(d.image, d.digest)]
                outcome, reason = await self.reg.meta.delete_planned(
                    f"{run.registry}/{d.image}", d.digest, a.tags, a.pushed_at, a.pulled_at, current_guard)
                if outcome == "deleted":
                    run.items.append(self._item(run, d, "deleted", why))
                    deleted += 1
                else:
                    run.items.append(self._item(run, d, _STORE_OUTCOMES[outcome], reason))
                    kept += 1
        except BaseException as e:
            status, error = "failed", f"{type(e).__name__}: {e}"[:500]
            raise
        finally:
            ACTOR.reset(token)
            with trio.CancelScope(shield=True):
                await self._record(run, status, deleted, kept, error)
        found = await self.store.run(run.registry, run.id)
        assert found is not None
        return found

    async def _record(self, run: PreparedRun, status: str, deleted: int, kept: int, error: str | None) -> None:
        rows = [(i.repository, i.digest, json.dumps(list(i.tags)), i.outcome, i.reason) for i in run.items]
        for start in range(0, len(rows), 500):
            await self.store.add_run_items(run.id, rows[start:start + 500])
        await self.store.finish_run(run.id, status, deleted, kept, error)
        log.info("cleanup of %s (%s run #%d): %d %s, %d kept", run.registry, run.triggered_by, run.id, deleted,
                 "would be deleted" if run.dry_run else "deleted", kept)

    @staticmethod
    def _item(run: PreparedRun, d: Decision, outcome: str, reason: str | None) -> Item:
        return Item(f"{run.registry}/{d.image}", d.digest, d.tags, outcome, reason)


def _pattern(value: str, what: str) -> str:
    try:
        compile_pattern(value)
    except InvalidPattern as e:
        raise RegistryError("INVALID_REQUEST", f"{what}: {e}") from None
    return value


class Policies:
    """The use cases behind the cleanup and protection API (docs/api.md, docs/policies.md)."""

    def __init__(self, reg: Registry, store: PolicyStore, protection: Protection, namespaces: Namespaces,
                 clock: Callable[[], float] = time.time) -> None:
        self.reg = reg
        self.store = store
        self.protection = protection
        self.namespaces = namespaces
        self.clock = clock
        self.runner = CleanupRunner(reg, store, clock)

    # -- cleanup policies ---------------------------------------------------------------------
    async def cleanup_policies(self, registry: str) -> list[CleanupRow]:
        await self.namespaces.get(registry)
        return await self.store.cleanup_policies(registry)

    async def add_cleanup(self, registry: str, image: str, tags: str, untagged: bool, rule: str, n: int
                          ) -> CleanupRow:
        _pattern(image, "image")
        _pattern(tags, "tag")
        if rule not in RULES:
            raise RegistryError("INVALID_REQUEST", f"rule is one of {', '.join(RULES)}, not {rule[:40]!r}")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_N:
            unit = "days" if rule == "older_than" else "artifacts"
            raise RegistryError("INVALID_REQUEST", f"n ({unit}) is a whole number from 0 to {MAX_N}")
        try:
            return await self.store.add_cleanup(registry, image, tags, untagged, rule, n, MAX_POLICIES)
        except UnknownRegistry:
            raise _no_registry(registry) from None
        except DuplicatePolicy as e:
            same = next((p for p in await self.store.cleanup_policies(registry) if p.id == e.existing), None)
            what = f' (image "{same.image}", tag "{same.tags}", {describe_rule(same.rule, same.n)})' if same else ""
            raise RegistryError("CONFLICT", f"registry {registry} already has this cleanup policy: "
                                f"#{e.existing}{what}", detail={"existing": e.existing}) from None
        except PolicyLimitReached:
            raise RegistryError("CONFLICT", f"registry {registry} already has {MAX_POLICIES} cleanup policies, "
                                "the most it may have: delete one first") from None

    async def set_cleanup_enabled(self, registry: str, policy_id: int, enabled: bool) -> CleanupRow:
        if not await self.store.set_cleanup_enabled(registry, policy_id, enabled):
            raise _no_policy("cleanup", registry, policy_id)
        return next(p for p in await self.store.cleanup_policies(registry) if p.id == policy_id)

    async def delete_cleanup(self, registry: str, policy_id: int) -> None:
        if not await self.store.delete_cleanup(registry, policy_id):
            raise _no_policy("cleanup", registry, policy_id)

    # -- protection policies ------------------------------------------------------------------
    async def protection_policies(self, registry: str) -> list[ProtectionRow]:
        await self.namespaces.get(registry)
        return await self.store.protection_policies(registry)

    async def add_protection(self, registry: str, image: str, tags: str) -> ProtectionRow:
        _pattern(image, "image")
        _pattern(tags, "tag")
        try:
            row = await self.store.add_protection(registry, image, tags, MAX_POLICIES)
        except UnknownRegistry:
            raise _no_registry(registry) from None
        except DuplicatePolicy as e:
            raise RegistryError("CONFLICT", f"registry {registry} already has this protection policy: "
                                f'#{e.existing} (image "{image}", tag "{tags}")',
                                detail={"existing": e.existing}) from None
        except PolicyLimitReached:
            raise RegistryError("CONFLICT", f"registry {registry} already has {MAX_POLICIES} protection policies, "
                                "the most it may have: delete one first") from None
        self.protection.forget(registry)
        return row

    async def set_protection_enabled(self, registry: str, policy_id: int, enabled: bool) -> ProtectionRow:
        if not await self.store.set_protection_enabled(registry, policy_id, enabled):
            raise _no_policy("protection", registry, policy_id)
        self.protection.forget(registry)
        return next(p for p in await self.store.protection_policies(registry) if p.id == policy_id)

    async def delete_protection(self, registry: str, policy_id: int) -> None:
        if not await self.store.delete_protection(registry, policy_id):
            raise _no_policy("protection", registry, policy_id)
        self.protection.forget(registry)

    # -- schedule -----------------------------------------------------------------------------
    async def schedule(self, registry: str) -> Schedule:
        await self.namespaces.get(registry)
        return _schedule(await self.store.schedule(cleanup_job(registry)))

    async def set_schedule(self, registry: str, text: str) -> Schedule:
        """A preset (None, Hourly, Daily, Weekly) or five cron fields, in UTC."""
        try:
            parsed = parse_schedule(text)
        except InvalidSchedule as e:
            raise RegistryError("INVALID_REQUEST", str(e)) from None
        await self.namespaces.get(registry)
        job = cleanup_job(registry)
        await self.store.set_schedule(job, parsed.expression, parsed.next_at(self.clock()))
        return _schedule(await self.store.schedule(job))

    # -- runs ---------------------------------------------------------------------------------
    async def run(self, registry: str, *, dry_run: bool, triggered_by: str = "manual",
                  now: float | None = None) -> tuple[CleanupRun, list[dict[str, Any]]]:
        await self.namespaces.get(registry)
        return await self.runner.run(registry, dry_run=dry_run, triggered_by="test" if dry_run else triggered_by,
                                     now=now)

    async def runs(self, registry: str, page: int | None, per_page: int | None) -> tuple[list[CleanupRun], int]:
        limit, offset = page_bounds(page, per_page)
        await self.namespaces.get(registry)
        return await self.store.runs(registry, limit, offset)

    async def run_details(self, registry: str, run_id: int) -> tuple[CleanupRun, list[dict[str, Any]]]:
        found = await self.store.run(registry, run_id)
        if found is None:
            raise RegistryError("NOT_FOUND", f"no cleanup run #{run_id} in registry {registry}")
        return found


def _schedule(row: ScheduleRow | None) -> Schedule:
    if row is None:
        return Schedule("", "None", None, None)
    return Schedule(row.expression, _preset(row.expression), row.next_run_at, row.last_run_at)


def _no_registry(registry: str) -> RegistryError:
    return RegistryError("NOT_FOUND", f"registry {registry[:80]!r} does not exist")


def _no_policy(kind: str, registry: str, policy_id: int) -> RegistryError:
    return RegistryError("NOT_FOUND", f"no {kind} policy #{policy_id} in registry {registry}")


__all__ = ["OUTCOMES", "CleanupRunner", "Item", "Policies", "PreparedRun", "Schedule", "cleanup_job",
           "cleanup_policy", "describe_rule"]
