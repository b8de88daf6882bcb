"""Commands that work on this machine's data directory: `serve`, `gc` without a verb, `fsck` and `vulndb`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncr_trio.config import load

if TYPE_CHECKING:
    from ncr_trio.registry import FsckReport, RegistryService

GC_HELP = """\
Garbage collection, two ways:

  ncr-trio gc run [--dry-run] [--delete-untagged]   through a running server's API (system administrators;
                                                    uses your login, like every API command)
  ncr-trio gc history                               the server's past GC runs
  ncr-trio gc [--data DIR] [--config FILE] [--dry-run] [--delete-untagged] [--grace S] [--json]
                                                    directly on a data directory of this machine (default
                                                    ./data), next to a live server or with none running

`gc` with no verb is the local one; it needs access to the data directory and its database, not a login.
"""


def _data_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--data", type=Path, help="data directory (default ./data)")
    sp.add_argument("--config", type=Path, help="the server's TOML configuration file")


def add_serve(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the registry server", description="Run the registry server.")
    _data_options(serve)
    serve.add_argument("--listen", action="append", help="HOST:PORT to listen on (repeatable; default 127.0.0.1:5000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: one per CPU this process may use)")
    serve.add_argument("--private-listen", action="append",
                       help="HOST:PORT of a private listener (a registry's private URI; repeatable)")
    serve.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.set_defaults(handler=run_serve)


def add_local_gc_options(gc: argparse.ArgumentParser) -> None:
    """The options of `ncr-trio gc` without a verb (on the `gc` parser itself)."""
    _data_options(gc)
    gc.add_argument("--dry-run", dest="local_dry_run", action="store_true",
                    help="local: report what would be removed, remove nothing")
    gc.add_argument("--delete-untagged", dest="local_delete_untagged", action="store_true",
                    help="local: also delete manifests no tag, index or subject keeps")
    gc.add_argument("--grace", type=int, help="local: seconds; leave anything younger alone (default from config)")
    gc.add_argument("--json", action="store_true", help="local: print the report as JSON (also: -o json)")


def add_fsck(sub: Any) -> None:
    fsck = sub.add_parser(
        "fsck", help="check every stored blob against its digest (local data directory)",
        description="Read every blob of a data directory of this machine again and re-hash it; report those whose "
                    "file is missing or whose bytes no longer match their digest. With --repair, move those to "
                    "<data>/quarantine/: pulls then answer BLOB_UNKNOWN until the blob is pushed again. Works next "
                    "to a live server or with none running. Exit status 1 when any blob is damaged.")
    _data_options(fsck)
    fsck.add_argument("--repair", action="store_true", help="move damaged blobs to <data>/quarantine/")
    fsck.add_argument("--json", action="store_true", help="print the report as JSON (also: -o json)")


def add_vulndb(sub: Any) -> None:
    vulndb = sub.add_parser(
        "vulndb", help="the vulnerability database the scanner uses (local data directory)",
        description="Import OSV data (all.zip dumps, directories or files of OSV JSON/YAML records) or Alpine secdb "
                    "files into <data>/vulndb/osv.sqlite, built beside the live one and swapped in atomically: "
                    "scans under way finish on the version they started with. Nothing is ever downloaded.")
    verbs = vulndb.add_subparsers(dest="verb", required=True, metavar="VERB")
    imp = verbs.add_parser(
        "import", help="import files into the database",
        description="Import OSV data: files of this machine, or the files (layers) of an OCI artifact pushed into "
                    "this registry (`oras push`: each file's name is its layer's title annotation).")
    imp.add_argument("files", nargs="*", type=Path, metavar="FILE", help="an OSV all.zip, a directory or an OSV file")
    imp.add_argument("--artifact", metavar="REPOSITORY:TAG|REPOSITORY@DIGEST",
                     help="also import the files of this artifact of the registry (read from the data directory)")
    imp.add_argument("--replace", action="store_true", help="start from an empty database (default: add to it)")
    status = verbs.add_parser("status", help="what the database holds", description="What the database holds.")
    for sp in (imp, status):
        _data_options(sp)
        sp.add_argument("--json", action="store_true", help="print JSON (also: -o json)")


def run_vulndb(args: argparse.Namespace) -> int:
    from ncr_trio.cli.output import Output
    from ncr_trio.scan.jobs import vulndb_path
    from ncr_trio.scan.vulndb import ImportSummary, VulnDB, VulnDBError, import_sources

    config = load(args.config, data_dir=args.data)
    live = vulndb_path(config.data_dir)
    out = Output("json" if _as_json(args) else "table")
    summary: ImportSummary | None = None
    try:
        if args.verb == "import":
            missing = [str(f) for f in args.files if not f.exists()]
            if missing:
                print(f"ncr-trio: no such file: {', '.join(missing)}", file=sys.stderr)
                return 1
            if not args.files and not args.artifact:
                print("ncr-trio: name FILEs to import, or --artifact", file=sys.stderr)
                return 2
            live.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".artifact-", dir=live.parent) as tmp:  # beside the database
                files = list(args.files)
                if args.artifact:
                    files += _artifact_files(args, args.artifact, Path(tmp))
                summary = import_sources(live, files, replace=args.replace)
        elif live.exists():
            with VulnDB(live) as db:
                summary = db.status()
    except VulnDBError as e:
        print(f"ncr-trio: {e}", file=sys.stderr)
        return 1
    if summary is None:
        if out.as_json:
            out.document({"path": str(live), "version": None})
        else:
            out.line(f"No vulnerability database at {live}: import one (ncr-trio vulndb import FILE...)")
        return 0
    if out.as_json:
        out.document({"path": str(live), **dataclasses.asdict(summary)})
        return 0
    out.line(f"{'Imported' if args.verb == 'import' else 'Database'} {live}: version {summary.version}, "
             f"{summary.records} records, newest modification {summary.newest_modified or '-'}")
    for s in summary.sources:
        out.line(f"  {s.name} ({s.kind}): {s.records} records, {s.skipped} skipped, {s.withdrawn} withdrawn")
    return 0


def _artifact_files(args: argparse.Namespace, reference: str, into: Path) -> list[Path]:
    """The layers of an artifact of this registry as files in `into`, named by their title annotation
    (an OSV all.zip, a secdb YAML, ...; without one, by digest, as a .zip or .json by their first bytes)."""
    import trio

    from ncr_trio.errors import RegistryError
    from ncr_trio.scan.vulndb import VulnDBError
    from ncr_trio.storage.keys import blob_key
    from ncr_trio.types import Digest, MediaType, load_json

    repository, sep, ref = reference.rpartition("@")
    if not sep:
        repository, sep, ref = reference.rpartition(":")
    if not sep or not repository or not ref:
        raise VulnDBError(f"--artifact {reference!r}: name it REPOSITORY:TAG or REPOSITORY@DIGEST")

    async def run() -> list[Path]:
        service = _local_service(args)
        try:
            record = await service.manifests.get(repository, ref)
            if record.media_type not in MediaType.IMAGES:
                raise VulnDBError(f"{reference}: not an artifact manifest ({record.media_type})")
            out = []
            for i, layer in enumerate(load_json(record.content).get("layers", [])):
                digest = Digest.parse(str(layer.get("digest")))
                title = str((layer.get("annotations") or {}).get("org.opencontainers.image.title", ""))
                reader = service.reg.storage.open_read(blob_key(digest))
                if reader is None:
                    raise VulnDBError(f"{reference}: layer {digest} is not in storage")
                try:
                    head = reader.read(0, 4)
                    name = Path(title).name or f"{digest.hex}{'.zip' if head.startswith(b'PK') else '.json'}"
                    path = into / f"{i}" / name
                    path.parent.mkdir()
                    with open(path, "wb") as f:
                        for offset in range(0, reader.size, 1 << 20):
                            f.write(reader.read(offset, min(1 << 20, reader.size - offset)))
                finally:
                    reader.close()
                out.append(path)
            return out
        except RegistryError as e:
            raise VulnDBError(f"{reference}: {e.message}") from None
        finally:
            service.close()

    return trio.run(run)


def local_gc_given(args: argparse.Namespace) -> list[str]:
    """The local-only options given on the command line (a mistake with `gc run|history`)."""
    given = [("--data", args.data is not None), ("--config", args.config is not None),
             ("--dry-run", args.local_dry_run), ("--delete-untagged", args.local_delete_untagged),
             ("--grace", args.grace is not None), ("--json", args.json)]
    return [name for name, on in given if on]


def run_serve(args: argparse.Namespace) -> int:
    from ncr_trio.serve import serve

    config = load(args.config, data_dir=args.data, listen=tuple(args.listen) if args.listen else None,
                  private_listen=tuple(args.private_listen) if args.private_listen else None,
                  tls_cert=args.tls_cert, tls_key=args.tls_key, workers=args.workers)
    return serve(config)


def _local_service(args: argparse.Namespace, **overrides: Any) -> RegistryService:
    from ncr_trio.registry import RegistryService

    return RegistryService.open(load(args.config, data_dir=args.data, **overrides))


def _as_json(args: argparse.Namespace) -> bool:
    return bool(args.json or getattr(args, "output", None) == "json")


def run_fsck(args: argparse.Namespace) -> int:
    import trio

    from ncr_trio.cli.output import Output

    out = Output("json" if _as_json(args) else "table")

    async def run() -> FsckReport:
        service = _local_service(args)
        try:
            count, total = await service.fsck.totals()
            with out.progress(f"Checking blobs ({count})", total=total, in_bytes=True) as advance:
                return await service.fsck.run(repair=args.repair, progress=advance)
        finally:
            service.close()

    report = trio.run(run)
    if out.as_json:
        out.document(dataclasses.asdict(report))
    else:
        out.line(report.summary())
        for digest, problem in report.damaged.items():
            out.line(f"  {digest}: {problem}" + ("; quarantined" if digest in report.quarantined else ""))
    return 1 if report.damaged else 0


def run_local_gc(args: argparse.Namespace) -> int:
    import trio

    overrides: dict[str, Any] = {"gc_grace_seconds": args.grace}
    if args.local_delete_untagged:
        overrides["gc_delete_untagged"] = True

    async def run() -> int:
        service = _local_service(args, **overrides)
        try:
            report = await service.gc.run(dry_run=args.local_dry_run)
        finally:
            service.close()
        if _as_json(args):
            print(json.dumps(report.__dict__, indent=2))
        else:
            print(report.summary())
            for digest in report.blobs:
                print(f"  blob {digest}")
            for ref in report.manifests:
                print(f"  manifest {ref}")
        return 0

    return trio.run(run)


__all__ = ["GC_HELP", "add_fsck", "add_local_gc_options", "add_serve", "add_vulndb", "local_gc_given", "run_fsck",
           "run_local_gc", "run_serve", "run_vulndb"]
