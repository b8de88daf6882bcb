"""The one durable scheduler for every periodic job: GC ("gc"), the scrub ("fsck") and each registry's
cleanup ("cleanup:<registry>"), scheduled replication policy ("replication:<id>", which only starts
the run: the engine carries it, ncr_trio/replication/engine.py) and the periodic vulnerability scan
("scan", which only queues the scans: every process's runner carries them, ncr_trio/scan/jobs.py).

Schedules live in the metadata store (`schedules`: expression, next and last run, lease), so they
survive restarts and are shared by every node:

- a job runs when its `next_run_at` has passed; afterwards its next run is the first slot after
  the moment it finished. A job missed while the server was down (even many slots of it) therefore
  runs once at start, not once per missed slot;
- to run a job a node takes its lease (`PolicyStore.claim_due`) and keeps renewing it while the job
  runs: two nodes never run the same job at once. A node that dies mid-job leaves a lease that
  expires, and another node runs the job then;
- expressions are five cron fields in UTC (ncr_trio/cron.py; presets are stored as their fields).
  GC without `gc_schedule` keeps its old period `gc_interval_seconds`, stored as "@every <seconds>".
  The scrub runs only with `fsck_schedule` (it reads every blob: off by default).

The clock is injectable: tests drive `tick()` with a chosen `now` instead of waiting for minutes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import trio

from ncr_trio import metrics
from ncr_trio.cron import InvalidSchedule, parse_schedule
from ncr_trio.errors import RegistryError
from ncr_trio.meta.policies import PolicyStore, ScheduleRow
from ncr_trio.registry import RegistryService
from ncr_trio.replication.policies import JOB_PREFIX as REPLICATION_PREFIX
from ncr_trio.scan.jobs import SCAN_JOB

log = logging.getLogger("ncr_trio.scheduler")

GC_JOB = "gc"
FSCK_JOB = "fsck"
CLEANUP_PREFIX = "cleanup:"
_EVERY = "@every "

# A job's handler: (job name, the moment it runs) -> anything (a summary is logged).
Handler = Callable[[str, float], Awaitable[object]]


def next_run(expression: str, after: float) -> float | None:
    """The first run of `expression` strictly after `after` (None: never)."""
    if not expression:
        return None
    if expression.startswith(_EVERY):
        return after + float(expression[len(_EVERY):])
    nxt = parse_schedule(expression).next_after(datetime.fromtimestamp(after, UTC))
    return None if nxt is None else nxt.timestamp()


def _configured(setting: str, schedule: str) -> str:
    """A schedule setting's expression ("": not set)."""
    if not schedule.strip():
        return ""
    try:
        return parse_schedule(schedule).expression
    except InvalidSchedule as e:
        raise ValueError(f"{setting}: {e}") from None


def gc_expression(gc_schedule: str, gc_interval_seconds: int) -> str:
    """The "gc" job's expression from the configuration ("" : GC only on demand)."""
    if gc_schedule.strip():
        return _configured("gc_schedule", gc_schedule)
    return f"{_EVERY}{gc_interval_seconds}" if gc_interval_seconds > 0 else ""


class Scheduler:
    def __init__(self, service: RegistryService, *, clock: Callable[[], float] = time.time,
                 owner: str | None = None, poll_seconds: float = 10.0, lease_seconds: float = 120.0) -> None:
        self.service = service
        self.store: PolicyStore = service.policies.store
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.handlers: dict[str, Handler] = {GC_JOB: self._gc, FSCK_JOB: self._fsck, CLEANUP_PREFIX: self._cleanup,
                                               REPLICATION_PREFIX: self._replication, SCAN_JOB: self._scan}
        self._unknown: set[str] = set()

    # -- the jobs -------------------------------------------------------------------------------
    async def _gc(self, job: str, now: float) -> object:
        return await self.service.gc.run()

    async def _fsck(self, job: str, now: float) -> object:
        report = await self.service.fsck.run(repair=self.service.config.fsck_repair)
        for digest, problem in report.damaged.items():
            log.warning("fsck: blob %s is damaged (%s)%s", digest, problem,
                        "; quarantined" if digest in report.quarantined else "")
        return report

    async def _cleanup(self, job: str, now: float) -> object:
        registry = job[len(CLEANUP_PREFIX):]
        try:
            run, _ = await self.service.policies.run(registry, dry_run=False, triggered_by="schedule", now=now)
        except RegistryError as e:
            if e.code != "NOT_FOUND":
                raise
            await self.store.delete_schedule(job)  # the registry is gone
            return f"registry {registry} no longer exists"
        return f"{run.deleted} deleted, {run.kept} kept"

    async def _replication(self, job: str, now: float) -> object:
        return await self.service.replications.run_scheduled(job)

    async def _scan(self, job: str, now: float) -> object:
        return f"{await self.service.scans.scan_all()} artifact(s) queued for scanning"

    def _handler(self, job: str) -> Handler | None:
        return self.handlers.get(job) or next(
            (h for prefix, h in self.handlers.items() if prefix.endswith(":") and job.startswith(prefix)), None)

    # -- scheduling -----------------------------------------------------------------------------
    async def _sync(self, job: str, expression: str) -> None:
        """Make a job follow its configured expression; an unchanged schedule keeps its next run."""
        row = await self.store.schedule(job)
        if row is not None and row.expression == expression:
            return
        await self.store.set_schedule(job, expression, next_run(expression, self.clock()))

    async def sync_gc(self) -> None:
        config = self.service.config
        await self._sync(GC_JOB, gc_expression(config.gc_schedule, config.gc_interval_seconds))

    async def sync_jobs(self) -> None:
        """Make the jobs the configuration schedules (GC, the scrub) follow it."""
        await self.sync_gc()
        await self._sync(FSCK_JOB, _configured("fsck_schedule", self.service.config.fsck_schedule))

    async def tick(self) -> list[str]:
        """Run every due job this node can claim, one after another; answers the jobs it ran."""
        ran = []
        for row in await self.store.claim_due(self.owner, self.clock(), self.lease_seconds):
            if await self._run(row):
                ran.append(row.job)
        return ran

    async def _run(self, row: ScheduleRow) -> bool:
        handler = self._handler(row.job)
        if handler is None:
            if row.job not in self._unknown:
                self._unknown.add(row.job)
                log.warning("no handler for scheduled job %s on this node; leaving it to others", row.job)
            await self.store.release_lease(row.job, self.owner)
            return False
        finished = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_lease, row.job)
                try:
                    with metrics.timed_job(row.job) as failed:  # counted and timed for /metrics
                        try:
                            result = await handler(row.job, self.clock())
                            log.info("%s: %s", row.job, getattr(result, "summary", lambda: result)())
                        except Exception:
                            failed()
                            log.exception("scheduled job %s failed; it runs again at its next slot", row.job)
                finally:
                    nursery.cancel_scope.cancel()
            done = self.clock()
            with trio.CancelScope(shield=True):
                await self.store.finish_job(row.job, self.owner, done, next_run(row.expression, done))
            finished = True
        finally:
            if not finished:  # cancelled (shutdown): give the job back, still due
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self.store.release_lease(row.job, self.owner)
        return True

    async def _keep_lease(self, job: str) -> None:
        while True:
            await trio.sleep(self.lease_seconds / 3)
            if not await self.store.extend_lease(job, self.owner, self.clock() + self.lease_seconds):
                log.warning("lost the lease of %s while running it", job)
                return

    async def _delay(self) -> float:
        """Until the earliest next run, at most `poll_seconds` (other nodes may change schedules, and a
        job that is due but leased elsewhere is looked at again only then)."""
        now = self.clock()
        upcoming = [r.next_run_at for r in await self.store.schedules()
                    if r.expression and r.next_run_at is not None and r.next_run_at > now]
        return min([self.poll_seconds, *(t - now + 0.01 for t in upcoming)])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.sync_jobs()  # a bad schedule fails the start, not a later tick
        task_status.started()
        while True:
            try:
                await self.tick()
                delay = await self._delay()
            except Exception:
                log.exception("the scheduler failed to read its jobs; retrying")
                delay = self.poll_seconds
            await trio.sleep(delay)


__all__ = ["CLEANUP_PREFIX", "FSCK_JOB", "GC_JOB", "Handler", "Scheduler", "gc_expression", "next_run"]
