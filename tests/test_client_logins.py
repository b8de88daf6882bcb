"""Real clients log in with access keys, and roles decide what they may then do.

Every client logs in the way its users do (`<client> login` with the key ID as the user name and
the secret on stdin, where the client can read it there), then pushes or pulls through the Docker
token service; a wrong secret must not get in. Then the roles, seen from real clients: a
service-viewer pulls but cannot push, an image-uploader pushes but cannot delete, a user without a
role sees nothing, and a revoked key (and a token it got before) stops working.

What each client did is checked through the admin's eyes (tests/support/logins.py), never through
the client that did it. One server for the whole module (plain HTTP on 127.0.0.1, login
throttling off: every failed login here comes from the same address); every test has its own
registry, repository, user and client home (`Clients(logged_in=False)`).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ncr_trio.client import APIError
from tests.support.auth import token
from tests.support.clients import (
    Clients,
    clients_watching,
    find_tool,
    make_image,
    random_bytes,
    sha256,
    write_layout,
    write_tar,
)
from tests.support.logins import (
    NO_LOGIN_THROTTLE,
    Account,
    admin_manifest,
    admin_tags,
    new_account,
    stored_logins,
)
from tests.support.oci import Image, push_image
from tests.support.server import Server

pytestmark = pytest.mark.clients

# What clients print when the registry refuses credentials or an action (case-insensitive).
REFUSED = re.compile(r"unauthorized|denied|forbidden|invalid username|401|403", re.IGNORECASE)
DENIED = re.compile(r"denied|unauthorized|forbidden", re.IGNORECASE)


def needs(*names: str) -> pytest.MarkDecorator:
    missing = [n for n in names if find_tool(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(data=tmp_path_factory.mktemp("logins") / "data", env=NO_LOGIN_THROTTLE)
    try:  # start() inside: a server that never got ready is stopped too
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture
def slug(request: pytest.FixtureRequest) -> str:
    """This test's name as a registry name, e.g. "login-skopeo"."""
    name = request.node.name.lower().removeprefix("test_")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:60]


@pytest.fixture
def registry(server: Server, slug: str) -> str:
    """A registry of this test's own, created by the admin."""
    server.api().call("api.registry.create", {"name": slug})
    return slug


@pytest.fixture
def clients(server: Server, tmp_path: Path) -> Iterator[Clients]:
    """A logged-out client home; afterwards the server must not have logged an error."""
    yield from clients_watching(server, tmp_path, logged_in=False)


def member(server: Server, registry: str, prefix: str) -> Account:
    return new_account(server, prefix, "project-member", registry)


def wrong(account: Account) -> str:
    """A secret of the right shape that is not the key's."""
    return account.secret[::-1] if account.secret[::-1] != account.secret else account.secret + "x"


def seed(server: Server, repo: str, label: str, tag: str = "v1") -> Image:
    """An image pushed by the admin (token auth over HTTP)."""
    image = make_image(label)
    with server.client() as client:
        push_image(client, repo, image, tag)
    return image


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"{proc.stdout}\n{proc.stderr}"


def assert_refused_login(c: Clients, proc: subprocess.CompletedProcess[str]) -> None:
    """The client's login failed, said why, and stored nothing for the registry."""
    assert proc.returncode != 0, c.describe(proc)
    assert REFUSED.search(output(proc)), c.describe(proc)
    assert c.server.host not in stored_logins(Path(c.env["HOME"]))


def assert_audited(server: Server, account: Account, action: str, repo: str) -> None:
    """The audit log has `action` on `repo` by the key's user (the login really was the key's)."""
    entries = server.api().doc("api.audit", actor=account.user, action=action, limit=50)["entries"]
    assert any(e["repository"] == repo and e["outcome"] == "ok" for e in entries), entries
    logins = server.api().doc("api.audit", actor=account.user, action="login", limit=50)["entries"]
    assert any(e["outcome"] == "ok" and e["target"] == account.key_id for e in logins), logins


# -- 1. every client logs in with an access key ------------------------------------------------------


@needs("docker")
def test_login_docker(server: Server, registry: str, clients: Clients) -> None:
    """`docker login` (no daemon needed) and `docker manifest inspect`, a pull, through the login."""
    c, host = clients, server.host
    account = member(server, registry, "docker")
    repo = f"{registry}/app"
    image = seed(server, repo, "login-docker")

    bad = c.run("docker", "login", "-u", account.key_id, "--password-stdin", host, input=wrong(account), check=False)
    assert_refused_login(c, bad)
    # Without a login there is nothing to see.
    anonymous = c.run("docker", "manifest", "inspect", "--insecure", f"{host}/{repo}:v1", check=False)
    assert anonymous.returncode != 0 and REFUSED.search(output(anonymous)), c.describe(anonymous)

    c.run("docker", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret)
    # docker uses the OAuth2 flow (POST /auth/token) and keeps only the refresh token it got:
    # config.json holds the key ID and an identity token, never the secret.
    entry = stored_logins(Path(c.env["HOME"]))[host]
    assert base64.b64decode(entry["auth"]).decode() == f"{account.key_id}:"
    assert entry.get("identitytoken")
    assert account.secret not in Path(c.env["DOCKER_CONFIG"], "config.json").read_text()

    shown = c.json("docker", "manifest", "inspect", "--insecure", f"{host}/{repo}:v1")
    assert shown == json.loads(image.manifest)
    verbose = c.json("docker", "manifest", "inspect", "--insecure", "--verbose", f"{host}/{repo}:v1")
    assert base64.b64decode(verbose["Raw"]) == image.manifest
    assert verbose["Descriptor"]["digest"] == image.digest
    assert_audited(server, account, "pull", repo)


@needs("skopeo")
def test_login_skopeo(server: Server, registry: str, clients: Clients) -> None:
    c, host = clients, server.host
    account = member(server, registry, "skopeo")
    repo = f"{registry}/app"
    image = make_image("login-skopeo", n_layers=2)
    write_layout(c.path("src"), "v1", [image])

    bad = c.run("skopeo", "login", "--tls-verify=false", "-u", account.key_id, "--password-stdin", host,
                input=wrong(account), check=False)
    assert_refused_login(c, bad)

    c.run("skopeo", "login", "--tls-verify=false", "-u", account.key_id, "--password-stdin", host,
          input=account.secret)
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('src')}:v1", f"docker://{host}/{repo}:v1")
    assert admin_manifest(server, repo, "v1") == image.manifest
    raw = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1").stdout
    assert raw.encode() == image.manifest
    assert admin_tags(server, repo) == ["v1"]
    assert_audited(server, account, "push", repo)

    c.run("skopeo", "logout", host)
    gone = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1", check=False)
    assert gone.returncode != 0 and REFUSED.search(output(gone)), c.describe(gone)


@pytest.fixture
def podman_runroot() -> Iterator[Path]:
    """podman refuses a --runroot longer than 50 characters: pytest's tmp_path is too long for it."""
    with tempfile.TemporaryDirectory(prefix="ncr-podman-", dir="/tmp") as d:
        yield Path(d)


def podman(c: Clients, runroot: Path) -> list[str]:
    """podman as root, with vfs storage under the test's directory (as in tests/test_clients.py)."""
    return ["podman", "--storage-driver", "vfs", "--root", str(c.path("storage")),
            "--runroot", str(runroot), "--tmpdir", str(c.path("podman-tmp")),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


@needs("podman")
def test_login_podman(server: Server, registry: str, clients: Clients, podman_runroot: Path) -> None:
    c, host = clients, server.host
    pod = podman(c, podman_runroot)
    account = member(server, registry, "podman")
    repo = f"{registry}/app"
    image = seed(server, repo, "login-podman")

    bad = c.run(*pod, "login", "--tls-verify=false", "-u", account.key_id, "--password-stdin", host,
                input=wrong(account), check=False)
    assert_refused_login(c, bad)

    c.run(*pod, "login", "--tls-verify=false", "-u", account.key_id, "--password-stdin", host, input=account.secret)
    c.run(*pod, "pull", "--tls-verify=false", f"{host}/{repo}:v1")
    facts = c.json(*pod, "image", "inspect", f"{host}/{repo}:v1")[0]
    assert facts["Digest"] == image.digest
    c.run(*pod, "push", "--tls-verify=false", f"{host}/{repo}:v1", f"docker://{host}/{repo}:pushed")
    pushed = admin_manifest(server, repo, "pushed")
    assert pushed is not None and json.loads(pushed)["config"]["digest"] == sha256(image.config)
    assert admin_tags(server, repo) == ["pushed", "v1"]
    assert_audited(server, account, "push", repo)


@needs("oras")
def test_login_oras(server: Server, registry: str, clients: Clients) -> None:
    c, host = clients, server.host
    account = member(server, registry, "oras")
    repo = f"{registry}/bundle"
    work = c.path("work")
    work.mkdir()
    files = {"hello.txt": b"hello through an access key\n", "data.bin": random_bytes(300_000, "oras-login")}
    for name, data in files.items():
        (work / name).write_bytes(data)

    bad = c.run("oras", "login", "--plain-http", "-u", account.key_id, "--password-stdin", host,
                input=wrong(account), check=False)
    assert_refused_login(c, bad)

    c.run("oras", "login", "--plain-http", "-u", account.key_id, "--password-stdin", host, input=account.secret)
    pushed = c.json("oras", "push", "--plain-http", "--format", "json", f"{host}/{repo}:v1",
                    "hello.txt:text/plain", "data.bin:application/octet-stream", cwd=work)
    stored = admin_manifest(server, repo, "v1")
    assert stored is not None and pushed["digest"] == sha256(stored)
    out = c.path("out")
    out.mkdir()
    c.run("oras", "pull", "--plain-http", f"{host}/{repo}:v1", "-o", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    assert_audited(server, account, "push", repo)


@needs("helm")
def test_login_helm(server: Server, registry: str, clients: Clients) -> None:
    c, host = clients, server.host
    account = member(server, registry, "helm")
    repo = f"{registry}/charts"

    bad = c.run("helm", "registry", "login", "--plain-http", "-u", account.key_id, "--password-stdin", host,
                input=wrong(account), check=False)
    assert_refused_login(c, bad)

    c.run("helm", "registry", "login", "--plain-http", "-u", account.key_id, "--password-stdin", host,
          input=account.secret)
    c.run("helm", "create", "keychart")
    c.run("helm", "package", "keychart", "--version", "1.2.3", "-d", c.path("pkg"))
    chart = c.path("pkg/keychart-1.2.3.tgz")
    c.run("helm", "push", chart, f"oci://{host}/{repo}", "--plain-http")
    assert admin_tags(server, f"{repo}/keychart") == ["1.2.3"]
    dest = c.path("pulled")
    dest.mkdir()
    c.run("helm", "pull", f"oci://{host}/{repo}/keychart", "--version", "1.2.3", "--plain-http", "-d", dest)
    assert (dest / chart.name).read_bytes() == chart.read_bytes()
    assert_audited(server, account, "push", f"{repo}/keychart")


@needs("crane")
def test_login_crane(server: Server, registry: str, clients: Clients) -> None:
    """`crane auth login` only writes config.json (it never contacts the registry), so a wrong
    secret shows only at the first request: which the registry refuses."""
    c, host = clients, server.host
    account = member(server, registry, "crane")
    repo = f"{registry}/app"
    layer = write_tar(c.path("layer.tar"), {"srv/crane.txt": b"pushed with an access key\n"})

    c.run("crane", "auth", "login", "-u", account.key_id, "--password-stdin", host, input=wrong(account))
    bad = c.run("crane", "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", f"{host}/{repo}:v1",
                check=False)
    assert bad.returncode != 0 and REFUSED.search(output(bad)), c.describe(bad)
    assert admin_tags(server, repo) == []

    c.run("crane", "auth", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret)
    out = c.run("crane", "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", f"{host}/{repo}:v1")
    digest = out.stdout.strip().rsplit("@", 1)[1]
    stored = admin_manifest(server, repo, "v1")
    assert stored is not None and sha256(stored) == digest
    assert c.run("crane", "digest", "--insecure", f"{host}/{repo}:v1").stdout.strip() == digest
    assert c.run("crane", "manifest", "--insecure", f"{host}/{repo}:v1").stdout.encode() == stored
    assert_audited(server, account, "push", repo)


@needs("regctl")
def test_login_regctl(server: Server, registry: str, clients: Clients) -> None:
    """regctl pings the registry at login and fails on a wrong secret, but keeps it in its config
    anyway ("credentials were still stored"): the next login replaces it."""
    c, host = clients, server.host
    account = member(server, registry, "regctl")
    repo = f"{registry}/app"
    image = make_image("login-regctl")
    write_layout(c.path("src"), "v1", [image])
    c.run("regctl", "registry", "set", "--tls", "disabled", host)

    bad = c.run("regctl", "registry", "login", "-u", account.key_id, "--pass-stdin", host, input=wrong(account),
                check=False)
    assert bad.returncode != 0 and REFUSED.search(output(bad)), c.describe(bad)
    refused = c.run("regctl", "image", "copy", f"ocidir://{c.path('src')}:v1", f"{host}/{repo}:v1", check=False)
    assert refused.returncode != 0 and REFUSED.search(output(refused)), c.describe(refused)

    c.run("regctl", "registry", "login", "-u", account.key_id, "--pass-stdin", host, input=account.secret)
    c.run("regctl", "image", "copy", f"ocidir://{c.path('src')}:v1", f"{host}/{repo}:v1")
    assert admin_manifest(server, repo, "v1") == image.manifest
    assert c.run("regctl", "image", "digest", f"{host}/{repo}:v1").stdout.strip() == image.digest
    assert c.run("regctl", "tag", "ls", f"{host}/{repo}").stdout.split() == ["v1"]
    assert_audited(server, account, "push", repo)


@needs("cosign")
def test_login_cosign(server: Server, registry: str, clients: Clients) -> None:
    """`cosign login`, like crane's, only stores the credentials: a wrong secret fails the signing."""
    c, host = clients, server.host
    env = {"COSIGN_PASSWORD": ""}
    account = member(server, registry, "cosign")
    repo = f"{registry}/app"
    image = seed(server, repo, "login-cosign")
    c.run("cosign", "generate-key-pair", env=env)
    ref = f"{host}/{repo}@{image.digest}"
    insecure = ["--allow-insecure-registry", "--allow-http-registry"]
    sign = ["cosign", "sign", "--key", "cosign.key", "--tlog-upload=false", "--yes", *insecure, ref]
    signature_tag = f"sha256-{image.digest.split(':')[1]}.sig"

    c.run("cosign", "login", "-u", account.key_id, "--password-stdin", host, input=wrong(account))
    bad = c.run(*sign, env=env, check=False)
    assert bad.returncode != 0 and REFUSED.search(output(bad)), c.describe(bad)
    assert admin_tags(server, repo) == ["v1"]

    c.run("cosign", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret)
    c.run(*sign, env=env)
    assert admin_tags(server, repo) == sorted(["v1", signature_tag])
    trusted_root = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                    "tlogs": [], "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}
    c.path("trusted_root.json").write_text(json.dumps(trusted_root))
    verified = c.run("cosign", "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--trusted-root",
                     "trusted_root.json", *insecure, ref, env=env)
    claims = json.loads(verified.stdout)
    assert [claim["critical"]["image"]["docker-manifest-digest"] for claim in claims] == [image.digest]
    assert_audited(server, account, "push", repo)


# -- 2. a service-viewer pulls, and only pulls ------------------------------------------------------------


@needs("skopeo", "crane")
def test_service_viewer_pulls_but_cannot_push(server: Server, registry: str, clients: Clients) -> None:
    c, host = clients, server.host
    viewer = new_account(server, "viewer", "service-viewer", registry)
    repo = f"{registry}/app"
    image = seed(server, repo, "viewer")
    other = make_image("viewer-push")
    write_layout(c.path("other"), "v2", [other])
    c.run("skopeo", "login", "--tls-verify=false", "-u", viewer.key_id, "--password-stdin", host,
          input=viewer.secret)

    # Pull: inspect, and copy every blob out.
    raw = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1").stdout
    assert raw.encode() == image.manifest
    c.run("skopeo", "copy", "--src-tls-verify=false", f"docker://{host}/{repo}:v1", f"oci:{c.path('out')}:v1")
    blobs = {p.name: p.read_bytes() for p in c.path("out/blobs/sha256").iterdir()}
    assert {f"sha256:{name}" for name in blobs} == {image.digest, *image.blobs}

    # Push: into the repository it can read, and into a new one. Refused in the client, nothing stored.
    for target in (f"{repo}:v2", f"{registry}/new:v2"):
        pushed = c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('other')}:v2",
                       f"docker://{host}/{target}", check=False)
        assert pushed.returncode != 0, c.describe(pushed)
        assert DENIED.search(pushed.stderr), c.describe(pushed)
    assert admin_tags(server, repo) == ["v1"]
    assert admin_tags(server, f"{registry}/new") == []
    assert admin_manifest(server, repo, other.digest) is None

    # Retagging is a push too (crane copies within the repository: blobs exist, the manifest PUT is refused).
    c.run("crane", "auth", "login", "-u", viewer.key_id, "--password-stdin", host, input=viewer.secret)
    retag = c.run("crane", "copy", "--insecure", f"{host}/{repo}:v1", f"{host}/{repo}:copied", check=False)
    assert retag.returncode != 0 and DENIED.search(retag.stderr), c.describe(retag)
    deleted = c.run("skopeo", "delete", "--tls-verify=false", f"docker://{host}/{repo}:v1", check=False)
    assert deleted.returncode != 0 and DENIED.search(deleted.stderr), c.describe(deleted)
    assert admin_tags(server, repo) == ["v1"]
    assert admin_manifest(server, repo, "v1") == image.manifest

    # The management API shows the viewer this registry, and only this one.
    assert [r["name"] for r in server.api(viewer.key_id, viewer.secret).doc("api.registries")["registries"]] == [registry]


# -- 3. an image-uploader pushes but cannot delete ------------------------------------------------------


@needs("skopeo", "crane")
def test_image_uploader_pushes_but_cannot_delete(server: Server, registry: str, clients: Clients) -> None:
    c, host = clients, server.host
    uploader = new_account(server, "uploader", "image-uploader", registry)
    repo = f"{registry}/app"
    image = make_image("uploader", n_layers=2)
    write_layout(c.path("src"), "v1", [image])
    c.run("skopeo", "login", "--tls-verify=false", "-u", uploader.key_id, "--password-stdin", host,
          input=uploader.secret)

    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('src')}:v1", f"docker://{host}/{repo}:v1")
    assert admin_manifest(server, repo, "v1") == image.manifest
    assert c.run("skopeo", "inspect", "--raw", "--tls-verify=false",
                 f"docker://{host}/{repo}:v1").stdout.encode() == image.manifest

    deleted = c.run("skopeo", "delete", "--tls-verify=false", f"docker://{host}/{repo}:v1", check=False)
    assert deleted.returncode != 0 and DENIED.search(deleted.stderr), c.describe(deleted)
    c.run("crane", "auth", "login", "-u", uploader.key_id, "--password-stdin", host, input=uploader.secret)
    for ref in (f"{repo}:v1", f"{repo}@{image.digest}"):
        crane = c.run("crane", "delete", "--insecure", f"{host}/{ref}", check=False)
        assert crane.returncode != 0 and DENIED.search(crane.stderr), c.describe(crane)

    # Still there, by tag and by digest, with its blobs.
    assert admin_tags(server, repo) == ["v1"]
    assert admin_manifest(server, repo, "v1") == image.manifest
    assert admin_manifest(server, repo, image.digest) == image.manifest
    with server.client() as admin:
        for digest in image.blobs:
            assert admin.head(f"/v2/{repo}/blobs/{digest}").status_code == 200
    entries = server.api().doc("api.audit", actor=uploader.user, action="delete", limit=10)["entries"]
    assert not [e for e in entries if e["outcome"] == "ok"], entries


# -- 4. a user without a role sees nothing ------------------------------------------------------------


@needs("skopeo", "crane")
def test_user_without_role_sees_nothing(server: Server, registry: str, clients: Clients) -> None:
    c, host = clients, server.host
    nobody = new_account(server, "nobody")
    repo = f"{registry}/app"
    seed(server, repo, "nobody")
    write_layout(c.path("src"), "v1", [make_image("nobody-push")])

    # The key is valid: the login itself succeeds (docker-style GET /v2/ with any valid token).
    c.run("skopeo", "login", "--tls-verify=false", "-u", nobody.key_id, "--password-stdin", host,
          input=nobody.secret)
    pulled = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1", check=False)
    assert pulled.returncode != 0 and DENIED.search(pulled.stderr), c.describe(pulled)
    listed = c.run("skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/{repo}", check=False)
    assert listed.returncode != 0 and DENIED.search(listed.stderr), c.describe(listed)
    pushed = c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('src')}:v1",
                   f"docker://{host}/{repo}:mine", check=False)
    assert pushed.returncode != 0 and DENIED.search(pushed.stderr), c.describe(pushed)
    assert admin_tags(server, repo) == ["v1"]

    # The catalog: crane is refused, and a token asked for it grants nothing.
    c.run("crane", "auth", "login", "-u", nobody.key_id, "--password-stdin", host, input=nobody.secret)
    catalog = c.run("crane", "catalog", "--insecure", host, check=False)
    assert catalog.returncode != 0 or catalog.stdout.split() == [], c.describe(catalog)
    assert REFUSED.search(catalog.stderr), c.describe(catalog)
    missing = f"{registry}/does-not-exist"
    scoped = token(server.url, nobody.key_id, nobody.secret, "registry:catalog:*", f"repository:{repo}:pull,push",
                   f"repository:{missing}:pull")
    bearer = {"Authorization": f"Bearer {scoped}"}
    r = httpx.get(f"{server.url}/v2/_catalog", headers=bearer)
    assert r.status_code in (401, 403), r.text
    assert repo not in r.text
    # A repository that exists answers exactly like one that does not.
    found, not_found = (httpx.get(f"{server.url}/v2/{name}/tags/list", headers=bearer) for name in (repo, missing))
    assert found.status_code in (401, 403) and "v1" not in found.text, found.text
    assert (found.status_code, found.json()["errors"][0]["code"]) == \
        (not_found.status_code, not_found.json()["errors"][0]["code"]), (found.text, not_found.text)

    # The management API: no registries; and one that exists looks like one that does not.
    api = server.api(nobody.key_id, nobody.secret)
    assert api.call("api.registries").registries == []
    assert api.call("api.whoami").roles == {}
    answers = []
    for name in (registry, f"{registry}-does-not-exist"):
        with pytest.raises(APIError) as e:
            api.call("api.registry", registry=name)
        answers.append((e.value.status, e.value.code))
    assert answers[0] == answers[1], answers


# -- 5. a revoked key stops working -----------------------------------------------------------------


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `check()` until it is true or `timeout` seconds passed (revocations spread every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)


@needs("skopeo", "docker")
def test_revoked_key_cannot_log_in_and_its_tokens_stop_working(server: Server, registry: str,
                                                               clients: Clients) -> None:
    c, host = clients, server.host
    account = member(server, registry, "revoked")
    repo = f"{registry}/app"
    image = seed(server, repo, "revoked")
    docker = Clients(c.path("docker-home"), server, logged_in=False)

    # Before: the key logs in (skopeo, docker), pulls, and gets a token of its own.
    c.run("skopeo", "login", "--tls-verify=false", "-u", account.key_id, "--password-stdin", host,
          input=account.secret)
    assert c.run("skopeo", "inspect", "--raw", "--tls-verify=false",
                 f"docker://{host}/{repo}:v1").stdout.encode() == image.manifest
    docker.run("docker", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret)
    assert docker.json("docker", "manifest", "inspect", "--insecure", f"{host}/{repo}:v1") == \
        json.loads(image.manifest)
    before = token(server.url, account.key_id, account.secret, f"repository:{repo}:pull")

    def tags_with(bearer: str) -> httpx.Response:
        return httpx.get(f"{server.url}/v2/{repo}/tags/list", headers={"Authorization": f"Bearer {bearer}"})

    assert tags_with(before).json()["tags"] == ["v1"]

    server.api().call("api.key.revoke", user=account.user, key=account.key_id)
    (listed,) = [k for k in server.api().doc("api.keys", user=account.user, revoked=True)
                 ["keys"] if k["id"] == account.key_id]
    assert listed["revoked_at"] is not None

    # The token from before stops working (401, and the registry says why).
    assert eventually(lambda: tags_with(before).status_code == 401), tags_with(before).text
    assert "revoked" in tags_with(before).text

    # No new login: not at the token endpoint, not in a client, not in the management API.
    r = httpx.get(f"{server.url}/auth/token", params={"service": "ncr-trio", "scope": f"repository:{repo}:pull"},
                  auth=(account.key_id, account.secret))
    assert r.status_code == 401, r.text
    relogin = c.run("skopeo", "login", "--tls-verify=false", "-u", account.key_id, "--password-stdin", host,
                    input=account.secret, check=False)
    assert relogin.returncode != 0 and REFUSED.search(output(relogin)), c.describe(relogin)
    with pytest.raises(APIError) as e:
        server.api(account.key_id, account.secret).call("api.registries")
    assert e.value.status == 401
    # skopeo still holds the secret in auth.json, docker its refresh token: both refused now.
    pulled = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1", check=False)
    assert pulled.returncode != 0 and REFUSED.search(output(pulled)), c.describe(pulled)
    shown = docker.run("docker", "manifest", "inspect", "--insecure", f"{host}/{repo}:v1", check=False)
    assert shown.returncode != 0 and REFUSED.search(output(shown)), docker.describe(shown)
    relogin = docker.run("docker", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret,
                         check=False)
    assert relogin.returncode != 0 and REFUSED.search(output(relogin)), docker.describe(relogin)

    # The user's other credentials are not affected: a new key works.
    fresh = server.api().doc("api.key.create", {"description": "after revocation"}, user=account.user)
    after = token(server.url, fresh["id"], fresh["secret"], f"repository:{repo}:pull")
    assert tags_with(after).json()["tags"] == ["v1"]


def test_revoked_key_refused_by_every_worker(tmp_path: Path) -> None:
    """With two worker processes, the revocation reaches the worker that did not handle it too."""
    srv = Server(data=tmp_path / "data", extra_args=["--workers", "2"], env=NO_LOGIN_THROTTLE, registries=())
    try:
        srv.start()
        account = new_account(srv, "workers")
        api = srv.api(account.key_id, account.secret)

        def logins() -> list[int]:
            """Status of a login at the token endpoint and in the management API, each on a new
            connection (the kernel spreads new connections over the workers)."""
            token_endpoint = httpx.get(f"{srv.url}/auth/token", params={"service": "ncr-trio"},
                                       auth=(account.key_id, account.secret)).status_code
            try:
                api.call("api.whoami")
                management = 200
            except APIError as e:
                management = e.status
            return [token_endpoint, management]

        assert {code for _ in range(20) for code in logins()} == {200}  # both workers have checked the key
        srv.api().call("api.key.revoke", user=account.user, key=account.key_id)
        assert eventually(lambda: all(logins() == [401, 401] for _ in range(20)))
    finally:
        srv.stop()
