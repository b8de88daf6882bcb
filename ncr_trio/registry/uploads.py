"""Blob uploads: sessions, streamed and chunked appends, finalisation, cancellation.

The data flow of one push::

    ASGI receive -> batch (~1 MiB) -> bounded channel -> worker thread: hash (native, GIL released)
                                                        + direct write into uploads/<id>
                 -> fdatasync -> upload row (size, hash state) committed -> 202
    PUT ?digest= -> compare digest -> (no stored copy yet) link into blobs/..., then, in the metadata
                    writer's batch: fsync file and directory, commit the blob row, having checked
                    under the row's lock that the file is there -> unlink uploads/<id> -> 201

A tiny upload (under 64 KiB) skips the thread: hashing and copying it take microseconds.

Receiving the next batch overlaps hashing and writing the previous one; the channel's small
capacity makes a slow disk push back on the socket instead of growing memory.

A session's acknowledged state is (size, hash state, storage state) in the metadata store. After a
crash the file may hold unacknowledged bytes past `size`; the next request truncates them, and the
hash resumes from the saved state without re-reading anything. On S3 the storage state (the
multipart upload's parts, pending small objects) lets any node continue the session (see `_session`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from ncr_trio import hashing
from ncr_trio.concurrency import collapse_groups
from ncr_trio.errors import RegistryError
from ncr_trio.meta import BlobMissing, Upload
from ncr_trio.registry.context import Registry
from ncr_trio.storage import UploadBusy, UploadSink, blob_key, upload_key
from ncr_trio.types import Buffer, Digest

BATCH_BYTES = 1 << 20
INLINE_BYTES = 64 << 10
# How often a push stores its bytes again when a GC (maybe another node's) takes them before they are
# recorded: each time needs a GC pass that started after the previous try to reach them in a few ms.
PUBLISH_ATTEMPTS = 5
PIPELINE_DEPTH = 4
_RANGE_RE = re.compile(r"(?:bytes[= ])?([0-9]{1,19})-([0-9]{1,19})")  # 19 digits: past any size
_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class UploadStatus:
    id: str
    repository: str
    size: int


def parse_content_range(value: str) -> tuple[int, int]:
    m = _RANGE_RE.fullmatch(value.strip())
    if m is None:
        raise RegistryError("RANGE_INVALID", f"malformed Content-Range {value[:100]!r}: expected <start>-<end>")
    start, end = int(m.group(1)), int(m.group(2))
    if end < start:
        raise RegistryError("RANGE_INVALID", f"Content-Range {value[:100]!r} ends before it starts")
    return start, end


def _busy(upload_id: str) -> RegistryError:
    return RegistryError("TOOMANYREQUESTS", "another request is writing this upload: retry when it has ended",
                         detail={"upload": upload_id[:100]}, headers={"Retry-After": "1"})


def range_header(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


class Pump:
    """Receive chunks on the Trio thread while a worker thread hashes and writes earlier ones.

    With `progress`, each batch is also put in the file (`UploadSink.flush`) for readers that follow
    the upload as it grows (an image cache's fetch), and `progress(written)` runs after it."""

    def __init__(self, reg: Registry, sink: UploadSink, hasher: hashing.Hasher,
                 progress: Callable[[int], None] | None = None) -> None:
        self.reg, self.sink, self.hasher = reg, sink, hasher
        self.written = 0
        self.progress = progress

    def _consume(self, batch: list[Buffer]) -> None:
        for chunk in batch:
            self.hasher.update(chunk)
        self.written += self.sink.write(batch)
        if self.progress is not None:
            self.sink.flush()

    def _advanced(self) -> None:
        if self.progress is not None:
            self.progress(self.written)

    async def _writer(self, receive: trio.MemoryReceiveChannel[list[Buffer]]) -> None:
        async with receive:
            async for batch in receive:
                await trio.to_thread.run_sync(self._consume, batch, limiter=self.reg.disk)
                self._advanced()

    async def run(self, body: AsyncIterator[bytes], limit: int | None) -> int:
        send, receive = trio.open_memory_channel[list[Buffer]](PIPELINE_DEPTH)
        received = 0
        with collapse_groups():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, receive)
                async with send:
                    batch: list[Buffer] = []
                    pending = 0
                    sent = False
                    async for chunk in body:
                        if not chunk:
                            continue
                        received += len(chunk)
                        if limit is not None and received > limit:
                            raise RegistryError("SIZE_INVALID", "request body is longer than its declared length")
                        batch.append(chunk)
                        pending += len(chunk)
                        if pending >= BATCH_BYTES:
                            await send.send(batch)
                            batch, pending, sent = [], 0, True
                    if batch and (sent or self.sink.size() + pending > INLINE_BYTES):
                        await send.send(batch)
                    elif batch:
                        # A tiny upload whole (a config, a small layer): hashing it and copying it
                        # into the page cache take microseconds, less than a thread hop.
                        self._consume(batch)
                        self._advanced()
        return self.written


class Uploads:
    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self._busy: set[str] = set()  # sessions a request of this process has open (see `_open`)

    async def start(self, repository: str) -> UploadStatus:
        # Only the row: the file appears with the first bytes (see `_open`).
        upload_id = str(uuid.uuid4())
        await self.reg.meta.create_upload(upload_id, repository, hashing.sha256().state())
        return UploadStatus(upload_id, repository, 0)

    async def status(self, repository: str, upload_id: str) -> UploadStatus:
        up = await self._get(repository, upload_id)
        return UploadStatus(up.id, repository, up.size)

    async def _get(self, repository: str, upload_id: str) -> Upload:
        # Session IDs are the UUIDs `start` makes: anything else is unknown without a query.
        up = await self.reg.meta.get_upload(repository, upload_id) if _UPLOAD_ID.fullmatch(upload_id) else None
        if up is None:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"upload": upload_id[:100]})
        return up

    async def _open(self, repository: str, upload_id: str) -> tuple[UploadSink, Upload]:
        """Lock the session's file, then read its acknowledged state (in that order: see `Pump`).

        One request at a time writes a session; another one is refused at once, never queued: a
        slow client may hold the session as long as its body takes, and a request waiting for it
        would hold a disk slot the worker's other pushes and pulls need. In this process the
        `_busy` set decides without a thread; across processes the storage's lock never waits
        either. Release with `_close`."""
        await self._get(repository, upload_id)  # cheap refusal of unknown ids before touching disk
        if upload_id in self._busy:
            raise _busy(upload_id)
        self._busy.add(upload_id)
        try:
            sink = await trio.to_thread.run_sync(self.reg.storage.open_upload, upload_key(upload_id),
                                                 limiter=self.reg.disk)
        except BaseException as e:
            self._busy.discard(upload_id)
            if isinstance(e, UploadBusy):
                raise _busy(upload_id) from None
            raise
        try:
            up = await self._get(repository, upload_id)
            if sink.size() < up.size:
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", "the upload's data is gone: start again",
                                    detail={"upload": upload_id[:100]})
            if sink.size() > up.size:  # bytes a crash left behind, never acknowledged
                await trio.to_thread.run_sync(sink.truncate, up.size, limiter=self.reg.disk)
        except BaseException:
            self._close(upload_id, sink)
            raise
        return sink, up

    def _close(self, upload_id: str, sink: UploadSink) -> None:
        sink.close()
        self._busy.discard(upload_id)

    @asynccontextmanager
    async def _session(self, repository: str, upload_id: str) -> AsyncIterator[tuple[UploadSink, Upload, str | None]]:
        """The session open for one request to write: (sink, acknowledged state, lease owner or None).

        Local storage locks the file (`_open`). Storage without locks (S3), shared by every node, is
        guarded by a lease on the upload row instead: taken with a compare-and-set, renewed while the
        request streams, released at the end; refused at once (429) while another request holds it.
        A node that dies holding one loses it when it expires, and the next request, on any node,
        resumes from the acknowledged size, hash state and storage state in the row."""
        if self.reg.storage.local:
            sink, up = await self._open(repository, upload_id)
            try:
                yield sink, up, None
            finally:
                self._close(upload_id, sink)
            return
        await self._get(repository, upload_id)
        owner = uuid.uuid4().hex
        seconds = self.reg.config.upload_lease_seconds
        if not await self.reg.meta.take_upload_lease(upload_id, owner, seconds):
            raise _busy(upload_id)
        try:
            with collapse_groups():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.renew_lease, upload_id, owner, seconds)
                    up = await self._get(repository, upload_id)  # read under the lease: the state is settled
                    sink = await trio.to_thread.run_sync(self.reg.storage.open_upload, upload_key(upload_id),
                                                         up.storage_state, limiter=self.reg.disk)
                    try:
                        if sink.size() != up.size:
                            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "the upload's data is gone: start again",
                                                detail={"upload": upload_id[:100]})
                        yield sink, up, owner
                    finally:
                        sink.close()
                        nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.reg.meta.release_upload_lease(upload_id, owner)

    async def renew_lease(self, upload_id: str, owner: str, seconds: float) -> None:
        """Keep the lease while a long request streams. Should another node have taken it over (this
        one stalled past its expiry), the request's final compare-and-set fails: nothing is recorded."""
        while True:
            await trio.sleep(seconds / 3)
            await self.reg.meta.take_upload_lease(upload_id, owner, seconds)

    async def _receive(self, repository: str, upload_id: str, sink: UploadSink, up: Upload,
                       body: AsyncIterator[bytes], content_range: tuple[int, int] | None,
                       content_length: int | None) -> tuple[hashing.Hasher, int]:
        """Check a chunk's range against the acknowledged size, then stream it in; returns (hasher, new size)."""
        expected = content_length
        if content_range is not None:
            start, end = content_range
            headers = self._headers(repository, upload_id, up.size)
            if start != up.size:
                raise RegistryError("RANGE_INVALID", f"chunk starts at {start}, the upload has {up.size} bytes",
                                    headers=headers)
            if content_length is not None and content_length != end - start + 1:
                raise RegistryError("RANGE_INVALID", "Content-Range and Content-Length disagree", headers=headers)
            expected = end - start + 1
        hasher = hashing.from_state(up.hash_state)
        written = await Pump(self.reg, sink, hasher).run(body, expected)
        if expected is not None and written != expected:
            raise RegistryError("SIZE_INVALID", f"received {written} bytes, expected {expected}")
        return hasher, up.size + written

    async def append(self, repository: str, upload_id: str, body: AsyncIterator[bytes],
                     content_range: tuple[int, int] | None, content_length: int | None) -> UploadStatus:
        async with self._session(repository, upload_id) as (sink, up, lease):
            hasher, size = await self._receive(repository, upload_id, sink, up, body, content_range, content_length)
            await trio.to_thread.run_sync(sink.sync, limiter=self.reg.disk)
            if not await self.reg.meta.advance_upload(upload_id, up.size, size, hasher.state(), sink.state(), lease):
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", "upload changed or ended concurrently")
            return UploadStatus(upload_id, repository, size)

    def _headers(self, repository: str, upload_id: str, size: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{repository}/blobs/uploads/{upload_id}",
            "Range": range_header(size),
            "Docker-Upload-UUID": upload_id,
        }

    async def finish(self, repository: str, upload_id: str, digest: Digest, body: AsyncIterator[bytes],
                     content_range: tuple[int, int] | None, content_length: int | None) -> int:
        """Append the final chunk (if any), verify the digest and publish the blob; returns its size."""
        async with self._session(repository, upload_id) as (sink, up, _lease):
            hasher, size = await self._receive(repository, upload_id, sink, up, body, content_range, content_length)
            ok = await trio.to_thread.run_sync(self.finalize, sink, hasher, repository, upload_id, digest, size,
                                               upload_key(upload_id), limiter=self.reg.disk)
            if not ok:
                await self.cancel(repository, upload_id, sink=sink)
                raise RegistryError("DIGEST_INVALID", detail={"digest": str(digest)})
            return size

    async def monolithic(self, repository: str, digest: Digest, body: AsyncIterator[bytes],
                         content_length: int | None) -> int:
        """POST ?digest=: the whole blob in one request, no session row."""
        key = upload_key("mono-" + str(uuid.uuid4()))
        sink = await trio.to_thread.run_sync(self.reg.storage.open_upload, key, limiter=self.reg.disk)
        published = False
        try:
            hasher = hashing.sha256()
            size = await Pump(self.reg, sink, hasher).run(body, content_length)
            if content_length is not None and size != content_length:
                raise RegistryError("SIZE_INVALID", f"received {size} bytes, expected {content_length}")
            published = await trio.to_thread.run_sync(self.finalize, sink, hasher, repository, None, digest, size,
                                                      key, limiter=self.reg.disk)
            if not published:
                raise RegistryError("DIGEST_INVALID", detail={"digest": str(digest)})
            return size
        finally:
            sink.close()
            if not published:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.reg.storage.delete, key)

    def finalize(self, sink: UploadSink, hasher: hashing.Hasher, repository: str, upload_id: str | None,
                 digest: Digest, size: int, source: str) -> bool:
        """In one thread hop: verify the digest; if it matches, publish the blob and record it."""
        sink.complete()
        if digest.algorithm != hasher.name:
            # Sessions hash with sha256 as they go; another algorithm re-reads the bytes once.
            hasher = hashing.new(digest.algorithm)
            for chunk in sink.read_chunks(4 << 20):
                hasher.update(chunk)
        if hasher.hexdigest() != digest.hex:
            return False
        self._store(repository, upload_id, digest, size, source)
        return True

    def _store(self, repository: str, upload_id: str | None, digest: Digest, size: int, source: str) -> None:
        """Record verified bytes as the blob `digest`, deduplicating against a stored copy if there is one.

        The database decides, not a lock on this machine: the blob's row is committed in a transaction
        that holds it locked and checks, under that lock, that the file is in storage; GC removes a
        file only in a transaction that holds the same row locked (`MetaStore.drop_blob_sync`). So
        when another node's GC removed the file meanwhile, the commit fails (`BlobMissing`) and this
        push publishes its own copy, which it kept for that, and tries again.
        """
        key = blob_key(digest)
        stored = self._stored(key)
        dedup = stored(size)
        for _ in range(PUBLISH_ATTEMPTS):
            durable = None if dedup else self.reg.storage.publish(source, key)
            try:
                self.reg.meta.commit_blob_sync(repository, str(digest), size, upload_id, stored, durable=durable,
                                               dedup=dedup)
            except (BlobMissing, FileNotFoundError):  # the latter: collected before it could be made durable
                dedup = False
                continue
            self.reg.storage.delete(source)
            return
        raise RegistryError("UNAVAILABLE", "the blob was collected each time it was stored: push it again",
                            detail={"digest": str(digest)})

    def _stored(self, key: str) -> Callable[[int], bool]:
        """Whether `size` bytes are stored at `key` (the check a blob's transaction runs under its lock)."""
        return lambda size: self.reg.storage.stat(key) == size

    async def cancel(self, repository: str, upload_id: str, sink: UploadSink | None = None) -> None:
        if sink is None:
            await self._get(repository, upload_id)
        with trio.CancelScope(shield=True):
            await self.reg.meta.delete_upload(upload_id)
            await trio.to_thread.run_sync(self.reg.storage.delete, upload_key(upload_id))

    async def mount(self, repository: str, digest: Digest, source: str) -> int | None:
        return await self.reg.meta.mount_blob(repository, str(digest), source, self._stored(blob_key(digest)))


__all__ = ["Pump", "UploadStatus", "Uploads", "parse_content_range", "range_header"]
