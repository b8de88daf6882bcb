"""The management API and its OpenAPI document (`/api/v1/openapi.json`, ncr_trio/http/openapi.py).

1. The document and the route table cannot drift apart: every route of `ManagementAPI.routes()` is
   documented with its methods, parameters and authentication, and every documented operation has a
   route.
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
(tests/support/openapi_hooks.py) mixes the names, tags, digests, users and keys of the pushed content
into the generated path parameters: list, get and delete operations also answer with real data.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ncr_trio.http.api import ManagementAPI
from ncr_trio.http.openapi import DOCUMENT
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
from tests.support.server import Server

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance"]
MAX_EXAMPLES = 25  # per operation in the fuzzing phase; the examples and coverage phases add their own


# -- 1. the document and the route table ------------------------------------------------------------
class _NoService:
    """The route table is built from the handlers' names only; no request reaches them here."""


def _template(pattern: str) -> str:
    """A route's regex as an OpenAPI path: `(?P<name>...)` -> `{name}`."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern.removeprefix("^").removesuffix("$"))


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref")
    if ref is None:
        return item
    node: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def test_every_route_is_documented_and_every_documented_operation_is_routed() -> None:
    routes = ManagementAPI(_NoService()).routes()  # type: ignore[arg-type]
    routed = {(_template(r.pattern.pattern), m.lower()): r for r in routes for m in r.methods}
    documented = {(path, method): op for path, item in DOCUMENT["paths"].items() for method, op in item.items()}
    assert sorted(routed) == sorted(documented), (
        f"routes without a document entry: {sorted(set(routed) - set(documented))}; "
        f"documented operations without a route: {sorted(set(documented) - set(routed))}")
    for key, r in routed.items():
        op = documented[key]
        assert op["operationId"] == r.name, key
        path_params = {p["name"] for p in map(_resolve, op.get("parameters", [])) if p["in"] == "path"}
        assert path_params == set(r.pattern.groupindex), key
        # No authentication exactly where the gate asks for none.
        assert (op.get("security") == []) == (r.action is None), key
        if r.action is not None:
            assert {"401", "429"} <= set(op["responses"]), key


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


def seed(srv: Server) -> dict[str, dict[str, list[str]]]:
    """Push images, an index and a referrer, add users with a role and a key, run a dry GC. Returns the
    path parameter values that name what is stored: under "*" for every operation, and under
    "METHOD /path" what a destructive operation may destroy, each its own part, so that whatever order
    they run in, each one also meets data it can delete."""
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
        tmp = push_image(c, "junk/tmp", image("oa-tmp"), "t1")
        assert c.get(f"/v2/shop/web/manifests/{v1}").status_code == 200  # a pull time
    for name in ("bot", "gone"):
        _api(srv, "POST", "/users", json={"name": name, "password": f"{name}-password-0123"})
    _api(srv, "PUT", "/users/bot/roles/shop", json={"role": "image-uploader"})
    _api(srv, "PUT", "/users/bot/roles/*", json={"role": "service-viewer"})
    key = _api(srv, "POST", "/users/bot/keys", json={"description": "fleet"}).json()["id"]
    _api(srv, "POST", "/gc", json={"dry_run": True})
    artifact = "/api/v1/registries/{registry}/images/{image}/artifacts/{digest}"
    in_web = {"registry": ["shop"], "image": ["web"]}
    # Not the names the document's examples use (team, app, ci): the examples phase would destroy them first.
    return {
        "*": {
            "registry": ["shop", "junk"],
            "image": ["web", "tools/fmt", "tmp"],
            "digest": [v1, v2, digest(body), digest(sig), fmt, tmp],
            "tag": ["v1", "v2", "multi", "sig", "latest", "t1"],
            "user": ["admin", "bot", "me"],
            "key": [key],
            "on": ["shop", "*"],
        },
        "DELETE /api/v1/registries/{registry}": {"registry": ["junk"]},
        "DELETE /api/v1/registries/{registry}/images/{image}": {"registry": ["shop"], "image": ["tools/fmt"]},
        f"DELETE {artifact}": {**in_web, "digest": [v2, digest(sig)]},
        f"POST {artifact}/tags": {**in_web, "digest": [v1, digest(body)]},
        "DELETE /api/v1/registries/{registry}/images/{image}/tags/{tag}": {**in_web, "tag": ["v1", "multi"]},
        "DELETE /api/v1/users/{user}": {"user": ["gone"]},
        "DELETE /api/v1/users/{user}/keys/{key}": {"user": ["bot"], "key": [key]},
    }


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A fresh server per metadata backend (PostgreSQL refuses some input SQLite takes: NUL in text)."""
    with contextlib.ExitStack() as stack:
        env = {}
        if request.param == "postgresql":
            pg = stack.enter_context(postgres_server())
            env["NCR_DATABASE_URL"] = stack.enter_context(pg.database("openapi"))
        srv = Server(data=tmp_path_factory.mktemp("openapi") / "data", registries=("shop", "junk"), env=env).start()
        stack.callback(srv.stop)
        yield Live(srv, seed(srv))


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
           f"{live.server.url}/api/v1/openapi.json", *selection]
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
    # A glob whose braces expand to more than wcmatch's 1000 patterns (PatternLimitException).
    r = call("GET", "/registries/regress/tags", params={"glob": "{a,b}" * 12})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST", r.text
    # JSON nested too deep for the parser (RecursionError).
    r = call("POST", "/gc", content=b"[" * 50_000)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST", r.text
    # The role in the answer is the role stored, as the document says (it echoed the request's spelling).
    r = call("PUT", "/users/regress-user/roles/regress", json={"role": "Service Viewer"})
    assert r.status_code == 200 and r.json()["role"] == "service-viewer", r.text
