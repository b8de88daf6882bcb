"""The OCI distribution-spec error codes, declared once, and the one error type handlers raise.

Every failure a client can cause is a `RegistryError` carrying one of the codes below; the HTTP
layer turns it into the spec's body, `{"errors": [{"code", "message", "detail"}]}`, in one place
(`http.responses.error_response`). Handlers never format error bodies themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    message: str


def _table(*codes: ErrorCode) -> dict[str, ErrorCode]:
    return {c.code: c for c in codes}


# distribution-spec v1.1 "Error Codes", plus the few CNCF Distribution adds (RANGE_INVALID, ...).
ERRORS = _table(
    ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry"),
    ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
    ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"),
    ErrorCode("DIGEST_INVALID", 400, "provided digest did not match uploaded content"),
    ErrorCode("MANIFEST_BLOB_UNKNOWN", 404, "manifest references a manifest or blob unknown to registry"),
    ErrorCode("MANIFEST_INVALID", 400, "manifest invalid"),
    ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
    ErrorCode("NAME_INVALID", 400, "invalid repository name"),
    ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry"),
    ErrorCode("SIZE_INVALID", 400, "provided length did not match content length"),
    ErrorCode("TAG_INVALID", 400, "manifest tag did not match URI"),
    ErrorCode("UNAUTHORIZED", 401, "authentication required"),
    ErrorCode("DENIED", 403, "requested access to the resource is denied"),
    ErrorCode("UNSUPPORTED", 405, "the operation is unsupported"),
    ErrorCode("TOOMANYREQUESTS", 429, "too many requests"),
    ErrorCode("RANGE_INVALID", 416, "invalid content range"),
    ErrorCode("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"),
    ErrorCode("UNAVAILABLE", 503, "service unavailable"),
    # The management API's own codes, in the same body format (INVALID_REQUEST also answers, on any
    # route, a query parameter that no value of it could be: anything but printable ASCII).
    ErrorCode("INVALID_REQUEST", 400, "invalid request"),
    ErrorCode("NOT_FOUND", 404, "not found"),
    ErrorCode("CONFLICT", 409, "the request conflicts with the current state"),
)


class RegistryError(Exception):
    """A client-visible failure: one spec error code, a message, optional detail and headers."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        spec = ERRORS[code]
        self.code = code
        self.message = message or spec.message
        self.detail = detail
        self.status = status or spec.status
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")

    def body(self) -> bytes:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()


__all__ = ["ERRORS", "ErrorCode", "RegistryError"]
