"""The scrub (`ncr-trio fsck [--repair]` and the scheduled "fsck" job): every stored blob is read again and
re-hashed; a blob whose bytes no longer match its digest is reported and, with repair, moved to
<data>/quarantine/, after which pulls answer BLOB_UNKNOWN and a push of the same blob brings it back.

The CLI runs as a subprocess on the data directory of a live server (as `ncr-trio gc --data` does); the
scheduled job and the memory bound are checked in process, over a real data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ncr_trio.config import Config
from ncr_trio.registry import RegistryService
from ncr_trio.scheduler import Scheduler
from tests.support.oci import digest, image, push_blob, push_image
from tests.support.server import Server
from tests.support.terminal import on_tty

BIG = os.urandom(3 << 20) + b"tail"  # several read chunks


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(data=tmp_path / "data", registries=("scrub",)).start()
    try:
        yield srv
    finally:
        srv.stop()


def blob_file(data_dir: Path, d: str) -> Path:
    algorithm, hex_ = d.split(":")
    return data_dir / "blobs" / algorithm / hex_[:2] / hex_


def fsck(data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    r = subprocess.run([sys.executable, "-m", "ncr_trio", "fsck", "--data", str(data_dir), "--json", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_fsck_reports_damaged_blobs_and_repair_quarantines_them_until_pushed_again(server: Server) -> None:
    img = image("scrub-app", layers=2)
    flipped, truncated = (digest(layer) for layer in img.layers)
    with server.client() as c:
        push_image(c, "scrub/app", img, "v1")
        big = push_blob(c, "scrub/app", BIG)
    path = blob_file(server.data, flipped)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one bit of one byte
    path.write_bytes(damaged)
    with open(blob_file(server.data, truncated), "r+b") as f:
        f.truncate(len(img.layers[1]) - 1)

    with server.client() as c:
        # A blob whose size changed is refused at once, before any scrub.
        for method in ("GET", "HEAD"):
            r = c.request(method, f"/v2/scrub/app/blobs/{truncated}")
            assert r.status_code == 404, (method, r.status_code)
        assert c.get(f"/v2/scrub/app/blobs/{truncated}").json()["errors"][0]["code"] == "BLOB_UNKNOWN"

    code, report = fsck(server.data)
    assert code == 1 and report["repair"] is False
    assert report["blobs"] == 4 and report["bytes"] == sum(len(b) for b in (*img.blobs.values(), BIG)) - 1
    assert sorted(report["damaged"]) == sorted([flipped, truncated]) and report["quarantined"] == []
    assert "sha256:" in report["damaged"][flipped] and "recorded" in report["damaged"][truncated]
    assert path.read_bytes() == damaged  # reported only

    code, report = fsck(server.data, "--repair")
    assert code == 1 and sorted(report["quarantined"]) == sorted([flipped, truncated])
    assert not path.exists()
    assert (server.data / "quarantine" / "sha256" / flipped.split(":")[1]).read_bytes() == damaged
    with server.client() as c:
        for d in (flipped, truncated):
            r = c.get(f"/v2/scrub/app/blobs/{d}")
            assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN", r.text
            assert c.head(f"/v2/scrub/app/blobs/{d}").status_code == 404  # so clients push it again
        assert c.get(f"/v2/scrub/app/blobs/{big}").content == BIG  # the sound ones are served as before
        push_image(c, "scrub/app", img, "v1")
        assert c.get(f"/v2/scrub/app/blobs/{flipped}").content == img.layers[0]
        assert c.get(f"/v2/scrub/app/blobs/{truncated}").content == img.layers[1]
    assert fsck(server.data) == (0, {"repair": False, "blobs": 4, "bytes": report["bytes"] + 1, "damaged": {},
                                     "quarantined": []})


def test_fsck_shows_progress_on_a_terminal(server: Server) -> None:
    with server.client() as c:
        push_image(c, "scrub/tty", image("scrub-tty"), "v1")
    env = {**os.environ, "COLUMNS": "120", "LINES": "40"}
    code, out = on_tty("fsck", "--data", str(server.data), env=env)
    assert code == 0, out
    assert "Checking blobs" in out and "2 blobs" in out and "no damage" in out


async def test_the_scheduled_scrub_is_off_by_default_and_quarantines_when_asked(tmp_path: Path) -> None:
    """The "fsck" job: no schedule unless `fsck_schedule` is set; then it runs on it, and with
    `fsck_repair` it quarantines. A 40 MiB blob is re-hashed holding a few MiB at most."""
    off = RegistryService.open(Config(data_dir=tmp_path / "off"))
    try:
        scheduler = Scheduler(off)
        await scheduler.sync_jobs()
        row = await off.policies.store.schedule("fsck")
        assert row is None or row.expression == ""
    finally:
        off.close()

    now = [time.time()]
    service = RegistryService.open(Config(data_dir=tmp_path / "on", fsck_schedule="Hourly", fsck_repair=True))
    try:
        scheduler = Scheduler(service, clock=lambda: now[0])
        await scheduler.sync_jobs()
        size = 40 << 20
        sound = await _sparse_blob(service, size)
        bad = await _sparse_blob(service, size + 1)
        with open(blob_file(service.config.data_dir, bad), "r+b") as f:
            f.seek(size // 2)
            f.write(b"\x01")
        now[0] += 3600
        tracemalloc.start()
        try:
            assert await scheduler.tick() == ["fsck"]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20, peak
        assert blob_file(service.config.data_dir, sound).exists()
        assert not blob_file(service.config.data_dir, bad).exists()
        assert (service.config.data_dir / "quarantine" / "sha256" / bad.split(":")[1]).exists()
        assert await scheduler.tick() == []  # not before the next hour
    finally:
        service.close()


async def _sparse_blob(service: RegistryService, size: int) -> str:
    """A blob of `size` zero bytes stored as a sparse file (cheap to make), with its row."""
    h = hashlib.sha256()
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        h.update(zeros)
    h.update(bytes(size & ((1 << 20) - 1)))
    d = f"sha256:{h.hexdigest()}"
    path = blob_file(service.config.data_dir, d)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    service.meta.commit_blob_sync("scrub/sparse", d, size, None, lambda n: True)
    return d
