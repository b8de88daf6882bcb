"""The management API and its OpenAPI document (`/api/v1/openapi.json`, generated from the
operations' declarations in ncr_trio/http/operations.py).

1. Every declared operation is routed and every `/api/v1` route of the app's route table
   (`App.routes`, whichever class declares it: ManagementAPI, WebhooksAPI, PoliciesAPI, and any
   route module added later) is declared, with its method, path and action; the document states
   each operation's path parameters, authentication and permission, and closed answers.
2. schemathesis runs against a real server, loading the document from its live URL and logging in
   with the administrator's Basic credentials: no operation may answer a 500, a status the document
   does not list, a content type it does not list, or a body that breaks its schema.

schemathesis runs as its CLI (`st run`, in a subprocess): its pytest integration for a schema that
only exists once a fixture has started the server (`schemathesis.pytest.from_fixture`) does not work
with pytest 9.2 (it sets `Node._nodeid`, which pytest no longer has). It runs once per metadata backend
(SQLite, and PostgreSQL, which refuses input SQLite takes). The run is deterministic
(derandomized Hypothesis, no example database) and bounded (`MAX_EXAMPLES` per operation in the
fuzzing phase, plus the examples and coverage phases). Destructive operations run against this
module's own throwaway server, after the read-only ones (so those see the pushed content). One case
is left out, by a hook: `DELETE /users/admin`. The server refuses to delete its last system
administrator (409), but the run's own `POST /users` may have made another one, and then deleting
`admin` would lock the run out; `test_the_administrator_survives_the_run` checks the 409 instead.
A run in which every request was refused (401, 403, or 429 after failed logins) fails too. Random names and digests almost never hit stored data, so a hook
(tests/support/openapi_hooks.py) mixes the names, tags, digests, users, keys, webhook, policy and run
IDs of the seeded content into the generated path parameters: list, get and delete operations also
answer with real data. The seed has webhooks on local receivers (tests/support/receivers.py; one on a
closed port, so its deliveries are pending retries) with their delivery history, cleanup and protection
policies, schedules, a test run and a run; registry `tidy` is cleanup's, whose run now deletes for real.
`NCR_OPENAPI_ST_ARGS` adds arguments to `st run` (`--report har --report-dir /tmp/st`, to see every
request and answer).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ncr_trio.config import Config
from ncr_trio.http.app import App
from ncr_trio.http.declare import PERMISSIONS
from ncr_trio.http.operations import DOCUMENT, OPERATIONS
from ncr_trio.http.routes import Route
from tests.support.oci import (
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    canonical,
    descriptor,
    digest,
    image,
    index,
    push_blob,
    push_image,
    push_manifest,
)
from tests.support.postgres import postgres_server
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import Server, free_port

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance"]
# Bodies sent as they are (not through `json=`) still say what they are: the API reads only JSON.
JSON = {"Content-Type": "application/json"}
MAX_EXAMPLES = 25  # per operation in the fuzzing phase; the examples and coverage phases add their own


# -- 1. the declarations and the route table ---------------------------------------------------------
API_PREFIX = "/api/v1/"


@pytest.fixture(scope="module")
def api_routes(tmp_path_factory: pytest.TempPathFactory) -> list[Route]:
    """Every /api/v1 route of the app's route table, whichever route class declares it: a route
    module added to the app later is covered without this test knowing about it."""
    app = App(Config(data_dir=tmp_path_factory.mktemp("routes") / "data", admin_password="routes-password-0"))
    service = app.open()
    try:
        return [r for r in app.routes.routes if r.pattern.pattern.removeprefix("^").startswith(API_PREFIX)]
    finally:
        service.close()


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref")
    if ref is None:
        return item
    node: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def test_the_route_list_holds_every_api_route_class(api_routes: list[Route]) -> None:
    """The filter on the prefix finds the routes of the three route classes, and nothing else."""
    names = {r.name for r in api_routes}
    assert {"api.whoami", "api.webhook.test", "api.cleanup.run", "api.protection.policy.delete"} <= names
    assert all(r.name.startswith("api.") for r in api_routes)


def test_every_declared_operation_is_routed_and_every_route_declared(api_routes: list[Route]) -> None:
    """The route table's /api/v1 entries are the declarations (http/operations.py), one for one, in
    the same order: name, method, path and the action the gate enforces."""
    routed = [(r.name, m, r.pattern.pattern, r.action) for r in api_routes for m in sorted(r.methods)]
    declared = [(op.name, op.method, f"^{op.pattern}$", op.action) for op in OPERATIONS]
    assert routed == declared
    assert len({(op.path, op.method) for op in OPERATIONS}) == len(OPERATIONS), "two operations share a path"


def test_every_operation_is_documented_with_its_permission_and_closed_answers() -> None:
    for op in OPERATIONS:
        doc = DOCUMENT["paths"][op.path][op.method.lower()]
        assert doc["operationId"] == op.name
        path_params = {p["name"] for p in map(_resolve, doc.get("parameters", [])) if p["in"] == "path"}
        assert path_params == set(re.findall(r"\{(\w+)\}", op.path)), op.name
        assert (doc.get("security") == []) == (op.action is None), op.name
        if op.action is not None:
            assert {"401", "403", "429"} <= set(doc["responses"]), op.name
            assert doc["description"] == f"Permission: {PERMISSIONS[op.permission][0]}.", op.name
        for status, response in doc["responses"].items():
            if status.startswith("2") and status != "204" and op.action is not None:
                schema = _resolve(response["content"]["application/json"]["schema"])
                assert schema.get("additionalProperties") is False, (op.name, status)


def test_every_reference_resolves_and_every_error_uses_the_error_body() -> None:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for ref in walk(DOCUMENT):
        _resolve({"$ref": ref})
    for item in DOCUMENT["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    schema = _resolve(response)["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


# -- 2. schemathesis against a live server ------------------------------------------------------------
@dataclass
class Live:
    server: Server
    # Path parameter values that name stored things, mixed into the generated ones (see `seed`).
    values: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def _api(srv: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    r = httpx.request(method, f"{srv.url}/api/v1{path}", auth=srv.admin, timeout=30, **kw)
    assert r.status_code < 300, r.text
    return r


def _id(r: httpx.Response) -> str:
    return str(r.json()["id"])


def _wait_deliveries(srv: Server, registry: str, hook: str, done: Callable[[list[dict[str, Any]]], bool]) -> None:
    deadline = time.monotonic() + 20
    while not done(found := _api(srv, "GET", f"/registries/{registry}/webhooks/{hook}/deliveries").json()
                   ["deliveries"]):
        assert time.monotonic() < deadline, f"webhook {hook}: deliveries never got there: {found}"
        time.sleep(0.05)


def seed(srv: Server, receiver: Receiver, slack: Receiver) -> dict[str, dict[str, list[str]]]:
    """Webhooks (on local receivers, one on a closed port), then pushes (their events become
    deliveries: delivered, and pending retries with failed attempts), an index and a referrer, users
    with a role and a key, a dry GC, cleanup and protection policies, schedules, a test run and a run,
    and image caches (`mirror-src` is the cache of registry `mirror`: deleting it is refused). Registry
    `tidy` is cleanup's: its test run found an artifact to delete, one kept by protection and two kept
    because a kept index needs them, and its run now deletes them for real.

    Returns the path parameter values that name what is stored: under "*" for every operation, and
    under "METHOD /path" what a destructive operation may destroy (or, for `{id}`, what kind of thing
    the ID names), each its own part, so that whatever order they run in, each one also meets data
    it can delete."""
    hooks = "/registries/shop/webhooks"
    ci = _id(_api(srv, "POST", hooks, json={"name": "ci", "kind": "http", "url": receiver.url, "secret": "s3cret",
                                           "auth_header": "Bearer t0ken"}))
    chat = _id(_api(srv, "POST", hooks, json={"name": "chat", "kind": "slack", "url": slack.url,
                                             "event_types": ["artifact.pushed", "tag.created"]}))
    dead = _id(_api(srv, "POST", hooks, json={"name": "dead", "kind": "http", "event_types": ["tag.created"],
                                             "url": f"http://127.0.0.1:{free_port()}/hook"}))
    off = _id(_api(srv, "POST", hooks, json={"name": "off", "kind": "http", "url": receiver.url, "enabled": False}))
    doomed = _id(_api(srv, "POST", hooks, json={"name": "doomed", "kind": "http", "url": receiver.url}))
    _api(srv, "POST", "/registries/junk/webhooks", json={"name": "junk-hook", "kind": "http", "url": receiver.url})

    amd, arm = image("oa-amd64"), image("oa-arm64", platform=("linux", "arm64"))
    with srv.client() as c:
        v1, v2 = push_image(c, "shop/web", amd, "v1"), push_image(c, "shop/web", arm, "v2")
        body = index([(amd, ("linux", "amd64")), (arm, ("linux", "arm64"))])
        assert push_manifest(c, "shop/web", "multi", body, OCI_INDEX).status_code == 201
        empty = b"{}"
        push_blob(c, "shop/web", empty)
        sig = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
                         "config": descriptor(OCI_EMPTY, empty), "layers": [descriptor(OCI_EMPTY, empty)],
                         "subject": {"mediaType": OCI_MANIFEST, "digest": v1, "size": len(amd.manifest)}})
        assert push_manifest(c, "shop/web", "sig", sig).status_code == 201
        fmt = push_image(c, "shop/tools/fmt", image("oa-fmt"), "latest")
        keep = push_image(c, "shop/keep", image("oa-keep"), "stable")
        tmp = push_image(c, "junk/tmp", image("oa-tmp"), "t1")
        assert c.get(f"/v2/shop/web/manifests/{v1}").status_code == 200  # a pull time
        # tidy/app: an index (tagged `stable`, to be protected) and its children, an old tag, an untagged image.
        kids = [image("oa-tidy-amd64"), image("oa-tidy-arm64", platform=("linux", "arm64"))]
        for kid in kids:
            push_image(c, "tidy/app", kid, kid.digest)
        stable = index([(kids[0], ("linux", "amd64")), (kids[1], ("linux", "arm64"))])
        assert push_manifest(c, "tidy/app", "stable", stable, OCI_INDEX).status_code == 201
        old = push_image(c, "tidy/app", image("oa-tidy-old"), "old")
        loose = image("oa-tidy-loose")
        push_image(c, "tidy/app", loose, loose.digest)
    for name in ("bot", "gone"):
        _api(srv, "POST", "/users", json={"name": name, "password": f"{name}-password-0123"})
    _api(srv, "PUT", "/users/bot/roles/shop", json={"role": "image-uploader"})
    _api(srv, "PUT", "/users/bot/roles/*", json={"role": "service-viewer"})
    key = _api(srv, "POST", "/users/bot/keys", json={"description": "fleet"}).json()["id"]
    _api(srv, "POST", "/gc", json={"dry_run": True})

    # Deliveries: delivered ones (http and Slack), pending ones with failed attempts, tests sent.
    _wait_deliveries(srv, "shop", ci, lambda ds: any(d["status"] == "delivered" for d in ds))
    _wait_deliveries(srv, "shop", chat, lambda ds: any(d["status"] == "delivered" for d in ds))
    _wait_deliveries(srv, "shop", dead, lambda ds: any(d["attempt_log"] for d in ds))
    for hook in (ci, chat, dead):
        _api(srv, "POST", f"{hooks}/{hook}/test")

    # Policies, schedules and runs.
    shop_c, shop_p, tidy_c, tidy_p = ("/registries/shop/cleanup", "/registries/shop/protection",
                                      "/registries/tidy/cleanup", "/registries/tidy/protection")
    cleanup = [_id(_api(srv, "POST", f"{shop_c}/policies", json=b)) for b in (
        {"rule": "older_than", "n": 3650},
        {"image": "tools/**", "tag": "v*", "untagged": True, "rule": "retain_pushed", "n": 1000},
        {"rule": "retain_pulled", "n": 999999})]
    _api(srv, "PATCH", f"{shop_c}/policies/{cleanup[1]}", json={"enabled": False})
    protection = [_id(_api(srv, "POST", f"{shop_p}/policies", json=b))
                  for b in ({"image": "keep", "tag": "stable"}, {"tag": "release-*"})]
    _api(srv, "PUT", f"{shop_c}/schedule", json={"schedule": "30 3 * * 1-5"})
    _api(srv, "POST", "/registries/junk/cleanup/policies", json={"rule": "older_than", "n": 30})
    tidy = [_id(_api(srv, "POST", f"{tidy_c}/policies", json=b))
            for b in ({"untagged": True, "rule": "older_than", "n": 0}, {"rule": "retain_pushed", "n": 1})]
    _api(srv, "POST", f"{tidy_p}/policies", json={"image": "app", "tag": "stable"})
    _api(srv, "PUT", f"{tidy_c}/schedule", json={"schedule": "Weekly"})
    # Image caches: one a cache-type registry pulls through (its deletion is refused), one to delete.
    for cache in ("mirror-src", "spare"):
        _api(srv, "POST", "/caches", json={"name": cache, "type": "registry", "url": "http://127.0.0.1",
                                           "access_id": "puller", "access_secret": "s3cret"})
    _api(srv, "POST", "/registries", json={"name": "mirror", "cache": "mirror-src"})
    test_run = _api(srv, "POST", f"{tidy_c}/test").json()
    assert {i["outcome"] for i in test_run["items"]} == {"would-delete", "kept-protected", "kept-needed"}, test_run
    runs = [str(test_run["id"]), _id(_api(srv, "POST", f"{shop_c}/run"))]

    artifact = "/api/v1/registries/{registry}/images/{image}/artifacts/{digest}"
    in_web = {"registry": ["shop"], "image": ["web"]}
    webhook = "/api/v1/registries/{registry}/webhooks/{webhook}"
    policy = "/api/v1/registries/{registry}/%s/policies/{id}"
    # Not the names the document's examples use (team, app, ci): the examples phase would destroy them first.
    return {
        "*": {
            "registry": ["shop", "junk", "tidy"],
            "image": ["web", "tools/fmt", "keep", "tmp", "app"],
            "digest": [v1, v2, digest(body), digest(sig), fmt, keep, tmp, digest(stable), old],
            "tag": ["v1", "v2", "multi", "sig", "latest", "stable", "t1", "old"],
            "user": ["admin", "bot", "me"],
            "key": [key],
            "on": ["shop", "*"],
            "webhook": [ci, chat, dead, off],
            "cache": ["mirror-src", "spare"],
        },
        "DELETE /api/v1/caches/{cache}": {"cache": ["spare", "mirror-src"]},
        "DELETE /api/v1/registries/{registry}": {"registry": ["junk"]},
        "DELETE /api/v1/registries/{registry}/images/{image}": {"registry": ["shop"], "image": ["tools/fmt", "keep"]},
        f"DELETE {artifact}": {**in_web, "digest": [v2, digest(sig)]},
        f"POST {artifact}/tags": {**in_web, "digest": [v1, digest(body)]},
        "DELETE /api/v1/registries/{registry}/images/{image}/tags/{tag}": {**in_web, "tag": ["v1", "multi"]},
        "DELETE /api/v1/users/{user}": {"user": ["gone"]},
        "DELETE /api/v1/users/{user}/keys/{key}": {"user": ["bot"], "key": [key]},
        f"DELETE {webhook}": {"registry": ["shop"], "webhook": [doomed]},
        f"PATCH {policy % 'cleanup'}": {"registry": ["shop", "tidy"], "id": [*cleanup[:2], *tidy]},
        f"DELETE {policy % 'cleanup'}": {"registry": ["shop"], "id": [cleanup[2]]},
        f"PATCH {policy % 'protection'}": {"registry": ["shop"], "id": [protection[0]]},
        f"DELETE {policy % 'protection'}": {"registry": ["shop"], "id": [protection[1]]},
        "GET /api/v1/registries/{registry}/cleanup/runs/{id}": {"registry": ["tidy", "shop"], "id": runs},
        # Run now: for real in tidy (deleting what the test run found), and in shop (its policies spare everything).
        "POST /api/v1/registries/{registry}/cleanup/run": {"registry": ["tidy", "shop"]},
    }


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A fresh server per metadata backend (PostgreSQL refuses some input SQLite takes: NUL in text),
    with webhook receivers of its own. A webhook attempt may take 2 s: the run's own webhooks may
    point at hosts that never answer."""
    with contextlib.ExitStack() as stack:
        env = {"NCR_WEBHOOK_TIMEOUT_SECONDS": "2", **ALLOW_RECEIVERS}
        if request.param == "postgresql":
            pg = stack.enter_context(postgres_server())
            env["NCR_DATABASE_URL"] = stack.enter_context(pg.database("openapi"))
        receiver = stack.enter_context(Receiver())
        slack = stack.enter_context(Receiver(slack=True))
        srv = Server(data=tmp_path_factory.mktemp("openapi") / "data", registries=("shop", "junk", "tidy"),
                     env=env).start()
        stack.callback(srv.stop)
        yield Live(srv, seed(srv, receiver, slack))


def schemathesis_config(srv: Server, path: Path) -> Path:
    user, password = srv.admin
    checks = "\n".join(f"{c}.enabled = true" for c in CHECKS)
    path.write_text(f"""\
workers = 1
request-timeout = 30
hooks = {json.dumps(str(Path(__file__).parent / "support" / "openapi_hooks.py"))}
# Users and keys cost an scrypt hash each, and names must match their grammar: slow or filtered
# generation is expected here, not a problem of the document.
suppress-health-check = ["too_slow", "filter_too_much", "data_too_large"]

[auth.basic]
username = {json.dumps(user)}
password = {json.dumps(password)}

[generation]
deterministic = true
database = "none"
max-examples = {MAX_EXAMPLES}

# The hook decides which stored data each operation meets (see `seed`), not values picked up from
# other operations' answers, which would let a deletion of a whole registry or user run first.
[phases.examples.extra-data-sources]
responses = false
[phases.coverage.extra-data-sources]
responses = false
[phases.fuzzing.extra-data-sources]
responses = false
# The stateful phase chains operations through OpenAPI links; the document declares none, and the
# one link schemathesis infers on its own adds little for its time.
[phases.stateful]
enabled = false

[checks]
enabled = false
{checks}

[warnings]
# Every request answered 401/403, or 429 (locked out): the run tested nothing.
fail-on = ["missing_auth", "rate_limited"]
""")
    return path


def run_schemathesis(live: Live, tmp_path: Path, *selection: str) -> None:
    config = schemathesis_config(live.server, tmp_path / "schemathesis.toml")
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
           f"{live.server.url}/api/v1/openapi.json", *selection,
           *os.environ.get("NCR_OPENAPI_ST_ARGS", "").split()]
    env = {**os.environ, "NCR_OPENAPI_LIVE": json.dumps(live.values)}
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    print(r.stdout)  # shown with -s, or -rP
    assert r.returncode == 0, r.stdout[-20000:] + r.stderr[-5000:] + "\n-- server log --\n" + live.server.log()[-5000:]


def test_read_operations_conform(live: Live, tmp_path: Path) -> None:
    """First, while every pushed thing is there: the list and get operations answer real data."""
    run_schemathesis(live, tmp_path, "--include-method", "GET")


def test_write_operations_conform(live: Live, tmp_path: Path) -> None:
    """Then everything else, deletions included (this module's server is thrown away afterwards)."""
    run_schemathesis(live, tmp_path, "--exclude-method", "GET")


def test_the_administrator_survives_the_run(live: Live) -> None:
    """Runs after the write operations: the run's administrator is still there; and once every other
    system administrator the run created is gone, deleting it is refused."""
    me = _api(live.server, "GET", "/whoami").json()
    assert me["user"] == "admin" and me["system_admin"] is True
    for user in _api(live.server, "GET", "/users").json()["users"]:
        if user["system_admin"] and user["name"] != "admin":
            _api(live.server, "DELETE", f"/users/{user['name']}")
    r = httpx.delete(f"{live.server.url}/api/v1/users/admin", auth=live.server.admin, timeout=10)
    assert r.status_code == 409 and r.json()["errors"][0]["code"] == "CONFLICT", r.text
    assert _api(live.server, "GET", "/whoami").json()["system_admin"] is True


def test_document_is_served_without_authentication(live: Live) -> None:
    r = httpx.get(f"{live.server.url}/api/v1/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == DOCUMENT


def test_inputs_that_were_500s_get_a_4xx_and_store_nothing(live: Live) -> None:
    """What schemathesis (and a review of the same code paths) found, as plain regression checks."""
    srv = live.server
    url = f"{srv.url}/api/v1"

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, url + path, auth=srv.admin, timeout=30, **kw)

    assert call("POST", "/registries", json={"name": "regress", "description": "before"}).status_code == 201
    assert call("POST", "/users", json={"name": "regress-user"}).status_code == 201
    # NUL in text (PostgreSQL raised DataError): refused on both backends, and nothing is stored.
    for method, path, kw in [("GET", "/audit", {"params": {"actor": "a\x00"}}),
                             ("GET", "/registries/regress/images", {"params": {"q": "\x00"}}),
                             ("PATCH", "/registries/regress", {"json": {"description": "a\x00b"}}),
                             ("POST", "/registries", {"json": {"name": "regress2", "description": "\x00"}}),
                             ("POST", "/users/regress-user/keys", {"json": {"description": "\x00"}})]:
        r = call(method, path, **kw)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST", (path, r.text)
    assert call("GET", "/registries/regress").json()["description"] == "before"
    assert call("GET", "/registries/regress2").status_code == 404
    assert call("GET", "/users/regress-user/keys").json()["keys"] == []
    # Integers past 64 bits (SQLite raised OverflowError): a page past the end is empty, `before` means all.
    huge = str(10**30)
    r = call("GET", "/registries/regress/images", params={"page": huge})
    assert r.status_code == 200 and r.json()["images"] == [], r.text
    assert call("GET", "/gc", params={"page": huge}).json()["runs"] == []
    assert call("GET", "/audit", params={"before": huge, "limit": 1}).json()["entries"]
    # A glob whose braces expanded to more than wcmatch's 1000 patterns: braces are no longer expanded.
    r = call("GET", "/registries/regress/tags", params={"glob": "{a,b}" * 12})
    assert r.status_code == 200 and r.json()["tags"] == [], r.text
    r = call("GET", "/registries/regress/tags", params={"glob": "[[:alpha:]]"})  # not supported: said so
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST", r.text
    # JSON nested too deep for the parser (RecursionError).
    r = call("POST", "/gc", content=b"[" * 50_000, headers=JSON)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST", r.text
    # The role in the answer is the role stored, as the document says (it echoed the request's spelling).
    r = call("PUT", "/users/regress-user/roles/regress", json={"role": "Service Viewer"})
    assert r.status_code == 200 and r.json()["role"] == "service-viewer", r.text


def test_webhook_and_policy_inputs_that_were_500s_get_a_4xx_and_store_nothing(live: Live) -> None:
    """What a review of WebhooksAPI and PoliciesAPI found (and the fuzzing now covers nearby), as plain
    regression checks: each of these was a 500."""
    srv = live.server
    reg = "/registries/regress-hooks"

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{srv.url}/api/v1{path}", auth=srv.admin, timeout=30, **kw)

    def refused(r: httpx.Response, status: int, code: str) -> None:
        assert r.status_code == status and r.json()["errors"][0]["code"] == code, (r.request.url, r.text)

    assert call("POST", "/registries", json={"name": "regress-hooks"}).status_code == 201
    hook = call("POST", f"{reg}/webhooks", json={"name": "h", "kind": "http", "url": "http://127.0.0.1:1/"}).json()
    cleanup = call("POST", f"{reg}/cleanup/policies", json={"rule": "older_than", "n": 5}).json()["id"]
    protection = call("POST", f"{reg}/protection/policies", json={"tag": "v*"}).json()["id"]
    before = {p: call("GET", reg + p).json() for p in ("/webhooks", "/cleanup/policies", "/protection/policies",
                                                        "/cleanup/schedule")}
    # JSON nested too deep for the parser (RecursionError), on every operation that reads a body.
    for method, path in [("POST", "/webhooks"), ("PATCH", f"/webhooks/{hook['id']}"), ("POST", "/cleanup/policies"),
                         ("PATCH", f"/cleanup/policies/{cleanup}"), ("PUT", "/cleanup/schedule"),
                         ("POST", "/protection/policies"), ("PATCH", f"/protection/policies/{protection}")]:
        refused(call(method, reg + path, content=b"[" * 50_000, headers=JSON), 400, "INVALID_REQUEST")
    # An ID of digits that are not ASCII: "²".isdigit(), but int("²") raised ValueError.
    for method, path in [("GET", "/webhooks/\u00b2"), ("POST", "/webhooks/\u00b2/test"),
                         ("GET", "/webhooks/\u00b2/deliveries"), ("GET", "/cleanup/runs/\u00b2"),
                         ("DELETE", "/cleanup/policies/\u00b2"), ("PATCH", "/protection/policies/\u00b2")]:
        refused(call(method, reg + path, json={"enabled": False}), 404, "NOT_FOUND")
    # A schedule whose fields never meet (February 31st): croniter gave up finding its next run.
    for schedule in ("0 0 31 2 *", "0 0 30 2 ?", "0 0 31 4,6,9,11 *"):
        refused(call("PUT", f"{reg}/cleanup/schedule", json={"schedule": schedule}), 400, "INVALID_REQUEST")
    # Text with a lone surrogate (JSON "\ud800"): neither database driver can encode it.
    for method, path, body in [
            ("POST", "/webhooks", '{"name": "s", "kind": "http", "url": "http://a/", "secret": "\\ud800"}'),
            ("POST", "/cleanup/policies", '{"image": "\\ud800", "rule": "older_than", "n": 1}'),
            ("POST", "/protection/policies", '{"tag": "\\udfff"}'),
            ("PATCH", "", '{"description": "\\ud800"}')]:
        refused(call(method, reg + path, content=body.encode(), headers=JSON), 400, "INVALID_REQUEST")
    assert {p: call("GET", reg + p).json() for p in before} == before
    assert call("GET", reg).json()["description"] == ""
    # A webhook whose host IDNA refuses: an empty label or one longer than 63 characters is refused
    # when the webhook is set; a bad A-label passes that check, and sending a test to it raised
    # UnicodeError: it is a failed delivery now, like a host that does not resolve.
    for url in ("http://a..b/", "http://" + "a" * 64 + ".example/"):
        refused(call("PATCH", f"{reg}/webhooks/{hook['id']}", json={"url": url}), 400, "INVALID_REQUEST")
    for url in ("http://xn--zz.example/",):
        assert call("PATCH", f"{reg}/webhooks/{hook['id']}", json={"url": url}).status_code == 200
        r = call("POST", f"{reg}/webhooks/{hook['id']}/test")
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["status"] == "failed" and d["last_status"] is None and "Error" in d["last_error"], d
