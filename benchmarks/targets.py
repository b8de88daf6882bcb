"""The issues' targets, against Distribution 2.8.2 unless they name another server, and whether a run meets them.

Two kinds:
- ratio: the median of ncr-trio (the first server) over the median of Distribution 2.8.2 (or of the server the target
  names), e.g. push >= 1.5x; for a latency "<= 1.00x" means no worse.
- absolute: a bound on ncr-trio's own value in its worst round (errors, memory), since one bad round is
  already a miss.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

REFERENCE = "distribution-2.8.2"

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Target:
    kind: str  # "ratio" or "absolute"
    op: str  # ">=", "<=", "<"
    value: float
    unit: str = ""  # for absolute targets
    against: str = REFERENCE  # for ratio targets: the server it is judged against
    # for ratio targets: the metric of `against` it is judged against, if not the same one (the slowest of ncr-trio's
    # pulls against Distribution's median pull)
    against_key: str | None = None
    against_what: str = ""  # that metric, in a few words, for the target's text

    @property
    def text(self) -> str:
        if self.kind == "ratio":
            vs = "" if self.against == REFERENCE else f" vs {self.against.removeprefix('distribution-')}"
            if self.against_key is not None:
                vs = f" {self.against.removeprefix('distribution-')}'s {self.against_what}"
            return f"{self.op} {self.value:.2f}x{vs}"
        if self.op == "<=" and self.value == 0:
            return "= 0"
        return f"{self.op} {self.value:g} {self.unit}".rstrip()

    def met(self, value: float) -> bool:
        return _OPS[self.op](value, self.value)


# by metric key (benchmarks.figures); metrics not listed have no target
TARGETS: dict[str, Target] = {
    "push_monolithic_mbps": Target("ratio", ">=", 1.5),
    "push_chunked_mbps": Target("ratio", ">=", 1.5),
    "pull_mbps": Target("ratio", ">=", 1.2),
    # issue 16: the slowest of 10 sequential pulls, and the first pull within 1 s of its push, each at or above
    # Distribution 2.8.2's median pull
    "pull_slowest_mbps": Target("ratio", ">=", 1.0, against_key="pull_mbps", against_what="pull"),
    "first_pull_mbps": Target("ratio", ">=", 1.0, against_key="pull_mbps", against_what="pull"),
    "manifest_get_rps": Target("ratio", ">=", 2.0),
    "manifest_get_p99_ms": Target("ratio", "<=", 1.0),
    "blob_head_rps": Target("ratio", ">=", 2.0),
    "blob_head_p99_ms": Target("ratio", "<=", 1.0),
    "push_small_32_bps": Target("ratio", ">=", 2.0),
    "pull_many_errors": Target("absolute", "<=", 0, "errors"),
    "pull_many_rss_mib": Target("absolute", "<", 512, "MiB"),
    "push_rss_growth_mib": Target("absolute", "<", 64, "MiB"),
    # the image cache issue: each blob fetched from the source once, and done before Distribution's pull-through cache
    "cache_pull_upstream_x": Target("absolute", "<=", 1.0, "x"),
    "cache_pull_seconds": Target("ratio", "<", 1.0, against="distribution-3.1.1"),
}

# the hasher: native over hashlib, for each algorithm and thread count
HASHER_TARGET = Target("ratio", ">=", 1.0)


@dataclass(frozen=True)
class Verdict:
    target: Target
    value: float | None  # the ratio, or the worst round's value; None: cannot be judged
    note: str = ""  # why it cannot be judged, or rounds that failed

    @property
    def result(self) -> str:
        if self.value is None:
            return "-" if not self.note.startswith("failed") else "MISS"
        return "PASS" if self.target.met(self.value) else "MISS"

    def as_json(self) -> dict[str, object]:
        return {"kind": self.target.kind, "op": self.target.op, "value": self.target.value,
                "text": self.target.text, "measured": self.value, "result": self.result, "note": self.note}


def judge(key: str, subject_samples: list[float | None], ratio_vs_reference: float | None,
          have_reference: bool) -> Verdict | None:
    """The verdict for one metric, or None if it has no target; the ratio is against the target's `against`."""
    target = TARGETS.get(key)
    if target is None:
        return None
    if target.kind == "ratio":
        if not have_reference:
            return Verdict(target, None, f"no {target.against} in this run")
        return Verdict(target, ratio_vs_reference, "" if ratio_vs_reference is not None else "no ratio")
    failed = sum(v is None for v in subject_samples)
    ok = [v for v in subject_samples if v is not None]
    if failed or not ok:
        return Verdict(target, None, f"failed in {failed} round(s)")
    worst = max(ok) if target.op in ("<", "<=") else min(ok)
    return Verdict(target, worst)
