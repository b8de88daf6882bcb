"""`python -m benchmarks`: ncr-trio against CNCF Distribution, side by side, on 127.0.0.1.

Examples:
  python -m benchmarks                                   # ncr-trio (as `make run`, and tuned) vs Distribution
  python -m benchmarks --quick                           # smoke run: smaller blobs and counts, 1 round
  python -m benchmarks --quick --servers 2.8.2,2.8.2     # self-check: the same server twice, ratios ~1
  python -m benchmarks --servers 2.8.2,3.1.1 --figures manifest-get,blob-head
  python -m benchmarks --ncr-workers 4                   # the tuned ncr-trio with four worker processes
  python -m benchmarks --no-tuned                        # only ncr-trio as `make run` starts it
  python -m benchmarks --distribution-auth none          # Distribution without auth, as shipped
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
from benchmarks.blobs import MiB, make_blob, make_pool, small_image
from benchmarks.cache import CacheSource, start_source
from benchmarks.loads import build_loadgen, go_version
from benchmarks.report import (
    RESULTS,
    cpu_table,
    hasher_table,
    misses,
    noise_note,
    results_json,
    table,
    write_json,
)
from benchmarks.runner import Entrant, Outcome, run_rounds
from benchmarks.servers import (
    DISTRIBUTION_AUTH,
    DISTRIBUTION_BINARIES,
    NCR_TRIO,
    NCR_TRIO_TUNED,
    ServerKind,
    parse_kind,
)

# the tuned ncr-trio's workers: two per core (see benchmarks/README.md, "ncr-trio as shipped and tuned")
TUNED_WORKERS = 2 * (os.cpu_count() or 1)
HASHER = "hasher"  # not a server figure: benchmarks.bench_hasher.run() once per run
POOL_STEP = MiB  # the pool's windows start 1 MiB apart

METHOD = [
    "Each round starts every server fresh (empty storage) and runs each figure on every server in turn "
    "(A B A B), so noise hits all alike; figures are median/min/max over rounds.",
    "Blob figures: curl streams the body from a file in the page cache (-T) and times itself; MB/s is "
    "10^6 bytes/s over the sum of curl's time_total for the timed requests (the opening POST is untimed).",
    "Chunked push: a PATCH with Content-Range per chunk then an empty PUT ?digest=, one curl each; its blob "
    "has another digest than the monolithic one.",
    "Concurrent figures use loadgen (benchmarks/loadgen/main.go, Go standard library): N streams of N different "
    "blobs (windows of one pool file, sent with sendfile), MB/s = total bytes over the wall time from the first "
    "timed request to the last response; the 8-stream figures run on a server restarted on empty storage.",
    "Small blobs are pushed as docker does (POST, then PUT ?digest= with the body), each distinct, on keep-alive "
    "connections; all are checked with HEAD afterwards. The many-clients pull gives each client its own "
    "connection and counts non-200s, short bodies, wrong digests and connection errors.",
    "Memory is RSS summed over the server's process tree (ncr-trio's parent, workers and helpers), sampled every "
    "50 ms; the push figure is the peak minus the RSS just before, after warm-up requests.",
    "Request rates: wrk, closed loop, keep-alive. Blob HEAD targets a 0-byte blob because wrk cannot read "
    "HEAD responses announcing a body (wg/wrk#198); the harness checks it is unknown in other repositories.",
    "Distribution runs with its shipped settings (in-memory blob descriptor cache) and its access log off.",
    "Auth: ncr-trio is secure by default, so after each start (untimed) the harness creates the registry `bench` "
    "and fetches one bearer token per repository (Docker token auth, Basic as admin, scope pull,push), and every "
    "timed request carries its repository's token, reused as docker does. Distribution (--distribution-auth token, "
    "the default) runs with token auth trusting the signing key of a small ncr-trio started each round only as its "
    "token issuer (a self-signed certificate of the key as rootcertbundle; 3.x also the issuer's JWKS): its tokens "
    "are fetched the same way before timing and sent on every request, so both servers require the same kind of ES256 "
    "token on every request (ncr-trio checks a token it has verified before in its cache, Distribution verifies the "
    "signature every time, each as it ships). With --distribution-auth none, Distribution gets anonymous requests.",
    "The page cache is flushed (sync) before every measurement; nothing is dropped from it.",
    "ncr-trio runs twice: as `make run` starts it (`ncr-trio serve`, its defaults: one worker per CPU), on which the "
    "targets are judged, and tuned (ncr-trio-tuned, --ncr-workers); the table gives the ratios of both.",
    "Pull: 10 sequential curl pulls of the same blob, the median and the slowest. First pull: a blob no server has "
    "seen is pushed (curl, monolithic) and pulled by curl started within 1 s of the push's answer, with no sync "
    "between; both are judged against Distribution 2.8.2's median pull.",
    "Cache pull: one source registry for the run (Distribution, anonymous) holds an image of random layers, behind a "
    "counting proxy (tests/support/upstream.py); each server is restarted empty as a pull-through cache of it "
    "(ncr-trio: an image cache and a cache-type registry; Distribution: proxy.remoteurl), then loadgen's clients, "
    "released together, each pull the manifest and then config and layers at once, every body checked against its "
    "digest. Upstream bytes are the blob bytes the proxy sent by the time the last client was done, over the image's.",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", help="comma list of servers to run, the first being the subject of the ratios: "
                   "ncr-trio (as `make run` starts it), ncr-trio-tuned (--ncr-workers), distribution-2.8.2 (or "
                   "2.8.2), distribution-3.1.1 (or 3.1.1); a server may repeat (default: ncr-trio, ncr-trio-tuned "
                   "and the --against versions)")
    p.add_argument("--against", default="auto",
                   help="Distribution versions to compare ncr-trio with, e.g. 2.8.2,3.1.1 "
                   "(default auto: 2.8.2, and 3.1.1 if registry-v3 is installed)")
    p.add_argument("--rounds", type=int, help="rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 64 MiB blobs, 200 small blobs, 200 pulling clients, 2 s wrk runs, 1 round")
    p.add_argument("--distribution-auth", choices=DISTRIBUTION_AUTH, default="token",
                   help="Distribution's auth: token (default: bearer tokens of an ncr-trio token issuer, checked on "
                   "every request, as ncr-trio does) or none (Distribution as shipped, anonymous requests)")
    p.add_argument("--ncr-workers", type=int, default=TUNED_WORKERS,
                   help="worker processes of the tuned ncr-trio (ncr-trio-tuned; default: two per core, %(default)s "
                   "here). The ncr-trio entrant itself always runs as `make run` starts it: `ncr-trio serve`, whose "
                   "default is one worker per CPU")
    p.add_argument("--no-tuned", action="store_true",
                   help="leave the tuned ncr-trio out of the default line-up (ncr-trio as `make run` only)")
    p.add_argument("--size-mib", type=int, help="blob size in MiB (default 1024; --quick: 64)")
    p.add_argument("--chunk-mib", type=int, default=16, help="chunk size of the chunked push (default 16)")
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 10; --quick: 2)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--streams", type=int, default=8, help="concurrent blobs of the streams figures (default 8)")
    p.add_argument("--small-count", type=int, help="blobs per small-blob push figure (default 1000; --quick: 200)")
    p.add_argument("--small-kib", type=int, default=4, help="size of the small blobs in KiB (default 4)")
    p.add_argument("--pull-clients", type=int, help="clients of the pull-many figure (default 1000; --quick: 200)")
    p.add_argument("--layer-mib", type=int, default=10, help="layer size of the pull-many figure (default 10)")
    p.add_argument("--cache-layers-mib", help="layer sizes of the cache-pull figure's image, comma list "
                   "(default 16,32,64; --quick: 4,8,16)")
    p.add_argument("--cache-clients", type=int, help="clients of the cache-pull figure (default 100; --quick: 20)")
    p.add_argument("--figures", default=",".join([*(f.name for f in figs.FIGURES), HASHER]),
                   help="comma list of figures (default all: %(default)s)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the run's blobs and server storage go, in a new folder (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the run's folder (blobs) afterwards")
    p.add_argument("--output", type=Path, default=RESULTS, help="results JSON (default benchmarks/results/latest.json)")
    a = p.parse_args(argv)
    a.rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    a.size_mib = a.size_mib if a.size_mib is not None else (64 if a.quick else 1024)
    a.duration = a.duration if a.duration is not None else (2 if a.quick else 10)
    a.small_count = a.small_count if a.small_count is not None else (200 if a.quick else 1000)
    a.pull_clients = a.pull_clients if a.pull_clients is not None else (200 if a.quick else 1000)
    a.cache_layers_mib = [int(n) for n in (a.cache_layers_mib or ("4,8,16" if a.quick else "16,32,64")).split(",")]
    a.cache_clients = a.cache_clients if a.cache_clients is not None else (20 if a.quick else 100)
    if min(a.rounds, a.size_mib, a.chunk_mib, a.duration, a.streams, a.small_count, a.small_kib, a.pull_clients,
           a.layer_mib, a.ncr_workers, a.cache_clients, *a.cache_layers_mib) < 1:
        p.error("counts, sizes, durations and --ncr-workers must be positive")
    return a


def entrants(a: argparse.Namespace, say: Any) -> list[Entrant]:
    if a.servers:
        kinds = [parse_kind(n, a.distribution_auth) for n in a.servers.split(",") if n.strip()]
    else:
        versions = [v.strip() for v in a.against.split(",") if v.strip()]
        auto = versions == ["auto"]
        kinds = [ServerKind(NCR_TRIO)] + ([] if a.no_tuned else [ServerKind(NCR_TRIO_TUNED)])
        for v in (list(DISTRIBUTION_BINARIES) if auto else versions):
            kind = parse_kind(v, a.distribution_auth)
            if auto and kind.missing():
                say(f"note: {kind.name} left out: {kind.missing()}")
                continue
            kinds.append(kind)
    kinds = [ServerKind(k.name, a.ncr_workers) if k.name == NCR_TRIO_TUNED else k for k in kinds]
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


def run_hasher(quick: bool, say: Any) -> dict[str, Any]:
    """The native hasher against hashlib, once per run (it involves no server): SHA-256 and SHA-512, 1 MiB
    updates, 1 and 2 threads."""
    from benchmarks import bench_hasher

    say("hasher: native against hashlib ...")
    try:
        return bench_hasher.run(total=(32 if quick else 256) * MiB, repeat=1 if quick else 3, chunks=(MiB,),
                                threads=(1, 2))
    except Exception as exc:  # noqa: BLE001 - reported, the server figures still count
        say(f"  ! hasher: {exc}")
        return {"error": str(exc)}


def write_chart(doc: dict[str, Any], path: Path, say: Any) -> Path | None:
    try:
        from benchmarks.chart import render
    except ImportError as exc:
        say(f"note: no chart ({exc}); `make bench` installs the bench extra (matplotlib)")
        return None
    render(doc, path)
    return path


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)
    names = [n.strip() for n in a.figures.split(",") if n.strip()]
    with_hasher = HASHER in names
    chosen = figs.select(",".join(n for n in names if n != HASHER))
    who = entrants(a, say) if chosen else []
    for exe in ("curl", "wrk"):
        if chosen and shutil.which(exe) is None:
            raise SystemExit(f"{exe} is not installed")
    settings = figs.Settings(blob_size=a.size_mib * MiB, chunk_size=a.chunk_mib * MiB, duration=a.duration,
                             threads=a.threads, connections=a.connections, streams=a.streams,
                             small_count=a.small_count, small_size=a.small_kib * 1024,
                             pull_clients=a.pull_clients, layer_size=a.layer_mib * MiB,
                             cache_layer_sizes=tuple(n * MiB for n in a.cache_layers_mib),
                             cache_clients=a.cache_clients)
    need_blobs = any(f.needs_blobs for f in chosen)
    need_pool = any(f.needs_pool for f in chosen)
    a.workdir.mkdir(parents=True, exist_ok=True)
    size = settings.blob_size
    # inputs: the monolithic and chunked blobs (and the first pull's new blob, one at a time) and the pool; per
    # server and round: the four single pushes (monolithic, chunked, first pull, memory); the streams figures'
    # data is on one server at a time (fresh storage)
    inputs = (3 * size if need_blobs else 0) + (size + settings.streams * POOL_STEP if need_pool else 0)
    stored = len(who) * 4 * size + (settings.streams * size if need_pool else 0) if need_blobs or need_pool else 0
    _check_space(a.workdir, inputs + stored + 2**30)

    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="ncr-bench-", dir=a.workdir))
    tuned = next((e.kind for e in who if e.kind.name == NCR_TRIO_TUNED), None)
    say(f"servers: {', '.join(e.label for e in who) or '-'}; figures: {', '.join(names)}; rounds: {a.rounds}; "
        f"folder: {run_dir}" + (f"; ncr-trio-tuned: {' '.join(tuned.serve_args())}" if tuned else ""))
    outcome = None
    hasher: dict[str, Any] | None = None
    source: CacheSource | None = None
    try:
        if chosen:
            loadgen = None
            if any(f.needs_loadgen for f in chosen):
                say("building benchmarks/loadgen (go build) ...")
                loadgen = build_loadgen(run_dir / "loadgen")
            if any(f.cache for f in chosen):
                say("starting the cache figure's source registry ...")
                source = start_source(run_dir / "cache-source", settings.cache_layer_sizes)
            tg = time.monotonic()
            if need_blobs or need_pool:
                say("writing random blobs: " + ", ".join(
                    (["2 x " + settings.size_label] if need_blobs else [])
                    + ([f"a pool of {settings.streams + 1} windows of {settings.size_label}"] if need_pool else []))
                    + " ...")
            data = figs.Data(
                settings=settings,
                image=small_image(),
                blob=make_blob(run_dir / "blobs", "monolithic", size, size) if need_blobs else None,
                chunked_blob=make_blob(run_dir / "blobs", "chunked", size, settings.chunk_size) if need_blobs else None,
                pool=make_pool(run_dir / "blobs", "pool", size, settings.streams + 1, POOL_STEP) if need_pool else None,
                layer=os.urandom(settings.layer_size),
                loadgen=loadgen,
                cache_source=source,
            )
            os.sync()
            if need_blobs or need_pool:
                say(f"  done in {time.monotonic() - tg:.1f}s")
            outcome = run_rounds(who, chosen, data, run_dir, a.rounds, say)
        if with_hasher:
            hasher = run_hasher(a.quick, say)
    finally:
        if source is not None:
            source.stop()
        if a.keep:
            say(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    outcome = outcome or Outcome()
    metrics = [m for f in chosen for m in f.metrics(settings)]
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "elapsed_seconds": round(time.monotonic() - t0, 1),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])]),
        "host": {"hostname": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "python": platform.python_version()},
        "settings": {"rounds": a.rounds, "blob_bytes": settings.blob_size, "chunk_bytes": settings.chunk_size,
                     "wrk_seconds": settings.duration, "wrk_threads": settings.threads,
                     "wrk_connections": settings.connections, "streams": settings.streams,
                     "small_blobs": settings.small_count, "small_blob_bytes": settings.small_size,
                     "pull_clients": settings.pull_clients, "layer_bytes": settings.layer_size,
                     "cache_layer_bytes": list(settings.cache_layer_sizes), "cache_clients": settings.cache_clients,
                     "ncr_tuned_workers": a.ncr_workers, "ncr_tuned": not a.no_tuned,
                     "distribution_auth": a.distribution_auth, "quick": a.quick,
                     "figures": names},
        "tools": {"curl": _first_line(["curl", "--version"]), "wrk": _first_line(["wrk", "-v"]), "go": go_version()},
        "servers": [{"label": e.label, "kind": e.kind.name, "version": e.kind.version()} for e in who],
        "method": METHOD,
    }
    doc = results_json(meta, who, metrics, outcome, hasher)
    write_json(a.output, doc)
    chart = write_chart(doc, a.output.with_suffix(".png"), say)
    print()
    if chosen:
        print(table(who, metrics, outcome))
        print()
        missed = misses(who, metrics, outcome) if who else []
        if missed:
            print(f"misses ({who[0].label}):")
            print("\n".join(f"  {line}" for line in missed))
            print()
        print(cpu_table(who, [f.name for f in chosen], outcome))
        print()
    if hasher and "results" in hasher:
        print(hasher_table(hasher))
        print()
    elif hasher:
        print(f"hasher: error: {hasher.get('error')}")
    note = noise_note(outcome, os.cpu_count() or 1)
    if note:
        print(note)
    if a.quick:
        print("note: --quick uses smaller sizes and counts than the issue's figures: PASS/MISS is only indicative")
    for e in who:
        print(f"{e.label}: {next(s['version'] for s in meta['servers'] if s['label'] == e.label)}")
    print(f"{a.rounds} round(s), {meta['elapsed_seconds']:.0f}s; results: {a.output}"
          + (f"; chart: {chart}" if chart else ""))
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
