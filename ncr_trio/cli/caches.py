"""Image caches through the management API (system administrators; docs/cache.md):

    ncr-trio cache list|show|create|update|delete|test ...
    ncr-trio registry create NAME --cache CACHE      (a cache-type registry: commands.py)

The access secret is write-only: it is read from stdin (all of it: a JSON key spans lines), a file or
an environment variable, never from the command line (shell history), sent once, and never printed
(answers only say whether one is set).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ncr_trio.cache.sources import SOURCE_TYPES
from ncr_trio.cli.commands import Ctx, add_group, add_leaf, done, show_fields, show_listing
from ncr_trio.cli.output import UsageError, col, text, when


def _set(value: Any) -> str:
    return "set" if value else "not set"


def _secret(ctx: Ctx) -> str | None:
    """The access secret given (None: not given; "" with --clear-secret)."""
    a = ctx.args
    if a.access_secret_stdin:
        if getattr(a, "password_stdin", False):
            raise UsageError("--access-secret-stdin and --password-stdin cannot both read stdin")
        value = sys.stdin.read().rstrip("\r\n")
        if not value:
            raise UsageError("--access-secret-stdin: nothing on stdin")
        return value
    if a.access_secret_file:
        try:
            return Path(a.access_secret_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--access-secret-file {a.access_secret_file}: {e}") from None
    if a.access_secret_env:
        env = os.environ.get(a.access_secret_env)
        if env is None:
            raise UsageError(f"--access-secret-env: ${a.access_secret_env} is not set")
        return env
    return "" if getattr(a, "clear_secret", False) else None


def _fields(c: Any) -> list[tuple[str, str]]:
    return [("name", c["name"]), ("type", c["type"]), ("url", c["url"]),
            ("access ID", c.get("access_id") or "- (anonymous)"), ("access secret", _set(c.get("has_secret"))),
            ("endpoint", c.get("endpoint") or "-"), ("description", c.get("description") or "-"),
            ("registries", text(c.get("registries")) or "-"), ("created", when(c.get("created_at"))),
            ("updated", when(c.get("updated_at")))]


def _settings(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    out = {k: v for k, v in (("access_id", a.access_id), ("endpoint", a.endpoint), ("description", a.description))
           if v is not None}
    secret = _secret(ctx)
    if secret is not None:
        out["access_secret"] = secret
    return out


def cmd_cache_list(ctx: Ctx) -> int:
    return show_listing(ctx, ctx.api.doc("api.caches"), "caches", [
        col("NAME", "name", no_wrap=True), col("TYPE", "type"), col("URL", "url"), col("ACCESS_ID", "access_id"),
        col("SECRET", "has_secret", _set), col("REGISTRIES", "registries"), col("CREATED", "created_at", when),
    ], "image caches")


def cmd_cache_show(ctx: Ctx) -> int:
    c = ctx.api.doc("api.cache", cache=ctx.args.name)
    return show_fields(ctx, c, _fields(c))


def cmd_cache_create(ctx: Ctx) -> int:
    a = ctx.args
    c = ctx.api.doc("api.cache.create", {"name": a.name, "type": a.type, "url": a.source_url, **_settings(ctx)})
    return show_fields(ctx, c, _fields(c))


def cmd_cache_update(ctx: Ctx) -> int:
    a = ctx.args
    changes = _settings(ctx)
    changes.update({k: v for k, v in (("type", a.type), ("url", a.source_url)) if v is not None})
    if not changes:
        raise UsageError("nothing to change: give --type, --source-url, --access-id, a new access secret "
                         "(--access-secret-stdin, --access-secret-file, --access-secret-env), --clear-secret, "
                         "--endpoint or --description")
    c = ctx.api.doc("api.cache.update", changes, cache=a.name)
    return show_fields(ctx, c, _fields(c))


def cmd_cache_delete(ctx: Ctx) -> int:
    ctx.confirm(f"delete image cache {ctx.args.name}", " (refused while a registry pulls through it)")
    ctx.api.call("api.cache.delete", cache=ctx.args.name)
    return done(ctx, None, f"Deleted image cache {ctx.args.name}")


def cmd_cache_test(ctx: Ctx) -> int:
    """Exit status 1 when the source could not be reached with the cache's credentials."""
    with ctx.out.spinner(f"Testing image cache {ctx.args.name}"):
        r = ctx.api.doc("api.cache.test", {}, cache=ctx.args.name)
    done(ctx, r, f"Image cache {ctx.args.name}: {'ok' if r['ok'] else 'failed'}: {r['detail']}")
    return 0 if r["ok"] else 1


def _options(sp: Any, creating: bool) -> None:
    if not creating:
        sp.add_argument("--type", choices=list(SOURCE_TYPES), help="a new source type")
        sp.add_argument("--source-url", metavar="URL", help="a new source URL (--url is the server's)")
    sp.add_argument("--access-id", help="user name or access key ID at the source (`_json_key` for GCR)")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--access-secret-stdin", action="store_true", help="read the access secret from stdin (all of it)")
    g.add_argument("--access-secret-file", metavar="PATH", help="read the access secret from a file (a JSON key)")
    g.add_argument("--access-secret-env", metavar="VAR", help="take the access secret from environment variable VAR")
    if not creating:
        g.add_argument("--clear-secret", action="store_true", help="remove the access secret")
    sp.add_argument("--endpoint", metavar="URL", help="ECR only: the API endpoint of GetAuthorizationToken")
    sp.add_argument("--description")
    sp.epilog = "The access secret is never printed, nor shown again by the server."


def add_commands(sub: Any) -> None:
    """`cache`, on the top-level subparsers `sub`."""
    cache = add_group(sub, "cache", "image caches (system administrators): the source registries that cache-type "
                                    "registries pull through")
    add_leaf(cache, "list", "every image cache (never its secret)", cmd_cache_list)
    add_leaf(cache, "show", "one image cache", cmd_cache_show, aliases=("get",)).add_argument("name")
    sp = add_leaf(cache, "create", "add an image cache", cmd_cache_create)
    sp.add_argument("name", help="lower-case letters and digits, separated by . _ __ or -")
    sp.add_argument("type", choices=list(SOURCE_TYPES), metavar="TYPE", help=", ".join(SOURCE_TYPES))
    sp.add_argument("source_url", metavar="URL", help="the source registry: http(s)://host[:port] (port 80 or 443)")
    _options(sp, creating=True)
    sp = add_leaf(cache, "update", "change an image cache", cmd_cache_update)
    sp.add_argument("name")
    _options(sp, creating=False)
    add_leaf(cache, "delete", "delete an image cache no registry pulls through", cmd_cache_delete,
             destructive=True).add_argument("name")
    add_leaf(cache, "test", "test the connection to the source with the cache's credentials (exit 1 if it fails)",
             cmd_cache_test).add_argument("name")


__all__ = ["add_commands"]
