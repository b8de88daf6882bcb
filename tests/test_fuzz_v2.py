"""A seeded, bounded fuzz of the whole `/v2` surface against a real server, once per metadata backend
(PostgreSQL refuses some text SQLite takes: NUL, out-of-range integers).

Whatever a client sends, as an attacker would: names and references in paths and in query parameters
(`from`, `last`, `mount`, `digest`), digests, numbers (`n`), `Content-Range`, `Range`,
`Content-Length`, media types (`Content-Type`, `Accept`), bodies (manifests, indexes, JSON of any
depth), and random sequences of POST/PATCH/PUT/GET/DELETE on upload sessions. Every request gets an
answer (the connection is never dropped before one), below 500, and every error the registry answers is
in the OCI error format; the server logs no traceback. The requests carry the administrator's token, so
they reach the handlers rather than stopping at the gate.

Requests go over raw sockets (`Connection: close`), so headers, targets and lengths are sent as
generated, not as an HTTP client would tidy them. Hypothesis is derandomized with no example database,
and each test is bounded by `max_examples`.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, rule

from ncr_trio.errors import ERRORS
from ncr_trio.types import NAME_RE, TAG_RE
from tests.support.auth import token
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, descriptor, digest, image, index, push_image, push_manifest
from tests.support.postgres import postgres_server
from tests.support.server import Server

REPOS = ["fuzz/a", "fuzz/b/c", "fuzz/never"]  # the token covers these; fuzz/never stays empty
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=120,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@dataclass
class Target:
    srv: Server
    bearer: str
    digests: list[str]  # of stored blobs and manifests
    tags: list[str]
    uploads: list[str]  # open upload sessions


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def send(t: Target, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
         length: str | None = None, auth: bool = True) -> Answer | None:
    """One request as given; the answer, or None when the server closed without one."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {t.srv.host}", "Connection: close",
             f"Content-Length: {len(body) if length is None else length}"]
    if auth:
        lines.append(f"Authorization: Bearer {t.bearer}")
    # A header value cannot hold a line break (it would be another header); anything else goes.
    lines += [f"{k}: {v.replace(chr(13), ' ').replace(chr(10), ' ')}" for k, v in (headers or {}).items()]
    raw = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", t.srv.port), timeout=60) as s:
        with contextlib.suppress(OSError):  # the server may answer (and close) before reading it all
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                data += chunk
    if not data:
        return None
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(": ", 1) for line in header_lines if ": " in line)
    return Answer(int(status_line.split()[1]), {k.lower(): v for k, v in fields}, rest)


def check(t: Target, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"",
          length: str | None = None, auth: bool = True) -> Answer:
    """`send`, and the answer must exist, be below 500, and (from the registry) carry OCI errors."""
    a = send(t, method, target, headers, body, length, auth)
    what = f"{method} {target[:300]!r} {headers!r:.300} body={body[:80]!r}"
    assert a is not None, f"connection dropped without an answer: {what}"
    assert a.status < 500, f"{a.status} for {what}: {a.body[:300]!r}"
    if a.status >= 400 and method != "HEAD" and "docker-distribution-api-version" in a.headers:
        errors = json.loads(a.body)["errors"]
        assert errors and all(e["code"] in ERRORS and isinstance(e["message"], str) for e in errors), what
    return a


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with contextlib.ExitStack() as stack:
        env = {}
        if request.param == "postgresql":
            pg = stack.enter_context(postgres_server())
            env["NCR_DATABASE_URL"] = stack.enter_context(pg.database("fuzz"))
        srv = Server(data=tmp_path_factory.mktemp("fuzz") / "data", registries=("fuzz",), env=env).start()
        stack.callback(srv.stop)
        scopes = [f"repository:{r}:pull,push,delete" for r in REPOS] + ["registry:catalog:*"]
        t = Target(srv, token(srv.url, *srv.admin, *scopes), [], ["v1", "idx"], [])
        with srv.client() as c:
            img = image("fuzz", layers=2)
            push_image(c, "fuzz/a", img, "v1")
            assert push_manifest(c, "fuzz/a", "idx", index([(img, ("linux", "amd64"))]), OCI_INDEX).status_code == 201
            t.digests = [img.digest, *img.blobs, digest(index([(img, ("linux", "amd64"))]))]
            for repo in REPOS[:2]:
                loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["location"]
                assert c.patch(loc, content=b"0123456789", headers={"Content-Range": "0-9"}).status_code == 202
                t.uploads.append(loc.rsplit("/", 1)[1])
        yield t


@pytest.fixture(autouse=True)
def no_traceback(target: Target) -> Iterator[None]:
    """Each test leaves no traceback in the server's log (an exception no answer accounts for)."""
    start = len(target.srv.log())
    yield
    assert "Traceback" not in target.srv.log()[start:], target.srv.log()[start:][-6000:]


def session(t: Target, repo: str = "fuzz/a") -> str:
    """A new upload session holding b"0123456789" (a wrong digest or a cancel ends one: make one per case)."""
    upload = check(t, "POST", f"/v2/{repo}/blobs/uploads/").headers["location"].rsplit("/", 1)[1]
    assert check(t, "PATCH", f"/v2/{repo}/blobs/uploads/{upload}", {"Content-Range": "0-9"}, b"0123456789").status == 202
    return upload


def test_a_body_cut_short_never_takes_the_worker_down(target: Target) -> None:
    # hypercorn closing such a connection raced the answer's write: a traceback, or a dead worker.
    blob = target.digests[1]
    for i in range(100):
        url = f"/v2/fuzz/a/blobs/{blob}" if i % 2 else "/v2/"
        a = send(target, "GET", url, body=b"ab", length="5", auth=bool(i % 3))
        assert a is None or a.status < 500
    assert check(target, "GET", "/v2/").status == 200


# -- what a client can send --------------------------------------------------------------------------
anything = st.text(st.characters(codec="utf-8"), max_size=40)
names = st.one_of(st.sampled_from(REPOS), st.from_regex(NAME_RE, fullmatch=True), anything,
                  st.builds(lambda r, s: r + s, st.sampled_from(REPOS), anything))
tags = st.one_of(st.sampled_from(["v1", "idx", "latest", ".INVALID_MANIFEST_NAME"]),
                 st.from_regex(TAG_RE, fullmatch=True), anything)
hexes = st.one_of(st.text("0123456789abcdef", max_size=130), anything)
digests = st.one_of(st.builds(lambda a, h: f"{a}:{h}", st.sampled_from(["sha256", "sha512", "md5", "SHA256", ""]),
                              hexes), anything)
numbers = st.one_of(st.integers(-(2**80), 2**80).map(str), anything,
                    st.sampled_from([str(2**63 - 1), str(2**63), str(2**64), str(10**30), "9" * 5000, "", "0", "-0",
                                     "+5", " 5", "1e3", "0x10", "1_000", "\u0663", "nan"]))
media_types = st.one_of(st.sampled_from([OCI_MANIFEST, OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                                         "application/vnd.docker.distribution.manifest.v1+prettyjws",
                                         "application/json", "application/octet-stream", "*/*", ""]),
                        st.builds(lambda m, s: m + s, st.sampled_from([OCI_MANIFEST, "text/plain"]), anything), anything)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | anything,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(anything, inner, max_size=4),
                           max_leaves=30)
ranges = st.one_of(st.builds(lambda a, b: f"{a}-{b}", numbers, numbers),
                   st.builds(lambda a, b: f"bytes={a}-{b}", numbers, numbers),
                   st.builds(lambda a, b: f"bytes {a}-{b}/*", numbers, numbers),
                   st.sampled_from(["bytes=0-", "bytes=-5", "bytes=0-1,2-3", "bytes=", "items=0-1"]), anything)


def path(name: str) -> str:
    return quote(name, safe="/")


def seg(text: str) -> str:
    return quote(text, safe="")


# -- paths -------------------------------------------------------------------------------------------
ROUTES = ["/v2/", "/v2/_catalog", "/v2/{name}/tags/list", "/v2/{name}/manifests/{ref}", "/v2/{name}/referrers/{ref}",
          "/v2/{name}/blobs/uploads/", "/v2/{name}/blobs/uploads/{upload}", "/v2/{name}/blobs/{ref}", "/v2/{name}",
          "/v2/{name}/{ref}"]


@SETTINGS
@given(data=st.data(), method=st.sampled_from(["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"]),
       template=st.sampled_from(ROUTES), name=names, body=st.binary(max_size=64))
def test_any_name_reference_and_method(target: Target, data: st.DataObject, method: str, template: str, name: str,
                                       body: bytes) -> None:
    ref = data.draw(st.one_of(st.sampled_from(target.digests), tags, digests))
    upload = data.draw(st.one_of(st.sampled_from(target.uploads), anything))
    url = template.format(name=path(name), ref=seg(ref), upload=seg(upload))
    check(target, method, url, body=body, auth=data.draw(st.booleans()))


# -- query parameters --------------------------------------------------------------------------------
# Each route with the parameters it reads, and what they may be (beside anything at all).
QUERIES = {
    "GET /v2/_catalog": {"n": numbers, "last": names},
    "GET /v2/{name}/tags/list": {"n": numbers, "last": tags},
    "GET /v2/{name}/referrers/{ref}": {"artifactType": media_types},
    "POST /v2/{name}/blobs/uploads/": {"mount": digests, "from": names, "digest": digests},
    "PUT /v2/{name}/blobs/uploads/{upload}": {"digest": digests, "_state": anything},
}


@SETTINGS
@given(data=st.data(), route=st.sampled_from(sorted(QUERIES)), junk=st.text(max_size=30))
def test_any_query_parameters(target: Target, data: st.DataObject, route: str, junk: str) -> None:
    method, template = route.split(" ")
    real = {"mount": target.digests, "from": REPOS, "digest": target.digests, "last": target.tags}
    params = data.draw(st.fixed_dictionaries({}, optional={
        k: st.one_of(v, anything, st.sampled_from(real.get(k, [""]))) for k, v in QUERIES[route].items()}))
    name = data.draw(st.sampled_from(REPOS[:2]))
    url = template.format(name=name, ref=seg(data.draw(st.sampled_from(target.digests))),
                          upload=session(target, name) if "{upload}" in template else "")
    # Also the raw query string as a client may send it: repeated, undecodable or malformed escapes.
    query = urlencode(params) + data.draw(st.sampled_from(["", "&n=1&n=2", "&last=%ff%fe", "&from=%zz", "&%00=1"]))
    check(target, method, f"{url}?{query}&{quote(junk, safe='=&')}", body=data.draw(st.binary(max_size=16)))


# -- headers -----------------------------------------------------------------------------------------
@SETTINGS
@given(data=st.data(), kind=st.sampled_from(["blob", "manifest", "patch", "put", "post"]),
       headers=st.dictionaries(st.sampled_from(["Range", "Content-Range", "Content-Type", "Accept", "If-None-Match"]),
                               st.one_of(ranges, media_types, anything), max_size=3),
       body=st.binary(max_size=32))
def test_any_headers(target: Target, data: st.DataObject, kind: str, headers: dict[str, str], body: bytes) -> None:
    name = data.draw(st.sampled_from(REPOS[:2]))
    ref = data.draw(st.sampled_from(target.digests + target.tags))
    if kind in ("blob", "manifest"):
        method, url = data.draw(st.sampled_from(["GET", "HEAD"])), f"/v2/{name}/{kind}s/{ref}"
    elif kind == "post":
        method, url = "POST", f"/v2/{name}/blobs/uploads/?digest={seg(digest(body))}"
    else:  # a chunk, or the last one with the digest of the whole
        url = f"/v2/{name}/blobs/uploads/{session(target, name)}"
        method, url = ("PATCH", url) if kind == "patch" else ("PUT", f"{url}?digest={digest(b'0123456789' + body)}")
    # Content-Length as declared: shorter than the body, longer (the body then ends early), or not a number.
    length = data.draw(st.one_of(st.none(), numbers, st.integers(0, len(body) + 8).map(str)))
    if _complete(length, body):
        check(target, method, url, headers, body, length)
    else:  # the body ends before its declared length, or goes past it: an answer or a close, never a 5xx
        a = send(target, method, url, headers, body, length)
        assert a is None or a.status < 500, (method, url, headers, length, a)


def _complete(length: str | None, body: bytes) -> bool:
    """The body is what the request says it is, or the length is no number at all (a 400 from h11).
    Bytes past a shorter length are a second request where none may follow (`Connection: close`)."""
    if length is None:
        return True
    number = length.strip(" \t")  # h11 takes the header's value without the whitespace around it
    return not (number.isascii() and number.isdigit()) or (number.lstrip("0") or "0") == str(len(body))


# -- manifest bodies ---------------------------------------------------------------------------------
def _mutated(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    out = dict(doc)
    for key in data.draw(st.lists(st.sampled_from([*doc, "subject", "annotations", "artifactType"]), max_size=3)):
        out[key] = data.draw(json_values)
    return out


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(["json", "deep", "image", "index", "bytes"]), content_type=media_types)
def test_any_manifest_body(target: Target, data: st.DataObject, kind: str, content_type: str) -> None:
    img = image("fuzz", layers=2)
    if kind == "json":
        body = json.dumps(data.draw(json_values)).encode()
    elif kind == "deep":
        depth = data.draw(st.sampled_from([10, 100, 1000, 10_000, 100_000]))
        opening = data.draw(st.sampled_from(["[", '{"a":', '{"layers":[']))
        closing = data.draw(st.sampled_from(["", "]" * depth, "}" * depth]))
        body = (opening * depth + closing).encode()
    elif kind in ("image", "index"):
        doc = json.loads(img.manifest if kind == "image" else index([(img, ("linux", "amd64"))]))
        if kind == "index" and data.draw(st.booleans()):
            doc["manifests"].append(_mutated(descriptor(OCI_MANIFEST, img.manifest), data))
        body = json.dumps(_mutated(doc, data)).encode()
    else:
        body = data.draw(st.binary(max_size=256))
    ref = data.draw(st.one_of(st.sampled_from(["v2", "fuzz-tag", digest(body)]), tags, digests))
    check(target, "PUT", f"/v2/{data.draw(st.sampled_from(REPOS))}/manifests/{seg(ref)}",
          {"Content-Type": content_type}, body)


# -- the upload state machine ------------------------------------------------------------------------
class Uploads(RuleBasedStateMachine):
    """Random sequences on sessions; beyond "no 5xx", a session's acknowledged bytes follow a model."""

    target: Target  # set by the test below
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, bytes] = {}

    def _url(self, upload: str) -> str:
        return f"/v2/fuzz/a/blobs/uploads/{upload}"

    @initialize()
    def nothing(self) -> None:
        pass

    @rule(target=sessions)
    def start(self) -> str:
        a = check(self.target, "POST", "/v2/fuzz/a/blobs/uploads/")
        assert a.status == 202
        upload = a.headers["location"].rsplit("/", 1)[1]
        self.model[upload] = b""
        return upload

    @rule(upload=sessions, chunk=st.binary(max_size=300), honest=st.booleans(), declared=st.none() | ranges)
    def patch(self, upload: str, chunk: bytes, honest: bool, declared: str | None) -> None:
        have = self.model.get(upload)
        headers = {}
        if honest and have is not None and chunk:
            headers["Content-Range"] = f"{len(have)}-{len(have) + len(chunk) - 1}"
        elif declared is not None:
            headers["Content-Range"] = declared
        a = check(self.target, "PATCH", self._url(upload), headers, chunk)
        if have is None:  # an ended session; a malformed Content-Range may be noticed first
            assert a.status == 404 or (a.status == 416 and declared is not None), (a.status, a.body)
        elif a.status == 202:
            self.model[upload] = have + chunk
            assert a.headers["range"] == f"0-{max(len(have) + len(chunk) - 1, 0)}"
        else:
            assert not (honest and chunk), (a.status, a.body)

    @rule(upload=sessions, last=st.binary(max_size=100), right=st.booleans())
    def finish(self, upload: str, last: bytes, right: bool) -> None:
        have = self.model.pop(upload, None)
        whole = (have or b"") + last
        d = digest(whole if right else whole + b"!")
        a = check(self.target, "PUT", f"{self._url(upload)}?digest={d}", body=last)
        if have is None:
            assert a.status == 404
        elif right:
            assert a.status == 201, (a.status, a.body)
            assert check(self.target, "GET", f"/v2/fuzz/a/blobs/{d}").body == whole
        else:
            assert a.status == 400  # DIGEST_INVALID, and the session is gone

    @rule(upload=sessions)
    def status(self, upload: str) -> None:
        a = check(self.target, "GET", self._url(upload))
        have = self.model.get(upload)
        assert a.status == (404 if have is None else 204)
        if have is not None:
            assert a.headers["range"] == f"0-{max(len(have) - 1, 0)}"

    @rule(upload=sessions)
    def cancel(self, upload: str) -> None:
        a = check(self.target, "DELETE", self._url(upload))
        assert a.status == (404 if self.model.pop(upload, None) is None else 204)

    @rule(body=st.binary(max_size=200), right=st.booleans())
    def monolithic(self, body: bytes, right: bool) -> None:
        d = digest(body if right else body + b"!")
        assert check(self.target, "POST", f"/v2/fuzz/a/blobs/uploads/?digest={d}", body=body).status == (
            201 if right else 400)


def test_upload_state_machine(target: Target) -> None:
    Uploads.target = target
    Uploads.TestCase.settings = settings(SETTINGS, max_examples=25, stateful_step_count=15)
    Uploads.TestCase().runTest()
