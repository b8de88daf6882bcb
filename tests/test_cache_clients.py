"""Real clients pull through an image cache: podman and skopeo, from two kinds of source on 127.0.0.1.

- "registry": CNCF Distribution 3.1.1 with token auth, its tokens issued by an ncr-trio (the realm),
  the cache logging in with an access key of that ncr-trio;
- "ncr": another ncr-trio, the cache logging in with one of its access keys.

The digests the clients see through the cache are the source's.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.auth import BearerAuth
from tests.support.clients import Clients, clients_watching, make_image
from tests.support.oci import push_manifest, upload_blob
from tests.support.server import Distribution, Server, distribution_token_auth

REPO = "clients/pulled/app"  # at the source; `clients` is a registry of the realm ncr-trio


@dataclass
class Source:
    url: str
    port: int
    kind: str
    key: dict[str, str]  # an access key of the ncr-trio that logs the cache in


def push_to(url: str, auth: httpx.Auth, label: str) -> str:
    image = make_image(label, n_layers=2, extra_file_bytes=300_000)
    with httpx.Client(base_url=url, auth=auth, timeout=60) as c:
        for blob in [image.config, *image.layers]:
            upload_blob(c, REPO, blob)
        r = push_manifest(c, REPO, "v1", image.manifest)
        assert r.status_code == 201, r.text
    return image.digest


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The source ncr-trio: a source itself (type "ncr"), and the token service of the Distribution source."""
    s = Server(data=tmp_path_factory.mktemp("realm") / "data", registries=("clients",)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module", params=["registry", "ncr"])
def source(request: pytest.FixtureRequest, realm: Server, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Source, str]]:
    key = realm.new_user(f"cache-{request.param}", {"clients": "service-viewer"})
    if request.param == "ncr":
        digest = push_to(realm.url, realm.auth(), "from-ncr")
        yield Source(realm.url, realm.port, "ncr", key), digest
        return
    root = tmp_path_factory.mktemp("dist3")
    options = distribution_token_auth(realm.url, realm.data, root / "auth")
    dist = Distribution(root=root, binary="registry-v3", auth_token=options).start()
    try:
        digest = push_to(dist.url, BearerAuth(realm.url, *realm.admin), "from-distribution")
        yield Source(dist.url, dist.port, "registry", key), digest
    finally:
        dist.stop()


@pytest.fixture
def cache(tmp_path: Path, source: tuple[Source, str], realm: Server) -> Iterator[Server]:
    src, _ = source
    ports = ",".join(sorted({"80", "443", str(src.port), str(realm.port)}))
    s = Server(data=tmp_path / "cache", registries=(),
               env={"NCR_CACHE_ALLOWED_NETWORKS": "127.0.0.0/8", "NCR_CACHE_ALLOWED_PORTS": ports}).start()
    api = s.api()
    api.call("api.cache.create", {"name": "src", "type": src.kind, "url": src.url, "access_id": src.key["id"],
                                  "access_secret": src.key["secret"]})
    api.call("api.registry.create", {"name": "mirror", "cache": "src"})
    yield s
    s.stop()


@pytest.fixture
def clients(cache: Server, tmp_path: Path) -> Iterator[Clients]:
    yield from clients_watching(cache, tmp_path / "clients")


def test_skopeo_pulls_through_the_cache_with_the_source_s_digest(clients: Clients, source: tuple[Source, str]
                                                                 ) -> None:
    _, digest = source
    ref = f"docker://{clients.server.host}/mirror/{REPO}:v1"
    info = clients.json("skopeo", "inspect", "--tls-verify=false", ref)
    assert info["Digest"] == digest
    clients.run("skopeo", "copy", "--src-tls-verify=false", ref, f"oci:{clients.path('out')}:v1")
    index = json.loads((clients.path("out") / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest


def test_podman_pulls_through_the_cache_with_the_source_s_digest(clients: Clients, source: tuple[Source, str]
                                                                 ) -> None:
    _, digest = source
    host = clients.server.host
    with tempfile.TemporaryDirectory(prefix="ncr-podman-", dir="/tmp") as runroot:
        pod = ["podman", "--storage-driver", "vfs", "--root", str(clients.path("storage")), "--runroot", runroot,
               "--tmpdir", str(clients.path("podman-tmp")), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        clients.run(*pod, "pull", "--tls-verify=false", f"{host}/mirror/{REPO}:v1")
        facts = clients.json(*pod, "image", "inspect", f"{host}/mirror/{REPO}:v1")[0]
    assert facts["Digest"] == digest
    config = httpx.get(f"{clients.server.url}/v2/mirror/{REPO}/manifests/v1", auth=clients.server.auth(),
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()["config"]["digest"]
    assert "sha256:" + facts["Id"] == config  # podman's image ID is the config's digest
