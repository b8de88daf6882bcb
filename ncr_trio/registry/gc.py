"""Online garbage collection: runs while pushes continue, no read-only mode.

One pass:
1. upload sessions idle past their TTL, and upload files (or S3 multipart uploads) no session owns,
   are removed;
2. with `gc_delete_untagged`, manifests no tag, index or live subject keeps are deleted;
3. blob links that no manifest of their repository references are dropped;
4. blobs no repository links and no manifest references are deleted: row and file together.

Safety against concurrent pushes, on this node or any other sharing the database and the storage:
nothing younger than `gc_grace_seconds` is touched; step 3 locks the link row before re-checking
references, which a manifest PUT holds locked while it inserts its own; step 4 removes a blob's
file inside the transaction that holds its row locked and deletes it, and a push records a blob
only in a transaction that holds the same row locked and finds the file there (`Uploads._store`),
so a push either sees the file gone and stores its own bytes, or makes GC find the blob in use.
Files without a row are removed the same way, under a placeholder row (`drop_orphan_sync`).
Links are made only with the blob's row locked and its file found (a push, a mount), and GC removes
only the files of blobs nothing links: so a manifest PUT, which needs (and locks) its blobs' links,
never references a blob GC is removing. Nothing rests on a lock file on one machine.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import trio

from ncr_trio.registry.context import Registry
from ncr_trio.storage import blob_key, upload_key
from ncr_trio.storage.keys import BLOBS_PREFIX, UPLOADS_PREFIX
from ncr_trio.types import Digest


@dataclass
class GcReport:
    dry_run: bool
    uploads: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    id: int | None = None  # the run's row in gc_runs
    started_at: float | None = None
    finished_at: float | None = None

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (f"gc {verb}: {len(self.blobs)} blobs ({self.bytes_freed} bytes), {len(self.manifests)} manifests, "
                f"{len(self.links)} blob links, {len(self.uploads)} uploads")


class GarbageCollector:
    def __init__(self, reg: Registry) -> None:
        self.reg = reg

    async def run(self, dry_run: bool = False, now: float | None = None,
                  delete_untagged: bool | None = None) -> GcReport:
        now = time.time() if now is None else now
        report = GcReport(dry_run)
        if delete_untagged is None:
            delete_untagged = self.reg.config.gc_delete_untagged
        cutoff = now - self.reg.config.gc_grace_seconds
        await self._uploads(report, now)
        if delete_untagged:
            for repository, digest in await self.reg.meta.untagged_manifests(cutoff):
                if dry_run or await self.reg.meta.delete_untagged_manifest(repository, digest, cutoff):
                    report.manifests.append(f"{repository}@{digest}")
        dropped: set[tuple[int, str]] = set()
        for repo_id, digest in await self.reg.meta.stale_links(cutoff):
            if dry_run or await self.reg.meta.drop_link(repo_id, digest, cutoff):
                dropped.add((repo_id, digest))
                report.links.append(f"{repo_id}:{digest}")
        for digest, size, linked_in in await self.reg.meta.unreferenced_blobs(cutoff):
            if any((repo_id, digest) not in dropped for repo_id in linked_in):
                continue  # still linked somewhere (in a dry run: would still be)
            if dry_run or await trio.to_thread.run_sync(self._drop_blob, digest, cutoff, limiter=self.reg.disk):
                report.blobs.append(digest)
                report.bytes_freed += size
        if not dry_run:
            await self._orphan_blob_files(report, cutoff)
        items = ([("blob", d) for d in report.blobs] + [("manifest", m) for m in report.manifests]
                 + [("upload", u) for u in report.uploads])
        report.id = await self.reg.meta.record_gc(now, dry_run, len(report.blobs), len(report.manifests),
                                                  len(report.uploads), report.bytes_freed, items)
        report.finished_at = time.time()
        report.started_at = now
        return report

    async def expire_uploads(self, now: float | None = None) -> GcReport:
        """Only step 1: cheap enough to run every few minutes."""
        now = time.time() if now is None else now
        report = GcReport(dry_run=False)
        await self._uploads(report, now)
        return report

    def _drop_blob(self, digest: str, cutoff: float) -> bool:
        key = blob_key(Digest.parse(digest))
        return self.reg.meta.drop_blob_sync(digest, cutoff, lambda: self.reg.storage.delete(key))

    async def _uploads(self, report: GcReport, now: float) -> None:
        config = self.reg.config
        cutoff = now - config.upload_ttl_seconds
        expired = await self.reg.meta.expired_uploads(cutoff, now - config.cache_partial_ttl_seconds)
        for upload_id in expired:
            report.uploads.append(upload_id)
            if not report.dry_run:
                await self.reg.meta.delete_upload(upload_id)
                await trio.to_thread.run_sync(self.reg.storage.delete, upload_key(upload_id))
        # Files no session row owns: crashed monolithic pushes, or a session whose row is gone; and what
        # a storage holds outside keys for such uploads (S3 multipart uploads), so none is left behind.
        # All in a thread: on an object store every listing and age is a request.
        live = await self.reg.meta.upload_ids()

        def orphans() -> list[str]:
            storage = self.reg.storage
            abandoned = set(storage.abandoned_uploads(cutoff))
            keys = sorted(set(storage.list(UPLOADS_PREFIX)) | abandoned)
            return [key for key in keys if key.rpartition("/")[2] not in live
                    and (key in abandoned or self._older_than(key, cutoff))]

        for key in await trio.to_thread.run_sync(orphans, limiter=self.reg.disk):
            report.uploads.append(key.rpartition("/")[2])
            if not report.dry_run:
                await trio.to_thread.run_sync(self.reg.storage.delete, key, limiter=self.reg.disk)

    def _older_than(self, key: str, cutoff: float) -> bool:
        modified = self.reg.storage.modified(key)
        return modified is not None and modified < cutoff

    async def _orphan_blob_files(self, report: GcReport, cutoff: float) -> None:
        """Blob files without a row (a crash between publish and commit), older than the grace, once
        their upload is gone too: until then a push may still be recording them."""

        def sweep() -> None:
            for key in list(self.reg.storage.list(BLOBS_PREFIX)):
                parts = key.split("/")
                if len(parts) != 4 or not self._older_than(key, cutoff) or self.reg.storage.publishing(key):
                    continue
                digest = f"{parts[1]}:{parts[3]}"
                size = self.reg.storage.stat(key) or 0
                if self.reg.meta.drop_orphan_sync(digest, functools.partial(self.reg.storage.delete, key)):
                    report.blobs.append(digest)
                    report.bytes_freed += size

        await trio.to_thread.run_sync(sweep, limiter=self.reg.disk)


__all__ = ["GarbageCollector", "GcReport"]
