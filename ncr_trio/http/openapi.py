"""The OpenAPI 3.1 document of the management API (`/api/v1`), built once at import and served at
`GET /api/v1/openapi.json` (docs/api.md is its prose).

Every operation's `operationId` is its route's name in the app's route table (every `/api/v1` route:
`ManagementAPI`, `WebhooksAPI` and `PoliciesAPI`) and its path is the route's pattern with each
`(?P<x>...)` group written `{x}`; tests/test_openapi.py checks that the two never drift apart and runs
schemathesis against a live server with this document. Parameter and body constraints come from the
code that enforces them (name, tag, user-name and webhook-name grammars, page bounds, pattern and URL
lengths, rules, event types), so they cannot disagree with it either.
"""

from __future__ import annotations

import json
from typing import Any

from ncr_trio.auth.accounts import USER_NAME_RE
from ncr_trio.auth.keys import KEY_ID_PREFIX, MAX_KEYS_PER_USER
from ncr_trio.auth.roles import Role
from ncr_trio.cron import FIELDS as CRON_FIELDS
from ncr_trio.cron import PRESETS
from ncr_trio.patterns import MAX_PATTERN
from ncr_trio.registry.catalog import MAX_PER_PAGE
from ncr_trio.registry.cleanup import MAX_N, OUTCOMES
from ncr_trio.registry.namespaces import MAX_NAME
from ncr_trio.registry.namespaces import NAME_RE as REGISTRY_RE
from ncr_trio.registry.policies import MAX_POLICIES, RULES
from ncr_trio.registry.webhooks import EVENT_TYPES, KINDS, MAX_AUTH_HEADER, MAX_SECRET, MAX_URL, TEST_EVENT
from ncr_trio.registry.webhooks import NAME_RE as WEBHOOK_NAME_RE
from ncr_trio.types import NAME_MAX, TAG_RE
from ncr_trio.types import NAME_RE as REPOSITORY_RE

Schema = dict[str, Any]

DIGEST_PATTERN = "^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"
AUDIT_LIMIT_MAX = 1000
MAX_ID = 10**18 - 1  # webhook, policy and run IDs in paths: at most 18 digits (longer: 404)


def _full(pattern: str) -> str:
    return f"^{pattern}$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties: dict[str, Schema], optional: tuple[str, ...] = (), description: str | None = None
            ) -> Schema:
    """A closed object: every property but `optional` is always there, and nothing else is."""
    out: Schema = {"type": "object", "properties": properties,
                   "required": [k for k in properties if k not in optional], "additionalProperties": False}
    if description:
        out["description"] = description
    return out


_STR: Schema = {"type": "string"}
_BOOL: Schema = {"type": "boolean"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_TIME: Schema = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
_TIME_OR_NULL = _nullable(_TIME)
_STR_OR_NULL = _nullable(_STR)
_DIGEST: Schema = {"type": "string", "pattern": DIGEST_PATTERN}
_TAG: Schema = {"type": "string", "pattern": _full(TAG_RE.pattern)}
_REGISTRY_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_NAME,
                          "pattern": _full(REGISTRY_RE.pattern)}
_USER_NAME: Schema = {"type": "string", "pattern": _full(USER_NAME_RE.pattern)}
_ROLE: Schema = {"type": "string", "enum": [r.value for r in Role]}
_CIDRS_IN: Schema = {
    "description": "CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, a bare address is its /32 or /128), as a list "
                   "or one string separated by commas or spaces; empty or null: no restriction",
    "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}, {"type": "null"}],
}

_REGISTRY_FIELDS: dict[str, Schema] = {
    "name": _REGISTRY_NAME,
    "description": _STR,
    "public_read": _BOOL,
    "public_uri": _BOOL,
    "allowed_cidrs": {"type": "array", "items": _STR},
    "created_at": _TIME,
    "updated_at": _TIME,
}
_GC_FIELDS: dict[str, Schema] = {
    "id": {"type": "integer", "minimum": 1},
    "dry_run": _BOOL,
    "started_at": _TIME,
    "finished_at": _TIME_OR_NULL,
    "blobs_removed": _COUNT,
    "manifests_removed": _COUNT,
    "uploads_removed": _COUNT,
    "bytes_freed": _COUNT,
}
_KEY_FIELDS: dict[str, Schema] = {
    "id": {"type": "string"},
    "user": _STR,
    "description": _STR,
    "created_at": _TIME,
    "last_used_at": _TIME_OR_NULL,
    "revoked_at": _TIME_OR_NULL,
    "rotation_due": {"type": "boolean", "description": "older than 90 days: rotate it"},
}
_PAGINATION: dict[str, Schema] = {
    "total": _COUNT,
    "page": {"type": "integer", "minimum": 1},
    "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
}


_ID: Schema = {"type": "integer", "minimum": 1}
_PATTERN: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN,
                    "description": "`*` (not `/`), `**` (anything), `?`, `{a,b}`"}
_WEBHOOK_NAME: Schema = {"type": "string", "pattern": _full(WEBHOOK_NAME_RE.pattern)}
_EVENT_TYPE: Schema = {"type": "string", "enum": list(EVENT_TYPES)}
_WEBHOOK_FIELDS: dict[str, Schema] = {
    "name": {**_WEBHOOK_NAME, "description": "unique in the registry"},
    "kind": {"type": "string", "enum": list(KINDS)},
    "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL,
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+([/?#]\\S*)?$",
            "description": "an `http://` or `https://` URL with a host, without spaces or control characters"},
    "secret": {**_nullable({"type": "string", "maxLength": MAX_SECRET}),
               "description": "HMAC-SHA256 key of the `X-NCR-Signature` header; empty or null: none"},
    "auth_header": {**_nullable({"type": "string", "maxLength": MAX_AUTH_HEADER, "pattern": "^[ -~]*$"}),
                    "description": "sent as `Authorization` (printable ASCII); empty or null: none"},
    "event_types": {**_nullable({"type": "array", "items": _EVENT_TYPE}),
                    "description": "the event types it is sent; empty or null: every type"},
    "enabled": {**_BOOL, "default": True},
}
_WEBHOOK_OUT: dict[str, Schema] = {
    "id": _ID,
    "registry": _STR,
    "name": _WEBHOOK_NAME,
    "kind": _WEBHOOK_FIELDS["kind"],
    "url": _STR,
    "event_types": {"type": "array", "items": _EVENT_TYPE, "description": "empty: every type"},
    "enabled": _BOOL,
    "secret_set": {"type": "boolean", "description": "the secret itself is never shown"},
    "auth_header_set": {"type": "boolean", "description": "the auth header itself is never shown"},
    "created_at": _TIME,
}
_MRKDWN: Schema = _object({"type": {"const": "mrkdwn"}, "text": _STR})
_RULE: Schema = {"type": "string", "enum": list(RULES)}
_N: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_N,
              "description": "days (`older_than`) or artifacts per image (`retain_*`)"}
_CLEANUP_OUT: dict[str, Schema] = {
    "id": _ID,
    "registry": _STR,
    "image": _STR,
    "tag": _STR,
    "untagged": _BOOL,
    "rule": _RULE,
    "n": _N,
    "description": {"type": "string", "description": "the rule in words"},
    "enabled": _BOOL,
    "created_at": _TIME,
}
_PROTECTION_OUT: dict[str, Schema] = {
    "id": _ID, "registry": _STR, "image": _STR, "tag": _STR, "enabled": _BOOL, "created_at": _TIME,
}
_RUN_FIELDS: dict[str, Schema] = {
    "id": _ID,
    "registry": _STR,
    "triggered_by": {"type": "string", "enum": ["test", "manual", "schedule"]},
    "dry_run": _BOOL,
    "status": {"type": "string", "enum": ["running", "succeeded", "failed"]},
    "started_at": _TIME,
    "finished_at": _TIME_OR_NULL,
    "deleted": {**_COUNT, "description": "deleted (a test run: would be deleted)"},
    "kept": {**_COUNT, "description": "selected, but protected, still needed or changed meanwhile"},
    "policies": {"type": "array", "description": "the enabled policies the run applied (a snapshot)",
                 "items": {"oneOf": [_ref("CleanupPolicySnapshot"), _ref("ProtectionPolicySnapshot")]}},
    "error": _STR_OR_NULL,
}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _cron_field(names: str | None, question: bool) -> str:
    """One cron field as cron.py reads it (its values' ranges are checked after: 0-59, 1-12, ...)."""
    value = "[0-9]+" + (f"|{_any_case(names)}" if names else "")
    item = f"(\\*|({value})(-({value}))?)(/[0-9]+)?"
    field = f"{item}(,{item})*"
    return f"(\\?|{field})" if question else field


_SCHEDULE_PATTERN = ("^\\s*(" + "|".join(_any_case(p) for p in ("none", *PRESETS)) + "|"
                     + "\\s+".join(_cron_field(names, q) for _, _, _, names, q in CRON_FIELDS) + ")?\\s*$")
_TOGGLE: Schema = _object({"enabled": _BOOL}, description="Other members are refused (400)")


def _page_of(key: str, item: str) -> Schema:
    return _object({key: {"type": "array", "items": _ref(item)}, **_PAGINATION})


SCHEMAS: dict[str, Schema] = {
    "Error": _object({"errors": {"type": "array", "minItems": 1, "items": _object({
        "code": {"type": "string", "description": "one of the codes of ncr_trio/errors.py"},
        "message": _STR,
        "detail": {"description": "anything that helps (the offending value, for instance)"},
    }, optional=("detail",))}}, description="The registry's error body, for every 4xx and 5xx answer"),
    "WhoAmI": _object({
        "user": _STR,
        "system_admin": _BOOL,
        "roles": {"type": "object", "additionalProperties": _ROLE, "description": "registry (or `*`) -> role"},
        "key_id": {**_STR_OR_NULL, "description": "the access key the request logged in with, if any"},
    }),
    "Registry": _object(_REGISTRY_FIELDS),
    "RegistryDetail": _object({**_REGISTRY_FIELDS, "images": _COUNT}),
    "RegistryList": _object({"registries": {"type": "array", "items": _ref("Registry")}}),
    "NewRegistry": {"type": "object", "required": ["name"], "additionalProperties": True, "properties": {
        "name": _REGISTRY_NAME,
        "description": _STR_OR_NULL,
        "public_read": {**_nullable(_BOOL), "default": False},
        "public_uri": {**_nullable(_BOOL), "default": True},
        "allowed_cidrs": _CIDRS_IN,
    }, "description": "Other members are ignored"},
    "RegistryChanges": {"type": "object", "additionalProperties": True, "properties": {
        "description": _STR_OR_NULL,
        "public_read": _nullable(_BOOL),
        "public_uri": _nullable(_BOOL),
        "allowed_cidrs": _CIDRS_IN,
    }, "description": "Members that are absent or null stay as they are; others (`name`) are ignored"},
    "RegistryDeleted": _object({"deleted": _STR, "images_deleted": _COUNT}),
    "Member": _object({"user": _STR, "role": _ROLE}),
    "MemberList": _object({"members": {"type": "array", "items": _ref("Member")}}),
    "Image": _object({
        "name": {"type": "string", "description": "the repository without its registry"},
        "repository": _STR,
        "artifacts": _COUNT,
        "tags": _COUNT,
        "size": {**_COUNT, "description": "bytes"},
        "pushed_at": _TIME_OR_NULL,
        "pulled_at": _TIME_OR_NULL,
    }),
    "ImagePage": _page_of("images", "Image"),
    "ImageDeleted": _object({"deleted": _STR, "artifacts_deleted": _COUNT}),
    "Platform": _object({"os": _STR, "architecture": _STR, "variant": _STR}, optional=("variant",)),
    "Artifact": _object({
        "digest": _DIGEST,
        "media_type": _STR,
        "artifact_type": _STR_OR_NULL,
        "size": {**_COUNT, "description": "the manifest, its config and layers (an index: with its children's)"},
        "platforms": {"type": "array", "items": _ref("Platform")},
        "tags": {"type": "array", "items": _TAG},
        "subject": {"type": ["string", "null"], "pattern": DIGEST_PATTERN},
        "pushed_at": _TIME,
        "pulled_at": _TIME_OR_NULL,
        "signed": {"type": ["boolean", "null"], "description": "not filled yet (cosign)"},
        "scan_status": {"type": ["string", "null"], "description": "not filled yet (scanning)"},
    }),
    "ArtifactPage": _page_of("artifacts", "Artifact"),
    "Tag": _object({"name": _TAG, "repository": _STR, "digest": _DIGEST, "updated_at": _TIME}),
    "TagPage": _page_of("tags", "Tag"),
    "NewTag": {"type": "object", "required": ["name"], "additionalProperties": True,
               "properties": {"name": _TAG}, "description": "Other members are ignored"},
    "GcRequest": {"type": "object", "additionalProperties": True, "properties": {
        "dry_run": {**_nullable(_BOOL), "default": False},
        "delete_untagged": {**_nullable(_BOOL), "description": "null or absent: the server's gc_delete_untagged"},
    }, "description": "Other members are ignored"},
    "GcRun": _object(_GC_FIELDS),
    "GcReport": _object({
        **_GC_FIELDS,
        "blobs": {"type": "array", "items": _DIGEST},
        "manifests": {"type": "array", "items": _STR, "description": "`repository@digest`"},
        "uploads": {"type": "array", "items": _STR},
    }),
    "GcRunPage": _page_of("runs", "GcRun"),
    "User": _object({"name": _STR, "system_admin": _BOOL, "created_at": _TIME}),
    "UserList": _object({"users": {"type": "array", "items": _ref("User")}}),
    "NewUser": {"type": "object", "required": ["name"], "additionalProperties": True, "properties": {
        "name": _USER_NAME,
        "password": {**_nullable({"type": "string", "minLength": 12}),
                     "description": "absent or null: the user logs in with access keys only"},
        "system_admin": {**_nullable(_BOOL), "default": False},
    }, "description": "Other members are ignored"},
    "UserCreated": _object({"name": _USER_NAME}),
    "Key": _object(_KEY_FIELDS),
    "KeyList": _object({"keys": {"type": "array", "items": _ref("Key")}}),
    "NewKey": _object({**_KEY_FIELDS, "secret": {"type": "string", "description": "shown only in this answer"}}),
    "KeyRequest": {"type": "object", "additionalProperties": True, "properties": {
        "description": {**_STR_OR_NULL, "description": "kept to its first 200 characters"},
    }, "description": "Other members are ignored"},
    "RoleBinding": _object({"registry": {"type": "string", "description": "a registry, or `*`: every registry"},
                            "role": _ROLE}),
    "RoleList": _object({"roles": {"type": "array", "items": _ref("RoleBinding")}}),
    "RoleRequest": {"type": "object", "required": ["role"], "additionalProperties": True, "properties": {
        "role": {**_ROLE, "description": "a role (upper case, `_` and spaces for `-` are forgiven)"},
    }, "description": "Other members are ignored"},
    "RoleGrant": _object({"user": _STR, "registry": _STR, "role": _ROLE}),
    "AuditEntry": _object({
        "id": {"type": "integer", "minimum": 1},
        "at": _TIME,
        "actor": _STR,
        "action": {"type": "string", "description": "login, push, pull, delete, key.create, role.grant, ..."},
        "outcome": {"type": "string", "description": "ok, failed, denied or refused"},
        "registry": _STR_OR_NULL,
        "repository": _STR_OR_NULL,
        "target": _STR_OR_NULL,
        "client": _STR_OR_NULL,
        "detail": {"type": ["object", "string", "null"]},
    }),
    "AuditList": _object({"entries": {"type": "array", "items": _ref("AuditEntry")}}),
    "IoStats": _object({
        "pid": {"type": "integer", "description": "the worker process that answered: every counter is its own"},
        "direct_io": _object({
            "enabled": {**_BOOL, "description": "the direct_io setting"},
            "direct_bytes": {**_COUNT, "description": "upload bytes written with O_DIRECT"},
            "buffered_bytes": {**_COUNT, "description": "upload bytes written through the page cache "
                                                        "(small uploads, last partial blocks, no O_DIRECT)"},
            "direct_refused": {**_COUNT, "description": "uploads the filesystem refused O_DIRECT for"},
        }),
        "zero_copy": _object({
            "enabled": {**_BOOL, "description": "downloads may go out with sendfile (plain HTTP/1.x)"},
            "ranges": {**_COUNT, "description": "file ranges sent with sendfile"},
            "bytes": {**_COUNT, "description": "their bytes"},
        }),
    }),
    "Webhook": _object(_WEBHOOK_OUT),
    "WebhookPage": _page_of("webhooks", "Webhook"),
    "NewWebhook": {**_object(_WEBHOOK_FIELDS, optional=("secret", "auth_header", "event_types", "enabled")),
                   "description": "Other members are refused (400)"},
    "WebhookChanges": {**_object({k: {a: b for a, b in v.items() if a != "default"}
                                  for k, v in _WEBHOOK_FIELDS.items()}, optional=tuple(_WEBHOOK_FIELDS)),
                       "description": "Only the members given change (an empty or null `secret` or "
                                      "`auth_header` removes it); other members are refused (400)"},
    "EventPayload": _object({
        "id": {"type": "string", "description": "the event's ID; `test-<hex>` for a test"},
        "type": {"type": "string", "enum": [*EVENT_TYPES, TEST_EVENT]},
        "occurred_at": _TIME,
        "operator": _STR_OR_NULL,
        "registry": _STR,
        "repository": _STR_OR_NULL,
        "image": _STR_OR_NULL,
        "digest": {"type": ["string", "null"], "pattern": DIGEST_PATTERN},
        "tags": {"type": "array", "items": _STR},
        "media_type": _STR_OR_NULL,
        "pull_reference": _STR_OR_NULL,
    }, description="What an `http` webhook is sent (docs/webhooks.md)"),
    "SlackMessage": _object({"text": _STR, "blocks": {"type": "array", "items": {"oneOf": [
        _object({"type": {"const": "section"}, "text": _MRKDWN}),
        _object({"type": {"const": "context"}, "elements": {"type": "array", "items": _MRKDWN}}),
    ]}}}, description="What a `slack` webhook is sent"),
    "Delivery": _object({
        "id": _ID,
        "webhook_id": _ID,
        "event_id": {**_nullable(_ID), "description": "null for a test"},
        "event_type": {"type": "string", "enum": [*EVENT_TYPES, TEST_EVENT]},
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": _COUNT,
        "last_status": {"type": ["integer", "null"], "description": "the receiver's HTTP status; null: no answer"},
        "last_error": _STR_OR_NULL,
        "created_at": _TIME,
        "finished_at": _TIME_OR_NULL,
        "next_attempt_at": {**_TIME_OR_NULL, "description": "when a pending delivery is tried next"},
        "attempt_log": {"type": "array", "items": _object({
            "attempt": {"type": "integer", "minimum": 1},
            "at": _TIME,
            "status": {"type": ["integer", "null"], "description": "the receiver's HTTP status; null: no answer"},
            "error": _STR_OR_NULL,
            "duration_ms": _COUNT,
        })},
        "payload": {"description": "the JSON body that is sent",
                    "oneOf": [_ref("EventPayload"), _ref("SlackMessage")]},
    }),
    "DeliveryPage": _page_of("deliveries", "Delivery"),
    "CleanupPolicy": _object(_CLEANUP_OUT),
    "CleanupPolicyList": _object({"policies": {"type": "array", "maxItems": MAX_POLICIES,
                                               "items": _ref("CleanupPolicy")}}),
    "NewCleanupPolicy": _object({
        "image": {**_PATTERN, "default": "**", "description": "images (repositories without the registry)"},
        "tag": {**_PATTERN, "default": "**"},
        "untagged": {**_BOOL, "default": False, "description": "untagged artifacts are selected too"},
        "rule": _RULE,
        "n": _N,
    }, optional=("image", "tag", "untagged"), description="Other members are refused (400)"),
    "ProtectionPolicy": _object(_PROTECTION_OUT),
    "ProtectionPolicyList": _object({"policies": {"type": "array", "maxItems": MAX_POLICIES,
                                                  "items": _ref("ProtectionPolicy")}}),
    "NewProtectionPolicy": _object({
        "image": {**_PATTERN, "default": "**", "description": "images (repositories without the registry)"},
        "tag": _PATTERN,
    }, optional=("image",), description="Other members are refused (400)"),
    "PolicyToggle": _TOGGLE,
    "CleanupPolicySnapshot": _object({"kind": {"const": "cleanup"}, "id": _ID, "image": _STR, "tag": _STR,
                                      "untagged": _BOOL, "rule": _RULE, "n": _N}),
    "ProtectionPolicySnapshot": _object({"kind": {"const": "protection"}, "id": _ID, "image": _STR, "tag": _STR}),
    "Schedule": _object({
        "schedule": {"type": "string", "description": "five cron fields (UTC), or `None`: never"},
        "preset": {"type": ["string", "null"], "enum": ["None", *(p.capitalize() for p in PRESETS), None],
                   "description": "the preset the schedule is, if any"},
        "timezone": {"const": "UTC"},
        "next_run_at": _TIME_OR_NULL,
        "last_run_at": _TIME_OR_NULL,
    }),
    "ScheduleRequest": _object({"schedule": {
        "type": "string", "pattern": _SCHEDULE_PATTERN, "examples": ["Daily", "0 3 * * 1-5"],
        "description": "a preset (`None`, `Hourly`, `Daily`, `Weekly`; any case) or five cron fields in UTC "
                       "(minute, hour, day of month, month, day of week: `* / , -`, `?` in one day field, "
                       "JAN-DEC, SUN-SAT) that match some date"}}, description="Other members are refused (400)"),
    "CleanupRun": _object(_RUN_FIELDS),
    "CleanupRunPage": _page_of("runs", "CleanupRun"),
    "CleanupRunDetails": _object({**_RUN_FIELDS, "items": {"type": "array", "items": _object({
        "repository": _STR,
        "digest": _DIGEST,
        "tags": {"type": "array", "items": _TAG},
        "outcome": {"type": "string", "enum": list(OUTCOMES)},
        "reason": {**_STR_OR_NULL, "description": "the policy, the manifest that needs it, or what changed"},
    })}}),
    "OpenAPIDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
}

# -- parameters ----------------------------------------------------------------------------------


def _path(name: str, schema: Schema, description: str, *examples: object) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {**schema, "examples": list(examples)},
            "description": description}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PARAMETERS: dict[str, Schema] = {
    "registry": _path("registry", _REGISTRY_NAME, "a registry (the first component of its repositories' names)",
                      "team"),
    "image": _path("image", {"type": "string", "minLength": 1, "maxLength": NAME_MAX - 2,
                             "pattern": _full(REPOSITORY_RE.pattern)},
                   "the repository without its registry (`tools/lint` of `team/tools/lint`); the whole "
                   f"repository name has at most {NAME_MAX} characters", "app", "tools/lint"),
    "digest": _path("digest", _DIGEST, "an artifact's (manifest's) digest", "sha256:" + "0123456789abcdef" * 4),
    "tag": _path("tag", _TAG, "a tag", "v1"),
    "user": _path("user", _USER_NAME, "a user name, or `me`: whoever asks", "ci", "me"),
    "account": _path("user", _USER_NAME, "a user name (here `me` is just a name)", "ci"),
    "key": _path("key", {"type": "string", "pattern": f"^{KEY_ID_PREFIX}[A-Z2-7]{{20}}$"}, "an access key's ID",
                 KEY_ID_PREFIX + "ABCDEFGHIJKLMNOPQRST"),
    "on": _path("on", {"type": "string", "pattern": f"^(\\*|{REGISTRY_RE.pattern})$"},
                "a registry, or `*` (also `all`, `_all`): every registry", "team", "*"),
    "page": _query("page", {"type": "integer", "minimum": 1, "default": 1}, "page, from 1 (past the last: empty)"),
    "per_page": _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 50},
                       "items per page"),
    "q": _query("q", _STR, "only names containing this text"),
    "glob": _query("glob", {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN},
                   "only tags matching this pattern: `*`, `**`, `?`, `{a,b}`"),
    "force": _query("force", {**_BOOL, "default": False}, "also delete the images the registry holds"),
    "revoked": _query("revoked", {**_BOOL, "default": False}, "also list revoked keys"),
    "actor": _query("actor", _STR, "only entries by this user (or key, `anonymous`, `system`)"),
    "action": _query("action", _STR, "only this action; `key` matches `key.create` and `key.revoke`"),
    "audit_registry": _query("registry", _STR, "only entries about this registry"),
    "before": _query("before", {"type": "integer", "minimum": 0},
                     "only entries older than this entry ID (the next page)"),
    "webhook": _path("webhook", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "a webhook's ID", 1),
    "cleanup_policy": _path("id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "a cleanup policy's ID",
                            1),
    "protection_policy": _path("id", {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                               "a protection policy's ID", 1),
    "run": _path("id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "a cleanup run's ID", 1),
    "limit": _query("limit", {"type": "integer", "minimum": 1, "maximum": AUDIT_LIMIT_MAX, "default": 100},
                    f"at most this many entries (larger values count as {AUDIT_LIMIT_MAX})"),
}

# -- responses ------------------------------------------------------------------------------------

_ERRORS: dict[int, str] = {
    400: "Invalid request: a malformed body, parameter, name, tag or digest (INVALID_REQUEST, NAME_INVALID, "
         "TAG_INVALID, DIGEST_INVALID, PAGINATION_NUMBER_INVALID)",
    401: "Not logged in, or bad credentials (UNAUTHORIZED)",
    403: "Logged in, but the role does not allow this; or a protection policy covers what a deletion would "
         "remove (DENIED)",
    404: "No such registry, image, artifact, tag, user, key, role binding, webhook, policy or cleanup run "
         "(NOT_FOUND, NAME_UNKNOWN, MANIFEST_UNKNOWN)",
    409: "Conflicts with the current state: a name or policy that exists, a limit reached (CONFLICT)",
    413: "The body is larger than 64 KiB (SIZE_INVALID)",
    429: "Too many failed logins from this client or for this account (TOOMANYREQUESTS)",
}
RESPONSES: dict[str, Schema] = {
    str(status): {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
    for status, text in _ERRORS.items()
}
RESPONSES["401"]["headers"] = {"WWW-Authenticate": {"schema": _STR, "description": "`Basic realm=\"ncr-trio\"`"}}
RESPONSES["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def _json(schema: str, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _operation(name: str, summary: str, permission: str, ok: tuple[int, str | None, str], *,
               params: tuple[str, ...] = (), body: str | None = None, body_required: bool = False,
               errors: tuple[int, ...] = (), tags: tuple[str, ...] = ()) -> Schema:
    """One operation. `ok` is (status, response schema or None for no body, description); `errors`
    adds to what every authenticated operation may answer (401, 429, and 403 unless anyone logged in
    may call it) and what a parameter or body brings (400, 413)."""
    status, schema, text = ok
    responses: dict[str, Schema] = {str(status): {"description": text} if schema is None else _json(schema, text)}
    codes = {401, 429, *errors}
    if permission != "user":
        codes.add(403)
    if params or body:
        codes.add(400)
    if body:
        codes.add(413)
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/{code}"}
    op: Schema = {"operationId": name, "summary": summary, "tags": list(tags),
                  "description": f"Permission: {PERMISSIONS[permission]}.", "responses": responses}
    if params:
        op["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    if body:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": _ref(body)}}}
    return op


PERMISSIONS = {
    "user": "any logged-in user",
    "read": "read on the registry (every role)",
    "manage": "manage on the registry (project-admin, project-member, service-admin)",
    "manage*": "manage on every registry (`*`)",
    "admin": "system administrator",
    "self": "the user themself, or a system administrator",
}

_PAGE = ("page", "per_page")
_R = "/api/v1/registries/{registry}"
_I = _R + "/images/{image}"
_IMG = ("registry", "image")
_W = _R + "/webhooks"
_C = _R + "/cleanup"
_P = _R + "/protection"
PATHS: dict[str, dict[str, Schema]] = {
    "/api/v1/openapi.json": {"get": {
        "operationId": "api.openapi", "summary": "This document", "tags": ["meta"], "security": [],
        "responses": {"200": _json("OpenAPIDocument", "The OpenAPI 3.1 document of /api/v1")}}},
    "/api/v1/whoami": {"get": _operation(
        "api.whoami", "Who the request is logged in as", "user", (200, "WhoAmI", "The caller"), tags=("users",))},
    "/api/v1/registries": {
        "get": _operation("api.registries", "The registries the caller holds a role on", "user",
                          (200, "RegistryList", "Registries, by name"), tags=("registries",)),
        "post": _operation("api.registry.create", "Create a registry", "manage*", (201, "Registry", "Created"),
                           body="NewRegistry", body_required=True, errors=(409,), tags=("registries",)),
    },
    _R: {
        "get": _operation("api.registry", "A registry, with how many images it holds", "read",
                          (200, "RegistryDetail", "The registry"), params=("registry",), errors=(404,),
                          tags=("registries",)),
        "patch": _operation("api.registry.update", "Change a registry's settings", "manage",
                            (200, "Registry", "The registry as it is now"), params=("registry",),
                            body="RegistryChanges", errors=(404,), tags=("registries",)),
        "delete": _operation("api.registry.delete", "Delete a registry (with `force`, and its images)", "manage",
                             (200, "RegistryDeleted", "Deleted"), params=("registry", "force"),
                             errors=(404, 409), tags=("registries",)),
    },
    _R + "/members": {"get": _operation(
        "api.members", "Who holds a role on the registry itself (not through `*`)", "read",
        (200, "MemberList", "Members, by user name"), params=("registry",), tags=("registries",))},
    _R + "/tags": {"get": _operation(
        "api.registry.tags", "The tags of every image of the registry", "read",
        (200, "TagPage", "Tags, by repository and name"), params=("registry", "q", "glob", *_PAGE),
        errors=(404,), tags=("images",))},
    _R + "/images": {"get": _operation(
        "api.images", "The registry's images", "read", (200, "ImagePage", "Images, by name"),
        params=("registry", "q", *_PAGE), errors=(404,), tags=("images",))},
    _I + "/artifacts/{digest}/tags": {"post": _operation(
        "api.artifact.tags", "Tag an artifact", "manage", (201, "Tag", "Tagged"), params=(*_IMG, "digest"),
        body="NewTag", body_required=True, errors=(404, 409), tags=("images",))},
    _I + "/artifacts/{digest}": {
        "get": _operation("api.artifact", "An artifact", "read", (200, "Artifact", "The artifact"),
                          params=(*_IMG, "digest"), errors=(404,), tags=("images",)),
        "delete": _operation("api.artifact.delete", "Delete an artifact and the tags pointing at it", "manage",
                             (204, None, "Deleted"), params=(*_IMG, "digest"), errors=(404,), tags=("images",)),
    },
    _I + "/artifacts": {"get": _operation(
        "api.artifacts", "An image's artifacts, newest push first", "read", (200, "ArtifactPage", "Artifacts"),
        params=(*_IMG, *_PAGE), errors=(404,), tags=("images",))},
    _I + "/tags/{tag}": {"delete": _operation(
        "api.tag.delete", "Delete a tag (not the artifact)", "manage", (204, None, "Deleted"),
        params=(*_IMG, "tag"), errors=(404,), tags=("images",))},
    _I + "/tags": {"get": _operation(
        "api.tags", "An image's tags", "read", (200, "TagPage", "Tags, by name"),
        params=(*_IMG, "q", "glob", *_PAGE), tags=("images",))},
    _I: {
        "get": _operation("api.image", "An image", "read", (200, "Image", "The image"), params=_IMG,
                          errors=(404,), tags=("images",)),
        "delete": _operation("api.image.delete", "Delete an image with its artifacts and tags", "manage",
                             (200, "ImageDeleted", "Deleted"), params=_IMG, errors=(404,), tags=("images",)),
    },
    "/api/v1/gc": {
        "post": _operation("api.gc.run", "Run garbage collection now (or a dry run)", "admin",
                           (200, "GcReport", "What was (or would be) removed"), body="GcRequest", tags=("gc",)),
        "get": _operation("api.gc.runs", "Past garbage collection runs, newest first", "admin",
                          (200, "GcRunPage", "Runs"), params=_PAGE, tags=("gc",)),
    },
    "/api/v1/users": {
        "get": _operation("api.users", "Every user", "admin", (200, "UserList", "Users, by name"), tags=("users",)),
        "post": _operation("api.user.create", "Create a user", "admin", (201, "UserCreated", "Created"),
                           body="NewUser", body_required=True, errors=(409,), tags=("users",)),
    },
    "/api/v1/users/{user}": {"delete": _operation(
        "api.user.delete", "Delete a user: their keys are revoked, their roles dropped (never the last system "
        "administrator: 409)", "admin",
        (204, None, "Deleted"), params=("account",), errors=(404, 409), tags=("users",))},
    "/api/v1/users/{user}/keys": {
        "get": _operation("api.keys", "A user's access keys", "self", (200, "KeyList", "Keys, oldest first"),
                          params=("user", "revoked"), errors=(403,), tags=("keys",)),
        "post": _operation("api.key.create", f"Create an access key (at most {MAX_KEYS_PER_USER} active)", "self",
                           (201, "NewKey", "The key, with its secret (shown only here)"), params=("user",),
                           body="KeyRequest", errors=(403, 404, 409), tags=("keys",)),
    },
    "/api/v1/users/{user}/keys/{key}": {"delete": _operation(
        "api.key.revoke", "Revoke an access key", "self", (204, None, "Revoked"), params=("user", "key"),
        errors=(403, 404), tags=("keys",))},
    "/api/v1/users/{user}/roles": {"get": _operation(
        "api.roles", "A user's roles", "self", (200, "RoleList", "Role bindings, by registry"), params=("user",),
        errors=(403,), tags=("roles",))},
    "/api/v1/users/{user}/roles/{on}": {
        "put": _operation("api.role.set", "Grant a user a role on a registry (or every registry)", "admin",
                          (200, "RoleGrant", "The binding"), params=("account", "on"), body="RoleRequest",
                          body_required=True, errors=(404,), tags=("roles",)),
        "delete": _operation("api.role.delete", "Take a user's role on a registry away", "admin",
                             (204, None, "Revoked"), params=("account", "on"), errors=(404,), tags=("roles",)),
    },
    "/api/v1/audit": {"get": _operation(
        "api.audit", "The audit log, newest first", "admin", (200, "AuditList", "Entries"),
        params=("actor", "action", "audit_registry", "before", "limit"), tags=("audit",))},
    "/api/v1/io": {"get": _operation(
        "api.io", "How the answering worker process writes uploads and sends downloads: direct I/O and "
        "zero-copy, with counters since it started", "admin", (200, "IoStats", "The worker's counters"),
        tags=("system",))},
    _W: {
        "get": _operation("api.webhooks", "The registry's webhooks", "read", (200, "WebhookPage", "Webhooks, by ID"),
                          params=("registry", *_PAGE), errors=(404,), tags=("webhooks",)),
        "post": _operation("api.webhook.create", "Add a webhook", "manage", (201, "Webhook", "Created"),
                           params=("registry",), body="NewWebhook", body_required=True, errors=(404, 409),
                           tags=("webhooks",)),
    },
    _W + "/{webhook}": {
        "get": _operation("api.webhook", "A webhook", "read", (200, "Webhook", "The webhook"),
                          params=("registry", "webhook"), errors=(404,), tags=("webhooks",)),
        "patch": _operation("api.webhook.update", "Change a webhook (all or nothing)", "manage",
                            (200, "Webhook", "The webhook as it is now"), params=("registry", "webhook"),
                            body="WebhookChanges", errors=(404, 409), tags=("webhooks",)),
        "delete": _operation("api.webhook.delete", "Delete a webhook, its queued deliveries and its history",
                             "manage", (204, None, "Deleted"), params=("registry", "webhook"), errors=(404,),
                             tags=("webhooks",)),
    },
    _W + "/{webhook}/test": {"post": _operation(
        "api.webhook.test", "Send a `test` event now (enabled or not), once", "manage",
        (200, "Delivery", "The delivery and how it went (a receiver's failure is a `failed` delivery)"),
        params=("registry", "webhook"), errors=(404,), tags=("webhooks",))},
    _W + "/{webhook}/deliveries": {"get": _operation(
        "api.webhook.deliveries", "A webhook's deliveries, newest first, with their attempts", "read",
        (200, "DeliveryPage", "Deliveries"), params=("registry", "webhook", *_PAGE), errors=(404,),
        tags=("webhooks",))},
    _C + "/policies": {
        "get": _operation("api.cleanup.policies", "The registry's cleanup policies", "read",
                          (200, "CleanupPolicyList", "Policies, by ID"), params=("registry",), errors=(404,),
                          tags=("cleanup",)),
        "post": _operation("api.cleanup.policy.create", f"Add a cleanup policy (at most {MAX_POLICIES}; no duplicates)",
                           "manage", (201, "CleanupPolicy", "Created, enabled"), params=("registry",),
                           body="NewCleanupPolicy", body_required=True, errors=(404, 409), tags=("cleanup",)),
    },
    _C + "/policies/{id}": {
        "patch": _operation("api.cleanup.policy.update", "Enable or disable a cleanup policy", "manage",
                            (200, "CleanupPolicy", "The policy as it is now"), params=("registry", "cleanup_policy"),
                            body="PolicyToggle", body_required=True, errors=(404,), tags=("cleanup",)),
        "delete": _operation("api.cleanup.policy.delete", "Delete a cleanup policy", "manage", (204, None, "Deleted"),
                             params=("registry", "cleanup_policy"), errors=(404,), tags=("cleanup",)),
    },
    _C + "/schedule": {
        "get": _operation("api.cleanup.schedule", "When cleanup runs on its own", "read",
                          (200, "Schedule", "The schedule"), params=("registry",), errors=(404,), tags=("cleanup",)),
        "put": _operation("api.cleanup.schedule.set", "Set when cleanup runs on its own", "manage",
                          (200, "Schedule", "The schedule as it is now"), params=("registry",),
                          body="ScheduleRequest", body_required=True, errors=(404,), tags=("cleanup",)),
    },
    _C + "/test": {"post": _operation(
        "api.cleanup.test", "A test run: what a run would delete now (nothing is deleted)", "manage",
        (200, "CleanupRunDetails", "The finished run, with its items"), params=("registry",), errors=(404,),
        tags=("cleanup",))},
    _C + "/run": {"post": _operation(
        "api.cleanup.run", "Run cleanup now", "manage", (200, "CleanupRunDetails", "The finished run, with its items"),
        params=("registry",), errors=(404,), tags=("cleanup",))},
    _C + "/runs": {"get": _operation(
        "api.cleanup.runs", "Cleanup runs, newest first", "read", (200, "CleanupRunPage", "Runs"),
        params=("registry", *_PAGE), errors=(404,), tags=("cleanup",))},
    _C + "/runs/{id}": {"get": _operation(
        "api.cleanup.run.details", "A cleanup run and what it decided for each artifact", "read",
        (200, "CleanupRunDetails", "The run, with its items"), params=("registry", "run"), errors=(404,),
        tags=("cleanup",))},
    _P + "/policies": {
        "get": _operation("api.protection.policies", "The registry's protection policies", "read",
                          (200, "ProtectionPolicyList", "Policies, by ID"), params=("registry",), errors=(404,),
                          tags=("protection",)),
        "post": _operation("api.protection.policy.create",
                           f"Add a protection policy (at most {MAX_POLICIES}; no duplicates)", "manage",
                           (201, "ProtectionPolicy", "Created, enabled"), params=("registry",),
                           body="NewProtectionPolicy", body_required=True, errors=(404, 409), tags=("protection",)),
    },
    _P + "/policies/{id}": {
        "patch": _operation("api.protection.policy.update", "Enable or disable a protection policy", "manage",
                            (200, "ProtectionPolicy", "The policy as it is now"),
                            params=("registry", "protection_policy"), body="PolicyToggle", body_required=True,
                            errors=(404,), tags=("protection",)),
        "delete": _operation("api.protection.policy.delete", "Delete a protection policy", "manage",
                             (204, None, "Deleted"), params=("registry", "protection_policy"), errors=(404,),
                             tags=("protection",)),
    },
}

DOCUMENT: Schema = {
    "openapi": "3.1.0",
    "info": {
        "title": "ncr-trio management API",
        "version": "1",
        "description": "Registries, images, artifacts, tags, webhooks, cleanup and protection policies, users, "
                       "access keys, roles, garbage collection and the audit log (docs/api.md, docs/webhooks.md, "
                       "docs/policies.md). Errors use the registry's error body. Log in with HTTP Basic "
                       "(a user and password, or an access key ID and secret) or a bearer token from /auth/token.",
    },
    "security": [{"basic": []}, {"bearer": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic",
                      "description": "a user name and password, or an access key ID and secret"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "a token from /auth/token"},
        },
        "schemas": SCHEMAS,
        "parameters": PARAMETERS,
        "responses": RESPONSES,
    },
}
DOCUMENT_JSON = json.dumps(DOCUMENT, separators=(",", ":")).encode()

__all__ = ["DIGEST_PATTERN", "DOCUMENT", "DOCUMENT_JSON", "PERMISSIONS"]
