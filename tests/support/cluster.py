"""Several ncr-trio nodes on one PostgreSQL database and one blob store, behind HAProxy running the
shipped `deploy/haproxy.cfg` (its addresses come from the environment, so the file is tested as is).

Each node is its own process with its own data directory, as on separate machines. What the nodes
must share besides the database lives in one store directory, linked into every data directory:

    store/blobs    the blob store      (a shared filesystem mount in production, until the S3 driver)
    store/uploads  upload sessions     (any node carries any request of an upload)
    store/keys     token signing key and the sealing key (a token one node issued is honoured by all;
                   a secret one node sealed opens on all): copied to every node in production

The first node starts alone (it migrates the database, creates the admin and the keys), the others
after it. `Cluster.nodes` are the nodes (tests round-robin over them or kill one), `Cluster.lb` the
load balancer clients use.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.s3 import S3Server
from tests.support.server import DEFAULT_REGISTRIES, Server, _OnLoopback, free_port, terminate, wait_ready

HAPROXY_CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
SHARED = ("blobs", "uploads", "keys")


def haproxy_binary() -> str | None:
    for candidate in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if os.access(candidate, os.X_OK):
            return candidate
    import shutil

    return shutil.which("haproxy")


def haproxy_env(bind: str, backends: Sequence[str]) -> dict[str, str]:
    """The variables deploy/haproxy.cfg reads: its listening address and one per node."""
    return {"NCR_LB_BIND": bind, **{f"NCR_NODE{i}": b for i, b in enumerate(backends, 1)}}


@dataclass
class HAProxy(_OnLoopback):
    """HAProxy in the foreground with `config`, balancing over `backends` ("host:port" each)."""

    root: Path
    backends: Sequence[str]
    config: Path = HAPROXY_CFG
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HAProxy:
        exe = haproxy_binary()
        if exe is None:
            raise RuntimeError("haproxy is not installed: run `make tools`")
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **haproxy_env(self.host, self.backends)}
        with open(self.root / "haproxy.log", "ab") as log:
            # -db: stay in the foreground, no daemon; the config's `server` lines need every NCR_NODEn.
            self.proc = subprocess.Popen([exe, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                         env=env)
        wait_ready(self.url, self.proc)  # 503 until a health check has found a node up
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


def haproxy_config(n: int, directory: Path) -> Path:
    """The shipped config for `n` nodes: itself for three; for fewer, a copy without the other `server` lines."""
    if n == 3:
        return HAPROXY_CFG
    if not 1 <= n < 3:
        raise ValueError("deploy/haproxy.cfg names three nodes: add `server` lines for more")
    dropped = tuple(f"server node{i} " for i in range(n + 1, 4))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"haproxy-{n}.cfg"
    path.write_text("".join(line for line in HAPROXY_CFG.read_text().splitlines(keepends=True)
                            if not line.strip().startswith(dropped)))
    return path


def node_directories(root: Path, n: int, shared: Sequence[str] = SHARED) -> list[Path]:
    """Data directories of `n` nodes whose `shared` subdirectories (blobs/, uploads/ and keys/; only keys/
    when the blobs are in an object store) are one shared store."""
    store = root / "store"
    for sub in shared:
        (store / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    dirs = []
    for i in range(1, n + 1):
        data = root / f"node{i}"
        data.mkdir(parents=True, exist_ok=True)
        for sub in shared:
            link = data / sub
            if not link.is_symlink():
                link.symlink_to(store / sub, target_is_directory=True)
        dirs.append(data)
    return dirs


@dataclass
class Cluster:
    nodes: list[Server]
    lb: HAProxy
    database_url: str
    store: Path
    s3: S3Server | None = None  # the object store the nodes keep blobs and uploads in, and its bucket
    bucket: str = ""

    def leftover_uploads(self) -> list[str]:
        """What unfinished uploads left in the store: multipart uploads in the bucket, or session files."""
        if self.s3 is not None:
            return [str(u.get("Key")) for u in self.s3.multipart_uploads(self.bucket)]
        return [p.name for p in (self.store / "uploads").rglob("*") if p.is_file()]

    def client(self, **kwargs: object) -> httpx.Client:
        """A registry client through the load balancer, logged in as the admin."""
        return self.via_lb().client(auth=None, **kwargs)

    def via_lb(self) -> Server:
        """The load balancer seen as a server (for the helpers that take one: api(), auth(), client())."""
        return Server(data=self.nodes[0].data, port=self.lb.port)

    def round_robin(self) -> Iterator[Server]:
        """The live nodes, one after another, for ever."""
        return itertools.cycle([n for n in self.nodes if n.proc is not None and n.proc.poll() is None])

    def logs(self) -> str:
        return "\n".join(f"--- node {n.port}\n{n.log()[-3000:]}" for n in self.nodes)


@contextlib.contextmanager
def cluster(root: Path, database_url: str, n: int = 3, env: Mapping[str, str] | None = None,
            registries: tuple[str, ...] = DEFAULT_REGISTRIES, s3: tuple[S3Server, str] | None = None
            ) -> Iterator[Cluster]:
    """Start `n` nodes on `database_url` and HAProxy before them. Blobs and uploads go to `s3` (a server
    and a bucket) if given, else to a store directory under `root` the nodes share. `env`: every node's
    settings (NCR_*)."""
    nodes: list[Server] = []
    lb: HAProxy | None = None
    if s3 is not None:
        env = {**s3[0].env(s3[1]), **(env or {})}
    try:
        for i, data in enumerate(node_directories(root, n, SHARED if s3 is None else ("keys",))):
            node = Server(data=data, env={"NCR_DATABASE_URL": database_url, **(env or {})},
                          registries=registries if i == 0 else ())
            nodes.append(node)
            node.start()
        lb = HAProxy(root=root / "haproxy", backends=[node.host for node in nodes],
                     config=haproxy_config(n, root / "haproxy")).start()
        yield Cluster(nodes, lb, database_url, root / "store", *(s3 or (None, "")))
    finally:
        if lb is not None:
            lb.stop()
        for node in nodes:
            node.stop()


__all__ = ["HAPROXY_CFG", "Cluster", "HAProxy", "cluster", "haproxy_binary", "haproxy_config", "haproxy_env",
           "node_directories"]
