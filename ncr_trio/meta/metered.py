"""`MeteredDatabase`: a `Database` whose units of work are timed in `ncr_db_operation_seconds`.

The store's every query goes through `read`, `write` or `write_sync` (meta/db.py), so timing those
three times every unit of work, by kind; the time includes waiting for a pooled connection
(PostgreSQL) or for the group commit (SQLite), which is what a request waits for. `dialect` is
copied; anything else (`close`, an engine's own attributes) is forwarded through `__getattr__`.

Every write, once it has ended (committed or not), moves the node's change counter (ncr_trio/changes.py):
answers the HTTP fast path remembered before it are not replayed after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from ncr_trio import changes
from ncr_trio.meta.db import Database, Tx
from ncr_trio.metrics import DB_SECONDS

T = TypeVar("T")


class MeteredDatabase:
    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self._read = DB_SECONDS.labels("read")
        self._write = DB_SECONDS.labels("write")
        self._write_sync = DB_SECONDS.labels("write_sync")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        started = time.perf_counter()
        try:
            return await self.inner.read(fn)
        finally:
            self._read.observe(time.perf_counter() - started)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        started = time.perf_counter()
        try:
            return await self.inner.write(fn)
        finally:
            changes.bump()
            self._write.observe(time.perf_counter() - started)

    def write_sync(self, fn: Callable[[Tx], T], before: Callable[[], None] | None = None) -> T:
        started = time.perf_counter()
        try:
            return self.inner.write_sync(fn, before)
        finally:
            changes.bump()
            self._write_sync.observe(time.perf_counter() - started)

    def close(self) -> None:
        self.inner.close()


__all__ = ["MeteredDatabase"]
