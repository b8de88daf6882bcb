"""Scan jobs (issue 13): what asks for a scan, what runs it, what its result decides.

Asking. A scan is a `Scanning` row in `scan_results` (meta/scans.py), written by
  - a manual request (`start`, the management API); refused while one is under way;
  - scan on push: `collect_pushes` turns the `artifact.pushed` events of registries with scan on push
    into rows, once across workers and nodes (a cursor row over `events`; `artifact.deleted` removes
    the result);
  - the periodic scan: the scheduler's "scan" job (ncr_trio/scheduler.py, leased: one node runs it)
    queues every image and index (`scan_all`).

Running. `serve` runs in the lifespan nursery of every worker process: it claims due rows (a lease
per scan, renewed while it runs; one process wins each) up to `scan_concurrency` at once, and runs
each in a worker thread (extract.py + scanner.py are synchronous), streaming the layers from blob
storage (never from the HTTP API: the scanner's own reads are never refused by pull prevention).
An index is scanned platform by platform; it shows its worst platform, and each platform's image
gets its own result too. A process that dies leaves a lease that ends; another process takes the
scan up again. A stop request (any process) sets a flag the runner polls: the scan's cancel scope is
cancelled and the worker thread stops at its next read; the row ends `Stopped`.

Deciding. `check_pull` (manifest GET/HEAD) refuses with 412 the pull of an artifact whose last
finished scan found a vulnerability at or above its registry's threshold that the allowlist does not
name; the registry's own allowlist, when it has one, replaces the global list. No result (not scanned
yet, as the first pull through a cache) and artifacts with a subject (signatures, attestations) are
never refused.

The vulnerability database lives at <data>/vulndb/osv.sqlite (vulndb.py; `ncr-trio vulndb import`).
"""

from __future__ import annotations

import enum
import io
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ncr_trio.auth.control import TTLCache
from ncr_trio.cron import InvalidSchedule, parse_schedule
from ncr_trio.errors import RegistryError
from ncr_trio.limits import SCAN_ID_RE as ID_RE
from ncr_trio.limits import SCAN_MAX_ALLOWLIST as MAX_ALLOWLIST
from ncr_trio.limits import SCAN_THRESHOLDS as THRESHOLDS
from ncr_trio.meta import ManifestRecord
from ncr_trio.meta.policies import PolicyStore
from ncr_trio.meta.scans import DONE, FAILED, SCANNING, STOPPED, Outcome, RegistryScanSettings, ScanRow, ScanStore
from ncr_trio.registry.context import Registry
from ncr_trio.scan.extract import ExtractError, inventory
from ncr_trio.scan.osv import Severity
from ncr_trio.scan.scanner import Report, scan
from ncr_trio.scan.vulndb import ImportSummary, VulnDB, VulnDBError
from ncr_trio.storage import StorageDriver
from ncr_trio.storage.base import BlobReader
from ncr_trio.storage.keys import blob_key
from ncr_trio.types import Digest, MediaType, load_json

log = logging.getLogger("ncr_trio.scan")

SCAN_JOB = "scan"
# The guide's presets for the periodic scan (Weekly: Saturday 00:00 UTC), or five cron fields.
PRESETS = {"None": "", "Hourly": "0 * * * *", "Daily": "0 0 * * *", "Weekly": "0 0 * * 6"}
LEASE_SECONDS = 60.0
STOP_POLL_SECONDS = 0.5
READ_CHUNK = 1 << 20
PAGE = 1000
# Layers the scanner reads (tar, compressed or not); anything else (signatures, charts, SBOMs) is not a filesystem.
_TAR_LAYER = re.compile(r"^application/vnd\.(oci\.image\.layer\.v1\.tar|docker\.image\.rootfs\.diff\.tar)"
                        r"(\.gzip|\+gzip|\+zstd)?$")
_IMAGE_CONFIGS = frozenset({MediaType.OCI_CONFIG, "application/vnd.docker.container.image.v1+json"})


def vulndb_path(data_dir: Path) -> Path:
    return data_dir / "vulndb" / "osv.sqlite"


FORGET = "Forget"  # an outcome that removes the row: the artifact is gone, or was never scannable


class Keep(enum.Enum):
    """A setting left as it is."""

    KEEP = 0


KEEP = Keep.KEEP


class ScanStopped(Exception):
    """The worker thread saw the stop flag."""


class NotScannable(Exception):
    """The artifact is not a container image or an index of them (a signature, a chart, ...)."""


@dataclass(frozen=True)
class Schedule:
    expression: str  # five cron fields, "" = None
    preset: str  # None | Hourly | Daily | Weekly | Custom
    next_run_at: float | None
    last_run_at: float | None


def parse_scan_schedule(text: str) -> str:
    """The expression of a preset (any case) or of five cron fields; ValueError otherwise."""
    for name, expression in PRESETS.items():
        if text.strip().lower() == name.lower():
            return expression
    if not text.strip():
        return ""
    try:
        return parse_schedule(text).expression
    except InvalidSchedule as e:
        raise ValueError(str(e)) from None


def preset_of(expression: str) -> str:
    return next((name for name, value in PRESETS.items() if value == expression), "Custom")


def parse_ids(value: str | list[str]) -> tuple[str, ...]:
    """An allowlist: IDs separated by commas, spaces or newlines (or a list of them), deduplicated in order."""
    items = value if isinstance(value, list) else re.split(r"[\s,]+", value)
    out: dict[str, None] = {}
    for item in items:
        for part in re.split(r"[\s,]+", item) if isinstance(value, list) else (item,):
            if not part:
                continue
            if ID_RE.fullmatch(part) is None:
                raise RegistryError("INVALID_REQUEST", f"not a vulnerability ID: {part[:60]!r}")
            out[part] = None
    if len(out) > MAX_ALLOWLIST:
        raise RegistryError("INVALID_REQUEST", f"an allowlist holds at most {MAX_ALLOWLIST} IDs")
    return tuple(out)


def validate_threshold(value: str | None) -> str | None:
    if value is None or value in ("", "None"):
        return None
    for t in THRESHOLDS:
        if value.lower() == t.lower():
            return t
    raise RegistryError("INVALID_REQUEST", f"prevent_pull_severity must be one of None, {', '.join(THRESHOLDS)}")


# -- reading layers from storage, in a worker thread ------------------------------------------------
class _BlobStream(io.RawIOBase):
    """A blob as a forward-only binary stream for tarfile, checking the stop flag at every read."""

    def __init__(self, reader: BlobReader, stop: threading.Event) -> None:
        self._reader, self._stop, self._at = reader, stop, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._stop.is_set():
            raise ScanStopped()
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._reader.size - self._at, READ_CHUNK)
        if n <= 0:
            return 0
        data = self._reader.read(self._at, n)
        view[:len(data)] = data
        self._at += len(data)
        return len(data)


def _layers(storage: StorageDriver, digests: list[str], stop: threading.Event) -> Iterator[io.BufferedReader]:
    for digest in digests:
        reader = storage.open_read(blob_key(Digest.parse(digest)))
        if reader is None:
            raise ExtractError(f"layer {digest} is missing from storage")
        try:
            yield io.BufferedReader(_BlobStream(reader, stop), READ_CHUNK)
        finally:
            reader.close()


def scan_layers(storage: StorageDriver, db_path: Path, digests: list[str], stop: threading.Event) -> Report:
    """Synchronous: the report of an image whose layers (lowest first) are these blobs."""
    with VulnDB(db_path) as db:  # first: no database, no reading of layers; and one version for the scan
        inv = inventory(_layers(storage, digests, stop))
        if stop.is_set():
            raise ScanStopped()
        return scan(inv, db)


# -- reports ----------------------------------------------------------------------------------------
def _finding_doc(f: Any) -> dict[str, Any]:
    v, p = f.vulnerability, f.package
    return {"id": v.id, "aliases": list(v.aliases), "package": p.name, "source": p.source, "ecosystem": p.ecosystem,
            "kind": p.kind, "path": p.path, "installed": p.version, "fixed": v.fixed, "severity": v.severity.label,
            "score": v.score, "summary": v.summary, "links": list(v.links)}


def _platform_doc(report: Report, digest: str, platform: str | None) -> dict[str, Any]:
    return {"digest": digest, "platform": platform, "packages": report.packages,
            "unsupported": list(report.unsupported), "total": report.total, "fixable": report.fixable,
            "severity": None if report.severity is None else report.severity.label,
            "vulnerabilities": [_finding_doc(f) for f in report.findings]}


def _gate(report: Report) -> list[list[Any]]:
    """The compact findings pull prevention reads, worst first."""
    return [[int(f.vulnerability.severity), f.vulnerability.id, list(f.vulnerability.aliases), f.package.name,
             f.package.version] for f in report.findings]


def outcome_of(parts: list[tuple[str, str | None, Report]], db_version: str) -> Outcome:
    """One outcome for an image (one part) or an index (a part per platform): its figures are its worst
    platform's; pull prevention judges every platform's findings."""
    def rank(r: Report) -> tuple[int, int]:
        return (-1 if r.severity is None else int(r.severity), r.total)

    worst = max((r for _, _, r in parts), key=rank)
    gate = sorted((g for _, _, r in parts for g in _gate(r)), key=lambda g: -int(g[0]))
    report = {"db_version": db_version, "total": worst.total, "fixable": worst.fixable,
              "severity": None if worst.severity is None else worst.severity.label,
              "platforms": [_platform_doc(r, d, p) for d, p, r in parts]}
    return Outcome(DONE, worst.total, worst.fixable, None if worst.severity is None else worst.severity.label,
                   db_version, gate, report)


def _platform(descriptor: dict[str, Any]) -> str | None:
    p = descriptor.get("platform")
    if not isinstance(p, dict):
        return None
    text = "/".join(str(p[k]) for k in ("os", "architecture", "variant") if isinstance(p.get(k), str))
    return text or None


def image_layers(record: ManifestRecord) -> list[str]:
    """The tar layers of an image manifest, lowest first; NotScannable for anything else."""
    if record.subject is not None:
        raise NotScannable("a signature or attestation (it has a subject)")
    doc = load_json(record.content)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict) or config.get("mediaType") not in _IMAGE_CONFIGS:
        raise NotScannable("not a container image (its config is not an image configuration)")
    layers = [d["digest"] for d in doc.get("layers", []) if isinstance(d, dict) and not d.get("urls")
              and _TAR_LAYER.match(str(d.get("mediaType", "")))]
    return layers


class Scans:
    def __init__(self, reg: Registry, store: ScanStore, policies: PolicyStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.reg = reg
        self.store = store
        self.policies = policies
        self.clock = clock
        self.db_path = vulndb_path(reg.config.data_dir)
        self.concurrency = max(1, reg.config.scan_concurrency)
        self.limiter = trio.CapacityLimiter(self.concurrency)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = trio.Event()
        self._running: set[tuple[str, str]] = set()
        # Pull prevention's settings per registry, read on every manifest GET/HEAD: kept for
        # `access_cache_seconds` (a change made through this process applies at once, elsewhere
        # within that time, as protection policies and access settings do).
        self.settings_ttl = reg.config.access_cache_seconds
        self._settings: TTLCache[str, RegistryScanSettings] = TTLCache(self.settings_ttl, time.monotonic)
        self._db_seen: tuple[int, int] | None = None  # the database file's (inode, mtime) last looked at
        self._global: tuple[float, tuple[str, ...]] | None = None

    # -- asking --------------------------------------------------------------------------------
    async def _artifact(self, repository: str, digest: str) -> ManifestRecord:
        Digest.parse(digest)
        record = await self.reg.meta.get_manifest(repository, digest)
        if record is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"reference": digest[:200]})
        return record

    def _check_scannable(self, record: ManifestRecord) -> None:
        try:
            if record.media_type in MediaType.IMAGES:
                image_layers(record)
            elif record.media_type not in MediaType.INDEXES or record.subject is not None:
                raise NotScannable("not an image or an index")
        except NotScannable as e:
            raise RegistryError("INVALID_REQUEST", f"this artifact cannot be scanned: {e}") from None

    async def start(self, repository: str, digest: str, trigger: str = "manual") -> ScanRow:
        """Queue a scan of the artifact (CONFLICT while one is under way)."""
        self._check_scannable(await self._artifact(repository, digest))
        if not await self.store.request(repository, digest, trigger, self.clock()):
            raise RegistryError("CONFLICT", "a scan of this artifact is under way: stop it first, or wait")
        self._wake.set()
        row = await self.store.result(repository, digest)
        assert row is not None
        return row

    async def stop(self, repository: str, digest: str) -> ScanRow:
        await self._artifact(repository, digest)
        status = await self.store.request_stop(repository, digest, self.clock())
        if status is None:
            raise RegistryError("NOT_FOUND", "this artifact has never been scanned")
        row = await self.store.result(repository, digest)
        assert row is not None
        return row

    async def result(self, repository: str, digest: str) -> ScanRow | None:
        await self._artifact(repository, digest)
        return await self.store.result(repository, digest)

    async def report(self, repository: str, digest: str) -> tuple[ScanRow, dict[str, Any]]:
        row = await self.result(repository, digest)
        report = await self.store.report(repository, digest)
        if row is None or report is None:
            raise RegistryError("NOT_FOUND", "this artifact has no finished scan: scan it first")
        return row, report

    async def scan_all(self, trigger: str = "schedule") -> int:
        """Queue a scan of every image and index (the periodic scan); answers how many were queued."""
        after, queued = ("", ""), 0
        while page := await self.store.scannable(after, PAGE):
            queued += await self.store.request_many(page, trigger, self.clock())
            after = page[-1]
        self._wake.set()
        return queued

    # -- settings ------------------------------------------------------------------------------
    async def schedule(self) -> Schedule:
        row = await self.policies.schedule(SCAN_JOB)
        expression = row.expression if row else ""
        return Schedule(expression, preset_of(expression), row.next_run_at if row and expression else None,
                        row.last_run_at if row else None)

    async def set_schedule(self, text: str) -> Schedule:
        try:
            expression = parse_scan_schedule(text)
        except ValueError as e:
            raise RegistryError("INVALID_REQUEST", str(e)) from None
        nxt = parse_schedule(expression).next_at(self.clock()) if expression else None
        await self.policies.set_schedule(SCAN_JOB, expression, nxt)
        return await self.schedule()

    async def allowlist(self) -> tuple[str, ...]:
        return await self.store.allowlist()

    async def set_allowlist(self, ids: str | list[str]) -> tuple[str, ...]:
        parsed = parse_ids(ids)
        await self.store.set_allowlist(parsed)
        self._global = None
        return parsed

    async def registry_settings(self, registry: str) -> RegistryScanSettings:
        return await self.store.registry_settings(registry)

    async def update_registry_settings(self, registry: str, *, scan_on_push: bool | None = None,
                                       prevent_pull_severity: str | None | Keep = KEEP,
                                       allowlist: str | list[str] | None | Keep = KEEP) -> RegistryScanSettings:
        """Change some of a registry's settings (KEEP: unchanged; allowlist None: the global list applies)."""
        s = await self.store.registry_settings(registry)
        severity = (s.prevent_pull_severity if isinstance(prevent_pull_severity, Keep)
                    else validate_threshold(prevent_pull_severity))
        own = s.allowlist if isinstance(allowlist, Keep) else (None if allowlist is None else parse_ids(allowlist))
        on_push = s.scan_on_push if scan_on_push is None else scan_on_push
        updated = RegistryScanSettings(registry, on_push, severity, own)
        if not await self.store.set_registry_settings(updated):
            raise RegistryError("NOT_FOUND", f"registry {registry[:80]!r} does not exist")
        self._settings.drop(registry)
        return updated

    async def _cached_settings(self, registry: str) -> RegistryScanSettings:
        hit, found = self._settings.get(registry)
        if not hit or found is None:
            found = await self.store.registry_settings(registry)
            self._settings.put(registry, found)
        return found

    async def _global_allowlist(self) -> tuple[str, ...]:
        now = time.monotonic()
        if self._global is None or self._global[0] <= now:
            self._global = (now + self.settings_ttl, await self.store.allowlist())
        return self._global[1]

    def vulndb_status(self) -> ImportSummary | None:
        """What the live vulnerability database holds (None: none imported yet). A quick read of its
        metadata tables; callers off the Trio thread when it matters."""
        if not self.db_path.exists():
            return None
        try:
            with VulnDB(self.db_path) as db:
                return db.status()
        except VulnDBError:
            return None

    # -- deciding ------------------------------------------------------------------------------
    async def check_pull(self, repository: str, record: ManifestRecord) -> None:
        """Refuse (412) the pull of an artifact with a vulnerability at or above its registry's threshold
        that the allowlist in force does not name."""
        if record.subject is not None:
            return
        settings = await self._cached_settings(repository.split("/", 1)[0])
        if settings.prevent_pull_severity is None:
            return
        threshold = Severity[settings.prevent_pull_severity.upper()]
        findings = await self.store.findings(repository, record.digest)
        if not findings or int(findings[0][0]) < threshold:
            return
        allowed = set(settings.allowlist if settings.allowlist is not None else await self._global_allowlist())
        for severity, vid, aliases, package, installed in findings:
            if int(severity) < threshold:
                return
            if allowed.isdisjoint((vid, *aliases)):
                label = Severity(int(severity)).label
                named = vid if not aliases else f"{vid} ({', '.join(aliases[:3])})"
                raise RegistryError(
                    "DENIED", f"pull refused: {named}, severity {label}, in {package} {installed}; this registry "
                    f"refuses images with vulnerabilities of severity {settings.prevent_pull_severity} or higher "
                    "(allowlist the ID, or fix the image)", status=412,
                    detail={"vulnerability": vid, "severity": label, "threshold": settings.prevent_pull_severity})

    # -- running -------------------------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run queued scans until cancelled: up to `concurrency` at once in this process."""
        poll = self.reg.config.scan_poll_seconds
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    await self._check_import()
                    await self.store.collect_pushes()
                    free = self.concurrency - len(self._running)
                    if free > 0:
                        for repository, digest in await self.store.due(self.clock(), free):
                            key = (repository, digest)
                            if key in self._running:
                                continue
                            if await self.store.claim(repository, digest, self.owner, self.clock(), LEASE_SECONDS):
                                self._running.add(key)
                                nursery.start_soon(self._run, repository, digest)
                except Exception:
                    log.exception("the scan queue could not be read; retrying")
                self._wake = trio.Event()
                with trio.move_on_after(poll):
                    await self._wake.wait()

    async def _check_import(self) -> None:
        """A new database file (an import swaps one in): record its version; with `scan_rescan_on_import`,
        the one process that records it first queues a scan of everything."""
        try:
            st = self.db_path.stat()
        except FileNotFoundError:
            return
        seen = (st.st_ino, st.st_mtime_ns)
        if seen == self._db_seen:
            return
        summary = await trio.to_thread.run_sync(self.vulndb_status)
        self._db_seen = seen
        if summary is None or not await self.store.claim_db_version(summary.version):
            return
        log.info("vulnerability database %s: %d records", summary.version, summary.records)
        if self.reg.config.scan_rescan_on_import:
            log.info("rescan on import: %d artifact(s) queued", await self.scan_all("import"))

    async def _run(self, repository: str, digest: str) -> None:
        stop = threading.Event()
        done = False
        try:
            outcome: Outcome | None = None
            try:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._watch, repository, digest, stop, scope)
                        try:
                            outcome = await self._scan(repository, digest, stop)
                        finally:
                            nursery.cancel_scope.cancel()
            except Exception:  # (from the nursery: an exception group) a bug, or the database gone
                log.exception("scan of %s@%s failed", repository, digest)
                outcome = Outcome(FAILED, error="internal error (see the server's log)")
            if outcome is None and stop.is_set():  # stopped (or the lease was lost: then nothing is written)
                outcome = Outcome(STOPPED)
            if outcome is not None:
                with trio.CancelScope(shield=True):
                    if outcome.status == FORGET:
                        await self.store.forget(repository, digest)
                    else:
                        await self.store.finish(repository, digest, self.owner, outcome, self.clock())
            done = True
        finally:
            self._running.discard((repository, digest))
            self._wake.set()
            if not done:  # shutting down: the worker thread stops at its next read; the scan is due again at once
                stop.set()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    try:
                        await self.store.release(repository, digest, self.owner)
                    except Exception:
                        log.exception("scan of %s@%s: could not give it back (due again when its lease ends)",
                                      repository, digest)

    async def _watch(self, repository: str, digest: str, stop: threading.Event, scope: trio.CancelScope) -> None:
        renewed = self.clock()
        while True:
            await trio.sleep(STOP_POLL_SECONDS)
            if self.clock() - renewed >= LEASE_SECONDS / 3:
                ours, stopping = await self.store.extend(repository, digest, self.owner, self.clock() + LEASE_SECONDS)
                renewed = self.clock()
                if not ours:  # (finishing is for the lease's holder only: nothing is written)
                    log.warning("scan of %s@%s: lost its lease; leaving it", repository, digest)
                    stop.set()
                    scope.cancel()
                    return
            else:
                stopping = await self.store.stop_requested(repository, digest)
            if stopping:
                stop.set()
                scope.cancel()
                return

    async def _scan(self, repository: str, digest: str, stop: threading.Event) -> Outcome:
        record = await self.reg.meta.get_manifest(repository, digest)
        if record is None:
            return Outcome(FORGET)
        try:
            parts: list[tuple[str, str | None, Report]] = []
            if record.media_type in MediaType.INDEXES:
                doc = load_json(record.content)
                for child in doc.get("manifests", []):
                    if not isinstance(child, dict) or child.get("mediaType") not in MediaType.IMAGES:
                        continue
                    platform = _platform(child)
                    if platform is not None and platform.startswith("unknown/"):
                        continue  # buildx attestations
                    child_record = await self.reg.meta.get_manifest(repository, str(child.get("digest")))
                    if child_record is None:
                        continue
                    try:
                        layers = image_layers(child_record)
                    except NotScannable:
                        continue
                    report = await self._scan_image(layers, stop)
                    parts.append((child_record.digest, platform, report))
                    await self.store.store_child(repository, child_record.digest,
                                                 outcome_of([parts[-1]], report.db_version), self.clock())
                if not parts:
                    raise NotScannable("the index holds no container image")
            else:
                report = await self._scan_image(image_layers(record), stop)
                parts.append((record.digest, None, report))
        except ScanStopped:
            return Outcome(STOPPED)
        except NotScannable as e:
            if (await self.store.result(repository, digest) or _NONE).trigger == "manual":
                return Outcome(FAILED, error=f"cannot be scanned: {e}")
            return Outcome(FORGET)
        except (ExtractError, VulnDBError, ValueError) as e:
            log.warning("scan of %s@%s failed: %s", repository, digest, e)
            return Outcome(FAILED, error=str(e))
        return outcome_of(parts, parts[0][2].db_version)

    async def _scan_image(self, layers: list[str], stop: threading.Event) -> Report:
        return await trio.to_thread.run_sync(scan_layers, self.reg.storage, self.db_path, layers, stop,
                                             limiter=self.limiter, abandon_on_cancel=True)


_NONE = ScanRow("", "", SCANNING, "", 0.0, None, None, False, 0, 0, None, "", "")


def status_label(row: ScanRow | None) -> str:
    """The guide's vulnerability column: Not Scanned, Scanning, Stopped, Failed, or Done."""
    return "Not Scanned" if row is None else row.status


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report)


__all__ = ["DONE", "FAILED", "KEEP", "PRESETS", "SCAN_JOB", "SCANNING", "STOPPED", "THRESHOLDS", "Keep",
           "NotScannable", "ScanStopped", "Scans", "Schedule", "image_layers", "outcome_of", "parse_ids",
           "parse_scan_schedule", "preset_of", "scan_layers", "status_label", "validate_threshold", "vulndb_path"]
