"""Cleanup runs and the policy use cases against a real metadata store (SQLite), with an injected
clock: artifacts are pushed now and runs plan at `now + N days`. Also the scheduler, driven by
its injectable clock: a missed job runs once at start, and two schedulers never run one job at once.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ncr_trio.config import Config
from ncr_trio.errors import RegistryError
from ncr_trio.patterns import compile_pattern
from ncr_trio.registry import RegistryService
from ncr_trio.registry.policies import DAY
from ncr_trio.scheduler import Scheduler
from ncr_trio.types import Digest
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, Image, digest, image, index

T0 = time.time()  # every artifact here is pushed after this moment


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push(service: RegistryService, repo: str, img: Image, tag: str | None) -> str:
    for blob in img.blobs.values():
        await service.uploads.monolithic(repo, Digest.parse(digest(blob)), _body(blob), len(blob))
    await service.manifests.put(repo, tag or img.digest, img.manifest, OCI_MANIFEST)
    return img.digest


async def push_index(service: RegistryService, repo: str, seed: str, tag: str) -> tuple[str, list[str]]:
    children = [image(f"{seed}-amd64"), image(f"{seed}-arm64", platform=("linux", "arm64"))]
    for child in children:
        await push(service, repo, child, None)
    body = index([(children[0], ("linux", "amd64")), (children[1], ("linux", "arm64"))])
    await service.manifests.put(repo, tag, body, OCI_INDEX)
    return digest(body), [c.digest for c in children]


async def exists(service: RegistryService, repo: str, d: str) -> bool:
    return await service.meta.get_manifest(repo, d) is not None


async def tags_of(service: RegistryService, repo: str) -> list[str]:
    return await service.meta.list_tags(repo, None, None) or []


def outcomes(items: list[dict[str, Any]]) -> dict[str, str]:
    return {i["digest"]: i["outcome"] for i in items}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RegistryService]:
    svc = RegistryService.open(Config(data_dir=tmp_path / "data"))
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
async def team(service: RegistryService) -> str:
    await service.namespaces.create("team", "admin")
    return "team"


def later(days: float) -> float:
    return time.time() + days * DAY


# -- what a run deletes -------------------------------------------------------------------------------
async def test_tags_sharing_a_digest_and_untagged_artifacts(service: RegistryService, team: str) -> None:
    p = service.policies
    shared = await push(service, "team/app", image("shared"), "v1")
    await push(service, "team/app", image("shared"), "latest")  # the same digest, a second tag
    alone = await push(service, "team/app", image("alone"), "v2")
    first = await push(service, "team/app", image("first"), "v3")
    second = await push(service, "team/app", image("second"), "v3")  # re-pushed: `first` is untagged now
    await p.add_cleanup(team, "**", "v*", False, "older_than", 30)
    run, items = await p.run(team, dry_run=False, now=later(40))
    # `latest` keeps `shared` (never through one tag while another keeps it); untagged ones are not selected.
    assert outcomes(items) == {alone: "deleted", second: "deleted"}
    assert (run.status, run.deleted, run.kept, run.triggered_by) == ("succeeded", 2, 0, "manual")
    assert await exists(service, "team/app", shared) and await tags_of(service, "team/app") == ["latest", "v1"]
    assert await exists(service, "team/app", first)
    await p.add_cleanup(team, "**", "none", True, "older_than", 30)  # untagged artifacts only
    _, items = await p.run(team, dry_run=False, now=later(40))
    assert outcomes(items) == {first: "deleted"}
    assert await exists(service, "team/app", shared)


async def test_pushed_or_pulled_within_n_days_is_kept(service: RegistryService, team: str) -> None:
    old = await push(service, "team/app", image("old"), "a")
    pulled = await push(service, "team/app", image("pulled"), "b")
    retagged = await push(service, "team/app", image("retagged"), "c")
    await service.meta.record_pulls({("team/app", pulled): later(35)})
    # A push that points a tag at an existing artifact counts as pushing it (here: 36 days from now).
    await service.meta.db.write(lambda tx: tx.execute("UPDATE tags SET updated_at = ? WHERE name = 'c'", (later(36),)))
    await service.policies.add_cleanup(team, "**", "**", False, "older_than", 30)
    assert outcomes((await service.policies.run(team, dry_run=True, now=later(20)))[1]) == {}
    assert outcomes((await service.policies.run(team, dry_run=True, now=later(40)))[1]) == {old: "would-delete"}
    assert outcomes((await service.policies.run(team, dry_run=True, now=later(70)))[1]) == {
        old: "would-delete", pulled: "would-delete", retagged: "would-delete"}


async def test_retain_the_most_recently_pushed_or_pulled(service: RegistryService, team: str) -> None:
    pushed = [await push(service, "team/keep", image(f"keep{i}"), f"r{i}") for i in range(4)]
    other = await push(service, "team/other", image("other"), "r0")
    p = await service.policies.add_cleanup(team, "keep", "**", False, "retain_pushed", 2)
    _, items = await service.policies.run(team, dry_run=False)
    assert outcomes(items) == {pushed[0]: "deleted", pushed[1]: "deleted"}
    assert await tags_of(service, "team/keep") == ["r2", "r3"] and await exists(service, "team/other", other)
    await service.policies.delete_cleanup(team, p.id)
    await service.meta.record_pulls({("team/keep", pushed[2]): later(1)})
    await service.policies.add_cleanup(team, "keep", "**", False, "retain_pulled", 1)
    _, items = await service.policies.run(team, dry_run=False)
    assert outcomes(items) == {pushed[3]: "deleted"}


async def test_a_test_run_records_exactly_what_would_be_deleted_and_deletes_nothing(
        service: RegistryService, team: str) -> None:
    a = await push(service, "team/app", image("a"), "v1")
    b = await push(service, "team/tools/lint", image("b"), "v1")
    await service.policies.add_cleanup(team, "**", "**", False, "older_than", 1)
    run, items = await service.policies.run(team, dry_run=True, now=later(2))
    assert (run.dry_run, run.triggered_by, run.deleted, run.status) == (True, "test", 2, "succeeded")
    assert sorted((i["repository"], i["digest"], i["tags"], i["outcome"]) for i in items) == [
        ("team/app", a, ["v1"], "would-delete"), ("team/tools/lint", b, ["v1"], "would-delete")]
    assert "cleanup policy #" in items[0]["reason"]
    assert await exists(service, "team/app", a) and await exists(service, "team/tools/lint", b)
    _, real = await service.policies.run(team, dry_run=False, now=later(2))
    assert outcomes(real) == {a: "deleted", b: "deleted"}  # the test run said exactly this


async def test_index_children_stay_while_their_index_does(service: RegistryService, team: str) -> None:
    idx, children = await push_index(service, "team/multi", "m", "multi")
    untagged_only = await service.policies.add_cleanup(team, "**", "none", True, "older_than", 0)
    _, items = await service.policies.run(team, dry_run=False, now=later(1))
    assert outcomes(items) == {c: "kept-needed" for c in children}
    assert all(i["reason"] == f"referenced by {idx}" for i in items)
    await service.policies.delete_cleanup(team, untagged_only.id)
    await service.policies.add_cleanup(team, "**", "**", True, "older_than", 0)
    _, items = await service.policies.run(team, dry_run=False, now=later(1))
    assert outcomes(items) == {idx: "deleted", **{c: "deleted" for c in children}}  # the index went first
    assert [await exists(service, "team/multi", d) for d in (idx, *children)] == [False, False, False]


# -- what changes between the plan and the deletion -----------------------------------------------------
async def test_a_tag_re_pushed_or_added_during_a_run_keeps_the_artifact(service: RegistryService, team: str) -> None:
    old = await push(service, "team/app", image("old"), "v1")
    other = await push(service, "team/app", image("other"), "v2")
    await service.policies.add_cleanup(team, "**", "v*", False, "older_than", 30)
    prepared = await service.policies.runner.prepare(team, dry_run=False, triggered_by="manual", now=later(40))
    assert sorted(d.digest for d in prepared.plan.delete) == sorted([old, other])
    new = await push(service, "team/app", image("new"), "v1")  # v1 moves to a new artifact
    await service.catalog.create_tag(team, "app", other, "keep-me")  # and `other` gains a tag
    run, items = await service.policies.runner.execute(prepared)
    assert outcomes(items) == {old: "skipped-changed", other: "skipped-changed"}
    assert {i["digest"]: i["reason"] for i in items} == {
        old: "its tags changed since the plan: now untagged",
        other: "its tags changed since the plan: now ['keep-me', 'v2']"}
    assert (run.deleted, run.kept) == (0, 2)
    assert await exists(service, "team/app", new) and await exists(service, "team/app", old)
    assert await tags_of(service, "team/app") == ["keep-me", "v1", "v2"]


async def test_a_policy_added_or_removed_during_a_run_applies_from_the_next_run(
        service: RegistryService, team: str) -> None:
    a = await push(service, "team/a", image("a"), "v1")
    b = await push(service, "team/b", image("b"), "v1")
    pa = await service.policies.add_cleanup(team, "a", "**", False, "older_than", 1)
    prepared = await service.policies.runner.prepare(team, dry_run=False, triggered_by="manual", now=later(2))
    pb = await service.policies.add_cleanup(team, "b", "**", False, "older_than", 1)  # during the run
    await service.policies.delete_cleanup(team, pa.id)  # also during the run
    run, items = await service.policies.runner.execute(prepared)
    assert outcomes(items) == {a: "deleted"}  # the snapshot taken at the start
    assert [p["id"] for p in json.loads(run.policies)] == [pa.id]
    run, items = await service.policies.run(team, dry_run=False, now=later(2))
    assert outcomes(items) == {b: "deleted"}
    assert [p["id"] for p in json.loads(run.policies)] == [pb.id]


async def test_protection_wins_and_is_checked_again_when_deleting(service: RegistryService, team: str) -> None:
    release = await push(service, "team/app", image("release"), "release-1")
    dev = await push(service, "team/app", image("dev"), "dev-1")
    late = await push(service, "team/app", image("late"), "hotfix-1")
    guard = await service.policies.add_protection(team, "**", "release-*")
    await service.policies.add_cleanup(team, "**", "**", False, "older_than", 1)
    prepared = await service.policies.runner.prepare(team, dry_run=False, triggered_by="manual", now=later(2))
    late_guard = await service.policies.add_protection(team, "app", "hotfix-*")  # added during the run
    _, items = await service.policies.runner.execute(prepared)
    assert outcomes(items) == {release: "kept-protected", dev: "deleted", late: "kept-protected"}
    reasons = {i["digest"]: i["reason"] for i in items}
    assert reasons[release] == f'protected by protection policy #{guard.id} (image "**", tag "release-*")'
    assert reasons[late] == (f'tag hotfix-1 of team/app is protected by protection policy #{late_guard.id} '
                             '(image "app", tag "hotfix-*")')
    # Disabled, it no longer protects.
    await service.policies.set_protection_enabled(team, guard.id, False)
    _, items = await service.policies.run(team, dry_run=True, now=later(2))
    assert outcomes(items) == {release: "would-delete", late: "kept-protected"}


async def test_deletions_are_announced_by_cleanup_and_history_is_kept(service: RegistryService, team: str) -> None:
    d = await push(service, "team/app", image("x"), "v1")
    await service.policies.add_cleanup(team, "**", "**", False, "older_than", 1)
    first, _ = await service.policies.run(team, dry_run=True, now=later(2))
    second, _ = await service.policies.run(team, dry_run=False, now=later(2))
    rows = await service.meta.db.read(lambda tx: tx.all(
        "SELECT kind, tag, actor FROM events WHERE digest = ? AND kind IN ('tag.deleted', 'artifact.deleted') "
        "ORDER BY id", (d,)))
    assert [tuple(r) for r in rows] == [("tag.deleted", "v1", "cleanup"), ("artifact.deleted", None, "cleanup")]
    runs, total = await service.policies.runs(team, 1, 1)
    assert total == 2 and [r.id for r in runs] == [second.id]
    runs, _ = await service.policies.runs(team, 2, 1)
    assert [r.id for r in runs] == [first.id]
    run, items = await service.policies.run_details(team, first.id)
    assert run.dry_run and items[0]["digest"] == d and items[0]["outcome"] == "would-delete"
    with pytest.raises(RegistryError) as e:
        await service.policies.run_details(team, 999)
    assert e.value.code == "NOT_FOUND"


# -- the policies' own rules ------------------------------------------------------------------------------
async def test_policies_are_validated_limited_and_never_duplicated(service: RegistryService, team: str) -> None:
    p = service.policies

    async def refused(code: str, coro: Any) -> str:
        with pytest.raises(RegistryError) as e:
            await coro
        assert e.value.code == code, e.value.message
        return e.value.message

    await refused("INVALID_REQUEST", p.add_cleanup(team, "", "**", False, "older_than", 1))
    await refused("INVALID_REQUEST", p.add_cleanup(team, "**", "**", False, "newest", 1))
    await refused("INVALID_REQUEST", p.add_cleanup(team, "**", "**", False, "older_than", -1))
    await refused("NOT_FOUND", p.add_cleanup("nowhere", "**", "**", False, "older_than", 1))
    first = await p.add_cleanup(team, "**", "v*", False, "older_than", 30)
    assert first.enabled
    message = await refused("CONFLICT", p.add_cleanup(team, "**", "v*", False, "older_than", 30))
    assert f"#{first.id}" in message and "within 30 days" in message
    for n in range(14):
        await p.add_cleanup(team, "**", "v*", False, "retain_pushed", n + 1)
    assert "15 cleanup policies" in await refused("CONFLICT", p.add_cleanup(team, "x", "y", False, "older_than", 1))
    assert not (await p.set_cleanup_enabled(team, first.id, False)).enabled
    await refused("NOT_FOUND", p.set_cleanup_enabled(team, 12345, True))
    guard = await p.add_protection(team, "**", "v*")
    assert f"#{guard.id}" in await refused("CONFLICT", p.add_protection(team, "**", "v*"))
    for n in range(14):
        await p.add_protection(team, "**", f"x{n}")
    assert "15 protection policies" in await refused("CONFLICT", p.add_protection(team, "**", "y"))
    await p.delete_protection(team, guard.id)
    await p.add_protection(team, "**", "y")  # room again
    await refused("NOT_FOUND", p.delete_protection(team, guard.id))


async def test_schedules_accept_presets_and_cron_in_utc(service: RegistryService, team: str) -> None:
    p = service.policies
    assert (await p.schedule(team)).preset == "None"
    daily = await p.set_schedule(team, "Daily")
    assert (daily.expression, daily.preset) == ("0 0 * * *", "Daily")
    assert daily.next_run_at is not None and daily.next_run_at % DAY == 0  # midnight UTC
    cron = await p.set_schedule(team, "0 3 ? * MON-FRI")
    assert (cron.expression, cron.preset) == ("0 3 ? * MON-FRI", None)
    with pytest.raises(RegistryError) as e:
        await p.set_schedule(team, "0 3 * *")
    assert e.value.code == "INVALID_REQUEST"
    off = await p.set_schedule(team, "None")
    assert (off.expression, off.preset, off.next_run_at) == ("", "None", None)


# -- the scheduler -------------------------------------------------------------------------------------
async def test_a_missed_cleanup_runs_once_at_start(service: RegistryService, team: str) -> None:
    d = await push(service, "team/app", image("x"), "v1")
    await service.policies.add_cleanup(team, "**", "**", False, "older_than", 1)
    schedule = await service.policies.set_schedule(team, "* * * * *")
    assert schedule.next_run_at is not None and schedule.next_run_at <= time.time() + 60
    now = [later(3)]  # the server was down for three days: thousands of missed slots
    scheduler = Scheduler(service, clock=lambda: now[0])
    assert await scheduler.tick() == ["cleanup:team"]
    assert await scheduler.tick() == []  # once, not once per missed slot
    runs, total = await service.policies.runs(team, 1, 10)
    assert total == 1 and runs[0].triggered_by == "schedule" and runs[0].deleted == 1
    assert not await exists(service, "team/app", d)
    after = await service.policies.schedule(team)
    assert after.last_run_at == now[0] and after.next_run_at == (now[0] // 60 + 1) * 60
    now[0] += 60
    assert await scheduler.tick() == ["cleanup:team"]


async def test_two_schedulers_never_run_one_job_at_once(service: RegistryService, team: str) -> None:
    started, release, ran = trio.Event(), trio.Event(), []

    async def slow(job: str, at: float) -> None:
        ran.append(job)
        started.set()
        await release.wait()

    now = [time.time()]
    a = Scheduler(service, clock=lambda: now[0], owner="node-a")
    b = Scheduler(service, clock=lambda: now[0], owner="node-b")
    for s in (a, b):
        s.handlers["test:"] = slow
    await service.policies.store.set_schedule("test:job", "* * * * *", now[0] - 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.tick)
        await started.wait()
        assert await b.tick() == []  # node-a holds the lease
        release.set()
    assert ran == ["test:job"]
    assert await b.tick() == []  # and its next run is a minute away
    now[0] += 61
    release = trio.Event()
    release.set()
    assert await b.tick() == ["test:job"]


async def test_the_loop_runs_due_jobs_and_a_job_cut_short_stays_due(service: RegistryService, team: str) -> None:
    started = trio.Event()

    async def forever(job: str, at: float) -> None:
        started.set()
        await trio.sleep_forever()

    scheduler = Scheduler(service, owner="node-a", poll_seconds=0.05)
    scheduler.handlers["test:"] = forever
    await service.policies.store.set_schedule("test:job", "* * * * *", time.time() - 1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await started.wait()
            nursery.cancel_scope.cancel()  # a shutdown in the middle of the job
    # The lease was given back: the job is still due, and another node takes it at once.
    assert [j.job for j in await service.policies.store.claim_due("node-b", time.time(), 60)] == ["test:job"]
    assert (await service.policies.store.schedule("gc")) is not None  # the loop set up GC's schedule first


async def test_gc_follows_its_schedule_or_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gc_schedule"):
        RegistryService.open(Config(data_dir=tmp_path / "bad", gc_schedule="0 0 31 2 * *"))
    cases = [({"gc_schedule": "Daily"}, "0 0 * * *"), ({}, "@every 21600"), ({"gc_interval_seconds": 0}, ""),
             ({"gc_schedule": "None"}, "")]
    for i, (overrides, expected) in enumerate(cases):
        svc = RegistryService.open(Config(data_dir=tmp_path / str(i), **overrides))  # type: ignore[arg-type]
        try:
            now = [time.time()]
            scheduler = Scheduler(svc, clock=lambda: now[0])
            await scheduler.sync_gc()
            row = await svc.policies.store.schedule("gc")
            assert row is not None and row.expression == expected
            if expected == "0 0 * * *":
                now[0] += 3 * DAY  # missed three nights: one GC at start
                assert await scheduler.tick() == ["gc"] and await scheduler.tick() == []
                assert (await svc.catalog.queries.gc_runs(10, 0))[1] == 1
                before = await svc.policies.store.schedule("gc")
                now[0] += 600
                await scheduler.sync_gc()  # the same schedule (a restart): its next run stays
                assert await svc.policies.store.schedule("gc") == before
        finally:
            svc.close()


# -- a property over the real store ----------------------------------------------------------------------
TAGS = ("v1", "v2", "latest", "dev")
examples = itertools.count()


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_no_cleanup_run_ever_deletes_a_protected_artifact(tmp_path: Path, data: st.DataObject) -> None:
    svc = RegistryService.open(Config(data_dir=tmp_path / f"p{next(examples)}"))
    try:
        await svc.namespaces.create("p", "admin")
        pushes = data.draw(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 5),
                                              st.sampled_from((*TAGS, None))), min_size=1, max_size=10))
        for name, seed, tag in pushes:  # tags move, share digests, leave artifacts untagged
            await push(svc, f"p/{name}", image(f"{name}{seed}"), tag)
        pattern = st.sampled_from(["**", "v*", "latest", "dev", "{v1,dev}", "a", "b"])
        for _ in range(data.draw(st.integers(0, 3))):
            try:
                await svc.policies.add_protection("p", data.draw(st.sampled_from(["**", "a", "b"])), data.draw(pattern))
            except RegistryError:
                pass  # a duplicate
        for _ in range(data.draw(st.integers(1, 3))):
            try:
                await svc.policies.add_cleanup("p", data.draw(st.sampled_from(["**", "a", "b"])), data.draw(pattern),
                                               data.draw(st.booleans()),
                                               data.draw(st.sampled_from(["older_than", "retain_pushed",
                                                                          "retain_pulled"])),
                                               data.draw(st.integers(0, 2)))
            except RegistryError:
                pass  # a duplicate
        guards = [(p.image, p.tags) for p in await svc.policies.protection_policies("p")]
        before = {(a.repository, a.digest): a.tags for a in await svc.policies.store.cleanup_candidates("p")}
        protected = {key for key, tags in before.items()
                     if any(compile_pattern(i)(key[0][2:]) and compile_pattern(t)(tag) for i, t in guards for tag in tags)}
        _, items = await svc.policies.run("p", dry_run=False, now=later(data.draw(st.integers(0, 3))))
        after = {(a.repository, a.digest): a.tags for a in await svc.policies.store.cleanup_candidates("p")}
        for key in protected:
            assert after.get(key) == before[key], f"{key} was protected"
        deleted = {(i["repository"], i["digest"]) for i in items if i["outcome"] == "deleted"}
        assert deleted == set(before) - set(after)  # the history says exactly what went
        event(f"protected: {bool(protected)}, kept-protected: {any(i['outcome'] == 'kept-protected' for i in items)}, "
              f"deleted: {bool(deleted)}")
    finally:
        svc.close()
