"""The access store: the one owner of registries (namespaces), users, access keys, role bindings
and the audit log.

Changes an administrator makes (a registry created, a key issued or revoked, a role granted)
write their audit row in the same transaction, so the log never misses one. Secrets never reach
this module: it stores and returns only their slow hashes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ncr_trio.meta.db import Database, Row, Tx


@dataclass(frozen=True)
class RegistryInfo:
    name: str
    description: str
    public_read: bool
    public_uri: bool
    allowed_cidrs: tuple[str, ...]
    created_at: float
    updated_at: float
    # The image cache a cache-type registry pulls through (ncr_trio/cache); None: a normal registry.
    cache: str | None = None


@dataclass(frozen=True)
class User:
    name: str
    system_admin: bool
    created_at: float


@dataclass(frozen=True)
class AccessKey:
    id: str
    user: str
    description: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    outcome: str  # "ok" | "failed" | "denied"
    registry: str | None = None
    repository: str | None = None
    target: str | None = None  # a digest, tag, key ID, user name...
    client: str | None = None
    detail: str | None = None
    id: int | None = None


class KeyLimitReached(Exception):
    """The user already holds the most active access keys allowed."""


class UnknownUser(Exception):
    pass


class LastSystemAdmin(Exception):
    """Deleting this user would leave no system administrator (nobody could manage users again)."""


_REGISTRY_COLUMNS = ("SELECT name, description, public_read, public_uri, allowed_cidrs, created_at, updated_at, "
                     "cache FROM registries ")
_KEY_COLUMNS = ("SELECT k.id, u.name, k.description, k.created_at, k.last_used_at, k.revoked_at "
                "FROM access_keys k JOIN users u ON u.id = k.user_id ")
_AUDIT_COLUMNS = "SELECT id, at, actor, action, outcome, registry, repository, target, client, detail FROM audit_log "


def _registry(row: Row) -> RegistryInfo:
    cidrs = tuple(c for c in str(row[4]).split(",") if c)
    return RegistryInfo(row[0], row[1], bool(row[2]), bool(row[3]), cidrs, float(row[5]), float(row[6]),
                        None if row[7] is None else str(row[7]))


def _key(row: Row) -> AccessKey:
    return AccessKey(row[0], row[1], row[2], float(row[3]),
                     None if row[4] is None else float(row[4]), None if row[5] is None else float(row[5]))


def _audit(tx: Tx, entry: AuditEntry) -> None:
    tx.execute("INSERT INTO audit_log (at, actor, action, outcome, registry, repository, target, client, detail) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (entry.at, entry.actor, entry.action, entry.outcome, entry.registry, entry.repository,
                entry.target, entry.client, entry.detail))


def _user_id(tx: Tx, name: str, lock: bool = False) -> int:
    row = tx.one("SELECT id FROM users WHERE name = ?" + (tx.dialect.for_update if lock else ""), (name,))
    if row is None:
        raise UnknownUser(name)
    return int(row[0])


class AccessStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- registries ---------------------------------------------------------------------------
    async def create_registry(self, info: RegistryInfo, actor: str,
                              also: Callable[[Tx], None] | None = None) -> bool:
        """Create a registry; False if one of that name exists. `also` runs in the creating transaction
        (an image cache's check, default policies): if it raises, nothing is created."""

        def run(tx: Tx) -> bool:
            n = tx.execute(
                "INSERT INTO registries (name, description, public_read, public_uri, allowed_cidrs, created_at, "
                "updated_at, cache) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (info.name, info.description, int(info.public_read), int(info.public_uri),
                 ",".join(info.allowed_cidrs), info.created_at, info.updated_at, info.cache))
            if n and also is not None:
                also(tx)
            if n:
                detail = None if info.cache is None else json.dumps({"cache": info.cache})
                _audit(tx, AuditEntry(info.created_at, actor, "registry.create", "ok", registry=info.name,
                                      detail=detail))
            return bool(n)

        return await self.db.write(run)

    async def registry(self, name: str) -> RegistryInfo | None:
        row = await self.db.read(lambda tx: tx.one(_REGISTRY_COLUMNS + "WHERE name = ?", (name,)))
        return None if row is None else _registry(row)

    async def registries(self) -> list[RegistryInfo]:
        rows = await self.db.read(lambda tx: tx.all(_REGISTRY_COLUMNS + "ORDER BY name"))
        return [_registry(r) for r in rows]

    async def update_registry(self, info: RegistryInfo, actor: str) -> bool:
        def run(tx: Tx) -> bool:
            n = tx.execute("UPDATE registries SET description = ?, public_read = ?, public_uri = ?, allowed_cidrs = ?, "
                           "updated_at = ? WHERE name = ?",
                           (info.description, int(info.public_read), int(info.public_uri),
                            ",".join(info.allowed_cidrs), info.updated_at, info.name))
            if n:
                detail = json.dumps({"public_read": info.public_read, "public_uri": info.public_uri,
                                     "allowed_cidrs": list(info.allowed_cidrs)})
                _audit(tx, AuditEntry(info.updated_at, actor, "registry.update", "ok", registry=info.name,
                                      detail=detail))
            return bool(n)

        return await self.db.write(run)

    async def delete_registry(self, name: str, actor: str, purge: Callable[[Tx], int]) -> int | None:
        """Delete a registry, its role bindings and (through `purge`, in the same transaction) its
        repositories; returns how many repositories went, or None if there was no such registry."""

        def run(tx: Tx) -> int | None:
            if tx.one("SELECT 1 FROM registries WHERE name = ?" + tx.dialect.for_update, (name,)) is None:
                return None
            removed = purge(tx)
            tx.execute("DELETE FROM role_bindings WHERE registry = ?", (name,))
            tx.execute("DELETE FROM registries WHERE name = ?", (name,))
            _audit(tx, AuditEntry(time.time(), actor, "registry.delete", "ok", registry=name,
                                  detail=json.dumps({"repositories_removed": removed})))
            return removed

        return await self.db.write(run)

    # -- users --------------------------------------------------------------------------------
    def ensure_user_sync(self, name: str, password_hash: str, system_admin: bool,
                         on_created: Callable[[], None] | None = None) -> bool:
        """Create the user if there is none of that name (several processes may race: one wins);
        `on_created` runs inside the creating transaction, so if it fails nothing is created."""

        def run(tx: Tx) -> bool:
            now = time.time()
            n = tx.execute("INSERT INTO users (name, password_hash, system_admin, created_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (name) DO NOTHING", (name, password_hash, int(system_admin), now))
            if n and on_created is not None:
                on_created()
            if n:
                _audit(tx, AuditEntry(now, "system", "user.create", "ok", target=name))
            return bool(n)

        return self.db.write_sync(run)

    async def create_user(self, name: str, password_hash: str | None, system_admin: bool, actor: str) -> bool:
        def run(tx: Tx) -> bool:
            now = time.time()
            n = tx.execute("INSERT INTO users (name, password_hash, system_admin, created_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (name) DO NOTHING", (name, password_hash, int(system_admin), now))
            if n:
                _audit(tx, AuditEntry(now, actor, "user.create", "ok", target=name))
            return bool(n)

        return await self.db.write(run)

    async def user(self, name: str) -> tuple[User, str | None] | None:
        """The user and their password hash (None: no password, keys only)."""
        row = await self.db.read(lambda tx: tx.one(
            "SELECT name, system_admin, created_at, password_hash FROM users WHERE name = ?", (name,)))
        if row is None:
            return None
        return User(row[0], bool(row[1]), float(row[2])), row[3]

    async def users(self) -> list[User]:
        rows = await self.db.read(lambda tx: tx.all("SELECT name, system_admin, created_at FROM users ORDER BY name"))
        return [User(r[0], bool(r[1]), float(r[2])) for r in rows]

    async def delete_user(self, name: str, actor: str) -> bool:
        def run(tx: Tx) -> bool:
            now = time.time()
            # Every administrator's row is locked first, in one statement, so two administrators
            # deleting each other at once queue up (and the second sees itself alone) instead of
            # both going.
            admins = {int(r[0]) for r in tx.all("SELECT id FROM users WHERE system_admin = 1" + tx.dialect.for_update)}
            try:
                uid = _user_id(tx, name, lock=True)
            except UnknownUser:
                return False
            if admins == {uid}:
                raise LastSystemAdmin(name)
            # Keys are kept, revoked, so tokens issued through them stop working at once.
            tx.execute("UPDATE access_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (now, uid))
            tx.execute("DELETE FROM role_bindings WHERE user_id = ?", (uid,))
            tx.execute("UPDATE users SET password_hash = NULL, system_admin = 0, name = ? WHERE id = ?",
                       (f"deleted:{uid}:{name}", uid))
            _audit(tx, AuditEntry(now, actor, "user.delete", "ok", target=name))
            return True

        return await self.db.write(run)

    # -- access keys --------------------------------------------------------------------------
    async def create_key(self, user: str, key_id: str, secret_hash: str, description: str, limit: int,
                         actor: str) -> AccessKey:
        def run(tx: Tx) -> AccessKey:
            uid = _user_id(tx, user, lock=True)  # serialises concurrent creations for one user
            active = tx.one("SELECT COUNT(*) FROM access_keys WHERE user_id = ? AND revoked_at IS NULL", (uid,))
            if active is not None and int(active[0]) >= limit:
                raise KeyLimitReached(user)
            now = time.time()
            tx.execute("INSERT INTO access_keys (id, user_id, secret_hash, description, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (key_id, uid, secret_hash, description, now))
            _audit(tx, AuditEntry(now, actor, "key.create", "ok", target=key_id, detail=json.dumps({"user": user})))
            return AccessKey(key_id, user, description, now, None, None)

        return await self.db.write(run)

    async def key_for_login(self, key_id: str) -> tuple[AccessKey, str, bool] | None:
        """An active key, its secret hash and whether its user is a system administrator."""
        row = await self.db.read(lambda tx: tx.one(
            "SELECT k.id, u.name, k.description, k.created_at, k.last_used_at, k.revoked_at, k.secret_hash, "
            "u.system_admin FROM access_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.id = ? AND k.revoked_at IS NULL", (key_id,)))
        if row is None:
            return None
        return _key(row), str(row[6]), bool(row[7])

    async def keys(self, user: str, include_revoked: bool = False) -> list[AccessKey]:
        sql = _KEY_COLUMNS + "WHERE u.name = ?" + ("" if include_revoked else " AND k.revoked_at IS NULL")
        rows = await self.db.read(lambda tx: tx.all(sql + " ORDER BY k.created_at", (user,)))
        return [_key(r) for r in rows]

    async def revoke_key(self, user: str, key_id: str, actor: str) -> bool:
        def run(tx: Tx) -> bool:
            now = time.time()
            n = tx.execute("UPDATE access_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL AND "
                           "user_id = (SELECT id FROM users WHERE name = ?)", (now, key_id, user))
            if n:
                _audit(tx, AuditEntry(now, actor, "key.revoke", "ok", target=key_id, detail=json.dumps({"user": user})))
            return bool(n)

        return await self.db.write(run)

    async def revoked_keys(self) -> set[str]:
        rows = await self.db.read(lambda tx: tx.all("SELECT id FROM access_keys WHERE revoked_at IS NOT NULL"))
        return {r[0] for r in rows}

    async def touch_keys(self, used: dict[str, float]) -> None:
        """Record when keys were last used (batched by the caller)."""
        if not used:
            return

        def run(tx: Tx) -> None:
            for key_id, at in used.items():
                tx.execute("UPDATE access_keys SET last_used_at = ? WHERE id = ? AND "
                           "(last_used_at IS NULL OR last_used_at < ?)", (at, key_id, at))

        await self.db.write(run)

    # -- roles --------------------------------------------------------------------------------
    async def roles(self, user: str) -> dict[str, str]:
        """Registry name (or "*", every registry) -> role."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT b.registry, b.role FROM role_bindings b JOIN users u ON u.id = b.user_id WHERE u.name = ?",
            (user,)))
        return {r[0]: r[1] for r in rows}

    async def members(self, registry: str) -> list[tuple[str, str]]:
        """(user, role) bound on `registry` itself (not through "*")."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT u.name, b.role FROM role_bindings b JOIN users u ON u.id = b.user_id "
            "WHERE b.registry = ? ORDER BY u.name", (registry,)))
        return [(r[0], r[1]) for r in rows]

    async def set_role(self, user: str, registry: str, role: str | None, actor: str) -> bool:
        """Bind (or with role None, unbind) a user's role on a registry; False if nothing changed."""

        def run(tx: Tx) -> bool:
            uid = _user_id(tx, user)
            now = time.time()
            if role is None:
                n = tx.execute("DELETE FROM role_bindings WHERE user_id = ? AND registry = ?", (uid, registry))
                action = "role.revoke"
            else:
                n = tx.execute("INSERT INTO role_bindings (user_id, registry, role, granted_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (user_id, registry) DO UPDATE SET role = excluded.role, "
                               "granted_at = excluded.granted_at", (uid, registry, role, now))
                action = "role.grant"
            if n:
                _audit(tx, AuditEntry(now, actor, action, "ok", registry=registry, target=user,
                                      detail=json.dumps({"role": role})))
            return bool(n)

        return await self.db.write(run)

    # -- audit log ----------------------------------------------------------------------------
    async def write_audit(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return

        def run(tx: Tx) -> None:
            for entry in entries:
                _audit(tx, entry)

        await self.db.write(run)

    async def audit(self, *, actor: str | None = None, action: str | None = None, registry: str | None = None,
                    before: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; `before` pages on by entry ID."""
        where: list[str] = []
        params: list[object] = []
        for column, value in (("actor", actor), ("registry", registry)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if action is not None:  # "key" matches "key.create" and "key.revoke"
            where.append("(action = ? OR action LIKE ?)")
            params.extend([action, action.replace("%", "").replace("_", "") + ".%"])
        if before is not None:
            where.append("id < ?")
            params.append(min(before, 2**63 - 1))  # IDs are 64-bit: anything above means "all"
        sql = _AUDIT_COLUMNS + (("WHERE " + " AND ".join(where)) if where else "") + " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        rows = await self.db.read(lambda tx: tx.all(sql, params))
        return [AuditEntry(float(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], int(r[0])) for r in rows]


__all__ = ["AccessKey", "AccessStore", "AuditEntry", "KeyLimitReached", "LastSystemAdmin", "RegistryInfo",
           "UnknownUser", "User"]
