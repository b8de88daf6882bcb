"""Replication's vocabulary, shared by the management side (remotes, policies, the store, the API) and
the engine (the copy): what a remote endpoint, a policy, an execution and a task are, and the two
interfaces between the sides.

- `Journal`: what the engine records of a run (implemented by meta/replication.py's store).
- `Runner`: what the management side asks of the engine (implemented by replication/engine.py).

Statuses follow the issue: an execution is Pending / Running / Succeeded / Failed / Stopped (and
Skipped when a trigger found a run under way); a task is Pending / Running / Succeeded / Skipped /
Failed / Stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

DIRECTIONS = ("push", "pull")  # push: local -> remote; pull: remote -> local
TRIGGERS = ("manual", "scheduled", "event")  # event: push policies only
TAG_FILTER_MODES = ("match", "exclude")
EXECUTION_STATUSES = ("Pending", "Running", "Succeeded", "Failed", "Stopped", "Skipped")
TASK_STATUSES = ("Pending", "Running", "Succeeded", "Skipped", "Failed", "Stopped")
FINISHED = frozenset({"Succeeded", "Failed", "Stopped", "Skipped"})
STALE_SECONDS = 60.0  # a Running execution without a heartbeat this long lost its worker


@dataclass(frozen=True)
class RemoteInfo:
    """A remote endpoint as it is shown: never its secret."""

    name: str
    url: str  # scheme://host[:port]
    type: str  # a cache source type (cache/sources.py): "ncr" for another ncr-trio, "registry", "harbor", ...
    access_id: str
    has_secret: bool
    ca_cert: str  # PEM, "" for the system's trust only
    insecure: bool
    description: str
    status: str  # "valid" / "invalid"
    reason: str  # why invalid ("" when valid)
    checked_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Policy:
    """A replication policy of a local registry.

    `remote_namespace`: the registry (namespace) on the other side. A push copies `<registry>/<path>` to
    `<remote_namespace>/<path>` at the remote; a pull copies the remote's `<remote_namespace>/<path>` to
    `<registry>/<path>` here. `name_filter` applies to `<path>` (the image name without its registry),
    `tag_filter` to tags; both are the guide's patterns (ncr_trio/patterns.py), "" meaning everything.
    `bandwidth_kbps`: 0 for no limit (KiB/s across the run)."""

    id: int
    registry: str
    name: str
    description: str
    direction: str
    remote: str  # a RemoteInfo.name
    remote_namespace: str
    name_filter: str
    tag_filter: str
    tag_filter_mode: str
    trigger: str
    schedule: str  # cron (UTC) when trigger == "scheduled", else ""
    override: bool
    bandwidth_kbps: int
    enabled: bool
    status: str  # "valid" / "invalid": its remote's status (and "invalid" while never checked)
    reason: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Execution:
    id: int
    policy_id: int
    trigger: str
    status: str
    started_at: float
    ended_at: float | None
    copied: int  # artifacts
    skipped: int
    failed: int
    bytes: int  # blob bytes sent (or received, for a pull)
    stop_requested: bool
    detail: str  # why it failed, was stopped or skipped


@dataclass(frozen=True)
class Pending:
    """Work an event left for an event policy: a tag created in its registry that its filters select."""

    id: int
    policy_id: int
    repository: str  # the local repository (`<registry>/<path>`)
    tag: str
    digest: str


@dataclass(frozen=True)
class Task:
    id: int
    execution_id: int
    source: str  # repository:tag (or @digest) it was copied from
    target: str  # repository:tag it was copied to
    digest: str
    status: str
    attempts: int
    bytes: int
    error: str
    started_at: float | None
    ended_at: float | None


class Journal(Protocol):
    """What the engine records of a run."""

    async def start_execution(self, policy_id: int, trigger: str, *, record_skip: bool = True) -> int | None:
        """A new execution, Running (and its `replication.started` event); None when one of the policy
        is running already (then, if `record_skip`, a Skipped execution is recorded with the reason:
        the event loop passes False, its work stays pending for the next run)."""
        ...

    async def add_task(self, execution_id: int, source: str, target: str, digest: str) -> int: ...

    async def finish_task(self, task_id: int, status: str, attempts: int, bytes_sent: int, error: str = "") -> None: ...

    async def finish_execution(self, execution_id: int, status: str, detail: str = "") -> None:
        """Ends it; its counts are those of its tasks (copied = Succeeded, skipped, failed); writes the
        `replication.finished` (Succeeded, Stopped) or `replication.failed` event with it."""
        ...

    async def stop_requested(self, execution_id: int) -> bool: ...

    async def heartbeat(self, execution_id: int) -> None:
        """The worker running it is alive. A Running execution without one for STALE_SECONDS is ended
        Failed ("its worker stopped") by the next start_execution of its policy."""
        ...

    async def collect_events(self, limit: int = 500) -> int:
        """Turn the `tag.created` events written since the last call (by any worker or node; a cursor
        in the store, advanced in the same transaction) into Pending rows for the enabled event
        policies whose registry, image filter and tag filter select them; how many events were read."""
        ...

    async def pending(self, policy_id: int | None = None) -> list[Pending]:
        """Pending rows, oldest first (of one policy, or all)."""
        ...

    async def done_pending(self, ids: Sequence[int]) -> None: ...

    async def policy(self, policy_id: int) -> Policy | None: ...

    async def event_policies(self, registry: str) -> list[Policy]:
        """The enabled push policies of `registry` whose trigger is "event"."""
        ...


class Runner(Protocol):
    """What the management side asks of the engine."""

    async def run(self, policy: Policy, trigger: str) -> int | None:
        """Start a run (in the engine's own nursery) and return its execution ID at once; None when
        one of the policy is running (recorded as Skipped)."""
        ...

    async def stop(self, execution_id: int) -> None:
        """Ask a running execution to stop (on whichever worker runs it); it ends Stopped."""
        ...


__all__ = ["DIRECTIONS", "EXECUTION_STATUSES", "FINISHED", "TAG_FILTER_MODES", "TASK_STATUSES", "TRIGGERS",
           "STALE_SECONDS", "Execution", "Journal", "Pending", "Policy", "RemoteInfo", "Runner", "Task"]
