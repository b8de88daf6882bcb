"""The management API (`/api/v1/...`): registries, users, access keys, roles and the audit log.

Every route names the permission it needs (see http/auth.py); handlers only parse and answer.
"""

from __future__ import annotations

import json
import os
from typing import Any

from msgspec import UNSET

from ncr_trio.auth.roles import EVERY_REGISTRY
from ncr_trio.errors import RegistryError
from ncr_trio.http import zerocopy
from ncr_trio.http.asgi import Request, Response, json_response
from ncr_trio.http.declare import bind, decode, handles
from ncr_trio.http.jsonapi import audit, paged
from ncr_trio.http.jsonapi import ok as _ok
from ncr_trio.http.models import GcRequest, KeyRequest, NewRegistry, NewTag, NewUser, RegistryChanges, RoleRequest
from ncr_trio.http.operations import DOCUMENT_JSON, OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.meta import AuditEntry, RegistryInfo
from ncr_trio.meta.catalog import ArtifactSummary, ImageSummary, TagRow
from ncr_trio.registry import RegistryService
from ncr_trio.registry.catalog import page_bounds
from ncr_trio.registry.namespaces import parse_cidrs
from ncr_trio.types import iso_time


def registry_view(info: RegistryInfo) -> dict[str, Any]:
    return {"name": info.name, "description": info.description, "public_read": info.public_read,
            "public_uri": info.public_uri, "allowed_cidrs": list(info.allowed_cidrs),
            "created_at": iso_time(info.created_at), "updated_at": iso_time(info.updated_at)}


def image_view(i: ImageSummary) -> dict[str, Any]:
    return {"name": i.repository.split("/", 1)[1], "repository": i.repository, "artifacts": i.artifacts,
            "tags": i.tags, "size": i.size, "pushed_at": iso_time(i.pushed_at), "pulled_at": iso_time(i.pulled_at)}


def artifact_view(a: ArtifactSummary) -> dict[str, Any]:
    return {"digest": a.digest, "media_type": a.media_type, "artifact_type": a.artifact_type, "size": a.size,
            "platforms": list(a.platforms), "tags": list(a.tags), "subject": a.subject,
            "pushed_at": iso_time(a.pushed_at), "pulled_at": iso_time(a.pulled_at), "signed": None, "scan_status": None}


def tag_view(t: TagRow) -> dict[str, Any]:
    return {"name": t.name, "repository": t.repository, "digest": t.digest, "updated_at": iso_time(t.updated_at)}


def gc_view(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": int(row[0]), "dry_run": bool(row[1]), "started_at": iso_time(row[2]), "finished_at": iso_time(row[3]),
            "blobs_removed": int(row[4]), "manifests_removed": int(row[5]), "uploads_removed": int(row[6]),
            "bytes_freed": int(row[7])}


def audit_view(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "at": iso_time(e.at), "actor": e.actor, "action": e.action, "outcome": e.outcome,
            "registry": e.registry, "repository": e.repository, "target": e.target, "client": e.client,
            "detail": json.loads(e.detail) if e.detail and e.detail.startswith("{") else e.detail}


class ManagementAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return bind(self, OPERATIONS)

    def _user(self, request: Request) -> str:
        """The `{user}` of the path ("me": whoever asks); only administrators act for others."""
        user = request.params["user"]
        me = request.principal
        if user == "me":
            return me.user
        if user != me.user and not me.system_admin:
            raise RegistryError("DENIED", "only a system administrator manages other users' keys and roles")
        return user

    @handles("api.openapi")
    async def openapi(self, request: Request) -> Response:
        return json_response(200, DOCUMENT_JSON)

    @handles("api.whoami")
    async def whoami(self, request: Request) -> Response:
        p = request.principal
        return _ok(200, {"user": p.user, "system_admin": p.system_admin, "roles": dict(p.roles), "key_id": p.key_id})

    # -- registries ---------------------------------------------------------------------------
    @handles("api.registries")
    async def list_registries(self, request: Request) -> Response:
        """The registries the caller holds a role on and reaches from where they are (a system
        administrator sees every one: they may mend any registry's settings from anywhere)."""
        p = request.principal
        infos = [i for i in await self.s.namespaces.list()
                 if p.holds(i.name) and (p.system_admin or request.reaches(i))]
        return _ok(200, {"registries": [registry_view(i) for i in infos]})

    @handles("api.registry.create")
    async def create_registry(self, request: Request) -> Response:
        body = await decode(request, NewRegistry)
        info = await self.s.namespaces.create(
            body.name, request.principal.user, description=body.description or "",
            public_read=bool(body.public_read), public_uri=body.public_uri is not False,
            allowed_cidrs=parse_cidrs(body.allowed_cidrs))
        return _ok(201, registry_view(info))

    @handles("api.registry")
    async def get_registry(self, request: Request) -> Response:
        info = await self.s.namespaces.get(request.params["registry"])
        images = await self.s.namespaces.images(info.name)
        return _ok(200, {**registry_view(info), "images": images})

    @handles("api.registry.update")
    async def update_registry(self, request: Request) -> Response:
        body = await decode(request, RegistryChanges)
        cidrs = None if body.allowed_cidrs is UNSET else parse_cidrs(body.allowed_cidrs)
        info = await self.s.namespaces.update(
            request.params["registry"], request.principal.user, description=body.description,
            public_read=body.public_read, public_uri=body.public_uri, allowed_cidrs=cidrs)
        return _ok(200, registry_view(info))

    @handles("api.registry.delete")
    async def delete_registry(self, request: Request) -> Response:
        force = (request.query("force") or "").lower() in ("1", "true", "yes")
        removed = await self.s.namespaces.delete(request.params["registry"], request.principal.user, force=force)
        return _ok(200, {"deleted": request.params["registry"], "images_deleted": removed})

    @handles("api.members")
    async def members(self, request: Request) -> Response:
        members = await self.s.access.store.members(request.params["registry"])
        return _ok(200, {"members": [{"user": u, "role": r} for u, r in members]})

    # -- images, artifacts, tags ---------------------------------------------------------------
    @handles("api.images")
    async def images(self, request: Request) -> Response:
        await self.s.namespaces.get(request.params["registry"])
        found, total = await self.s.catalog.images(request.params["registry"], request.query("q"),
                                                   request.query_int("page"), request.query_int("per_page"))
        return paged(request, "images", [image_view(i) for i in found], total)

    @handles("api.image")
    async def image(self, request: Request) -> Response:
        return _ok(200, image_view(await self.s.catalog.image(request.params["registry"], request.params["image"])))

    @handles("api.image.delete")
    async def delete_image(self, request: Request) -> Response:
        p = request.params
        removed = await self.s.catalog.delete_image(p["registry"], p["image"])
        audit(self.s.access, request, "delete", registry=p["registry"], repository=f"{p['registry']}/{p['image']}",
              detail=json.dumps({"artifacts": removed}))
        return _ok(200, {"deleted": f"{p['registry']}/{p['image']}", "artifacts_deleted": removed})

    @handles("api.artifacts")
    async def artifacts(self, request: Request) -> Response:
        p = request.params
        found, total = await self.s.catalog.artifacts(p["registry"], p["image"], request.query_int("page"),
                                                      request.query_int("per_page"))
        return paged(request, "artifacts", [artifact_view(x) for x in found], total)

    @handles("api.artifact")
    async def artifact(self, request: Request) -> Response:
        p = request.params
        return _ok(200, artifact_view(await self.s.catalog.artifact(p["registry"], p["image"], p["digest"])))

    @handles("api.artifact.delete")
    async def delete_artifact(self, request: Request) -> Response:
        p = request.params
        await self.s.catalog.delete_artifact(p["registry"], p["image"], p["digest"])
        audit(self.s.access, request, "delete", registry=p["registry"], repository=f"{p['registry']}/{p['image']}",
              target=p["digest"])
        return Response(204)

    @handles("api.tags")
    async def tags(self, request: Request) -> Response:
        p = request.params
        found, total = await self.s.catalog.tags(p["registry"], p["image"], request.query("q"), request.query("glob"),
                                                 request.query_int("page"), request.query_int("per_page"))
        return paged(request, "tags", [tag_view(t) for t in found], total)

    @handles("api.registry.tags")
    async def registry_tags(self, request: Request) -> Response:
        await self.s.namespaces.get(request.params["registry"])
        found, total = await self.s.catalog.tags(request.params["registry"], None, request.query("q"),
                                                 request.query("glob"), request.query_int("page"),
                                                 request.query_int("per_page"))
        return paged(request, "tags", [tag_view(t) for t in found], total)

    @handles("api.artifact.tags")
    async def create_tag(self, request: Request) -> Response:
        p = request.params
        name = (await decode(request, NewTag)).name
        tag = await self.s.catalog.create_tag(p["registry"], p["image"], p["digest"], name)
        audit(self.s.access, request, "tag.create", registry=p["registry"], repository=tag.repository,
              target=f"{name}@{tag.digest}")
        return _ok(201, tag_view(tag))

    @handles("api.tag.delete")
    async def delete_tag(self, request: Request) -> Response:
        p = request.params
        await self.s.catalog.delete_tag(p["registry"], p["image"], p["tag"])
        audit(self.s.access, request, "tag.delete", registry=p["registry"],
              repository=f"{p['registry']}/{p['image']}", target=p["tag"])
        return Response(204)

    # -- garbage collection -------------------------------------------------------------------
    @handles("api.gc.run")
    async def run_gc(self, request: Request) -> Response:
        body = await decode(request, GcRequest)
        report = await self.s.gc.run(dry_run=bool(body.dry_run), delete_untagged=body.delete_untagged)
        view = gc_view((report.id, report.dry_run, report.started_at, report.finished_at, len(report.blobs),
                        len(report.manifests), len(report.uploads), report.bytes_freed))
        audit(self.s.access, request, "gc", detail=json.dumps({"dry_run": report.dry_run, "blobs": len(report.blobs)}))
        return _ok(200, {**view, "blobs": report.blobs, "manifests": report.manifests, "uploads": report.uploads})

    @handles("api.gc.runs")
    async def gc_runs(self, request: Request) -> Response:
        limit, offset = page_bounds(request.query_int("page"), request.query_int("per_page"))
        rows, total = await self.s.catalog.queries.gc_runs(limit, offset)
        return paged(request, "runs", [gc_view(r) for r in rows], total)

    # -- users, keys, roles -------------------------------------------------------------------
    @handles("api.users")
    async def list_users(self, request: Request) -> Response:
        users = await self.s.access.store.users()
        return _ok(200, {"users": [{"name": u.name, "system_admin": u.system_admin,
                                    "created_at": iso_time(u.created_at)}
                                   for u in users if not u.name.startswith("deleted:")]})

    @handles("api.user.create")
    async def create_user(self, request: Request) -> Response:
        body = await decode(request, NewUser)
        await self.s.accounts.create_user(body.name, body.password, bool(body.system_admin), request.principal.user)
        return _ok(201, {"name": body.name})

    @handles("api.user.delete")
    async def delete_user(self, request: Request) -> Response:
        await self.s.accounts.delete_user(request.params["user"], request.principal.user)
        return Response(204)

    @handles("api.keys")
    async def list_keys(self, request: Request) -> Response:
        user = self._user(request)
        revoked = (request.query("revoked") or "") == "true"
        return _ok(200, {"keys": await self.s.accounts.keys(user, revoked)})

    @handles("api.key.create")
    async def create_key(self, request: Request) -> Response:
        user = self._user(request)
        body = await decode(request, KeyRequest)
        key = await self.s.accounts.create_key(user, body.description or "", request.principal.user)
        return _ok(201, key, {"Cache-Control": "no-store"})

    @handles("api.key.revoke")
    async def revoke_key(self, request: Request) -> Response:
        await self.s.accounts.revoke_key(self._user(request), request.params["key"], request.principal.user)
        return Response(204)

    @handles("api.roles")
    async def list_roles(self, request: Request) -> Response:
        roles = await self.s.access.store.roles(self._user(request))
        return _ok(200, {"roles": [{"registry": k, "role": v} for k, v in sorted(roles.items())]})

    @handles("api.role.set")
    async def set_role(self, request: Request) -> Response:
        body = await decode(request, RoleRequest)
        role = await self.s.accounts.set_role(request.params["user"], _registry(request), body.role,
                                              request.principal.user)
        return _ok(200, {"user": request.params["user"], "registry": _registry(request), "role": role})

    @handles("api.role.delete")
    async def drop_role(self, request: Request) -> Response:
        await self.s.accounts.set_role(request.params["user"], _registry(request), None, request.principal.user)
        return Response(204)

    # -- audit --------------------------------------------------------------------------------
    @handles("api.audit")
    async def audit(self, request: Request) -> Response:
        await self.s.access.flush()  # what happened just now is in the answer
        limit = min(request.query_int("limit") or 100, 1000)
        entries = await self.s.access.store.audit(
            actor=request.query("actor"), action=request.query("action"), registry=request.query("registry"),
            before=request.query_int("before"), limit=limit)
        return _ok(200, {"entries": [audit_view(e) for e in entries]})

    @handles("api.io")
    async def io(self, request: Request) -> Response:
        """What this worker process did: proof that uploads go to disk with O_DIRECT and downloads with sendfile."""
        return _ok(200, {"pid": os.getpid(),
                         "direct_io": {"enabled": self.s.config.direct_io, **self.s.reg.storage.write_stats()},
                         "zero_copy": {"enabled": zerocopy.installed(), **zerocopy.stats()}})


def _registry(request: Request) -> str:
    on = request.params["on"]
    return EVERY_REGISTRY if on in ("*", "all", "_all") else on


__all__ = ["ManagementAPI"]
