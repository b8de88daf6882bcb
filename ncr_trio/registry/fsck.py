"""The scrub (`ncr-trio fsck`, and the scheduled "fsck" job): every stored blob is read again and
re-hashed with the native hasher; one whose file is missing, has another size than recorded, or whose
bytes no longer hash to its digest is reported, and with `repair` moved to
`quarantine/<algorithm>/<hex>` under the storage root.

Blobs come from the metadata store a page at a time, in digest order. Each is read in 1 MiB chunks by
a worker thread under the disk limiter, 64 MiB per thread hop: the Trio thread never hashes or waits on
the disk, a scrub holds one chunk in memory whatever the blob's size, progress is told between hops,
and a cancelled scrub (shutdown) stops at the next one.

Quarantine runs under the blob's digest lock, which finalising an upload and GC's removal take too, and
only after hashing the blob again there: since it was first read, a push may have replaced a damaged
file with sound bytes, or GC removed it. The blob's row and links stay; with its file gone, GET and HEAD
answer BLOB_UNKNOWN (registry/blobs.py), so clients push it again, and the upload, finding no file to
deduplicate against, publishes the new bytes. Quarantined files are kept for an administrator to look
at: nothing deletes them.

Before any scrub, a pull already refuses a blob whose size on storage is not its recorded size
(registry/blobs.py); one whose bytes changed but not their number is served until the scrub finds it,
and the client, which checks the digest of what it pulls, refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ncr_trio import hashing
from ncr_trio.registry.context import Registry
from ncr_trio.storage import BlobReader, blob_key, quarantine_key
from ncr_trio.types import Digest

CHUNK = 1 << 20  # bytes per read
SLICE = 64 << 20  # bytes per thread hop
PAGE = 500  # blob rows per metadata read


@dataclass
class FsckReport:
    repair: bool
    blobs: int = 0  # checked
    bytes: int = 0  # read and hashed
    damaged: dict[str, str] = field(default_factory=dict)  # digest -> what is wrong with it
    quarantined: list[str] = field(default_factory=list)

    def summary(self) -> str:
        checked = f"fsck: {self.blobs} blobs ({self.bytes} bytes) checked"
        if not self.damaged:
            return f"{checked}, no damage"
        return f"{checked}, {len(self.damaged)} damaged, {len(self.quarantined)} quarantined"


def _hash_range(reader: BlobReader, hasher: hashing.Hasher, start: int, end: int) -> int:
    """Hash bytes [start, end) of `reader` a chunk at a time (blocking); where it stopped (before `end`
    if the file ended first)."""
    pos = start
    while pos < end:
        data = reader.read(pos, min(CHUNK, end - pos))
        if not data:
            break
        hasher.update(data)
        pos += len(data)
    return pos


def _problem(digest: Digest, size: int, read: int, hasher: hashing.Hasher) -> str | None:
    if read != size:
        return f"{read} bytes on storage, {size} recorded"
    if hasher.hexdigest() != digest.hex:
        return f"its bytes hash to {digest.algorithm}:{hasher.hexdigest()}"
    return None


class Scrubber:
    def __init__(self, reg: Registry) -> None:
        self.reg = reg

    async def totals(self) -> tuple[int, int]:
        """How many blobs a scrub reads, and their bytes (for a progress bar)."""
        return await self.reg.meta.blob_totals()

    async def run(self, repair: bool = False, progress: Callable[[int], object] = lambda n: None) -> FsckReport:
        """Check every blob; `progress(n)` is told of each n bytes read."""
        report = FsckReport(repair)
        after = ""
        while page := await self.reg.meta.blobs_after(after, PAGE):
            for d, size in page:
                await self._check(Digest.parse(d), size, report, progress)
            after = page[-1][0]
        return report

    async def _check(self, digest: Digest, size: int, report: FsckReport, progress: Callable[[int], object]) -> None:
        reader = await trio.to_thread.run_sync(self.reg.storage.open_read, blob_key(digest), limiter=self.reg.disk)
        if reader is None:
            if not await trio.to_thread.run_sync(self.reg.meta.blob_known_sync, str(digest), limiter=self.reg.disk):
                return  # collected meanwhile
            report.blobs += 1
            report.damaged[str(digest)] = "missing from storage"
            return
        try:
            hasher = hashing.new(digest.algorithm)
            pos = 0
            while pos < reader.size:
                done = await trio.to_thread.run_sync(_hash_range, reader, hasher, pos, min(pos + SLICE, reader.size),
                                                     limiter=self.reg.disk)
                progress(done - pos)
                report.bytes += done - pos
                if done == pos:
                    break  # the file ended before its size said (cut meanwhile)
                pos = done
        finally:
            reader.close()
        report.blobs += 1
        problem = _problem(digest, size, pos, hasher)
        if problem is None:
            return
        if report.repair:
            if not await trio.to_thread.run_sync(self._quarantine, digest, size, limiter=self.reg.disk):
                return  # sound again (pushed anew) or gone (collected) by the time it was locked
            report.quarantined.append(str(digest))
        report.damaged[str(digest)] = problem

    def _quarantine(self, digest: Digest, size: int) -> bool:
        """Holding the blob's row locked (so no push re-publishes it meanwhile), hash the blob again
        and, if it is still damaged, move it aside."""
        key = blob_key(digest)

        def still_damaged_moved() -> bool:
            reader = self.reg.storage.open_read(key)
            if reader is None:
                return False
            try:
                hasher = hashing.new(digest.algorithm)
                read = _hash_range(reader, hasher, 0, reader.size)
            finally:
                reader.close()
            if _problem(digest, size, read, hasher) is None:
                return False
            return self.reg.storage.move(key, quarantine_key(digest))

        return self.reg.meta.with_blob_locked_sync(str(digest), still_damaged_moved)


__all__ = ["FsckReport", "Scrubber"]
