"""The `ncr-trio` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
                      workers=args.workers)
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
    return 2


if __name__ == "__main__":
    sys.exit(main())
