"""The `ncr-trio` command line: the server (`serve`), local GC (`gc`) and scrub (`fsck`), and a client of a running
server's management API (everything else; see `ncr-trio --help`).

    cli/__init__.py     the parser and `main` (the `ncr-trio` entry point)
    cli/local.py        serve, and `gc`, `fsck` and `vulndb` on a local data directory
    cli/commands.py     the API commands, one handler per verb
    cli/automation.py   webhook, cleanup and protection (a registry's automation), on commands.py's helpers
    cli/caches.py       image caches (`cache`), on commands.py's helpers
    cli/replication.py  remotes (`remote`) and replication policies, runs and history (`replication`)
    cli/scans.py        vulnerability scans, their reports, the schedule and allowlists (`scan`)
    cli/credentials.py  the login file and the flags > environment > file precedence
    cli/output.py       tables, fields, JSON, progress, confirmations
"""

from __future__ import annotations

import argparse
import sys

from ncr_trio import __version__
from ncr_trio.cli import automation, caches, commands, credentials, local, replication, scans, trust

EPILOG = f"""\
API commands use the server and credentials given by, in order:
  flags          --url, --username (a user or an access key ID), --password-stdin, --cacert
  environment    NCR_URL, NCR_USERNAME, NCR_PASSWORD, NCR_CACERT
  login file     written by `ncr-trio login` (mode 0600), used only for the server it names:
                 {credentials.config_path()}
  default        {credentials.DEFAULT_URL}
-o json prints the API's JSON answer (for scripts); tables and messages are for people. Progress is
shown on stderr when it is a terminal. Deleting (and `cleanup run`) asks first; without a terminal it needs --yes.
Exit status: 0 ok; 1 the server refused (its message on stderr), could not be reached, or no login; 2 usage.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncr-trio", description="A self-hosted OCI container registry on Trio.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                parents=[commands.CLIENT_OPTIONS])
    p.add_argument("--version", action="version", version=f"ncr-trio {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.add_serve(sub)
    local.add_fsck(sub)
    local.add_vulndb(sub)
    commands.add_commands(sub)
    automation.add_commands(sub)
    caches.add_commands(sub)
    replication.add_commands(sub)
    scans.add_commands(sub)
    trust.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return local.run_serve(args)
    if args.command == "fsck":
        return local.run_fsck(args)
    if args.command == "vulndb":
        return local.run_vulndb(args)
    if args.command == "gc" and args.verb is None:
        remote = [f"--{o.replace('_', '-')}" for o in ("url", "username", "password_stdin", "cacert") if o in args]
        if remote:
            parser.exit(2, f"ncr-trio: error: `ncr-trio gc` without a verb works on a local data directory; "
                           f"{', '.join(remote)} belong to `ncr-trio gc run` (through the server's API)\n")
        return local.run_local_gc(args)
    if args.command == "gc" and (given := local.local_gc_given(args)):
        parser.exit(2, f"ncr-trio: error: {', '.join(given)} belong to `ncr-trio gc` on a local data directory, "
                       f"not `gc {args.verb}` (see `ncr-trio gc --help`)\n")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        return 2
    return commands.run(args, handler)


__all__ = ["main"]
