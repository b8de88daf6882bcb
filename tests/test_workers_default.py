"""The default number of workers is the number of CPUs the process may run on (issue 16, Build 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ncr_trio.config import load, usable_cpus
from tests.support.server import free_port, terminate, wait_ready


def test_the_default_is_the_affinity_mask() -> None:
    assert load(env={}).workers == len(os.sched_getaffinity(0)) == usable_cpus()
    assert load(env={"NCR_WORKERS": "1"}).workers == 1
    assert load(env={"NCR_WORKERS": "1"}, workers=3).workers == 3  # the flag beats the environment


def test_a_narrowed_mask_narrows_the_default() -> None:
    """A container's cpuset (here: taskset's mask, inherited by the child) is what counts, not the host's CPUs."""
    code = "from ncr_trio.config import load; print(load(env={}).workers)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert out.stdout.strip() == "1"


def _worker_count(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    # multiprocessing's resource tracker is a child too; the workers run `ncr_trio` code under spawn.
    return sum(1 for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes())


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: the default is one worker, tested above")
def test_serve_starts_one_worker_per_cpu_by_default(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NCR_WORKERS"}
    env["NCR_ADMIN_PASSWORD"] = "workers-default-0"
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ncr_trio", "serve", "--listen", f"127.0.0.1:{port}",
                                 "--data", str(tmp_path / "data")], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        deadline = time.monotonic() + 30
        while _worker_count(proc.pid) < usable_cpus() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _worker_count(proc.pid) == usable_cpus()
        assert f"with {usable_cpus()} worker(s)" in (tmp_path / "server.log").read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 401
    finally:
        terminate(proc)
