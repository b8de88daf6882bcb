"""App-lifetime jobs, supervised by the lifespan nursery: upload expiry (every few minutes), the health
checks of replication's remotes (every `replication_check_seconds`) and the scheduler
(ncr_trio/scheduler.py), which runs GC, cleanups and scheduled replications on their schedules.

With several worker processes only one per node runs them: the one holding `<data>/leader.lock`.
Several nodes may each run a scheduler: its leases keep any one job to one node at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Awaitable, Callable

import trio

from ncr_trio import metrics
from ncr_trio.registry import RegistryService
from ncr_trio.scheduler import Scheduler

log = logging.getLogger("ncr_trio.background")


def _try_lead(service: RegistryService) -> int | None:
    fd = os.open(service.config.data_dir / "leader.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def _every(interval: float, name: str, job: Callable[[], Awaitable[object]]) -> None:
    while True:
        await trio.sleep(interval)
        with metrics.timed_job(name.replace(" ", "-")) as failed:  # "upload-expiry" in /metrics
            try:
                result = await job()
                log.info("%s: %s", name, getattr(result, "summary", lambda: "done")())
            except Exception:
                failed()
                log.exception("%s failed; retrying in %.0fs", name, interval)


async def run_background(service: RegistryService, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    fd = _try_lead(service)
    if fd is None:
        task_status.started()
        return
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(Scheduler(service).run)
            await nursery.start(service.remotes.run)
            task_status.started()
            ttl = service.config.upload_ttl_seconds
            nursery.start_soon(_every, max(min(ttl / 4, 600.0), 1.0), "upload expiry", service.gc.expire_uploads)
    finally:
        os.close(fd)


__all__ = ["run_background"]
