"""Docker token-auth scopes: parse the `scope` parameters of a token request, format them back,
and cut a request down to what an account may do.

The grammar (Docker token spec, `docs/spec/auth/scope.md` in distribution/distribution)::

    scope          := resourcescope [ ' ' resourcescope ]*
    resourcescope  := resourcetype ":" resourcename ":" action [ ',' action ]*
    resourcetype   := resourcetypevalue [ '(' resourcetypevalue ')' ]   e.g. repository(plugin)
    resourcename   := [ hostname '/' ] component [ '/' component ]*
    hostname       := hostcomponent [ '.' hostcomponent ]* [ ':' port-number ]
    action         := /[a-z]*/          (and `*`, which Distribution uses for "every action")

A resource name may contain ':' (a registry host with a port: `localhost:5000/team/app`), so a
scope is split at its *first* and *last* ':' (as Distribution's token server does), and the
middle is then checked against the name grammar: `repository:localhost:5000/app:pull` is valid,
`repository:app:v1:pull` is not (a ':' outside a host's port).

Unknown action words are kept by the parser (the grammar allows any /[a-z]+/); `grant` drops
whatever the account is not allowed, so they never reach a token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIONS",
    "MANAGEMENT",
    "InvalidScope",
    "Scope",
    "access_entries",
    "format_scope",
    "grant",
    "is_management",
    "parse_scope",
    "parse_scopes",
]

# The actions the registry knows: Distribution's pull, push, delete and the wildcard.
ACTIONS = frozenset({"pull", "push", "delete", "*"})

# A single scope longer than this is refused before any regular expression sees it.
_MAX_SCOPE_CHARS = 1024

_TYPE_VALUE = r"[a-z0-9]+"
_TYPE_RE = re.compile(rf"(?P<type>{_TYPE_VALUE})(?:\((?P<cls>{_TYPE_VALUE})\))?")
# The spec's separator is `[_.]|__|[-]*`; `-+` is the same language without the empty
# alternative, which would make the repetition backtrack exponentially on a near miss.
_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOSTNAME = rf"{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*(?::[0-9]+)?"
_NAME_RE = re.compile(rf"(?:{_HOSTNAME}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_ACTION_RE = re.compile(r"[a-z]+|\*")


class InvalidScope(ValueError):
    """A scope that does not follow the Docker token spec's grammar."""

    def __init__(self, scope: str, reason: str) -> None:
        super().__init__(f"invalid scope {scope[:200]!r}: {reason}")
        self.scope = scope
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource and the actions asked for (or granted) on it.

    `resource_class` is the optional class of `repository(plugin):...` ("" when absent);
    Distribution carries it as the access entry's "class".
    """

    type: str
    name: str
    actions: frozenset[str]
    resource_class: str = ""

    @property
    def resource(self) -> tuple[str, str, str]:
        return (self.type, self.resource_class, self.name)


# Not a Docker scope: asked for alone, it makes the token endpoint issue a management API token (a
# token for another audience, which the registry API refuses, as the management API refuses theirs).
MANAGEMENT = Scope("management", "api", frozenset({"*"}))


def is_management(scope: Scope) -> bool:
    return scope.resource == MANAGEMENT.resource


def parse_scope(text: str) -> Scope:
    """Parse one `resourcetype:resourcename:action[,action]` scope."""
    if len(text) > _MAX_SCOPE_CHARS:
        raise InvalidScope(text, f"longer than {_MAX_SCOPE_CHARS} characters")
    first, last = text.find(":"), text.rfind(":")
    if first < 0 or first == last:
        raise InvalidScope(text, "expected resourcetype:resourcename:actions")
    type_text, name, actions_text = text[:first], text[first + 1 : last], text[last + 1 :]
    m = _TYPE_RE.fullmatch(type_text)
    if m is None:
        raise InvalidScope(text, "resource type must be lower-case letters and digits, optionally with a (class)")
    if not _NAME_RE.fullmatch(name):
        raise InvalidScope(text, "resource name does not follow the name grammar")
    actions = actions_text.split(",")
    for action in actions:
        if not _ACTION_RE.fullmatch(action):
            raise InvalidScope(text, f"action {action[:40]!r} is not a lower-case word or '*'")
    return Scope(m["type"], name, frozenset(actions), m["cls"] or "")


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """Parse every `scope` query parameter of a token request.

    Each value may hold several scopes separated by spaces; scopes naming the same resource
    (type, class and name) are merged into one, in the order they first appear.
    """
    merged: dict[tuple[str, str, str], Scope] = {}
    for value in values:
        for text in value.split(" "):
            if not text:
                continue
            scope = parse_scope(text)
            seen = merged.get(scope.resource)
            if seen is not None:
                scope = Scope(scope.type, scope.name, seen.actions | scope.actions, scope.resource_class)
            merged[scope.resource] = scope
    return list(merged.values())


def format_scope(scope: Scope) -> str:
    """The scope string of `scope`, actions sorted: `parse_scope(format_scope(s)) == s`."""
    type_text = f"{scope.type}({scope.resource_class})" if scope.resource_class else scope.type
    return f"{type_text}:{scope.name}:{','.join(sorted(scope.actions))}"


def grant(requested: Iterable[Scope], allowed_actions: Callable[[Scope], Set[str]]) -> list[Scope]:
    """What a token may carry: each requested scope cut down to the actions allowed on it.

    `allowed_actions(scope)` says which actions the account holds on that resource; "*" there
    means every action the request names. A requested "*" is granted only when "*" is allowed
    (it is not expanded into the actions the account happens to hold). Scopes left with no
    action are dropped: the token is still issued, with less access (Docker token spec).
    """
    granted = []
    for scope in requested:
        allowed = allowed_actions(scope)
        actions = scope.actions if "*" in allowed else scope.actions & allowed
        if actions:
            granted.append(Scope(scope.type, scope.name, frozenset(actions), scope.resource_class))
    return granted


def access_entries(scopes: Iterable[Scope]) -> list[dict[str, Any]]:
    """The token's "access" claim: `{"type", "name", "actions"}` per scope (plus "class" if any)."""
    entries: list[dict[str, Any]] = []
    for scope in scopes:
        entry: dict[str, Any] = {"type": scope.type, "name": scope.name, "actions": sorted(scope.actions)}
        if scope.resource_class:
            entry["class"] = scope.resource_class
        entries.append(entry)
    return entries
