"""The copy of one artifact between two registries, whichever way it goes.

A copy reads from one `Side` and writes to the other. `LocalSide` is this registry, through the same
use cases a client's pull and push go through (registry/blobs.py, uploads.py, manifests.py: a pull
policy's writes raise the same events and meet the same protection rules as a push would);
`RemoteSide` is another registry's /v2 API (cache/upstream.py's `Upstream`). A push policy copies
Local -> Remote, a pull policy Remote -> Local.

Per artifact (`Copier.artifact`): the target's tag is asked first (HEAD): the same digest is not copied
again ("already present"; its referrers and cosign tags the target lacks still are: a signature made
after the copy), another digest is left alone unless the policy overrides. Then, so that the
target never shows a manifest whose blobs it lacks: an index's children first, each image's blobs, the
manifests by digest, and the tag last of all; then the artifact's referrers (the OCI referrers API and
cosign's `sha256-<hex>.sig` style tags), after their subject. Per blob: the target is asked first
(HEAD); a blob the target holds in another repository (one a copy put it in, this run or an earlier
one, or where a copy of the policy would have put it: for a push, the target's name of a local
repository holding it; for a pull, any local repository holding it) is mounted; else it is streamed,
never whole in memory, and resumed from the target's offset when a connection drops. Nothing is ever
deleted at the target.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import trio

from ncr_trio.cache.upstream import Manifest, Upstream, UpstreamError, UpstreamNotFound
from ncr_trio.concurrency import collapse_groups
from ncr_trio.errors import RegistryError
from ncr_trio.registry.blobs import Blobs
from ncr_trio.registry.context import Registry
from ncr_trio.registry.manifests import Manifests
from ncr_trio.registry.uploads import Uploads
from ncr_trio.types import Digest, MediaType, load_json

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
MAX_DEPTH = 4  # an index of indexes of ... manifests
LOCAL_ATTEMPTS = 6  # a pull's blob: reads from the remote resumed at most this often
LOCAL_CHUNK = 16 << 20  # a pull's blob is appended (and acknowledged) this much at a time
PLACED_MAX = 100_000  # blobs remembered with the target repositories a copy put them in
MOUNTS_TRIED = 4  # repositories a blob's mount is tried from before it is sent


class CopyError(Exception):
    """An artifact that could not be copied; the message is the task's error text."""


@dataclass
class BlobWrite:
    attempts: int = 1
    sent: int = 0


class Side(Protocol):
    """A registry as a copy sees it: what it reads from a source and writes to a target."""

    name: str

    async def repositories(self, namespace: str) -> list[str]: ...

    async def tags(self, repository: str) -> list[str]: ...

    async def manifest(self, repository: str, reference: str) -> Manifest | None: ...

    async def manifest_digest(self, repository: str, reference: str) -> str | None: ...

    async def referrers(self, repository: str, digest: str) -> list[str]: ...

    def read_blob(self, repository: str, digest: str, start: int) -> AsyncIterator[bytes]: ...

    async def blob_size(self, repository: str, digest: str) -> int | None: ...

    async def mount(self, repository: str, digest: str, from_repository: str) -> bool: ...

    async def holders(self, digest: str) -> list[str]:
        """Repositories of this side known to hold the blob (none when it cannot be asked)."""
        ...

    async def write_blob(self, repository: str, digest: str, size: int,
                         chunks_from: Callable[[int], AsyncIterator[bytes]]) -> BlobWrite: ...

    async def put_manifest(self, repository: str, reference: str, media_type: str, content: bytes) -> str: ...


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


class LocalSide:
    """This registry, through its use cases (as a client's pull and push)."""

    name = "local"

    def __init__(self, reg: Registry, blobs: Blobs, uploads: Uploads, manifests: Manifests) -> None:
        self.reg, self.blobs, self.uploads, self.manifests = reg, blobs, uploads, manifests

    async def repositories(self, namespace: str) -> list[str]:
        found: list[str] = []
        last = f"{namespace}/"
        while True:
            page = await self.reg.meta.list_repositories(1000, last)
            mine = [r for r in page if r.startswith(f"{namespace}/")]
            found += mine
            if len(page) < 1000 or len(mine) < len(page):
                return found
            last = page[-1]

    async def tags(self, repository: str) -> list[str]:
        try:
            return await self.manifests.tags(repository, None, None)
        except RegistryError:
            return []

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        try:
            m = await self.manifests.get(repository, reference)
        except RegistryError:
            return None
        return Manifest(m.digest, m.media_type, m.content)

    async def manifest_digest(self, repository: str, reference: str) -> str | None:
        m = await self.manifest(repository, reference)
        return None if m is None else m.digest

    async def referrers(self, repository: str, digest: str) -> list[str]:
        index = await self.manifests.referrers(repository, Digest.parse(digest), None)
        return [d["digest"] for d in index["manifests"]]

    async def read_blob(self, repository: str, digest: str, start: int) -> AsyncGenerator[bytes, None]:
        blob = await self.blobs.open(repository, Digest.parse(digest))
        if start >= blob.size:
            blob.close()
            return
        async with aclosing(blob.stream(start, blob.size - 1, self.reg.disk)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                yield chunk  # type: ignore[misc]  # bytes: spans are asked for only by a socket's sender

    async def blob_size(self, repository: str, digest: str) -> int | None:
        try:
            return await self.blobs.size(repository, Digest.parse(digest))
        except RegistryError:
            return None

    async def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        return await self.uploads.mount(repository, Digest.parse(digest), from_repository) is not None

    async def holders(self, digest: str) -> list[str]:
        return await self.reg.meta.blob_repositories(digest, MOUNTS_TRIED)

    async def write_blob(self, repository: str, digest: str, size: int,
                         chunks_from: Callable[[int], AsyncIterator[bytes]]) -> BlobWrite:
        """An upload session fed from the source in appends of LOCAL_CHUNK (each acknowledged on its
        own, as a client's PATCH is); when the source's stream breaks, it resumes from what the session
        acknowledged (its size): a break costs at most one chunk again."""
        session = await self.uploads.start(repository)
        report = BlobWrite(attempts=0)
        offset = 0
        try:
            while True:
                report.attempts += 1
                source = chunks_from(offset)
                pieces = _Pieces(source, report)
                try:
                    while size - offset > 0:
                        n = min(LOCAL_CHUNK, size - offset)
                        await self.uploads.append(repository, session.id, pieces.take(n), (offset, offset + n - 1), n)
                        offset += n
                    async for extra in source:  # to its end, which lets the remote's stream end cleanly
                        if extra:
                            raise CopyError(f"{digest}: the source sent more than its {size} bytes")
                    await self.uploads.finish(repository, session.id, Digest.parse(digest), _empty(), None, None)
                    return report
                except UpstreamError as e:
                    if report.attempts >= LOCAL_ATTEMPTS or not (e.status is None or e.status >= 500):
                        raise
                    await trio.sleep(0.5 * 2 ** (report.attempts - 1))
                    offset = (await self.uploads.status(repository, session.id)).size
                finally:
                    aclose = getattr(source, "aclose", None)
                    if aclose is not None:
                        await aclose()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.uploads.cancel(repository, session.id)
            raise

    async def put_manifest(self, repository: str, reference: str, media_type: str, content: bytes) -> str:
        return str((await self.manifests.put(repository, reference, content, media_type)).digest)


class _Pieces:
    """A blob's bytes from an iterator of pieces, taken `n` at a time (a piece straddling the end of a
    chunk is split, its rest kept for the next), counted as they go."""

    def __init__(self, source: AsyncIterator[bytes], report: BlobWrite) -> None:
        self._source, self._report = source, report
        self._left = b""

    async def take(self, n: int) -> AsyncGenerator[bytes, None]:
        while n > 0:
            if not self._left:
                try:
                    self._left = await anext(self._source)
                except StopAsyncIteration:
                    raise CopyError("the blob's bytes ended before its size") from None
                continue
            piece, self._left = (self._left, b"") if len(self._left) <= n else (self._left[:n], self._left[n:])
            n -= len(piece)
            self._report.sent += len(piece)
            yield piece


class RemoteSide:
    """Another registry's /v2 API."""

    def __init__(self, upstream: Upstream, max_manifest_bytes: int) -> None:
        self.upstream, self.max_manifest = upstream, max_manifest_bytes
        self.name = upstream.source.name
        self._sessions: dict[tuple[str, str], httpx.URL] = {}  # sessions a refused mount opened, to reuse

    async def repositories(self, namespace: str) -> list[str]:
        if self.upstream.source.type == "ncr":  # another ncr-trio: its catalog wants read on every registry
            return await self.upstream.registry_images(namespace)
        return [r for r in await self.upstream.repositories() if r.startswith(f"{namespace}/")]

    async def tags(self, repository: str) -> list[str]:
        return await self.upstream.tags(repository)

    async def manifest(self, repository: str, reference: str) -> Manifest | None:
        try:
            return await self.upstream.get_manifest(repository, reference, self.max_manifest)
        except UpstreamNotFound:
            return None

    async def manifest_digest(self, repository: str, reference: str) -> str | None:
        try:
            return (await self.upstream.head_manifest(repository, reference)).digest
        except UpstreamNotFound:
            return None

    async def referrers(self, repository: str, digest: str) -> list[str]:
        return [str(d["digest"]) for d in await self.upstream.referrers(repository, digest)]

    async def read_blob(self, repository: str, digest: str, start: int) -> AsyncGenerator[bytes, None]:
        async with self.upstream.open_blob(repository, digest, start) as body:
            skip = start - body.start  # the source ignored the Range: drop what precedes `start`
            async for chunk in body.chunks:
                if skip > 0:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                yield chunk

    async def blob_size(self, repository: str, digest: str) -> int | None:
        return await self.upstream.blob_exists(repository, digest)

    async def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        mount = await self.upstream.mount_blob(repository, digest, from_repository)
        if not mount.mounted and mount.location is not None:
            self._sessions[repository, digest] = mount.location
        return mount.mounted

    async def holders(self, digest: str) -> list[str]:
        return []  # the distribution API cannot tell

    async def write_blob(self, repository: str, digest: str, size: int,
                         chunks_from: Callable[[int], AsyncIterator[bytes]]) -> BlobWrite:
        location = self._sessions.pop((repository, digest), None)
        report = await self.upstream.push_blob(repository, digest, size, chunks_from, location=location)
        return BlobWrite(report.attempts, report.sent)

    async def put_manifest(self, repository: str, reference: str, media_type: str, content: bytes) -> str:
        return await self.upstream.put_manifest(repository, reference, media_type, content)


class Placed:
    """Which target repositories a copy put each blob in (this run or an earlier one): where a blob
    can be mounted from rather than sent again. Bounded: the least recently used are forgotten."""

    def __init__(self, limit: int = PLACED_MAX) -> None:
        self._limit = limit
        self._where: OrderedDict[str, list[str]] = OrderedDict()

    def add(self, digest: str, repository: str) -> None:
        where = self._where.pop(digest, [])
        if repository not in where:
            where = [repository, *where][:8]
        self._where[digest] = where
        while len(self._where) > self._limit:
            self._where.popitem(last=False)

    def candidates(self, digest: str, besides: str) -> list[str]:
        return [r for r in self._where.get(digest, ()) if r != besides]


@dataclass
class Outcome:
    """What became of one artifact: the task's status, reason, digest, attempts and bytes."""

    status: str = "Succeeded"
    digest: str = ""
    reason: str = ""
    attempts: int = 1
    bytes: int = 0
    mounted: int = 0
    pushed: list[str] = field(default_factory=list)  # manifests put, in order (digests, then the tag)


class Copier:
    """Copies artifacts from `source` to `target`.

    `blob_slots`: blobs in flight for this copier (a run); `remote_slots`: shared by every run using
    the same remote endpoint; `meter(n)`: awaited for every n bytes read from the source (the run's
    bandwidth limit, and its stop check between chunks); `rename(repository)`: a source repository's
    name at the target (None outside the policy's namespace), where an earlier copy of the policy put
    what that repository holds. `placed` is one process's memory; the source's and the target's own
    records (`Side.holders`) are every worker's and survive a restart, so a blob a copy by another
    worker (or before a restart) placed is still mounted rather than sent again."""

    def __init__(self, source: Side, target: Side, placed: Placed, *, override: bool,
                 blob_slots: trio.CapacityLimiter, remote_slots: trio.CapacityLimiter,
                 meter: Callable[[int], Awaitable[None]] | None = None,
                 rename: Callable[[str], str | None] | None = None) -> None:
        self.source, self.target, self.placed, self.override = source, target, placed, override
        self.blob_slots, self.remote_slots, self.meter = blob_slots, remote_slots, meter
        self.rename = rename

    async def source_digest(self, repository: str, tag: str) -> str:
        """The artifact's digest at the source ("" when it cannot be told: the copy will say why)."""
        try:
            return await self.source.manifest_digest(repository, tag) or ""
        except (UpstreamError, RegistryError, OSError):
            return ""

    async def artifact(self, src_repo: str, tag: str, dst_repo: str, *, source_tags: list[str] | None = None,
                       expect: str | None = None) -> Outcome:
        """Copy `src_repo:tag` to `dst_repo:tag` (CopyError: it could not be; UpstreamError and
        RegistryError are translated here). `source_tags`: the source repository's tags, to find
        cosign's signature tags of the artifact among them."""
        out = Outcome()
        try:
            m = await self.source.manifest(src_repo, tag)
            if m is None:
                out.status, out.reason = "Skipped", f"{tag} is no longer at the source"
                return out
            out.digest = m.digest
            there = await self.target.manifest_digest(dst_repo, tag)
            if there == m.digest:
                # Its signatures may be newer than the copy (cosign signs after the push an event
                # policy copied at once): those the target lacks still travel.
                await self._referrers(src_repo, dst_repo, m.digest, out, source_tags)
                out.status, out.reason = "Skipped", "already present" + ("; its new signatures and referrers copied"
                                                                          if out.pushed else "")
                return out
            if there is not None and not self.override:
                out.status, out.reason = "Skipped", f"{tag} differs at the target; override is off"
                return out
            await self._tree(src_repo, dst_repo, m, out, 0)
            await self.target.put_manifest(dst_repo, tag, m.media_type, m.content)
            out.pushed.append(tag)
            await self._referrers(src_repo, dst_repo, m.digest, out, source_tags)
            return out
        except (UpstreamError, RegistryError, OSError, ValueError) as e:
            raise CopyError(_text(e)) from None

    async def _tree(self, src: str, dst: str, m: Manifest, out: Outcome, depth: int) -> None:
        """What a manifest refers to, so that it can be put: an index's children (each put by digest),
        an image's blobs."""
        if depth > MAX_DEPTH:
            raise CopyError(f"{m.digest}: indexes nested more than {MAX_DEPTH} deep")
        doc = load_json(m.content)
        if not isinstance(doc, dict):
            raise CopyError(f"{m.digest}: not a manifest")
        children = doc.get("manifests")
        if isinstance(children, list):
            for d in children:
                digest = d.get("digest") if isinstance(d, dict) else None
                if isinstance(digest, str):
                    await self._by_digest(src, dst, digest, out, depth + 1)
            return
        blobs: list[tuple[str, int]] = []
        for d in [doc.get("config"), *(doc.get("layers") or [])]:
            if isinstance(d, dict) and isinstance(d.get("digest"), str) and isinstance(d.get("size"), int):
                if d.get("mediaType") in MediaType.MANIFESTS:
                    continue
                blobs.append((d["digest"], d["size"]))
        with collapse_groups():
            async with trio.open_nursery() as nursery:
                for digest, size in dict(blobs).items():
                    nursery.start_soon(self._blob, src, dst, digest, size, out)

    async def _by_digest(self, src: str, dst: str, digest: str, out: Outcome, depth: int) -> None:
        """A manifest copied by digest (an index's child, a referrer), unless the target has it."""
        if await self.target.manifest_digest(dst, digest) == digest:
            return
        child = await self.source.manifest(src, digest)
        if child is None:
            raise CopyError(f"{src}@{digest} is not at the source")
        await self._tree(src, dst, child, out, depth)
        await self.target.put_manifest(dst, digest, child.media_type, child.content)
        out.pushed.append(digest)

    async def _blob(self, src: str, dst: str, digest: str, size: int, out: Outcome) -> None:
        async with self.blob_slots, self.remote_slots:
            if await self.target.blob_size(dst, digest) is not None:
                self.placed.add(digest, dst)
                return
            for other in await self._mount_sources(src, dst, digest):
                if await self.target.mount(dst, digest, other):
                    out.mounted += 1
                    self.placed.add(digest, dst)
                    return
            written = await self.target.write_blob(dst, digest, size, lambda offset: self._read(src, digest, offset))
            out.attempts += written.attempts - 1
            out.bytes += written.sent
            self.placed.add(digest, dst)

    async def _mount_sources(self, src: str, dst: str, digest: str) -> list[str]:
        """Target repositories to mount a blob from, the likeliest first: where a copy put it (this
        process remembers), where the target says it is, where a copy of the source's holders went."""
        found = [*self.placed.candidates(digest, dst), *await self.target.holders(digest)]
        if self.rename is not None:
            found += [r for r in map(self.rename, await self.source.holders(digest)) if r is not None]
        return [r for r in dict.fromkeys(found) if r != dst][:MOUNTS_TRIED]

    async def _read(self, src: str, digest: str, offset: int) -> AsyncGenerator[bytes, None]:
        async with aclosing(self.source.read_blob(src, digest, offset)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                if self.meter is not None:
                    await self.meter(len(chunk))
                yield chunk

    async def _referrers(self, src: str, dst: str, digest: str, out: Outcome, source_tags: list[str] | None) -> None:
        """The subject's referrers (OCI referrers API) by digest, then cosign's tags for it."""
        for referrer in await self.source.referrers(src, digest):
            await self._by_digest(src, dst, referrer, out, 1)
        for tag in cosign_tags(digest, source_tags or []):
            m = await self.source.manifest(src, tag)
            if m is None or await self.target.manifest_digest(dst, tag) == m.digest:
                continue
            await self._tree(src, dst, m, out, 1)
            await self.target.put_manifest(dst, tag, m.media_type, m.content)
            out.pushed.append(tag)


def is_cosign_tag(tag: str) -> bool:
    """cosign's tag scheme for a subject's signature, attestation, SBOM: `sha256-<hex>.sig`."""
    head, dot, suffix = tag.rpartition(".")
    algorithm, dash, hexpart = head.partition("-")
    return bool(dot and dash and f".{suffix}" in COSIGN_SUFFIXES and algorithm == "sha256" and len(hexpart) == 64)


def cosign_tags(digest: str, tags: list[str]) -> list[str]:
    """The cosign tags of `digest` among `tags`."""
    base = digest.replace(":", "-", 1)
    return [t for t in tags if t in {base + s for s in COSIGN_SUFFIXES}]


def _text(e: BaseException) -> str:
    if isinstance(e, RegistryError):
        return f"{e.code}: {e.message}"[:500]
    return str(e)[:500] or type(e).__name__


__all__ = ["BlobWrite", "Copier", "CopyError", "LocalSide", "Manifest", "Outcome", "Placed", "RemoteSide", "Side",
           "cosign_tags", "is_cosign_tag"]
