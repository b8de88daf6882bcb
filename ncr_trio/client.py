"""A small client of the management API, for the CLI (standard library only).

Credentials: a user's name and password, or an access key's ID and secret, sent as Basic auth
over the connection the URL names (HTTPS with `cacert` to trust a private CA).
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message = status, code, message


@dataclass
class Client:
    url: str
    username: str
    password: str
    cacert: str | None = None
    timeout: float = 60.0

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, Any] | None = None) -> Any:
        url = self.url.rstrip("/") + "/api/v1" + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        context = ssl.create_default_context(cafile=self.cacert) if self.cacert else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["errors"][0]
                raise APIError(e.code, err.get("code", "ERROR"), err.get("message", "")) from None
            except (ValueError, KeyError, IndexError, TypeError):
                raise APIError(e.code, "HTTP_ERROR", raw[:200].decode("utf-8", "replace")) from None
        return json.loads(raw) if raw.strip() else None

    # -- verbs --------------------------------------------------------------------------------
    def registries(self) -> Any:
        return self.request("GET", "/registries")["registries"]

    def create_registry(self, name: str, **settings: Any) -> Any:
        return self.request("POST", "/registries", {"name": name, **settings})

    def registry(self, name: str) -> Any:
        return self.request("GET", f"/registries/{quote(name, safe='')}")

    def update_registry(self, name: str, **settings: Any) -> Any:
        return self.request("PATCH", f"/registries/{quote(name, safe='')}", settings)

    def delete_registry(self, name: str, force: bool = False) -> Any:
        return self.request("DELETE", f"/registries/{quote(name, safe='')}", query={"force": "true" if force else None})

    def users(self) -> Any:
        return self.request("GET", "/users")["users"]

    def create_user(self, name: str, password: str | None = None, system_admin: bool = False) -> Any:
        return self.request("POST", "/users", {"name": name, "password": password, "system_admin": system_admin})

    def delete_user(self, name: str) -> Any:
        return self.request("DELETE", f"/users/{quote(name, safe='')}")

    def keys(self, user: str = "me") -> Any:
        return self.request("GET", f"/users/{quote(user, safe='')}/keys")["keys"]

    def create_key(self, user: str = "me", description: str = "") -> Any:
        return self.request("POST", f"/users/{quote(user, safe='')}/keys", {"description": description})

    def revoke_key(self, key_id: str, user: str = "me") -> Any:
        return self.request("DELETE", f"/users/{quote(user, safe='')}/keys/{quote(key_id, safe='')}")

    def roles(self, user: str = "me") -> Any:
        return self.request("GET", f"/users/{quote(user, safe='')}/roles")["roles"]

    def set_role(self, user: str, registry: str, role: str) -> Any:
        return self.request("PUT", f"/users/{quote(user, safe='')}/roles/{quote(registry, safe='')}", {"role": role})

    def drop_role(self, user: str, registry: str) -> Any:
        return self.request("DELETE", f"/users/{quote(user, safe='')}/roles/{quote(registry, safe='')}")

    def audit(self, **filters: Any) -> Any:
        return self.request("GET", "/audit", query=filters)["entries"]


__all__ = ["APIError", "Client"]
