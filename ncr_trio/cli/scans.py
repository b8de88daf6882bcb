"""Vulnerability scanning through the management API (docs/scanning.md): an artifact's scan and its report,
and the installation's schedule, scan of everything and allowlists (system administrators).

    ncr-trio scan start|stop|status REGISTRY/IMAGE@DIGEST|REGISTRY/IMAGE:TAG   (start --wait follows it)
    ncr-trio scan report REGISTRY/IMAGE@DIGEST|:TAG [--sort severity|package|id|fixed] [--min-severity LEVEL]
    ncr-trio scan schedule [None|Hourly|Daily|Weekly|CRON]                (no argument: show it)
    ncr-trio scan all
    ncr-trio scan allowlist show [--registry R]
    ncr-trio scan allowlist set [--registry R] (IDS... | --file FILE | --clear | --empty)

A registry's scan on push and pull prevention are `ncr-trio registry update R --scan-on-push
--prevent-pull-severity LEVEL|none` (cli/commands.py, beside the registry's other settings). IDs may be
given as several arguments, or in one separated by commas or newlines (a file's content as it is): the server
splits them. `scan start --wait` exits 1 unless the scan ends Done, so scripts can chain on it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ncr_trio.cli.commands import Ctx, add_group, add_leaf, done, parse_ref, resolve_digest, show_fields
from ncr_trio.cli.output import Column, UsageError, scan_figures, text, when
from ncr_trio.limits import SCAN_THRESHOLDS as THRESHOLDS

POLL_SECONDS = 0.5
# Worst first: the report's default order, and what --min-severity compares with.
SEVERITIES = ("Critical", "High", "Medium", "Low", "Unknown")
SORTS = ("severity", "package", "id", "fixed")


def rank(severity: Any) -> int:
    """0 for Critical ... 4 for Unknown (an unknown label sorts last)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _artifact(ctx: Ctx) -> tuple[str, str, str]:
    ref = parse_ref(ctx.args.artifact, ctx.conn.url, want="artifact")
    return ref.registry, ref.image, resolve_digest(ctx, ref)


def _status_fields(s: Any) -> list[tuple[str, str]]:
    pairs = [("digest", s["digest"]), ("status", s["status"] + (" (stopping)" if s.get("stop_requested")
                                                                  and s["status"] == "Scanning" else "")),
             ("trigger", s.get("trigger") or "-"), ("requested", when(s.get("requested_at"))),
             ("started", when(s.get("started_at"))), ("ended", when(s.get("ended_at")))]
    if s.get("error"):
        pairs.append(("error", s["error"]))
    v = s.get("vulnerabilities")
    pairs.append(("vulnerabilities", scan_figures(v)))
    if v:
        pairs.append(("database", v.get("db_version") or "-"))
    return pairs


def cmd_scan_status(ctx: Ctx) -> int:
    registry, image, digest = _artifact(ctx)
    s = ctx.api.doc("api.artifact.scan", registry=registry, image=image, digest=digest)
    return show_fields(ctx, s, _status_fields(s))


def cmd_scan_start(ctx: Ctx) -> int:
    """Exit status with --wait: 0 when the scan ends Done, 1 when it ends Stopped or Failed."""
    registry, image, digest = _artifact(ctx)
    where: dict[str, Any] = {"registry": registry, "image": image, "digest": digest}
    s = ctx.api.doc("api.artifact.scan.start", **where)
    if not ctx.args.wait:
        return done(ctx, s, f"Scanning {registry}/{image}@{digest} (`ncr-trio scan status` follows it)")
    deadline = time.monotonic() + ctx.args.timeout
    with ctx.out.status(f"Scanning {registry}/{image}@{digest}") as update:
        while s["status"] == "Scanning":
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(POLL_SECONDS)
            s = ctx.api.doc("api.artifact.scan", **where)
            update(f"Scanning {registry}/{image}@{digest}: {'started' if s.get('started_at') else 'queued'}")
    show_fields(ctx, s, _status_fields(s))
    return 0 if s["status"] == "Done" else 1


def cmd_scan_stop(ctx: Ctx) -> int:
    registry, image, digest = _artifact(ctx)
    s = ctx.api.doc("api.artifact.scan.stop", registry=registry, image=image, digest=digest)
    state = "stopping" if s["status"] == "Scanning" else s["status"]
    return done(ctx, s, f"{registry}/{image}@{digest}: {state}")


def _sort_key(how: str) -> Any:
    if how == "package":
        return lambda v: (v["package"], rank(v["severity"]), v["id"])
    if how == "id":
        return lambda v: (v["id"], v["package"])
    if how == "fixed":  # the fixable first, worst first among them
        return lambda v: (v.get("fixed") is None, rank(v["severity"]), v["package"], v["id"])
    return lambda v: (rank(v["severity"]), -(v.get("score") or 0.0), v["package"], v["id"])


def _report_columns(platform: bool, wide: bool) -> list[tuple[str, Any]]:
    cols: list[tuple[str, Any]] = [("PLATFORM", lambda v: v["_platform"])] if platform else []
    cols += [("SEVERITY", lambda v: v["severity"]), ("SCORE", lambda v: text(v.get("score")) or "-"),
             ("ID", lambda v: v["id"]), ("ALIASES", lambda v: text(v.get("aliases")) or "-"),
             ("PACKAGE", lambda v: v["package"]), ("INSTALLED", lambda v: v["installed"]),
             ("FIXED", lambda v: v.get("fixed") or "-")]
    if wide:
        cols += [("PATH", lambda v: v.get("path") or "-"), ("SUMMARY", lambda v: v.get("summary") or "-"),
                 ("LINKS", lambda v: text(v.get("links")) or "-")]
    return cols


def cmd_scan_report(ctx: Ctx) -> int:
    """The last finished scan's vulnerabilities, one table (an index: a PLATFORM column), sorted by
    severity (worst first) unless --sort says otherwise; -o json: the API's report as it came."""
    a = ctx.args
    registry, image, digest = _artifact(ctx)
    r = ctx.api.doc("api.artifact.vulnerabilities", registry=registry, image=image, digest=digest)
    if ctx.out.as_json:
        ctx.out.document(r)
        return 0
    floor = rank(a.min_severity.capitalize()) if a.min_severity else len(SEVERITIES)
    rows = [{**v, "_platform": p.get("platform") or "-"} for p in r["platforms"] for v in p["vulnerabilities"]
            if rank(v["severity"]) <= floor]
    rows.sort(key=_sort_key(a.sort), reverse=a.reverse)
    unsupported = sorted({u for p in r["platforms"] for u in p.get("unsupported") or []})
    ctx.out.fields([("digest", r["digest"]), ("scanned", when(r.get("ended_at"))), ("database", r["db_version"]),
                    ("vulnerabilities", scan_figures(r) if r["total"] else "none"),
                    *([("not read", text(unsupported))] if unsupported else [])])
    if not rows:
        ctx.out.note("no vulnerabilities" + (f" of severity {a.min_severity.capitalize()} or higher"
                                             if a.min_severity else ""))
        return 0
    ctx.out.line()
    ctx.out.table(rows, [Column(h, f, no_wrap=h in ("SEVERITY", "ID")) for h, f in
                         _report_columns(len(r["platforms"]) > 1, a.wide)])
    return 0


def _schedule_fields(s: Any) -> list[tuple[str, str]]:
    return [("schedule", s.get("schedule") or "None"), ("preset", s.get("preset") or "-"),
            ("timezone", s.get("timezone") or "UTC"), ("next run", when(s.get("next_run_at"))),
            ("last run", when(s.get("last_run_at")))]


def cmd_scan_schedule(ctx: Ctx) -> int:
    """No argument: the schedule; with one: set it (None, Hourly, Daily, Weekly or five cron fields)."""
    if not ctx.args.schedule:
        s = ctx.api.doc("api.scan.schedule")
    else:
        s = ctx.api.doc("api.scan.schedule.set", {"schedule": " ".join(ctx.args.schedule)})
    return show_fields(ctx, s, _schedule_fields(s))


def cmd_scan_all(ctx: Ctx) -> int:
    r = ctx.api.doc("api.scan.all")
    return done(ctx, r, f"Queued {r['queued']} artifacts for a scan")


def _ids(ctx: Ctx) -> str | list[str] | None:
    """The IDs to set, as the server reads them (commas, spaces or newlines); [] to empty a list, None to
    drop a registry's own list."""
    a = ctx.args
    chosen = [name for name, on in (("IDS", bool(a.ids)), ("--file", a.file is not None), ("--clear", a.clear),
                                    ("--empty", a.empty)) if on]
    if len(chosen) != 1:
        raise UsageError("give the IDs (as arguments, or --file FILE), or --clear" + (", or --empty" if a.registry
                                                                                      else "") +
                         (f": not {' and '.join(chosen)} together" if chosen else ""))
    if a.empty and not a.registry:
        raise UsageError("--empty is for a registry's own list (--registry R); the global list: --clear")
    if a.clear:
        return None if a.registry else []
    if a.empty:
        return []
    if a.file is not None:
        try:
            content = sys.stdin.read() if a.file == "-" else Path(a.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--file {a.file}: {e}") from None
        return content if content.strip() else []
    return ",".join(a.ids)


def _show_allowlist(ctx: Ctx, doc: Any, ids: list[str] | None, whose: str) -> int:
    if ctx.out.as_json:
        ctx.out.document(doc)
    elif ids is None:
        ctx.out.line(f"{whose}: no list of its own (the global allowlist applies)")
    elif not ids:
        ctx.out.line(f"{whose}: empty")
    else:
        for i in ids:
            ctx.out.line(i)
    return 0


def cmd_allowlist_show(ctx: Ctx) -> int:
    """-o json: the global list's answer ({"ids"}), or a registry's scan settings (its `allowlist`)."""
    if ctx.args.registry:
        s = ctx.api.doc("api.registry.scan", registry=ctx.args.registry)
        return _show_allowlist(ctx, s, s["allowlist"], f"registry {ctx.args.registry}")
    doc = ctx.api.doc("api.scan.allowlist")
    return _show_allowlist(ctx, doc, doc["ids"], "the global allowlist")


def cmd_allowlist_set(ctx: Ctx) -> int:
    ids = _ids(ctx)
    if ctx.args.registry:
        s = ctx.api.doc("api.registry.scan.update", {"allowlist": ids}, registry=ctx.args.registry)
        return _show_allowlist(ctx, s, s["allowlist"], f"registry {ctx.args.registry}")
    doc = ctx.api.doc("api.scan.allowlist.set", {"ids": ids})
    return _show_allowlist(ctx, doc, doc["ids"], "the global allowlist")


def add_commands(sub: Any) -> None:
    scan = add_group(sub, "scan", "vulnerability scans: start, stop, status, report; the schedule and allowlists")
    target = "REGISTRY/IMAGE@DIGEST"
    about = "the artifact (or REGISTRY/IMAGE:TAG of it)"
    sp = add_leaf(scan, "start", "scan an artifact now (an image, or an index: each platform's image)", cmd_scan_start)
    sp.add_argument("artifact", metavar=target, help=about)
    sp.add_argument("--wait", action="store_true", help="follow the scan until it ends; exit 1 unless it ends Done")
    sp.add_argument("--timeout", type=float, default=3600, metavar="SECONDS", help="--wait at most this long")
    add_leaf(scan, "stop", "stop an artifact's scan under way (it ends Stopped)", cmd_scan_stop
             ).add_argument("artifact", metavar=target, help=about)
    add_leaf(scan, "status", "an artifact's scan: Not Scanned, Scanning, Stopped, Failed or Done, with its figures",
             cmd_scan_status).add_argument("artifact", metavar=target, help=about)
    sp = add_leaf(scan, "report", "the vulnerabilities the last finished scan found, worst first", cmd_scan_report)
    sp.add_argument("artifact", metavar=target, help=about)
    sp.add_argument("--sort", choices=SORTS, default="severity",
                    help="severity (worst first; the default), package, id, or fixed (the fixable first)")
    sp.add_argument("--reverse", action="store_true", help="the other way round (severity: the least first)")
    sp.add_argument("--min-severity", type=str.capitalize, choices=list(THRESHOLDS), metavar="LEVEL",
                    help="only this severity or worse (Low, Medium, High, Critical)")
    sp.add_argument("--wide", action="store_true", help="also the path, summary and links")
    sp = add_leaf(scan, "schedule", "show, or set, when every artifact is scanned again (system administrators)",
                  cmd_scan_schedule)
    sp.add_argument("schedule", nargs="*", metavar="SCHEDULE", help='None, Hourly, Daily (00:00 UTC), Weekly '
                    '(Saturday 00:00 UTC), or five cron fields in UTC ("0 3 * * *"); none: show it')
    add_leaf(scan, "all", "scan every image and index now (system administrators)", cmd_scan_all)
    allow = add_group(scan, "allowlist", "CVE allowlists: the global one, and a registry's own (which replaces it)",
                      dest="action")
    add_leaf(allow, "show", "the global allowlist, or a registry's own (--registry)", cmd_allowlist_show
             ).add_argument("--registry", metavar="R", help="the registry's own list")
    sp = add_leaf(allow, "set", "replace the global allowlist, or a registry's own (--registry)", cmd_allowlist_set)
    sp.add_argument("ids", nargs="*", metavar="IDS", help="CVE-..., GHSA-..., separated by commas or newlines")
    sp.add_argument("--registry", metavar="R", help="the registry's own list (it replaces the global one)")
    sp.add_argument("--file", metavar="FILE", help="read the IDs from FILE (- for stdin), commas or newlines")
    sp.add_argument("--clear", action="store_true",
                    help="empty the global list; with --registry: drop its own list (the global one applies)")
    sp.add_argument("--empty", action="store_true",
                    help="with --registry: an own list that is empty (nothing allowlisted, the global list ignored)")


__all__ = ["add_commands"]
