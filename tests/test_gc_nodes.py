"""GC on one node against pushes on another: the database, not a lock file on one machine, decides.

Two "nodes" share one PostgreSQL database and one blob store (in production a shared filesystem;
here the second node's `blobs/` and `uploads/` are symlinks to the first's), and nothing else:
each has its own data directory, so what one node keeps on its local disk (lock files, keys) the
other never sees. The invariant under test: a blob a node acknowledged (201) and that is still
linked is readable with its bytes, whatever another node's GC did at the same moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.registry import RegistryService
from ncr_trio.storage import StorageDriver, blob_key
from ncr_trio.types import Digest
from tests.support.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, canonical, descriptor, digest, push_manifest
from tests.support.postgres import PostgresServer
from tests.support.postgres import postgres_server as _postgres_server
from tests.support.server import Server

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    with _postgres_server() as server:
        yield server


def two_nodes(tmp_path: Path) -> tuple[Path, Path]:
    """Data directories of two nodes that share the blob store (blobs/ and uploads/), nothing else."""
    a, b = tmp_path / "node-a", tmp_path / "node-b"
    for sub in ("blobs", "uploads"):
        (a / sub).mkdir(parents=True)
    b.mkdir()
    for sub in ("blobs", "uploads"):
        (b / sub).symlink_to(a / sub, target_is_directory=True)
    return a, b


# -- a deterministic interleaving: the other node's GC at every step of a push ------------------------
class PausingStorage:
    """The real storage driver, which, once armed with n, holds the worker thread that reaches the
    n-th point from then until released. Points are before and after each call (calls from worker
    threads only: the Trio thread, which reads the page cache inline, is never held)."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()
        self._armed: tuple[int, trio.lowlevel.TrioToken, trio.Event] | None = None
        self._points = 0
        self._release = threading.Event()

    def arm(self, n: int) -> trio.Event:
        """Hold the n-th point (0: before the first call); the event is set when a thread is held there."""
        reached = trio.Event()
        with self._lock:
            self._armed, self._points = (n, trio.lowlevel.current_trio_token(), reached), 0
        self._release.clear()
        return reached

    def release(self) -> None:
        with self._lock:
            self._armed = None
        self._release.set()

    def _point(self) -> None:
        if threading.current_thread() is threading.main_thread():
            return
        with self._lock:
            if self._armed is None:
                return
            n, token, reached = self._armed
            self._points += 1
            if self._points != n + 1:
                return
        token.run_sync_soon(reached.set)
        assert self._release.wait(60), "never released"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._point()
            try:
                return attr(*args, **kwargs)
            finally:
                self._point()

        return call


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _push(service: RegistryService, repository: str, data: bytes) -> str:
    d = digest(data)
    assert await service.uploads.monolithic(repository, Digest.parse(d), _body(data), len(data)) == len(data)
    return d


async def _read(service: RegistryService, repository: str, d: str) -> bytes | None:
    """The blob's bytes if `repository` links it and they can be read, else None."""
    try:
        blob = await service.blobs.open(repository, Digest.parse(d))
    except RegistryError:
        return None
    return b"".join([bytes(c) async for c in blob.stream(0, blob.size - 1, service.disk)])  # type: ignore[arg-type]


async def _linked(service: RegistryService, repository: str, d: str) -> bool:
    try:
        await service.blobs.size(repository, Digest.parse(d))
    except RegistryError:
        return False
    return True


async def _first(*waits: Callable[[], Any]) -> None:
    """Return as soon as one of the functions' awaitables completes."""
    async with trio.open_nursery() as nursery:
        async def one(wait: Callable[[], Any]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for w in waits:
            nursery.start_soon(one, w)


async def _waiting_for_a_lock(service: RegistryService) -> None:
    """Return once some session of the database waits for a lock (the collector, held up by the
    push's transaction): polled, bounded by the caller's deadline."""
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
           "AND wait_event_type = 'Lock'")
    while True:
        row = await service.meta.db.read(lambda tx: tx.one(sql))
        if row and int(row[0]) > 0:
            return
        await trio.sleep(0.01)


async def _push_held_at(point: int, a: RegistryService, b: RegistryService, gate: PausingStorage, data: bytes,
                        cutoff: float | None) -> object | None:
    """Push `data` on B, held at `point` while A collects garbage as of `cutoff` (now if None), or
    until A's GC waits for B's transaction; returns the push's outcome (its digest or its error), or
    None if the push had no such point."""
    reached = gate.arm(point)
    outcome: list[object] = []
    pushed, collected = trio.Event(), trio.Event()

    async def push() -> None:
        try:
            outcome.append(await _push(b, "gc/b", data))
        except Exception as e:  # the caller reports it, with the point
            outcome.append(e)
        pushed.set()

    async def collect() -> None:
        await a.gc.run(now=cutoff)
        collected.set()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(push)
            await _first(reached.wait, pushed.wait)
            if reached.is_set():
                nursery.start_soon(collect)
                await _first(collected.wait, lambda: _waiting_for_a_lock(a))
            gate.release()
    return outcome[0] if reached.is_set() else None


def _leave_over(service: RegistryService, d: str, data: bytes) -> None:
    """What a crash between storing and recording a blob leaves: its file, no row, no upload."""
    upload = f"uploads/crashed-{d[7:19]}"
    sink = service.reg.storage.open_upload(upload)
    try:
        sink.write([data])
        sink.sync()
    finally:
        sink.close()
    service.reg.storage.publish(upload, blob_key(Digest.parse(d)))()
    service.reg.storage.delete(upload)


@pytest.mark.parametrize("stored", ["garbage", "leftover", "nothing"])
async def test_gc_at_every_step_of_a_push_on_another_node(postgres_server: PostgresServer, tmp_path: Path,
                                                          stored: str) -> None:
    """Node B pushes a blob while node A's GC could collect it: the blob is stored already but is
    garbage (B deduplicates against it), or a crash left its file without a row, or nothing is stored
    yet (B's own copy, until recorded, is a file without a row). B is held at each point of its push
    in turn (before and after each storage call) while A runs a whole GC pass with no grace, or until
    A's GC waits for B's transaction; then B goes on. Whatever the point, B's push succeeds, and a blob B links is there
    with its bytes; when it was garbage, A cannot have taken it from B."""
    a_dir, b_dir = two_nodes(tmp_path)
    with postgres_server.database(f"ncr_nodes_{stored}") as url:
        a = RegistryService.open(Config(data_dir=a_dir, database_url=url, gc_grace_seconds=0))
        b = RegistryService.open(Config(data_dir=b_dir, database_url=url))
        gate = PausingStorage(b.reg.storage)
        b.reg.storage = gate  # type: ignore[assignment]
        try:
            for point in range(40):
                data = f"{stored} at point {point} ".encode() * 200
                d = digest(data)
                cutoff = None  # A may collect all that is there when B is held: B's own file too
                if stored == "garbage":
                    await _push(a, "gc/a", data)
                    await a.blobs.delete("gc/a", Digest.parse(d))
                    cutoff = time.time()  # A may collect the blob, unless B's push renews it
                elif stored == "leftover":
                    _leave_over(a, d, data)
                outcome = await _push_held_at(point, a, b, gate, data, cutoff)
                if outcome is None:
                    break  # the push has fewer points: each one was tried
                assert outcome == d, f"point {point}: B's push failed: {outcome!r}"
                if stored == "garbage":
                    assert await _linked(b, "gc/b", d), f"point {point}: A collected the blob B had just pushed"
                if await _linked(b, "gc/b", d):
                    assert await _read(b, "gc/b", d) == data, f"point {point}: B links {d}, its file is gone"
            else:
                raise AssertionError("a push should have only a few points")
            assert point >= 6, "the push was held at only a few points"
        finally:
            a.close()
            b.close()


# -- two server processes, GC looping with no grace against pushes of the same layers ----------------
CYCLES = 600
SECONDS = 40.0
LAYERS = 4


def _push_blob(c: httpx.Client, repo: str, data: bytes) -> None:
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest(data)}, content=data,
               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


def _manifest(config: bytes, layer: bytes) -> bytes:
    return canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                      "layers": [descriptor(OCI_LAYER, layer)]})


def test_gc_on_one_server_against_pushes_on_another(postgres_server: PostgresServer, tmp_path: Path) -> None:
    """Server A collects garbage in a loop with no grace while server B pushes the same few layers
    over and over: push a layer (201), put a manifest that uses it, check the layer, delete the
    manifest and the layer's link, so that the layer is garbage again at once and B's next push of it
    races A's GC taking it. A manifest PUT that succeeds proves the layer was still linked; it must
    then be readable with its bytes. At the end, every layer still linked is readable too."""
    a_dir, b_dir = two_nodes(tmp_path)
    with postgres_server.database("ncr_nodes_e2e") as url:
        env = {"NCR_DATABASE_URL": url, "NCR_GC_INTERVAL_SECONDS": "0"}
        a = Server(data=a_dir, env={**env, "NCR_GC_GRACE_SECONDS": "0"}).start()
        b = Server(data=b_dir, env=env).start()
        repo = "gc/nodes"
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layers = [f"layer {k} ".encode() * 400 for k in range(LAYERS)]
        stop = threading.Event()
        missing: list[str] = []
        counts = {"checked": 0, "refused": 0, "gc_runs": 0, "gc_blobs": 0}
        errors: list[BaseException] = []

        def guarded(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except BaseException as e:
                    errors.append(e)
                    stop.set()
            return run

        def collector() -> None:
            while not stop.is_set():
                r = a.call("POST", "/gc", json={})
                assert r.status_code == 200, r.text
                counts["gc_runs"] += 1
                counts["gc_blobs"] += r.json()["blobs_removed"]

        def pusher() -> None:
            deadline = time.monotonic() + SECONDS
            with b.client() as c:
                for i in range(CYCLES):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    layer = layers[i % LAYERS]
                    d, manifest = digest(layer), _manifest(config, layer)
                    _push_blob(c, repo, layer)
                    r = push_manifest(c, repo, "v1", manifest)
                    if r.status_code == 404:  # A collected the layer's fresh link first: a fair refusal
                        assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
                        counts["refused"] += 1
                        continue
                    assert r.status_code == 201, r.text
                    got = c.get(f"/v2/{repo}/blobs/{d}")
                    counts["checked"] += 1
                    if got.status_code != 200 or got.content != layer:
                        missing.append(f"cycle {i}: {d}: {got.status_code}")
                        stop.set()
                    assert c.delete(f"/v2/{repo}/manifests/{digest(manifest)}").status_code == 202
                    assert c.delete(f"/v2/{repo}/blobs/{d}").status_code in (202, 404)

        try:
            with b.client() as c:
                # The config stays in use by a tagged manifest, pushed before GC starts (with no grace, GC
                # may fairly take a blob no manifest uses yet): only the layers come and go.
                _push_blob(c, repo, config)
                assert push_manifest(c, repo, "base", _manifest(config, config)).status_code == 201
            threads = [threading.Thread(target=guarded(collector)), threading.Thread(target=guarded(pusher))]
            for t in threads:
                t.start()
            threads[1].join()
            stop.set()
            threads[0].join()
            if errors:
                raise errors[0]
            print(counts)
            assert missing == [], f"acknowledged blobs gone after {counts}: {missing}"
            assert counts["checked"] > 0 and counts["gc_blobs"] > 0, counts
            with b.client() as c:  # what is still linked is readable
                for layer in [config, *layers]:
                    if c.head(f"/v2/{repo}/blobs/{digest(layer)}").status_code == 200:
                        assert c.get(f"/v2/{repo}/blobs/{digest(layer)}").content == layer
        except BaseException:
            print(a.log()[-3000:], b.log()[-3000:])
            raise
        finally:
            stop.set()
            a.stop()
            b.stop()
