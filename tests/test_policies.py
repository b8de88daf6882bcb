"""Cleanup planning and protection, as pure decisions (an injected clock: `now`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ncr_trio.patterns import compile_pattern
from ncr_trio.registry.policies import (
    DAY,
    Artifact,
    CleanupPolicy,
    ProtectionPolicy,
    accessories,
    duplicate_of,
    plan_cleanup,
    protecting,
)

NOW = 1_800_000_000.0


def art(image: str, digest: str, *tags: str, pushed_days: float = 100, pulled_days: float | None = None,
        children: tuple[str, ...] = (), subject: str | None = None) -> Artifact:
    return Artifact(image, digest, frozenset(tags), NOW - pushed_days * DAY,
                    None if pulled_days is None else NOW - pulled_days * DAY, frozenset(children), subject)


def deleted(artifacts: list[Artifact], cleanup: list[CleanupPolicy], protection: list[ProtectionPolicy] = ()
            ) -> list[str]:  # type: ignore[assignment]
    return sorted(d.digest for d in plan_cleanup(artifacts, cleanup, list(protection), NOW).delete)


def older(n: int, image: str = "**", tags: str = "**", untagged: bool = False, pid: int = 1) -> CleanupPolicy:
    return CleanupPolicy(pid, image, tags, untagged, "older_than", n)


def test_older_than_counts_pushes_and_pulls() -> None:
    arts = [art("app", "old", "v1"), art("app", "new", "v2", pushed_days=3),
            art("app", "pulled", "v3", pulled_days=2), art("app", "stale-pull", "v4", pulled_days=40)]
    assert deleted(arts, [older(30)]) == ["old", "stale-pull"]
    assert deleted(arts, [older(365)]) == []


def test_tags_sharing_a_digest_keep_the_artifact_unless_every_tag_is_selected() -> None:
    arts = [art("app", "shared", "v1", "latest"), art("app", "alone", "v2")]
    assert deleted(arts, [older(30, tags="v*")]) == ["alone"]  # "latest" keeps "shared"
    assert deleted(arts, [older(30, tags="{v*,latest}")]) == ["alone", "shared"]


def test_untagged_artifacts_only_when_the_policy_says_so() -> None:
    arts = [art("app", "dangling"), art("app", "tagged", "v1")]
    assert deleted(arts, [older(30, tags="x")]) == []
    assert deleted(arts, [older(30, tags="x", untagged=True)]) == ["dangling"]


def test_image_filter_follows_the_guide_patterns() -> None:
    arts = [art("path/hello-world", "a", "v1"), art("path/my/hello-world", "b", "v1"), art("other", "c", "v1")]
    assert deleted(arts, [older(1, image="path/*")]) == ["a"]
    assert deleted(arts, [older(1, image="path/**")]) == ["a", "b"]
    assert deleted(arts, [older(1, image="{path,other}/*")]) == ["a"]
    assert deleted(arts, [older(1, image="{path/*,other}")]) == ["a", "c"]


def test_retain_most_recent_per_image() -> None:
    arts = [art("a", f"a{i}", f"v{i}", pushed_days=i) for i in range(5)] + [art("b", "b0", "v0", pushed_days=50)]
    keep2 = CleanupPolicy(1, "**", "**", False, "retain_pushed", 2)
    assert deleted(arts, [keep2]) == ["a2", "a3", "a4"]
    pulled = [art("a", "x", "1", pulled_days=1), art("a", "y", "2", pulled_days=9), art("a", "z", "3")]
    assert deleted(pulled, [CleanupPolicy(1, "**", "**", False, "retain_pulled", 1)]) == ["y", "z"]


def test_protection_wins_over_cleanup() -> None:
    arts = [art("app", "prod", "release-1"), art("app", "dev", "dev-1")]
    guard = ProtectionPolicy(7, "**", "release-*")
    plan = plan_cleanup(arts, [older(1)], [guard], NOW)
    assert [d.digest for d in plan.delete] == ["dev"]
    assert [(d.digest, d.protected_by) for d in plan.kept] == [("prod", 7)]
    assert deleted(arts, [older(1)], [ProtectionPolicy(7, "**", "release-*", enabled=False)]) == ["dev", "prod"]


def test_a_kept_index_keeps_its_children() -> None:
    arts = [art("app", "index", "v1", pushed_days=1, children=("amd", "arm")), art("app", "amd"), art("app", "arm")]
    assert deleted(arts, [older(30, untagged=True)]) == []
    arts[0] = art("app", "index", "v1", pushed_days=90, children=("amd", "arm"))
    assert deleted(arts, [older(30, untagged=True)]) == ["amd", "arm", "index"]


def test_accessories_are_neither_counted_nor_selected_nor_keep_their_subject() -> None:
    """A fresh signature (a referrer, or cosign's .sig tag) does not keep an old image; an old one is not
    selected by itself; "retain the newest n" counts images, not their signatures."""
    old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    arts = [art("app", old, "old"), art("app", new, "new", pushed_days=2),
            art("app", "sig-old", f"sha256-{'a' * 64}.sig", pushed_days=1),
            art("app", "ref-new", subject=new, pushed_days=200),
            art("app", "stray", f"sha256-{'c' * 64}.sig", pushed_days=200)]  # its subject is not in the image
    assert accessories(arts) == {("app", "sig-old"), ("app", "ref-new")}
    assert deleted(arts, [older(30, untagged=True)]) == [old, "stray"]
    newest = CleanupPolicy(1, "**", "**", True, "retain_pushed", 1)
    assert deleted(arts, [newest]) == [old, "stray"]  # the newest artifact is `new`, not a signature


def test_disabled_policies_do_nothing_and_duplicates_are_found() -> None:
    arts = [art("app", "old", "v1")]
    assert deleted(arts, [CleanupPolicy(1, "**", "**", False, "older_than", 1, enabled=False)]) == []
    assert duplicate_of([older(30, pid=1)], older(30, pid=2)) == 1
    assert duplicate_of([older(30, pid=1)], older(31, pid=2)) is None
    assert duplicate_of([ProtectionPolicy(1, "a", "b")], ProtectionPolicy(2, "a", "b")) == 1


def test_protecting_reports_the_policy() -> None:
    policies = [ProtectionPolicy(1, "team/*", "v*", enabled=False), ProtectionPolicy(2, "**", "v1.?")]
    assert protecting(policies, "team/app", "v1.0") is policies[1]
    assert protecting(policies, "team/app", "v1.10") is None


# -- properties ---------------------------------------------------------------------------------

names = st.sampled_from(["app", "web", "tools/lint", "path/my/x"])
tag_names = st.sampled_from(["v1", "v2", "latest", "dev-1", "release-1", "release-2", "sha256-a.sig"])
patterns = st.sampled_from(["**", "*", "v*", "release-*", "{v1,latest}", "dev-?", "tools/*", "path/**", "x"])


@st.composite
def artifacts(draw: st.DrawFn) -> list[Artifact]:
    n = draw(st.integers(0, 12))
    out: list[Artifact] = []
    for i in range(n):
        children = frozenset(draw(st.sets(st.sampled_from([f"d{j}" for j in range(i)]), max_size=2))) if i else frozenset()
        out.append(Artifact(draw(names), f"d{i}", frozenset(draw(st.sets(tag_names, max_size=3))),
                            NOW - draw(st.floats(0, 400)) * DAY,
                            draw(st.none() | st.floats(0, 400).map(lambda d: NOW - d * DAY)), children))
    return out


cleanup_policies = st.lists(st.builds(CleanupPolicy, st.integers(1, 99), patterns, patterns, st.booleans(),
                                      st.sampled_from(["older_than", "retain_pushed", "retain_pulled"]),
                                      st.integers(0, 60), st.booleans()), max_size=4)
protection_policies = st.lists(st.builds(ProtectionPolicy, st.integers(100, 199), patterns, patterns, st.booleans()),
                               max_size=3)


@settings(max_examples=400, deadline=None)
@given(artifacts(), cleanup_policies, protection_policies)
def test_no_cleanup_run_ever_deletes_a_protected_artifact(arts: list[Artifact], cleanup: list[CleanupPolicy],
                                                           protection: list[ProtectionPolicy]) -> None:
    plan = plan_cleanup(arts, cleanup, protection, NOW)
    by_digest = {a.digest: a for a in arts}
    doomed = {(d.image, d.digest) for d in plan.delete}
    for d in plan.delete:
        a = by_digest[d.digest]
        # never protected
        assert all(protecting(protection, a.image, t) is None for t in a.tags)
        # every tag is matched by one enabled policy that selected it
        assert any(p.enabled and p.id in d.policies and all(compile_pattern(p.tags)(t) for t in a.tags)
                   and (a.tags or p.untagged) for p in cleanup)
    # nothing kept still references a deleted manifest
    for a in arts:
        if (a.image, a.digest) not in doomed:
            assert not ({(a.image, c) for c in a.children} & doomed)
