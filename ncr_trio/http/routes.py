"""The route table: every endpoint once, with the action it needs.

Authorization (a later layer) is derived from the `action` column, never repeated in handlers.
Order matters: the first pattern that matches a path wins, so upload routes come before blob routes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ncr_trio.http.asgi import Request, Response

Handler = Callable[[Request], Awaitable[Response]]

_NAME = r"(?P<name>.+?)"
_REF = r"(?P<reference>[^/]+)"


@dataclass(frozen=True)
class Route:
    name: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    action: str | None  # "pull" | "push" | "delete" | "catalog" | None (no repository)
    handler: Handler


def route(name: str, methods: str, path: str, action: str | None, handler: Handler) -> Route:
    return Route(name, frozenset(methods.split()), re.compile(f"^{path}$"), action, handler)


def match(routes: list[Route], path: str) -> tuple[list[Route], dict[str, str]]:
    """Routes whose pattern matches `path` (the first pattern's group), and its parameters."""
    for r in routes:
        m = r.pattern.match(path)
        if m is not None:
            return [x for x in routes if x.pattern.pattern == r.pattern.pattern], m.groupdict()
    return [], {}


__all__ = ["Handler", "Route", "_NAME", "_REF", "match", "route"]
