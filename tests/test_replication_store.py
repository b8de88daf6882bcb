"""The replication store's Journal on SQLite and on a real PostgreSQL: one Running execution per
policy whatever the concurrency, stale executions ended, counts from tasks, event work collected once."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ncr_trio.meta import Database, connect, migrate
from ncr_trio.meta.replication import RemoteInUse, ReplicationStore
from ncr_trio.replication.model import STALE_SECONDS, Policy, RemoteInfo
from tests.support.postgres import PostgresServer
from tests.support.postgres import postgres_server as _postgres_server

BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]
_db_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _postgres_server() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:{tmp_path / 'meta.sqlite3'}"
        database = connect(url, tmp_path / "unused.sqlite3")
        migrate(database)
        try:
            yield database
        finally:
            database.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database(f"ncr_repl_{next(_db_names)}") as url:
        database = connect(url, tmp_path / "unused.sqlite3")
        migrate(database)
        try:
            yield database
        finally:
            database.close()


def remote(name: str = "r1") -> RemoteInfo:
    now = time.time()
    return RemoteInfo(name, "https://b.example:5000", "ncr", "id", True, "", False, "", "invalid", "", None, now, now)


def policy(name: str = "p1", registry: str = "team", name_filter: str = "", tag_filter: str = "",
           mode: str = "match", trigger: str = "event") -> Policy:
    now = time.time()
    return Policy(0, registry, name, "", "push", "r1", "other", name_filter, tag_filter, mode, trigger, "", False, 0,
                  True, "invalid", "", now, now)


async def setup(db: Database) -> ReplicationStore:
    store = ReplicationStore(db)
    assert await store.create_remote(remote(), "sealed")
    return store


async def tag_created(db: Database, repository: str, tag: str, digest: str = "sha256:" + "a" * 64) -> None:
    await db.write(lambda tx: tx.execute(
        "INSERT INTO events (kind, repository, digest, tag, created_at) VALUES ('tag.created', ?, ?, ?, ?)",
        (repository, digest, tag, time.time())))


def test_one_running_execution_per_policy(db: Database) -> None:
    async def main() -> None:
        store = await setup(db)
        p = await store.create_policy(policy())
        assert p.status == "invalid" and p.reason == "not checked yet"
        started: list[int | None] = []

        async def start() -> None:
            started.append(await store.start_execution(p.id, "manual"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(start)
            nursery.start_soon(start)
        assert None in started
        running = [s for s in started if s is not None]
        assert len(running) == 1
        history, total = await store.executions(p.id, 10, 0)
        assert total == 2
        assert sorted(e.status for e in history) == ["Running", "Skipped"]
        skipped = next(e for e in history if e.status == "Skipped")
        assert f"execution {running[0]}" in skipped.detail
        # The event loop's start leaves no Skipped row.
        assert await store.start_execution(p.id, "event", record_skip=False) is None
        assert (await store.executions(p.id, 10, 0))[1] == 2
        kinds = await db.read(lambda tx: tx.all("SELECT kind, repository, tag FROM events ORDER BY id"))
        assert [tuple(k) for k in kinds] == [("replication.started", "team", "p1")]

    trio.run(main)


def test_stale_execution_ended_failed(db: Database) -> None:
    async def main() -> None:
        store = await setup(db)
        p = await store.create_policy(policy())
        first = await store.start_execution(p.id, "manual")
        assert first is not None
        await store.heartbeat(first)
        old = time.time() - STALE_SECONDS - 5
        await db.write(lambda tx: tx.execute(
            "UPDATE replication_executions SET heartbeat_at = ? WHERE id = ?", (old, first)))
        second = await store.start_execution(p.id, "manual")
        assert second is not None and second != first
        ended = await store.execution(first)
        assert ended is not None and ended.status == "Failed" and "heartbeat" in ended.detail
        history, _ = await store.executions(p.id, 10, 0)
        assert [e.id for e in history] == [second, first]  # newest first

    trio.run(main)


def test_counts_come_from_tasks(db: Database) -> None:
    async def main() -> None:
        store = await setup(db)
        p = await store.create_policy(policy())
        ex = await store.start_execution(p.id, "manual")
        assert ex is not None
        outcomes = ["Succeeded", "Succeeded", "Skipped", "Failed"]
        for i, status in enumerate(outcomes):
            t = await store.add_task(ex, f"team/a:{i}", f"other/a:{i}", "sha256:" + str(i) * 64)
            await store.finish_task(t, status, 1, 100 if status == "Succeeded" else 0, "boom" if status == "Failed"
                                    else "")
        assert not await store.stop_requested(ex)
        assert await store.request_stop(ex)
        assert await store.stop_requested(ex)
        await store.finish_execution(ex, "Failed", "one task failed")
        e = await store.execution(ex)
        assert e is not None
        assert (e.status, e.copied, e.skipped, e.failed, e.bytes) == ("Failed", 2, 1, 1, 200)
        assert not await store.request_stop(ex)  # ended
        tasks, total = await store.tasks(ex, 2, 2)
        assert total == 4 and [t.status for t in tasks] == ["Skipped", "Failed"]
        assert tasks[1].error == "boom"
        kinds = await db.read(lambda tx: tx.all("SELECT kind, digest FROM events ORDER BY id"))
        assert [tuple(k) for k in kinds] == [("replication.started", f"execution:{ex}"),
                                            ("replication.failed", f"execution:{ex}")]

    trio.run(main)


def test_collect_events_filters_and_cursor(db: Database) -> None:
    async def main() -> None:
        store = await setup(db)
        await tag_created(db, "team/old/app", "1.0")  # past the cursor, selected by no policy
        match = await store.create_policy(policy("match", name_filter="path/*", tag_filter="1.?"))
        exclude = await store.create_policy(policy("exclude", name_filter="{path,ncr}/*", tag_filter="1.?",
                                                   mode="exclude"))
        await store.create_policy(policy("manual", trigger="manual"))
        await store.create_policy(policy("elsewhere", registry="other"))
        for repo, tag in [("team/path/hello-world", "1.0"), ("team/path/hello-world", "1.01"),
                          ("team/path/my/hello-world", "1.0"), ("team/ncr/x", "2.0"), ("other/q", "1")]:
            await tag_created(db, repo, tag)
        read: list[int] = []

        async def collect() -> None:
            read.append(await store.collect_events())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect)
            nursery.start_soon(collect)
        assert sorted(read) == [0, 6]
        assert await store.collect_events() == 0
        got = {(p.policy_id, p.repository, p.tag) for p in await store.pending()}
        elsewhere = (await store.policies("other"))[0]
        assert got == {
            (match.id, "team/path/hello-world", "1.0"),
            (exclude.id, "team/path/hello-world", "1.01"),
            (exclude.id, "team/ncr/x", "2.0"),
            (elsewhere.id, "other/q", "1"),
        }
        pend = await store.pending(match.id)
        await store.done_pending([x.id for x in pend])
        assert await store.pending(match.id) == []

    trio.run(main)


def test_remote_in_use_and_registry_purge(db: Database) -> None:
    async def main() -> None:
        store = await setup(db)
        p = await store.create_policy(policy())
        with pytest.raises(RemoteInUse) as e:
            await store.delete_remote("r1")
        assert e.value.policies == ("team/p1",)
        await store.set_remote_status("r1", True, "", time.time())
        assert (await store.policy(p.id)).status == "valid"  # type: ignore[union-attr]
        ex = await store.start_execution(p.id, "manual")
        assert ex is not None
        await db.write(lambda tx: ReplicationStore.purge_registry(tx, "team"))
        assert await store.policies("team") == []
        assert await store.execution(ex) is None
        assert await store.delete_remote("r1")

    trio.run(main)
