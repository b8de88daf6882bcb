"""The storage driver protocol: bytes and keys only, no registry knowledge.

Upload sinks and blob readers are *synchronous* objects meant to be driven from a worker thread
(or, for reads already in the page cache, inline: see `BlobReader.read_nowait`), so that the
use cases decide how to batch thread hops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ncr_trio.types import Buffer


class UploadBusy(Exception):
    """Another holder (a request in this or another process) has the upload open."""


class StorageUnavailable(Exception):
    """A remote store failed to answer (unreachable, timed out, an error after the driver's retries):
    the request is answered 503 with Retry-After, and nothing it had not acknowledged is recorded."""


class UploadSink(Protocol):
    """An append-only staging object for one upload session."""

    def size(self) -> int: ...
    def state(self) -> str:
        """What the driver needs besides the key to resume the upload from what `sync` stored (an S3
        multipart upload's parts, say): opaque, saved with the acknowledged size in the upload row and
        handed back to `StorageDriver.open_upload`. "" when the key says it all (a file)."""
        ...
    def truncate(self, size: int) -> None: ...
    def write(self, chunks: Sequence[Buffer]) -> int: ...
    def flush(self) -> None:
        """Everything written so far is in the file (not necessarily on disk)."""
        ...
    def sync(self) -> None:
        """Everything written so far is durably on disk."""
        ...
    def complete(self) -> None:
        """Everything written so far is the upload's whole content at its key, durably, for `publish`,
        `read_chunks`, `stat` and `open_read`; nothing more may be written."""
        ...
    def read_chunks(self, chunk_size: int) -> Iterator[bytes]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class FileSpan:
    """Bytes a reader can hand over as a file range (for sendfile) instead of copying them."""

    fd: int
    offset: int
    count: int


class BlobReader(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...
    def read_nowait(self, offset: int, length: int) -> bytes | None:
        """The bytes if they can be had without blocking on the device, else None."""
        ...
    def span_nowait(self, offset: int, length: int) -> FileSpan | None:
        """The range as a file span if it is a local file already in the page cache, else None."""
        ...
    def close(self) -> None: ...


class StorageDriver(Protocol):
    name: str
    # Whether every call is a local file operation, quick enough for the event loop's thread when the
    # page cache has it (stat, open). A remote store (S3) is only ever called from worker threads, and
    # blob HEADs answer from the database instead of asking it.
    local: bool

    def redirect_url(self, key: str) -> str | None:
        """A URL where clients can GET `key`'s bytes themselves (a presigned object URL, short-lived), or
        None to have the registry serve them. Computed without network I/O: it runs on the event loop."""
        ...

    def open_upload(self, key: str, state: str = "") -> UploadSink:
        """Open (creating it if needed) and lock an upload for appending, resuming from `state` (what
        `UploadSink.state` returned with the acknowledged size); never waits for the lock: raises
        UploadBusy at once when another holder has it. A driver without locks (S3) relies on the
        registry's lease on the upload row instead."""
        ...
    def publish(self, upload_key: str, key: str) -> Callable[[], None]:
        """Put a completed (`UploadSink.complete`) upload's bytes at `key` atomically (replacing whatever
        is there), keeping the upload until the caller deletes it; returns the step that makes them
        durable there (run it before anything refers to `key`)."""
        ...
    def open_read(self, key: str) -> BlobReader | None: ...
    def stat(self, key: str) -> int | None: ...
    def modified(self, key: str) -> float | None:
        """Last modification time (epoch seconds), or None when the key does not exist."""
        ...
    def writing(self, key: str) -> bool:
        """Whether a holder (a request of this or another process) has the upload at `key` open to write."""
        ...
    def publishing(self, key: str) -> bool:
        """Whether the bytes at `key` are still an upload's too: published, and the upload not yet
        deleted (the registry deletes it once it has recorded the blob, or GC once it expires)."""
        ...
    def delete(self, key: str) -> bool: ...
    def move(self, key: str, new_key: str) -> bool:
        """Move `key`'s bytes to `new_key` (replacing what is there), durably; False if `key` does not exist."""
        ...
    def abandoned_uploads(self, older_than: float) -> list[str]:
        """Upload keys holding something outside keys (an S3 multipart upload) since before `older_than`
        (epoch seconds); GC deletes those no session row owns. A filesystem holds nothing outside keys."""
        ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def write_stats(self) -> dict[str, int]:
        """Counters of how this process wrote upload bytes (for GET /api/v1/io): names are the driver's."""
        ...


__all__ = ["BlobReader", "FileSpan", "StorageDriver", "StorageUnavailable", "UploadBusy", "UploadSink"]
