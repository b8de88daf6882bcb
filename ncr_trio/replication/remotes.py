"""Remote endpoints as use cases: what a remote may be (validation), creating, listing, changing and
deleting them, the `Source` the engine copies through, and the health check that makes a remote and
every policy using it "valid" or "invalid" (with the reason).

A remote is "invalid" ("not checked yet") until its first check; creating or changing one checks it at
once, and `run` checks every remote each `replication_check_seconds`. The access secret is sealed at
rest (ncr_trio/sealing.py, the remote's name and the field as context), never answered (`has_secret`),
and opened only into the `Source`. Requests go through `Reach.for_replication` (its allowed networks,
any port).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import trio

from ncr_trio.cache.caches import origin_url, text_field
from ncr_trio.cache.sources import SOURCE_TYPES, Source
from ncr_trio.cache.upstream import Reach, UpstreamError, Upstreams
from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.limits import MAX_DESCRIPTION
from ncr_trio.limits import REMOTE_MAX_CA_CERT as MAX_CA_CERT
from ncr_trio.limits import SOURCE_MAX_ACCESS_ID as MAX_ACCESS_ID
from ncr_trio.limits import SOURCE_MAX_SECRET as MAX_SECRET
from ncr_trio.meta.replication import RemoteInUse, RemoteRow, ReplicationStore
from ncr_trio.replication.model import RemoteInfo
from ncr_trio.sealing import Sealer, SealError
from ncr_trio.types import validate_registry_name

FIELDS = ("name", "url", "type", "access_id", "access_secret", "ca_cert", "insecure", "description")
MAX_REASON = 1000


def _invalid(message: str) -> RegistryError:
    return RegistryError("INVALID_REQUEST", message)


def _url(value: object) -> str:
    return origin_url(value, "url")


def _ca_cert(value: object) -> str:
    """A PEM bundle `ssl` can load ("" for none)."""
    pem = text_field(value, "ca_cert", MAX_CA_CERT, lines=True).strip()
    if not pem:
        return ""
    try:
        ssl.create_default_context().load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise _invalid("ca_cert must be PEM certificates") from None
    return pem + "\n"


def _bool(value: object, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"{what} must be true or false")
    return value


class Remotes:
    def __init__(self, config: Config, store: ReplicationStore, sealer: Sealer) -> None:
        self.config = config
        self.store = store
        self.sealer = sealer
        self.upstreams = Upstreams(config, Reach.for_replication(config))

    # -- what a remote may be -------------------------------------------------------------------
    def _fields(self, fields: Mapping[str, object], creating: bool) -> dict[str, Any]:
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise _invalid(f"unknown field(s): {', '.join(unknown)}")
        out: dict[str, Any] = {}
        if creating:
            name = fields.get("name")
            if not isinstance(name, str):
                raise _invalid("name must be a string")
            out["name"] = validate_registry_name(name, "remote")
            if "url" not in fields:
                raise _invalid("url is required")
        elif "name" in fields:
            raise _invalid("a remote's name cannot be changed")
        if "url" in fields:
            out["url"] = _url(fields["url"])
        if "type" in fields or creating:
            kind = fields.get("type", "ncr")
            if not isinstance(kind, str) or kind not in SOURCE_TYPES:
                raise _invalid(f"type must be one of {', '.join(SOURCE_TYPES)}")
            out["type"] = kind
        for key, limit, lines in (("access_id", MAX_ACCESS_ID, False), ("access_secret", MAX_SECRET, True),
                                  ("description", MAX_DESCRIPTION, False)):
            if key in fields or creating:
                out[key] = text_field(fields.get(key), key, limit, lines=lines)
        if "ca_cert" in fields or creating:
            out["ca_cert"] = _ca_cert(fields.get("ca_cert"))
        if "insecure" in fields or creating:
            out["insecure"] = _bool(fields.get("insecure"), "insecure")
        return out

    # -- sealing --------------------------------------------------------------------------------
    @staticmethod
    def _context(name: str) -> str:
        return f"replication-remote/{name}/access_secret"

    def _seal(self, name: str, secret: str) -> str:
        return self.sealer.seal(secret, self._context(name)) if secret else ""

    def _open(self, row: RemoteRow) -> str:
        if not row.access_secret:
            return ""
        try:
            return self.sealer.open(row.access_secret, self._context(row.info.name))
        except SealError:
            raise RegistryError("CONFLICT", f"the access secret of remote {row.info.name} does not open with this "
                                "server's key (keys/secrets.key): set it again") from None

    # -- use cases ------------------------------------------------------------------------------
    async def create(self, fields: Mapping[str, object]) -> RemoteInfo:
        f = self._fields(fields, creating=True)
        now = time.time()
        info = RemoteInfo(f["name"], f["url"], f["type"], f["access_id"], bool(f["access_secret"]), f["ca_cert"],
                          f["insecure"], f["description"], "invalid", "not checked yet", None, now, now)
        if not await self.store.create_remote(info, self._seal(info.name, f["access_secret"])):
            raise RegistryError("CONFLICT", f"a remote named {info.name} exists")
        return await self.check(info.name)

    async def list(self) -> list[RemoteInfo]:
        return [r.info for r in await self.store.remotes()]

    async def get(self, name: str) -> RemoteInfo:
        return (await self._get(name)).info

    async def update(self, name: str, fields: Mapping[str, object]) -> RemoteInfo:
        row = await self._get(name)
        f = self._fields(fields, creating=False)
        secret = self._seal(name, f.pop("access_secret")) if "access_secret" in f else row.access_secret
        info = replace(row.info, **f, has_secret=bool(secret), updated_at=time.time())
        if not await self.store.update_remote(info, secret):
            raise self._unknown(name)
        self.upstreams.forget(name)
        return await self.check(name)

    async def delete(self, name: str) -> None:
        try:
            found = await self.store.delete_remote(name)
        except RemoteInUse as e:
            raise RegistryError("CONFLICT", f"remote {name} is used by replication policies: "
                                f"{', '.join(e.policies)}") from None
        if not found:
            raise self._unknown(name)
        self.upstreams.forget(name)

    async def source(self, name: str) -> Source:
        """The remote as the engine's client takes it (its secret opened)."""
        row = await self._get(name)
        i = row.info
        return Source(i.name, i.type, i.url, i.access_id, self._open(row), "", i.ca_cert, i.insecure)

    async def find(self, name: str) -> Source | None:
        """The engine's `source_of`: the remote's Source, None when there is none (or its secret does not open)."""
        try:
            return await self.source(name)
        except RegistryError:
            return None

    async def check(self, name: str) -> RemoteInfo:
        """`GET /v2/` with the token flow; stores valid/invalid and the reason on the remote and its policies."""
        try:
            source = await self.source(name)
            await self.upstreams.get(source).ping()
            valid, reason = True, ""
        except RegistryError as e:
            if e.code == "NOT_FOUND":
                raise
            valid, reason = False, e.message
        except (UpstreamError, ValueError) as e:
            valid, reason = False, str(e) or type(e).__name__
        await self.store.set_remote_status(name, valid, reason[:MAX_REASON], time.time())
        return await self.get(name)

    async def check_all(self) -> None:
        for row in await self.store.remotes():
            try:
                await self.check(row.info.name)
            except RegistryError:
                continue  # deleted meanwhile

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check every remote each `replication_check_seconds` (a query when there are none)."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.config.replication_check_seconds)
                await self.check_all()
        finally:
            with trio.CancelScope(shield=True):
                await self.upstreams.aclose()

    async def _get(self, name: str) -> RemoteRow:
        row = await self.store.remote(name)
        if row is None:
            raise self._unknown(name)
        return row

    @staticmethod
    def _unknown(name: str) -> RegistryError:
        return RegistryError("NOT_FOUND", f"no remote named {name}")


__all__ = ["FIELDS", "Remotes"]
