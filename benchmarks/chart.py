"""The results as one PNG (matplotlib, Agg backend), from the results JSON: `python -m benchmarks.chart [JSON [PNG]]`.

Top: for every figure, how many times better ncr-trio is than each Distribution (its ratio for rates, the
inverse for latencies, memory and times, so that right of 1 is always better), with the issue's target as a
black tick on the 2.8.2 bar, which is green when the target is met and red when it is missed; the native
hasher against hashlib the same way. Bottom: the absolute targets (memory, errors) per server, with the limit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from benchmarks.targets import REFERENCE  # noqa: E402

PASS, MISS, NEUTRAL, OTHER = "#2e9d4f", "#d0433a", "#8c8c8c", "#6fa8dc"


def _short(label: str) -> str:
    return label.removeprefix("distribution-")


def _advantage(ratio: float | None, higher_is_better: bool) -> float | None:
    if ratio is None or ratio <= 0:
        return None
    return ratio if higher_is_better else 1 / ratio


def _relative_rows(doc: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    servers = doc.get("servers", [])
    subject = servers[0]["label"] if servers else ""
    # Distribution's versions (a tuned ncr-trio is another subject, not a reference: the table has its ratios)
    ncr = servers[0]["kind"].startswith("ncr-trio") if servers else False
    others = [s for s in servers[1:] if not (ncr and s["kind"].startswith("ncr-trio"))]
    others.sort(key=lambda s: s["kind"] != REFERENCE)
    refs = [s["label"] for s in others]
    rows = []
    for f in doc.get("figures", []):
        t = f.get("target") or {}
        if t.get("kind") == "absolute":
            continue  # shown in the bottom panels
        higher = f["better"] == "higher"
        adv = {ref: _advantage(f["ratios"].get(f"{subject} / {ref}"), higher) for ref in refs}
        if all(v is None for v in adv.values()):
            continue
        target = None
        if t.get("kind") == "ratio":
            target = t["value"] if higher else 1 / t["value"]
        rows.append({"label": f["label"], "adv": adv, "target": target, "result": t.get("result")})
    for r in (doc.get("hasher") or {}).get("results", []):
        t = r.get("target") or {}
        label = f"hasher {r['algorithm']}, {r['threads']} thread{'s' if r['threads'] > 1 else ''}: native / hashlib"
        rows.append({"label": label, "adv": {"hashlib": r["ratio"]}, "target": t.get("value"),
                     "result": t.get("result")})
    return rows, refs


def render(doc: dict[str, Any], path: Path) -> None:
    rows, refs = _relative_rows(doc)
    absolute = [f for f in doc.get("figures", []) if (f.get("target") or {}).get("kind") == "absolute"]
    servers = [s["label"] for s in doc.get("servers", [])]
    subject = servers[0] if servers else "ncr-trio"

    n_rows = max(len(rows), 1)
    top_h = 0.42 * n_rows + 1.2
    bottom_h = 0.0 if not absolute else 0.45 * max(len(servers), 1) + 1.6
    fig = plt.figure(figsize=(13, top_h + bottom_h + 1.2), dpi=110, layout="constrained")
    grid = fig.add_gridspec(2 if absolute else 1, max(len(absolute), 1),
                            height_ratios=[top_h, bottom_h] if absolute else [1])
    ax = fig.add_subplot(grid[0, :])

    series = refs or ["hashlib"]
    height = 0.8 / max(len(series), 1)
    all_values: list[float] = []
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        row_series = [s for s in series if s in row["adv"]] or list(row["adv"])
        for j, ref in enumerate(row_series):
            v = row["adv"].get(ref)
            if v is None:
                continue
            all_values.append(v)
            yy = y + (len(row_series) - 1) / 2 * height - j * height
            first = j == 0
            color = (PASS if row["result"] == "PASS" else MISS if row["result"] == "MISS" else NEUTRAL) if first else OTHER
            ax.barh(yy, math.log2(v), height=height * 0.9, color=color, left=0)
            end = math.log2(v)
            if first and row["target"] is not None:
                tx = math.log2(row["target"])
                ax.plot([tx, tx], [yy - height * 0.55, yy + height * 0.55], color="black", lw=2.2)
                all_values.append(row["target"])
                end = max(end, tx) if v >= 1 else min(end, tx)
            verdict = f"  {row['result']}" if first and row["result"] in ("PASS", "MISS") else ""
            ax.text(end + (0.06 if v >= 1 else -0.06), yy, f"{v:.2f}x vs {_short(ref)}{verdict}",
                    va="center", ha="left" if v >= 1 else "right", fontsize=8)
    lo = min([0.5, *all_values]) / 1.3
    hi = max([2.0, *all_values]) * 1.5
    ax.set_xlim(math.log2(lo), math.log2(hi))
    ticks = [2.0**k for k in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1)]
    ax.set_xticks([math.log2(t) for t in ticks], [f"{t:g}x" for t in ticks])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [r["label"] for r in reversed(rows)], fontsize=9)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel(f"times better than Distribution (median over rounds; right of 1x: {subject} is better; "
                  "for latency and time the inverse ratio)", fontsize=9)
    handles = [Patch(color=PASS, label=f"vs {_short(refs[0]) if refs else 'reference'}: target met"),
               Patch(color=MISS, label="target missed"),
               Patch(color=NEUTRAL, label="no target")]
    if len(refs) > 1:
        handles.append(Patch(color=OTHER, label="vs " + ", ".join(_short(r) for r in refs[1:])))
    handles.append(Line2D([], [], color="black", lw=2.2, label="issue's target (vs 2.8.2)"))
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)

    for k, f in enumerate(absolute):
        axb = fig.add_subplot(grid[1, k])
        t = f["target"]
        vals = []
        for s in servers:
            samples = [v for v in f["samples"].get(s, []) if v is not None]
            vals.append(max(samples) if samples else float("nan"))
        colors = [(PASS if t["result"] == "PASS" else MISS) if i == 0 else NEUTRAL for i in range(len(servers))]
        ys = list(range(len(servers)))[::-1]
        axb.barh(ys, [0 if math.isnan(v) else v for v in vals], color=colors, height=0.6)
        top = max([t["value"], *[v for v in vals if not math.isnan(v)]] or [1]) or 1
        for y, v in zip(ys, vals):
            axb.text((0 if math.isnan(v) else v) + top * 0.02, y, "failed" if math.isnan(v) else f"{v:.0f}",
                     va="center", fontsize=8)
        if t["value"] > 0:
            axb.axvline(t["value"], color="black", lw=1.5, ls="--")
        axb.set_xlim(0, top * 1.3)
        axb.set_yticks(ys, [_short(s) for s in servers], fontsize=8)
        axb.set_title(f"{f['label']}\n(worst round; target {t['text']}: {t['result']})", fontsize=8.5)
        axb.tick_params(axis="x", labelsize=8)
        axb.set_xlabel(f["unit"], fontsize=8)

    host = doc.get("host", {})
    settings = doc.get("settings", {})
    fig.suptitle(
        f"{subject} vs Distribution  ·  {doc.get('started', '')}  ·  {settings.get('rounds', '?')} round(s)  ·  "
        f"{host.get('cpus', '?')} cores  ·  ncr-trio-tuned workers: "
        f"{settings.get('ncr_tuned_workers', settings.get('ncr_workers', '?'))}"
        + ("  ·  QUICK RUN (smaller sizes)" if settings.get("quick") else ""),
        fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else Path(__file__).resolve().parent / "results" / "latest.json"
    dst = Path(args[1]) if len(args) > 1 else src.with_suffix(".png")
    render(json.loads(src.read_text()), dst)
    print(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
