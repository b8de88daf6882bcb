"""The management API over a real server: images -> artifacts -> tags, search, tag creation and
deletion, deleting artifacts and images, pull times, GC runs and their history."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import trio

from ncr_trio.client import APIError
from ncr_trio.http.asgi import Request, Response
from ncr_trio.http.models import ArtifactPage, NewTag, RegistryDeleted, Tag, UserCreated, WhoAmI
from ncr_trio.http.operations import OPERATIONS
from tests.support.oci import OCI_INDEX, image, index, push_image, push_manifest
from tests.support.server import Server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(data=tmp_path_factory.mktemp("mgmt") / "data", registries=("shop", "empty"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def api(srv: Server, method: str, path: str, **kw: object) -> httpx.Response:
    return srv.call(method, path, **kw)


@pytest.fixture(scope="module")
def pushed(srv: Server) -> dict[str, str]:
    amd, arm = image("web-amd64"), image("web-arm64", platform=("linux", "arm64"))
    with srv.client() as c:
        out = {"amd": push_image(c, "shop/web", amd, "amd"), "arm": push_image(c, "shop/web", arm, "arm")}
        body = index([(amd, ("linux", "amd64")), (arm, ("linux", "arm64"))])
        assert push_manifest(c, "shop/web", "v1.0", body, OCI_INDEX).status_code == 201
        assert push_manifest(c, "shop/web", "latest", body, OCI_INDEX).status_code == 201
        out["index"] = "sha256:" + __import__("hashlib").sha256(body).hexdigest()
        out["tool"] = push_image(c, "shop/tools/lint", image("lint"), "v2")
    return out


def test_images_list_search_and_pagination(srv: Server, pushed: dict[str, str]) -> None:
    r = api(srv, "GET", "/registries/shop/images")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["name"] for i in body["images"]] == ["tools/lint", "web"]
    assert body["total"] == 2 and body["page"] == 1
    web = body["images"][1]
    assert web["repository"] == "shop/web" and web["artifacts"] == 3 and web["tags"] == 4 and web["size"] > 0
    assert web["pushed_at"].endswith("Z")
    assert [i["name"] for i in api(srv, "GET", "/registries/shop/images", params={"q": "lin"}).json()["images"]] \
        == ["tools/lint"]
    assert api(srv, "GET", "/registries/shop/images", params={"q": "shop"}).json()["images"] == []
    page2 = api(srv, "GET", "/registries/shop/images", params={"page": 2, "per_page": 1}).json()
    assert [i["name"] for i in page2["images"]] == ["web"] and page2["total"] == 2
    assert api(srv, "GET", "/registries/empty/images").json() == {"images": [], "total": 0, "page": 1,
                                                                  "per_page": 50}
    assert api(srv, "GET", "/registries/nothing/images").status_code == 404
    for bad in ({"per_page": 0}, {"per_page": 501}, {"page": 0}, {"page": "x"}):
        assert api(srv, "GET", "/registries/shop/images", params=bad).status_code == 400


def test_artifacts_sizes_platforms_tags_and_pull_times(srv: Server, pushed: dict[str, str]) -> None:
    r = api(srv, "GET", "/registries/shop/images/web/artifacts")
    assert r.status_code == 200, r.text
    arts = {a["digest"]: a for a in r.json()["artifacts"]}
    idx = arts[pushed["index"]]
    assert idx["tags"] == ["latest", "v1.0"]
    assert idx["platforms"] == [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}]
    assert idx["size"] > arts[pushed["amd"]]["size"] + arts[pushed["arm"]]["size"] - 1
    assert arts[pushed["amd"]]["platforms"] == [] and arts[pushed["amd"]]["tags"] == ["amd"]
    assert idx["signed"] == {"state": "unsigned", "signatures": 0, "keys": [], "key_names": []}
    assert idx["pulled_at"] is None
    assert idx["scan_status"] == "Not Scanned" and idx["vulnerabilities"] is None  # tests/test_scan_server.py
    with srv.client() as c:
        assert c.get("/v2/shop/web/manifests/v1.0").status_code == 200
        assert c.head("/v2/shop/web/manifests/amd").status_code == 200  # a HEAD is not a pull
    one = api(srv, "GET", f"/registries/shop/images/web/artifacts/{pushed['index']}").json()
    assert one["pulled_at"] is not None
    assert api(srv, "GET", f"/registries/shop/images/web/artifacts/{pushed['amd']}").json()["pulled_at"] is None
    assert api(srv, "GET", "/registries/shop/images/web").json()["pulled_at"] == one["pulled_at"]
    assert api(srv, "GET", "/registries/shop/images/web/artifacts/sha256:" + "0" * 64).status_code == 404
    assert api(srv, "GET", "/registries/shop/images/web/artifacts/not-a-digest").status_code == 400
    assert api(srv, "GET", "/registries/shop/images/nope/artifacts").status_code == 404
    assert api(srv, "GET", "/registries/shop/images/Bad Name/artifacts").status_code == 400


def test_tags_create_search_glob_and_delete(srv: Server, pushed: dict[str, str]) -> None:
    r = api(srv, "POST", f"/registries/shop/images/tools/lint/artifacts/{pushed['tool']}/tags", json={"name": "stable"})
    assert r.status_code == 201, r.text
    assert r.json()["repository"] == "shop/tools/lint" and r.json()["digest"] == pushed["tool"]
    again = api(srv, "POST", f"/registries/shop/images/tools/lint/artifacts/{pushed['tool']}/tags",
                json={"name": "stable"})
    assert again.status_code == 409
    for name in ("bad tag", "-x", "x" * 129):
        bad = api(srv, "POST", f"/registries/shop/images/tools/lint/artifacts/{pushed['tool']}/tags",
                  json={"name": name})
        assert bad.status_code == 400, name
    assert api(srv, "POST", "/registries/shop/images/tools/lint/artifacts/sha256:" + "1" * 64 + "/tags",
               json={"name": "x"}).status_code == 404
    with srv.client() as c:  # the new tag is a real tag
        assert c.get("/v2/shop/tools/lint/manifests/stable").headers["docker-content-digest"] == pushed["tool"]
    names = lambda params: [t["name"] for t in api(srv, "GET", "/registries/shop/images/web/tags",  # noqa: E731
                                                   params=params).json()["tags"]]
    assert names({}) == ["amd", "arm", "latest", "v1.0"]
    assert names({"q": "a"}) == ["amd", "arm", "latest"]
    assert names({"glob": "v1.?"}) == ["v1.0"]
    assert names({"glob": "{amd,arm}"}) == ["amd", "arm"]
    assert names({"glob": "*", "per_page": 2, "page": 2}) == ["latest", "v1.0"]
    everywhere = api(srv, "GET", "/registries/shop/tags", params={"glob": "{stable,v*}"}).json()
    assert [(t["repository"], t["name"]) for t in everywhere["tags"]] == [("shop/tools/lint", "stable"),
                                                                          ("shop/tools/lint", "v2"),
                                                                          ("shop/web", "v1.0")]
    assert api(srv, "DELETE", "/registries/shop/images/tools/lint/tags/stable").status_code == 204
    assert api(srv, "DELETE", "/registries/shop/images/tools/lint/tags/stable").status_code == 404
    assert "stable" not in names_of(srv, "tools/lint")


def names_of(srv: Server, image_name: str) -> list[str]:
    return [t["name"] for t in api(srv, "GET", f"/registries/shop/images/{image_name}/tags").json()["tags"]]


def test_delete_artifact_and_image(srv: Server) -> None:
    with srv.client() as c:
        d = push_image(c, "shop/temp", image("temp"), "t1")
        push_image(c, "shop/temp", image("temp2"), "t2")
    assert api(srv, "DELETE", f"/registries/shop/images/temp/artifacts/{d}").status_code == 204
    assert api(srv, "DELETE", f"/registries/shop/images/temp/artifacts/{d}").status_code == 404
    assert names_of(srv, "temp") == ["t2"]
    r = api(srv, "DELETE", "/registries/shop/images/temp")
    assert r.status_code == 200 and r.json() == {"deleted": "shop/temp", "artifacts_deleted": 1}
    assert api(srv, "GET", "/registries/shop/images/temp").status_code == 404
    with srv.client() as c:
        assert c.get("/v2/shop/temp/tags/list").status_code == 404


def test_gc_dry_run_run_and_history(srv: Server) -> None:
    dry = api(srv, "POST", "/gc", json={"dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and isinstance(dry.json()["blobs"], list)
    real = api(srv, "POST", "/gc", json={"dry_run": False, "delete_untagged": False})
    assert real.status_code == 200 and real.json()["id"] > dry.json()["id"]
    runs = api(srv, "GET", "/gc").json()
    assert [r["id"] for r in runs["runs"][:2]] == [real.json()["id"], dry.json()["id"]]
    assert runs["total"] >= 2
    assert api(srv, "POST", "/gc", json={"dry_run": "yes"}).status_code == 400


def test_roles_on_the_catalog_endpoints(srv: Server, pushed: dict[str, str]) -> None:
    key = srv.new_user("shop-viewer", {"shop": "service-viewer"})
    viewer = (key["id"], key["secret"])
    r = httpx.get(f"{srv.url}/api/v1/registries/shop/images/web/artifacts", auth=viewer)
    assert r.status_code == 200
    r = httpx.delete(f"{srv.url}/api/v1/registries/shop/images/web/artifacts/{pushed['amd']}", auth=viewer)
    assert r.status_code == 403
    r = httpx.post(f"{srv.url}/api/v1/registries/shop/images/web/artifacts/{pushed['amd']}/tags", auth=viewer,
                   json={"name": "mine"})
    assert r.status_code == 403
    assert httpx.post(f"{srv.url}/api/v1/gc", auth=viewer, json={}).status_code == 403
    with pytest.raises(APIError):
        srv.api(*viewer).call("api.registry.delete", registry="shop")


def test_the_client_calls_any_declared_operation_and_decodes_its_answer_with_its_model(
        srv: Server, pushed: dict[str, str]) -> None:
    """client.call: the path from the declaration (an image's slashes kept), the other parameters as
    the query, the body from a model, the answer as the operation's model (http/models.py)."""
    api = srv.api()
    me = api.call("api.whoami")
    assert isinstance(me, WhoAmI) and me.user == "admin" and me.system_admin
    page = api.call("api.artifacts", registry="shop", image="tools/lint", per_page=1)
    assert isinstance(page, ArtifactPage) and page.total == 1 and page.per_page == 1
    assert page.artifacts[0].digest == pushed["tool"] and page.artifacts[0].tags == ["v2"]
    tag = api.call("api.artifact.tags", NewTag("typed"), registry="shop", image="tools/lint", digest=pushed["tool"])
    assert isinstance(tag, Tag) and (tag.name, tag.digest) == ("typed", pushed["tool"])
    assert api.call("api.tag.delete", registry="shop", image="tools/lint", tag="typed") is None
    with pytest.raises(APIError) as refused:
        api.call("api.artifact.tags", {"name": "x"}, registry="shop", image="tools/lint", digest="sha256:" + "0" * 64)
    assert refused.value.status == 404
    with pytest.raises(APIError) as refused:  # a plain body goes as it is: the server judges its members
        api.call("api.artifact.tags", {"name": "x", "extra": 1}, registry="shop", image="tools/lint",
                 digest=pushed["tool"])
    assert (refused.value.status, refused.value.code) == (400, "INVALID_REQUEST")


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    # Nesting deep inside a member the model ignores (the decoder skips it, within the stack).
    ("POST", "/gc", b'{"dry_run": true, "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400),
    ("POST", "/registries", b'{"name": "deep", "x": ' + b'{"a": ' * 6_000 + b"1" + b"}" * 6_000 + b"}", 400),
    ("POST", "/gc", b'{"dry_run": "yes"}', 400),  # a member of the wrong type
    # Unknown members, in every body: a typo is an error, never silently ignored.
    ("POST", "/registries/shop/cleanup/policies", b'{"rule": "older_than", "n": 1, "extra": 1}', 400),
    ("POST", "/registries", b'{"name": "typo", "public_raed": true}', 400),
    ("PATCH", "/registries/shop", b'{"public_uri": false, "name": "other"}', 400),
    ("POST", "/users", b'{"name": "typo-user", "admin": true}', 400),
    ("POST", "/gc", b'{"dryrun": true}', 400),
    ("POST", "/users/admin/keys", b'{"description": "k", "expires": 1}', 400),
    ("PUT", "/users/admin/roles/shop", b'{"role": "service-viewer", "scope": "x"}', 400),
    ("PUT", "/registries/shop/cleanup/schedule", b"{}", 400),  # a required member missing
    ("POST", "/users", b'["name"]', 400),  # not an object
    ("POST", "/users", b'{"name": "x"', 400),  # not JSON
    ("POST", "/gc", b'{"dry_run": true, "pad": "' + b"x" * 70_000 + b'"}', 413),
])
def test_bodies_a_model_refuses_are_4xx_in_the_error_body(srv: Server, method: str, path: str, body: bytes,
                                                         status: int) -> None:
    r = srv.call(method, path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["code"] == ("INVALID_REQUEST" if status == 400 else "SIZE_INVALID")


def test_a_handler_answers_its_declared_model_and_stored_text_json_cannot_carry_is_escaped() -> None:
    """What a handler answers is encoded by its operation's declaration: the declared model with the
    declared status (None: the declared body-less status); another model is a programming error, never
    sent. A lone surrogate in stored text (which UTF-8 cannot carry) is escaped, as JSON allows."""
    by_name = {op.name: op for op in OPERATIONS}
    request = Request({"type": "http", "method": "POST", "path": "/"}, _never_called)

    def answer(name: str, value: object) -> Response:
        async def handler(request: Request) -> object:
            return value
        return trio.run(by_name[name].route(handler).handler, request)

    created = answer("api.user.create", UserCreated("a\udc80b"))
    assert (created.status, json.loads(created.body)) == (201, {"name": "a\udc80b"})  # type: ignore[arg-type]
    assert answer("api.user.delete", None).status == 204
    with pytest.raises(TypeError, match="api.user.create answered a RegistryDeleted"):
        answer("api.user.create", RegistryDeleted("x", 0))
    with pytest.raises(TypeError):
        answer("api.user.delete", UserCreated("x"))


async def _never_called() -> dict[str, object]:
    raise AssertionError("the handler reads no body")
