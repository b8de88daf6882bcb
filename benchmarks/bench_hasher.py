"""Micro-benchmark: ncr_trio's native hashers against hashlib (OpenSSL).

    python -m benchmarks.bench_hasher [--total-mib 256] [--repeat 3] [--json]

Each thread hashes `total` bytes with its own hasher (made before the clock starts), in
updates of one chunk size, from a 16 MiB random buffer viewed in place (no copies).
Throughput is the bytes hashed by all threads over the wall time, best of `repeat` runs, in
MB/s (10^6 bytes per second). With two threads the throughput only grows if ``update``
releases the GIL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ncr_trio import _native, hashing

MiB = 1 << 20
ALGORITHMS = ("sha256", "sha512")
CHUNKS = (16 * MiB, 1 * MiB, 4 * 1024)
THREADS = (1, 2)
_SOURCE_BYTES = 16 * MiB

Factory = Callable[[str], Any]
IMPLEMENTATIONS: dict[str, Factory] = {"native": hashing.new, "hashlib": hashlib.new}


def _throughput(factory: Factory, algorithm: str, pieces: list[memoryview], rounds: int, threads: int) -> float:
    """MB/s of `threads` threads each hashing `pieces` `rounds` times over, in one run."""

    def work(start: threading.Barrier) -> None:
        hasher = factory(algorithm)
        update = hasher.update
        start.wait()
        for _ in range(rounds):
            for piece in pieces:
                update(piece)
        hasher.digest()

    start = threading.Barrier(threads + 1)
    pool = [threading.Thread(target=work, args=(start,)) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    return threads * rounds * sum(map(len, pieces)) / elapsed / 1e6


def run(*, total: int = 256 * MiB, repeat: int = 3, chunks: tuple[int, ...] = CHUNKS,
        threads: tuple[int, ...] = THREADS) -> dict[str, Any]:
    """Measure every (algorithm, chunk size, thread count); return the figures as plain data.

    `total` is rounded up to whole passes over the 16 MiB source buffer. The implementations
    take turns within each repeat, so that a busy machine slows both alike.
    """
    source = memoryview(os.urandom(_SOURCE_BYTES))
    rounds = max(1, -(-total // _SOURCE_BYTES))
    results = []
    for algorithm in ALGORITHMS:
        for chunk in chunks:
            pieces = [source[i:i + chunk] for i in range(0, _SOURCE_BYTES, chunk)]
            for count in threads:
                best = dict.fromkeys(IMPLEMENTATIONS, 0.0)
                for _ in range(repeat):
                    for name, factory in IMPLEMENTATIONS.items():
                        best[name] = max(best[name], _throughput(factory, algorithm, pieces, rounds, count))
                results.append({
                    "algorithm": algorithm,
                    "chunk_bytes": chunk,
                    "threads": count,
                    "native_mb_s": round(best["native"], 1),
                    "hashlib_mb_s": round(best["hashlib"], 1),
                    "ratio": round(best["native"] / best["hashlib"], 3),
                })
    return {
        "benchmark": "hasher",
        "unit": "MB/s",
        "bytes_per_thread": rounds * _SOURCE_BYTES,
        "repeat": repeat,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "gil_release_threshold": _native.GIL_RELEASE_THRESHOLD,
        "sha512_backend": _native.SHA512_BACKEND,
        "results": results,
    }


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n // 1024} KiB"


def format_table(figures: dict[str, Any]) -> str:
    header = f"{'algorithm':<9} {'chunk':>7} {'threads':>7} {'native':>9} {'hashlib':>9} {'ratio':>6}"
    title = (f"{_size(figures['bytes_per_thread'])} per thread, best of {figures['repeat']}, MB/s; "
             f"{figures['openssl']}, {figures['cpus']} CPUs; native SHA-512 on {figures['sha512_backend']}")
    lines = [title, header, "-" * len(header)]
    for r in figures["results"]:
        lines.append(f"{r['algorithm']:<9} {_size(r['chunk_bytes']):>7} {r['threads']:>7} "
                     f"{r['native_mb_s']:>9.0f} {r['hashlib_mb_s']:>9.0f} {r['ratio']:>6.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_hasher", description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=256, help="MiB hashed by each thread per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    figures = run(total=args.total_mib * MiB, repeat=args.repeat)
    print(json.dumps(figures, indent=2) if args.json else format_table(figures))


if __name__ == "__main__":
    main()
