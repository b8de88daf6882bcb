"""The replication engine: runs policies' copies (`model.Runner`), recording them in a `model.Journal`.

`Replicator.serve` runs in the service's lifespan nursery and holds a nursery for runs:

- event runs: every `poll` seconds it turns new `tag.created` events into pending rows
  (`journal.collect_events`, a cursor shared by every worker and node) and, for each policy with
  pending rows and no run under way, starts a run that copies exactly those tags, then marks them done
  (the journal's `start_execution(record_skip=False)` decides, across workers, that one runs at a time);
- manual and scheduled runs: `run(policy, trigger)` starts one at once and returns its execution ID.

A run resolves its artifacts (the policy's filters over the source's repositories and tags, or the
pending rows), then copies them with bounded concurrency: `artifacts` at a time in the run, `blobs`
at a time in the run, and `per_remote` blobs at a time across every run using the same remote
endpoint. It records a task per artifact, beats its heart every `heartbeat` seconds, meters the bytes
it reads against the policy's bandwidth limit, and stops when asked (`stop` here, or the journal's
flag set by another worker: polled every `stop_poll` seconds): the work is cancelled, the tasks under
way end Stopped, the execution Stopped. It ends Succeeded when no task failed, Failed otherwise (with
the reason when the remote could not be reached at all).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from ncr_trio import changes
from ncr_trio.cache.sources import Source
from ncr_trio.cache.upstream import Reach, UpstreamError, Upstreams
from ncr_trio.config import Config
from ncr_trio.replication.copy import Copier, CopyError, LocalSide, Outcome, Placed, RemoteSide, Side, is_cosign_tag
from ncr_trio.replication.filters import Filters
from ncr_trio.replication.model import Journal, Pending, Policy

log = logging.getLogger("ncr_trio.replication")

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 10.0
STOP_POLL_SECONDS = 1.0
ARTIFACTS_PER_RUN = 4
BLOBS_PER_RUN = 4
BLOBS_PER_REMOTE = 8


class Bandwidth:
    """A token bucket over the bytes a run reads from its source: `kbps` KiB/s, bursts of one second."""

    def __init__(self, kbps: int, clock: Callable[[], float] = trio.current_time) -> None:
        self.rate = kbps * 1024.0
        self._clock = clock
        self._tokens = self.rate
        self._at: float | None = None

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = self._clock()
        if self._at is not None:
            self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= n
        if self._tokens < 0:
            await trio.sleep(-self._tokens / self.rate)


@dataclass
class Item:
    """One artifact a run copies."""

    source_repo: str
    tag: str
    target_repo: str


@dataclass
class _Run:
    policy: Policy
    execution_id: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopped: bool = False
    failed: int = 0


SourceOf = Callable[[str], Awaitable[Source | None]]


class Replicator:
    """`model.Runner` over a `model.Journal`. `source_of(remote name)`: the remote's Source, its secret
    in the clear (the management side's `remotes.source`), None when there is no such remote."""

    def __init__(self, journal: Journal, local: LocalSide, source_of: SourceOf, config: Config, *,
                 upstreams: Upstreams | None = None, poll: float = POLL_SECONDS, heartbeat: float = HEARTBEAT_SECONDS,
                 stop_poll: float = STOP_POLL_SECONDS, artifacts: int = ARTIFACTS_PER_RUN,
                 blobs: int = BLOBS_PER_RUN, per_remote: int = BLOBS_PER_REMOTE) -> None:
        self.journal, self.local, self.source_of, self.config = journal, local, source_of, config
        self.upstreams = upstreams or Upstreams(config, Reach.for_replication(config))
        self.poll, self.heartbeat, self.stop_poll = poll, heartbeat, stop_poll
        self.artifacts, self.blobs, self.per_remote = artifacts, blobs, per_remote
        self._nursery: trio.Nursery | None = None
        self._runs: dict[int, _Run] = {}  # execution ID -> run under way in this process
        self._remote_slots: dict[str, trio.CapacityLimiter] = {}
        self._placed: dict[str, Placed] = {}  # per remote name (and "local" for pulls)

    async def aclose(self) -> None:
        await self.upstreams.aclose()

    # -- the lifespan --------------------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    try:
                        await self._event_round()
                    except Exception:  # noqa: BLE001 - the loop outlives a database hiccup
                        log.exception("replication: the event round failed")
                    await trio.sleep(self.poll)
            finally:
                self._nursery = None

    async def _event_round(self) -> None:
        with changes.unseen():  # the outbox's bookkeeping: no answer shows it (http/fastpath.py)
            await self.journal.collect_events()
        rows = await self.journal.pending()
        by_policy: dict[int, list[Pending]] = {}
        for row in rows:
            by_policy.setdefault(row.policy_id, []).append(row)
        running = {r.policy.id for r in self._runs.values()}
        for policy_id, pending in by_policy.items():
            if policy_id in running:
                continue
            policy = await self.journal.policy(policy_id)
            if policy is None or not policy.enabled or policy.direction != "push":
                await self.journal.done_pending([p.id for p in pending])
                continue
            execution_id = await self.journal.start_execution(policy_id, "event", record_skip=False)
            if execution_id is not None:
                self._start(policy, execution_id, pending)

    # -- model.Runner ---------------------------------------------------------------------------
    async def run(self, policy: Policy, trigger: str) -> int | None:
        if self._nursery is None:
            raise RuntimeError("the replicator is not serving")
        execution_id = await self.journal.start_execution(policy.id, trigger)
        if execution_id is not None:
            self._start(policy, execution_id, None)
        return execution_id

    async def stop(self, execution_id: int) -> None:
        run = self._runs.get(execution_id)
        if run is not None:
            run.stopped = True
            run.scope.cancel()

    def running(self) -> list[int]:
        return sorted(self._runs)

    # -- a run ----------------------------------------------------------------------------------
    def _start(self, policy: Policy, execution_id: int, pending: list[Pending] | None) -> None:
        assert self._nursery is not None
        run = _Run(policy, execution_id)
        self._runs[execution_id] = run
        self._nursery.start_soon(self._execute, run, pending)

    async def _execute(self, run: _Run, pending: list[Pending] | None) -> None:
        status, detail = "Failed", "its worker stopped before the run ended"  # what a shutdown leaves
        try:
            async with trio.open_nursery() as watchers:
                watchers.start_soon(self._beat, run)
                watchers.start_soon(self._watch_stop, run)
                with run.scope:
                    status, detail = await self._copy(run, pending)
                watchers.cancel_scope.cancel()
            if run.stopped:
                status, detail = "Stopped", "stopped on request"
        except Exception as e:  # noqa: BLE001 - recorded as the run's failure, the engine goes on
            log.exception("replication: execution %d failed", run.execution_id)
            status, detail = "Failed", f"{type(e).__name__}: {e}"[:500]
        finally:
            self._runs.pop(run.execution_id, None)
            with trio.CancelScope(shield=True):
                try:
                    if pending is not None:  # before the end: another worker would see them and no run
                        await self.journal.done_pending([p.id for p in pending])
                    await self.journal.finish_execution(run.execution_id, status, detail)
                except Exception:  # noqa: BLE001
                    log.exception("replication: could not record the end of execution %d", run.execution_id)

    async def _beat(self, run: _Run) -> None:
        while True:
            await trio.sleep(self.heartbeat)
            await self.journal.heartbeat(run.execution_id)

    async def _watch_stop(self, run: _Run) -> None:
        while True:
            await trio.sleep(self.stop_poll)
            if await self.journal.stop_requested(run.execution_id):
                run.stopped = True
                run.scope.cancel()
                return

    async def _copy(self, run: _Run, pending: list[Pending] | None) -> tuple[str, str]:
        policy = run.policy
        source = await self.source_of(policy.remote)
        if source is None:
            return "Failed", f"remote {policy.remote!r} is not registered"
        try:
            upstream = self.upstreams.get(source)
        except ValueError as e:
            return "Failed", f"remote {policy.remote!r}: {e}"
        remote = RemoteSide(upstream, self.config.max_manifest_bytes)
        try:
            await upstream.ping()
        except UpstreamError as e:
            return "Failed", f"remote {policy.remote!r} cannot be reached: {e}"[:500]
        src: Side
        dst: Side
        src, dst = (self.local, remote) if policy.direction == "push" else (remote, self.local)
        try:
            items, tags_of = await self._plan(policy, src, pending)
        except UpstreamError as e:
            return "Failed", f"listing the source failed: {e}"[:500]
        meter = Bandwidth(policy.bandwidth_kbps)
        src_ns, dst_ns = ((policy.registry, policy.remote_namespace) if policy.direction == "push"
                          else (policy.remote_namespace, policy.registry))

        def rename(repository: str) -> str | None:
            path = repository.removeprefix(f"{src_ns}/")
            return f"{dst_ns}/{path}" if path != repository else None

        copier = Copier(src, dst, self._placed.setdefault(policy.remote if policy.direction == "push" else "local",
                                                          Placed()),
                        override=policy.override, blob_slots=trio.CapacityLimiter(self.blobs),
                        remote_slots=self._remote_slots.setdefault(policy.remote,
                                                                   trio.CapacityLimiter(self.per_remote)),
                        meter=meter.take, rename=rename)
        slots = trio.CapacityLimiter(self.artifacts)
        async with trio.open_nursery() as nursery:
            for item in items:
                nursery.start_soon(self._artifact, run, copier, slots, item, tags_of.get(item.source_repo, []))
        if run.failed:
            return "Failed", f"{run.failed} artifact(s) failed"
        return "Succeeded", ""

    async def _plan(self, policy: Policy, src: Side, pending: list[Pending] | None
                    ) -> tuple[list[Item], dict[str, list[str]]]:
        """The artifacts to copy, and each source repository's tags (for cosign's tags)."""
        filters = Filters.of(policy)
        here, there = policy.registry, policy.remote_namespace
        src_ns, dst_ns = (here, there) if policy.direction == "push" else (there, here)
        items: list[Item] = []
        tags_of: dict[str, list[str]] = {}
        if pending is not None:
            for p in pending:
                path = p.repository.removeprefix(f"{here}/")
                if p.repository.startswith(f"{here}/") and not is_cosign_tag(p.tag):
                    items.append(Item(p.repository, p.tag, f"{there}/{path}"))
            for repo in {i.source_repo for i in items}:
                tags_of[repo] = await src.tags(repo)
            return items, tags_of
        for repo in await src.repositories(src_ns):
            path = repo.removeprefix(f"{src_ns}/")
            if not filters.selects_image(path):
                continue
            tags = await src.tags(repo)
            tags_of[repo] = tags
            items += [Item(repo, t, f"{dst_ns}/{path}") for t in tags
                      if filters.selects_tag(t) and not is_cosign_tag(t)]
        return items, tags_of

    async def _artifact(self, run: _Run, copier: Copier, slots: trio.CapacityLimiter, item: Item,
                        source_tags: list[str]) -> None:
        async with slots:
            source, target = f"{item.source_repo}:{item.tag}", f"{item.target_repo}:{item.tag}"
            task_id = await self.journal.add_task(run.execution_id, source, target,
                                                  await copier.source_digest(item.source_repo, item.tag))
            out = Outcome(status="Failed")
            try:
                out = await copier.artifact(item.source_repo, item.tag, item.target_repo, source_tags=source_tags)
            except CopyError as e:
                out.reason = str(e)
            except trio.Cancelled:
                out.status, out.reason = "Stopped", "stopped on request"
                raise
            finally:
                if out.status == "Failed":
                    run.failed += 1
                with trio.CancelScope(shield=True):
                    await self.journal.finish_task(task_id, out.status, out.attempts, out.bytes,
                                                   out.reason if out.status != "Succeeded" else "")


__all__ = ["Bandwidth", "Item", "Replicator"]
