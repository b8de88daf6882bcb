"""A source registry's /v2 API as a client: one `Upstream` per image cache, kept by `Upstreams`.

A request (`_fetch`) goes through four steps:

1. Credentials. The first request to a source goes without; a 401 with a `WWW-Authenticate`
   challenge teaches the client what the source wants, and the request is sent once more (a second
   401 is the answer: the credentials are refused). From then on requests carry it at once: for
   `Bearer realm,service[,scope]` a token for the request's scope (`repository:<name>:pull`), fetched
   from the realm with the cache's Basic login (cache/credentials.py; none: an anonymous token), read
   from `token` or `access_token`, valid `expires_in` seconds (60 when not said, as the Docker token
   spec says) and kept per scope until shortly before it expires; for `Basic`, the login itself.
   An ECR source's login is itself fetched (GetAuthorizationToken) and kept the same way.
2. Egress. Every hop connects only where the client's `Reach` allows: for an image cache a port in
   `cache_allowed_ports` and an address in `cache_allowed_networks`; for replication any port and an
   address in `replication_allowed_networks` (registry/egress.py: the name resolved once, the connection made to the
   checked address, Host and TLS keeping the name). The port rule holds for every hop, redirects and
   token realms too: registries, realms and the CDNs they redirect to all serve on 443.
3. Redirects. Blob GETs at Docker Hub, ECR and GCR answer with a redirect to a CDN or S3; the client
   follows at most MAX_REDIRECTS of them (any request's, not only blobs'), each hop checked as in 2.
   The source's Authorization goes only to the source's own origin (scheme, host, port), never to
   another host. Connections are kept for reuse to the source's origin only (one name: a pooled
   connection never carries a request for another name); other hosts get a connection per request.
4. Errors. Everything foreign (httpx, egress) becomes an UpstreamError once, here: `status` None when
   the source was not reached or did not answer in time (`cache_timeout_seconds`, for connecting and
   for each wait for bytes), the source's HTTP status when it refused (404: UpstreamNotFound), and 502
   when its answer cannot be used (a manifest whose digest does not match, one larger than asked, a
   malformed token answer, too many redirects).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx
import trio

from ncr_trio.cache import credentials
from ncr_trio.cache.credentials import Login
from ncr_trio.cache.sources import Source
from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.registry import egress
from ncr_trio.registry.manifests import compute_digest
from ncr_trio.types import Digest, MediaType, load_json

MAX_REDIRECTS = 5
PAGE_SIZE = 1000  # tags or repositories asked per page
MAX_PAGES = 1000  # pages followed at most
LIST_MAX_BYTES = 8 << 20  # one page of tags or repositories
API_PAGE_SIZE = 500  # images asked per page of another ncr-trio's management API (its most)
MANAGEMENT_SCOPE = "management:api:*"  # another ncr-trio's management token
PUSH_CHUNK = 16 << 20  # bytes per PATCH: what a dropped connection may cost again (benchmarks/replicate.py)
PUSH_ATTEMPTS = 6
PUSH_BACKOFF = 0.5  # seconds before the first retry, doubled each time
TOKEN_MAX_BYTES = 256 * 1024  # a token answer (Docker Hub's are a few KiB), or ECR's
ERROR_MAX_BYTES = 8 * 1024  # what is read of an error answer for its message
KEPT_MAX = 1024  # tokens kept per source (one per repository pulled recently)
DEFAULT_EXPIRES_IN = 60  # the Docker token spec: a token without expires_in lasts 60 s
REFRESH_MARGIN = 300.0  # a token or login is fetched again this long before it expires (at most a quarter of its life)
ACCEPT = ", ".join(sorted(MediaType.MANIFESTS))
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# A challenge's auth-params (RFC 9110 11.2): key=token or key="quoted string" (with backslash escapes)
_PARAM = re.compile(r'(?P<key>[A-Za-z][\w-]*)\s*=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s,"]*))')
_UNESCAPE = re.compile(r"\\(.)")

T = TypeVar("T")
Body = bytes | httpx.AsyncByteStream | None  # a request's body: small and whole, or streamed (read once)


class UpstreamError(Exception):
    """A request to the source that did not give what was asked: `status` None when the source was not
    reached (connect error, timeout, refused by the egress rules), else the status of its answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamNotFound(UpstreamError):
    """404 at the source: the manifest, blob or repository is not there."""


@dataclass(frozen=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    content: bytes


@dataclass
class BlobBody:
    size: int  # of the whole blob
    start: int  # offset of the first byte `chunks` yields: 0 when the source ignored the Range asked for
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class Mount:
    """A cross-repository mount's answer: mounted, or the upload session the target opened instead."""

    mounted: bool
    location: httpx.URL | None


@dataclass
class PushReport:
    attempts: int = 0
    sent: int = 0  # body bytes handed to the connection, retries included


class _Rest:
    """A blob's bytes from an iterator of pieces, taken `n` at a time as the bodies of PATCH requests:
    a piece that straddles a chunk's end is split, its rest kept for the next chunk."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._left = b""

    def take(self, n: int, report: PushReport) -> _Chunk:
        return _Chunk(self, n, report)

    async def piece(self, n: int) -> bytes:
        """At most `n` next bytes (the usual case, reads aligned with chunks: a read as it is, no copy)."""
        if not self._left:
            try:
                self._left = await anext(self._source)
            except StopAsyncIteration:
                raise UpstreamError("the blob's bytes ended before its size", 502) from None
        if len(self._left) <= n:
            piece, self._left = self._left, b""
        else:
            piece, self._left = self._left[:n], self._left[n:]
        return piece


class _Chunk(httpx.AsyncByteStream):
    """One PATCH's body: `n` bytes of a `_Rest`. An iterator object rather than a generator, so that a
    request cut short leaves nothing to finalize."""

    def __init__(self, rest: _Rest, n: int, report: PushReport) -> None:
        self._rest, self._left, self._report = rest, n, report

    def __aiter__(self) -> _Chunk:
        return self

    async def __anext__(self) -> bytes:
        while self._left > 0:
            piece = await self._rest.piece(self._left)
            if piece:
                self._left -= len(piece)
                self._report.sent += len(piece)
                return piece
        raise StopAsyncIteration


def _retryable(e: UpstreamError) -> bool:
    """A failure worth resuming after: not reached, the connection dropped, or the target's 5xx/429/416."""
    return e.status is None or e.status >= 500 or e.status in (408, 416, 429)


def _next_link(header: str | None) -> str | None:
    """The `rel="next"` target of a Link header (`<url>; rel="next"`)."""
    for part in (header or "").split(","):
        target, _, params = part.partition(";")
        if "next" in params and target.strip().startswith("<") and target.strip().endswith(">"):
            return target.strip()[1:-1]
    return None


@dataclass(frozen=True)
class Challenge:
    """A `WWW-Authenticate` challenge: `basic`, or `bearer` with its realm and service."""

    scheme: str
    realm: str = ""
    service: str = ""

    @classmethod
    def parse(cls, header: str | None) -> Challenge | None:
        scheme, _, rest = (header or "").strip().partition(" ")
        if scheme.lower() == "basic":
            return cls("basic")
        if scheme.lower() != "bearer":
            return None
        params = {m["key"].lower(): _UNESCAPE.sub(r"\1", m["quoted"]) if m["quoted"] is not None else m["bare"]
                  for m in _PARAM.finditer(rest)}
        realm = params.get("realm")
        return cls("bearer", realm, params.get("service", "")) if realm else None


class _Kept(Generic[T]):
    """Values (tokens, logins) kept until shortly before they expire: `margin`, at most a quarter of
    their life; one fetch at a time, so concurrent requests wait for it rather than fetching again."""

    def __init__(self, clock: Callable[[], float], margin: float) -> None:
        self._clock = clock
        self._margin = margin
        self._values: dict[str, tuple[T, float]] = {}
        self._lock = trio.Lock()

    async def get(self, key: str, fetch: Callable[[], Awaitable[tuple[T, float]]]) -> T:
        """The value kept for `key`, or `fetch`'s (value, expiry in seconds since the epoch)."""
        kept = self._usable(key)
        if kept is not None:
            return kept
        async with self._lock:
            kept = self._usable(key)
            if kept is not None:
                return kept
            now = self._clock()
            value, expires_at = await fetch()
            until = expires_at - min(self._margin, max(0.0, expires_at - now) / 4)
            if until > self._clock():
                if len(self._values) >= KEPT_MAX:
                    self._values.pop(next(iter(self._values)))  # the oldest
                self._values[key] = (value, until)
            return value

    def _usable(self, key: str) -> T | None:
        kept = self._values.get(key)
        if kept is None or kept[1] <= self._clock():
            return None
        return kept[0]

    def drop(self, key: str, value: T) -> None:
        """Forget `value` if it is still the one kept for `key` (a request refused with it); one a
        concurrent request fetched since is kept."""
        kept = self._values.get(key)
        if kept is not None and kept[0] == value:
            del self._values[key]


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Foreign errors (httpx, the egress rules) as UpstreamError: the source was not reached."""
    try:
        yield
    except egress.EgressError as e:
        raise UpstreamError(f"{what}: {e}") from None
    except httpx.TimeoutException:
        raise UpstreamError(f"{what}: the source did not answer in time") from None
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as e:
        raise UpstreamError(f"{what}: {type(e).__name__}: {_why(e)}") from None


def _why(e: BaseException) -> str:
    """An error's words, else those of the first error under it that has some: httpx on anyio loses the
    message of what it wraps (a TLS failure arrives as `ConnectError('')` over a `BrokenResourceError()`
    over the `SSLCertVerificationError` that says "certificate verify failed"), and the reason a remote
    or a cache is unusable must say why."""
    seen: set[int] = set()
    at: BaseException | None = e
    while at is not None and id(at) not in seen:
        if str(at):
            return str(at)
        seen.add(id(at))
        at = at.__cause__ or at.__context__
    return ""


async def _read(response: httpx.Response, limit: int, what: str) -> bytes:
    """The answer's body, if it is at most `limit` bytes (else a 502)."""
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise UpstreamError(f"{what}: the source's answer is {length} bytes, more than {limit}", 502)
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise UpstreamError(f"{what}: the source's answer is more than {limit} bytes", 502)
    return bytes(body)


async def _refusal(response: httpx.Response, what: str) -> UpstreamError:
    """The error for a source's non-2xx answer, with the message of its first OCI error if it has one."""
    detail = ""
    try:
        errors = load_json(await _read(response, ERROR_MAX_BYTES, what)).get("errors")
        detail = f": {errors[0]['message']}"[:300] if errors and isinstance(errors[0].get("message"), str) else ""
    except (UpstreamError, ValueError, AttributeError, TypeError, KeyError):
        pass
    status = response.status_code
    kind = UpstreamNotFound if status == 404 else UpstreamError
    return kind(f"{what}: the source answered {status} {response.reason_phrase}{detail}", status)


def _basic(login: Login) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode("ascii")}


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


def _push_scope(repository: str) -> str:
    return _scope(repository, "pull,push")


@dataclass(frozen=True)
class Reach:
    """Where an Upstream may connect (addresses; ports, None: any) and how long each request waits
    (connecting, and each wait for the next bytes); the settings named in refusals."""

    networks: egress.NetworkPolicy
    ports: frozenset[int] | None
    timeout: float
    ports_setting: str = "cache_allowed_ports"

    @classmethod
    def for_cache(cls, config: Config) -> Reach:
        return cls(egress.NetworkPolicy.parse(config.cache_allowed_networks, "cache_allowed_networks"),
                   frozenset(int(p) for p in config.cache_allowed_ports), config.cache_timeout_seconds)

    @classmethod
    def for_replication(cls, config: Config) -> Reach:
        return cls(egress.NetworkPolicy.parse(config.replication_allowed_networks, "replication_allowed_networks"),
                   None, config.replication_timeout_seconds)


class Upstream:
    """The source of one image cache: its /v2 API, with its challenge followed and its tokens kept.

    `refresh_margin`: tokens and ECR logins are fetched again this long before they expire (at most a
    quarter of their life); `clock` (seconds since the epoch) is what their expiry is compared with."""

    def __init__(self, source: Source, config: Config, *, reach: Reach | None = None,
                 refresh_margin: float = REFRESH_MARGIN, clock: Callable[[], float] = time.time) -> None:
        credentials.check(source)
        self.source = source
        self._base = httpx.URL(source.url)
        self._login = None if source.type == "ecr" else credentials.login(source)
        reach = reach or Reach.for_cache(config)
        self._networks, self._ports, self._ports_setting = reach.networks, reach.ports, reach.ports_setting
        self._max_manifest = config.max_manifest_bytes
        timeout = httpx.Timeout(reach.timeout)
        # the source's origin only; its CA certificate (or `insecure`) applies there, nowhere else
        self._client = egress.client(timeout, keep_connections=True, ca_cert=source.ca_cert,
                                     insecure=source.insecure)
        # realms, CDNs, the ECR API: a connection per request (a private CA may sign the realm too)
        self._others = egress.client(timeout, ca_cert=source.ca_cert)
        self._challenge: Challenge | None = None
        self._clock = clock
        self._tokens: _Kept[str] = _Kept(clock, refresh_margin)
        self._logins: _Kept[Login] = _Kept(clock, refresh_margin)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._others.aclose()

    # -- the API ----------------------------------------------------------------------------
    async def ping(self) -> None:
        """GET /v2/ with the cache's credentials: whether the source is reachable and takes them."""
        async with self._ok("GET", "/v2/", "", "ping"):
            pass

    async def head_manifest(self, repository: str, reference: str) -> ManifestHead:
        """The digest, media type and size of a manifest, from a HEAD (a GET when the source's HEAD
        answer lacks the digest or the size)."""
        what = f"HEAD manifest {repository}:{reference}"
        async with self._ok("HEAD", f"/v2/{repository}/manifests/{reference}", _scope(repository), what,
                            {"Accept": ACCEPT}) as response:
            headers = response.headers
        said, length = headers.get("docker-content-digest"), headers.get("content-length")
        if Digest.is_digest(reference) and said not in (None, reference):
            raise UpstreamError(f"{what}: the source answered for {said[:80]}", 502)
        digest = reference if Digest.is_digest(reference) else said
        if digest is None or length is None or not length.isdigit():
            m = await self.get_manifest(repository, reference, self._max_manifest)
            return ManifestHead(m.digest, m.media_type, len(m.content))
        _digest(digest, what)
        return ManifestHead(digest, _media_type(headers, b""), int(length))

    async def get_manifest(self, repository: str, reference: str, max_bytes: int) -> Manifest:
        """A manifest, at most `max_bytes`; its digest computed from the content (sha256, or the
        reference's algorithm) and checked against the reference if it is a digest and against the
        source's Docker-Content-Digest if it sends one."""
        what = f"GET manifest {repository}:{reference}"
        async with self._ok("GET", f"/v2/{repository}/manifests/{reference}", _scope(repository), what,
                            {"Accept": ACCEPT}) as response:
            content = await _read(response, max_bytes, what)
            headers = response.headers
        computed = str(compute_digest(content))
        for claim in (reference if Digest.is_digest(reference) else None, headers.get("docker-content-digest")):
            if claim is not None:
                expected = _digest(claim, what)
                actual = compute_digest(content, expected.algorithm)
                if actual != expected:
                    raise UpstreamError(f"{what}: the content's digest is {actual}, not {claim[:160]}", 502)
                if claim == reference:
                    computed = claim
        return Manifest(computed, _media_type(headers, content), content)

    def open_blob(self, repository: str, digest: str, start: int = 0) -> AbstractAsyncContextManager[BlobBody]:
        """A blob's bytes as they arrive, from `start` on (a Range request) when `start` > 0; the body
        reports the offset it really starts at (0 when the source ignored the Range). The bytes are not
        checked here: the caller hashes them."""
        return self._blob(repository, digest, start)

    @asynccontextmanager
    async def _blob(self, repository: str, digest: str, start: int) -> AsyncIterator[BlobBody]:
        what = f"GET blob {repository}@{digest}"
        headers = {"Range": f"bytes={start}-"} if start > 0 else {}
        async with self._ok("GET", f"/v2/{repository}/blobs/{digest}", _scope(repository), what,
                            headers) as response:
            size, first = _extent(response, what)
            chunks = self._chunks(response, what)
            try:
                yield BlobBody(size, first, chunks)
            finally:
                await chunks.aclose()

    async def _chunks(self, response: httpx.Response, what: str) -> AsyncGenerator[bytes, None]:
        with _translated(what):
            async for chunk in response.aiter_raw():
                yield chunk

    # -- listing (replication) ------------------------------------------------------------------
    async def tags(self, repository: str) -> list[str]:
        """Every tag of a repository, following the `Link` pages (at most MAX_PAGES of PAGE_SIZE);
        [] when the repository is not there."""
        try:
            return await self._pages(f"/v2/{repository}/tags/list?n={PAGE_SIZE}", _scope(repository), "tags",
                                     f"tags of {repository}")
        except UpstreamNotFound:
            return []

    async def repositories(self) -> list[str]:
        """The source's catalog (`/v2/_catalog`, every page)."""
        return await self._pages(f"/v2/_catalog?n={PAGE_SIZE}", "registry:catalog:*", "repositories", "catalog")

    async def registry_images(self, registry: str) -> list[str]:
        """The repositories of one registry of another ncr-trio, from its management API
        (`/api/v1/registries/<registry>/images`, every page, with a management token): what an access
        key with *read* on that registry may list, where ncr-trio's catalog wants read on every registry."""
        what = f"images of registry {registry}"
        found: list[str] = []
        for page in range(1, MAX_PAGES + 1):
            path = f"/api/v1/registries/{registry}/images?page={page}&per_page={API_PAGE_SIZE}"
            async with self._ok("GET", path, MANAGEMENT_SCOPE, what, {"Accept": "application/json"}) as response:
                body = await _read(response, LIST_MAX_BYTES, what)
            try:
                doc = load_json(body)
                names = [f"{registry}/{i['name']}" for i in doc["images"]]
                total = int(doc["total"])
            except (ValueError, TypeError, KeyError):
                raise UpstreamError(f"{what}: the answer is not the JSON expected", 502) from None
            found += names
            if not names or page * API_PAGE_SIZE >= total:
                return found
        raise UpstreamError(f"{what}: more than {MAX_PAGES} pages", 502)

    async def _pages(self, path: str, scope: str, field: str, what: str) -> list[str]:
        found: list[str] = []
        url = self._base.join(path)
        for _ in range(MAX_PAGES):
            async with self._ok("GET", url, scope, what) as response:
                body = await _read(response, LIST_MAX_BYTES, what)
                link = response.headers.get("link")
            try:
                names = load_json(body).get(field) or []
            except (ValueError, AttributeError):
                raise UpstreamError(f"{what}: the answer is not the JSON expected", 502) from None
            found += [n for n in names if isinstance(n, str)]
            following = _next_link(link)
            if following is None:
                return found
            url = url.join(following)
        raise UpstreamError(f"{what}: more than {MAX_PAGES} pages", 502)

    async def referrers(self, repository: str, digest: str) -> list[dict[str, object]]:
        """The descriptors of the manifests whose `subject` is `digest` (OCI referrers API); [] when the
        source has none or no referrers API (cosign's tag scheme is the caller's fallback)."""
        what = f"referrers of {repository}@{digest}"
        try:
            async with self._ok("GET", f"/v2/{repository}/referrers/{digest}", _scope(repository), what,
                                {"Accept": MediaType.OCI_INDEX}) as response:
                body = await _read(response, self._max_manifest, what)
        except UpstreamNotFound:
            return []
        except UpstreamError as e:
            if e.status in (400, 405, 501):  # no referrers API
                return []
            raise
        try:
            manifests = load_json(body).get("manifests") or []
        except (ValueError, AttributeError):
            raise UpstreamError(f"{what}: the answer is not an image index", 502) from None
        return [d for d in manifests if isinstance(d, dict) and isinstance(d.get("digest"), str)]

    # -- pushing (replication) ------------------------------------------------------------------
    async def blob_exists(self, repository: str, digest: str) -> int | None:
        """The blob's size when the repository has it (HEAD), else None."""
        what = f"HEAD blob {repository}@{digest}"
        try:
            async with self._ok("HEAD", f"/v2/{repository}/blobs/{digest}", _push_scope(repository), what) as r:
                length = r.headers.get("content-length")
        except UpstreamNotFound:
            return None
        return int(length) if length is not None and length.isdigit() else 0

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> Mount:
        """Ask to link the blob from another repository of the same registry (201: mounted); a registry
        that cannot (202) opens an upload session instead, whose Location is handed back for reuse."""
        what = f"mount {digest} from {from_repository} into {repository}"
        scope = f"{_push_scope(repository)} {_scope(from_repository)}"
        url = self._base.join(f"/v2/{repository}/blobs/uploads/").copy_merge_params(
            {"mount": digest, "from": from_repository})
        async with self._ok("POST", url, scope, what, {"Content-Length": "0"}, b"") as response:
            if response.status_code == 201:
                return Mount(True, None)
            return Mount(False, self._location(response, url, what))

    async def start_upload(self, repository: str) -> httpx.URL:
        """A new upload session: its Location (absolute or relative to the request, query kept)."""
        what = f"start an upload to {repository}"
        url = self._base.join(f"/v2/{repository}/blobs/uploads/")
        async with self._ok("POST", url, _push_scope(repository), what, {"Content-Length": "0"}, b"") as response:
            return self._location(response, url, what)

    async def upload_offset(self, repository: str, location: httpx.URL) -> int:
        """How many bytes the target holds of an upload session: its `Range` end + 1 (0 for "0-0" as
        well: re-sending one byte is cheaper than trusting an ambiguous answer)."""
        what = f"upload status {repository}"
        async with self._ok("GET", location, _push_scope(repository), what) as response:
            said = response.headers.get("range", "")
        end = said.strip().removeprefix("bytes=").partition("-")[2]
        return int(end) + 1 if end.isdigit() and int(end) > 0 else 0

    async def push_blob(self, repository: str, digest: str, size: int,
                        chunks_from: Callable[[int], AsyncIterator[bytes]], *, location: httpx.URL | None = None,
                        chunk_size: int | None = None, attempts: int = PUSH_ATTEMPTS,
                        backoff: float = PUSH_BACKOFF) -> PushReport:
        """Upload a blob of `size` bytes: PATCH requests of `chunk_size` (Content-Range), then the last
        chunk as the body of the PUT ?digest= (a blob of one chunk: the PUT alone). `chunks_from(offset)`
        yields the blob's bytes from `offset` on, as they are read: no more than one read piece is held
        at a time. When a request fails (the connection dropped, the target answered 5xx or 429), the
        target is asked how much of the session it holds and the upload RESUMES from there, after an
        exponential backoff, at most `attempts` times in all: a dropped connection costs at most one
        chunk again. A session the target lost (404) starts over. Returns the attempts made and the
        bytes sent (retries included)."""
        report = PushReport()
        chunk_size = chunk_size or PUSH_CHUNK
        session = [location or await self.start_upload(repository)]  # its latest Location
        offset: int | None = 0
        while True:
            report.attempts += 1
            try:
                if offset is None:
                    offset = await self.upload_offset(repository, session[0])
                await self._send_from(repository, digest, session, offset, size, chunks_from, chunk_size, report)
                return report
            except UpstreamError as e:
                lost = isinstance(e, UpstreamNotFound)
                if report.attempts >= attempts or not (lost or _retryable(e)):
                    raise
                await trio.sleep(backoff * 2 ** (report.attempts - 1))
                if lost:
                    session, offset = [await self.start_upload(repository)], 0
                else:
                    offset = None

    async def _send_from(self, repository: str, digest: str, session: list[httpx.URL], offset: int, size: int,
                         chunks_from: Callable[[int], AsyncIterator[bytes]], chunk_size: int,
                         report: PushReport) -> None:
        """PATCH the bytes [offset, size - last chunk) in chunks, then PUT ?digest= with the last one.
        Each answer's Location is the one to use next (Distribution keeps its state in it, changed by
        every PATCH): `session[0]`, also for a retry."""
        location = session[0]
        source = chunks_from(offset)
        rest = _Rest(source)
        try:
            while size - offset > chunk_size:
                what = f"PATCH blob upload {repository} at {offset}"
                headers = {"Content-Type": MediaType.OCTET_STREAM, "Content-Length": str(chunk_size),
                           "Content-Range": f"{offset}-{offset + chunk_size - 1}"}
                async with self._ok("PATCH", location, _push_scope(repository), what, headers,
                                    rest.take(chunk_size, report)) as response:
                    location = session[0] = self._location(response, location, what)
                offset += chunk_size
            n = size - offset
            what = f"PUT blob {repository}@{digest}"
            async with self._ok("PUT", location.copy_merge_params({"digest": digest}), _push_scope(repository), what,
                                {"Content-Type": MediaType.OCTET_STREAM, "Content-Length": str(n)},
                                rest.take(n, report) if n else b""):
                pass
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    async def put_manifest(self, repository: str, reference: str, media_type: str, content: bytes) -> str:
        """PUT a manifest (by tag or digest); its digest as the target says (or as computed)."""
        what = f"PUT manifest {repository}:{reference}"
        async with self._ok("PUT", f"/v2/{repository}/manifests/{reference}", _push_scope(repository), what,
                            {"Content-Type": media_type, "Content-Length": str(len(content))}, content) as response:
            said = response.headers.get("docker-content-digest")
        return said if said and Digest.is_digest(said) else str(compute_digest(content))

    def _location(self, response: httpx.Response, request_url: httpx.URL, what: str) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise UpstreamError(f"{what}: the answer has no Location", 502)
        with _translated(what):
            return request_url.join(location)

    # -- the steps ----------------------------------------------------------------------------
    @asynccontextmanager
    async def _ok(self, method: str, path: str | httpx.URL, scope: str, what: str,
                  headers: Mapping[str, str] | None = None, body: Body = None) -> AsyncIterator[httpx.Response]:
        """The source's 2xx answer to `method path` (a path on the source, or a URL it gave: an upload's
        Location), its body to read inside, or an UpstreamError."""
        url = path if isinstance(path, httpx.URL) else self._base.join(path)
        with _translated(what):
            response = await self._fetch(method, url, scope, {**(headers or {})}, body)
            try:
                if not 200 <= response.status_code < 300:
                    raise await _refusal(response, what)
                yield response
            finally:
                await response.aclose()

    async def _fetch(self, method: str, url: httpx.URL, scope: str, headers: dict[str, str], body: Body = None
                     ) -> httpx.Response:
        """Step 1: the answer with the credentials the source's challenge asks for (body unread).

        A streamed body (an upload's chunk) cannot be sent twice: its 401 is the answer, and the
        caller's retry asks again, with the token fetched anew."""
        own = _origin(url) == _origin(self._base)
        sent = await self._authorization(scope) if own else {}
        response = await self._follow(method, url, {**headers, **sent}, body)
        challenge = Challenge.parse(response.headers.get("www-authenticate"))
        if response.status_code == 401 and challenge is not None and own:
            self._challenge = challenge
            refused = sent.get("Authorization", "")
            if refused.startswith("Bearer "):  # a token it refused (expired, revoked) is not offered again;
                self._tokens.drop(scope, refused[7:])  # a request sent without one forgets nothing
            if body is not None and not isinstance(body, bytes):
                return response
            await response.aclose()
            response = await self._follow(method, url, {**headers, **await self._authorization(scope)}, body)
        return response

    async def _authorization(self, scope: str) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            login = await self._source_login()
            return {} if login is None else _basic(login)
        token = await self._tokens.get(scope, lambda: self._token(challenge, scope))
        return {"Authorization": f"Bearer {token}"}

    async def _token(self, challenge: Challenge, scope: str) -> tuple[str, float]:
        """A token from the realm for `scope`, with the cache's Basic login if it has one."""
        what = f"token from {challenge.realm[:200]}"
        params = {k: v for k, v in (("service", challenge.service), ("scope", scope)) if v}
        login = await self._source_login()
        obtained = self._clock()
        body = await self._answer("GET", httpx.URL(challenge.realm, params=params),
                                  {} if login is None else _basic(login), what)
        try:
            answer = load_json(body)
        except ValueError:
            raise UpstreamError(f"{what}: the answer is not JSON", 502) from None
        if not isinstance(answer, dict):
            raise UpstreamError(f"{what}: the answer has no token", 502)
        token, expires_in = answer.get("token") or answer.get("access_token"), answer.get("expires_in")
        expires_in = DEFAULT_EXPIRES_IN if expires_in is None else expires_in
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise UpstreamError(f"{what}: the answer has no token", 502)
        return token, obtained + expires_in

    async def _source_login(self) -> Login | None:
        if self.source.type != "ecr":
            return self._login
        return await self._logins.get("ecr", self._ecr_login)

    async def _ecr_login(self) -> tuple[Login, float]:
        """ECR's GetAuthorizationToken for the cache's IAM key: the login and when it expires."""
        call = credentials.ecr_call(self.source)
        what = f"GetAuthorizationToken at {call.url[:200]}"
        body = await self._answer("POST", httpx.URL(call.url), call.headers, what, call.body)
        try:
            return credentials.ecr_login(body)
        except ValueError as e:
            raise UpstreamError(f"{what}: {e}", 502) from None

    async def _answer(self, method: str, url: httpx.URL, headers: Mapping[str, str], what: str,
                      body: bytes | None = None) -> bytes:
        """The body of a small 2xx answer to one hop (a token realm's, ECR's): no redirects followed."""
        response = await self._hop(method, url, headers, body)
        try:
            if not 200 <= response.status_code < 300:
                raise await _refusal(response, what)
            return await _read(response, TOKEN_MAX_BYTES, what)
        finally:
            await response.aclose()

    async def _follow(self, method: str, url: httpx.URL, headers: dict[str, str], body: Body = None
                      ) -> httpx.Response:
        """Step 3: the answer after at most MAX_REDIRECTS redirects; Authorization to the source's origin only.
        A request with a streamed body is not redirected (its body is sent already): the redirect is its answer."""
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._hop(method, url, headers, body)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or location is None:
                return response
            if body is not None and not isinstance(body, bytes):
                return response
            await response.aclose()
            url = url.join(location)
            if response.status_code == 303 and method != "HEAD":
                method = "GET"
            if _origin(url) != _origin(self._base):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise UpstreamError(f"{url.host}: more than {MAX_REDIRECTS} redirects", 502)

    async def _hop(self, method: str, url: httpx.URL, headers: Mapping[str, str], body: Body = None
                   ) -> httpx.Response:
        """Step 2: one request, to an allowed port and address (body unread)."""
        scheme, host, port = _origin(url)
        if scheme not in ("http", "https"):
            raise UpstreamError(f"{str(url)[:200]}: only http and https are followed", 502)
        if self._ports is not None and port not in self._ports:
            raise egress.TargetRefused(f"{host}:{port}: port {port} is not in {self._ports_setting}")
        client = self._client if (scheme, host, port) == _origin(self._base) else self._others
        return await egress.send(client, self._networks, method, url,
                                 {**headers, "Accept-Encoding": "identity"}, body)


def _digest(text: str, what: str) -> Digest:
    try:
        return Digest.parse(text)
    except RegistryError:
        raise UpstreamError(f"{what}: the source sent {text[:160]!r} as a digest", 502) from None


def _media_type(headers: httpx.Headers, content: bytes) -> str:
    """The manifest's media type: its Content-Type, or the content's `mediaType` when the source sent a
    generic one (application/json) or none."""
    said = str(headers.get("content-type", "")).partition(";")[0].strip()
    if said and said not in ("application/json", "text/plain", MediaType.OCTET_STREAM):
        return said
    try:
        doc = load_json(content) if content else None
    except ValueError:
        doc = None
    found = doc.get("mediaType") if isinstance(doc, dict) else None
    return str(found) if isinstance(found, str) else said or MediaType.OCTET_STREAM


def _extent(response: httpx.Response, what: str) -> tuple[int, int]:
    """(whole size, first byte's offset) of a blob answer: 200 whole, 206 from Content-Range."""
    if response.status_code == 206:
        unit, _, rest = response.headers.get("content-range", "").partition(" ")
        span, _, total = rest.partition("/")
        first = span.partition("-")[0]
        if unit == "bytes" and first.isdigit() and total.isdigit():
            return int(total), int(first)
        raise UpstreamError(f"{what}: a 206 answer without a usable Content-Range", 502)
    length = response.headers.get("content-length")
    if response.status_code != 200 or length is None or not length.isdigit():
        raise UpstreamError(f"{what}: a {response.status_code} answer without Content-Length", 502)
    return int(length), 0


class Upstreams:
    """The `Upstream` of each image cache, by name; rebuilt when its Source changes. One replaced or
    forgotten may still serve fetches under way: it is closed with the others, by `aclose`."""

    def __init__(self, config: Config, reach: Reach | None = None) -> None:
        self.config = config
        self.reach = reach or Reach.for_cache(config)
        self._by_name: dict[str, Upstream] = {}
        self._retired: list[Upstream] = []

    def get(self, source: Source) -> Upstream:
        """The source's client (ValueError: a source `credentials.check` refuses)."""
        upstream = self._by_name.get(source.name)
        if upstream is None or upstream.source != source:
            self.forget(source.name)
            upstream = self._by_name[source.name] = Upstream(source, self.config, reach=self.reach)
        return upstream

    def forget(self, name: str) -> None:
        upstream = self._by_name.pop(name, None)
        if upstream is not None:
            self._retired.append(upstream)

    async def aclose(self) -> None:
        upstreams, self._retired = [*self._by_name.values(), *self._retired], []
        self._by_name.clear()
        for upstream in upstreams:
            await upstream.aclose()


__all__ = ["ACCEPT", "BlobBody", "Challenge", "Manifest", "ManifestHead", "Mount", "PushReport", "Reach", "Upstream",
           "UpstreamError", "UpstreamNotFound", "Upstreams"]
