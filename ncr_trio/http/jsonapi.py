"""What every management API module shares: paginated lists, numeric IDs in paths, and audit
records of the changes a request made (request bodies and answers: http/declare.py)."""

from __future__ import annotations

from typing import Any, TypeVar

from ncr_trio.auth.control import AccessControl
from ncr_trio.errors import RegistryError
from ncr_trio.http.asgi import Request
from ncr_trio.http.models import Paged

P = TypeVar("P", bound=Paged)


def paged(request: Request, model: type[P], total: int, **items: Any) -> P:
    """A page of a list, as docs/api.md describes lists: the items, the total, the page asked for."""
    return model(total=total, page=request.query_int("page") or 1, per_page=request.query_int("per_page") or 50,
                 **items)


def numeric_id(request: Request, param: str, unknown: str) -> int:
    """A path parameter that must be a row ID; anything else is NOT_FOUND with `unknown`."""
    text = request.params[param]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:  # "²".isdigit(), but int("²") fails
        raise RegistryError("NOT_FOUND", unknown)
    return int(text)


def audit(access: AccessControl, request: Request, action: str, **fields: str | None) -> None:
    """Record a change the request made, by whom and from where."""
    access.record(action, "ok", actor=request.principal.user, client=request.client, **fields)


__all__ = ["audit", "numeric_id", "paged"]
