"""The fast path (ncr_trio/http/fastpath.py) replays the app's own answers, byte for byte, and never
one that a change made on this node has outdated.

Requests go over raw keep-alive sockets, so that a request repeated on one connection is one the
fast path may answer; /metrics says how many it answered (`ncr_http_fast_path_answers`).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.auth import token
from tests.support.metrics import scrape
from tests.support.oci import Image, digest, image, push_image, push_manifest
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import Server

REPO = "a/fast"
_DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")


class Connection:
    """One keep-alive HTTP/1.1 connection, answers read whole as the bytes the server sent."""

    def __init__(self, srv: Server) -> None:
        self.host = srv.host
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        self.buffer = b""

    def request(self, method: str, path: str, bearer: str | None = None, extra: str = "") -> bytes:
        self.send(method, path, bearer, extra)
        return self.read(method)

    def send(self, method: str, path: str, bearer: str | None = None, extra: str = "") -> None:
        auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{auth}{extra}\r\n".encode())

    def read(self, method: str) -> bytes:
        """The next answer (to a request of `method`)."""
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        end = self.buffer.index(b"\r\n\r\n") + 4
        length = int(re.search(rb"\r\ncontent-length: (\d+)", self.buffer[:end], re.I)[1])  # type: ignore[index]
        length = 0 if method == "HEAD" else length
        while len(self.buffer) < end + length:
            self._more()
        answer, self.buffer = self.buffer[:end + length], self.buffer[end + length:]
        return answer

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pushed(srv: Server, seed: str, tag: str) -> tuple[Image, str]:
    """An image pushed to REPO as `tag`, and a bearer token to pull it."""
    img = image(seed)
    with srv.client() as c:
        push_image(c, REPO, img, tag)
    return img, token(srv.url, *srv.admin, f"repository:{REPO}:pull")


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def without_date(answer: bytes) -> bytes:
    """The answer with its Date value blanked (it moves every second), after checking there is one."""
    assert len(_DATE.findall(answer)) == 1, answer
    return _DATE.sub(b"\r\ndate: -\r\n", answer)


def fast_answers(srv: Server) -> float:
    return scrape(srv.url).total("ncr_http_fast_path_answers_total")


def until_replayed(srv: Server, conn: Connection, method: str, path: str, bearer: str | None = None) -> list[bytes]:
    """Send a request on `conn` until the fast path has answered it: the answers. (A write on the
    server, such as the background's collection of a push's events, ends what it remembered; the
    next answer comes from the app again and is remembered again.)"""
    answers = []
    for _ in range(50):
        before = fast_answers(srv)
        answers.append(conn.request(method, path, bearer))
        if fast_answers(srv) > before:
            return answers
    raise AssertionError(f"the fast path never answered {method} {path}")


# Answers are replayed for at most access_cache_seconds: long here, so that every repeat in these
# tests is a replay however slow the machine, and what ends a replay is the change made.
LONG = {"NCR_ACCESS_CACHE_SECONDS": "600"}
PULL_FLUSH_SECONDS = 5.0  # how often pull times (and their events) are written: PullRecorder.interval


@pytest.fixture(scope="module", params=[1, 2], ids=["workers=1", "workers=2"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from Server(data=tmp_path_factory.mktemp("fastpath") / "data", env=LONG,
                      extra_args=["--workers", str(request.param)]).running()


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker: with two, the other worker's access caches (not the fast path) would take
    access_cache_seconds to see a revocation, as another node's do."""
    yield from Server(data=tmp_path_factory.mktemp("fastpath-one") / "data", env=LONG,
                      extra_args=["--workers", "1"]).running()


def test_a_replayed_answer_is_the_apps_answer_byte_for_byte(srv: Server) -> None:
    img, bearer = pushed(srv, "fast-identical", "v1")
    layer = digest(img.layers[0])
    requests = [("GET", f"/v2/{REPO}/manifests/v1"), ("GET", f"/v2/{REPO}/manifests/{img.digest}"),
                ("HEAD", f"/v2/{REPO}/manifests/v1"), ("HEAD", f"/v2/{REPO}/blobs/{layer}")]
    before = scrape(srv.url)
    sent = {("manifest", "GET"): 0, ("manifest", "HEAD"): 0, ("blob", "HEAD"): 0}
    with Connection(srv) as conn:
        for method, path in requests:
            answers = until_replayed(srv, conn, method, path, bearer)
            answers.append(conn.request(method, path, bearer))
            sent["blob" if "/blobs/" in path else "manifest", method] += len(answers)
            assert status(answers[0]) == 200, answers[0]
            # The first answer came from the app; a later one from the fast path: the same bytes.
            assert {without_date(a) for a in answers} == {without_date(answers[0])}, answers
            if method == "GET":
                assert answers[0].endswith(img.manifest)
    after = scrape(srv.url)
    # /metrics counts every request, whoever answered it.
    for (route, method), n in sent.items():
        counted = (after.get("ncr_http_requests_total", route=route, method=method, status="200")
                   - before.get("ncr_http_requests_total", route=route, method=method, status="200"))
        assert counted == n, (route, method)


def test_requests_sent_before_the_previous_answer_are_answered_in_order(srv: Server) -> None:
    img, bearer = pushed(srv, "fast-pipelined", "pipelined")
    requests = [("GET", f"/v2/{REPO}/manifests/pipelined"), ("HEAD", f"/v2/{REPO}/blobs/{digest(img.config)}"),
                ("HEAD", f"/v2/{REPO}/manifests/pipelined")]
    with Connection(srv) as conn:
        expected = {}
        for method, path in requests:
            expected[method, path] = without_date(until_replayed(srv, conn, method, path, bearer)[-1])
        for _ in range(20):  # each head is sent while the one before may still be answered, or its task ending
            for method, path in requests:
                conn.send(method, path, bearer)
            for method, path in requests:
                assert without_date(conn.read(method)) == expected[method, path]


def test_requests_it_does_not_know_go_the_normal_way(srv: Server) -> None:
    img, bearer = pushed(srv, "fast-unusual", "unusual")
    path = f"/v2/{REPO}/manifests/unusual"
    before = fast_answers(srv)
    with Connection(srv) as conn:
        for extra in ("If-None-Match: \"x\"\r\n", "Range: bytes=0-1\r\n", "X-Unknown: 1\r\n"):
            for _ in range(3):
                assert status(conn.request("GET", path, bearer, extra)) == 200
        for _ in range(3):  # a token that does not verify: the app's 401 each time
            assert status(conn.request("GET", path, bearer + "x")) == 401
        last = conn.request("GET", path, bearer, "Connection: close\r\n")
        assert status(last) == 200 and b"\r\nconnection: close\r\n" in last.lower()
    assert fast_answers(srv) == before


def test_a_moved_tag_and_a_deleted_manifest_are_seen_at_once(srv: Server) -> None:
    first, second = image("fast-first"), image("fast-second")
    with srv.client() as c:
        push_image(c, REPO, first, "moving")
        push_image(c, REPO, second, "other")
    bearer = token(srv.url, *srv.admin, f"repository:{REPO}:pull")
    # Several connections: with two workers, some land on each, each with its own remembered answers.
    conns = [Connection(srv) for _ in range(6)]
    try:
        for conn in conns:
            answers = until_replayed(srv, conn, "GET", f"/v2/{REPO}/manifests/moving", bearer)
            assert all(a.endswith(first.manifest) for a in answers)
            answers = until_replayed(srv, conn, "HEAD", f"/v2/{REPO}/manifests/{second.digest}", bearer)
            assert all(status(a) == 200 for a in answers)
        with srv.client() as c:
            assert push_manifest(c, REPO, "moving", second.manifest).status_code == 201
        for conn in conns:
            assert conn.request("GET", f"/v2/{REPO}/manifests/moving", bearer).endswith(second.manifest)
        with srv.client() as c:
            assert c.delete(f"/v2/{REPO}/manifests/{second.digest}").status_code == 202
        for conn in conns:
            assert status(conn.request("HEAD", f"/v2/{REPO}/manifests/{second.digest}", bearer)) == 404
            assert status(conn.request("GET", f"/v2/{REPO}/manifests/moving", bearer)) == 404
    finally:
        for conn in conns:
            conn.close()


def test_a_revoked_key_and_a_registry_made_private_are_refused_at_once(one: Server) -> None:
    srv = one
    srv.ensure_registries("fastopen")
    img = image("fast-access")
    with srv.client() as c:
        push_image(c, "fastopen/app", img, "v1")
    key = srv.new_user("fastreader", {"fastopen": "service-viewer"})
    bearer = token(srv.url, key["id"], key["secret"], "repository:fastopen/app:pull")
    srv.api().doc("api.registry.update", {"public_read": True}, registry="fastopen")
    path = "/v2/fastopen/app/manifests/v1"
    conns = [Connection(srv) for _ in range(6)]
    try:
        for conn in conns:
            assert all(status(a) == 200 for a in until_replayed(srv, conn, "GET", path, bearer))
            # anonymous: the registry is public
            assert all(status(a) == 200 for a in until_replayed(srv, conn, "GET", path))
        srv.api().call("api.key.revoke", user="fastreader", key=key["id"])
        for conn in conns:
            assert status(conn.request("GET", path, bearer)) == 401
            assert status(conn.request("GET", path)) == 200
        srv.api().doc("api.registry.update", {"public_read": False}, registry="fastopen")
        for conn in conns:
            assert status(conn.request("GET", path)) == 401
    finally:
        for conn in conns:
            conn.close()
    assert httpx.get(f"{srv.url}{path}").status_code == 401


def test_the_fast_path_can_be_turned_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = Server(data=tmp_path_factory.mktemp("nofast") / "data", env={"NCR_FAST_PATH": "false"}).start()
    try:
        img, bearer = pushed(srv, "fast-off", "v1")
        with Connection(srv) as conn:
            answers = [conn.request("GET", f"/v2/{REPO}/manifests/v1", bearer) for _ in range(3)]
        assert {without_date(a) for a in answers} == {without_date(answers[0])}
        assert fast_answers(srv) == 0
    finally:
        srv.stop()


def test_a_replayed_pull_is_recorded_as_the_puller_s(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Replays record the pull as the app does, with who pulled: the artifact.pulled events of pulls
    answered by the fast path name the same operator as the app's (the replay runs in the connection's
    reader, outside the request's task)."""
    srv = Server(data=tmp_path_factory.mktemp("fastpulls") / "data", env={**LONG, **ALLOW_RECEIVERS}).start()
    try:
        with Receiver() as rx:
            r = srv.call("POST", "/registries/a/webhooks", None, json={
                "kind": "http", "name": "pulls", "url": rx.url, "event_types": ["artifact.pulled"]})
            assert r.status_code == 201, r.text
            img, bearer = pushed(srv, "fast-pulled", "v1")
            with Connection(srv) as conn:
                until_replayed(srv, conn, "GET", f"/v2/{REPO}/manifests/v1", bearer)
                for _ in range(3):  # the last pulls before the recorder's next flush are replays
                    assert status(conn.request("GET", f"/v2/{REPO}/manifests/v1", bearer)) == 200
            rx.wait_for(lambda rs: len(rs) >= 1)
            time.sleep(PULL_FLUSH_SECONDS + 1)  # and the flush after the replays has been delivered too
            operators = [got.json()["operator"] for got in rx.requests]
    finally:
        srv.stop()
    assert operators and set(operators) == {srv.admin[0]}, operators
