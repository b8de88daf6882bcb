"""Process memory tuning for a server that moves large buffers.

Measured on these VMs: memory freed back to the OS comes back slowly on its first touch, so a
server that allocates and frees a megabyte per received chunk runs at a third of the speed it
could. glibc hands large allocations (>128 KiB by default) to fresh `mmap`s and trims the heap
eagerly; raising both thresholds keeps the process's freed buffers for reuse. The pipelines are
bounded, so what is kept is bounded too (see the RSS figures in benchmarks/).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20

log = logging.getLogger("ncr_trio.memory")


def tune_malloc() -> bool:
    """Keep freed large buffers for reuse; a no-op (False) where libc has no mallopt."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.warning("mallopt refused the thresholds; large transfers will be slower")
    return ok


__all__ = ["tune_malloc"]
