"""Access control: who is asking (logins, bearer tokens) and what they may do (roles, registries).

One `AccessControl` per worker process. Hot paths stay cheap: a verified token is remembered
until it expires (one dict lookup per request instead of an ECDSA verification), registries'
settings and users' roles are re-read at most every `access_cache_seconds` (a change made on this
node applies at once; on other nodes within that interval), a key's revocation reaches every
node within the same interval, and secrets are checked with scrypt in worker threads, with a
short-lived cache of successful checks so a client that fetches a token per repository does not
pay tens of milliseconds each time.

A token follows its holder's roles: what a registry token grants is re-checked against the holder's
current rights at most every `access_cache_seconds`, and a token of a deleted user stops at once on
the node that deleted it (within that interval elsewhere). Registry tokens (audience `token_service`)
and management tokens (audience `token_service:management`, asked for with the scope
`management:api:*`) are signed by the same key but never stand in for each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import trio

from ncr_trio import changes
from ncr_trio.auth.keys import KEY_ID_PREFIX, hash_secret, verify_secret
from ncr_trio.auth.roles import Permission, permissions, repository_actions
from ncr_trio.auth.scopes import Scope, format_scope, grant, is_management
from ncr_trio.auth.throttle import LockedOut, LoginThrottle
from ncr_trio.auth.tokens import LEEWAY_SECONDS, MAX_LIFETIME_SECONDS, Claims, TokenError, TokenIssuer
from ncr_trio.config import Config
from ncr_trio.meta import AccessStore, AuditEntry, RegistryInfo
from ncr_trio.networks import allowlist

log = logging.getLogger("ncr_trio.auth")

ADMIN_USER = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"


class AuthFailed(Exception):
    """Unknown account, wrong secret or revoked key (the message never says which)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated user (or the anonymous one, `user == ""`)."""

    user: str
    system_admin: bool = False
    roles: Mapping[str, str] = field(default_factory=dict)
    key_id: str | None = None
    # On the registry API: what the request's bearer token grants (nothing else counts there), cut
    # down to what the holder's roles allow now.
    token_access: tuple[Scope, ...] = ()
    created_at: float = 0.0  # of the user: a token issued before it was for an earlier user of that name
    token_expires_at: float | None = None  # on the registry API: when the request's bearer token expires

    @property
    def anonymous(self) -> bool:
        return not self.user

    def token_allows(self, repository: str, action: str) -> bool:
        return any(s.type == "repository" and s.name == repository and (action in s.actions or "*" in s.actions)
                   for s in self.token_access)

    def holds(self, registry: str) -> frozenset[Permission]:
        return permissions(self.roles, registry, self.system_admin)


ANONYMOUS = Principal("")


def registry_of(repository: str) -> str:
    """The registry (namespace) a repository belongs to: its first path component."""
    return repository.split("/", 1)[0]


def reachable(info: RegistryInfo, private_listener: bool, client: str | None) -> bool:
    """Whether a client reaches a registry: public URI off, only through a private listener; and the
    client in the registry's CIDR allowlist, if it has one."""
    if not info.public_uri and not private_listener:
        return False
    return client_allowed(info, client)


def client_allowed(info: RegistryInfo, client: str | None) -> bool:
    if not info.allowed_cidrs:
        return True
    return client in allowlist(info.allowed_cidrs)


K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Values remembered for `ttl` seconds of `clock` (at most `size` of them: then all are forgotten)."""

    def __init__(self, ttl: float, clock: Callable[[], float], size: int = 10_000) -> None:
        self.ttl, self._clock, self._size = ttl, clock, size
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        hit = self._items.get(key)
        if hit is None or hit[0] < self._clock():
            return False, None
        return True, hit[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        if len(self._items) >= self._size:
            self._items.clear()
        self._items[key] = (self._clock() + (self.ttl if ttl is None else ttl), value)

    def drop(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class AccessControl:
    def __init__(self, config: Config, store: AccessStore, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        key_dir = config.data_dir / "keys"
        lifetime = min(config.token_lifetime_seconds, MAX_LIFETIME_SECONDS)
        self.tokens = TokenIssuer(key_dir, config.token_issuer, config.token_service, lifetime, clock=clock)
        self.refresh_tokens = TokenIssuer(key_dir, config.token_issuer, config.token_service + ":refresh",
                                          MAX_LIFETIME_SECONDS, clock=clock)
        self.management_tokens = TokenIssuer(key_dir, config.token_issuer, config.token_service + ":management",
                                             lifetime, clock=clock)
        self.throttle = LoginThrottle(config.login_slow_after, config.login_lock_after,
                                      config.login_lockout_seconds, config.login_window_seconds)
        ttl = config.access_cache_seconds
        self._hashing = trio.CapacityLimiter(2)
        self._credentials: TTLCache[bytes, Principal] = TTLCache(60.0, clock)
        self._registries: TTLCache[str, RegistryInfo | None] = TTLCache(ttl, clock)
        self._principals: TTLCache[str, Principal | None] = TTLCache(ttl, clock)
        self._claims: TTLCache[tuple[str, str], Claims] = TTLCache(MAX_LIFETIME_SECONDS, clock)
        # A registry token -> its holder, with what it grants cut down to the holder's current rights.
        self._holders: TTLCache[str, Principal] = TTLCache(ttl, clock)
        self._revoked: set[str] = set()
        self._revoked_read_at = float("-inf")
        self._key_use: dict[str, float] = {}
        self._audit: list[AuditEntry] = []
        # Pulls are many: the same (actor, repository, digest, client) within one flush is one row.
        self._pulls: dict[tuple[str, str | None, str | None, str | None, str | None], list[float]] = {}
        self._dummy_hash = hash_secret(secrets.token_urlsafe(16))

    # -- first start --------------------------------------------------------------------------
    def bootstrap(self) -> None:
        """Create the `admin` system administrator on first start (several workers may race: one
        wins). Its password is NCR_ADMIN_PASSWORD, or a random one written to
        <data>/initial-admin-password (mode 0600) and shown on the terminal, if there is one: never
        written to a log."""
        given = self.config.admin_password
        password = given or secrets.token_urlsafe(18)
        path = self.config.data_dir / INITIAL_PASSWORD_FILE

        def write_file() -> None:
            if given:
                return
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, (password + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)

        if self.store.ensure_user_sync(ADMIN_USER, hash_secret(password), True, on_created=write_file):
            if given:
                log.warning("created the system administrator %r with the password from NCR_ADMIN_PASSWORD",
                            ADMIN_USER)
            else:
                log.warning("created the system administrator %r: its password is in %s (mode 0600)",
                            ADMIN_USER, Path(path).resolve())
                if sys.stdout.isatty():  # a person watching the first start, not a log collector
                    print(f"ncr-trio: the password of {ADMIN_USER!r} is {password} (shown once)", flush=True)

    # -- logins -------------------------------------------------------------------------------
    async def login(self, username: str, secret: str, client: str | None, *, audit_cached: bool = True) -> Principal:
        """Check an account (a user's name and password, or an access key's ID and secret).

        Raises AuthFailed or LockedOut; every outcome goes to the audit log (with `audit_cached`
        False, a success answered from the credential cache does not: the management API checks
        Basic credentials on every call)."""
        try:
            delay = self.throttle.delay(username, client)
        except LockedOut:
            self.record("login", "refused", actor=username, client=client, detail="locked out")
            raise
        await self._refresh_revoked()  # a key revoked on another worker or node stops here too
        fingerprint = hashlib.sha256(f"{username}\0{secret}".encode()).digest()
        found, cached = self._credentials.get(fingerprint)
        principal: Principal | None = None
        if found and cached is not None and (cached.key_id is None or cached.key_id not in self._revoked):
            principal = await self.principal(cached.user, cached.key_id)
        from_cache = principal is not None
        if principal is None:
            if delay:
                await trio.sleep(delay)
            principal = await self._check_secret(username, secret)
        if principal is None:
            self.throttle.failed(username, client)
            self.record("login", "failed", actor=username, client=client)
            raise AuthFailed("invalid username or password")
        self.throttle.succeeded(username, client)
        self._credentials.put(fingerprint, principal)
        if principal.key_id is not None:
            self._key_use[principal.key_id] = self._clock()
        if audit_cached or not from_cache:
            self.record("login", "ok", actor=principal.user, client=client, target=principal.key_id)
        return principal

    async def _check_secret(self, username: str, secret: str) -> Principal | None:
        if username.startswith(KEY_ID_PREFIX):
            row = await self.store.key_for_login(username)
            if row is None:
                await self._verify(secret, self._dummy_hash)
                return None
            key, stored, _ = row
            if not await self._verify(secret, stored):
                return None
            return await self.principal(key.user, key.id, fresh=True)
        found = await self.store.user(username)
        if found is None or found[1] is None:
            await self._verify(secret, self._dummy_hash)  # the same time whether the user exists or not
            return None
        if not await self._verify(secret, found[1]):
            return None
        return await self.principal(username, None, fresh=True)

    async def _verify(self, secret: str, stored: str) -> bool:
        return await trio.to_thread.run_sync(verify_secret, secret, stored, limiter=self._hashing)

    async def principal(self, user: str, key_id: str | None = None, *, fresh: bool = False) -> Principal | None:
        """The user's current rights (None if the user is gone), re-read at most every few seconds."""
        found, cached = (False, None) if fresh else self._principals.get(user)
        if not found:
            row = await self.store.user(user)
            cached = None if row is None else Principal(user, row[0].system_admin, await self.store.roles(user),
                                                        created_at=row[0].created_at)
            self._principals.put(user, cached)
        if cached is None:
            return None
        return cached if key_id is None else dataclasses.replace(cached, key_id=key_id)

    def forget(self, user: str | None = None, registry: str | None = None) -> None:
        """Drop cached rights after a change made here (other nodes catch up within the TTL)."""
        if user is not None:
            self._principals.drop(user)
            self._credentials.clear()
            self._holders.clear()
        if registry is not None:
            self._registries.drop(registry)

    async def key_revoked(self, key_id: str) -> None:
        self._revoked.add(key_id)
        self._credentials.clear()

    # -- registries ---------------------------------------------------------------------------
    async def registry(self, name: str) -> RegistryInfo | None:
        found, info = self._registries.get(name)
        if not found:
            info = await self.store.registry(name)
            self._registries.put(name, info)
        return info

    # -- tokens -------------------------------------------------------------------------------
    async def allowed_actions(self, principal: Principal, scope: Scope) -> frozenset[str]:
        """What `principal` may do on one requested resource."""
        if scope.type == "registry" and scope.name == "catalog":
            # The catalog lists every repository: only those who may read every registry.
            return frozenset({"*"}) if Permission.READ in principal.holds("*") else frozenset()
        if is_management(scope):
            # The management API checks every call against the roles; its token only says who calls.
            return frozenset() if principal.anonymous else frozenset({"*"})
        if scope.type != "repository" or scope.resource_class not in ("", "image"):
            return frozenset()
        actions = set(repository_actions(principal.holds(registry_of(scope.name))))
        if "pull" not in actions:
            info = await self.registry(registry_of(scope.name))
            if info is not None and info.public_read:
                actions.add("pull")
        return frozenset(actions)

    async def grant(self, principal: Principal, requested: Iterable[Scope]) -> list[Scope]:
        requested = list(requested)
        allowed = {s.resource: await self.allowed_actions(principal, s) for s in requested}
        return grant(requested, lambda s: allowed[s.resource])

    def issue(self, principal: Principal, granted: list[Scope], offline: bool) -> dict[str, Any]:
        """The token endpoint's answer (Docker token spec and its OAuth2 variant in one body): a
        management token if `granted` is the management scope, else a registry token."""
        issuer = self.management_tokens if any(is_management(s) for s in granted) else self.tokens
        token, expires_in, issued_at = issuer.issue(principal.user, granted, principal.key_id)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": issued_at.isoformat().replace("+00:00", "Z"),
            "scope": " ".join(format_scope(s) for s in granted),
        }
        if offline and not principal.anonymous:
            body["refresh_token"] = self.refresh_tokens.issue(principal.user, [], principal.key_id)[0]
        return body

    async def refresh(self, refresh_token: str) -> Principal:
        """The principal a refresh token stands for, if it and its key are still good."""
        try:
            claims = self.refresh_tokens.verify(refresh_token, self.refresh_tokens.service)
        except TokenError as e:
            raise AuthFailed(str(e)) from None
        await self._refresh_revoked()
        if claims.key_id is not None and claims.key_id in self._revoked:
            raise AuthFailed("the access key of this refresh token was revoked")
        principal = await self.principal(claims.subject, claims.key_id)
        if principal is None:
            raise AuthFailed("unknown user")
        return principal

    async def bearer(self, token: str) -> Principal:
        """Who a registry token speaks for, with what it grants now (`token_access`: the token's grant
        cut down to the holder's current rights): the registry API's per-request check, dict lookups
        once the token has been verified, re-checked every `access_cache_seconds`."""
        claims = await self._verified(token, self.tokens)
        found, holder = self._holders.get(token)
        if not found or holder is None:
            current = await self._holder(claims)
            granted = await self.grant(current, claims.access)
            holder = dataclasses.replace(current, key_id=claims.key_id, token_access=tuple(granted),
                                         token_expires_at=claims.expires_at)
            self._holders.put(token, holder)
        return holder

    async def management(self, token: str) -> Principal:
        """Who a management token speaks for, with their current rights (registry tokens are refused)."""
        claims = await self._verified(token, self.management_tokens)
        holder = await self._holder(claims)
        if holder.anonymous:
            raise TokenError("a management token names a user")
        return holder

    async def _holder(self, claims: Claims) -> Principal:
        """The token's holder as they are now (anonymous for an anonymous token)."""
        if not claims.subject:
            return ANONYMOUS
        holder = await self.principal(claims.subject, claims.key_id)
        if holder is None or claims.issued_at + LEEWAY_SECONDS < holder.created_at:
            raise TokenError("the user this token was issued to no longer exists")
        return holder

    async def _verified(self, token: str, issuer: TokenIssuer) -> Claims:
        """The claims of a token `issuer` signed for its audience, still valid and its key not revoked."""
        found, claims = self._claims.get((issuer.service, token))
        if not found or claims is None:
            claims = issuer.verify(token, issuer.service)  # raises TokenError
            self._claims.put((issuer.service, token), claims)
        if self._clock() > claims.expires_at + LEEWAY_SECONDS:
            raise TokenError("token has expired")
        if claims.key_id is not None:
            await self._refresh_revoked()
            if claims.key_id in self._revoked:
                raise TokenError("the access key this token was issued through was revoked")
            self.key_used(claims.key_id)
        return claims

    def key_used(self, key_id: str) -> None:
        """Note an access key's use (written with the audit log: its `last used`)."""
        self._key_use[key_id] = self._clock()

    async def _refresh_revoked(self) -> None:
        now = self._clock()
        if now - self._revoked_read_at >= self.config.access_cache_seconds:
            self._revoked_read_at = now
            self._revoked = await self.store.revoked_keys()

    # -- audit log ----------------------------------------------------------------------------
    def record(self, action: str, outcome: str, *, actor: str, client: str | None = None,
               registry: str | None = None, repository: str | None = None, target: str | None = None,
               detail: str | None = None) -> None:
        """Queue an audit entry; `run` writes the queue in batches (every second)."""
        if action == "pull" and outcome == "ok" and detail is None:
            key = (actor or "anonymous", registry, repository, target, client)
            seen = self._pulls.get(key)
            if seen is None:
                self._pulls[key] = [self._clock(), 1]
            else:
                seen[1] += 1
            return
        if len(self._audit) >= 100_000:
            log.warning("audit log queue full: dropping the oldest entries")
            del self._audit[:10_000]
        self._audit.append(AuditEntry(self._clock(), actor or "anonymous", action, outcome, registry, repository,
                                      target, client, detail))

    async def flush(self) -> None:
        pulls, self._pulls = self._pulls, {}
        self._audit.extend(
            AuditEntry(at, actor, "pull", "ok", registry, repository, target, client,
                       json.dumps({"count": int(n)}) if n > 1 else None)
            for (actor, registry, repository, target, client), (at, n) in pulls.items())
        entries, self._audit = self._audit, []
        used, self._key_use = self._key_use, {}
        try:
            with changes.unseen():  # records no answer shows (http/fastpath.py)
                await self.store.write_audit(entries)
                await self.store.touch_keys(used)
        except Exception:
            self._audit[:0] = entries
            raise

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background: write queued audit entries and keys' last use every second."""
        task_status.started()
        try:
            while True:
                await trio.sleep(1.0)
                try:
                    await self.flush()
                except Exception:
                    log.exception("writing the audit log failed; will retry")
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(5):
                    await self.flush()


__all__ = ["ADMIN_USER", "ANONYMOUS", "INITIAL_PASSWORD_FILE", "AccessControl", "AuthFailed", "LockedOut",
           "Principal", "TTLCache", "client_allowed", "reachable", "registry_of"]
