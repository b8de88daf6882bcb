"""Vulnerability scanning in the management API (issue 13; scan/jobs.py is the use case).

An artifact's scan (`.../artifacts/{digest}/scan`, `/scan/stop`, `/vulnerabilities`) is handled by
http/api.py's ManagementAPI, beside the artifact's other operations (an image's name may hold
slashes: its more specific paths must come before `api.image` in one route list); it answers with the
models made here. This module's ScansAPI holds the rest: the periodic scan's schedule, the global
allowlist, a scan of everything now and the database's status (system administrators), and a
registry's scan settings (read to see them, manage to change them).
"""

from __future__ import annotations

import json
from typing import Any, cast

import msgspec
import trio

from ncr_trio.errors import RegistryError
from ncr_trio.http import models as m
from ncr_trio.http.asgi import Request
from ncr_trio.http.declare import bind, decode, given, handles
from ncr_trio.http.jsonapi import audit
from ncr_trio.http.operations import OPERATIONS
from ncr_trio.http.routes import Route
from ncr_trio.meta.catalog import ArtifactSummary
from ncr_trio.meta.scans import RegistryScanSettings, ScanRow
from ncr_trio.registry import RegistryService
from ncr_trio.scan.jobs import KEEP, Schedule
from ncr_trio.types import MediaType
from ncr_trio.types import iso_time as t

_IMAGE_CONFIGS = (None, MediaType.OCI_CONFIG, "application/vnd.docker.container.image.v1+json")


def scannable(a: ArtifactSummary) -> bool:
    """Whether the artifact is an image or an index the scanner reads (not a signature, a chart, ...)."""
    if a.subject is not None:
        return False
    return a.media_type in MediaType.INDEXES or (a.media_type in MediaType.IMAGES and a.artifact_type in _IMAGE_CONFIGS)


def totals(row: ScanRow | None) -> m.ScanTotals | None:
    if row is None or not row.db_version:
        return None
    return m.ScanTotals(total=row.total, fixable=row.fixable, severity=row.severity, db_version=row.db_version)


def status_model(digest: str, row: ScanRow | None) -> m.ScanStatus:
    if row is None:
        return m.ScanStatus(digest=digest, status="Not Scanned", trigger=None, requested_at=None, started_at=None,
                            ended_at=None, stop_requested=False, error="", vulnerabilities=None)
    return m.ScanStatus(digest=digest, status=row.status, trigger=row.trigger, requested_at=t(row.requested_at),
                        started_at=t(row.started_at), ended_at=t(row.ended_at), stop_requested=row.stop_requested,
                        error=row.error, vulnerabilities=totals(row))


def report_model(digest: str, row: ScanRow, report: dict[str, Any]) -> m.VulnerabilityReport:
    platforms = msgspec.convert(report.get("platforms", []), list[m.PlatformReport])
    return m.VulnerabilityReport(digest=digest, status=row.status, ended_at=t(row.ended_at),
                                 db_version=str(report.get("db_version", "")), total=int(report.get("total", 0)),
                                 fixable=int(report.get("fixable", 0)), severity=report.get("severity"),
                                 platforms=platforms)


def schedule_model(s: Schedule) -> m.ScanSchedule:
    return m.ScanSchedule(schedule=s.expression or "None", preset=s.preset, timezone="UTC",
                          next_run_at=t(s.next_run_at), last_run_at=t(s.last_run_at))


def settings_model(s: RegistryScanSettings) -> m.RegistryScanSettings:
    return m.RegistryScanSettings(registry=s.registry, scan_on_push=s.scan_on_push,
                                  prevent_pull_severity=s.prevent_pull_severity,
                                  allowlist=None if s.allowlist is None else list(s.allowlist))


async def artifact_statuses(service: RegistryService, repository: str, found: list[ArtifactSummary]
                            ) -> dict[str, tuple[str | None, m.ScanTotals | None]]:
    """Each artifact's vulnerability column: (status, figures); a status of None: not scannable."""
    rows = await service.scans.store.results(repository, [a.digest for a in found if scannable(a)])
    out: dict[str, tuple[str | None, m.ScanTotals | None]] = {}
    for a in found:
        row = rows.get(a.digest)
        out[a.digest] = (None, None) if not scannable(a) else (row.status if row else "Not Scanned", totals(row))
    return out


class ScansAPI:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return bind(self, OPERATIONS)

    @handles("api.scan.schedule")
    async def schedule(self, request: Request) -> m.ScanSchedule:
        return schedule_model(await self.s.scans.schedule())

    @handles("api.scan.schedule.set")
    async def set_schedule(self, request: Request) -> m.ScanSchedule:
        text = (await decode(request, m.ScheduleRequest)).schedule
        found = await self.s.scans.set_schedule(text)
        audit(self.s.access, request, "scan.schedule", detail=json.dumps({"schedule": found.expression or "None"}))
        return schedule_model(found)

    @handles("api.scan.allowlist")
    async def allowlist(self, request: Request) -> m.Allowlist:
        return m.Allowlist(ids=list(await self.s.scans.allowlist()))

    @handles("api.scan.allowlist.set")
    async def set_allowlist(self, request: Request) -> m.Allowlist:
        ids = await self.s.scans.set_allowlist((await decode(request, m.AllowlistRequest)).ids)
        audit(self.s.access, request, "scan.allowlist", detail=json.dumps({"ids": len(ids)}))
        return m.Allowlist(ids=list(ids))

    @handles("api.scan.all")
    async def scan_all(self, request: Request) -> m.ScansQueued:
        queued = await self.s.scans.scan_all("manual")
        audit(self.s.access, request, "scan.all", detail=json.dumps({"queued": queued}))
        return m.ScansQueued(queued=queued)

    @handles("api.vulndb")
    async def vulndb(self, request: Request) -> m.VulnDBStatus:
        summary = await trio.to_thread.run_sync(self.s.scans.vulndb_status)
        if summary is None:
            return m.VulnDBStatus(version=None, imported_at=None, records=0, newest_modified=None, sources=[])
        return m.VulnDBStatus(version=summary.version, imported_at=summary.imported_at, records=summary.records,
                              newest_modified=summary.newest_modified,
                              sources=[m.VulnDBSource(name=s.name, kind=s.kind, records=s.records, skipped=s.skipped,
                                                      withdrawn=s.withdrawn, newest_modified=s.newest_modified)
                                       for s in summary.sources])

    @handles("api.registry.scan")
    async def registry_settings(self, request: Request) -> m.RegistryScanSettings:
        registry = request.params["registry"]
        await self.s.namespaces.get(registry)
        return settings_model(await self.s.scans.registry_settings(registry))

    @handles("api.registry.scan.update")
    async def update_registry_settings(self, request: Request) -> m.RegistryScanSettings:
        registry = request.params["registry"]
        changes = given(await decode(request, m.RegistryScanChanges))
        await self.s.namespaces.get(registry)
        try:
            updated = await self.s.scans.update_registry_settings(
                registry, scan_on_push=changes.get("scan_on_push"),
                prevent_pull_severity=changes.get("prevent_pull_severity", KEEP),
                allowlist=cast(Any, changes.get("allowlist", KEEP)))
        except ValueError as e:
            raise RegistryError("INVALID_REQUEST", str(e)) from None
        audit(self.s.access, request, "registry.scan", registry=registry,
              detail=json.dumps({k: v for k, v in changes.items() if k != "allowlist"}))
        return settings_model(updated)


__all__ = ["ScansAPI", "artifact_statuses", "report_model", "scannable", "schedule_model", "settings_model",
           "status_model", "totals"]
