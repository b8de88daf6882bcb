"""The distribution-spec v1.1 HTTP API (`/v2/...`): parse the request, call a use case, answer."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from ncr_trio.auth.control import registry_of
from ncr_trio.cache.sources import Source
from ncr_trio.errors import RegistryError
from ncr_trio.http.asgi import Request, Response, json_response
from ncr_trio.http.routes import _NAME, _REF, Route, route
from ncr_trio.registry import RegistryService
from ncr_trio.registry.uploads import parse_content_range, range_header
from ncr_trio.types import Digest, MediaType, validate_name

_UPLOAD = f"/v2/{_NAME}/blobs/uploads/(?P<upload>[^/]+)"


def _digest_param(request: Request, name: str = "digest") -> Digest:
    value = request.query(name)
    if value is None:
        raise RegistryError("DIGEST_INVALID", f"the {name} query parameter is required")
    return Digest.parse(value)


def _limit(request: Request) -> int | None:
    """`n`; a number past what SQL's LIMIT takes (64 bits) asks for everything, as the largest does."""
    n = request.query_int("n")
    return None if n is None else min(n, 2**63 - 1)


def _paginate(path: str, items: list[str], limit: int | None, key: str, extra: dict[str, object]) -> Response:
    headers: dict[str, str] = {}
    if limit is not None and limit > 0 and len(items) == limit:
        headers["Link"] = f'<{path}?{urlencode({"n": limit, "last": items[-1]})}>; rel="next"'
    return json_response(200, json.dumps({**extra, key: items}).encode(), headers)


class V2API:
    def __init__(self, service: RegistryService) -> None:
        self.s = service

    def routes(self) -> list[Route]:
        return [
            route("base", "GET HEAD", "/v2/", "login", self.base),
            route("catalog", "GET", "/v2/_catalog", "catalog", self.catalog),
            route("tags", "GET", f"/v2/{_NAME}/tags/list", "pull", self.tags),
            route("manifest", "GET HEAD", f"/v2/{_NAME}/manifests/{_REF}", "pull", self.get_manifest),
            route("manifest.put", "PUT", f"/v2/{_NAME}/manifests/{_REF}", "push", self.put_manifest),
            route("manifest.delete", "DELETE", f"/v2/{_NAME}/manifests/{_REF}", "delete", self.delete_manifest),
            route("referrers", "GET", f"/v2/{_NAME}/referrers/{_REF}", "pull", self.referrers),
            route("upload.start", "POST", f"/v2/{_NAME}/blobs/uploads/?", "push", self.start_upload),
            route("upload.status", "GET", _UPLOAD, "push", self.upload_status),
            route("upload.patch", "PATCH", _UPLOAD, "push", self.patch_upload),
            route("upload.finish", "PUT", _UPLOAD, "push", self.finish_upload),
            route("upload.cancel", "DELETE", _UPLOAD, "push", self.cancel_upload),
            route("blob", "GET HEAD", f"/v2/{_NAME}/blobs/{_REF}", "pull", self.get_blob),
            route("blob.delete", "DELETE", f"/v2/{_NAME}/blobs/{_REF}", "delete", self.delete_blob),
        ]

    # -- base and catalog ---------------------------------------------------------------------
    async def base(self, request: Request) -> Response:
        return json_response(200, b"{}")

    async def catalog(self, request: Request) -> Response:
        limit = _limit(request)
        names = await self._reachable_repositories(request, limit, request.query("last"))
        return _paginate("/v2/_catalog", names, limit, "repositories", {})

    async def _reachable_repositories(self, request: Request, limit: int | None, last: str | None) -> list[str]:
        """A page of the catalog without the registries this client cannot reach (public URI off,
        CIDR allowlists): pages of the stored list are read until `limit` names are left."""
        hidden = {i.name for i in await self.s.namespaces.list() if not request.reaches(i)}
        found: list[str] = []
        while True:
            page = await self.s.meta.list_repositories(limit, last)
            found += [n for n in page if registry_of(n) not in hidden]
            if limit is None or len(page) < limit or len(found) >= limit:
                return found[:limit]
            last = page[-1]

    async def tags(self, request: Request) -> Response:
        name = request.params["name"]
        limit = _limit(request)
        tags = await self.s.manifests.tags(name, limit, request.query("last"))
        return _paginate(f"/v2/{name}/tags/list", tags, limit, "tags", {"name": name})

    # -- manifests ----------------------------------------------------------------------------
    async def _source(self, request: Request) -> Source | None:
        """The source registry when the repository is in a cache-type registry (it pulls through)."""
        info = request.registry
        return None if info is None or info.cache is None else await self.s.caches.source(info.cache)

    async def get_manifest(self, request: Request) -> Response:
        name, reference = request.params["name"], request.params["reference"]
        source = await self._source(request)
        m = await (self.s.manifests.get(name, reference) if source is None
                   else self.s.pull_through.manifest(source, name, reference))
        await self.s.scans.check_pull(name, m)  # pull prevention: 412 for a vulnerable image (scan/jobs.py)
        # signature enforcement: 412 for an image without the signature its registry requires (trust/service.py)
        await self.s.trust.check_pull(name, reference, m, request.principal)
        if request.method == "GET":
            self.s.catalog.pulls.record(request.params["name"], m.digest)
        headers = {"Content-Type": m.media_type, "Docker-Content-Digest": m.digest, "ETag": f'"{m.digest}"'}
        return Response(200, headers, m.content)

    async def put_manifest(self, request: Request) -> Response:
        name, reference = request.params["name"], request.params["reference"]
        content = await request.read(self.s.config.max_manifest_bytes)
        put = await self.s.manifests.put(name, reference, content, request.header("content-type"))
        headers = {"Location": f"/v2/{name}/manifests/{put.digest}", "Docker-Content-Digest": str(put.digest)}
        if put.subject is not None:
            headers["OCI-Subject"] = put.subject
        return Response(201, headers)

    async def delete_manifest(self, request: Request) -> Response:
        await self.s.manifests.delete(request.params["name"], request.params["reference"])
        return Response(202)

    async def referrers(self, request: Request) -> Response:
        digest = Digest.parse(request.params["reference"])
        artifact_type = request.query("artifactType")
        index = await self.s.manifests.referrers(request.params["name"], digest, artifact_type)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
        return json_response(200, json.dumps(index).encode(), headers, content_type=MediaType.OCI_INDEX)

    # -- blobs --------------------------------------------------------------------------------
    async def get_blob(self, request: Request) -> Response:
        name, digest = request.params["name"], Digest.parse(request.params["reference"])
        headers = {"Docker-Content-Digest": str(digest), "Accept-Ranges": "bytes",
                   "Content-Type": MediaType.OCTET_STREAM, "ETag": f'"{digest}"'}
        source = await self._source(request)
        if request.method == "HEAD":
            size = await (self.s.blobs.size(name, digest) if source is None
                          else self.s.pull_through.blob_size(source, name, digest))
            return Response(200, {**headers, "Content-Length": str(size)})
        if source is None:
            # An object store serves the bytes itself: 307 to a presigned URL (the issue's "layers from
            # Object Storage"); clients send their Range header on to it.
            location = await self.s.blobs.redirect(name, digest)
            if location is not None:
                return Response(307, {"Location": location, "Docker-Content-Digest": str(digest)})
        blob = await (self.s.blobs.open(name, digest) if source is None
                      else self.s.pull_through.open_blob(source, name, digest))
        start, end, status = 0, blob.size - 1, 200
        range_value = request.header("range")
        if range_value is not None:
            try:
                start, end = _parse_range(range_value, blob.size)
            except RegistryError:
                blob.close()
                raise
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        length = max(end - start + 1, 0)
        return Response(status, headers, blob.stream(start, end, self.s.disk, spans=request.zero_copy), length=length)

    async def delete_blob(self, request: Request) -> Response:
        await self.s.blobs.delete(request.params["name"], Digest.parse(request.params["reference"]))
        return Response(202)

    # -- uploads ------------------------------------------------------------------------------
    def _upload_headers(self, name: str, upload_id: str, size: int) -> dict[str, str]:
        return {"Location": f"/v2/{name}/blobs/uploads/{upload_id}", "Range": range_header(size),
                "Docker-Upload-UUID": upload_id}

    def _blob_created(self, name: str, digest: Digest) -> Response:
        return Response(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)})

    async def start_upload(self, request: Request) -> Response:
        name = request.params["name"]
        mount, source = request.query("mount"), request.query("from")
        # A mount links a blob from `from`: only if the token may pull there (else a plain upload).
        if mount is not None and source and request.principal.token_allows(source, "pull"):
            digest = Digest.parse(mount)
            validate_name(source)
            if await self.s.uploads.mount(name, digest, source) is not None:
                await request.drain()
                return self._blob_created(name, digest)
        if request.query("digest") is not None:
            digest = _digest_param(request)
            await self.s.uploads.monolithic(name, digest, request.body(), request.content_length())
            return self._blob_created(name, digest)
        await request.drain()
        status = await self.s.uploads.start(name)
        return Response(202, self._upload_headers(name, status.id, 0))

    async def upload_status(self, request: Request) -> Response:
        name = request.params["name"]
        status = await self.s.uploads.status(name, request.params["upload"])
        return Response(204, self._upload_headers(name, status.id, status.size))

    async def patch_upload(self, request: Request) -> Response:
        name, upload_id = request.params["name"], request.params["upload"]
        status = await self.s.uploads.append(name, upload_id, request.body(), _content_range(request),
                                             request.content_length())
        return Response(202, self._upload_headers(name, upload_id, status.size))

    async def finish_upload(self, request: Request) -> Response:
        name, upload_id = request.params["name"], request.params["upload"]
        digest = _digest_param(request)
        await self.s.uploads.finish(name, upload_id, digest, request.body(), _content_range(request),
                                    request.content_length())
        return self._blob_created(name, digest)

    async def cancel_upload(self, request: Request) -> Response:
        await self.s.uploads.cancel(request.params["name"], request.params["upload"])
        return Response(204)


def _content_range(request: Request) -> tuple[int, int] | None:
    raw = request.header("content-range")
    return parse_content_range(raw) if raw is not None else None


def _parse_range(value: str, size: int) -> tuple[int, int]:
    """One `bytes=start-end`, `bytes=start-` or `bytes=-suffix` range, clamped to the blob."""
    unit, _, spec = value.partition("=")
    bad = RegistryError("RANGE_INVALID", f"unsatisfiable Range {value[:100]!r}",
                        headers={"Content-Range": f"bytes */{size}"})
    if unit.strip() != "bytes" or "," in spec:
        raise bad
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            n = int(last)
            start, end = max(size - n, 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise bad from None
    if start < 0 or start >= size or end < start:
        raise bad
    return start, end


__all__ = ["V2API"]
