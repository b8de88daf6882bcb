"""A `model.Journal` in memory, for the engine's own tests only (the real one is the metadata store's,
tested end to end through the API): executions, tasks, the pending rows an event leaves, stop flags.

`tag_created(repository, tag, digest)` plays the event a push writes; `collect_events` turns it into
pending rows for the event policies whose filters select it, as the store does."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ncr_trio.replication.filters import Filters
from ncr_trio.replication.model import FINISHED, Execution, Pending, Policy, Task


def policy(**fields: object) -> Policy:
    """A policy with test defaults."""
    now = time.time()
    base = Policy(id=1, registry="a", name="p", description="", direction="push", remote="b", remote_namespace="a",
                  name_filter="", tag_filter="", tag_filter_mode="match", trigger="manual", schedule="",
                  override=False, bandwidth_kbps=0, enabled=True, status="valid", reason="", created_at=now,
                  updated_at=now)
    return replace(base, **fields)  # type: ignore[arg-type]


@dataclass
class MemoryJournal:
    policies: dict[int, Policy] = field(default_factory=dict)
    executions: dict[int, Execution] = field(default_factory=dict)
    tasks: dict[int, Task] = field(default_factory=dict)
    rows: dict[int, Pending] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    heartbeats: int = 0
    _next: int = 0

    def _id(self) -> int:
        self._next += 1
        return self._next

    def add_policy(self, p: Policy) -> Policy:
        self.policies[p.id] = p
        return p

    def tag_created(self, repository: str, tag: str, digest: str) -> None:
        self.events.append((repository, tag, digest))

    def request_stop(self, execution_id: int) -> None:
        """What the management side does when any worker is asked to stop a run."""
        self.executions[execution_id] = replace(self.executions[execution_id], stop_requested=True)

    def tasks_of(self, execution_id: int) -> list[Task]:
        return [t for t in self.tasks.values() if t.execution_id == execution_id]

    # -- model.Journal --
    async def start_execution(self, policy_id: int, trigger: str, *, record_skip: bool = True) -> int | None:
        running = [e for e in self.executions.values() if e.policy_id == policy_id and e.status == "Running"]
        eid = self._id()
        if running:
            if record_skip:
                self.executions[eid] = Execution(eid, policy_id, trigger, "Skipped", time.time(), time.time(), 0, 0, 0,
                                                 0, False, f"execution {running[0].id} is running")
            return None
        self.executions[eid] = Execution(eid, policy_id, trigger, "Running", time.time(), None, 0, 0, 0, 0, False, "")
        return eid

    async def add_task(self, execution_id: int, source: str, target: str, digest: str) -> int:
        tid = self._id()
        self.tasks[tid] = Task(tid, execution_id, source, target, digest, "Running", 0, 0, "", time.time(), None)
        return tid

    async def finish_task(self, task_id: int, status: str, attempts: int, bytes_sent: int, error: str = "") -> None:
        self.tasks[task_id] = replace(self.tasks[task_id], status=status, attempts=attempts, bytes=bytes_sent,
                                      error=error, ended_at=time.time())

    async def finish_execution(self, execution_id: int, status: str, detail: str = "") -> None:
        tasks = self.tasks_of(execution_id)
        e = self.executions[execution_id]
        assert e.status not in FINISHED, f"execution {execution_id} finished twice"
        self.executions[execution_id] = replace(
            e, status=status, detail=detail, ended_at=time.time(),
            copied=sum(t.status == "Succeeded" for t in tasks), skipped=sum(t.status == "Skipped" for t in tasks),
            failed=sum(t.status == "Failed" for t in tasks), bytes=sum(t.bytes for t in tasks))

    async def stop_requested(self, execution_id: int) -> bool:
        return self.executions[execution_id].stop_requested

    async def heartbeat(self, execution_id: int) -> None:
        self.heartbeats += 1

    async def collect_events(self, limit: int = 500) -> int:
        taken, self.events = self.events[:limit], self.events[limit:]
        for repository, tag, digest in taken:
            for p in await self.event_policies(repository.partition("/")[0]):
                f = Filters.of(p)
                if f.selects_image(repository.partition("/")[2]) and f.selects_tag(tag):
                    rid = self._id()
                    self.rows[rid] = Pending(rid, p.id, repository, tag, digest)
        return len(taken)

    async def pending(self, policy_id: int | None = None) -> list[Pending]:
        return [r for r in self.rows.values() if policy_id in (None, r.policy_id)]

    async def done_pending(self, ids: Sequence[int]) -> None:
        for i in ids:
            self.rows.pop(i, None)

    async def policy(self, policy_id: int) -> Policy | None:
        return self.policies.get(policy_id)

    async def event_policies(self, registry: str) -> list[Policy]:
        return [p for p in self.policies.values()
                if p.registry == registry and p.enabled and p.direction == "push" and p.trigger == "event"]


__all__ = ["MemoryJournal", "policy"]
