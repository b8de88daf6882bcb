"""The loopback upstream of the image cache tests (tests/support/upstream.py), shown against real registries.

A real Distribution 2.8.2 holds a test image; the proxy in front of it forwards what httpx sends and counts it, and
each fault is shown from the client's side: 429 and 500 answers, a trickled, truncated, corrupted or stalled body,
an answer held forever, the port closed and opened again. Token auth passes through it (Distribution 3.1.1 whose
realm is an ncr-trio), and a Distribution 3.1.1 pull-through cache fetches through it. Engine tests rely on what
these show.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.auth import BearerAuth
from tests.support.clients import find_tool
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, Pushed, digest, push_test_image
from tests.support.server import (
    REGISTRY_V3,
    Distribution,
    Server,
    distribution_with_token_auth,
    pull_through_distribution,
)
from tests.support.upstream import Fault, Upstream

REPO = "src/app"
LAYERS = (64 << 10, 512 << 10, 128 << 10)
ACCEPT = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
needs_v3 = pytest.mark.skipif(find_tool(REGISTRY_V3) is None, reason="registry-v3 is not installed (`make tools`)")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Distribution, Pushed]]:
    """Distribution 2.8.2, anonymous, holding a 3-layer image as src/app:v1."""
    d = Distribution(root=tmp_path_factory.mktemp("source")).start()
    try:
        with httpx.Client(base_url=d.url, timeout=30) as c:
            yield d, push_test_image(c, REPO, "v1", LAYERS)
    finally:
        d.stop()


@pytest.fixture(scope="module")
def proxy(source: tuple[Distribution, Pushed], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with Upstream(target=source[0].url, log_path=tmp_path_factory.mktemp("upstream") / "upstream.log").start() as up:
        yield up


@pytest.fixture
def up(proxy: Upstream) -> Iterator[Upstream]:
    """The proxy with no faults and zero counters, reachable."""
    proxy.faults()
    proxy.reset()
    yield proxy
    proxy.faults()
    proxy.reachable()


@pytest.fixture
def image(source: tuple[Distribution, Pushed]) -> Pushed:
    return source[1]


def layer(image: Pushed, i: int = 1) -> tuple[str, bytes]:
    """The i-th layer's digest and bytes (1: the 512 KiB one)."""
    data = image.images[0].layers[i]
    return digest(data), data


def get(up: Upstream, path: str, headers: dict[str, str] | None = None, timeout: float = 30) -> httpx.Response:
    return httpx.get(f"{up.url}{path}", headers=headers, timeout=timeout)


def test_forwards_requests_and_counts_them_by_kind(up: Upstream, image: Pushed) -> None:
    config = image.images[0].config
    assert get(up, "/v2/").status_code == 200
    r = httpx.head(f"{up.url}/v2/{REPO}/manifests/v1", headers=ACCEPT)
    assert r.status_code == 200 and r.headers["docker-content-digest"] == image.digest
    r = get(up, f"/v2/{REPO}/manifests/v1", headers=ACCEPT)
    assert r.status_code == 200 and r.content == image.manifest
    r = get(up, f"/v2/{REPO}/blobs/{digest(config)}")
    assert r.status_code == 200 and r.content == config
    assert httpx.head(f"{up.url}/v2/{REPO}/blobs/{layer(image)[0]}").headers["content-length"] == str(LAYERS[1])
    assert get(up, f"/v2/{REPO}/blobs/sha256:{'0' * 64}").status_code == 404
    t = up.traffic()
    assert t.counts == {("GET", "other"): 1, ("HEAD", "manifest"): 1, ("GET", "manifest"): 1, ("GET", "blob"): 2,
                        ("HEAD", "blob"): 1}
    assert t.count(kind="blob") == 3 and t.count("GET") == 4 and t.count() == 6
    # Blob bodies sent: the config, and the error body of the 404 (a HEAD sends none).
    assert t.blob_bytes == len(config) + t.requests[-1].sent and t.requests[-1].status == 404
    assert [(s.method, s.kind, s.status) for s in t.requests[:3]] == [
        ("GET", "other", 200), ("HEAD", "manifest", 200), ("GET", "manifest", 200)]
    up.reset()
    assert up.traffic().counts == {} and up.traffic().blob_bytes == 0


def test_range_requests_are_forwarded(up: Upstream, image: Pushed) -> None:
    d, data = layer(image)
    r = get(up, f"/v2/{REPO}/blobs/{d}", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]
    assert r.headers["content-range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    (seen,) = up.traffic().requests
    assert seen.range == "bytes=1000-" and seen.sent == len(data) - 1000 and up.traffic().blob_bytes == seen.sent


def test_429_with_retry_after_for_the_next_manifest_request_only(up: Upstream, image: Pushed) -> None:
    up.faults(Fault("manifest", status=429, retry_after=7, times=1))
    r = get(up, f"/v2/{REPO}/manifests/v1", headers=ACCEPT)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert get(up, f"/v2/{REPO}/manifests/v1", headers=ACCEPT).content == image.manifest
    assert up.traffic().count("GET", "manifest") == 2
    assert [s.status for s in up.traffic().requests] == [429, 200]


def test_500_for_blobs_while_manifests_are_served(up: Upstream, image: Pushed) -> None:
    up.faults(Fault("blob", status=500))
    for _ in range(2):
        r = get(up, f"/v2/{REPO}/blobs/{layer(image)[0]}")
        assert r.status_code == 500 and r.json()["errors"][0]["code"] == "UNKNOWN"
    assert httpx.head(f"{up.url}/v2/{REPO}/blobs/{layer(image)[0]}").status_code == 500
    assert get(up, f"/v2/{REPO}/manifests/v1", headers=ACCEPT).status_code == 200
    up.faults(Fault("blob", method="HEAD", status=500))  # replaces the faults: GET is served again
    assert get(up, f"/v2/{REPO}/blobs/{layer(image)[0]}").content == layer(image)[1]
    assert httpx.head(f"{up.url}/v2/{REPO}/blobs/{layer(image)[0]}").status_code == 500


def test_trickled_body_arrives_whole_a_little_at_a_time(up: Upstream, image: Pushed) -> None:
    """Counted in bytes, not timed: when the client has its first bytes, the proxy has sent only a part."""
    d, data = layer(image, 2)  # 128 KiB
    up.faults(Fault("blob", method="GET", rate=64 << 10))  # about 2 s for the whole
    with httpx.Client(base_url=up.url, timeout=30) as c, c.stream("GET", f"/v2/{REPO}/blobs/{d}") as r:
        chunks = r.iter_raw()
        first = next(chunks)
        sent_then = up.traffic().blob_bytes
        body = first + b"".join(chunks)
    assert body == data
    assert sent_then < len(data) // 2, sent_then
    assert up.traffic().blob_bytes == len(data)


def test_truncated_body_ends_with_the_connection(up: Upstream, image: Pushed) -> None:
    d, data = layer(image)
    up.faults(Fault("blob", truncate=100_000))
    got = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", f"{up.url}/v2/{REPO}/blobs/{d}") as r:
        assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
        for chunk in r.iter_raw():
            got += chunk
    assert bytes(got) == data[:100_000]
    (seen,) = up.traffic().requests
    assert seen.sent == 100_000 == up.traffic().blob_bytes


def test_corrupted_body_differs_in_one_byte(up: Upstream, image: Pushed) -> None:
    d, data = layer(image)
    up.faults(Fault("blob", corrupt=300_000))
    body = get(up, f"/v2/{REPO}/blobs/{d}").content
    assert len(body) == len(data) and digest(body) != d
    assert [i for i in range(len(data)) if body[i] != data[i]] == [300_000]
    assert body[300_000] == data[300_000] ^ 0xFF


def test_stalled_body_and_held_answer(up: Upstream, image: Pushed) -> None:
    d, data = layer(image)
    up.faults(Fault("blob", stall_after=10_000), Fault("manifest", hold=True))
    got = bytearray()
    with pytest.raises(httpx.ReadTimeout), httpx.stream("GET", f"{up.url}/v2/{REPO}/blobs/{d}", timeout=1) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            got += chunk
    assert bytes(got) == data[:10_000]
    with pytest.raises(httpx.ReadTimeout):
        get(up, f"/v2/{REPO}/manifests/v1", timeout=1)
    blob, manifest = up.traffic().requests
    assert (blob.status, blob.sent) == (200, 10_000) and (manifest.status, manifest.sent) == (None, 0)


def test_unreachable_refuses_connections_until_reachable_again(up: Upstream) -> None:
    with httpx.Client(base_url=up.url, timeout=5) as c:
        assert c.get("/v2/").status_code == 200  # a keep-alive connection stays open...
        up.unreachable()
        with pytest.raises(httpx.TransportError):  # ...and is closed with the listener
            c.get("/v2/")
        with pytest.raises(httpx.ConnectError):
            get(up, "/v2/")
        up.unreachable()  # again: no change
        up.reachable()
        assert c.get("/v2/").status_code == 200
    assert up.traffic().count("GET", "other") == 2


@pytest.fixture(params=["distribution-3.1.1", "ncr-trio"])
def authed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A registry with token auth by an ncr-trio: Distribution 3.1.1 whose realm is that ncr-trio, or the ncr-trio
    itself (whose realm is named after the Host it is asked by: behind the proxy, the proxy). (ncr-trio, its URL)"""
    ncr = Server(data=tmp_path / "ncr" / "data", registries=("src",)).start()
    try:
        if request.param == "ncr-trio":
            yield ncr, ncr.url
            return
        if find_tool(REGISTRY_V3) is None:
            pytest.skip("registry-v3 is not installed (`make tools`)")
        dist = distribution_with_token_auth(tmp_path / "v3", ncr)
        try:
            yield ncr, dist.url
        finally:
            dist.stop()
    finally:
        ncr.stop()


def test_token_auth_passes_through_and_is_counted(authed: tuple[Server, str], tmp_path: Path) -> None:
    """Behind the proxy, the challenge's realm points at the proxy, which forwards token requests to ncr-trio; the
    Authorization headers reach the registry and are logged."""
    ncr, target = authed
    with Upstream(target=target, log_path=tmp_path / "upstream.log").start() as up:
        r = get(up, "/v2/")
        assert r.status_code == 401
        realm = re.search(r'realm="([^"]+)"', r.headers["www-authenticate"])
        assert realm is not None and realm[1] == f"{up.url}/auth/token"
        with httpx.Client(base_url=up.url, auth=BearerAuth(up.url, *ncr.admin, "pull,push"), timeout=30) as c:
            pushed = push_test_image(c, REPO, "v1", (1000, 2000))
            assert c.get(f"/v2/{REPO}/manifests/v1", headers=ACCEPT).content == pushed.manifest
        t = up.traffic()
        assert t.count("GET", "token") == 1  # BearerAuth asked once for the repository's scope
        assert t.count("PUT", "manifest") == 1 and t.count("GET", "manifest") == 1
        authorized = [s.authorization for s in t.requests if s.kind != "token" and s.path != "/v2/"]
        assert authorized and all(a is not None and a.startswith("Bearer ") for a in authorized)
        (login,) = [s for s in t.requests if s.kind == "token"]
        assert login.status == 200 and login.authorization is not None and login.authorization.startswith("Basic ")


@needs_v3
def test_pull_through_distribution_fetches_through_the_proxy(up: Upstream, image: Pushed, tmp_path: Path) -> None:
    mirror = pull_through_distribution(tmp_path / "mirror", up.url)
    try:
        with httpx.Client(base_url=mirror.url, timeout=30) as c:
            assert c.get(f"/v2/{REPO}/manifests/v1", headers=ACCEPT).content == image.manifest
            for d, data in image.blobs.items():
                r = c.get(f"/v2/{REPO}/blobs/{d}")
                assert r.status_code == 200 and r.content == data
            r = c.post(f"/v2/{REPO}/blobs/uploads/")
            assert r.status_code >= 400  # a pull-through cache takes no pushes
    finally:
        mirror.stop()
    t = up.traffic()
    assert t.count("GET", "manifest") >= 1 and t.count("GET", "blob") >= len(image.blobs)
    assert t.blob_bytes >= sum(map(len, image.blobs.values()))


def test_push_test_image_pushes_a_multi_platform_index(up: Upstream) -> None:
    with httpx.Client(base_url=up.url, timeout=30) as c:
        pushed = push_test_image(c, "src/multi", "v1", (3000,), platforms=[("linux", "amd64"), ("linux", "arm64")])
        r = c.get("/v2/src/multi/manifests/v1", headers=ACCEPT)
        assert r.content == pushed.manifest and r.headers["content-type"] == OCI_INDEX
        children = [m["digest"] for m in r.json()["manifests"]]
        assert children == [img.digest for img in pushed.images] and len(set(children)) == 2
        for img in pushed.images:
            assert c.get(f"/v2/src/multi/manifests/{img.digest}", headers=ACCEPT).content == img.manifest
    assert len(pushed.blobs) == 4 and all(hashlib.sha256(b).hexdigest() == d[7:] for d, b in pushed.blobs.items())
