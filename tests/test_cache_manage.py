"""Image caches as data and API (docs/cache.md, "Managing image caches"), on SQLite and PostgreSQL.

Over HTTP against a real server: create, list, get, change and delete image caches; every invalid
input a 400 in the registry's error body that stores nothing; the access secret never answered and
sealed at rest; a cache a registry uses cannot be deleted (409 naming it); a cache-type registry gets
the guide's cleanup policy ("not pulled within 7 days") and a daily schedule at creation, and nothing
at all when its creation fails; pushes into it are refused (oras, and raw uploads, manifest PUTs and
mounts), deletes are not; only system administrators manage caches. In process, the use case hands
the pull-through a `Source` with the secret in clear, and the one of a registry.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.registry import RegistryService
from tests.support.api import ok
from tests.support.clients import Clients, find_tool, random_bytes
from tests.support.oci import image, push_blob, push_image
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.server import Distribution, Server

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
EXTRA_PORT = "5443"  # opened by the servers' cache_allowed_ports, besides 80 and 443
SECRET = "hub-s3cret-at-rest-1"
OCI = "application/vnd.oci.image.manifest.v1+json"
QUAY = json.dumps({"account_name": "robot", "docker_cli_password": "quay-s3cret-at-rest-2"})
_names = itertools.count()


@dataclass
class Live:
    server: Server
    pg: PostgresServer | None
    database_url: str
    source: Distribution  # a source registry on loopback (empty), for caches that must answer


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with contextlib.ExitStack() as stack:
        source = Distribution(root=tmp_path_factory.mktemp("source")).start()
        stack.callback(source.stop)
        env = {"NCR_CACHE_ALLOWED_PORTS": f"80,443,{EXTRA_PORT},{source.port}",
               "NCR_CACHE_ALLOWED_NETWORKS": f"public,{source.host.partition(':')[0]}/32"}
        pg = None
        if request.param == "postgresql":
            pg = stack.enter_context(postgres_server())
            env["NCR_DATABASE_URL"] = stack.enter_context(pg.database("caches"))
        srv = Server(data=tmp_path_factory.mktemp("caches") / "data", registries=("plain",), env=env).start()
        stack.callback(srv.stop)
        yield Live(srv, pg, env.get("NCR_DATABASE_URL", ""), source)


def call(srv: Server, method: str, path: str, auth: tuple[str, str] | None = None, **kw: Any) -> httpx.Response:
    return srv.call(method, path, auth=auth, **kw)


def refused(r: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["errors"][0]
    assert error["code"] == code, r.text
    for word in words:
        assert word in error["message"], (word, error)
    return error


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def hub(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "type": "dockerhub", "url": "https://registry-1.docker.io", "access_id": "ci-bot",
            "access_secret": SECRET, **more}


# -- CRUD -----------------------------------------------------------------------------------------------


def test_create_list_get_change_and_delete(live: Live) -> None:
    srv = live.server
    name = unique("hub")
    created = ok(call(srv, "POST", "/caches", json=hub(name, description="Docker Hub for CI")), 201)
    assert created["url"] == "https://registry-1.docker.io" and created["type"] == "dockerhub"
    assert created["access_id"] == "ci-bot" and created["has_secret"] is True and created["registries"] == []
    assert created["endpoint"] == "" and created["description"] == "Docker Hub for CI"
    assert created["created_at"].endswith("Z") and created["updated_at"] == created["created_at"]
    assert ok(call(srv, "GET", f"/caches/{name}")) == created
    assert created in ok(call(srv, "GET", "/caches"))["caches"]
    refused(call(srv, "POST", "/caches", json=hub(name)), 409, "CONFLICT", "already exists")

    # The guide's "修正": the source may change; only what is given changes, the secret stays.
    changed = ok(call(srv, "PATCH", f"/caches/{name}", json={
        "type": "registry", "url": f"HTTPS://Mirror.Example.com:{EXTRA_PORT}/", "description": None}))
    assert changed["type"] == "registry" and changed["url"] == f"https://mirror.example.com:{EXTRA_PORT}"
    assert changed["description"] == "" and changed["has_secret"] is True and changed["access_id"] == "ci-bot"
    assert changed["updated_at"] >= created["updated_at"]
    anonymous = ok(call(srv, "PATCH", f"/caches/{name}", json={"access_id": "", "access_secret": None}))
    assert anonymous["has_secret"] is False and anonymous["access_id"] == ""
    assert ok(call(srv, "PATCH", f"/caches/{name}", json={})) | {"updated_at": None} == anonymous | {"updated_at": None}

    assert call(srv, "DELETE", f"/caches/{name}").status_code == 204
    refused(call(srv, "GET", f"/caches/{name}"), 404, "NOT_FOUND", name)
    refused(call(srv, "DELETE", f"/caches/{name}"), 404, "NOT_FOUND")
    refused(call(srv, "PATCH", f"/caches/{name}", json={"description": "x"}), 404, "NOT_FOUND")
    refused(call(srv, "POST", f"/caches/{name}/test"), 404, "NOT_FOUND")


def test_each_source_type_with_its_credentials(live: Live) -> None:
    """The guide's table: every type is taken with its URL and credentials' shape."""
    srv = live.server
    bodies = [
        {"type": "ncr", "url": "https://team-kr1-registry.container.nhncloud.com", "access_id": "NCRKEYID",
         "access_secret": "secret"},
        {"type": "ecr", "url": "https://123456789012.dkr.ecr.ap-northeast-2.amazonaws.com", "access_id": "AKIA1",
         "access_secret": "aws-secret"},
        {"type": "ecr", "url": f"http://127.0.0.1:{EXTRA_PORT}", "endpoint": f"http://127.0.0.1:{EXTRA_PORT}",
         "access_id": "AKIA2", "access_secret": "aws-secret"},
        {"type": "acr", "url": "https://team.azurecr.io", "access_id": "team", "access_secret": "pw"},
        {"type": "gcr", "url": "https://asia-docker.pkg.dev", "access_id": "_json_key",
         "access_secret": json.dumps({"type": "service_account", "private_key": "-----BEGIN...\n..."}, indent=2)},
        {"type": "dockerhub", "url": "https://hub.docker.com"},
        {"type": "registry", "url": "http://registry.internal"},
        {"type": "harbor", "url": "https://harbor.example.com", "access_id": "robot$ci", "access_secret": "pw"},
        {"type": "quay", "url": "https://quay.io", "access_id": "json_file", "access_secret": QUAY},
        {"type": "quay", "url": "https://quay.io"},
    ]
    for body in bodies:
        name = unique(body["type"])
        got = ok(call(srv, "POST", "/caches", json={"name": name, **body}), 201)
        assert got["has_secret"] is bool(body.get("access_secret")) and got["endpoint"] == body.get("endpoint", "")
        assert call(srv, "DELETE", f"/caches/{name}").status_code == 204


def test_invalid_input_is_a_400_that_stores_nothing(live: Live) -> None:
    srv = live.server
    name = unique("valid")
    ok(call(srv, "POST", "/caches", json=hub(name)), 201)
    before = ok(call(srv, "GET", "/caches"))
    bad_creations: list[tuple[dict[str, Any], str]] = [
        (hub("Upper"), "invalid image cache name"),
        (hub("-dash"), "invalid image cache name"),
        (hub("x" * 65), "invalid image cache name"),
        (hub("t", type="gitlab"), "type must be one of"),
        (hub("u", url="ftp://registry.example.com"), "http:// or https://"),
        (hub("u", url="registry.example.com"), "http:// or https://"),
        (hub("u", url="https://registry.example.com/v2/library"), "without a path"),
        (hub("u", url="https://registry.example.com/?x=1"), "without a path or query"),
        (hub("u", url="https://registry.example.com#top"), "without a path or query"),
        (hub("u", url="https://user:pw@registry.example.com"), "must not hold credentials"),
        (hub("u", url="https://registry.example.com:8443"), "port 8443 is not allowed"),
        (hub("u", url="http://registry.example.com:99999"), "not a valid URL"),
        (hub("u", url="https://a..b"), "not a valid host name"),
        (hub("u", url="https://exa mple.com"), "http:// or https://"),
        (hub("q", type="quay", url="https://quay.io", access_secret="not json"), "account_name"),
        (hub("q", type="quay", url="https://quay.io", access_secret=json.dumps({"account_name": "a"})),
         "docker_cli_password"),
        (hub("e", type="ecr", url="https://registry.example.com"), "dkr.ecr"),
        (hub("e", type="ecr", url="http://123456789012.dkr.ecr.us-east-1.amazonaws.com"), "dkr.ecr"),
        (hub("e", endpoint="https://api.example.com"), "for ECR sources only"),
        (hub("e", type="ecr", url="https://registry.example.com", endpoint="https://api.example.com/x"),
         "without a path"),
        (hub("c", access_secret=None), "give both"),
        (hub("c", access_id=None), "give both"),
        (hub("c", access_secret="\x00"), "control characters"),
        (hub("c", access_secret="s" * 16385), "at most 16384"),
        (hub("c", description="a\x00b"), "control characters"),
        (hub("c", colour="blue"), "colour"),
    ]
    for body, words in bad_creations:
        refused(call(srv, "POST", "/caches", json=body), 400, "INVALID_REQUEST", words)
    for raw in ('{"name": "s", "type": "dockerhub", "url": "https://h", "access_id": "a", "access_secret": "\\ud800"}',
                '{"name": "s", "type": "dockerhub"}', '{"name": 5, "type": "dockerhub", "url": "https://h"}',
                "[" * 9999):
        refused(call(srv, "POST", "/caches", content=raw.encode(), headers={"Content-Type": "application/json"}),
                400, "INVALID_REQUEST")
    bad_changes: list[tuple[dict[str, Any], str]] = [
        ({"name": "renamed"}, "name"), ({"type": None}, "$.type"), ({"url": None}, "$.url"),
        ({"url": "https://registry.example.com:22"}, "port 22 is not allowed"),
        ({"access_secret": ""}, "give both"), ({"type": "quay"}, "account_name"),
        ({"type": "ecr"}, "dkr.ecr"), ({"endpoint": "https://api.example.com"}, "for ECR sources only"),
    ]
    for changes, words in bad_changes:
        refused(call(srv, "PATCH", f"/caches/{name}", json=changes), 400, "INVALID_REQUEST", words)
    assert ok(call(srv, "GET", "/caches")) == before
    assert call(srv, "DELETE", f"/caches/{name}").status_code == 204


# -- the secret ---------------------------------------------------------------------------------------------


def stored_secrets(live: Live, name: str) -> list[str]:
    """The access secret as the database holds it, read around the server."""
    query = "SELECT access_secret FROM image_caches WHERE name = "
    if live.pg is None:
        path = live.server.data / "meta.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return [str(r[0]) for r in db.execute(query + "?", (name,))]
    import psycopg

    with psycopg.connect(live.database_url) as conn:
        return [str(r[0]) for r in conn.execute(query + "%s", (name,))]


def test_the_secret_is_never_answered_and_sealed_at_rest(live: Live) -> None:
    srv = live.server
    name = unique("sealed")
    answers = [call(srv, "POST", "/caches", json=hub(name)), call(srv, "GET", "/caches"),
               call(srv, "GET", f"/caches/{name}"), call(srv, "PATCH", f"/caches/{name}", json={"description": "d"}),
               call(srv, "POST", f"/caches/{name}/test")]
    quay = unique("quay")
    answers.append(call(srv, "POST", "/caches", json={"name": quay, "type": "quay", "url": "https://quay.io",
                                                      "access_secret": QUAY}))
    for r in answers:
        assert r.status_code < 300, r.text
        assert SECRET not in r.text and "quay-s3cret" not in r.text and "access_secret" not in r.json()
    (sealed,) = stored_secrets(live, name)
    assert sealed.startswith("ncr1:") and SECRET not in sealed
    assert stored_secrets(live, quay)[0].startswith("ncr1:")
    key = srv.data / "keys" / "secrets.key"
    for path in (p for p in srv.data.rglob("*") if p.is_file() and p != key):
        data = path.read_bytes()
        assert SECRET.encode() not in data and b"quay-s3cret-at-rest-2" not in data, path
    # The audit log names what changed, never the secret.
    entries = ok(call(srv, "GET", "/audit", params={"action": "cache"}))["entries"]
    assert {"cache.create", "cache.update", "cache.test"} <= {e["action"] for e in entries}
    assert SECRET not in json.dumps(entries)


def test_testing_a_cache_answers_how_it_went(live: Live) -> None:
    """A test tries the source's /v2/ with the cache's credentials: ok, or why not (never a 500)."""
    name, far = unique("probe"), unique("probe")
    ok(call(live.server, "POST", "/caches", json={"name": name, "type": "registry", "url": live.source.url}), 201)
    assert ok(call(live.server, "POST", f"/caches/{name}/test"))["ok"] is True
    ok(call(live.server, "POST", "/caches", json=hub(far, url="https://registry.invalid")), 201)  # RFC 2606: never resolves
    result = ok(call(live.server, "POST", f"/caches/{far}/test"))
    assert result["ok"] is False and "registry.invalid" in result["detail"]


# -- cache-type registries -------------------------------------------------------------------------------------


def test_a_cache_in_use_cannot_be_deleted(live: Live) -> None:
    srv = live.server
    name, first, second = unique("used"), unique("mirror"), unique("mirror")
    ok(call(srv, "POST", "/caches", json=hub(name)), 201)
    for registry in (first, second):
        r = ok(call(srv, "POST", "/registries", json={"name": registry, "cache": name}), 201)
        assert r["type"] == "image_cache" and r["cache"] == name
    assert ok(call(srv, "GET", f"/caches/{name}"))["registries"] == sorted([first, second])
    error = refused(call(srv, "DELETE", f"/caches/{name}"), 409, "CONFLICT", first, second)
    assert error["detail"] == {"registries": sorted([first, second])}
    # Changing it stays allowed (the guide's 修正), and the registries keep pulling through it.
    ok(call(srv, "PATCH", f"/caches/{name}", json={"url": "https://mirror.gcr.io"}))
    assert ok(call(srv, "DELETE", f"/registries/{first}"))["deleted"] == first
    refused(call(srv, "DELETE", f"/caches/{name}"), 409, "CONFLICT", second)
    ok(call(srv, "DELETE", f"/registries/{second}"))
    assert call(srv, "DELETE", f"/caches/{name}").status_code == 204
    normal = ok(call(srv, "GET", "/registries/plain"))
    assert normal["type"] == "normal" and normal["cache"] is None


def test_a_cache_registry_starts_with_the_guides_cleanup_policy(live: Live) -> None:
    srv = live.server
    name, registry = unique("clean"), unique("hubcache")
    ok(call(srv, "POST", "/caches", json=hub(name)), 201)
    ok(call(srv, "POST", "/registries", json={"name": registry, "cache": name, "description": "CI mirror"}), 201)
    (policy,) = ok(call(srv, "GET", f"/registries/{registry}/cleanup/policies"))["policies"]
    assert (policy["image"], policy["tag"], policy["untagged"], policy["rule"], policy["n"], policy["enabled"]) == \
        ("**", "**", True, "older_than", 7, True)
    assert policy["description"] == "exclude artifacts pushed or pulled within 7 days"
    schedule = ok(call(srv, "GET", f"/registries/{registry}/cleanup/schedule"))
    assert schedule["preset"] == "Daily" and schedule["next_run_at"] is not None
    # Users add their own cleanup and protection policies.
    ok(call(srv, "POST", f"/registries/{registry}/cleanup/policies", json={"rule": "retain_pulled", "n": 5}), 201)
    ok(call(srv, "POST", f"/registries/{registry}/protection/policies", json={"tag": "stable"}), 201)
    # A normal registry gets none; the cache of a registry does not change afterwards.
    normal = unique("normal")
    ok(call(srv, "POST", "/registries", json={"name": normal}), 201)
    assert ok(call(srv, "GET", f"/registries/{normal}/cleanup/policies"))["policies"] == []
    refused(call(srv, "PATCH", f"/registries/{normal}", json={"cache": name}), 400, "INVALID_REQUEST", "cache")


def test_a_failed_creation_leaves_nothing(live: Live) -> None:
    srv = live.server
    registry = unique("orphan")
    refused(call(srv, "POST", "/registries", json={"name": registry, "cache": "no-such-cache"}), 404, "NOT_FOUND",
            "no-such-cache")
    refused(call(srv, "POST", "/registries", json={"name": registry, "cache": "Bad Name"}), 400, "INVALID_REQUEST")
    refused(call(srv, "GET", f"/registries/{registry}"), 404, "NOT_FOUND")
    # Created normal now: no policy or schedule of the failed attempt is left behind.
    ok(call(srv, "POST", "/registries", json={"name": registry}), 201)
    assert ok(call(srv, "GET", f"/registries/{registry}/cleanup/policies"))["policies"] == []
    assert ok(call(srv, "GET", f"/registries/{registry}/cleanup/schedule"))["preset"] == "None"


def cache_registry(live: Live) -> str:
    """A cache-type registry whose source answers (it holds nothing: every pull is a 404)."""
    srv, name, registry = live.server, unique("push"), unique("pullonly")
    source = {"name": name, "type": "registry", "url": live.source.url, "access_id": "", "access_secret": ""}
    ok(call(srv, "POST", "/caches", json=source), 201)
    ok(call(srv, "POST", "/registries", json={"name": registry, "cache": name}), 201)
    return registry


def test_pushes_to_a_cache_registry_are_refused(live: Live) -> None:
    """Every push route: upload start (and a mount into it), chunk, finish, manifest PUT; a DELETE is not a push."""
    srv = live.server
    registry = cache_registry(live)
    img = image("cache-refused")
    with srv.client() as c:
        upload = c.post("/v2/plain/app/blobs/uploads/")
        assert upload.status_code == 202
        session = upload.headers["location"].replace("/plain/app/", f"/{registry}/app/")
        source = push_image(c, "plain/app", img, "v1")
        layer = next(iter(img.blobs))
        finish = session + ("&" if "?" in session else "?") + f"digest={layer}"
        for method, path, kw in [
                ("POST", f"/v2/{registry}/app/blobs/uploads/", {}),
                ("POST", f"/v2/{registry}/app/blobs/uploads/?mount={layer}&from=plain/app", {}),
                ("PATCH", session, {"content": b"x"}),
                ("PUT", finish, {}),
                ("PUT", f"/v2/{registry}/app/manifests/v1",
                 {"content": img.manifest, "headers": {"Content-Type": OCI}})]:
            r = c.request(method, path, **kw)
            error = refused(r, 403, "DENIED", f"registry {registry} is an image cache registry", "no pushes")
            assert error["detail"] == [{"Type": "repository", "Name": f"{registry}/app", "Action": "push"}]
        assert c.get(f"/v2/{registry}/app/manifests/v1").status_code == 404  # nothing got in
        assert c.delete(f"/v2/{registry}/app/manifests/{source}").status_code == 404  # deletes are not refused
        assert push_blob(c, "plain/app", b"normal registries still take pushes").startswith("sha256:")


@pytest.mark.clients
@pytest.mark.skipif(find_tool("oras") is None, reason="needs oras (make tools)")
def test_oras_push_to_a_cache_registry_is_refused_with_the_reason(live: Live, tmp_path: Path) -> None:
    srv = live.server
    registry = cache_registry(live)
    c = Clients(tmp_path / "clients", srv)
    work = c.path("work")
    work.mkdir()
    (work / "data.bin").write_bytes(random_bytes(1000, "oras-cache"))
    r = c.run("oras", "push", "--plain-http", f"{srv.host}/{registry}/bundle:v1", "data.bin", cwd=work, check=False)
    assert r.returncode != 0 and "is an image cache registry" in r.stderr, c.describe(r)
    c.run("oras", "push", "--plain-http", f"{srv.host}/plain/bundle:v1", "data.bin", cwd=work)


# -- who may manage them -------------------------------------------------------------------------------------


def test_only_system_administrators_manage_caches(live: Live) -> None:
    srv = live.server
    name = unique("roles")
    ok(call(srv, "POST", "/caches", json=hub(name)), 201)
    operations = [("GET", "/caches", None), ("POST", "/caches", hub(unique("nope"))), ("GET", f"/caches/{name}", None),
                  ("PATCH", f"/caches/{name}", {"description": "x"}), ("DELETE", f"/caches/{name}", None),
                  ("POST", f"/caches/{name}/test", None)]
    for role in ("project-admin", "service-admin", "project-member", "service-viewer", "image-uploader"):
        user = unique(role)
        key = srv.new_user(user, {"*": role})
        for method, path, body in operations:
            refused(call(srv, method, path, auth=(key["id"], key["secret"]), json=body), 403, "DENIED",
                    "system administrator")
    for method, path, body in operations:
        r = httpx.request(method, f"{srv.url}/api/v1{path}", json=body, timeout=30)
        refused(r, 401, "UNAUTHORIZED")
    # A manager of every registry may still create a cache-type registry naming a cache.
    manager = srv.new_user(unique("manager"), {"*": "project-admin"})
    registry = unique("managed")
    created = ok(call(srv, "POST", "/registries", auth=(manager["id"], manager["secret"]),
                      json={"name": registry, "cache": name}), 201)
    assert created["type"] == "image_cache"
    assert ok(call(srv, "GET", f"/caches/{name}"))["description"] == ""  # nothing above changed it


# -- the use case, in process: what the pull-through gets ------------------------------------------------------


async def test_sources_carry_the_secret_in_clear_and_follow_changes(live: Live, tmp_path: Path) -> None:
    """A second process on the same database and key (as another worker or node would be)."""
    config = Config(data_dir=live.server.data, database_url=live.database_url,
                    cache_allowed_ports=("80", "443", EXTRA_PORT))
    service = RegistryService.open(config)
    try:
        caches = service.caches
        name, registry = unique("inproc"), unique("inproc-reg")
        await caches.create(hub(name, url="https://registry-1.docker.io:443/"))
        source = await caches.source(name)
        assert (source.name, source.type, source.url, source.access_id, source.access_secret, source.endpoint) == \
            (name, "dockerhub", "https://registry-1.docker.io", "ci-bot", SECRET, "")
        assert await caches.source_of("plain") is None and await caches.source_of("no-such-registry") is None
        await service.namespaces.create(registry, "test", cache=name)
        assert await caches.source_of(registry) == source
        # A change made here applies at once (the remembered source is forgotten).
        await caches.update(name, {"access_secret": "rotated", "url": f"http://127.0.0.1:{EXTRA_PORT}",
                                   "type": "registry"})
        changed = await caches.source_of(registry)
        assert changed is not None and (changed.access_secret, changed.url, changed.type) == \
            ("rotated", f"http://127.0.0.1:{EXTRA_PORT}", "registry")
        with pytest.raises(RegistryError) as refused_delete:
            await caches.delete(name)
        assert refused_delete.value.code == "CONFLICT" and registry in refused_delete.value.message
        info = await caches.get(name)
        assert info.has_secret and info.registries == (registry,)
        with pytest.raises(RegistryError, match="does not exist"):
            await caches.source("no-such-cache")
    finally:
        service.close()
