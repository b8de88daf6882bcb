"""Where a figure's time goes: ncr-trio (one worker) under one load, sampled with py-spy.

    python -m benchmarks.profile pull|manifest-get|blob-head|push-small [--seconds N]

Prints (and writes to benchmarks/results/profile-<figure>.txt) the share of the serving thread's
samples by package (ncr_trio, hypercorn, h11, trio) and by leaf function, so a missed target in
the README can say where the time goes. py-spy comes with the `bench` extra. As in the benchmarks, the
clients use bearer tokens, fetched once after the start (benchmarks/auth.py), so the profile includes the
server's per-request token check.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.auth import ACTIONS, Access
from benchmarks.blobs import make_blob, sha256_digest, small_image
from benchmarks.loads import build_loadgen, loadgen, pull_blob, push_blob, wrk
from benchmarks.registry import elsewhere, push_small_image
from benchmarks.servers import ServerKind

RESULTS = Path(__file__).with_name("results")
PACKAGES = ("ncr_trio", "hypercorn", "h11", "trio", "outcome")
FIGURES = ("pull", "manifest-get", "blob-head", "push-small")
PULL_REPO, IMAGE_REPO, SMALL_REPO = "profile/pull", "profile/small", "profile/small-blobs"
REPOS = (PULL_REPO, IMAGE_REPO, elsewhere(IMAGE_REPO), SMALL_REPO)


def _package(frame: str) -> str | None:
    path = frame[frame.find("(") + 1:]
    for name in PACKAGES:
        if path.startswith(f"{name}/") or f"/{name}/" in path:
            return name
    return None


def _short(frame: str) -> str:
    """`func (path:line)` with the path from its package down (site-packages or the repository)."""
    for marker in ("site-packages/", "/lib/python3.11/", str(Path(__file__).resolve().parent.parent) + "/"):
        if marker in frame:
            frame = frame.replace(frame[frame.find("(") + 1:frame.find(marker) + len(marker)], "")
    return frame[:110]


def _owner(frames: list[str]) -> str:
    """The innermost known package on the stack (a stdlib leaf counts for whoever called it)."""
    for frame in reversed(frames):
        if (name := _package(frame)) is not None:
            return name
    return "other"


def summarise(raw: Path, top: int = 15) -> str:
    """Shares of the main (event-loop) thread's samples: by package of the leaf, and by leaf."""
    leaves: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue
        n = int(count)
        total += n
        leaf = frames[-1]
        idle = "get_events" in leaf  # the event loop waiting in epoll
        leaves["(idle: waiting in epoll)" if idle else _short(leaf)] += n
        packages["idle" if idle else ("kernel send/recv (socket syscalls)" if "_nonblocking_helper" in leaf
                                      else _owner(frames[1:]))] += n
    if total == 0:
        return "no samples of the main thread\n"
    out = [f"main thread: {total} samples", "by package (the innermost known package on each sampled stack):"]
    out += [f"  {v * 100 / total:5.1f}%  {k}" for k, v in packages.most_common()]
    out.append("top leaf frames:")
    out += [f"  {v * 100 / total:5.1f}%  {k}" for k, v in leaves.most_common(top)]
    return "\n".join(out) + "\n"


def _load(figure: str, url: str, auth: Access, work: Path, seconds: int) -> None:
    """Set up the figure's content, then run its load for about `seconds`."""
    if figure == "pull":
        blob = make_blob(work / "blobs", "pull", 1 << 30, 1 << 30)
        push_blob(url, PULL_REPO, blob, auth, chunked=False)
        pull_blob(url, PULL_REPO, blob, auth)  # into the page cache, as in the benchmark's later rounds
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pull_blob(url, PULL_REPO, blob, auth)
    elif figure in ("manifest-get", "blob-head"):
        image = small_image()
        push_small_image(url, IMAGE_REPO, "latest", image, auth)
        if figure == "manifest-get":
            wrk(f"{url}/v2/{IMAGE_REPO}/manifests/latest", method="GET",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json", **auth.headers(IMAGE_REPO)},
                threads=2, connections=64, duration=seconds)
        else:
            wrk(f"{url}/v2/{IMAGE_REPO}/blobs/{sha256_digest(image.empty)}", method="HEAD",
                headers=auth.headers(IMAGE_REPO), threads=2, connections=64, duration=seconds)
    else:
        binary = build_loadgen(work / "loadgen")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # new random blobs every time: one repository will do
            loadgen(binary, "push-small", auth=auth, url=url, repo=SMALL_REPO, count=1000, size=4096, clients=32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    p.add_argument("figure", choices=FIGURES)
    p.add_argument("--seconds", type=int, default=8)
    args = p.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install the `bench` extra", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ncr-profile-") as tmp:
        work = Path(tmp)
        server = ServerKind("ncr-trio", workers=1).start(work / "server")
        try:
            # before py-spy starts: token requests are not part of the profile
            auth = server.access(dict.fromkeys(REPOS, ACTIONS))
            raw = work / "profile.txt"
            spy = subprocess.Popen([py_spy, "record", "--pid", str(server.pid), "--rate", "250", "--threads",
                                    "--full-filenames", "--format", "raw", "--output", str(raw),
                                    "--duration", str(args.seconds + 30)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            loader = threading.Thread(target=_load, args=(args.figure, server.url, auth, work, args.seconds))
            loader.start()
            loader.join()
            spy.send_signal(2)  # SIGINT: py-spy writes what it has and exits
            spy.wait(timeout=60)
        finally:
            server.stop()
        report = f"profile of {args.figure} ({args.seconds}s of load, ncr-trio with 1 worker)\n" + summarise(raw)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"profile-{args.figure}.txt").write_text(report)
    print(report, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
