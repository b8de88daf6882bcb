"""The vulnerability database: OSV records imported into an SQLite file of its own.

Sources (never fetched from the network by this module; an administrator's upload or an artifact
pulled from this registry hands it files):

- OSV ecosystem dumps (`all.zip`: one JSON record per member);
- directories, or single files, of OSV records as JSON or YAML;
- Alpine's secdb (`secdb-v3.4-main.yaml`, or its JSON: "secfixes", fixed version -> CVEs per
  package), converted to OSV-shaped records `ALPINE-<CVE>` in the ecosystem `Alpine:v3.4`, each
  package affected from "0" to its fixed version (a fixed version "0" means "never affected": skipped).
  One CVE across several secdb files (main, community, other releases) is one record whose affected
  packages accumulate.

Layout (one file, e.g. <data>/vulndb/osv.sqlite):

    records(id PRIMARY KEY, modified, doc)     doc: the record as compact JSON
    affects(ecosystem, name, record_id)        index (ecosystem, name): the lookup of a scan
    sources(name, kind, records, skipped, withdrawn, newest_modified, imported_at)
    meta(key PRIMARY KEY, value)               schema, version (a new one per import), imported_at

An import builds a new file beside the live one (a copy of the live records, unless `replace`, plus
the new sources), closes it, then `os.replace`s it over the live one: a reader that opened the old
file keeps reading it (POSIX keeps the inode), a reader opened afterwards sees the new one; nobody
ever sees half an import. Two imports at once are not supported (the caller serialises them).

Everything here is synchronous and does disk and CPU work: the server calls it from a worker thread
(`trio.to_thread.run_sync` under a `trio.CapacityLimiter`), never on the Trio thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import sqlite3
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ncr_trio.scan.osv import Match, Record, RecordError, match, merge_aliases, package_key, parse_record

__all__ = ["ImportSummary", "SourceSummary", "VulnDB", "VulnDBError", "import_sources"]

SCHEMA = 1
MAX_RECORD_BYTES = 16 << 20  # one OSV record (a zip member or file): a bomb guard, records are KBs
_RECORD_SUFFIXES = (".json", ".yaml", ".yml")


class VulnDBError(Exception):
    """A source that cannot be imported, or a database that cannot be read."""


@dataclass(frozen=True)
class SourceSummary:
    name: str
    kind: str  # osv-zip | osv-dir | osv-file | alpine-secdb
    records: int  # records imported (new or replacing one of the same id)
    skipped: int  # documents that are not readable OSV records
    withdrawn: int  # withdrawn records dropped (and removed if present)
    newest_modified: str | None


@dataclass(frozen=True)
class ImportSummary:
    version: str
    imported_at: str
    records: int  # records in the database after the import
    sources: tuple[SourceSummary, ...]
    newest_modified: str | None


_SCHEMA_SQL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (id TEXT PRIMARY KEY, modified TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE affects (ecosystem TEXT NOT NULL, name TEXT NOT NULL, record_id TEXT NOT NULL);
CREATE TABLE sources (name TEXT NOT NULL, kind TEXT NOT NULL, records INTEGER NOT NULL, skipped INTEGER NOT NULL,
                      withdrawn INTEGER NOT NULL, newest_modified TEXT, imported_at TEXT NOT NULL);
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _newest(a: str | None, b: str | None) -> str | None:
    """The later of two OSV timestamps (RFC 3339; compared as instants when they parse)."""
    if not a or not b:
        return a or b

    def instant(text: str) -> dt.datetime | None:
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    ia, ib = instant(a), instant(b)
    if ia is None or ib is None:
        return max(a, b)
    return a if ia >= ib else b


# --- reading sources -------------------------------------------------------------------------------

def _load(name: str, data: bytes) -> Any:
    if name.endswith(".json"):
        return json.loads(data)
    # BaseLoader: every scalar a string, so versions such as 1.10 stay "1.10" (not the float 1.1)
    return yaml.load(io.BytesIO(data), Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds no objects


def _is_secdb(doc: Any) -> bool:
    return isinstance(doc, Mapping) and "distroversion" in doc and isinstance(doc.get("packages"), list)


_ID_TOKEN = re.compile(r"(?:CVE-\d{4}-\d+|XSA-\d+|GHSA(?:-[0-9a-z]{4}){3}|ZBX-\d+|[A-Z]+-\d{4}-\d+)")


def secdb_records(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """OSV-shaped records of an Alpine secdb document: one per vulnerability id, packages as affected."""
    ecosystem = f"Alpine:{doc['distroversion']}"
    by_id: dict[str, dict[str, Any]] = {}
    for entry in doc.get("packages") or []:
        pkg = entry.get("pkg") if isinstance(entry, Mapping) else None
        if not isinstance(pkg, Mapping) or not pkg.get("name"):
            continue
        secfixes = pkg.get("secfixes") or {}
        if not isinstance(secfixes, Mapping):
            continue
        for fixed, ids in secfixes.items():
            fixed = str(fixed).strip()
            if fixed == "0":
                continue  # "not affected in this release"
            for text in ids if isinstance(ids, list) else [ids]:
                for vuln_id in _ID_TOKEN.findall(str(text)):
                    record = by_id.setdefault(vuln_id, {
                        "id": f"ALPINE-{vuln_id}", "modified": "", "aliases": [vuln_id],
                        "summary": f"{vuln_id} (Alpine secdb {doc['distroversion']})", "affected": [],
                        "database_specific": {"source": "alpine-secdb"},
                        "references": [{"type": "ADVISORY", "url": f"https://security.alpinelinux.org/vuln/{vuln_id}"}],
                    })
                    record["affected"].append({
                        "package": {"ecosystem": ecosystem, "name": str(pkg["name"])},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                    })
    yield from by_id.values()


def _read_member(name: str, data: bytes) -> Iterator[tuple[str, Any]]:
    """(kind, document) of one file: OSV records, or a secdb document's converted records."""
    doc = _load(name, data)
    if _is_secdb(doc):
        for record in secdb_records(doc):
            yield "alpine-secdb", record
    elif isinstance(doc, list):  # some tools write a list of records in one file
        for item in doc:
            yield "osv", item
    else:
        yield "osv", doc


def _read_bounded(stream: Any, name: str) -> bytes:
    data: bytes = stream.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise VulnDBError(f"{name}: larger than {MAX_RECORD_BYTES} bytes, not an OSV record")
    return data


def _documents(source: Path) -> tuple[str, Iterator[tuple[str, str, bytes]]]:
    """The source's kind and its (member name, bytes) files, read one at a time."""
    if source.is_dir():
        def walk() -> Iterator[tuple[str, str, bytes]]:
            for path in sorted(source.rglob("*")):
                if path.is_file() and path.name.endswith(_RECORD_SUFFIXES):
                    with path.open("rb") as f:
                        yield str(path.relative_to(source)), path.name, _read_bounded(f, str(path))
        return "osv-dir", walk()
    if zipfile.is_zipfile(source):
        def members() -> Iterator[tuple[str, str, bytes]]:
            with zipfile.ZipFile(source) as archive:
                for info in archive.infolist():
                    if info.is_dir() or not info.filename.endswith(_RECORD_SUFFIXES):
                        continue
                    if info.file_size > MAX_RECORD_BYTES:
                        raise VulnDBError(f"{source.name}:{info.filename}: larger than {MAX_RECORD_BYTES} bytes")
                    with archive.open(info) as f:
                        yield info.filename, info.filename, _read_bounded(f, info.filename)
        return "osv-zip", members()
    if source.is_file() and source.name.endswith(_RECORD_SUFFIXES):
        def single() -> Iterator[tuple[str, str, bytes]]:
            with source.open("rb") as f:
                yield source.name, source.name, _read_bounded(f, str(source))
        return "osv-file", single()
    raise VulnDBError(f"{source}: not an OSV zip, a directory, or a .json/.yaml file")


# --- writing ---------------------------------------------------------------------------------------

def _merge_secdb(old_doc: str, new: dict[str, Any]) -> dict[str, Any]:
    """A secdb record already present (another repository or release): its packages accumulate."""
    old = json.loads(old_doc)
    def key(affected: Mapping[str, Any]) -> tuple[str, str]:
        return affected["package"]["ecosystem"], affected["package"]["name"]

    seen = {key(a) for a in new["affected"]}
    new["affected"] = [*new["affected"], *(a for a in old.get("affected", []) if key(a) not in seen)]
    new["aliases"] = sorted(set(new["aliases"]) | set(old.get("aliases", [])))
    return new


def _import_one(db: sqlite3.Connection, source: Path, imported_at: str) -> SourceSummary:
    kind, files = _documents(source)
    records = skipped = withdrawn = 0
    newest: str | None = None
    for _, name, data in files:
        try:
            documents = list(_read_member(name, data))
        except (ValueError, yaml.YAMLError, UnicodeDecodeError):
            skipped += 1
            continue
        for doc_kind, doc in documents:
            if doc_kind == "alpine-secdb":
                kind = "alpine-secdb"
            try:
                record = parse_record(doc)
            except RecordError:
                skipped += 1
                continue
            if record.withdrawn:
                withdrawn += 1
                db.execute("DELETE FROM records WHERE id = ?", (record.id,))
                continue
            if doc_kind == "alpine-secdb":
                row = db.execute("SELECT doc FROM records WHERE id = ?", (record.id,)).fetchone()
                if row is not None:
                    doc = _merge_secdb(row[0], doc)
            db.execute("INSERT OR REPLACE INTO records (id, modified, doc) VALUES (?, ?, ?)",
                       (record.id, record.modified, json.dumps(doc, separators=(",", ":"), sort_keys=True)))
            records += 1
            newest = _newest(newest, record.modified or None)
    db.execute("INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
               (source.name, kind, records, skipped, withdrawn, newest, imported_at))
    return SourceSummary(source.name, kind, records, skipped, withdrawn, newest)


def _rebuild_index(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM affects")
    rows = db.execute("SELECT id, doc FROM records").fetchall()
    for record_id, doc in rows:
        record = parse_record(json.loads(doc))
        keys = {(a.ecosystem, package_key(a.ecosystem, a.name)) for a in record.affected}
        db.executemany("INSERT INTO affects VALUES (?, ?, ?)", [(e, n, record_id) for e, n in keys])
    db.execute("CREATE INDEX IF NOT EXISTS affects_by_package ON affects (ecosystem, name)")


def import_sources(live: Path, sources: list[Path], *, replace: bool = False) -> ImportSummary:
    """Import the sources into the database file `live`, swapping the new file in atomically.

    Without `replace`, the live database's records are kept (a record of the same id is replaced by
    the imported one). Raises VulnDBError for a source that cannot be read at all; the live file is
    then unchanged."""
    live.parent.mkdir(parents=True, exist_ok=True)
    building = live.with_name(f".{live.name}.{uuid.uuid4().hex}.building")
    imported_at = _now()
    try:
        db = sqlite3.connect(building, isolation_level=None)
        db.execute("PRAGMA foreign_keys = OFF")
        try:
            db.execute("PRAGMA journal_mode = OFF")  # a half-built file is thrown away, never read
            db.execute("PRAGMA synchronous = OFF")  # made durable by the fsync below, once
            db.executescript(_SCHEMA_SQL)
            if not replace and live.exists():
                db.execute("ATTACH DATABASE ? AS live", (f"file:{live}?mode=ro",))
                db.execute("BEGIN")
                db.execute("INSERT INTO records SELECT id, modified, doc FROM live.records")
                db.execute("INSERT INTO sources SELECT * FROM live.sources")
                db.execute("COMMIT")
                db.execute("DETACH DATABASE live")
            db.execute("BEGIN")
            summaries = tuple(_import_one(db, source, imported_at) for source in sources)
            _rebuild_index(db)
            total = db.execute("SELECT count(*) FROM records").fetchone()[0]
            newest = None
            for (modified,) in db.execute("SELECT newest_modified FROM sources"):
                newest = _newest(newest, modified)
            version = f"{imported_at}/{uuid.uuid4().hex[:12]}"
            db.executemany("INSERT INTO meta VALUES (?, ?)",
                           [("schema", str(SCHEMA)), ("version", version), ("imported_at", imported_at)])
            db.execute("COMMIT")
        finally:
            db.close()
        with building.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(building, live)
        _fsync_dir(live.parent)
    except sqlite3.DatabaseError as exc:
        raise VulnDBError(f"cannot build the vulnerability database: {exc}") from None
    finally:
        building.unlink(missing_ok=True)
    return ImportSummary(version, imported_at, int(total), summaries, newest)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading ---------------------------------------------------------------------------------------

class VulnDB:
    """A read-only view of one version of the database (the file open when it was made).

    Use as a context manager for a scan: every query of the scan reads the same version, even if
    an import swaps a new file in meanwhile."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise VulnDBError(f"no vulnerability database at {path}: import one first")
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("BEGIN")  # one read transaction: one snapshot for the whole view
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise VulnDBError(f"{path}: not a vulnerability database ({exc})") from None
        self.path = path
        self.version: str = meta.get("version", "")
        self.imported_at: str = meta.get("imported_at", "")
        self._parse = lru_cache(maxsize=4096)(self._parse_uncached)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VulnDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _parse_uncached(self, record_id: str) -> Record | None:
        row = self._db.execute("SELECT doc FROM records WHERE id = ?", (record_id,)).fetchone()
        return parse_record(json.loads(row[0])) if row is not None else None

    def records_for(self, ecosystem: str, package: str) -> list[Record]:
        """The records that name the package in the ecosystem (exactly: "Alpine:v3.4", "PyPI")."""
        ids = [row[0] for row in self._db.execute(
            "SELECT record_id FROM affects WHERE ecosystem = ? AND name = ? ORDER BY record_id",
            (ecosystem, package_key(ecosystem, package)))]
        return [record for record in map(self._parse, ids) if record is not None]

    def affected(self, ecosystem: str, package: str, version: str) -> list[Match]:
        """The vulnerabilities of the installed package, aliases merged (one per vulnerability)."""
        found = [m for m in (match(r, ecosystem, package, version) for r in self.records_for(ecosystem, package)) if m]
        return merge_aliases(found)

    def status(self) -> ImportSummary:
        """What was imported: the version, the record count and each source's figures."""
        sources = tuple(SourceSummary(*row[:6]) for row in self._db.execute(
            "SELECT name, kind, records, skipped, withdrawn, newest_modified FROM sources ORDER BY rowid"))
        total = self._db.execute("SELECT count(*) FROM records").fetchone()[0]
        newest = None
        for source in sources:
            newest = _newest(newest, source.newest_modified)
        return ImportSummary(self.version, self.imported_at, int(total), sources, newest)

    def ecosystems(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT ecosystem FROM affects ORDER BY 1")]


@contextlib.contextmanager
def open_db(path: Path) -> Iterator[VulnDB]:
    db = VulnDB(path)
    try:
        yield db
    finally:
        db.close()
