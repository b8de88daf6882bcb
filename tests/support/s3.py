"""Real S3-compatible servers for the tests: versitygw (a gateway over a local directory) and moto's server.

`s3_server(kind)` starts one on a free 127.0.0.1 port with root credentials, waits until it answers,
yields an `S3Server`, and stops it at exit. `S3Server.bucket()` creates a fresh bucket and yields
its name; `S3Server.settings(bucket)` gives driver settings for it, and `S3Server.config(bucket)`
the `NCR_*`-style keyword settings of a server on it (tests.support.server.Server's `extra_env`).

versitygw comes from `make tools` (scripts/install-tools.sh, `go install`); moto's server is the
`moto[server]` test dependency, run as `python -m moto.server`. A missing versitygw fails the test in
CI (RuntimeError from `tool`), as every missing tool does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ncr_trio.storage.s3 import S3Driver, S3Settings
from tests.support.server import free_port, tool

ACCESS_KEY = "ncrtestaccess"
SECRET_KEY = "ncrtestsecret0123456789"
KINDS = ("versitygw", "moto")


@dataclass
class S3Server:
    kind: str
    port: int
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, bucket: str, **kw: Any) -> S3Settings:
        return S3Settings(bucket=bucket, endpoint=self.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **kw)

    def driver(self, bucket: str, **kw: Any) -> S3Driver:
        return S3Driver(self.settings(bucket, **kw))

    def env(self, bucket: str) -> dict[str, str]:
        """The settings of an ncr-trio server storing into `bucket`, as environment variables."""
        return {"NCR_STORAGE": "s3", "NCR_S3_ENDPOINT": self.endpoint, "NCR_S3_BUCKET": bucket,
                "NCR_S3_ACCESS_KEY": ACCESS_KEY, "NCR_S3_SECRET_KEY": SECRET_KEY}

    @contextlib.contextmanager
    def bucket(self, name: str | None = None) -> Iterator[str]:
        """A fresh bucket (left in place: the server's directory goes at exit)."""
        name = name or f"ncr-{uuid.uuid4().hex[:12]}"
        self.driver(name).ensure_bucket()
        yield name

    def multipart_uploads(self, bucket: str) -> list[dict[str, Any]]:
        """Every multipart upload in progress in `bucket` (what a finished push must not leave)."""
        return self.driver(bucket).multipart_uploads("")


def _wait(server: S3Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            log = (server.root / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.kind} exited ({server.proc.returncode}):\n{log}")
        try:
            httpx.get(server.endpoint + "/", timeout=2.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.kind} did not answer on {server.endpoint}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def s3_server(kind: str) -> Iterator[S3Server]:
    root = Path(tempfile.mkdtemp(prefix=f"ncr-{kind}-"))
    port = free_port()
    env = dict(os.environ)
    if kind == "versitygw":
        (root / "posix").mkdir()
        env.update(ROOT_ACCESS_KEY=ACCESS_KEY, ROOT_SECRET_KEY=SECRET_KEY)
        cmd = [tool("versitygw"), "--port", f"127.0.0.1:{port}", "posix", str(root / "posix")]
    elif kind == "moto":
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    else:
        raise ValueError(f"unknown S3 server {kind!r}: one of {KINDS}")
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    server = S3Server(kind, port, root, proc)
    try:
        _wait(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["ACCESS_KEY", "KINDS", "SECRET_KEY", "S3Server", "s3_server"]
