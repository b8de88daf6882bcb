"""Digest locks: publishing a blob and collecting it never interleave.

Finalising an upload (rename into place + insert the blob row) and GC removing a blob (delete
the row + unlink the file) each hold the lock of that digest, so GC cannot unlink a file an
upload has just published. The locks are `flock`s on 256 striped files under
`<data>/locks/`, which serialise threads and worker processes on one machine alike.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STRIPES = 256


class DigestLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        # flock is per open file description: threads in one process need their own mutex too.
        self._local = [threading.Lock() for _ in range(STRIPES)]

    @contextmanager
    def hold(self, digest: str) -> Iterator[None]:
        """Blocking: call from a worker thread."""
        stripe = int(digest.rpartition(":")[2][:2] or "0", 16) % STRIPES
        with self._local[stripe]:
            fd = os.open(self.directory / f"{stripe:02x}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)


__all__ = ["DigestLocks"]
