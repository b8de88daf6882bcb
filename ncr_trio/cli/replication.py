"""Replication through the management API (docs/replication.md): remote registries (system
administrators) and a registry's replication policies, their runs and their history.

    ncr-trio remote list|show|create|update|delete|refresh [NAME] ...
    ncr-trio replication list|show|create|update|enable|disable|delete REGISTRY [POLICY] ...
    ncr-trio replication run REGISTRY POLICY [--wait]          (--wait follows the run until it ends)
    ncr-trio replication stop|history|tasks REGISTRY POLICY [EXECUTION]

A policy is named by its ID or by its name. A remote's access secret is write-only: it is read from
stdin (all of it), an environment variable or a prompt on the terminal, never from the command line
(shell history, `ps`), sent once, and never printed (answers only say whether one is set).
`run --wait` exits 1 unless the run ends Succeeded, so scripts can chain on it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path
from typing import Any

from ncr_trio.cache.sources import SOURCE_TYPES
from ncr_trio.cli.commands import (
    Ctx,
    add_group,
    add_leaf,
    delete_item,
    done,
    listing,
    paging_options,
    set_enabled,
    show_fields,
    show_listing,
)
from ncr_trio.cli.output import Column, UsageError, col, size, text, when
from ncr_trio.client import PER_PAGE_MAX, APIError
from ncr_trio.replication.model import DIRECTIONS, FINISHED, TRIGGERS

POLL_SECONDS = 1.0
RECENT = 50  # executions looked through for the one under way (the ones after it were Skipped)
UNDER_WAY = ("Pending", "Running")


def _given(**fields: Any) -> dict[str, Any]:
    """The options given (None: left as they are, or to the server's default)."""
    return {k: v for k, v in fields.items() if v is not None}


def _is_set(value: Any) -> str:
    return "set" if value else "not set"


# -- remotes ------------------------------------------------------------------------------------------------


def _secret(ctx: Ctx, creating: bool) -> str | None:
    """The access secret given (None: not given; "" with --clear-secret). On a terminal, creating a remote
    with an access ID and no secret option asks for the secret (not echoed)."""
    a = ctx.args
    if a.secret_stdin:
        if getattr(a, "password_stdin", False):
            raise UsageError("--secret-stdin and --password-stdin cannot both read stdin")
        value = sys.stdin.read().rstrip("\r\n")
        if not value:
            raise UsageError("--secret-stdin: nothing on stdin")
        return value
    if a.secret_env:
        env = os.environ.get(a.secret_env)
        if env is None:
            raise UsageError(f"--secret-env: ${a.secret_env} is not set")
        return env
    if getattr(a, "clear_secret", False):
        return ""
    if a.secret_prompt or (creating and a.access_id):
        if not sys.stdin.isatty():
            raise UsageError("the access secret is asked for on a terminal: without one, give it with --secret-stdin "
                             "or --secret-env (never on the command line)")
        value = getpass.getpass(f"Access secret of {a.access_id or 'the remote'}: ")
        if not value:
            raise UsageError("no access secret given")
        return value
    return None


def _ca_cert(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--ca-cert {path}: {e}") from None


def _certificates(pem: Any) -> str:
    n = str(pem or "").count("BEGIN CERTIFICATE")
    return "- (the system's trust)" if not n else f"{n} certificate{'s' if n > 1 else ''}"


def _remote_status(r: Any) -> str:
    return str(r["status"]) + (f": {r['reason']}" if r.get("reason") else "")


def _remote_fields(r: Any) -> list[tuple[str, str]]:
    return [("name", r["name"]), ("type", r["type"]), ("url", r["url"]),
            ("access ID", r.get("access_id") or "- (anonymous)"), ("access secret", _is_set(r.get("has_secret"))),
            ("CA certificate", _certificates(r.get("ca_cert"))),
            ("insecure", text(r.get("insecure")) + (" (TLS not verified)" if r.get("insecure") else "")),
            ("description", r.get("description") or "-"), ("status", _remote_status(r)),
            ("checked", when(r.get("checked_at"))), ("created", when(r.get("created_at"))),
            ("updated", when(r.get("updated_at")))]


REMOTE_COLUMNS = [col("NAME", "name", no_wrap=True), col("TYPE", "type"), col("URL", "url"),
                  col("ACCESS_ID", "access_id"), col("SECRET", "has_secret", _is_set), col("STATUS", "status"),
                  col("REASON", "reason"), col("CHECKED", "checked_at", when)]


def _settings(ctx: Ctx, creating: bool) -> dict[str, Any]:
    a = ctx.args
    out = _given(access_id=a.access_id, description=a.description,
                 insecure=(a.insecure or None) if creating else a.insecure)
    if a.ca_cert is not None:
        out["ca_cert"] = _ca_cert(a.ca_cert)
    elif getattr(a, "clear_ca_cert", False):
        out["ca_cert"] = ""
    secret = _secret(ctx, creating)
    if secret is not None:
        out["access_secret"] = secret
    return out


def _show_remote(ctx: Ctx, r: Any) -> int:
    show_fields(ctx, r, _remote_fields(r))
    if r["status"] != "valid" and not ctx.out.as_json:
        ctx.out.note(f"remote {r['name']} is invalid: fix it with `ncr-trio remote update {r['name']}`, "
                     f"then check it again with `ncr-trio remote refresh {r['name']}`")
    return 0


def cmd_remote_list(ctx: Ctx) -> int:
    return show_listing(ctx, ctx.api.doc("api.remotes"), "remotes", REMOTE_COLUMNS, "remotes")


def cmd_remote_show(ctx: Ctx) -> int:
    r = ctx.api.doc("api.remote", remote=ctx.args.name)
    return show_fields(ctx, r, _remote_fields(r))


def cmd_remote_create(ctx: Ctx) -> int:
    a = ctx.args
    body = {"name": a.name, "url": a.remote_url, "type": a.type, **_settings(ctx, creating=True)}
    with ctx.out.spinner(f"Registering remote {a.name} (checking {a.remote_url})"):
        r = ctx.api.doc("api.remote.create", body)
    return _show_remote(ctx, r)


def cmd_remote_update(ctx: Ctx) -> int:
    a = ctx.args
    changes = _settings(ctx, creating=False)
    changes.update(_given(type=a.type, url=a.remote_url))
    if not changes:
        raise UsageError("nothing to change: give --remote-url, --type, --access-id, a new access secret "
                         "(--secret-stdin, --secret-env, --secret-prompt), --clear-secret, --ca-cert, --clear-ca-cert, "
                         "--insecure, --no-insecure or --description")
    with ctx.out.spinner(f"Changing remote {a.name} (and checking it again)"):
        r = ctx.api.doc("api.remote.update", changes, remote=a.name)
    return _show_remote(ctx, r)


def cmd_remote_delete(ctx: Ctx) -> int:
    ctx.confirm(f"delete remote {ctx.args.name}", " (refused while a replication policy uses it)")
    ctx.api.call("api.remote.delete", remote=ctx.args.name)
    return done(ctx, None, f"Deleted remote {ctx.args.name}")


def cmd_remote_refresh(ctx: Ctx) -> int:
    """Exit status 1 when the remote is invalid (not reached, or its credentials refused)."""
    name = ctx.args.name
    with ctx.out.spinner(f"Checking remote {name}"):
        r = ctx.api.doc("api.remote.refresh", remote=name)
    done(ctx, r, f"Remote {name}: {_remote_status(r)}")
    return 0 if r["status"] == "valid" else 1


# -- policies -----------------------------------------------------------------------------------------------


def policy_id(ctx: Ctx, registry: str, ref: str) -> int:
    """A policy by its numeric ID, or by its name (looked up in the registry's list)."""
    if ref.isdigit():
        return int(ref)
    for p in ctx.api.doc("api.replications", registry=registry)["policies"]:
        if p["name"] == ref:
            return int(p["id"])
    raise APIError(404, "NOT_FOUND", f"no replication policy named {ref!r} in registry {registry}")


def _route(p: Any) -> str:
    """What travels where: `team/** -> osaka:team/**` (push), the other way for a pull."""
    here = f"{p['registry']}/{p.get('name_filter') or '**'}"
    there = f"{p['remote']}:{p['remote_namespace']}/{p.get('name_filter') or '**'}"
    return f"{here} -> {there}" if p["direction"] == "push" else f"{there} -> {here}"


def _tags(p: Any) -> str:
    pattern = p.get("tag_filter") or ""
    if p.get("tag_filter_mode") == "exclude":
        return f"all but {pattern}" if pattern else "all"
    return pattern or "all"


def _trigger(p: Any) -> str:
    return f"scheduled ({p['schedule']} UTC)" if p["trigger"] == "scheduled" else str(p["trigger"])


def _bandwidth(value: Any) -> str:
    return f"{value} KiB/s" if value else "no limit"


def _policy_status(p: Any) -> str:
    return str(p["status"]) + (f": {p['reason']}" if p.get("reason") else "")


def _policy_fields(p: Any) -> list[tuple[str, str]]:
    return [("id", text(p["id"])), ("name", p["name"]), ("registry", p["registry"]),
            ("direction", p["direction"]), ("remote", p["remote"]), ("remote namespace", p["remote_namespace"]),
            ("copies", _route(p)), ("image filter", p.get("name_filter") or "- (every image)"),
            ("tag filter", _tags(p)), ("trigger", _trigger(p)), ("next run", when(p.get("next_run_at"))),
            ("override", text(p.get("override"))), ("bandwidth", _bandwidth(p.get("bandwidth_kbps"))),
            ("enabled", text(p.get("enabled"))), ("status", _policy_status(p)),
            ("description", p.get("description") or "-"), ("created", when(p.get("created_at"))),
            ("updated", when(p.get("updated_at")))]


POLICY_COLUMNS = [col("ID", "id", justify="right"), col("NAME", "name", no_wrap=True), col("DIRECTION", "direction"),
                  col("REMOTE", "remote"), col("NAMESPACE", "remote_namespace"), col("IMAGES", "name_filter"),
                  Column("TAGS", _tags), Column("TRIGGER", _trigger), col("ENABLED", "enabled"),
                  col("STATUS", "status"), col("NEXT_RUN", "next_run_at", when)]


def _policy_settings(ctx: Ctx, creating: bool) -> dict[str, Any]:
    a = ctx.args
    trigger = a.trigger
    if a.schedule is not None and trigger is None and a.schedule.strip().lower() not in ("", "none"):
        trigger = "scheduled"  # a schedule says when the policy runs: it is a scheduled one
    mode = "exclude" if a.exclude else ("match" if getattr(a, "match", False) else None)
    fields = _given(remote=a.remote, remote_namespace=a.remote_namespace, description=a.description,
                    name_filter=a.name_filter, tag_filter=a.tag_filter, tag_filter_mode=mode, trigger=trigger,
                    schedule=a.schedule, bandwidth_kbps=a.bandwidth_kbps)
    if creating:
        fields.update(_given(override=a.override or None, enabled=False if a.disabled else None))
    else:
        fields.update(_given(name=a.name, direction=a.direction, override=a.override))
    return fields


def cmd_replication_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.replications", registry=ctx.args.registry)
    return show_listing(ctx, doc, "policies", POLICY_COLUMNS, "replication policies")


def cmd_replication_show(ctx: Ctx) -> int:
    a = ctx.args
    p = ctx.api.doc("api.replication", registry=a.registry, id=policy_id(ctx, a.registry, a.policy))
    return show_fields(ctx, p, _policy_fields(p))


def cmd_replication_create(ctx: Ctx) -> int:
    a = ctx.args
    body = {"name": a.name, "direction": a.direction, **_policy_settings(ctx, creating=True)}
    p = ctx.api.doc("api.replication.create", body, registry=a.registry)
    show_fields(ctx, p, _policy_fields(p))
    if p["status"] != "valid" and not ctx.out.as_json:
        ctx.out.note(f"the policy is invalid until its remote is: `ncr-trio remote show {p['remote']}`")
    return 0


def cmd_replication_update(ctx: Ctx) -> int:
    a = ctx.args
    changes = _policy_settings(ctx, creating=False)
    if not changes:
        raise UsageError("nothing to change: give --name, --direction, --remote, --remote-namespace, --name-filter, "
                         "--tag-filter, --match, --exclude, --trigger, --schedule, --override, --no-override, "
                         "--bandwidth-kbps or --description (enable and disable are verbs of their own)")
    p = ctx.api.doc("api.replication.update", changes, registry=a.registry, id=policy_id(ctx, a.registry, a.policy))
    return show_fields(ctx, p, _policy_fields(p))


def cmd_replication_enable(ctx: Ctx) -> int:
    a = ctx.args
    return set_enabled(ctx, "api.replication.update", "replication policy", True, registry=a.registry,
                       id=policy_id(ctx, a.registry, a.policy))


def cmd_replication_disable(ctx: Ctx) -> int:
    a = ctx.args
    return set_enabled(ctx, "api.replication.update", "replication policy", False, registry=a.registry,
                       id=policy_id(ctx, a.registry, a.policy))


def cmd_replication_delete(ctx: Ctx) -> int:
    a = ctx.args
    return delete_item(ctx, "api.replication.delete", "replication policy", a.policy,
                       " and its history (a run under way is stopped; the copies made stay)", registry=a.registry,
                       id=policy_id(ctx, a.registry, a.policy))


# -- runs ----------------------------------------------------------------------------------------------------


def _counts(e: Any) -> str:
    return f"{e.get('copied', 0)} copied, {e.get('skipped', 0)} skipped, {e.get('failed', 0)} failed"


def _execution_fields(e: Any) -> list[tuple[str, str]]:
    return [("execution", text(e["id"])), ("policy", text(e["policy_id"])), ("trigger", text(e.get("trigger"))),
            ("status", text(e.get("status")) + (" (stop requested)" if e.get("stop_requested")
                                                 and e.get("status") in UNDER_WAY else "")),
            ("artifacts", _counts(e)), ("sent", size(e.get("bytes"))), ("started", when(e.get("started_at"))),
            ("ended", when(e.get("ended_at"))), ("detail", e.get("detail") or "-")]


EXECUTION_COLUMNS = [col("ID", "id", justify="right"), col("TRIGGER", "trigger"), col("STATUS", "status"),
                     col("STARTED", "started_at", when), col("ENDED", "ended_at", when),
                     col("COPIED", "copied", justify="right"), col("SKIPPED", "skipped", justify="right"),
                     col("FAILED", "failed", justify="right"), col("SENT", "bytes", size, justify="right"),
                     col("DETAIL", "detail")]


def _short(digest: Any) -> str:
    value = str(digest or "")
    return value[:19] if value.startswith("sha256:") else value


TASK_COLUMNS = [col("ID", "id", justify="right"), col("SOURCE", "source", no_wrap=True),
                col("TARGET", "target", no_wrap=True), col("DIGEST", "digest", _short, no_wrap=True),
                col("STATUS", "status"), col("ATTEMPTS", "attempts", justify="right"),
                col("SENT", "bytes", size, justify="right"), col("ERROR", "error"), col("ENDED", "ended_at", when)]


def _progress(e: Any, artifacts: int, elapsed: float) -> str:
    minutes, seconds = divmod(int(elapsed), 60)
    return (f"Execution {e['id']} {e['status']}{' (stopping)' if e.get('stop_requested') else ''}: "
            f"{_counts(e)} of {artifacts} artifact{'s' if artifacts != 1 else ''}, {size(e.get('bytes'))} sent, "
            f"{minutes}:{seconds:02d}")


def follow(ctx: Ctx, registry: str, pid: int, e: dict[str, Any]) -> dict[str, Any]:
    """Poll the execution `e` until it ends, its progress shown on the terminal; the ended execution.
    Interrupted, it stops following only: the run goes on."""
    started = time.monotonic()
    interval = max(0.1, float(getattr(ctx.args, "interval", None) or POLL_SECONDS))
    try:
        with ctx.out.status(_progress(e, 0, 0)) as update:
            while e["status"] not in FINISHED:
                time.sleep(interval)
                e = ctx.api.doc("api.replication.execution", registry=registry, id=pid, execution=e["id"])
                artifacts = ctx.api.doc("api.replication.tasks", registry=registry, id=pid, execution=e["id"],
                                        per_page=1)["total"]
                update(_progress(e, artifacts, time.monotonic() - started))
    except KeyboardInterrupt:
        ctx.out.note(f"stopped following execution {e['id']}; it goes on (`ncr-trio replication stop {registry} "
                     f"{pid} {e['id']}` stops it)")
        raise
    return e


def _failed_tasks(ctx: Ctx, registry: str, pid: int, execution: int) -> list[Any]:
    doc = ctx.api.doc("api.replication.tasks", registry=registry, id=pid, execution=execution, per_page=PER_PAGE_MAX)
    return [t for t in doc["tasks"] if t.get("status") == "Failed"]


def _show_ended(ctx: Ctx, registry: str, pid: int, e: dict[str, Any]) -> int:
    """The execution as it ended (and its failed tasks); exit status 0 only when it Succeeded."""
    if ctx.out.as_json:
        ctx.out.document(e)
    else:
        ctx.out.line(f"Execution {e['id']} of replication policy #{pid} of registry {registry}: {e['status']}, "
                     f"{_counts(e)}, {size(e.get('bytes'))} sent" + (f": {e['detail']}" if e.get("detail") else ""))
        if e.get("failed"):
            failed = _failed_tasks(ctx, registry, pid, e["id"])
            if failed:
                ctx.out.table(failed, TASK_COLUMNS)
    return 0 if e["status"] == "Succeeded" else 1


def cmd_replication_run(ctx: Ctx) -> int:
    """Exit status 1 when the run was Skipped (one was under way), or, with --wait, did not end Succeeded."""
    a = ctx.args
    pid = policy_id(ctx, a.registry, a.policy)
    e = ctx.api.doc("api.replication.run", registry=a.registry, id=pid)
    if e["status"] == "Skipped":
        done(ctx, e, f"Execution {e['id']} Skipped: {e.get('detail') or 'a run is under way'}")
        return 1
    if not a.wait:
        return done(ctx, e, f"Started execution {e['id']} of replication policy {a.policy} of registry "
                            f"{a.registry}: follow it with `ncr-trio replication history {a.registry} {pid} "
                            f"{e['id']}` (or run with --wait)")
    return _show_ended(ctx, a.registry, pid, follow(ctx, a.registry, pid, e))


def _execution_id(ctx: Ctx, registry: str, pid: int, given: int | None, under_way: bool = False) -> int:
    """The execution given, else the policy's newest (with `under_way`: the newest Pending or Running one; a
    Skipped trigger may be newer than the run it was skipped for)."""
    if given is not None:
        return given
    recent = ctx.api.doc("api.replication.executions", registry=registry, id=pid,
                         per_page=RECENT if under_way else 1)["executions"]
    if not recent:
        raise APIError(404, "NOT_FOUND", f"replication policy #{pid} has not run yet")
    if not under_way:
        return int(recent[0]["id"])
    for e in recent:
        if e["status"] in UNDER_WAY:
            return int(e["id"])
    raise APIError(409, "CONFLICT", f"no run of replication policy #{pid} is under way (the newest, execution "
                                    f"{recent[0]['id']}, ended {recent[0]['status']})")


def cmd_replication_stop(ctx: Ctx) -> int:
    a = ctx.args
    pid = policy_id(ctx, a.registry, a.policy)
    eid = _execution_id(ctx, a.registry, pid, a.execution, under_way=True)
    e = ctx.api.doc("api.replication.stop", registry=a.registry, id=pid, execution=eid)
    if a.wait:
        e = follow(ctx, a.registry, pid, e)
        done(ctx, e, f"Execution {eid} {e['status']}: {_counts(e)}")
        return 0 if e["status"] == "Stopped" else 1
    if e["status"] in FINISHED:
        return done(ctx, e, f"Execution {eid} had already ended: {e['status']}")
    return done(ctx, e, f"Stopping execution {eid} (it ends Stopped; `--wait` waits for it)")


def cmd_replication_history(ctx: Ctx) -> int:
    a = ctx.args
    pid = policy_id(ctx, a.registry, a.policy)
    if a.execution is None:
        doc = listing(ctx, "api.replication.executions", "executions", "executions", registry=a.registry, id=pid)
        return show_listing(ctx, doc, "executions", EXECUTION_COLUMNS, "executions")
    if a.page is not None or a.all or a.per_page is not None:
        raise UsageError("--page, --per-page and --all list executions: not with an EXECUTION (see `tasks`)")
    e = ctx.api.doc("api.replication.execution", registry=a.registry, id=pid, execution=a.execution)
    return show_fields(ctx, e, _execution_fields(e))


def cmd_replication_tasks(ctx: Ctx) -> int:
    a = ctx.args
    pid = policy_id(ctx, a.registry, a.policy)
    eid = _execution_id(ctx, a.registry, pid, a.execution)
    doc = listing(ctx, "api.replication.tasks", "tasks", "tasks", registry=a.registry, id=pid, execution=eid)
    return show_listing(ctx, doc, "tasks", TASK_COLUMNS, f"tasks in execution {eid}")


# -- the command tree ----------------------------------------------------------------------------------------


def _remote_options(sp: Any, creating: bool) -> None:
    if not creating:
        sp.add_argument("--remote-url", metavar="URL", help="a new URL (--url is the server's)")
        sp.add_argument("--type", choices=list(SOURCE_TYPES), help="a new registry type")
    sp.add_argument("--access-id", help="the access key ID (or user name) at the remote")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--secret-stdin", action="store_true", help="read the access secret from stdin (all of it)")
    g.add_argument("--secret-env", metavar="VAR", help="take the access secret from environment variable VAR")
    g.add_argument("--secret-prompt", action="store_true",
                   help="ask for the access secret on the terminal" + (" (the default with --access-id)"
                                                                       if creating else ""))
    if not creating:
        g.add_argument("--clear-secret", action="store_true", help="remove the access secret")
    c = sp.add_mutually_exclusive_group()
    c.add_argument("--ca-cert", metavar="PATH", help="PEM CA certificate(s) to trust for the remote's HTTPS")
    if creating:
        sp.add_argument("--insecure", action="store_true", help="do not verify the remote's TLS certificate (avoid)")
    else:
        c.add_argument("--clear-ca-cert", action="store_true", help="trust the system's CAs only")
        sp.add_argument("--insecure", action=argparse.BooleanOptionalAction,
                        help="do not verify (--no-insecure: verify) the remote's TLS certificate")
    sp.add_argument("--description")
    sp.epilog = "The access secret is never printed, nor shown again by the server."


def _policy_options(sp: Any, creating: bool) -> None:
    if creating:
        sp.add_argument("--name", required=True, help="unique in the registry (the rules of a registry's name)")
        sp.add_argument("--direction", required=True, choices=DIRECTIONS,
                        help="push: from this registry to the remote; pull: from the remote to this registry")
        sp.add_argument("--remote", required=True, help="a remote's name (`ncr-trio remote list`)")
    else:
        sp.add_argument("--name", help="a new name")
        sp.add_argument("--direction", choices=DIRECTIONS)
        sp.add_argument("--remote", help="another remote")
    sp.add_argument("--remote-namespace", metavar="REGISTRY",
                    help="the registry on the other side (default: this registry's name)")
    sp.add_argument("--name-filter", metavar="PATTERN",
                    help="images, by their name without the registry: *, **, ?, {a,b} (default: every image)")
    sp.add_argument("--tag-filter", metavar="PATTERN", help="tags: *, **, ?, {a,b} (default: every tag)")
    m = sp.add_mutually_exclusive_group()
    m.add_argument("--exclude", action="store_true", help="the tags the tag filter matches stay behind")
    if not creating:
        m.add_argument("--match", action="store_true", help="only the tags the tag filter matches travel")
    sp.add_argument("--trigger", choices=TRIGGERS,
                    help="manual (the default), scheduled (with --schedule) or event (push only: each tag pushed "
                         "after the policy exists)")
    sp.add_argument("--schedule", metavar="CRON",
                    help='Hourly, Daily, Weekly or five cron fields in UTC ("30 2 * * *"); implies --trigger scheduled')
    if creating:
        sp.add_argument("--override", action="store_true",
                        help="replace a different artifact under the same tag at the target (default: keep it)")
        sp.add_argument("--disabled", action="store_true", help="create it disabled")
    else:
        sp.add_argument("--override", action=argparse.BooleanOptionalAction,
                        help="replace (--no-override: keep) a different artifact under the same tag at the target")
    sp.add_argument("--bandwidth-kbps", type=int, metavar="N", help="at most N KiB/s across a run (0: no limit)")
    sp.add_argument("--description")


def add_commands(sub: Any) -> None:
    """`remote` and `replication`, on the top-level subparsers `sub`."""
    leaf = add_leaf

    remote = add_group(sub, "remote", "remote registries that replication copies to and from (system administrators)")
    leaf(remote, "list", "every remote, with its status (never its secret)", cmd_remote_list)
    leaf(remote, "show", "one remote", cmd_remote_show, aliases=("get",)).add_argument("name")
    sp = leaf(remote, "create", "register a remote registry (checked at once: valid or invalid, and why)",
              cmd_remote_create)
    sp.add_argument("name", help="lower-case letters and digits, separated by . _ __ or -")
    sp.add_argument("remote_url", metavar="URL", help="the remote registry: http(s)://host[:port]")
    sp.add_argument("--type", choices=list(SOURCE_TYPES), default="ncr",
                    help="what the remote is (default ncr: another ncr-trio)")
    _remote_options(sp, creating=True)
    sp = leaf(remote, "update", "change a remote (checked again)", cmd_remote_update)
    sp.add_argument("name")
    _remote_options(sp, creating=False)
    leaf(remote, "delete", "delete a remote no replication policy uses", cmd_remote_delete, destructive=True
         ).add_argument("name")
    leaf(remote, "refresh", "check a remote now; its policies take its status (exit 1 if invalid)",
         cmd_remote_refresh).add_argument("name")

    rep = add_group(sub, "replication", "a registry's replication policies: list, show, create, update, enable, "
                                        "disable, delete, run (and follow), stop, history, tasks")

    def rep_leaf(name: str, help: str, handler: Any, destructive: bool = False, with_policy: bool = True) -> Any:
        sp = leaf(rep, name, help, handler, destructive)
        sp.add_argument("registry")
        if with_policy:
            sp.add_argument("policy", metavar="POLICY", help="the policy's ID (or its name)")
        return sp

    rep_leaf("list", "a registry's replication policies", cmd_replication_list, with_policy=False)
    rep_leaf("show", "one replication policy", cmd_replication_show)
    _policy_options(rep_leaf("create", "add a replication policy (created enabled)", cmd_replication_create,
                             with_policy=False), creating=True)
    _policy_options(rep_leaf("update", "change a replication policy", cmd_replication_update), creating=False)
    rep_leaf("enable", "enable a replication policy", cmd_replication_enable)
    rep_leaf("disable", "disable a replication policy (it does not run)", cmd_replication_disable)
    rep_leaf("delete", "delete a replication policy and its history (the copies stay)", cmd_replication_delete,
             destructive=True)
    sp = rep_leaf("run", "run a policy now; --wait follows it to its end (exit 1 unless it Succeeded)",
                  cmd_replication_run)
    sp.add_argument("--wait", action="store_true", help="follow the run, showing its progress, until it ends")
    sp.add_argument("--interval", type=float, metavar="SECONDS", help=f"how often to look (default {POLL_SECONDS:g})")
    sp = rep_leaf("stop", "stop a run under way (default: the policy's newest one under way)", cmd_replication_stop)
    sp.add_argument("execution", type=int, nargs="?", metavar="EXECUTION", help="the execution's ID")
    sp.add_argument("--wait", action="store_true", help="wait until it has ended (exit 1 unless it ends Stopped)")
    sp.add_argument("--interval", type=float, metavar="SECONDS", help=f"how often to look (default {POLL_SECONDS:g})")
    sp = rep_leaf("history", "a policy's executions, newest first; one execution with EXECUTION",
                  cmd_replication_history)
    sp.add_argument("execution", type=int, nargs="?", metavar="EXECUTION", help="one execution, with its counts")
    paging_options(sp)
    sp = rep_leaf("tasks", "the artifacts of an execution (default: the newest), one task each", cmd_replication_tasks)
    sp.add_argument("execution", type=int, nargs="?", metavar="EXECUTION", help="the execution's ID")
    paging_options(sp)


__all__ = ["add_commands", "follow", "policy_id"]
