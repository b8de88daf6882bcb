"""HTTPS: the server with `--tls-cert`/`--tls-key`, a throwaway CA, and clients that trust only it.

A fresh CA (trustme) issues the server a certificate for 127.0.0.1 (an IP SAN) and, where this
machine has one, a non-loopback IPv4 address the server also listens on (docker needs it, see
`test_docker_login_over_https`). Clients are told to trust the CA, each in its own way, and log in
with an access key; nothing here ever skips verification (no --insecure, --tls-verify=false,
--plain-http or the like): a client that does not trust the CA must fail, and does.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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
    TLSFiles,
    admin_manifest,
    admin_tags,
    issue_tls,
    new_account,
    non_loopback_ipv4,
)
from tests.support.oci import Image, push_image
from tests.support.server import Server

pytestmark = pytest.mark.clients

REGISTRY = "tls"
# What Go (x509), containers/image and OpenSSL say about a certificate from an unknown CA.
UNTRUSTED = re.compile(r"x509|unknown authority|certificate verify failed|failed to verify certificate",
                       re.IGNORECASE)


def needs(*names: str) -> pytest.MarkDecorator:
    missing = [n for n in names if find_tool(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def free_port_on(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lan_address() -> str | None:
    return non_loopback_ipv4()


@pytest.fixture(scope="module")
def lan_port(lan_address: str | None) -> int | None:
    return free_port_on(lan_address) if lan_address else None


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, lan_address: str | None) -> TLSFiles:
    return issue_tls(tmp_path_factory.mktemp("tls"), "127.0.0.1", *([lan_address] if lan_address else []))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls: TLSFiles, lan_address: str | None,
           lan_port: int | None) -> Iterator[Server]:
    extra = ["--listen", f"{lan_address}:{lan_port}"] if lan_address else []
    srv = Server(data=tmp_path_factory.mktemp("tls-server") / "data", tls=tls.server_tls, extra_args=extra,
                    env=NO_LOGIN_THROTTLE, registries=(REGISTRY,))
    try:  # start() inside: a server that never got ready is stopped too
        yield srv.start()
    finally:
        srv.stop()


@pytest.fixture
def account(server: Server) -> Account:
    return new_account(server, "tls", "project-member", REGISTRY)


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    name = request.node.name.lower().removeprefix("test_")
    return f"{REGISTRY}/" + re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:60]


@pytest.fixture
def clients(server: Server, tmp_path: Path) -> Iterator[Clients]:
    yield from clients_watching(server, tmp_path, logged_in=False)


def seed(server: Server, repo: str, label: str) -> Image:
    image = make_image(label)
    with server.client() as client:  # the admin, over HTTPS with the CA (server.verify)
        push_image(client, repo, image, "v1")
    return image


def untrusted(c: Clients, proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0, c.describe(proc)
    assert UNTRUSTED.search(proc.stdout + proc.stderr), c.describe(proc)


# -- the server itself ------------------------------------------------------------------------------


def test_https_verifies_with_the_ca_only(server: Server, tls: TLSFiles, account: Account, repo: str) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    trusting = server.verify  # an SSLContext that trusts the CA, and nothing else
    r = httpx.get(f"{server.url}/v2/", verify=trusting)
    assert r.status_code == 401
    # The challenge sends clients to the token service over HTTPS too (the scheme they came in on).
    challenge = r.headers["www-authenticate"]
    assert f'realm="https://{server.host}/auth/token"' in challenge, challenge

    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{server.url}/v2/")  # the system's (certifi's) roots do not know this CA
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{server.host}/v2/")  # and no plain HTTP on the TLS port

    # Token auth end to end over HTTPS: an access key pushes and pulls.
    image = make_image("tls-httpx")
    auth_token = token(server.url, account.key_id, account.secret, f"repository:{repo}:pull,push", verify=trusting)
    headers = {"Authorization": f"Bearer {auth_token}"}
    with httpx.Client(base_url=server.url, verify=trusting, headers=headers, timeout=30) as client:
        push_image(client, repo, image, "v1")
        got = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert got.status_code == 200 and got.content == image.manifest
    assert admin_tags(server, repo) == ["v1"]

    # The management API over HTTPS, with the access key and the CA.
    assert [r["name"] for r in server.api(account.key_id, account.secret).doc("api.registries")["registries"]] == [REGISTRY]


# -- clients that trust the CA -------------------------------------------------------------------------


@needs("skopeo")
def test_skopeo_over_https(server: Server, tls: TLSFiles, account: Account, repo: str, clients: Clients) -> None:
    """skopeo (containers/image) trusts the *.crt files of a --cert-dir, or of the per-user
    ~/.config/containers/certs.d/<host>/ (read even as root, next to /etc/containers/certs.d)."""
    c, host = clients, server.host
    certs = c.path("certs")
    certs.mkdir()
    (certs / "ca.crt").write_bytes(tls.ca.read_bytes())
    image = make_image("tls-skopeo", n_layers=2)
    write_layout(c.path("src"), "v1", [image])

    untrusted(c, c.run("skopeo", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret,
                       check=False))
    c.run("skopeo", "login", "--cert-dir", certs, "-u", account.key_id, "--password-stdin", host,
          input=account.secret)
    c.run("skopeo", "copy", "--dest-cert-dir", certs, f"oci:{c.path('src')}:v1", f"docker://{host}/{repo}:v1")
    assert admin_manifest(server, repo, "v1") == image.manifest
    raw = c.run("skopeo", "inspect", "--raw", "--cert-dir", certs, f"docker://{host}/{repo}:v1").stdout
    assert raw.encode() == image.manifest
    # Logged in or not, a pull without the CA is refused by skopeo itself...
    untrusted(c, c.run("skopeo", "inspect", "--raw", f"docker://{host}/{repo}:v1", check=False))
    # ...and works with no flag once the CA is in the per-user certs.d.
    user_certs = Path(c.env["HOME"]) / ".config/containers/certs.d" / host
    user_certs.mkdir(parents=True)
    (user_certs / "ca.crt").write_bytes(tls.ca.read_bytes())
    c.run("skopeo", "copy", f"docker://{host}/{repo}:v1", f"oci:{c.path('out')}:v1")
    pulled = {f"sha256:{p.name}": p.read_bytes() for p in c.path("out/blobs/sha256").iterdir()}
    assert pulled == {image.digest: image.manifest, **image.blobs}


@needs("crane")
def test_crane_over_https(server: Server, tls: TLSFiles, account: Account, repo: str, clients: Clients) -> None:
    """crane (Go): SSL_CERT_FILE names the roots to trust."""
    c, host = clients, server.host
    trust = {"SSL_CERT_FILE": str(tls.ca)}
    layer = write_tar(c.path("layer.tar"), {"srv/tls.txt": b"over https\n", "srv/blob.bin": random_bytes(500_000, "t")})
    c.run("crane", "auth", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret)

    # Without the CA: refused (crane then retries loopback over plain HTTP, which the TLS port refuses too).
    untrusted(c, c.run("crane", "append", "--oci-empty-base", "-f", layer, "-t", f"{host}/{repo}:v1", check=False))
    assert admin_tags(server, repo) == []

    out = c.run("crane", "append", "--oci-empty-base", "-f", layer, "-t", f"{host}/{repo}:v1", env=trust)
    digest = out.stdout.strip().rsplit("@", 1)[1]
    stored = admin_manifest(server, repo, "v1")
    assert stored is not None and sha256(stored) == digest
    assert c.run("crane", "digest", f"{host}/{repo}:v1", env=trust).stdout.strip() == digest
    c.run("crane", "pull", "--format", "oci", f"{host}/{repo}:v1", c.path("pulled"), env=trust)
    assert (c.path("pulled/blobs/sha256") / digest.split(":")[1]).read_bytes() == stored


@needs("oras")
def test_oras_over_https(server: Server, tls: TLSFiles, account: Account, repo: str, clients: Clients) -> None:
    """oras: --ca-file."""
    c, host = clients, server.host
    ca = ["--ca-file", str(tls.ca)]
    work = c.path("work")
    work.mkdir()
    files = {"notes.txt": b"pushed over https\n", "data.bin": random_bytes(200_000, "oras-tls")}
    for name, data in files.items():
        (work / name).write_bytes(data)

    untrusted(c, c.run("oras", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret,
                       check=False))
    c.run("oras", "login", *ca, "-u", account.key_id, "--password-stdin", host, input=account.secret)
    pushed = c.json("oras", "push", *ca, "--format", "json", f"{host}/{repo}:v1", "notes.txt:text/plain",
                    "data.bin:application/octet-stream", cwd=work)
    stored = admin_manifest(server, repo, "v1")
    assert stored is not None and pushed["digest"] == sha256(stored)
    out = c.path("out")
    out.mkdir()
    c.run("oras", "pull", *ca, f"{host}/{repo}:v1", "-o", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    untrusted(c, c.run("oras", "manifest", "fetch", f"{host}/{repo}:v1", check=False))


@needs("regctl")
def test_regctl_over_https(server: Server, tls: TLSFiles, account: Account, repo: str, clients: Clients) -> None:
    """regctl: `registry set --cacert` takes the CA's PEM text (not a file name)."""
    c, host = clients, server.host
    image = make_image("tls-regctl")
    write_layout(c.path("src"), "v1", [image])

    untrusted(c, c.run("regctl", "registry", "login", "-u", account.key_id, "--pass-stdin", host,
                       input=account.secret, check=False))
    c.run("regctl", "registry", "set", host, "--cacert", tls.ca.read_text())
    c.run("regctl", "registry", "login", "-u", account.key_id, "--pass-stdin", host, input=account.secret)
    c.run("regctl", "image", "copy", f"ocidir://{c.path('src')}:v1", f"{host}/{repo}:v1")
    assert admin_manifest(server, repo, "v1") == image.manifest
    assert c.run("regctl", "image", "digest", f"{host}/{repo}:v1").stdout.strip() == image.digest


@needs("docker")
@pytest.mark.allow_skip("no non-loopback IPv4 address")  # a machine without a network: docker is still required
def test_docker_login_over_https(server: Server, tls: TLSFiles, account: Account, repo: str, clients: Clients,
                                 lan_address: str | None, lan_port: int | None) -> None:
    """`docker login` and `docker manifest inspect` (the CLI alone, no daemon) trusting the CA.

    Two things about the docker CLI decide how this test looks:
    - it treats 127.0.0.0/8 as an "insecure registry" and skips certificate verification there
      altogether (a login to 127.0.0.1 succeeds with no CA at all, so it would prove nothing):
      the test goes through the server's non-loopback address instead;
    - the CLI does not read `$DOCKER_CONFIG/certs.d/<host>/ca.crt` (only the daemon's
      /etc/docker/certs.d would be): it trusts the CA through SSL_CERT_FILE, like other Go clients.
    """
    if lan_address is None or lan_port is None:
        pytest.skip("no non-loopback IPv4 address to serve on (docker does not verify TLS on 127.0.0.0/8)")
    c = clients
    host = f"{lan_address}:{lan_port}"
    trust = {"SSL_CERT_FILE": str(tls.ca)}
    image = seed(server, repo, "tls-docker")

    untrusted(c, c.run("docker", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret,
                       check=False))
    assert not Path(c.env["DOCKER_CONFIG"], "config.json").exists() or \
        host not in json.loads(Path(c.env["DOCKER_CONFIG"], "config.json").read_text()).get("auths", {})

    c.run("docker", "login", "-u", account.key_id, "--password-stdin", host, input=account.secret, env=trust)
    assert host in json.loads(Path(c.env["DOCKER_CONFIG"], "config.json").read_text())["auths"]
    shown = c.json("docker", "manifest", "inspect", f"{host}/{repo}:v1", env=trust)
    assert shown == json.loads(image.manifest)
    untrusted(c, c.run("docker", "manifest", "inspect", f"{host}/{repo}:v1", check=False))
