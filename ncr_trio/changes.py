"""A change counter shared by the worker processes of one node: it moves whenever the metadata
store has committed a write here.

The HTTP fast path (http/fastpath.py) replays answers the app gave for the same request; an answer
remembered before a change must not be replayed after it, by any worker of the node that made the
change. Every write unit of work (meta/metered.py) calls `bump()` once it has ended; the fast path
notes `current()` when a request starts and replays its answer only while the counter still holds
that value. Changes made on other nodes reach this one through the same TTL as the access caches
(`access_cache_seconds`).

Records that no answer shows (the audit log, pull times, keys' last use) are written `unseen()`:
they do not move the counter, or every worker's flush of them would forget every answer each second.

The counter is 8 bytes of a small file in the data directory, followed by the time of the last
bump (8 bytes, a float of `time.time()`), mapped into every worker (`attach`); before `attach` (tests,
tools) it lives in the process. Two workers bumping at once may both write the same new value: the
counter still moved, which is all a reader asks. The time says until when the app's own per-process
caches may still hold what was true before the change (`changed_at()` + `access_cache_seconds`).
"""

from __future__ import annotations

import contextvars
import mmap
import os
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_COUNTER = struct.Struct("<Q")
_CHANGED_AT = struct.Struct("<d")
_SIZE = _COUNTER.size + _CHANGED_AT.size
_map: mmap.mmap | bytearray = bytearray(_SIZE)
_unseen: contextvars.ContextVar[bool] = contextvars.ContextVar("ncr_changes_unseen", default=False)


def attach(path: Path) -> None:
    """Share the counter through the file at `path` (created if missing) with the node's other workers."""
    global _map
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < _SIZE:
            os.ftruncate(fd, _SIZE)
        _map = mmap.mmap(fd, _SIZE)
    finally:
        os.close(fd)


def current() -> int:
    return int(_COUNTER.unpack_from(_map, 0)[0])


@contextmanager
def unseen() -> Iterator[None]:
    """Writes within this block (in this task, and threads it starts) leave the counter alone."""
    reset = _unseen.set(True)
    try:
        yield
    finally:
        _unseen.reset(reset)


def changed_at() -> float:
    """When the counter last moved (`time.time()`; 0 before the first change)."""
    return float(_CHANGED_AT.unpack_from(_map, _COUNTER.size)[0])


def bump() -> None:
    if _unseen.get():
        return
    _CHANGED_AT.pack_into(_map, _COUNTER.size, time.time())
    _COUNTER.pack_into(_map, 0, (current() + 1) & 0xFFFF_FFFF_FFFF_FFFF)


__all__ = ["attach", "bump", "changed_at", "current", "unseen"]
