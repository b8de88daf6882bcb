"""Replication policies as use cases: what a policy may be (validation), creating, listing, changing and
deleting the policies of a registry, running and stopping them, and reading their history.

- A policy's name follows a registry's naming rules and is unique in its registry.
- `direction` push copies `<registry>/<path>` to `<remote_namespace>/<path>` at the remote; pull the
  other way. `remote_namespace` defaults to the registry's own name.
- `trigger`: manual, scheduled (a cron expression or preset in UTC, job `replication:<id>` of the one
  scheduler, ncr_trio/scheduler.py, with its leases) or event (push policies only: the guide's warning,
  only artifacts pushed after the policy exists travel).
- Filters go through the one matcher (replication/filters.py); a pattern it refuses is a 400.
- A run is started through the `Runner` (the engine serving in this process); a manual run of a
  disabled policy is refused, a trigger while a run is under way is recorded as Skipped and answered.
- Stopping marks the execution in the store (a run on another worker or node polls the flag) and
  cancels it at once when it runs here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from ncr_trio.cron import InvalidSchedule, parse_schedule
from ncr_trio.errors import RegistryError
from ncr_trio.limits import MAX_DESCRIPTION
from ncr_trio.limits import REPLICATION_MAX_BANDWIDTH_KBPS as MAX_BANDWIDTH_KBPS
from ncr_trio.limits import REPLICATION_MAX_FILTER as MAX_FILTER
from ncr_trio.meta.policies import PolicyStore
from ncr_trio.meta.replication import DuplicatePolicy, ReplicationStore
from ncr_trio.patterns import InvalidPattern
from ncr_trio.registry.catalog import page_bounds
from ncr_trio.registry.namespaces import Namespaces
from ncr_trio.replication.filters import Filters
from ncr_trio.replication.model import DIRECTIONS, TAG_FILTER_MODES, TRIGGERS, Execution, Policy, Runner, Task
from ncr_trio.types import validate_registry_name

FIELDS = ("name", "description", "direction", "remote", "remote_namespace", "name_filter", "tag_filter",
          "tag_filter_mode", "trigger", "schedule", "override", "bandwidth_kbps", "enabled")
JOB_PREFIX = "replication:"
MAX_POLICIES_PER_REGISTRY = 100


def replication_job(policy_id: int) -> str:
    """The scheduler's name for a scheduled policy's runs."""
    return f"{JOB_PREFIX}{policy_id}"


def _invalid(message: str) -> RegistryError:
    return RegistryError("INVALID_REQUEST", message)


def _choice(value: object, what: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _invalid(f"{what} must be one of {', '.join(choices)}")
    return value


def _text(value: object, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise _invalid(f"{what} must be a string of at most {limit} printable characters")
    return value


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(f"{what} must be true or false")
    return value


def _bandwidth(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BANDWIDTH_KBPS:
        raise _invalid(f"bandwidth_kbps must be a whole number from 0 (no limit) to {MAX_BANDWIDTH_KBPS}")
    return value


def validated(current: Policy, fields: Mapping[str, object]) -> Policy:
    """`current` with `fields` applied, every rule of a policy checked (INVALID_REQUEST says which)."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise _invalid(f"unknown field(s): {', '.join(u[:60] for u in unknown)}; a policy has {', '.join(FIELDS)}")
    f: dict[str, Any] = {}
    if "name" in fields:
        name = fields["name"]
        f["name"] = validate_registry_name(name if isinstance(name, str) else "", "replication policy")
    if "description" in fields:
        f["description"] = _text(fields["description"], "description", MAX_DESCRIPTION)
    if "direction" in fields:
        f["direction"] = _choice(fields["direction"], "direction", DIRECTIONS)
    if "remote" in fields:
        remote = fields["remote"]
        f["remote"] = validate_registry_name(remote if isinstance(remote, str) else "", "remote")
    if "remote_namespace" in fields:
        ns = fields["remote_namespace"]
        f["remote_namespace"] = validate_registry_name(ns if isinstance(ns, str) else "", "remote namespace")
    for key in ("name_filter", "tag_filter"):
        if key in fields:
            f[key] = _text(fields[key], key, MAX_FILTER)
    if "tag_filter_mode" in fields:
        f["tag_filter_mode"] = _choice(fields["tag_filter_mode"] or "match", "tag_filter_mode", TAG_FILTER_MODES)
    if "trigger" in fields:
        f["trigger"] = _choice(fields["trigger"], "trigger", TRIGGERS)
    if "schedule" in fields:
        f["schedule"] = _text(fields["schedule"], "schedule", 200)
    for key in ("override", "enabled"):
        if key in fields:
            f[key] = _bool(fields[key], key)
    if "bandwidth_kbps" in fields:
        f["bandwidth_kbps"] = _bandwidth(fields["bandwidth_kbps"])
    p = replace(current, **f)
    try:
        Filters.parse(p.name_filter, p.tag_filter, p.tag_filter_mode)
    except InvalidPattern as e:
        raise _invalid(f"a filter is not a valid pattern: {e}") from None
    if p.trigger == "event" and p.direction != "push":
        raise _invalid("an event trigger is for push policies only (a pull has no local event to follow)")
    if p.trigger == "scheduled":
        try:
            schedule = parse_schedule(p.schedule)
        except InvalidSchedule as e:
            raise _invalid(f"schedule: {e}") from None
        if schedule.never:
            raise _invalid("a scheduled policy needs a schedule: a preset (Hourly, Daily, Weekly) or five cron "
                           "fields, in UTC")
        p = replace(p, schedule=schedule.expression)
    elif p.schedule and "schedule" in fields:
        raise _invalid("a schedule is for trigger \"scheduled\" only")
    else:
        p = replace(p, schedule="")
    return p


class Replications:
    """The replication policies of registries, their runs and history."""

    def __init__(self, store: ReplicationStore, schedules: PolicyStore, namespaces: Namespaces,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.schedules = schedules
        self.namespaces = namespaces
        self.clock = clock
        self.runner: Runner | None = None  # the engine serving in this process (attach)

    def attach(self, runner: Runner) -> None:
        self.runner = runner

    # -- policies -------------------------------------------------------------------------------
    async def policies(self, registry: str) -> list[Policy]:
        await self.namespaces.get(registry)
        return await self.store.policies(registry)

    async def get(self, registry: str, policy_id: int) -> Policy:
        found = await self.store.get_policy(registry, policy_id)
        if found is None:
            await self.namespaces.get(registry)
            raise RegistryError("NOT_FOUND", f"no replication policy #{policy_id} in registry {registry}")
        return found

    async def create(self, registry: str, fields: Mapping[str, object]) -> Policy:
        await self.namespaces.get(registry)
        for required in ("name", "direction", "remote"):
            if fields.get(required) is None:
                raise _invalid(f"{required} is required")
        now = self.clock()
        blank = Policy(0, registry, "", "", "push", "", registry, "", "", "match", "manual", "", False, 0, True,
                       "invalid", "not checked yet", now, now)
        policy = validated(blank, fields)
        if len(await self.store.policies(registry)) >= MAX_POLICIES_PER_REGISTRY:
            raise RegistryError("CONFLICT", f"registry {registry} already has {MAX_POLICIES_PER_REGISTRY} "
                                "replication policies, the most it may have")
        created = await self._saved(self.store.create_policy, policy)
        assert created is not None
        await self._sync_schedule(created)
        return created

    async def update(self, registry: str, policy_id: int, fields: Mapping[str, object]) -> Policy:
        current = await self.get(registry, policy_id)
        updated = await self._saved(self.store.update_policy,
                                    replace(validated(current, fields), updated_at=self.clock()))
        if updated is None:
            raise RegistryError("NOT_FOUND", f"no replication policy #{policy_id} in registry {registry}")
        await self._sync_schedule(updated)
        return updated

    @staticmethod
    async def _saved(save: Callable[[Policy], Awaitable[Policy | None]], policy: Policy) -> Policy | None:
        """`save(policy)`, its refusals as the API's errors."""
        try:
            return await save(policy)
        except DuplicatePolicy:
            raise RegistryError("CONFLICT", f"registry {policy.registry} already has a replication policy named "
                                f"{policy.name}") from None
        except LookupError:
            raise _no_remote(policy.remote) from None

    async def delete(self, registry: str, policy_id: int) -> None:
        for execution in (await self.store.executions(policy_id, 5, 0))[0]:
            if execution.status in ("Pending", "Running") and execution.id:
                await self.stop(registry, policy_id, execution.id)
        if not await self.store.delete_policy(registry, policy_id):
            await self.namespaces.get(registry)
            raise RegistryError("NOT_FOUND", f"no replication policy #{policy_id} in registry {registry}")
        await self.schedules.delete_schedule(replication_job(policy_id))

    async def _sync_schedule(self, policy: Policy) -> None:
        job = replication_job(policy.id)
        if policy.trigger != "scheduled":
            await self.schedules.delete_schedule(job)
            return
        row = await self.schedules.schedule(job)
        if row is not None and row.expression == policy.schedule:
            return
        await self.schedules.set_schedule(job, policy.schedule, parse_schedule(policy.schedule).next_at(self.clock()))

    async def next_run_at(self, policy: Policy) -> float | None:
        if policy.trigger != "scheduled":
            return None
        row = await self.schedules.schedule(replication_job(policy.id))
        return None if row is None else row.next_run_at

    # -- runs -----------------------------------------------------------------------------------
    async def run(self, registry: str, policy_id: int, trigger: str = "manual") -> Execution:
        """Start a run; its execution (Running, or Skipped with the reason when one is under way)."""
        policy = await self.get(registry, policy_id)
        if not policy.enabled:
            raise RegistryError("CONFLICT", f"replication policy {policy.name} is disabled: enable it to run it")
        if self.runner is None:
            raise RegistryError("UNAVAILABLE", "replication does not run in this process")
        execution_id = await self.runner.run(policy, trigger)
        if execution_id is None:  # recorded as Skipped: the newest execution
            executions, _ = await self.store.executions(policy.id, 1, 0)
            return executions[0]
        return await self.execution(registry, policy_id, execution_id)

    async def run_scheduled(self, job: str) -> str:
        """The scheduler's handler of `replication:<id>`."""
        try:
            policy_id = int(job[len(JOB_PREFIX):])
        except ValueError:
            await self.schedules.delete_schedule(job)
            return "not a policy"
        policy = await self.store.policy(policy_id)
        if policy is None or policy.trigger != "scheduled":
            await self.schedules.delete_schedule(job)
            return "the policy no longer exists or is no longer scheduled"
        if not policy.enabled:
            return "the policy is disabled"
        if self.runner is None:
            raise RuntimeError("replication does not run in this process")
        execution_id = await self.runner.run(policy, "scheduled")
        return f"execution {execution_id}" if execution_id is not None else "skipped: a run is under way"

    async def executions(self, registry: str, policy_id: int, page: int | None, per_page: int | None
                         ) -> tuple[list[Execution], int]:
        limit, offset = page_bounds(page, per_page)
        await self.get(registry, policy_id)
        return await self.store.executions(policy_id, limit, offset)

    async def execution(self, registry: str, policy_id: int, execution_id: int) -> Execution:
        await self.get(registry, policy_id)
        found = await self.store.execution(execution_id)
        if found is None or found.policy_id != policy_id:
            raise RegistryError("NOT_FOUND", f"no execution #{execution_id} of replication policy #{policy_id}")
        return found

    async def stop(self, registry: str, policy_id: int, execution_id: int) -> Execution:
        """Ask a run to stop; a run that has ended is answered as it is (409 would only race the end)."""
        await self.execution(registry, policy_id, execution_id)
        if await self.store.request_stop(execution_id) and self.runner is not None:
            await self.runner.stop(execution_id)
        return await self.execution(registry, policy_id, execution_id)

    async def tasks(self, registry: str, policy_id: int, execution_id: int, page: int | None,
                    per_page: int | None) -> tuple[list[Task], int]:
        limit, offset = page_bounds(page, per_page)
        await self.execution(registry, policy_id, execution_id)
        return await self.store.tasks(execution_id, limit, offset)


def _no_remote(name: str) -> RegistryError:
    return RegistryError("NOT_FOUND", f"no remote named {name} (an administrator registers remotes: "
                         "/api/v1/remotes)")


__all__ = ["FIELDS", "JOB_PREFIX", "MAX_BANDWIDTH_KBPS", "Replications", "replication_job", "validated"]
