"""The access gate in front of every route, and the token endpoint clients log in through.

The gate reads only the route's `action` (see routes.py) and the request:

    None                     no authentication (the token endpoint itself)
    "login"                  any valid bearer token (GET /v2/, what `docker login` checks)
    "catalog"                a token granting registry:catalog:*
    "pull" "push" "delete"   a token granting that action on repository:<name>
    "metrics"                /metrics: clients in `metrics_allowed_networks` as they are, anyone else
                             as for "api:admin"
    "api:<permission>"       the management API: Basic (user or access key) or a management token
                             (scope `management:api:*`, never a registry token), and the permission
                             (read, push, manage) on the route's registry, "user" (anyone logged
                             in) or "admin" (a system administrator)

A cache-type registry (an image cache's, ncr_trio/cache) refuses every "push" route with DENIED: what
it holds comes from its source registry.

Registries whose public URI is off answer only on private listeners (told apart by address and
port: http/listeners.py), and a registry's CIDR allowlist restricts its clients; to anyone else such
a registry does not exist, on every route that names it (`/v2` and `/api/v1`), in every listing, and
as the source of a cross-repository mount. One exception, so that a wrong allowlist can be mended: a
system administrator reads and changes a registry's own settings (SETTINGS_ROUTES) from anywhere.

The management API serves only its own pages (the console) and non-browser clients: a request with
a foreign `Origin` or `Sec-Fetch-Site: cross-site`/`same-site` is refused, a body must be
`application/json` (no HTML form can send that), and a 401 never invites Basic credentials (a
browser would ask for and then replay them on every request, forged ones included).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from urllib.parse import parse_qs, urlsplit

from ncr_trio.auth.control import ANONYMOUS, AccessControl, AuthFailed, LockedOut, Principal, registry_of
from ncr_trio.auth.roles import Permission
from ncr_trio.auth.scopes import MANAGEMENT, InvalidScope, Scope, format_scope, is_management, parse_scopes
from ncr_trio.auth.tokens import TokenError
from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.http.asgi import Request, Response, json_response
from ncr_trio.http.listeners import Listeners
from ncr_trio.http.routes import Route, route
from ncr_trio.networks import Networks
from ncr_trio.trust.service import ACCESSORY_TAG
from ncr_trio.types import validate_name

_HOST_RE = re.compile(r"[A-Za-z0-9.\-:\[\]]{1,255}")
_REPO_ACTIONS = {"pull": "pull", "push": "pull,push", "delete": "delete"}
AUDITED = {"manifest": ("pull", "GET"), "manifest.put": ("push", "PUT"), "manifest.delete": ("delete", "DELETE"),
           "blob.delete": ("delete", "DELETE")}
# A registry's own settings (and who holds a role on it): a system administrator reads and changes
# them even where the registry is not reachable, to mend a wrong allowlist.
SETTINGS_ROUTES = frozenset({"api.registry", "api.registry.update", "api.members"})
_MANAGEMENT_SCOPE = format_scope(MANAGEMENT)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.header("authorization")
    if header is None or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise RegistryError("UNAUTHORIZED", "malformed Basic credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise RegistryError("UNAUTHORIZED", "malformed Basic credentials")
    return username, password


def _mount_source(request: Request, r: Route, name: str) -> str | None:
    """The other repository a blob mount (`POST .../blobs/uploads/?mount=&from=`) names, if valid."""
    source = request.query("from") if r.name == "upload.start" and request.query("mount") else None
    if not source or source == name:
        return None
    try:
        validate_name(source)
    except RegistryError:
        return None
    return source


def bearer_token(request: Request) -> str | None:
    header = request.header("authorization")
    if header is None or header[:7].lower() != "bearer ":
        return None
    return header[7:].strip()


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether an `Origin` names the host the request was sent to (default ports left out)."""
    parts = urlsplit(origin.strip().lower())
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or not parts.netloc or host is None:
        return False

    def bare(netloc: str) -> str:
        return netloc.removesuffix(f":{default}")

    return bare(parts.netloc) == bare(host.strip().lower())


def refuse_cross_site(request: Request) -> None:
    """CSRF: the management API answers its own pages and non-browser clients only, and reads only
    JSON bodies (a form or a simple cross-origin request cannot send `application/json`)."""
    site = (request.header("sec-fetch-site") or "").lower()
    origin = request.header("origin")
    if site in ("cross-site", "same-site") or (origin is not None and not _same_origin(origin, request.header("host"))):
        raise RegistryError("DENIED", "the management API refuses cross-origin requests")
    content_type = request.header("content-type")
    if content_type is None and request.header("transfer-encoding") is None and not request.content_length():
        return  # no body
    if content_type is None or content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise RegistryError("UNSUPPORTED", "the management API reads JSON bodies only (Content-Type: application/json)",
                            status=415)


def cache_push_refusal(registry: str, cache: str, request: Request, r: Route) -> str:
    """Why a push into a cache-type registry is refused. A signature is a push too: the guide's rule
    that images in an image cache registry cannot be signed is named when the push looks like one
    (cosign's User-Agent, or a manifest under a cosign `.sig`/`.att`/`.sbom` tag); any push's
    message says it as well, since cosign's first request is a blob upload."""
    signing = "cosign" in (request.header("user-agent") or "").lower() or (
        r.name == "manifest.put" and ACCESSORY_TAG.fullmatch(request.params.get("reference", "")) is not None)
    rule = ("images in an image cache registry cannot be signed: sign the image in its source registry (its "
            "signatures are pulled through with it)")
    if signing:
        return f"signature refused: registry {registry} is an image cache registry (image cache {cache}): {rule}"
    return (f"registry {registry} is an image cache registry (image cache {cache}): it takes no pushes; push to "
            f"the source registry and pull through this one ({rule})")


class Gate:
    def __init__(self, config: Config, access: AccessControl) -> None:
        self.config = config
        self.access = access
        self.listeners = Listeners(config.listen, config.private_listen)
        self.metrics_networks = Networks(config.metrics_allowed_networks, "metrics_allowed_networks")

    def realm(self, request: Request) -> str:
        if self.config.token_realm:
            return self.config.token_realm
        host = request.header("host")
        if host is None or _HOST_RE.fullmatch(host) is None:
            server = request.scope.get("server") or ("localhost", None)
            host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
        return f"{request.scope.get('scheme', 'http')}://{host}/auth/token"

    def _challenge(self, request: Request, scope: str | None, message: str, error: str | None = None,
                   detail: object = None) -> RegistryError:
        parts = [f'realm="{self.realm(request)}"', f'service="{self.config.token_service}"']
        if scope is not None:
            parts.append(f'scope="{scope}"')
        if error is not None:
            parts.append(f'error="{error}"')
        return RegistryError("UNAUTHORIZED", message, detail=detail,
                             headers={"WWW-Authenticate": "Bearer " + ",".join(parts)})

    async def check(self, request: Request, r: Route) -> Principal:
        """The principal the request acts as, or a RegistryError (401 challenge, 403, 404, 415)."""
        request.private_listener = self.listeners.private(request.scope.get("server"))
        if request.path.startswith("/api/"):
            refuse_cross_site(request)
        action = r.action
        if action is None:
            return ANONYMOUS
        if action == "metrics":
            if self._metrics_network(request.client):
                return ANONYMOUS
            return await self._api(request, r, "admin")
        if action.startswith("api:"):
            return await self._api(request, r, action[4:])
        name = request.params.get("name")
        info = None
        if name is not None:
            info = request.registry = await self.access.registry(registry_of(name))
            if info is not None and not request.reaches(info):
                raise RegistryError("NAME_UNKNOWN", f"repository {name} is not known on this endpoint")
        token = bearer_token(request)
        if action == "login" or action == "catalog":
            scope = "registry:catalog:*" if action == "catalog" else None
            if token is None:
                raise self._challenge(request, scope, "authentication required")
            principal = await self._bearer(request, token, scope)
            if action == "catalog" and not any(s.type == "registry" and s.name == "catalog"
                                               for s in principal.token_access):
                raise self._challenge(request, scope, "the catalog needs registry:catalog:*", "insufficient_scope")
            return principal
        assert name is not None
        scope_text = f"repository:{name}:{_REPO_ACTIONS[action]}"
        source = _mount_source(request, r, name)
        if token is None:
            if action == "pull" and info is not None and info.public_read:
                return ANONYMOUS
            # A mount asks for pull on its source too, in the same challenge (as Distribution does):
            # clients fetch one token per challenge.
            both = scope_text if source is None else f"{scope_text} repository:{source}:pull"
            raise self._challenge(request, both, "authentication required",
                                  detail=[{"Type": "repository", "Name": name, "Action": action}])
        principal = await self._bearer(request, token, scope_text)
        if not principal.token_allows(name, action):
            wanted = Scope("repository", name, frozenset({action}))
            if action not in await self.access.allowed_actions(principal, wanted):
                raise RegistryError("DENIED", f"requested access to the resource is denied: {action} on {name}")
            raise self._challenge(request, scope_text, "the token does not grant this action", "insufficient_scope",
                                  detail=[{"Type": "repository", "Name": name, "Action": action}])
        if action == "push" and info is not None and info.cache is not None:
            # Every push passes here (uploads, mounts into it, manifest PUTs); deletes stay allowed.
            raise RegistryError("DENIED", cache_push_refusal(info.name, info.cache, request, r),
                                detail=[{"Type": "repository", "Name": name, "Action": action}])
        if source is not None:
            principal = await self._mount_from(request, principal, source, scope_text)
        if action == "push" and info is None:
            raise RegistryError("NAME_UNKNOWN", f"registry {registry_of(name)!r} does not exist: create it first "
                                f"(ncr-trio registry create {registry_of(name)}), then push to it")
        return principal

    def _metrics_network(self, client: str | None) -> bool:
        """Whether a client's address is in `metrics_allowed_networks` (an IPv4-mapped IPv6 address as
        the IPv4 address it carries)."""
        return client in self.metrics_networks

    async def _mount_from(self, request: Request, principal: Principal, source: str, scope_text: str) -> Principal:
        """A cross-repository mount also needs pull on the source (as Distribution asks) and the source
        reachable from this client: if the account may pull there but the token does not say so, ask for
        a token that does; if the source is out of reach, the token's pull on it does not count here
        (the handler mounts only what the token may pull: without it, it starts a plain upload)."""
        if not await self._reaches(request, registry_of(source)):
            return dataclasses.replace(principal, token_access=tuple(
                s for s in principal.token_access if not (s.type == "repository" and s.name == source)))
        if not principal.token_allows(source, "pull"):
            wanted = Scope("repository", source, frozenset({"pull"}))
            if "pull" in await self.access.allowed_actions(principal, wanted):
                raise self._challenge(request, f"{scope_text} repository:{source}:pull",
                                      "a mount needs pull on its source", "insufficient_scope")
        return principal

    async def _reaches(self, request: Request, registry: str) -> bool:
        info = await self.access.registry(registry)
        return info is None or request.reaches(info)

    async def _bearer(self, request: Request, token: str, scope: str | None) -> Principal:
        try:
            return await self.access.bearer(token)
        except TokenError as e:
            raise self._challenge(request, scope, str(e), "invalid_token") from None

    async def _api(self, request: Request, r: Route, needed: str) -> Principal:
        token = bearer_token(request)
        creds = basic_credentials(request) if token is None else None
        if token is not None:
            try:
                principal = await self.access.management(token)
            except TokenError as e:
                raise self._challenge(request, _MANAGEMENT_SCOPE, str(e), "invalid_token") from None
        elif creds is not None:
            principal = await self._login(request, *creds, audit_cached=False)
        else:
            # A Bearer challenge, not Basic: a browser would ask for a password and then replay it.
            raise self._challenge(request, _MANAGEMENT_SCOPE, "log in with Basic credentials (user or access key) "
                                  "or a management token (scope management:api:*)")
        if needed == "user":
            return principal
        if needed == "admin":
            if not principal.system_admin:
                raise RegistryError("DENIED", "only a system administrator may do this")
            return principal
        registry = request.params.get("registry")
        if Permission(needed) not in principal.holds(registry or "*"):
            raise RegistryError("DENIED", f"your role does not allow this ({needed} on registry {registry or '*'})")
        if registry is not None and not (principal.system_admin and r.name in SETTINGS_ROUTES) \
                and not await self._reaches(request, registry):
            raise RegistryError("NOT_FOUND", f"registry {registry[:80]!r} does not exist")
        return principal

    async def _login(self, request: Request, username: str, password: str, audit_cached: bool = True) -> Principal:
        try:
            return await self.access.login(username, password, request.client, audit_cached=audit_cached)
        except LockedOut as e:
            retry = str(int(e.retry_after) + 1)
            raise RegistryError("TOOMANYREQUESTS", str(e), headers={"Retry-After": retry}) from None
        except AuthFailed as e:
            raise RegistryError("UNAUTHORIZED", str(e)) from None

    def audit(self, request: Request, route: str, response: Response) -> None:
        """Record pulls, pushes and deletes that succeeded (`route`: the name of the route that answered)."""
        what = AUDITED.get(route)
        if what is None or response.status >= 400 or request.method != what[1]:
            return
        name = request.params.get("name")
        target = response.headers.get("Docker-Content-Digest") or request.params.get("reference")
        self.access.record(what[0], "ok", actor=request.principal.user, client=request.client,
                           registry=registry_of(name) if name else None, repository=name, target=target)

    # -- the token endpoint -------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            route("token", "GET POST", "/auth/token", None, self.token),
            route("jwks", "GET", "/auth/jwks.json", None, self.jwks),
        ]

    async def jwks(self, request: Request) -> Response:
        return json_response(200, json.dumps(self.access.tokens.jwks()).encode())

    async def token(self, request: Request) -> Response:
        """Docker token spec: GET with optional Basic auth and repeated `scope`; OAuth2: POST with
        grant_type password or refresh_token (form-encoded)."""
        if request.method == "POST":
            form = parse_qs((await request.read(64 * 1024)).decode("utf-8", "replace"), keep_blank_values=True)

            def field(name: str) -> str | None:
                values = form.get(name)
                return values[0] if values else None

            service, scopes = field("service"), [v for v in form.get("scope", [])]
            grant_type = field("grant_type")
            offline = field("access_type") == "offline"
            if grant_type == "password":
                username, password = field("username"), field("password")
                if not username or password is None:
                    raise _oauth_error("invalid_request", "username and password are required")
                principal = await self._login(request, username, password)
            elif grant_type == "refresh_token":
                refresh = field("refresh_token")
                if not refresh:
                    raise _oauth_error("invalid_request", "refresh_token is required")
                try:
                    principal = await self.access.refresh(refresh)
                except AuthFailed as e:
                    self.access.record("login", "failed", actor="refresh-token", client=request.client)
                    raise RegistryError("UNAUTHORIZED", str(e), detail={"error": "invalid_grant"}) from None
                offline = True  # keep handing out refresh tokens to a client that uses them
            else:
                raise _oauth_error("unsupported_grant_type", "grant_type must be password or refresh_token")
        else:
            service, scopes = request.query("service"), request.query_all("scope")
            offline = request.query("offline_token") == "true"
            creds = basic_credentials(request)
            principal = ANONYMOUS if creds is None else await self._login(request, *creds)
        if service is not None and service != self.config.token_service:
            raise RegistryError("INVALID_REQUEST", f"this token service is {self.config.token_service!r}, "
                                f"not {service[:80]!r}")
        try:
            requested = parse_scopes(scopes)
        except InvalidScope as e:
            raise RegistryError("INVALID_REQUEST", str(e)) from None
        if any(is_management(s) for s in requested):
            if len(requested) > 1:
                raise RegistryError("INVALID_REQUEST",
                                    f"a management token ({_MANAGEMENT_SCOPE}) carries no other scope")
            if principal.anonymous:
                raise RegistryError("UNAUTHORIZED", "log in (Basic credentials) for a management token")
        granted = await self.access.grant(principal, requested)
        body = self.access.issue(principal, granted, offline)
        if request.method == "POST":
            body["scope"] = " ".join(format_scope(s) for s in granted)
        return json_response(200, json.dumps(body).encode(), {"Cache-Control": "no-store"})


def _oauth_error(code: str, message: str) -> RegistryError:
    return RegistryError("INVALID_REQUEST", message, detail={"error": code})


__all__ = ["AUDITED", "Gate", "basic_credentials", "bearer_token"]
