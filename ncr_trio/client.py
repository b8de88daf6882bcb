"""A typed client of the management API (`/api/v1`, docs/api.md), standard library only.

One method per endpoint, answering the API's JSON document as it came (typed below), so callers
can print exactly what the server said. Credentials: a user's name and password, or an access
key's ID and secret, sent as Basic auth over the connection the URL names (HTTPS with `cacert` to
trust a private CA). An error answer raises `APIError` with the code and message of its body;
an unreachable server raises `OSError` (urllib's `URLError`).

A few older shortcuts answer only the list inside the document (`registries()`, `users()`,
`keys()`, `roles()`, `audit()`); the `list_*` methods answer the whole document.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, TypeVar, cast
from urllib.parse import quote, urlencode

from ncr_trio import __version__

PER_PAGE_MAX = 500


class APIError(Exception):
    """An error answer: `code` and `message` from the registry error body, `status` the HTTP status."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message, self.detail = status, code, message, detail


# -- the API's documents (docs/api.md) ------------------------------------------------------------


class Page(TypedDict):
    total: int
    page: int
    per_page: int


class WhoAmI(TypedDict):
    user: str
    system_admin: bool
    roles: dict[str, str]
    key_id: str | None


class Registry(TypedDict):
    name: str
    description: str
    public_read: bool
    public_uri: bool
    allowed_cidrs: list[str]
    created_at: str | None
    updated_at: str | None


class RegistryDetail(Registry):
    images: int


class RegistryList(TypedDict):
    registries: list[Registry]


class RegistryDeleted(TypedDict):
    deleted: str
    images_deleted: int


class Member(TypedDict):
    user: str
    role: str


class MemberList(TypedDict):
    members: list[Member]


class Image(TypedDict):
    name: str
    repository: str
    artifacts: int
    tags: int
    size: int
    pushed_at: str | None
    pulled_at: str | None


class ImagePage(Page):
    images: list[Image]


class ImageDeleted(TypedDict):
    deleted: str
    artifacts_deleted: int


class Platform(TypedDict):
    os: str
    architecture: str
    variant: NotRequired[str]


class Artifact(TypedDict):
    digest: str
    media_type: str
    artifact_type: str | None
    size: int
    platforms: list[Platform]
    tags: list[str]
    subject: str | None
    pushed_at: str | None
    pulled_at: str | None
    signed: Any
    scan_status: Any


class ArtifactPage(Page):
    artifacts: list[Artifact]


class Tag(TypedDict):
    name: str
    repository: str
    digest: str
    updated_at: str | None


class TagPage(Page):
    tags: list[Tag]


class GcRun(TypedDict):
    id: int
    dry_run: bool
    started_at: str | None
    finished_at: str | None
    blobs_removed: int
    manifests_removed: int
    uploads_removed: int
    bytes_freed: int


class GcReport(GcRun):
    blobs: list[str]
    manifests: list[str]
    uploads: NotRequired[list[str]]


class GcPage(Page):
    runs: list[GcRun]


class User(TypedDict):
    name: str
    system_admin: bool
    created_at: str | None


class UserList(TypedDict):
    users: list[User]


class UserCreated(TypedDict):
    name: str


class Key(TypedDict):
    id: str
    user: str
    description: str
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    rotation_due: bool


class NewKey(Key):
    secret: str


class KeyList(TypedDict):
    keys: list[Key]


class Role(TypedDict):
    registry: str
    role: str


class RoleList(TypedDict):
    roles: list[Role]


class RoleGrant(TypedDict):
    user: str
    registry: str
    role: str


class AuditEntry(TypedDict):
    id: int
    at: str | None
    actor: str | None
    action: str
    outcome: str
    registry: str | None
    repository: str | None
    target: str | None
    client: str | None
    detail: Any


class AuditLog(TypedDict):
    entries: list[AuditEntry]


class Webhook(TypedDict):
    id: int
    registry: str
    name: str
    kind: str
    url: str
    event_types: list[str]
    enabled: bool
    secret_set: bool
    auth_header_set: bool
    created_at: str | None


class WebhookPage(Page):
    webhooks: list[Webhook]


class DeliveryAttempt(TypedDict):
    attempt: int
    ok: bool
    # System administrators only:
    at: NotRequired[str | None]
    status: NotRequired[int | None]
    error: NotRequired[str | None]
    duration_ms: NotRequired[int | None]


class Delivery(TypedDict):
    id: int
    webhook_id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status: NotRequired[int | None]  # this and the next two: system administrators only
    last_error: NotRequired[str | None]
    finished_at: NotRequired[str | None]
    created_at: str | None
    next_attempt_at: str | None
    attempt_log: list[DeliveryAttempt]
    payload: Any


class DeliveryPage(Page):
    deliveries: list[Delivery]


class CleanupPolicy(TypedDict):
    id: int
    registry: str
    image: str
    tag: str
    untagged: bool
    rule: str
    n: int
    description: str
    enabled: bool
    created_at: str | None


class CleanupPolicyList(TypedDict):
    policies: list[CleanupPolicy]


class ProtectionPolicy(TypedDict):
    id: int
    registry: str
    image: str
    tag: str
    enabled: bool
    created_at: str | None


class ProtectionPolicyList(TypedDict):
    policies: list[ProtectionPolicy]


class Schedule(TypedDict):
    schedule: str
    preset: str | None
    timezone: str
    next_run_at: str | None
    last_run_at: str | None


class CleanupRun(TypedDict):
    id: int
    registry: str
    triggered_by: str
    dry_run: bool
    status: str
    started_at: str | None
    finished_at: str | None
    deleted: int
    kept: int
    policies: list[dict[str, Any]]
    error: str | None


class CleanupItem(TypedDict):
    repository: str
    digest: str
    tags: list[str]
    outcome: str
    reason: str | None


class CleanupRunDetail(CleanupRun):
    items: list[CleanupItem]


class CleanupRunPage(Page):
    runs: list[CleanupRun]


P = TypeVar("P", bound=Page)


def _seg(value: str) -> str:
    """One path segment (a registry, user, key, tag or digest)."""
    return quote(value, safe=":")


def _image(value: str) -> str:
    """An image name: several segments (`tools/lint`)."""
    return quote(value, safe="/")


@dataclass
class Client:
    url: str
    username: str
    password: str = field(repr=False)
    cacert: str | None = None
    timeout: float = 60.0

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One call of `/api/v1` + `path`: the decoded JSON answer (None for an empty one)."""
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
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["errors"][0]
                code, message, detail = str(err.get("code", "ERROR")), str(err.get("message", "")), err.get("detail")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                code, message, detail = "HTTP_ERROR", raw[:200].decode("utf-8", "replace").strip() or e.reason, None
            raise APIError(e.code, code, message, detail) from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise APIError(200, "BAD_RESPONSE", f"{url} did not answer JSON: {raw[:80]!r}") from None

    def pages(self, fetch: Callable[..., P], key: str, *args: Any, per_page: int = PER_PAGE_MAX,
              **kwargs: Any) -> Iterator[P]:
        """Every page of a paginated listing, first to last: `fetch(*args, page=, per_page=, **kwargs)`,
        `key` naming the list in each page (`images`, `tags`...)."""
        page, fetched = 1, 0
        while True:
            answer = fetch(*args, page=page, per_page=per_page, **kwargs)
            yield answer
            got = len(cast(dict[str, Any], answer).get(key) or [])
            fetched += got
            if not got or fetched >= answer["total"]:
                return
            page += 1

    # -- who am I -----------------------------------------------------------------------------
    def whoami(self) -> WhoAmI:
        return cast(WhoAmI, self.request("GET", "/whoami"))

    # -- registries ---------------------------------------------------------------------------
    def list_registries(self) -> RegistryList:
        return cast(RegistryList, self.request("GET", "/registries"))

    def create_registry(self, name: str, **settings: Any) -> Registry:
        """`settings`: description, public_read, public_uri, allowed_cidrs."""
        return cast(Registry, self.request("POST", "/registries", {"name": name, **settings}))

    def registry(self, name: str) -> RegistryDetail:
        return cast(RegistryDetail, self.request("GET", f"/registries/{_seg(name)}"))

    def update_registry(self, name: str, **settings: Any) -> Registry:
        return cast(Registry, self.request("PATCH", f"/registries/{_seg(name)}", settings))

    def delete_registry(self, name: str, force: bool = False) -> RegistryDeleted:
        return cast(RegistryDeleted, self.request("DELETE", f"/registries/{_seg(name)}",
                                                  query={"force": "true" if force else None}))

    def members(self, registry: str) -> MemberList:
        return cast(MemberList, self.request("GET", f"/registries/{_seg(registry)}/members"))

    # -- images, artifacts, tags --------------------------------------------------------------
    def images(self, registry: str, q: str | None = None, page: int | None = None,
               per_page: int | None = None) -> ImagePage:
        return cast(ImagePage, self.request("GET", f"/registries/{_seg(registry)}/images",
                                            query={"q": q, "page": page, "per_page": per_page}))

    def image(self, registry: str, image: str) -> Image:
        return cast(Image, self.request("GET", f"/registries/{_seg(registry)}/images/{_image(image)}"))

    def delete_image(self, registry: str, image: str, timeout: float | None = 600.0) -> ImageDeleted:
        return cast(ImageDeleted, self.request("DELETE", f"/registries/{_seg(registry)}/images/{_image(image)}",
                                               timeout=timeout))

    def artifacts(self, registry: str, image: str, page: int | None = None,
                  per_page: int | None = None) -> ArtifactPage:
        return cast(ArtifactPage, self.request(
            "GET", f"/registries/{_seg(registry)}/images/{_image(image)}/artifacts",
            query={"page": page, "per_page": per_page}))

    def artifact(self, registry: str, image: str, digest: str) -> Artifact:
        return cast(Artifact, self.request(
            "GET", f"/registries/{_seg(registry)}/images/{_image(image)}/artifacts/{_seg(digest)}"))

    def delete_artifact(self, registry: str, image: str, digest: str) -> None:
        self.request("DELETE", f"/registries/{_seg(registry)}/images/{_image(image)}/artifacts/{_seg(digest)}")

    def tags(self, registry: str, image: str, q: str | None = None, glob: str | None = None,
             page: int | None = None, per_page: int | None = None) -> TagPage:
        return cast(TagPage, self.request(
            "GET", f"/registries/{_seg(registry)}/images/{_image(image)}/tags",
            query={"q": q, "glob": glob, "page": page, "per_page": per_page}))

    def create_tag(self, registry: str, image: str, digest: str, tag: str) -> Tag:
        return cast(Tag, self.request(
            "POST", f"/registries/{_seg(registry)}/images/{_image(image)}/artifacts/{_seg(digest)}/tags",
            {"name": tag}))

    def delete_tag(self, registry: str, image: str, tag: str) -> None:
        self.request("DELETE", f"/registries/{_seg(registry)}/images/{_image(image)}/tags/{_seg(tag)}")

    def registry_tags(self, registry: str, q: str | None = None, glob: str | None = None,
                      page: int | None = None, per_page: int | None = None) -> TagPage:
        """Tags of every image of a registry."""
        return cast(TagPage, self.request("GET", f"/registries/{_seg(registry)}/tags",
                                          query={"q": q, "glob": glob, "page": page, "per_page": per_page}))

    # -- webhooks -----------------------------------------------------------------------------
    def webhooks(self, registry: str, page: int | None = None, per_page: int | None = None) -> WebhookPage:
        return cast(WebhookPage, self.request("GET", f"/registries/{_seg(registry)}/webhooks",
                                              query={"page": page, "per_page": per_page}))

    def create_webhook(self, registry: str, name: str, url: str, kind: str = "http", *,
                       event_types: list[str] | None = None, secret: str | None = None,
                       auth_header: str | None = None, enabled: bool = True) -> Webhook:
        """`event_types` empty or None: every type. `secret` and `auth_header` are never answered back."""
        body: dict[str, Any] = {"name": name, "kind": kind, "url": url, "event_types": event_types or [],
                                "enabled": enabled}
        if secret is not None:
            body["secret"] = secret
        if auth_header is not None:
            body["auth_header"] = auth_header
        return cast(Webhook, self.request("POST", f"/registries/{_seg(registry)}/webhooks", body))

    def webhook(self, registry: str, webhook_id: int) -> Webhook:
        return cast(Webhook, self.request("GET", f"/registries/{_seg(registry)}/webhooks/{int(webhook_id)}"))

    def update_webhook(self, registry: str, webhook_id: int, **fields: Any) -> Webhook:
        """`fields`: any of name, kind, url, event_types, secret, auth_header, enabled; an empty or None
        `secret` / `auth_header` removes it."""
        return cast(Webhook, self.request("PATCH", f"/registries/{_seg(registry)}/webhooks/{int(webhook_id)}",
                                          fields))

    def delete_webhook(self, registry: str, webhook_id: int) -> None:
        self.request("DELETE", f"/registries/{_seg(registry)}/webhooks/{int(webhook_id)}")

    def test_webhook(self, registry: str, webhook_id: int, timeout: float | None = 120.0) -> Delivery:
        """Send a `test` event now: the delivery, with how it went (one attempt)."""
        return cast(Delivery, self.request("POST", f"/registries/{_seg(registry)}/webhooks/{int(webhook_id)}/test",
                                           {}, timeout=timeout))

    def webhook_deliveries(self, registry: str, webhook_id: int, page: int | None = None,
                           per_page: int | None = None) -> DeliveryPage:
        return cast(DeliveryPage, self.request(
            "GET", f"/registries/{_seg(registry)}/webhooks/{int(webhook_id)}/deliveries",
            query={"page": page, "per_page": per_page}))

    # -- cleanup and protection policies ------------------------------------------------------
    def cleanup_policies(self, registry: str) -> CleanupPolicyList:
        return cast(CleanupPolicyList, self.request("GET", f"/registries/{_seg(registry)}/cleanup/policies"))

    def add_cleanup_policy(self, registry: str, rule: str, n: int, image: str | None = None,
                           tag: str | None = None, untagged: bool = False) -> CleanupPolicy:
        """`rule`: older_than (n days), retain_pushed or retain_pulled (n artifacts); patterns default to `**`."""
        body: dict[str, Any] = {"rule": rule, "n": n, "untagged": untagged}
        if image is not None:
            body["image"] = image
        if tag is not None:
            body["tag"] = tag
        return cast(CleanupPolicy, self.request("POST", f"/registries/{_seg(registry)}/cleanup/policies", body))

    def set_cleanup_policy_enabled(self, registry: str, policy_id: int, enabled: bool) -> CleanupPolicy:
        return cast(CleanupPolicy, self.request(
            "PATCH", f"/registries/{_seg(registry)}/cleanup/policies/{int(policy_id)}", {"enabled": enabled}))

    def delete_cleanup_policy(self, registry: str, policy_id: int) -> None:
        self.request("DELETE", f"/registries/{_seg(registry)}/cleanup/policies/{int(policy_id)}")

    def cleanup_schedule(self, registry: str) -> Schedule:
        return cast(Schedule, self.request("GET", f"/registries/{_seg(registry)}/cleanup/schedule"))

    def set_cleanup_schedule(self, registry: str, schedule: str) -> Schedule:
        """A preset (None, Hourly, Daily, Weekly) or five cron fields, in UTC."""
        return cast(Schedule, self.request("PUT", f"/registries/{_seg(registry)}/cleanup/schedule",
                                           {"schedule": schedule}))

    def test_cleanup(self, registry: str, timeout: float | None = 3600.0) -> CleanupRunDetail:
        """A test run: what a run would delete now (nothing is deleted)."""
        return cast(CleanupRunDetail, self.request("POST", f"/registries/{_seg(registry)}/cleanup/test", {},
                                                   timeout=timeout))

    def run_cleanup(self, registry: str, timeout: float | None = 3600.0) -> CleanupRunDetail:
        """Run the registry's cleanup now; answers when the run has finished."""
        return cast(CleanupRunDetail, self.request("POST", f"/registries/{_seg(registry)}/cleanup/run", {},
                                                   timeout=timeout))

    def cleanup_runs(self, registry: str, page: int | None = None, per_page: int | None = None) -> CleanupRunPage:
        return cast(CleanupRunPage, self.request("GET", f"/registries/{_seg(registry)}/cleanup/runs",
                                                 query={"page": page, "per_page": per_page}))

    def cleanup_run(self, registry: str, run_id: int) -> CleanupRunDetail:
        return cast(CleanupRunDetail, self.request("GET", f"/registries/{_seg(registry)}/cleanup/runs/{int(run_id)}"))

    def protection_policies(self, registry: str) -> ProtectionPolicyList:
        return cast(ProtectionPolicyList, self.request("GET", f"/registries/{_seg(registry)}/protection/policies"))

    def add_protection_policy(self, registry: str, tag: str, image: str | None = None) -> ProtectionPolicy:
        body: dict[str, Any] = {"tag": tag}
        if image is not None:
            body["image"] = image
        return cast(ProtectionPolicy, self.request("POST", f"/registries/{_seg(registry)}/protection/policies",
                                                   body))

    def set_protection_policy_enabled(self, registry: str, policy_id: int, enabled: bool) -> ProtectionPolicy:
        return cast(ProtectionPolicy, self.request(
            "PATCH", f"/registries/{_seg(registry)}/protection/policies/{int(policy_id)}", {"enabled": enabled}))

    def delete_protection_policy(self, registry: str, policy_id: int) -> None:
        self.request("DELETE", f"/registries/{_seg(registry)}/protection/policies/{int(policy_id)}")

    # -- garbage collection (system administrators) ------------------------------------------
    def run_gc(self, dry_run: bool = False, delete_untagged: bool = False,
               timeout: float | None = 3600.0) -> GcReport:
        return cast(GcReport, self.request("POST", "/gc", {"dry_run": dry_run, "delete_untagged": delete_untagged},
                                           timeout=timeout))

    def gc_runs(self, page: int | None = None, per_page: int | None = None) -> GcPage:
        return cast(GcPage, self.request("GET", "/gc", query={"page": page, "per_page": per_page}))

    # -- users, keys, roles, audit ------------------------------------------------------------
    def list_users(self) -> UserList:
        return cast(UserList, self.request("GET", "/users"))

    def create_user(self, name: str, password: str | None = None, system_admin: bool = False) -> UserCreated:
        return cast(UserCreated, self.request("POST", "/users",
                                              {"name": name, "password": password, "system_admin": system_admin}))

    def delete_user(self, name: str) -> None:
        self.request("DELETE", f"/users/{_seg(name)}")

    def list_keys(self, user: str = "me", revoked: bool = False) -> KeyList:
        return cast(KeyList, self.request("GET", f"/users/{_seg(user)}/keys",
                                          query={"revoked": "true" if revoked else None}))

    def create_key(self, user: str = "me", description: str = "") -> NewKey:
        """A new access key with its secret (the only answer that ever carries it)."""
        return cast(NewKey, self.request("POST", f"/users/{_seg(user)}/keys", {"description": description}))

    def revoke_key(self, key_id: str, user: str = "me") -> None:
        self.request("DELETE", f"/users/{_seg(user)}/keys/{_seg(key_id)}")

    def list_roles(self, user: str = "me") -> RoleList:
        return cast(RoleList, self.request("GET", f"/users/{_seg(user)}/roles"))

    def set_role(self, user: str, registry: str, role: str) -> RoleGrant:
        """`registry` may be `*` (every registry)."""
        return cast(RoleGrant, self.request("PUT", f"/users/{_seg(user)}/roles/{quote(registry, safe='*')}",
                                            {"role": role}))

    def drop_role(self, user: str, registry: str) -> None:
        self.request("DELETE", f"/users/{_seg(user)}/roles/{quote(registry, safe='*')}")

    def audit_log(self, actor: str | None = None, action: str | None = None, registry: str | None = None,
                  before: int | None = None, limit: int | None = None) -> AuditLog:
        return cast(AuditLog, self.request("GET", "/audit", query={
            "actor": actor, "action": action, "registry": registry, "before": before, "limit": limit}))

    # -- shortcuts answering only the list ----------------------------------------------------
    def registries(self) -> list[Registry]:
        return self.list_registries()["registries"]

    def users(self) -> list[User]:
        return self.list_users()["users"]

    def keys(self, user: str = "me") -> list[Key]:
        return self.list_keys(user)["keys"]

    def roles(self, user: str = "me") -> list[Role]:
        return self.list_roles(user)["roles"]

    def audit(self, **filters: Any) -> list[AuditEntry]:
        return self.audit_log(**filters)["entries"]


__all__ = [
    "APIError", "Artifact", "ArtifactPage", "AuditEntry", "AuditLog", "CleanupItem", "CleanupPolicy",
    "CleanupPolicyList", "CleanupRun", "CleanupRunDetail", "CleanupRunPage", "Client", "Delivery", "DeliveryAttempt",
    "DeliveryPage", "GcPage", "GcReport", "GcRun", "Image", "ImageDeleted", "ImagePage", "Key", "KeyList", "Member",
    "MemberList", "NewKey", "PER_PAGE_MAX", "Page", "Platform", "ProtectionPolicy", "ProtectionPolicyList",
    "Registry", "RegistryDeleted", "RegistryDetail", "RegistryList", "Role", "RoleGrant", "RoleList", "Schedule",
    "Tag", "TagPage", "User", "UserCreated", "UserList", "Webhook", "WebhookPage", "WhoAmI",
]
