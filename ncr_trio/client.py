"""A client of the management API (`/api/v1`, docs/api.md), over the operations' declarations
(ncr_trio/http/operations.py), on the standard library's urllib. There is no method per operation:

    api.call("api.images", registry="team", q="web")         # an ImagePage (http/models.py)
    api.doc("api.registry.create", {"name": "team"})          # the same answer as plain data
    api.pages("api.tags", "tags", registry="team", image="app")  # every page of a listing

`call(name, body, **params)` makes any declared operation's request: the path from its template,
the other parameters as its query, and answers decoded and checked by the operation's answer model,
so an answer the document does not describe is an error here too; it waits as long as the
declaration says the operation may take. `doc` answers the JSON document as plain data, so callers
(the CLI) can print exactly what the server said. Credentials: a user's name and password, or an
access key's ID and secret, sent as Basic auth over the connection the URL names (HTTPS with
`cacert` to trust a private CA). An error answer raises `APIError` with the code and message of its
body; an unreachable server raises `OSError` (urllib's `URLError`).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote, urlencode

import msgspec

from ncr_trio import __version__
from ncr_trio.http.operations import OPERATIONS

PER_PAGE_MAX = 500
Doc = dict[str, Any]
_BY_NAME = {op.name: op for op in OPERATIONS}
# How a path parameter is quoted: an image's name keeps its slashes, a role's registry its `*`.
_SAFE = {"image": "/", "on": "*"}


class APIError(Exception):
    """An error answer: `code` and `message` from the registry error body, `status` the HTTP status."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message, self.detail = status, code, message, detail


@dataclass
class Client:
    url: str
    username: str
    password: str = field(repr=False)
    cacert: str | None = None
    timeout: float = 60.0

    def call(self, name: str, body: Doc | msgspec.Struct | None = None, *, timeout: float | None = None,
             **params: Any) -> Any:
        """The declared operation `name` (`api.images`): path parameters by name, the others as the
        query (None and False: left out); the answer as its model (None for a 204)."""
        op = _BY_NAME[name]
        in_path = set(re.findall(r"\{(\w+)\}", op.path))
        path = re.sub(r"\{(\w+)\}", lambda m: quote(str(params[m[1]]), safe=_SAFE.get(m[1], ":")), op.path)
        query = {k: "true" if v is True else v for k, v in params.items() if k not in in_path and v is not False}
        data = cast(Doc, msgspec.to_builtins(body)) if isinstance(body, msgspec.Struct) else body
        raw = self._send(op.method, path.removeprefix("/api/v1"), data, query, timeout or op.wait)
        model = op.ok[1]
        if model is None:
            return None
        try:
            return msgspec.json.decode(raw, type=model)
        except msgspec.DecodeError as e:
            raise APIError(200, "BAD_RESPONSE", f"{name}: an answer the API does not declare: {e}") from None

    def doc(self, name: str, body: Doc | None = None, *, timeout: float | None = None, **params: Any) -> Doc:
        """`call`, answering plain data (the JSON document as the server sent it)."""
        return cast(Doc, msgspec.to_builtins(self.call(name, body, timeout=timeout, **params)))

    def _send(self, method: str, path: str, body: Doc | None, query: dict[str, Any] | None,
              timeout: float | None) -> bytes:
        url = self.url.rstrip("/") + "/api/v1" + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", f"ncr-trio-cli/{__version__}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        context = ssl.create_default_context(cafile=self.cacert) if self.cacert else None
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=context) as resp:
                raw: bytes = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)["errors"][0]
                code, message, detail = str(err.get("code", "ERROR")), str(err.get("message", "")), err.get("detail")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                code, message, detail = "HTTP_ERROR", raw[:200].decode("utf-8", "replace").strip() or e.reason, None
            raise APIError(e.code, code, message, detail) from None
        return raw

    def pages(self, name: str, key: str, *, per_page: int = PER_PAGE_MAX, **params: Any) -> Iterator[Doc]:
        """Every page of the paginated listing `name`, first to last, as plain data; `key` names the
        list in each page (`images`, `tags`...)."""
        page, fetched = 1, 0
        while True:
            answer = self.doc(name, page=page, per_page=per_page, **params)
            yield answer
            got = len(answer.get(key) or [])
            fetched += got
            if not got or fetched >= answer["total"]:
                return
            page += 1


__all__ = ["PER_PAGE_MAX", "APIError", "Client"]
