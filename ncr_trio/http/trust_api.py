"""Image trust in the management API (issue 14; trust/service.py is the use case).

An artifact's signatures (`.../artifacts/{digest}/signatures`) are handled by http/api.py's
ManagementAPI beside the artifact's other operations (an image's name may hold slashes); it answers
with `signature_list` made here. TrustAPI holds the rest: the keys a registry trusts (manage on it),
the keys the whole installation trusts (system administrators), and a registry's requirements
(read to see them, manage to change them).
"""

from __future__ import annotations

import json

from ncr_trio.http import models as m
from ncr_trio.http.asgi import Request, Response
from ncr_trio.http.declare import bind, decode, encoded, given, handles
from ncr_trio.http.jsonapi import audit
from ncr_trio.http.operations import OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.meta.trust import GLOBAL, KeyRow, RegistryTrustSettings, TrustResult
from ncr_trio.registry import RegistryService
from ncr_trio.types import iso_time as t


def key_model(k: KeyRow) -> m.TrustKey:
    return m.TrustKey(name=k.name, id=k.key_id, algorithm=k.algorithm, registry=None if k.registry == GLOBAL
                      else k.registry, pem=k.pem, created_at=t(k.created_at))


def _named(keys: tuple[str, ...], names: dict[str, str]) -> list[str]:
    return [names[k] for k in keys if k in names]


def signed_model(r: TrustResult, names: dict[str, str]) -> m.Signed:
    """`names`: trusted keys' names by ID (TrustService.key_names)."""
    return m.Signed(state=r.state, signatures=r.signatures, keys=list(r.keys), key_names=_named(r.keys, names))


def signature_list(r: TrustResult, names: dict[str, str]) -> m.SignatureList:
    return m.SignatureList(digest=r.digest, state=r.state, keys=list(r.keys), computed_at=t(r.computed_at),
                           signatures=[m.SignatureEntry(layout=d.layout, manifest=d.manifest, index=d.index,
                                                        verdict=d.status, keys=list(d.keys),
                                                        key_names=_named(d.keys, names), reason=d.reason)
                                       for d in r.details])


def settings_model(s: RegistryTrustSettings) -> m.RegistryTrustSettings:
    return m.RegistryTrustSettings(registry=s.registry, require_signature=s.require_signature,
                                   require_verified_signature=s.require_verified_signature)


class TrustAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return bind(self, OPERATIONS)

    async def _list(self, registry: str | None) -> m.TrustKeyList:
        return m.TrustKeyList([key_model(k) for k in await self.s.trust.keys(registry)])

    async def _add(self, request: Request, registry: str | None) -> Response:
        body = await decode(request, m.NewTrustKey)
        row = await self.s.trust.add_key(registry, body.name, body.pem)
        audit(self.s.access, request, "trust.key.add", registry=registry, target=body.name,
              detail=json.dumps({"id": row.key_id, "algorithm": row.algorithm}))
        return encoded(201, key_model(row))

    async def _delete(self, request: Request, registry: str | None) -> None:
        name = request.params["key_name"]
        await self.s.trust.delete_key(registry, name)
        audit(self.s.access, request, "trust.key.delete", registry=registry, target=name)

    @handles("api.registry.trust.keys")
    async def registry_keys(self, request: Request) -> m.TrustKeyList:
        await self.s.namespaces.get(request.params["registry"])
        return await self._list(request.params["registry"])

    @handles("api.registry.trust.key.add")
    async def add_registry_key(self, request: Request) -> Response:
        await self.s.namespaces.get(request.params["registry"])
        return await self._add(request, request.params["registry"])

    @handles("api.registry.trust.key.delete")
    async def delete_registry_key(self, request: Request) -> None:
        await self.s.namespaces.get(request.params["registry"])
        await self._delete(request, request.params["registry"])

    @handles("api.trust.keys")
    async def keys(self, request: Request) -> m.TrustKeyList:
        return await self._list(None)

    @handles("api.trust.key.add")
    async def add_key(self, request: Request) -> Response:
        return await self._add(request, None)

    @handles("api.trust.key.delete")
    async def delete_key(self, request: Request) -> None:
        await self._delete(request, None)

    @handles("api.registry.trust")
    async def registry_settings(self, request: Request) -> m.RegistryTrustSettings:
        registry = request.params["registry"]
        await self.s.namespaces.get(registry)
        return settings_model(await self.s.trust.registry_settings(registry))

    @handles("api.registry.trust.update")
    async def update_registry_settings(self, request: Request) -> m.RegistryTrustSettings:
        registry = request.params["registry"]
        changes = given(await decode(request, m.RegistryTrustChanges))
        await self.s.namespaces.get(registry)
        updated = await self.s.trust.update_registry_settings(
            registry, require_signature=changes.get("require_signature"),
            require_verified_signature=changes.get("require_verified_signature"))
        audit(self.s.access, request, "registry.trust", registry=registry, detail=json.dumps(changes))
        return settings_model(updated)


__all__ = ["TrustAPI", "key_model", "settings_model", "signature_list", "signed_model"]
