"""Webhooks end to end: real ncr-trio servers deliver events to real HTTP receivers on 127.0.0.1
(tests/support/receivers.py): an HTTP(S) webhook and a Slack-shaped one.

What is proved: push, tag, pull and delete events arrive with the documented payload
(docs/webhooks.md), signed (HMAC-SHA256) and with the auth header; event-type filters and
disabling hold events back; a receiver answering 500 gets the same delivery again until it takes
it, and the history shows every attempt's status; a receiver that is down gets its events once it
is back; events pending when the server is SIGKILLed are delivered after it restarts; "send test";
a receiver that holds its requests never holds up a push; and the API validates, keeps secrets
secret and follows the role table. Retries are made fast through the server's environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ncr_trio.config import Config
from ncr_trio.meta import connect, migrate
from ncr_trio.meta.webhooks import WebhookStore
from ncr_trio.registry import RegistryService
from ncr_trio.registry.egress import NetworkPolicy
from ncr_trio.registry.webhooks import EventDelivery, Sender, retry_delay
from ncr_trio.sealing import Sealer
from tests.support.logins import issue_tls, new_account
from tests.support.oci import OCI_MANIFEST, image, push_image
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import Server

SCHEMA = {"id", "type", "occurred_at", "operator", "registry", "repository", "image", "digest", "tags",
          "media_type", "pull_reference", "replication"}
FAST_RETRIES = {"NCR_WEBHOOK_RETRY_BASE_SECONDS": "0.1", "NCR_WEBHOOK_RETRY_CAP_SECONDS": "0.5",
                "NCR_WEBHOOK_MAX_ATTEMPTS": "100"}
REGISTRIES = ("events", "chat", "filters", "retries", "down", "slow", "tests", "hooks")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(data=tmp_path_factory.mktemp("webhooks") / "data", registries=REGISTRIES,
               env={**FAST_RETRIES, **ALLOW_RECEIVERS, "NCR_WEBHOOK_TIMEOUT_SECONDS": "8"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


# -- helpers ----------------------------------------------------------------------------------------
def api(srv: Server, method: str, path: str, auth: tuple[str, str] | None = None, **kw: Any) -> httpx.Response:
    return srv.call(method, path, auth, **kw)


def create_hook(srv: Server, registry: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("kind", "http")
    fields.setdefault("name", f"hook-{time.monotonic_ns()}")
    r = api(srv, "POST", f"/registries/{registry}/webhooks", json=fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


def history(srv: Server, registry: str, hook_id: int) -> list[dict[str, Any]]:
    r = api(srv, "GET", f"/registries/{registry}/webhooks/{hook_id}/deliveries", params={"per_page": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["deliveries"])


def wait_history(srv: Server, registry: str, hook_id: int, predicate: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = history(srv, registry, hook_id)
        if predicate(found):
            return found
        assert time.monotonic() < deadline, f"delivery history never got there: {found}"
        time.sleep(0.05)


def push(srv: Server, repo: str, seed: str, tag: str) -> str:
    with srv.client() as c:
        return push_image(c, repo, image(seed), tag)


def types(requests: list[Any]) -> Counter[str]:
    return Counter(r.json()["type"] for r in requests if r.ok)


# -- the payload ------------------------------------------------------------------------------------
def test_push_tag_pull_and_delete_events_arrive_signed_with_the_documented_schema(srv: Server) -> None:
    with Receiver() as rx:
        create_hook(srv, "events", name="all", url=rx.url, secret="s3cret", auth_header="Bearer t0ken")
        digest = push(srv, "events/app", "events-app", "v1")
        art = f"/registries/events/images/app/artifacts/{digest}"
        assert api(srv, "POST", f"{art}/tags", json={"name": "v2"}).status_code == 201
        assert api(srv, "DELETE", "/registries/events/images/app/tags/v2").status_code == 204
        with srv.client() as c:
            assert c.get("/v2/events/app/manifests/v1").status_code == 200
        assert api(srv, "GET", art).json()["pulled_at"] is not None  # pull times (and events) are written
        assert api(srv, "DELETE", art).status_code == 204
        want = Counter({"artifact.pushed": 1, "tag.created": 2, "tag.deleted": 2, "artifact.pulled": 1,
                        "artifact.deleted": 1})
        got = rx.wait_for(lambda rs: types(rs) == want)

    by_tags = sorted((r.json()["type"], r.json()["tags"]) for r in got)
    assert by_tags == [("artifact.deleted", []), ("artifact.pulled", []), ("artifact.pushed", ["v1"]),
                       ("tag.created", ["v1"]), ("tag.created", ["v2"]), ("tag.deleted", ["v1"]),
                       ("tag.deleted", ["v2"])]
    assert len({r.json()["id"] for r in got}) == len({r.headers["x-ncr-delivery"] for r in got}) == 7
    for r in got:
        p = r.json()
        assert set(p) == SCHEMA
        assert r.method == "POST" and r.path == "/hook"
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-ncr-event"] == p["type"] and r.headers["x-ncr-delivery"].isdigit()
        assert r.headers["authorization"] == "Bearer t0ken"
        expected = "sha256=" + hmac.new(b"s3cret", r.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r.headers["x-ncr-signature"], expected)
        assert (p["registry"], p["repository"], p["image"], p["digest"]) == ("events", "events/app", "app", digest)
        assert p["operator"] == "admin"
        assert p["pull_reference"] == f"{srv.host}/events/app@{digest}"
        assert datetime.fromisoformat(p["occurred_at"].replace("Z", "+00:00")).tzinfo is not None
        if p["type"] in ("artifact.pushed", "artifact.pulled", "tag.created"):
            assert p["media_type"] == OCI_MANIFEST


def test_slack_webhook_gets_an_incoming_webhook_message(srv: Server) -> None:
    with Receiver(slack=True) as rx:
        hook = create_hook(srv, "chat", kind="slack", url=rx.url, event_types=["artifact.pushed"])
        digest = push(srv, "chat/app", "chat-app", "v1")
        (got,) = rx.wait_for(lambda rs: len(rs) >= 1)
    assert got.ok and got.path == "/services/T0001/B0001/xoxo"
    message = got.json()
    assert "chat/app:v1" in message["text"] and "pushed" in message["text"] and "admin" in message["text"]
    assert digest[:19] in message["text"] and message["blocks"][0]["type"] == "section"
    (delivery,) = wait_history(srv, "chat", hook["id"], lambda h: h and h[0]["status"] == "delivered")
    assert delivery["event_type"] == "artifact.pushed" and delivery["last_status"] == 200


# -- filters, enable/disable ------------------------------------------------------------------------
def test_event_type_filter_and_disabled_webhooks_get_only_what_they_asked_for(srv: Server) -> None:
    with Receiver() as every, Receiver() as deletions, Receiver() as off:
        create_hook(srv, "filters", name="every", url=every.url)
        only = create_hook(srv, "filters", name="deletions", url=deletions.url, event_types=["tag.deleted"])
        disabled = create_hook(srv, "filters", name="off", url=off.url, enabled=False)
        assert disabled["enabled"] is False
        push(srv, "filters/app", "filters-one", "v1")
        assert api(srv, "DELETE", "/registries/filters/images/app/tags/v1").status_code == 204
        # Each event is fanned out to every webhook at once: once the unfiltered one has them all, the
        # others have had their chance.
        every.wait_for(lambda rs: types(rs) == {"artifact.pushed": 1, "tag.created": 1, "tag.deleted": 1})
        deletions.wait_for(lambda rs: len(rs) == 1)
        assert [d["event_type"] for d in history(srv, "filters", only["id"])] == ["tag.deleted"]
        assert history(srv, "filters", disabled["id"]) == [] and off.requests == []

        r = api(srv, "PATCH", f"/registries/filters/webhooks/{disabled['id']}", json={"enabled": True})
        assert r.status_code == 200 and r.json()["enabled"] is True
        second = push(srv, "filters/app", "filters-two", "v2")
        got = off.wait_for(lambda rs: types(rs) == {"artifact.pushed": 1, "tag.created": 1})
        assert {r.json()["digest"] for r in got} == {second}  # nothing from while it was disabled


# -- retries ----------------------------------------------------------------------------------------
def test_a_receiver_answering_500_gets_the_same_delivery_until_it_takes_it(srv: Server) -> None:
    with Receiver() as rx:
        rx.fail_next(2, 500)
        hook = create_hook(srv, "retries", url=rx.url, event_types=["artifact.pushed"], secret="k")
        push(srv, "retries/app", "retries-app", "v1")
        got = rx.wait_for(lambda rs: any(r.ok for r in rs))
    assert [r.answered for r in got] == [500, 500, 200]
    assert len({r.headers["x-ncr-delivery"] for r in got}) == 1 and len({r.body for r in got}) == 1
    (delivery,) = wait_history(srv, "retries", hook["id"], lambda h: h and h[0]["status"] == "delivered")
    assert delivery["attempts"] == 3 and delivery["last_status"] == 200 and delivery["last_error"] is None
    assert [(a["attempt"], a["status"], a["error"]) for a in delivery["attempt_log"]] == [
        (1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 200, None)]
    assert delivery["payload"]["type"] == "artifact.pushed" and delivery["finished_at"] is not None


def test_a_receiver_that_is_down_gets_its_events_when_it_is_back(srv: Server) -> None:
    rx = Receiver()  # not started: its port refuses connections
    hook = create_hook(srv, "down", url=rx.url, event_types=["artifact.pushed"])
    digest = push(srv, "down/app", "down-app", "v1")
    wait_history(srv, "down", hook["id"], lambda h: h and h[0]["attempts"] >= 2)
    (pending,) = history(srv, "down", hook["id"])
    assert pending["status"] == "pending" and pending["last_status"] is None and pending["last_error"]
    with rx:
        (got,) = rx.wait_for(lambda rs: len(rs) >= 1)
    assert got.json()["digest"] == digest
    (done,) = wait_history(srv, "down", hook["id"], lambda h: h[0]["status"] == "delivered")
    assert [a["status"] for a in done["attempt_log"]][-1] == 200
    assert all(a["status"] is None and a["error"] for a in done["attempt_log"][:-1])


def test_events_pending_when_the_server_is_killed_are_delivered_after_it_restarts(tmp_path: Path) -> None:
    server = Server(data=tmp_path / "data", registries=("durable",),
                    env={**FAST_RETRIES, **ALLOW_RECEIVERS, "NCR_WEBHOOK_TIMEOUT_SECONDS": "2"}).start()
    try:
        rx = Receiver()  # down for now
        hook = create_hook(server, "durable", url=rx.url, event_types=["artifact.pushed"])
        first = push(server, "durable/app", "durable-one", "v1")
        wait_history(server, "durable", hook["id"], lambda h: h and h[0]["attempts"] >= 1)  # fanned out, failing
        second = push(server, "durable/app", "durable-two", "v2")  # its event may not even be fanned out yet
        server.kill()
        server.start()
        with rx:
            got = rx.wait_for(lambda rs: {r.json()["digest"] for r in rs if r.ok} == {first, second})
        assert Counter(r.json()["digest"] for r in got if r.ok) == {first: 1, second: 1}
    finally:
        server.stop()


def test_two_worker_processes_deliver_each_event_once(tmp_path: Path) -> None:
    """Both workers fan out and send: the marks and leases keep them from doubling anything."""
    server = Server(data=tmp_path / "data", registries=("pair",), extra_args=["--workers", "2"],
                    env=ALLOW_RECEIVERS).start()
    try:
        with Receiver() as rx:
            create_hook(server, "pair", url=rx.url, event_types=["artifact.pushed"])
            with server.client() as c:
                digests = {push_image(c, "pair/app", image(f"pair-{n}"), f"v{n}") for n in range(12)}
            got = rx.wait_for(lambda rs: {r.json()["digest"] for r in rs} == digests)
            server.stop()  # nothing more can come
        assert len(got) == len(rx.requests) == 12
        assert len({r.headers["x-ncr-delivery"] for r in got}) == len({r.json()["id"] for r in got}) == 12
    finally:
        server.stop()


async def test_retries_are_bounded_and_a_delivery_that_never_succeeds_fails(tmp_path: Path) -> None:
    """In process: the delivery engine over a real SQLite store and a receiver that always answers 500."""
    db = connect("", tmp_path / "meta.sqlite3")
    migrate(db)
    store = WebhookStore(db)
    config = Config(data_dir=tmp_path, webhook_retry_base_seconds=0.01, webhook_retry_cap_seconds=0.05,
                    webhook_max_attempts=3, webhook_allowed_networks=("127.0.0.0/8",))
    try:
        with Receiver() as rx:
            rx.fail_next(1000)
            hook = await store.create("team", "always-500", "http", rx.url, "", "", [])
            delivery_id = await store.enqueue(hook.id, "artifact.pushed", '{"type": "artifact.pushed"}')
            async with trio.open_nursery() as nursery:
                await nursery.start(EventDelivery(config, store, Sender.of(config, Sealer.in_directory(tmp_path))).run)
                with trio.fail_after(20):
                    while (d := await store.delivery(hook.id, delivery_id)) is None or d.status == "pending":
                        await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
            attempts = (await store.attempts_of([delivery_id]))[delivery_id]
            assert (d.status, d.attempts, d.last_status) == ("failed", 3, 500)
            assert [(a.attempt, a.status) for a in attempts] == [(1, 500), (2, 500), (3, 500)]
            assert [r.answered for r in rx.requests] == [500, 500, 500]
    finally:
        db.close()


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    for failed, nominal in [(1, 2), (2, 4), (3, 8), (5, 32), (8, 256), (9, 300), (50, 300), (10_000, 300)]:
        assert 0.9 * nominal <= retry_delay(failed, 2, 300) <= nominal
    assert 54 <= retry_delay(1, 2, 300, retry_after=60) <= 60
    assert retry_delay(1, 2, 300, retry_after=10_000) <= 300


# -- slow receivers, send test ----------------------------------------------------------------------
def test_a_receiver_holding_its_requests_never_holds_up_a_push(srv: Server) -> None:
    with Receiver() as rx:
        release = rx.hold()
        hook = create_hook(srv, "slow", url=rx.url, event_types=["artifact.pushed"])
        first = push(srv, "slow/app", "slow-one", "v1")
        assert rx.holding.wait(20), "the first delivery never reached the receiver"
        second = push(srv, "slow/app", "slow-two", "v2")  # while the receiver holds the first delivery
        assert not release.is_set() and rx.requests == []  # still holding: nothing has been answered yet
        release.set()
        got = rx.wait_for(lambda rs: len(rs) == 2)
    assert {r.json()["digest"] for r in got} == {first, second}
    wait_history(srv, "slow", hook["id"], lambda h: [d["status"] for d in h] == ["delivered", "delivered"])


def test_send_test_delivers_now_and_reports_how_it_went(srv: Server) -> None:
    with Receiver() as rx:
        hook = create_hook(srv, "tests", url=rx.url, enabled=False, secret="k")
        r = api(srv, "POST", f"/registries/tests/webhooks/{hook['id']}/test")
        assert r.status_code == 200, r.text
        result = r.json()
        assert (result["status"], result["attempts"], result["last_status"], result["event_type"]) == \
            ("delivered", 1, 200, "test")
        (got,) = rx.wait_for(lambda rs: len(rs) == 1)
    p = got.json()
    assert set(p) == SCHEMA and p["type"] == "test" and p["registry"] == "tests" and p["operator"] == "admin"
    assert got.headers["x-ncr-event"] == "test" and got.headers["x-ncr-delivery"] == str(result["id"])
    assert got.headers["x-ncr-signature"] == "sha256=" + hmac.new(b"k", got.body, hashlib.sha256).hexdigest()
    # The receiver is gone now: the test fails, once, and says why.
    failed = api(srv, "POST", f"/registries/tests/webhooks/{hook['id']}/test").json()
    assert (failed["status"], failed["attempts"], failed["last_status"]) == ("failed", 1, None)
    assert failed["last_error"]
    assert [d["status"] for d in history(srv, "tests", hook["id"])] == ["failed", "delivered"]


# -- the API ----------------------------------------------------------------------------------------
def test_api_validates_hides_secrets_and_stores_nothing_half_way(srv: Server) -> None:
    base = "/registries/hooks/webhooks"
    r = api(srv, "POST", base, json={"name": "ci", "kind": "http", "url": "https://ci.example/hook",
                                     "secret": "s", "auth_header": "Basic eDp5", "event_types": ["tag.created"]})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert "secret" not in hook and "auth_header" not in hook and "s" not in hook.values()
    assert hook["secret_set"] is True and hook["auth_header_set"] is True and hook["enabled"] is True
    assert hook["event_types"] == ["tag.created"] and hook["registry"] == "hooks"
    one = f"{base}/{hook['id']}"
    assert api(srv, "GET", one).json() == hook
    listed = api(srv, "GET", base).json()
    assert listed == {"webhooks": [hook], "total": 1, "page": 1, "per_page": 50}

    bad: list[dict[str, Any]] = [
        {"kind": "http", "url": "http://x/"},  # no name
        {"name": "a b", "kind": "http", "url": "http://x/"},
        {"name": "x", "kind": "email", "url": "http://x/"},
        {"name": "x", "kind": "http", "url": "ftp://x/"},
        {"name": "x", "kind": "http", "url": "http://"},
        {"name": "x", "kind": "http", "url": "http://x:99999/"},
        {"name": "x", "kind": "http", "url": "http://x/ y"},
        {"name": "x", "kind": "http", "url": "http://x/", "event_types": ["push"]},
        {"name": "x", "kind": "http", "url": "http://x/", "event_types": "tag.created"},
        {"name": "x", "kind": "http", "url": "http://x/", "enabled": "yes"},
        {"name": "x", "kind": "http", "url": "http://x/", "auth_header": "a\r\nX-Evil: 1"},
        {"name": "x", "kind": "http", "url": "http://x/", "colour": "red"},
        {"name": "x", "kind": "http", "url": "http://x/", "auth_header": " Bearer t "},
        {"name": "x", "kind": "http", "url": "http://a..b/"},
        {"name": "x", "kind": "http", "url": "http://" + "a" * 64 + ".example/"},
    ]
    for body in bad:
        r = api(srv, "POST", base, json=body)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "INVALID_REQUEST", (body, r.text)
    assert api(srv, "POST", base, content=b"[1]", headers={"Content-Type": "application/json"}).status_code == 400
    dup = api(srv, "POST", base, json={"name": "ci", "kind": "slack", "url": "https://x/"})
    assert dup.status_code == 409 and dup.json()["errors"][0]["code"] == "CONFLICT"
    assert api(srv, "GET", base).json()["total"] == 1  # nothing half-stored

    other = create_hook(srv, "hooks", name="other", url="http://127.0.0.1:9/")
    assert api(srv, "PATCH", one, json={"name": "other"}).status_code == 409
    assert api(srv, "PATCH", one, json={"name": "renamed", "url": "gopher://x/"}).status_code == 400
    assert api(srv, "GET", one).json() == hook  # neither change happened
    changed = api(srv, "PATCH", one, json={"secret": "", "event_types": [], "kind": "slack"}).json()
    assert (changed["secret_set"], changed["auth_header_set"], changed["event_types"], changed["kind"]) == \
        (False, True, [], "slack")

    for path in ("/registries/nowhere/webhooks", f"{base}/abc", f"{base}/999999", f"{base}/999999/deliveries",
                 "/registries/nowhere/webhooks/1"):
        r = api(srv, "GET", path)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NOT_FOUND", (path, r.text)
    assert api(srv, "POST", "/registries/nowhere/webhooks",
               json={"name": "x", "kind": "http", "url": "http://x/"}).status_code == 404
    assert api(srv, "GET", f"{base}/{hook['id']}/deliveries", params={"per_page": 501}).status_code == 400

    viewer = new_account(srv, "hookviewer", "service-viewer", "hooks")
    as_viewer = (viewer.user, viewer.password)
    assert api(srv, "GET", base, auth=as_viewer).json()["total"] == 2
    # Readers see where a webhook goes, not its path (a Slack webhook's path is its secret).
    seen = api(srv, "GET", one, auth=as_viewer).json()["url"]
    assert seen == "https://ci.example/***" and seen != api(srv, "GET", one).json()["url"]
    assert all(h["url"].endswith("/***") for h in api(srv, "GET", base, auth=as_viewer).json()["webhooks"])
    assert api(srv, "GET", f"{one}/deliveries", auth=as_viewer).status_code == 200
    for method, path, body in [("POST", base, {"name": "v", "kind": "http", "url": "http://x/"}),
                               ("PATCH", one, {"enabled": False}), ("DELETE", one, None),
                               ("POST", f"{one}/test", None)]:
        r = api(srv, method, path, auth=as_viewer, json=body)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", (method, path, r.text)
    assert api(srv, "GET", base, auth=("nobody", "x")).status_code == 401

    assert api(srv, "DELETE", one).status_code == 204
    assert api(srv, "GET", one).status_code == 404 and api(srv, "DELETE", one).status_code == 404
    assert [h["name"] for h in api(srv, "GET", base).json()["webhooks"]] == [other["name"]]


def test_a_deleted_registry_takes_its_webhooks_with_it(srv: Server) -> None:
    assert api(srv, "POST", "/registries", json={"name": "fleeting"}).status_code == 201
    create_hook(srv, "fleeting", url="http://127.0.0.1:9/")
    assert api(srv, "DELETE", "/registries/fleeting").status_code == 200
    assert api(srv, "GET", "/registries/fleeting/webhooks").status_code == 404
    assert api(srv, "POST", "/registries", json={"name": "fleeting"}).status_code == 201
    assert api(srv, "GET", "/registries/fleeting/webhooks").json()["total"] == 0  # a new registry, no old hooks


# -- where webhooks may go --------------------------------------------------------------------------
LOOPBACK_PRIVATE_LINK_LOCAL = [
    "http://127.0.0.1:{port}/hook", "http://127.0.0.2/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://2130706433/", "http://0.0.0.0/", "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1/",
    "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://[fd00::1]/",
    "http://224.0.0.1/", "http://240.0.0.1/", "http://[64:ff9b::a00:1]/", "http://[2002:7f00:1::]/",
]


def test_by_default_webhooks_reach_public_addresses_only(tmp_path: Path) -> None:
    """No `webhook_allowed_networks`: an address that is loopback, private, link-local, shared (CGNAT),
    multicast or reserved, written in any form, is refused when the webhook is set; a name is resolved
    when a delivery is sent, and a name resolving to loopback (`localhost`) gets nothing sent."""
    server = Server(data=tmp_path / "data", registries=("guarded",), env=FAST_RETRIES).start()
    try:
        base = "/registries/guarded/webhooks"
        with Receiver() as rx:
            for url in LOOPBACK_PRIVATE_LINK_LOCAL:
                url = url.format(port=rx.port)
                r = api(server, "POST", base, json={"name": "x", "kind": "http", "url": url})
                assert r.status_code == 400, (url, r.text)
                error = r.json()["errors"][0]
                assert error["code"] == "INVALID_REQUEST" and "webhook_allowed_networks" in error["message"], url
            assert api(server, "GET", base).json()["total"] == 0
            public = create_hook(server, "guarded", name="public", url="http://93.184.215.14/hook", enabled=False)
            r = api(server, "PATCH", f"{base}/{public['id']}", json={"url": rx.url})
            assert r.status_code == 400 and "127.0.0.1" in r.json()["errors"][0]["message"]

            by_name = rx.url.replace("127.0.0.1", "localhost")
            hook = create_hook(server, "guarded", name="local", url=by_name, secret="k", auth_header="Bearer t")
            failed = api(server, "POST", f"{base}/{hook['id']}/test").json()
            assert (failed["status"], failed["last_status"]) == ("failed", None)
            assert "localhost" in failed["last_error"] and "webhook_allowed_networks" in failed["last_error"]
            push(server, "guarded/app", "guarded-app", "v1")  # events are refused the same way
            wait_history(server, "guarded", hook["id"],
                         lambda h: any(d["event_type"] != "test" and d["attempts"] >= 2 for d in h))
            assert rx.requests == []
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_loopback_is_reached_only_once_allowed_and_redirects_are_not_followed(srv: Server) -> None:
    """The module's server allows 127.0.0.0/8 (as every test server with receivers must). A receiver
    answering with a redirect fails the delivery: the target of the redirect gets nothing. A URL by
    name is sent to the address it resolved to, with the name in the Host header."""
    with Receiver() as rx, Receiver() as elsewhere:
        by_name = create_hook(srv, "tests", name="by-name", url=rx.url.replace("127.0.0.1", "localhost"))
        r = api(srv, "POST", f"/registries/tests/webhooks/{by_name['id']}/test").json()
        assert r["status"] == "delivered", r
        assert rx.requests.pop().headers["host"] == f"localhost:{rx.port}"
        hook = create_hook(srv, "tests", name="redirected", url=rx.url)
        rx.redirect_next(1, elsewhere.url, status=307)
        r = api(srv, "POST", f"/registries/tests/webhooks/{hook['id']}/test").json()
        assert (r["status"], r["last_status"], r["last_error"]) == ("failed", 307, "HTTP 307")
        rx.redirect_next(1, elsewhere.url, status=302)
        r = api(srv, "POST", f"/registries/tests/webhooks/{hook['id']}/test").json()
        assert (r["status"], r["last_status"]) == ("failed", 302)
        assert [x.answered for x in rx.requests] == [307, 302] and elsewhere.requests == []
        assert api(srv, "POST", f"/registries/tests/webhooks/{hook['id']}/test").json()["status"] == "delivered"


def test_registry_managers_see_only_whether_a_delivery_worked(srv: Server) -> None:
    """A registry's manager who is not a system administrator learns from "send test" and from the
    history only delivered or failed: no HTTP status, error text or timing (which would make the
    server a port scanner for them). Administrators see everything."""
    manager = new_account(srv, "hookmanager", "project-admin", "tests")
    as_manager = (manager.user, manager.password)
    r = api(srv, "POST", "/registries/tests/webhooks", auth=as_manager,
            json={"name": "managed", "kind": "http", "url": "http://127.0.0.1:9/"})
    assert r.status_code == 201, r.text
    hook = r.json()
    test = f"/registries/tests/webhooks/{hook['id']}/test"
    hidden = {"last_status", "last_error", "finished_at"}
    with Receiver() as rx:
        assert api(srv, "PATCH", f"/registries/tests/webhooks/{hook['id']}", auth=as_manager,
                   json={"url": rx.url}).status_code == 200
        rx.fail_next(1, 503)
        for expected in ("failed", "delivered"):
            seen = api(srv, "POST", test, auth=as_manager).json()
            assert seen["status"] == expected and not hidden & set(seen), seen
            assert seen["attempt_log"] == [{"attempt": 1, "ok": expected == "delivered"}]
    rows = api(srv, "GET", f"/registries/tests/webhooks/{hook['id']}/deliveries", auth=as_manager).json()
    assert [d["status"] for d in rows["deliveries"]] == ["delivered", "failed"]
    assert all(not hidden & set(d) and all(set(a) == {"attempt", "ok"} for a in d["attempt_log"])
               for d in rows["deliveries"])
    full = history(srv, "tests", hook["id"])
    assert [(d["last_status"], d["last_error"]) for d in full] == [(200, None), (503, "HTTP 503")]
    assert all({"at", "status", "error", "duration_ms", "ok"} <= set(a) for d in full for a in d["attempt_log"])


def test_secrets_are_sealed_at_rest_and_deliveries_still_carry_them(srv: Server) -> None:
    """A webhook's secret and auth header are nowhere in the data directory in clear (the database,
    its WAL, anything) but in their sealed form; the key is a 0600 file under keys/. Deliveries
    are still signed with the secret and carry the header."""
    secret, token = "at-rest-s3cret-1", "Bearer at-rest-t0ken-1"
    with Receiver() as rx:
        hook = create_hook(srv, "tests", name="sealed", url=rx.url, secret=secret, auth_header=token)
        assert api(srv, "POST", f"/registries/tests/webhooks/{hook['id']}/test").json()["status"] == "delivered"
        (got,) = rx.requests
    assert got.headers["authorization"] == token
    assert got.headers["x-ncr-signature"] == "sha256=" + hmac.new(secret.encode(), got.body, hashlib.sha256).hexdigest()
    key = srv.data / "keys" / "secrets.key"
    for path in (p for p in srv.data.rglob("*") if p.is_file() and p != key):
        data = path.read_bytes()
        assert secret.encode() not in data and b"at-rest-t0ken-1" not in data, path
    with contextlib.closing(sqlite3.connect(f"file:{srv.data / 'meta.sqlite3'}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT secret, auth_header FROM webhooks WHERE id = ?", (hook["id"],)).fetchone()
    assert all(value.startswith("ncr1:") for value in row), row
    assert key.stat().st_mode & 0o777 == 0o600


def test_https_receivers_are_reached_at_the_checked_address_and_verified_by_name(tmp_path: Path) -> None:
    """The connection goes to the address the name resolved to, but TLS still checks the certificate
    against the name: a receiver whose certificate is for `localhost` is reached as `localhost`, and
    refused as 127.0.0.1 (no IP in its certificate)."""
    tls = issue_tls(tmp_path / "tls", "localhost")
    server = Server(data=tmp_path / "data", registries=("secure",),
                    env={**ALLOW_RECEIVERS, "SSL_CERT_FILE": str(tls.ca)}).start()
    try:
        with Receiver(tls=(tls.chain, tls.key)) as rx:
            by_name = create_hook(server, "secure", name="by-name", url=rx.url)
            r = api(server, "POST", f"/registries/secure/webhooks/{by_name['id']}/test").json()
            assert r["status"] == "delivered", r
            assert rx.requests[0].headers["host"] == f"localhost:{rx.port}"
            by_address = create_hook(server, "secure", name="by-address", url=rx.url.replace("localhost", "127.0.0.1"))
            r = api(server, "POST", f"/registries/secure/webhooks/{by_address['id']}/test").json()
            assert r["status"] == "failed" and "certificate" in r["last_error"].lower(), r
            assert len(rx.requests) == 1
    finally:
        server.stop()


def test_allowed_networks_judge_an_address_by_where_it_leads(tmp_path: Path) -> None:
    """`public` and opened ranges, with addresses spelt as IPv4-mapped, NAT64 or 6to4; a setting that is
    not a list of CIDR blocks and `public` stops the server from starting."""

    def allows(entries: tuple[str, ...], address: str) -> bool:
        return NetworkPolicy.parse(entries, "webhook_allowed_networks").allows(ipaddress.ip_address(address))

    for address in ("8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"):
        assert allows(("public",), address), address
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:a00:1::", "100.64.0.1",
                    "169.254.169.254", "fe80::1", "fec0::1", "fd00::1", "224.0.0.1", "ff02::1", "0.0.0.0", "::",
                    "192.0.2.1", "2001:db8::1", "255.255.255.255"):
        assert not allows(("public",), address), address
    opened = ("public", "10.0.0.0/8")
    assert allows(opened, "10.1.2.3") and allows(opened, "::ffff:10.1.2.3") and allows(opened, "64:ff9b::a01:203")
    assert not allows(opened, "192.168.1.1") and not allows(("10.0.0.0/8",), "8.8.8.8") and not allows((), "8.8.8.8")
    for bad in ("10.0.0.0/33", "intranet", "10.0.0.0/8,public"):
        with pytest.raises(ValueError, match="webhook_allowed_networks"):
            RegistryService.open(Config(data_dir=tmp_path / "data", webhook_allowed_networks=(bad,)))
