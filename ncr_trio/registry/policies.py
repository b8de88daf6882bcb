"""Cleanup and protection policies: the pure decisions, separate from storage so they can be
tested exhaustively (tests/test_policies.py, with hypothesis).

A cleanup policy AND-combines an image filter, a tag filter (which may include untagged
artifacts) and a rule:

  - `older_than` N days: artifacts neither pushed nor pulled within the last N days (the guide's
    "exclude artifacts pushed or pulled within N days");
  - `retain_pushed` / `retain_pulled` N: all but the N most recently pushed (pulled) artifacts of
    each image (Harbor's retention rules).

Safety, by construction:
  - an artifact is deleted only when *every* tag pointing at it matches the tag filter of the
    policy that selects it: never through one tag while another keeps it (tags sharing a digest);
  - an artifact one of whose tags an enabled protection policy covers is never deleted
    (protection wins over cleanup, as the guide warns);
  - a manifest that a kept index (or a kept artifact's subject link) still needs is never deleted;
  - the plan is computed from one snapshot and each deletion is re-checked when it is carried out
    (a tag re-pushed meanwhile keeps its new artifact: see registry/cleanup.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ncr_trio.limits import MAX_POLICIES, RULES
from ncr_trio.meta.accessories import tag_subject
from ncr_trio.patterns import compile_pattern

DAY = 86400.0


def cleanup_job(registry: str) -> str:
    """The scheduler's name for a registry's cleanup."""
    return f"cleanup:{registry}"


@dataclass(frozen=True)
class CleanupPolicy:
    id: int
    image: str  # pattern over the image name (the repository without its registry)
    tags: str  # pattern over tag names
    untagged: bool  # untagged artifacts are selected too
    rule: str  # one of RULES
    n: int
    enabled: bool = True

    @property
    def identity(self) -> tuple[str, str, bool, str, int]:
        """What makes two policies duplicates (the guide: same image, tag and rule)."""
        return (self.image, self.tags, self.untagged, self.rule, self.n)


# What a cache-type registry gets at its creation (the guide): a cleanup policy deleting the artifacts,
# tagged or not, neither pulled nor cached within 7 days, run daily. Users may change or add policies.
CACHE_CLEANUP = CleanupPolicy(0, "**", "**", True, "older_than", 7)
CACHE_CLEANUP_SCHEDULE = "Daily"


@dataclass(frozen=True)
class ProtectionPolicy:
    id: int
    image: str
    tags: str
    enabled: bool = True

    @property
    def identity(self) -> tuple[str, str]:
        return (self.image, self.tags)


@dataclass(frozen=True)
class Artifact:
    image: str
    digest: str
    tags: frozenset[str]
    pushed_at: float
    pulled_at: float | None = None
    children: frozenset[str] = frozenset()  # manifests it references (an index's)
    subject: str | None = None


@dataclass(frozen=True)
class Decision:
    image: str
    digest: str
    tags: tuple[str, ...]
    policies: tuple[int, ...]  # the cleanup policies that selected it
    protected_by: int | None = None  # kept: the protection policy that covers it
    needed_by: str | None = None  # kept: the manifest that still references it


@dataclass
class CleanupPlan:
    delete: list[Decision] = field(default_factory=list)
    kept: list[Decision] = field(default_factory=list)  # selected, but protected or still needed


def protecting(policies: Iterable[ProtectionPolicy], image: str, tag: str) -> ProtectionPolicy | None:
    """The enabled protection policy covering `tag` of `image`, if any."""
    for p in policies:
        if p.enabled and compile_pattern(p.image)(image) and compile_pattern(p.tags)(tag):
            return p
    return None


def _selects(policy: CleanupPolicy, artifact: Artifact) -> bool:
    """Whether the policy's filters take in the artifact (the rule is applied separately)."""
    if not compile_pattern(policy.image)(artifact.image):
        return False
    if not artifact.tags:
        return policy.untagged
    match = compile_pattern(policy.tags)
    return all(match(t) for t in artifact.tags)


def _by_rule(policy: CleanupPolicy, scope: Sequence[Artifact], now: float) -> list[Artifact]:
    if policy.rule == "older_than":
        horizon = now - policy.n * DAY
        return [a for a in scope if max(a.pushed_at, a.pulled_at or 0.0) < horizon]
    def key(a: Artifact) -> float:
        return a.pushed_at if policy.rule == "retain_pushed" else (a.pulled_at or 0.0)

    doomed: list[Artifact] = []
    by_image: dict[str, list[Artifact]] = {}
    for a in scope:
        by_image.setdefault(a.image, []).append(a)
    for group in by_image.values():
        group.sort(key=lambda a: (key(a), a.pushed_at, a.digest), reverse=True)
        doomed.extend(group[policy.n:])
    return doomed


def accessories(artifacts: Sequence[Artifact]) -> set[tuple[str, str]]:
    """(image, digest) of the accessories among `artifacts`: about another artifact of their image, by
    their subject or their cosign `.sig`/`.att`/`.sbom` tag (meta/accessories.py)."""
    present = {(a.image, a.digest) for a in artifacts}
    out = set()
    for a in artifacts:
        subjects = [a.subject] if a.subject else []
        subjects += [named[0] for t in a.tags if (named := tag_subject(t)) is not None]
        if any((a.image, s) in present and s != a.digest for s in subjects):
            out.add((a.image, a.digest))
    return out


def plan_cleanup(artifacts: Sequence[Artifact], cleanup: Sequence[CleanupPolicy],
                 protection: Sequence[ProtectionPolicy], now: float) -> CleanupPlan:
    """What a cleanup run deletes (and what it would have deleted but must keep).

    Accessories (signatures, attestations, SBOMs, referrers of an artifact of their image) are neither
    counted nor selected: they go when their subject goes (the store deletes them with it), and they
    do not keep their subject."""
    extra = accessories(artifacts)
    artifacts = [a for a in artifacts if (a.image, a.digest) not in extra]
    selected: dict[tuple[str, str], list[int]] = {}
    for policy in cleanup:
        if not policy.enabled:
            continue
        scope = [a for a in artifacts if _selects(policy, a)]
        for a in _by_rule(policy, scope, now):
            selected.setdefault((a.image, a.digest), []).append(policy.id)
    by_key = {(a.image, a.digest): a for a in artifacts}
    plan = CleanupPlan()
    doomed: dict[tuple[str, str], Decision] = {}
    for key, ids in selected.items():
        a = by_key[key]
        tags = tuple(sorted(a.tags))
        guard = next((p for t in tags if (p := protecting(protection, a.image, t)) is not None), None)
        decision = Decision(a.image, a.digest, tags, tuple(ids), protected_by=guard.id if guard else None)
        if guard is not None:
            plan.kept.append(decision)
        else:
            doomed[key] = decision
    # A manifest something kept still references (an index's child, the subject of a referrer whose
    # subject is not in its image: a cross-image reference) stays.
    changed = True
    while changed:
        changed = False
        for a in artifacts:
            if (a.image, a.digest) in doomed:
                continue
            for needed in (*a.children, *((a.subject,) if a.subject else ())):
                key = (a.image, needed)
                if key in doomed:
                    d = doomed.pop(key)
                    plan.kept.append(Decision(d.image, d.digest, d.tags, d.policies, needed_by=a.digest))
                    changed = True
    plan.delete = sorted(doomed.values(), key=lambda d: (d.image, d.digest))
    return plan


def duplicate_of(policies: Iterable[CleanupPolicy | ProtectionPolicy], new: CleanupPolicy | ProtectionPolicy
                 ) -> int | None:
    for p in policies:
        if type(p) is type(new) and p.identity == new.identity and p.id != new.id:
            return p.id
    return None


__all__ = ["CACHE_CLEANUP", "CACHE_CLEANUP_SCHEDULE", "DAY", "MAX_POLICIES", "RULES", "Artifact", "CleanupPlan",
           "CleanupPolicy", "Decision", "ProtectionPolicy", "accessories", "cleanup_job", "duplicate_of",
           "plan_cleanup", "protecting"]
