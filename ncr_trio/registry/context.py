"""What every use case needs: configuration, storage, metadata, a disk limiter."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from ncr_trio.config import Config
from ncr_trio.meta import MetaStore
from ncr_trio.storage import StorageDriver


@dataclass
class Registry:
    config: Config
    storage: StorageDriver
    meta: MetaStore
    # Disk work (writes, fsyncs, cold reads) goes through this limiter: a slow disk pushes back.
    disk: trio.CapacityLimiter


__all__ = ["Registry"]
