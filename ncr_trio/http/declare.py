"""How a management API operation is declared once (http/operations.py holds the declarations):
its name, method, path, permission, request body model, parameters, answer model and errors. The route
(http/routes.py), the body's decoding and validation, the OpenAPI document and the client's calls
are all derived from the declaration. A handler answers a model instance (or None for a body-less
answer), encoded with the declaration's status; it may answer a `Response` of its own.

Request bodies are msgspec Structs: decoding validates them (types, required fields, and, where the
model says so, unknown fields refused). A failure is an INVALID_REQUEST in the registry's error body,
never a 500; bodies are bounded (64 KiB) and so is their depth (a model has no untyped members, and
nesting past what Python's stack takes is refused too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from ncr_trio.errors import RegistryError

if TYPE_CHECKING:  # the server's side, loaded by the server only: the CLI reads the declarations alone
    from ncr_trio.http.asgi import Request, Response
    from ncr_trio.http.routes import Route

MAX_BODY = 64 * 1024
B = TypeVar("B", bound=msgspec.Struct)
F = TypeVar("F", bound=Callable[..., Any])

# Who may call an operation, as the document says it, and the action the access gate enforces for it.
PERMISSIONS: dict[str, tuple[str, str | None]] = {
    "public": ("anyone, logged in or not", None),
    "user": ("any logged-in user", "api:user"),
    "read": ("read on the registry (every role)", "api:read"),
    "manage": ("manage on the registry (project-admin, project-member, service-admin)", "api:manage"),
    "manage*": ("manage on every registry (`*`)", "api:manage"),
    "admin": ("system administrator", "api:admin"),
    "self": ("the user themself, or a system administrator", "api:user"),
}
# A path parameter matches one path segment, except an image's name, which may hold slashes.
_SEGMENT = {"image": ".+?"}


@dataclass(frozen=True)
class Operation:
    """One `/api/v1` operation. `ok` is (status, answer model or None for no body, description);
    `params` name http/operations.py's parameters; `errors` add to what every
    authenticated operation may answer (401, 403, 429) and what parameters and bodies bring."""

    name: str
    method: str
    path: str  # an OpenAPI path template: /api/v1/registries/{registry}
    permission: str
    summary: str
    ok: tuple[int, type[msgspec.Struct] | None, str]
    params: tuple[str, ...] = ()
    body: type[msgspec.Struct] | None = None
    body_required: bool = False
    errors: tuple[int, ...] = ()
    tag: str = ""
    wait: float | None = None  # how long a client waits for the answer, if longer than usual (seconds)

    @property
    def action(self) -> str | None:
        return PERMISSIONS[self.permission][1]

    @property
    def pattern(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{_SEGMENT.get(m[1], '[^/]+')})", self.path)

    def route(self, handler: Callable[[Request], Awaitable[Any]]) -> Route:
        """The route of the operation: `handler`'s answer encoded as the declaration says."""
        from ncr_trio.http.asgi import Response
        from ncr_trio.http.routes import route

        status, model, _ = self.ok

        async def answer(request: Request) -> Response:
            value = await handler(request)
            if isinstance(value, Response):
                return value
            if not (isinstance(value, model) if model else value is None):
                raise TypeError(f"{self.name} answered a {type(value).__name__}, not its declared {model}")
            return Response(status) if value is None else encoded(status, value)

        return route(self.name, self.method, self.pattern, self.action, answer)


def encoded(status: int, value: msgspec.Struct, headers: dict[str, str] | None = None) -> Response:
    """An answer's model as JSON."""
    from ncr_trio.http.asgi import json_response

    try:
        body = msgspec.json.encode(value)
    except UnicodeEncodeError:  # a lone surrogate in stored text: escaped, as JSON allows
        body = json.dumps(msgspec.to_builtins(value)).encode()
    return json_response(status, body, headers)


async def decode(request: Request, model: type[B]) -> B:
    """The request body as `model` (an empty body is `{}`)."""
    raw = await request.read(MAX_BODY)
    try:
        return msgspec.json.decode(raw if raw.strip() else b"{}", type=model)
    except msgspec.ValidationError as e:
        raise RegistryError("INVALID_REQUEST", str(e)[:300]) from None
    except (msgspec.DecodeError, RecursionError):  # the latter: arrays or objects nested thousands deep
        raise RegistryError("INVALID_REQUEST", "the body is not valid JSON") from None


def given(body: msgspec.Struct) -> dict[str, Any]:
    """The members a body holds (those left out, `msgspec.UNSET`, are not there)."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}


def handles(name: str) -> Callable[[F], F]:
    """Marks a method as the handler of the operation called `name` (see `bind`)."""

    def mark(fn: F) -> F:
        fn.__dict__["operation"] = name
        return fn

    return mark


def bind(api: object, operations: list[Operation]) -> list[Route]:
    """The routes of the operations `api` handles, in the declarations' order (the first pattern
    that matches wins: more specific paths are declared first)."""
    handlers = {fn.__dict__["operation"]: getattr(api, attr) for attr, fn in vars(type(api)).items()
                if "operation" in getattr(fn, "__dict__", ())}
    return [op.route(handlers[op.name]) for op in operations if op.name in handlers]


__all__ = ["MAX_BODY", "PERMISSIONS", "Operation", "bind", "decode", "encoded", "given", "handles"]
