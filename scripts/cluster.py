"""`make cluster`: PostgreSQL, versitygw (an S3 server), three ncr-trio nodes and HAProxy (deploy/haproxy.cfg)
on this machine, for a developer. Ctrl-C stops them all.

Everything lives under ./data/cluster and is kept between runs:

    postgres/        the database server's files (initdb at the first run), on 127.0.0.1:$BASE+10
    s3/              versitygw's directory (bucket `ncr`: blobs and uploads), on 127.0.0.1:$BASE+20
    store/keys/      the keys every node shares (tests/support/cluster.py)
    node1..node3/    each node's data directory, serving on 127.0.0.1:$BASE+1..3
    haproxy          clients use 127.0.0.1:$BASE (BASE: $NCR_CLUSTER_PORT, 5000 by default)

The first start's admin password is NCR_ADMIN_PASSWORD if set, else printed by node 1 and kept in
node1/initial-admin-password. Settings for every node come from the environment as usual (NCR_*).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.cluster import HAPROXY_CFG, haproxy_binary, haproxy_env, node_directories
from tests.support.postgres import PostgresServer, find_bindir, run_as
from tests.support.s3 import ACCESS_KEY, SECRET_KEY
from tests.support.server import terminate, tool, wait_ready

NODES = 3


def main() -> int:
    root = Path("data/cluster").resolve()
    base = int(os.environ.get("NCR_CLUSTER_PORT", "5000"))
    prefix, uid, gid = run_as()
    pg = PostgresServer(bindir=find_bindir(), root=root / "postgres", port=base + 10, prefix=prefix)
    pg.root.mkdir(parents=True, exist_ok=True)
    if uid is not None and gid is not None:
        os.chown(pg.root, uid, gid)
    haproxy = haproxy_binary()
    if haproxy is None:
        raise SystemExit("haproxy is not installed: run `make tools`")
    pg.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        created = subprocess.run([*prefix, str(pg.bindir / "psql"), "-h", "127.0.0.1", "-p", str(pg.port),
                                  "-U", pg.user, "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'ncr'"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        if not created:
            pg.execute("CREATE DATABASE ncr")
        s3 = f"127.0.0.1:{base + 20}"
        (root / "s3" / "ncr").mkdir(parents=True, exist_ok=True)  # versitygw's posix backend: a bucket is a directory
        procs.append(subprocess.Popen([tool("versitygw"), "--port", s3, "posix", str(root / "s3")],
                                      env={**os.environ, "ROOT_ACCESS_KEY": ACCESS_KEY, "ROOT_SECRET_KEY": SECRET_KEY}))
        _answers(f"http://{s3}/", procs[-1])
        env = {"NCR_DATABASE_URL": pg.url("ncr"), "NCR_TRUSTED_PROXIES": "127.0.0.1", "NCR_WORKERS": "1",
               "NCR_STORAGE": "s3", "NCR_S3_ENDPOINT": f"http://{s3}", "NCR_S3_BUCKET": "ncr",
               "NCR_S3_ACCESS_KEY": ACCESS_KEY, "NCR_S3_SECRET_KEY": SECRET_KEY}
        nodes = []
        for i, data in enumerate(node_directories(root, NODES, ("keys",)), 1):
            host = f"127.0.0.1:{base + i}"
            procs.append(subprocess.Popen([sys.executable, "-m", "ncr_trio", "serve", "--listen", host,
                                           "--data", str(data)], env={**env, **os.environ}))
            wait_ready(f"http://{host}", procs[-1])  # the first alone: it migrates the database, makes the keys
            nodes.append(host)
        lb = f"127.0.0.1:{base}"
        procs.append(subprocess.Popen([haproxy, "-db", "-f", str(HAPROXY_CFG)],
                                      env={**os.environ, **haproxy_env(lb, nodes)}))
        wait_ready(f"http://{lb}", procs[-1])
        print(f"\nncr-trio cluster: http://{lb} (HAProxy) over {', '.join(nodes)}; PostgreSQL {pg.url('ncr')}; "
              f"S3 http://{s3} (bucket ncr); files in {root}. Ctrl-C stops it.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:  # a terminal's Ctrl-C reaches every process of the group: they stop too
        pass
    finally:
        for proc in reversed(procs):
            terminate(proc)
        if (pg.data / "postmaster.pid").exists():
            subprocess.run([*prefix, str(pg.bindir / "pg_ctl"), "-D", str(pg.data), "-m", "fast", "-w", "stop"],
                           capture_output=True)
    return 0


def _answers(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until a server answers anything at `url`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nothing answers at {url}") from None
            time.sleep(0.1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
