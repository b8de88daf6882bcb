"""`MeteredDriver`: any storage driver, with the latency of its calls in `ncr_storage_operation_seconds`.

A decorator over the driver protocol (as the pull-through cache decorates blob stores): the
registry holds one of these around whatever `open_storage` chose. The calls that touch the store
(opening, publishing and its durability step, stat, delete, move...) are timed one by one, by
name; the protocol's attributes (`name`, `local`) are copied and `redirect_url` (no I/O, on the
event loop) and `list` (a lazy iterator, consumed at the caller's pace) are forwarded untimed.
Anything else a driver offers (methods a driver adds beyond the protocol) is forwarded as it is,
through `__getattr__`, so wrapping never hides a capability.

What an opened upload or reader then does (each chunk written or read) is not timed: those are the
byte streams, measured as request bytes and durations at the HTTP edge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ncr_trio.metrics import STORAGE_SECONDS
from ncr_trio.storage.base import BlobReader, StorageDriver, UploadSink

T = TypeVar("T")


class MeteredDriver:
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.local = inner.local
        self._timers = {op: STORAGE_SECONDS.labels(op) for op in (
            "open_upload", "publish", "publish.durable", "open_read", "stat", "modified", "writing", "publishing",
            "delete", "move", "abandoned_uploads")}

    def _timed(self, op: str, fn: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._timers[op].observe(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class does not define: a driver's own extras.
        return getattr(self.inner, name)

    def redirect_url(self, key: str) -> str | None:
        return self.inner.redirect_url(key)

    def open_upload(self, key: str, state: str = "") -> UploadSink:
        return self._timed("open_upload", self.inner.open_upload, key, state)

    def publish(self, upload_key: str, key: str) -> Callable[[], None]:
        make_durable = self._timed("publish", self.inner.publish, upload_key, key)
        return lambda: self._timed("publish.durable", make_durable)

    def open_read(self, key: str) -> BlobReader | None:
        return self._timed("open_read", self.inner.open_read, key)

    def stat(self, key: str) -> int | None:
        return self._timed("stat", self.inner.stat, key)

    def modified(self, key: str) -> float | None:
        return self._timed("modified", self.inner.modified, key)

    def writing(self, key: str) -> bool:
        return self._timed("writing", self.inner.writing, key)

    def publishing(self, key: str) -> bool:
        return self._timed("publishing", self.inner.publishing, key)

    def delete(self, key: str) -> bool:
        return self._timed("delete", self.inner.delete, key)

    def move(self, key: str, new_key: str) -> bool:
        return self._timed("move", self.inner.move, key, new_key)

    def abandoned_uploads(self, older_than: float) -> list[str]:
        return self._timed("abandoned_uploads", self.inner.abandoned_uploads, older_than)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def write_stats(self) -> dict[str, int]:
        return self.inner.write_stats()


__all__ = ["MeteredDriver"]
