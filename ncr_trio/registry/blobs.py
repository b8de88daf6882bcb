"""Reading and deleting blobs.

Reads try `preadv2(RWF_NOWAIT)` first: data already in the page cache is copied inline on the
Trio thread, with no thread hop; only a read that would block on the device goes to a thread.
Where the response can take file spans (sendfile), a range that is not cached yet is not copied
either: a thread has the kernel read it (and the next range) into the page cache, waits for it,
and the range goes out as a span (`WaitsForSpans`; docs/performance/pulls.md says why).

Memory stays bounded whatever the number of downloads: each holds one chunk at a time, and the
chunk shrinks as downloads multiply, so that all of them together hold about
`download_buffer_bytes` per worker (1 MiB chunks for up to 8 downloads, 64 KiB from 128 on).

A blob is served only if its file is there with its recorded size: one the scrub moved to quarantine,
or whose file was cut or grew, is BLOB_UNKNOWN to HEAD and GET alike, so that clients push it again
(registry/fsck.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import trio

from ncr_trio.errors import RegistryError
from ncr_trio.registry.context import Registry
from ncr_trio.storage import BlobReader, FileSpan, blob_key
from ncr_trio.types import Digest

log = logging.getLogger("ncr_trio.blobs")

MAX_CHUNK = 1 << 20
SPAN_BYTES = 8 << 20
MIN_CHUNK = 64 << 10


@runtime_checkable
class WaitsForSpans(Protocol):
    """A reader that can make a range sendable as a file span by waiting for it (in a thread)."""

    def span(self, offset: int, length: int) -> FileSpan | None:
        """The range as a file span once it is in the page cache (None if the file ends before it).
        Starts reading the next range of the same length too, so the caller's sendfile of this one
        overlaps the device's read of the next."""
        ...


class Downloads:
    """Counts the downloads in flight, to size their chunks."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.active = 0

    def chunk(self) -> int:
        return max(MIN_CHUNK, min(MAX_CHUNK, self.budget // max(self.active, 1)))


@dataclass
class OpenBlob:
    digest: Digest
    size: int
    reader: BlobReader
    downloads: Downloads

    def close(self) -> None:
        self.reader.close()

    async def stream(self, start: int, end: int, disk: trio.CapacityLimiter,
                     spans: bool = False) -> AsyncIterator[bytes | FileSpan]:
        """Bytes [start, end] inclusive; closes the reader when done. With `spans`, cached ranges
        come as file spans for the caller to send without copying (they hold no memory)."""
        self.downloads.active += 1
        try:
            async with aclosing(read_range(self.reader, self.downloads, start, end + 1, disk, spans)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self.downloads.active -= 1
            self.reader.close()


async def read_range(reader: BlobReader, downloads: Downloads, start: int, stop: int, disk: trio.CapacityLimiter,
                     spans: bool) -> AsyncGenerator[bytes | FileSpan, None]:
    """Bytes [start, stop) of a file: with `spans`, as file spans (waited for in a thread where not cached, if
    the reader can), else in chunks sized for every download in flight, read inline from the page cache or,
    when that would block, in a thread."""
    pos = start
    waiter = reader if spans and isinstance(reader, WaitsForSpans) else None
    while pos < stop:
        if spans:
            n = min(SPAN_BYTES, stop - pos)
            span = reader.span_nowait(pos, n)
            if span is None and waiter is not None:
                span = await trio.to_thread.run_sync(waiter.span, pos, n, limiter=disk)
            if span is not None:
                pos += span.count
                yield span
                continue
        n = min(downloads.chunk(), stop - pos)
        data = reader.read_nowait(pos, n)
        if data is None:
            data = await trio.to_thread.run_sync(reader.read, pos, n, limiter=disk)
        if not data:
            raise OSError(f"the file ended at byte {pos}, before {stop}")
        pos += len(data)
        yield data


class Blobs:
    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.downloads = Downloads(reg.config.download_buffer_bytes)

    async def _recorded(self, repository: str, digest: Digest) -> int:
        size = await self.reg.meta.blob_size(repository, str(digest))
        if size is None:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})
        return size

    @staticmethod
    def _unsound(digest: Digest, size: int, stored: int | None) -> RegistryError:
        log.warning("blob %s: %s on storage, %d bytes recorded; `ncr-trio fsck --repair` moves it aside", digest,
                    "nothing" if stored is None else f"{stored} bytes", size)
        return RegistryError("BLOB_UNKNOWN", "the blob's stored bytes are missing or damaged: push it again",
                             detail={"digest": str(digest)})

    async def size(self, repository: str, digest: Digest) -> int:
        size = await self._recorded(repository, digest)
        if not self.reg.storage.local:
            # An object store's HEAD would cost a round trip per request; the row was committed only
            # after the object was stored, and GET still finds out if it went missing since.
            return size
        stored = self.reg.storage.stat(blob_key(digest))
        if stored != size:
            raise self._unsound(digest, size, stored)
        return size

    async def open(self, repository: str, digest: Digest) -> OpenBlob:
        size = await self._recorded(repository, digest)
        key = blob_key(digest)
        storage = self.reg.storage
        reader = storage.open_read(key) if storage.local else await trio.to_thread.run_sync(storage.open_read, key)
        if reader is None or reader.size != size:
            if reader is not None:
                reader.close()
            raise self._unsound(digest, size, None if reader is None else reader.size)
        return OpenBlob(digest, size, reader, self.downloads)

    async def redirect(self, repository: str, digest: Digest) -> str | None:
        """Where the client may fetch the blob's bytes itself (the object store's presigned URL), if the
        storage offers that; None to serve them here. The blob must be recorded in `repository` first."""
        await self._recorded(repository, digest)
        return self.reg.storage.redirect_url(blob_key(digest))

    async def delete(self, repository: str, digest: Digest) -> None:
        outcome = await self.reg.meta.unlink_blob(repository, str(digest))
        if outcome == "unknown":
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})
        if outcome == "referenced":
            raise RegistryError("DENIED", "the blob is referenced by a manifest in this repository: "
                                "delete the manifest first", status=409, detail={"digest": str(digest)})


__all__ = ["Blobs", "Downloads", "OpenBlob", "WaitsForSpans", "read_range"]
