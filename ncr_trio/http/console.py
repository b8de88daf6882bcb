"""The web console: a static single-page app (ncr_trio/http/console/) served at `/console/`.

The shell needs no authentication: it holds no data. The browser logs in through `/auth/token`
and reads and changes everything through the management API (`/api/v1`), which enforces every
permission. The files are read once, at start; each answer carries a strict Content-Security-Policy
(no inline scripts or styles, no framing) and an ETag for revalidation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ncr_trio.errors import RegistryError
from ncr_trio.http.asgi import Request, Response
from ncr_trio.http.routes import Route, route

ASSETS = Path(__file__).resolve().parent / "console"
PREFIX = "/console/"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(root: Path = ASSETS) -> dict[str, Asset]:
    """Every servable file under `root`, by its path relative to it ("app.js", "views/keys.js")."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or content_type is None:
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path.relative_to(root).as_posix()] = Asset(body, content_type, etag)
    return assets


class Console:
    def __init__(self, root: Path = ASSETS) -> None:
        self.assets = load_assets(root)
        if "index.html" not in self.assets:
            raise RuntimeError(f"the console's files are missing from {root}")

    def routes(self) -> list[Route]:
        return [
            route("console.root", "GET HEAD", "/", None, self.redirect),
            route("console.redirect", "GET HEAD", "/console", None, self.redirect),
            route("console.file", "GET HEAD", "/console/(?P<file>[A-Za-z0-9_.\\-/]*)", None, self.file),
        ]

    async def redirect(self, request: Request) -> Response:
        return Response(302, {"Location": PREFIX, "Cache-Control": "no-cache", **SECURITY_HEADERS})

    async def file(self, request: Request) -> Response:
        name = request.params["file"] or "index.html"
        asset = self.assets.get(name)
        if asset is None:
            raise RegistryError("NOT_FOUND", f"no console file {name[:100]!r}")
        headers = {"Content-Type": asset.content_type, "ETag": asset.etag, "Cache-Control": "no-cache",
                   **SECURITY_HEADERS}
        matches = request.header("if-none-match")
        if matches is not None and asset.etag in (m.strip().removeprefix("W/") for m in matches.split(",")):
            return Response(304, {**headers, "Content-Length": str(len(asset.body))})
        return Response(200, headers, asset.body)


__all__ = ["Console", "SECURITY_HEADERS", "load_assets"]
