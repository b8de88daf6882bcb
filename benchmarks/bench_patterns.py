"""Micro-benchmark: the guide's glob patterns on hostile inputs, ncr_trio.patterns against wcmatch.

    python -m benchmarks.bench_patterns [--repeat 200] [--wcmatch-seconds 2] [--json]

For each (pattern, 255-character name): "cold" is one match by a freshly compiled Glob (compiling
included), "warm" the best of `repeat` matches by the same Glob (its DFA built), in µs, with the
steps each counted. wcmatch (the library used before; a test dependency) backtracks: it is timed
on the same pattern with names of growing length, and stops at the first match slower than
`--wcmatch-seconds`, to show the growth without waiting for it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ncr_trio.patterns import MAX_PATTERN, Glob

A255 = "a" * 255
PATH255 = "a/" * 127 + "a"
CASES = [  # (pattern, name, the name wcmatch gets as it grows: a prefix of that many "a"s)
    ("*a*a*a*a*a*a*a*a*a*ab", A255, True),
    ("*?" * 8 + "/", A255, True),
    ("{a,{a,{a,{a,{a,{a,b}}}}}}" * 3 + "*b", A255, True),
    ("{a,{a,{a,{a,{a,{a,b}}}}}}" * 4 + "*b", A255, True),
    ("{*,?}" * 20 + "b", A255, True),
    ("**/" * 8 + "a*a*a*a*b", PATH255, False),
    ("*a" * (MAX_PATTERN // 2), A255, False),  # the longest pattern accepted, all its stars alive
    ("*" + "a" * (MAX_PATTERN - 1), A255, False),
]


def _ncr(pattern: str, name: str, repeat: int) -> dict[str, Any]:
    began = time.perf_counter()
    glob = Glob(pattern)
    matched = glob(name)
    cold = time.perf_counter() - began
    cold_steps = glob.steps
    warm = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        glob(name)
        warm = min(warm, time.perf_counter() - began)
    return {"matched": matched, "cold_us": round(cold * 1e6, 1), "cold_steps": cold_steps,
            "warm_us": round(warm * 1e6, 2), "warm_steps": (glob.steps - cold_steps) // max(repeat, 1)}


def _wcmatch(pattern: str, budget: float) -> list[dict[str, Any]] | str:
    try:
        from wcmatch import glob as wcglob
    except ImportError:
        return "wcmatch is not installed (pip install -e '.[test]')"
    try:
        matcher = wcglob.compile(pattern, flags=wcglob.GLOBSTAR | wcglob.BRACE)
    except Exception as e:  # e.g. more than 1000 brace expansions
        return f"refused: {e}"
    figures = []
    for length in range(8, 256, 4):
        began = time.perf_counter()
        matcher.match("a" * length)
        elapsed = time.perf_counter() - began
        figures.append({"length": length, "us": round(elapsed * 1e6, 1)})
        if elapsed > budget:
            break
    return figures


def run(repeat: int = 200, wcmatch_seconds: float = 2.0) -> dict[str, Any]:
    results = []
    for pattern, name, against_wcmatch in CASES:
        row: dict[str, Any] = {"pattern": pattern, "name": name, **_ncr(pattern, name, repeat)}
        if against_wcmatch:
            row["wcmatch"] = _wcmatch(pattern, wcmatch_seconds)
        results.append(row)
    return {"benchmark": "patterns", "unit": "µs", "repeat": repeat, "python": sys.version.split()[0],
            "results": results}


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else f"{text[:width - 9]}...({len(text)})"


def format_table(figures: dict[str, Any]) -> str:
    header = (f"{'pattern':<28} {'name':<16} {'cold µs':>9} {'steps':>7} {'warm µs':>8} {'steps':>5}  "
              f"wcmatch on n \"a\"s")
    lines = [f"ncr_trio.patterns: one match of a 255-character name; warm = best of {figures['repeat']}",
             header, "-" * len(header)]
    for r in figures["results"]:
        wc = r.get("wcmatch", "-")
        if isinstance(wc, list):
            wc = ", ".join(f"n={f['length']}: {f['us'] / 1e3:.1f} ms" for f in wc[-3:])
        lines.append(f"{_short(r['pattern']):<28} {_short(r['name'], 16):<16} {r['cold_us']:>9.0f} "
                     f"{r['cold_steps']:>7} {r['warm_us']:>8.1f} {r['warm_steps']:>5}  {wc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_patterns", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="warm matches per case; the best counts")
    parser.add_argument("--wcmatch-seconds", type=float, default=2.0,
                        help="stop growing wcmatch's name after a match this slow")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    figures = run(args.repeat, args.wcmatch_seconds)
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))


if __name__ == "__main__":
    main()
