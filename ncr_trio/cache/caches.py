"""Image caches as use cases: what an image cache may be (validation), creating, listing, changing
(the guide's "修正") and deleting them, testing the connection to a source, and the `Source` a
cache-type registry pulls through (docs/cache.md, "Managing image caches").

Rules from the guide: a source's URL is `scheme://host[:port]` and its port is 80 or 443
(`cache_allowed_ports` opens others); an image cache a registry uses cannot be deleted (the registries
are named); Quay's access secret is the guide's `json_file`, a JSON object with `account_name` and
`docker_cli_password`; an ECR source is `https://<account>.dkr.ecr.<region>.amazonaws.com` unless
its API `endpoint` is given (a VPC endpoint, a test server). The access secret is sealed at rest
(ncr_trio/sealing.py, the cache's name and the field as context), never answered (`has_secret`), and
opened only into the `Source` the pull-through uses. Sources are remembered for
`access_cache_seconds`: a change made here applies at once, on other nodes within that time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import trio

from ncr_trio.auth.control import AccessControl, TTLCache
from ncr_trio.cache.sources import SOURCE_TYPES, Source
from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.limits import CACHE_MAX_URL as MAX_URL
from ncr_trio.limits import MAX_DESCRIPTION
from ncr_trio.limits import SOURCE_MAX_ACCESS_ID as MAX_ACCESS_ID
from ncr_trio.limits import SOURCE_MAX_SECRET as MAX_SECRET
from ncr_trio.meta.caches import CacheInUse, CacheStore, ImageCache
from ncr_trio.sealing import Sealer, SealError
from ncr_trio.types import validate_registry_name

FIELDS = ("name", "type", "url", "access_id", "access_secret", "endpoint", "description")
QUAY_KEYS = ("account_name", "docker_cli_password")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ECR_HOST = re.compile(r"[0-9]{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?")

# Tries a source (its /v2/ with the credentials); raises what went wrong.
Probe = Callable[[Source], Awaitable[None]]


class ProbeUnavailable(Exception):
    pass


async def no_probe(source: Source) -> None:
    raise ProbeUnavailable("testing the connection to a source is not available on this server")


@dataclass(frozen=True)
class CacheInfo:
    """An image cache as it is shown: never its secret."""

    name: str
    type: str
    url: str
    access_id: str
    has_secret: bool
    endpoint: str
    description: str
    registries: tuple[str, ...]  # the cache-type registries using it
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class TestResult:
    ok: bool
    detail: str


def _invalid(message: str) -> RegistryError:
    return RegistryError("INVALID_REQUEST", message)


def text_field(value: object, what: str, limit: int, *, lines: bool = False) -> str:
    """A string of at most `limit` characters (None: empty); without `lines`, on one line."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise _invalid(f"{what} must be a string of at most {limit} characters")
    if "\x00" in value or (not lines and not value.isprintable()):
        raise _invalid(f"{what} must not hold control characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise _invalid(f"{what} must be valid Unicode (no lone surrogates)") from None
    return value


def origin_url(value: object, what: str, *, ports: Collection[str] | None = None, setting: str = "",
               path_hint: str = "") -> str:
    """`scheme://host[:port]` (http or https, no credentials, path or query), normalised: lower case, no
    default port, no "/". With `ports`, its port must be one of them (`setting` names where they are set)."""
    text = text_field(value, what, MAX_URL)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _invalid(f"{what} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or any(c.isspace() for c in text):
        raise _invalid(f"{what} must be an http:// or https:// URL with a host: scheme://host[:port]")
    if "@" in parts.netloc:
        raise _invalid(f"{what} must not hold credentials: give them as access_id and access_secret")
    if parts.path not in ("", "/") or "?" in text or "#" in text:
        raise _invalid(f"{what} must be scheme://host[:port], without a path or query"
                       + (f": {path_hint}" if path_hint else ""))
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise _invalid(f"{what}'s host is not a valid host name") from None
    default = _DEFAULT_PORTS[scheme]
    if ports is not None and str(port or default) not in ports:
        allowed = ", ".join(sorted(ports, key=lambda p: (len(p), p)))
        raise _invalid(f"{what}: port {port or default} is not allowed; a source's port must be one of "
                       f"{allowed} (setting {setting})")
    return f"{scheme}://{parts.netloc.lower().removesuffix(f':{default}')}"


def _type(value: object) -> str:
    if not isinstance(value, str) or value not in SOURCE_TYPES:
        raise _invalid(f"type must be one of {', '.join(SOURCE_TYPES)}")
    return value


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise _invalid("name must be a string")
    return validate_registry_name(value, "image cache")


def _quay_secret(secret: str) -> None:
    try:
        doc = json.loads(secret)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) and doc[k] for k in QUAY_KEYS):
        raise _invalid("a Quay source's access_secret is the JSON object "
                       '{"account_name": "...", "docker_cli_password": "..."} (the guide\'s json_file)')


class ImageCaches:
    def __init__(self, config: Config, store: CacheStore, access: AccessControl, sealer: Sealer,
                 probe: Probe = no_probe) -> None:
        self.config = config
        self.store = store
        self.access = access
        self.sealer = sealer
        self.probe = probe
        self.ports = frozenset(p.strip() for p in config.cache_allowed_ports)
        self._sources: TTLCache[str, Source] = TTLCache(config.access_cache_seconds, time.monotonic)

    # -- what an image cache may be -----------------------------------------------------------------
    def _url(self, value: object, what: str) -> str:
        return origin_url(value, what, ports=self.ports, setting="cache_allowed_ports",
                          path_hint="an image's path follows the cache-type registry's name in pulls")

    def _fields(self, fields: Mapping[str, object], creating: bool) -> dict[str, Any]:
        """The given fields, each checked on its own (`_check` judges them together)."""
        allowed = FIELDS if creating else FIELDS[1:]
        unknown = sorted(set(fields) - set(allowed))
        if unknown:
            raise _invalid(f"unknown field {unknown[0][:60]!r}: an image cache has {', '.join(allowed)}")
        checks: dict[str, Callable[[object], str]] = {
            "name": _name, "type": _type, "url": lambda v: self._url(v, "url"),
            "access_id": lambda v: text_field(v, "access_id", MAX_ACCESS_ID),
            "access_secret": lambda v: text_field(v, "access_secret", MAX_SECRET, lines=True),
            "endpoint": lambda v: self._url(v, "endpoint") if v else "",
            "description": lambda v: text_field(v, "description", MAX_DESCRIPTION),
        }
        return {k: checks[k](v) for k, v in fields.items()}

    @staticmethod
    def _check(cache: ImageCache, secret: str) -> None:
        """The rules between fields, on the image cache as it would be stored (`secret` in clear)."""
        if cache.endpoint and cache.type != "ecr":
            raise _invalid("endpoint (an ECR API endpoint) is for ECR sources only")
        if cache.type == "ecr" and not cache.endpoint and not (
                cache.url.startswith("https://") and _ECR_HOST.fullmatch(cache.url.removeprefix("https://"))):
            raise _invalid("an ECR source's url is https://<account ID>.dkr.ecr.<region>.amazonaws.com "
                           "(or give its API endpoint as well)")
        if cache.type == "quay":
            if secret:
                _quay_secret(secret)
        elif bool(cache.access_id) != bool(secret):
            raise _invalid("credentials are an access_id and its access_secret: give both, or neither for "
                           "anonymous pulls")

    # -- sealing --------------------------------------------------------------------------------------
    @staticmethod
    def _context(name: str) -> str:
        return f"image-cache/{name}/access_secret"

    def _open(self, cache: ImageCache) -> str:
        try:
            return self.sealer.open(cache.access_secret, self._context(cache.name))
        except SealError:
            raise RegistryError("CONFLICT", f"the access secret of image cache {cache.name} does not open with "
                                "this server's key (keys/secrets.key): set it again") from None

    def _stored(self, cache: ImageCache, secret: str) -> ImageCache:
        self._check(cache, secret)
        return replace(cache, access_secret=self.sealer.seal(secret, self._context(cache.name)))

    # -- the use cases --------------------------------------------------------------------------------
    async def create(self, fields: Mapping[str, object]) -> CacheInfo:
        given = self._fields(fields, creating=True)
        missing = [k for k in ("name", "type", "url") if not given.get(k)]
        if missing:
            raise _invalid(f"an image cache needs {', '.join(missing)}")
        now = time.time()
        cache = ImageCache(given["name"], given["type"], given["url"], given.get("access_id", ""), "",
                           given.get("endpoint", ""), given.get("description", ""), now, now)
        cache = self._stored(cache, given.get("access_secret", ""))
        if not await self.store.create(cache):
            raise RegistryError("CONFLICT", f"image cache {cache.name!r} already exists")
        self.forget(cache.name)
        return self._info(cache, ())

    async def caches(self) -> list[CacheInfo]:
        users = await self.store.registries()
        return [self._info(c, users.get(c.name, ())) for c in await self.store.caches()]

    async def get(self, name: str) -> CacheInfo:
        return self._info(await self._get(name), (await self.store.registries()).get(name, ()))

    async def update(self, name: str, fields: Mapping[str, object]) -> CacheInfo:
        """Change the given fields (an empty or null access_secret removes it); all or nothing."""
        current = await self._get(name)
        given = self._fields(fields, creating=False)
        secret = given.pop("access_secret") if "access_secret" in given else self._open(current)
        cache = self._stored(replace(current, **given, updated_at=time.time()), secret)
        if not await self.store.update(cache):
            raise self._unknown(name)
        self.forget(name)
        return await self.get(name)

    async def delete(self, name: str) -> None:
        try:
            deleted = await self.store.delete(name)
        except CacheInUse as e:
            which = ("registry ", "it") if len(e.registries) == 1 else ("registries ", "them")
            raise RegistryError("CONFLICT", f"image cache {name} is used by {which[0]}{', '.join(e.registries)}: "
                                f"delete {which[1]} first", detail={"registries": list(e.registries)}) from None
        if not deleted:
            raise self._unknown(name)
        self.forget(name)

    async def test(self, name: str) -> TestResult:
        """Try the source with the cache's credentials (the probe: its /v2/); how it went, never raised."""
        source = await self.source(name)
        limit = 2 * self.config.cache_timeout_seconds
        try:
            with trio.fail_after(limit):
                await self.probe(source)
        except trio.TooSlowError:
            return TestResult(False, f"{source.url} did not answer within {limit:g} s")
        except Exception as e:  # whatever the source or the network did: the answer says it
            return TestResult(False, str(e) or type(e).__name__)
        return TestResult(True, f"{source.url} answered and took the credentials")

    # -- for the pull-through -----------------------------------------------------------------------------
    async def source(self, name: str) -> Source:
        """The image cache `name` as the pull-through needs it, its secret in clear."""
        found, cached = self._sources.get(name)
        if found and cached is not None:
            return cached
        c = await self._get(name)
        source = Source(c.name, c.type, c.url, c.access_id, self._open(c), c.endpoint)
        self._sources.put(name, source)
        return source

    async def source_of(self, registry: str) -> Source | None:
        """The source a registry pulls through (None: a normal registry, or none of that name)."""
        info = await self.access.registry(registry)
        if info is None or info.cache is None:
            return None
        return await self.source(info.cache)

    def forget(self, name: str) -> None:
        """Drop a remembered source after a change made here."""
        self._sources.drop(name)

    # -- helpers ------------------------------------------------------------------------------------------
    async def _get(self, name: str) -> ImageCache:
        cache = await self.store.get(name)
        if cache is None:
            raise self._unknown(name)
        return cache

    @staticmethod
    def _unknown(name: str) -> RegistryError:
        return RegistryError("NOT_FOUND", f"image cache {name[:80]!r} does not exist")

    @staticmethod
    def _info(c: ImageCache, registries: tuple[str, ...] | list[str]) -> CacheInfo:
        return CacheInfo(c.name, c.type, c.url, c.access_id, bool(c.access_secret), c.endpoint, c.description,
                         tuple(registries), c.created_at, c.updated_at)


__all__ = ["FIELDS", "CacheInfo", "ImageCaches", "Probe", "ProbeUnavailable", "TestResult", "no_probe", "origin_url",
           "text_field"]
