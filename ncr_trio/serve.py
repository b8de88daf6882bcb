"""`ncr-trio serve`: hypercorn's trio worker around the ASGI app.

One worker runs in-process. With `workers` > 1 the parent process supervises that many worker
processes; each binds its own listening socket with SO_REUSEPORT, so the kernel spreads
connections evenly over them (one shared socket lets whichever worker wakes first take most
keep-alive connections). They share the metadata store (SQLite WAL across processes, or
PostgreSQL) and the storage. SIGTERM or SIGINT shuts every worker down gracefully.

Metrics of several workers are summed from files in a directory the supervisor sets up for them
(ncr_trio/metrics.py, prometheus-client's multiprocess mode); a worker that dies is marked dead there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import multiprocessing.connection
import signal
import warnings
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig

from ncr_trio import metrics
from ncr_trio.config import Config
from ncr_trio.http import connections, fastpath, zerocopy
from ncr_trio.http.app import App
from ncr_trio.memory import tune_malloc

log = logging.getLogger("ncr_trio")


def _tune_process(config: Config) -> None:
    """Per worker process: keep freed buffers warm, and read sockets in larger pieces."""
    tune_malloc()
    # hypercorn reads sockets 64 KiB at a time; larger reads cut per-chunk overhead on pushes.
    import hypercorn.trio.tcp_server as tcp_server

    tcp_server.MAX_RECV = config.recv_chunk_bytes
    if config.zero_copy and not zerocopy.install():
        log.warning("zero-copy downloads are off: this hypercorn/h11 is not the version they were checked with")
    if not connections.install(config.read_timeout_seconds, config.send_timeout_seconds):
        log.warning("this hypercorn is not the version http/connections.py was checked with: connections of "
                    "clients that hang up stay open until keep_alive_timeout, and stalled clients are not dropped")
    if config.fast_path and not fastpath.install():
        log.warning("the fast path is off: this hypercorn/h11 is not the version it was checked with")


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = list(config.listen) + list(config.private_listen)
    if config.tls_cert or config.tls_key:
        if not (config.tls_cert and config.tls_key):
            raise SystemExit("TLS needs both tls_cert and tls_key")
        hc.certfile = config.tls_cert
        hc.keyfile = config.tls_key
    hc.worker_class = "trio"
    # hypercorn sets SO_REUSEPORT on the sockets it creates when it is told of several workers.
    hc.workers = config.workers
    hc.graceful_timeout = config.graceful_timeout_seconds
    # The keep-alive timer runs from a connection's start, or its last response, until a whole
    # request head has come: a silent client, an idle one and a head sent byte by byte (slowloris)
    # get read_timeout_seconds. Bodies get the same per read (http/connections.py: hypercorn's own
    # read_timeout would also cut clients quietly receiving a long response).
    hc.keep_alive_timeout = config.read_timeout_seconds
    hc.h11_max_incomplete_size = 64 * 1024
    hc.include_server_header = False  # do not advertise the server's software
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def _setup_logging(config: Config) -> None:
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _serve_one(config: Config) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    # `workers` is set only so that hypercorn binds with SO_REUSEPORT; this process is one worker.
    warnings.filterwarnings("ignore", message="The config `workers` has no affect")

    stop = trio.Event()

    async def watch_signals(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                if not stop.is_set():
                    log.info("shutting down: finishing requests in flight")
                    stop.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals)
        await hypercorn_serve(App(config), hypercorn_config(config), shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()


def _dump(config: Config) -> str:
    d = dataclasses.asdict(config)
    d["data_dir"] = str(config.data_dir.resolve())
    return json.dumps(d)


def _load(text: str) -> Config:
    raw = json.loads(text)
    raw["data_dir"] = Path(raw["data_dir"])
    raw["listen"] = tuple(raw["listen"])
    raw["private_listen"] = tuple(raw["private_listen"])
    return Config(**raw)


def _worker_main(config_json: str) -> None:
    """Entry point of a spawned worker process."""
    config = _load(config_json)
    _setup_logging(config)
    _tune_process(config)
    trio.run(_serve_one, config)


def _supervise(config: Config) -> int:
    # Before the first worker starts: each inherits the directory in its environment.
    metrics_dir, own = metrics.prepare_multiprocess(config.metrics_dir)
    try:
        return _run_workers(config)
    finally:
        metrics.remove_multiprocess(metrics_dir, own)


def _run_workers(config: Config) -> int:
    ctx = multiprocessing.get_context("spawn")
    payload = _dump(config)
    stopping = False
    workers: list[multiprocessing.process.BaseProcess] = []

    def start() -> multiprocessing.process.BaseProcess:
        p = ctx.Process(target=_worker_main, args=(payload,), name="ncr-trio-worker")
        p.start()
        return p

    def on_sigterm(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in workers:
            if p.exitcode is None:
                p.terminate()  # SIGTERM: graceful in the worker

    def on_sigint(_signum: int, _frame: object) -> None:
        # A terminal's Ctrl-C reaches the whole process group: the workers stop on their own.
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigint)
    workers.extend(start() for _ in range(config.workers))
    while True:
        for i, p in enumerate(workers):
            if p.exitcode is not None and not stopping:
                log.warning("worker %s exited with %s: restarting it", p.pid, p.exitcode)
                if p.pid is not None:
                    metrics.process_dead(p.pid)
                workers[i] = start()
        if stopping and all(p.exitcode is not None for p in workers):
            break
        multiprocessing.connection.wait([p.sentinel for p in workers], timeout=1.0)
    return max((p.exitcode or 0) for p in workers)


def serve(config: Config) -> int:
    _setup_logging(config)
    scheme = "https" if config.tls_cert else "http"
    log.info("ncr-trio listening on %s (public) %s(private) over %s with %d worker(s), data in %s",
             ", ".join(config.listen), "".join(a + " " for a in config.private_listen) or "none ", scheme,
             config.workers, config.data_dir.resolve())
    if config.workers <= 1:
        _tune_process(config)  # the supervisor of several workers serves nothing: they tune themselves
        trio.run(_serve_one, config)
        return 0
    return _supervise(config)


__all__ = ["hypercorn_config", "serve"]
