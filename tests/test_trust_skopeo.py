"""An independent verifier agrees with ncr-trio (issue 14's acceptance): skopeo's `sigstoreSigned`
policy, reading cosign's signatures from the registry (`use-sigstore-attachments`), with the same
public key the registry trusts.

skopeo is the pinned 1.16.1 built with sigstore (`skopeo-sigstore`, scripts/install-tools.sh): Debian's
skopeo 1.9.3 refuses every sigstoreSigned policy ("Debian-local change: sigstore disabled"). Images in
one registry, the signer's key registered there: each is pulled with `skopeo copy` under a
policy that requires a sigstore signature by that key for that registry (`signedIdentity:
matchRepository`; default `reject`), over plain HTTP (`--src-tls-verify=false`, which the attachment
lookup must honour as well: the verified image's copy reads its `.sig` tag over HTTP). For each image
the registry's verdict (the API's `signed.state`) and skopeo's are asserted in the same test:

- signed by the key with `cosign sign --key` (the `.sig` tag, which is what skopeo reads): verified,
  and skopeo copies it;
- unsigned: unsigned, skopeo refuses it;
- signed by another key: invalid, skopeo refuses it;
- a payload byte flipped (in the docker-reference, so the claim still names the image but the
  signature no longer matches it): invalid, skopeo refuses it;
- another image's genuine signature (same key) copied under this image's `.sig` tag: invalid,
  skopeo refuses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.clients import Clients, find_tool, make_image
from tests.support.cosign import (
    blob,
    key_pair,
    manifest_doc,
    ok,
    push,
    put_manifest,
    sign,
    signature_tag,
    with_layer,
)
from tests.support.oci import Image
from tests.support.server import Server

# skopeo built with sigstore (scripts/install-tools.sh): Debian's stubs it out ("sigstore disabled")
SKOPEO = "skopeo-sigstore"
pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(find_tool("cosign") is None or find_tool("skopeo") is None or find_tool(SKOPEO) is None,
                       reason=f"not installed: cosign, skopeo, {SKOPEO} (make tools)"),
]

REGISTRY = "xcheck"
REFUSED = "Source image rejected"  # containers/image's words when the policy refuses an image


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from Server(data=tmp_path_factory.mktemp("skopeo-trust") / "data", registries=(REGISTRY,),
                 env={"NCR_TRUST_POLL_SECONDS": "0.2"}).running()



def state(server: Server, repo: str, image: Image) -> str:
    registry, path = repo.split("/", 1)
    return str(ok(server.call("GET", f"/registries/{registry}/images/{path}/artifacts/{image.digest}"))["signed"]
               ["state"])


def settled(server: Server, repo: str, image: Image, done: Callable[[str], bool], timeout: float = 60) -> str:
    """The artifact's state once `done` holds (the deadline only bounds a broken run)."""
    deadline = time.monotonic() + timeout
    while not done(found := state(server, repo, image)):
        assert time.monotonic() < deadline, f"still {found}"
        time.sleep(0.1)
    return found


def skopeo_policy(c: Clients, server: Server, key: str) -> list[str]:
    """skopeo's flags for a policy that takes from REGISTRY only images sigstore-signed by `key`
    (its cosign.pub), reading cosign's signature attachments from the server."""
    policy = {"default": [{"type": "reject"}],
              "transports": {"docker": {f"{server.host}/{REGISTRY}": [
                  {"type": "sigstoreSigned", "keyPath": str(c.path(f"{key}.pub")),
                   "signedIdentity": {"type": "matchRepository"}}]}}}
    c.path("policy.json").write_text(json.dumps(policy))
    registries_d = c.path("registries.d")
    registries_d.mkdir(exist_ok=True)
    (registries_d / "ncr.yaml").write_text(f"docker:\n  {server.host}:\n    use-sigstore-attachments: true\n")
    return ["--policy", str(c.path("policy.json")), "--registries.d", str(registries_d)]


def skopeo_copy(c: Clients, policy: list[str], ref: str) -> Any:
    """`skopeo copy docker://ref dir:...` under `policy`; the finished process."""
    dest = c.path(f"copy-{ref.rsplit(':', 1)[1]}")
    return c.run(SKOPEO, *policy, "copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{dest}", check=False)


def test_skopeo_sigstore_policy_agrees_with_the_registry(server: Server, cl: Clients) -> None:
    repo = f"{REGISTRY}/app"
    host = server.host
    images = {name: make_image(f"xcheck-{name}") for name in ("good", "unsigned", "stranger", "flipped", "copied")}
    for name, image in images.items():
        push(cl, image, f"{host}/{repo}:{name}")
    signer = key_pair(cl, "signer")
    key_pair(cl, "stranger")
    ok(server.call("POST", f"/registries/{REGISTRY}/trust/keys", json={"name": "signer", "pem": signer}), 201)
    for name in ("good", "flipped", "copied"):
        sign(cl, f"{host}/{repo}@{images[name].digest}", "signer")
    sign(cl, f"{host}/{repo}@{images['stranger'].digest}", "stranger")

    # flipped: a byte of its docker-reference flipped; the claim still names the image, the signature
    # no longer matches the payload
    tag = signature_tag(images["flipped"].digest)
    doc = manifest_doc(server, repo, tag)
    payload = bytearray(blob(server, repo, doc["layers"][0]["digest"]))
    payload[payload.index(b"docker-reference") + 20] ^= 0x01
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == images["flipped"].digest
    put_manifest(server, repo, tag, with_layer(server, repo, doc, bytes(payload)))
    # copied: the good image's genuine signature (same key) put under this image's .sig tag
    put_manifest(server, repo, signature_tag(images["copied"].digest),
                 manifest_doc(server, repo, signature_tag(images["good"].digest)))

    expected = {"good": "verified", "unsigned": "unsigned", "stranger": "invalid", "flipped": "invalid",
                "copied": "invalid"}
    # skopeo's reasons: each refusal is about the signature, not a failure to reach it
    why = {"unsigned": "no signature exists", "stranger": "signature verification failed",
           "flipped": "signature verification failed", "copied": f"{images['good'].digest} does not match"}
    policy = skopeo_policy(cl, server, "signer")
    for name, image in images.items():
        verdict = settled(server, repo, image, lambda s, want=expected[name]: s == want)
        assert verdict == expected[name], name
        copied = skopeo_copy(cl, policy, f"{host}/{repo}:{name}")
        if verdict == "verified":
            assert copied.returncode == 0, cl.describe(copied)
            assert (cl.path(f"copy-{name}") / "manifest.json").read_bytes() == image.manifest
            # the policy requires a signature and the server speaks plain HTTP only: the copy read the
            # .sig tag over HTTP, so the attachment lookup honours --src-tls-verify=false
        else:
            assert copied.returncode != 0 and REFUSED in copied.stderr, (name, cl.describe(copied))
            assert why[name] in copied.stderr, (name, cl.describe(copied))

    # the same policy with the stranger's key: now only the stranger's image passes skopeo, while the
    # registry (which trusts the signer) calls it invalid: skopeo reads the policy's key, not ours
    policy = skopeo_policy(cl, server, "stranger")
    assert skopeo_copy(cl, policy, f"{host}/{repo}:stranger").returncode == 0
    assert skopeo_copy(cl, policy, f"{host}/{repo}:good").returncode != 0
