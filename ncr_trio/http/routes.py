"""The route table: every endpoint once, with the action it needs.

Authorization (http/auth.py) is derived from the `action` column, never repeated in handlers.
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
    # What the access gate requires (http/auth.py): None, "login", "catalog", "pull", "push",
    # "delete", or "api:<read|push|manage|user|admin>".
    action: str | None
    handler: Handler


def route(name: str, methods: str, path: str, action: str | None, handler: Handler) -> Route:
    return Route(name, frozenset(methods.split()), re.compile(f"^{path}$"), action, handler)


class RouteTable:
    """The routes grouped by path pattern, in declaration order: one regex match per pattern tried,
    and a pattern is only tried when the literal text it needs is in the path."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        groups: dict[str, list[Route]] = {}
        for r in routes:
            groups.setdefault(r.pattern.pattern, []).append(r)
        self._groups = [(_literal(p), rs[0].pattern, {m: r for r in rs for m in r.methods}) for p, rs in groups.items()]

    def match(self, path: str) -> tuple[dict[str, Route], dict[str, str]]:
        """The routes of the first pattern that matches `path`, by method, and its parameters."""
        for literal, pattern, by_method in self._groups:
            if literal in path and (m := pattern.match(path)) is not None:
                return by_method, m.groupdict()
        return {}, {}


def _literal(pattern: str) -> str:
    """The longest run of plain characters a path matching `pattern` must contain."""
    required = re.sub(r"\(\?P<\w+>[^)]*\)", "\0", pattern)  # groups: variable text
    required = re.sub(r".[?*]", "\0", required)  # an optional character is not required
    runs = re.split(r"[\0\\^$+.()\[\]]", required)
    return max(runs, key=len)


__all__ = ["Handler", "Route", "RouteTable", "_NAME", "_REF", "route"]
