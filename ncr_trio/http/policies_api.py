"""A registry's cleanup and protection policies in the management API
(`/api/v1/registries/{registry}/cleanup/...` and `.../protection/...`; docs/api.md, docs/policies.md).

Viewing policies, the schedule and the cleanup history needs *read* on the registry; adding,
enabling or disabling, deleting, scheduling and running (a test run too) needs *manage* (the route
table's action column; http/auth.py), as the guide's role table says.
"""

from __future__ import annotations

import json
from typing import Any

from ncr_trio.http.asgi import Request, Response
from ncr_trio.http.declare import bind, decode, handles
from ncr_trio.http.jsonapi import audit, numeric_id, paged
from ncr_trio.http.jsonapi import ok as _ok
from ncr_trio.http.models import NewCleanupPolicy, NewProtectionPolicy, PolicyToggle, ScheduleRequest
from ncr_trio.http.operations import OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.meta.policies import CleanupRow, CleanupRun, ProtectionRow
from ncr_trio.registry import RegistryService
from ncr_trio.registry.cleanup import Schedule, describe_rule
from ncr_trio.types import iso_time


def cleanup_view(p: CleanupRow) -> dict[str, Any]:
    return {"id": p.id, "registry": p.registry, "image": p.image, "tag": p.tags, "untagged": p.untagged,
            "rule": p.rule, "n": p.n, "description": describe_rule(p.rule, p.n), "enabled": p.enabled,
            "created_at": iso_time(p.created_at)}


def protection_view(p: ProtectionRow) -> dict[str, Any]:
    return {"id": p.id, "registry": p.registry, "image": p.image, "tag": p.tags, "enabled": p.enabled,
            "created_at": iso_time(p.created_at)}


def schedule_view(s: Schedule) -> dict[str, Any]:
    return {"schedule": s.expression or "None", "preset": s.preset, "timezone": "UTC",
            "next_run_at": iso_time(s.next_run_at), "last_run_at": iso_time(s.last_run_at)}


def run_view(r: CleanupRun) -> dict[str, Any]:
    try:
        policies = json.loads(r.policies) if r.policies else []
    except ValueError:
        policies = []
    return {"id": r.id, "registry": r.registry, "triggered_by": r.triggered_by, "dry_run": r.dry_run,
            "status": r.status, "started_at": iso_time(r.started_at), "finished_at": iso_time(r.finished_at),
            "deleted": r.deleted, "kept": r.kept, "policies": policies, "error": r.error}


def _details(found: tuple[CleanupRun, list[dict[str, Any]]]) -> dict[str, Any]:
    run, items = found
    return {**run_view(run), "items": items}


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
    async def cleanup_policies(self, request: Request) -> Response:
        rows = await self.s.policies.cleanup_policies(request.params["registry"])
        return _ok(200, {"policies": [cleanup_view(r) for r in rows]})

    @handles("api.cleanup.policy.create")
    async def add_cleanup(self, request: Request) -> Response:
        b = await decode(request, NewCleanupPolicy)
        row = await self.s.policies.add_cleanup(request.params["registry"], b.image, b.tag, b.untagged, b.rule, b.n)
        self._audit(request, "cleanup.policy.create", {"id": row.id})
        return _ok(201, cleanup_view(row))

    @handles("api.cleanup.policy.update")
    async def update_cleanup(self, request: Request) -> Response:
        enabled = (await decode(request, PolicyToggle)).enabled
        row = await self.s.policies.set_cleanup_enabled(request.params["registry"], _id(request), enabled)
        self._audit(request, "cleanup.policy.update", {"id": row.id, "enabled": enabled})
        return _ok(200, cleanup_view(row))

    @handles("api.cleanup.policy.delete")
    async def delete_cleanup(self, request: Request) -> Response:
        await self.s.policies.delete_cleanup(request.params["registry"], _id(request))
        self._audit(request, "cleanup.policy.delete", {"id": _id(request)})
        return Response(204)

    # -- schedule and runs --------------------------------------------------------------------
    @handles("api.cleanup.schedule")
    async def schedule(self, request: Request) -> Response:
        return _ok(200, schedule_view(await self.s.policies.schedule(request.params["registry"])))

    @handles("api.cleanup.schedule.set")
    async def set_schedule(self, request: Request) -> Response:
        text = (await decode(request, ScheduleRequest)).schedule
        found = await self.s.policies.set_schedule(request.params["registry"], text)
        self._audit(request, "cleanup.schedule", {"schedule": found.expression or "None"})
        return _ok(200, schedule_view(found))

    @handles("api.cleanup.test")
    async def test_run(self, request: Request) -> Response:
        found = await self.s.policies.run(request.params["registry"], dry_run=True)
        return _ok(200, _details(found))

    @handles("api.cleanup.run")
    async def run_now(self, request: Request) -> Response:
        found = await self.s.policies.run(request.params["registry"], dry_run=False)
        self._audit(request, "cleanup.run", {"run": found[0].id, "deleted": found[0].deleted})
        return _ok(200, _details(found))

    @handles("api.cleanup.runs")
    async def runs(self, request: Request) -> Response:
        rows, total = await self.s.policies.runs(request.params["registry"], request.query_int("page"),
                                                 request.query_int("per_page"))
        return paged(request, "runs", [run_view(r) for r in rows], total)

    @handles("api.cleanup.run.details")
    async def run_details(self, request: Request) -> Response:
        return _ok(200, _details(await self.s.policies.run_details(request.params["registry"], _id(request))))

    # -- protection policies ------------------------------------------------------------------
    @handles("api.protection.policies")
    async def protection_policies(self, request: Request) -> Response:
        rows = await self.s.policies.protection_policies(request.params["registry"])
        return _ok(200, {"policies": [protection_view(r) for r in rows]})

    @handles("api.protection.policy.create")
    async def add_protection(self, request: Request) -> Response:
        b = await decode(request, NewProtectionPolicy)
        row = await self.s.policies.add_protection(request.params["registry"], b.image, b.tag)
        self._audit(request, "protection.policy.create", {"id": row.id})
        return _ok(201, protection_view(row))

    @handles("api.protection.policy.update")
    async def update_protection(self, request: Request) -> Response:
        enabled = (await decode(request, PolicyToggle)).enabled
        row = await self.s.policies.set_protection_enabled(request.params["registry"], _id(request), enabled)
        self._audit(request, "protection.policy.update", {"id": row.id, "enabled": enabled})
        return _ok(200, protection_view(row))

    @handles("api.protection.policy.delete")
    async def delete_protection(self, request: Request) -> Response:
        await self.s.policies.delete_protection(request.params["registry"], _id(request))
        self._audit(request, "protection.policy.delete", {"id": _id(request)})
        return Response(204)


__all__ = ["PoliciesAPI", "cleanup_view", "protection_view", "run_view", "schedule_view"]
