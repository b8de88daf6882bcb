"""The access gate, hardened (issue 10: items 1-5, 7, 8's admin password, 14), over HTTP against real servers.

One module server listens publicly on 127.0.0.1:P and privately on 127.0.0.2:P (the same port: Linux
routes all of 127/8 to lo), so a request's listener is told by its address, not its port. Registry
`inner` has its public URI off, `fenced` admits only 10.0.0.0/8, `pub` is open; one user holds
project-admin on all three.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ncr_trio.auth.throttle import CLIENT_FACTOR
from ncr_trio.http.forwarded import ForwardedFor
from ncr_trio.http.listeners import Listeners
from tests.support.auth import token
from tests.support.oci import digest, image, push_image
from tests.support.server import Server, free_port

MANAGEMENT = "management:api:*"


@dataclass
class Setup:
    srv: Server
    private: str  # the private listener's URL
    member: tuple[str, str]  # access key of a project-admin of pub, inner and fenced
    layer: str  # a layer digest of inner/app


def _bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def _code(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["code"])


def _user(srv: Server, name: str, role: str, *registries: str) -> tuple[str, str]:
    """A new user holding `role` on `registries`; the ID and secret of an access key of theirs."""
    key = srv.new_user(name, dict.fromkeys(registries, role), key="gate tests")
    return key["id"], key["secret"]


def _from(address: str) -> httpx.Client:
    """A client whose connections come from `address` (a loopback address other than 127.0.0.1)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    srv = Server(data=tmp_path_factory.mktemp("gate") / "data", registries=("pub", "inner", "fenced"))
    srv.extra_args = ["--private-listen", f"127.0.0.2:{srv.port}"]
    srv.start()
    try:
        img = image("gate-inner", layers=2)
        with srv.client() as c:
            push_image(c, "pub/app", image("gate-pub"), "v1")
            for repo in ("inner/app", "fenced/app"):
                push_image(c, repo, img, "v1")
        member = _user(srv, "member", "project-admin", "pub", "inner", "fenced")
        api = srv.api()
        api.call("api.registry.update", {"public_uri": False}, registry="inner")
        api.call("api.registry.update", {"allowed_cidrs": ["10.0.0.0/8"]}, registry="fenced")
        layer = digest(img.layers[0])
        yield Setup(srv, f"http://127.0.0.2:{srv.port}", member, layer)
    finally:
        srv.stop()


# -- 2. private listeners are told apart by address and port -------------------------------------------


def test_private_listener_is_told_apart_by_its_address_not_only_its_port(setup: Setup) -> None:
    srv = setup.srv
    tok = token(srv.url, *srv.admin, "repository:inner/app:pull")
    r = httpx.get(f"{srv.url}/v2/inner/app/manifests/v1", headers=_bearer(tok))
    assert r.status_code == 404 and _code(r) == "NAME_UNKNOWN", r.text
    assert httpx.get(f"{setup.private}/v2/inner/app/manifests/v1", headers=_bearer(tok)).status_code == 200
    assert httpx.get(f"{srv.url}/v2/pub/app/manifests/v1",
                     headers=_bearer(token(srv.url, *srv.admin, "repository:pub/app:pull"))).status_code == 200


@pytest.mark.parametrize(("public", "private", "arrived", "is_private"), [
    (["203.0.113.5:443"], ["10.0.0.5:443"], ("203.0.113.5", 443), False),
    (["203.0.113.5:443"], ["10.0.0.5:443"], ("10.0.0.5", 443), True),
    # A wildcard listener takes what no listener of that address does, on its port only.
    (["203.0.113.5:443"], ["0.0.0.0:443"], ("203.0.113.5", 443), False),
    (["203.0.113.5:443"], ["0.0.0.0:443"], ("10.0.0.5", 443), True),
    (["0.0.0.0:443"], ["10.0.0.5:443"], ("10.0.0.5", 443), True),
    (["0.0.0.0:443"], ["10.0.0.5:443"], ("192.0.2.1", 443), False),
    (["0.0.0.0:443"], ["0.0.0.0:8443"], ("192.0.2.1", 443), False),
    (["0.0.0.0:443"], ["0.0.0.0:8443"], ("192.0.2.1", 8443), True),
    # IPv6, and a dual-stack [::] listener reporting IPv4 clients as mapped addresses.
    (["[2001:db8::1]:443"], ["[2001:db8::2]:443"], ("2001:db8::2", 443), True),
    (["[2001:db8::1]:443"], ["[2001:db8::2]:443"], ("2001:db8::1", 443), False),
    (["0.0.0.0:443"], ["[::]:443"], ("192.0.2.1", 443), False),
    (["0.0.0.0:443"], ["[::]:443"], ("::ffff:192.0.2.1", 443), True),
    (["[::]:443"], ["10.0.0.5:443"], ("::ffff:192.0.2.1", 443), False),
    (["[::]:443"], ["10.0.0.5:443"], ("10.0.0.5", 443), True),
    (["[::]:443"], ["[fe80::1%eth0]:443"], ("fe80::1%eth0", 443), True),
    (["localhost:5000"], ["127.0.0.2:5000"], ("127.0.0.1", 5000), False),
    (["127.0.0.1:5000"], ["unix:/run/ncr.sock"], None, True),
    (["127.0.0.1:5000", "unix:/run/a.sock"], ["unix:/run/b.sock"], None, False),
])
def test_listeners_are_told_apart_by_the_socket_that_accepted_the_connection(
        public: list[str], private: list[str], arrived: tuple[str, int] | None, is_private: bool) -> None:
    assert Listeners(public, private).private(arrived) is is_private


def test_an_ipv4_client_of_a_dual_stack_listener_is_its_ipv4_address(tmp_path: Path) -> None:
    """A `[::]` listener reports IPv4 clients as `::ffff:a.b.c.d`: a registry's allowlist, the metrics
    networks and trusted proxies written in IPv4 hold them all the same, and the audit log and the
    login throttle name them by their IPv4 address."""
    dual = free_port()
    srv = Server(data=tmp_path / "data", registries=("walled",), env={"NCR_METRICS_ALLOWED_NETWORKS": "127.0.0.1/32"})
    srv.extra_args = ["--listen", f"[::]:{dual}"]
    srv.start()
    try:
        with srv.client() as c:
            push_image(c, "walled/app", image("dual-stack"), "v1")
        tok = token(srv.url, *srv.admin, "repository:walled/app:pull")
        get = lambda: httpx.get(f"http://127.0.0.1:{dual}/v2/walled/app/manifests/v1",  # noqa: E731
                                headers={"Authorization": f"Bearer {tok}"}, timeout=30)
        srv.api().doc("api.registry.update", {"allowed_cidrs": ["127.0.0.0/8"]}, registry="walled")
        assert get().status_code == 200
        srv.api().doc("api.registry.update", {"allowed_cidrs": ["10.0.0.0/8"]}, registry="walled")
        assert get().status_code == 404
        metrics = httpx.get(f"http://127.0.0.1:{dual}/metrics", timeout=30)  # anonymous: an allowed network
        assert metrics.status_code == 200, metrics.text
        # The audit log (and the login throttle, keyed the same way) name it as the IPv4 listener would.
        bad = httpx.get(f"http://127.0.0.1:{dual}/auth/token", auth=("dual-stack-guesser", "wrong"), timeout=30)
        assert bad.status_code == 401
        entries = srv.api().doc("api.audit", action="login", limit=50)["entries"]
        failed = [e for e in entries if e["actor"] == "dual-stack-guesser"]
        assert [e["client"] for e in failed] == ["127.0.0.1"], failed
    finally:
        srv.stop()
    forwarded = ForwardedFor(["10.0.0.5"])
    assert forwarded.client("::ffff:10.0.0.5", [(b"x-forwarded-for", b"192.0.2.7")]) == "192.0.2.7"
    assert forwarded.client("::ffff:10.0.0.6", [(b"x-forwarded-for", b"192.0.2.7")]) == "::ffff:10.0.0.6"


# -- 1. reachability on every management route and listing ---------------------------------------------


def test_management_routes_naming_a_registry_follow_its_reachability(setup: Setup) -> None:
    srv, member = setup.srv, setup.member
    registry_routes = [("GET", "/registries/{r}"), ("GET", "/registries/{r}/images"),
                       ("GET", "/registries/{r}/tags"), ("GET", "/registries/{r}/members"),
                       ("GET", "/registries/{r}/images/app/artifacts"), ("GET", "/registries/{r}/webhooks"),
                       ("GET", "/registries/{r}/cleanup/policies"), ("GET", "/registries/{r}/protection/policies"),
                       ("DELETE", "/registries/{r}/images/app/tags/v1"), ("PATCH", "/registries/{r}")]
    for method, path in registry_routes:
        kw: dict[str, Any] = {"json": {"description": "changed"}} if method == "PATCH" else {}
        for registry in ("inner", "fenced"):
            r = srv.call(method, path.format(r=registry), auth=member, **kw)
            assert r.status_code == 404 and _code(r) == "NOT_FOUND", (method, path, registry, r.text)
        r = httpx.request(method, f"{setup.private}/api/v1{path.format(r='fenced')}", auth=member, timeout=30, **kw)
        assert r.status_code == 404, (method, path, r.text)
    # From the private listener, `inner` is there (read-only calls: the tag stays).
    for path in ("/registries/inner", "/registries/inner/images", "/registries/inner/webhooks"):
        assert httpx.get(f"{setup.private}/api/v1{path}", auth=member, timeout=30).status_code == 200, path
    # The console's calls are the same calls, with a management token.
    tok = token(srv.url, *member, MANAGEMENT)
    assert httpx.get(f"{srv.url}/api/v1/registries/inner/images", headers=_bearer(tok)).status_code == 404
    assert httpx.get(f"{setup.private}/api/v1/registries/inner/images", headers=_bearer(tok)).status_code == 200


def test_registry_lists_leave_out_what_the_caller_cannot_reach(setup: Setup) -> None:
    srv, member = setup.srv, setup.member
    names = [r["name"] for r in srv.call("GET", "/registries", auth=member).json()["registries"]]
    assert names == ["pub"]
    r = httpx.get(f"{setup.private}/api/v1/registries", auth=member, timeout=30)
    assert [x["name"] for x in r.json()["registries"]] == ["inner", "pub"]


def test_the_catalog_leaves_out_what_the_caller_cannot_reach(setup: Setup) -> None:
    srv = setup.srv
    for url, expected in ((srv.url, ["pub/app"]), (setup.private, ["inner/app", "pub/app"])):
        tok = token(url, *srv.admin, "registry:catalog:*")
        r = httpx.get(f"{url}/v2/_catalog", headers=_bearer(tok))
        assert r.status_code == 200 and r.json()["repositories"] == expected, r.text
        walked, path = [], "/v2/_catalog?n=1"
        for _ in range(10):  # one page per repository, then no more
            r = httpx.get(url + path, headers=_bearer(tok))
            walked += r.json()["repositories"]
            if "link" not in r.headers:
                break
            path = r.headers["link"].split(";")[0].strip("<>")
        assert walked == expected


def test_a_system_administrator_mends_a_registry_s_settings_from_anywhere(setup: Setup) -> None:
    srv = setup.srv
    assert srv.call("GET", "/registries/fenced").json()["allowed_cidrs"] == ["10.0.0.0/8"]
    names = [r["name"] for r in srv.call("GET", "/registries").json()["registries"]]
    assert {"inner", "fenced"} <= set(names)  # the administrator sees what there is to mend
    r = srv.call("PATCH", "/registries/fenced", json={"allowed_cidrs": ["10.0.0.0/8"], "description": "mended"})
    assert r.status_code == 200 and r.json()["description"] == "mended"
    assert srv.call("GET", "/registries/fenced/members").status_code == 200  # role bindings are settings too
    # Only the settings: not the registry's content.
    for path in ("/registries/fenced/images", "/registries/fenced/tags", "/registries/fenced/webhooks"):
        r = srv.call("GET", path)
        assert r.status_code == 404 and _code(r) == "NOT_FOUND", (path, r.text)
    assert srv.call("DELETE", "/registries/fenced/images/app/tags/v1").status_code == 404
    with srv.client() as c:
        assert c.get("/v2/fenced/app/tags/list").status_code == 404


# -- 3 and 14. cross-repository mounts -----------------------------------------------------------------


def test_a_mount_from_a_registry_the_caller_cannot_reach_is_a_plain_upload(setup: Setup) -> None:
    srv = setup.srv
    scopes = ("repository:pub/mounted:pull,push", "repository:inner/app:pull")
    for url, mounted in ((srv.url, False), (setup.private, True)):
        tok = token(url, *srv.admin, *scopes)
        r = httpx.post(f"{url}/v2/pub/mounted/blobs/uploads/", params={"mount": setup.layer, "from": "inner/app"},
                       headers=_bearer(tok))
        assert r.status_code == (201 if mounted else 202), (url, r.text)
        head = httpx.head(f"{url}/v2/pub/mounted/blobs/{setup.layer}", headers=_bearer(tok))
        assert head.status_code == (200 if mounted else 404), url
        if not mounted:
            httpx.delete(url + r.headers["location"], headers=_bearer(tok))


def test_a_mount_without_a_token_is_challenged_with_both_scopes(setup: Setup) -> None:
    r = httpx.post(f"{setup.srv.url}/v2/pub/m2/blobs/uploads/", params={"mount": setup.layer, "from": "pub/app"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].endswith(',scope="repository:pub/m2:pull,push repository:pub/app:pull"')


# -- 4. tokens follow roles; the management API takes management credentials only ---------------------


def test_a_token_loses_what_its_holder_s_role_no_longer_grants(setup: Setup) -> None:
    srv = setup.srv
    api = srv.api()
    key = _user(srv, "fickle", "project-admin", "pub")
    tok = token(srv.url, *key, "repository:pub/app:pull,push")
    get = lambda: httpx.get(f"{srv.url}/v2/pub/app/manifests/v1", headers=_bearer(tok))  # noqa: E731
    assert get().status_code == 200
    api.call("api.role.set", {"role": "service-viewer"}, user="fickle", on="pub")  # still reads, no longer pushes
    assert get().status_code == 200
    r = httpx.post(f"{srv.url}/v2/pub/app/blobs/uploads/", headers=_bearer(tok))
    assert r.status_code == 403 and _code(r) == "DENIED", r.text
    api.call("api.role.delete", user="fickle", on="pub")
    r = get()
    assert r.status_code == 403 and _code(r) == "DENIED", r.text
    api.call("api.role.set", {"role": "service-viewer"}, user="fickle", on="pub")
    assert get().status_code == 200  # what the token grants, as far as the role allows now
    mtok = token(srv.url, *key, MANAGEMENT)
    assert httpx.get(f"{srv.url}/api/v1/whoami", headers=_bearer(mtok)).status_code == 200
    api.call("api.user.delete", user="fickle")
    assert get().status_code == 401  # at once, on this node
    assert httpx.get(f"{srv.url}/api/v1/whoami", headers=_bearer(mtok)).status_code == 401


def test_a_role_revoked_on_another_node_stops_a_token_within_the_cache_interval(setup: Setup) -> None:
    srv = setup.srv
    other = Server(data=srv.data, registries=(), env={"NCR_ACCESS_CACHE_SECONDS": "1"}).start()
    try:
        tok = token(other.url, *_user(srv, "remote", "service-viewer", "pub"), "repository:pub/app:pull")
        get = lambda: httpx.get(f"{other.url}/v2/pub/app/manifests/v1", headers=_bearer(tok))  # noqa: E731
        assert get().status_code == 200
        srv.api().call("api.role.delete", user="remote", on="pub")  # on the module's node
        deadline = time.monotonic() + 20  # a bound, not a timing: the interval is 1 s
        while (status := get().status_code) == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 403
    finally:
        other.stop()


def test_the_management_api_takes_only_management_credentials(setup: Setup) -> None:
    srv, member = setup.srv, setup.member
    whoami = f"{srv.url}/api/v1/whoami"
    for scopes in (("repository:pub/app:pull",), ()):
        r = httpx.get(whoami, headers=_bearer(token(srv.url, *member, *scopes)))
        assert r.status_code == 401 and _code(r) == "UNAUTHORIZED", (scopes, r.text)
    r = httpx.get(f"{srv.url}/auth/token", params={"service": "ncr-trio", "scope": MANAGEMENT}, auth=member)
    assert r.status_code == 200 and r.json()["scope"] == MANAGEMENT
    mtok = r.json()["token"]
    r = httpx.get(whoami, headers=_bearer(mtok))
    assert r.status_code == 200 and r.json()["user"] == "member"
    assert httpx.get(f"{srv.url}/v2/", headers=_bearer(mtok)).status_code == 401  # not a registry token
    assert httpx.get(f"{srv.url}/v2/pub/app/tags/list", headers=_bearer(mtok)).status_code == 401
    assert httpx.get(whoami, auth=member).status_code == 200  # Basic, as the CLI sends it
    # Nobody gets one anonymously, and it carries nothing else.
    assert httpx.get(f"{srv.url}/auth/token", params={"scope": MANAGEMENT}).status_code == 401
    r = httpx.get(f"{srv.url}/auth/token", params=[("scope", MANAGEMENT), ("scope", "repository:pub/app:pull")],
                  auth=member)
    assert r.status_code == 400 and _code(r) == "INVALID_REQUEST"


# -- 5. CSRF ---------------------------------------------------------------------------------------------


def test_api_bodies_must_be_json(setup: Setup) -> None:
    srv = setup.srv
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "multipart/form-data; boundary=x"}, {}):
        r = srv.call("POST", "/users", content=b'{"name": "csrf-victim", "system_admin": true}', headers=headers)
        assert r.status_code == 415 and _code(r) == "UNSUPPORTED", (headers, r.text)
    assert "csrf-victim" not in [u.name for u in srv.api().call("api.users").users]
    r = srv.call("POST", "/users", content=b'{"name": "json-user"}',
                 headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 201, r.text


def test_cross_origin_api_requests_are_refused(setup: Setup) -> None:
    srv = setup.srv
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": f"http://127.0.0.1:{srv.port + 1}"}):
        r = srv.call("POST", "/users", json={"name": "cross-origin"}, headers=headers)
        assert r.status_code == 403 and _code(r) == "DENIED", (headers, r.text)
        assert srv.call("GET", "/registries", headers=headers).status_code == 403
    assert "cross-origin" not in [u.name for u in srv.api().call("api.users").users]
    r = srv.call("POST", "/users", json={"name": "same-origin"},
                 headers={"Origin": srv.url, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201, r.text


def test_no_basic_invitation_to_browsers(setup: Setup) -> None:
    r = httpx.get(f"{setup.srv.url}/api/v1/registries")
    assert r.status_code == 401 and _code(r) == "UNAUTHORIZED"
    challenge = r.headers.get("www-authenticate", "")
    assert "basic" not in challenge.lower()
    assert challenge.startswith("Bearer ") and f'scope="{MANAGEMENT}"' in challenge


# -- 7. a lockout is per user and client address ------------------------------------------------------


def test_failed_logins_never_lock_an_account_for_everyone(tmp_path: Path) -> None:
    s = Server(data=tmp_path / "data", registries=(),
               env={"NCR_LOGIN_SLOW_AFTER": "100", "NCR_LOGIN_LOCK_AFTER": "3"})
    s.start()
    url = f"{s.url}/auth/token"
    try:
        with _from("127.0.0.3") as attacker, _from("127.0.0.4") as admin, _from("127.0.0.5") as sprayer:
            for _ in range(3):
                assert attacker.get(url, auth=("admin", "wrong")).status_code == 401
            r = attacker.get(url, auth=s.admin)
            assert r.status_code == 429 and _code(r) == "TOOMANYREQUESTS"  # that address, that account
            assert admin.get(url, auth=s.admin).status_code == 200  # the right password from elsewhere
            assert s.call("GET", "/whoami").status_code == 200  # Basic on the API too
            # One address guessing many accounts is stopped as a whole.
            for n in range(3 * CLIENT_FACTOR):
                assert sprayer.get(url, auth=(f"user{n}", "wrong")).status_code == 401
            assert sprayer.get(url, auth=s.admin).status_code == 429
            assert admin.get(url, auth=s.admin).status_code == 200
    finally:
        s.stop()


# -- 8. the initial admin password goes to the file and a terminal, never a log -------------------------


def test_the_initial_password_is_not_written_to_a_log(tmp_path: Path) -> None:
    s = Server(data=tmp_path / "data", registries=(), admin_password="")
    s.start()
    try:
        password = (tmp_path / "data" / "initial-admin-password").read_text().strip()
        assert httpx.get(f"{s.url}/auth/token", auth=("admin", password)).status_code == 200
        assert password not in s.log()
        assert "initial-admin-password" in s.log()  # where to find it
    finally:
        s.stop()


def test_the_initial_password_is_shown_on_a_terminal(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NCR_ADMIN_PASSWORD"}
    with open(tmp_path / "stderr.log", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ncr_trio", "serve", "--listen", f"127.0.0.1:{port}",
                                 "--data", str(data)], stdin=subprocess.DEVNULL, stdout=slave, stderr=err, env=env)
    os.close(slave)
    seen = b""
    try:
        path = data / "initial-admin-password"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (path.exists() and path.read_bytes().strip() in seen):
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        password = path.read_text().strip()
        assert password.encode() in seen
        assert password not in (tmp_path / "stderr.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.close(master)

