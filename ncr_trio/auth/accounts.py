"""Users, their access keys and their roles: the use cases behind the API and the CLI.

An access key's secret exists in clear only in the answer to its creation; it is stored as a
slow hash. A user holds at most five active keys; keys older than 90 days are flagged for
rotation. Only a system administrator creates users and grants roles.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import trio

from ncr_trio.auth.control import AccessControl
from ncr_trio.auth.keys import MAX_KEYS_PER_USER, hash_secret, needs_rotation, new_access_key
from ncr_trio.auth.roles import EVERY_REGISTRY, parse_role
from ncr_trio.errors import RegistryError
from ncr_trio.limits import USER_NAME_RE
from ncr_trio.meta import AccessKey, KeyLimitReached, UnknownUser
from ncr_trio.meta.access import LastSystemAdmin
from ncr_trio.types import iso_time


def key_view(key: AccessKey, now: float) -> dict[str, Any]:
    return {
        "id": key.id,
        "user": key.user,
        "description": key.description,
        "created_at": iso_time(key.created_at),
        "last_used_at": iso_time(key.last_used_at),
        "revoked_at": iso_time(key.revoked_at),
        "rotation_due": needs_rotation(datetime.fromtimestamp(key.created_at, UTC), datetime.fromtimestamp(now, UTC)),
    }


class Accounts:
    def __init__(self, access: AccessControl) -> None:
        self.access = access
        self.store = access.store

    async def create_user(self, name: str, password: str | None, system_admin: bool, actor: str) -> None:
        if USER_NAME_RE.fullmatch(name) is None:
            raise RegistryError("INVALID_REQUEST", "a user name is 1 to 64 lower-case letters, digits, '.', '_' "
                                "or '-', starting with a letter or digit")
        if password is not None and len(password) < 12:
            raise RegistryError("INVALID_REQUEST", "a password has at least 12 characters")
        hashed = None if password is None else await trio.to_thread.run_sync(hash_secret, password)
        if not await self.store.create_user(name, hashed, system_admin, actor):
            raise RegistryError("CONFLICT", f"user {name!r} already exists")

    async def delete_user(self, name: str, actor: str) -> None:
        try:
            deleted = await self.store.delete_user(name, actor)
        except LastSystemAdmin:
            raise RegistryError("CONFLICT", f"{name[:80]!r} is the last system administrator: nobody could "
                                "manage users after it") from None
        if not deleted:
            raise RegistryError("NOT_FOUND", f"no user {name[:80]!r}")
        self.access.forget(user=name)
        for key in await self.store.keys(name, include_revoked=True):
            await self.access.key_revoked(key.id)

    async def create_key(self, user: str, description: str, actor: str) -> dict[str, Any]:
        """A new key; the answer is the only place its secret ever appears."""
        key_id, secret = new_access_key()
        hashed = await trio.to_thread.run_sync(hash_secret, secret)
        try:
            key = await self.store.create_key(user, key_id, hashed, description[:200], MAX_KEYS_PER_USER, actor)
        except KeyLimitReached:
            raise RegistryError("CONFLICT", f"user {user!r} already holds {MAX_KEYS_PER_USER} access keys: "
                                "revoke one first") from None
        except UnknownUser:
            raise RegistryError("NOT_FOUND", f"no user {user[:80]!r}") from None
        return {**key_view(key, time.time()), "secret": secret}

    async def keys(self, user: str, include_revoked: bool = False) -> list[dict[str, Any]]:
        now = time.time()
        return [key_view(k, now) for k in await self.store.keys(user, include_revoked)]

    async def revoke_key(self, user: str, key_id: str, actor: str) -> None:
        if not await self.store.revoke_key(user, key_id, actor):
            raise RegistryError("NOT_FOUND", f"user {user[:80]!r} holds no active key {key_id[:40]!r}")
        await self.access.key_revoked(key_id)

    async def set_role(self, user: str, registry: str, role: str | None, actor: str) -> str | None:
        """Bind `role` (None: unbind); the role as stored (`Project Admin` is `project-admin`)."""
        if registry != EVERY_REGISTRY and await self.store.registry(registry) is None:
            raise RegistryError("NOT_FOUND", f"registry {registry[:80]!r} does not exist")
        value = None
        if role is not None:
            try:
                value = parse_role(role).value
            except ValueError as e:
                raise RegistryError("INVALID_REQUEST", str(e)) from None
        try:
            changed = await self.store.set_role(user, registry, value, actor)
        except UnknownUser:
            raise RegistryError("NOT_FOUND", f"no user {user[:80]!r}") from None
        if role is None and not changed:
            raise RegistryError("NOT_FOUND", f"user {user!r} holds no role on {registry!r}")
        self.access.forget(user=user)
        return value


__all__ = ["USER_NAME_RE", "Accounts", "key_view"]
