"""The image cache's pull-through (ncr_trio/cache/proxy.py) against real registries on 127.0.0.1.

The source is CNCF Distribution 2.8.2 (anonymous), behind the loopback upstream of tests/support/upstream.py,
which counts what ncr-trio asks the source and misbehaves on demand (429, 500, trickle, truncate, corrupt).
ncr-trio pulls through it from a cache-type registry `hub` with an image cache `up` of type "registry".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.oci import OCI_MANIFEST, canonical, descriptor, push_manifest, upload_blob
from tests.support.receivers import Receiver
from tests.support.server import Distribution, Server
from tests.support.upstream import Fault, Upstream

MiB = 1 << 20
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                             "application/vnd.docker.distribution.manifest.v2+json",
                             "application/vnd.docker.distribution.manifest.list.v2+json"])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cache_env(up: Upstream, **settings: str) -> dict[str, str]:
    """ncr-trio settings that let an image cache reach the loopback upstream."""
    env = {"NCR_CACHE_ALLOWED_NETWORKS": "127.0.0.0/8", "NCR_CACHE_ALLOWED_PORTS": f"80,443,{up.port}"}
    env.update({f"NCR_{k.upper()}": v for k, v in settings.items()})
    return env


def make_cache(server: Server, up: Upstream, cache: str = "up", registry: str = "hub", kind: str = "registry") -> None:
    api = server.api()
    api.call("api.cache.create", {"name": cache, "type": kind, "url": up.url, "access_id": "", "access_secret": ""})
    api.call("api.registry.create", {"name": registry, "cache": cache})


def push_source_image(dist: Distribution, repo: str, tag: str, layers: list[bytes], seed: str) -> tuple[str, bytes]:
    """An image at the source; returns (manifest digest, manifest)."""
    config = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                        "seed": seed})
    with httpx.Client(base_url=dist.url, timeout=120) as c:
        for blob in [config, *layers]:
            upload_blob(c, repo, blob)
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": descriptor("application/vnd.oci.image.config.v1+json", config),
               "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", b) for b in layers]}
        body = canonical(doc)
        r = push_manifest(c, repo, tag, body)
        assert r.status_code == 201, r.text
    return sha(body), body


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    dist = Distribution(root=tmp_path_factory.mktemp("source")).start()
    yield dist
    dist.stop()


@pytest.fixture
def up(source: Distribution) -> Iterator[Upstream]:
    with Upstream(target=source.url).start() as u:
        yield u


@contextlib.contextmanager
def cache_server(tmp_path: Path, up: Upstream, *args: str, cache: str = "up", registry: str = "hub",
                 kind: str = "registry", **settings: str) -> Iterator[Server]:
    """An ncr-trio (command-line `args`, `settings` as NCR_* variables) with an image cache of `up`."""
    s = Server(data=tmp_path / "ncr", registries=(), env=cache_env(up, **settings), extra_args=list(args)).start()
    try:
        make_cache(s, up, cache, registry, kind)
        yield s
    finally:
        s.stop()


@pytest.fixture
def cache(tmp_path: Path, up: Upstream) -> Iterator[Server]:
    with cache_server(tmp_path, up) as s:
        yield s


def client(server: Server) -> httpx.Client:
    return server.client(timeout=120)


def get_manifest(c: httpx.Client, repo: str, ref: str) -> httpx.Response:
    return c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})


def pull(c: httpx.Client, repo: str, ref: str) -> str:
    """A whole pull (manifest, config, layers), every blob checked against its digest; the manifest's digest."""
    r = get_manifest(c, repo, ref)
    assert r.status_code == 200, r.text
    doc = r.json()
    for d in [doc["config"], *doc["layers"]]:
        b = c.get(f"/v2/{repo}/blobs/{d['digest']}")
        assert b.status_code == 200, b.text
        assert sha(b.content) == d["digest"]
    return str(r.headers["Docker-Content-Digest"])


def cut_off(c: httpx.Client, url: str) -> None:
    """The answer to GET `url` starts (200 and its length) and its connection ends before the body does:
    never a complete answer with a short or wrong body, never an error status after the fact."""
    with c.stream("GET", url) as r:
        assert r.status_code == 200, r.read()
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            r.read()


def stored_blob(server: Server, digest: str) -> bool:
    """Whether `digest` is in ncr-trio's blob store (the layout of ncr_trio/storage/keys.py)."""
    hexdigest = digest.split(":")[1]
    return (server.data / "blobs" / "sha256" / hexdigest[:2] / hexdigest).exists()


# -- the guide's decision table --------------------------------------------------------------------


def test_a_first_pull_fetches_the_source_image_with_its_digest(source: Distribution, up: Upstream,
                                                                cache: Server) -> None:
    digest, _ = push_source_image(source, "team/app", "1", [os.urandom(300_000), os.urandom(5000)], "first")
    with client(cache) as c:
        assert pull(c, "hub/team/app", "1") == digest
        assert get_manifest(c, "hub/team/app", digest).status_code == 200
    t = up.traffic()
    assert t.count("GET", "blob") == 3  # config and two layers, once each


def test_a_tag_moved_at_the_source_serves_the_new_image(source: Distribution, up: Upstream, cache: Server) -> None:
    old, _ = push_source_image(source, "team/moved", "1", [os.urandom(1000)], "old")
    with client(cache) as c:
        assert pull(c, "hub/team/moved", "1") == old
        new, _ = push_source_image(source, "team/moved", "1", [os.urandom(1000)], "new")
        assert new != old
        assert pull(c, "hub/team/moved", "1") == new


def test_an_unchanged_tag_costs_one_head_and_no_get(source: Distribution, up: Upstream, cache: Server) -> None:
    digest, _ = push_source_image(source, "team/same", "1", [os.urandom(1000)], "same")
    with client(cache) as c:
        pull(c, "hub/team/same", "1")
        up.reset()
        assert pull(c, "hub/team/same", "1") == digest
    t = up.traffic()
    assert t.count("HEAD", "manifest") == 1
    assert t.count("GET") == 0, t.requests


def test_a_stopped_source_leaves_the_cached_image_served(source: Distribution, up: Upstream, cache: Server) -> None:
    digest, _ = push_source_image(source, "team/offline", "1", [os.urandom(1000)], "offline")
    with client(cache) as c:
        pull(c, "hub/team/offline", "1")
        up.unreachable()
        assert pull(c, "hub/team/offline", "1") == digest
        # what was never cached cannot be served: a clear 503, not a 500
        r = get_manifest(c, "hub/team/never", "1")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        r = c.get(f"/v2/hub/team/never/blobs/{sha(b'never')}")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        up.reachable()
        assert c.get(f"/v2/hub/team/never/blobs/{sha(b'never')}").status_code == 404
        # a pull that found nothing leaves no repository behind
        assert "hub/team/never" not in c.get("/v2/_catalog").json()["repositories"]


@pytest.mark.parametrize("status", [429, 500])
def test_a_refusing_source_leaves_the_cached_image_served(source: Distribution, up: Upstream, cache: Server,
                                                           status: int) -> None:
    digest, _ = push_source_image(source, "team/busy", "1", [os.urandom(1000)], f"busy{status}")
    with client(cache) as c:
        pull(c, "hub/team/busy", "1")
        up.faults(Fault("manifest", status=status))
        assert pull(c, "hub/team/busy", "1") == digest
        r = get_manifest(c, "hub/team/busy-never", "1")
        assert r.status_code == (429 if status == 429 else 503), r.text


def test_an_image_deleted_at_the_source_is_not_served(source: Distribution, up: Upstream, cache: Server) -> None:
    digest, _ = push_source_image(source, "team/gone", "1", [os.urandom(1000)], "gone")
    with client(cache) as c:
        pull(c, "hub/team/gone", "1")
        with httpx.Client(base_url=source.url) as s:
            assert s.delete(f"/v2/team/gone/manifests/{digest}").status_code == 202
        r = get_manifest(c, "hub/team/gone", "1")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert c.get("/v2/hub/team/gone/tags/list").json().get("tags") in (None, [])


def test_a_digest_is_served_from_the_cache_without_asking_the_source(source: Distribution, up: Upstream,
                                                                      cache: Server) -> None:
    digest, _ = push_source_image(source, "team/pinned", "1", [os.urandom(1000)], "pinned")
    with client(cache) as c:
        pull(c, "hub/team/pinned", "1")
        up.reset()
        assert pull(c, "hub/team/pinned", digest) == digest
    assert up.traffic().count() == 0


def test_library_paths_map_to_the_source_s_library(source: Distribution, up: Upstream, cache: Server) -> None:
    digest, _ = push_source_image(source, "library/hello", "1", [os.urandom(100)], "hello")
    with client(cache) as c:
        assert pull(c, "hub/library/hello", "1") == digest
    assert any(s.path.startswith("/v2/library/hello/") for s in up.traffic().requests)


def test_docker_hub_takes_a_one_segment_name_as_an_official_image(source: Distribution, up: Upstream,
                                                                    tmp_path: Path) -> None:
    digest, _ = push_source_image(source, "library/busybox", "1", [os.urandom(100)], "busybox")
    with cache_server(tmp_path, up, cache="dh", registry="dockerhub", kind="dockerhub") as s, client(s) as c:
        assert pull(c, "dockerhub/busybox", "1") == digest
    assert any(r.path.startswith("/v2/library/busybox/manifests/1") for r in up.traffic().requests)


# -- single flight, streamed, verified ------------------------------------------------------------


async def _download(url: str, headers: dict[str, str], first: list[int], up: Upstream) -> str:
    h = hashlib.sha256()
    async with httpx.AsyncClient(timeout=120) as c, c.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_raw():
            if not first:
                first.append(await trio.to_thread.run_sync(lambda: up.traffic().blob_bytes))
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _token(server: Server, repo: str) -> dict[str, str]:
    r = httpx.get(f"{server.url}/auth/token", params={"service": "ncr-trio", "scope": f"repository:{repo}:pull"},
                  auth=server.admin, timeout=30)
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers_cache(request: pytest.FixtureRequest, tmp_path: Path, up: Upstream) -> Iterator[Server]:
    """A cache server with one worker process, or two (which follow each other's fetches)."""
    with cache_server(tmp_path, up, "--workers", str(request.param)) as s:
        yield s


def test_concurrent_pulls_of_an_uncached_layer_cost_one_upstream_get(source: Distribution, up: Upstream,
                                                                     workers_cache: Server) -> None:
    cache = workers_cache
    layer = os.urandom(64 * MiB)
    push_source_image(source, "team/big", "1", [layer], "big")
    up.faults(Fault("blob", method="GET", rate=32 * MiB))  # long enough for all to join the one fetch
    url = f"{cache.url}/v2/hub/team/big/blobs/{sha(layer)}"
    headers = _token(cache, "hub/team/big")
    results: list[str] = []
    firsts: list[list[int]] = [[] for _ in range(20)]

    async def main() -> None:
        async def one(i: int) -> None:
            results.append(await _download(url, headers, firsts[i], up))

        async with trio.open_nursery() as n:
            for i in range(20):
                n.start_soon(one, i)

    trio.run(main)
    assert results == [sha(layer)] * 20
    assert up.traffic().count("GET", "blob") == 1
    assert stored_blob(cache, sha(layer))


def test_clients_stream_from_the_first_bytes_while_the_source_trickles(source: Distribution, up: Upstream,
                                                                       cache: Server) -> None:
    """Not store-and-forward: the first client has its first bytes when the source has sent a fraction of the
    blob (counted in bytes, not timed; the time is printed for the record)."""
    layer = os.urandom(16 * MiB)
    push_source_image(source, "team/trickle", "1", [layer], "trickle")
    up.faults(Fault("blob", method="GET", rate=4 * MiB))
    first: list[int] = []
    started = time.monotonic()
    got = trio.run(_download, f"{cache.url}/v2/hub/team/trickle/blobs/{sha(layer)}",
                   _token(cache, "hub/team/trickle"), first, up)
    assert got == sha(layer)
    assert first and first[0] < len(layer) // 4, first
    print(f"first byte after the source sent {first[0]} bytes; whole blob in {time.monotonic() - started:.1f}s")


@pytest.mark.parametrize("fault", ["truncate", "corrupt"])
def test_a_broken_source_commits_nothing_and_breaks_the_client_s_connection(source: Distribution, up: Upstream,
                                                                            cache: Server, fault: str) -> None:
    layer = os.urandom(4 * MiB)
    push_source_image(source, f"team/{fault}", "1", [layer], fault)
    up.faults(Fault("blob", method="GET", **{fault: 3 * MiB}))  # type: ignore[arg-type]
    with client(cache) as c:
        cut_off(c, f"/v2/hub/team/{fault}/blobs/{sha(layer)}")
        assert not stored_blob(cache, sha(layer))
        up.faults()
        up.reset()
        r = c.get(f"/v2/hub/team/{fault}/blobs/{sha(layer)}")
        assert r.status_code == 200 and sha(r.content) == sha(layer)
    ranges = [s.range for s in up.traffic().requests if s.kind == "blob" and s.method == "GET"]
    if fault == "truncate":  # what arrived was right: the next pull continues from there
        assert len(ranges) == 1 and ranges[0] is not None and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"
    else:  # wrong bytes are never kept: the next pull starts over
        assert ranges in ([None], ["bytes=0-"])
    assert stored_blob(cache, sha(layer))


def test_a_fetch_past_the_deadline_is_cut_and_the_next_pull_continues(source: Distribution, up: Upstream,
                                                                      tmp_path: Path) -> None:
    layer = os.urandom(8 * MiB)
    push_source_image(source, "team/slow", "1", [layer], "slow")
    with cache_server(tmp_path, up, cache_deadline_seconds="2") as s, client(s) as c:
        up.faults(Fault("blob", method="GET", rate=1 * MiB))  # 8 s: cut at 2
        cut_off(c, f"/v2/hub/team/slow/blobs/{sha(layer)}")
        up.faults()
        up.reset()
        r = c.get(f"/v2/hub/team/slow/blobs/{sha(layer)}")
        assert r.status_code == 200 and sha(r.content) == sha(layer)
    [seen] = [x for x in up.traffic().requests if x.kind == "blob" and x.method == "GET"]
    assert seen.range is not None and int(seen.range.removeprefix("bytes=").split("-")[0]) > 0, seen
    assert "took longer than 2 s" in s.log()


def test_the_bytes_of_a_caching_that_did_not_finish_are_released(source: Distribution, up: Upstream,
                                                                 tmp_path: Path) -> None:
    layer = os.urandom(4 * MiB)
    push_source_image(source, "team/stale", "1", [layer], "stale")
    # time to live 0: the cut-off fetch's bytes are past it at once (the setting's default is the guide's 2 hours)
    with cache_server(tmp_path, up, cache_partial_ttl_seconds="0") as s, client(s) as c:
        up.faults(Fault("blob", method="GET", truncate=2 * MiB))
        cut_off(c, f"/v2/hub/team/stale/blobs/{sha(layer)}")
        assert list((s.data / "uploads").iterdir())
        report: Any = s.api().doc("api.gc.run", {"dry_run": False})
        assert len(report["uploads"]) == 1
        assert not list((s.data / "uploads").iterdir())
        up.faults()
        up.reset()
        assert c.get(f"/v2/hub/team/stale/blobs/{sha(layer)}").status_code == 200
    [seen] = [x for x in up.traffic().requests if x.kind == "blob" and x.method == "GET"]
    assert seen.range in (None, "bytes=0-")


# -- what caching records ---------------------------------------------------------------------------


def test_caching_sends_events_and_records_pulls_as_a_push_would(source: Distribution, up: Upstream,
                                                                tmp_path: Path) -> None:
    digest, _ = push_source_image(source, "team/events", "1", [os.urandom(100)], "events")
    with (Receiver() as rx,
          cache_server(tmp_path, up, webhook_allowed_networks="127.0.0.0/8") as s, client(s) as c):
        r = s.call("POST", "/registries/hub/webhooks", json={"name": "cached", "kind": "http", "url": rx.url})
        assert r.status_code == 201, r.text
        pull(c, "hub/team/events", "1")
        got = rx.wait_for(lambda rs: {"artifact.cached", "tag.created", "artifact.pulled"}
                          <= {x.json()["type"] for x in rs})
        cached = next(x.json() for x in got if x.json()["type"] == "artifact.cached")
        assert (cached["repository"], cached["digest"], cached["tags"]) == ("hub/team/events", digest, ["1"])
        artifact = s.call("GET", f"/registries/hub/images/team/events/artifacts/{digest}").json()
        assert artifact["pulled_at"] is not None and artifact["tags"] == ["1"]


def test_a_source_that_never_answers_a_manifest_is_cut_at_the_deadline(source: Distribution, up: Upstream,
                                                                       tmp_path: Path) -> None:
    digest, _ = push_source_image(source, "team/held", "1", [os.urandom(100)], "held")
    with cache_server(tmp_path, up, cache_deadline_seconds="2") as s, client(s) as c:
        pull(c, "hub/team/held", "1")
        up.faults(Fault("manifest", hold=True))  # connection open, headers never sent
        assert pull(c, "hub/team/held", "1") == digest  # the cached image, once the deadline cut the HEAD
        r = get_manifest(c, "hub/team/held-never", "1")
        assert r.status_code == 503 and "within 2 s" in r.text
