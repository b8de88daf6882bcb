"""The timed load clients: curl for single large bodies (streamed from files, timed by curl itself), wrk for request
rates, and loadgen (benchmarks/loadgen/main.go, built here with `go build`) for everything concurrent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.auth import Access
from benchmarks.blobs import Blob
from benchmarks.registry import RegistryError, check_blob_head, resolve_location, start_upload, with_digest

WRK_SCRIPT = Path(__file__).with_name("wrk") / "report.lua"
WRK_MARKER = "BENCH-WRK "
LOADGEN_SOURCE = Path(__file__).with_name("loadgen") / "main.go"
LOADGEN_MARKER = "BENCH-LOADGEN "
LOADGEN_AUTH_ENV = "LOADGEN_AUTHORIZATION"  # the Authorization header value loadgen sends ("" or unset: none)
OCTET_STREAM = "Content-Type: application/octet-stream"


@dataclass
class Measured:
    """A finished client process, with the CPU time it cost (from wait4).

    (Its ru_maxrss would be no use: it counts the Python process the child was forked from. That curl streams
    `-T` bodies, while `--data-binary @file` reads the whole file first, was checked by hand with GNU time.)"""

    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run `cmd` to the end; its CPU time comes from the kernel (wait4), not from sampling.

    Callers bound the run with the tool's own limits (curl --max-time, wrk -d). The child is killed if we are
    interrupted (Ctrl-C, or SIGTERM which __main__ turns into SystemExit)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            cpu_seconds=usage.ru_utime + usage.ru_stime,
        )


# ---- curl --------------------------------------------------------------------------------------------------------


@dataclass
class CurlResult:
    status: int
    seconds: float  # curl's own time_total
    uploaded: int
    downloaded: int
    headers: dict[str, str]
    client: Measured

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def curl(method: str, url: str, *, upload: Path | None = None, empty_body: bool = False,
         headers: dict[str, str] | None = None, timeout: float = 900.0, follow: bool = False) -> CurlResult:
    """One request. An upload body is streamed from the file (`-T`; `--data-binary @file` would read it all
    into memory first); the response body goes to /dev/null; `Expect: 100-continue` is turned off, as
    registry clients do not send it. `follow`: follow redirects (curl sends the headers given here to
    the first host only, as registry clients do), timed as a whole; the status and headers are the last."""
    cmd = ["curl", "-sS", "--max-time", str(int(timeout)), "-o", "/dev/null",
           "-w", "%{json}\\n%{header_json}", "-H", "Expect:"]
    # -X would keep the method through redirects; GET (the default) follows as clients do.
    cmd += ["-L"] if follow else []
    cmd += [] if follow and method == "GET" else ["-X", method]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if upload is not None:
        cmd += ["-T", str(upload), "-H", OCTET_STREAM]
    elif empty_body:
        cmd += ["--data-binary", "", "-H", OCTET_STREAM]
    cmd.append(url)
    m = run_measured(cmd)
    if m.returncode != 0:
        raise RegistryError(f"curl {method} {url} failed ({m.returncode}): {m.stderr.strip()}")
    info_line, _, header_json = m.stdout.partition("\n")
    info = json.loads(info_line)
    try:
        hdrs = {k.lower(): v[-1] for k, v in json.loads(header_json or "{}").items() if v}
    except ValueError:
        if not follow:
            raise
        hdrs = {}  # curl 7.88 writes the headers of several responses as broken JSON: the body's size is checked
    return CurlResult(int(info["http_code"]), float(info["time_total"]), int(info["size_upload"]),
                      int(info["size_download"]), hdrs, m)


def _expect(r: CurlResult, what: str, *codes: int) -> CurlResult:
    if r.status not in codes:
        raise RegistryError(f"{what} -> {r.status} (want {codes})")
    return r


@dataclass
class Transfer:
    """A timed blob transfer: total bytes, and the sum of curl's time over its requests."""

    size: int
    seconds: float
    requests: int
    client_cpu_seconds: float = 0.0

    def add(self, r: CurlResult) -> None:
        self.seconds += r.seconds
        self.requests += 1
        self.client_cpu_seconds += r.client.cpu_seconds

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


def push_blob(base: str, repo: str, blob: Blob, auth: Access, *, chunked: bool) -> Transfer:
    """Push `blob`: monolithic (`PUT ?digest=` with the whole body) or chunked (a `PATCH` with
    `Content-Range: first-last` per part, then an empty `PUT ?digest=`). The POST that opens the
    upload is not timed; every request after it is."""
    if not chunked and len(blob.parts) != 1:
        raise ValueError("a monolithic push needs a one-part blob")
    hdrs = auth.headers(repo)
    location = start_upload(base, repo, auth)
    transfer = Transfer(size=blob.size, seconds=0.0, requests=0)
    if chunked:
        for part, first, last in blob.ranges():
            r = _expect(curl("PATCH", location, upload=part, headers={"Content-Range": f"{first}-{last}", **hdrs}),
                        f"PATCH {first}-{last}", 202)
            location = resolve_location(base, r.header("location"), f"PATCH {first}-{last}")
            transfer.add(r)
        final = curl("PUT", with_digest(location, blob.digest), empty_body=True, headers=hdrs)
    else:
        final = curl("PUT", with_digest(location, blob.digest), upload=blob.parts[0], headers=hdrs)
    _expect(final, "PUT ?digest=", 201)
    transfer.add(final)
    if final.uploaded != (0 if chunked else blob.size):
        raise RegistryError(f"curl sent {final.uploaded} bytes in the final PUT")
    digest = final.header("docker-content-digest")
    if digest is not None and digest != blob.digest:
        raise RegistryError(f"server computed {digest}, want {blob.digest}")
    check_blob_head(base, repo, blob.digest, blob.size, auth)
    return transfer


def pull_blob(base: str, repo: str, blob: Blob, auth: Access, *, follow: bool = False) -> Transfer:
    """GET the blob (`follow`: through a redirect to the object store, timed from the first request)."""
    r = _expect(curl("GET", f"{base}/v2/{repo}/blobs/{blob.digest}", headers=auth.headers(repo), follow=follow),
                "GET blob", 200)
    if r.downloaded != blob.size:
        raise RegistryError(f"GET blob: received {r.downloaded} bytes, want {blob.size}")
    digest = r.header("docker-content-digest")
    if digest is not None and digest != blob.digest:
        raise RegistryError(f"GET blob: Docker-Content-Digest {digest}, want {blob.digest}")
    transfer = Transfer(size=blob.size, seconds=0.0, requests=0)
    transfer.add(r)
    return transfer


# ---- wrk ---------------------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    client: Measured

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(url: str, *, method: str, headers: dict[str, str], threads: int, connections: int,
        duration: int) -> WrkResult:
    """A closed-loop load: `connections` keep-alive connections over `threads` threads, for `duration` s.
    Responses with status >= 400 fail the run (wrk counts them in errors.status)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(WRK_SCRIPT)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd += [url, "--", method]
    m = run_measured(cmd)
    line = next((ln for ln in m.stdout.splitlines() if ln.startswith(WRK_MARKER)), None)
    if m.returncode != 0 or line is None:
        raise RegistryError(f"wrk failed ({m.returncode}): {m.stderr.strip() or m.stdout.strip()}")
    data = json.loads(line.removeprefix(WRK_MARKER))
    result = WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["latency_us"]["p50"] / 1e3,
        p99_ms=data["latency_us"]["p99"] / 1e3,
        max_ms=data["latency_us"]["max"] / 1e3,
        errors={k: int(v) for k, v in data["errors"].items()},
        client=m,
    )
    if result.requests == 0:
        raise RegistryError(f"wrk completed no request against {url}")
    if result.errors["status"]:
        raise RegistryError(f"wrk: {result.errors['status']} of {result.requests} responses had status >= 400")
    return result


# ---- loadgen (Go) ------------------------------------------------------------------------------------------------


def go_version() -> str:
    go = shutil.which("go")
    if go is None:
        return "not installed"
    r = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30)
    return r.stdout.strip()


def build_loadgen(dest: Path) -> Path:
    """Build the Go load client (standard library only: no module, nothing downloaded)."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is not installed (needed to build benchmarks/loadgen)")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": ""}
    r = subprocess.run([go, "build", "-trimpath", "-o", str(dest), str(LOADGEN_SOURCE)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=LOADGEN_SOURCE.parent)
    if r.returncode != 0:
        raise RuntimeError(f"go build benchmarks/loadgen failed:\n{r.stderr.strip()}")
    return dest


@dataclass
class LoadgenResult:
    wall_seconds: float  # from the first timed request to the last response
    bytes: int
    requests: int
    ok: int
    verified: int
    errors: dict[str, int]
    first_errors: list[str]
    latency_ms: dict[str, float]
    client: Measured

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def details(self) -> dict[str, object]:
        return {"bytes": self.bytes, "seconds": round(self.wall_seconds, 4), "requests": self.requests,
                "ok": self.ok, "verified": self.verified, "errors": self.errors, "first_errors": self.first_errors,
                "latency_ms": self.latency_ms, "client_cpu_seconds": self.client.cpu_seconds}


def loadgen(binary: Path, mode: str, *, auth: Access, **flags: object) -> LoadgenResult:
    """Run one loadgen mode to the end on the repository `flags["repo"]`, with `auth`'s credentials for it (an
    `Authorization` value passed in the environment, sent on every request). It exits 0 whenever it measured;
    failed requests are in `errors`."""
    cmd = [str(binary), mode]
    env = {**os.environ, LOADGEN_AUTH_ENV: auth.authorization(str(flags["repo"]))}
    for k, v in flags.items():
        cmd += [f"-{k.replace('_', '-')}", ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)]
    m = run_measured(cmd, env)
    line = next((ln for ln in m.stdout.splitlines() if ln.startswith(LOADGEN_MARKER)), None)
    if m.returncode != 0 or line is None:
        raise RegistryError(f"loadgen {mode} failed ({m.returncode}): {m.stderr.strip() or m.stdout.strip()}")
    d = json.loads(line.removeprefix(LOADGEN_MARKER))
    return LoadgenResult(float(d["wall_seconds"]), int(d["bytes"]), int(d["requests"]), int(d["ok"]),
                         int(d["verified"]), {k: int(v) for k, v in d["errors"].items()}, list(d["first_errors"]),
                         dict(d.get("latency_ms") or {}), m)
