"""A client of the management API (`/api/v1`, docs/api.md), over the operations' declarations
(ncr_trio/http/operations.py), on the standard library's urllib.

`call(name, body, **params)` makes any declared operation's request: the path from its template,
the other parameters as its query, and answers decoded and checked by the operation's answer model
(http/models.py), so an answer the document does not describe is an error here too. The methods
below are the CLI's and the tests' shortcuts over it, answering the JSON document as plain data, so
callers can print exactly what the server said. Credentials: a user's name and password, or an
access key's ID and secret, sent as Basic auth over the connection the URL names (HTTPS with
`cacert` to trust a private CA). An error answer raises `APIError` with the code and message of its
body; an unreachable server raises `OSError` (urllib's `URLError`).

A few older shortcuts answer only the list inside the document (`registries()`, `users()`,
`keys()`, `roles()`, `audit()`); the `list_*` methods answer the whole document.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, urlencode

import msgspec

from ncr_trio import __version__
from ncr_trio.http.operations import OPERATIONS

PER_PAGE_MAX = 500
Doc = dict[str, Any]
_BY_NAME = {op.name: op for op in OPERATIONS}
# How a path parameter is quoted: an image's name keeps its slashes, a role's registry its `*`.
_SAFE = {"image": "/", "on": "*"}


class APIError(Exception):
    """An error answer: `code` and `message` from the registry error body, `status` the HTTP status."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message, self.detail = status, code, message, detail


@dataclass
class Client:
    url: str
    username: str
    password: str = field(repr=False)
    cacert: str | None = None
    timeout: float = 60.0

    def request(self, method: str, path: str, body: Doc | None = None,
                query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One call of `/api/v1` + `path`: the answer's bytes decoded as JSON (None for an empty one)."""
        raw = self._send(method, path, body, query, timeout)
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            url = self.url.rstrip("/") + "/api/v1" + path
            raise APIError(200, "BAD_RESPONSE", f"{url} did not answer JSON: {raw[:80]!r}") from None

    def call(self, name: str, body: Doc | msgspec.Struct | None = None, *, timeout: float | None = None,
             **params: Any) -> Any:
        """The declared operation `name` (`api.images`): path parameters by name, the others as the
        query (None and False: left out); the answer as its model (None for a 204)."""
        op = _BY_NAME[name]
        in_path = set(re.findall(r"\{(\w+)\}", op.path))
        path = re.sub(r"\{(\w+)\}", lambda m: quote(str(params[m[1]]), safe=_SAFE.get(m[1], ":")), op.path)
        query = {k: "true" if v is True else v for k, v in params.items() if k not in in_path and v is not False}
        data = cast(Doc, msgspec.to_builtins(body)) if isinstance(body, msgspec.Struct) else body
        raw = self._send(op.method, path.removeprefix("/api/v1"), data, query, timeout)
        model = op.ok[1]
        if model is None:
            return None
        try:
            return msgspec.json.decode(raw, type=model)
        except msgspec.DecodeError as e:
            raise APIError(200, "BAD_RESPONSE", f"{name}: an answer the API does not declare: {e}") from None

    def doc(self, name: str, body: Doc | None = None, *, timeout: float | None = None, **params: Any) -> Doc:
        """`call`, answering plain data (the JSON document as the server sent it)."""
        return cast(Doc, msgspec.to_builtins(self.call(name, body, timeout=timeout, **params)))

    def _send(self, method: str, path: str, body: Doc | None, query: dict[str, Any] | None,
              timeout: float | None) -> bytes:
        url = self.url.rstrip("/") + "/api/v1" + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", f"ncr-trio-cli/{__version__}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        context = ssl.create_default_context(cafile=self.cacert) if self.cacert else None
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=context) as resp:
                raw: bytes = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["errors"][0]
                code, message, detail = str(err.get("code", "ERROR")), str(err.get("message", "")), err.get("detail")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                code, message, detail = "HTTP_ERROR", raw[:200].decode("utf-8", "replace").strip() or e.reason, None
            raise APIError(e.code, code, message, detail) from None
        return raw

    def pages(self, fetch: Callable[..., Doc], key: str, *args: Any, per_page: int = PER_PAGE_MAX,
              **kwargs: Any) -> Iterator[Doc]:
        """Every page of a paginated listing, first to last: `fetch(*args, page=, per_page=, **kwargs)`,
        `key` naming the list in each page (`images`, `tags`...)."""
        page, fetched = 1, 0
        while True:
            answer = fetch(*args, page=page, per_page=per_page, **kwargs)
            yield answer
            got = len(answer.get(key) or [])
            fetched += got
            if not got or fetched >= answer["total"]:
                return
            page += 1

    # -- who am I -----------------------------------------------------------------------------
    def whoami(self) -> Doc:
        return self.doc("api.whoami")

    # -- registries ---------------------------------------------------------------------------
    def list_registries(self) -> Doc:
        return self.doc("api.registries")

    def create_registry(self, name: str, **settings: Any) -> Doc:
        """`settings`: description, public_read, public_uri, allowed_cidrs."""
        return self.doc("api.registry.create", {"name": name, **settings})

    def registry(self, name: str) -> Doc:
        return self.doc("api.registry", registry=name)

    def update_registry(self, name: str, **settings: Any) -> Doc:
        return self.doc("api.registry.update", settings, registry=name)

    def delete_registry(self, name: str, force: bool = False) -> Doc:
        return self.doc("api.registry.delete", registry=name, force=force)

    def members(self, registry: str) -> Doc:
        return self.doc("api.members", registry=registry)

    # -- images, artifacts, tags --------------------------------------------------------------
    def images(self, registry: str, q: str | None = None, page: int | None = None,
               per_page: int | None = None) -> Doc:
        return self.doc("api.images", registry=registry, q=q, page=page, per_page=per_page)

    def image(self, registry: str, image: str) -> Doc:
        return self.doc("api.image", registry=registry, image=image)

    def delete_image(self, registry: str, image: str, timeout: float | None = 600.0) -> Doc:
        return self.doc("api.image.delete", registry=registry, image=image, timeout=timeout)

    def artifacts(self, registry: str, image: str, page: int | None = None, per_page: int | None = None) -> Doc:
        return self.doc("api.artifacts", registry=registry, image=image, page=page, per_page=per_page)

    def artifact(self, registry: str, image: str, digest: str) -> Doc:
        return self.doc("api.artifact", registry=registry, image=image, digest=digest)

    def delete_artifact(self, registry: str, image: str, digest: str) -> None:
        self.call("api.artifact.delete", registry=registry, image=image, digest=digest)

    def tags(self, registry: str, image: str, q: str | None = None, glob: str | None = None,
             page: int | None = None, per_page: int | None = None) -> Doc:
        return self.doc("api.tags", registry=registry, image=image, q=q, glob=glob, page=page, per_page=per_page)

    def create_tag(self, registry: str, image: str, digest: str, tag: str) -> Doc:
        return self.doc("api.artifact.tags", {"name": tag}, registry=registry, image=image, digest=digest)

    def delete_tag(self, registry: str, image: str, tag: str) -> None:
        self.call("api.tag.delete", registry=registry, image=image, tag=tag)

    def registry_tags(self, registry: str, q: str | None = None, glob: str | None = None,
                      page: int | None = None, per_page: int | None = None) -> Doc:
        """Tags of every image of a registry."""
        return self.doc("api.registry.tags", registry=registry, q=q, glob=glob, page=page, per_page=per_page)

    # -- webhooks -----------------------------------------------------------------------------
    def webhooks(self, registry: str, page: int | None = None, per_page: int | None = None) -> Doc:
        return self.doc("api.webhooks", registry=registry, page=page, per_page=per_page)

    def create_webhook(self, registry: str, name: str, url: str, kind: str = "http", *,
                       event_types: list[str] | None = None, secret: str | None = None,
                       auth_header: str | None = None, enabled: bool = True) -> Doc:
        """`event_types` empty or None: every type. `secret` and `auth_header` are never answered back."""
        body: Doc = {"name": name, "kind": kind, "url": url, "event_types": event_types or [], "enabled": enabled}
        body.update({k: v for k, v in (("secret", secret), ("auth_header", auth_header)) if v is not None})
        return self.doc("api.webhook.create", body, registry=registry)

    def webhook(self, registry: str, webhook_id: int) -> Doc:
        return self.doc("api.webhook", registry=registry, webhook=int(webhook_id))

    def update_webhook(self, registry: str, webhook_id: int, **fields: Any) -> Doc:
        """`fields`: any of name, kind, url, event_types, secret, auth_header, enabled; an empty or None
        `secret` / `auth_header` removes it."""
        return self.doc("api.webhook.update", fields, registry=registry, webhook=int(webhook_id))

    def delete_webhook(self, registry: str, webhook_id: int) -> None:
        self.call("api.webhook.delete", registry=registry, webhook=int(webhook_id))

    def test_webhook(self, registry: str, webhook_id: int, timeout: float | None = 120.0) -> Doc:
        """Send a `test` event now: the delivery, with how it went (one attempt)."""
        return self.doc("api.webhook.test", {}, registry=registry, webhook=int(webhook_id), timeout=timeout)

    def webhook_deliveries(self, registry: str, webhook_id: int, page: int | None = None,
                           per_page: int | None = None) -> Doc:
        return self.doc("api.webhook.deliveries", registry=registry, webhook=int(webhook_id), page=page,
                        per_page=per_page)

    # -- cleanup and protection policies ------------------------------------------------------
    def cleanup_policies(self, registry: str) -> Doc:
        return self.doc("api.cleanup.policies", registry=registry)

    def add_cleanup_policy(self, registry: str, rule: str, n: int, image: str | None = None,
                           tag: str | None = None, untagged: bool = False) -> Doc:
        """`rule`: older_than (n days), retain_pushed or retain_pulled (n artifacts); patterns default to `**`."""
        body: Doc = {"rule": rule, "n": n, "untagged": untagged}
        body.update({k: v for k, v in (("image", image), ("tag", tag)) if v is not None})
        return self.doc("api.cleanup.policy.create", body, registry=registry)

    def set_cleanup_policy_enabled(self, registry: str, policy_id: int, enabled: bool) -> Doc:
        return self.doc("api.cleanup.policy.update", {"enabled": enabled}, registry=registry, id=int(policy_id))

    def delete_cleanup_policy(self, registry: str, policy_id: int) -> None:
        self.call("api.cleanup.policy.delete", registry=registry, id=int(policy_id))

    def cleanup_schedule(self, registry: str) -> Doc:
        return self.doc("api.cleanup.schedule", registry=registry)

    def set_cleanup_schedule(self, registry: str, schedule: str) -> Doc:
        """A preset (None, Hourly, Daily, Weekly) or five cron fields, in UTC."""
        return self.doc("api.cleanup.schedule.set", {"schedule": schedule}, registry=registry)

    def test_cleanup(self, registry: str, timeout: float | None = 3600.0) -> Doc:
        """A test run: what a run would delete now (nothing is deleted)."""
        return self.doc("api.cleanup.test", {}, registry=registry, timeout=timeout)

    def run_cleanup(self, registry: str, timeout: float | None = 3600.0) -> Doc:
        """Run the registry's cleanup now; answers when the run has finished."""
        return self.doc("api.cleanup.run", {}, registry=registry, timeout=timeout)

    def cleanup_runs(self, registry: str, page: int | None = None, per_page: int | None = None) -> Doc:
        return self.doc("api.cleanup.runs", registry=registry, page=page, per_page=per_page)

    def cleanup_run(self, registry: str, run_id: int) -> Doc:
        return self.doc("api.cleanup.run.details", registry=registry, id=int(run_id))

    def protection_policies(self, registry: str) -> Doc:
        return self.doc("api.protection.policies", registry=registry)

    def add_protection_policy(self, registry: str, tag: str, image: str | None = None) -> Doc:
        body: Doc = {"tag": tag} if image is None else {"tag": tag, "image": image}
        return self.doc("api.protection.policy.create", body, registry=registry)

    def set_protection_policy_enabled(self, registry: str, policy_id: int, enabled: bool) -> Doc:
        return self.doc("api.protection.policy.update", {"enabled": enabled}, registry=registry, id=int(policy_id))

    def delete_protection_policy(self, registry: str, policy_id: int) -> None:
        self.call("api.protection.policy.delete", registry=registry, id=int(policy_id))

    # -- garbage collection (system administrators) ------------------------------------------
    def run_gc(self, dry_run: bool = False, delete_untagged: bool = False, timeout: float | None = 3600.0) -> Doc:
        return self.doc("api.gc.run", {"dry_run": dry_run, "delete_untagged": delete_untagged}, timeout=timeout)

    def gc_runs(self, page: int | None = None, per_page: int | None = None) -> Doc:
        return self.doc("api.gc.runs", page=page, per_page=per_page)

    # -- users, keys, roles, audit ------------------------------------------------------------
    def list_users(self) -> Doc:
        return self.doc("api.users")

    def create_user(self, name: str, password: str | None = None, system_admin: bool = False) -> Doc:
        return self.doc("api.user.create", {"name": name, "password": password, "system_admin": system_admin})

    def delete_user(self, name: str) -> None:
        self.call("api.user.delete", user=name)

    def list_keys(self, user: str = "me", revoked: bool = False) -> Doc:
        return self.doc("api.keys", user=user, revoked=revoked)

    def create_key(self, user: str = "me", description: str = "") -> Doc:
        """A new access key with its secret (the only answer that ever carries it)."""
        return self.doc("api.key.create", {"description": description}, user=user)

    def revoke_key(self, key_id: str, user: str = "me") -> None:
        self.call("api.key.revoke", user=user, key=key_id)

    def list_roles(self, user: str = "me") -> Doc:
        return self.doc("api.roles", user=user)

    def set_role(self, user: str, registry: str, role: str) -> Doc:
        """`registry` may be `*` (every registry)."""
        return self.doc("api.role.set", {"role": role}, user=user, on=registry)

    def drop_role(self, user: str, registry: str) -> None:
        self.call("api.role.delete", user=user, on=registry)

    def audit_log(self, actor: str | None = None, action: str | None = None, registry: str | None = None,
                  before: int | None = None, limit: int | None = None) -> Doc:
        return self.doc("api.audit", actor=actor, action=action, registry=registry, before=before, limit=limit)

    # -- shortcuts answering only the list ----------------------------------------------------
    def registries(self) -> list[Doc]:
        return list(self.list_registries()["registries"])

    def users(self) -> list[Doc]:
        return list(self.list_users()["users"])

    def keys(self, user: str = "me") -> list[Doc]:
        return list(self.list_keys(user)["keys"])

    def roles(self, user: str = "me") -> list[Doc]:
        return list(self.list_roles(user)["roles"])

    def audit(self, **filters: Any) -> list[Doc]:
        return list(self.audit_log(**filters)["entries"])


__all__ = ["PER_PAGE_MAX", "APIError", "Client"]
