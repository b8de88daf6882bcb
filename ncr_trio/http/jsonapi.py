"""What every management API module shares: JSON answers, paginated lists, request bodies that
must be JSON objects, numeric IDs in paths, the registry path parameter, and audit records of the
changes a request made."""

from __future__ import annotations

import json
from typing import Any

from ncr_trio.auth.control import AccessControl
from ncr_trio.errors import RegistryError
from ncr_trio.http.asgi import Request, Response, json_response

REGISTRY = "(?P<registry>[^/]+)"


def ok(status: int, value: Any) -> Response:
    return json_response(status, json.dumps(value).encode())


def paged(request: Request, key: str, items: list[dict[str, Any]], total: int) -> Response:
    """A page of a list, as docs/api.md describes lists: the items, the total, the page asked for."""
    return ok(200, {key: items, "total": total, "page": request.query_int("page") or 1,
                    "per_page": request.query_int("per_page") or 50})


async def read_object(request: Request, *allowed: str) -> dict[str, Any]:
    """The body as a JSON object ({} when empty); with `allowed`, any other field is refused."""
    raw = await request.read(64 * 1024)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # the latter: arrays or objects nested thousands deep
        raise RegistryError("INVALID_REQUEST", "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise RegistryError("INVALID_REQUEST", "the body must be a JSON object")
    unknown = sorted(k for k in value if k not in allowed) if allowed else []
    if unknown:
        raise RegistryError("INVALID_REQUEST", f"unknown field(s) {', '.join(unknown)[:200]}: "
                            f"the fields are {', '.join(allowed)}")
    return value


def numeric_id(request: Request, param: str, unknown: str) -> int:
    """A path parameter that must be a row ID; anything else is NOT_FOUND with `unknown`."""
    text = request.params[param]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:  # "²".isdigit(), but int("²") fails
        raise RegistryError("NOT_FOUND", unknown)
    return int(text)


def audit(access: AccessControl, request: Request, action: str, **fields: str | None) -> None:
    """Record a change the request made, by whom and from where."""
    access.record(action, "ok", actor=request.principal.user, client=request.client, **fields)


__all__ = ["REGISTRY", "audit", "numeric_id", "ok", "paged", "read_object"]
