"""Image trust on a real server (issue 14), with the pinned cosign signing and skopeo/podman pulling.

- the artifact's `signed` field: unsigned; signed once `cosign sign` ran (no key trusted yet);
  verified once the signer's public key is registered afterwards (a registry key, then the
  installation's); invalid when only another key is trusted; the signatures view gives each verdict;
- enforcement: with `require_signature` an unsigned image's pull is a 412 whose message skopeo and
  podman show; the signer (push on the repository) can read it, so `cosign sign` works while
  enforcement is on, and after it the pull passes; with `require_verified_signature` a signature by an
  unregistered key still gives 412, registering the key lets the pull through; signatures themselves
  are never refused;
- a cache-type registry refuses a signature push, naming the guide's rule.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import artifact_path, ok, wait_for
from tests.support.clients import Clients, clients_watching, find_tool, make_image, write_layout
from tests.support.oci import Image
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import Server

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(find_tool("cosign") is None or find_tool("skopeo") is None,
                       reason="not installed: cosign, skopeo"),
]

COSIGN_REGISTRY = ["--allow-insecure-registry", "--allow-http-registry"]
REGISTRIES = ("trusted", "strict", "verified")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from Server(data=tmp_path_factory.mktemp("trust") / "data", registries=REGISTRIES,
                 env={"NCR_TRUST_POLL_SECONDS": "0.2", "NCR_ACCESS_CACHE_SECONDS": "0", **ALLOW_RECEIVERS}).running()



def signed(server: Server, repo: str, image: Image) -> dict[str, Any]:
    return dict(ok(server.call("GET", artifact_path(repo, image.digest)))["signed"])


def push(c: Clients, image: Image, repo: str, tag: str = "v1") -> None:
    layout = c.path(f"layout-{image.digest[7:19]}")
    write_layout(layout, "t", [image])
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{c.server.host}/{repo}:{tag}")


def key_pair(c: Clients, name: str) -> str:
    """A cosign key pair <name>.key/.pub; answers the public key's PEM."""
    if not c.path(f"{name}.pub").exists():
        c.run("cosign", "generate-key-pair", "--output-key-prefix", name, env={"COSIGN_PASSWORD": ""})
    return c.path(f"{name}.pub").read_text()


def sign(c: Clients, repo: str, image: Image, key: str) -> None:
    c.run("cosign", "sign", "--key", f"{key}.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY,
          f"{c.server.host}/{repo}@{image.digest}", env={"COSIGN_PASSWORD": ""})


def viewer(server: Server, registry: str) -> tuple[str, str]:
    """A pull-only user of `registry` (service-viewer): its access key's ID and secret."""
    key = server.new_user(f"viewer-{registry}", {registry: "service-viewer"})
    return str(key["id"]), str(key["secret"])


def test_signed_unsigned_verified_invalid(server: Server, cl: Clients) -> None:
    repo = "trusted/app"
    rx = Receiver().start()
    hook = {"name": "trust", "kind": "http", "url": rx.url, "event_types": ["signature.pushed", "signature.invalid"]}
    ok(server.call("POST", "/registries/trusted/webhooks", json=hook), 201)
    image, other = make_image("trust-server-a"), make_image("trust-server-b")
    push(cl, image, repo)
    push(cl, other, repo, "v2")
    assert signed(server, repo, image) == {"state": "unsigned", "signatures": 0, "keys": [], "key_names": []}
    signer_pem, stranger_pem = key_pair(cl, "signer"), key_pair(cl, "stranger")

    sign(cl, repo, image, "signer")
    found = wait_for(lambda: signed(server, repo, image), lambda s: s["state"] != "unsigned")
    assert found == {"state": "signed", "signatures": 1, "keys": [], "key_names": []}  # no key trusted yet
    # the signature manifest is an accessory: no `signed` of its own
    # the signature is no artifact of its own: an accessory of the image (tests/test_trust_accessories.py)
    listed = ok(server.call("GET", "/registries/trusted/images/app/artifacts"))["artifacts"]
    assert sorted(a["digest"] for a in listed) == sorted([image.digest, other.digest])
    [accessory] = next(a for a in listed if a["digest"] == image.digest)["accessories"]
    assert accessory["tag"] == f"sha256-{image.digest[7:]}.sig" and accessory["type"] == "signature"
    assert ok(server.call("GET", artifact_path(repo, accessory["digest"])))["signed"] is None

    # the signer's key registered afterwards: verified, by that key
    key = ok(server.call("POST", "/registries/trusted/trust/keys", json={"name": "signer", "pem": signer_pem}), 201)
    assert key["registry"] == "trusted" and key["algorithm"] == "ecdsa-p256" and key["id"].startswith("sha256:")
    found = wait_for(lambda: signed(server, repo, image), lambda s: s["state"] == "verified")
    assert found == {"state": "verified", "signatures": 1, "keys": [key["id"]], "key_names": ["signer"]}
    view = ok(server.call("GET", artifact_path(repo, image.digest) + "/signatures"))
    assert view["state"] == "verified" and len(view["signatures"]) == 1
    assert view["signatures"][0] | {"manifest": ""} == {"layout": "tag", "manifest": "", "index": 0,
                                                         "verdict": "verified", "keys": [key["id"]],
                                                         "key_names": ["signer"], "reason": ""}
    # a private key, or garbage, is refused (400), never stored
    refused = server.call("POST", "/registries/trusted/trust/keys",
                          json={"name": "oops", "pem": cl.path("signer.key").read_text()})
    assert refused.status_code == 400 and "private" in refused.json()["errors"][0]["message"]
    assert [k["name"] for k in ok(server.call("GET", "/registries/trusted/trust/keys"))["keys"]] == ["signer"]

    # another image signed by a key nobody trusts, with the signer's key trusted: invalid
    sign(cl, repo, other, "stranger")
    found = wait_for(lambda: signed(server, repo, other), lambda s: s["state"] != "unsigned")
    assert found == {"state": "invalid", "signatures": 1, "keys": [], "key_names": []}
    reason = ok(server.call("GET", artifact_path(repo, other.digest) + "/signatures"))["signatures"][0]["reason"]
    assert reason
    # webhooks heard of both signatures, and of the invalid one
    try:
        got = rx.wait_for(lambda rs: sorted(x.json()["type"] for x in rs) == [
            "signature.invalid", "signature.pushed", "signature.pushed"])
    finally:
        rx.stop()
    events = sorted((x.json()["type"], x.json()["digest"]) for x in got)
    assert events == sorted([("signature.pushed", image.digest), ("signature.pushed", other.digest),
                             ("signature.invalid", other.digest)])

    # the registry's key deleted: signed again; the same key trusted by the installation: verified again
    ok(server.call("DELETE", "/registries/trusted/trust/keys/signer"), 204)
    assert signed(server, repo, image)["state"] == "signed"
    everywhere = ok(server.call("POST", "/trust/keys", json={"name": "release", "pem": signer_pem}), 201)
    assert everywhere["registry"] is None
    assert signed(server, repo, image) == {"state": "verified", "signatures": 1, "keys": [everywhere["id"]],
                                                 "key_names": ["release"]}
    assert signed(server, repo, other)["state"] == "invalid"
    ok(server.call("DELETE", "/trust/keys/release"), 204)
    assert signed(server, repo, image)["state"] == "signed"
    del stranger_pem


def test_enforcement_with_skopeo_podman_and_cosign(server: Server, cl: Clients) -> None:
    repo = "strict/app"
    image = make_image("trust-server-strict")
    push(cl, image, repo)
    key_pair(cl, "signer")
    settings = ok(server.call("PATCH", "/registries/strict/trust", json={"require_signature": True}))
    assert settings == {"registry": "strict", "require_signature": True, "require_verified_signature": False}
    key_id, secret = viewer(server, "strict")
    ref = f"docker://{server.host}/{repo}:v1"

    # the viewer (pull only): 412 DENIED, the message says what is missing
    with httpx.Client(base_url=server.url, auth=server.auth(key_id, secret, "pull"), timeout=30) as c:
        for method in ("GET", "HEAD"):
            for reference in ("v1", image.digest):
                r = c.request(method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 412, (method, reference, r.status_code)
        error = c.get(f"/v2/{repo}/manifests/v1").json()["errors"][0]
        assert error["code"] == "DENIED" and "no cosign signature" in error["message"]
    cl.store_credentials(key_id, secret)
    refused = cl.run("skopeo", "inspect", "--tls-verify=false", ref, check=False)
    assert refused.returncode != 0 and "requires signed images" in refused.stderr, cl.describe(refused)
    pod = podman(cl)
    if pod:
        refused = cl.run(*pod, "pull", "--tls-verify=false", f"{server.host}/{repo}:v1", check=False)
        assert refused.returncode != 0 and "requires signed images" in refused.stderr, cl.describe(refused)

    # the signer (push on the repository) signs while enforcement is on: cosign reads the image first
    cl.store_credentials(*server.admin)
    sign(cl, repo, image, "signer")
    cl.store_credentials(key_id, secret)
    assert cl.json("skopeo", "inspect", "--tls-verify=false", ref)["Digest"] == image.digest
    if pod:
        cl.run(*pod, "pull", "--tls-verify=false", f"{server.host}/{repo}:v1")
    # the signature itself is never refused
    sig = f"docker://{server.host}/{repo}:sha256-{image.digest[7:]}.sig"
    cl.run("skopeo", "inspect", "--raw", "--tls-verify=false", sig)

    # a verified signature required: the signer's key is not registered, so still 412
    ok(server.call("PATCH", "/registries/strict/trust", json={"require_verified_signature": True}))
    refused = cl.run("skopeo", "inspect", "--tls-verify=false", ref, check=False)
    assert refused.returncode != 0 and "verified by a key the registry trusts" in refused.stderr, \
        cl.describe(refused)
    assert "requires a signature verified" in refused.stderr
    # registered: through
    ok(server.call("POST", "/registries/strict/trust/keys", json={"name": "signer",
                                                                 "pem": cl.path("signer.pub").read_text()}), 201)
    assert cl.json("skopeo", "inspect", "--tls-verify=false", ref)["Digest"] == image.digest
    # requirements off: anything passes again
    ok(server.call("PATCH", "/registries/strict/trust", json={"require_signature": False,
                                                             "require_verified_signature": False}))


def test_a_signature_by_an_unregistered_key_is_refused_when_verification_is_required(
        server: Server, cl: Clients) -> None:
    repo = "verified/app"
    image = make_image("trust-server-verified")
    push(cl, image, repo)
    key_pair(cl, "trusted-one")
    key_pair(cl, "stranger")
    ok(server.call("POST", "/registries/verified/trust/keys",
                   json={"name": "trusted-one", "pem": cl.path("trusted-one.pub").read_text()}), 201)
    ok(server.call("PATCH", "/registries/verified/trust", json={"require_verified_signature": True}))
    sign(cl, repo, image, "stranger")  # the admin may push: signing works under enforcement
    key_id, secret = viewer(server, "verified")
    cl.store_credentials(key_id, secret)
    ref = f"docker://{server.host}/{repo}:v1"
    refused = cl.run("skopeo", "inspect", "--tls-verify=false", ref, check=False)
    assert refused.returncode != 0 and "requires a signature verified" in refused.stderr, cl.describe(refused)
    # signed by the trusted key as well: through
    cl.store_credentials(*server.admin)
    sign(cl, repo, image, "trusted-one")
    cl.store_credentials(key_id, secret)
    assert cl.json("skopeo", "inspect", "--tls-verify=false", ref)["Digest"] == image.digest


def test_a_cache_registry_refuses_signatures(server: Server, cl: Clients) -> None:
    ok(server.call("POST", "/caches", json={"name": "hubcache", "type": "registry",
                                            "url": "https://registry.invalid"}), 201)
    ok(server.call("POST", "/registries", json={"name": "mirror", "cache": "hubcache"}), 201)
    digest = "sha256:" + "ab" * 32
    with server.client() as c:
        r = c.put(f"/v2/mirror/app/manifests/sha256-{'ab' * 32}.sig", content=b"{}",
                  headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 403, r.text
        error = r.json()["errors"][0]
        assert error["code"] == "DENIED" and "cannot be signed" in error["message"]
        assert error["message"].startswith("signature refused")
        # cosign's first push is a blob upload: its User-Agent tells it apart
        r = c.post("/v2/mirror/app/blobs/uploads/", headers={"User-Agent": "cosign/v2.6.4 (linux; amd64)"})
        assert r.status_code == 403 and r.json()["errors"][0]["message"].startswith("signature refused"), r.text
    # real cosign, signing an image of the cache registry: refused with the rule
    signed_ref = f"{server.host}/mirror/app@{digest}"
    key_pair(cl, "signer")
    r = cl.run("cosign", "sign", "--key", "signer.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY,
               signed_ref, env={"COSIGN_PASSWORD": ""}, check=False)
    assert r.returncode != 0


def podman(cl: Clients) -> list[str] | None:
    """podman's command line with this test's storage, or None when it is not installed (CI: a failure)."""
    if find_tool("podman") is None:
        if os.environ.get("CI"):
            pytest.fail("podman is not installed")
        return None
    runroot = tempfile.mkdtemp(prefix="ncr-podman-", dir="/tmp")
    return ["podman", "--storage-driver", "vfs", "--root", str(cl.path("storage")), "--runroot", runroot,
            "--tmpdir", str(cl.path("podman-tmp")), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


@pytest.mark.parametrize("mode", ["referrer", "bundle"])
def test_referrer_and_bundle_signatures_are_signed_then_verified(server: Server, cl: Clients, mode: str) -> None:
    """cosign's OCI 1.1 referrer and sigstore bundle layouts: counted, and verified once the key is trusted."""
    flags, env = {"referrer": (["--registry-referrers-mode=oci-1-1"], {"COSIGN_EXPERIMENTAL": "1"}),
                  "bundle": (["--new-bundle-format"], {})}[mode]
    repo = f"trusted/{mode}"
    image = make_image(f"trust-server-{mode}")
    push(cl, image, repo)
    pem = key_pair(cl, f"{mode}-signer")
    cl.run("cosign", "sign", "--key", f"{mode}-signer.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY,
           *flags, f"{server.host}/{repo}@{image.digest}", env={"COSIGN_PASSWORD": "", **env})
    assert signed(server, repo, image) == {"state": "signed", "signatures": 1, "keys": [], "key_names": []}
    key = ok(server.call("POST", "/registries/trusted/trust/keys", json={"name": f"{mode}-signer", "pem": pem}), 201)
    assert signed(server, repo, image) == {"state": "verified", "signatures": 1, "keys": [key["id"]],
                                           "key_names": [f"{mode}-signer"]}
    [entry] = ok(server.call("GET", artifact_path(repo, image.digest) + "/signatures"))["signatures"]
    assert (entry["layout"], entry["verdict"]) == (mode, "verified")
    ok(server.call("DELETE", f"/registries/trusted/trust/keys/{mode}-signer"), 204)


def test_a_result_read_right_after_a_signature_push_counts_it(tmp_path: Path) -> None:
    """The runner that notices signature pushes looks only once an hour here, so the stored "unsigned"
    result is still fresh when cosign's signature lands: the artifact read right after still says signed
    (the reader catches up with the pushes first; it served the stored "unsigned" before)."""
    server = Server(data=tmp_path / "data", registries=("late",), env={"NCR_TRUST_POLL_SECONDS": "3600"})
    with contextmanager(server.running)(), contextmanager(clients_watching)(server, tmp_path / "clients") as c:
        for layout, flags, env in (("tag", [], {}),
                                   ("referrer", ["--registry-referrers-mode=oci-1-1"], {"COSIGN_EXPERIMENTAL": "1"})):
            repo, image = f"late/{layout}", make_image(f"trust-late-{layout}")
            push(c, image, repo)
            assert signed(server, repo, image)["state"] == "unsigned"
            key_pair(c, "late")
            c.run("cosign", "sign", "--key", "late.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY, *flags,
                  f"{server.host}/{repo}@{image.digest}", env={"COSIGN_PASSWORD": "", **env})
            assert signed(server, repo, image)["state"] == "signed", layout


def test_cli_trust_keys_and_settings(server: Server, cl: Clients) -> None:
    """ncr-trio trust key add|list|delete and trust settings set|show, against the same server."""
    import json
    import subprocess
    import sys

    env = {"PATH": os.environ["PATH"], "HOME": str(cl.path("home")), "NCR_URL": server.url,
           "NCR_USERNAME": server.admin[0], "NCR_PASSWORD": server.admin[1]}

    def run(*args: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "ncr_trio", "--output", "json", *args], capture_output=True,
                              text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    pem = key_pair(cl, "cli-signer")
    added = run("trust", "key", "add", "cli", str(cl.path("cli-signer.pub")), "--registry", "verified")
    assert (added["name"], added["registry"], added["pem"]) == ("cli", "verified", pem)
    assert [k["name"] for k in run("trust", "key", "list", "--registry", "verified")["keys"]] == ["cli", "trusted-one"]
    assert run("trust", "key", "list")["keys"] == []
    run("trust", "key", "delete", "cli", "--registry", "verified", "--yes")
    assert [k["name"] for k in run("trust", "key", "list", "--registry", "verified")["keys"]] == ["trusted-one"]
    assert run("trust", "settings", "set", "strict", "--require-signature")["require_signature"] is True
    assert run("trust", "settings", "show", "strict") == {"registry": "strict", "require_signature": True,
                                                          "require_verified_signature": False}
    assert run("trust", "settings", "set", "strict", "--no-require-signature")["require_signature"] is False
