"""App-lifetime jobs, supervised by the lifespan nursery: upload expiry and garbage collection.

With several worker processes only one runs the jobs: the one holding `<data>/leader.lock`.
"""

from __future__ import annotations

import fcntl
import logging
import os

import trio

from ncr_trio.registry import RegistryService

log = logging.getLogger("ncr_trio.background")


def _try_lead(service: RegistryService) -> int | None:
    fd = os.open(service.config.data_dir / "leader.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def _periodic_gc(service: RegistryService, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        try:
            report = await service.gc.run()
            log.info(report.summary())
        except Exception:
            log.exception("background gc failed; retrying next interval")


async def run_background(service: RegistryService, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    fd = _try_lead(service)
    task_status.started()
    if fd is None:
        return
    try:
        interval = service.config.gc_interval_seconds
        if interval > 0:
            await _periodic_gc(service, interval)
        else:
            await trio.sleep_forever()
    finally:
        os.close(fd)


__all__ = ["run_background"]
