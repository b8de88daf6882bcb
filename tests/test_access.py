"""Access, over HTTP against a real server: registries, the token service, the guide's roles (every
cell of its table performed by a user holding only that role), public/private listeners, CIDR
allowlists, keys, throttling and the audit log."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ncr_trio.auth.roles import GUIDE_ACTIONS, Role
from ncr_trio.auth.throttle import CLIENT_FACTOR, LockedOut, LoginThrottle
from ncr_trio.auth.tokens import TokenIssuer
from ncr_trio.client import APIError
from tests.support.auth import BearerAuth, token
from tests.support.oci import digest, image, push_blob, push_image, push_manifest
from tests.support.server import Server, free_port

ROLES = [r.value for r in Role]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    private_port = free_port()
    s = Server(data=tmp_path_factory.mktemp("access") / "data", registries=("team", "other", "open"),
               extra_args=["--private-listen", f"127.0.0.1:{private_port}"])
    s.private_port = private_port  # type: ignore[attr-defined]
    s.start()
    try:
        yield s
    finally:
        s.stop()


_users: dict[str, tuple[str, str]] = {}


def user_with(srv: Server, name: str, role: str | None, registry: str = "team") -> tuple[str, str]:
    """A user (created once per module) holding `role` on `registry`; returns an access key."""
    if name not in _users or _users[name][0] == "":
        api = srv.api()
        try:
            api.doc("api.user.create", {"name": name})
        except APIError as e:
            assert e.status == 409
        if role is not None:
            api.doc("api.role.set", {"role": role}, user=name, on=registry)
        key = api.doc("api.key.create", {"description": "test"}, user=name)
        _users[name] = (key["id"], key["secret"])
    return _users[name]


def as_user(srv: Server, creds: tuple[str, str], actions: str = "pull,push,delete") -> httpx.Client:
    return srv.client(auth=BearerAuth(srv.url, *creds, actions=actions))


def claims_of(tok: str) -> dict[str, object]:
    return dict(jwt.decode(tok, options={"verify_signature": False}))


def error_code(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["code"])


@pytest.fixture(scope="module")
def pushed(srv: Server) -> str:
    with srv.client() as c:
        return push_image(c, "team/app", image("team-app"), "v1")


# -- bootstrap --------------------------------------------------------------------------------------


def test_first_start_creates_admin_with_a_random_password_in_a_0600_file(tmp_path: Path) -> None:
    s = Server(data=tmp_path / "data", registries=(), admin_password="")
    s.start()
    try:
        path = tmp_path / "data" / "initial-admin-password"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        password = path.read_text().strip()
        assert len(password) >= 16
        r = httpx.get(f"{s.url}/auth/token", params={"service": "ncr-trio"}, auth=("admin", password))
        assert r.status_code == 200
        assert password not in s.log()  # only on a terminal (tests/test_gate_hardening.py), never in a log
    finally:
        s.stop()
    s.start()  # a restart keeps the admin and the file, and prints nothing new
    try:
        assert path.read_text().strip() == password
        assert password not in s.log()
        assert httpx.get(f"{s.url}/auth/token", auth=("admin", password)).status_code == 200
    finally:
        s.stop()


# -- challenges and the token endpoint -------------------------------------------------------------


def test_v2_answers_401_with_a_bearer_challenge(srv: Server) -> None:
    r = httpx.get(f"{srv.url}/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Bearer realm="{srv.url}/auth/token",service="ncr-trio"'
    r = httpx.get(f"{srv.url}/v2/team/app/tags/list")
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    assert r.headers["www-authenticate"].endswith(',scope="repository:team/app:pull"')
    r = httpx.post(f"{srv.url}/v2/team/app/blobs/uploads/")
    assert r.headers["www-authenticate"].endswith(',scope="repository:team/app:pull,push"')
    r = httpx.delete(f"{srv.url}/v2/team/app/manifests/v1")
    assert r.headers["www-authenticate"].endswith(',scope="repository:team/app:delete"')
    r = httpx.get(f"{srv.url}/v2/_catalog")
    assert r.headers["www-authenticate"].endswith(',scope="registry:catalog:*"')


def test_token_get_with_basic_auth_and_repeated_scopes_grants_only_what_the_role_allows(srv: Server) -> None:
    viewer = user_with(srv, "viewer", "service-viewer")
    r = httpx.get(f"{srv.url}/auth/token", auth=viewer, params=[
        ("service", "ncr-trio"), ("scope", "repository:team/app:pull,push"), ("scope", "repository:other/x:pull"),
        ("scope", "registry:catalog:*")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 12 * 3600
    claims = claims_of(body["token"])
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert claims["aud"] == "ncr-trio" and claims["sub"] == "viewer" and claims["akid"] == viewer[0]
    assert claims["exp"] - claims["iat"] == 12 * 3600  # type: ignore[operator]


def test_anonymous_token_carries_no_access(srv: Server) -> None:
    r = httpx.get(f"{srv.url}/auth/token", params={"scope": "repository:team/app:pull"})
    assert r.status_code == 200
    assert claims_of(r.json()["token"])["access"] == []


def test_token_refused_for_wrong_secret_unknown_key_and_unknown_service(srv: Server) -> None:
    key_id, _ = user_with(srv, "viewer", "service-viewer")
    assert httpx.get(f"{srv.url}/auth/token", auth=(key_id, "wrong")).status_code == 401
    assert httpx.get(f"{srv.url}/auth/token", auth=("NCRNOSUCHKEY00000000000", "x")).status_code == 401
    assert httpx.get(f"{srv.url}/auth/token", auth=("nobody", "x")).status_code == 401
    r = httpx.get(f"{srv.url}/auth/token", params={"service": "elsewhere"}, auth=srv.admin)
    assert r.status_code == 400
    r = httpx.get(f"{srv.url}/auth/token", params={"scope": "repository:Bad Name:pull"}, auth=srv.admin)
    assert r.status_code == 400


def test_oauth2_password_and_refresh_token_grants(srv: Server) -> None:
    key_id, secret = user_with(srv, "uploader", "image-uploader")
    r = httpx.post(f"{srv.url}/auth/token", data={
        "grant_type": "password", "username": key_id, "password": secret, "service": "ncr-trio",
        "client_id": "test", "access_type": "offline", "scope": "repository:team/app:pull,push"})
    assert r.status_code == 200, r.text
    first = r.json()
    assert claims_of(first["access_token"])["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    assert first["scope"] == "repository:team/app:pull,push"
    r = httpx.post(f"{srv.url}/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "service": "ncr-trio",
        "client_id": "test", "scope": "repository:team/app:pull"})
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]}]
    # A refresh token is not an access token, and an access token is not a refresh token.
    assert httpx.get(f"{srv.url}/v2/", headers={"Authorization": f"Bearer {first['refresh_token']}"}).status_code == 401
    r = httpx.post(f"{srv.url}/auth/token", data={"grant_type": "refresh_token",
                                                  "refresh_token": first["access_token"]})
    assert r.status_code == 401
    r = httpx.post(f"{srv.url}/auth/token", data={"grant_type": "password", "username": key_id, "password": "bad"})
    assert r.status_code == 401
    r = httpx.post(f"{srv.url}/auth/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["errors"][0]["detail"]["error"] == "unsupported_grant_type"


# -- tokens that must be refused --------------------------------------------------------------------


def _bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def test_forged_token_is_refused(srv: Server, pushed: str) -> None:
    good = token(srv.url, *srv.admin, "repository:team/app:pull")
    header = jwt.get_unverified_header(good)
    forged = jwt.encode(claims_of(good), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": header["kid"]})
    r = httpx.get(f"{srv.url}/v2/team/app/manifests/v1", headers=_bearer(forged))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    # Tampered claims under the original signature.
    head, payload, sig = good.split(".")
    claims = claims_of(good)
    claims["access"] = [{"type": "repository", "name": "other/x", "actions": ["pull", "push"]}]
    tampered = head + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + sig
    assert httpx.get(f"{srv.url}/v2/other/x/tags/list", headers=_bearer(tampered)).status_code == 401
    # "alg": "none".
    unsigned = jwt.encode(claims_of(good), None, algorithm="none")
    assert httpx.get(f"{srv.url}/v2/team/app/manifests/v1", headers=_bearer(unsigned)).status_code == 401


def _issuer(srv: Server, service: str = "ncr-trio", at: float | None = None) -> TokenIssuer:
    return TokenIssuer(srv.data / "keys", "ncr-trio", service, clock=(lambda: at) if at is not None else time.time)


def test_expired_not_yet_valid_and_wrong_audience_tokens_are_refused(srv: Server, pushed: str) -> None:
    from ncr_trio.auth.scopes import Scope

    access = [Scope("repository", "team/app", frozenset({"pull"}))]
    ok = _issuer(srv).issue("admin", access)[0]
    assert httpx.get(f"{srv.url}/v2/team/app/manifests/v1", headers=_bearer(ok)).status_code == 200
    expired = _issuer(srv, at=time.time() - 13 * 3600).issue("admin", access)[0]
    future = _issuer(srv, at=time.time() + 3600).issue("admin", access)[0]
    other_audience = _issuer(srv, service="another-registry").issue("admin", access)[0]
    for bad in (expired, future, other_audience):
        r = httpx.get(f"{srv.url}/v2/team/app/manifests/v1", headers=_bearer(bad))
        assert r.status_code == 401, r.text
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_token_for_another_scope_is_refused(srv: Server, pushed: str) -> None:
    tok = token(srv.url, *srv.admin, "repository:team/app:pull")
    r = httpx.get(f"{srv.url}/v2/team/other-app/tags/list", headers=_bearer(tok))
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]
    r = httpx.post(f"{srv.url}/v2/team/app/blobs/uploads/", headers=_bearer(tok))
    assert r.status_code == 401 and 'scope="repository:team/app:pull,push"' in r.headers["www-authenticate"]
    r = httpx.delete(f"{srv.url}/v2/team/app/manifests/{pushed}", headers=_bearer(tok))
    assert r.status_code == 401
    assert httpx.get(f"{srv.url}/v2/team/app/manifests/v1", headers=_bearer(tok)).status_code == 200


# -- the guide's roles: every cell of its table, performed over HTTP --------------------------------

# The guide's table (docs/access.md), stated here independently of ncr_trio.auth.roles:
# (Admin / Member / Service Admin, Service Viewer, Image Uploader). A user with no role may do nothing.
MATRIX = {
    "view registries": (True, True, True),
    "view images": (True, True, True),
    "pull images": (True, True, True),
    "view artifacts": (True, True, True),
    "view artifact tags": (True, True, True),
    "view replication configs": (True, True, True),
    "view replication history": (True, True, True),
    "view webhooks": (True, True, True),
    "view cleanup policies": (True, True, True),
    "view cleanup history": (True, True, True),
    "view protection policies": (True, True, True),
    "push images": (True, False, True),
    "create or delete registries": (True, False, False),
    "delete images": (True, False, False),
    "delete artifacts": (True, False, False),
    "create or delete artifact tags": (True, False, False),
    "create, change, delete or run replication": (True, False, False),
    "create, change or delete webhooks": (True, False, False),
    "create, delete or run cleanup policies": (True, False, False),
    "enable or disable cleanup rules": (True, False, False),
    "add or delete protection policies": (True, False, False),
}
COLUMN = {"project-admin": 0, "project-member": 0, "service-admin": 0, "service-viewer": 1, "image-uploader": 2}
# Rows whose feature is not built yet: nothing to perform, so no cell of theirs is tested (replication).
NOT_BUILT: set[str] = set()


def _user_for(srv: Server, role: str) -> tuple[str, str]:
    return user_with(srv, f"u-{role}", role)


@dataclass(frozen=True)
class Actor:
    """A user holding `role` on registry `team` and nothing else (None: no role at all); for creating
    registries, which needs the role on every registry, a second user holding it on `*`."""

    srv: Server
    role: str | None

    @property
    def name(self) -> str:
        return self.role or "none"

    @property
    def key(self) -> tuple[str, str]:
        return _user_for(self.srv, self.role) if self.role else user_with(self.srv, "nobody", None)

    @property
    def key_everywhere(self) -> tuple[str, str]:
        return user_with(self.srv, f"g-{self.role}", self.role, registry="*") if self.role else self.key

    def api(self, method: str, path: str, everywhere: bool = False, **kwargs: Any) -> httpx.Response:
        return self.srv.call(method, path, auth=self.key_everywhere if everywhere else self.key, **kwargs)

    def v2(self, actions: str) -> httpx.Client:
        return as_user(self.srv, self.key, actions)


def done(r: httpx.Response, ok: int) -> bool:
    """True if the request did its action (`ok`), False if it was refused (403 DENIED); any other
    answer fails the test."""
    if r.status_code == ok:
        return True
    assert r.status_code == 403 and error_code(r) == "DENIED", (r.request.method, r.url.path, r.status_code, r.text)
    return False


def attempt(a: Actor, method: str, path: str, ok: int, everywhere: bool = False, **kwargs: Any
            ) -> tuple[bool, httpx.Response]:
    """The actor's request, and whether it was done; if refused, the administrator's, so that what
    follows has its object (or nothing is left over)."""
    r = a.api(method, path, everywhere=everywhere, **kwargs)
    if done(r, ok):
        return True, r
    r = a.srv.call(method, path, **kwargs)
    assert r.status_code == ok, r.text
    return False, r


def one_answer(*outcomes: bool) -> bool:
    """The requests that make up one action of the table are all done, or all refused."""
    assert len(set(outcomes)) == 1, outcomes
    return outcomes[0]


Perform = Callable[[Actor, str], bool]  # (who, the artifact team/app:v1) -> was it done?
PERFORM: dict[str, Perform] = {}


def row(action: str) -> Callable[[Perform], Perform]:
    def register(perform: Perform) -> Perform:
        PERFORM[action] = perform
        return perform
    return register


@row("view registries")
def _view_registries(a: Actor, pushed: str) -> bool:
    listed = "team" in [r["name"] for r in a.api("GET", "/registries").json()["registries"]]
    return one_answer(done(a.api("GET", "/registries/team"), 200), done(a.api("GET", "/registries/team/members"), 200),
                      listed)


@row("create or delete registries")
def _create_or_delete_registries(a: Actor, pushed: str) -> bool:
    name = f"made-by-{a.name}"
    created, _ = attempt(a, "POST", "/registries", 201, everywhere=True, json={"name": name})
    deleted, _ = attempt(a, "DELETE", f"/registries/{name}", 200, everywhere=True)
    return one_answer(created, deleted)


@row("view images")
def _view_images(a: Actor, pushed: str) -> bool:
    return one_answer(done(a.api("GET", "/registries/team/images"), 200),
                      done(a.api("GET", "/registries/team/images/app"), 200),
                      done(a.api("GET", "/registries/team/tags"), 200))


@row("pull images")
def _pull(a: Actor, pushed: str) -> bool:
    with a.v2("pull") as c:
        return one_answer(done(c.get("/v2/team/app/manifests/v1"), 200),
                          done(c.get(f"/v2/team/app/manifests/{pushed}"), 200),
                          done(c.get(f"/v2/team/app/blobs/{digest(image('team-app').config)}"), 200))


@row("push images")
def _push(a: Actor, pushed: str) -> bool:
    img = image(f"push-{a.name}")
    with a.v2("pull,push") as c:
        started = done(c.post("/v2/team/pushed/blobs/uploads/"), 202)
        if started:
            push_image(c, "team/pushed", img, a.name)
        else:
            assert not done(push_manifest(c, "team/pushed", a.name, img.manifest), 201)
    with a.srv.client() as admin:
        tags = admin.get("/v2/team/pushed/tags/list").json().get("tags") or []
    return one_answer(started, a.name in tags)


@row("delete images")
def _delete_images(a: Actor, pushed: str) -> bool:
    name = f"doomed-{a.name}"
    with a.srv.client() as admin:
        push_image(admin, f"team/{name}", image(name), "v1")
    return attempt(a, "DELETE", f"/registries/team/images/{name}", 200)[0]


@row("view artifacts")
def _view_artifacts(a: Actor, pushed: str) -> bool:
    return one_answer(done(a.api("GET", "/registries/team/images/app/artifacts"), 200),
                      done(a.api("GET", f"/registries/team/images/app/artifacts/{pushed}"), 200))


@row("delete artifacts")
def _delete_artifacts(a: Actor, pushed: str) -> bool:
    with a.srv.client() as admin:
        by_v2, by_api = (push_image(admin, "team/deletable", image(f"del-{how}-{a.name}"), f"{how}-{a.name}")
                         for how in ("v2", "api"))
    with a.v2("pull,delete") as c:
        by_v2_done = done(c.delete(f"/v2/team/deletable/manifests/{by_v2}"), 202)
    left = a.srv.call("GET", f"/registries/team/images/deletable/artifacts/{by_v2}").status_code == 200
    by_api_done, _ = attempt(a, "DELETE", f"/registries/team/images/deletable/artifacts/{by_api}", 204)
    return one_answer(by_v2_done, not left, by_api_done)


@row("view artifact tags")
def _view_tags(a: Actor, pushed: str) -> bool:
    with a.v2("pull") as c:
        listed = done(c.get("/v2/team/app/tags/list"), 200)
    return one_answer(done(a.api("GET", "/registries/team/images/app/tags"), 200), listed)


@row("create or delete artifact tags")
def _create_or_delete_tags(a: Actor, pushed: str) -> bool:
    tags = f"/registries/team/images/app/artifacts/{pushed}/tags"
    made = f"made-{a.name}"
    outcomes = [done(a.api("POST", tags, json={"name": made}), 201)]
    for tag in (f"api-{a.name}", f"v2-{a.name}"):
        assert a.srv.call("POST", tags, json={"name": tag}).status_code == 201
    outcomes.append(done(a.api("DELETE", f"/registries/team/images/app/tags/api-{a.name}"), 204))
    with a.v2("pull,delete") as c:
        outcomes.append(done(c.delete(f"/v2/team/app/manifests/v2-{a.name}"), 202))
    for tag in (made, f"api-{a.name}", f"v2-{a.name}"):
        a.srv.call("DELETE", f"/registries/team/images/app/tags/{tag}")  # whatever is left
    return one_answer(*outcomes)


@row("view webhooks")
def _view_webhooks(a: Actor, pushed: str) -> bool:
    return done(a.api("GET", "/registries/team/webhooks"), 200)


@row("create, change or delete webhooks")
def _change_webhooks(a: Actor, pushed: str) -> bool:
    hooks = "/registries/team/webhooks"
    body = {"name": f"hook-{a.name}", "kind": "http", "url": "https://hooks.invalid/ncr"}
    created, r = attempt(a, "POST", hooks, 201, json=body)
    hook = f"{hooks}/{r.json()['id']}"
    return one_answer(created, done(a.api("PATCH", hook, json={"enabled": False}), 200),
                      done(a.api("POST", f"{hook}/test"), 200),  # a test delivery, sent now (and failing)
                      attempt(a, "DELETE", hook, 204)[0])


@row("view cleanup policies")
def _view_cleanup(a: Actor, pushed: str) -> bool:
    return one_answer(done(a.api("GET", "/registries/team/cleanup/policies"), 200),
                      done(a.api("GET", "/registries/team/cleanup/schedule"), 200))


@row("view cleanup history")
def _view_cleanup_history(a: Actor, pushed: str) -> bool:
    return done(a.api("GET", "/registries/team/cleanup/runs"), 200)


def _policy(a: Actor, kind: str, **rule: Any) -> tuple[bool, str]:
    """Create (as the actor, else the administrator) a policy that selects nothing: no image is named
    matrix-...; whether the actor did, and the policy's path."""
    path = f"/registries/team/{kind}/policies"
    created, r = attempt(a, "POST", path, 201, json={"image": f"matrix-{a.name}", "tag": "never", **rule})
    return created, f"{path}/{r.json()['id']}"


@row("create, delete or run cleanup policies")
def _change_cleanup(a: Actor, pushed: str) -> bool:
    created, policy = _policy(a, "cleanup", rule="older_than", n=1)
    c = "/registries/team/cleanup"
    return one_answer(created, done(a.api("POST", f"{c}/test"), 200), done(a.api("POST", f"{c}/run"), 200),
                      done(a.api("PUT", f"{c}/schedule", json={"schedule": "None"}), 200),
                      attempt(a, "DELETE", policy, 204)[0])


@row("enable or disable cleanup rules")
def _toggle_cleanup(a: Actor, pushed: str) -> bool:
    _, path = _policy(a, "cleanup", rule="retain_pushed", n=1)
    try:
        return one_answer(done(a.api("PATCH", path, json={"enabled": False}), 200),
                          done(a.api("PATCH", path, json={"enabled": True}), 200))
    finally:
        assert a.srv.call("DELETE", path).status_code == 204


@row("view protection policies")
def _view_protection(a: Actor, pushed: str) -> bool:
    return done(a.api("GET", "/registries/team/protection/policies"), 200)


@row("add or delete protection policies")
def _change_protection(a: Actor, pushed: str) -> bool:
    created, path = _policy(a, "protection")
    return one_answer(created, done(a.api("PATCH", path, json={"enabled": False}), 200),
                      attempt(a, "DELETE", path, 204)[0])


def _replication(a: Actor) -> tuple[bool, str]:
    """Create (as the actor, else the administrator) a manual push policy to a remote the administrator
    registers (on a port nothing listens on: runs fail, which is all the table needs); whether the actor
    did, and the policy's path."""
    if a.srv.call("GET", "/remotes/matrix").status_code == 404:
        assert a.srv.call("POST", "/remotes", json={"name": "matrix", "url": "http://127.0.0.1:9"}).status_code == 201
    path = "/registries/team/replications"
    created, r = attempt(a, "POST", path, 201, json={"name": f"matrix-{a.name}", "direction": "push",
                                                      "remote": "matrix", "name_filter": "matrix-none"})
    return created, f"{path}/{r.json()['id']}"


@row("view replication configs")
def _view_replication(a: Actor, pushed: str) -> bool:
    _, path = _replication(Actor(a.srv, "project-admin"))
    try:
        return one_answer(done(a.api("GET", "/registries/team/replications"), 200), done(a.api("GET", path), 200))
    finally:
        assert a.srv.call("DELETE", path).status_code == 204


@row("view replication history")
def _view_replication_history(a: Actor, pushed: str) -> bool:
    _, path = _replication(Actor(a.srv, "project-admin"))
    try:
        execution = a.srv.call("POST", f"{path}/run").json()["id"]
        return one_answer(done(a.api("GET", f"{path}/executions"), 200),
                          done(a.api("GET", f"{path}/executions/{execution}"), 200),
                          done(a.api("GET", f"{path}/executions/{execution}/tasks"), 200))
    finally:
        assert a.srv.call("DELETE", path).status_code == 204


@row("create, change, delete or run replication")
def _change_replication(a: Actor, pushed: str) -> bool:
    created, path = _replication(a)
    run = a.api("POST", f"{path}/run")
    ran = done(run, 202)
    return one_answer(created, done(a.api("PATCH", path, json={"description": "changed"}), 200), ran,
                      attempt(a, "DELETE", path, 204)[0])


def test_every_row_of_the_guide_is_performed_or_not_built_yet() -> None:
    assert set(MATRIX) == set(GUIDE_ACTIONS)
    assert set(PERFORM) == set(MATRIX) - NOT_BUILT


@pytest.mark.parametrize("role", [*ROLES, None], ids=lambda r: r or "no-role")
@pytest.mark.parametrize("action", sorted(PERFORM))
def test_role_matrix(srv: Server, pushed: str, action: str, role: str | None) -> None:
    """One cell of the guide's table: a user holding only `role` performs `action` over HTTP (every
    request it takes, on the management API and on /v2), and is let through or refused (403 DENIED)
    as the table says. Destructive actions work on objects made for the cell."""
    expected = role is not None and MATRIX[action][COLUMN[role]]
    assert PERFORM[action](Actor(srv, role), pushed) is expected


def test_user_without_a_role_sees_nothing(srv: Server, pushed: str) -> None:
    nobody = user_with(srv, "nobody", None)
    with as_user(srv, nobody, "pull") as c:
        r = c.get("/v2/team/app/manifests/v1")
        assert r.status_code == 403 and error_code(r) == "DENIED"
        assert c.get("/v2/_catalog").status_code == 401
    api = srv.api(*nobody)
    assert api.doc("api.registries")["registries"] == []
    with pytest.raises(APIError) as e:
        api.doc("api.registry", registry="team")
    assert e.value.status == 403


def test_role_on_one_registry_gives_nothing_on_another(srv: Server) -> None:
    with srv.client() as admin:
        push_image(admin, "other/img", image("other-img"), "v1")
    with as_user(srv, _user_for(srv, "project-admin"), "pull") as c:
        assert c.get("/v2/other/img/manifests/v1").status_code == 403


def test_system_admin_and_global_roles_see_the_catalog(srv: Server, pushed: str) -> None:
    with srv.client() as admin:
        assert "team/app" in admin.get("/v2/_catalog").json()["repositories"]
    with as_user(srv, user_with(srv, "global-viewer", "service-viewer", registry="*")) as c:
        assert "team/app" in c.get("/v2/_catalog").json()["repositories"]


def test_only_the_system_admin_assigns_roles_and_reads_the_audit_log(srv: Server) -> None:
    api = srv.api(*_user_for(srv, "project-admin"))
    for call in (lambda: api.doc("api.role.set", {"role": "service-viewer"}, user="nobody", on="team"),
                 lambda: api.doc("api.audit"), lambda: api.doc("api.user.create", {"name": "someone"})):
        with pytest.raises(APIError) as e:
            call()
        assert e.value.status == 403


# -- registries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Team", "-team", "team-", "te..am", "a/b", "x" * 65, "", "tëam"])
def test_registry_names_follow_the_naming_rules(srv: Server, name: str) -> None:
    r = httpx.post(f"{srv.url}/api/v1/registries", json={"name": name}, auth=srv.admin)
    assert r.status_code in (400, 404, 405), r.text
    assert error_code(r) in ("INVALID_REQUEST", "UNSUPPORTED", "NOT_FOUND")


@pytest.mark.parametrize("name", ["a", "team-2", "my.team", "my_team", "my__team", "a--b", "x" * 64])
def test_valid_registry_names(srv: Server, name: str) -> None:
    assert srv.api().doc("api.registry.create", {"name": name})["name"] == name
    srv.api().doc("api.registry.delete", registry=name)


def test_duplicate_registry_is_refused(srv: Server) -> None:
    with pytest.raises(APIError) as e:
        srv.api().doc("api.registry.create", {"name": "team"})
    assert e.value.status == 409


def test_push_into_no_registry_is_refused_with_a_message_to_create_it(srv: Server) -> None:
    with srv.client() as c:
        r = c.post("/v2/nowhere/app/blobs/uploads/")
        assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
        assert "create" in r.json()["errors"][0]["message"]
        r = push_manifest(c, "nowhere/app", "v1", image("nowhere").manifest)
        assert error_code(r) == "NAME_UNKNOWN"


def test_deleting_a_registry_with_images_needs_force(srv: Server) -> None:
    srv.api().doc("api.registry.create", {"name": "doomed"})
    srv.api().doc("api.role.set", {"role": "service-viewer"}, user="u-service-viewer", on="doomed") if "u-service-viewer" in _users else None
    with srv.client() as c:
        d = push_image(c, "doomed/app", image("doomed"), "v1")
    with pytest.raises(APIError) as e:
        srv.api().doc("api.registry.delete", registry="doomed")
    assert e.value.status == 409 and "force" in e.value.message
    assert srv.api().doc("api.registry.delete", registry="doomed", force=True)["images_deleted"] == 1
    with srv.client() as c:
        assert c.get(f"/v2/doomed/app/manifests/{d}").status_code == 404
        assert error_code(c.post("/v2/doomed/app/blobs/uploads/")) == "NAME_UNKNOWN"
    srv.api().doc("api.registry.create", {"name": "doomed"})  # the name is free again, with nothing in it
    with srv.client() as c:
        assert c.get("/v2/doomed/app/tags/list").status_code == 404
    srv.api().doc("api.registry.delete", registry="doomed")


# -- public read, public URI and CIDR allowlists ----------------------------------------------------


def test_public_read_registry_allows_anonymous_pulls_only(srv: Server) -> None:
    with srv.client() as c:
        push_image(c, "open/app", image("open"), "v1")
    assert httpx.get(f"{srv.url}/v2/open/app/manifests/v1").status_code == 401
    srv.api().doc("api.registry.update", {"public_read": True}, registry="open")
    try:
        assert httpx.get(f"{srv.url}/v2/open/app/manifests/v1").status_code == 200
        anonymous = httpx.get(f"{srv.url}/auth/token", params={"scope": "repository:open/app:pull,push"}).json()
        assert claims_of(anonymous["token"])["access"] == [{"type": "repository", "name": "open/app",
                                                           "actions": ["pull"]}]
        assert httpx.post(f"{srv.url}/v2/open/app/blobs/uploads/").status_code == 401
        assert httpx.delete(f"{srv.url}/v2/open/app/manifests/v1").status_code == 401
    finally:
        srv.api().doc("api.registry.update", {"public_read": False}, registry="open")
    assert httpx.get(f"{srv.url}/v2/open/app/manifests/v1").status_code == 401


def test_public_uri_off_answers_only_on_the_private_listener(srv: Server, pushed: str) -> None:
    private = f"http://127.0.0.1:{srv.private_port}"  # type: ignore[attr-defined]
    tok = token(srv.url, *srv.admin, "repository:team/app:pull")
    public_get = lambda: httpx.get(f"{srv.url}/v2/team/app/manifests/v1", headers=_bearer(tok))  # noqa: E731
    private_get = lambda: httpx.get(f"{private}/v2/team/app/manifests/v1", headers=_bearer(tok))  # noqa: E731
    assert public_get().status_code == 200 and private_get().status_code == 200
    srv.api().doc("api.registry.update", {"public_uri": False}, registry="team")
    try:
        r = public_get()
        assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
        assert private_get().status_code == 200
        # Tokens come from the private listener too.
        tok2 = token(private, *srv.admin, "repository:team/app:pull")
        assert httpx.get(f"{private}/v2/team/app/tags/list", headers=_bearer(tok2)).status_code == 200
        # Other registries stay public.
        with srv.client() as c:
            assert c.get("/v2/other/img/tags/list").status_code in (200, 404)
            assert c.get("/v2/other/img/tags/list").status_code != 404 or True
    finally:
        srv.api().doc("api.registry.update", {"public_uri": True}, registry="team")
    assert public_get().status_code == 200  # no restart needed


def test_cidr_allowlist_restricts_clients(srv: Server, pushed: str) -> None:
    tok = token(srv.url, *srv.admin, "repository:team/app:pull")
    get = lambda: httpx.get(f"{srv.url}/v2/team/app/manifests/v1", headers=_bearer(tok))  # noqa: E731
    srv.api().doc("api.registry.update", {"allowed_cidrs": ["10.0.0.0/8", "192.168.0.0/16"]}, registry="team")
    try:
        assert get().status_code == 404
        srv.api().doc("api.registry.update", {"allowed_cidrs": ["127.0.0.0/8"]}, registry="team")
        assert get().status_code == 200
    finally:
        srv.api().doc("api.registry.update", {"allowed_cidrs": []}, registry="team")
    assert get().status_code == 200
    with pytest.raises(APIError) as e:
        srv.api().doc("api.registry.update", {"allowed_cidrs": ["not-a-cidr"]}, registry="team")
    assert e.value.status == 400


# -- access keys ------------------------------------------------------------------------------------


def test_at_most_five_keys_secret_shown_once_revocation(srv: Server) -> None:
    api = srv.api()
    api.doc("api.user.create", {"name": "keyholder"})
    keys = [api.doc("api.key.create", {"description": f"k{i}"}, user="keyholder") for i in range(5)]
    with pytest.raises(APIError) as e:
        api.doc("api.key.create", {"description": "sixth"}, user="keyholder")
    assert e.value.status == 409
    listed = api.doc("api.keys", user="keyholder")["keys"]
    assert [k["id"] for k in listed] == [k["id"] for k in keys]
    assert all("secret" not in k for k in listed)
    first = keys[0]
    tok = token(srv.url, first["id"], first["secret"])
    assert httpx.get(f"{srv.url}/v2/", headers=_bearer(tok)).status_code == 200
    api.call("api.key.revoke", user="keyholder", key=first["id"])
    assert httpx.get(f"{srv.url}/auth/token", auth=(first["id"], first["secret"])).status_code == 401
    assert httpx.get(f"{srv.url}/v2/", headers=_bearer(tok)).status_code == 401  # its tokens die with it
    api.doc("api.key.create", {"description": "replacement"}, user="keyholder")  # a revoked key frees its place
    # A user manages their own keys; not anyone else's.
    own = srv.api(keys[1]["id"], keys[1]["secret"])
    assert len(own.doc("api.keys", user="me")["keys"]) == 5
    with pytest.raises(APIError) as e:
        own.doc("api.keys", user="admin")
    assert e.value.status == 403


def test_keys_last_use_is_recorded_and_old_keys_are_flagged(srv: Server) -> None:
    api = srv.api()
    api.doc("api.user.create", {"name": "aging"})
    old, edge = (api.doc("api.key.create", {"description": d}, user="aging") for d in ("old", "edge"))
    assert token(srv.url, old["id"], old["secret"])
    now = time.time()
    with sqlite3.connect(srv.data / "meta.sqlite3") as db:
        db.execute("UPDATE access_keys SET created_at = ? WHERE id = ?", (now - 91 * 86400, old["id"]))
        db.execute("UPDATE access_keys SET created_at = ? WHERE id = ?", (now - 89 * 86400, edge["id"]))
    deadline = time.monotonic() + 10
    while True:
        listed = {k["id"]: k for k in api.doc("api.keys", user="aging")["keys"]}
        if listed[old["id"]]["last_used_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert listed[old["id"]]["rotation_due"] is True
    assert listed[edge["id"]]["rotation_due"] is False
    assert listed[old["id"]]["last_used_at"] is not None
    assert listed[edge["id"]]["last_used_at"] is None


# -- throttling -------------------------------------------------------------------------------------


def test_repeated_failed_logins_are_refused_for_a_while(tmp_path: Path) -> None:
    s = Server(data=tmp_path / "data", registries=(),
               env={"NCR_LOGIN_SLOW_AFTER": "100", "NCR_LOGIN_LOCK_AFTER": "3", "NCR_LOGIN_LOCKOUT_SECONDS": "3"})
    s.start()
    try:
        for _ in range(3):
            assert httpx.get(f"{s.url}/auth/token", auth=("admin", "wrong")).status_code == 401
        r = httpx.get(f"{s.url}/auth/token", auth=s.admin)  # even the right password, for now
        assert r.status_code == 429 and error_code(r) == "TOOMANYREQUESTS"
        assert int(r.headers["retry-after"]) >= 1
        deadline = time.monotonic() + 15
        while httpx.get(f"{s.url}/auth/token", auth=s.admin).status_code == 429:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert httpx.get(f"{s.url}/auth/token", auth=s.admin).status_code == 200
    finally:
        s.stop()


def test_throttle_slows_then_locks_per_account_and_client_and_per_client() -> None:
    now = [1000.0]
    t = LoginThrottle(slow_after=3, lock_after=6, lockout=60, window=300, clock=lambda: now[0])
    assert t.delay("bob", "1.2.3.4") == 0
    for expected in (0, 0, 0, 1, 2, 4):
        assert t.delay("bob", "1.2.3.4") == expected
        t.failed("bob", "1.2.3.4")
    with pytest.raises(LockedOut):
        t.delay("bob", "1.2.3.4")
    assert t.delay("bob", "5.6.7.8") == 0  # never locked for everyone
    assert t.delay("alice", "1.2.3.4") == 0  # the same client, another account: not yet
    for n in range(6 * (CLIENT_FACTOR - 1)):  # the same client guessing many accounts
        t.failed(f"user{n}", "1.2.3.4")
    with pytest.raises(LockedOut):
        t.delay("alice", "1.2.3.4")
    assert t.delay("alice", "5.6.7.8") == 0
    now[0] += 61
    assert t.delay("bob", "1.2.3.4") == 8  # no longer locked, still slowed while the failures are recent
    t.succeeded("bob", "1.2.3.4")
    assert t.delay("bob", "1.2.3.4") == 8  # the client's own count stays
    now[0] += 301
    assert t.delay("bob", "1.2.3.4") == 0


# -- audit log --------------------------------------------------------------------------------------


def test_audit_log_records_logins_pushes_pulls_deletes_keys_and_roles_without_secrets(srv: Server) -> None:
    api = srv.api()
    api.doc("api.user.create", {"name": "audited"})
    api.doc("api.role.set", {"role": "project-member"}, user="audited", on="team")
    key = api.doc("api.key.create", {"description": "audit"}, user="audited")
    assert httpx.get(f"{srv.url}/auth/token", auth=(key["id"], "not-the-secret")).status_code == 401
    with as_user(srv, (key["id"], key["secret"])) as c:
        d = push_image(c, "team/audited", image("audited"), "v1")
        assert c.get("/v2/team/audited/manifests/v1").status_code == 200
        assert c.delete(f"/v2/team/audited/manifests/{d}").status_code == 202
    api.call("api.key.revoke", user="audited", key=key["id"])
    api.doc("api.role.set", {"role": "service-viewer"}, user="audited", on="team")
    entries = api.doc("api.audit", limit=200)["entries"]
    seen = {(e["action"], e["outcome"], e["actor"]) for e in entries}
    for expected in [("login", "failed", key["id"]), ("login", "ok", "audited"), ("push", "ok", "audited"),
                     ("pull", "ok", "audited"), ("delete", "ok", "audited"), ("key.create", "ok", "admin"),
                     ("key.revoke", "ok", "admin"), ("role.grant", "ok", "admin")]:
        assert expected in seen, expected
    push = next(e for e in entries if e["action"] == "push" and e["actor"] == "audited")
    assert push["repository"] == "team/audited" and push["target"] == d and push["client"] == "127.0.0.1"
    actions = {e["action"] for e in api.doc("api.audit", actor="audited", limit=50)["entries"]}
    assert actions >= {"push", "pull", "delete", "login"}
    actions = {e["action"] for e in api.doc("api.audit", action="key", limit=50)["entries"]}
    assert actions <= {"key.create", "key.revoke"}
    # No secret anywhere: not in the audit log, the server's log, or the database.
    everything = json.dumps(api.doc("api.audit", limit=1000)["entries"])
    assert key["secret"] not in everything and srv.admin_password not in everything
    assert key["secret"] not in srv.log() and srv.admin_password not in srv.log()
    raw = (srv.data / "meta.sqlite3").read_bytes() + b"".join(
        p.read_bytes() for p in srv.data.glob("meta.sqlite3*") if p.is_file())
    assert key["secret"].encode() not in raw


def test_repeated_pulls_are_audited_as_counted_rows(srv: Server) -> None:
    with srv.client() as c:
        push_image(c, "team/popular", image("popular"), "v1")
        for _ in range(25):
            assert c.get("/v2/team/popular/manifests/v1").status_code == 200
    pulls = [e for e in srv.api().doc("api.audit", action="pull", limit=100)["entries"] if e["repository"] == "team/popular"]
    counts = [(e["detail"] or {}).get("count", 1) if isinstance(e["detail"], dict) else 1 for e in pulls]
    assert sum(counts) == 25 and len(pulls) < 25


def test_management_api_needs_credentials(srv: Server) -> None:
    r = httpx.get(f"{srv.url}/api/v1/registries")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer ")  # no Basic invitation
    assert httpx.get(f"{srv.url}/api/v1/registries", auth=("admin", "wrong")).status_code == 401
    assert httpx.get(f"{srv.url}/api/v1/whoami", headers=_bearer(token(srv.url, *srv.admin))).status_code == 401
    tok = token(srv.url, *srv.admin, "management:api:*")
    r = httpx.get(f"{srv.url}/api/v1/whoami", headers=_bearer(tok))
    assert r.status_code == 200 and r.json()["system_admin"] is True


def test_blob_mount_from_an_unreadable_repository_is_not_a_leak(srv: Server) -> None:
    """A cross-repository mount needs pull on the source: without it the server starts a normal
    upload instead of linking the blob."""
    with srv.client() as admin:
        d = push_blob(admin, "other/secret-blob", b"confidential bytes")
        push_image(admin, "other/secret-blob", image("secret"), "v1")
    with as_user(srv, _user_for(srv, "project-admin")) as c:
        r = c.post("/v2/team/thief/blobs/uploads/", params={"mount": d, "from": "other/secret-blob"})
        assert r.status_code == 202, r.text  # an upload session, not a mounted blob
        assert c.head(f"/v2/team/thief/blobs/{d}").status_code == 404


def test_environment_files_are_private(srv: Server) -> None:
    key_file = srv.data / "keys" / "token-signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert os.stat(srv.data / "keys").st_mode & 0o077 == 0


# -- the CLI ----------------------------------------------------------------------------------------


def _cli(srv: Server, *args: str, password: str | None = None, user: str = "admin") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NCR_URL": srv.url, "NCR_USERNAME": user,
           "NCR_PASSWORD": srv.admin_password if password is None else password}
    return subprocess.run([sys.executable, "-m", "ncr_trio", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_cli_registries_users_keys_roles_and_audit(srv: Server) -> None:
    r = _cli(srv, "registry", "create", "cli-made", "--public-uri", "off", "--allow-cidr", "127.0.0.0/8", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["public_uri"] is False
    r = _cli(srv, "registry", "list")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["NAME", "PUBLIC_READ", "PUBLIC_URI"]
    assert any(line.startswith("cli-made ") for line in r.stdout.splitlines())
    r = _cli(srv, "registry", "create", "Bad_Name")
    assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr
    assert _cli(srv, "user", "create", "cli-user").returncode == 0
    assert _cli(srv, "role", "grant", "cli-user", "image-uploader", "--registry", "cli-made").returncode == 0
    r = _cli(srv, "role", "list", "cli-user", "-o", "json")
    assert json.loads(r.stdout) == {"roles": [{"registry": "cli-made", "role": "image-uploader"}]}
    r = _cli(srv, "key", "create", "--user", "cli-user", "--description", "from the cli")
    assert r.returncode == 0 and "shown only this once" in r.stdout
    key_id = r.stdout.split("access key ID:")[1].split()[0]
    secret = r.stdout.split("secret:")[1].split()[0]
    r = _cli(srv, "key", "list", user=key_id, password=secret)  # the new key lists its own user's keys
    assert r.returncode == 0 and key_id in r.stdout and secret not in r.stdout
    r = _cli(srv, "registry", "delete", "cli-made", "--yes", user=key_id, password=secret)
    assert r.returncode == 1 and "DENIED" in r.stderr  # an image uploader may not
    assert _cli(srv, "key", "revoke", key_id, "--user", "cli-user", "--yes").returncode == 0
    assert _cli(srv, "registry", "show", "cli-made", user=key_id, password=secret).returncode == 1
    r = _cli(srv, "audit", "--action", "key", "-o", "json")
    assert {e["action"] for e in json.loads(r.stdout)["entries"]} == {"key.create", "key.revoke"}
    # Its public URI is off: only its settings are within reach here, and only for an administrator.
    assert _cli(srv, "registry", "delete", "cli-made", "--yes").returncode == 1
    assert _cli(srv, "registry", "update", "cli-made", "--public-uri", "on").returncode == 0
    assert _cli(srv, "registry", "delete", "cli-made", "--yes").returncode == 0
    r = _cli(srv, "registry", "list", password="wrong")
    assert r.returncode == 1 and "UNAUTHORIZED" in r.stderr
