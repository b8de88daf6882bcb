"""Statistics over rounds, the ratio columns, the printed table and the JSON results file."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.figures import Metric
from benchmarks.runner import Entrant, Outcome
from benchmarks.targets import HASHER_TARGET, REFERENCE, TARGETS, Verdict, judge

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
RATIO_TARGET = REFERENCE


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


def ratio(a: Stats | None, b: Stats | None) -> float | None:
    """Median over median; for a rate above 1 means `a` is faster, for a latency it means `a` is slower."""
    if a is None or b is None or b.median == 0:
        return None
    return a.median / b.median


def subjects(entrants: list[Entrant]) -> list[Entrant]:
    """Whose ratios are shown: the first server, and when it is ncr-trio every ncr-trio after it (as `make run`
    starts it, then tuned); the targets are judged on the first alone."""
    if not entrants:
        return []
    if not entrants[0].kind.is_ncr:
        return entrants[:1]
    return [e for e in entrants if e.kind.is_ncr]


def ratio_pairs(entrants: list[Entrant]) -> list[tuple[str, str]]:
    """(subject, reference) for each ratio column: each subject against each other server,
    the first Distribution 2.8.2 (the target) leading."""
    subj = subjects(entrants)
    others = [e for e in entrants if e not in subj]
    others.sort(key=lambda e: e.kind.name != RATIO_TARGET)  # stable: target first, others as given
    return [(s.label, e.label) for s in subj for e in others]


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def _cell(s: Stats | None) -> str:
    if s is None:
        return "error"
    text = f"{_num(s.median)} / {_num(s.min)} / {_num(s.max)}"
    return text + (f" ({s.failed} failed)" if s.failed else "")


def _short(label: str) -> str:
    return label.removeprefix("distribution-")


def reference_pair(entrants: list[Entrant], reference: str = RATIO_TARGET) -> tuple[str, str] | None:
    """(subject, Distribution 2.8.2 or `reference`) if the run has both: what the ratio targets are judged on."""
    return next(((a, b) for a, b in ratio_pairs(entrants)
                 if next(e for e in entrants if e.label == b).kind.name == reference), None)


def verdict(entrants: list[Entrant], m: Metric, outcome: Outcome) -> Verdict | None:
    subject = entrants[0].label
    samples = outcome.values.get(subject, {}).get(m.key, [])
    target = TARGETS.get(m.key)
    pair = reference_pair(entrants, target.against if target else RATIO_TARGET)
    r = None
    if pair is not None:
        against_key = (target.against_key if target else None) or m.key
        r = ratio(stats(outcome.values.get(pair[0], {}).get(m.key, [])),
                  stats(outcome.values.get(pair[1], {}).get(against_key, [])))
    return judge(m.key, samples, r, pair is not None)


def table(entrants: list[Entrant], metrics: list[Metric], outcome: Outcome) -> str:
    pairs = ratio_pairs(entrants)
    header = ["figure", *(f"{e.label} (med/min/max)" for e in entrants),
              *(f"ratio {_short(a)}/{_short(b)}" for a, b in pairs), "target (2.8.2)", "result", "better"]
    rows = [header]
    for m in metrics:
        per = {e.label: stats(outcome.values.get(e.label, {}).get(m.key, [])) for e in entrants}
        ratios = [f"{r:.2f}" if (r := ratio(per[a], per[b])) is not None else "-" for a, b in pairs]
        v = verdict(entrants, m, outcome)
        rows.append([m.label, *(_cell(per[e.label]) for e in entrants), *ratios,
                     v.target.text if v else "", v.result if v else "",
                     "higher" if m.higher_is_better else "lower"])
    return _grid(rows)


def misses(entrants: list[Entrant], metrics: list[Metric], outcome: Outcome) -> list[str]:
    """The targets the first server missed (or could not be judged on because it failed), one line each."""
    out = []
    for m in metrics:
        v = verdict(entrants, m, outcome)
        if v is not None and v.result == "MISS":
            measured = "" if v.value is None else f"{v.value:.2f}x" if v.target.kind == "ratio" else f"{v.value:g}"
            out.append(f"{m.label}: {measured or v.note} (target {v.target.text})")
    return out


def hasher_table(hasher: dict[str, Any]) -> str:
    """The native hasher against hashlib (benchmarks.bench_hasher.run()), with the target native >= hashlib."""
    rows = [["hasher (1 MiB updates)", "threads", "native MB/s", "hashlib MB/s", "ratio native/hashlib",
             "target", "result"]]
    for r in hasher.get("results", []):
        v = hasher_verdict(r)
        rows.append([r["algorithm"], str(r["threads"]), f"{r['native_mb_s']:.0f}", f"{r['hashlib_mb_s']:.0f}",
                     f"{r['ratio']:.3f}", v.target.text, v.result])
    return _grid(rows)


def hasher_verdict(row: dict[str, Any]) -> Verdict:
    return Verdict(HASHER_TARGET, float(row["ratio"]))


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_table(entrants: list[Entrant], figure_names: list[str], outcome: Outcome) -> str:
    """Cores busy during each figure (median over rounds): the server, then the load client (curl, wrk or
    loadgen). A figure made of phases (push then pull) gets a row per phase.

    A server near the machine's core count is CPU-bound; a client far below it is not the bottleneck."""
    rows = [["cores used: server + client", *(e.label for e in entrants)]]
    for name in figure_names:
        ds_all = [d for d in outcome.details if d["figure"] == name]
        phases = next((d["phases"] for d in ds_all if d.get("phases")), None)
        parts = [(f"{name} {p['name']}", p["name"]) for p in phases] if phases else [(name, None)]
        for title, phase in parts:
            row = [title]
            for e in entrants:
                ds = [d for d in ds_all if d["server"] == e.label]
                if phase is not None:
                    ds = [p for d in ds for p in d.get("phases", []) if p["name"] == phase]
                ds = [d for d in ds if d["wall_seconds"]]
                if not ds:
                    row.append("-")
                    continue
                server = statistics.median(d["server_cpu_seconds"] / d["wall_seconds"] for d in ds)
                client = statistics.median(d["client_cpu_seconds"] / d["wall_seconds"] for d in ds)
                row.append(f"{server:.2f} + {client:.2f}")
            rows.append(row)
    return _grid(rows)


def noise_note(outcome: Outcome, cpus: int) -> str | None:
    """Say so when other work kept the machine busy while we measured (the machine may be shared)."""
    loads = [d["other_cpu_seconds"] / d["wall_seconds"] for d in outcome.details if d["wall_seconds"] > 0.5]
    if not loads or max(loads) < 0.25:
        return None
    return (f"note: other work kept this {cpus}-core machine busy while measuring: {statistics.median(loads):.2f} "
            f"cores in the median measurement, up to {max(loads):.2f}; expect noisier figures")


def results_json(meta: dict[str, Any], entrants: list[Entrant], metrics: list[Metric], outcome: Outcome,
                 hasher: dict[str, Any] | None = None) -> dict[str, Any]:
    figures = []
    for m in metrics:
        v = verdict(entrants, m, outcome)
        per = {e.label: outcome.values.get(e.label, {}).get(m.key, []) for e in entrants}
        st = {label: stats(v) for label, v in per.items()}
        figures.append({
            "key": m.key, "label": m.label, "unit": m.unit,
            "better": "higher" if m.higher_is_better else "lower",
            "samples": per,
            "stats": {label: (s.__dict__ if s else None) for label, s in st.items()},
            "ratios": {f"{a} / {b}": ratio(st[a], st[b]) for a, b in ratio_pairs(entrants)},
            "target": v.as_json() if v else None,
        })
    if hasher is not None and "results" in hasher:
        hasher = {**hasher, "results": [{**r, "target": hasher_verdict(r).as_json()} for r in hasher["results"]]}
    return {"schema": 2, **meta, "figures": figures, "hasher": hasher, "details": outcome.details,
            "errors": outcome.errors}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
