"""Accessories on a real server (issue 14), with the pinned cosign pushing them:

- the artifact list of an image leaves out its signatures (the legacy `.sig` tag, an OCI 1.1 referrer,
  a sigstore bundle) and attestations, and lists them under their subject (`accessories`); the image's
  artifact count leaves them out too; a repository that holds only signatures (cosign's
  COSIGN_REPOSITORY) lists them as its artifacts;
- garbage collection (untagged deletion on, no grace) keeps a live subject's accessories;
- a cleanup policy neither counts accessories ("retain the newest" keeps the newest image, not the
  newest signature) nor selects them, and deleting the subject it selects deletes its accessories;
- deleting an artifact through the API deletes its accessories and its `.sig` tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.api import ok
from tests.support.clients import Clients, find_tool, make_image, write_layout
from tests.support.oci import Image
from tests.support.server import Server

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(find_tool("cosign") is None or find_tool("skopeo") is None,
                       reason="not installed: cosign, skopeo"),
]

COSIGN_REGISTRY = ["--allow-insecure-registry", "--allow-http-registry"]
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_CONFIG = "application/vnd.oci.image.config.v1+json"  # the legacy .sig manifest's config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from Server(data=tmp_path_factory.mktemp("accessories") / "data", registries=("acc", "sweep"),
                 env={"NCR_GC_GRACE_SECONDS": "0", "NCR_TRUST_POLL_SECONDS": "0.2"}).running()



def push(c: Clients, image: Image, repo: str, tag: str) -> None:
    layout = c.path(f"layout-{image.digest[7:19]}")
    write_layout(layout, "t", [image])
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{c.server.host}/{repo}:{tag}")


def cosign(c: Clients, verb: str, repo: str, image: Image, *flags: str, env: dict[str, str] | None = None) -> None:
    if not c.path("signer.pub").exists():
        c.run("cosign", "generate-key-pair", "--output-key-prefix", "signer", env={"COSIGN_PASSWORD": ""})
    c.run("cosign", verb, "--key", "signer.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY, *flags,
          f"{c.server.host}/{repo}@{image.digest}", env={"COSIGN_PASSWORD": "", **(env or {})})


def sig_tag(image: Image) -> str:
    return f"sha256-{image.digest[7:]}.sig"


def artifacts(server: Server, repo: str) -> list[dict[str, Any]]:
    registry, name = repo.split("/", 1)
    page = ok(server.call("GET", f"/registries/{registry}/images/{name}/artifacts"))
    assert page["total"] == len(page["artifacts"]), page
    return list(page["artifacts"])


def by_digest(server: Server, repo: str) -> dict[str, dict[str, Any]]:
    return {a["digest"]: a for a in artifacts(server, repo)}


def kinds(artifact: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((x["type"], x["tag"] or "", x["artifact_type"] or "") for x in artifact["accessories"])


def registry_get(server: Server, path: str) -> httpx.Response:
    with server.client(timeout=30) as c:
        return c.get(path, headers={"Accept": "application/vnd.oci.image.index.v1+json"})


def test_signatures_are_listed_under_their_subject_and_kept_by_gc(server: Server, cl: Clients) -> None:
    repo = "acc/app"
    a, b = make_image("acc-a"), make_image("acc-b")
    push(cl, a, repo, "v1")
    push(cl, b, repo, "v2")
    cosign(cl, "sign", repo, a)  # legacy: the sha256-<hex>.sig tag
    cosign(cl, "sign", repo, a, "--registry-referrers-mode=oci-1-1", env={"COSIGN_EXPERIMENTAL": "1"})
    cosign(cl, "sign", repo, b, "--new-bundle-format")
    cl.path("predicate.json").write_text('{"builder": "ncr-trio tests"}')
    cosign(cl, "attest", repo, b, "--new-bundle-format", "--type", "custom", "--predicate",
           str(cl.path("predicate.json")))

    found = by_digest(server, repo)
    assert set(found) == {a.digest, b.digest}  # nothing but the images
    assert kinds(found[a.digest]) == [("signature", "", SIG), ("signature", sig_tag(a), COSIGN_CONFIG)]
    assert kinds(found[b.digest]) == [("attestation", "", BUNDLE), ("signature", "", BUNDLE)]
    assert all(x["size"] > 0 for x in found[a.digest]["accessories"])
    assert found[a.digest]["signed"]["signatures"] == 2 and found[b.digest]["signed"]["signatures"] == 1
    image = ok(server.call("GET", "/registries/acc/images/app"))
    assert image["artifacts"] == 2
    one = ok(server.call("GET", f"/registries/acc/images/app/artifacts/{found[a.digest]['accessories'][0]['digest']}"))
    assert one["signed"] is None  # an accessory is still found by its digest

    # GC deleting untagged manifests, no grace: referrers of a live subject stay, the .sig by its tag.
    report = ok(server.call("POST", "/gc", json={"delete_untagged": True}))
    assert not [x for x in report["manifests"] if x.startswith("acc/app@")], report
    assert by_digest(server, repo)[a.digest]["accessories"] == found[a.digest]["accessories"]
    assert by_digest(server, repo)[b.digest]["accessories"] == found[b.digest]["accessories"]

    # Deleting the subject deletes its accessories, and the .sig tag.
    ok(server.call("DELETE", f"/registries/acc/images/app/artifacts/{a.digest}"), 204)
    assert set(by_digest(server, repo)) == {b.digest}
    tags = ok(server.call("GET", "/registries/acc/images/app/tags"))["tags"]
    assert [t["name"] for t in tags] == ["v2"]
    assert registry_get(server, f"/v2/{repo}/referrers/{a.digest}").json()["manifests"] == []
    for x in found[a.digest]["accessories"]:
        assert server.call("GET", f"/registries/acc/images/app/artifacts/{x['digest']}").status_code == 404


def test_an_image_of_signatures_only_lists_them(server: Server, cl: Clients) -> None:
    """cosign's COSIGN_REPOSITORY puts the signatures in another repository: their subject is not there,
    so they are that repository's artifacts."""
    a = make_image("acc-elsewhere")
    push(cl, a, "acc/signed", "v1")
    cosign(cl, "sign", "acc/signed", a, env={"COSIGN_REPOSITORY": f"{cl.server.host}/acc/signatures"})
    assert artifacts(server, "acc/signed")[0]["accessories"] == []
    listed = artifacts(server, "acc/signatures")
    assert [x["tags"] for x in listed] == [[sig_tag(a)]]
    assert ok(server.call("GET", "/registries/acc/images/signatures"))["artifacts"] == 1


def test_cleanup_neither_counts_nor_selects_accessories(server: Server, cl: Clients) -> None:
    repo = "sweep/app"
    old, new = make_image("sweep-old"), make_image("sweep-new")
    push(cl, old, repo, "old")
    push(cl, new, repo, "new")
    cosign(cl, "sign", repo, old)  # the newest pushes of the image are signatures, of both
    cosign(cl, "sign", repo, new, "--registry-referrers-mode=oci-1-1", env={"COSIGN_EXPERIMENTAL": "1"})
    cosign(cl, "sign", repo, old, "--registry-referrers-mode=oci-1-1", env={"COSIGN_EXPERIMENTAL": "1"})
    before = by_digest(server, repo)
    ok(server.call("POST", "/registries/sweep/cleanup/policies",
                   json={"image": "**", "tag": "**", "untagged": True, "rule": "retain_pushed", "n": 1}), 201)

    test = ok(server.call("POST", "/registries/sweep/cleanup/test"))
    assert [(i["digest"], i["outcome"]) for i in test["items"]] == [(old.digest, "would-delete")], test
    run = ok(server.call("POST", "/registries/sweep/cleanup/run"))
    assert [(i["digest"], i["outcome"]) for i in run["items"]] == [(old.digest, "deleted")], run

    after = by_digest(server, repo)
    assert set(after) == {new.digest}
    assert after[new.digest]["accessories"] == before[new.digest]["accessories"]
    assert [t["name"] for t in ok(server.call("GET", "/registries/sweep/images/app/tags"))["tags"]] == ["new"]
    for x in before[old.digest]["accessories"]:
        assert server.call("GET", f"/registries/sweep/images/app/artifacts/{x['digest']}").status_code == 404
