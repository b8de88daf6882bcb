"""A server's memory as the whole process tree: RSS summed over the server process and all its descendants.

ncr-trio with several workers is a parent (`ncr-trio serve`), a multiprocessing resource tracker and one
child per worker; Distribution is one process. Either way the figure is the sum over the tree, sampled from
/proc every 50 ms by a thread. Every process's peak (VmHWM, reset at the start through clear_refs) is summed
too: that sum is an upper bound of the true peak (the processes need not peak at the same moment), and it
catches a spike shorter than the sampling period.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1 << 20


def proc_stats() -> dict[int, list[str]]:
    """Every live process's /proc/PID/stat fields from field 3 (state) on: [1] is the parent,
    [11:15] utime stime cutime cstime."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        stats[int(entry.name)] = text[text.rindex(")") + 2 :].split()
    return stats


def descendants(root: int, stats: dict[int, list[str]]) -> list[int]:
    """`root` and its live descendants (this kernel has no /proc/PID/task/TID/children: scan /proc)."""
    parent = {pid: int(fields[1]) for pid, fields in stats.items()}
    tree, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in parent:
            tree.append(p)
            todo += [child for child, pp in parent.items() if pp == p]
    return tree


def process_tree(root: int) -> list[int]:
    return descendants(root, proc_stats())


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_bytes(pids: list[int]) -> int:
    return sum(rss_bytes(p) for p in pids)


def _hwm_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _reset_hwm(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
    except OSError:
        pass


@dataclass
class MemoryResult:
    baseline_bytes: int  # tree RSS when sampling started
    peak_bytes: int  # highest sampled tree RSS
    hwm_sum_bytes: int  # sum of each process's own peak over the window (upper bound)
    samples: int
    processes: int  # processes seen in the tree

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MiB

    @property
    def growth_mib(self) -> float:
        return (self.peak_bytes - self.baseline_bytes) / MiB

    def details(self) -> dict[str, float | int]:
        return {"rss_baseline_mib": round(self.baseline_bytes / MiB, 1), "rss_peak_mib": round(self.peak_mib, 1),
                "rss_hwm_sum_mib": round(self.hwm_sum_bytes / MiB, 1), "rss_samples": self.samples,
                "rss_processes": self.processes}


class TreeMemorySampler:
    """`with TreeMemorySampler(pid) as m: ...` then `m.result`. The tree is re-scanned every half second
    (workers may come and go); the known processes' RSS is read every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.05, rescan: float = 0.5) -> None:
        self.pid, self.interval, self.rescan = pid, interval, rescan
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pids: list[int] = []
        self._seen: set[int] = set()
        self._peak = 0
        self._samples = 0
        self._baseline = 0
        self.result: MemoryResult | None = None

    def _scan(self) -> None:
        fresh = process_tree(self.pid)
        for p in fresh:
            if p not in self._seen:
                _reset_hwm(p)
                self._seen.add(p)
        self._pids = fresh

    def _sample(self) -> None:
        self._peak = max(self._peak, tree_rss_bytes(self._pids))
        self._samples += 1

    def _run(self) -> None:
        last_scan = time.monotonic()
        while not self._stop.wait(self.interval):
            if time.monotonic() - last_scan >= self.rescan:
                self._scan()
                last_scan = time.monotonic()
            self._sample()

    def __enter__(self) -> TreeMemorySampler:
        self._scan()
        self._baseline = tree_rss_bytes(self._pids)
        self._peak = self._baseline
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample()
        hwm = sum(_hwm_bytes(p) for p in self._pids)
        self.result = MemoryResult(self._baseline, self._peak, hwm, self._samples, len(self._seen))
