"""The management API's documents, as msgspec models: what a request body may hold and what an
answer holds (docs/api.md). http/operations.py names them in its declarations; the server decodes
bodies with them (http/declare.py), the OpenAPI document is their JSON Schema, and the client
(client.py) decodes answers with them.

Models check types, required members and, where `forbid_unknown_fields` says so, unknown members.
Grammars and ranges are enforced by the services with their own error codes (NAME_INVALID,
TAG_INVALID, ...), so the models only state them for the document (`_m`): decoding never judges a
name differently from the service. Answers are closed (no member the model does not name).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from ncr_trio.auth.roles import Role
from ncr_trio.cache.sources import SOURCE_TYPES
from ncr_trio.cron import FIELDS as CRON_FIELDS
from ncr_trio.cron import PRESETS
from ncr_trio.limits import CACHE_MAX_URL as MAX_SOURCE_URL
from ncr_trio.limits import CLEANUP_MAX_N as MAX_N
from ncr_trio.limits import CLEANUP_OUTCOMES as OUTCOMES
from ncr_trio.limits import (
    EVENT_TYPES,
    MAX_DESCRIPTION,
    MAX_PER_PAGE,
    MAX_POLICIES,
    RULES,
    SCAN_ID_RE,
    SCAN_THRESHOLDS,
    USER_NAME_RE,
    WEBHOOK_NAME_RE,
)
from ncr_trio.limits import REMOTE_MAX_CA_CERT as MAX_CA_CERT
from ncr_trio.limits import REPLICATION_MAX_BANDWIDTH_KBPS as MAX_BANDWIDTH_KBPS
from ncr_trio.limits import REPLICATION_MAX_FILTER as MAX_FILTER
from ncr_trio.limits import SCAN_MAX_ALLOWLIST as MAX_ALLOWLIST
from ncr_trio.limits import SOURCE_MAX_ACCESS_ID as MAX_ACCESS_ID
from ncr_trio.limits import SOURCE_MAX_SECRET as MAX_ACCESS_SECRET
from ncr_trio.limits import WEBHOOK_KINDS as KINDS
from ncr_trio.limits import WEBHOOK_MAX_AUTH_HEADER as MAX_AUTH_HEADER
from ncr_trio.limits import WEBHOOK_MAX_SECRET as MAX_SECRET
from ncr_trio.limits import WEBHOOK_MAX_URL as MAX_URL
from ncr_trio.limits import WEBHOOK_TEST_EVENT as TEST_EVENT
from ncr_trio.patterns import MAX_PATTERN
from ncr_trio.replication.model import DIRECTIONS, EXECUTION_STATUSES, TAG_FILTER_MODES, TASK_STATUSES, TRIGGERS
from ncr_trio.types import REGISTRY_NAME_MAX as MAX_NAME
from ncr_trio.types import REGISTRY_NAME_RE as REGISTRY_RE
from ncr_trio.types import TAG_RE

DIGEST_PATTERN = "^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$"


def _m(description: str | None = None, **schema: Any) -> Meta:
    """What the document says of a value beyond its type (decoding does not check it)."""
    return Meta(description=description, extra_json_schema=schema or None)


def _full(pattern: str) -> str:
    return f"^{pattern}$"


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _cron_field(names: str | None, question: bool) -> str:
    """One cron field as cron.py reads it (its values' ranges are checked after: 0-59, 1-12, ...)."""
    value = "[0-9]+" + (f"|{_any_case(names)}" if names else "")
    item = f"(\\*|({value})(-({value}))?)(/[0-9]+)?"
    field = f"{item}(,{item})*"
    return f"(\\?|{field})" if question else field


SCHEDULE_PATTERN = ("^\\s*(" + "|".join(_any_case(p) for p in ("none", *PRESETS)) + "|"
                    + "\\s+".join(_cron_field(names, q) for _, _, _, names, q in CRON_FIELDS) + ")?\\s*$")

Count = Annotated[int, _m(minimum=0)]
ID = Annotated[int, _m(minimum=1)]
Time = Annotated[str, _m("ISO 8601, UTC", format="date-time")]
TimeOrNull = Annotated[str | None, _m("ISO 8601, UTC", format="date-time")]
Digest = Annotated[str, _m(pattern=DIGEST_PATTERN)]
TagName = Annotated[str, _m(pattern=_full(TAG_RE.pattern))]
RegistryName = Annotated[str, _m(minLength=1, maxLength=MAX_NAME, pattern=_full(REGISTRY_RE.pattern))]
CacheName = Annotated[str, _m("an image cache's name (the rules of a registry's name)", minLength=1,
                              maxLength=MAX_NAME, pattern=_full(REGISTRY_RE.pattern))]
SourceType = Annotated[str, _m(" / ".join(f"`{k}`: {v}" for k, v in SOURCE_TYPES.items()), enum=list(SOURCE_TYPES))]
UserName = Annotated[str, _m(pattern=_full(USER_NAME_RE.pattern))]
RoleName = Annotated[str, _m(enum=[r.value for r in Role])]
Pattern = Annotated[str, _m("`*` (not `/`), `**` (anything), `?`, `{a,b}`", minLength=1, maxLength=MAX_PATTERN)]
WebhookName = Annotated[str, _m(pattern=_full(WEBHOOK_NAME_RE.pattern))]
WebhookKind = Annotated[str, _m(enum=list(KINDS))]
EventType = Annotated[str, _m(enum=list(EVENT_TYPES))]
AnyEventType = Annotated[str, _m(enum=[*EVENT_TYPES, TEST_EVENT])]
Rule = Annotated[str, _m(enum=list(RULES))]
N = Annotated[int, _m("days (`older_than`) or artifacts per image (`retain_*`)", minimum=0, maximum=MAX_N)]
Cidrs = Annotated[list[str] | str | None, _m(
    "CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, a bare address is its /32 or /128), as a list or one string "
    "separated by commas or spaces; empty or null: no restriction")]
ADMINS_SEE = "(system administrators only) "


class Answer(Struct, forbid_unknown_fields=True, kw_only=True):
    """(an answer of the API: closed)"""


class Paged(Answer, kw_only=True):
    total: Count
    page: Annotated[int, _m(minimum=1)]
    per_page: Annotated[int, _m(minimum=1, maximum=MAX_PER_PAGE)]


# -- request bodies -------------------------------------------------------------------------------


class NewRegistry(Struct, kw_only=True, forbid_unknown_fields=True):
    name: RegistryName
    description: str | None = None
    public_read: Annotated[bool | None, _m(default=False)] = None
    public_uri: Annotated[bool | None, _m(default=True)] = None
    allowed_cidrs: Cidrs = None
    cache: Annotated[CacheName | None, _m(
        "an image cache: the registry is its cache-type registry (pulls go through to the source, pushes are "
        "refused, a cleanup policy deletes what was not pulled within 7 days); absent or null: a normal registry")
        ] = None


class RegistryChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    """Members that are absent or null stay as they are"""

    description: str | None = None
    public_read: bool | None = None
    public_uri: bool | None = None
    allowed_cidrs: Cidrs | UnsetType = UNSET


class NewTag(Struct, forbid_unknown_fields=True):
    name: TagName


class GcRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    dry_run: Annotated[bool | None, _m(default=False)] = None
    delete_untagged: Annotated[bool | None, _m("null or absent: the server's gc_delete_untagged")] = None


class NewUser(Struct, kw_only=True, forbid_unknown_fields=True):
    name: UserName
    password: Annotated[str | None, _m("absent or null: the user logs in with access keys only", minLength=12)] = None
    system_admin: Annotated[bool | None, _m(default=False)] = None


class KeyRequest(Struct, forbid_unknown_fields=True):
    description: Annotated[str | None, _m("kept to its first 200 characters")] = None


class RoleRequest(Struct, forbid_unknown_fields=True):
    role: Annotated[RoleName, _m("a role (upper case, `_` and spaces for `-` are forgiven)")]


_URL = _m("an `http://` or `https://` URL with a host, without spaces or control characters", minLength=1,
          maxLength=MAX_URL, pattern="^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+([/?#]\\S*)?$")
_SECRET = _m("HMAC-SHA256 key of the `X-NCR-Signature` header; empty or null: none", maxLength=MAX_SECRET)
_AUTH = _m("sent as `Authorization` (printable ASCII); empty or null: none", maxLength=MAX_AUTH_HEADER,
           pattern="^[ -~]*$")
_EVENTS = _m("the event types it is sent; empty or null: every type")


class WebhookChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the members given change (an empty or null `secret` or `auth_header` removes it); other
    members are refused (400)"""

    name: Annotated[WebhookName | UnsetType, _m("unique in the registry")] = UNSET
    kind: WebhookKind | UnsetType = UNSET
    url: Annotated[str | UnsetType, _URL] = UNSET
    secret: Annotated[str | None | UnsetType, _SECRET] = UNSET
    auth_header: Annotated[str | None | UnsetType, _AUTH] = UNSET
    event_types: Annotated[list[EventType] | None | UnsetType, _EVENTS] = UNSET
    enabled: bool | UnsetType = UNSET


class NewWebhook(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    name: Annotated[WebhookName, _m("unique in the registry")]
    kind: WebhookKind
    url: Annotated[str, _URL]
    secret: Annotated[str | None | UnsetType, _SECRET] = UNSET
    auth_header: Annotated[str | None | UnsetType, _AUTH] = UNSET
    event_types: Annotated[list[EventType] | None | UnsetType, _EVENTS] = UNSET
    enabled: Annotated[bool | UnsetType, _m(default=True)] = UNSET


class NewCleanupPolicy(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    image: Annotated[Pattern, _m("images (repositories without the registry)")] = "**"
    tag: Pattern = "**"
    untagged: Annotated[bool, _m("untagged artifacts are selected too")] = False
    rule: Rule
    n: N


class NewProtectionPolicy(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    image: Annotated[Pattern, _m("images (repositories without the registry)")] = "**"
    tag: Pattern


class PolicyToggle(Struct, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    enabled: bool


_SOURCE_URL = _m("the source registry, `http://` or `https://` host and port only (no path, query or credentials); "
                 "the port one of the server's `cache_allowed_ports` (80 and 443 by default)", minLength=1,
                 maxLength=MAX_SOURCE_URL, examples=["https://registry-1.docker.io"])
_ACCESS_ID = _m("the user name or access key ID (`_json_key` for GCR); empty or null: anonymous",
                maxLength=MAX_ACCESS_ID)
_ACCESS_SECRET = _m("its password or secret (Quay: the JSON `{\"account_name\", \"docker_cli_password\"}`; GCR: the "
                    "service account's JSON key); stored sealed, never answered", maxLength=MAX_ACCESS_SECRET)
_ENDPOINT = _m("ECR only: the API endpoint of GetAuthorizationToken (default: the region's); with it, the url may "
               "be any registry address", maxLength=MAX_SOURCE_URL)
_DESCRIPTION = _m(maxLength=MAX_DESCRIPTION)


class NewCache(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    name: Annotated[CacheName, _m("unique among image caches")]
    type: SourceType
    url: Annotated[str, _SOURCE_URL]
    access_id: Annotated[str | None, _ACCESS_ID] = None
    access_secret: Annotated[str | None, _ACCESS_SECRET] = None
    endpoint: Annotated[str | None, _ENDPOINT] = None
    description: Annotated[str | None, _DESCRIPTION] = None


class CacheChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the members given change (an empty or null `access_secret` removes it); the name stays; other
    members are refused (400)"""

    type: SourceType | UnsetType = UNSET
    url: Annotated[str | UnsetType, _SOURCE_URL] = UNSET
    access_id: Annotated[str | None | UnsetType, _ACCESS_ID] = UNSET
    access_secret: Annotated[str | None | UnsetType, _ACCESS_SECRET] = UNSET
    endpoint: Annotated[str | None | UnsetType, _ENDPOINT] = UNSET
    description: Annotated[str | None | UnsetType, _DESCRIPTION] = UNSET


_REMOTE_URL = _m("the remote registry, `http://` or `https://` host and port only (no path, query or credentials); "
                 "its address must be in the server's `replication_allowed_networks`", minLength=1,
                 maxLength=MAX_SOURCE_URL, examples=["https://ncr.example.com"])
_REMOTE_ID = _m("the user name or access key ID on the remote (for another ncr-trio: an access key of a user with "
                "the rights the policies need there); empty or null: anonymous", maxLength=MAX_ACCESS_ID)
_REMOTE_SECRET = _m("its password or secret; stored sealed, never answered", maxLength=MAX_ACCESS_SECRET)
_CA_CERT = _m("PEM certificates to trust for the remote's TLS, beside the system's", maxLength=MAX_CA_CERT)
_INSECURE = _m("skip TLS verification (only by this explicit flag)")


class NewRemote(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    name: Annotated[str, _m("unique among remotes (the rules of a registry's name)", minLength=1, maxLength=MAX_NAME,
                            pattern=_full(REGISTRY_RE.pattern))]
    url: Annotated[str, _REMOTE_URL]
    type: SourceType | None = None
    access_id: Annotated[str | None, _REMOTE_ID] = None
    access_secret: Annotated[str | None, _REMOTE_SECRET] = None
    ca_cert: Annotated[str | None, _CA_CERT] = None
    insecure: Annotated[bool | None, _INSECURE] = None
    description: Annotated[str | None, _DESCRIPTION] = None


class RemoteChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the members given change (an empty or null `access_secret` removes it); the name stays; other
    members are refused (400)"""

    url: Annotated[str | UnsetType, _REMOTE_URL] = UNSET
    type: SourceType | UnsetType = UNSET
    access_id: Annotated[str | None | UnsetType, _REMOTE_ID] = UNSET
    access_secret: Annotated[str | None | UnsetType, _REMOTE_SECRET] = UNSET
    ca_cert: Annotated[str | None | UnsetType, _CA_CERT] = UNSET
    insecure: Annotated[bool | None | UnsetType, _INSECURE] = UNSET
    description: Annotated[str | None | UnsetType, _DESCRIPTION] = UNSET


PolicyName = Annotated[str, _m("unique in its registry (the rules of a registry's name)", minLength=1,
                               maxLength=MAX_NAME, pattern=_full(REGISTRY_RE.pattern))]
Direction = Annotated[str, _m("`push`: from this registry to the remote; `pull`: from the remote to this registry",
                              enum=list(DIRECTIONS))]
Trigger = Annotated[str, _m("`manual`, `scheduled` (with `schedule`) or `event` (push only: each tag pushed after "
                            "the policy exists)", enum=list(TRIGGERS))]
TagFilterMode = Annotated[str, _m("`match`: the tags the filter matches travel; `exclude`: they stay",
                                  enum=list(TAG_FILTER_MODES))]
_FILTER = _m("a pattern: `*` (not `/`), `**` (anything), `?`, `{a,b}`; empty: everything", maxLength=MAX_FILTER)
_NAME_FILTER = _m("a pattern over the image's name without its registry (`my/app` of `team/my/app`): `*` (not "
                  "`/`), `**` (anything), `?`, `{a,b}`; empty: every image", maxLength=MAX_FILTER)
_NAMESPACE = _m("the registry (namespace) on the other side; default: this registry's name", minLength=1,
                maxLength=MAX_NAME, pattern=_full(REGISTRY_RE.pattern))
_SCHEDULE = _m("with trigger `scheduled`: a preset (Hourly, Daily, Weekly) or five cron fields, in UTC",
               pattern=SCHEDULE_PATTERN)
Bandwidth = Annotated[int, _m("KiB/s across a run; 0: no limit", minimum=0, maximum=MAX_BANDWIDTH_KBPS)]


class NewReplicationPolicy(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    name: PolicyName
    direction: Direction
    remote: Annotated[str, _m("a remote's name (GET /api/v1/remotes)")]
    remote_namespace: Annotated[str | None, _NAMESPACE] = None
    description: Annotated[str | None, _DESCRIPTION] = None
    name_filter: Annotated[str | None, _NAME_FILTER] = None
    tag_filter: Annotated[str | None, _FILTER] = None
    tag_filter_mode: TagFilterMode | None = None
    trigger: Trigger | None = None
    schedule: Annotated[str | None, _SCHEDULE] = None
    override: Annotated[bool | None, _m("replace a different artifact under the same tag at the target "
                                        "(default false: such tags are skipped, with the reason)")] = None
    bandwidth_kbps: Bandwidth | None = None
    enabled: bool | None = None


class ReplicationPolicyChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the members given change; other members are refused (400)"""

    name: PolicyName | UnsetType = UNSET
    direction: Direction | UnsetType = UNSET
    remote: str | UnsetType = UNSET
    remote_namespace: Annotated[str | UnsetType, _NAMESPACE] = UNSET
    description: Annotated[str | None | UnsetType, _DESCRIPTION] = UNSET
    name_filter: Annotated[str | None | UnsetType, _NAME_FILTER] = UNSET
    tag_filter: Annotated[str | None | UnsetType, _FILTER] = UNSET
    tag_filter_mode: TagFilterMode | UnsetType = UNSET
    trigger: Trigger | UnsetType = UNSET
    schedule: Annotated[str | None | UnsetType, _SCHEDULE] = UNSET
    override: bool | UnsetType = UNSET
    bandwidth_kbps: Bandwidth | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class ScheduleRequest(Struct, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    schedule: Annotated[str, _m(
        "a preset (`None`, `Hourly`, `Daily`, `Weekly`; any case) or five cron fields in UTC (minute, hour, day "
        "of month, month, day of week: `* / , -`, `?` in one day field, JAN-DEC, SUN-SAT) that match some date",
        pattern=SCHEDULE_PATTERN, examples=["Daily", "0 3 * * 1-5"])]


# -- answers --------------------------------------------------------------------------------------


class ErrorItem(Answer, kw_only=True):
    code: Annotated[str, _m("one of the codes of ncr_trio/errors.py")]
    message: str
    detail: Annotated[Any, _m("anything that helps (the offending value, for instance)")] = UNSET


class Error(Answer):
    """The registry's error body, for every 4xx and 5xx answer"""

    errors: Annotated[list[ErrorItem], _m(minItems=1)]


class WhoAmI(Answer):
    user: str
    system_admin: bool
    roles: Annotated[dict[str, RoleName], _m("registry (or `*`) -> role")]
    key_id: Annotated[str | None, _m("the access key the request logged in with, if any")]


class Registry(Answer, kw_only=True):
    name: RegistryName
    description: str
    public_read: bool
    public_uri: bool
    allowed_cidrs: list[str]
    type: Annotated[Literal["normal", "image_cache"], _m("image_cache: it pulls through its image cache "
                                                         "and takes no pushes")]
    cache: Annotated[str | None, _m("the image cache of a cache-type registry")]
    created_at: Time
    updated_at: Time


class RegistryDetail(Registry, kw_only=True):
    images: Count


class RegistryList(Answer):
    registries: list[Registry]


class RegistryDeleted(Answer):
    deleted: str
    images_deleted: Count


class Member(Answer):
    user: str
    role: RoleName


class MemberList(Answer):
    members: list[Member]


class Image(Answer):
    name: Annotated[str, _m("the repository without its registry")]
    repository: str
    artifacts: Count
    tags: Count
    size: Annotated[Count, _m("bytes")]
    pushed_at: TimeOrNull
    pulled_at: TimeOrNull


ScanStatusName = Annotated[str, _m(enum=["Not Scanned", "Scanning", "Stopped", "Failed", "Done"])]
SeverityName = Annotated[str, _m(enum=["Critical", "High", "Medium", "Low", "Unknown"])]
ThresholdName = Annotated[str, _m(enum=list(SCAN_THRESHOLDS))]
VulnerabilityID = Annotated[str, _m("a CVE, GHSA, OSV or distribution advisory ID", pattern=_full(SCAN_ID_RE.pattern))]


class ScanTotals(Answer, kw_only=True):
    total: Annotated[Count, _m("vulnerabilities found (one per vulnerability and package, aliases merged)")]
    fixable: Annotated[Count, _m("of which a fixed version is known")]
    severity: Annotated[SeverityName | None, _m("the worst severity; null: nothing found")]
    db_version: Annotated[str, _m("the vulnerability database version the scan used")]


class ImagePage(Paged, kw_only=True):
    images: list[Image]


class ImageDeleted(Answer):
    deleted: str
    artifacts_deleted: Count


class Platform(Answer, kw_only=True):
    os: str
    architecture: str
    variant: str | UnsetType = UNSET


TrustStateName = Annotated[str, _m(enum=["unsigned", "signed", "verified", "invalid"])]
TrustKeyID = Annotated[str, _m("sha256: and the SHA-256 of the key's DER public key", pattern="^sha256:[a-f0-9]{64}$")]


class Signed(Answer, kw_only=True):
    state: Annotated[TrustStateName, _m(
        "unsigned: no signature; signed: signatures, none verified, not all invalid (no trusted key verifies "
        "them yet); verified: a trusted key verifies at least one; invalid: every signature is invalid")]
    signatures: Count
    keys: Annotated[list[TrustKeyID], _m("the trusted keys that verify at least one signature")]
    key_names: Annotated[list[str], _m("the names those keys are trusted under (the registry's first, then the "
                                       "installation's; a key no longer trusted has none)")]


class Accessory(Answer, kw_only=True):
    digest: Digest
    type: Annotated[str, _m("signature: a cosign signature (.sig tag, referrer or sigstore bundle); attestation: "
                            "an in-toto attestation (.att tag or bundle); sbom: an SBOM (.sbom tag or referrer); "
                            "referrer: any other manifest whose subject is this artifact",
                            enum=["signature", "attestation", "sbom", "referrer"])]
    tag: Annotated[str | None, _m("cosign's sha256-<hex>.sig/.att/.sbom tag; null: a referrer (OCI 1.1 subject)")]
    artifact_type: str | None
    size: Annotated[Count, _m("the manifest and its blobs")]
    pushed_at: Time


class Artifact(Answer):
    digest: Digest
    media_type: str
    artifact_type: str | None
    size: Annotated[Count, _m("the manifest, its config and layers (an index: with its children's)")]
    platforms: list[Platform]
    tags: list[TagName]
    subject: Annotated[str | None, _m(pattern=DIGEST_PATTERN)]
    pushed_at: Time
    pulled_at: TimeOrNull
    signed: Annotated[Signed | None, _m(
        "its cosign signatures: unsigned, signed (n signatures), verified (by which trusted keys) or invalid; "
        "null: the artifact is itself a signature or attestation (it has a subject)")]
    scan_status: Annotated[ScanStatusName | None, _m(
        "the vulnerability column: `Not Scanned`, `Scanning` (queued or running), `Stopped`, `Failed`, or `Done` "
        "(then `vulnerabilities` holds the figures); null: not a scannable artifact (a signature, a chart, ...)")]
    vulnerabilities: Annotated[ScanTotals | None, _m("the last finished scan's figures (null: none yet)")] = None
    accessories: Annotated[list[Accessory], _m(
        "its signatures, attestations, SBOMs and other referrers: not artifacts of their own while it exists "
        "(left out of the artifact list; deleted with it)")] = []


class ArtifactPage(Paged, kw_only=True):
    artifacts: list[Artifact]


class Tag(Answer):
    name: TagName
    repository: str
    digest: Digest
    updated_at: Time


class TagPage(Paged, kw_only=True):
    tags: list[Tag]


class GcRun(Answer, kw_only=True):
    id: ID
    dry_run: bool
    started_at: Time
    finished_at: TimeOrNull
    blobs_removed: Count
    manifests_removed: Count
    uploads_removed: Count
    bytes_freed: Count


class GcReport(GcRun, kw_only=True):
    blobs: list[Digest]
    manifests: Annotated[list[str], _m("`repository@digest`")]
    uploads: list[str]


class GcRunPage(Paged, kw_only=True):
    runs: list[GcRun]


class User(Answer):
    name: str
    system_admin: bool
    created_at: Time


class UserList(Answer):
    users: list[User]


class UserCreated(Answer):
    name: UserName


class Key(Answer, kw_only=True):
    id: str
    user: str
    description: str
    created_at: Time
    last_used_at: TimeOrNull
    revoked_at: TimeOrNull
    rotation_due: Annotated[bool, _m("older than 90 days: rotate it")]


class KeyList(Answer):
    keys: list[Key]


class NewKey(Key, kw_only=True):
    secret: Annotated[str, _m("shown only in this answer")]


class RoleBinding(Answer):
    registry: Annotated[str, _m("a registry, or `*`: every registry")]
    role: RoleName


class RoleList(Answer):
    roles: list[RoleBinding]


class RoleGrant(Answer):
    user: str
    registry: str
    role: RoleName


class AuditEntry(Answer):
    id: ID
    at: Time
    actor: str
    action: Annotated[str, _m("login, push, pull, delete, key.create, role.grant, ...")]
    outcome: Annotated[str, _m("ok, failed, denied or refused")]
    registry: str | None
    repository: str | None
    target: str | None
    client: str | None
    detail: dict[str, Any] | str | None


class AuditList(Answer):
    entries: list[AuditEntry]


class DirectIo(Answer):
    enabled: Annotated[bool, _m("the direct_io setting")]
    direct_bytes: Annotated[Count, _m("upload bytes written with O_DIRECT")]
    buffered_bytes: Annotated[Count, _m("upload bytes written through the page cache (small uploads, last partial "
                                        "blocks, no O_DIRECT)")]
    direct_refused: Annotated[Count, _m("uploads the filesystem refused O_DIRECT for")]
    read_back_bytes: Annotated[Count, _m("direct-written bytes read back through the page cache for a first pull")]
    read_back_skipped: Annotated[Count, _m("direct-written bytes not read back (the read-back thread was behind)")]


class ZeroCopy(Answer):
    enabled: Annotated[bool, _m("downloads may go out with sendfile (plain HTTP/1.x)")]
    ranges: Annotated[Count, _m("file ranges sent with sendfile")]
    bytes: Annotated[Count, _m("their bytes")]


class IoStats(Answer):
    pid: Annotated[int, _m("the worker process that answered: every counter is its own")]
    direct_io: DirectIo
    zero_copy: ZeroCopy


class Webhook(Answer):
    id: ID
    registry: str
    name: WebhookName
    kind: WebhookKind
    url: str
    event_types: Annotated[list[EventType], _m("empty: every type")]
    enabled: bool
    secret_set: Annotated[bool, _m("the secret itself is never shown")]
    auth_header_set: Annotated[bool, _m("the auth header itself is never shown")]
    created_at: Time


class WebhookPage(Paged, kw_only=True):
    webhooks: list[Webhook]


class ReplicationEvent(Answer):
    policy: Annotated[str | None, _m("the policy's name")]
    execution: Annotated[int | None, _m("the execution's ID")]


class EventPayload(Answer):
    """What an `http` webhook is sent (docs/webhooks.md)"""

    id: Annotated[str, _m("the event's ID; `test-<hex>` for a test")]
    type: AnyEventType
    occurred_at: Time
    operator: str | None
    registry: str
    repository: str | None
    image: str | None
    digest: Annotated[str | None, _m(pattern=DIGEST_PATTERN)]
    tags: list[str]
    media_type: str | None
    pull_reference: str | None
    replication: Annotated[ReplicationEvent | None, _m("replication events only: the policy and its execution")]


class Mrkdwn(Answer, tag_field="type", tag="mrkdwn"):
    text: str


class SectionBlock(Answer, tag_field="type", tag="section"):
    text: Mrkdwn


class ContextBlock(Answer, tag_field="type", tag="context"):
    elements: list[Mrkdwn]


class SlackMessage(Answer):
    """What a `slack` webhook is sent"""

    text: str
    blocks: list[SectionBlock | ContextBlock]


class Attempt(Answer, kw_only=True):
    attempt: ID
    ok: Annotated[bool, _m("the receiver accepted it (a 2xx answer)")]
    at: Annotated[str | UnsetType, _m(ADMINS_SEE + "when it was made", format="date-time")] = UNSET
    status: Annotated[int | None | UnsetType, _m(ADMINS_SEE + "the receiver's HTTP status; null: no answer")] = UNSET
    error: Annotated[str | None | UnsetType, _m(ADMINS_SEE + "what went wrong")] = UNSET
    duration_ms: Annotated[int | UnsetType, _m(ADMINS_SEE + "how long it took", minimum=0)] = UNSET


class Delivery(Answer, kw_only=True):
    id: ID
    webhook_id: ID
    event_id: Annotated[int | None, _m("null for a test", minimum=1)]
    event_type: AnyEventType
    status: Literal["pending", "delivered", "failed"]
    attempts: Count
    last_status: Annotated[int | None | UnsetType, _m(ADMINS_SEE + "the receiver's HTTP status; null: no answer")
                           ] = UNSET
    last_error: Annotated[str | None | UnsetType, _m(ADMINS_SEE + "what went wrong")] = UNSET
    created_at: Time
    finished_at: Annotated[str | None | UnsetType, _m(ADMINS_SEE + "when it was delivered or failed for good",
                                                      format="date-time")] = UNSET
    next_attempt_at: Annotated[TimeOrNull, _m("when a pending delivery is tried next")]
    attempt_log: list[Attempt]
    payload: Annotated[dict[str, Any], _m("the JSON body that is sent", oneOf=[
        {"$ref": "#/components/schemas/EventPayload"}, {"$ref": "#/components/schemas/SlackMessage"}])]


class DeliveryPage(Paged, kw_only=True):
    deliveries: list[Delivery]


class CleanupPolicy(Answer):
    id: ID
    registry: str
    image: str
    tag: str
    untagged: bool
    rule: Rule
    n: N
    description: Annotated[str, _m("the rule in words")]
    enabled: bool
    created_at: Time


class CleanupPolicyList(Answer):
    policies: Annotated[list[CleanupPolicy], _m(maxItems=MAX_POLICIES)]


class ProtectionPolicy(Answer):
    id: ID
    registry: str
    image: str
    tag: str
    enabled: bool
    created_at: Time


class ProtectionPolicyList(Answer):
    policies: Annotated[list[ProtectionPolicy], _m(maxItems=MAX_POLICIES)]


class CleanupPolicySnapshot(Answer, tag_field="kind", tag="cleanup"):
    id: ID
    image: str
    tag: str
    untagged: bool
    rule: Rule
    n: N


class ProtectionPolicySnapshot(Answer, tag_field="kind", tag="protection"):
    id: ID
    image: str
    tag: str


class Schedule(Answer):
    schedule: Annotated[str, _m("five cron fields (UTC), or `None`: never")]
    preset: Annotated[str | None, _m("the preset the schedule is, if any",
                                     enum=["None", *(p.capitalize() for p in PRESETS), None])]
    timezone: Literal["UTC"]
    next_run_at: TimeOrNull
    last_run_at: TimeOrNull


class CleanupRun(Answer, kw_only=True):
    id: ID
    registry: str
    triggered_by: Literal["test", "manual", "schedule"]
    dry_run: bool
    status: Literal["running", "succeeded", "failed"]
    started_at: Time
    finished_at: TimeOrNull
    deleted: Annotated[Count, _m("deleted (a test run: would be deleted)")]
    kept: Annotated[Count, _m("selected, but protected, still needed or changed meanwhile")]
    policies: Annotated[list[CleanupPolicySnapshot | ProtectionPolicySnapshot],
                        _m("the enabled policies the run applied (a snapshot)")]
    error: str | None


class CleanupRunPage(Paged, kw_only=True):
    runs: list[CleanupRun]


class RunItem(Answer):
    repository: str
    digest: Digest
    tags: list[TagName]
    outcome: Annotated[str, _m(enum=list(OUTCOMES))]
    reason: Annotated[str | None, _m("the policy, the manifest that needs it, or what changed")]


class CleanupRunDetails(CleanupRun, kw_only=True):
    items: list[RunItem]


class ImageCache(Answer, kw_only=True):
    name: CacheName
    type: SourceType
    url: str
    access_id: str
    has_secret: Annotated[bool, _m("whether an access secret is set: the secret itself is never shown")]
    endpoint: str
    description: str
    registries: Annotated[list[RegistryName], _m("the cache-type registries pulling through it (while one does, "
                                                 "it cannot be deleted)")]
    created_at: Time
    updated_at: Time


class CacheList(Answer):
    caches: list[ImageCache]


class CacheTest(Answer):
    ok: Annotated[bool, _m("the source answered and took the credentials")]
    detail: Annotated[str, _m("what happened, in words")]


Validity = Annotated[str, _m("`valid` or `invalid` (with the reason)", enum=["valid", "invalid"])]


class Remote(Answer, kw_only=True):
    name: str
    url: str
    type: SourceType
    access_id: str
    has_secret: Annotated[bool, _m("whether an access secret is set: the secret itself is never shown")]
    ca_cert: str
    insecure: bool
    description: str
    status: Validity
    reason: str
    checked_at: TimeOrNull
    created_at: Time
    updated_at: Time


class RemoteList(Answer):
    remotes: list[Remote]


class ReplicationPolicy(Answer, kw_only=True):
    id: ID
    registry: RegistryName
    name: str
    description: str
    direction: Direction
    remote: str
    remote_namespace: str
    name_filter: str
    tag_filter: str
    tag_filter_mode: TagFilterMode
    trigger: Trigger
    schedule: Annotated[str, _m("five cron fields in UTC (trigger `scheduled`), else empty")]
    next_run_at: TimeOrNull
    override: bool
    bandwidth_kbps: Bandwidth
    enabled: bool
    status: Annotated[str, _m("its remote's status: `valid` or `invalid` (with the reason)", enum=["valid", "invalid"])]
    reason: str
    created_at: Time
    updated_at: Time


class ReplicationPolicyList(Answer):
    policies: list[ReplicationPolicy]


class Execution(Answer, kw_only=True):
    id: ID
    policy_id: ID
    trigger: Trigger
    status: Annotated[str, _m(enum=list(EXECUTION_STATUSES))]
    started_at: Time
    ended_at: TimeOrNull
    copied: Annotated[int, _m("artifacts copied", minimum=0)]
    skipped: Annotated[int, _m("artifacts the target had already (or kept: override off)", minimum=0)]
    failed: Annotated[int, _m("artifacts that failed", minimum=0)]
    bytes: Annotated[int, _m("blob bytes sent", minimum=0)]
    stop_requested: bool
    detail: Annotated[str, _m("why it failed, was stopped or skipped")]


class ExecutionPage(Paged, kw_only=True):
    executions: list[Execution]


class ReplicationTask(Answer, kw_only=True):
    id: ID
    execution_id: ID
    source: Annotated[str, _m("repository:tag copied from")]
    target: Annotated[str, _m("repository:tag copied to")]
    digest: str
    status: Annotated[str, _m(enum=list(TASK_STATUSES))]
    attempts: Count
    bytes: Count
    error: str
    started_at: TimeOrNull
    ended_at: TimeOrNull


class ReplicationTaskPage(Paged, kw_only=True):
    tasks: list[ReplicationTask]


class OpenAPIDocument(Struct):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


# Documents not named by any operation's answer, but by another schema.
# -- vulnerability scanning --------------------------------------------------------------------


class ScanStatus(Answer, kw_only=True):
    digest: Digest
    status: ScanStatusName
    trigger: Annotated[str | None, _m("what asked for the scan: manual, push, schedule, or index (scanned as a "
                                      "platform of its index), import (a new vulnerability database)",
                                      enum=["manual", "push", "schedule", "import", "index", None])]
    requested_at: TimeOrNull
    started_at: TimeOrNull
    ended_at: TimeOrNull
    stop_requested: bool
    error: Annotated[str, _m("why it failed (empty otherwise)")]
    vulnerabilities: Annotated[ScanTotals | None, _m("the last finished scan's figures (null: none yet)")]


class Vulnerability(Answer, kw_only=True):
    id: str
    aliases: list[str]
    package: Annotated[str, _m("the installed package")]
    source: Annotated[str, _m("the name the advisory uses (a distribution's source package)")]
    ecosystem: str
    kind: Annotated[str, _m("apk, dpkg, python, npm, go-stdlib or go-module")]
    path: Annotated[str, _m("where in the image the package was found")]
    installed: str
    fixed: Annotated[str | None, _m("the lowest fixed version above the installed one; null: no fix known")]
    severity: SeverityName
    score: Annotated[float | None, _m("the CVSS base score, when the advisory gives a vector")]
    summary: str
    links: list[str]


class PlatformReport(Answer, kw_only=True):
    digest: Digest
    platform: Annotated[str | None, _m("os/architecture[/variant] of an index's image; null: a single image")]
    packages: Count
    unsupported: Annotated[list[str], _m("package databases found but not read (rpm, ...)")]
    total: Count
    fixable: Count
    severity: SeverityName | None
    vulnerabilities: Annotated[list[Vulnerability], _m("worst first")]


class VulnerabilityReport(Answer, kw_only=True):
    digest: Digest
    status: ScanStatusName
    ended_at: TimeOrNull
    db_version: str
    total: Annotated[Count, _m("an index: its worst platform's")]
    fixable: Count
    severity: SeverityName | None
    platforms: Annotated[list[PlatformReport], _m("one per image (an index: per platform)")]


class ScanSchedule(Answer, kw_only=True):
    schedule: Annotated[str, _m("five cron fields (UTC), or `None`: never")]
    preset: Annotated[str, _m("Weekly is Saturday 00:00 UTC", enum=["None", "Hourly", "Daily", "Weekly", "Custom"])]
    timezone: Literal["UTC"]
    next_run_at: TimeOrNull
    last_run_at: TimeOrNull


class Allowlist(Answer, kw_only=True):
    ids: list[VulnerabilityID]


class AllowlistRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    ids: Annotated[str | list[str], _m(f"IDs separated by commas, spaces or newlines, or a list (at most "
                                       f"{MAX_ALLOWLIST})", examples=["CVE-2016-2180, CVE-2016-6301"])]


class RegistryScanSettings(Answer, kw_only=True):
    registry: RegistryName
    scan_on_push: bool
    prevent_pull_severity: Annotated[ThresholdName | None, _m(
        "pulls of an image with a vulnerability of this severity or higher that the allowlist does not name are "
        "refused (412); null: never refused")]
    allowlist: Annotated[list[VulnerabilityID] | None, _m(
        "the registry's own allowlist, which replaces the global one; null: the global list applies")]


class RegistryScanChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the members given change; other members are refused (400)"""

    scan_on_push: bool | UnsetType = UNSET
    prevent_pull_severity: Annotated[str | None | UnsetType, _m(
        "Low, Medium, High, Critical (any case); null or `None`: pulls are never refused",
        enum=[*SCAN_THRESHOLDS, "None", None])] = UNSET
    allowlist: Annotated[str | list[str] | None | UnsetType, _m(
        "the registry's own allowlist (IDs separated by commas, spaces or newlines, or a list); null: none, the "
        "global list applies")] = UNSET


class ScansQueued(Answer, kw_only=True):
    queued: Annotated[Count, _m("artifacts queued (those being scanned already are left alone)")]


class VulnDBSource(Answer, kw_only=True):
    name: str
    kind: str
    records: Count
    skipped: Count
    withdrawn: Count
    newest_modified: str | None


class VulnDBStatus(Answer, kw_only=True):
    version: Annotated[str | None, _m("null: no database imported yet (ncr-trio vulndb import FILE...)")]
    imported_at: str | None
    records: Count
    newest_modified: str | None
    sources: list[VulnDBSource]


# -- image trust --------------------------------------------------------------------------------

TrustKeyName = Annotated[str, _m("letters, digits, '.', '_', '-'", pattern="^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class TrustKey(Answer, kw_only=True):
    name: TrustKeyName
    id: TrustKeyID
    algorithm: Annotated[str, _m(enum=["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa", "ed25519"])]
    registry: Annotated[RegistryName | None, _m("the registry that trusts it; null: the whole installation")]
    pem: Annotated[str, _m("the public key (PEM)")]
    created_at: Time


class TrustKeyList(Answer):
    keys: list[TrustKey]


class NewTrustKey(Struct, kw_only=True, forbid_unknown_fields=True):
    """Other members are refused (400)"""

    name: TrustKeyName
    pem: Annotated[str, _m("the content of cosign.pub (PEM `PUBLIC KEY`): ECDSA P-256/P-384/P-521, RSA 2048 to "
                           "4096 bits, or Ed25519; private keys are refused", maxLength=16384)]


class RegistryTrustSettings(Answer, kw_only=True):
    registry: RegistryName
    require_signature: Annotated[bool, _m("pulls of images without a cosign signature are refused (412)")]
    require_verified_signature: Annotated[bool, _m(
        "pulls of images without a signature a trusted key (the registry's or the installation's) verifies are "
        "refused (412)")]


class RegistryTrustChanges(Struct, kw_only=True, forbid_unknown_fields=True):
    """Only the members given change; other members are refused (400)"""

    require_signature: bool | UnsetType = UNSET
    require_verified_signature: bool | UnsetType = UNSET


class SignatureEntry(Answer, kw_only=True):
    layout: Annotated[str, _m("tag: the sha256-<hex>.sig tag; referrer: an OCI 1.1 referrer; bundle: a sigstore "
                              "bundle referrer (--new-bundle-format)", enum=["tag", "referrer", "bundle"])]
    manifest: Annotated[Digest, _m("the signature manifest")]
    index: Annotated[Count, _m("the layer of that manifest")]
    verdict: Annotated[str, _m(enum=["verified", "unverified", "invalid"])]
    keys: Annotated[list[TrustKeyID], _m("the trusted keys that verify it")]
    key_names: Annotated[list[str], _m("the names those keys are trusted under")]
    reason: Annotated[str, _m("why it is not verified (empty when it is)")]


class SignatureList(Answer, kw_only=True):
    digest: Digest
    state: TrustStateName
    keys: list[TrustKeyID]
    computed_at: Time
    signatures: list[SignatureEntry]


EXTRA_SCHEMAS = (Error, EventPayload, SlackMessage)
