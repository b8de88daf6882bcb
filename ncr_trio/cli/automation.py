"""A registry's automation through the management API: webhooks and their deliveries, cleanup policies,
runs, history and schedule, and protection policies (docs/api.md, docs/webhooks.md, docs/policies.md).

    ncr-trio webhook list|show|create|update|enable|disable|delete|test|deliveries REGISTRY [WEBHOOK] ...
    ncr-trio cleanup policy list|add|enable|disable|delete REGISTRY ...
    ncr-trio cleanup schedule show|set REGISTRY [SCHEDULE]
    ncr-trio cleanup test|run|history REGISTRY [RUN_ID]
    ncr-trio protection list|add|enable|disable|delete REGISTRY ...

A webhook's secret and auth header are write-only: they are read from stdin or an environment
variable, sent once, and never printed (answers only say whether they are set).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ncr_trio.cli.commands import (
    Ctx,
    add_group,
    add_leaf,
    delete_item,
    done,
    listing,
    paging_options,
    read_stdin_secret,
    set_enabled,
    show_fields,
    show_listing,
)
from ncr_trio.cli.output import Column, UsageError, col, text, when
from ncr_trio.client import APIError
from ncr_trio.limits import EVENT_TYPES, RULES

ITEM_COLUMNS = [col("REPOSITORY", "repository", no_wrap=True), col("DIGEST", "digest", no_wrap=True),
                col("TAGS", "tags"), col("OUTCOME", "outcome", no_wrap=True), col("REASON", "reason")]


def _given(**fields: Any) -> dict[str, Any]:
    """The options given (None: left to the server's default)."""
    return {k: v for k, v in fields.items() if v is not None}


def _is_set(value: Any) -> str:
    return "set" if value else "not set"


# -- webhooks --------------------------------------------------------------------------------------------


def _webhook_id(ctx: Ctx, registry: str, ref: str) -> int:
    """A webhook by its numeric ID, or by its name (looked up in the registry's list)."""
    if ref.isdigit():
        return int(ref)
    for page in ctx.api.pages("api.webhooks", "webhooks", registry=registry):
        for hook in page["webhooks"]:
            if hook["name"] == ref:
                return int(hook["id"])
    raise APIError(404, "NOT_FOUND", f"no webhook named {ref!r} in registry {registry}")


def _write_only(ctx: Ctx, what: str, from_stdin: bool, env_var: str | None) -> str | None:
    """A secret from stdin's first line or an environment variable (None: not given)."""
    flag = what.replace(" ", "-")
    if from_stdin:
        if getattr(ctx.args, "password_stdin", False):
            raise UsageError(f"--{flag}-stdin and --password-stdin cannot both read stdin")
        try:
            return read_stdin_secret()
        except UsageError:
            raise UsageError(f"--{flag}-stdin: nothing on stdin") from None
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise UsageError(f"--{flag}-env: ${env_var} is not set")
        return value
    return None


def _secrets(ctx: Ctx) -> dict[str, str | None]:
    """The write-only fields given: `secret` / `auth_header` with their value, "" to remove them."""
    a = ctx.args
    if getattr(a, "secret_stdin", False) and getattr(a, "auth_header_stdin", False):
        raise UsageError("--secret-stdin and --auth-header-stdin cannot both read stdin: "
                         "give one of them in an environment variable (--secret-env, --auth-header-env)")
    out: dict[str, str | None] = {}
    for key, what in (("secret", "secret"), ("auth_header", "auth header")):
        value = _write_only(ctx, what, getattr(a, f"{key}_stdin", False), getattr(a, f"{key}_env", None))
        if getattr(a, f"clear_{key}", False):
            if value is not None:
                raise UsageError(f"--clear-{what.replace(' ', '-')} contradicts a new {what}")
            value = ""
        if value is not None:
            out[key] = value
    return out


def _webhook_fields(h: Any) -> list[tuple[str, str]]:
    return [("id", text(h["id"])), ("name", h["name"]), ("registry", h["registry"]), ("kind", h["kind"]),
            ("url", h["url"]), ("events", text(h.get("event_types")) or "every type"),
            ("enabled", text(h.get("enabled"))), ("secret", _is_set(h.get("secret_set"))),
            ("auth header", _is_set(h.get("auth_header_set"))), ("created", when(h.get("created_at")))]


def _events(h: Any) -> str:
    return text(h.get("event_types")) or "all"


WEBHOOK_COLUMNS = [col("ID", "id", justify="right"), col("NAME", "name", no_wrap=True), col("KIND", "kind"),
                   col("URL", "url"), Column("EVENTS", _events), col("ENABLED", "enabled"),
                   col("SECRET", "secret_set", _is_set), col("AUTH_HEADER", "auth_header_set", _is_set),
                   col("CREATED", "created_at", when)]


def cmd_webhook_list(ctx: Ctx) -> int:
    doc = listing(ctx, "api.webhooks", "webhooks", "webhooks", registry=ctx.args.registry)
    return show_listing(ctx, doc, "webhooks", WEBHOOK_COLUMNS, "webhooks")


def cmd_webhook_show(ctx: Ctx) -> int:
    a = ctx.args
    h = ctx.api.doc("api.webhook", registry=a.registry, webhook=_webhook_id(ctx, a.registry, a.webhook))
    return show_fields(ctx, h, _webhook_fields(h))


def cmd_webhook_create(ctx: Ctx) -> int:
    a = ctx.args
    secrets = _secrets(ctx)
    body = {"name": a.name, "kind": a.kind, "url": a.webhook_url, "event_types": a.event or [],
            "enabled": not a.disabled, **_given(**secrets)}
    h = ctx.api.doc("api.webhook.create", body, registry=a.registry)
    return show_fields(ctx, h, _webhook_fields(h))


def cmd_webhook_update(ctx: Ctx) -> int:
    a = ctx.args
    if a.event and a.all_events:
        raise UsageError("--event and --all-events contradict each other")
    fields: dict[str, Any] = {k: v for k, v in (("name", a.name), ("url", a.webhook_url),
                                                          ("kind", a.kind)) if v is not None}
    if a.event:
        fields["event_types"] = a.event
    elif a.all_events:
        fields["event_types"] = []
    fields.update(_secrets(ctx))
    if not fields:
        raise UsageError("nothing to change: give --name, --webhook-url, --kind, --event, --all-events, "
                         "a new secret or auth header (--secret-stdin, --secret-env, --auth-header-stdin, "
                         "--auth-header-env), --clear-secret or --clear-auth-header")
    h = ctx.api.doc("api.webhook.update", fields, registry=a.registry, webhook=_webhook_id(ctx, a.registry, a.webhook))
    return show_fields(ctx, h, _webhook_fields(h))


def cmd_webhook_enable(ctx: Ctx) -> int:
    a = ctx.args
    return set_enabled(ctx, "api.webhook.update", "webhook", True, registry=a.registry,
                       webhook=_webhook_id(ctx, a.registry, a.webhook))


def cmd_webhook_disable(ctx: Ctx) -> int:
    a = ctx.args
    return set_enabled(ctx, "api.webhook.update", "webhook", False, registry=a.registry,
                       webhook=_webhook_id(ctx, a.registry, a.webhook))


def cmd_webhook_delete(ctx: Ctx) -> int:
    a = ctx.args
    return delete_item(ctx, "api.webhook.delete", "webhook", a.webhook,
                       " with its queued deliveries and history", registry=a.registry,
                       webhook=_webhook_id(ctx, a.registry, a.webhook))


def _http_statuses(d: Any) -> str:
    """Each attempt's HTTP status, oldest first (`none`: the receiver did not answer)."""
    log = d.get("attempt_log") or []
    if "last_status" not in d:  # only system administrators are told
        return ", ".join("ok" if a.get("ok") else "failed" for a in log) or "-"
    if not log:
        return "-" if d.get("last_status") is None else str(d["last_status"])
    return ", ".join("none" if a.get("status") is None else str(a["status"]) for a in log)


def _finished(d: Any) -> str:
    if d.get("status") == "pending" and d.get("next_attempt_at"):
        return "next " + when(d["next_attempt_at"])
    return when(d.get("finished_at"))


DELIVERY_COLUMNS = [col("ID", "id", justify="right"), col("EVENT", "event_type", no_wrap=True),
                    col("STATUS", "status"), col("ATTEMPTS", "attempts", justify="right"),
                    Column("HTTP_STATUS", _http_statuses), col("ERROR", "last_error"),
                    col("CREATED", "created_at", when), Column("FINISHED", _finished)]


def cmd_webhook_test(ctx: Ctx) -> int:
    """Exit status 1 when the receiver did not accept the test event (the delivery is printed anyway)."""
    a = ctx.args
    hook_id = _webhook_id(ctx, a.registry, a.webhook)
    with ctx.out.spinner(f"Sending a test event to webhook {a.webhook}"):
        d = ctx.api.doc("api.webhook.test", {}, registry=a.registry, webhook=hook_id)
    delivered = d.get("status") == "delivered"
    if ctx.out.as_json:
        ctx.out.document(d)
        return 0 if delivered else 1
    log = d.get("attempt_log") or []
    duration = log[-1].get("duration_ms") if log else None
    how = [f"HTTP {d['last_status']}" if d.get("last_status") is not None else "no answer"]
    if duration is not None:
        how.append(f"in {duration} ms")
    error = f": {d['last_error']}" if d.get("last_error") else ""
    told = f" ({' '.join(how)}){error}" if "last_status" in d else ""  # only system administrators are told
    ctx.out.line(f"Test delivery {d.get('id')} to webhook {a.webhook}: {d.get('status')}{told}")
    if not delivered:
        ctx.out.note("the receiver did not accept the test event (see `ncr-trio webhook deliveries`)")
    return 0 if delivered else 1


def cmd_webhook_deliveries(ctx: Ctx) -> int:
    a = ctx.args
    hook_id = _webhook_id(ctx, a.registry, a.webhook)
    doc = listing(ctx, "api.webhook.deliveries", "deliveries", "deliveries", registry=a.registry, webhook=hook_id)
    return show_listing(ctx, doc, "deliveries", DELIVERY_COLUMNS, "deliveries")


# -- cleanup policies ------------------------------------------------------------------------------------


CLEANUP_COLUMNS = [col("ID", "id", justify="right"), col("IMAGE", "image", no_wrap=True),
                   col("TAG", "tag", no_wrap=True), col("UNTAGGED", "untagged"), col("RULE", "rule"),
                   col("N", "n", justify="right"), col("ENABLED", "enabled"), col("CREATED", "created_at", when),
                   col("DESCRIPTION", "description")]


def _cleanup_fields(p: Any) -> list[tuple[str, str]]:
    return [("id", text(p["id"])), ("registry", p["registry"]), ("image", p["image"]), ("tag", p["tag"]),
            ("untagged", text(p.get("untagged"))), ("rule", f"{p['rule']} {p['n']}"),
            ("means", p.get("description") or "-"), ("enabled", text(p.get("enabled"))),
            ("created", when(p.get("created_at")))]


def _rule(value: str) -> str:
    rule = value.strip().lower().replace("-", "_")
    if rule not in RULES:
        raise UsageError(f"RULE is one of {', '.join(RULES)}, not {value!r}")
    return rule


def cmd_cleanup_policy_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.cleanup.policies", registry=ctx.args.registry)
    return show_listing(ctx, doc, "policies", CLEANUP_COLUMNS, "cleanup policies")


def cmd_cleanup_policy_add(ctx: Ctx) -> int:
    a = ctx.args
    body = {"rule": _rule(a.rule), "n": a.n, "untagged": a.untagged, **_given(image=a.image, tag=a.tag)}
    p = ctx.api.doc("api.cleanup.policy.create", body, registry=a.registry)
    return show_fields(ctx, p, _cleanup_fields(p))


def _set_cleanup_enabled(ctx: Ctx, enabled: bool) -> int:
    a = ctx.args
    p = ctx.api.doc("api.cleanup.policy.update", {"enabled": enabled}, registry=a.registry, id=a.id)
    return done(ctx, p, f"{'Enabled' if enabled else 'Disabled'} cleanup policy #{p['id']} of registry "
                        f"{p['registry']} (image \"{p['image']}\", tag \"{p['tag']}\", {p['description']})")


def cmd_cleanup_policy_enable(ctx: Ctx) -> int:
    return _set_cleanup_enabled(ctx, True)


def cmd_cleanup_policy_disable(ctx: Ctx) -> int:
    return _set_cleanup_enabled(ctx, False)


def cmd_cleanup_policy_delete(ctx: Ctx) -> int:
    a = ctx.args
    ctx.confirm(f"delete cleanup policy #{a.id} of registry {a.registry}")
    ctx.api.call("api.cleanup.policy.delete", registry=a.registry, id=a.id)
    return done(ctx, None, f"Deleted cleanup policy #{a.id} of registry {a.registry}")


# -- schedule ---------------------------------------------------------------------------------------------


def _schedule_fields(s: Any) -> list[tuple[str, str]]:
    return [("schedule", s.get("schedule") or "None"), ("preset", s.get("preset") or "- (custom)"),
            ("timezone", s.get("timezone") or "UTC"), ("next run", when(s.get("next_run_at"))),
            ("last run", when(s.get("last_run_at")))]


def cmd_cleanup_schedule_show(ctx: Ctx) -> int:
    s = ctx.api.doc("api.cleanup.schedule", registry=ctx.args.registry)
    return show_fields(ctx, s, _schedule_fields(s))


def cmd_cleanup_schedule_set(ctx: Ctx) -> int:
    s = ctx.api.doc("api.cleanup.schedule.set", {"schedule": ctx.args.schedule}, registry=ctx.args.registry)
    return show_fields(ctx, s, _schedule_fields(s))


# -- runs -------------------------------------------------------------------------------------------------


def _policies(run: Any) -> str:
    return ", ".join(f"{p.get('kind', '?')} #{p.get('id', '?')}" for p in run.get("policies") or []) or "none"


def _show_run(ctx: Ctx, run: Any, headline: str) -> int:
    """A run: its headline, then its items as a table (or the API's JSON). 1 if the run failed."""
    failed = run.get("status") == "failed"
    if ctx.out.as_json:
        ctx.out.document(run)
        return 1 if failed else 0
    ctx.out.line(headline)
    items = run.get("items") or []
    if items:
        ctx.out.table(items, ITEM_COLUMNS)
    elif run.get("status") != "running":
        ctx.out.note("no artifact was selected" + ("" if run.get("policies") else ": no policy was enabled"))
    if failed:
        ctx.out.note(f"the run failed: {run.get('error') or 'see the server log'}")
    return 1 if failed else 0


def _run_headline(run: Any) -> str:
    dry = run.get("dry_run")
    kind = "Test run" if dry else "Cleanup run"
    deleted = f"{run.get('deleted', 0)} {'would be deleted' if dry else 'deleted'}"
    return (f"{kind} #{run.get('id')} of registry {run.get('registry')} {run.get('status')}: {deleted}, "
            f"{run.get('kept', 0)} kept")


def cmd_cleanup_test(ctx: Ctx) -> int:
    registry = ctx.args.registry
    with ctx.out.spinner(f"Test run of the cleanup of {registry} (nothing is deleted)"):
        run = ctx.api.doc("api.cleanup.test", {}, registry=registry)
    return _show_run(ctx, run, _run_headline(run))


def cmd_cleanup_run(ctx: Ctx) -> int:
    registry = ctx.args.registry
    detail = " (deletes what its enabled cleanup policies select now; `ncr-trio cleanup test` shows what)"
    if not ctx.yes and sys.stdin.isatty():
        enabled = [p for p in ctx.api.doc("api.cleanup.policies", registry=registry)["policies"] if p.get("enabled")]
        detail = (f" (deletes what its {len(enabled)} enabled cleanup "
                  f"polic{'y' if len(enabled) == 1 else 'ies'} select now; `ncr-trio cleanup test` shows what)")
    ctx.confirm(f"run the cleanup of registry {registry}", detail)
    with ctx.out.spinner(f"Cleaning up {registry}"):
        run = ctx.api.doc("api.cleanup.run", {}, registry=registry)
    return _show_run(ctx, run, _run_headline(run))


RUN_COLUMNS = [col("ID", "id", justify="right"), col("TRIGGER", "triggered_by"), col("DRY_RUN", "dry_run"),
               col("STATUS", "status"), col("STARTED", "started_at", when), col("FINISHED", "finished_at", when),
               col("DELETED", "deleted", justify="right"), col("KEPT", "kept", justify="right"),
               col("ERROR", "error")]


def cmd_cleanup_history(ctx: Ctx) -> int:
    a = ctx.args
    if a.run_id is None:
        doc = listing(ctx, "api.cleanup.runs", "runs", "cleanup runs", registry=a.registry)
        return show_listing(ctx, doc, "runs", RUN_COLUMNS, "cleanup runs")
    if a.page is not None or a.all or a.per_page is not None:
        raise UsageError("--page, --per-page and --all list runs: not with a RUN_ID")
    run = ctx.api.doc("api.cleanup.run.details", registry=a.registry, id=a.run_id)
    if ctx.out.as_json:
        ctx.out.document(run)
        return 0
    dry = run.get("dry_run")
    ctx.out.fields([("run", text(run["id"])), ("registry", run["registry"]),
                    ("triggered by", text(run.get("triggered_by"))), ("test run", text(dry)),
                    ("status", text(run.get("status"))), ("started", when(run.get("started_at"))),
                    ("finished", when(run.get("finished_at"))),
                    ("would delete" if dry else "deleted", text(run.get("deleted"))), ("kept", text(run.get("kept"))),
                    ("policies", _policies(run)), ("error", run.get("error") or "-")])
    items = run.get("items") or []
    if items:
        ctx.out.line()
        ctx.out.table(items, ITEM_COLUMNS)
    else:
        ctx.out.note("the run selected no artifact")
    return 0


# -- protection policies ------------------------------------------------------------------------------------


PROTECTION_COLUMNS = [col("ID", "id", justify="right"), col("IMAGE", "image", no_wrap=True),
                      col("TAG", "tag", no_wrap=True), col("ENABLED", "enabled"), col("CREATED", "created_at", when)]


def _protection_fields(p: Any) -> list[tuple[str, str]]:
    return [("id", text(p["id"])), ("registry", p["registry"]), ("image", p["image"]), ("tag", p["tag"]),
            ("enabled", text(p.get("enabled"))), ("created", when(p.get("created_at")))]


def cmd_protection_list(ctx: Ctx) -> int:
    doc = ctx.api.doc("api.protection.policies", registry=ctx.args.registry)
    return show_listing(ctx, doc, "policies", PROTECTION_COLUMNS, "protection policies")


def cmd_protection_add(ctx: Ctx) -> int:
    a = ctx.args
    p = ctx.api.doc("api.protection.policy.create", {"tag": a.tag, **_given(image=a.image)}, registry=a.registry)
    return show_fields(ctx, p, _protection_fields(p))


def _set_protection_enabled(ctx: Ctx, enabled: bool) -> int:
    a = ctx.args
    p = ctx.api.doc("api.protection.policy.update", {"enabled": enabled}, registry=a.registry, id=a.id)
    return done(ctx, p, f"{'Enabled' if enabled else 'Disabled'} protection policy #{p['id']} of registry "
                        f"{p['registry']} (image \"{p['image']}\", tag \"{p['tag']}\")")


def cmd_protection_enable(ctx: Ctx) -> int:
    return _set_protection_enabled(ctx, True)


def cmd_protection_disable(ctx: Ctx) -> int:
    return _set_protection_enabled(ctx, False)


def cmd_protection_delete(ctx: Ctx) -> int:
    a = ctx.args
    ctx.confirm(f"delete protection policy #{a.id} of registry {a.registry}",
                " (the tags it covers can be moved and deleted again)")
    ctx.api.call("api.protection.policy.delete", registry=a.registry, id=a.id)
    return done(ctx, None, f"Deleted protection policy #{a.id} of registry {a.registry}")


# -- the command tree ----------------------------------------------------------------------------------------


def _secret_options(sp: Any, clear: bool) -> None:
    for what, meaning in (("secret", "the HMAC key of the X-NCR-Signature header"),
                          ("auth-header", "the Authorization header sent with every delivery")):
        g = sp.add_mutually_exclusive_group()
        g.add_argument(f"--{what}-stdin", action="store_true", help=f"read {meaning} from stdin's first line")
        g.add_argument(f"--{what}-env", metavar="VAR", help=f"take {meaning} from environment variable VAR")
        if clear:
            g.add_argument(f"--clear-{what}", action="store_true", help=f"remove {meaning}")


def add_commands(sub: Any) -> None:
    """`webhook`, `cleanup` and `protection`, on the top-level subparsers `sub`."""
    leaf = add_leaf

    hook = add_group(sub, "webhook", "a registry's webhooks: list, show, create, update, enable, disable, delete, "
                                     "send a test, delivery history")

    def hook_leaf(name: str, help: str, handler: Any, destructive: bool = False, with_id: bool = True) -> Any:
        sp = leaf(hook, name, help, handler, destructive)
        sp.add_argument("registry")
        if with_id:
            sp.add_argument("webhook", metavar="WEBHOOK", help="the webhook's ID (or its name)")
        return sp

    paging_options(hook_leaf("list", "a registry's webhooks (never their secrets)", cmd_webhook_list,
                             with_id=False))
    hook_leaf("show", "one webhook", cmd_webhook_show)
    sp = hook_leaf("create", "create a webhook", cmd_webhook_create, with_id=False)
    sp.add_argument("name", help="1 to 64 letters, digits, . _ -; unique in the registry")
    sp.add_argument("webhook_url", metavar="URL", help="where deliveries are POSTed (http:// or https://)")
    sp.add_argument("--kind", choices=["http", "slack"], default="http",
                    help="http (the JSON payload) or slack (an incoming-webhook message); default http")
    sp.add_argument("--event", action="append", choices=EVENT_TYPES, metavar="TYPE",
                    help=f"send only this event type (repeatable; default every type): {', '.join(EVENT_TYPES)}")
    sp.add_argument("--disabled", action="store_true", help="create it disabled")
    _secret_options(sp, clear=False)
    sp.epilog = "The secret and the auth header are never printed, nor shown again by the server."
    sp = hook_leaf("update", "change a webhook", cmd_webhook_update)
    sp.add_argument("--name", help="a new name")
    sp.add_argument("--webhook-url", metavar="URL", help="a new URL to POST deliveries to (--url is the server's)")
    sp.add_argument("--kind", choices=["http", "slack"])
    sp.add_argument("--event", action="append", choices=EVENT_TYPES, metavar="TYPE",
                    help="send only these event types from now on (repeatable)")
    sp.add_argument("--all-events", action="store_true", help="send every event type from now on")
    _secret_options(sp, clear=True)
    hook_leaf("enable", "enable a webhook (its held deliveries go out)", cmd_webhook_enable)
    hook_leaf("disable", "disable a webhook (it gets no new deliveries)", cmd_webhook_disable)
    hook_leaf("delete", "delete a webhook, its queued deliveries and its history", cmd_webhook_delete,
              destructive=True)
    sp = hook_leaf("test", "send a test event now and show how it went (exit 1 if not delivered)", cmd_webhook_test)
    paging_options(hook_leaf("deliveries", "a webhook's delivery history, newest first, with each attempt's "
                                           "HTTP status", cmd_webhook_deliveries))

    cleanup = add_group(sub, "cleanup", "a registry's cleanup: policies, schedule, test run, run now, history")
    policy = add_group(cleanup, "policy", "list, add, enable, disable and delete cleanup policies", dest="action")

    def policy_leaf(parent: Any, name: str, help: str, handler: Any, destructive: bool = False,
                    with_id: bool = True) -> Any:
        sp = leaf(parent, name, help, handler, destructive)
        sp.add_argument("registry")
        if with_id:
            sp.add_argument("id", type=int, metavar="ID", help="the policy's ID (see `list`)")
        return sp

    policy_leaf(policy, "list", "a registry's cleanup policies", cmd_cleanup_policy_list, with_id=False)
    sp = policy_leaf(policy, "add", "add a cleanup policy (created enabled)", cmd_cleanup_policy_add, with_id=False)
    sp.add_argument("rule", metavar="RULE", help="older_than (N days: neither pushed nor pulled within them), "
                    "retain_pushed or retain_pulled (keep the N most recently pushed / pulled artifacts per image)")
    sp.add_argument("n", type=int, metavar="N", help="days (older_than) or artifacts (retain_*), 0 to 1000000")
    sp.add_argument("--image", help="image pattern (*, **, ?, {a,b}; default **)")
    sp.add_argument("--tag", help="tag pattern (default **)")
    sp.add_argument("--untagged", action="store_true", help="include untagged artifacts")
    policy_leaf(policy, "enable", "enable a cleanup policy", cmd_cleanup_policy_enable)
    policy_leaf(policy, "disable", "disable a cleanup policy (runs skip it)", cmd_cleanup_policy_disable)
    policy_leaf(policy, "delete", "delete a cleanup policy", cmd_cleanup_policy_delete, destructive=True)

    schedule = add_group(cleanup, "schedule", "when the registry's cleanup runs by itself (UTC)", dest="action")
    leaf(schedule, "show", "the schedule, its next and last run", cmd_cleanup_schedule_show).add_argument("registry")
    sp = leaf(schedule, "set", "set the schedule", cmd_cleanup_schedule_set)
    sp.add_argument("registry")
    sp.add_argument("schedule", metavar="SCHEDULE",
                    help='None, Hourly, Daily, Weekly, or five cron fields in UTC ("30 2 * * 1-5")')

    leaf(cleanup, "test", "a test run: what a run would delete now (nothing is deleted)", cmd_cleanup_test
         ).add_argument("registry")
    leaf(cleanup, "run", "run the cleanup now (deletes; asks first)", cmd_cleanup_run, destructive=True
         ).add_argument("registry")
    sp = leaf(cleanup, "history", "the registry's cleanup runs, newest first; a run's items with RUN_ID",
              cmd_cleanup_history)
    sp.add_argument("registry")
    sp.add_argument("run_id", type=int, nargs="?", metavar="RUN_ID", help="one run, with every item it decided on")
    paging_options(sp)

    prot = add_group(sub, "protection", "a registry's protection policies: list, add, enable, disable, delete")
    policy_leaf(prot, "list", "a registry's protection policies", cmd_protection_list, with_id=False)
    sp = policy_leaf(prot, "add", "protect tags from being moved or deleted (created enabled)", cmd_protection_add,
                     with_id=False)
    sp.add_argument("tag", metavar="TAG_PATTERN", help="tag pattern (*, **, ?, {a,b})")
    sp.add_argument("--image", help="image pattern (default **)")
    policy_leaf(prot, "enable", "enable a protection policy", cmd_protection_enable)
    policy_leaf(prot, "disable", "disable a protection policy (it protects nothing)", cmd_protection_disable)
    policy_leaf(prot, "delete", "delete a protection policy", cmd_protection_delete, destructive=True)


__all__ = ["EVENT_TYPES", "RULES", "add_commands"]
