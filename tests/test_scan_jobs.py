"""Scan jobs in process, on the registry's own use cases: the periodic scan through the scheduler (one run
across two nodes, leases), an index scanned platform by platform (it shows its worst; each platform's
image gets its own result), and pull prevention's rules (subject-bearing artifacts and artifacts with no
result are never refused)."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.meta import ManifestRecord
from ncr_trio.registry import RegistryService
from ncr_trio.scan.jobs import vulndb_path
from ncr_trio.scan.vulndb import import_sources
from ncr_trio.scheduler import Scheduler
from ncr_trio.types import Digest
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, canonical, descriptor, digest

DATA = Path(__file__).parent / "data" / "vulndata"
OS_RELEASE = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.4.6\nPRETTY_NAME="Alpine Linux v3.4"\n'
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ALPINE = tar({"etc/os-release": OS_RELEASE,
              "lib/apk/db/installed": (DATA / "alpine" / "installed-trivy-testdata").read_bytes()})
PYTHON = tar({"usr/lib/python3.11/site-packages/urllib3-2.0.6.dist-info/METADATA":
              b"Metadata-Version: 2.1\nName: urllib3\nVersion: 2.0.6\n\n"})


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push(service: RegistryService, repo: str, layers: list[bytes], tag: str | None, arch: str = "amd64",
               subject: str | None = None) -> tuple[str, bytes]:
    config = canonical({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    for blob in [config, *layers]:
        await service.uploads.monolithic(repo, Digest.parse(digest(blob)), _body(blob), len(blob))
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor(LAYER_TAR, b) for b in layers]}
    if subject is not None:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}
    manifest = canonical(doc)
    await service.manifests.put(repo, tag or digest(manifest), manifest, OCI_MANIFEST)
    return digest(manifest), manifest


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RegistryService]:
    config = Config(data_dir=tmp_path / "data")
    import_sources(vulndb_path(config.data_dir), [DATA / "PyPI-subset.zip", DATA / "alpine" / "secdb-v3.4-main.yaml"])
    svc = RegistryService.open(config)
    try:
        yield svc
    finally:
        svc.close()


async def until_done(service: RegistryService, repo: str, d: str) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(service.scans.serve)
        with trio.fail_after(60):
            while (row := await service.scans.store.result(repo, d)) is None or row.status == "Scanning":
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_the_periodic_scan_runs_once_across_two_nodes_and_covers_an_index(service: RegistryService) -> None:
    await service.namespaces.create("team", "admin")
    alpine, _ = await push(service, "team/multi", [ALPINE], None)
    python, _ = await push(service, "team/multi", [PYTHON], None, arch="arm64")
    index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": alpine, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": python, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
    ]})
    await service.manifests.put("team/multi", "v1", index, OCI_INDEX)
    schedule = await service.scans.set_schedule("hourly")
    assert (schedule.expression, schedule.preset) == ("0 * * * *", "Hourly")
    assert schedule.next_run_at is not None
    assert (await service.scans.set_schedule("WEEKLY")).expression == "0 0 * * 6"  # the guide's Saturday
    assert (await service.scans.set_schedule("15 3 * * *")).preset == "Custom"
    with pytest.raises(RegistryError):
        await service.scans.set_schedule("every now and then")
    schedule = await service.scans.set_schedule("Hourly")
    assert schedule.next_run_at is not None
    now = [schedule.next_run_at + 1]
    a = Scheduler(service, clock=lambda: now[0], owner="node-a")
    b = Scheduler(service, clock=lambda: now[0], owner="node-b")
    ran: list[list[str]] = []

    async def tick(s: Scheduler) -> None:
        ran.append(await s.tick())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick, a)
        nursery.start_soon(tick, b)
    assert sorted(ran) == [[], ["scan"]]
    assert await a.tick() == [] and await b.tick() == []  # the next run is an hour away
    d = digest(index)
    queued = await service.scans.store.result("team/multi", d)
    assert queued is not None and (queued.status, queued.trigger) == ("Scanning", "schedule")
    # the index's images are scanned with it, not queued on their own
    assert await service.scans.store.result("team/multi", alpine) is None

    await until_done(service, "team/multi", d)
    row = await service.scans.store.result("team/multi", d)
    assert row is not None and row.status == "Done"
    _, report = await service.scans.report("team/multi", d)
    platforms = {p["platform"]: p for p in report["platforms"]}
    assert set(platforms) == {"linux/amd64", "linux/arm64"}
    assert platforms["linux/arm64"]["severity"] == "Medium" and platforms["linux/arm64"]["total"] >= 1
    assert platforms["linux/amd64"]["total"] > 50  # Alpine's findings: all of Unknown severity in secdb
    # the index shows its worst platform: arm64's Medium outranks amd64's many Unknown
    assert (row.severity, row.total) == ("Medium", platforms["linux/arm64"]["total"])
    for child, platform in ((alpine, "linux/amd64"), (python, "linux/arm64")):
        own = await service.scans.store.result("team/multi", child)
        assert own is not None and (own.status, own.trigger, own.total) == ("Done", "index",
                                                                             platforms[platform]["total"])

    # pull prevention over the index and its images; a signature of the image is never refused
    await service.scans.update_registry_settings("team", prevent_pull_severity="Medium")
    for ref in (d, python):
        record = await service.meta.get_manifest("team/multi", ref)
        assert record is not None
        with pytest.raises(RegistryError) as refused:
            await service.scans.check_pull("team/multi", record)
        assert refused.value.status == 412 and "PYSEC-2023-212" in refused.value.message
    alpine_record = await service.meta.get_manifest("team/multi", alpine)
    assert alpine_record is not None
    await service.scans.check_pull("team/multi", alpine_record)  # Unknown only: below Medium
    signature = ManifestRecord(python, OCI_MANIFEST, 1, b"{}", subject=python)  # as if it had the findings
    await service.scans.check_pull("team/multi", signature)


async def test_a_request_for_what_cannot_be_scanned_is_refused(service: RegistryService) -> None:
    await service.namespaces.create("team", "admin")
    d, _ = await push(service, "team/app", [ALPINE], "v1")
    sig, _ = await push(service, "team/app", [b"not a tar"], None, subject=d)
    with pytest.raises(RegistryError) as refused:
        await service.scans.start("team/app", sig)
    assert refused.value.code == "INVALID_REQUEST"
    row = await service.scans.start("team/app", d)
    assert row.status == "Scanning"
    with pytest.raises(RegistryError) as busy:
        await service.scans.start("team/app", d)
    assert busy.value.code == "CONFLICT"
    assert (await service.scans.stop("team/app", d)).status == "Stopped"  # nobody ran it yet: at once
    assert time.time() >= row.requested_at


async def test_a_new_database_queues_a_rescan_when_configured(tmp_path: Path) -> None:
    async def scanned(svc: RegistryService, d: str, after: float) -> None:
        with trio.fail_after(60):
            while (row := await svc.scans.store.result("team/app", d)) is None or row.status == "Scanning" \
                    or row.requested_at <= after:
                await trio.sleep(0.05)
        assert row.trigger == "import" and row.status == "Done"

    for rescan in (False, True):
        config = Config(data_dir=tmp_path / f"data-{rescan}", scan_rescan_on_import=rescan, scan_poll_seconds=0.05)
        svc = RegistryService.open(config)
        try:
            await svc.namespaces.create("team", "admin")
            d, _ = await push(svc, "team/app", [PYTHON], "v1")
            import_sources(vulndb_path(config.data_dir), [DATA / "alpine" / "secdb-v3.4-main.yaml"])
            async with trio.open_nursery() as nursery:
                await nursery.start(svc.scans.serve)
                if not rescan:  # the database is seen (its version recorded), and nothing is queued
                    with trio.fail_after(60):
                        while not await svc.scans.store.db.read(lambda tx: tx.one(
                                "SELECT 1 FROM scan_settings WHERE db_version <> ''")):
                            await trio.sleep(0.05)
                    assert await svc.scans.store.result("team/app", d) is None
                else:
                    await scanned(svc, d, 0)  # the first database this installation sees
                    first = await svc.scans.store.result("team/app", d)
                    assert first is not None and first.total == 0  # no PyPI data yet
                    await trio.to_thread.run_sync(import_sources, vulndb_path(config.data_dir),
                                                  [DATA / "PyPI-subset.zip"])
                    await scanned(svc, d, first.requested_at)
                    again = await svc.scans.store.result("team/app", d)
                    assert again is not None and again.severity == "Medium" and again.db_version != first.db_version
                nursery.cancel_scope.cancel()
        finally:
            svc.close()
