"""One SQL code path over SQLite and PostgreSQL.

Queries are written once, with `?` placeholders and the SQL both engines share
(`ON CONFLICT`, `RETURNING`); a `Dialect` rewrites the few differences.

Threading model. Both engines are used through their blocking DB-API drivers:
- SQLite: reads run *inline* on the Trio thread on a per-process read connection (an indexed
  read from the page cache takes microseconds, far less than a thread hop); writes go to one
  writer thread per process that group-commits them (see `_GroupCommitWriter`), WAL mode so
  readers never wait for the writer, `synchronous=FULL` so a committed row survives power loss.
- PostgreSQL: a small pool of psycopg connections, each query in a worker thread bounded by a
  `trio.CapacityLimiter` the size of the pool.
"""

from __future__ import annotations

import fcntl
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from ncr_trio.errors import RegistryError

T = TypeVar("T")
Row = tuple[Any, ...]


class Tx(Protocol):
    """What a unit of work sees: execute SQL with `?` placeholders, read rows."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Dialect:
    name = "sqlite"
    types = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "float": "REAL", "bigint": "INTEGER"}
    # Row locks for the few read-then-delete races (GC vs manifest PUT); SQLite serialises writers.
    for_update = ""
    for_share = ""
    # Byte-order comparison for names, so listings and `last=` pagination agree on every engine.
    collate = ""
    # The position of a substring (0: absent): `{instr}(haystack, needle) > 0`.
    instr = "instr"

    def sql(self, text: str) -> str:
        return text

    def ddl(self, text: str) -> str:
        return text.format(**self.types)


class PostgresDialect(Dialect):
    name = "postgresql"
    types = {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "BYTEA",
             "float": "DOUBLE PRECISION", "bigint": "BIGINT"}
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    collate = ' COLLATE "C"'
    instr = "strpos"
    _placeholder = re.compile(r"\?")

    def sql(self, text: str) -> str:
        return self._placeholder.sub("%s", text.replace("%", "%%"))


def _params(params: Sequence[Any]) -> tuple[Any, ...]:
    """A statement's parameters. Text holding a NUL character is a client's mistake on both engines:
    PostgreSQL can neither store nor compare it (psycopg raises DataError, which was a 500), and
    SQLite must not keep what PostgreSQL refuses. So is text that is not UTF-8 (a lone surrogate
    from a JSON `"\\ud800"`): neither driver can encode it (UnicodeEncodeError, a 500)."""
    values = tuple(params)
    for v in values:
        if isinstance(v, str):
            if "\x00" in v:
                raise RegistryError("INVALID_REQUEST", "text must not contain NUL characters")
            if not v.isascii():
                try:
                    v.encode()
                except UnicodeEncodeError:
                    raise RegistryError("INVALID_REQUEST", "text must be valid Unicode (no lone surrogates)") from None
    return values


class _CursorTx:
    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(self.dialect.sql(sql), _params(params))
        return int(cur.rowcount)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row = self._conn.execute(self.dialect.sql(sql), _params(params)).fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return [tuple(r) for r in self._conn.execute(self.dialect.sql(sql), _params(params)).fetchall()]


class Database(Protocol):
    dialect: Dialect

    async def read(self, fn: Callable[[Tx], T]) -> T: ...
    async def write(self, fn: Callable[[Tx], T]) -> T: ...
    def write_sync(self, fn: Callable[[Tx], T], before: Callable[[], None] | None = None) -> T:
        """Blocking write; `before` runs first and must succeed (e.g. fsyncs the unit depends on)."""
        ...
    def close(self) -> None: ...


_Unit = tuple[Callable[["Tx"], Any], Callable[[], None] | None, Future[Any]]


class _GroupCommitWriter:
    """One writer thread per process that commits queued units of work in batches.

    Each unit runs in its own SAVEPOINT, so one that fails rolls back alone; the batch commits
    once, so concurrent pushes share one WAL fsync. A unit may carry a step to run before it
    (fsyncing the blob it records): the batch runs those first, back to back, which lets the
    filesystem commit its journal once for many of them. Across worker processes, a `flock` on
    `<db>.writer.lock` serialises the batches: waiting processes sleep in the kernel and wake as
    soon as the lock is free, instead of in SQLite's busy handler's millisecond back-off.
    """

    MAX_BATCH = 64

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect, lock_path: Path) -> None:
        self._conn = conn
        self._dialect = dialect
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ncr-sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Tx], T], before: Callable[[], None] | None = None) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((fn, before, future))
        return future

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Unit]) -> None:
        tx = _CursorTx(self._conn, self._dialect)
        outcomes: list[tuple[bool, Any]] = []
        # Steps the units depend on (fsyncs of published blobs) run first, all together.
        ready: list[BaseException | None] = []
        for _, before, _ in batch:
            try:
                if before is not None:
                    before()
                ready.append(None)
            except Exception as e:
                ready.append(e)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for (fn, _, _), failed in zip(batch, ready, strict=True):
                    if failed is not None:
                        outcomes.append((False, failed))
                        continue
                    self._conn.execute("SAVEPOINT unit")
                    try:
                        outcomes.append((True, fn(tx)))
                        self._conn.execute("RELEASE unit")
                    except Exception as e:
                        self._conn.execute("ROLLBACK TO unit")
                        self._conn.execute("RELEASE unit")
                        outcomes.append((False, e))
                self._conn.execute("COMMIT")
            except BaseException as e:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                outcomes = [(False, e)] * len(batch)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        os.close(self._lock_fd)


class SQLiteDatabase:
    dialect = Dialect()

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = self._connect()
        writer.execute("PRAGMA journal_mode=WAL")
        self._reader = self._connect()
        self._writer_conn = writer
        self._writer = _GroupCommitWriter(writer, self.dialect, path.with_name(path.name + ".writer.lock"))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def read(self, fn: Callable[[Tx], T]) -> T:
        # Inline on the Trio thread: see the module docstring.
        self._reader.execute("BEGIN")
        try:
            return fn(_CursorTx(self._reader, self.dialect))
        finally:
            self._reader.execute("COMMIT")

    async def write(self, fn: Callable[[Tx], T]) -> T:
        future = self._writer.submit(fn)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future.add_done_callback(lambda _: token.run_sync_soon(done.set))
        # Like a thread that cannot be abandoned: once submitted, the unit commits or fails
        # whatever happens to the caller, so the caller waits for the outcome.
        with trio.CancelScope(shield=True):
            await done.wait()
        return future.result()

    def write_sync(self, fn: Callable[[Tx], T], before: Callable[[], None] | None = None) -> T:
        return self._writer.submit(fn, before).result()

    def close(self) -> None:
        self._writer.close()
        self._writer_conn.close()
        self._reader.close()


class PostgresDatabase:
    dialect: Dialect = PostgresDialect()

    def __init__(self, url: str, pool_size: int = 8) -> None:
        import psycopg  # imported here: SQLite-only deployments never load it

        self._psycopg = psycopg
        self.url = url
        self._pool: list[tuple[Any, float]] = []  # (connection, when it was last returned)
        self._pool_lock = threading.Lock()
        self._limiter = trio.CapacityLimiter(pool_size)

    IDLE_CHECK_SECONDS = 10.0

    def _pooled(self) -> Any | None:
        """A pooled connection that still works: one idle for a while is probed first, so that a
        database restart costs a reconnect, not a failed request."""
        while True:
            with self._pool_lock:
                if not self._pool:
                    return None
                conn, returned = self._pool.pop()
            if conn.closed:
                continue
            if time.monotonic() - returned < self.IDLE_CHECK_SECONDS:
                return conn
            try:
                conn.execute("SELECT 1")
                conn.rollback()
                return conn
            except self._psycopg.Error:
                conn.close()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        conn = self._pooled()
        if conn is None:
            conn = self._psycopg.connect(self.url, autocommit=False)
            # The lock-then-recheck steps (GC vs manifest PUT) and migrate's advisory lock rely on
            # each statement seeing what committed before it: pin it whatever the server default.
            conn.isolation_level = self._psycopg.IsolationLevel.READ_COMMITTED
        try:
            yield conn
        except BaseException:
            # Not back to the pool, so close it (the transaction is rolled back): a failed unit of
            # work must not leak an open connection, nor pool a broken one.
            conn.close()
            raise
        with self._pool_lock:
            self._pool.append((conn, time.monotonic()))

    def _run(self, fn: Callable[[Tx], T]) -> T:
        with self._connection() as conn:
            with conn.transaction():
                return fn(_CursorTx(conn, self.dialect))

    async def read(self, fn: Callable[[Tx], T]) -> T:
        return await trio.to_thread.run_sync(self._run, fn, limiter=self._limiter)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        return await trio.to_thread.run_sync(self._run, fn, limiter=self._limiter)

    def write_sync(self, fn: Callable[[Tx], T], before: Callable[[], None] | None = None) -> T:
        if before is not None:
            before()
        return self._run(fn)

    def close(self) -> None:
        with self._pool_lock:
            for conn, _ in self._pool:
                conn.close()
            self._pool.clear()


def connect(database_url: str, sqlite_path: Path) -> Database:
    if database_url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(database_url)
    if database_url and not database_url.startswith("sqlite:"):
        raise ValueError(f"unsupported database_url {database_url!r}: use postgresql://... or sqlite:PATH")
    path = Path(database_url.removeprefix("sqlite:")) if database_url else sqlite_path
    return SQLiteDatabase(path)


__all__ = ["Database", "Dialect", "PostgresDatabase", "Row", "SQLiteDatabase", "Tx", "connect"]
