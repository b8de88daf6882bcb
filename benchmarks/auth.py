"""How the load clients authenticate: Docker token auth, with tokens of ncr-trio (or none, for Distribution as shipped).

ncr-trio is secure by default: every /v2 request needs a bearer token, and pushes go only into registries
(namespaces: a repository name's first path component) that exist. So, right after each ncr-trio start and
before anything is measured, `login` creates the registries the figures' repositories are in (management API,
HTTP Basic as the admin) and fetches one token per repository from the token endpoint, as docker, containerd
and skopeo do (`GET /auth/token?service=...&scope=repository:<name>:pull,push` with Basic auth). Every
request then carries `Authorization: Bearer <token>`, the same token for the whole run of that server (valid
12 h; real clients reuse theirs too), so the timed requests pay for the server's check of a token, never for
fetching one. Distribution with token auth (the default) gets the same kind of tokens, from the ncr-trio that serves
as its token issuer (benchmarks/servers.py); with `--distribution-auth none` (its shipped configuration) it gets
`ANONYMOUS` requests, without a header.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx

ADMIN_USER = "admin"
TOKEN_SERVICE = "ncr-trio"
ACTIONS = "pull,push"  # what `docker push` asks for; it covers the figures' HEAD, GET, POST, PATCH and PUT
PULL = "pull"  # what `docker pull` asks for: the repositories a figure only pulls from (a pull-through cache's)
TIMEOUT = httpx.Timeout(60.0)


def new_password() -> str:
    """The admin password of one ncr-trio start (NCR_ADMIN_PASSWORD: the first start creates `admin`)."""
    return secrets.token_urlsafe(18)


class AuthError(RuntimeError):
    pass


@dataclass(frozen=True)
class Access:
    """The credentials clients of one running server send: a bearer token per repository, or none at all."""

    tokens: Mapping[str, str] = field(default_factory=dict)  # repository -> token
    anonymous: bool = True

    def headers(self, repo: str) -> dict[str, str]:
        """The headers of a request on `repo` (its blobs, manifests or uploads)."""
        if self.anonymous:
            return {}
        token = self.tokens.get(repo)
        if token is None:  # fetching one now could land inside a timed part: every figure lists its repositories
            raise AuthError(f"no token was fetched for repository {repo!r}; add it to its figure's repos")
        return {"Authorization": f"Bearer {token}"}

    def authorization(self, repo: str) -> str:
        """The Authorization value for `repo` ("" when anonymous), for loadgen's environment."""
        return self.headers(repo).get("Authorization", "")


ANONYMOUS = Access()


def registry_of(repo: str) -> str:
    return repo.split("/", 1)[0]


def ensure_registries(base: str, username: str, password: str, names: Iterable[str]) -> None:
    """Create the registries (namespaces) that do not exist yet."""
    with httpx.Client(base_url=base, auth=(username, password), timeout=TIMEOUT) as c:
        r = c.get("/api/v1/registries")
        if r.status_code != 200:
            raise AuthError(f"GET /api/v1/registries -> {r.status_code}: {r.text[:300]}")
        existing = {reg["name"] for reg in r.json()["registries"]}
        for name in sorted(set(names) - existing):
            r = c.post("/api/v1/registries", json={"name": name})
            if r.status_code != 201:
                raise AuthError(f"POST /api/v1/registries {name!r} -> {r.status_code}: {r.text[:300]}")


def fetch_token(base: str, username: str, password: str, *scopes: str) -> str:
    """One token for `scopes` from the Docker token endpoint (Basic auth), checked to grant all of them."""
    params: list[tuple[str, str | int | float | bool | None]] = [("service", TOKEN_SERVICE),
                                                                 *(("scope", s) for s in scopes)]
    r = httpx.get(f"{base}/auth/token", params=params, auth=(username, password), timeout=TIMEOUT)
    if r.status_code != 200:
        raise AuthError(f"GET /auth/token -> {r.status_code}: {r.text[:300]}")
    body = r.json()
    granted: dict[str, set[str]] = {}
    for s in str(body.get("scope", "")).split():
        resource, _, actions = s.rpartition(":")
        granted.setdefault(resource, set()).update(actions.split(","))
    missing = []
    for s in scopes:
        resource, _, actions = s.rpartition(":")
        if not set(actions.split(",")) <= granted.get(resource, set()):
            missing.append(s)
    if missing:
        raise AuthError(f"the token endpoint did not grant {', '.join(missing)} (granted: {body.get('scope')!r})")
    return str(body["token"])


def login(base: str, username: str, password: str, repos: Mapping[str, str]) -> Access:
    """Create the repositories' registries, then fetch one token per repository (repository -> the actions it is
    used for), all before any timing."""
    if not repos:
        raise AuthError("no repositories to fetch tokens for")
    ensure_registries(base, username, password, {registry_of(r) for r in repos})
    tokens = {r: fetch_token(base, username, password, f"repository:{r}:{actions}") for r, actions in repos.items()}
    return Access(tokens, anonymous=False)
