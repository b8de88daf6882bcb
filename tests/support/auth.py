"""Log test HTTP clients in the way registry clients do: Docker token auth, for real.

`BearerAuth` fetches a token from the server's token endpoint (Basic auth with a user or an
access key) for the repository a request names, before the request goes out, so streamed
bodies never need replaying; a 401 (an expired token) fetches a new one and retries.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Generator

import httpx

# The repository routes of the server (ncr_trio/http/v2.py): anchored at both ends, so a name that
# contains "tags" or "blobs" as a component ("errors/tags") is taken whole, as the server takes it.
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:tags/list|manifests/[^/]+|referrers/[^/]+|blobs/uploads/?"
                        r"|blobs/uploads/[^/]+|blobs/[^/]+)$")


def scope_for(path: str, actions: str) -> str:
    m = _REPO_PATH.match(path)
    if m is not None:
        return f"repository:{m['name']}:{actions}"
    return "registry:catalog:*"


class BearerAuth(httpx.Auth):
    def __init__(self, base_url: str, username: str, password: str, actions: str = "pull,push,delete",
                 verify: bool | ssl.SSLContext = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.actions = actions
        self.verify = verify
        self._tokens: dict[str, str] = {}

    def token(self, scope: str) -> str:
        r = self._fetch(scope)
        if r.status_code == 400:
            # A scope the token service refuses (a repository name outside the name grammar): log in
            # without it and send the request anyway, so the registry answers it (NAME_INVALID).
            r = self._fetch(None)
        r.raise_for_status()
        token = str(r.json()["token"])
        self._tokens[scope] = token
        return token

    def _fetch(self, scope: str | None) -> httpx.Response:
        params = {"service": "ncr-trio"} | ({"scope": scope} if scope is not None else {})
        return httpx.get(f"{self.base_url}/auth/token", params=params, auth=(self.username, self.password),
                         timeout=30, verify=self.verify)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.path.startswith("/auth/"):
            yield request
            return
        scope = scope_for(request.url.path, self.actions)
        token = self._tokens.get(scope) or self.token(scope)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token(scope)}"
            yield request


def token(base_url: str, username: str, password: str, *scopes: str, verify: bool | ssl.SSLContext = True) -> str:
    params = [("service", "ncr-trio"), *(("scope", s) for s in scopes)]
    r = httpx.get(f"{base_url}/auth/token", params=params, auth=(username, password), timeout=30, verify=verify)
    r.raise_for_status()
    return str(r.json()["token"])
