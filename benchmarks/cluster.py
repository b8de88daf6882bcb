"""`python -m benchmarks.cluster` (`make bench-cluster`): ncr-trio as a cluster on this machine, and what each
request costs each part of it, for the model in docs/cluster.md.

One PostgreSQL (tests/support/postgres.py) and one versitygw bucket (tests/support/s3.py); 1, 2 and 3 ncr-trio
nodes (one worker process each) behind HAProxy running the shipped deploy/haproxy.cfg (tests/support/cluster.py;
fewer nodes: the same file without the other `server` lines), and one node without HAProxy for comparison. For each:

- `manifest GET` and `blob HEAD` request rates: wrk -t2 -c64 for `--seconds` on a small image's manifest by tag and
  a 0-byte blob (benchmarks/figures.py's method), through HAProxy with a bearer token;
- CPU per request: utime + stime from /proc/<pid>/stat of every node, of HAProxy and of all PostgreSQL processes,
  before and after the run, less what the same processes spent idle over as long (the nodes' pollers), divided by
  the requests; and PostgreSQL transactions per request (pg_stat_database, idle rate subtracted the same way);
- 1 GiB pull bandwidth (curl, median of `--rounds`) through HAProxy, following the 307 to the object store (the
  bytes come from versitygw); and once from three nodes with `s3_redirect = false` (the bytes through the nodes).

CNCF Distribution 3.1.1 (registry-v3, anonymous as shipped) serves the same image and blob from the same bucket (its
S3 driver under another root directory, `redirect` on) in the same run, one instance, as the reference. Every process
shares the machine's cores with wrk and versitygw: on 2 cores, nodes added past the second add no cores, and the
figures say how far the per-node costs, not the machine, would scale.

    .venv/bin/python -m benchmarks.cluster                   # ~5 min
    .venv/bin/python -m benchmarks.cluster --seconds 3 --rounds 1 --pull-mib 256   # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psycopg

from benchmarks.auth import ANONYMOUS, Access, login
from benchmarks.blobs import OCI_MANIFEST, Blob, make_blob, small_image
from benchmarks.loads import curl, pull_blob, push_blob, wrk
from benchmarks.registry import elsewhere, push_small_blob, push_small_image, start_upload, with_digest
from tests.support.cluster import Cluster, HAProxy, cluster
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server, s3_server
from tests.support.server import REGISTRY_V3, Server, free_port, terminate, tool, wait_ready

MiB = 1 << 20
IMAGE_REPO, TAG, LAYER_REPO, PULL_REPO = "a/bench/image", "v1", "a/bench/layer", "a/bench/pull"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- CPU and transactions of the processes serving ------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


@dataclass
class Parts:
    """The processes whose cost is counted: name -> a function listing its pids now."""

    groups: dict[str, Callable[[], list[int]]]
    database_url: str | None

    def sample(self) -> dict[str, float]:
        s = {name: sum(cpu_seconds(p) for p in pids()) for name, pids in self.groups.items()}
        if self.database_url:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                   "WHERE datname = current_database()").fetchone()
                s["xacts"] = float(row[0]) if row else 0.0
        s["t"] = time.monotonic()
        return s


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a[k] for k in a}


def settle() -> None:
    """PostgreSQL publishes a backend's transaction counts at most once a second."""
    time.sleep(1.2)


@dataclass
class Rate:
    setup: str
    request: str
    rps: float
    p99_ms: float
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    xacts_per_request: float | None = None


def measured_wrk(parts: Parts, setup: str, request: str, url: str, method: str, headers: dict[str, str],
                 seconds: int) -> Rate:
    idle0 = parts.sample()
    time.sleep(seconds / 2)
    settle()
    idle1 = parts.sample()
    idle = delta(idle0, idle1)
    r0 = parts.sample()
    result = wrk(url, method=method, headers=headers, threads=2, connections=64, duration=seconds)
    settle()
    r1 = parts.sample()
    busy = delta(r0, r1)
    scale = busy["t"] / idle["t"]
    per = {k: max(busy[k] - idle[k] * scale, 0.0) * 1000 / result.requests
           for k in parts.groups}
    xacts = None
    if "xacts" in busy:
        xacts = max(busy["xacts"] - idle["xacts"] * scale, 0.0) / result.requests
    return Rate(setup, request, result.rps, result.p99_ms, per, xacts)


# -- the setups ---------------------------------------------------------------------------------
def postmaster(pg: PostgresServer) -> int:
    return int((pg.data / "postmaster.pid").read_text().split()[0])


def _pid(server: Server | HAProxy) -> Callable[[], list[int]]:
    return lambda: [server.proc.pid] if server.proc is not None else []


def cluster_parts(c: Cluster, pg: PostgresServer, s3: S3Server) -> Parts:
    pm = postmaster(pg)
    groups = {f"node{i}": _pid(n) for i, n in enumerate(c.nodes, 1)}
    groups["haproxy"] = _pid(c.lb)
    groups["postgres"] = lambda: [pm, *children(pm)]
    groups["s3"] = lambda: [s3.proc.pid]
    return Parts(groups, c.database_url)


def prepare(base: str, access: Access, pull: Blob | None, *, check: bool = True) -> None:
    """Push what the figures hit; `check` as benchmarks/registry.py does (Distribution with `redirect` on
    answers a blob HEAD with its 307, which that check refuses: its HEAD figure is the rate of those 307s)."""
    image = small_image()
    if check:
        push_small_image(base, IMAGE_REPO, TAG, image, access)
    else:
        for data in image.blobs():
            push_small_blob(base, IMAGE_REPO, data, access)
        r = httpx.put(f"{base}/v2/{IMAGE_REPO}/manifests/{TAG}", content=image.manifest,
                      headers={"Content-Type": OCI_MANIFEST, **access.headers(IMAGE_REPO)}, timeout=30)
        r.raise_for_status()
    push_small_blob(base, LAYER_REPO, image.empty, access)
    if pull is not None and check:
        push_blob(base, PULL_REPO, pull, access, chunked=False)
    elif pull is not None:
        put = curl("PUT", with_digest(start_upload(base, PULL_REPO, access), pull.digest), upload=pull.parts[0],
                   headers=access.headers(PULL_REPO))
        if put.status != 201:
            raise RuntimeError(f"PUT of the pulled blob -> {put.status}")


def rates(parts: Parts, setup: str, base: str, access: Access, seconds: int) -> list[Rate]:
    image = small_image()  # the 0-byte blob's digest is the same for every image
    empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert image.empty == b""
    manifest = measured_wrk(parts, setup, "manifest GET", f"{base}/v2/{IMAGE_REPO}/manifests/{TAG}", "GET",
                            {"Accept": "application/vnd.oci.image.manifest.v1+json", **access.headers(IMAGE_REPO)},
                            seconds)
    head = measured_wrk(parts, setup, "blob HEAD", f"{base}/v2/{LAYER_REPO}/blobs/{empty}", "HEAD",
                        access.headers(LAYER_REPO), seconds)
    return [manifest, head]


def pulls(base: str, blob: Blob, access: Access, rounds: int, follow: bool) -> list[float]:
    return [pull_blob(base, PULL_REPO, blob, access, follow=follow).mb_per_s for _ in range(rounds)]


@dataclass
class Pull:
    setup: str
    mb_per_s: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.mb_per_s)


REPOS = {IMAGE_REPO: "pull,push", elsewhere(IMAGE_REPO): "pull", LAYER_REPO: "pull,push", PULL_REPO: "pull,push"}


@dataclass
class Run:
    pg: PostgresServer
    s3: S3Server
    bucket: str
    root: Path
    args: argparse.Namespace
    blob: Blob
    rates: list[Rate] = field(default_factory=list)
    pulls: list[Pull] = field(default_factory=list)


def run_cluster(run: Run, n: int, *, redirect: bool = True) -> None:
    """`n` nodes storing under their own prefix of the bucket; `redirect` False: only the pulls, through the nodes."""
    name = f"n{n}{'' if redirect else '-proxied'}"
    env = {"NCR_S3_PREFIX": f"{name}/", "NCR_S3_REDIRECT": "true" if redirect else "false"}
    with run.pg.database(f"bench_{name.replace('-', '_')}") as url, cluster(
            run.root / name, url, n, env=env, s3=(run.s3, run.bucket)) as c:
        access = login(c.lb.url, *c.nodes[0].admin, REPOS)
        prepare(c.lb.url, access, run.blob)
        setup = f"{n} node{'s' if n > 1 else ''} + HAProxy"
        if not redirect:
            run.pulls.append(Pull(f"{setup}, bytes via nodes", pulls(c.lb.url, run.blob, access, run.args.rounds,
                                                                   follow=False)))
            return
        parts = cluster_parts(c, run.pg, run.s3)
        if n == 1:  # the same node without HAProxy: what the balancer costs
            run.rates.extend(rates(parts, "1 node, no HAProxy", c.nodes[0].url, access, run.args.seconds))
        run.rates.extend(rates(parts, setup, c.lb.url, access, run.args.seconds))
        run.pulls.append(Pull(f"{setup}, 307 to S3", pulls(c.lb.url, run.blob, access, run.args.rounds,
                                                           follow=True)))


def distribution_s3_config(host: str, s3: S3Server, bucket: str, *, redirect: bool) -> str:
    """Distribution's config as shipped (in-memory blob descriptor cache, delete on), its S3 driver on `bucket`
    under /distribution, redirects on or off, serving on `host`, logging errors only."""
    return (
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\n"
        f"  redirect:\n    disable: {'false' if redirect else 'true'}\n"
        f"  s3:\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    region: us-east-1\n"
        f"    regionendpoint: {s3.endpoint}\n    bucket: {bucket}\n    rootdirectory: /distribution\n"
        "    forcepathstyle: true\n    secure: false\n    v4auth: true\n"
        f"http:\n  addr: {host}\n"
    )


@contextlib.contextmanager
def distribution(run: Run, *, redirect: bool) -> Iterator[tuple[str, int]]:
    """Distribution 3.1.1 on the run's bucket: its URL and pid."""
    root = run.root / f"distribution-{'redirect' if redirect else 'proxied'}"
    root.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    (root / "config.yml").write_text(distribution_s3_config(host, run.s3, run.bucket, redirect=redirect))
    with open(root / "registry.log", "ab") as log:
        proc = subprocess.Popen([tool(REGISTRY_V3), "serve", str(root / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://{host}", proc)
        yield f"http://{host}", proc.pid
    finally:
        terminate(proc)


def run_distribution(run: Run) -> None:
    """Request rates with `redirect` off (with it on, a blob HEAD is answered by a 307 with a body, which wrk
    cannot read: wg/wrk#198), then pulls with it on and off, all on the same stored data."""
    with distribution(run, redirect=False) as (url, pid):
        prepare(url, ANONYMOUS, run.blob, check=False)
        parts = Parts({"distribution": lambda: [pid], "s3": lambda: [run.s3.proc.pid]}, None)
        run.rates.extend(rates(parts, "Distribution 3.1.1", url, ANONYMOUS, run.args.seconds))
        run.pulls.append(Pull("Distribution 3.1.1, bytes via it", pulls(url, run.blob, ANONYMOUS, run.args.rounds,
                                                                        follow=False)))
    with distribution(run, redirect=True) as (url, _):
        run.pulls.append(Pull("Distribution 3.1.1, 307 to S3", pulls(url, run.blob, ANONYMOUS, run.args.rounds,
                                                                     follow=True)))


# -- report ---------------------------------------------------------------------------------------
def report(rates_: Sequence[Rate], pulled: Sequence[Pull]) -> str:
    lines = [f"cluster benchmark: {os.cpu_count()} CPUs, {platform.platform()}, wrk -t2 -c64", ""]
    for request in ("manifest GET", "blob HEAD"):
        lines.append(f"{request}:")
        lines.append(f"  {'setup':<24}{'req/s':>9}{'p99 ms':>9}  CPU ms per request (nodes | haproxy | postgres | s3)"
                     f"  xacts/req")
        for r in (r for r in rates_ if r.request == request):
            nodes = sum(v for k, v in r.cpu_ms_per_request.items() if k.startswith(("node", "distribution")))
            cell = " | ".join([f"{nodes:.3f}", *(f"{r.cpu_ms_per_request[k]:.3f}" if k in r.cpu_ms_per_request
                                                 else "-" for k in ("haproxy", "postgres", "s3"))])
            x = "-" if r.xacts_per_request is None else f"{r.xacts_per_request:.3f}"
            lines.append(f"  {r.setup:<24}{r.rps:>9.0f}{r.p99_ms:>9.1f}  {cell:<50}{x:>9}")
        lines.append("")
    lines.append("blob pull (curl, MB/s: median, min, max):")
    for p in pulled:
        lines.append(f"  {p.setup:<40}{p.median:>9.0f}{min(p.mb_per_s):>9.0f}{max(p.mb_per_s):>9.0f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="each wrk run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="1 GiB pulls per setup (default 3)")
    ap.add_argument("--pull-mib", type=int, default=1024, help="size of the pulled blob (default 1024)")
    ap.add_argument("--nodes", default="1,2,3", help="cluster sizes to run (default 1,2,3)")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/cluster.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ncr-bench-cluster-") as tmp, postgres_server() as pg, \
            s3_server("versitygw") as s3, s3.bucket() as bucket:
        root = Path(tmp)
        blob = make_blob(root / "blobs", "pull", args.pull_mib * MiB, args.pull_mib * MiB)
        run = Run(pg, s3, bucket, root, args, blob)
        for n in (int(x) for x in args.nodes.split(",")):
            run_cluster(run, n)
        run_cluster(run, 3, redirect=False)
        run_distribution(run)
    text = report(run.rates, run.pulls)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rates": [asdict(r) for r in run.rates],
                                     "pulls": [{"setup": p.setup, "mb_per_s": p.mb_per_s} for p in run.pulls]},
                                    indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
