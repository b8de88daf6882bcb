"""The commands that talk to a running server's management API (docs/api.md), one handler per verb.

Handlers get a `Ctx` (the parsed arguments, the output, the connection and its API client), call
the client and show the answer: a table or fields for people, the API's JSON with `-o json`.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import http.client
import os
import ssl
import sys
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ncr_trio.cli import credentials
from ncr_trio.cli.local import GC_HELP, add_local_gc_options
from ncr_trio.cli.output import (
    Aborted,
    Column,
    Output,
    UsageError,
    col,
    kind,
    platforms,
    scan_column,
    signed_column,
    size,
    text,
    when,
)
from ncr_trio.client import PER_PAGE_MAX, APIError, Client

Handler = Callable[["Ctx"], int]


class NotLoggedIn(Exception):
    pass


@dataclass
class Ctx:
    args: argparse.Namespace
    out: Output
    conn: credentials.Connection

    @cached_property
    def api(self) -> Client:
        if not self.conn.username:
            raise NotLoggedIn(f"not logged in to {self.conn.url}: run `ncr-trio login {self.conn.url}`, "
                              "or set NCR_USERNAME and NCR_PASSWORD")
        return Client(self.conn.url, self.conn.username, self.conn.secret, self.conn.cacert)

    @property
    def yes(self) -> bool:
        return bool(getattr(self.args, "yes", False))

    def confirm(self, action: str, detail: str = "") -> None:
        self.out.confirm(action, self.yes, detail)


# -- options every API command takes (before or after the verb) ------------------------------------


def client_options() -> argparse.ArgumentParser:
    """Defaults are suppressed so an option given before the verb is not reset after it."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("connection and output")
    g.add_argument("--url", help="the server (default: $NCR_URL, then the stored login, then http://127.0.0.1:5000)")
    g.add_argument("--username", "-u", help="user name or access key ID (default: $NCR_USERNAME, then the login)")
    g.add_argument("--password-stdin", action="store_true",
                   help="read the password or secret from stdin's first line (default: $NCR_PASSWORD, then the login)")
    g.add_argument("--cacert", help="PEM CA certificate to trust for HTTPS (default: $NCR_CACERT, then the login)")
    g.add_argument("--output", "-o", choices=["table", "json"],
                   help="table (for people, the default) or json (the API's answer, for scripts)")
    return p


CLIENT_OPTIONS = client_options()


def read_stdin_secret() -> str:
    line = sys.stdin.readline()
    if not line:
        raise UsageError("--password-stdin: nothing on stdin")
    return line.rstrip("\r\n")


def connection(args: argparse.Namespace, stored: credentials.Stored, login: bool = False) -> credentials.Connection:
    """For `login`: the URL may be its argument, and the stored credentials are not used."""
    secret = read_stdin_secret() if getattr(args, "password_stdin", False) else None
    url = getattr(args, "url", None)
    if login:
        url = getattr(args, "server", None) or url
        stored = credentials.Stored(url=stored.url, cacert=stored.cacert)
    return credentials.resolve(url, getattr(args, "username", None), secret, getattr(args, "cacert", None),
                               os.environ, stored)


# -- references: REGISTRY/IMAGE[:TAG|@DIGEST] --------------------------------------------------------


@dataclass
class Ref:
    registry: str
    image: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.image}"

    def __str__(self) -> str:
        return self.repository + (f"@{self.digest}" if self.digest else f":{self.tag}" if self.tag else "")


def parse_ref(value: str, url: str, *, want: str = "") -> Ref:
    """`want`: "" (REGISTRY/IMAGE), "digest" (`@DIGEST` required), "tag" (`:TAG` required),
    "artifact" (`@DIGEST` or `:TAG`). A leading `host:port/` (this server's, as docker names it) is dropped."""
    rest, digest, tag = value.strip(), None, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if ":" not in digest:
            raise UsageError(f"{value}: a digest is ALGORITHM:HEX (sha256:...)")
    parts = rest.split("/")
    host = urlsplit(url).netloc
    if len(parts) > 2 and (":" in parts[0] or parts[0] in (host, urlsplit(url).hostname, "localhost")):
        parts = parts[1:]
    if ":" in parts[-1]:
        parts[-1], tag = parts[-1].split(":", 1)
    if len(parts) < 2 or not all(parts):
        raise UsageError(f"{value}: expected REGISTRY/IMAGE" + {"digest": "@DIGEST", "tag": ":TAG",
                                                                 "artifact": "@DIGEST (or :TAG)"}.get(want, ""))
    ref = Ref(parts[0], "/".join(parts[1:]), tag or None, digest)
    if want == "" and (ref.tag or ref.digest):
        raise UsageError(f"{value}: expected REGISTRY/IMAGE, without a tag or digest")
    if want == "digest" and not ref.digest:
        raise UsageError(f"{value}: expected REGISTRY/IMAGE@DIGEST")
    if want == "tag" and (not ref.tag or ref.digest):
        raise UsageError(f"{value}: expected REGISTRY/IMAGE:TAG")
    if want == "artifact" and not (ref.digest or ref.tag):
        raise UsageError(f"{value}: expected REGISTRY/IMAGE@DIGEST or REGISTRY/IMAGE:TAG")
    return ref


def resolve_digest(ctx: Ctx, ref: Ref) -> str:
    """The digest `ref` names (by digest, or the artifact its tag points at)."""
    if ref.digest:
        return ref.digest
    assert ref.tag is not None
    for tag in ctx.api.doc("api.tags", registry=ref.registry, image=ref.image, glob=ref.tag,
                           per_page=PER_PAGE_MAX)["tags"]:
        if tag["name"] == ref.tag:
            return str(tag["digest"])
    raise APIError(404, "TAG_UNKNOWN", f"no tag {ref.tag} in {ref.repository}")


# -- paging ---------------------------------------------------------------------------------------------


def paging_options(sp: argparse.ArgumentParser) -> None:
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--page", type=int, help="page number, from 1")
    g.add_argument("--all", action="store_true",
                   help="every page (-o json: one document with every item, `total`, page 1)")
    sp.add_argument("--per-page", type=int, help=f"items per page (1 to {PER_PAGE_MAX}; server default 50)")


def listing(ctx: Ctx, name: str, key: str, noun: str, **params: Any) -> dict[str, Any]:
    """One page of the listing operation `name` (`--page`, `--per-page`), or every page merged (`--all`)."""
    a = ctx.args
    if a.per_page is not None and not 1 <= a.per_page <= PER_PAGE_MAX:
        raise UsageError(f"--per-page must be 1 to {PER_PAGE_MAX}")
    if a.page is not None and a.page < 1:
        raise UsageError("--page starts at 1")
    if not a.all:
        return ctx.api.doc(name, page=a.page, per_page=a.per_page, **params)
    items: list[Any] = []
    total = 0
    with ctx.out.progress(f"Listing {noun}") as advance:
        for page in ctx.api.pages(name, key, per_page=a.per_page or PER_PAGE_MAX, **params):
            items.extend(page[key])
            total = page["total"]
            advance(len(page[key]), total=total)
    return {key: items, "total": max(total, len(items)), "page": 1, "per_page": len(items)}


def show_listing(ctx: Ctx, doc: dict[str, Any], key: str, columns: list[Column], noun: str) -> int:
    if ctx.out.as_json:
        ctx.out.document(doc)
        return 0
    rows = doc.get(key) or []
    if not rows:
        ctx.out.note(f"no {noun}" + ("" if doc.get("page", 1) in (1, None) else f" on page {doc.get('page')}"))
        return 0
    ctx.out.table(rows, columns)
    total, page, per_page = doc.get("total"), doc.get("page"), doc.get("per_page")
    if isinstance(total, int) and isinstance(page, int) and isinstance(per_page, int) and per_page:
        pages = max(1, -(-total // per_page))
        if pages > 1 and not ctx.args.all:
            ctx.out.note(f"page {page} of {pages} ({total} {noun}): --page N for another, --all for every one")
    return 0


def show_fields(ctx: Ctx, doc: Any, pairs: list[tuple[str, str]]) -> int:
    if ctx.out.as_json:
        ctx.out.document(doc)
    else:
        ctx.out.fields(pairs)
    return 0


def done(ctx: Ctx, doc: Any, message: str) -> int:
    """A change made: the API's answer (json), or one line saying what happened."""
    if ctx.out.as_json:
        ctx.out.document(doc)
    else:
        ctx.out.line(message)
    return 0


def set_enabled(ctx: Ctx, operation: str, what: str, enabled: bool, **ids: Any) -> int:
    """Turn a registry's named, numbered item (a webhook, a replication policy) on or off."""
    item = ctx.api.doc(operation, {"enabled": enabled}, **ids)
    return done(ctx, item, f"{'Enabled' if enabled else 'Disabled'} {what} {item['name']} (#{item['id']}) "
                           f"of registry {item['registry']}")


def delete_item(ctx: Ctx, operation: str, what: str, given: str, consequence: str, **ids: Any) -> int:
    """Delete a registry's item named `given` (a name, or its number) after the confirmation; `ids` are
    the operation's path parameters, `registry` among them."""
    name, registry = given if not given.isdigit() else f"#{given}", ids["registry"]
    ctx.confirm(f"delete {what} {name} of registry {registry}", consequence)
    ctx.api.call(operation, **ids)
    return done(ctx, None, f"Deleted {what} {name} of registry {registry}")


# -- login, logout, whoami ------------------------------------------------------------------------------


def cmd_login(ctx: Ctx) -> int:
    """Check the credentials (whoami), then store them; nothing is written when they are refused."""
    conn, path = ctx.conn, credentials.config_path()
    interactive = sys.stdin.isatty()
    username = conn.username
    if not username and interactive:
        username = input("Username (access key ID or user): ").strip()
    if not username:
        raise UsageError("login needs --username (an access key ID or a user name) or NCR_USERNAME")
    secret = conn.secret
    if not secret and interactive and not getattr(ctx.args, "password_stdin", False):
        secret = getpass.getpass("Secret (or password): ")
    if not secret:
        raise UsageError("login needs the secret on stdin (--password-stdin) or in NCR_PASSWORD")
    cacert = conn.cacert
    if cacert:
        if not Path(cacert).is_file():
            raise UsageError(f"--cacert {cacert}: no such file")
        cacert = str(Path(cacert).resolve())
    me = Client(conn.url, username, secret, cacert).doc("api.whoami")
    credentials.write(path, credentials.Stored(url=conn.url, username=username, secret=secret, cacert=cacert))
    if ctx.out.as_json:
        ctx.out.document(me)
        return 0
    how = f"access key {me['key_id']}" if me.get("key_id") else "password"
    ctx.out.line(f"Logged in to {conn.url} as {me['user']} ({how}); credentials stored in {path}")
    if not me.get("key_id"):
        ctx.out.note("note: a user's password is stored; an access key (`ncr-trio key create`) can be revoked "
                     "on its own")
    return 0


def cmd_logout(ctx: Ctx) -> int:
    path = credentials.config_path()
    stored = credentials.read(path)
    if stored.username is None and stored.secret is None:
        ctx.out.note(f"not logged in ({path} holds no credentials)")
        return 0
    credentials.write(path, credentials.Stored(url=stored.url, cacert=stored.cacert))
    ctx.out.line(f"Removed the credentials for {stored.url or 'the server'} from {path}")
    return 0


def cmd_whoami(ctx: Ctx) -> int:
    me = ctx.api.doc("api.whoami")
    roles = ", ".join(f"{r}: {role}" for r, role in sorted(me.get("roles", {}).items())) or "-"
    via = {"login": f"login in {credentials.config_path()}", "--username": "--username",
           "NCR_USERNAME": "NCR_USERNAME"}.get(ctx.conn.username_from, ctx.conn.username_from)
    return show_fields(ctx, me, [("user", me["user"]), ("system admin", text(me["system_admin"])),
                                 ("access key", me.get("key_id") or "- (password)"), ("roles", roles),
                                 ("server", ctx.conn.url), ("credentials", via)])


# -- registries and members ---------------------------------------------------------------------------


def _registry_settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.description is not None:
        out["description"] = args.description
    for flag in ("public_read", "public_uri"):
        value = getattr(args, flag)
        if value is not None:
            out[flag] = value == "on"
    if args.clear_cidrs and args.allow_cidr:
        raise UsageError("--clear-cidrs and --allow-cidr contradict each other")
    if args.clear_cidrs:
        out["allowed_cidrs"] = []
    elif args.allow_cidr:
        out["allowed_cidrs"] = args.allow_cidr
    return out


def _registry_type(r: Any) -> str:
    return f"image cache ({r['cache']})" if r.get("cache") else "normal"


def _registry_fields(r: Any) -> list[tuple[str, str]]:
    pairs = [("name", r["name"]), ("type", _registry_type(r)), ("description", r.get("description") or "-"),
             ("public read", text(r.get("public_read"))), ("public URI", text(r.get("public_uri"))),
             ("allowed CIDRs", text(r.get("allowed_cidrs")) or "any")]
    if "images" in r:
        pairs.append(("images", text(r["images"])))
    return pairs + [("created", when(r.get("created_at"))), ("updated", when(r.get("updated_at")))]


def cmd_registry_create(ctx: Ctx) -> int:
    cache = {"cache": ctx.args.cache} if ctx.args.cache else {}
    r = ctx.api.doc("api.registry.create", {"name": ctx.args.name, **_registry_settings(ctx.args), **cache})
    return show_fields(ctx, r, _registry_fields(r))


def _scan_changes(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.scan_on_push is not None:
        out["scan_on_push"] = args.scan_on_push
    if args.prevent_pull_severity is not None:
        level = args.prevent_pull_severity
        out["prevent_pull_severity"] = None if level.lower() == "none" else level
    return out


def _scan_fields(s: Any) -> list[tuple[str, str]]:
    own = s.get("allowlist")
    return [("scan on push", text(s.get("scan_on_push"))),
            ("prevent pull", f"{s['prevent_pull_severity']} or higher" if s.get("prevent_pull_severity") else "never"),
            ("allowlist", "- (the global one)" if own is None else text(own) or "(its own, empty)")]


def _trust_changes(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k in ("require_signature", "require_verified_signature")
            if (v := getattr(args, k, None)) is not None}


def _trust_fields(t: Any) -> list[tuple[str, str]]:
    return [("require signature", text(t.get("require_signature"))),
            ("require verified signature", text(t.get("require_verified_signature")))]


def cmd_registry_update(ctx: Ctx) -> int:
    """The registry's settings, its scan settings (api.registry.scan.update) and its signature
    requirements (api.registry.trust.update): one operation each. With one, -o json prints its answer;
    with several, the registry (or {"registry": name}) with the others as `scan` and `trust`."""
    settings, scan, trust = _registry_settings(ctx.args), _scan_changes(ctx.args), _trust_changes(ctx.args)
    if not settings and not scan and not trust:
        raise UsageError("nothing to change: give --description, --public-read, --public-uri, --allow-cidr, "
                         "--clear-cidrs, --scan-on-push, --no-scan-on-push, --prevent-pull-severity, "
                         "--[no-]require-signature or --[no-]require-verified-signature")
    name = ctx.args.name
    r = ctx.api.doc("api.registry.update", settings, registry=name) if settings else None
    s = ctx.api.doc("api.registry.scan.update", scan, registry=name) if scan else None
    t = ctx.api.doc("api.registry.trust.update", trust, registry=name) if trust else None
    answers = [x for x in (r, s, t) if x is not None]
    pairs = _registry_fields(r) if r is not None else [("registry", name)]
    pairs += (_scan_fields(s) if s is not None else []) + (_trust_fields(t) if t is not None else [])
    if len(answers) == 1:
        return show_fields(ctx, answers[0], pairs)
    doc = {**(r if r is not None else {"registry": name}), **({"scan": s} if s is not None else {}),
           **({"trust": t} if t is not None else {})}
    return show_fields(ctx, doc, pairs)


def cmd_registry_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.registries")
    return show_listing(ctx, doc, "registries", [
        col("NAME", "name", no_wrap=True), col("PUBLIC_READ", "public_read"), col("PUBLIC_URI", "public_uri"),
        Column("TYPE", _registry_type),
        col("ALLOWED_CIDRS", "allowed_cidrs"), col("CREATED", "created_at", when), col("DESCRIPTION", "description"),
    ], "registries")


def cmd_registry_show(ctx: Ctx) -> int:
    r = ctx.api.doc("api.registry", registry=ctx.args.name)
    return show_fields(ctx, r, _registry_fields(r))


def cmd_registry_delete(ctx: Ctx) -> int:
    name, force = ctx.args.name, ctx.args.force
    detail = ""
    if force and not ctx.yes and sys.stdin.isatty():
        images = ctx.api.doc("api.registry", registry=name).get("images", 0)
        detail = f" and its {images} images" if images else ""
    ctx.confirm(f"delete registry {name}", detail)
    with ctx.out.spinner(f"Deleting registry {name}"):
        r = ctx.api.doc("api.registry.delete", registry=name, force=force)
    extra = f" and {r['images_deleted']} images" if r.get("images_deleted") else ""
    return done(ctx, r, f"Deleted registry {r['deleted']}{extra}")


def cmd_member_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.members", registry=ctx.args.registry)
    return show_listing(ctx, doc, "members",
                        [col("USER", "user", no_wrap=True), col("ROLE", "role")], "members")


# -- images, artifacts, tags ------------------------------------------------------------------------------


IMAGE_COLUMNS = [col("NAME", "name", no_wrap=True), col("ARTIFACTS", "artifacts", justify="right"),
                 col("TAGS", "tags", justify="right"), col("SIZE", "size", size, justify="right"),
                 col("PUSHED", "pushed_at", when), col("PULLED", "pulled_at", when)]


def cmd_image_list(ctx: Ctx) -> int:
    doc = listing(ctx, "api.images", "images", "images", registry=ctx.args.registry, q=ctx.args.query)
    return show_listing(ctx, doc, "images", IMAGE_COLUMNS, "images")


def cmd_image_show(ctx: Ctx) -> int:
    ref = parse_ref(ctx.args.image, ctx.conn.url)
    i = ctx.api.doc("api.image", registry=ref.registry, image=ref.image)
    return show_fields(ctx, i, [("name", i["name"]), ("repository", i["repository"]),
                                ("artifacts", text(i["artifacts"])), ("tags", text(i["tags"])),
                                ("size", size(i["size"])), ("pushed", when(i.get("pushed_at"))),
                                ("pulled", when(i.get("pulled_at")))])


def cmd_image_delete(ctx: Ctx) -> int:
    ref = parse_ref(ctx.args.image, ctx.conn.url)
    detail = " with all its artifacts and tags"
    if not ctx.yes and sys.stdin.isatty():
        i = ctx.api.doc("api.image", registry=ref.registry, image=ref.image)
        detail = f" with its {i['artifacts']} artifacts and {i['tags']} tags"
    ctx.confirm(f"delete image {ref.repository}", detail)
    with ctx.out.spinner(f"Deleting {ref.repository}"):
        r = ctx.api.doc("api.image.delete", registry=ref.registry, image=ref.image)
    return done(ctx, r, f"Deleted {r['deleted']} ({r['artifacts_deleted']} artifacts)")


ARTIFACT_COLUMNS = [col("DIGEST", "digest", no_wrap=True), Column("TYPE", kind), col("TAGS", "tags"),
                    col("SIZE", "size", size, justify="right"), col("PLATFORMS", "platforms", platforms),
                    col("PUSHED", "pushed_at", when), col("PULLED", "pulled_at", when),
                    Column("SIGNED", signed_column), Column("VULNERABILITIES", scan_column)]


def cmd_artifact_list(ctx: Ctx) -> int:
    ref = parse_ref(ctx.args.image, ctx.conn.url)
    doc = listing(ctx, "api.artifacts", "artifacts", "artifacts", registry=ref.registry, image=ref.image)
    return show_listing(ctx, doc, "artifacts", ARTIFACT_COLUMNS, "artifacts")


SIGNATURE_COLUMNS = [col("LAYOUT", "layout"), col("MANIFEST", "manifest", no_wrap=True),
                     col("LAYER", "index", justify="right"), col("VERDICT", "verdict"),
                     Column("KEYS", lambda s: ", ".join(s.get("key_names") or s.get("keys") or []) or "-"),
                     Column("REASON", lambda s: s.get("reason") or "-")]
ACCESSORY_COLUMNS = [col("TYPE", "type"), col("DIGEST", "digest", no_wrap=True),
                     Column("TAG", lambda x: x.get("tag") or "-"), Column("ARTIFACT_TYPE", lambda x: x.get(
                         "artifact_type") or "-"), col("SIZE", "size", size, justify="right"),
                     col("PUSHED", "pushed_at", when)]


def cmd_artifact_show(ctx: Ctx) -> int:
    """The artifact, then its signatures (each one's layout, verdict, the keys that verify it, and why
    not) and its accessories; -o json: the API's artifact as it came (its signatures' verdicts are
    `GET .../artifacts/{digest}/signatures`)."""
    ref = parse_ref(ctx.args.artifact, ctx.conn.url, want="artifact")
    digest = resolve_digest(ctx, ref)
    a = ctx.api.doc("api.artifact", registry=ref.registry, image=ref.image, digest=digest)
    if ctx.out.as_json:
        ctx.out.document(a)
        return 0
    report = None if a.get("signed") is None else ctx.api.doc(
        "api.artifact.signatures", registry=ref.registry, image=ref.image, digest=digest)
    _artifact_fields(ctx, ref.repository, a)
    if report is not None and report["signatures"]:
        ctx.out.line()
        ctx.out.line("Signatures:")
        ctx.out.table(report["signatures"], SIGNATURE_COLUMNS)
    if a.get("accessories"):
        ctx.out.line()
        ctx.out.line("Accessories (deleted with the artifact):")
        ctx.out.table(a["accessories"], ACCESSORY_COLUMNS)
    return 0


def _artifact_fields(ctx: Ctx, repository: str, a: Any) -> None:
    ctx.out.fields([
        ("repository", repository), ("digest", a["digest"]), ("media type", text(a.get("media_type"))),
        ("artifact type", a.get("artifact_type") or "-"), ("size", size(a.get("size"))),
        ("platforms", platforms(a.get("platforms")) or "-"), ("tags", text(a.get("tags")) or "-"),
        ("subject", a.get("subject") or "-"), ("pushed", when(a.get("pushed_at"))),
        ("pulled", when(a.get("pulled_at"))),
        ("signed", signed_column(a)),
        ("scan status", "-" if a.get("scan_status") is None else text(a["scan_status"])),
        ("vulnerabilities", scan_column(a) or "-")])


def cmd_artifact_delete(ctx: Ctx) -> int:
    ref = parse_ref(ctx.args.artifact, ctx.conn.url, want="artifact")
    digest = resolve_digest(ctx, ref)
    detail = ""
    if not ctx.yes and sys.stdin.isatty():
        a = ctx.api.doc("api.artifact", registry=ref.registry, image=ref.image, digest=digest)
        tags, accessories = a.get("tags") or [], a.get("accessories") or []
        detail = f" and its tags {', '.join(tags)}" if tags else ""
        if accessories:
            detail += f" and its {len(accessories)} accessories (signatures, attestations, referrers)"
    ctx.confirm(f"delete artifact {ref.repository}@{digest}", detail)
    ctx.api.call("api.artifact.delete", registry=ref.registry, image=ref.image, digest=digest)
    return done(ctx, None, f"Deleted {ref.repository}@{digest}")


TAG_COLUMNS = [col("NAME", "name", no_wrap=True), col("DIGEST", "digest", no_wrap=True),
               col("UPDATED", "updated_at", when)]
REGISTRY_TAG_COLUMNS = [col("REPOSITORY", "repository", no_wrap=True), col("TAG", "name", no_wrap=True),
                        *TAG_COLUMNS[1:]]


def cmd_tag_list(ctx: Ctx) -> int:
    ref = parse_ref(ctx.args.image, ctx.conn.url)
    doc = listing(ctx, "api.tags", "tags", "tags", registry=ref.registry, image=ref.image, q=ctx.args.search,
                  glob=ctx.args.glob)
    return show_listing(ctx, doc, "tags", TAG_COLUMNS, "tags")


def cmd_tag_search(ctx: Ctx) -> int:
    doc = listing(ctx, "api.registry.tags", "tags", "tags", registry=ctx.args.registry, q=ctx.args.search,
                  glob=ctx.args.glob)
    return show_listing(ctx, doc, "tags", REGISTRY_TAG_COLUMNS, "tags")


def cmd_tag_create(ctx: Ctx) -> int:
    ref = parse_ref(ctx.args.artifact, ctx.conn.url, want="artifact")
    digest = resolve_digest(ctx, ref)
    t = ctx.api.doc("api.artifact.tags", {"name": ctx.args.tag}, registry=ref.registry, image=ref.image,
                    digest=digest)
    return done(ctx, t, f"Tagged {ref.repository}@{t.get('digest', digest)} as {t.get('name', ctx.args.tag)}")


def cmd_tag_delete(ctx: Ctx) -> int:
    ref = parse_ref(ctx.args.tag, ctx.conn.url, want="tag")
    ctx.confirm(f"delete tag {ref}", " (the artifact stays)")
    assert ref.tag is not None
    ctx.api.call("api.tag.delete", registry=ref.registry, image=ref.image, tag=ref.tag)
    return done(ctx, None, f"Deleted tag {ref}")


# -- garbage collection ----------------------------------------------------------------------------------


def cmd_gc_run(ctx: Ctx) -> int:
    dry, untagged = ctx.args.dry_run, ctx.args.delete_untagged
    if untagged and not dry:
        ctx.confirm("gc run --delete-untagged", " (deletes every manifest no tag, index or subject keeps)")
    with ctx.out.spinner("Collecting garbage" + (" (dry run)" if dry else "")):
        r = ctx.api.doc("api.gc.run", {"dry_run": dry, "delete_untagged": untagged})
    if ctx.out.as_json:
        ctx.out.document(r)
        return 0
    verb = "would remove" if r.get("dry_run") else "removed"
    ctx.out.line(f"GC run {r.get('id', '?')} {verb} {r.get('blobs_removed', 0)} blobs "
                 f"({size(r.get('bytes_freed', 0))}), {r.get('manifests_removed', 0)} manifests, "
                 f"{r.get('uploads_removed', 0)} uploads")
    for digest in r.get("blobs") or []:
        ctx.out.line(f"  blob {digest}")
    for manifest in r.get("manifests") or []:
        ctx.out.line(f"  manifest {manifest}")
    return 0


def cmd_gc_history(ctx: Ctx) -> int:
    doc = listing(ctx, "api.gc.runs", "runs", "GC runs")
    return show_listing(ctx, doc, "runs", [
        col("ID", "id", justify="right"), col("DRY_RUN", "dry_run"), col("STARTED", "started_at", when),
        col("FINISHED", "finished_at", when), col("BLOBS", "blobs_removed", justify="right"),
        col("MANIFESTS", "manifests_removed", justify="right"), col("UPLOADS", "uploads_removed", justify="right"),
        col("FREED", "bytes_freed", size, justify="right")], "GC runs")


# -- users, keys, roles, audit -------------------------------------------------------------------------------


def cmd_user_create(ctx: Ctx) -> int:
    a = ctx.args
    password = None
    if a.new_password_env:
        password = os.environ.get(a.new_password_env)
        if password is None:
            raise UsageError(f"--new-password-env: ${a.new_password_env} is not set")
    elif a.new_password_stdin:
        if getattr(a, "password_stdin", False):
            raise UsageError("--new-password-stdin and --password-stdin cannot both read stdin")
        password = read_stdin_secret()
    r = ctx.api.doc("api.user.create", {"name": a.name, "password": password, "system_admin": a.admin})
    return done(ctx, r, f"Created user {r.get('name', a.name)}" + (" (system administrator)" if a.admin else "")
                + ("" if password else "; it logs in with access keys (`ncr-trio key create --user NAME`)"))


def cmd_user_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.users")
    return show_listing(ctx, doc, "users", [
        col("NAME", "name", no_wrap=True), col("SYSTEM_ADMIN", "system_admin"), col("CREATED", "created_at", when),
    ], "users")


def cmd_user_delete(ctx: Ctx) -> int:
    ctx.confirm(f"delete user {ctx.args.name}", " with its access keys and roles")
    ctx.api.call("api.user.delete", user=ctx.args.name)
    return done(ctx, None, f"Deleted user {ctx.args.name}")


def cmd_key_create(ctx: Ctx) -> int:
    k = ctx.api.doc("api.key.create", {"description": ctx.args.description}, user=ctx.args.user)
    if ctx.out.as_json:
        ctx.out.document(k)
        return 0
    host = urlsplit(ctx.conn.url).netloc
    ctx.out.line(f"access key ID: {k['id']}\nsecret:        {k['secret']}\n"
                 "The secret is shown only this once: store it now.")
    ctx.out.note(f"Log in with: ncr-trio login {ctx.conn.url} --username {k['id']} --password-stdin\n"
                 f"         or: docker login {host} --username {k['id']} --password-stdin")
    return 0


def cmd_key_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.keys", user=ctx.args.user, revoked=ctx.args.revoked)
    columns = [col("ID", "id", no_wrap=True), col("USER", "user"), col("DESCRIPTION", "description"),
               col("CREATED", "created_at", when), col("LAST_USED", "last_used_at", when),
               col("ROTATION_DUE", "rotation_due")]
    if ctx.args.revoked:
        columns.append(col("REVOKED", "revoked_at", when))
    return show_listing(ctx, doc, "keys", columns, "access keys")


def cmd_key_revoke(ctx: Ctx) -> int:
    ctx.confirm(f"revoke access key {ctx.args.key_id}", " (logins and tokens through it stop working)")
    ctx.api.call("api.key.revoke", user=ctx.args.user, key=ctx.args.key_id)
    return done(ctx, None, f"Revoked access key {ctx.args.key_id}")


def cmd_role_grant(ctx: Ctx) -> int:
    r = ctx.api.doc("api.role.set", {"role": ctx.args.role}, user=ctx.args.user, on=ctx.args.registry)
    where = "every registry" if r.get("registry", ctx.args.registry) == "*" else f"registry {r.get('registry')}"
    return done(ctx, r, f"{r.get('user')} is {r.get('role')} on {where}")


def cmd_role_revoke(ctx: Ctx) -> int:
    ctx.api.call("api.role.delete", user=ctx.args.user, on=ctx.args.registry)
    where = "every registry (*)" if ctx.args.registry == "*" else f"registry {ctx.args.registry}"
    return done(ctx, None, f"Revoked {ctx.args.user}'s role on {where}")


def cmd_role_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.roles", user=ctx.args.user)
    return show_listing(ctx, doc, "roles",
                        [col("REGISTRY", "registry", no_wrap=True), col("ROLE", "role")], "roles")


def cmd_audit(ctx: Ctx) -> int:
    a = ctx.args
    doc = ctx.api.doc("api.audit", actor=a.actor, action=a.action, registry=a.registry, before=a.before,
                      limit=a.limit)
    columns = [col("ID", "id", justify="right"), col("AT", "at", when), col("ACTOR", "actor"),
               col("ACTION", "action"), col("OUTCOME", "outcome"), col("REGISTRY", "registry"),
               col("REPOSITORY", "repository"), col("TARGET", "target"), col("CLIENT", "client")]
    code = show_listing(ctx, doc, "entries", columns, "audit entries")
    entries = doc.get("entries") or []
    if not ctx.out.as_json and a.limit and len(entries) >= a.limit:
        ctx.out.note(f"older entries: --before {entries[-1]['id']}")
    return code


# -- the command tree ------------------------------------------------------------------------------------


def add_group(parent: Any, name: str, help: str, dest: str = "verb") -> Any:
    """A command (or a verb) that only holds verbs: its subparsers, the chosen one in `dest`."""
    p = parent.add_parser(name, help=help, description=help)
    return p.add_subparsers(dest=dest, required=True, metavar="VERB")


def add_leaf(parent: Any, name: str, help: str, handler: Handler, destructive: bool = False,
             aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A verb that runs `handler`; `destructive` ones ask first (`--yes` to skip)."""
    sp: argparse.ArgumentParser = parent.add_parser(name, aliases=list(aliases), help=help, description=help,
                                                    parents=[CLIENT_OPTIONS])
    if destructive:
        sp.add_argument("--yes", "-y", action="store_true",
                        help="do not ask for confirmation (needed without a terminal)")
    sp.set_defaults(handler=handler)
    return sp


def add_commands(sub: Any) -> None:
    """Every API command, on the top-level subparsers `sub`."""

    def group(name: str, help: str) -> Any:
        return add_group(sub, name, help)

    leaf = add_leaf

    sp = leaf(sub, "login", "check credentials and store them for later commands", cmd_login)
    sp.add_argument("server", nargs="?", metavar="URL", help="the server (default: $NCR_URL, the last login, "
                    f"{credentials.DEFAULT_URL})")
    sp.epilog = (f"The login is stored in {credentials.config_path()} (mode 0600). "
                 "Flags, then NCR_URL / NCR_USERNAME / NCR_PASSWORD / NCR_CACERT, override it.")
    leaf(sub, "logout", "remove the stored credentials", cmd_logout)
    leaf(sub, "whoami", "who the credentials are, and their roles", cmd_whoami)

    reg = group("registry", "create, list, show, update and delete registries")
    for verb, handler, text_ in (("create", cmd_registry_create, "create a registry (before anything is pushed)"),
                                 ("update", cmd_registry_update, "change a registry's settings")):
        sp = leaf(reg, verb, text_, handler)
        sp.add_argument("name")
        sp.add_argument("--description")
        sp.add_argument("--public-read", choices=["on", "off"], help="anyone may pull without logging in")
        sp.add_argument("--public-uri", choices=["on", "off"], help="off: reachable only on private listeners")
        sp.add_argument("--allow-cidr", action="append", help="restrict clients to this CIDR block (repeatable)")
        sp.add_argument("--clear-cidrs", action="store_true", help="remove the CIDR allowlist")
        if verb == "update":
            sp.add_argument("--scan-on-push", action=argparse.BooleanOptionalAction, default=None,
                            help="scan each image pushed (docs/scanning.md)")
            sp.add_argument("--prevent-pull-severity", metavar="LEVEL",
                            help="refuse pulls (412) of images with a vulnerability of LEVEL or higher that the "
                                 "allowlist does not name: Low, Medium, High, Critical; none: never")
            sp.add_argument("--require-signature", action=argparse.BooleanOptionalAction, default=None,
                            help="refuse pulls (412) of images without a cosign signature (docs/trust.md)")
            sp.add_argument("--require-verified-signature", action=argparse.BooleanOptionalAction, default=None,
                            help="refuse pulls (412) of images no trusted key's signature verifies")
        if verb == "create":
            sp.add_argument("--cache", metavar="CACHE", help="an image cache: a cache-type registry pulling "
                            "through it (no pushes; see `ncr-trio cache`)")
    leaf(reg, "list", "the registries you hold a role on", cmd_registry_list)
    leaf(reg, "show", "a registry's settings and image count", cmd_registry_show).add_argument("name")
    sp = leaf(reg, "delete", "delete a registry (refused while it holds images, unless --force)", cmd_registry_delete,
              destructive=True)
    sp.add_argument("name")
    sp.add_argument("--force", action="store_true", help="also delete the images it holds")

    mem = group("member", "who holds a role on a registry")
    leaf(mem, "list", "the users holding a role on a registry, and their roles", cmd_member_list
         ).add_argument("registry")

    img = group("image", "list, show and delete images (repositories)")
    sp = leaf(img, "list", "a registry's images", cmd_image_list)
    sp.add_argument("registry")
    sp.add_argument("-q", "--query", help="only images whose name contains this")
    paging_options(sp)
    leaf(img, "show", "one image", cmd_image_show).add_argument("image", metavar="REGISTRY/IMAGE")
    leaf(img, "delete", "delete an image with all its artifacts and tags", cmd_image_delete,
         destructive=True).add_argument("image", metavar="REGISTRY/IMAGE")

    art = group("artifact", "list, show and delete an image's artifacts (manifests and indexes)")
    sp = leaf(art, "list", "an image's artifacts, newest push first", cmd_artifact_list)
    sp.add_argument("image", metavar="REGISTRY/IMAGE")
    paging_options(sp)
    leaf(art, "show", "one artifact (by digest, or by a tag pointing at it)", cmd_artifact_show
         ).add_argument("artifact", metavar="REGISTRY/IMAGE@DIGEST")
    leaf(art, "delete", "delete an artifact, the tags pointing at it and its accessories", cmd_artifact_delete,
         destructive=True).add_argument("artifact", metavar="REGISTRY/IMAGE@DIGEST")

    tag = group("tag", "list, search, create and delete tags")
    sp = leaf(tag, "list", "an image's tags", cmd_tag_list)
    sp.add_argument("image", metavar="REGISTRY/IMAGE")
    sp.add_argument("--search", help="only tags containing this")
    sp.add_argument("--glob", help="only tags matching this pattern (*, **, ?, {a,b})")
    paging_options(sp)
    sp = leaf(tag, "search", "tags of every image of a registry", cmd_tag_search)
    sp.add_argument("registry")
    sp.add_argument("--search", help="only tags containing this")
    sp.add_argument("--glob", help="only tags matching this pattern (*, **, ?, {a,b})")
    paging_options(sp)
    sp = leaf(tag, "create", "tag an artifact", cmd_tag_create)
    sp.add_argument("artifact", metavar="REGISTRY/IMAGE@DIGEST", help="the artifact (or REGISTRY/IMAGE:TAG of it)")
    sp.add_argument("tag", metavar="TAG", help="the new tag")
    leaf(tag, "delete", "delete a tag (its artifact stays)", cmd_tag_delete, destructive=True
         ).add_argument("tag", metavar="REGISTRY/IMAGE:TAG")

    gc_parser = sub.add_parser("gc", help="garbage collection: `gc run`/`gc history` via the API; "
                               "`gc` alone on a local data directory",
                               description=GC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_local_gc_options(gc_parser)
    gc = gc_parser.add_subparsers(dest="verb", metavar="VERB")
    sp = leaf(gc, "run", "run GC on the server now (system administrators)", cmd_gc_run, destructive=True)
    sp.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    sp.add_argument("--delete-untagged", action="store_true",
                    help="also delete manifests no tag, index or subject keeps (asks first)")
    paging_options(leaf(gc, "history", "the server's GC runs, newest first", cmd_gc_history))

    user = group("user", "create, list and delete users (system administrators)")
    sp = leaf(user, "create", "create a user", cmd_user_create)
    sp.add_argument("name")
    sp.add_argument("--admin", action="store_true", help="a system administrator")
    pw = sp.add_mutually_exclusive_group()
    pw.add_argument("--new-password-env", metavar="VAR", help="environment variable holding the user's password")
    pw.add_argument("--new-password-stdin", action="store_true", help="read the user's password from stdin")
    leaf(user, "list", "every user", cmd_user_list)
    leaf(user, "delete", "delete a user, its keys and roles", cmd_user_delete, destructive=True).add_argument("name")

    key = group("key", "access keys: create (the secret is shown once), list, revoke")
    sp = leaf(key, "create", "a new access key; its secret is shown only this once", cmd_key_create)
    sp.add_argument("--user", default="me", help="whose key (default: yours; others': system administrators)")
    sp.add_argument("--description", default="")
    sp = leaf(key, "list", "access keys (never their secrets)", cmd_key_list)
    sp.add_argument("--user", default="me")
    sp.add_argument("--revoked", action="store_true", help="include revoked keys")
    sp = leaf(key, "revoke", "revoke an access key", cmd_key_revoke, destructive=True)
    sp.add_argument("key_id", metavar="KEY_ID")
    sp.add_argument("--user", default="me")

    role = group("role", "grant, revoke and list users' roles")
    sp = leaf(role, "grant", "give a user a role on one registry or every one", cmd_role_grant)
    sp.add_argument("user")
    sp.add_argument("role", help="project-admin, project-member, service-admin, service-viewer or image-uploader")
    sp.add_argument("--registry", default="*", help="one registry, or * (every registry; the default)")
    sp = leaf(role, "revoke", "take a user's role on a registry away", cmd_role_revoke)
    sp.add_argument("user")
    sp.add_argument("--registry", default="*")
    leaf(role, "list", "a user's roles (default: yours)", cmd_role_list).add_argument("user", nargs="?", default="me")

    sp = leaf(sub, "audit", "query the audit log, newest first (system administrators)", cmd_audit)
    sp.add_argument("--actor")
    sp.add_argument("--action", help="e.g. login, push, pull, delete, key, role")
    sp.add_argument("--registry")
    sp.add_argument("--before", type=int, metavar="ID", help="only entries older than this one")
    sp.add_argument("--limit", type=int, default=50, help="at most this many (default 50, at most 1000)")


def run(args: argparse.Namespace, handler: Handler) -> int:
    """Run an API command: exit 0, 1 on an API error or an unreachable server, 2 on a usage error."""
    out = Output(getattr(args, "output", None) or "table")
    conn: credentials.Connection | None = None
    try:
        stored = credentials.read(credentials.config_path())
        conn = connection(args, stored, login=handler is cmd_login)
        return handler(Ctx(args, out, conn))
    except UsageError as e:
        _error(f"error: {e}")
        return 2
    except APIError as e:
        _error(str(e))
        if e.status == 401 and conn is not None and conn.from_file:
            _error(f"the stored login for {conn.url} was refused: run `ncr-trio login {conn.url}` again")
        return 1
    except (NotLoggedIn, Aborted, credentials.ConfigError) as e:
        _error(str(e))
        return 1
    except BrokenPipeError:  # the reader of stdout went away (`... | head`): nothing more to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (urllib.error.URLError, ConnectionError, ssl.SSLError, http.client.HTTPException) as e:
        where = conn.url if conn is not None else "the server"
        _error(f"cannot reach {where}: {getattr(e, 'reason', None) or e}")
        return 1
    except TimeoutError:
        _error(f"{conn.url if conn is not None else 'the server'} did not answer in time")
        return 1
    except OSError as e:
        _error(str(e))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _error(message: str) -> None:
    sys.stderr.write(f"ncr-trio: {message}\n")
    sys.stderr.flush()


__all__ = ["CLIENT_OPTIONS", "Ctx", "Ref", "add_commands", "add_group", "add_leaf", "done", "listing", "paging_options",
           "parse_ref", "read_stdin_secret", "run", "show_fields", "show_listing"]
