"""Replication carries signatures (issue 14's acceptance): an image signed with cosign on one ncr-trio
("region A", registry "src") is replicated to another ("region B", registry "dst") by a policy run,
and on B `cosign verify --key` passes with the signer's key and B's API calls the image signed, then
verified once the key is registered on B.

- both layouts cosign writes with a key: the legacy `sha256-<hex>.sig` tag and an OCI 1.1 referrer
  (`--registry-referrers-mode=oci-1-1`, COSIGN_EXPERIMENTAL=1); the policy has a tag filter (`v*`),
  which must not keep the signature back: it travels with its subject, as Harbor's accessories do;
- a push policy and a pull policy (B's image pulled into A);
- an image signed *after* it was replicated: the next run finds the image already present at the
  target and still carries its new signature (before the fix, "already present" skipped the
  signatures too, so a signature made after an event policy had copied the image never travelled).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import eventually
from tests.support.clients import Clients, find_tool, make_image
from tests.support.cosign import cosign_verify, key_pair, ok, push, sign
from tests.support.oci import Image
from tests.support.server import Server

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(find_tool("cosign") is None or find_tool("skopeo") is None,
                       reason="not installed: cosign, skopeo"),
]


@dataclass
class Regions:
    a: Server  # registry "src"; every policy is A's
    b: Server  # registry "dst", A's remote "region-b"


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Regions]:
    root = tmp_path_factory.mktemp("trust-regions")
    fast = {"NCR_TRUST_POLL_SECONDS": "0.2"}
    b = Server(data=root / "b" / "data", registries=("dst",), env=fast).start()
    try:
        a = Server(data=root / "a" / "data", registries=("src",),
                   env={"NCR_REPLICATION_ALLOWED_NETWORKS": "127.0.0.0/8", **fast}).start()
        try:
            key = b.new_user("replicator", {"dst": "service-admin"})
            made = ok(a.call("POST", "/remotes", json={"name": "region-b", "url": b.url, "access_id": key["id"],
                                                       "access_secret": key["secret"]}), 201)
            assert made["status"] == "valid", made
            yield Regions(a, b)
        finally:
            a.stop()
    finally:
        b.stop()


@pytest.fixture
def cl(regions: Regions, tmp_path: Path) -> Clients:
    """Clients logged in to both regions as their admins."""
    c = Clients(tmp_path / "clients", regions.a)
    auths = {s.host: {"auth": base64.b64encode(":".join(s.admin).encode()).decode()} for s in (regions.a, regions.b)}
    for path in (c.root / "home/.docker/config.json", c.root / "home/.config/containers/auth.json"):
        path.write_text(json.dumps({"auths": auths}) + "\n")
    return c


def new_policy(a: Server, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "direction": "push", "remote": "region-b", "remote_namespace": "dst", "trigger": "manual",
            "tag_filter": "v*", **fields}
    made: dict[str, Any] = ok(a.call("POST", "/registries/src/replications", json=body), 201)
    return made


def run(a: Server, policy: dict[str, Any]) -> dict[str, Any]:
    """A manual run of `policy`, to its end: the execution."""
    started = ok(a.call("POST", f"/registries/src/replications/{policy['id']}/run"), 202)
    url = f"/registries/src/replications/{policy['id']}/executions/{started['id']}"
    done: dict[str, Any] = eventually("the run to end", lambda: (e := ok(a.call("GET", url)))["status"] not in (
        "Pending", "Running") and e)
    return done


def task_errors(a: Server, policy: dict[str, Any], execution: dict[str, Any]) -> list[str]:
    found = ok(a.call("GET", f"/registries/src/replications/{policy['id']}/executions/{execution['id']}/tasks"))
    return [t["error"] for t in found["tasks"]]


def signed(srv: Server, repo: str, image: Image) -> dict[str, Any]:
    registry, path = repo.split("/", 1)
    state = dict(ok(srv.call("GET", f"/registries/{registry}/images/{path}/artifacts/{image.digest}"))["signed"])
    state.pop("key_names", None)  # the keys' names, beside their ids: not what these tests look at
    return state


def verified_at(srv: Server, registry: str, repo: str, image: Image, pem: str, key_name: str) -> None:
    """`srv` calls the image signed (no key trusted there), then verified by the key once registered
    (removed again afterwards, for the next test's key)."""
    assert signed(srv, repo, image) == {"state": "signed", "signatures": 1, "keys": []}
    key = ok(srv.call("POST", f"/registries/{registry}/trust/keys", json={"name": key_name, "pem": pem}), 201)
    try:
        # Another worker than the one that took the key learns of it within trust_poll_seconds.
        want = {"state": "verified", "signatures": 1, "keys": [key["id"]]}
        eventually(f"{repo} verified by {key_name}", lambda: signed(srv, repo, image) == want, timeout=30)
    finally:
        ok(srv.call("DELETE", f"/registries/{registry}/trust/keys/{key_name}"), 204)


@pytest.mark.parametrize("layout", ["tag", "referrer"])
def test_a_push_policy_carries_the_signature_and_cosign_verifies_at_the_target(
        regions: Regions, cl: Clients, layout: str) -> None:
    a, b = regions.a, regions.b
    path = f"push-{layout}-{os.urandom(3).hex()}"
    image = make_image(path)
    push(cl, image, f"{a.host}/src/{path}/app:v1")
    pem = key_pair(cl, "signer")
    sign(cl, f"{a.host}/src/{path}/app@{image.digest}", "signer", layout)
    assert signed(a, f"src/{path}/app", image)["signatures"] == 1

    e = run(a, new_policy(a, f"push-{layout}", name_filter=f"{path}/**"))
    assert (e["status"], e["copied"], e["failed"]) == ("Succeeded", 1, 0), e
    ref = f"{b.host}/dst/{path}/app@{image.digest}"
    claims = cosign_verify(cl, ref, "signer", layout)
    assert [c["critical"]["image"]["docker-manifest-digest"] for c in claims] == [image.digest]
    key_pair(cl, "stranger")
    assert cosign_verify(cl, ref, "stranger", layout, check=False).returncode != 0
    verified_at(b, "dst", f"dst/{path}/app", image, pem, f"signer-{path}")


def test_a_pull_policy_carries_the_signature(regions: Regions, cl: Clients) -> None:
    a, b = regions.a, regions.b
    path = f"pull-{os.urandom(3).hex()}"
    image = make_image(path)
    push(cl, image, f"{b.host}/dst/{path}/app:v1")
    pem = key_pair(cl, "signer")
    sign(cl, f"{b.host}/dst/{path}/app@{image.digest}", "signer", "referrer")

    e = run(a, new_policy(a, "pull", direction="pull", name_filter=f"{path}/**"))
    assert (e["status"], e["copied"], e["failed"]) == ("Succeeded", 1, 0), e
    cosign_verify(cl, f"{a.host}/src/{path}/app@{image.digest}", "signer", "referrer")
    verified_at(a, "src", f"src/{path}/app", image, pem, f"signer-{path}")


@pytest.mark.parametrize("layout", ["tag", "referrer"])
def test_a_signature_made_after_the_image_was_replicated_travels_on_the_next_run(
        regions: Regions, cl: Clients, layout: str) -> None:
    a, b = regions.a, regions.b
    path = f"later-{layout}-{os.urandom(3).hex()}"
    image = make_image(path)
    push(cl, image, f"{a.host}/src/{path}/app:v1")
    policy = new_policy(a, f"later-{layout}", name_filter=f"{path}/**")
    e = run(a, policy)
    assert (e["status"], e["copied"]) == ("Succeeded", 1), e
    ref = f"{b.host}/dst/{path}/app@{image.digest}"
    assert signed(b, f"dst/{path}/app", image)["state"] == "unsigned"

    pem = key_pair(cl, "signer")
    sign(cl, f"{a.host}/src/{path}/app@{image.digest}", "signer", layout)
    e = run(a, policy)
    assert (e["status"], e["copied"], e["skipped"], e["failed"]) == ("Succeeded", 0, 1, 0), e  # the image was there
    assert task_errors(a, policy, e) == ["already present; its new signatures and referrers copied"]
    cosign_verify(cl, ref, "signer", layout)
    verified_at(b, "dst", f"dst/{path}/app", image, pem, f"signer-{path}")
    # once there, the signature is not sent again
    e = run(a, policy)
    assert (e["status"], e["skipped"]) == ("Succeeded", 1), e
    assert task_errors(a, policy, e) == ["already present"]
