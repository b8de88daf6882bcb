"""The route table finds the same route for every path shape the distribution API has."""

from __future__ import annotations

import pytest

from ncr_trio.http.routes import RouteTable
from ncr_trio.http.v2 import V2API

D = "sha256:" + "a" * 64


class _NoService:
    """The table is built from the handlers' names only; no request reaches them here."""


TABLE = RouteTable(V2API(_NoService()).routes())  # type: ignore[arg-type]


@pytest.mark.parametrize("method,path,route,params", [
    ("GET", "/v2/", "base", {}),
    ("GET", "/v2/_catalog", "catalog", {}),
    ("GET", "/v2/a/b/tags/list", "tags", {"name": "a/b"}),
    ("PUT", "/v2/a/manifests/v1", "manifest.put", {"name": "a", "reference": "v1"}),
    ("HEAD", f"/v2/a/manifests/{D}", "manifest", {"name": "a", "reference": D}),
    ("GET", f"/v2/a/referrers/{D}", "referrers", {"name": "a", "reference": D}),
    ("POST", "/v2/a/blobs/uploads/", "upload.start", {"name": "a"}),
    ("POST", "/v2/a/blobs/uploads", "upload.start", {"name": "a"}),
    ("PATCH", "/v2/a/b/c/blobs/uploads/u-1", "upload.patch", {"name": "a/b/c", "upload": "u-1"}),
    ("GET", f"/v2/a/blobs/{D}", "blob", {"name": "a", "reference": D}),
    ("DELETE", f"/v2/blobs/blobs/{D}", "blob.delete", {"name": "blobs", "reference": D}),
    ("GET", "/v2/manifests/manifests/manifests", "manifest", {"name": "manifests", "reference": "manifests"}),
])
def test_paths_find_their_route(method: str, path: str, route: str, params: dict[str, str]) -> None:
    by_method, found = TABLE.match(path)
    assert by_method[method].name == route
    assert found == params


@pytest.mark.parametrize("path", ["/v2", "/v1/", "/v2/a/unknown/x", "/"])
def test_unknown_paths(path: str) -> None:
    assert TABLE.match(path) == ({}, {})
