"""The servers under test: ncr-trio and CNCF Distribution, each started on 127.0.0.1 with fresh storage.

Distribution runs with token auth by default (`--distribution-auth token`): its `auth: token:` trusts the signing
key of a small ncr-trio started only as its token issuer (`start_token_issuer`, one per round), exactly as
tests/test_token_interop.py configures it (`tests.support.server.distribution_token_auth`), and its clients send
that issuer's tokens. `--distribution-auth none` gives Distribution's shipped, auth-less configuration.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.auth import ADMIN_USER, ANONYMOUS, Access, login, new_password
from benchmarks.cache import CACHE_REGISTRY, make_ncr_cache, ncr_cache_env
from benchmarks.memory import descendants, proc_stats
from tests.support.server import distribution_config, distribution_token_auth, free_port, tool, wait_ready

REPO = Path(__file__).resolve().parent.parent
NCR_TRIO = "ncr-trio"  # as `make run` starts it: `ncr-trio serve`, the server's own defaults
NCR_TRIO_TUNED = "ncr-trio-tuned"  # the same code with the settings given to the run (`--ncr-workers`)
NCR_KINDS = (NCR_TRIO, NCR_TRIO_TUNED)
DISTRIBUTION_PREFIX = "distribution-"
# Distribution version -> executable name (looked up in $NCR_TOOLS/bin, then PATH).
DISTRIBUTION_BINARIES = {"2.8.2": "docker-registry", "3.1.1": "registry-v3"}
# How Distribution authenticates requests: bearer tokens of an ncr-trio token issuer (the default), or not at all.
DISTRIBUTION_AUTH = ("token", "none")


class Running(Protocol):
    """A started server."""

    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def stop(self) -> None: ...

    def log_tail(self, lines: int = 20) -> str: ...

    def access(self, repos: Mapping[str, str]) -> Access:
        """What clients send to use `repos` (repository -> actions, "pull,push" or "pull"; ncr-trio: creates their
        registries and fetches a token for each; untimed: the runner calls it right after the start, before any
        figure)."""
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
class _Process:
    """What both servers' handles share: a process on 127.0.0.1:port, logging to log_path."""

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


@dataclass
class RunningNcrTrio(_Process):
    """ncr-trio, secure by default: its first start creates the system administrator `admin` with the password
    given in NCR_ADMIN_PASSWORD, which `access` then logs in with."""

    password: str
    data: Path  # its data directory (keys/token-signing-key.pem)

    def access(self, repos: Mapping[str, str]) -> Access:
        return login(self.url, ADMIN_USER, self.password, repos)


@dataclass
class RunningDistribution(_Process):
    issuer: RunningNcrTrio | None = None  # the ncr-trio whose tokens it accepts; None: no auth configured

    def access(self, repos: Mapping[str, str]) -> Access:
        if self.issuer is None:
            return ANONYMOUS  # no auth configured, as shipped
        # The issuer's tokens, fetched as for ncr-trio (its registries created first): Distribution checks them.
        return login(self.issuer.url, ADMIN_USER, self.issuer.password, repos)


@dataclass(frozen=True)
class ServerKind:
    """One kind of server that can be benchmarked: "ncr-trio" (as `make run` starts it), "ncr-trio-tuned" or
    "distribution-VERSION"."""

    name: str
    # ncr-trio's worker processes (`ncr-trio serve --workers N`); None: not given, the server's default (one per CPU)
    workers: int | None = None
    auth: str = "token"  # Distribution only: "token" (an ncr-trio token issuer's tokens) or "none"

    @property
    def distribution_version(self) -> str | None:
        return self.name.removeprefix(DISTRIBUTION_PREFIX) if self.name.startswith(DISTRIBUTION_PREFIX) else None

    @property
    def is_ncr(self) -> bool:
        return self.distribution_version is None

    def serve_args(self) -> list[str]:
        """ncr-trio's settings beyond `ncr-trio serve`'s defaults (none for the default kind)."""
        return [] if self.workers is None else ["--workers", str(self.workers)]

    @property
    def cache_prefix(self) -> str:
        """What this server puts before a source's repository name when it serves it as a pull-through cache."""
        return f"{CACHE_REGISTRY}/" if self.distribution_version is None else ""

    @property
    def needs_issuer(self) -> bool:
        """Whether `start` needs a running ncr-trio token issuer (Distribution with token auth)."""
        return self.distribution_version is not None and self.auth == "token"

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
            settings = " ".join(self.serve_args()) or f"defaults, as `make run` ({os.cpu_count()} CPUs here)"
            return f"ncr-trio {out.stdout.strip() or '?'} ({_git_describe()}), {settings}"
        out = subprocess.run([self.executable(), "--version"], capture_output=True, text=True, timeout=30)
        auth = "token auth (ES256 tokens of an ncr-trio issuer)" if self.auth == "token" else "no auth"
        return f"{(out.stdout or out.stderr).strip()}, {auth}"

    def start(self, root: Path, issuer: RunningNcrTrio | None = None, cache_of: str | None = None) -> Running:
        """Start on a free port with fresh storage under `root` (which must not exist yet). Distribution with token
        auth trusts `issuer`'s signing key and names its token endpoint as realm. With `cache_of` (a registry's
        base URL), the server is a pull-through cache of that registry (benchmarks/cache.py)."""
        root.mkdir(parents=True)
        port = free_port()
        log_path = root / ("server.log" if self.distribution_version is None else "registry.log")
        if self.distribution_version is None:
            password = new_password()
            cmd = [sys.executable, "-m", "ncr_trio", "serve", "--listen", f"127.0.0.1:{port}",
                   "--data", str(root / "data"), *self.serve_args()]
            env = {**os.environ, "NCR_ADMIN_PASSWORD": password, **(ncr_cache_env(cache_of) if cache_of else {})}
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
            ncr = RunningNcrTrio(proc, port, log_path, password, root / "data")
            try:
                wait_ready(ncr.url, proc)  # GET /v2/ answers 401 (a challenge) once it serves
                if cache_of:
                    make_ncr_cache(ncr.url, ADMIN_USER, password, cache_of)
            except BaseException:
                ncr.stop()
                raise
            return ncr
        auth_token = None
        if self.needs_issuer:
            if issuer is None:
                raise RuntimeError(f"{self.name} with token auth needs a running ncr-trio token issuer")
            # 2.x finds the key in the certificate bundle by the token's libtrust `kid`; 3.x also needs jwks.
            auth_token = distribution_token_auth(issuer.url, issuer.data, root / "auth",
                                                 jwks=not self.distribution_version.startswith("2."))
        cfg = root / "config.yml"
        # as shipped, with the access log off: the baseline does not pay for per-request log lines that
        # ncr-trio does not write either
        cfg.write_text(distribution_config(root, f"127.0.0.1:{port}", auth_token=auth_token, access_log=False,
                                           proxy={"remoteurl": cache_of} if cache_of else None))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([self.executable(), "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        running = RunningDistribution(proc, port, log_path, issuer if auth_token is not None else None)
        try:
            wait_ready(running.url, proc)
        except BaseException:
            running.stop()
            raise
        return running


def start_token_issuer(root: Path) -> RunningNcrTrio:
    """A small ncr-trio (one worker, fresh data under `root`) that only issues the tokens Distribution checks: its
    signing key is created on this first start. The runner starts one per round, before the servers, and stops it
    at the end of the round; it serves token requests only right after a server starts, never while measuring."""
    issuer = ServerKind(NCR_TRIO, workers=1).start(root)
    assert isinstance(issuer, RunningNcrTrio)
    return issuer


def known_kinds() -> list[str]:
    return [*NCR_KINDS, *(DISTRIBUTION_PREFIX + v for v in DISTRIBUTION_BINARIES)]


def parse_kind(name: str, distribution_auth: str = "token") -> ServerKind:
    name = name.strip()
    if name in DISTRIBUTION_BINARIES:  # "2.8.2" is short for "distribution-2.8.2"
        name = DISTRIBUTION_PREFIX + name
    if name not in known_kinds():
        raise ValueError(f"unknown server {name!r}; known: {', '.join(known_kinds())}")
    if distribution_auth not in DISTRIBUTION_AUTH:
        raise ValueError(f"unknown Distribution auth {distribution_auth!r}; known: {', '.join(DISTRIBUTION_AUTH)}")
    return ServerKind(name, auth=distribution_auth)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
