"""The pull-through: how a cache-type registry answers pulls, following the guide's decision table.

A manifest asked for by tag is revalidated with one `HEAD` at the source (Docker Hub does not count
HEADs toward its rate limit), shared by every request for that tag meanwhile::

    source's digest == cached tag's   -> the cached manifest
    source's digest != cached tag's   -> GET it from the source, verify, store, move the tag: the new one
    tag deleted at the source (404)   -> the cached tag is removed: 404
    source unreachable, 429, 5xx      -> the cached manifest when there is one (else 503, or 429)

A manifest asked for by digest is served from the cache without asking the source; a miss is fetched
(one GET for every request waiting on it) and verified against the digest.

A blob not yet cached is fetched once per (repository, digest), however many clients ask, by a task
of the app's nursery (a client hanging up does not stop it) under the caching deadline::

    source GET (Range: bytes=<kept>- when an earlier fetch was cut off)
      -> Pump: native SHA-256 + write into uploads/<id>, each batch put in the file as it lands
      -> every client streams that file up to what is written, from the first byte on
      -> the last byte waits until the whole blob is verified against its digest and committed,
         so a client never gets a short or wrong body: a fetch that fails breaks their connection
      cut off (deadline, source gone): the bytes and hash state so far stay recorded, and the next
      pull continues from there; they are released after `cache_partial_ttl_seconds` (registry/gc.py)
      wrong digest: nothing is kept
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from ncr_trio import hashing
from ncr_trio.cache.sources import Source, source_repository
from ncr_trio.cache.upstream import ManifestHead, Upstream, UpstreamError, UpstreamNotFound, Upstreams
from ncr_trio.concurrency import collapse_groups
from ncr_trio.errors import RegistryError
from ncr_trio.meta import ManifestRecord
from ncr_trio.meta.store import Protected, Upload
from ncr_trio.registry.blobs import Blobs, Downloads, OpenBlob, read_range
from ncr_trio.registry.context import Registry
from ncr_trio.registry.manifests import Manifests, parse_manifest
from ncr_trio.registry.protection import Protection
from ncr_trio.registry.uploads import Pump, Uploads
from ncr_trio.storage import BlobReader, FileSpan, UploadBusy, upload_key
from ncr_trio.types import Digest, parse_reference

log = logging.getLogger("ncr_trio.cache")

K = TypeVar("K")
WATCH_INTERVAL = 0.02  # how often a fetch under way in another process is looked at (seconds)
T = TypeVar("T")


class FetchBroken(OSError):
    """A blob's fetch from the source failed while a client was streaming it: its connection is cut
    (an OSError, as a blob whose stored bytes end early: the response is abandoned, never completed)."""


class _Flights(Generic[K, T]):
    """Single flight: concurrent calls with the same key share the first one's result (or error). If
    the first caller is cancelled (its client hung up), the others start over, one of them leading."""

    def __init__(self) -> None:
        self._running: dict[K, tuple[trio.Event, list[Any]]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[T]]) -> T:
        while (flight := self._running.get(key)) is not None:
            done, result = flight
            await done.wait()
            if result:
                ok, value = result
                if ok:
                    return value  # type: ignore[no-any-return]
                raise value
        done, result = trio.Event(), []
        self._running[key] = (done, result)
        try:
            value = await call()
            result += [True, value]
            return value
        except Exception as e:
            result += [False, e]
            raise
        finally:
            del self._running[key]
            done.set()


@dataclass(eq=False)
class _Fetch:
    """One blob coming from the source: what readers follow."""

    repository: str
    digest: Digest
    upload_id: str = ""
    size: int | None = None  # the blob's size, once the source has answered
    written: int = 0  # bytes in the upload file, readable
    committed: bool = False
    error: RegistryError | None = None
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def over(self) -> bool:
        return self.committed or self.error is not None

    def advance(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    def readable(self) -> int:
        """Bytes a client may have: all once committed, else all but the last (held until verified)."""
        if self.committed or self.size is None:
            return self.written
        return min(self.written, self.size - 1)


@dataclass
class CachingBlob:
    """A blob streamed to a client while its fetch writes it (the shape of `OpenBlob` for /v2): chunks
    sized as every download's (registry/blobs.py), sent without copying when in the page cache."""

    fetch: _Fetch
    reader: BlobReader
    downloads: Downloads

    @property
    def size(self) -> int:
        assert self.fetch.size is not None
        return self.fetch.size

    def close(self) -> None:
        self.reader.close()

    async def stream(self, start: int, end: int, disk: trio.CapacityLimiter,
                     spans: bool = False) -> AsyncIterator[bytes | FileSpan]:
        fetch = self.fetch
        self.downloads.active += 1
        try:
            pos = start
            while pos <= end:
                available = min(fetch.readable(), end + 1)
                if pos >= available:
                    if fetch.error is not None:
                        raise FetchBroken(f"fetch of {fetch.digest} failed: {fetch.error.message}")
                    await fetch.changed()
                    continue
                async with aclosing(read_range(self.reader, self.downloads, pos, available, disk, spans)) as chunks:
                    async for chunk in chunks:
                        pos += chunk.count if isinstance(chunk, FileSpan) else len(chunk)
                        yield chunk
        finally:
            self.downloads.active -= 1
            self.reader.close()


def _unavailable(source: Source, e: UpstreamError) -> RegistryError:
    if e.status == 429:
        return RegistryError("TOOMANYREQUESTS", f"the source registry of image cache {source.name!r} asks to slow "
                             "down, and nothing is cached yet: retry later", headers={"Retry-After": "10"})
    return RegistryError("UNAVAILABLE", f"the source registry of image cache {source.name!r} cannot be reached, "
                         f"and nothing is cached yet: {e}")


class PullThrough:
    """Pulls from cache-type registries: manifests and blobs from the cache, or from the source."""

    def __init__(self, reg: Registry, manifests: Manifests, blobs: Blobs, uploads: Uploads,
                 protection: Protection | None, upstreams: Upstreams) -> None:
        self.reg = reg
        self.manifests, self.blobs, self.uploads = manifests, blobs, uploads
        self.protection = protection
        self.upstreams = upstreams
        self._heads: _Flights[tuple[str, str], ManifestHead] = _Flights()
        self._manifests: _Flights[tuple[str, str], ManifestRecord] = _Flights()
        self._fetches: dict[tuple[str, str], _Fetch] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The nursery blob fetches run in (app lifetime): started by the lifespan."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self.upstreams.aclose()

    def _upstream(self, source: Source, repository: str) -> tuple[Upstream, str]:
        """The source's client, and `repository`'s name there (without the cache registry's name)."""
        path = repository.partition("/")[2]
        try:
            upstream = self.upstreams.get(source)
        except ValueError as e:  # settings the source's client cannot use (checked when the cache is saved)
            raise RegistryError("UNAVAILABLE", f"image cache {source.name!r} cannot be used: {e}") from None
        return upstream, source_repository(source.type, path)

    async def _in_time(self, call: Awaitable[T]) -> T:
        """A request to the source, within the caching deadline (a source that trickles its answer byte by
        byte, each within the read timeout, is cut too)."""
        deadline = self.reg.config.cache_deadline_seconds
        with trio.move_on_after(deadline):
            return await call
        raise UpstreamError(f"the source did not answer within {deadline:g} s")

    # -- manifests ------------------------------------------------------------------------------
    async def manifest(self, source: Source, repository: str, reference: str) -> ManifestRecord:
        try:
            ref = parse_reference(reference)
        except RegistryError:
            return await self.manifests.get(repository, reference)  # MANIFEST_UNKNOWN, as for any registry
        if isinstance(ref, Digest):
            try:
                return await self.manifests.get(repository, reference)
            except RegistryError as e:
                if e.code != "MANIFEST_UNKNOWN":
                    raise
            return await self._fetch_manifest(source, repository, str(ref), None)
        cached = await self.reg.meta.get_tagged_manifest(repository, ref)
        upstream, remote = self._upstream(source, repository)
        try:
            head = await self._heads.run((repository, ref), lambda: self._in_time(upstream.head_manifest(remote, ref)))
        except UpstreamNotFound:
            if cached is not None:
                await self._forget_tag(repository, ref)
            raise RegistryError("MANIFEST_UNKNOWN", f"{ref!r} is not at the source registry",
                                detail={"reference": ref}) from None
        except UpstreamError as e:
            if cached is not None:
                log.info("image cache %s: serving cached %s:%s (%s)", source.name, repository, ref, e)
                return cached
            raise _unavailable(source, e) from None
        if cached is not None and cached.digest == head.digest:
            return cached
        try:
            return await self._fetch_manifest(source, repository, head.digest, ref)
        except RegistryError:
            if cached is not None:
                return cached
            raise

    async def _forget_tag(self, repository: str, tag: str) -> None:
        guard = await self.protection.guard(repository) if self.protection else None
        try:
            await self.reg.meta.delete_tag(repository, tag, guard)
        except Protected:
            pass  # a protected tag stays; it is still not served

    async def _fetch_manifest(self, source: Source, repository: str, digest: str, tag: str | None) -> ManifestRecord:
        async def fetch() -> ManifestRecord:
            upstream, remote = self._upstream(source, repository)
            try:
                got = await self._in_time(upstream.get_manifest(remote, digest, self.reg.config.max_manifest_bytes))
            except UpstreamNotFound:
                raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": digest}) from None
            except UpstreamError as e:
                raise _unavailable(source, e) from None
            record, refs = parse_manifest(got.content, got.media_type, Digest.parse(got.digest))
            guard = await self.protection.guard(repository) if tag is not None and self.protection else None
            try:
                await self.reg.meta.put_manifest(repository, record, refs, tag, guard, cached=True)
            except Protected:
                # A protection policy holds the cached tag where it is: the cached artifact stays.
                await self.reg.meta.put_manifest(repository, record, refs, None, cached=True)
                held = await self.reg.meta.get_tagged_manifest(repository, tag or "")
                return held or record
            return record

        return await self._manifests.run((repository, f"{digest} {tag}"), fetch)

    # -- blobs --------------------------------------------------------------------------------
    async def blob_size(self, source: Source, repository: str, digest: Digest) -> int:
        if await self.reg.meta.blob_size(repository, str(digest)) is not None:
            return await self.blobs.size(repository, digest)
        fetch = await self._follow(source, repository, digest)
        assert fetch.size is not None
        return fetch.size

    async def open_blob(self, source: Source, repository: str, digest: Digest) -> OpenBlob | CachingBlob:
        if await self.reg.meta.blob_size(repository, str(digest)) is not None:
            return await self.blobs.open(repository, digest)
        fetch = await self._follow(source, repository, digest)
        if not self.reg.storage.local:
            # An object store shows an upload's bytes only once it is complete: the client waits for the
            # blob to be stored (within cache_deadline_seconds), then gets it from there.
            while not fetch.committed and fetch.error is None:
                await fetch.changed()
            if fetch.error is not None:
                raise fetch.error
        if fetch.committed:
            return await self.blobs.open(repository, digest)
        reader = await trio.to_thread.run_sync(self.reg.storage.open_read, upload_key(fetch.upload_id),
                                               limiter=self.reg.disk)
        if reader is None:  # committed meanwhile: its upload file is gone, the blob is in place
            return await self.blobs.open(repository, digest)
        return CachingBlob(fetch, reader, self.blobs.downloads)

    async def _follow(self, source: Source, repository: str, digest: Digest) -> _Fetch:
        """The fetch of `digest` into `repository` (started if none runs), once its size is known."""
        key = (repository, str(digest))
        fetch = self._fetches.get(key)
        if fetch is None:
            if self._nursery is None:
                raise RegistryError("UNAVAILABLE", "the image cache is not running")
            fetch = self._fetches[key] = _Fetch(repository, digest)
            self._nursery.start_soon(self._fetch_blob, fetch, source)
        while fetch.size is None and fetch.error is None:
            await fetch.changed()
        if fetch.error is not None:  # nothing sent yet: the client gets the error itself
            raise fetch.error
        return fetch

    async def _fetch_blob(self, fetch: _Fetch, source: Source) -> None:
        key = (fetch.repository, str(fetch.digest))
        deadline = self.reg.config.cache_deadline_seconds
        try:
            with trio.move_on_after(deadline) as scope:
                if not await self._download(fetch, source) and not await self._watch(fetch):
                    raise RegistryError("UNAVAILABLE", f"the fetch of {fetch.digest} by another worker stopped: "
                                        "pull again to continue where it stopped")
            if scope.cancelled_caught:
                raise RegistryError("UNAVAILABLE", f"caching {fetch.digest} took longer than {deadline:g} s: "
                                    "pull again to continue where it stopped")
        except UpstreamNotFound:
            fetch.advance(error=RegistryError("BLOB_UNKNOWN", "the blob is not at the source registry",
                                              detail={"digest": str(fetch.digest)}))
        except UpstreamError as e:
            fetch.advance(error=_unavailable(source, e))
        except RegistryError as e:
            fetch.advance(error=e)
        except Exception:
            log.exception("image cache %s: fetching %s failed", source.name, fetch.digest)
            fetch.advance(error=RegistryError("UNAVAILABLE", "caching the blob failed"))
        finally:
            del self._fetches[key]
            if not fetch.over:
                fetch.advance(error=RegistryError("UNAVAILABLE", "caching the blob was stopped"))
            if fetch.error is not None:
                log.warning("image cache %s: %s %s not cached: %s", source.name, fetch.repository, fetch.digest,
                            fetch.error.message)

    async def _watch(self, fetch: _Fetch) -> bool:
        """Follow a fetch that another process (worker or node) runs: its size from the metadata store, its
        bytes from its upload file as it grows. True once it is committed; False if it stopped short."""
        meta, storage = self.reg.meta, self.reg.storage
        while True:
            if (stored := await meta.blob_size(fetch.repository, str(fetch.digest))) is not None:
                fetch.advance(committed=True, size=stored, written=stored)
                return True
            found = await meta.cache_fetch(fetch.repository, str(fetch.digest))
            if found is None:
                return False  # ended without a blob: the other process found it corrupt, or it expired
            upload, size = found
            key = upload_key(upload.id)
            if size is not None and fetch.size is None:
                fetch.advance(upload_id=upload.id, size=size)
            if fetch.size is not None:
                on_disk = await trio.to_thread.run_sync(storage.stat, key, limiter=self.reg.disk)
                written = min(on_disk or 0, fetch.size)
                if written > fetch.written:
                    fetch.advance(written=written)
            writing = (await trio.to_thread.run_sync(storage.writing, key, limiter=self.reg.disk) if storage.local
                       else await meta.upload_leased(upload.id))
            if not writing:
                # Nobody writes it any more: committed a moment ago, or stopped short.
                if await meta.blob_size(fetch.repository, str(fetch.digest)) is None:
                    return False
                continue
            await trio.sleep(WATCH_INTERVAL)

    async def _download(self, fetch: _Fetch, source: Source) -> bool:
        """Fetch the blob from the source, continuing from kept bytes; False (and nothing done) if
        another process is fetching it."""
        meta, storage = self.reg.meta, self.reg.storage
        found = await meta.cache_fetch(fetch.repository, str(fetch.digest))
        if found is None:  # claim the fetch (one row per repository and digest), unless another process just did
            upload_id = str(uuid.uuid4())
            if not await meta.create_upload(upload_id, fetch.repository, hashing.sha256().state(), str(fetch.digest)):
                found = await meta.cache_fetch(fetch.repository, str(fetch.digest))
                if found is None:
                    raise RegistryError("UNAVAILABLE", "the blob's fetch changed hands: pull again")
        kept = None if found is None else found[0]
        if kept is not None:
            upload_id = kept.id
        if storage.local:
            return await self._write(fetch, source, upload_id, kept)  # the upload file's lock guards it
        # An object store has no locks: the fetch holds the upload row's lease, as a PATCH does.
        owner = uuid.uuid4().hex
        seconds = self.reg.config.upload_lease_seconds
        if not await meta.take_upload_lease(upload_id, owner, seconds):
            return False
        try:
            again = await meta.cache_fetch(fetch.repository, str(fetch.digest))  # settled now that we hold it
            if again is not None and again[0].id == upload_id:
                kept = again[0]
            with collapse_groups():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.uploads.renew_lease, upload_id, owner, seconds)
                    try:
                        return await self._write(fetch, source, upload_id, kept)
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await meta.release_upload_lease(upload_id, owner)

    async def _write(self, fetch: _Fetch, source: Source, upload_id: str, kept: Upload | None) -> bool:
        """The claimed fetch's bytes from the source into its upload, then the blob; False if another
        process has the upload open."""
        meta, storage, disk = self.reg.meta, self.reg.storage, self.reg.disk
        if kept is None:
            size, state, stored_state = 0, hashing.sha256().state(), ""
        else:
            upload_id, size, state, stored_state = kept.id, kept.size, kept.hash_state, kept.storage_state
        try:
            sink = await trio.to_thread.run_sync(storage.open_upload, upload_key(upload_id), stored_state,
                                                 limiter=disk)
        except UploadBusy:
            return False
        try:
            if (stored := await meta.blob_size(fetch.repository, str(fetch.digest))) is not None:
                # Another process committed it between our first look and our claim: nothing to fetch.
                await self.uploads.cancel(fetch.repository, upload_id, sink=sink)
                fetch.advance(committed=True, size=stored, written=stored)
                return True
            if sink.size() != size:  # bytes past the recorded state were never acknowledged
                size = size if sink.size() > size else 0
                state = state if size else hashing.sha256().state()
                await trio.to_thread.run_sync(sink.truncate, size, limiter=disk)
            upstream, remote = self._upstream(source, fetch.repository)
            async with upstream.open_blob(remote, str(fetch.digest), size) as body:
                if body.start != size:  # the source ignored the Range: start over
                    size, state = 0, hashing.sha256().state()
                    await trio.to_thread.run_sync(sink.truncate, 0, limiter=disk)
                hasher = hashing.from_state(state)
                await meta.set_cache_size(upload_id, body.size)  # for other processes to follow (`_watch`)
                fetch.advance(upload_id=upload_id, written=size, size=body.size)
                pump = Pump(self.reg, sink, hasher, progress=lambda n: fetch.advance(written=size + n))
                try:
                    await pump.run(body.chunks, body.size - size)
                finally:
                    with trio.CancelScope(shield=True):
                        # What arrived stays, durably, with its hash state: the next pull continues.
                        await trio.to_thread.run_sync(sink.sync, limiter=disk)
                        await meta.advance_upload(upload_id, kept.size if kept else 0, size + pump.written,
                                                  hasher.state(), sink.state())
            total = size + pump.written
            if total != body.size:
                raise RegistryError("UNAVAILABLE", f"the source sent {total} of {body.size} bytes: pull again "
                                    "to continue")
            ok = await trio.to_thread.run_sync(self.uploads.finalize, sink, hasher, fetch.repository, upload_id,
                                               fetch.digest, total, upload_key(upload_id), limiter=disk)
            if not ok:
                await self.uploads.cancel(fetch.repository, upload_id, sink=sink)
                raise RegistryError("DIGEST_INVALID", "the source's bytes do not match the digest: nothing "
                                    "was cached", detail={"digest": str(fetch.digest)})
            fetch.advance(committed=True)
            return True
        except UpstreamError:
            if kept is None and fetch.size is None:
                # The source had nothing to give (404, refused): no session kept, and no repository
                # left behind that only this pull made.
                with trio.CancelScope(shield=True):
                    await self.uploads.cancel(fetch.repository, upload_id, sink=sink)
                    await meta.drop_empty_repository(fetch.repository)
            raise
        finally:
            sink.close()


__all__ = ["CachingBlob", "FetchBroken", "PullThrough"]
