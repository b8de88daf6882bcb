"""The replication engine (ncr_trio/replication/copy.py, engine.py) between real registries.

Instance A is a real ncr-trio server; the engine runs in this test's process on A's data directory and
database (as a second worker of A would), with an in-memory Journal (tests/support/journal.py): these
are the engine's own tests, the management side's store and API are tested end to end elsewhere. The
target is a second ncr-trio server B (token auth, the admin's login), reached through the recording
and fault-injecting proxy (tests/support/upstream.py) where a test must see or break what is sent;
CNCF Distribution stands as a foreign target for the push copy. Each test works under its own image
paths (the policy's image filter selects them), so the tests share the servers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ncr_trio.cache.sources import Source
from ncr_trio.cache.upstream import PUSH_CHUNK
from ncr_trio.config import Config
from ncr_trio.registry import RegistryService
from ncr_trio.replication.copy import LocalSide
from ncr_trio.replication.engine import Replicator
from ncr_trio.replication.model import FINISHED, Execution, Policy, Task
from tests.support.journal import MemoryJournal, policy
from tests.support.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    canonical,
    descriptor,
    digest,
    image,
    push_image,
    push_test_image,
    upload_blob,
)
from tests.support.server import ADMIN_PASSWORD, ADMIN_USER, Distribution, Server, free_port, tool
from tests.support.upstream import Fault, Upstream

MiB = 1 << 20


@dataclass
class Pair:
    a: Server
    b: Server
    root: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("replication")
    a = Server(data=root / "a").start()
    try:
        b = Server(data=root / "b").start()
        try:
            yield Pair(a, b, root)
        finally:
            b.stop()
    finally:
        a.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def ncr_source(url: str, name: str = "b") -> Source:
    return Source(name=name, type="ncr", url=url, access_id=ADMIN_USER, access_secret=ADMIN_PASSWORD)


def make_image(layers: list[bytes], seed: str = "") -> Image:
    config = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                        "seed": seed or os.urandom(8).hex()})
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor(OCI_LAYER, b) for b in layers]}
    return Image(config, layers, canonical(doc))


def head(server_client: httpx.Client, repo: str, ref: str) -> str | None:
    r = server_client.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    return r.headers["docker-content-digest"] if r.status_code == 200 else None


@asynccontextmanager
async def engine(pair: Pair, journal: MemoryJournal, remotes: dict[str, Source], **kw: Any
                 ) -> AsyncIterator[Replicator]:
    """A Replicator serving in this process on A's data and database."""
    config = Config(data_dir=pair.a.data, replication_allowed_networks=("127.0.0.1/32",),
                    replication_timeout_seconds=20.0)
    service = await trio.to_thread.run_sync(RegistryService.open, config)
    local = LocalSide(service.reg, service.blobs, service.uploads, service.manifests)

    async def source_of(name: str) -> Source | None:
        return remotes.get(name)

    rep = Replicator(journal, local, source_of, config, poll=0.1, stop_poll=0.2, **kw)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(rep.serve)
            yield rep
            nursery.cancel_scope.cancel()
    finally:
        await rep.aclose()
        service.close()


async def finished(journal: MemoryJournal, execution_id: int, timeout: float = 180) -> Execution:
    with trio.fail_after(timeout):
        while journal.executions[execution_id].status not in FINISHED:
            await trio.sleep(0.05)
    return journal.executions[execution_id]


async def run(rep: Replicator, journal: MemoryJournal, p: Policy) -> tuple[Execution, list[Task]]:
    journal.add_policy(p)
    eid = await rep.run(p, "manual")
    assert eid is not None
    e = await finished(journal, eid)
    return e, journal.tasks_of(eid)


def uploads(up: Upstream) -> list[Any]:
    return [s for s in up.traffic().requests if "/blobs/uploads/" in s.path]


# -- the copy -----------------------------------------------------------------------------------------------------


async def test_a_push_copy_arrives_with_the_same_digest_and_is_not_copied_twice(pair: Pair) -> None:
    path = unique("push")
    with pair.a.client() as a:
        pushed = push_test_image(a, f"a/{path}/app", "v1", [300_000, 2 * MiB + 7])
    journal = MemoryJournal()
    p = policy(name_filter=f"{path}/**")
    async with engine(pair, journal, {"b": ncr_source(pair.b.url)}) as rep:
        e, tasks = await run(rep, journal, p)
        assert e.status == "Succeeded", e
        assert [(t.source, t.target, t.digest, t.status) for t in tasks] == \
            [(f"a/{path}/app:v1", f"a/{path}/app:v1", pushed.digest, "Succeeded")]
        assert tasks[0].bytes >= sum(len(b) for b in pushed.blobs.values())
        with pair.b.client() as b:
            assert head(b, f"a/{path}/app", "v1") == pushed.digest
            for d, blob in pushed.blobs.items():
                assert b.get(f"/v2/a/{path}/app/blobs/{d}").content == blob
        # Already there: skipped, nothing sent.
        e, tasks = await run(rep, journal, p)
        assert e.status == "Succeeded" and (e.copied, e.skipped) == (0, 1)
        assert [(t.status, t.error, t.bytes) for t in tasks] == [("Skipped", "already present", 0)]


async def test_a_push_copy_to_cncf_distribution(pair: Pair) -> None:
    dist = Distribution(root=pair.root / unique("dist"), binary=tool("registry-v3")).start()
    try:
        path = unique("foreign")
        with pair.a.client() as a:
            pushed = push_test_image(a, f"a/{path}/app", "v1", [1 * MiB, PUSH_CHUNK + 3])  # a PATCH, then the PUT
        journal = MemoryJournal()
        remote = Source(name="dist", type="registry", url=dist.url)
        async with engine(pair, journal, {"dist": remote}) as rep:
            p = policy(remote="dist", remote_namespace="mirror", name_filter=f"{path}/**")
            e, tasks = await run(rep, journal, p)
        assert e.status == "Succeeded", (e, tasks)
        with httpx.Client(base_url=dist.url, timeout=30) as d:
            assert head(d, f"mirror/{path}/app", "v1") == pushed.digest
            for dg, blob in pushed.blobs.items():
                assert d.get(f"/v2/mirror/{path}/app/blobs/{dg}").content == blob
    finally:
        dist.stop()


async def test_shared_layers_send_only_new_blobs_and_a_blob_of_another_repository_is_mounted(pair: Pair) -> None:
    path = unique("share")
    base = [os.urandom(1 * MiB), os.urandom(1 * MiB + 1)]
    first, second = make_image(base), make_image([*base, os.urandom(512 * 1024)])
    with pair.a.client() as a:
        push_image(a, f"a/{path}/one", first, "v1", upload=upload_blob)
        push_image(a, f"a/{path}/two", second, "v1", upload=upload_blob)
    journal = MemoryJournal()
    with Upstream(target=pair.b.url).start() as up:
        async with engine(pair, journal, {"b": ncr_source(up.url)}) as rep:
            e, _ = await run(rep, journal, policy(name_filter=f"{path}/one"))
            assert e.status == "Succeeded"
            up.reset()
            e, tasks = await run(rep, journal, policy(name_filter=f"{path}/*"))
        assert e.status == "Succeeded" and (e.copied, e.skipped) == (1, 1), tasks
        log = uploads(up)
        mounts = [s for s in log if "mount=" in s.path]
        assert sorted(s.path.split("mount=")[1].split("&")[0].replace("%3A", ":") for s in mounts) == \
            sorted(digest(b) for b in base)
        assert all(s.status == 201 for s in mounts) and all(f"from=a%2F{path}%2Fone" in s.path or
                                                            f"from=a/{path}/one" in s.path for s in mounts)
        sent = sum(s.received for s in log)
        assert sent == len(second.config) + len(second.layers[2]), sent  # only the new blobs travelled
    with pair.b.client() as b:
        assert head(b, f"a/{path}/two", "v1") == second.digest
        assert b.get(f"/v2/a/{path}/two/blobs/{digest(base[0])}").content == base[0]


@pytest.mark.parametrize("direction", ["push", "pull"])
async def test_a_blob_another_process_placed_is_mounted_not_sent_again(pair: Pair, direction: str) -> None:
    """The run that put the shared layers at the target was another engine's (another worker's, or this
    one's before a restart): its memory of where blobs went is gone, the databases still tell."""
    path = unique(f"placed-{direction}")
    base = [os.urandom(1 * MiB), os.urandom(1 * MiB + 1)]
    first, second = make_image(base), make_image([*base, os.urandom(300_000)])
    source = pair.a if direction == "push" else pair.b
    with source.client() as c:
        push_image(c, f"a/{path}/one", first, "v1", upload=upload_blob)
        push_image(c, f"a/{path}/two", second, "v1", upload=upload_blob)
    with Upstream(target=pair.b.url).start() as up:
        remotes = {"b": ncr_source(up.url)}
        journal = MemoryJournal()
        async with engine(pair, journal, remotes) as rep:
            e, _ = await run(rep, journal, policy(direction=direction, name_filter=f"{path}/one"))
            assert e.status == "Succeeded"
        up.reset()
        journal = MemoryJournal()
        async with engine(pair, journal, remotes) as rep:  # a new process: nothing remembered
            e, tasks = await run(rep, journal, policy(direction=direction, name_filter=f"{path}/two"))
        assert e.status == "Succeeded" and e.copied == 1, tasks
        traffic = up.traffic()
    if direction == "push":
        log = [s for s in traffic.requests if "/blobs/uploads/" in s.path]
        mounts = sorted(s.path.split("mount=")[1].split("&")[0].replace("%3A", ":") for s in log if "mount=" in s.path)
        assert mounts == sorted(digest(b) for b in base), [s.path for s in log]
        assert sum(s.received for s in log) == len(second.config) + len(second.layers[2])
    else:  # mounted here, from the repository the first pull wrote: only the new blobs are read from B
        fetched = sorted(s.path.rsplit("/", 1)[1] for s in traffic.requests if s.method == "GET" and s.kind == "blob")
        assert fetched == sorted([digest(second.config), digest(second.layers[2])])
    target = pair.b if direction == "push" else pair.a
    with target.client() as c:
        assert head(c, f"a/{path}/two", "v1") == second.digest
        assert c.get(f"/v2/a/{path}/two/blobs/{digest(base[0])}").content == base[0]


async def test_override_off_leaves_a_differing_tag_and_on_replaces_it(pair: Pair) -> None:
    path = unique("override")
    ours, theirs = image(f"{path}-ours"), image(f"{path}-theirs")
    with pair.a.client() as a:
        push_image(a, f"a/{path}/app", ours, "v1")
    with pair.b.client() as b:
        push_image(b, f"a/{path}/app", theirs, "v1")
    journal = MemoryJournal()
    async with engine(pair, journal, {"b": ncr_source(pair.b.url)}) as rep:
        e, tasks = await run(rep, journal, policy(name_filter=f"{path}/**"))
        assert e.status == "Succeeded" and e.skipped == 1
        assert [(t.status, t.error) for t in tasks] == [("Skipped", "v1 differs at the target; override is off")]
        with pair.b.client() as b:
            assert head(b, f"a/{path}/app", "v1") == theirs.digest
        e, tasks = await run(rep, journal, policy(name_filter=f"{path}/**", override=True))
        assert e.status == "Succeeded" and e.copied == 1, tasks
    with pair.b.client() as b:
        assert head(b, f"a/{path}/app", "v1") == ours.digest


async def test_deleting_at_the_source_never_deletes_at_the_target(pair: Pair) -> None:
    path = unique("keep")
    img = image(path, layers=2)
    with pair.a.client() as a:
        push_image(a, f"a/{path}/app", img, "v1")
    journal = MemoryJournal()
    with Upstream(target=pair.b.url).start() as up:
        async with engine(pair, journal, {"b": ncr_source(up.url)}) as rep:
            e, _ = await run(rep, journal, policy(name_filter=f"{path}/**"))
            assert e.status == "Succeeded"
            with pair.a.client() as a:
                assert a.delete(f"/v2/a/{path}/app/manifests/v1").status_code == 202
                assert a.delete(f"/v2/a/{path}/app/manifests/{img.digest}").status_code == 202
            e, tasks = await run(rep, journal, policy(name_filter=f"{path}/**"))
            assert e.status == "Succeeded" and tasks == []
        assert not [s for s in up.traffic().requests if s.method == "DELETE"]
    with pair.b.client() as b:
        assert head(b, f"a/{path}/app", "v1") == img.digest


async def test_a_dropped_upload_resumes_from_the_targets_offset_and_the_manifest_comes_last(pair: Pair) -> None:
    path = unique("resume")
    layer = os.urandom(64 * MiB)
    img = make_image([layer])  # the config travels in its PUT: every PATCH is the layer's
    assert 3 * PUSH_CHUNK <= len(layer), "the test wants the layer in 4 chunks or more"
    with pair.a.client() as a:
        push_image(a, f"a/{path}/big", img, "v1", upload=upload_blob)
    journal = MemoryJournal()
    with Upstream(target=pair.b.url).start() as up:
        # the layer's 2nd PATCH is cut after 5 MiB: the connection drops one chunk and 5 MiB into the layer
        up.faults(Fault("other", method="PATCH", cut_request_after=5 * MiB, after=1, times=1))
        async with engine(pair, journal, {"b": ncr_source(up.url)}) as rep:
            e, tasks = await run(rep, journal, policy(name_filter=f"{path}/**"))
        assert e.status == "Succeeded", (e, tasks)
        assert tasks[0].attempts >= 2
        requests = up.traffic().requests
    layer_uploads = [s for s in requests if "/blobs/uploads/" in s.path]
    cut = [s for s in layer_uploads if s.method == "PATCH" and s.status is None]
    assert len(cut) == 1 and cut[0].received == 5 * MiB
    # it asked the target how far it got, and went on from there: only the cut chunk is sent again
    assert [s.method for s in layer_uploads].count("GET") == 1
    sent = sum(s.received for s in layer_uploads)
    assert sent < 1.2 * len(layer) + len(img.config), sent
    # the manifest after every blob's upload
    manifest_puts = [i for i, s in enumerate(requests) if s.method == "PUT" and s.kind == "manifest"]
    assert len(manifest_puts) == 1
    assert max(i for i, s in enumerate(requests) if "/blobs/uploads/" in s.path) < manifest_puts[0]
    with pair.b.client() as b:
        assert head(b, f"a/{path}/big", "v1") == img.digest
        r = b.head(f"/v2/a/{path}/big/blobs/{digest(layer)}")
        assert r.status_code == 200 and int(r.headers["content-length"]) == len(layer)


async def test_a_dead_remote_fails_the_run_and_a_later_run_copies_only_what_is_missing(pair: Pair) -> None:
    path = unique("dead")
    first, second = image(f"{path}-1"), image(f"{path}-2")
    with pair.a.client() as a:
        push_image(a, f"a/{path}/app", first, "v1")
    journal = MemoryJournal()
    with Upstream(target=pair.b.url).start() as up:
        async with engine(pair, journal, {"b": ncr_source(up.url),
                                          "nowhere": ncr_source(f"http://127.0.0.1:{free_port()}", "nowhere")}) as rep:
            e, _ = await run(rep, journal, policy(name_filter=f"{path}/**"))
            assert e.status == "Succeeded"
            with pair.a.client() as a:
                push_image(a, f"a/{path}/app", second, "v2")
            e, tasks = await run(rep, journal, policy(remote="nowhere", name_filter=f"{path}/**"))
            assert e.status == "Failed" and "cannot be reached" in e.detail and tasks == []
            up.unreachable()
            e, tasks = await run(rep, journal, policy(name_filter=f"{path}/**"))
            assert e.status == "Failed" and "cannot be reached" in e.detail
            up.reachable()
            e, tasks = await run(rep, journal, policy(name_filter=f"{path}/**"))
        assert e.status == "Succeeded"
        assert sorted((t.target.rsplit(":", 1)[1], t.status) for t in tasks) == [("v1", "Skipped"), ("v2", "Succeeded")]
    with pair.b.client() as b:
        assert head(b, f"a/{path}/app", "v2") == second.digest


async def test_a_pull_copy_writes_through_the_local_push_path(pair: Pair) -> None:
    path = unique("pull")
    with pair.b.client() as b:
        pushed = push_test_image(b, f"a/{path}/app", "v1", [700_000])
    journal = MemoryJournal()
    async with engine(pair, journal, {"b": ncr_source(pair.b.url)}) as rep:
        e, tasks = await run(rep, journal, policy(direction="pull", name_filter=f"{path}/**"))
    assert e.status == "Succeeded" and e.copied == 1, tasks
    with pair.a.client() as a:
        assert head(a, f"a/{path}/app", "v1") == pushed.digest
        for d, blob in pushed.blobs.items():
            assert a.get(f"/v2/a/{path}/app/blobs/{d}").content == blob
    # A's own records show the tag, as after a client's push
    images = pair.a.api().doc("api.images", registry="a")["images"]
    assert any(i["name"] == f"{path}/app" for i in images)


async def test_a_pull_resumes_a_broken_download_from_what_the_local_session_acknowledged(pair: Pair) -> None:
    path = unique("pull-resume")
    layer = os.urandom(40 * MiB)
    img = make_image([layer])
    with pair.b.client() as b:
        push_image(b, f"a/{path}/app", img, "v1", upload=upload_blob)
    journal = MemoryJournal()
    with Upstream(target=pair.b.url).start() as up:
        # cut 20 MiB into the layer
        up.faults(Fault("blob", method="GET", truncate=20 * MiB, times=1, path=digest(layer)))
        async with engine(pair, journal, {"b": ncr_source(up.url)}) as rep:
            e, tasks = await run(rep, journal, policy(direction="pull", name_filter=f"{path}/**"))
        assert e.status == "Succeeded" and tasks[0].attempts >= 2, (e, tasks)
        traffic = up.traffic()
    ranged = [s.range for s in traffic.requests if s.method == "GET" and s.kind == "blob" and s.range]
    assert ranged == [f"bytes={16 * MiB}-"]  # from the 16 MiB the local session had acknowledged
    assert traffic.blob_bytes < 1.2 * len(layer) + len(img.config)
    with pair.a.client() as a:
        assert head(a, f"a/{path}/app", "v1") == img.digest
        assert a.get(f"/v2/a/{path}/app/blobs/{digest(layer)}").content == layer


async def test_a_multi_platform_index_and_its_signature_and_referrer_replicate_together(pair: Pair) -> None:
    path = unique("multi")
    repo = f"a/{path}/app"
    with pair.a.client() as a:
        pushed = push_test_image(a, repo, "v1", [100_000], platforms=[("linux", "amd64"), ("linux", "arm64")])
        subject = descriptor(OCI_INDEX, pushed.manifest)
        sbom = image(f"{path}-sbom", subject=subject, artifact_type="application/spdx+json")
        push_image(a, repo, sbom, sbom.digest)
        sig = image(f"{path}-sig")
        sig_tag = pushed.digest.replace(":", "-") + ".sig"
        push_image(a, repo, sig, sig_tag)
    journal = MemoryJournal()
    async with engine(pair, journal, {"b": ncr_source(pair.b.url)}) as rep:
        e, tasks = await run(rep, journal, policy(name_filter=f"{path}/**"))
    assert e.status == "Succeeded", tasks
    assert [t.target for t in tasks] == [f"{repo}:v1"]  # the signature's tag travels with its subject
    with pair.b.client() as b:
        assert head(b, repo, "v1") == pushed.digest
        for img in pushed.images:
            assert head(b, repo, img.digest) == img.digest
        assert head(b, repo, sig_tag) == sig.digest
        referrers = b.get(f"/v2/{repo}/referrers/{pushed.digest}").json()["manifests"]
        assert [r["digest"] for r in referrers] == [sbom.digest]


async def test_an_event_run_copies_exactly_the_pending_tags(pair: Pair) -> None:
    path = unique("event")
    one, two = image(f"{path}-1"), image(f"{path}-2")
    with pair.a.client() as a:
        push_image(a, f"a/{path}/app", one, "v1")
        push_image(a, f"a/{path}/app", two, "v2")
    journal = MemoryJournal()
    p = journal.add_policy(policy(trigger="event", name_filter=f"{path}/**"))
    async with engine(pair, journal, {"b": ncr_source(pair.b.url)}):
        journal.tag_created(f"a/{path}/app", "v2", two.digest)
        with trio.fail_after(60):
            while not journal.executions or any(e.status not in FINISHED for e in journal.executions.values()):
                await trio.sleep(0.05)
    (e,) = journal.executions.values()
    assert (e.policy_id, e.trigger, e.status, e.copied) == (p.id, "event", "Succeeded", 1)
    assert [t.target for t in journal.tasks_of(e.id)] == [f"a/{path}/app:v2"] and not journal.rows
    with pair.b.client() as b:
        assert head(b, f"a/{path}/app", "v2") == two.digest and head(b, f"a/{path}/app", "v1") is None


@pytest.mark.parametrize("how", ["here", "another worker"])
async def test_stop_ends_a_long_run_stopped(pair: Pair, how: str) -> None:
    path = unique("stop")
    with pair.a.client() as a:
        push_test_image(a, f"a/{path}/app", "v1", [16 * MiB])
    journal = MemoryJournal()
    p = journal.add_policy(policy(name_filter=f"{path}/**", bandwidth_kbps=512))  # 32 s at this rate
    async with engine(pair, journal, {"b": ncr_source(pair.b.url)}) as rep:
        eid = await rep.run(p, "manual")
        assert eid is not None
        assert await rep.run(p, "manual") is None  # one run of a policy at a time
        with trio.fail_after(30):
            while not journal.tasks_of(eid):
                await trio.sleep(0.05)
        await trio.sleep(0.5)
        if how == "here":
            await rep.stop(eid)
        else:
            journal.request_stop(eid)
        e = await finished(journal, eid, timeout=10)
    assert e.status == "Stopped"
    assert [t.status for t in journal.tasks_of(eid)] == ["Stopped"]
    with pair.b.client() as b:
        assert head(b, f"a/{path}/app", "v1") is None
