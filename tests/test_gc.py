"""Online garbage collection: what it removes, what it keeps, and pushes racing it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.registry import RegistryService
from ncr_trio.storage import blob_key
from ncr_trio.types import Digest
from tests.support.oci import OCI_MANIFEST, digest, image, push_blob, push_image
from tests.support.server import Server

HOUR = 3600.0


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_blob_uc(service: RegistryService, repo: str, data: bytes) -> str:
    d = digest(data)
    await service.uploads.monolithic(repo, Digest.parse(d), _body(data), len(data))
    return d


async def push_image_uc(service: RegistryService, repo: str, seed: str, tag: str) -> str:
    img = image(seed)
    for blob in img.blobs.values():
        await push_blob_uc(service, repo, blob)
    await service.manifests.put(repo, tag, img.manifest, OCI_MANIFEST)
    return img.digest


def open_service(tmp_path: Path, **overrides: object) -> RegistryService:
    return RegistryService.open(Config(data_dir=tmp_path / "data", **overrides))  # type: ignore[arg-type]


def blob_on_disk(service: RegistryService, d: str) -> bool:
    return service.reg.storage.stat(blob_key(Digest.parse(d))) is not None


async def test_gc_removes_only_what_nothing_references(tmp_path: Path) -> None:
    service = open_service(tmp_path)
    try:
        kept_manifest = await push_image_uc(service, "gc/app", "kept", "v1")
        img = image("kept")
        orphan = await push_blob_uc(service, "gc/app", b"orphan blob")
        # A blob that was deleted from its repository: no link left.
        unlinked = await push_blob_uc(service, "gc/other", b"unlinked blob")
        await service.blobs.delete("gc/other", Digest.parse(unlinked))

        dry = await service.gc.run(dry_run=True, now=time.time() + 2 * HOUR)
        assert set(dry.blobs) == {orphan, unlinked}
        assert blob_on_disk(service, orphan) and blob_on_disk(service, unlinked)

        report = await service.gc.run(now=time.time() + 2 * HOUR)
        assert set(report.blobs) == {orphan, unlinked}
        assert report.bytes_freed == len(b"orphan blob") + len(b"unlinked blob")
        assert (await service.gc.run(now=time.time() + 2 * HOUR)).blobs == []
        assert not blob_on_disk(service, orphan) and not blob_on_disk(service, unlinked)
        for blob in img.blobs.values():
            assert blob_on_disk(service, digest(blob))
        assert (await service.manifests.get("gc/app", "v1")).digest == kept_manifest
    finally:
        service.close()


async def test_gc_leaves_young_content_alone(tmp_path: Path) -> None:
    service = open_service(tmp_path)
    try:
        orphan = await push_blob_uc(service, "gc/young", b"just pushed")
        for _ in range(2):
            report = await service.gc.run()
            assert report.blobs == [] and report.links == []
        assert blob_on_disk(service, orphan)
    finally:
        service.close()


async def test_gc_expires_abandoned_uploads(tmp_path: Path) -> None:
    service = open_service(tmp_path, upload_ttl_seconds=60)
    try:
        status = await service.uploads.start("gc/uploads")
        await service.uploads.append("gc/uploads", status.id, _body(b"partial"), None, None)
        fresh = await service.uploads.start("gc/uploads")
        report = await service.gc.run(now=time.time() + 120)
        assert status.id in report.uploads and fresh.id in report.uploads
        with pytest.raises(RegistryError) as e:
            await service.uploads.status("gc/uploads", status.id)
        assert e.value.code == "BLOB_UPLOAD_UNKNOWN"
        assert not (tmp_path / "data" / "uploads" / status.id).exists()
        report = await service.gc.run()
        assert report.uploads == []
    finally:
        service.close()


async def test_gc_deletes_untagged_manifests_only_when_asked(tmp_path: Path) -> None:
    service = open_service(tmp_path, gc_delete_untagged=True)
    try:
        old = await push_image_uc(service, "gc/untagged", "first", "v1")
        new = await push_image_uc(service, "gc/untagged", "second", "v1")  # moves the tag away from `old`
        report = await service.gc.run(now=time.time() + 2 * HOUR)
        assert report.manifests == [f"gc/untagged@{old}"]
        with pytest.raises(RegistryError):
            await service.manifests.get("gc/untagged", old)
        assert (await service.manifests.get("gc/untagged", "v1")).digest == new
    finally:
        service.close()


@pytest.mark.parametrize("grace", [HOUR, 0.0])
async def test_pushes_racing_gc_never_leave_a_manifest_without_its_blobs(tmp_path: Path, grace: float) -> None:
    """GC loops while 40 images are pushed. With the normal grace nothing of theirs is touched and
    every push succeeds; with no grace at all (adversarial) a push may be refused, but no accepted
    manifest ever points at a missing blob."""
    service = open_service(tmp_path, gc_grace_seconds=grace)
    accepted: list[tuple[str, str]] = []
    refused = 0
    try:
        async def pusher(i: int) -> None:
            nonlocal refused
            try:
                d = await push_image_uc(service, f"race/r{i % 4}", f"race-{i}", f"t{i}")
                accepted.append((f"race/r{i % 4}", d))
            except RegistryError as e:
                assert e.code == "MANIFEST_BLOB_UNKNOWN"
                refused += 1

        async def collector(done: trio.Event) -> None:
            while not done.is_set():
                await service.gc.run()
                await trio.sleep(0)

        done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collector, done)
            async with trio.open_nursery() as pushers:
                for i in range(40):
                    pushers.start_soon(pusher, i)
            done.set()
        await service.gc.run()
        if grace:
            assert refused == 0 and len(accepted) == 40
        for repo, d in accepted:
            m = await service.manifests.get(repo, d)
            doc = json.loads(m.content)
            for desc in [doc["config"], *doc["layers"]]:
                assert await service.blobs.size(repo, Digest.parse(desc["digest"])) == desc["size"]
                assert blob_on_disk(service, desc["digest"])
    finally:
        service.close()


def test_gc_cli_runs_online_next_to_a_live_server(server: Server) -> None:
    with server.client() as c:
        img = image("cli-kept")
        push_image(c, "gc/cli", img, "v1")
        orphan = push_blob(c, "gc/cli", b"cli orphan")
        r = c.delete(f"/v2/gc/cli/blobs/{orphan}")
        assert r.status_code == 202
        cmd = [sys.executable, "-m", "ncr_trio", "gc", "--data", str(server.data), "--grace", "0", "--json"]
        dry = json.loads(subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, check=True).stdout)
        assert dry["blobs"] == [orphan] and dry["dry_run"] is True
        report = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        assert report["blobs"] == [orphan] and report["bytes_freed"] == len(b"cli orphan")
        # The server kept serving throughout, and the image is intact.
        assert c.get("/v2/gc/cli/manifests/v1").content == img.manifest
        for blob in img.blobs.values():
            assert c.get(f"/v2/gc/cli/blobs/{digest(blob)}").content == blob
