"""Real registry clients against a running ncr-trio (plain HTTP on 127.0.0.1, logged in as the admin).

Each test drives one client end to end and checks real outcomes: digests the client reports equal the
digests of the bytes we built, content pulled back is byte-identical, tag lists and referrers are
what the registry itself answers. All content is built locally (tests/support/clients.py): no test
touches the network, and every client runs with its own temporary HOME and config directories.

Most tests share one session server (`shared_server`), each in its own repositories.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Clients,
    blob_bytes,
    clients_watching,
    find_tool,
    layout_blobs,
    layout_entry,
    make_image,
    make_index,
    manifest_bytes,
    put_manifest,
    random_bytes,
    read_layout_blob,
    referrers,
    registry_get,
    sha256,
    tags,
    write_layout,
    write_tar,
)
from tests.support.oci import Image
from tests.support.server import Server

pytestmark = pytest.mark.clients


def needs(*names: str) -> pytest.MarkDecorator:
    """Skip only when a client is really not installed (they all are where `make tools` ran)."""
    missing = [n for n in names if find_tool(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


@pytest.fixture
def clients(shared_server: Server, tmp_path: Path) -> Iterator[Clients]:
    """A private HOME / XDG / DOCKER_CONFIG / REGISTRY_AUTH_FILE for this test's clients.

    Afterwards, the server must not have logged an error or a traceback while the test ran: a client
    that retried its way past a 500 would otherwise hide a server bug.
    """
    yield from clients_watching(shared_server, tmp_path)


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name of this test's own, e.g. "clients/test-cosign-sign-verify-legacy"."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"clients/{slug}"


def skopeo_push(c: Clients, layout: Path, tag: str, dest: str, *, all_images: bool = False) -> None:
    """`skopeo copy` an OCI layout's tag into the registry (docker://dest)."""
    c.run("skopeo", "copy", *(["--all"] if all_images else []), "--dest-tls-verify=false",
          f"oci:{layout}:{tag}", f"docker://{dest}")


def push_image(c: Clients, image: Image, dest: str, name: str = "src") -> None:
    layout = c.path(f"layout-{name}")
    write_layout(layout, "t", [image])
    skopeo_push(c, layout, "t", dest)


# -- skopeo -----------------------------------------------------------------------------------------


@needs("skopeo")
def test_skopeo_copy_inspect_list_tags_copy_back_delete(clients: Clients, repo: str) -> None:
    c, host = clients, clients.server.host
    first = make_image("skopeo-one", n_layers=2, extra_file_bytes=200_000)
    second = make_image("skopeo-two")
    write_layout(c.path("src1"), "v1", [first])
    write_layout(c.path("src2"), "v2", [second])

    skopeo_push(c, c.path("src1"), "v1", f"{host}/{repo}:v1")
    skopeo_push(c, c.path("src2"), "v2", f"{host}/{repo}:v2")

    # The registry stores exactly the manifest bytes skopeo was given (no re-serialisation).
    raw = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1").stdout
    assert raw.encode() == first.manifest
    assert sha256(raw.encode()) == first.digest
    info = c.json("skopeo", "inspect", "--tls-verify=false", f"docker://{host}/{repo}:v1")
    assert info["Digest"] == first.digest
    assert info["Layers"] == [sha256(layer) for layer in first.layers]
    assert info["Labels"] == {"ncr.test": "skopeo-one"}
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")

    listed = c.json("skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{repo}")
    assert sorted(listed["Tags"]) == ["v1", "v2"]

    # Round trip out to a fresh layout: every blob (manifest, config, layers) byte for byte.
    c.run("skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/{repo}:v1", f"oci:{c.path('out')}:v1")
    assert layout_blobs(c.path("out")) == layout_blobs(c.path("src1"))
    assert layout_entry(c.path("out"), "v1")["digest"] == first.digest

    # Delete (skopeo resolves the tag and deletes the manifest by digest): gone by tag and by digest.
    c.run("skopeo", "delete", "--tls-verify=false", f"docker://{host}/{repo}:v1")
    for ref in (f"{repo}:v1", f"{repo}@{first.digest}"):
        gone = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{ref}", check=False)
        assert gone.returncode != 0, c.describe(gone)
        assert "manifest unknown" in gone.stderr, c.describe(gone)
    listed = c.json("skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{repo}")
    assert listed["Tags"] == ["v2"]
    assert c.run("skopeo", "inspect", "--raw", "--tls-verify=false",
                 f"docker://{host}/{repo}:v2").stdout.encode() == second.manifest


@needs("skopeo")
def test_skopeo_docker_schema2_round_trip(clients: Clients, repo: str) -> None:
    """`--format v2s2` converts to a Docker schema 2 manifest: stored and served as such, blobs unchanged."""
    c, host = clients, clients.server.host
    image = make_image("schema2", n_layers=2, extra_file_bytes=3 * 1024 * 1024)
    write_layout(c.path("src"), "v1", [image])
    c.run("skopeo", "copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{c.path('src')}:v1",
          f"docker://{host}/{repo}:docker")

    r = registry_get(c.server, f"/v2/{repo}/manifests/docker", DOCKER_MANIFEST)
    assert r.status_code == 200
    assert r.headers["content-type"] == DOCKER_MANIFEST
    assert r.headers["docker-content-digest"] == sha256(r.content)
    manifest = json.loads(r.content)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == sha256(image.config)
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256(layer) for layer in image.layers]

    # `dir:` keeps the manifest and blobs exactly as served.
    c.run("skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/{repo}:docker", f"dir:{c.path('dir')}")
    assert c.path("dir/manifest.json").read_bytes() == r.content
    for digest, data in image.blobs.items():
        assert c.path(f"dir/{digest.split(':')[1]}").read_bytes() == data


@needs("skopeo")
def test_skopeo_multi_arch_index_round_trip(clients: Clients, repo: str) -> None:
    c, host = clients, clients.server.host
    amd64 = make_image("multi", arch="amd64", n_layers=2)
    arm64 = make_image("multi", arch="arm64", n_layers=2)
    index = make_index([amd64, arm64])
    write_layout(c.path("src"), "v1", [amd64, arm64], index)

    skopeo_push(c, c.path("src"), "v1", f"{host}/{repo}:v1", all_images=True)

    raw = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1").stdout
    assert raw.encode() == index
    children = json.loads(raw)["manifests"]
    assert [(m["digest"], m["platform"]["architecture"]) for m in children] == \
        [(amd64.digest, "amd64"), (arm64.digest, "arm64")]
    for image in (amd64, arm64):
        child = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}@{image.digest}")
        assert child.stdout.encode() == image.manifest
        for digest, data in image.blobs.items():
            assert blob_bytes(c.server, repo, digest) == data

    # --all back out: the index, both child manifests, configs and layers byte-identical.
    c.run("skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{host}/{repo}:v1", f"oci:{c.path('out')}:v1")
    assert layout_blobs(c.path("out")) == layout_blobs(c.path("src"))
    entry = layout_entry(c.path("out"), "v1")
    assert (entry["mediaType"], entry["digest"], entry["size"]) == (OCI_INDEX, sha256(index), len(index))

    # Platform selection through the index: an arm64 pull gets the arm64 image, unchanged.
    c.run("skopeo", "--override-arch", "arm64", "copy", "--src-tls-verify=false", f"docker://{host}/{repo}:v1",
          f"oci:{c.path('arm')}:v1")
    assert layout_entry(c.path("arm"), "v1")["digest"] == arm64.digest
    assert read_layout_blob(c.path("arm"), arm64.digest) == arm64.manifest


# -- podman -----------------------------------------------------------------------------------------


@pytest.fixture
def podman_runroot() -> Iterator[Path]:
    """podman refuses a --runroot longer than 50 characters: pytest's tmp_path is too long for it."""
    with tempfile.TemporaryDirectory(prefix="ncr-podman-", dir="/tmp") as d:
        yield Path(d)


def podman(c: Clients, runroot: Path) -> list[str]:
    """podman as root, in a container without systemd, touching nothing outside the test.

    vfs storage (no overlay mounts needed) under the test's directory, a short runroot (see above)
    and a private tmpdir. cgroupfs and file events (also set in the private containers.conf) are
    not needed to pull or push, but keep podman from looking for systemd or journald at all.
    """
    return ["podman", "--storage-driver", "vfs", "--root", str(c.path("storage")),
            "--runroot", str(runroot), "--tmpdir", str(c.path("podman-tmp")),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


@needs("podman", "skopeo", "crane")
def test_podman_pull_and_push_to_another_repository(clients: Clients, repo: str, podman_runroot: Path) -> None:
    c, host = clients, clients.server.host
    pod = podman(c, podman_runroot)
    image = make_image("podman", n_layers=2, extra_file_bytes=50_000)
    push_image(c, image, f"{host}/{repo}/src:v1")

    pulled = c.run(*pod, "pull", "--tls-verify=false", f"{host}/{repo}/src:v1")
    image_id = pulled.stdout.strip().splitlines()[-1]
    assert f"sha256:{image_id}" == sha256(image.config)  # podman's image ID is the config digest
    facts = c.json(*pod, "image", "inspect", f"{host}/{repo}/src:v1")[0]
    assert facts["Digest"] == image.digest
    assert f"{host}/{repo}/src@{image.digest}" in facts["RepoDigests"]
    assert facts["RootFS"]["Layers"] == json.loads(image.config)["rootfs"]["diff_ids"]

    c.run(*pod, "push", "--tls-verify=false", f"{host}/{repo}/src:v1", f"docker://{host}/{repo}/dst:pushed")

    # crane and skopeo both see the pushed manifest; the config is the same blob, every blob is there.
    pushed = json.loads(c.run("crane", "manifest", "--insecure", f"{host}/{repo}/dst:pushed").stdout)
    assert pushed["config"]["digest"] == sha256(image.config)
    digest = c.run("crane", "digest", "--insecure", f"{host}/{repo}/dst:pushed").stdout.strip()
    assert digest == sha256(manifest_bytes(c.server, f"{repo}/dst", "pushed"))
    info = c.json("skopeo", "inspect", "--tls-verify=false", f"docker://{host}/{repo}/dst:pushed")
    assert info["Digest"] == digest
    assert len(info["Layers"]) == len(image.layers)
    assert blob_bytes(c.server, f"{repo}/dst", pushed["config"]["digest"]) == image.config
    for layer in pushed["layers"]:
        data = blob_bytes(c.server, f"{repo}/dst", layer["digest"])
        assert len(data) == layer["size"]
    # Whatever compression podman chose, the layers' uncompressed content is what we built.
    diff_ids = [sha256(gzip.decompress(blob_bytes(c.server, f"{repo}/dst", layer["digest"])))
                for layer in pushed["layers"]]
    assert diff_ids == json.loads(image.config)["rootfs"]["diff_ids"]
    assert tags(c.server, f"{repo}/dst") == ["pushed"]


@needs("podman", "skopeo")
def test_podman_manifest_list_push_all(clients: Clients, repo: str, podman_runroot: Path) -> None:
    """`podman manifest create/add/push --all`: the multi-arch flow of `podman build --platform`."""
    c, host = clients, clients.server.host
    pod = podman(c, podman_runroot)
    amd64 = make_image("podlist", arch="amd64")
    arm64 = make_image("podlist", arch="arm64")
    write_layout(c.path("src"), "v1", [amd64, arm64], make_index([amd64, arm64]))
    skopeo_push(c, c.path("src"), "v1", f"{host}/{repo}/src:v1", all_images=True)

    c.run(*pod, "manifest", "create", "localhost/ncr-list:v1")
    c.run(*pod, "manifest", "add", "--all", "--tls-verify=false", "localhost/ncr-list:v1",
          f"docker://{host}/{repo}/src:v1")
    c.run(*pod, "manifest", "push", "--all", "--tls-verify=false", "localhost/ncr-list:v1",
          f"docker://{host}/{repo}/dst:v1")

    pushed = json.loads(manifest_bytes(c.server, f"{repo}/dst", "v1"))
    assert [(m["digest"], m["platform"]["architecture"]) for m in pushed["manifests"]] == \
        [(amd64.digest, "amd64"), (arm64.digest, "arm64")]
    for image in (amd64, arm64):  # every child and blob now in the destination, byte-identical
        assert manifest_bytes(c.server, f"{repo}/dst", image.digest) == image.manifest
        for digest, data in image.blobs.items():
            assert blob_bytes(c.server, f"{repo}/dst", digest) == data


# -- tag listing ----------------------------------------------------------------------------------------


@needs("skopeo", "crane", "regctl", "oras")
def test_tag_listing_and_pagination(clients: Clients, repo: str) -> None:
    """Every client lists all tags; --last/--limit pagination (regctl, oras) follows the spec's order."""
    c, host = clients, clients.server.host
    image = make_image("tags")
    push_image(c, image, f"{host}/{repo}:latest")
    names = ["latest"] + [f"v{i:03d}" for i in range(150)] + ["1.0", "A_upper", "z.z-z"]
    for tag in names[1:]:  # the tags themselves, straight over HTTP (fast), same manifest each
        assert put_manifest(c.server, repo, tag, image.manifest) == image.digest
    expected = sorted(names)
    assert tags(c.server, repo) == expected

    assert sorted(c.json("skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{repo}")["Tags"]) == expected
    assert sorted(c.run("crane", "ls", "--insecure", f"{host}/{repo}").stdout.split()) == expected
    assert sorted(c.run("oras", "repo", "tags", "--plain-http", f"{host}/{repo}").stdout.split()) == expected
    c.run("regctl", "registry", "set", "--tls", "disabled", host)
    assert sorted(c.run("regctl", "tag", "ls", f"{host}/{repo}").stdout.split()) == expected

    # Pagination: n and last (lexical order, as the distribution spec requires).
    page = c.run("regctl", "tag", "ls", "--limit", "5", "--last", "v099", f"{host}/{repo}").stdout.split()
    assert page == ["v100", "v101", "v102", "v103", "v104"]
    tail = c.run("oras", "repo", "tags", "--plain-http", "--last", "v148", f"{host}/{repo}").stdout.split()
    assert tail == ["v149", "z.z-z"]
    r = registry_get(c.server, f"/v2/{repo}/tags/list", params={"n": "3"})
    assert r.json()["tags"] == expected[:3]
    assert r.headers["link"] == f'</v2/{repo}/tags/list?n=3&last={expected[2]}>; rel="next"'


# -- oras -------------------------------------------------------------------------------------------

ARTIFACT_TYPE = "application/vnd.ncr-trio.test.bundle.v1"
SBOM_TYPE = "application/vnd.ncr-trio.test.sbom.v1+json"


@needs("oras")
def test_oras_push_pull_attach_discover(clients: Clients, repo: str) -> None:
    c, host = clients, clients.server.host
    work = c.path("work")
    work.mkdir()
    files = {"hello.txt": b"hello from ncr-trio\n", "data.bin": random_bytes(16 * 1024 * 1024 + 1, "oras")}
    for name, data in files.items():
        (work / name).write_bytes(data)

    pushed = c.json("oras", "push", "--plain-http", "--artifact-type", ARTIFACT_TYPE, "--format", "json",
                    f"{host}/{repo}:bundle", "hello.txt:text/plain", "data.bin:application/octet-stream", cwd=work)
    manifest = json.loads(c.run("oras", "manifest", "fetch", "--plain-http", f"{host}/{repo}:bundle").stdout)
    assert pushed["digest"] == sha256(manifest_bytes(c.server, repo, "bundle"))
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert {(layer["annotations"]["org.opencontainers.image.title"], layer["digest"])
            for layer in manifest["layers"]} == {(name, sha256(data)) for name, data in files.items()}

    out = c.path("out")
    out.mkdir()
    c.run("oras", "pull", "--plain-http", f"{host}/{repo}:bundle", "-o", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files

    # An image to attach to, copied in from an OCI layout by oras itself.
    image = make_image("oras-subject")
    write_layout(c.path("layout"), "img", [image])
    c.run("oras", "cp", "--to-plain-http", "--from-oci-layout", f"{c.path('layout')}:img", f"{host}/{repo}:img")
    assert manifest_bytes(c.server, repo, "img") == image.manifest

    (work / "sbom.json").write_text('{"packages": ["ncr-trio"]}')
    attached = c.json("oras", "attach", "--plain-http", "--artifact-type", SBOM_TYPE, "--annotation", "ncr.test=sbom",
                      "--format", "json", f"{host}/{repo}:img", "sbom.json:application/json", cwd=work)
    sbom = json.loads(manifest_bytes(c.server, repo, attached["digest"]))
    assert sbom["subject"]["digest"] == image.digest

    found = c.json("oras", "discover", "--plain-http", "--format", "json", f"{host}/{repo}:img")
    assert found["digest"] == image.digest
    assert [(r["digest"], r["artifactType"], r["annotations"]["ncr.test"]) for r in found["referrers"]] == \
        [(attached["digest"], SBOM_TYPE, "sbom")]
    # The same answer straight from the referrers API, filtered and not.
    api = referrers(c.server, repo, image.digest)
    assert [(d["digest"], d["artifactType"], d["mediaType"]) for d in api] == \
        [(attached["digest"], SBOM_TYPE, OCI_MANIFEST)]
    assert [d["digest"] for d in referrers(c.server, repo, image.digest, SBOM_TYPE)] == [attached["digest"]]
    assert referrers(c.server, repo, image.digest, ARTIFACT_TYPE) == []
    filtered = c.json("oras", "discover", "--plain-http", "--format", "json", "--artifact-type", ARTIFACT_TYPE,
                      f"{host}/{repo}:img")
    assert filtered["referrers"] == []
    # oras used the referrers API: no "sha256-<hex>" fallback tag was created.
    assert tags(c.server, repo) == ["bundle", "img"]

    sbom_out = c.path("sbom-out")
    sbom_out.mkdir()
    c.run("oras", "pull", "--plain-http", f"{host}/{repo}@{attached['digest']}", "-o", sbom_out)
    assert (sbom_out / "sbom.json").read_bytes() == (work / "sbom.json").read_bytes()

    # Copy the image with its referrers (-r) to another repository: the graph arrives whole.
    c.run("oras", "cp", "-r", "--from-plain-http", "--to-plain-http", f"{host}/{repo}:img", f"{host}/{repo}-copy:img")
    assert manifest_bytes(c.server, f"{repo}-copy", "img") == image.manifest
    assert [d["digest"] for d in referrers(c.server, f"{repo}-copy", image.digest)] == [attached["digest"]]
    assert manifest_bytes(c.server, f"{repo}-copy", attached["digest"]) == \
        manifest_bytes(c.server, repo, attached["digest"])
    assert tags(c.server, f"{repo}-copy") == ["img"]


# -- crane ------------------------------------------------------------------------------------------


@needs("crane")
def test_crane_append_pull_copy_digest_ls(clients: Clients, repo: str) -> None:
    c, host = clients, clients.server.host
    layer_tar = write_tar(c.path("layer.tar"), {"srv/hello.txt": b"crane was here\n",
                                                      "srv/blob.bin": random_bytes(8 * 1024 * 1024, "crane")})

    out = c.run("crane", "append", "--insecure", "--oci-empty-base", "-f", layer_tar, "-t", f"{host}/{repo}:v1")
    digest = out.stdout.strip().rsplit("@", 1)[1]
    assert c.run("crane", "digest", "--insecure", f"{host}/{repo}:v1").stdout.strip() == digest
    raw = manifest_bytes(c.server, repo, "v1")
    assert sha256(raw) == digest
    assert c.run("crane", "manifest", "--insecure", f"{host}/{repo}:v1").stdout.encode() == raw
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST
    (layer,) = manifest["layers"]
    assert gzip.decompress(blob_bytes(c.server, repo, layer["digest"])) == layer_tar.read_bytes()
    config_digest = manifest["config"]["digest"]
    config = c.run("crane", "config", "--insecure", f"{host}/{repo}:v1").stdout.encode()
    assert sha256(config) == config_digest
    assert c.run("crane", "blob", "--insecure", f"{host}/{repo}@{config_digest}").stdout.encode() == config

    # Pull as an OCI layout: same manifest, same blobs.
    c.run("crane", "pull", "--insecure", "--format", "oci", f"{host}/{repo}:v1", c.path("pulled"))
    pulled = layout_blobs(c.path("pulled"))
    assert pulled[digest] == raw
    assert pulled[layer["digest"]] == blob_bytes(c.server, repo, layer["digest"])
    assert pulled[config_digest] == config

    # Pull as a tarball and push it elsewhere (docker-archive manifests: same config and layer).
    c.run("crane", "pull", "--insecure", f"{host}/{repo}:v1", c.path("image.tar"))
    with tarfile.open(c.path("image.tar")) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        assert len(json.load(member)) == 1
    pushed = c.run("crane", "push", "--insecure", c.path("image.tar"), f"{host}/{repo}-tarball:v1")
    tar_digest = pushed.stdout.strip().rsplit("@", 1)[1]
    tar_manifest = json.loads(manifest_bytes(c.server, f"{repo}-tarball", "v1"))
    assert sha256(manifest_bytes(c.server, f"{repo}-tarball", "v1")) == tar_digest
    assert tar_manifest["config"]["digest"] == config_digest
    assert [x["digest"] for x in tar_manifest["layers"]] == [layer["digest"]]

    # Copy between repositories: identical digest; blobs are cross-repository mounted.
    copied = c.run("crane", "copy", "--insecure", f"{host}/{repo}:v1", f"{host}/{repo}-copy:v2")
    assert "mounted blob" in copied.stderr, c.describe(copied)
    assert c.run("crane", "digest", "--insecure", f"{host}/{repo}-copy:v2").stdout.strip() == digest
    assert manifest_bytes(c.server, f"{repo}-copy", "v2") == raw

    c.run("crane", "tag", "--insecure", f"{host}/{repo}:v1", "v1-again")
    assert c.run("crane", "ls", "--insecure", f"{host}/{repo}").stdout.split() == ["v1", "v1-again"]
    assert c.run("crane", "ls", "--insecure", f"{host}/{repo}-copy").stdout.split() == ["v2"]
    catalog = c.run("crane", "catalog", "--insecure", host).stdout.split()
    assert {repo, f"{repo}-copy", f"{repo}-tarball"} <= set(catalog)


# -- regctl -----------------------------------------------------------------------------------------

NOTE_TYPE = "application/vnd.ncr-trio.test.note.v1"


@needs("regctl")
def test_regctl_copy_digest_tags_manifest(clients: Clients, repo: str) -> None:
    c, host = clients, clients.server.host
    amd64 = make_image("regctl", arch="amd64")
    arm64 = make_image("regctl", arch="arm64")
    index = make_index([amd64, arm64])
    write_layout(c.path("src"), "v1", [amd64, arm64], index)

    c.run("regctl", "registry", "set", "--tls", "disabled", host)
    assert (Path(c.env["HOME"]) / ".regctl/config.json").exists()  # config stayed in the private HOME

    c.run("regctl", "image", "copy", f"ocidir://{c.path('src')}:v1", f"{host}/{repo}:v1")
    c.run("regctl", "image", "copy", f"{host}/{repo}:v1", f"{host}/{repo}-copy:v2")
    for ref in (f"{repo}:v1", f"{repo}-copy:v2"):
        assert c.run("regctl", "image", "digest", f"{host}/{ref}").stdout.strip() == sha256(index)
    assert c.run("regctl", "tag", "ls", f"{host}/{repo}").stdout.split() == ["v1"]
    assert c.run("regctl", "tag", "ls", f"{host}/{repo}-copy").stdout.split() == ["v2"]

    raw = c.run("regctl", "manifest", "get", "--format", "raw-body", f"{host}/{repo}-copy:v2").stdout
    assert raw.encode() == index
    arm = c.run("regctl", "manifest", "get", "--platform", "linux/arm64", "--format", "raw-body",
                f"{host}/{repo}-copy:v2")
    assert arm.stdout.encode() == arm64.manifest

    c.run("regctl", "image", "copy", f"{host}/{repo}-copy:v2", f"ocidir://{c.path('out')}:v2")
    assert layout_blobs(c.path("out")) == layout_blobs(c.path("src"))

    # An artifact with a subject, and the referrers regctl lists for it.
    c.path("note.json").write_text('{"note": "regctl"}')
    c.run("regctl", "artifact", "put", "--subject", f"{host}/{repo}:v1", "--artifact-type", NOTE_TYPE,
          "-f", c.path("note.json"), "--file-media-type", "application/json", "--annotation", "ncr.test=note")
    listed = c.json("regctl", "artifact", "list", "--format", "{{json .}}", f"{host}/{repo}:v1")
    (descriptor,) = listed["descriptors"]
    assert (descriptor["artifactType"], descriptor["annotations"]) == (NOTE_TYPE, {"ncr.test": "note"})
    assert [d["digest"] for d in referrers(c.server, repo, sha256(index))] == [descriptor["digest"]]
    note = json.loads(c.run("regctl", "manifest", "get", "--format", "raw-body",
                            f"{host}/{repo}@{descriptor['digest']}").stdout)
    assert note["subject"]["digest"] == sha256(index)
    (layer,) = note["layers"]
    blob = c.run("regctl", "blob", "get", f"{host}/{repo}", layer["digest"]).stdout
    assert blob == '{"note": "regctl"}'

    # Deleting one tag (DELETE by tag, distribution-spec 1.1) leaves the manifest and its other tags.
    c.run("regctl", "image", "copy", f"{host}/{repo}:v1", f"{host}/{repo}:also")
    c.run("regctl", "tag", "delete", f"{host}/{repo}:v1")
    assert c.run("regctl", "tag", "ls", f"{host}/{repo}").stdout.split() == ["also"]
    assert c.run("regctl", "image", "digest", f"{host}/{repo}:also").stdout.strip() == sha256(index)
    assert manifest_bytes(c.server, repo, sha256(index)) == index
    gone = c.run("regctl", "manifest", "head", f"{host}/{repo}:v1", check=False)
    assert gone.returncode != 0, c.describe(gone)


# -- helm -------------------------------------------------------------------------------------------


def _tgz_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


@needs("helm")
def test_helm_push_pull_chart(clients: Clients, repo: str) -> None:
    c, host = clients, clients.server.host
    c.run("helm", "create", "ncrchart")
    for version in ("0.3.1", "1.0.0+build.7"):
        c.run("helm", "package", "ncrchart", "--version", version, "-d", c.path("pkg"))
        push = c.run("helm", "push", c.path(f"pkg/ncrchart-{version}.tgz"), f"oci://{host}/{repo}", "--plain-http")
        assert f"Pushed: {host}/{repo}/ncrchart:{version.replace('+', '_')}" in push.stdout + push.stderr

    # OCI tags cannot hold '+': helm stores 1.0.0+build.7 as 1.0.0_build.7 and maps it back.
    assert tags(c.server, f"{repo}/ncrchart") == ["0.3.1", "1.0.0_build.7"]
    manifest = json.loads(manifest_bytes(c.server, f"{repo}/ncrchart", "0.3.1"))
    assert "mediaType" not in manifest  # helm sends the media type only as Content-Type
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"

    for version in ("0.3.1", "1.0.0+build.7"):
        dest = c.path(f"pulled-{version}")
        dest.mkdir()  # helm pull -d does not create the directory
        c.run("helm", "pull", f"oci://{host}/{repo}/ncrchart", "--version", version, "--plain-http", "-d", dest)
        original = c.path(f"pkg/ncrchart-{version}.tgz")
        assert (dest / original.name).read_bytes() == original.read_bytes()
        assert _tgz_files(dest / original.name) == _tgz_files(original)

    shown = c.run("helm", "show", "chart", f"oci://{host}/{repo}/ncrchart", "--version", "0.3.1", "--plain-http")
    assert "name: ncrchart" in shown.stdout and "version: 0.3.1" in shown.stdout


# -- cosign -----------------------------------------------------------------------------------------

COSIGN_REGISTRY = ["--allow-insecure-registry", "--allow-http-registry"]
# Signing/verifying with a key and no transparency log needs no Sigstore service; an empty trusted
# root stops `cosign verify` from fetching one over TUF (it would try, and warn, without it).
EMPTY_TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                      "tlogs": [], "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}

# name: (sign flags, verify flags, extra env, how the signature is stored)
COSIGN_MODES = {
    "legacy-tag": ([], [], {}, "tag"),
    "bundle-referrer": (["--new-bundle-format"], ["--new-bundle-format"], {},
                        "application/vnd.dev.sigstore.bundle.v0.3+json"),
    "legacy-referrer": (["--registry-referrers-mode=oci-1-1"], ["--experimental-oci11"], {"COSIGN_EXPERIMENTAL": "1"},
                        "application/vnd.dev.cosign.artifact.sig.v1+json"),
}


@needs("cosign", "skopeo")
@pytest.mark.parametrize("mode", list(COSIGN_MODES))
def test_cosign_sign_verify(clients: Clients, repo: str, mode: str) -> None:
    c, host = clients, clients.server.host
    sign_flags, verify_flags, env, storage = COSIGN_MODES[mode]
    env = {"COSIGN_PASSWORD": "", **env}
    image = make_image(f"cosign-{mode}")
    push_image(c, image, f"{host}/{repo}:v1")
    c.run("cosign", "generate-key-pair", env=env)
    c.path("other").mkdir()
    c.run("cosign", "generate-key-pair", env=env, cwd=c.path("other"))
    c.path("trusted_root.json").write_text(json.dumps(EMPTY_TRUSTED_ROOT))
    ref = f"{host}/{repo}@{image.digest}"

    c.run("cosign", "sign", "--key", "cosign.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY, *sign_flags, ref,
          env=env)

    if storage == "tag":
        assert tags(c.server, repo) == sorted(["v1", f"sha256-{image.digest.split(':')[1]}.sig"])
        assert referrers(c.server, repo, image.digest) == []
    else:
        assert tags(c.server, repo) == ["v1"]
        (found,) = referrers(c.server, repo, image.digest)
        assert found["artifactType"] == storage
        signature = json.loads(manifest_bytes(c.server, repo, found["digest"]))
        assert signature["subject"]["digest"] == image.digest

    verify = ["cosign", "verify", "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json",
              *COSIGN_REGISTRY, *verify_flags]
    good = c.run(*verify, "--key", "cosign.pub", ref, env=env)
    claims = json.loads(good.stdout)
    assert [claim["critical"]["image"]["docker-manifest-digest"] for claim in claims] == [image.digest]
    assert "tuf" not in good.stderr.lower(), c.describe(good)  # no network lookups attempted

    # The same signature, another key: rejected. (In legacy-referrer mode cosign 2.6.4 drops the
    # failed referrer, falls back to the .sig tag, finds none and says "no signatures found", exit 10.)
    bad = c.run(*verify, "--key", "other/cosign.pub", ref, env=env, check=False)
    assert bad.returncode != 0, c.describe(bad)
    assert "no matching" in bad.stderr or (mode == "legacy-referrer" and "no signatures found" in bad.stderr), \
        c.describe(bad)


@needs("cosign", "skopeo")
def test_cosign_attest_tree_copy(clients: Clients, repo: str) -> None:
    """An in-toto attestation next to a signature (.att/.sig tags), `cosign tree`, and `cosign copy`."""
    c, host = clients, clients.server.host
    env = {"COSIGN_PASSWORD": ""}
    image = make_image("cosign-attest")
    push_image(c, image, f"{host}/{repo}:v1")
    c.run("cosign", "generate-key-pair", env=env)
    c.path("trusted_root.json").write_text(json.dumps(EMPTY_TRUSTED_ROOT))
    c.path("predicate.json").write_text('{"builder": "ncr-trio tests"}')
    ref = f"{host}/{repo}@{image.digest}"
    offline = ["--key", "cosign.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY]
    c.run("cosign", "sign", *offline, ref, env=env)
    c.run("cosign", "attest", *offline, "--type", "custom", "--predicate", "predicate.json", ref, env=env)
    prefix = f"sha256-{image.digest.split(':')[1]}"
    assert tags(c.server, repo) == [f"{prefix}.att", f"{prefix}.sig", "v1"]

    verify = ["--key", "cosign.pub", "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json",
              *COSIGN_REGISTRY]
    statements = c.run("cosign", "verify-attestation", *verify, "--type", "custom", ref).stdout.splitlines()
    (envelope,) = [json.loads(line) for line in statements if line.strip()]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == image.digest.split(":")[1]
    assert statement["predicate"]["Data"] == '{"builder": "ncr-trio tests"}'

    tree = c.run("cosign", "tree", *COSIGN_REGISTRY, ref).stdout
    assert f"{prefix}.sig" in tree and f"{prefix}.att" in tree

    c.run("cosign", "copy", *COSIGN_REGISTRY, ref, f"{host}/{repo}-copy:v1")
    assert manifest_bytes(c.server, f"{repo}-copy", "v1") == image.manifest
    assert {f"{prefix}.att", f"{prefix}.sig", "v1"} <= set(tags(c.server, f"{repo}-copy"))
    c.run("cosign", "verify", *verify, f"{host}/{repo}-copy@{image.digest}")
    c.run("cosign", "verify-attestation", *verify, "--type", "custom", f"{host}/{repo}-copy@{image.digest}")


# -- docker CLI -------------------------------------------------------------------------------------


@needs("docker", "skopeo")
def test_docker_manifest_inspect_create_push(clients: Clients, repo: str) -> None:
    c, host = clients, clients.server.host
    amd64 = make_image("docker", arch="amd64")
    arm64 = make_image("docker", arch="arm64")
    index = make_index([amd64, arm64])
    write_layout(c.path("src"), "multi", [amd64, arm64], index)
    skopeo_push(c, c.path("src"), "multi", f"{host}/{repo}:multi", all_images=True)
    push_image(c, amd64, f"{host}/{repo}:single")

    # Plain: the manifest as JSON (docker re-indents it, so compare parsed).
    single = c.json("docker", "manifest", "inspect", "--insecure", f"{host}/{repo}:single")
    assert single == json.loads(amd64.manifest)
    # Verbose: the exact bytes (base64 "Raw") and the descriptor with its digest.
    verbose = c.json("docker", "manifest", "inspect", "--insecure", "--verbose", f"{host}/{repo}:single")
    assert base64.b64decode(verbose["Raw"]) == amd64.manifest
    assert verbose["Descriptor"]["digest"] == amd64.digest
    assert verbose["Descriptor"]["size"] == len(amd64.manifest)

    multi = c.json("docker", "manifest", "inspect", "--insecure", f"{host}/{repo}:multi")
    assert multi == json.loads(index)
    per_platform = c.json("docker", "manifest", "inspect", "--insecure", "--verbose", f"{host}/{repo}:multi")
    assert [(e["Descriptor"]["digest"], e["Descriptor"]["platform"]["architecture"]) for e in per_platform] == \
        [(amd64.digest, "amd64"), (arm64.digest, "arm64")]
    assert [base64.b64decode(e["Raw"]) for e in per_platform] == [amd64.manifest, arm64.manifest]

    # Build a list from the two platform images with the docker CLI alone (no daemon) and push it.
    c.run("docker", "manifest", "create", "--insecure", f"{host}/{repo}-list:v1",
          f"{host}/{repo}@{amd64.digest}", f"{host}/{repo}@{arm64.digest}")
    c.run("docker", "manifest", "annotate", "--variant", "v8", f"{host}/{repo}-list:v1",
          f"{host}/{repo}@{arm64.digest}")
    pushed = c.run("docker", "manifest", "push", "--insecure", f"{host}/{repo}-list:v1")
    list_digest = pushed.stdout.strip().splitlines()[-1]
    stored = manifest_bytes(c.server, f"{repo}-list", "v1")
    assert sha256(stored) == list_digest
    entries = json.loads(stored)["manifests"]
    by_digest = {e["digest"]: (e["mediaType"], e["platform"]) for e in entries}  # docker does not keep the order
    assert len(entries) == 2
    assert by_digest == {amd64.digest: (OCI_MANIFEST, {"architecture": "amd64", "os": "linux"}),
                         arm64.digest: (OCI_MANIFEST, {"architecture": "arm64", "os": "linux", "variant": "v8"})}
    for image in (amd64, arm64):  # children copied into the list's repository, unchanged
        assert manifest_bytes(c.server, f"{repo}-list", image.digest) == image.manifest
        for digest, data in image.blobs.items():
            assert blob_bytes(c.server, f"{repo}-list", digest) == data

    missing = c.run("docker", "manifest", "inspect", "--insecure", f"{host}/{repo}:nope", check=False)
    assert missing.returncode != 0
    assert "no such manifest" in (missing.stdout + missing.stderr).lower(), c.describe(missing)


def test_helpers_build_consistent_content() -> None:
    """The builders themselves: config diff_ids match the layers, the index points at both images."""
    image = make_image("self", n_layers=2)
    config = json.loads(image.config)
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(layer)) for layer in image.layers]
    manifest = json.loads(image.manifest)
    assert manifest["config"]["digest"] == sha256(image.config)
    assert make_image("self", n_layers=2).manifest == image.manifest  # deterministic
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layers[0]))) as tar:
        assert "etc/ncr-test/self-0.txt" in tar.getnames()
    index = json.loads(make_index([image, make_image("self", arch="arm64", n_layers=2)]))
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
