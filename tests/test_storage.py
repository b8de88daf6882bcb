"""One suite for storage drivers: every driver must keep bytes exactly, whatever the chunking."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncr_trio.registry.blobs import WaitsForSpans
from ncr_trio.storage import FilesystemDriver, StorageDriver
from tests.support.storage import NO_DIRECT_IO, why_no_direct_io

DRIVERS = ["filesystem-direct", "filesystem-buffered"]


def make_driver(kind: str, root: Path) -> StorageDriver:
    return FilesystemDriver(root, direct_io=kind == "filesystem-direct")


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    yield make_driver(request.param, tmp_path / "store")


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
    st.lists(st.sampled_from([0, 1, 7, 4095, 4096, 4097, 65536, 200_000, 1 << 20, (4 << 20) + 3]), min_size=1, max_size=6),
    min_size=1, max_size=5,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests_strategy, sync_each=st.booleans())
def test_upload_bytes_survive_any_chunking(driver: StorageDriver, requests: list[list[int]], sync_each: bool) -> None:
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
        finally:
            sink.close()
    blob = f"blobs/sha256/aa/{os.urandom(8).hex()}"
    driver.publish(key, blob)()  # put in place, then make durable
    assert driver.stat(blob) == len(expected)
    assert read_all(driver, blob) == bytes(expected)
    assert driver.stat(key) == len(expected)  # the upload stays until the caller deletes it


def test_truncate_drops_unacknowledged_bytes(driver: StorageDriver) -> None:
    key = "uploads/trunc"
    sink = driver.open_upload(key)
    sink.write([PAYLOAD[:10000]])
    sink.sync()
    sink.write([PAYLOAD[10000:20000]])  # never acknowledged
    sink.flush()
    sink.close()
    sink = driver.open_upload(key)
    sink.truncate(10000)
    assert sink.size() == 10000
    sink.write([b"tail"])
    chunks = list(sink.read_chunks(4096))
    sink.close()
    assert b"".join(chunks) == PAYLOAD[:10000] + b"tail"


def store(driver: StorageDriver, key: str, data: bytes) -> None:
    """A blob the way the registry stores one: appended to an upload, published, made durable."""
    upload = f"uploads/{os.urandom(6).hex()}"
    sink = driver.open_upload(upload)
    try:
        sink.write([data])
        sink.sync()
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


def test_span_waits_for_bytes_that_are_not_cached(driver: StorageDriver) -> None:
    """A range the page cache does not hold is handed over as a file span once read in (the download
    path sends it with sendfile instead of copying it); a range past the end is not."""
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
    assert buffered.write_stats() == {"direct_bytes": 0, "buffered_bytes": len(PAYLOAD), "direct_refused": 0}
