"""A real, throwaway PostgreSQL server for the tests.

`postgres_server()` runs `initdb` into a fresh temporary directory and starts `postgres` on
127.0.0.1 (a free port; its unix socket also lives in that directory), trust authentication,
`fsync=off`, then yields a `PostgresServer`; at exit it stops the server and removes the directory.
`PostgresServer.database()` creates a fresh database and yields its `postgresql://` URL.

PostgreSQL refuses to run as root: as root (CI, containers) the server runs as the `postgres`
system user that Debian's `postgresql-common` creates (or `nobody` when there is none), through
`runuser`, in a directory made under the system temp dir and owned by that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port

_SEARCH = ("/usr/lib/postgresql",)  # Debian/Ubuntu: /usr/lib/postgresql/<major>/bin


def find_bindir() -> Path:
    """Directory holding initdb, pg_ctl and postgres: $NCR_PG_BINDIR, PATH, then the newest Debian major."""
    env = os.environ.get("NCR_PG_BINDIR")
    if env:
        return Path(env)
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    majors: list[tuple[int, Path]] = []
    for root in _SEARCH:
        for d in Path(root).glob("*/bin"):
            if re.fullmatch(r"\d+", d.parent.name) and (d / "pg_ctl").exists() and (d / "initdb").exists():
                majors.append((int(d.parent.name), d))
    if not majors:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: run `make tools` "
                           "(scripts/install-tools.sh installs the `postgresql` package) or set NCR_PG_BINDIR")
    return max(majors)[1]


def run_as() -> tuple[list[str], int | None, int | None]:
    """Command prefix, uid and gid to run the server with: a non-root user when we are root."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], pw.pw_uid, pw.pw_gid
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL")


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    prefix: list[str]
    user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix, *args], cwd=self.root, capture_output=True, text=True)
        if check and proc.returncode != 0:
            log = self.root / "postgres.log"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{tail}")
        return proc

    def start(self) -> PostgresServer:
        """initdb (unless `root` holds a server's files already: `make cluster` keeps them), then start."""
        if not (self.data / "PG_VERSION").exists():
            self._init()
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "start")
        return self

    def _init(self) -> None:
        self._cmd(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# tests/support/postgres.py\n"
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
                # Detect a deadlock between two test transactions quickly rather than after 1 s.
                "deadlock_timeout = 100ms\n"
            )

    def restart(self) -> None:
        """Stop (every client connection is cut, committed data kept) and start again on the same data."""
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-m", "fast", "-w", "-t", "60", "restart")

    def start_again(self) -> None:
        """Start on the data left by `stop()` (what clients committed before is there again)."""
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                      check=False)

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) on the `postgres` database."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    @contextlib.contextmanager
    def database(self, name: str) -> Iterator[str]:
        """A fresh, empty database: yields its URL, drops it (and its leftover sessions) afterwards."""
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        try:
            yield self.url(name)
        finally:
            self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server; stop it and delete its files at exit."""
    bindir = find_bindir()
    prefix, uid, gid = run_as()
    # Not under pytest's basetemp: that is 0700 root, which the server's user could not enter.
    root = Path(tempfile.mkdtemp(prefix="ncr-pg-"))
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    server = PostgresServer(bindir=bindir, root=root, port=free_port(), prefix=prefix)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["PostgresServer", "find_bindir", "postgres_server", "run_as"]
