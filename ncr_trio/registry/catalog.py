"""The management view of a registry: images -> artifacts -> tags, with search, tag creation and
deletion of images and artifacts, and when each artifact was last pulled.

Pull times are recorded without slowing pulls: `PullRecorder` keeps the latest time per artifact
in memory and writes them in one transaction every few seconds (a crash loses at most those
seconds of pull times, never a pull).
"""

from __future__ import annotations

import logging
import time

import trio

from ncr_trio import changes
from ncr_trio.errors import RegistryError
from ncr_trio.limits import MAX_PER_PAGE
from ncr_trio.meta.catalog import ArtifactSummary, CatalogQueries, ImageSummary, TagRow
from ncr_trio.meta.store import ACTOR, Guard, Protected
from ncr_trio.patterns import InvalidPattern, compile_pattern
from ncr_trio.registry.context import Registry
from ncr_trio.registry.protection import Protection, denied
from ncr_trio.types import Digest, validate_name, validate_tag

log = logging.getLogger("ncr_trio.registry")

MAX_OFFSET = 2**63 - 1  # what SQL's OFFSET takes (a 64-bit integer): any page past it is empty anyway


def page_bounds(page: int | None, per_page: int | None) -> tuple[int, int]:
    """(limit, offset) of a 1-based page; INVALID_REQUEST outside 1..500 per page."""
    page = 1 if page is None else page
    per_page = 50 if per_page is None else per_page
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise RegistryError("INVALID_REQUEST", f"page starts at 1 and per_page is 1 to {MAX_PER_PAGE}")
    return per_page, min((page - 1) * per_page, MAX_OFFSET)


def repository_of(registry: str, image: str) -> str:
    repository = f"{registry}/{image}"
    validate_name(repository)
    return repository


class PullRecorder:
    def __init__(self, reg: Registry, interval: float = 5.0) -> None:
        self.reg = reg
        self.interval = interval
        self._pulls: dict[tuple[str, str], float] = {}
        self._pullers: dict[tuple[str, str], str | None] = {}  # who pulled last (the event's actor)

    def record(self, repository: str, digest: str) -> None:
        if len(self._pulls) < 100_000:
            self._pulls[(repository, digest)] = time.time()
            self._pullers[(repository, digest)] = ACTOR.get()

    async def flush(self) -> None:
        pulls, self._pulls = self._pulls, {}
        pullers, self._pullers = self._pullers, {}
        try:
            with changes.unseen():  # no answer shows pull times (http/fastpath.py)
                await self.reg.meta.record_pulls(pulls, pullers)
        except Exception:
            for key, at in pulls.items():  # keep them for the next try
                self._pulls.setdefault(key, at)
                self._pullers.setdefault(key, pullers.get(key))
            raise

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.sleep(self.interval)
                try:
                    await self.flush()
                except Exception:
                    log.exception("recording pull times failed; will retry")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush()


class Catalog:
    def __init__(self, reg: Registry, protection: Protection | None = None) -> None:
        self.reg = reg
        self.queries = CatalogQueries(reg.meta.db)
        self.pulls = PullRecorder(reg)
        self.protection = protection

    async def _guard(self, registry: str) -> Guard | None:
        return await self.protection.registry_guard(registry) if self.protection else None

    async def images(self, registry: str, contains: str | None, page: int | None, per_page: int | None
                     ) -> tuple[list[ImageSummary], int]:
        limit, offset = page_bounds(page, per_page)
        await self.pulls.flush()  # this node's latest pulls are in the answer
        return await self.queries.images(registry, contains, limit, offset)

    async def image(self, registry: str, image: str) -> ImageSummary:
        await self.pulls.flush()
        found = await self.queries.image(repository_of(registry, image))
        if found is None:
            raise RegistryError("NAME_UNKNOWN", f"no image {image[:200]!r} in registry {registry!r}")
        return found

    async def delete_image(self, registry: str, image: str) -> int:
        await self.pulls.flush()
        try:
            removed = await self.reg.meta.delete_repository(repository_of(registry, image), await self._guard(registry))
        except Protected as e:
            raise denied(e) from None
        if removed is None:
            raise RegistryError("NAME_UNKNOWN", f"no image {image[:200]!r} in registry {registry!r}")
        return removed

    async def artifacts(self, registry: str, image: str, page: int | None, per_page: int | None
                        ) -> tuple[list[ArtifactSummary], int]:
        limit, offset = page_bounds(page, per_page)
        await self.pulls.flush()
        found = await self.queries.artifacts(repository_of(registry, image), limit, offset)
        if found is None:
            raise RegistryError("NAME_UNKNOWN", f"no image {image[:200]!r} in registry {registry!r}")
        return found

    async def artifact(self, registry: str, image: str, digest: str) -> ArtifactSummary:
        d = str(Digest.parse(digest))
        await self.pulls.flush()
        found = await self.queries.artifacts(repository_of(registry, image), 1, 0, d)
        if not found or not found[0]:
            raise RegistryError("MANIFEST_UNKNOWN", f"no artifact {d} in {registry}/{image[:200]}")
        return found[0][0]

    async def tags(self, registry: str, image: str | None, contains: str | None, pattern: str | None,
                   page: int | None, per_page: int | None) -> tuple[list[TagRow], int]:
        limit, offset = page_bounds(page, per_page)
        repository = None if image is None else repository_of(registry, image)
        rows = await self.queries.tags(repository, registry if repository is None else None, contains)
        if pattern:
            try:
                match = compile_pattern(pattern)
            except InvalidPattern as e:
                raise RegistryError("INVALID_REQUEST", str(e)) from None
            kept = []
            for i, r in enumerate(rows):
                if i % 64 == 63:
                    await trio.lowlevel.checkpoint()  # a costly pattern over many tags never holds the worker
                if match(r.name):
                    kept.append(r)
            rows = kept
        return rows[offset:offset + limit], len(rows)

    async def create_tag(self, registry: str, image: str, digest: str, tag: str) -> TagRow:
        repository = repository_of(registry, image)
        validate_tag(tag)
        d = str(Digest.parse(digest))
        outcome = await self.reg.meta.tag_artifact(repository, tag, d)
        if outcome == "unknown":
            raise RegistryError("MANIFEST_UNKNOWN", f"no artifact {d} in {repository}")
        if outcome == "exists":
            raise RegistryError("CONFLICT", f"tag {tag!r} already exists in {repository}: delete it first")
        return TagRow(tag, repository, d, time.time())

    async def delete_tag(self, registry: str, image: str, tag: str) -> None:
        repository = repository_of(registry, image)
        validate_tag(tag)
        try:
            found = await self.reg.meta.delete_tag(repository, tag, await self._guard(registry))
        except Protected as e:
            raise denied(e) from None
        if not found:
            raise RegistryError("MANIFEST_UNKNOWN", f"no tag {tag!r} in {repository}")

    async def delete_artifact(self, registry: str, image: str, digest: str) -> None:
        repository = repository_of(registry, image)
        d = str(Digest.parse(digest))
        try:
            found = await self.reg.meta.delete_manifest(repository, d, await self._guard(registry))
        except Protected as e:
            raise denied(e) from None
        if not found:
            raise RegistryError("MANIFEST_UNKNOWN", f"no artifact {d} in {repository}")


__all__ = ["MAX_PER_PAGE", "Catalog", "PullRecorder", "page_bounds", "repository_of"]
