"""Replication in the management API (docs/replication.md): remote registries (`/api/v1/remotes...`,
system administrators only) and a registry's replication policies, their runs and history
(`/api/v1/registries/{registry}/replications...`): viewing needs *read* on the registry; creating,
changing, deleting, running and stopping need *manage* (the guide's role table; http/auth.py applies the
route table's action column). A remote's access secret is write-only: answers say whether one is set."""

from __future__ import annotations

import json
from typing import Any

from ncr_trio.http import models as m
from ncr_trio.http.asgi import Request
from ncr_trio.http.declare import bind, decode, given, handles
from ncr_trio.http.jsonapi import audit, numeric_id, paged
from ncr_trio.http.operations import OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.registry import RegistryService
from ncr_trio.replication.model import Execution, Policy, RemoteInfo, Task
from ncr_trio.types import iso_time as t


def remote_model(r: RemoteInfo) -> m.Remote:
    return m.Remote(name=r.name, url=r.url, type=r.type, access_id=r.access_id, has_secret=r.has_secret,
                    ca_cert=r.ca_cert, insecure=r.insecure, description=r.description, status=r.status,
                    reason=r.reason, checked_at=t(r.checked_at), created_at=t(r.created_at),
                    updated_at=t(r.updated_at))


def policy_model(p: Policy, next_run_at: float | None) -> m.ReplicationPolicy:
    return m.ReplicationPolicy(
        id=p.id, registry=p.registry, name=p.name, description=p.description, direction=p.direction,
        remote=p.remote, remote_namespace=p.remote_namespace, name_filter=p.name_filter, tag_filter=p.tag_filter,
        tag_filter_mode=p.tag_filter_mode, trigger=p.trigger, schedule=p.schedule, next_run_at=t(next_run_at),
        override=p.override, bandwidth_kbps=p.bandwidth_kbps, enabled=p.enabled, status=p.status, reason=p.reason,
        created_at=t(p.created_at), updated_at=t(p.updated_at))


def execution_model(e: Execution) -> m.Execution:
    return m.Execution(id=e.id, policy_id=e.policy_id, trigger=e.trigger, status=e.status,
                       started_at=t(e.started_at), ended_at=t(e.ended_at), copied=e.copied,
                       skipped=e.skipped, failed=e.failed, bytes=e.bytes, stop_requested=e.stop_requested,
                       detail=e.detail)


def task_model(k: Task) -> m.ReplicationTask:
    return m.ReplicationTask(id=k.id, execution_id=k.execution_id, source=k.source, target=k.target, digest=k.digest,
                             status=k.status, attempts=k.attempts, bytes=k.bytes, error=k.error,
                             started_at=t(k.started_at), ended_at=t(k.ended_at))


def _id(request: Request) -> int:
    return numeric_id(request, "id", f"no replication policy {request.params['id'][:40]!r}")


def _execution(request: Request) -> int:
    return numeric_id(request, "execution", f"no execution {request.params['execution'][:40]!r}")


class ReplicationAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return bind(self, OPERATIONS)

    def _audit(self, request: Request, action: str, **detail: Any) -> None:
        registry = request.params.get("registry")
        target = f"remote {request.params['remote']}" if "remote" in request.params else None
        audit(self.s.access, request, action, registry=registry, target=target,
              detail=json.dumps(detail) if detail else None)

    async def _policy(self, p: Policy) -> m.ReplicationPolicy:
        return policy_model(p, await self.s.replications.next_run_at(p))

    # -- remotes --------------------------------------------------------------------------------
    @handles("api.remotes")
    async def remotes(self, request: Request) -> m.RemoteList:
        return m.RemoteList([remote_model(r) for r in await self.s.remotes.list()])

    @handles("api.remote.create")
    async def create_remote(self, request: Request) -> m.Remote:
        body = given(await decode(request, m.NewRemote))
        remote = await self.s.remotes.create({k: v for k, v in body.items() if v is not None})
        audit(self.s.access, request, "remote.create", target=f"remote {remote.name}",
              detail=json.dumps({"url": remote.url, "status": remote.status}))
        return remote_model(remote)

    @handles("api.remote")
    async def remote(self, request: Request) -> m.Remote:
        return remote_model(await self.s.remotes.get(request.params["remote"]))

    @handles("api.remote.update")
    async def update_remote(self, request: Request) -> m.Remote:
        body = given(await decode(request, m.RemoteChanges))
        remote = await self.s.remotes.update(request.params["remote"], body)
        self._audit(request, "remote.update", fields=sorted(body), status=remote.status)
        return remote_model(remote)

    @handles("api.remote.delete")
    async def delete_remote(self, request: Request) -> None:
        await self.s.remotes.delete(request.params["remote"])
        self._audit(request, "remote.delete")

    @handles("api.remote.refresh")
    async def refresh_remote(self, request: Request) -> m.Remote:
        remote = await self.s.remotes.check(request.params["remote"])
        self._audit(request, "remote.refresh", status=remote.status)
        return remote_model(remote)

    # -- policies -------------------------------------------------------------------------------
    @handles("api.replications")
    async def policies(self, request: Request) -> m.ReplicationPolicyList:
        found = await self.s.replications.policies(request.params["registry"])
        return m.ReplicationPolicyList([await self._policy(p) for p in found])

    @handles("api.replication.create")
    async def create(self, request: Request) -> m.ReplicationPolicy:
        body = given(await decode(request, m.NewReplicationPolicy))
        policy = await self.s.replications.create(request.params["registry"],
                                                  {k: v for k, v in body.items() if v is not None})
        self._audit(request, "replication.policy.create", id=policy.id, name=policy.name)
        return await self._policy(policy)

    @handles("api.replication")
    async def get(self, request: Request) -> m.ReplicationPolicy:
        return await self._policy(await self.s.replications.get(request.params["registry"], _id(request)))

    @handles("api.replication.update")
    async def update(self, request: Request) -> m.ReplicationPolicy:
        body = given(await decode(request, m.ReplicationPolicyChanges))
        policy = await self.s.replications.update(request.params["registry"], _id(request), body)
        self._audit(request, "replication.policy.update", id=policy.id, fields=sorted(body))
        return await self._policy(policy)

    @handles("api.replication.delete")
    async def delete(self, request: Request) -> None:
        await self.s.replications.delete(request.params["registry"], _id(request))
        self._audit(request, "replication.policy.delete", id=_id(request))

    # -- runs -----------------------------------------------------------------------------------
    @handles("api.replication.run")
    async def run(self, request: Request) -> m.Execution:
        execution = await self.s.replications.run(request.params["registry"], _id(request))
        self._audit(request, "replication.run", id=_id(request), execution=execution.id, status=execution.status)
        return execution_model(execution)

    @handles("api.replication.executions")
    async def executions(self, request: Request) -> m.ExecutionPage:
        rows, total = await self.s.replications.executions(request.params["registry"], _id(request),
                                                           request.query_int("page"), request.query_int("per_page"))
        return paged(request, m.ExecutionPage, total, executions=[execution_model(e) for e in rows])

    @handles("api.replication.execution")
    async def execution(self, request: Request) -> m.Execution:
        return execution_model(await self.s.replications.execution(request.params["registry"], _id(request),
                                                                   _execution(request)))

    @handles("api.replication.stop")
    async def stop(self, request: Request) -> m.Execution:
        execution = await self.s.replications.stop(request.params["registry"], _id(request), _execution(request))
        self._audit(request, "replication.stop", id=_id(request), execution=execution.id)
        return execution_model(execution)

    @handles("api.replication.tasks")
    async def tasks(self, request: Request) -> m.ReplicationTaskPage:
        rows, total = await self.s.replications.tasks(request.params["registry"], _id(request), _execution(request),
                                                      request.query_int("page"), request.query_int("per_page"))
        return paged(request, m.ReplicationTaskPage, total, tasks=[task_model(k) for k in rows])


__all__ = ["ReplicationAPI", "execution_model", "policy_model", "remote_model", "task_model"]
