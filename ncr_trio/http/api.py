"""The management API (`/api/v1/...`): registries, users, access keys, roles and the audit log.

Every route names the permission it needs (see http/auth.py); handlers only parse and answer.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal, TypeVar

from msgspec import UNSET

from ncr_trio.auth.roles import EVERY_REGISTRY
from ncr_trio.errors import RegistryError
from ncr_trio.http import models as m
from ncr_trio.http import zerocopy
from ncr_trio.http.asgi import Request, Response, json_response
from ncr_trio.http.declare import bind, decode, encoded, handles
from ncr_trio.http.jsonapi import audit, paged
from ncr_trio.http.operations import DOCUMENT_JSON, OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.http.scans_api import artifact_statuses, report_model, status_model
from ncr_trio.http.trust_api import signature_list, signed_model
from ncr_trio.meta import RegistryInfo
from ncr_trio.meta.catalog import ArtifactSummary, ImageSummary, TagRow
from ncr_trio.registry import RegistryService
from ncr_trio.registry.catalog import page_bounds
from ncr_trio.registry.namespaces import parse_cidrs
from ncr_trio.trust.service import ACCESSORY_TAG
from ncr_trio.types import iso_time as t

R = TypeVar("R", bound=m.Registry)
G = TypeVar("G", bound=m.GcRun)


def registry_model(model: type[R], i: RegistryInfo, **more: Any) -> R:
    return model(name=i.name, description=i.description, public_read=i.public_read, public_uri=i.public_uri,
                 allowed_cidrs=list(i.allowed_cidrs), type="normal" if i.cache is None else "image_cache",
                 cache=i.cache, created_at=t(i.created_at), updated_at=t(i.updated_at), **more)


def image_model(i: ImageSummary) -> m.Image:
    return m.Image(i.repository.split("/", 1)[1], i.repository, i.artifacts, i.tags, i.size, t(i.pushed_at),
                   t(i.pulled_at))


def artifact_model(a: ArtifactSummary, scan_status: str | None = None,
                   vulnerabilities: m.ScanTotals | None = None, signed: m.Signed | None = None) -> m.Artifact:
    accessories = [m.Accessory(digest=x.digest, type=x.type, tag=x.tag, artifact_type=x.artifact_type, size=x.size,
                               pushed_at=t(x.pushed_at)) for x in a.accessories]
    return m.Artifact(a.digest, a.media_type, a.artifact_type, a.size, [m.Platform(**p) for p in a.platforms],
                      list(a.tags), a.subject, t(a.pushed_at), t(a.pulled_at), signed, scan_status, vulnerabilities,
                      accessories)


def is_accessory(a: ArtifactSummary) -> bool:
    return a.subject is not None or any(ACCESSORY_TAG.fullmatch(tag) for tag in a.tags)


async def signed_of(service: RegistryService, repository: str, found: list[ArtifactSummary]) -> dict[str, m.Signed]:
    """The `signed` column of artifacts that are not accessories (signatures and attestations have none:
    they have a subject, or a cosign `.sig`/`.att`/`.sbom` tag)."""
    results = await service.trust.statuses(repository, [a.digest for a in found if not is_accessory(a)])
    names = await service.trust.key_names(repository.split("/", 1)[0]) if results else {}
    return {d: signed_model(r, names) for d, r in results.items()}


def tag_model(x: TagRow) -> m.Tag:
    return m.Tag(x.name, x.repository, x.digest, t(x.updated_at))


def gc_run(model: type[G], row: tuple[Any, ...], **more: Any) -> G:
    return model(id=int(row[0]), dry_run=bool(row[1]), started_at=t(row[2]), finished_at=t(row[3]),
                 blobs_removed=int(row[4]), manifests_removed=int(row[5]), uploads_removed=int(row[6]),
                 bytes_freed=int(row[7]), **more)


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
    async def whoami(self, request: Request) -> m.WhoAmI:
        p = request.principal
        return m.WhoAmI(p.user, p.system_admin, {k: str(v) for k, v in p.roles.items()}, p.key_id)

    # -- registries ---------------------------------------------------------------------------
    @handles("api.registries")
    async def list_registries(self, request: Request) -> m.RegistryList:
        """The registries the caller holds a role on and reaches from where they are (a system
        administrator sees every one: they may mend any registry's settings from anywhere)."""
        p = request.principal
        infos = [i for i in await self.s.namespaces.list()
                 if p.holds(i.name) and (p.system_admin or request.reaches(i))]
        return m.RegistryList([registry_model(m.Registry, i) for i in infos])

    @handles("api.registry.create")
    async def create_registry(self, request: Request) -> m.Registry:
        body = await decode(request, m.NewRegistry)
        info = await self.s.namespaces.create(
            body.name, request.principal.user, description=body.description or "",
            public_read=bool(body.public_read), public_uri=body.public_uri is not False,
            allowed_cidrs=parse_cidrs(body.allowed_cidrs), cache=body.cache)
        return registry_model(m.Registry, info)

    @handles("api.registry")
    async def get_registry(self, request: Request) -> m.RegistryDetail:
        info = await self.s.namespaces.get(request.params["registry"])
        return registry_model(m.RegistryDetail, info, images=await self.s.namespaces.images(info.name))

    @handles("api.registry.update")
    async def update_registry(self, request: Request) -> m.Registry:
        body = await decode(request, m.RegistryChanges)
        cidrs = None if body.allowed_cidrs is UNSET else parse_cidrs(body.allowed_cidrs)
        info = await self.s.namespaces.update(
            request.params["registry"], request.principal.user, description=body.description,
            public_read=body.public_read, public_uri=body.public_uri, allowed_cidrs=cidrs)
        return registry_model(m.Registry, info)

    @handles("api.registry.delete")
    async def delete_registry(self, request: Request) -> m.RegistryDeleted:
        force = (request.query("force") or "").lower() in ("1", "true", "yes")
        removed = await self.s.namespaces.delete(request.params["registry"], request.principal.user, force=force)
        return m.RegistryDeleted(request.params["registry"], removed)

    @handles("api.members")
    async def members(self, request: Request) -> m.MemberList:
        members = await self.s.access.store.members(request.params["registry"])
        return m.MemberList([m.Member(u, r) for u, r in members])

    # -- images, artifacts, tags ---------------------------------------------------------------
    @handles("api.images")
    async def images(self, request: Request) -> m.ImagePage:
        await self.s.namespaces.get(request.params["registry"])
        found, total = await self.s.catalog.images(request.params["registry"], request.query("q"),
                                                   request.query_int("page"), request.query_int("per_page"))
        return paged(request, m.ImagePage, total, images=[image_model(i) for i in found])

    @handles("api.image")
    async def image(self, request: Request) -> m.Image:
        return image_model(await self.s.catalog.image(request.params["registry"], request.params["image"]))

    @handles("api.image.delete")
    async def delete_image(self, request: Request) -> m.ImageDeleted:
        p = request.params
        removed = await self.s.catalog.delete_image(p["registry"], p["image"])
        audit(self.s.access, request, "delete", registry=p["registry"], repository=f"{p['registry']}/{p['image']}",
              detail=json.dumps({"artifacts": removed}))
        return m.ImageDeleted(f"{p['registry']}/{p['image']}", removed)

    @handles("api.artifacts")
    async def artifacts(self, request: Request) -> m.ArtifactPage:
        p = request.params
        found, total = await self.s.catalog.artifacts(p["registry"], p["image"], request.query_int("page"),
                                                      request.query_int("per_page"))
        repository = f"{p['registry']}/{p['image']}"
        statuses = await artifact_statuses(self.s, repository, found)
        signed = await signed_of(self.s, repository, found)
        return paged(request, m.ArtifactPage, total, artifacts=[
            artifact_model(x, *statuses[x.digest], signed.get(x.digest)) for x in found])

    @handles("api.artifact")
    async def artifact(self, request: Request) -> m.Artifact:
        p = request.params
        found = await self.s.catalog.artifact(p["registry"], p["image"], p["digest"])
        repository = f"{p['registry']}/{p['image']}"
        statuses = await artifact_statuses(self.s, repository, [found])
        signed = await signed_of(self.s, repository, [found])
        return artifact_model(found, *statuses[found.digest], signed.get(found.digest))

    @handles("api.artifact.signatures")
    async def signatures(self, request: Request) -> m.SignatureList:
        repository = await self._scannable(request)
        names = await self.s.trust.key_names(request.params["registry"])
        return signature_list(await self.s.trust.signatures(repository, request.params["digest"]), names)

    # -- an artifact's scan (http/scans_api.py makes the answers) ------------------------------
    async def _scannable(self, request: Request) -> str:
        """The artifact's repository, once it is known to exist."""
        p = request.params
        await self.s.catalog.artifact(p["registry"], p["image"], p["digest"])
        return f"{p['registry']}/{p['image']}"

    @handles("api.artifact.scan")
    async def scan_status(self, request: Request) -> m.ScanStatus:
        repository = await self._scannable(request)
        return status_model(request.params["digest"], await self.s.scans.result(repository, request.params["digest"]))

    @handles("api.artifact.scan.start")
    async def scan_start(self, request: Request) -> m.ScanStatus:
        return await self._scan_action(request, "start")

    @handles("api.artifact.scan.stop")
    async def scan_stop(self, request: Request) -> m.ScanStatus:
        return await self._scan_action(request, "stop")

    async def _scan_action(self, request: Request, verb: Literal["start", "stop"]) -> m.ScanStatus:
        repository, digest = await self._scannable(request), request.params["digest"]
        act = self.s.scans.start if verb == "start" else self.s.scans.stop
        row = await act(repository, digest)
        audit(self.s.access, request, f"scan.{verb}", registry=request.params["registry"], repository=repository,
              target=digest)
        return status_model(digest, row)

    @handles("api.artifact.vulnerabilities")
    async def vulnerabilities(self, request: Request) -> m.VulnerabilityReport:
        repository, digest = await self._scannable(request), request.params["digest"]
        row, report = await self.s.scans.report(repository, digest)
        return report_model(digest, row, report)

    @handles("api.artifact.delete")
    async def delete_artifact(self, request: Request) -> None:
        p = request.params
        await self.s.catalog.delete_artifact(p["registry"], p["image"], p["digest"])
        audit(self.s.access, request, "delete", registry=p["registry"], repository=f"{p['registry']}/{p['image']}",
              target=p["digest"])

    @handles("api.tags")
    async def tags(self, request: Request) -> m.TagPage:
        p = request.params
        found, total = await self.s.catalog.tags(p["registry"], p["image"], request.query("q"), request.query("glob"),
                                                 request.query_int("page"), request.query_int("per_page"))
        return paged(request, m.TagPage, total, tags=[tag_model(x) for x in found])

    @handles("api.registry.tags")
    async def registry_tags(self, request: Request) -> m.TagPage:
        await self.s.namespaces.get(request.params["registry"])
        found, total = await self.s.catalog.tags(request.params["registry"], None, request.query("q"),
                                                 request.query("glob"), request.query_int("page"),
                                                 request.query_int("per_page"))
        return paged(request, m.TagPage, total, tags=[tag_model(x) for x in found])

    @handles("api.artifact.tags")
    async def create_tag(self, request: Request) -> m.Tag:
        p = request.params
        name = (await decode(request, m.NewTag)).name
        tag = await self.s.catalog.create_tag(p["registry"], p["image"], p["digest"], name)
        audit(self.s.access, request, "tag.create", registry=p["registry"], repository=tag.repository,
              target=f"{name}@{tag.digest}")
        return tag_model(tag)

    @handles("api.tag.delete")
    async def delete_tag(self, request: Request) -> None:
        p = request.params
        await self.s.catalog.delete_tag(p["registry"], p["image"], p["tag"])
        audit(self.s.access, request, "tag.delete", registry=p["registry"],
              repository=f"{p['registry']}/{p['image']}", target=p["tag"])

    # -- garbage collection -------------------------------------------------------------------
    @handles("api.gc.run")
    async def run_gc(self, request: Request) -> m.GcReport:
        body = await decode(request, m.GcRequest)
        r = await self.s.gc.run(dry_run=bool(body.dry_run), delete_untagged=body.delete_untagged)
        audit(self.s.access, request, "gc", detail=json.dumps({"dry_run": r.dry_run, "blobs": len(r.blobs)}))
        row = (r.id, r.dry_run, r.started_at, r.finished_at, len(r.blobs), len(r.manifests), len(r.uploads),
               r.bytes_freed)
        return gc_run(m.GcReport, row, blobs=r.blobs, manifests=r.manifests, uploads=r.uploads)

    @handles("api.gc.runs")
    async def gc_runs(self, request: Request) -> m.GcRunPage:
        limit, offset = page_bounds(request.query_int("page"), request.query_int("per_page"))
        rows, total = await self.s.catalog.queries.gc_runs(limit, offset)
        return paged(request, m.GcRunPage, total, runs=[gc_run(m.GcRun, r) for r in rows])

    # -- users, keys, roles -------------------------------------------------------------------
    @handles("api.users")
    async def list_users(self, request: Request) -> m.UserList:
        users = await self.s.access.store.users()
        return m.UserList([m.User(u.name, u.system_admin, t(u.created_at)) for u in users
                           if not u.name.startswith("deleted:")])

    @handles("api.user.create")
    async def create_user(self, request: Request) -> m.UserCreated:
        body = await decode(request, m.NewUser)
        await self.s.accounts.create_user(body.name, body.password, bool(body.system_admin), request.principal.user)
        return m.UserCreated(body.name)

    @handles("api.user.delete")
    async def delete_user(self, request: Request) -> None:
        await self.s.accounts.delete_user(request.params["user"], request.principal.user)

    @handles("api.keys")
    async def list_keys(self, request: Request) -> m.KeyList:
        user = self._user(request)
        revoked = (request.query("revoked") or "") == "true"
        return m.KeyList([m.Key(**k) for k in await self.s.accounts.keys(user, revoked)])

    @handles("api.key.create")
    async def create_key(self, request: Request) -> Response:
        user = self._user(request)
        body = await decode(request, m.KeyRequest)
        key = await self.s.accounts.create_key(user, body.description or "", request.principal.user)
        return encoded(201, m.NewKey(**key), {"Cache-Control": "no-store"})

    @handles("api.key.revoke")
    async def revoke_key(self, request: Request) -> None:
        await self.s.accounts.revoke_key(self._user(request), request.params["key"], request.principal.user)

    @handles("api.roles")
    async def list_roles(self, request: Request) -> m.RoleList:
        roles = await self.s.access.store.roles(self._user(request))
        return m.RoleList([m.RoleBinding(k, v) for k, v in sorted(roles.items())])

    @handles("api.role.set")
    async def set_role(self, request: Request) -> m.RoleGrant:
        body = await decode(request, m.RoleRequest)
        role = await self.s.accounts.set_role(request.params["user"], _registry(request), body.role,
                                              request.principal.user)
        return m.RoleGrant(request.params["user"], _registry(request), role or "")

    @handles("api.role.delete")
    async def drop_role(self, request: Request) -> None:
        await self.s.accounts.set_role(request.params["user"], _registry(request), None, request.principal.user)

    # -- audit --------------------------------------------------------------------------------
    @handles("api.audit")
    async def audit(self, request: Request) -> m.AuditList:
        await self.s.access.flush()  # what happened just now is in the answer
        limit = min(request.query_int("limit") or 100, 1000)
        entries = await self.s.access.store.audit(
            actor=request.query("actor"), action=request.query("action"), registry=request.query("registry"),
            before=request.query_int("before"), limit=limit)
        return m.AuditList([m.AuditEntry(e.id or 0, t(e.at), e.actor, e.action, e.outcome, e.registry, e.repository,
                                         e.target, e.client, json.loads(e.detail) if e.detail and
                                         e.detail.startswith("{") else e.detail) for e in entries])

    @handles("api.io")
    async def io(self, request: Request) -> m.IoStats:
        """What this worker process did: proof that uploads go to disk with O_DIRECT and downloads with sendfile."""
        return m.IoStats(pid=os.getpid(),
                         direct_io=m.DirectIo(enabled=self.s.config.direct_io and self.s.reg.storage.local,
                                              **self.s.reg.storage.write_stats()),
                         zero_copy=m.ZeroCopy(enabled=zerocopy.installed(), **zerocopy.stats()))


def _registry(request: Request) -> str:
    on = request.params["on"]
    return EVERY_REGISTRY if on in ("*", "all", "_all") else on


__all__ = ["ManagementAPI"]
