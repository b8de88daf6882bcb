"""One suite for storage drivers: every driver must keep bytes exactly, whatever the chunking.

Parametrized over the filesystem driver (with and without O_DIRECT) and the S3 driver on two real
servers, versitygw and moto (which enforces S3's 5 MiB minimum part size). The S3 driver runs with
5 MiB parts here, so that PATCH-sized writes cross part boundaries with little data.
An upload is reopened the way the registry does it: with the state its last `sync` left
(`UploadSink.state`), as a request on another node would."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncr_trio.registry.blobs import WaitsForSpans
from ncr_trio.storage import FilesystemDriver, S3Driver, StorageDriver
from ncr_trio.storage.s3 import MIN_PART_BYTES
from tests.support.s3 import S3Server
from tests.support.storage import NO_DIRECT_IO, why_no_direct_io

FILESYSTEMS = ["filesystem-direct", "filesystem-buffered"]
DRIVERS = [*FILESYSTEMS, "versitygw", "moto"]
MiB = 1 << 20


def make_driver(kind: str, root: Path, request: pytest.FixtureRequest) -> StorageDriver:
    if kind.startswith("filesystem"):
        return FilesystemDriver(root, direct_io=kind == "filesystem-direct")
    server: S3Server = request.getfixturevalue("versitygw" if kind == "versitygw" else "moto_s3")
    with server.bucket() as bucket:
        driver = server.driver(bucket, part_bytes=MIN_PART_BYTES)
    return driver


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    yield make_driver(request.param, tmp_path / "store", request)


@pytest.fixture(params=FILESYSTEMS)
def fs_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    yield make_driver(request.param, tmp_path / "store", request)


def multipart_uploads(driver: StorageDriver) -> list[object]:
    """Multipart uploads left in the driver's bucket (none on a filesystem)."""
    return list(driver.multipart_uploads("")) if isinstance(driver, S3Driver) else []


def read_all(driver: StorageDriver, key: str) -> bytes:
    reader = driver.open_read(key)
    assert reader is not None
    try:
        return reader.read(0, reader.size)
    finally:
        reader.close()


PAYLOAD = os.urandom(3 * (4 << 20) + 12345)

# A "request" is a list of chunk sizes; uploads are several requests, each on a freshly opened sink.
requests_strategy = st.lists(
    st.lists(st.sampled_from([0, 1, 7, 4095, 4096, 4097, 65536, 200_000, 1 << 20, (4 << 20) + 3]),
             min_size=1, max_size=6),
    min_size=1, max_size=5,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests_strategy, sync_each=st.booleans())
def test_upload_bytes_survive_any_chunking(fs_driver: StorageDriver, requests: list[list[int]],
                                           sync_each: bool) -> None:
    """Any chunking on the filesystem (the S3 driver: `test_patch_sized_uploads_across_reopens`)."""
    driver = fs_driver
    key = f"uploads/{os.urandom(6).hex()}"
    expected = bytearray()
    pos = 0
    for i, sizes in enumerate(requests):
        sink = driver.open_upload(key)
        try:
            assert sink.size() == len(expected)
            chunks = []
            for n in sizes:
                chunk = PAYLOAD[pos % len(PAYLOAD):][:n]
                pos += n
                chunks.append(chunk)
                expected += chunk
            assert sink.write(chunks) == sum(len(c) for c in chunks)
            assert sink.size() == len(expected)
            if sync_each:
                sink.sync()
            else:
                sink.flush()
            if i == len(requests) - 1:
                sink.complete()
        finally:
            sink.close()
    blob = f"blobs/sha256/aa/{os.urandom(8).hex()}"
    driver.publish(key, blob)()  # put in place, then make durable
    assert driver.stat(blob) == len(expected)
    assert read_all(driver, blob) == bytes(expected)
    assert driver.stat(key) == len(expected)  # the upload stays until the caller deletes it


@pytest.mark.parametrize("acknowledged", [10000, 6 * MiB])
def test_truncate_drops_unacknowledged_bytes(driver: StorageDriver, acknowledged: int) -> None:
    """A "crash" after bytes past the acknowledged state reached storage (a pending object, parts, a
    synced file): reopened from the acknowledged state and truncated to its size, the upload holds
    exactly the acknowledged bytes, and what follows overwrites the rest."""
    key = f"uploads/trunc{acknowledged}"
    sink = driver.open_upload(key)
    sink.write([PAYLOAD[:acknowledged]])
    sink.sync()
    state = sink.state()
    sink.write([PAYLOAD[acknowledged:acknowledged + 11 * MiB]])  # never acknowledged: parts, a pending object
    sink.sync()
    sink.close()
    sink = driver.open_upload(key, state)
    sink.truncate(acknowledged)
    assert sink.size() == acknowledged
    sink.write([b"tail"])
    chunks = list(sink.read_chunks(4096))
    sink.close()
    assert b"".join(chunks) == PAYLOAD[:acknowledged] + b"tail"
    assert driver.stat(key) == acknowledged + 4
    assert driver.delete(key)
    assert multipart_uploads(driver) == []
    assert list(driver.list("uploads/")) == []


@pytest.mark.parametrize("patch", [1, MiB, 5 * MiB, 17 * MiB])
def test_patch_sized_uploads_across_reopens(driver: StorageDriver, patch: int) -> None:
    """PATCH-sized requests, each on a sink opened afresh from the state the previous one saved, then
    published: the bytes are exact, and nothing but the blob is left once the upload is deleted."""
    key = f"uploads/p{patch}"
    total = patch * 3 if patch > 1 else 5
    expected = bytes(PAYLOAD[:total]) if total <= len(PAYLOAD) else (PAYLOAD * 5)[:total]
    state = ""
    for start in range(0, total, patch):
        sink = driver.open_upload(key, state)
        try:
            assert sink.size() == start
            sink.write([expected[start:start + patch]])
            sink.sync()
            state = sink.state()
        finally:
            sink.close()
    sink = driver.open_upload(key, state)
    try:
        sink.complete()
    finally:
        sink.close()
    blob = f"blobs/sha256/ab/{patch:x}"
    driver.publish(key, blob)()
    assert driver.publishing(blob)
    assert read_all(driver, blob) == expected
    driver.delete(key)
    assert not driver.publishing(blob)
    assert list(driver.list("uploads/")) == []
    assert multipart_uploads(driver) == []


def test_abandoned_uploads(driver: StorageDriver, request: pytest.FixtureRequest) -> None:
    """An upload that has parts in a multipart upload holds something outside keys: the driver names it
    once it is older than the cutoff, and deleting it aborts its multipart upload."""
    key = "uploads/abandoned"
    sink = driver.open_upload(key)
    sink.write([PAYLOAD[:6 * MiB]])
    sink.sync()
    sink.close()
    if request.node.callspec.params["driver"] != "moto":  # moto dates every multipart upload 2010-11-10
        assert driver.abandoned_uploads(time.time() - 3600) == []
    if isinstance(driver, S3Driver):
        assert driver.abandoned_uploads(time.time() + 3600) == [key]
        assert len(multipart_uploads(driver)) == 1
    else:
        assert driver.abandoned_uploads(time.time() + 3600) == []
    assert driver.delete(key)
    assert multipart_uploads(driver) == [] and driver.abandoned_uploads(time.time() + 3600) == []


def test_move_and_big_reads(driver: StorageDriver) -> None:
    store(driver, "blobs/sha256/ee/m", PAYLOAD)
    assert driver.move("blobs/sha256/ee/m", "quarantine/sha256/m")
    assert not driver.move("blobs/sha256/ee/m", "quarantine/sha256/m")
    assert driver.stat("blobs/sha256/ee/m") is None
    reader = driver.open_read("quarantine/sha256/m")
    assert reader is not None
    try:
        assert reader.size == len(PAYLOAD)
        got = bytearray()
        while len(got) < reader.size:
            got += reader.read(len(got), 1 << 20)
        assert got == PAYLOAD
        assert reader.read(5, 10) == PAYLOAD[5:15]  # a seek back
    finally:
        reader.close()
    assert driver.open_read("blobs/sha256/ee/none") is None


def store(driver: StorageDriver, key: str, data: bytes) -> None:
    """A blob the way the registry stores one: appended to an upload, published, made durable."""
    upload = f"uploads/{os.urandom(6).hex()}"
    sink = driver.open_upload(upload)
    try:
        sink.write([data])
        sink.sync()
        sink.complete()
    finally:
        sink.close()
    driver.publish(upload, key)()
    driver.delete(upload)


def test_read_nowait_serves_cached_bytes(driver: StorageDriver) -> None:
    store(driver, "blobs/sha256/bb/x", PAYLOAD)
    reader = driver.open_read("blobs/sha256/bb/x")
    assert reader is not None
    try:
        reader.read(0, reader.size)  # now in the page cache
        got = reader.read_nowait(100, 1 << 20)
        assert got is None or got == PAYLOAD[100:100 + (1 << 20)]
        assert reader.read_nowait(len(PAYLOAD) - 10, 100) in (None, PAYLOAD[-10:])
    finally:
        reader.close()


def evict(driver: FilesystemDriver, key: str) -> None:
    """Drop a stored file's pages from the page cache, as memory pressure would (or as a direct write leaves it)."""
    fd = os.open(driver.root / key, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_span_waits_for_bytes_that_are_not_cached(fs_driver: StorageDriver) -> None:
    """A range the page cache does not hold is handed over as a file span once read in (the download
    path sends it with sendfile instead of copying it); a range past the end is not."""
    driver = fs_driver
    assert isinstance(driver, FilesystemDriver)
    store(driver, "blobs/sha256/ee/w", PAYLOAD)
    evict(driver, "blobs/sha256/ee/w")
    reader = driver.open_read("blobs/sha256/ee/w")
    assert reader is not None and isinstance(reader, WaitsForSpans)
    try:
        for offset, length in ((0, 1 << 20), (5000, 3 << 20), (len(PAYLOAD) - 100, 100)):
            span = reader.span(offset, length)
            assert span is not None and (span.offset, span.count) == (offset, length)
            assert os.pread(span.fd, span.count, span.offset) == PAYLOAD[offset:offset + length]
            assert reader.span_nowait(offset, length) is not None  # now cached
        assert reader.span(len(PAYLOAD) - 10, 100) is None
    finally:
        reader.close()


def test_keys_cannot_escape_the_root(driver: StorageDriver) -> None:
    for bad in ("../x", "/etc/passwd", "blobs/../../x"):
        with pytest.raises(ValueError):
            driver.stat(bad)


def test_modified_list_delete(driver: StorageDriver) -> None:
    store(driver, "blobs/sha256/cc/y", b"data")
    assert driver.modified("blobs/sha256/cc/y") is not None
    assert driver.modified("blobs/sha256/cc/none") is None
    assert sorted(driver.list("blobs/")) == ["blobs/sha256/cc/y"]
    assert driver.delete("blobs/sha256/cc/y") and not driver.delete("blobs/sha256/cc/y")


def test_publish_replaces_what_is_there(driver: StorageDriver) -> None:
    """Publishing over a key (a crash's leftover, another push's copy) replaces it in one step; the
    key counts as being published until the upload is deleted."""
    store(driver, "blobs/sha256/dd/z", b"left over")
    upload = "uploads/again"
    sink = driver.open_upload(upload)
    try:
        sink.write([b"published"])
        sink.complete()
    finally:
        sink.close()
    driver.publish(upload, "blobs/sha256/dd/z")()
    assert read_all(driver, "blobs/sha256/dd/z") == b"published"
    assert sorted(driver.list("uploads/")) == [upload]  # no temporary name left behind
    assert driver.publishing("blobs/sha256/dd/z")  # until the upload goes
    driver.delete(upload)
    assert not driver.publishing("blobs/sha256/dd/z") and not driver.publishing("blobs/sha256/dd/none")


@pytest.mark.allow_skip(NO_DIRECT_IO)
def test_large_uploads_are_written_with_o_direct(tmp_path: Path) -> None:
    """The driver counts what it wrote each way: past 256 KiB an upload goes to disk with O_DIRECT
    (only its last partial block through the page cache); a driver told not to never does."""
    if (reason := why_no_direct_io(tmp_path / "store")) is not None:
        pytest.skip(reason)
    direct, buffered = FilesystemDriver(tmp_path / "store"), FilesystemDriver(tmp_path / "plain", direct_io=False)
    for driver in (direct, buffered):
        sink = driver.open_upload("uploads/big")
        try:
            sink.write([PAYLOAD[:100_000]])  # small so far: through the page cache
            sink.write([PAYLOAD[100_000:]])
            sink.sync()
        finally:
            sink.close()
        assert read_all(driver, "uploads/big") == PAYLOAD
    written = direct.write_stats()
    assert written["direct_refused"] == 0
    # The small start went through the page cache; from its last whole block on, O_DIRECT; the last
    # partial block through the page cache again, at sync.
    assert written["direct_bytes"] == (len(PAYLOAD) - len(PAYLOAD) % 4096) - (100_000 - 100_000 % 4096)
    assert written["buffered_bytes"] == 100_000 + len(PAYLOAD) % 4096
    assert buffered.write_stats() == {"direct_bytes": 0, "buffered_bytes": len(PAYLOAD), "direct_refused": 0,
                                      "read_back_bytes": 0, "read_back_skipped": 0}
    # Every direct-written block is read back through the page cache, off the writer's thread.
    deadline = time.monotonic() + 30
    while (stats := direct.write_stats())["read_back_bytes"] + stats["read_back_skipped"] < written["direct_bytes"]:
        assert time.monotonic() < deadline, stats
        time.sleep(0.01)
    assert stats["read_back_bytes"] == written["direct_bytes"] and stats["read_back_skipped"] == 0


def test_read_back_can_be_turned_off(tmp_path: Path) -> None:
    """`read_back = false` (NCR_READ_BACK=false): direct writes stay direct, and no block is read back or
    counted as skipped; the default reads them back."""
    from ncr_trio import config as config_module
    from ncr_trio.storage import open_storage

    if (reason := why_no_direct_io(tmp_path / "probe")) is not None:
        pytest.skip(reason)
    off = open_storage(config_module.load(env={"NCR_READ_BACK": "false"}, data_dir=tmp_path / "off"))
    on = open_storage(config_module.load(env={}, data_dir=tmp_path / "on"))
    assert isinstance(off, FilesystemDriver) and off.read_back is False
    assert isinstance(on, FilesystemDriver) and on.read_back is True
    for driver in (off, on):  # in this order: the one read-back thread takes blocks first come, first served
        sink = driver.open_upload("uploads/big")
        try:
            sink.write([PAYLOAD])
            sink.sync()
        finally:
            sink.close()
        assert read_all(driver, "uploads/big") == PAYLOAD
    # Once the default driver's blocks have all been read back, anything offered before them has been too.
    deadline = time.monotonic() + 30
    while (done := on.write_stats())["read_back_bytes"] + done["read_back_skipped"] < done["direct_bytes"]:
        assert time.monotonic() < deadline, done
        time.sleep(0.01)
    stats = off.write_stats()
    assert stats["direct_bytes"] > 0 and stats["read_back_bytes"] == 0 and stats["read_back_skipped"] == 0, stats


def test_open_storage_picks_s3_from_the_settings(tmp_path: Path) -> None:
    """`storage = "s3"` (or a bucket set) opens the S3 driver with the settings from NCR_S3_* variables;
    presigned URLs never outlive 20 minutes, whatever is asked; an unknown storage is refused."""
    from ncr_trio import config as config_module
    from ncr_trio.storage import open_storage

    env = {"NCR_S3_BUCKET": "b", "NCR_S3_ENDPOINT": "http://127.0.0.1:9", "NCR_S3_ACCESS_KEY": "k",
           "NCR_S3_SECRET_KEY": "s", "NCR_S3_PREFIX": "/reg/", "NCR_S3_REDIRECT_SECONDS": "99999"}
    driver = open_storage(config_module.load(env=env, data_dir=tmp_path))
    assert isinstance(driver, S3Driver) and not driver.local
    assert driver.obj("blobs/sha256/aa/x") == "reg/blobs/sha256/aa/x"
    assert driver.obj("uploads/u") == "reg/uploads/u/data"
    url = driver.redirect_url("blobs/sha256/aa/x")
    assert url is not None and url.startswith("http://127.0.0.1:9/b/reg/blobs/sha256/aa/x?")
    assert "X-Amz-Expires=1200" in url
    off = open_storage(config_module.load(env={**env, "NCR_S3_REDIRECT": "false"}, data_dir=tmp_path))
    assert off.redirect_url("blobs/sha256/aa/x") is None
    assert isinstance(open_storage(config_module.load(env={}, data_dir=tmp_path)), FilesystemDriver)
    with pytest.raises(ValueError):
        open_storage(config_module.load(env={"NCR_STORAGE": "tape"}, data_dir=tmp_path))


def test_writes_racing_deletes_in_the_same_directory(driver: StorageDriver) -> None:
    """Two writers publish and delete blobs under the same directory, as two nodes' pushes do while GC
    deletes: no write fails. (versitygw prunes a deleted object's emptied directories, and a write
    linking its file into one at that moment gets ExistingObjectIsDirectory: the driver writes again.)"""
    failures: list[BaseException] = []

    def churn(name: str) -> None:
        try:
            for i in range(60):
                key = f"blobs/sha256/ef/{name}{i % 3}"
                store(driver, key, name.encode())
                assert read_all(driver, key) == name.encode()
                driver.delete(key)
        except BaseException as e:  # noqa: BLE001 (reported below, from the test's thread)
            failures.append(e)

    threads = [threading.Thread(target=churn, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
