"""Benchmark: the vulnerability scanner on an image of 5 layers x 64 MiB with about 1,000 packages: scan
time and peak RSS, and the same image with small layers, to show that memory does not grow with the
layers' size (they are streamed, never held).

    python -m benchmarks.bench_scan [--layers 5] [--layer-mib 64] [--small-mib 4] [--json]

The packages: this machine's dpkg database (a real one, some 700 packages on a Debian host) and a
Python site-packages of 300 distributions (urllib3 2.0.6 among them) in the first layer; every layer is
padded to its size with incompressible bytes and gzip-compressed, as image layers are. The database is
tests/data/vulndata's (PyPI, Go, Alpine 3.4). Each scan runs in a fresh process, reading its layers
through the server's own path (scan/jobs.py `scan_layers`: storage reader -> buffered stream -> tarfile),
which reports its RSS before the scan and its peak after.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "vulndata"
MiB = 1 << 20

_CHILD = r"""
import json, sys, threading, time
from pathlib import Path
from ncr_trio.scan.jobs import scan_layers

class Reader:
    def __init__(self, path):
        self.f = open(path, "rb"); self.size = Path(path).stat().st_size
    def read(self, offset, length):
        self.f.seek(offset); return self.f.read(length)
    def close(self):
        self.f.close()

class Storage:
    def __init__(self, paths):
        self.paths = paths
    def open_read(self, key):
        return Reader(self.paths[key.rsplit("/", 1)[-1]])

def status_kib(field):  # VmHWM, not ru_maxrss: that one keeps the parent's peak across fork and exec
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

db, layers = sys.argv[1], sys.argv[2:]
digests = [f"sha256:{i:064x}" for i in range(len(layers))]
storage = Storage({d.split(":")[1]: p for d, p in zip(digests, layers)})
before = status_kib("VmRSS")
began = time.perf_counter()
report = scan_layers(storage, Path(db), digests, threading.Event())
elapsed = time.perf_counter() - began
peak = status_kib("VmHWM")
print(json.dumps({"seconds": round(elapsed, 2), "rss_before_mib": round(before / 1024, 1),
                  "peak_rss_mib": round(peak / 1024, 1), "packages": report.packages,
                  "vulnerabilities": report.total}))
"""


def _tar(files: dict[str, bytes], pad: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        if pad > 0:
            info = tarfile.TarInfo("var/cache/padding.bin")
            info.size = pad
            t.addfile(info, io.BytesIO(os.urandom(pad)))
    return buf.getvalue()


def _packages() -> dict[str, bytes]:
    files = {"etc/os-release": Path("/etc/os-release").read_bytes(),
             "var/lib/dpkg/status": Path("/var/lib/dpkg/status").read_bytes()}
    site = "usr/lib/python3/site-packages"
    for i in range(299):
        files[f"{site}/bench_pkg_{i}-1.{i}.dist-info/METADATA"] = (
            f"Metadata-Version: 2.1\nName: bench-pkg-{i}\nVersion: 1.{i}\n\n").encode()
    files[f"{site}/urllib3-2.0.6.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: urllib3\nVersion: 2.0.6\n\n"
    return files


def _image(root: Path, layers: int, mib: int) -> list[Path]:
    paths = []
    for i in range(layers):
        files = _packages() if i == 0 else {f"opt/layer{i}/README": b"layer\n"}
        raw = _tar(files, 0)
        raw = _tar(files, max(mib * MiB - len(raw) - 4096, 0))
        path = root / f"layer-{mib}-{i}.tar.gz"
        path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
        paths.append(path)
    return paths


def _scan(db: Path, layers: list[Path]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(db), *map(str, layers)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--layer-mib", type=int, default=64)
    p.add_argument("--small-mib", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from ncr_trio.scan.vulndb import import_sources

    with tempfile.TemporaryDirectory(prefix="ncr-bench-scan-") as tmp:
        root = Path(tmp)
        db = root / "osv.sqlite"
        import_sources(db, [DATA / "PyPI-subset.zip", DATA / "Go-subset.zip", DATA / "alpine" / "secdb-v3.4-main.yaml"])
        rows = []
        for mib in (args.layer_mib, args.small_mib):
            layers = _image(root, args.layers, mib)
            result = _scan(db, layers)
            result.update(layers=args.layers, layer_mib=mib, image_mib=round(sum(p.stat().st_size for p in layers) / MiB),
                          growth_mib=round(result["peak_rss_mib"] - result["rss_before_mib"], 1))
            rows.append(result)
            for path in layers:
                path.unlink()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'layers':>6} {'layer MiB':>9} {'image MiB':>9} {'packages':>8} {'vulns':>5} {'seconds':>7} "
          f"{'RSS before':>10} {'peak RSS':>8} {'growth':>6}")
    for r in rows:
        print(f"{r['layers']:>6} {r['layer_mib']:>9} {r['image_mib']:>9} {r['packages']:>8} {r['vulnerabilities']:>5} "
              f"{r['seconds']:>7} {r['rss_before_mib']:>10} {r['peak_rss_mib']:>8} {r['growth_mib']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
