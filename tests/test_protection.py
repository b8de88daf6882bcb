"""Protection and cleanup over HTTP with a real server: a protected tag is never moved by a push nor
deleted, an artifact with one is never deleted (by digest, with its image or with its registry), the
refusal names the policy (real clients print it too), a disabled policy protects nothing, duplicates
and a 16th policy are refused, cleanup through the API keeps protected artifacts, schedules, and the
guide's permissions on every endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import Clients, clients_watching, find_tool, make_image, write_layout
from tests.support.oci import OCI_INDEX, Image, image, index, push_blob, push_image, push_manifest
from tests.support.server import Server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # GC may take anything untagged at once (no grace period): it must still never take a protected artifact.
    s = Server(data=tmp_path_factory.mktemp("protection") / "data", registries=("strays",),
               env={"NCR_GC_GRACE_SECONDS": "0"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def api(srv: Server, method: str, path: str, auth: tuple[str, str] | None = None, **kw: Any) -> httpx.Response:
    return srv.call(method, path, auth, **kw)


def registry(srv: Server, name: str) -> str:
    assert api(srv, "POST", "/registries", json={"name": name}).status_code == 201
    return name


def protect(srv: Server, reg: str, tag: str, image_pattern: str = "**") -> int:
    r = api(srv, "POST", f"/registries/{reg}/protection/policies", json={"image": image_pattern, "tag": tag})
    assert r.status_code == 201, r.text
    assert r.json()["enabled"] is True  # created enabled, as the guide says
    return int(r.json()["id"])


def denied(r: httpx.Response, message: str) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["errors"][0]
    assert error["code"] == "DENIED" and error["message"] == message, error


def tag_target(srv: Server, repo: str, tag: str) -> str:
    with srv.client() as c:
        r = c.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text
    return r.headers["Docker-Content-Digest"]


def test_a_push_moving_a_protected_tag_is_refused_and_names_the_policy(srv: Server) -> None:
    reg = registry(srv, "moves")
    with srv.client() as c:
        first = push_image(c, "moves/app", image("first"), "v1")
        pid = protect(srv, reg, "v*")
        other = image("other")
        r = push_image_raw(c, "moves/app", other, "v1")
        denied(r, f'tag v1 of moves/app is protected by protection policy #{pid} (image "**", tag "v*")')
        assert tag_target(srv, "moves/app", "v1") == first
        assert push_manifest(c, "moves/app", "v1", image("first").manifest).status_code == 201  # same digest: no change
        assert push_manifest(c, "moves/app", "v2", other.manifest).status_code == 201  # a new tag may be created
        assert push_manifest(c, "moves/app", "dev", other.manifest).status_code == 201  # unprotected
        denied(push_manifest(c, "moves/app", "v2", image("first").manifest),
               f'tag v2 of moves/app is protected by protection policy #{pid} (image "**", tag "v*")')


def push_image_raw(c: httpx.Client, repo: str, img: Image, tag: str) -> httpx.Response:
    """Push blobs, then answer the manifest PUT as it came (refused or not)."""
    for blob in img.blobs.values():
        push_blob(c, repo, blob)
    return push_manifest(c, repo, tag, img.manifest)


def test_protected_tags_artifacts_images_and_registries_are_never_deleted(srv: Server) -> None:
    reg = registry(srv, "keeps")
    with srv.client() as c:
        kept = push_image(c, "keeps/app", image("kept"), "release-1")
        amd, arm = image("idx-amd"), image("idx-arm", platform=("linux", "arm64"))
        push_image(c, "keeps/multi", amd, "amd")
        push_image(c, "keeps/multi", arm, "arm")
        assert push_manifest(c, "keeps/multi", "release-2", index([(amd, ("linux", "amd64")),
                                                                   (arm, ("linux", "arm64"))]), OCI_INDEX).status_code == 201
        c.delete("/v2/keeps/multi/manifests/amd")
        c.delete("/v2/keeps/multi/manifests/arm")  # the children are now untagged, held by the index
    pid = protect(srv, reg, "release-*")
    message = f'tag release-1 of keeps/app is protected by protection policy #{pid} (image "**", tag "release-*")'
    with srv.client() as c:
        denied(c.delete("/v2/keeps/app/manifests/release-1"), message)
        denied(c.delete(f"/v2/keeps/app/manifests/{kept}"), message)
        r = c.delete(f"/v2/keeps/multi/manifests/{amd.digest}")
        assert r.status_code == 403 and "is part of sha256:" in r.json()["errors"][0]["message"]
    denied(api(srv, "DELETE", "/registries/keeps/images/app/tags/release-1"), message)
    denied(api(srv, "DELETE", f"/registries/keeps/images/app/artifacts/{kept}"), message)
    denied(api(srv, "DELETE", "/registries/keeps/images/app"), message)
    assert api(srv, "DELETE", "/registries/keeps", params={"force": "true"}).status_code == 403
    assert api(srv, "GET", f"/registries/keeps/images/app/artifacts/{kept}").json()["tags"] == ["release-1"]
    assert api(srv, "GET", "/registries/keeps/images/multi").json()["artifacts"] == 3
    # GC (deleting untagged manifests too) never takes a protected artifact or what it holds.
    with srv.client() as c:
        stray = push_image(c, "strays/app", image("stray"), image("stray").digest)  # untagged
    gc = api(srv, "POST", "/gc", json={"dry_run": False, "delete_untagged": True})
    assert gc.status_code == 200 and f"strays/app@{stray}" in gc.json()["manifests"]
    assert not any(m.startswith("keeps/") for m in gc.json()["manifests"])
    assert api(srv, "GET", "/registries/keeps/images/multi").json()["artifacts"] == 3
    # Without the policy, everything may go.
    assert api(srv, "DELETE", f"/registries/keeps/protection/policies/{pid}").status_code == 204
    assert api(srv, "DELETE", "/registries/keeps", params={"force": "true"}).json()["images_deleted"] == 2
    registry(srv, "keeps")  # recreated: the old registry's policies went with it
    assert api(srv, "GET", "/registries/keeps/protection/policies").json() == {"policies": []}


def test_a_disabled_policy_protects_nothing(srv: Server) -> None:
    reg = registry(srv, "toggle")
    with srv.client() as c:
        push_image(c, "toggle/app", image("t1"), "stable")
        pid = protect(srv, reg, "stable", image_pattern="app")
        assert push_image_raw(c, "toggle/app", image("t2"), "stable").status_code == 403
        r = api(srv, "PATCH", f"/registries/toggle/protection/policies/{pid}", json={"enabled": False})
        assert r.status_code == 200 and r.json()["enabled"] is False
        assert push_image_raw(c, "toggle/app", image("t2"), "stable").status_code == 201
        assert api(srv, "PATCH", f"/registries/toggle/protection/policies/{pid}", json={"enabled": True}).json()[
            "enabled"] is True
        assert c.delete("/v2/toggle/app/manifests/stable").status_code == 403
        assert push_image_raw(c, "toggle/other", image("t3"), "stable").status_code == 201  # image "app" only
        assert c.delete("/v2/toggle/other/manifests/stable").status_code == 202


def test_duplicates_and_a_sixteenth_policy_are_refused(srv: Server) -> None:
    reg = registry(srv, "limits")
    first = protect(srv, reg, "v*")
    r = api(srv, "POST", f"/registries/{reg}/protection/policies", json={"image": "**", "tag": "v*"})
    assert r.status_code == 409 and f"#{first}" in r.json()["errors"][0]["message"]
    for n in range(14):
        protect(srv, reg, f"x{n}")
    r = api(srv, "POST", f"/registries/{reg}/protection/policies", json={"tag": "y"})
    assert r.status_code == 409 and "15 protection policies" in r.json()["errors"][0]["message"]
    body = {"image": "**", "tag": "**", "untagged": True, "rule": "older_than", "n": 30}
    r = api(srv, "POST", f"/registries/{reg}/cleanup/policies", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["description"] == "exclude artifacts pushed or pulled within 30 days" and created["enabled"]
    r = api(srv, "POST", f"/registries/{reg}/cleanup/policies", json=body)
    assert r.status_code == 409 and f"#{created['id']}" in r.json()["errors"][0]["message"]
    for n in range(14):
        assert api(srv, "POST", f"/registries/{reg}/cleanup/policies", json={**body, "n": n}).status_code == 201
    r = api(srv, "POST", f"/registries/{reg}/cleanup/policies", json={**body, "n": 99})
    assert r.status_code == 409 and "15 cleanup policies" in r.json()["errors"][0]["message"]
    for bad in ({**body, "rule": "newest"}, {**body, "n": -1}, {**body, "n": "3"}, {**body, "image": ""},
                {**body, "untagged": "yes"}, {**body, "days": 3}):
        assert api(srv, "POST", f"/registries/{reg}/cleanup/policies", json=bad).status_code == 400, bad
    r = api(srv, "PATCH", f"/registries/{reg}/cleanup/policies/{created['id']}", json={"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert api(srv, "PATCH", f"/registries/{reg}/cleanup/policies/99999", json={"enabled": False}).status_code == 404
    assert api(srv, "DELETE", f"/registries/{reg}/cleanup/policies/{created['id']}").status_code == 204
    assert len(api(srv, "GET", f"/registries/{reg}/cleanup/policies").json()["policies"]) == 14


def test_cleanup_through_the_api_keeps_protected_artifacts(srv: Server) -> None:
    reg = registry(srv, "tidy")
    with srv.client() as c:
        release = push_image(c, "tidy/app", image("rel"), "release-1")
        dev = push_image(c, "tidy/app", image("dev"), "dev-1")
    pid = protect(srv, reg, "release-*")
    r = api(srv, "POST", f"/registries/{reg}/cleanup/policies", json={"tag": "**", "rule": "older_than", "n": 0})
    cid = r.json()["id"]
    test = api(srv, "POST", f"/registries/{reg}/cleanup/test")
    assert test.status_code == 200, test.text
    assert (test.json()["dry_run"], test.json()["triggered_by"], test.json()["status"]) == (True, "test", "succeeded")
    assert {i["digest"]: i["outcome"] for i in test.json()["items"]} == {release: "kept-protected",
                                                                         dev: "would-delete"}
    assert api(srv, "GET", f"/registries/{reg}/images/app").json()["artifacts"] == 2  # a test deletes nothing
    run = api(srv, "POST", f"/registries/{reg}/cleanup/run").json()
    assert (run["dry_run"], run["deleted"], run["kept"]) == (False, 1, 1)
    assert [p["id"] for p in run["policies"]] == [cid, pid]
    history = api(srv, "GET", f"/registries/{reg}/cleanup/runs", params={"per_page": 1}).json()
    assert history["total"] == 2 and [r["id"] for r in history["runs"]] == [run["id"]]
    details = api(srv, "GET", f"/registries/{reg}/cleanup/runs/{run['id']}").json()
    items = {i["digest"]: i for i in details["items"]}
    assert items[dev]["outcome"] == "deleted" and items[dev]["tags"] == ["dev-1"]
    assert items[release]["outcome"] == "kept-protected"
    assert items[release]["reason"] == f'protected by protection policy #{pid} (image "**", tag "release-*")'
    assert api(srv, "GET", f"/registries/{reg}/images/app").json()["artifacts"] == 1
    assert api(srv, "GET", f"/registries/{reg}/cleanup/runs/424242").status_code == 404


def test_the_cleanup_schedule(srv: Server) -> None:
    reg = registry(srv, "cron")
    assert api(srv, "GET", f"/registries/{reg}/cleanup/schedule").json()["schedule"] == "None"
    r = api(srv, "PUT", f"/registries/{reg}/cleanup/schedule", json={"schedule": "Daily"})
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("schedule", "preset", "timezone")} == {
        "schedule": "0 0 * * *", "preset": "Daily", "timezone": "UTC"}
    assert r.json()["next_run_at"].endswith("T00:00:00Z")
    r = api(srv, "PUT", f"/registries/{reg}/cleanup/schedule", json={"schedule": "0 3 ? * mon-fri"})
    assert (r.json()["schedule"], r.json()["preset"]) == ("0 3 ? * MON-FRI", None)
    assert api(srv, "GET", f"/registries/{reg}/cleanup/schedule").json()["schedule"] == "0 3 ? * MON-FRI"
    for bad in ("0 3 * *", "0 25 * * *", "@daily", "0 3 ? * ?"):
        r = api(srv, "PUT", f"/registries/{reg}/cleanup/schedule", json={"schedule": bad})
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST", bad
    assert api(srv, "PUT", f"/registries/{reg}/cleanup/schedule", json={"schedule": "None"}).json()[
        "next_run_at"] is None
    assert api(srv, "GET", "/registries/nowhere/cleanup/schedule").status_code == 404


def test_viewing_needs_read_and_everything_else_manage(srv: Server) -> None:
    reg = registry(srv, "roles")
    pid = protect(srv, reg, "v*")
    keys = {}
    for role in ("service-viewer", "image-uploader", "project-member"):
        key = srv.new_user(f"roles-{role}", {reg: role})
        keys[role] = (key["id"], key["secret"])
    base = f"/registries/{reg}"
    reads = [("GET", f"{base}/cleanup/policies"), ("GET", f"{base}/cleanup/schedule"), ("GET", f"{base}/cleanup/runs"),
             ("GET", f"{base}/protection/policies")]
    writes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"{base}/cleanup/policies", {"rule": "older_than", "n": 5}),
        ("PUT", f"{base}/cleanup/schedule", {"schedule": "Weekly"}),
        ("POST", f"{base}/cleanup/test", {}), ("POST", f"{base}/cleanup/run", {}),
        ("PATCH", f"{base}/protection/policies/{pid}", {"enabled": True}),
        ("POST", f"{base}/protection/policies", {"tag": "w*"}),
    ]
    for role, auth in keys.items():
        for method, path in reads:
            assert api(srv, method, path, auth=auth).status_code == 200, (role, path)
        for method, path, body in writes:
            status = api(srv, method, path, auth=auth, json=body).status_code
            assert (status < 300) == (role == "project-member"), (role, method, path, status)
    assert api(srv, "DELETE", f"{base}/protection/policies/{pid}", auth=keys["service-viewer"]).status_code == 403
    assert api(srv, "DELETE", f"{base}/protection/policies/{pid}", auth=keys["project-member"]).status_code == 204


# -- a real client sees the refusal -----------------------------------------------------------------------
@pytest.fixture
def clients(srv: Server, tmp_path: Path) -> Iterator[Clients]:
    yield from clients_watching(srv, tmp_path)


@pytest.mark.clients
@pytest.mark.skipif(find_tool("skopeo") is None, reason="not installed: skopeo")
def test_skopeo_copy_onto_a_protected_tag_fails_with_the_policy_named(srv: Server, clients: Clients) -> None:
    reg = registry(srv, "skopeo")
    c = clients
    write_layout(c.path("one"), "t", [make_image("protected-one")])
    write_layout(c.path("two"), "t", [make_image("protected-two")])
    dest = f"docker://{srv.host}/skopeo/app:v1"
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('one')}:t", dest)
    pid = protect(srv, reg, "v*")
    proc = c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('two')}:t", dest, check=False)
    assert proc.returncode != 0
    printed = proc.stderr.replace('\\"', '"')  # skopeo's log line escapes quotes
    assert f'denied: tag v1 of skopeo/app is protected by protection policy #{pid} (image "**", tag "v*")' in printed, \
        c.describe(proc)
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('one')}:t", dest)  # the same image: fine
