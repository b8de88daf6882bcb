"""`ncr-trio serve`: hypercorn's trio worker around the ASGI app.

One worker runs in-process. Several workers are hypercorn-spawned processes that import
`ncr_trio.serve:app`, which rebuilds the configuration from `NCR_SERVE_CONFIG`; they share the
metadata store (SQLite WAL across processes, or PostgreSQL) and the storage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig

from ncr_trio import config as config_mod
from ncr_trio.config import Config
from ncr_trio.http.app import App
from ncr_trio.memory import tune_malloc

_ENV = "NCR_SERVE_CONFIG"


def _tune_process(config: Config) -> None:
    """Per worker process: keep freed buffers warm, and read sockets in larger pieces."""
    tune_malloc()
    # hypercorn reads sockets 64 KiB at a time; larger reads cut per-chunk overhead on pushes.
    import hypercorn.trio.tcp_server as tcp_server

    tcp_server.MAX_RECV = config.recv_chunk_bytes  # type: ignore[attr-defined]


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = list(config.listen)
    hc.worker_class = "trio"
    hc.workers = config.workers
    hc.graceful_timeout = config.graceful_timeout_seconds
    hc.keep_alive_timeout = 75
    hc.h11_max_incomplete_size = 64 * 1024
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.application_path = "ncr_trio.serve:app"
    return hc


def _dump(config: Config) -> str:
    d = dataclasses.asdict(config)
    d["data_dir"] = str(config.data_dir.resolve())
    return json.dumps(d)


def _load_env() -> Config:
    raw = json.loads(os.environ[_ENV])
    raw["data_dir"] = Path(raw["data_dir"])
    raw["listen"] = tuple(raw["listen"])
    return Config(**raw)


class _LazyApp:
    """The app that spawned workers import: built from the parent's configuration on first use."""

    def __init__(self) -> None:
        self._app: App | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            config = _load_env()
            _tune_process(config)
            self._app = App(config)
        await self._app(scope, receive, send)


app = _LazyApp()


async def _until_signalled(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            return


async def _serve_one(config: Config) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    async with trio.open_nursery() as nursery:
        stop = trio.Event()

        async def trigger() -> None:
            await stop.wait()

        async def watch() -> None:
            await _until_signalled()
            logging.getLogger("ncr_trio").info("shutting down: finishing requests in flight")
            stop.set()

        nursery.start_soon(watch)
        await hypercorn_serve(App(config), hypercorn_config(config), shutdown_trigger=trigger)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()


def serve(config: Config) -> int:
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _tune_process(config)
    log = logging.getLogger("ncr_trio")
    log.info("ncr-trio listening on %s, data in %s", ", ".join(config.listen), config.data_dir.resolve())
    if config.workers <= 1:
        trio.run(_serve_one, config)
        return 0
    from hypercorn.run import run

    os.environ[_ENV] = _dump(config)
    return run(hypercorn_config(config))


__all__ = ["app", "hypercorn_config", "serve"]


def load_config(path: str | None, **overrides: Any) -> Config:
    return config_mod.load(Path(path) if path else None, **overrides)
