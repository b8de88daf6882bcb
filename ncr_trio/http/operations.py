"""Every `/api/v1` operation, declared once (http/declare.py): the route table's entries, the
validation of request bodies and the OpenAPI 3.1 document served at `GET /api/v1/openapi.json`
(docs/api.md is its prose) are all derived from `OPERATIONS`, with the models of http/models.py;
client.py calls the API through the same declarations.

Adding an operation (docs/api.md, "Adding an operation"): its declaration here (in the route table's
order), its handler (marked `@handles(name)`, answering the declared model), and its CLI verb.
tests/test_openapi.py checks every declared operation is routed
and every `/api/v1` route declared, and runs schemathesis against the document.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ncr_trio.http import models as m
from ncr_trio.http.declare import PERMISSIONS, Operation
from ncr_trio.limits import KEY_ID_PREFIX, MAX_KEYS_PER_USER, MAX_PER_PAGE, MAX_POLICIES
from ncr_trio.types import NAME_MAX
from ncr_trio.types import NAME_RE as REPOSITORY_RE
from ncr_trio.types import REGISTRY_NAME_RE as REGISTRY_RE

Schema = dict[str, Any]
AUDIT_LIMIT_MAX = 1000
MAX_ID = 10**18 - 1  # webhook, policy and run IDs in paths: at most 18 digits (longer: 404)


# -- parameters ----------------------------------------------------------------------------------


def _ref(model: type) -> Schema:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _schema(value: Any) -> Schema:
    """A parameter's schema: written out, or that of a type of http/models.py."""
    return value if isinstance(value, dict) else msgspec.json.schema(value)


def _path(name: str, schema: Any, description: str, *examples: object) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {**_schema(schema), "examples": list(examples)},
            "description": description}


def _query(name: str, schema: Any, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": _schema(schema), "description": description}


PARAMETERS: dict[str, Schema] = {
    "registry": _path("registry", m.RegistryName, "a registry (the first component of its repositories' names)",
                      "team"),
    "image": _path("image", {"type": "string", "minLength": 1, "maxLength": NAME_MAX - 2,
                             "pattern": f"^{REPOSITORY_RE.pattern}$"},
                   "the repository without its registry (`tools/lint` of `team/tools/lint`); the whole "
                   f"repository name has at most {NAME_MAX} characters", "app", "tools/lint"),
    "digest": _path("digest", m.Digest, "an artifact's (manifest's) digest", "sha256:" + "0123456789abcdef" * 4),
    "tag": _path("tag", m.TagName, "a tag", "v1"),
    "user": _path("user", m.UserName, "a user name, or `me`: whoever asks", "ci", "me"),
    "account": _path("user", m.UserName, "a user name (here `me` is just a name)", "ci"),
    "key": _path("key", {"type": "string", "pattern": f"^{KEY_ID_PREFIX}[A-Z2-7]{{20}}$"}, "an access key's ID",
                 KEY_ID_PREFIX + "ABCDEFGHIJKLMNOPQRST"),
    "on": _path("on", {"type": "string", "pattern": f"^(\\*|{REGISTRY_RE.pattern})$"},
                "a registry, or `*` (also `all`, `_all`): every registry", "team", "*"),
    "page": _query("page", {"type": "integer", "minimum": 1, "default": 1}, "page, from 1 (past the last: empty)"),
    "per_page": _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 50},
                       "items per page"),
    "q": _query("q", str, "only names containing this text"),
    "glob": _query("glob", m.Pattern,
                   "only tags matching this pattern: `*`, `**`, `?`, `{a,b}`"),
    "force": _query("force", {"type": "boolean", "default": False}, "also delete the images the registry holds"),
    "revoked": _query("revoked", {"type": "boolean", "default": False}, "also list revoked keys"),
    "actor": _query("actor", str, "only entries by this user (or key, `anonymous`, `system`)"),
    "action": _query("action", str, "only this action; `key` matches `key.create` and `key.revoke`"),
    "audit_registry": _query("registry", str, "only entries about this registry"),
    "before": _query("before", {"type": "integer", "minimum": 0},
                     "only entries older than this entry ID (the next page)"),
    "webhook": _path("webhook", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "a webhook's ID", 1),
    "cleanup_policy": _path("id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "a cleanup policy's ID",
                            1),
    "protection_policy": _path("id", {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                               "a protection policy's ID", 1),
    "run": _path("id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "a cleanup run's ID", 1),
    "cache": _path("cache", m.CacheName, "an image cache", "hub"),
    "remote": _path("remote", m.RegistryName, "a replication remote's name", "osaka"),
    "replication": _path("id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "a replication policy's ID", 1),
    "execution": _path("execution", {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                       "an execution (run) of the policy", 1),
    "key_name": _path("key_name", m.TrustKeyName, "a trusted key's name", "release"),
    "limit": _query("limit", {"type": "integer", "minimum": 1, "maximum": AUDIT_LIMIT_MAX, "default": 100},
                    f"at most this many entries (larger values count as {AUDIT_LIMIT_MAX})"),
}

# -- error responses -----------------------------------------------------------------------------

_ERRORS: dict[int, str] = {
    400: "Invalid request: a malformed body, parameter, name, tag or digest (INVALID_REQUEST, NAME_INVALID, "
         "TAG_INVALID, DIGEST_INVALID, PAGINATION_NUMBER_INVALID)",
    401: "Not logged in, bad credentials, or a token that is not a management token (UNAUTHORIZED)",
    403: "Logged in, but the role does not allow this; or a protection policy covers what a deletion would "
         "remove; or a cross-origin browser request (DENIED)",
    404: "No such registry, image, artifact, tag, user, key, role binding, webhook, policy, cleanup run, remote or "
         "replication execution "
         "(NOT_FOUND, NAME_UNKNOWN, MANIFEST_UNKNOWN)",
    409: "Conflicts with the current state: a name or policy that exists, a limit reached (CONFLICT)",
    413: "The body is larger than 64 KiB (SIZE_INVALID)",
    415: "The body is not sent as application/json (UNSUPPORTED)",
    429: "Too many failed logins from this client or for this account (TOOMANYREQUESTS)",
}
RESPONSES: dict[str, Schema] = {
    str(status): {"description": text, "content": {"application/json": {"schema": _ref(m.Error)}}}
    for status, text in _ERRORS.items()
}
RESPONSES["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": (
    '`Bearer realm="<url>/auth/token",service="ncr-trio",scope="management:api:*"` '
    "(never Basic: browsers would prompt for and replay a password)")}}
RESPONSES["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


# -- the operations -------------------------------------------------------------------------------
_PAGE = ("page", "per_page")
_R = "/api/v1/registries/{registry}"
_I = _R + "/images/{image}"
_IMG = ("registry", "image")
_WH = _R + "/webhooks"
_C = _R + "/cleanup"
_P = _R + "/protection"
_K = "/api/v1/caches"
_RM = "/api/v1/remotes"
_RP = _R + "/replications"
_RX = _RP + "/{id}/executions/{execution}"
_S = "/api/v1/scan"
_op = Operation

# In the route table's order: where paths overlap (an image's name may hold slashes), the more
# specific one comes first.
OPERATIONS: list[Operation] = [
    _op("api.openapi", "GET", "/api/v1/openapi.json", "public", "This document",
      (200, m.OpenAPIDocument, "The OpenAPI 3.1 document of /api/v1"), tag="meta"),
    _op("api.whoami", "GET", "/api/v1/whoami", "user", "Who the request is logged in as", (200, m.WhoAmI, "The caller"),
      tag="users"),
    _op("api.registries", "GET", "/api/v1/registries", "user", "The registries the caller holds a role on",
      (200, m.RegistryList, "Registries, by name"), tag="registries"),
    _op("api.registry.create", "POST", "/api/v1/registries", "manage*", "Create a registry",
      (201, m.Registry, "Created"), body=m.NewRegistry, body_required=True, errors=(404, 409), tag="registries"),
    _op("api.registry", "GET", _R, "read", "A registry, with how many images it holds",
      (200, m.RegistryDetail, "The registry"), params=("registry",), errors=(404,), tag="registries"),
    _op("api.registry.update", "PATCH", _R, "manage", "Change a registry's settings",
      (200, m.Registry, "The registry as it is now"), params=("registry",), body=m.RegistryChanges, errors=(404,),
      tag="registries"),
    _op("api.registry.delete", "DELETE", _R, "manage", "Delete a registry (with `force`, and its images)",
      (200, m.RegistryDeleted, "Deleted"), params=("registry", "force"), errors=(404, 409), tag="registries"),
    _op("api.members", "GET", _R + "/members", "read", "Who holds a role on the registry itself (not through `*`)",
      (200, m.MemberList, "Members, by user name"), params=("registry",), tag="registries"),
    _op("api.registry.tags", "GET", _R + "/tags", "read", "The tags of every image of the registry",
      (200, m.TagPage, "Tags, by repository and name"), params=("registry", "q", "glob", *_PAGE), errors=(404,),
      tag="images"),
    _op("api.images", "GET", _R + "/images", "read", "The registry's images", (200, m.ImagePage, "Images, by name"),
      params=("registry", "q", *_PAGE), errors=(404,), tag="images"),
    _op("api.artifact.tags", "POST", _I + "/artifacts/{digest}/tags", "manage", "Tag an artifact",
      (201, m.Tag, "Tagged"), params=(*_IMG, "digest"), body=m.NewTag, body_required=True, errors=(404, 409),
      tag="images"),
    _op("api.artifact.scan.stop", "POST", _I + "/artifacts/{digest}/scan/stop", "manage",
      "Stop the artifact's scan under way (it ends Stopped)", (200, m.ScanStatus, "The scan (stopping, or ended)"),
      params=(*_IMG, "digest"), errors=(404,), tag="scanning"),
    _op("api.artifact.scan", "GET", _I + "/artifacts/{digest}/scan", "read",
      "The artifact's scan: Not Scanned, Scanning, Stopped, Failed or Done, with its figures",
      (200, m.ScanStatus, "The scan"), params=(*_IMG, "digest"), errors=(404,), tag="scanning"),
    _op("api.artifact.scan.start", "POST", _I + "/artifacts/{digest}/scan", "manage",
      "Scan the artifact now (an image, or an index: each platform's image); refused while a scan is under way",
      (202, m.ScanStatus, "Queued"), params=(*_IMG, "digest"), errors=(404, 409), tag="scanning"),
    _op("api.artifact.vulnerabilities", "GET", _I + "/artifacts/{digest}/vulnerabilities", "read",
      "The vulnerabilities the artifact's last finished scan found, per platform, worst first",
      (200, m.VulnerabilityReport, "The report"), params=(*_IMG, "digest"), errors=(404,), tag="scanning"),
    _op("api.artifact.signatures", "GET", _I + "/artifacts/{digest}/signatures", "read",
      "The artifact's cosign signatures, each with its layout, verdict, verifying keys and reason",
      (200, m.SignatureList, "The signatures"), params=(*_IMG, "digest"), errors=(404,), tag="trust"),
    _op("api.artifact", "GET", _I + "/artifacts/{digest}", "read", "An artifact", (200, m.Artifact, "The artifact"),
      params=(*_IMG, "digest"), errors=(404,), tag="images"),
    _op("api.artifact.delete", "DELETE", _I + "/artifacts/{digest}", "manage",
      "Delete an artifact and the tags pointing at it", (204, None, "Deleted"), params=(*_IMG, "digest"),
      errors=(404,), tag="images"),
    _op("api.artifacts", "GET", _I + "/artifacts", "read", "An image's artifacts, newest push first",
      (200, m.ArtifactPage, "Artifacts"), params=(*_IMG, *_PAGE), errors=(404,), tag="images"),
    _op("api.tag.delete", "DELETE", _I + "/tags/{tag}", "manage", "Delete a tag (not the artifact)",
      (204, None, "Deleted"), params=(*_IMG, "tag"), errors=(404,), tag="images"),
    _op("api.tags", "GET", _I + "/tags", "read", "An image's tags", (200, m.TagPage, "Tags, by name"),
      params=(*_IMG, "q", "glob", *_PAGE), tag="images"),
    _op("api.image", "GET", _I, "read", "An image", (200, m.Image, "The image"), params=_IMG, errors=(404,),
      tag="images"),
    _op("api.image.delete", "DELETE", _I, "manage", "Delete an image with its artifacts and tags",
      (200, m.ImageDeleted, "Deleted"), params=_IMG, errors=(404,), tag="images", wait=600),
    _op("api.gc.run", "POST", "/api/v1/gc", "admin", "Run garbage collection now (or a dry run)",
      (200, m.GcReport, "What was (or would be) removed"), body=m.GcRequest, tag="gc", wait=3600),
    _op("api.gc.runs", "GET", "/api/v1/gc", "admin", "Past garbage collection runs, newest first",
      (200, m.GcRunPage, "Runs"), params=_PAGE, tag="gc"),
    _op("api.users", "GET", "/api/v1/users", "admin", "Every user", (200, m.UserList, "Users, by name"), tag="users"),
    _op("api.user.create", "POST", "/api/v1/users", "admin", "Create a user", (201, m.UserCreated, "Created"),
      body=m.NewUser, body_required=True, errors=(409,), tag="users"),
    _op("api.user.delete", "DELETE", "/api/v1/users/{user}", "admin", "Delete a user: their keys are revoked, their "
      "roles dropped (never the last system administrator: 409)", (204, None, "Deleted"), params=("account",),
      errors=(404, 409), tag="users"),
    _op("api.keys", "GET", "/api/v1/users/{user}/keys", "self", "A user's access keys",
      (200, m.KeyList, "Keys, oldest first"), params=("user", "revoked"), errors=(403,), tag="keys"),
    _op("api.key.create", "POST", "/api/v1/users/{user}/keys", "self",
      f"Create an access key (at most {MAX_KEYS_PER_USER} active)",
      (201, m.NewKey, "The key, with its secret (shown only here)"), params=("user",), body=m.KeyRequest,
      errors=(403, 404, 409), tag="keys"),
    _op("api.key.revoke", "DELETE", "/api/v1/users/{user}/keys/{key}", "self", "Revoke an access key",
      (204, None, "Revoked"), params=("user", "key"), errors=(403, 404), tag="keys"),
    _op("api.roles", "GET", "/api/v1/users/{user}/roles", "self", "A user's roles",
      (200, m.RoleList, "Role bindings, by registry"), params=("user",), errors=(403,), tag="roles"),
    _op("api.role.set", "PUT", "/api/v1/users/{user}/roles/{on}", "admin",
      "Grant a user a role on a registry (or every registry)", (200, m.RoleGrant, "The binding"),
      params=("account", "on"), body=m.RoleRequest, body_required=True, errors=(404,), tag="roles"),
    _op("api.role.delete", "DELETE", "/api/v1/users/{user}/roles/{on}", "admin",
      "Take a user's role on a registry away", (204, None, "Revoked"), params=("account", "on"), errors=(404,),
      tag="roles"),
    _op("api.audit", "GET", "/api/v1/audit", "admin", "The audit log, newest first", (200, m.AuditList, "Entries"),
      params=("actor", "action", "audit_registry", "before", "limit"), tag="audit"),
    _op("api.io", "GET", "/api/v1/io", "admin", "How the answering worker process writes uploads and sends downloads: "
      "direct I/O and zero-copy, with counters since it started", (200, m.IoStats, "The worker's counters"),
      tag="system"),
    # image caches
    _op("api.caches", "GET", _K, "admin", "The image caches: the source registries cache-type registries pull through",
      (200, m.CacheList, "Image caches, by name"), tag="caches"),
    _op("api.cache.create", "POST", _K, "admin", "Add an image cache", (201, m.ImageCache, "Created"),
      body=m.NewCache, body_required=True, errors=(409,), tag="caches"),
    _op("api.cache", "GET", _K + "/{cache}", "admin", "An image cache", (200, m.ImageCache, "The image cache"),
      params=("cache",), errors=(404,), tag="caches"),
    _op("api.cache.update", "PATCH", _K + "/{cache}", "admin", "Change an image cache (all or nothing)",
      (200, m.ImageCache, "The image cache as it is now"), params=("cache",), body=m.CacheChanges, errors=(404, 409),
      tag="caches"),
    _op("api.cache.delete", "DELETE", _K + "/{cache}", "admin",
      "Delete an image cache (refused while a registry pulls through it: 409 names them)", (204, None, "Deleted"),
      params=("cache",), errors=(404, 409), tag="caches"),
    _op("api.cache.test", "POST", _K + "/{cache}/test", "admin",
      "Test the connection to the source registry with the image cache's credentials",
      (200, m.CacheTest, "How it went (a source that fails is `ok: false`)"), params=("cache",), errors=(404, 409),
      tag="caches", wait=120),
    # webhooks
    _op("api.webhooks", "GET", _WH, "read", "The registry's webhooks", (200, m.WebhookPage, "Webhooks, by ID"),
      params=("registry", *_PAGE), errors=(404,), tag="webhooks"),
    _op("api.webhook.create", "POST", _WH, "manage", "Add a webhook", (201, m.Webhook, "Created"),
      params=("registry",), body=m.NewWebhook, body_required=True, errors=(404, 409), tag="webhooks"),
    _op("api.webhook", "GET", _WH + "/{webhook}", "read", "A webhook", (200, m.Webhook, "The webhook"),
      params=("registry", "webhook"), errors=(404,), tag="webhooks"),
    _op("api.webhook.update", "PATCH", _WH + "/{webhook}", "manage", "Change a webhook (all or nothing)",
      (200, m.Webhook, "The webhook as it is now"), params=("registry", "webhook"), body=m.WebhookChanges,
      errors=(404, 409), tag="webhooks"),
    _op("api.webhook.delete", "DELETE", _WH + "/{webhook}", "manage",
      "Delete a webhook, its queued deliveries and its history", (204, None, "Deleted"),
      params=("registry", "webhook"), errors=(404,), tag="webhooks"),
    _op("api.webhook.test", "POST", _WH + "/{webhook}/test", "manage", "Send a `test` event now (enabled or not), once",
      (200, m.Delivery, "The delivery and how it went (a receiver's failure is a `failed` delivery)"),
      params=("registry", "webhook"), errors=(404,), tag="webhooks", wait=120),
    _op("api.webhook.deliveries", "GET", _WH + "/{webhook}/deliveries", "read",
      "A webhook's deliveries, newest first, with their attempts", (200, m.DeliveryPage, "Deliveries"),
      params=("registry", "webhook", *_PAGE), errors=(404,), tag="webhooks"),
    # cleanup and protection policies
    _op("api.cleanup.policies", "GET", _C + "/policies", "read", "The registry's cleanup policies",
      (200, m.CleanupPolicyList, "Policies, by ID"), params=("registry",), errors=(404,), tag="cleanup"),
    _op("api.cleanup.policy.create", "POST", _C + "/policies", "manage",
      f"Add a cleanup policy (at most {MAX_POLICIES}; no duplicates)", (201, m.CleanupPolicy, "Created, enabled"),
      params=("registry",), body=m.NewCleanupPolicy, body_required=True, errors=(404, 409), tag="cleanup"),
    _op("api.cleanup.policy.update", "PATCH", _C + "/policies/{id}", "manage", "Enable or disable a cleanup policy",
      (200, m.CleanupPolicy, "The policy as it is now"), params=("registry", "cleanup_policy"), body=m.PolicyToggle,
      body_required=True, errors=(404,), tag="cleanup"),
    _op("api.cleanup.policy.delete", "DELETE", _C + "/policies/{id}", "manage", "Delete a cleanup policy",
      (204, None, "Deleted"), params=("registry", "cleanup_policy"), errors=(404,), tag="cleanup"),
    _op("api.cleanup.schedule", "GET", _C + "/schedule", "read", "When cleanup runs on its own",
      (200, m.Schedule, "The schedule"), params=("registry",), errors=(404,), tag="cleanup"),
    _op("api.cleanup.schedule.set", "PUT", _C + "/schedule", "manage", "Set when cleanup runs on its own",
      (200, m.Schedule, "The schedule as it is now"), params=("registry",), body=m.ScheduleRequest,
      body_required=True, errors=(404,), tag="cleanup"),
    _op("api.cleanup.test", "POST", _C + "/test", "manage",
      "A test run: what a run would delete now (nothing is deleted)",
      (200, m.CleanupRunDetails, "The finished run, with its items"), params=("registry",), errors=(404,),
      tag="cleanup", wait=3600),
    _op("api.cleanup.run", "POST", _C + "/run", "manage", "Run cleanup now",
      (200, m.CleanupRunDetails, "The finished run, with its items"), params=("registry",), errors=(404,),
      tag="cleanup", wait=3600),
    _op("api.cleanup.runs", "GET", _C + "/runs", "read", "Cleanup runs, newest first", (200, m.CleanupRunPage, "Runs"),
      params=("registry", *_PAGE), errors=(404,), tag="cleanup"),
    _op("api.cleanup.run.details", "GET", _C + "/runs/{id}", "read",
      "A cleanup run and what it decided for each artifact", (200, m.CleanupRunDetails, "The run, with its items"),
      params=("registry", "run"), errors=(404,), tag="cleanup"),
    _op("api.protection.policies", "GET", _P + "/policies", "read", "The registry's protection policies",
      (200, m.ProtectionPolicyList, "Policies, by ID"), params=("registry",), errors=(404,), tag="protection"),
    _op("api.protection.policy.create", "POST", _P + "/policies", "manage",
      f"Add a protection policy (at most {MAX_POLICIES}; no duplicates)",
      (201, m.ProtectionPolicy, "Created, enabled"), params=("registry",), body=m.NewProtectionPolicy,
      body_required=True, errors=(404, 409), tag="protection"),
    _op("api.protection.policy.update", "PATCH", _P + "/policies/{id}", "manage",
      "Enable or disable a protection policy", (200, m.ProtectionPolicy, "The policy as it is now"),
      params=("registry", "protection_policy"), body=m.PolicyToggle, body_required=True, errors=(404,),
      tag="protection"),
    _op("api.protection.policy.delete", "DELETE", _P + "/policies/{id}", "manage", "Delete a protection policy",
      (204, None, "Deleted"), params=("registry", "protection_policy"), errors=(404,), tag="protection"),
    # replication: remotes (administrators) and a registry's policies
    _op("api.remotes", "GET", _RM, "admin", "Replication's remote registries, with their status",
      (200, m.RemoteList, "Remotes, by name"), tag="replication"),
    _op("api.remote.create", "POST", _RM, "admin", "Register a remote registry (checked at once: `valid`/`invalid`)",
      (201, m.Remote, "Created, with the check's outcome"), body=m.NewRemote, body_required=True, errors=(409,),
      tag="replication", wait=120),
    _op("api.remote", "GET", _RM + "/{remote}", "admin", "A remote registry", (200, m.Remote, "The remote"),
      params=("remote",), errors=(404,), tag="replication"),
    _op("api.remote.update", "PATCH", _RM + "/{remote}", "admin", "Change a remote registry (checked again)",
      (200, m.Remote, "The remote as it is now, with the check's outcome"), params=("remote",),
      body=m.RemoteChanges, errors=(404, 409), tag="replication", wait=120),
    _op("api.remote.delete", "DELETE", _RM + "/{remote}", "admin",
      "Delete a remote (refused while a policy uses it: 409 names them)", (204, None, "Deleted"),
      params=("remote",), errors=(404, 409), tag="replication"),
    _op("api.remote.refresh", "POST", _RM + "/{remote}/refresh", "admin",
      "Check a remote now (`GET /v2/` with its credentials); its policies take its status",
      (200, m.Remote, "The remote with the check's outcome"), params=("remote",), errors=(404, 409),
      tag="replication", wait=120),
    _op("api.replications", "GET", _RP, "read", "The registry's replication policies",
      (200, m.ReplicationPolicyList, "Policies, by name"), params=("registry",), errors=(404,), tag="replication"),
    _op("api.replication.create", "POST", _RP, "manage", "Add a replication policy",
      (201, m.ReplicationPolicy, "Created"), params=("registry",), body=m.NewReplicationPolicy, body_required=True,
      errors=(404, 409), tag="replication"),
    _op("api.replication", "GET", _RP + "/{id}", "read", "A replication policy",
      (200, m.ReplicationPolicy, "The policy"), params=("registry", "replication"), errors=(404,), tag="replication"),
    _op("api.replication.update", "PATCH", _RP + "/{id}", "manage",
      "Change a replication policy (enable or disable it, its filters, trigger, ...)",
      (200, m.ReplicationPolicy, "The policy as it is now"), params=("registry", "replication"),
      body=m.ReplicationPolicyChanges, body_required=True, errors=(404, 409), tag="replication"),
    _op("api.replication.delete", "DELETE", _RP + "/{id}", "manage",
      "Delete a replication policy and its history (a run under way is stopped; copies stay)",
      (204, None, "Deleted"), params=("registry", "replication"), errors=(404,), tag="replication"),
    _op("api.replication.run", "POST", _RP + "/{id}/run", "manage",
      "Run a replication policy now (a run under way makes this one Skipped, with the reason)",
      (202, m.Execution, "The execution started (or Skipped)"), params=("registry", "replication"),
      errors=(404, 409), tag="replication"),
    _op("api.replication.executions", "GET", _RP + "/{id}/executions", "read",
      "A policy's executions (runs), newest first", (200, m.ExecutionPage, "Executions"),
      params=("registry", "replication", *_PAGE), errors=(404,), tag="replication"),
    _op("api.replication.execution", "GET", _RX, "read", "An execution, with its counts",
      (200, m.Execution, "The execution"), params=("registry", "replication", "execution"), errors=(404,),
      tag="replication"),
    _op("api.replication.stop", "POST", _RX + "/stop", "manage", "Stop an execution under way (it ends Stopped)",
      (200, m.Execution, "The execution (stopping, or already ended)"), params=("registry", "replication",
                                                                               "execution"),
      errors=(404,), tag="replication"),
    _op("api.replication.tasks", "GET", _RX + "/tasks", "read",
      "An execution's tasks: one per artifact, with its status, attempts, bytes and error",
      (200, m.ReplicationTaskPage, "Tasks, in the order they started"),
      params=("registry", "replication", "execution", *_PAGE), errors=(404,), tag="replication"),
    # vulnerability scanning: the installation's settings (administrators) and a registry's
    _op("api.scan.schedule", "GET", _S + "/schedule", "admin", "When every artifact is scanned again",
      (200, m.ScanSchedule, "The schedule"), tag="scanning"),
    _op("api.scan.schedule.set", "PUT", _S + "/schedule", "admin",
      "Set when every artifact is scanned again: None, Hourly, Daily (00:00 UTC), Weekly (Saturday 00:00 UTC) "
      "or five cron fields", (200, m.ScanSchedule, "The schedule as it is now"), body=m.ScheduleRequest,
      body_required=True, tag="scanning"),
    _op("api.scan.allowlist", "GET", _S + "/allowlist", "admin",
      "The installation's CVE allowlist (a registry's own list replaces it)", (200, m.Allowlist, "The IDs"),
      tag="scanning"),
    _op("api.scan.allowlist.set", "PUT", _S + "/allowlist", "admin", "Replace the installation's CVE allowlist",
      (200, m.Allowlist, "The IDs as they are now"), body=m.AllowlistRequest, body_required=True, tag="scanning"),
    _op("api.scan.all", "POST", _S + "/all", "admin", "Scan every image and index now",
      (202, m.ScansQueued, "Queued"), tag="scanning"),
    _op("api.vulndb", "GET", "/api/v1/vulndb", "admin",
      "The vulnerability database: version, records, sources (`ncr-trio vulndb import` updates it)",
      (200, m.VulnDBStatus, "The database's status"), tag="scanning"),
    _op("api.registry.scan", "GET", _R + "/scan", "read",
      "The registry's scan settings: scan on push, pull prevention, its own allowlist",
      (200, m.RegistryScanSettings, "The settings"), params=("registry",), errors=(404,), tag="scanning"),
    _op("api.registry.scan.update", "PATCH", _R + "/scan", "manage", "Change the registry's scan settings",
      (200, m.RegistryScanSettings, "The settings as they are now"), params=("registry",),
      body=m.RegistryScanChanges, body_required=True, errors=(404,), tag="scanning"),
    # image trust: trusted keys (a registry's, the installation's) and a registry's enforcement
    _op("api.registry.trust.keys", "GET", _R + "/trust/keys", "manage",
      "The cosign public keys the registry trusts (the installation's apply too)",
      (200, m.TrustKeyList, "Keys, by name"), params=("registry",), errors=(404,), tag="trust"),
    _op("api.registry.trust.key.add", "POST", _R + "/trust/keys", "manage", "Trust a cosign public key",
      (201, m.TrustKey, "Trusted"), params=("registry",), body=m.NewTrustKey, body_required=True,
      errors=(404, 409), tag="trust"),
    _op("api.registry.trust.key.delete", "DELETE", _R + "/trust/keys/{key_name}", "manage",
      "Stop trusting a key", (204, None, "Deleted"), params=("registry", "key_name"), errors=(404,), tag="trust"),
    _op("api.trust.keys", "GET", "/api/v1/trust/keys", "admin",
      "The cosign public keys every registry trusts", (200, m.TrustKeyList, "Keys, by name"), tag="trust"),
    _op("api.trust.key.add", "POST", "/api/v1/trust/keys", "admin", "Trust a cosign public key in every registry",
      (201, m.TrustKey, "Trusted"), body=m.NewTrustKey, body_required=True, errors=(409,), tag="trust"),
    _op("api.trust.key.delete", "DELETE", "/api/v1/trust/keys/{key_name}", "admin",
      "Stop trusting a key in every registry", (204, None, "Deleted"), params=("key_name",), errors=(404,),
      tag="trust"),
    _op("api.registry.trust", "GET", _R + "/trust", "read",
      "The registry's signature requirements (enforced at pull)",
      (200, m.RegistryTrustSettings, "The settings"), params=("registry",), errors=(404,), tag="trust"),
    _op("api.registry.trust.update", "PATCH", _R + "/trust", "manage", "Change the registry's signature requirements",
      (200, m.RegistryTrustSettings, "The settings as they are now"), params=("registry",),
      body=m.RegistryTrustChanges, body_required=True, errors=(404,), tag="trust"),
]


# -- the document ---------------------------------------------------------------------------------


def _operation(op: Operation) -> Schema:
    """One operation of the document. Every authenticated operation may answer 401, 429, and 403 (a
    role that does not allow it, or a cross-origin browser request); parameters and bodies bring 400,
    bodies 413 and 415 too."""
    status, model, text = op.ok
    ok: Schema = {"description": text}
    if model is not None:
        ok["content"] = {"application/json": {"schema": _ref(model)}}
    responses: Schema = {str(status): ok}
    codes = set(op.errors) if op.action is None else {401, 403, 429, *op.errors}
    if op.params or op.body:
        codes.add(400)
    if op.body:
        codes.update((413, 415))
    responses.update({str(c): {"$ref": f"#/components/responses/{c}"} for c in sorted(codes)})
    out: Schema = {"operationId": op.name, "summary": op.summary, "tags": [op.tag]}
    if op.action is None:
        out["security"] = []
    else:
        out["description"] = f"Permission: {PERMISSIONS[op.permission][0]}."
    out["responses"] = responses
    if op.params:
        out["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in op.params]
    if op.body:
        out["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": _ref(op.body)}}}
    return out


def _document() -> Schema:
    paths: dict[str, Schema] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    models = {m for op in OPERATIONS for m in (op.body, op.ok[1]) if m is not None} | set(m.EXTRA_SCHEMAS)
    _, schemas = msgspec.json.schema_components(sorted(models, key=lambda m: m.__name__),
                                                ref_template="#/components/schemas/{name}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ncr-trio management API",
            "version": "1",
            "description": "Registries, images, artifacts, tags, image caches, replication, webhooks, cleanup "
                           "and protection policies, users, access keys, roles, garbage collection and the audit "
                           "log (docs/api.md, docs/cache.md, docs/replication.md, docs/webhooks.md, "
                           "docs/policies.md). Errors use the registry's error body. Log in with HTTP Basic (a "
                           "user and password, or an access key ID and secret) or a management token from "
                           "/auth/token?scope=management:api:* (registry tokens are refused). Bodies are "
                           "application/json; cross-origin browser requests are refused.",
        },
        "security": [{"basic": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic",
                          "description": "a user name and password, or an access key ID and secret"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "a management token: /auth/token?scope=management:api:*"},
            },
            "schemas": schemas,
            "parameters": PARAMETERS,
            "responses": RESPONSES,
        },
    }


DOCUMENT: Schema = _document()
DOCUMENT_JSON = json.dumps(DOCUMENT, separators=(",", ":")).encode()

__all__ = ["AUDIT_LIMIT_MAX", "DOCUMENT", "DOCUMENT_JSON", "OPERATIONS", "PARAMETERS", "RESPONSES"]
