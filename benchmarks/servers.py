"""The servers under test: ncr-trio and CNCF Distribution, each started on 127.0.0.1 with fresh storage."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.auth import ADMIN_USER, ANONYMOUS, Access, login, new_password
from benchmarks.memory import descendants, proc_stats
from tests.support.server import free_port, tool, wait_ready

REPO = Path(__file__).resolve().parent.parent
NCR_TRIO = "ncr-trio"
DISTRIBUTION_PREFIX = "distribution-"
# Distribution version -> executable name (looked up in $NCR_TOOLS/bin, then PATH).
DISTRIBUTION_BINARIES = {"2.8.2": "docker-registry", "3.1.1": "registry-v3"}


class Running(Protocol):
    """A started server."""

    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def stop(self) -> None: ...

    def log_tail(self, lines: int = 20) -> str: ...

    def access(self, repos: Iterable[str]) -> Access:
        """What clients send to use `repos` (ncr-trio: creates their registries and fetches a token for each;
        untimed: the runner calls it right after the start, before any figure)."""
        ...


def _git_describe() -> str:
    """The commit the server code comes from, and whether its files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "ncr_trio", "native", "pyproject.toml")
    return f"git {commit}" + (", with uncommitted changes" if dirty else "")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its descendants (live ones, and reaped ones via cutime)."""
    stats = proc_stats()
    ticks = sum(sum(int(f) for f in stats[p][11:15]) for p in descendants(pid, stats))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class RunningNcrTrio:
    """ncr-trio, secure by default: its first start creates the system administrator `admin` with the password
    given in NCR_ADMIN_PASSWORD, which `access` then logs in with."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    password: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc)

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)

    def access(self, repos: Iterable[str]) -> Access:
        return login(self.url, ADMIN_USER, self.password, repos)


@dataclass
class RunningDistribution:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        _stop(self.proc)

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)

    def access(self, repos: Iterable[str]) -> Access:
        return ANONYMOUS  # no auth configured, as shipped


def distribution_config(root: Path, port: int) -> str:
    """Distribution's config as shipped (upstream example and Debian's: in-memory blob descriptor cache,
    delete enabled), with the access log off and errors only, so the baseline does not pay for per-request
    log lines that ncr-trio does not write either."""
    return (
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )


@dataclass(frozen=True)
class ServerKind:
    """One kind of server that can be benchmarked: "ncr-trio" or "distribution-VERSION"."""

    name: str
    workers: int = 1  # ncr-trio's worker processes (`ncr-trio serve --workers N`)

    @property
    def distribution_version(self) -> str | None:
        return self.name.removeprefix(DISTRIBUTION_PREFIX) if self.name.startswith(DISTRIBUTION_PREFIX) else None

    def executable(self) -> str:
        version = self.distribution_version
        if version is None:
            return sys.executable
        binary = DISTRIBUTION_BINARIES[version]
        return tool(binary)

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        try:
            self.executable()
        except RuntimeError as e:
            return str(e)
        return None

    def version(self) -> str:
        """What the server says it is (for the results file)."""
        if self.distribution_version is None:
            out = subprocess.run([sys.executable, "-c", "import ncr_trio; print(getattr(ncr_trio, '__version__', '?'))"],
                                 capture_output=True, text=True, timeout=30)
            return f"ncr-trio {out.stdout.strip() or '?'} ({_git_describe()}), {self.workers} worker(s)"
        out = subprocess.run([self.executable(), "--version"], capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip()

    def start(self, root: Path) -> Running:
        """Start on a free port with fresh storage under `root` (which must not exist yet)."""
        root.mkdir(parents=True)
        port = free_port()
        log_path = root / ("server.log" if self.distribution_version is None else "registry.log")
        if self.distribution_version is None:
            password = new_password()
            cmd = [sys.executable, "-m", "ncr_trio", "serve", "--listen", f"127.0.0.1:{port}",
                   "--data", str(root / "data"), "--workers", str(self.workers)]
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env={**os.environ, "NCR_ADMIN_PASSWORD": password})
            ncr = RunningNcrTrio(proc, port, log_path, password)
            try:
                wait_ready(ncr.url, proc)  # GET /v2/ answers 401 (a challenge) once it serves
            except BaseException:
                ncr.stop()
                raise
            return ncr
        cfg = root / "config.yml"
        cfg.write_text(distribution_config(root, port))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([self.executable(), "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        running = RunningDistribution(proc, port, log_path)
        try:
            wait_ready(running.url, proc)
        except BaseException:
            running.stop()
            raise
        return running


def known_kinds() -> list[str]:
    return [NCR_TRIO, *(DISTRIBUTION_PREFIX + v for v in DISTRIBUTION_BINARIES)]


def parse_kind(name: str) -> ServerKind:
    name = name.strip()
    if name in DISTRIBUTION_BINARIES:  # "2.8.2" is short for "distribution-2.8.2"
        name = DISTRIBUTION_PREFIX + name
    if name not in known_kinds():
        raise ValueError(f"unknown server {name!r}; known: {', '.join(known_kinds())}")
    return ServerKind(name)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
