"""`python -m benchmarks.replicate`: the `replicate` figure. An image of 10 x 32 MiB random layers on ncr-trio
instance A is copied to ncr-trio instance B by

- ncr-trio's replication engine (a push run of a policy, timed from the run's start to its Succeeded end),
- `skopeo copy` and
- `regctl image copy`,

between the same two instances in the same run, each onto a B restarted on empty storage (so no tool finds a blob
already there or mounts one from an earlier copy), in turn (A B C A B C) over `--rounds`. Reported per tool: wall
time and MB/s (10^6 bytes of the image's blobs per second), median/min/max over rounds, and ratios to ncr-trio's
median. Target: ncr-trio at least as fast as the faster of the other two.

The ncr-trio copy is a real one: A (started with `replication_allowed_networks` = 127.0.0.0/8) has B as a remote
(the admin's login) and a manual push policy; each round points the remote at that round's B (`PATCH`, which checks
it), then `POST .../run` and polls the execution until it ends. skopeo and regctl run as subprocesses with the
admin's login at both ends (token auth), over plain HTTP on 127.0.0.1.

    .venv/bin/python -m benchmarks.replicate                       # 3 rounds
    .venv/bin/python -m benchmarks.replicate --rounds 1 --layers 4 # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ncr_trio.replication.model import FINISHED
from tests.support.clients import find_tool
from tests.support.oci import push_test_image
from tests.support.server import ADMIN_PASSWORD, ADMIN_USER, Server

MiB = 1 << 20
REPO = "a/bench/replicate"
TAG = "v1"


def start(root: Path, workers: int, env: dict[str, str] | None = None) -> Server:
    return Server(data=root, extra_args=["--workers", str(workers)], registries=("a",), env=env or {}).start()


def _ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:300]}")
    return r.json() if r.content else {}


def engine_copy(a: Server, b: Server, policy_id: int) -> float:
    """Seconds from `POST .../run` to the execution's Succeeded end (polled every 10 ms)."""
    remote = _ok(a.call("PATCH", "/remotes/b", json={"url": b.url}))
    if remote["status"] != "valid":
        raise RuntimeError(f"remote b is {remote['status']}: {remote['reason']}")
    t0 = time.perf_counter()
    e = _ok(a.call("POST", f"/registries/a/replications/{policy_id}/run"), 202)
    path = f"/registries/a/replications/{policy_id}/executions/{e['id']}"
    with httpx.Client(base_url=f"{a.url}/api/v1", auth=a.admin, timeout=60) as c:
        while e["status"] not in FINISHED:
            time.sleep(0.01)
            e = _ok(c.get(path))
    elapsed = time.perf_counter() - t0
    if e["status"] != "Succeeded" or e["copied"] != 1:
        tasks = _ok(a.call("GET", path + "/tasks"))["tasks"]
        raise RuntimeError(f"the run ended {e['status']}: {e['detail']} {tasks}")
    return elapsed


def setup_policy(a: Server, b: Server) -> int:
    _ok(a.call("POST", "/remotes", json={"name": "b", "url": b.url, "type": "ncr", "access_id": ADMIN_USER,
                                          "access_secret": ADMIN_PASSWORD}), 201)
    return int(_ok(a.call("POST", "/registries/a/replications", json={
        "name": "bench", "direction": "push", "remote": "b", "name_filter": "bench/**"}), 201)["id"])


def skopeo_copy(a: Server, b: Server, home: Path) -> float:
    creds = f"{ADMIN_USER}:{ADMIN_PASSWORD}"
    cmd = ["skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
           "--src-creds", creds, "--dest-creds", creds, f"docker://{a.host}/{REPO}:{TAG}", f"docker://{b.host}/{REPO}:{TAG}"]
    return _timed(cmd, home)


def regctl_copy(a: Server, b: Server, home: Path) -> float:
    regctl = find_tool("regctl") or "regctl"
    for s in (a, b):
        _run([regctl, "registry", "set", s.host, "--tls", "disabled"], home)
        _run([regctl, "registry", "login", s.host, "-u", ADMIN_USER, "-p", ADMIN_PASSWORD], home)
    return _timed([regctl, "image", "copy", f"{a.host}/{REPO}:{TAG}", f"{b.host}/{REPO}:{TAG}"], home)


def _env(home: Path) -> dict[str, str]:
    # a home of their own: no blob-info cache or login of an earlier copy (skopeo mounts what it remembers)
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_RUNTIME_DIR": str(home / "run"), "XDG_CACHE_HOME": str(home / ".cache")}


def _run(cmd: list[str], home: Path) -> None:
    subprocess.run(cmd, env=_env(home), check=True, capture_output=True, timeout=600)


def _timed(cmd: list[str], home: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=_env(home), capture_output=True, timeout=600)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {r.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def check(b: Server, digest: str) -> None:
    with b.client() as c:
        r = c.head(f"/v2/{REPO}/manifests/{TAG}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        if r.headers.get("docker-content-digest") != digest:
            raise RuntimeError(f"B has {r.headers.get('docker-content-digest')} as {TAG}, not {digest}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.replicate", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--layer-mib", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="ncr-trio worker processes of A and B")
    p.add_argument("--tools", default="ncr-trio,skopeo,regctl")
    p.add_argument("--json", type=Path, help="write the samples here")
    args = p.parse_args(argv)
    tools = args.tools.split(",")
    root = Path(tempfile.mkdtemp(prefix="ncr-replicate-"))
    a = start(root / "a", args.workers, {"NCR_REPLICATION_ALLOWED_NETWORKS": "127.0.0.0/8"})
    try:
        with a.client(timeout=300) as c:
            pushed = push_test_image(c, REPO, TAG, [args.layer_mib * MiB] * args.layers)
        size = sum(len(x) for x in pushed.blobs.values())
        del pushed.images[:]  # the layers' bytes: no longer needed here
        policy_id = 0
        copies: dict[str, Callable[[Server, Server, Path], float]] = {
            "ncr-trio": lambda a_, b_, _h: engine_copy(a_, b_, policy_id),
            "skopeo": skopeo_copy, "regctl": regctl_copy}
        samples: dict[str, list[float]] = {t: [] for t in tools}
        for rnd in range(args.rounds):
            for tool in tools:
                b_root = root / f"b-{rnd}-{tool}"
                b = start(b_root, args.workers)
                try:
                    if tool == "ncr-trio" and not policy_id:
                        policy_id = setup_policy(a, b)
                    subprocess.run(["sync"], check=False)
                    seconds = copies[tool](a, b, root / f"home-{rnd}-{tool}")
                    check(b, pushed.digest)
                    samples[tool].append(seconds)
                    print(f"round {rnd + 1} {tool:9} {seconds:7.2f} s {size / seconds / 1e6:8.1f} MB/s", flush=True)
                finally:
                    b.stop()
                    shutil.rmtree(b_root, ignore_errors=True)
        report(samples, size, tools, args)
        if args.json:
            args.json.write_text(json.dumps({"bytes": size, "seconds": samples, "args": vars(args)}, default=str,
                                            indent=2))
    finally:
        a.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(samples: dict[str, list[float]], size: int, tools: list[str], args: argparse.Namespace) -> None:
    print(f"\nreplicate: {args.layers} x {args.layer_mib} MiB layers ({size / 1e6:.0f} MB), {args.rounds} round(s), "
          f"{args.workers} worker(s)")
    print(f"{'tool':10} {'median s':>9} {'min s':>7} {'max s':>7} {'MB/s':>8} {'vs ncr-trio':>12}")
    base = statistics.median(samples["ncr-trio"]) if samples.get("ncr-trio") else None
    for tool in tools:
        values = samples[tool]
        if not values:
            continue
        med = statistics.median(values)
        ratio = f"{med / base:.2f}x" if base else "-"
        print(f"{tool:10} {med:9.2f} {min(values):7.2f} {max(values):7.2f} {size / med / 1e6:8.1f} {ratio:>12}")
    others = [statistics.median(samples[t]) for t in tools if t != "ncr-trio" and samples.get(t)]
    if base and others:
        verdict = "PASS" if base <= min(others) else "MISS"
        print(f"target: ncr-trio's wall time <= the faster other tool's ({min(others):.2f} s): {verdict}")


if __name__ == "__main__":
    main()
