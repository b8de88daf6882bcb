"""`python -m benchmarks`: ncr-trio against CNCF Distribution, side by side, on 127.0.0.1.

Examples:
  python -m benchmarks                                   # ncr-trio vs Distribution 2.8.2 (+ 3.1.1 if built)
  python -m benchmarks --quick                           # smoke run: 64 MiB blobs, 3 s wrk, 1 round
  python -m benchmarks --quick --servers 2.8.2,2.8.2     # self-check: the same server twice, ratios ~1
  python -m benchmarks --servers 2.8.2,3.1.1 --figures manifest-get,blob-head
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import figures as figs
from benchmarks.blobs import MiB, make_blob, small_image
from benchmarks.report import RESULTS, cpu_table, noise_note, results_json, table, write_json
from benchmarks.runner import Entrant, run_rounds
from benchmarks.servers import DISTRIBUTION_BINARIES, NCR_TRIO, ServerKind, parse_kind

METHOD = [
    "Each round starts every server fresh (empty storage) and runs each figure on every server in turn "
    "(A B A B), so noise hits all alike; figures are median/min/max over rounds.",
    "Blob figures: curl streams the body from a file in the page cache (-T) and times itself; MB/s is "
    "10^6 bytes/s over the sum of curl's time_total for the timed requests (the opening POST is untimed).",
    "Chunked push: a PATCH with Content-Range per chunk then an empty PUT ?digest=, one curl each; its blob "
    "has another digest than the monolithic one.",
    "Request rates: wrk, closed loop, keep-alive. Blob HEAD targets a 0-byte blob because wrk cannot read "
    "HEAD responses announcing a body (wg/wrk#198); the harness checks it is unknown in other repositories.",
    "Distribution runs with its shipped settings (in-memory blob descriptor cache) and its access log off.",
    "The page cache is flushed (sync) before every measurement; nothing is dropped from it.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", help="comma list of servers to run, the first being the subject of the ratios: "
                   "ncr-trio, distribution-2.8.2 (or 2.8.2), distribution-3.1.1 (or 3.1.1); a server may repeat "
                   "(default: ncr-trio and the --against versions)")
    p.add_argument("--against", default="auto",
                   help="Distribution versions to compare ncr-trio with, e.g. 2.8.2,3.1.1 "
                   "(default auto: 2.8.2, and 3.1.1 if registry-v3 is installed)")
    p.add_argument("--rounds", type=int, help="rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="smoke mode: 64 MiB blobs, 3 s wrk runs, 1 round")
    p.add_argument("--size-mib", type=int, help="blob size in MiB (default 1024; --quick: 64)")
    p.add_argument("--chunk-mib", type=int, default=16, help="chunk size of the chunked push (default 16)")
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 10; --quick: 3)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--figures", default=",".join(f.name for f in figs.FIGURES),
                   help="comma list of figures (default all: %(default)s)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the run's blobs and server storage go, in a new folder (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the run's folder (blobs) afterwards")
    p.add_argument("--output", type=Path, default=RESULTS, help="results JSON (default benchmarks/results/latest.json)")
    a = p.parse_args(argv)
    a.rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    a.size_mib = a.size_mib if a.size_mib is not None else (64 if a.quick else 1024)
    a.duration = a.duration if a.duration is not None else (3 if a.quick else 10)
    if a.rounds < 1 or a.size_mib < 1 or a.chunk_mib < 1 or a.duration < 1:
        p.error("--rounds, --size-mib, --chunk-mib and --duration must be positive")
    return a


def entrants(a: argparse.Namespace, say: Any) -> list[Entrant]:
    if a.servers:
        kinds = [parse_kind(n) for n in a.servers.split(",") if n.strip()]
    else:
        versions = [v.strip() for v in a.against.split(",") if v.strip()]
        auto = versions == ["auto"]
        kinds = [ServerKind(NCR_TRIO)]
        for v in (list(DISTRIBUTION_BINARIES) if auto else versions):
            kind = parse_kind(v)
            if auto and kind.missing():
                say(f"note: {kind.name} left out: {kind.missing()}")
                continue
            kinds.append(kind)
    for k in kinds:
        if k.missing():
            raise SystemExit(f"cannot run {k.name}: {k.missing()}")
    seen: dict[str, int] = {}
    out = []
    for k in kinds:
        seen[k.name] = seen.get(k.name, 0) + 1
        out.append(Entrant(k.name if seen[k.name] == 1 else f"{k.name}#{seen[k.name]}", k))
    return out


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"? ({e})"
    return ((r.stdout or r.stderr).splitlines() or ["?"])[0].strip()


def _check_space(workdir: Path, needed: int) -> None:
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(f"{workdir} has {free / 2**30:.1f} GiB free; this run needs about {needed / 2**30:.1f} GiB")


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: servers stopped, files removed


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)
    chosen = figs.select(a.figures)
    who = entrants(a, say)
    for exe in ("curl", "wrk"):
        if shutil.which(exe) is None:
            raise SystemExit(f"{exe} is not installed")
    settings = figs.Settings(blob_size=a.size_mib * MiB, chunk_size=a.chunk_mib * MiB, duration=a.duration,
                             threads=a.threads, connections=a.connections)
    a.workdir.mkdir(parents=True, exist_ok=True)
    # two input blobs, plus both pushed to every server in a round (storage is removed after each round)
    _check_space(a.workdir, 2 * settings.blob_size * (1 + len(who)) + 2**30)

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="ncr-bench-", dir=a.workdir))
    say(f"servers: {', '.join(e.label for e in who)}; figures: {', '.join(f.name for f in chosen)}; "
        f"rounds: {a.rounds}; folder: {run_dir}")
    try:
        say(f"writing two random {settings.size_label} blobs ...")
        tg = time.monotonic()
        data = figs.Data(
            settings=settings,
            blob=make_blob(run_dir / "blobs", "monolithic", settings.blob_size, settings.blob_size),
            chunked_blob=make_blob(run_dir / "blobs", "chunked", settings.blob_size, settings.chunk_size),
            image=small_image(),
        )
        os.sync()
        say(f"  done in {time.monotonic() - tg:.1f}s: {data.blob.digest[:19]}..., {data.chunked_blob.digest[:19]}...")
        outcome = run_rounds(who, chosen, data, run_dir, a.rounds, say)
    finally:
        if a.keep:
            say(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    metrics = [m for f in chosen for m in f.metrics(settings)]
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "elapsed_seconds": round(time.monotonic() - t0, 1),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])]),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "python": platform.python_version()},
        "settings": {"rounds": a.rounds, "blob_bytes": settings.blob_size, "chunk_bytes": settings.chunk_size,
                     "wrk_seconds": settings.duration, "wrk_threads": settings.threads,
                     "wrk_connections": settings.connections, "figures": [f.name for f in chosen]},
        "tools": {"curl": _first_line(["curl", "--version"]), "wrk": _first_line(["wrk", "-v"])},
        "servers": [{"label": e.label, "kind": e.kind.name, "version": e.kind.version()} for e in who],
        "method": METHOD,
    }
    write_json(a.output, results_json(meta, who, metrics, outcome))
    print()
    print(table(who, metrics, outcome))
    print()
    print(cpu_table(who, [f.name for f in chosen], outcome))
    print()
    note = noise_note(outcome, os.cpu_count() or 1)
    if note:
        print(note)
    for e in who:
        print(f"{e.label}: {next(s['version'] for s in meta['servers'] if s['label'] == e.label)}")
    print(f"{a.rounds} round(s), {meta['elapsed_seconds']:.0f}s; results: {a.output}")
    if outcome.errors:
        print(f"{len(outcome.errors)} error(s):")
        for err in outcome.errors:
            print(f"  round {err['round']} {err['server']} {err['figure']}: {err['error'].splitlines()[0]}")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: servers stopped, run folder removed", file=sys.stderr)
        sys.exit(130)
