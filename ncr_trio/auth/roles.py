"""The guide's roles and its action matrix, declared once.

The guide gives each role a set of CRUD rights on the service: Project Admin, Project Member and
Service Admin may create, read, update and delete; Service Viewer may read; Image Uploader may
read and create images (push). Every action of the guide's matrix needs exactly one of three
permissions, so the matrix is `GUIDE_ACTIONS` x `ROLE_PERMISSIONS`; the HTTP route table names
the permission (or repository action) each endpoint needs, and docs/access.md shows the table.

A role is bound to a user on one registry or on every registry ("*"). A system administrator
(the bootstrap `admin`) holds every permission everywhere and alone assigns roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Role(StrEnum):
    PROJECT_ADMIN = "project-admin"
    PROJECT_MEMBER = "project-member"
    SERVICE_ADMIN = "service-admin"
    SERVICE_VIEWER = "service-viewer"
    IMAGE_UPLOADER = "image-uploader"


class Permission(StrEnum):
    READ = "read"  # view anything, pull
    PUSH = "push"  # push images (create artifacts and tags by pushing)
    MANAGE = "manage"  # create, change, delete, run: everything else


EVERY_REGISTRY = "*"
_BY_VALUE = {r.value: r for r in Role}

_ALL = frozenset(Permission)
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.PROJECT_ADMIN: _ALL,
    Role.PROJECT_MEMBER: _ALL,
    Role.SERVICE_ADMIN: _ALL,
    Role.SERVICE_VIEWER: frozenset({Permission.READ}),
    Role.IMAGE_UPLOADER: frozenset({Permission.READ, Permission.PUSH}),
}

# The guide's matrix, row by row: the permission each action needs.
GUIDE_ACTIONS: Mapping[str, Permission] = {
    "view registries": Permission.READ,
    "create or delete registries": Permission.MANAGE,
    "view replication configs": Permission.READ,
    "create, change, delete or run replication": Permission.MANAGE,
    "view replication history": Permission.READ,
    "view images": Permission.READ,
    "pull images": Permission.READ,
    "push images": Permission.PUSH,
    "delete images": Permission.MANAGE,
    "view artifacts": Permission.READ,
    "delete artifacts": Permission.MANAGE,
    "view artifact tags": Permission.READ,
    "create or delete artifact tags": Permission.MANAGE,
    "view webhooks": Permission.READ,
    "create, change or delete webhooks": Permission.MANAGE,
    "view cleanup policies": Permission.READ,
    "view cleanup history": Permission.READ,
    "create, delete or run cleanup policies": Permission.MANAGE,
    "enable or disable cleanup rules": Permission.MANAGE,
    "view protection policies": Permission.READ,
    "add or delete protection policies": Permission.MANAGE,
}

# Docker token-auth repository actions -> the permission each needs.
REPOSITORY_ACTIONS: Mapping[str, Permission] = {
    "pull": Permission.READ,
    "push": Permission.PUSH,
    "delete": Permission.MANAGE,
}


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower().replace("_", "-").replace(" ", "-"))
    except ValueError:
        raise ValueError(f"unknown role {text[:40]!r}; roles are {', '.join(r.value for r in Role)}") from None


def permissions(roles: Mapping[str, str], registry: str, system_admin: bool = False) -> frozenset[Permission]:
    """What a user holding `roles` (registry or "*" -> role) may do on `registry`."""
    if system_admin:
        return _ALL
    held: set[Permission] = set()
    for where in (registry, EVERY_REGISTRY):
        role = roles.get(where)
        if role is not None:
            known = _BY_VALUE.get(role)
            if known is not None:
                held |= ROLE_PERMISSIONS[known]
    return frozenset(held)


def repository_actions(held: frozenset[Permission]) -> frozenset[str]:
    """The token actions `held` permissions allow; "*" when they allow every action."""
    actions = {action for action, needed in REPOSITORY_ACTIONS.items() if needed in held}
    if len(actions) == len(REPOSITORY_ACTIONS):
        actions.add("*")
    return frozenset(actions)


def can(role: Role, action: str) -> bool:
    """Whether `role` may perform one of the guide's actions (a row of `GUIDE_ACTIONS`)."""
    return GUIDE_ACTIONS[action] in ROLE_PERMISSIONS[role]


__all__ = [
    "EVERY_REGISTRY",
    "GUIDE_ACTIONS",
    "REPOSITORY_ACTIONS",
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "can",
    "parse_role",
    "permissions",
    "repository_actions",
]
