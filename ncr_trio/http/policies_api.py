"""A registry's cleanup and protection policies in the management API
(`/api/v1/registries/{registry}/cleanup/...` and `.../protection/...`; docs/api.md, docs/policies.md).

Viewing policies, the schedule and the cleanup history needs *read* on the registry; adding,
enabling or disabling, deleting, scheduling and running (a test run too) needs *manage* (the route
table's action column; http/auth.py), as the guide's role table says.
"""

from __future__ import annotations

import json
from typing import Any

from ncr_trio.errors import RegistryError
from ncr_trio.http.asgi import Request, Response
from ncr_trio.http.jsonapi import REGISTRY as _REG
from ncr_trio.http.jsonapi import audit, numeric_id, paged, read_object
from ncr_trio.http.jsonapi import ok as _ok
from ncr_trio.http.routes import Route, route
from ncr_trio.meta.policies import CleanupRow, CleanupRun, ProtectionRow
from ncr_trio.registry import RegistryService
from ncr_trio.registry.cleanup import Schedule, describe_rule
from ncr_trio.types import iso_time

_ID = "(?P<id>[^/]+)"


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


_KINDS: dict[type, str] = {str: "a string", bool: "true or false", int: "a whole number"}


def _field(body: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = body.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RegistryError("INVALID_REQUEST", f"{key} must be {_KINDS[kind]}")
    return value


def _id(request: Request) -> int:
    return numeric_id(request, "id", f"no policy or run {request.params['id'][:40]!r}")


class PoliciesAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        c = f"/api/v1/registries/{_REG}/cleanup"
        p = f"/api/v1/registries/{_REG}/protection"
        return [
            route("api.cleanup.policies", "GET", f"{c}/policies", "api:read", self.cleanup_policies),
            route("api.cleanup.policy.create", "POST", f"{c}/policies", "api:manage", self.add_cleanup),
            route("api.cleanup.policy.update", "PATCH", f"{c}/policies/{_ID}", "api:manage", self.update_cleanup),
            route("api.cleanup.policy.delete", "DELETE", f"{c}/policies/{_ID}", "api:manage", self.delete_cleanup),
            route("api.cleanup.schedule", "GET", f"{c}/schedule", "api:read", self.schedule),
            route("api.cleanup.schedule.set", "PUT", f"{c}/schedule", "api:manage", self.set_schedule),
            route("api.cleanup.test", "POST", f"{c}/test", "api:manage", self.test_run),
            route("api.cleanup.run", "POST", f"{c}/run", "api:manage", self.run_now),
            route("api.cleanup.runs", "GET", f"{c}/runs", "api:read", self.runs),
            route("api.cleanup.run.details", "GET", f"{c}/runs/{_ID}", "api:read", self.run_details),
            route("api.protection.policies", "GET", f"{p}/policies", "api:read", self.protection_policies),
            route("api.protection.policy.create", "POST", f"{p}/policies", "api:manage", self.add_protection),
            route("api.protection.policy.update", "PATCH", f"{p}/policies/{_ID}", "api:manage",
                  self.update_protection),
            route("api.protection.policy.delete", "DELETE", f"{p}/policies/{_ID}", "api:manage",
                  self.delete_protection),
        ]

    def _audit(self, request: Request, action: str, detail: dict[str, Any]) -> None:
        audit(self.s.access, request, action, registry=request.params["registry"], detail=json.dumps(detail))

    # -- cleanup policies ---------------------------------------------------------------------
    async def cleanup_policies(self, request: Request) -> Response:
        rows = await self.s.policies.cleanup_policies(request.params["registry"])
        return _ok(200, {"policies": [cleanup_view(r) for r in rows]})

    async def add_cleanup(self, request: Request) -> Response:
        body = await read_object(request, "image", "tag", "untagged", "rule", "n")
        row = await self.s.policies.add_cleanup(
            request.params["registry"], _field(body, "image", str, "**"), _field(body, "tag", str, "**"),
            _field(body, "untagged", bool, False), _field(body, "rule", str), _field(body, "n", int))
        self._audit(request, "cleanup.policy.create", {"id": row.id})
        return _ok(201, cleanup_view(row))

    async def update_cleanup(self, request: Request) -> Response:
        enabled = _field(await read_object(request, "enabled"), "enabled", bool)
        row = await self.s.policies.set_cleanup_enabled(request.params["registry"], _id(request), enabled)
        self._audit(request, "cleanup.policy.update", {"id": row.id, "enabled": enabled})
        return _ok(200, cleanup_view(row))

    async def delete_cleanup(self, request: Request) -> Response:
        await self.s.policies.delete_cleanup(request.params["registry"], _id(request))
        self._audit(request, "cleanup.policy.delete", {"id": _id(request)})
        return Response(204)

    # -- schedule and runs --------------------------------------------------------------------
    async def schedule(self, request: Request) -> Response:
        return _ok(200, schedule_view(await self.s.policies.schedule(request.params["registry"])))

    async def set_schedule(self, request: Request) -> Response:
        text = _field(await read_object(request, "schedule"), "schedule", str)
        found = await self.s.policies.set_schedule(request.params["registry"], text)
        self._audit(request, "cleanup.schedule", {"schedule": found.expression or "None"})
        return _ok(200, schedule_view(found))

    async def test_run(self, request: Request) -> Response:
        found = await self.s.policies.run(request.params["registry"], dry_run=True)
        return _ok(200, _details(found))

    async def run_now(self, request: Request) -> Response:
        found = await self.s.policies.run(request.params["registry"], dry_run=False)
        self._audit(request, "cleanup.run", {"run": found[0].id, "deleted": found[0].deleted})
        return _ok(200, _details(found))

    async def runs(self, request: Request) -> Response:
        rows, total = await self.s.policies.runs(request.params["registry"], request.query_int("page"),
                                                 request.query_int("per_page"))
        return paged(request, "runs", [run_view(r) for r in rows], total)

    async def run_details(self, request: Request) -> Response:
        return _ok(200, _details(await self.s.policies.run_details(request.params["registry"], _id(request))))

    # -- protection policies ------------------------------------------------------------------
    async def protection_policies(self, request: Request) -> Response:
        rows = await self.s.policies.protection_policies(request.params["registry"])
        return _ok(200, {"policies": [protection_view(r) for r in rows]})

    async def add_protection(self, request: Request) -> Response:
        body = await read_object(request, "image", "tag")
        row = await self.s.policies.add_protection(request.params["registry"], _field(body, "image", str, "**"),
                                                   _field(body, "tag", str))
        self._audit(request, "protection.policy.create", {"id": row.id})
        return _ok(201, protection_view(row))

    async def update_protection(self, request: Request) -> Response:
        enabled = _field(await read_object(request, "enabled"), "enabled", bool)
        row = await self.s.policies.set_protection_enabled(request.params["registry"], _id(request), enabled)
        self._audit(request, "protection.policy.update", {"id": row.id, "enabled": enabled})
        return _ok(200, protection_view(row))

    async def delete_protection(self, request: Request) -> Response:
        await self.s.policies.delete_protection(request.params["registry"], _id(request))
        self._audit(request, "protection.policy.delete", {"id": _id(request)})
        return Response(204)


__all__ = ["PoliciesAPI", "cleanup_view", "protection_view", "run_view", "schedule_view"]
