"""The image cache's client of a source registry (ncr_trio/cache/upstream.py), against real registries.

Sources are real processes on 127.0.0.1: CNCF Distribution 3.1.1 (`registry-v3`) and 2.8.2 (Debian's
`docker-registry`), anonymous or with Basic auth (htpasswd); a second ncr-trio (token auth, an access
key); moto's server answering ECR's GetAuthorizationToken. Where a test must see what reached a source
(the Authorization header, how often the token realm was asked), a `Recorder` stands in front of the
real server: a small reverse proxy in this test's trio run (hypercorn) that forwards every request as
it came (Host included, so ncr-trio's challenge names the recorder as its realm) and records method,
path, headers and the status answered. It can also redirect blob GETs elsewhere (as Docker Hub sends
them to a CDN), drop Range headers (a source that ignores them) or forward a path as another (a
source answering a manifest other than the one asked for). It never answers for the server
it fronts: what the source decides is the real server's decision.

Credential shapes: each source type's login reaches the registry as its type shapes it. Distribution's
htpasswd takes bcrypt hashes, and bcrypt takes passwords of at most 72 bytes (Go's refuses longer
ones), so a GCR login (`_json_key`, with the whole service-account JSON as its password) cannot be an
htpasswd entry: for it the test shows the header that reached the real registry through the recorder,
and the registry's refusal, rather than a login accepted.

All sources listen on loopback, which the default `cache_allowed_networks` (`public`) refuses; the
tests allow 127.0.0.1/32 and the ports they use, and two tests show the refusals themselves.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import hypercorn.config
import hypercorn.trio
import pytest
import trio

from ncr_trio.cache import credentials
from ncr_trio.cache.sources import Source
from ncr_trio.cache.upstream import ACCEPT, Upstream, UpstreamError, UpstreamNotFound, Upstreams
from ncr_trio.config import Config
from tests.support.clients import find_tool
from tests.support.oci import OCI_MANIFEST, Image, digest, image, push_image, push_manifest
from tests.support.server import Distribution, Server, free_port

VERSIONS = {"2.8.2": "docker-registry", "3.1.1": "registry-v3"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def settings(*ports: int, **overrides: Any) -> Config:
    """Settings that let the cache reach these loopback ports."""
    return Config(cache_allowed_networks=("127.0.0.1/32",), cache_allowed_ports=tuple(map(str, ports)),
                  cache_timeout_seconds=overrides.pop("timeout", 20.0), **overrides)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_htpasswd(path: Path, logins: dict[str, str]) -> Path:
    """An htpasswd file for Distribution (bcrypt, the cheapest cost Go accepts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}\n"
                            for user, pw in logins.items()))
    return path


def distribution(tmp: Path, version: str = "3.1.1", htpasswd: Path | None = None) -> Distribution:
    binary = VERSIONS[version]
    if find_tool(binary) is None:
        pytest.skip(f"{binary} is not installed (`make tools`)")
    return Distribution(root=tmp / f"dist-{version}-{free_port()}", binary=binary, htpasswd=htpasswd).start()


def push(url: str, repo: str, img: Image, tag: str, auth: tuple[str, str] | None = None) -> None:
    """Push `img` as every registry takes it (Distribution 2.8 has no single-POST upload): POST, then PUT."""
    with httpx.Client(base_url=url, auth=auth, timeout=30) as client:
        for blob_digest, blob in img.blobs.items():
            started = client.post(f"/v2/{repo}/blobs/uploads/")
            assert started.status_code == 202, started.text
            location = started.headers["location"]
            done = client.put(f"{location}{'&' if '?' in location else '?'}digest={blob_digest}", content=blob)
            assert done.status_code == 201, done.text
        r = push_manifest(client, repo, tag, img.manifest)
        assert r.status_code == 201, r.text


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    status: int


@dataclass
class Recorder:
    """A recording reverse proxy in front of `target` (see the module's docstring)."""

    target: str
    redirect_blobs: str | None = None  # blob GETs answered with a 307 to this origin, same path
    drop_range: bool = False
    reroute: dict[str, str] = field(default_factory=dict)  # path asked -> path forwarded (another answer)
    hold: Callable[[str, dict[str, str]], Awaitable[None]] | None = None  # awaited before a request is forwarded
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)
    client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def authorizations(self, path_prefix: str = "") -> list[str]:
        return [s.headers.get("authorization", "") for s in self.seen if s.path.startswith(path_prefix)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["raw_path"].decode() + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.redirect_blobs and scope["method"] == "GET" and "/blobs/sha256:" in path:
            self.seen.append(Seen(scope["method"], path, headers, 307))
            await send({"type": "http.response.start", "status": 307,
                        "headers": [(b"location", f"{self.redirect_blobs}{path}".encode()), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if self.hold is not None:
            await self.hold(path, headers)
        dropped = HOP_BY_HOP | {"content-length"} | ({"range"} if self.drop_range else set())  # httpx sets the length
        forward = {k: v for k, v in headers.items() if k not in dropped}
        assert self.client is not None
        target = self.target + self.reroute.get(path, path)
        async with self.client.stream(scope["method"], target, headers=forward, content=body) as r:
            self.seen.append(Seen(scope["method"], path, headers, r.status_code))
            out = [(k.encode(), v.encode()) for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": r.status_code, "headers": out})
            async for chunk in r.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def recording(target: str, **options: Any) -> AsyncIterator[Recorder]:
    """A Recorder serving in this test's trio run until the block ends."""
    recorder = Recorder(target, **options)
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{recorder.port}"]
    config.accesslog = None
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client, trio.open_nursery() as nursery:
        recorder.client = client
        await nursery.start(partial(hypercorn.trio.serve, recorder, config))  # type: ignore[arg-type]
        yield recorder
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def upstream(source: Source, config: Config, **options: Any) -> AsyncIterator[Upstream]:
    client = Upstream(source, config, **options)
    try:
        yield client
    finally:
        await client.aclose()


async def blob_bytes(client: Upstream, repo: str, blob_digest: str, start: int = 0) -> tuple[int, int, bytes]:
    async with client.open_blob(repo, blob_digest, start) as body:
        data = b"".join([chunk async for chunk in body.chunks])
    return body.size, body.start, data


# -- Distribution, anonymous --------------------------------------------------------------------------

@pytest.mark.parametrize("version", list(VERSIONS))
async def test_anonymous_distribution(tmp_path: Path, version: str) -> None:
    """Manifests by tag and digest (digest computed and checked), a blob whole and resumed with Range,
    404s as UpstreamNotFound, and a stopped source as an unreachable one (status None)."""
    dist = distribution(tmp_path, version)
    try:
        img = image("anon", layers=2)
        push(dist.url, "team/app", img, "v1")
        source = Source("anon", "registry", dist.url)
        async with upstream(source, settings(dist.port)) as client:
            await client.ping()
            head = await client.head_manifest("team/app", "v1")
            assert (head.digest, head.media_type, head.size) == (img.digest, OCI_MANIFEST, len(img.manifest))
            for reference in ("v1", img.digest):
                m = await client.get_manifest("team/app", reference, 1 << 20)
                assert (m.digest, m.media_type, m.content) == (img.digest, OCI_MANIFEST, img.manifest)
            layer = img.layers[0]
            assert await blob_bytes(client, "team/app", digest(layer)) == (len(layer), 0, layer)
            assert await blob_bytes(client, "team/app", digest(layer), 100) == (len(layer), 100, layer[100:])

            with pytest.raises(UpstreamError) as too_big:
                await client.get_manifest("team/app", "v1", len(img.manifest) - 1)
            assert too_big.value.status == 502
            for missing in (partial(client.head_manifest, "team/app", "v2"),
                            partial(client.get_manifest, "team/app", "v2", 1 << 20),
                            partial(client.head_manifest, "team/none", "v1"),
                            partial(blob_bytes, client, "team/app", digest(b"x"))):
                with pytest.raises(UpstreamNotFound) as e:
                    await missing()
                assert e.value.status == 404

            dist.stop()
            with pytest.raises(UpstreamError) as down:
                await client.head_manifest("team/app", "v1")
            assert down.value.status is None and not isinstance(down.value, UpstreamNotFound)
    finally:
        dist.stop()


async def test_range_ignored_and_digest_checked(tmp_path: Path) -> None:
    """A source that ignores Range answers the whole blob: the body says it starts at 0. A manifest asked
    by digest must hash to it: a source answering another manifest for it is refused (502)."""
    dist = distribution(tmp_path)
    try:
        img, other = image("whole"), image("other")
        push(dist.url, "r/a", img, "v1")
        push(dist.url, "r/a", other, "v2")
        reroute = {f"/v2/r/a/manifests/{img.digest}": "/v2/r/a/manifests/v2"}
        async with recording(dist.url, drop_range=True, reroute=reroute) as rec:
            async with upstream(Source("whole", "registry", rec.url), settings(rec.port)) as client:
                layer = img.layers[0]
                assert await blob_bytes(client, "r/a", digest(layer), 10) == (len(layer), 0, layer)
                assert rec.seen[-1].headers.get("range") == "bytes=10-"  # asked, and dropped on the way
                assert (await client.get_manifest("r/a", other.digest, 1 << 20)).content == other.manifest
                assert rec.seen[-1].headers["accept"] == ACCEPT
                with pytest.raises(UpstreamError, match=other.digest) as e:
                    await client.get_manifest("r/a", img.digest, 1 << 20)
                with pytest.raises(UpstreamError, match=other.digest) as head:
                    await client.head_manifest("r/a", img.digest)
                assert e.value.status == head.value.status == 502
    finally:
        dist.stop()


# -- egress -------------------------------------------------------------------------------------------

async def test_egress_refusals(tmp_path: Path) -> None:
    """A source on a port outside cache_allowed_ports, or on loopback under the default `public`
    networks, is never connected to: status None, and the source sees no request."""
    dist = distribution(tmp_path)
    try:
        async with recording(dist.url) as rec:
            source = Source("refused", "registry", rec.url)
            async with upstream(source, settings(443, 80)) as client:
                with pytest.raises(UpstreamError, match="cache_allowed_ports") as port:
                    await client.ping()
            async with upstream(source, Config(cache_allowed_ports=(str(rec.port),))) as client:
                with pytest.raises(UpstreamError, match="cache_allowed_networks") as network:
                    await client.ping()
            assert port.value.status is None and network.value.status is None
            assert rec.seen == []
    finally:
        dist.stop()


async def test_timeout_is_unreachable() -> None:
    """A source that accepts the connection and never answers is cut after cache_timeout_seconds."""
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with upstream(Source("silent", "registry", f"http://127.0.0.1:{port}"),
                            settings(port, timeout=0.5)) as client:
            with pytest.raises(UpstreamError, match="in time") as e:
                await client.ping()
        assert e.value.status is None
        nursery.cancel_scope.cancel()


# -- token auth: a second ncr-trio --------------------------------------------------------------------

@pytest.fixture
def ncr_source(tmp_path: Path) -> Iterator[tuple[Server, Image, dict[str, Any]]]:
    """A second ncr-trio with an image in registry `src`, and an access key of a user who may pull it."""
    server = Server(data=tmp_path / "src" / "data", registries=("src",)).start()
    try:
        img = image("ncr-source", layers=1)
        with server.client() as client:
            push_image(client, "src/app", img, "v1")
        key = server.new_user("puller", {"src": "service-viewer"}, key="image cache")
        yield server, img, key
    finally:
        server.stop()


async def test_ncr_source_token_obtained_once(ncr_source: tuple[Server, Image, dict[str, Any]]) -> None:
    """ncr-trio challenges with Bearer; the cache fetches a token from the realm with its access key
    (Basic), once per scope, and reuses it: after the first challenge no request is refused, and the
    realm is asked once for /v2/ (no scope) and once for the repository."""
    server, img, key = ncr_source
    async with recording(server.url) as rec:
        source = Source("ncr", "ncr", rec.url, key["id"], key["secret"])
        async with upstream(source, settings(rec.port)) as client:
            await client.ping()
            for _ in range(3):
                assert (await client.head_manifest("src/app", "v1")).digest == img.digest
                assert (await client.get_manifest("src/app", "v1", 1 << 20)).content == img.manifest
                layer = img.layers[0]
                assert (await blob_bytes(client, "src/app", digest(layer)))[2] == layer
        tokens = [s for s in rec.seen if s.path.startswith("/auth/token")]
        assert [s.path.partition("?")[2] for s in tokens] == [
            "service=ncr-trio", "service=ncr-trio&scope=repository%3Asrc%2Fapp%3Apull"]
        assert {s.headers["authorization"] for s in tokens} == {basic(key["id"], key["secret"])}
        registry = [s for s in rec.seen if s.path.startswith("/v2/")]
        assert [s.status for s in registry].count(401) == 1 and registry[0].status == 401
        assert all(s.headers["authorization"].startswith("Bearer ") for s in registry[1:])

        # concurrent first requests of a fresh client: each learns the challenge, one fetches the token
        rec.seen.clear()
        async with upstream(source, settings(rec.port)) as client, trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(client.head_manifest, "src/app", "v1")
        assert len([s for s in rec.seen if s.path.startswith("/auth/token")]) == 1

        source = Source("ncr", "ncr", rec.url, key["id"], "wrong secret")
        async with upstream(source, settings(rec.port)) as client:
            with pytest.raises(UpstreamError) as e:
                await client.ping()
        assert e.value.status == 401


async def test_a_late_challenge_does_not_forget_a_fresh_token(
        ncr_source: tuple[Server, Image, dict[str, Any]]) -> None:
    """Two first requests of a fresh client both go without a token; the second's 401 arrives only after
    the first has fetched the token and been answered with it. That 401 refused no token, so the kept one
    stays: the realm is asked once (a 401 dropped it, and the second request fetched it again)."""
    server, img, key = ncr_source
    unauthenticated = 0

    async def hold(path: str, headers: dict[str, str]) -> None:
        nonlocal unauthenticated
        if not path.startswith("/v2/") or "authorization" in headers:
            return
        unauthenticated += 1
        if unauthenticated == 1:
            return
        with trio.fail_after(30):  # until the first request has been answered with its token
            while not any(s.status == 200 and s.headers.get("authorization", "").startswith("Bearer ")
                          for s in rec.seen):
                await trio.sleep(0.01)

    async with recording(server.url, hold=hold) as rec:
        source = Source("ncr", "ncr", rec.url, key["id"], key["secret"])
        async with upstream(source, settings(rec.port)) as client, trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(client.head_manifest, "src/app", "v1")
        assert unauthenticated == 2
        assert [s.status for s in rec.seen if s.path.startswith("/v2/")].count(401) == 2
        assert len([s for s in rec.seen if s.path.startswith("/auth/token")]) == 1


async def test_anonymous_bearer_token(ncr_source: tuple[Server, Image, dict[str, Any]]) -> None:
    """A source without credentials still follows a Bearer challenge (as Docker Hub's anonymous pulls
    do): the realm is asked without Authorization, and a public-read registry's image comes."""
    server, img, _ = ncr_source
    server.api().doc("api.registry.update", {"public_read": True}, registry="src")
    async with recording(server.url) as rec:
        async with upstream(Source("anonymous", "ncr", rec.url), settings(rec.port)) as client:
            await client.ping()
            assert (await client.get_manifest("src/app", "v1", 1 << 20)).content == img.manifest
    tokens = [s for s in rec.seen if s.path.startswith("/auth/token")]
    assert len(tokens) == 2 and rec.authorizations("/auth/token") == ["", ""]


# -- Basic auth, credential shapes, redirects ---------------------------------------------------------

QUAY_JSON = json.dumps({"account_name": "org+robot", "docker_cli_password": "quay-robot-password"})
GCR_JSON = json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k" * 40,
                       "private_key": "-----BEGIN PRIVATE KEY-----\nMII...\n-----END PRIVATE KEY-----\n",
                       "client_email": "cache@p.iam.gserviceaccount.com"})
# type -> (access_id, access_secret, the login that must reach the registry)
SHAPES = {
    **{t: ("user-" + t, "secret-" + t, ("user-" + t, "secret-" + t))
       for t in ("ncr", "registry", "harbor", "acr", "dockerhub")},
    "quay": ("", QUAY_JSON, ("org+robot", "quay-robot-password")),
    "gcr": ("ignored", GCR_JSON, ("_json_key", GCR_JSON)),
}


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[tuple[Distribution, Image]]:
    """Distribution 3.1.1 with Basic auth: a login for every shape above but GCR's (too long for bcrypt)."""
    logins = dict(login for *_, login in SHAPES.values() if login[0] != "_json_key")
    dist = distribution(tmp_path, htpasswd=write_htpasswd(tmp_path / "htpasswd", logins))
    try:
        img = image("basic")
        push(dist.url, "lib/app", img, "v1", auth=("user-registry", "secret-registry"))
        yield dist, img
    finally:
        dist.stop()


@pytest.mark.parametrize("source_type", list(SHAPES))
async def test_credential_shapes(basic_registry: tuple[Distribution, Image], source_type: str) -> None:
    """Each type's login reaches the registry (a Basic challenge) in its type's shape, and the registry
    takes it; GCR's `_json_key` login is shown as it arrived, and refused (see the module's docstring)."""
    dist, img = basic_registry
    access_id, secret, login = SHAPES[source_type]
    async with recording(dist.url) as rec:
        async with upstream(Source(source_type, source_type, rec.url, access_id, secret),
                            settings(rec.port)) as client:
            if source_type == "gcr":
                with pytest.raises(UpstreamError) as e:
                    await client.head_manifest("lib/app", "v1")
                assert e.value.status == 401
            else:
                assert (await client.head_manifest("lib/app", "v1")).digest == img.digest
    # the first request goes without (it learns the challenge), the retry with the login
    assert rec.authorizations() == ["", basic(*login)]


def test_malformed_secrets_are_refused() -> None:
    """What can never work is refused before any request (the management API turns it into a 400)."""
    for secret, message in (("{not json", "JSON object"), (json.dumps({"account_name": "a"}), "docker_cli_password")):
        with pytest.raises(ValueError, match=message):
            credentials.check(Source("q", "quay", "https://quay.io", "", secret))
    with pytest.raises(ValueError, match="JSON object"):
        credentials.check(Source("g", "gcr", "https://gcr.io", "", "[]"))
    with pytest.raises(ValueError, match="go together"):
        credentials.check(Source("h", "harbor", "https://h.example", "user", ""))
    with pytest.raises(ValueError, match="no path"):
        credentials.check(Source("h", "harbor", "https://h.example/v2/", "user", "pw"))
    with pytest.raises(ValueError, match="amazonaws"):
        credentials.check(Source("e", "ecr", "https://ecr.example", "AKIA", "s"))
    assert credentials.ecr_endpoint(Source("e", "ecr", "https://123456789012.dkr.ecr.eu-west-3.amazonaws.com",
                                           "AKIA", "s")) == ("https://api.ecr.eu-west-3.amazonaws.com/", "eu-west-3")
    credentials.check(Source("anonymous", "dockerhub", "https://registry-1.docker.io"))


async def test_blob_redirect_drops_authorization(tmp_path: Path, basic_registry: tuple[Distribution, Image]) -> None:
    """A blob GET redirected to another host (as Docker Hub, ECR and GCR send them to a CDN) is followed,
    without the source's Authorization; a redirect to an address outside the networks is refused."""
    dist, img = basic_registry
    cdn = distribution(tmp_path)  # anonymous, holding the same image
    try:
        push(cdn.url, "lib/app", img, "v1")
        layer = img.layers[0]
        async with recording(cdn.url) as cdn_rec, recording(dist.url, redirect_blobs=cdn_rec.url) as rec:
            source = Source("redirects", "registry", rec.url, "user-registry", "secret-registry")
            async with upstream(source, settings(rec.port, cdn_rec.port)) as client:
                assert (await client.get_manifest("lib/app", "v1", 1 << 20)).content == img.manifest
                assert await blob_bytes(client, "lib/app", digest(layer), 5) == (len(layer), 5, layer[5:])
            assert rec.authorizations("/v2/lib/app/blobs/") == [basic("user-registry", "secret-registry")]
            assert cdn_rec.authorizations() == [""] and cdn_rec.seen[0].headers["range"] == "bytes=5-"
        async with recording(dist.url, redirect_blobs=f"http://127.0.0.2:{cdn.port}") as rec:
            source = Source("redirects", "registry", rec.url, "user-registry", "secret-registry")
            async with upstream(source, settings(rec.port, cdn.port)) as client:
                with pytest.raises(UpstreamError, match="cache_allowed_networks") as e:
                    await blob_bytes(client, "lib/app", digest(layer))
            assert e.value.status is None
    finally:
        cdn.stop()


# -- ECR: moto's GetAuthorizationToken, a Distribution taking its login -------------------------------

@dataclass
class Moto:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[Moto]:
    port = free_port()
    with open(tmp_path / "moto.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield Moto(port, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_ecr_login_from_moto(tmp_path: Path, moto: Moto) -> None:
    """The ECR type: GetAuthorizationToken (SigV4, signed by botocore) at moto's server; its `AWS:<password>`
    is the Basic login a Distribution behind takes (htpasswd written from moto's answer before it
    starts). The login is kept until `refresh_margin` before its expiresAt, then fetched again while
    still valid: the clock the cache compares with is set, moto's expiry being a fixed date."""
    key = Source("ecr", "ecr", "https://123456789012.dkr.ecr.us-east-1.amazonaws.com", "AKIAEXAMPLE", "aws-secret",
                 endpoint=moto.url)
    call = credentials.ecr_call(key)
    (user, password), expires_at = credentials.ecr_login(
        httpx.post(call.url, content=call.body, headers=call.headers, timeout=30).content)
    assert user == "AWS"
    dist = distribution(tmp_path, htpasswd=write_htpasswd(tmp_path / "htpasswd", {user: password}))
    try:
        img = image("ecr")
        push(dist.url, "team/app", img, "v1", auth=(user, password))
        now = [expires_at - 3600]
        async with recording(moto.url) as api:
            source = Source("ecr", "ecr", dist.url, key.access_id, key.access_secret, endpoint=api.url)
            async with upstream(source, settings(dist.port, api.port), refresh_margin=300,
                                clock=lambda: now[0]) as client:
                await client.ping()
                assert (await client.head_manifest("team/app", "v1")).digest == img.digest
                assert len(api.seen) == 1  # kept
                now[0] = expires_at - 200  # within the margin, before expiry
                assert (await client.get_manifest("team/app", "v1", 1 << 20)).content == img.manifest
                assert len(api.seen) == 2  # fetched again before it expired
        signed = api.seen[0].headers
        assert signed["x-amz-target"] == credentials.ECR_TARGET
        assert signed["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/")
        assert "/us-east-1/ecr/aws4_request" in signed["authorization"]
    finally:
        dist.stop()


# -- Upstreams --------------------------------------------------------------------------------------------

async def test_upstreams_rebuilt_when_the_source_changes() -> None:
    upstreams = Upstreams(Config())
    source = Source("c", "dockerhub", "https://registry-1.docker.io", "u", "p")
    first = upstreams.get(source)
    assert upstreams.get(Source("c", "dockerhub", "https://registry-1.docker.io", "u", "p")) is first
    second = upstreams.get(Source("c", "dockerhub", "https://registry-1.docker.io", "u", "new"))
    assert second is not first and upstreams.get(second.source) is second
    upstreams.forget("c")
    assert upstreams.get(source) is not first
    await upstreams.aclose()
