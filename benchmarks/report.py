"""Statistics over rounds, the ratio columns, the printed table and the JSON results file."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.figures import Metric
from benchmarks.runner import Entrant, Outcome

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
RATIO_TARGET = "distribution-2.8.2"


@dataclass(frozen=True)
class Stats:
    median: float
    min: float
    max: float
    n: int  # rounds that produced a value
    failed: int  # rounds that did not


def stats(values: list[float | None]) -> Stats | None:
    ok = [v for v in values if v is not None]
    if not ok:
        return None
    return Stats(statistics.median(ok), min(ok), max(ok), len(ok), len(values) - len(ok))


def ratio_pairs(entrants: list[Entrant]) -> list[tuple[str, str]]:
    """(subject, reference) for each ratio column: the first server against each other one,
    the first Distribution 2.8.2 (the target) leading."""
    if len(entrants) < 2:
        return []
    subject = entrants[0].label
    others = [e for e in entrants[1:]]
    others.sort(key=lambda e: e.kind.name != RATIO_TARGET)  # stable: target first, others as given
    return [(subject, e.label) for e in others]


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _cell(s: Stats | None) -> str:
    if s is None:
        return "error"
    text = f"{_num(s.median)} / {_num(s.min)} / {_num(s.max)}"
    return text + (f" ({s.failed} failed)" if s.failed else "")


def _short(label: str) -> str:
    return label.removeprefix("distribution-")


def table(entrants: list[Entrant], metrics: list[Metric], outcome: Outcome) -> str:
    pairs = ratio_pairs(entrants)
    header = ["figure", *(f"{e.label} (med/min/max)" for e in entrants),
              *(f"ratio {_short(a)}/{_short(b)}" for a, b in pairs), "better"]
    rows = [header]
    for m in metrics:
        per = {e.label: stats(outcome.values.get(e.label, {}).get(m.key, [])) for e in entrants}
        ratios = []
        for a, b in pairs:
            sa, sb = per[a], per[b]
            ratios.append(f"{sa.median / sb.median:.2f}" if sa and sb and sb.median else "-")
        rows.append([m.label, *(_cell(per[e.label]) for e in entrants), *ratios,
                     "higher" if m.higher_is_better else "lower"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_json(meta: dict[str, Any], entrants: list[Entrant], metrics: list[Metric], outcome: Outcome) -> dict[str, Any]:
    figures = []
    for m in metrics:
        per = {e.label: outcome.values.get(e.label, {}).get(m.key, []) for e in entrants}
        st = {label: stats(v) for label, v in per.items()}
        figures.append({
            "key": m.key, "label": m.label, "unit": m.unit,
            "better": "higher" if m.higher_is_better else "lower",
            "samples": per,
            "stats": {label: (s.__dict__ if s else None) for label, s in st.items()},
            "ratios": {f"{a} / {b}": (st[a].median / st[b].median if st[a] and st[b] and st[b].median else None)
                       for a, b in ratio_pairs(entrants)},
        })
    return {"schema": 1, **meta, "figures": figures, "details": outcome.details, "errors": outcome.errors}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
