"""The `ncr-trio` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import trio

from ncr_trio import __version__
from ncr_trio.config import load


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncr-trio", description="A self-hosted OCI container registry on Trio.")
    p.add_argument("--version", action="version", version=f"ncr-trio {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data", type=Path, help="data directory (default ./data)")
        sp.add_argument("--config", type=Path, help="TOML configuration file")

    serve = sub.add_parser("serve", help="run the registry server")
    common(serve)
    serve.add_argument("--listen", action="append", help="HOST:PORT to listen on (repeatable; default 127.0.0.1:5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1)")

    serve.add_argument("--private-listen", action="append",
                       help="HOST:PORT of a private listener (a registry's private URI; repeatable)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")

    _client_commands(sub)

    gc = sub.add_parser("gc", help="remove unreferenced blobs, manifests and expired uploads (online)")
    common(gc)
    gc.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    gc.add_argument("--delete-untagged", action="store_true", help="also delete manifests no tag or index keeps")
    gc.add_argument("--grace", type=int, help="seconds: leave anything younger alone (default from config)")
    gc.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from ncr_trio.serve import serve

        config = load(args.config, data_dir=args.data, listen=tuple(args.listen) if args.listen else None,
                      private_listen=tuple(args.private_listen) if args.private_listen else None,
                      tls_cert=args.tls_cert, tls_key=args.tls_key, workers=args.workers)
        return serve(config)
    if args.command == "gc":
        from ncr_trio.registry import RegistryService

        overrides = {"data_dir": args.data, "gc_grace_seconds": args.grace}
        if args.delete_untagged:
            overrides["gc_delete_untagged"] = True
        config = load(args.config, **overrides)

        async def run() -> int:
            service = RegistryService.open(config)
            try:
                report = await service.gc.run(dry_run=args.dry_run)
            finally:
                service.close()
            if args.json:
                print(json.dumps(report.__dict__, indent=2))
            else:
                print(report.summary())
                for digest in report.blobs:
                    print(f"  blob {digest}")
                for ref in report.manifests:
                    print(f"  manifest {ref}")
            return 0

        return trio.run(run)
    if args.command in _CLIENT_COMMANDS:
        return _run_client(args)
    return 2


# -- commands that talk to a running server's management API -----------------------------------

_CLIENT_COMMANDS = {"registry", "user", "key", "role", "audit"}


def _client_commands(sub: Any) -> None:
    def client(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--url", default=os.environ.get("NCR_URL", "http://127.0.0.1:5000"),
                        help="the server (default $NCR_URL or http://127.0.0.1:5000)")
        sp.add_argument("--username", default=os.environ.get("NCR_USERNAME", ""),
                        help="user name or access key ID (default $NCR_USERNAME)")
        sp.add_argument("--password-stdin", action="store_true",
                        help="read the password or secret from stdin (default $NCR_PASSWORD)")
        sp.add_argument("--cacert", default=os.environ.get("NCR_CACERT"), help="CA certificate to trust (HTTPS)")
        sp.add_argument("--output", "-o", choices=["table", "json"], default="table")
        return sp

    reg = sub.add_parser("registry", help="create, list, show, update and delete registries").add_subparsers(
        dest="verb", required=True)
    for verb in ("create", "update"):
        sp = client(reg.add_parser(verb))
        sp.add_argument("name")
        sp.add_argument("--description")
        sp.add_argument("--public-read", choices=["on", "off"], help="anyone may pull without logging in")
        sp.add_argument("--public-uri", choices=["on", "off"], help="off: reachable only on private listeners")
        sp.add_argument("--allow-cidr", action="append", help="restrict clients to this CIDR block (repeatable)")
        sp.add_argument("--clear-cidrs", action="store_true", help="remove the CIDR allowlist")
    client(reg.add_parser("list"))
    client(reg.add_parser("show")).add_argument("name")
    sp = client(reg.add_parser("delete"))
    sp.add_argument("name")
    sp.add_argument("--force", action="store_true", help="also delete the images it holds")

    user = sub.add_parser("user", help="create, list and delete users (system administrators)").add_subparsers(
        dest="verb", required=True)
    sp = client(user.add_parser("create"))
    sp.add_argument("name")
    sp.add_argument("--admin", action="store_true", help="a system administrator")
    sp.add_argument("--new-password-env", help="environment variable holding the new user's password")
    client(user.add_parser("list"))
    client(user.add_parser("delete")).add_argument("name")

    key = sub.add_parser("key", help="access keys: create (the secret is shown once), list, revoke").add_subparsers(
        dest="verb", required=True)
    sp = client(key.add_parser("create"))
    sp.add_argument("--user", default="me")
    sp.add_argument("--description", default="")
    client(key.add_parser("list")).add_argument("--user", default="me")
    sp = client(key.add_parser("revoke"))
    sp.add_argument("key_id")
    sp.add_argument("--user", default="me")

    role = sub.add_parser("role", help="grant, revoke and list users' roles").add_subparsers(dest="verb", required=True)
    sp = client(role.add_parser("grant"))
    sp.add_argument("user")
    sp.add_argument("role", help="project-admin, project-member, service-admin, service-viewer or image-uploader")
    sp.add_argument("--registry", default="*", help="one registry, or * (every registry; the default)")
    sp = client(role.add_parser("revoke"))
    sp.add_argument("user")
    sp.add_argument("--registry", default="*")
    client(role.add_parser("list")).add_argument("user", nargs="?", default="me")

    audit = client(sub.add_parser("audit", help="query the audit log (system administrators)"))
    audit.add_argument("--actor")
    audit.add_argument("--action", help="e.g. login, push, pull, delete, key, role")
    audit.add_argument("--registry")
    audit.add_argument("--limit", type=int, default=50)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.description is not None:
        out["description"] = args.description
    for flag in ("public_read", "public_uri"):
        value = getattr(args, flag)
        if value is not None:
            out[flag] = value == "on"
    if args.clear_cidrs:
        out["allowed_cidrs"] = []
    elif args.allow_cidr:
        out["allowed_cidrs"] = args.allow_cidr
    return out


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _run_client(args: argparse.Namespace) -> int:
    from ncr_trio.client import APIError, Client

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else os.environ.get("NCR_PASSWORD", "")
    c = Client(args.url, args.username, password, args.cacert)
    verb = getattr(args, "verb", None)
    columns: list[str] = []
    try:
        match (args.command, verb):
            case ("registry", "create"):
                result: Any = c.create_registry(args.name, **_settings(args))
            case ("registry", "update"):
                result = c.update_registry(args.name, **_settings(args))
            case ("registry", "list"):
                result, columns = c.registries(), ["name", "public_read", "public_uri", "allowed_cidrs", "created_at"]
            case ("registry", "show"):
                result = c.registry(args.name)
            case ("registry", "delete"):
                result = c.delete_registry(args.name, args.force)
            case ("user", "create"):
                new_password = os.environ.get(args.new_password_env) if args.new_password_env else None
                result = c.create_user(args.name, new_password, args.admin)
            case ("user", "list"):
                result, columns = c.users(), ["name", "system_admin", "created_at"]
            case ("user", "delete"):
                result = c.delete_user(args.name)
            case ("key", "create"):
                result = c.create_key(args.user, args.description)
                if args.output == "table":
                    print(f"access key ID: {result['id']}\nsecret:        {result['secret']}\n"
                          "The secret is shown only this once: store it now.")
                    return 0
            case ("key", "list"):
                result = c.keys(args.user)
                columns = ["id", "description", "created_at", "last_used_at", "rotation_due"]
            case ("key", "revoke"):
                result = c.revoke_key(args.key_id, args.user)
            case ("role", "grant"):
                result = c.set_role(args.user, args.registry, args.role)
            case ("role", "revoke"):
                result = c.drop_role(args.user, args.registry)
            case ("role", "list"):
                result, columns = c.roles(args.user), ["registry", "role"]
            case ("audit", _):
                result = c.audit(actor=args.actor, action=args.action, registry=args.registry, limit=args.limit)
                columns = ["id", "at", "actor", "action", "outcome", "registry", "repository", "target", "client"]
            case _:
                return 2
    except APIError as e:
        print(f"ncr-trio: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ncr-trio: cannot reach {args.url}: {e}", file=sys.stderr)
        return 1
    if args.output == "json" or not columns:
        if result is not None:
            print(json.dumps(result, indent=2))
    else:
        print(_table(result, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
