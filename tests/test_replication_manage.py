"""Managing replication (docs/replication.md) between two real ncr-trio servers: A replicates, B is the
remote ("osaka"), reached with the access key of a user of B. A runs on SQLite or PostgreSQL.

Over HTTP: a remote's health check ("invalid" with the reason for a wrong secret or a dead port,
"valid" once fixed and refreshed, its policies following); every invalid policy a 400 in the registry's
error body, an unknown remote a 404, a duplicate name and a remote in use a 409; the guide's role table
(viewers read policies and history, members and service admins change and run them, remotes are for
system administrators); the access secret never answered and sealed at rest; a manual run that copies
an image and a second one that skips it; a run stopped against a target that never answers; the
replication webhooks. Through the CLI (`ncr-trio remote ...`, `ncr-trio replication ...`): the same
management, `run --wait` following a run to its end (exit 1 when it fails) and `stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import terminal
from tests.support.api import ok
from tests.support.logins import issue_tls
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, image, push_image
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import ADMIN_PASSWORD, ADMIN_USER, Server, free_port
from tests.support.upstream import Fault, Upstream

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
REGISTRY = "team"
FINISHED = ("Succeeded", "Failed", "Stopped", "Skipped")
ROLES = ("project-admin", "project-member", "service-admin", "service-viewer", "image-uploader")


@dataclass
class Live:
    a: Server  # replicates
    b: Server  # the remote
    key: dict[str, Any]  # an access key of B's user "replicator" (id, secret)
    pg: PostgresServer | None
    database_url: str
    root: Path


@pytest.fixture(scope="module", params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("replication-manage")
    with contextlib.ExitStack() as stack:
        b = Server(data=root / "b", registries=(REGISTRY, "elsewhere")).start()
        stack.callback(b.stop)
        key = b.new_user("replicator", {"*": "project-member"})
        env = {"NCR_REPLICATION_ALLOWED_NETWORKS": "127.0.0.0/8", **ALLOW_RECEIVERS}
        pg = None
        if request.param == "postgresql":
            pg = stack.enter_context(postgres_server())
            env["NCR_DATABASE_URL"] = stack.enter_context(pg.database("replication"))
        a = Server(data=root / "a", registries=(REGISTRY, "other"), env=env).start()
        stack.callback(a.stop)
        yield Live(a, b, key, pg, env.get("NCR_DATABASE_URL", ""), root)


_names = iter(range(10**6))


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{os.urandom(2).hex()}"


def refused(r: httpx.Response, status: int, code: str, *words: str) -> dict[str, Any]:
    """An error answer in the registry's error body: `{"errors": [{"code", "message"}]}`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    errors = r.json()["errors"]
    assert len(errors) == 1, r.text
    assert errors[0]["code"] == code, r.text
    for word in words:
        assert word in errors[0]["message"], (word, errors[0])
    return dict(errors[0])


def remote_body(live: Live, name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "url": live.b.url, "access_id": live.key["id"], "access_secret": live.key["secret"], **more}


def make_remote(live: Live, name: str | None = None, **more: Any) -> str:
    name = name or unique("osaka")
    r = ok(live.a.call("POST", "/remotes", json=remote_body(live, name, **more)), 201)
    assert r["status"] == "valid", r
    return name


def make_policy(live: Live, remote: str, auth: tuple[str, str] | None = None, **more: Any) -> dict[str, Any]:
    body = {"name": unique("to-osaka"), "direction": "push", "remote": remote, **more}
    return dict(ok(live.a.call("POST", f"/registries/{REGISTRY}/replications", json=body, auth=auth), 201))


def policy_path(policy: dict[str, Any], rest: str = "") -> str:
    return f"/registries/{policy['registry']}/replications/{policy['id']}{rest}"


def wait_ended(srv: Server, policy: dict[str, Any], execution: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        e = ok(srv.call("GET", policy_path(policy, f"/executions/{execution}")))
        if e["status"] in FINISHED:
            return dict(e)
        assert time.monotonic() < deadline, f"execution {execution} did not end: {e}"
        time.sleep(0.1)


def run_to_end(srv: Server, policy: dict[str, Any]) -> dict[str, Any]:
    started = ok(srv.call("POST", policy_path(policy, "/run")), 202)
    assert started["status"] in ("Pending", "Running"), started
    return wait_ended(srv, policy, started["id"])


def tasks_of(srv: Server, policy: dict[str, Any], execution: int) -> list[dict[str, Any]]:
    return list(ok(srv.call("GET", policy_path(policy, f"/executions/{execution}/tasks")))["tasks"])


def digest_at(srv: Server, repo: str, ref: str) -> str | None:
    with srv.client() as c:
        r = c.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    return r.headers["docker-content-digest"] if r.status_code == 200 else None


def push_to_a(live: Live, repo: str, tag: str = "v1") -> str:
    with live.a.client() as c:
        return push_image(c, repo, image(unique(repo)), tag)


# -- the remote's health ------------------------------------------------------------------------------------------


def test_a_wrong_secret_or_a_dead_port_is_invalid_until_fixed_and_policies_follow(live: Live) -> None:
    a = live.a
    wrong = ok(a.call("POST", "/remotes", json=remote_body(live, unique("wrong"), access_secret="not-the-secret")), 201)
    assert wrong["status"] == "invalid" and "401" in wrong["reason"] and wrong["checked_at"] is not None, wrong
    dead_port = free_port()
    dead = ok(a.call("POST", "/remotes", json=remote_body(live, unique("dead"), url=f"http://127.0.0.1:{dead_port}")),
              201)
    assert dead["status"] == "invalid" and f"127.0.0.1:{dead_port}" in dead["reason"], dead
    # Their policies take their status and reason.
    p_wrong, p_dead = make_policy(live, wrong["name"]), make_policy(live, dead["name"])
    assert (p_wrong["status"], p_wrong["reason"]) == ("invalid", wrong["reason"])
    assert (p_dead["status"], p_dead["reason"]) == ("invalid", dead["reason"])

    # Fixed (the right secret; a live URL): checked again at once, valid, and so are their policies.
    fixed = ok(a.call("PATCH", f"/remotes/{wrong['name']}", json={"access_secret": live.key["secret"]}))
    assert (fixed["status"], fixed["reason"]) == ("valid", ""), fixed
    fixed = ok(a.call("PATCH", f"/remotes/{dead['name']}", json={"url": live.b.url}))
    assert (fixed["status"], fixed["reason"]) == ("valid", ""), fixed
    for p in (p_wrong, p_dead):
        now = ok(a.call("GET", policy_path(p)))
        assert (now["status"], now["reason"]) == ("valid", ""), now


def test_refresh_checks_again_and_the_policies_follow(live: Live) -> None:
    """A remote behind a proxy that goes away and comes back: only a check (`refresh`) changes its status."""
    a = live.a
    with Upstream(target=live.b.url, log_path=live.root / "refresh-proxy.log").start() as up:
        up.unreachable()
        name = unique("flaky")
        created = ok(a.call("POST", "/remotes", json=remote_body(live, name, url=up.url)), 201)
        assert created["status"] == "invalid" and up.host in created["reason"], created
        p = make_policy(live, name)
        assert p["status"] == "invalid"
        up.reachable()
        assert ok(a.call("GET", f"/remotes/{name}"))["status"] == "invalid"  # not checked since
        refreshed = ok(a.call("POST", f"/remotes/{name}/refresh"))
        assert (refreshed["status"], refreshed["reason"]) == ("valid", "")
        assert refreshed["checked_at"] > created["checked_at"]
        assert ok(a.call("GET", policy_path(p)))["status"] == "valid"
        assert [r["status"] for r in ok(a.call("GET", "/remotes"))["remotes"] if r["name"] == name] == ["valid"]
        up.unreachable()
        broken = ok(a.call("POST", f"/remotes/{name}/refresh"))
        assert broken["status"] == "invalid" and broken["reason"]
        listed = next(q for q in ok(a.call("GET", f"/registries/{REGISTRY}/replications"))["policies"]
                      if q["id"] == p["id"])
        assert (listed["status"], listed["reason"]) == ("invalid", broken["reason"])
    refused(a.call("POST", f"/remotes/{unique('nobody')}/refresh"), 404, "NOT_FOUND", "no remote named")


# -- validation -----------------------------------------------------------------------------------------------------


def test_invalid_policies_are_a_400_in_the_oci_error_format_and_store_nothing(live: Live) -> None:
    a = live.a
    remote = make_remote(live)
    base = {"name": unique("checked"), "direction": "push", "remote": remote}
    before = ok(a.call("GET", f"/registries/{REGISTRY}/replications"))
    bad: list[tuple[dict[str, Any], str]] = [
        # An unbalanced `{` is an ordinary character for the one matcher (ncr_trio/patterns.py, as wcmatch):
        # the pattern it refuses is a character class.
        ({"name_filter": "app/[[:alpha:]]"}, "not a valid pattern"),
        ({"tag_filter": "v[[:digit:]]"}, "not a valid pattern"),
        ({"tag_filter": "v" * 257}, "tag_filter"),
        ({"direction": "pull", "trigger": "event"}, "push policies only"),
        ({"trigger": "scheduled"}, "needs a schedule"),
        ({"trigger": "scheduled", "schedule": "61 * * * *"}, "schedule"),
        ({"trigger": "manual", "schedule": "Daily"}, "for trigger \"scheduled\" only"),
        ({"direction": "sideways"}, "direction"),
        ({"trigger": "sometimes"}, "trigger"),
        ({"tag_filter_mode": "maybe"}, "tag_filter_mode"),
        ({"bandwidth_kbps": -1}, "bandwidth_kbps"),
        ({"bandwidth_kbps": 10**7 + 1}, "bandwidth_kbps"),
        ({"bandwidth_kbps": True}, "bandwidth_kbps"),
        ({"colour": "blue"}, "colour"),
        ({"name": "Upper Case"}, "name"),
        ({"remote_namespace": "No/Such"}, "remote"),
        ({"override": "yes"}, "override"),
    ]
    for change, words in bad:
        refused(a.call("POST", f"/registries/{REGISTRY}/replications", json={**base, **change}), 400, "INVALID_REQUEST",
                words)
    for missing in ("name", "direction", "remote"):
        refused(a.call("POST", f"/registries/{REGISTRY}/replications",
                       json={k: v for k, v in base.items() if k != missing}), 400, "INVALID_REQUEST", missing)
    refused(a.call("POST", f"/registries/{REGISTRY}/replications", content=b"{not json",
                   headers={"Content-Type": "application/json"}), 400, "INVALID_REQUEST")
    assert ok(a.call("GET", f"/registries/{REGISTRY}/replications")) == before

    # The same rules on a change, which leaves the policy as it was.
    p = make_policy(live, remote)
    for change, words in [({"trigger": "event", "direction": "pull"}, "push policies only"),
                          ({"trigger": "scheduled"}, "needs a schedule"),
                          ({"name_filter": "[[:alpha:]]"}, "not a valid pattern"), ({"colour": "red"}, "colour"),
                          ({"bandwidth_kbps": 10**8}, "bandwidth_kbps")]:
        refused(a.call("PATCH", policy_path(p), json=change), 400, "INVALID_REQUEST", words)
    assert ok(a.call("GET", policy_path(p))) == p

    # 404: an unknown remote, registry or policy; 409: a duplicate name, a remote in use.
    refused(a.call("POST", f"/registries/{REGISTRY}/replications", json={**base, "remote": unique("nowhere")}), 404,
            "NOT_FOUND", "no remote named")
    refused(a.call("PATCH", policy_path(p), json={"remote": unique("nowhere")}), 404, "NOT_FOUND", "no remote named")
    refused(a.call("POST", "/registries/no-such-registry/replications", json=base), 404, "NOT_FOUND")
    refused(a.call("GET", f"/registries/{REGISTRY}/replications/999999"), 404, "NOT_FOUND")
    refused(a.call("GET", f"/remotes/{unique('nowhere')}"), 404, "NOT_FOUND")
    refused(a.call("POST", f"/registries/{REGISTRY}/replications", json={**base, "name": p["name"]}), 409, "CONFLICT",
            p["name"])
    other = make_policy(live, remote)
    refused(a.call("PATCH", policy_path(other), json={"name": p["name"]}), 409, "CONFLICT", p["name"])
    refused(a.call("POST", "/remotes", json=remote_body(live, remote)), 409, "CONFLICT", remote)
    in_use = refused(a.call("DELETE", f"/remotes/{remote}"), 409, "CONFLICT", f"{REGISTRY}/{p['name']}",
                     f"{REGISTRY}/{other['name']}")
    assert live.key["secret"] not in json.dumps(in_use)
    for q in (p, other):
        assert a.call("DELETE", policy_path(q)).status_code == 204
    assert a.call("DELETE", f"/remotes/{remote}").status_code == 204
    refused(a.call("GET", f"/remotes/{remote}"), 404, "NOT_FOUND")


# -- the guide's role table ------------------------------------------------------------------------------------------


def test_viewers_read_members_and_service_admins_change_and_run_remotes_are_for_admins(live: Live) -> None:
    a = live.a
    remote = make_remote(live)
    p = make_policy(live, remote, name_filter=f"{unique('roles')}/**")  # selects nothing: runs end at once
    e = run_to_end(a, p)
    assert e["status"] == "Succeeded"
    users = {role: a.new_user(unique(role), {REGISTRY: role}) for role in ROLES}
    users["outsider"] = a.new_user(unique("outsider"), {"other": "project-admin"})
    auth = {role: (k["id"], k["secret"]) for role, k in users.items()}

    reads = [("GET", f"/registries/{REGISTRY}/replications"), ("GET", policy_path(p)),
             ("GET", policy_path(p, "/executions")), ("GET", policy_path(p, f"/executions/{e['id']}")),
             ("GET", policy_path(p, f"/executions/{e['id']}/tasks"))]
    for role in ("service-viewer", "image-uploader", "project-member", "service-admin", "project-admin"):
        for method, path in reads:
            ok(a.call(method, path, auth=auth[role]))
    changes = [("POST", f"/registries/{REGISTRY}/replications", {"name": unique("nope"), "direction": "push",
                                                                  "remote": remote}),
               ("PATCH", policy_path(p), {"description": "changed"}), ("POST", policy_path(p, "/run"), None),
               ("POST", policy_path(p, f"/executions/{e['id']}/stop"), None), ("DELETE", policy_path(p), None)]
    for role in ("service-viewer", "image-uploader", "outsider"):
        for method, path, body in changes:
            refused(a.call(method, path, auth=auth[role], json=body), 403, "DENIED")
    for method, path in reads:
        refused(a.call(method, path, auth=auth["outsider"]), 403, "DENIED")
    assert ok(a.call("GET", policy_path(p))) | {"next_run_at": None} == p | {"next_run_at": None}  # unchanged

    for role in ("project-member", "service-admin"):
        mine = make_policy(live, remote, auth=auth[role], name_filter=f"{unique(role)}/**")
        changed = ok(a.call("PATCH", policy_path(mine), json={"description": f"by {role}"}, auth=auth[role]))
        assert changed["description"] == f"by {role}"
        run = ok(a.call("POST", policy_path(mine, "/run"), auth=auth[role]), 202)
        assert wait_ended(a, mine, run["id"])["status"] == "Succeeded"
        ok(a.call("POST", policy_path(mine, f"/executions/{run['id']}/stop"), auth=auth[role]))  # ended: as it is
        assert a.call("DELETE", policy_path(mine), auth=auth[role]).status_code == 204

    # Remotes: system administrators only, whatever the role (on every registry too).
    every = a.new_user(unique("manager"), {"*": "project-admin"})
    remote_ops = [("GET", "/remotes", None), ("POST", "/remotes", remote_body(live, unique("nope"))),
                  ("GET", f"/remotes/{remote}", None), ("PATCH", f"/remotes/{remote}", {"description": "x"}),
                  ("POST", f"/remotes/{remote}/refresh", None), ("DELETE", f"/remotes/{remote}", None)]
    for who in [*auth.values(), (every["id"], every["secret"])]:
        for method, path, body in remote_ops:
            refused(a.call(method, path, auth=who, json=body), 403, "DENIED", "system administrator")
    for method, path, body in remote_ops:
        refused(httpx.request(method, f"{a.url}/api/v1{path}", json=body, timeout=30), 401, "UNAUTHORIZED")
    assert ok(a.call("GET", f"/remotes/{remote}"))["description"] == ""


# -- the access secret ------------------------------------------------------------------------------------------------


def stored_secrets(live: Live, name: str) -> list[str]:
    """The access secret as A's database holds it, read around the server."""
    query = "SELECT access_secret FROM replication_remotes WHERE name = "
    if live.pg is None:
        path = live.a.data / "meta.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return [str(r[0]) for r in db.execute(query + "?", (name,))]
    import psycopg

    with psycopg.connect(live.database_url) as conn:
        return [str(r[0]) for r in conn.execute(query + "%s", (name,))]


def test_the_access_secret_is_never_answered_and_sealed_at_rest(live: Live) -> None:
    a, secret = live.a, live.key["secret"]
    name = unique("sealed")
    answers = [a.call("POST", "/remotes", json=remote_body(live, name)), a.call("GET", "/remotes"),
               a.call("GET", f"/remotes/{name}"), a.call("PATCH", f"/remotes/{name}", json={"description": "d"}),
               a.call("POST", f"/remotes/{name}/refresh")]
    for r in answers:
        assert r.status_code < 300, r.text
        assert secret not in r.text and "access_secret" not in r.text, r.text
    assert answers[2].json()["has_secret"] is True and answers[2].json()["status"] == "valid"
    (sealed,) = stored_secrets(live, name)
    assert sealed.startswith("ncr1:") and secret not in sealed
    key = a.data / "keys" / "secrets.key"
    for path in (p for p in a.data.rglob("*") if p.is_file() and p != key):
        assert secret.encode() not in path.read_bytes(), path
    entries = ok(a.call("GET", "/audit", params={"action": "remote"}))["entries"]
    assert {"remote.create", "remote.update", "remote.refresh"} <= {e["action"] for e in entries}
    assert secret not in json.dumps(entries)
    # Removing it: anonymous now (B refuses anonymous pushes, but its /v2/ check passes the token flow or not).
    cleared = ok(a.call("PATCH", f"/remotes/{name}", json={"access_secret": None, "access_id": ""}))
    assert cleared["has_secret"] is False and stored_secrets(live, name) == [""]


# -- runs -------------------------------------------------------------------------------------------------------------


def test_a_manual_run_copies_an_image_and_a_second_run_skips_it(live: Live) -> None:
    a, b = live.a, live.b
    path = unique("manual")
    pushed = push_to_a(live, f"{REGISTRY}/{path}/app")
    p = make_policy(live, make_remote(live), name_filter=f"{path}/**")
    first = run_to_end(a, p)
    assert (first["status"], first["trigger"], first["copied"], first["skipped"], first["failed"]) == \
        ("Succeeded", "manual", 1, 0, 0), first
    assert first["bytes"] > 0 and first["ended_at"] is not None
    assert digest_at(b, f"{REGISTRY}/{path}/app", "v1") == pushed
    (task,) = tasks_of(a, p, first["id"])
    assert (task["source"], task["target"], task["digest"], task["status"]) == \
        (f"{REGISTRY}/{path}/app:v1", f"{REGISTRY}/{path}/app:v1", pushed, "Succeeded"), task

    second = run_to_end(a, p)
    assert (second["status"], second["copied"], second["skipped"], second["bytes"]) == ("Succeeded", 0, 1, 0), second
    (again,) = tasks_of(a, p, second["id"])
    assert (again["status"], again["digest"], again["error"]) == ("Skipped", pushed, "already present"), again
    history = ok(a.call("GET", policy_path(p, "/executions")))
    assert history["total"] == 2 and [e["id"] for e in history["executions"]] == [second["id"], first["id"]]
    page = ok(a.call("GET", policy_path(p, "/executions"), params={"per_page": 1, "page": 2}))
    assert [e["id"] for e in page["executions"]] == [first["id"]]

    # A disabled policy does not run; a remote namespace other than the registry's name is honoured.
    ok(a.call("PATCH", policy_path(p), json={"enabled": False}))
    refused(a.call("POST", policy_path(p, "/run")), 409, "CONFLICT", "disabled")
    elsewhere = make_policy(live, p["remote"], name_filter=f"{path}/**", remote_namespace="elsewhere")
    assert run_to_end(a, elsewhere)["copied"] == 1
    assert digest_at(b, f"elsewhere/{path}/app", "v1") == pushed


def test_stop_ends_a_run_against_a_target_that_does_not_answer(live: Live) -> None:
    a, b = live.a, live.b
    path = unique("stop")
    push_to_a(live, f"{REGISTRY}/{path}/app")
    with Upstream(target=b.url, log_path=live.root / "stop-proxy.log").start() as up:
        remote = make_remote(live, url=up.url)
        p = make_policy(live, remote, name_filter=f"{path}/**")
        up.faults(Fault("other", method="POST", path="/blobs/uploads/", hold=True))  # uploads never answered
        started = ok(a.call("POST", policy_path(p, "/run")), 202)
        deadline = time.monotonic() + 60
        while not any("/blobs/uploads/" in s.path for s in up.traffic().requests):
            assert time.monotonic() < deadline, "the run never reached the target's uploads"
            time.sleep(0.1)
        assert ok(a.call("GET", policy_path(p, f"/executions/{started['id']}")))["status"] == "Running"
        # A second trigger while it runs is recorded as Skipped, with the reason.
        skipped = ok(a.call("POST", policy_path(p, "/run")), 202)
        assert skipped["status"] == "Skipped" and skipped["detail"], skipped
        stopping = ok(a.call("POST", policy_path(p, f"/executions/{started['id']}/stop")))
        assert stopping["stop_requested"] is True
        ended = wait_ended(a, p, started["id"], timeout=30)
        up.faults()
    assert ended["status"] == "Stopped", ended
    assert [t["status"] for t in tasks_of(a, p, started["id"])] == ["Stopped"]
    assert digest_at(b, f"{REGISTRY}/{path}/app", "v1") is None
    statuses = [e["status"] for e in ok(a.call("GET", policy_path(p, "/executions")))["executions"]]
    assert sorted(statuses) == ["Skipped", "Stopped"]


def test_replication_events_reach_a_webhook(live: Live) -> None:
    a = live.a
    path = unique("hooked")
    push_to_a(live, f"{REGISTRY}/{path}/app")
    p = make_policy(live, make_remote(live), name_filter=f"{path}/**")
    dead = make_policy(live, _dead_remote(live), name_filter=f"{path}/**")
    with Receiver() as receiver:
        hook = ok(a.call("POST", f"/registries/{REGISTRY}/webhooks", json={
            "name": unique("replication"), "kind": "http", "url": receiver.url,
            "event_types": ["replication.started", "replication.finished", "replication.failed"]}), 201)
        try:
            done = run_to_end(a, p)
            failed = run_to_end(a, dead)
            assert (done["status"], failed["status"]) == ("Succeeded", "Failed")

            def seen(requests: list[Any]) -> set[tuple[str, str, int]]:
                out = set()
                for r in requests:
                    body = r.json()
                    if body["type"].startswith("replication."):
                        out.add((body["type"], body["replication"]["policy"], body["replication"]["execution"]))
                return out

            want = {("replication.started", p["name"], done["id"]), ("replication.finished", p["name"], done["id"]),
                    ("replication.started", dead["name"], failed["id"]),
                    ("replication.failed", dead["name"], failed["id"])}
            requests = receiver.wait_for(lambda rs: want <= seen(rs), timeout=60)
            assert seen(requests) == want
            finished = next(r.json() for r in requests if r.json()["type"] == "replication.finished")
            assert finished["registry"] == REGISTRY and finished["repository"] is None
        finally:
            a.call("DELETE", f"/registries/{REGISTRY}/webhooks/{hook['id']}")


def _dead_remote(live: Live) -> str:
    name = unique("gone")
    r = ok(live.a.call("POST", "/remotes", json=remote_body(live, name, url=f"http://127.0.0.1:{free_port()}")), 201)
    assert r["status"] == "invalid"
    return name


# -- the CLI ----------------------------------------------------------------------------------------------------------


@dataclass
class CLI:
    """`python -m ncr_trio ...` with its own HOME, logged in through the environment (stdin stays free for
    `--secret-stdin`); no terminal anywhere."""

    home: Path
    env: dict[str, str]

    def __call__(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("NCR_")}
        base.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "xdg"), **self.env, **env)
        return subprocess.run([sys.executable, "-m", "ncr_trio", *args], input=stdin, capture_output=True, text=True,
                              env=base, timeout=180)

    def ok(self, *args: str, **kw: Any) -> str:
        r = self(*args, **kw)
        assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "-o", "json", **kw))


def cli_for(srv: Server, home: Path, user: str = ADMIN_USER, secret: str = ADMIN_PASSWORD) -> CLI:
    home.mkdir(parents=True, exist_ok=True)
    return CLI(home, {"NCR_URL": srv.url, "NCR_USERNAME": user, "NCR_PASSWORD": secret})


def fields(out: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def test_the_cli_manages_remotes_and_policies(live: Live, tmp_path: Path) -> None:
    a, secret = live.a, live.key["secret"]
    cli = cli_for(a, tmp_path / "home")
    name = unique("cli-osaka")
    # The secret from stdin, never printed, never on the command line.
    r = cli("remote", "create", name, live.b.url, "--access-id", live.key["id"], "--secret-stdin",
            "--description", "B", stdin=secret + "\n")
    assert r.returncode == 0, r.stderr
    assert secret not in r.stdout + r.stderr
    shown = fields(r.stdout)
    assert (shown["status"], shown["access secret"], shown["type"], shown["url"]) == ("valid", "set", "ncr", live.b.url)
    assert cli.json("remote", "show", name) == ok(a.call("GET", f"/remotes/{name}"))
    assert cli.json("remote", "list") == ok(a.call("GET", "/remotes"))
    assert name in cli.ok("remote", "list")
    # Without a terminal the secret is never asked for: an access ID alone is a usage error.
    r = cli("remote", "create", unique("cli-noask"), live.b.url, "--access-id", live.key["id"])
    assert r.returncode == 2 and "--secret-stdin" in r.stderr, r.stderr
    r = cli("remote", "create", unique("cli-x"), live.b.url, "--secret-stdin", "--password-stdin", stdin="s\n")
    assert r.returncode == 2
    # A wrong secret: created invalid (said on stderr), refresh exits 1; fixed from the environment: valid.
    bad = unique("cli-bad")
    r = cli("remote", "create", bad, live.b.url, "--access-id", live.key["id"], "--secret-stdin", stdin="wrong\n")
    assert r.returncode == 0 and fields(r.stdout)["status"].startswith("invalid: ") and "refresh" in r.stderr
    r = cli("remote", "refresh", bad)
    assert r.returncode == 1 and r.stdout.startswith(f"Remote {bad}: invalid: ")
    doc = cli.json("remote", "update", bad, "--secret-env", "THE_SECRET", THE_SECRET=secret)
    assert doc["status"] == "valid" and "access_secret" not in doc
    assert cli.ok("remote", "refresh", bad).strip() == f"Remote {bad}: valid"
    r = cli("remote", "update", bad)
    assert r.returncode == 2 and "nothing to change" in r.stderr
    moved = cli.json("remote", "update", bad, "--remote-url", f"http://127.0.0.1:{free_port()}")
    assert moved["status"] == "invalid" and moved["url"] != live.b.url and moved["has_secret"] is True
    assert cli.json("remote", "update", bad, "--remote-url", live.b.url)["status"] == "valid"

    # Policies: created with the guide's options, referred to by name or ID.
    doc = cli.json("replication", "create", REGISTRY, "--name", "cli-policy", "--direction", "push", "--remote", name,
                   "--remote-namespace", "elsewhere", "--name-filter", "cli/**", "--tag-filter", "v?", "--exclude",
                   "--schedule", "30 2 * * *", "--override", "--bandwidth-kbps", "2048")
    assert doc == ok(a.call("GET", policy_path(doc)))
    assert (doc["direction"], doc["remote"], doc["remote_namespace"], doc["name_filter"], doc["tag_filter"],
            doc["tag_filter_mode"], doc["trigger"], doc["schedule"], doc["override"], doc["bandwidth_kbps"],
            doc["enabled"], doc["status"]) == \
        ("push", name, "elsewhere", "cli/**", "v?", "exclude", "scheduled", "30 2 * * *", True, 2048, True, "valid")
    assert doc["next_run_at"] is not None
    shown = fields(cli.ok("replication", "show", REGISTRY, "cli-policy"))
    assert shown["copies"] == f"{REGISTRY}/cli/** -> {name}:elsewhere/cli/**" and shown["tag filter"] == "all but v?"
    assert cli.json("replication", "show", REGISTRY, str(doc["id"])) == doc
    assert cli.json("replication", "list", REGISTRY) == ok(a.call("GET", f"/registries/{REGISTRY}/replications"))
    listed = cli.ok("replication", "list", REGISTRY)
    assert "cli-policy" in listed and "scheduled (30 2 * * * UTC)" in listed
    changed = cli.json("replication", "update", REGISTRY, "cli-policy", "--trigger", "manual", "--match",
                       "--no-override", "--tag-filter", "", "--name", "cli-renamed")
    assert (changed["name"], changed["trigger"], changed["schedule"], changed["next_run_at"], changed["override"],
            changed["tag_filter"], changed["tag_filter_mode"]) == \
        ("cli-renamed", "manual", "", None, False, "", "match")
    assert cli.ok("replication", "disable", REGISTRY, "cli-renamed").strip() == \
        f"Disabled replication policy cli-renamed (#{doc['id']}) of registry {REGISTRY}"
    r = cli("replication", "run", REGISTRY, "cli-renamed")
    assert r.returncode == 1 and "disabled" in r.stderr and "HTTP 409" in r.stderr
    assert cli.json("replication", "enable", REGISTRY, "cli-renamed")["enabled"] is True
    # The server's validation comes back as exit 1 with its message; argparse's as exit 2.
    r = cli("replication", "create", REGISTRY, "--name", "cli-bad", "--direction", "pull", "--remote", name,
            "--trigger", "event")
    assert r.returncode == 1 and "push policies only" in r.stderr and "INVALID_REQUEST" in r.stderr
    r = cli("replication", "create", REGISTRY, "--name", "cli-bad", "--direction", "sideways", "--remote", name)
    assert r.returncode == 2
    r = cli("replication", "show", REGISTRY, "no-such-policy")
    assert r.returncode == 1 and "no replication policy named" in r.stderr
    r = cli("remote", "delete", name)
    assert r.returncode == 2 and "--yes" in r.stderr  # no terminal to ask on
    r = cli("remote", "delete", name, "--yes")
    assert r.returncode == 1 and "cli-renamed" in r.stderr and "HTTP 409" in r.stderr
    assert cli.ok("replication", "delete", REGISTRY, "cli-renamed", "--yes").strip() == \
        f"Deleted replication policy cli-renamed of registry {REGISTRY}"
    assert cli.ok("remote", "delete", name, "--yes").strip() == f"Deleted remote {name}"

    # Viewers read through the CLI too, and are refused changes; remotes are not theirs at all.
    viewer = a.new_user(unique("cli-viewer"), {REGISTRY: "service-viewer"})
    as_viewer = cli_for(a, tmp_path / "viewer", viewer["id"], viewer["secret"])
    as_viewer.ok("replication", "list", REGISTRY)
    r = as_viewer("replication", "create", REGISTRY, "--name", "v", "--direction", "push", "--remote", bad)
    assert r.returncode == 1 and "HTTP 403" in r.stderr
    r = as_viewer("remote", "list")
    assert r.returncode == 1 and "HTTP 403" in r.stderr


def test_cli_run_wait_history_tasks_and_stop(live: Live, tmp_path: Path) -> None:
    a, b = live.a, live.b
    cli = cli_for(a, tmp_path / "home")
    path = unique("cli-run")
    pushed = push_to_a(live, f"{REGISTRY}/{path}/app")
    remote = make_remote(live)
    p = make_policy(live, remote, name_filter=f"{path}/**")

    r = cli("replication", "run", REGISTRY, p["name"], "--wait", "--interval", "0.2")
    assert r.returncode == 0, r.stderr
    assert f"of replication policy #{p['id']} of registry {REGISTRY}: Succeeded, 1 copied, 0 skipped, 0 failed" \
        in r.stdout, r.stdout
    assert digest_at(b, f"{REGISTRY}/{path}/app", "v1") == pushed
    first = ok(a.call("GET", policy_path(p, "/executions")))["executions"][0]
    assert first["status"] == "Succeeded" and first["copied"] == 1

    second = cli.json("replication", "run", REGISTRY, str(p["id"]), "--wait", "--interval", "0.2")
    assert (second["status"], second["copied"], second["skipped"]) == ("Succeeded", 0, 1)
    assert second == ok(a.call("GET", policy_path(p, f"/executions/{second['id']}")))

    history = cli.json("replication", "history", REGISTRY, p["name"])
    assert history == ok(a.call("GET", policy_path(p, "/executions")))
    assert [e["id"] for e in history["executions"]] == [second["id"], first["id"]]
    rows = [line.split() for line in cli.ok("replication", "history", REGISTRY, p["name"]).splitlines()]
    assert rows[0][:3] == ["ID", "TRIGGER", "STATUS"] and [row[:3] for row in rows[1:]] == \
        [[str(second["id"]), "manual", "Succeeded"], [str(first["id"]), "manual", "Succeeded"]]
    one = fields(cli.ok("replication", "history", REGISTRY, p["name"], str(first["id"])))
    assert one["status"] == "Succeeded" and one["artifacts"] == "1 copied, 0 skipped, 0 failed"
    # tasks: the newest execution by default (the skip), or the one given (the copy).
    assert cli.json("replication", "tasks", REGISTRY, p["name"]) == \
        ok(a.call("GET", policy_path(p, f"/executions/{second['id']}/tasks")))
    out = cli.ok("replication", "tasks", REGISTRY, p["name"], str(first["id"]))
    assert f"{REGISTRY}/{path}/app:v1" in out and "Succeeded" in out and pushed[:19] in out
    out = cli.ok("replication", "tasks", REGISTRY, p["name"])
    assert "Skipped" in out and "already present" in out

    # A run that fails (its remote is gone): `run --wait` exits 1 and says why.
    dead = make_policy(live, _dead_remote(live), name_filter=f"{path}/**")
    r = cli("replication", "run", REGISTRY, dead["name"], "--wait", "--interval", "0.2")
    assert r.returncode == 1 and ": Failed," in r.stdout, (r.stdout, r.stderr)

    # stop: nothing under way is an error; a run held by its target is stopped (--wait: until it ends Stopped).
    r = cli("replication", "stop", REGISTRY, p["name"])
    assert r.returncode == 1 and "no run" in r.stderr and "under way" in r.stderr
    with Upstream(target=b.url, log_path=tmp_path / "proxy.log").start() as up:
        slow = make_policy(live, make_remote(live, url=up.url), name_filter=f"{path}/**", remote_namespace="elsewhere")
        up.faults(Fault("other", method="POST", path="/blobs/uploads/", hold=True))
        started = cli.json("replication", "run", REGISTRY, slow["name"])
        assert started["status"] in ("Pending", "Running")
        deadline = time.monotonic() + 60
        while not any("/blobs/uploads/" in s.path for s in up.traffic().requests):
            assert time.monotonic() < deadline, "the run never reached the target's uploads"
            time.sleep(0.1)
        r = cli("replication", "run", REGISTRY, slow["name"])  # one at a time: Skipped, exit 1
        assert r.returncode == 1 and "Skipped" in r.stdout
        r = cli("replication", "stop", REGISTRY, slow["name"], "--wait", "--interval", "0.2")
        up.faults()
    assert r.returncode == 0 and r.stdout.startswith(f"Execution {started['id']} Stopped"), (r.stdout, r.stderr)
    assert ok(a.call("GET", policy_path(slow, f"/executions/{started['id']}")))["status"] == "Stopped"
    assert digest_at(b, f"elsewhere/{path}/app", "v1") is None


def test_cli_on_a_terminal_asks_for_the_secret_and_shows_the_runs_progress(live: Live, tmp_path: Path) -> None:
    a, secret = live.a, live.key["secret"]
    home = tmp_path / "home"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NCR_")}, "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / "xdg"), "NCR_URL": a.url, "NCR_USERNAME": ADMIN_USER,
           "NCR_PASSWORD": ADMIN_PASSWORD, "COLUMNS": "200"}
    name = unique("tty-osaka")
    code, out = terminal.on_tty("remote", "create", name, live.b.url, "--access-id", live.key["id"], env=env,
                                answer=secret, prompt=b"Access secret of")
    assert code == 0, out
    assert f"Access secret of {live.key['id']}:" in out and secret not in out  # asked for, not echoed
    assert ok(a.call("GET", f"/remotes/{name}"))["status"] == "valid"

    path = unique("tty-run")
    with a.client() as c:
        push_image(c, f"{REGISTRY}/{path}/app", image(path, layer_sizes=[3 << 20]), "v1")
    p = make_policy(live, name, name_filter=f"{path}/**", bandwidth_kbps=1024)  # about 3 s at this rate
    code, out = terminal.on_tty("replication", "run", REGISTRY, p["name"], "--wait", "--interval", "0.2", env=env,
                                timeout=120)
    assert code == 0, out
    (e,) = ok(a.call("GET", policy_path(p, "/executions")))["executions"]
    # While it ran: its status, counts, bytes and time, on the terminal; then how it ended.
    assert f"Execution {e['id']} Running: 0 copied, 0 skipped, 0 failed of 1 artifact, " in out, out
    assert " sent, 0:0" in out
    assert f"Execution {e['id']} of replication policy #{p['id']} of registry {REGISTRY}: Succeeded, 1 copied" in out


def test_cli_a_remote_over_https_trusts_its_ca_or_is_insecure_only_when_told(live: Live, tmp_path: Path) -> None:
    """B over HTTPS with a private CA: invalid until its CA is given (or `--insecure`), then a run copies."""
    a = live.a
    files = issue_tls(tmp_path / "tls", "127.0.0.1")
    tls = Server(data=tmp_path / "b-tls", registries=(REGISTRY,), tls=(files.chain, files.key, files.ca)).start()
    try:
        key = tls.new_user("replicator", {"*": "project-member"})
        cli = cli_for(a, tmp_path / "home")
        name = unique("tls-osaka")
        r = cli("remote", "create", name, tls.url, "--access-id", key["id"], "--secret-stdin", stdin=key["secret"])
        assert r.returncode == 0, r.stderr
        status = fields(r.stdout)["status"]
        assert status.startswith("invalid: ") and "certificate" in status.lower(), status
        doc = cli.json("remote", "update", name, "--ca-cert", str(files.ca))
        assert doc["status"] == "valid" and doc["ca_cert"].startswith("-----BEGIN CERTIFICATE-----"), doc
        assert fields(cli.ok("remote", "show", name))["CA certificate"] == "1 certificate"
        assert cli.json("remote", "update", name, "--clear-ca-cert")["status"] == "invalid"
        doc = cli.json("remote", "update", name, "--insecure")
        assert (doc["status"], doc["insecure"]) == ("valid", True)
        assert "TLS not verified" in fields(cli.ok("remote", "show", name))["insecure"]
        assert cli.json("remote", "update", name, "--no-insecure")["status"] == "invalid"
        (tmp_path / "not.pem").write_text("not a certificate\n")
        r = cli("remote", "update", name, "--ca-cert", str(tmp_path / "not.pem"))
        assert r.returncode == 1 and "ca_cert must be PEM certificates" in r.stderr
        r = cli("remote", "update", name, "--ca-cert", str(tmp_path / "missing.pem"))
        assert r.returncode == 2 and "missing.pem" in r.stderr
        assert cli.json("remote", "update", name, "--ca-cert", str(files.ca))["status"] == "valid"

        path = unique("tls-run")
        pushed = push_to_a(live, f"{REGISTRY}/{path}/app")
        p = make_policy(live, name, name_filter=f"{path}/**")
        assert cli.json("replication", "run", REGISTRY, p["name"], "--wait", "--interval", "0.2")["copied"] == 1
        assert digest_at(tls, f"{REGISTRY}/{path}/app", "v1") == pushed
    finally:
        tls.stop()


def test_remotes_are_checked_again_by_themselves(live: Live, tmp_path: Path) -> None:
    """Every `replication_check_seconds` the server checks each remote (no refresh asked for), both ways."""
    env = {"NCR_REPLICATION_ALLOWED_NETWORKS": "127.0.0.0/8", "NCR_REPLICATION_CHECK_SECONDS": "0.5"}
    srv = Server(data=tmp_path / "checking", registries=(REGISTRY,), env=env).start()
    try:
        with Upstream(target=live.b.url, log_path=tmp_path / "proxy.log").start() as up:
            up.unreachable()
            name = unique("rechecked")
            created = ok(srv.call("POST", "/remotes", json=remote_body(live, name, url=up.url)), 201)
            assert created["status"] == "invalid"
            p = dict(ok(srv.call("POST", f"/registries/{REGISTRY}/replications",
                                 json={"name": "follows", "direction": "push", "remote": name}), 201))
            for reachable, want in ((True, "valid"), (False, "invalid")):
                if reachable:
                    up.reachable()
                else:
                    up.unreachable()
                deadline = time.monotonic() + 30
                while ok(srv.call("GET", policy_path(p)))["status"] != want:
                    assert time.monotonic() < deadline, f"the remote was not checked again: not {want}"
                    time.sleep(0.1)
                assert ok(srv.call("GET", f"/remotes/{name}"))["status"] == want
    finally:
        srv.stop()
