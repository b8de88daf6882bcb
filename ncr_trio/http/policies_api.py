"""A registry's cleanup and protection policies in the management API
(`/api/v1/registries/{registry}/cleanup/...` and `.../protection/...`; docs/api.md, docs/policies.md).

Viewing policies, the schedule and the cleanup history needs *read* on the registry; adding,
enabling or disabling, deleting, scheduling and running (a test run too) needs *manage* (the route
table's action column; http/auth.py), as the guide's role table says.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar, cast

import msgspec

from ncr_trio.http import models as m
from ncr_trio.http.asgi import Request
from ncr_trio.http.declare import bind, decode, handles
from ncr_trio.http.jsonapi import audit, numeric_id, paged
from ncr_trio.http.operations import OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.meta.policies import CleanupRow, CleanupRun, ProtectionRow
from ncr_trio.registry import RegistryService
from ncr_trio.registry.cleanup import Schedule, describe_rule
from ncr_trio.types import iso_time as t

R = TypeVar("R", bound=m.CleanupRun)


def cleanup_model(p: CleanupRow) -> m.CleanupPolicy:
    return m.CleanupPolicy(p.id, p.registry, p.image, p.tags, p.untagged, p.rule, p.n, describe_rule(p.rule, p.n),
                           p.enabled, t(p.created_at))


def protection_model(p: ProtectionRow) -> m.ProtectionPolicy:
    return m.ProtectionPolicy(p.id, p.registry, p.image, p.tags, p.enabled, t(p.created_at))


def schedule_model(s: Schedule) -> m.Schedule:
    return m.Schedule(s.expression or "None", s.preset, "UTC", t(s.next_run_at), t(s.last_run_at))


_SNAPSHOTS = list[m.CleanupPolicySnapshot | m.ProtectionPolicySnapshot]


def run_model(r: CleanupRun, model: type[R], **more: Any) -> R:
    try:
        policies = msgspec.json.decode(r.policies, type=_SNAPSHOTS) if r.policies else []
    except msgspec.DecodeError:
        policies = []
    return model(id=r.id, registry=r.registry, triggered_by=cast(Any, r.triggered_by), dry_run=r.dry_run,
                 status=cast(Any, r.status), started_at=t(r.started_at), finished_at=t(r.finished_at),
                 deleted=r.deleted, kept=r.kept, policies=policies, error=r.error, **more)


def _details(found: tuple[CleanupRun, list[dict[str, Any]]]) -> m.CleanupRunDetails:
    run, items = found
    return run_model(run, m.CleanupRunDetails, items=[m.RunItem(**i) for i in items])


def _id(request: Request) -> int:
    return numeric_id(request, "id", f"no policy or run {request.params['id'][:40]!r}")


class PoliciesAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return bind(self, OPERATIONS)

    def _audit(self, request: Request, action: str, detail: dict[str, Any]) -> None:
        audit(self.s.access, request, action, registry=request.params["registry"], detail=json.dumps(detail))

    # -- cleanup policies ---------------------------------------------------------------------
    @handles("api.cleanup.policies")
    async def cleanup_policies(self, request: Request) -> m.CleanupPolicyList:
        rows = await self.s.policies.cleanup_policies(request.params["registry"])
        return m.CleanupPolicyList([cleanup_model(r) for r in rows])

    @handles("api.cleanup.policy.create")
    async def add_cleanup(self, request: Request) -> m.CleanupPolicy:
        b = await decode(request, m.NewCleanupPolicy)
        row = await self.s.policies.add_cleanup(request.params["registry"], b.image, b.tag, b.untagged, b.rule, b.n)
        self._audit(request, "cleanup.policy.create", {"id": row.id})
        return cleanup_model(row)

    @handles("api.cleanup.policy.update")
    async def update_cleanup(self, request: Request) -> m.CleanupPolicy:
        enabled = (await decode(request, m.PolicyToggle)).enabled
        row = await self.s.policies.set_cleanup_enabled(request.params["registry"], _id(request), enabled)
        self._audit(request, "cleanup.policy.update", {"id": row.id, "enabled": enabled})
        return cleanup_model(row)

    @handles("api.cleanup.policy.delete")
    async def delete_cleanup(self, request: Request) -> None:
        await self.s.policies.delete_cleanup(request.params["registry"], _id(request))
        self._audit(request, "cleanup.policy.delete", {"id": _id(request)})

    # -- schedule and runs --------------------------------------------------------------------
    @handles("api.cleanup.schedule")
    async def schedule(self, request: Request) -> m.Schedule:
        return schedule_model(await self.s.policies.schedule(request.params["registry"]))

    @handles("api.cleanup.schedule.set")
    async def set_schedule(self, request: Request) -> m.Schedule:
        text = (await decode(request, m.ScheduleRequest)).schedule
        found = await self.s.policies.set_schedule(request.params["registry"], text)
        self._audit(request, "cleanup.schedule", {"schedule": found.expression or "None"})
        return schedule_model(found)

    @handles("api.cleanup.test")
    async def test_run(self, request: Request) -> m.CleanupRunDetails:
        return _details(await self.s.policies.run(request.params["registry"], dry_run=True))

    @handles("api.cleanup.run")
    async def run_now(self, request: Request) -> m.CleanupRunDetails:
        found = await self.s.policies.run(request.params["registry"], dry_run=False)
        self._audit(request, "cleanup.run", {"run": found[0].id, "deleted": found[0].deleted})
        return _details(found)

    @handles("api.cleanup.runs")
    async def runs(self, request: Request) -> m.CleanupRunPage:
        rows, total = await self.s.policies.runs(request.params["registry"], request.query_int("page"),
                                                 request.query_int("per_page"))
        return paged(request, m.CleanupRunPage, total, runs=[run_model(r, m.CleanupRun) for r in rows])

    @handles("api.cleanup.run.details")
    async def run_details(self, request: Request) -> m.CleanupRunDetails:
        return _details(await self.s.policies.run_details(request.params["registry"], _id(request)))

    # -- protection policies ------------------------------------------------------------------
    @handles("api.protection.policies")
    async def protection_policies(self, request: Request) -> m.ProtectionPolicyList:
        rows = await self.s.policies.protection_policies(request.params["registry"])
        return m.ProtectionPolicyList([protection_model(r) for r in rows])

    @handles("api.protection.policy.create")
    async def add_protection(self, request: Request) -> m.ProtectionPolicy:
        b = await decode(request, m.NewProtectionPolicy)
        row = await self.s.policies.add_protection(request.params["registry"], b.image, b.tag)
        self._audit(request, "protection.policy.create", {"id": row.id})
        return protection_model(row)

    @handles("api.protection.policy.update")
    async def update_protection(self, request: Request) -> m.ProtectionPolicy:
        enabled = (await decode(request, m.PolicyToggle)).enabled
        row = await self.s.policies.set_protection_enabled(request.params["registry"], _id(request), enabled)
        self._audit(request, "protection.policy.update", {"id": row.id, "enabled": enabled})
        return protection_model(row)

    @handles("api.protection.policy.delete")
    async def delete_protection(self, request: Request) -> None:
        await self.s.policies.delete_protection(request.params["registry"], _id(request))
        self._audit(request, "protection.policy.delete", {"id": _id(request)})


__all__ = ["PoliciesAPI", "cleanup_model", "protection_model", "run_model", "schedule_model"]
