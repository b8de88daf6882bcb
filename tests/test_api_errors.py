"""Bad input gets the right OCI error code and status, leaves nothing stored, and never a 500."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.auth import token
from tests.support.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    canonical,
    descriptor,
    digest,
    image,
    push_blob,
    push_image,
    push_manifest,
)
from tests.support.server import Server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(data=tmp_path_factory.mktemp("api") / "data").start()
    yield s
    s.stop()


@pytest.fixture
def client(srv: Server) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def error_code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    errors = r.json()["errors"]
    assert errors and isinstance(errors[0]["message"], str)
    return str(errors[0]["code"])


def upload_files(srv: Server) -> list[str]:
    return sorted(os.listdir(srv.data / "uploads"))


def blob_files(srv: Server) -> list[str]:
    return sorted(str(p.relative_to(srv.data)) for p in (srv.data / "blobs").rglob("*") if p.is_file())


# -- names, tags, digests --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["UPPER/case", "a//b", "-lead", "trail-", "a..b", "x" * 256, "a/b/", "sp ace"])
def test_bad_repository_names(client: httpx.Client, name: str) -> None:
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code in (400, 404)
    if r.status_code == 400:
        assert error_code(r) == "NAME_INVALID"


def test_name_of_255_characters_is_accepted(client: httpx.Client) -> None:
    name = "a/" * 126 + "abc"
    assert len(name) == 255
    push_blob(client, name, b"long name")


@pytest.mark.parametrize("tag", ["-dash", ".dot", "t" * 129, "bad+tag"])
def test_bad_tags_refused(client: httpx.Client, tag: str) -> None:
    img = image("badtag")
    for blob in img.blobs.values():
        push_blob(client, "errors/tags", blob)
    r = push_manifest(client, "errors/tags", tag, img.manifest)
    assert r.status_code == 400
    assert error_code(r) == "TAG_INVALID"
    assert client.get("/v2/errors/tags/tags/list").json()["tags"] in (None, [])


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "nocolon",
                                 "sha512:" + "0" * 64])
def test_bad_digests(client: httpx.Client, bad: str) -> None:
    r = client.get(f"/v2/errors/digests/blobs/{bad}")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    r = client.post("/v2/errors/digests/blobs/uploads/", params={"digest": bad}, content=b"x")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_unknown_blob_and_manifest(client: httpx.Client) -> None:
    d = digest(b"never pushed")
    assert error_code(client.get(f"/v2/errors/unknown/blobs/{d}")) == "BLOB_UNKNOWN"
    assert client.head(f"/v2/errors/unknown/blobs/{d}").status_code == 404
    assert error_code(client.get(f"/v2/errors/unknown/manifests/{d}")) == "MANIFEST_UNKNOWN"
    assert error_code(client.get("/v2/errors/unknown/manifests/latest")) == "MANIFEST_UNKNOWN"
    assert error_code(client.get("/v2/errors/never/tags/list")) == "NAME_UNKNOWN"


@pytest.mark.parametrize("reference", [".INVALID_MANIFEST_NAME", "-dash", "t" * 129, "bad+tag", "sha256:abc",
                                       "md5:" + "0" * 32, "sha256:" + "G" * 64])
def test_pulling_an_invalid_reference_is_manifest_unknown(client: httpx.Client, reference: str) -> None:
    # Not a tag nor a digest: no manifest has it (404, as Distribution and conformance v1.1.1 answer);
    # only a push with it is a client mistake (TAG_INVALID, DIGEST_INVALID).
    r = client.get(f"/v2/errors/refs/manifests/{reference}")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    assert client.head(f"/v2/errors/refs/manifests/{reference}").status_code == 404
    assert push_manifest(client, "errors/refs", reference, image("refs").manifest).status_code == 400


# -- uploads ----------------------------------------------------------------------------------------
def test_monolithic_wrong_digest_stores_nothing(client: httpx.Client, srv: Server) -> None:
    before = blob_files(srv)
    r = client.post("/v2/errors/mono/blobs/uploads/", params={"digest": digest(b"other")}, content=b"payload")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    assert client.head(f"/v2/errors/mono/blobs/{digest(b'payload')}").status_code == 404
    assert blob_files(srv) == before
    assert not [f for f in upload_files(srv) if f.startswith("mono-")]


def test_session_wrong_digest_ends_the_session(client: httpx.Client, srv: Server) -> None:
    loc = client.post("/v2/errors/session/blobs/uploads/").headers["location"]
    assert client.patch(loc, content=b"abc", headers={"Content-Range": "0-2"}).status_code == 202
    r = client.put(loc, params={"digest": digest(b"abd")})
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    assert client.get(loc).status_code == 404
    assert loc.rsplit("/", 1)[1] not in upload_files(srv)


def test_size_mismatch(client: httpx.Client) -> None:
    loc = client.post("/v2/errors/size/blobs/uploads/").headers["location"]
    r = client.patch(loc, content=b"abcd", headers={"Content-Range": "0-9"})
    assert r.status_code == 416
    assert error_code(r) == "RANGE_INVALID"
    assert client.get(loc).headers["range"] == "0-0"


@pytest.mark.parametrize("header", ["garbage", "5-2", "bytes=x-y", "-1-3", "0-"])
def test_garbage_content_range(client: httpx.Client, header: str) -> None:
    loc = client.post("/v2/errors/range/blobs/uploads/").headers["location"]
    r = client.patch(loc, content=b"abc", headers={"Content-Range": header})
    assert r.status_code == 416
    assert error_code(r) == "RANGE_INVALID"
    status = client.get(loc)
    assert status.status_code == 204 and status.headers["range"] == "0-0"


def test_out_of_order_and_overlapping_chunks(client: httpx.Client) -> None:
    loc = client.post("/v2/errors/chunks/blobs/uploads/").headers["location"]
    r = client.patch(loc, content=b"0123", headers={"Content-Range": "0-3"})
    assert r.status_code == 202 and r.headers["range"] == "0-3"
    for rng, body in (("8-11", b"89ab"), ("2-5", b"2345"), ("0-3", b"0123")):
        r = client.patch(r.headers["location"] if "location" in r.headers else loc, content=body,
                         headers={"Content-Range": rng})
        assert r.status_code == 416
        assert r.headers["range"] == "0-3"
    r = client.patch(loc, content=b"4567", headers={"Content-Range": "4-7"})
    assert r.status_code == 202 and r.headers["range"] == "0-7"
    r = client.put(loc, params={"digest": digest(b"01234567")})
    assert r.status_code == 201
    assert client.get(f"/v2/errors/chunks/blobs/{digest(b'01234567')}").content == b"01234567"


def test_unknown_upload_session(client: httpx.Client) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(method, "/v2/errors/unknown/blobs/uploads/not-a-session",
                           params={"digest": digest(b"")} if method == "PUT" else None)
        assert r.status_code == 404, method
        assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_session_of_another_repository_is_unknown(client: httpx.Client) -> None:
    loc = client.post("/v2/errors/owner/blobs/uploads/").headers["location"]
    upload_id = loc.rsplit("/", 1)[1]
    r = client.get(f"/v2/errors/intruder/blobs/uploads/{upload_id}")
    assert r.status_code == 404


def test_missing_digest_on_put(client: httpx.Client) -> None:
    loc = client.post("/v2/errors/nodigest/blobs/uploads/").headers["location"]
    r = client.put(loc, content=b"x")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_truncated_body_is_not_stored(srv: Server) -> None:
    """A client that declares more bytes than it sends and hangs up leaves nothing behind."""
    import socket

    data = b"z" * 1000
    d = digest(data + b"z" * 1000)
    bearer = token(srv.url, *srv.admin, "repository:errors/truncated:pull,push")
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(
            f"POST /v2/errors/truncated/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {bearer}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: 2000\r\n\r\n".encode() + data
        )
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
    with srv.client() as c:
        assert c.head(f"/v2/errors/truncated/blobs/{d}").status_code == 404
    assert not [f for f in upload_files(srv) if f.startswith("mono-")]


# -- manifests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,reason", [
    (b"{not json", "syntax"),
    (b"[]", "not an object"),
    (canonical({"schemaVersion": 1, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}), "schemaVersion"),
    (canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}), "no config"),
    (canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "x", "digest": "sha256:1",
                                                                          "size": 1}, "layers": []}), "bad digest"),
    (canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor("application/vnd.oci.image.config.v1+json", b"{}") | {"size": -1},
                "layers": []}), "negative size"),
    (canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": "nope"}), "manifests not a list"),
    (canonical({"schemaVersion": 2, "mediaType": "application/vnd.example+json"}), "unknown media type"),
    (b"\xff\xfe", "not utf-8"),
])
def test_malformed_manifests(client: httpx.Client, body: bytes, reason: str) -> None:
    r = push_manifest(client, "errors/manifests", "bad", body)
    assert r.status_code == 400, reason
    assert error_code(r) == "MANIFEST_INVALID", reason
    assert client.get("/v2/errors/manifests/manifests/bad").status_code == 404


def test_media_type_field_and_content_type_must_agree(client: httpx.Client) -> None:
    img = image("disagree")
    for blob in img.blobs.values():
        push_blob(client, "errors/disagree", blob)
    r = push_manifest(client, "errors/disagree", "v1", img.manifest, media_type=OCI_INDEX)
    assert error_code(r) == "MANIFEST_INVALID"


def test_manifest_referencing_missing_blobs(client: httpx.Client) -> None:
    img = image("missing")
    push_blob(client, "errors/missing", img.config)  # the layer is never pushed
    r = push_manifest(client, "errors/missing", "v1", img.manifest)
    assert r.status_code == 404
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert client.get("/v2/errors/missing/manifests/v1").status_code == 404
    assert client.get(f"/v2/errors/missing/manifests/{img.digest}").status_code == 404


def test_blob_in_another_repository_does_not_count(client: httpx.Client) -> None:
    img = image("isolated")
    push_image(client, "errors/owner-repo", img, "v1")
    r = push_manifest(client, "errors/other-repo", "v1", img.manifest)
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_index_with_missing_child(client: httpx.Client) -> None:
    child = image("orphan-child")
    r = push_manifest(client, "errors/index", "v1", __import__("tests.support.oci", fromlist=["index"]).index(
        [(child, ("linux", "amd64"))]), media_type=OCI_INDEX)
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_oversized_manifest(client: httpx.Client) -> None:
    big = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"x": "y" * (4 * 1024 * 1024)}})
    r = push_manifest(client, "errors/big", "v1", big)
    assert r.status_code == 413
    assert error_code(r) == "SIZE_INVALID"


def test_manifest_digest_mismatch(client: httpx.Client) -> None:
    img = image("mismatch")
    for blob in img.blobs.values():
        push_blob(client, "errors/mismatch", blob)
    r = push_manifest(client, "errors/mismatch", digest(b"something else"), img.manifest)
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_schema1_refused(client: httpx.Client) -> None:
    body = canonical({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []})
    r = push_manifest(client, "errors/schema1", "v1", body,
                      media_type="application/vnd.docker.distribution.manifest.v1+prettyjws")
    assert error_code(r) == "MANIFEST_INVALID"


def test_unknown_route_and_method(client: httpx.Client) -> None:
    r = client.get("/v2/errors/x/nothing-here")
    assert r.status_code == 404
    r = client.post("/v2/errors/x/manifests/latest")
    assert r.status_code == 405
    assert "PUT" in r.headers["allow"]


def test_pagination_number_invalid(client: httpx.Client) -> None:
    assert error_code(client.get("/v2/_catalog", params={"n": "many"})) == "PAGINATION_NUMBER_INVALID"
    assert error_code(client.get("/v2/_catalog", params={"n": "-1"})) == "PAGINATION_NUMBER_INVALID"


def test_never_a_500(srv: Server) -> None:
    assert "Traceback" not in srv.log(), srv.log()[-4000:]
