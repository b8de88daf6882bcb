"""Slow down, then refuse, repeated failed logins from one client or for one account.

Failures are counted per key (a client address, an account name) over a sliding window. From
`slow_after` failures on, each further attempt waits before its secret is checked (1 s, 2 s, 4 s,
at most 8 s); from `lock_after` failures the key is refused outright until `lockout` seconds have
passed since its last failure. A success clears the account's count, not the client's (one valid
key must not launder a client that is guessing others). The state lives in the process: with
several workers an attacker gets at most `workers` times the attempts, still bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class LockedOut(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {int(retry_after) + 1} s")
        self.retry_after = retry_after


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)


class LoginThrottle:
    MAX_KEYS = 100_000

    def __init__(self, slow_after: int, lock_after: int, lockout: float, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slow_after = slow_after
        self.lock_after = lock_after
        self.lockout = lockout
        self.window = window
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        record = self._records.get(key)
        if record is None:
            return []
        horizon = now - max(self.window, self.lockout)
        record.failures = [t for t in record.failures if t > horizon]
        if not record.failures:
            del self._records[key]
        return record.failures

    def delay(self, keys: Iterable[str]) -> float:
        """Seconds to wait before checking this attempt; raises LockedOut when refused."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            failures = self._recent(key, now)
            in_window = [t for t in failures if t > now - self.window]
            if len(failures) >= self.lock_after and now - failures[-1] < self.lockout:
                raise LockedOut(self.lockout - (now - failures[-1]))
            if len(in_window) >= self.slow_after:
                wait = max(wait, float(min(2 ** (len(in_window) - self.slow_after), 8)))
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        if len(self._records) >= self.MAX_KEYS:  # a flood of distinct keys: forget the oldest half
            for key in list(self._records)[: self.MAX_KEYS // 2]:
                del self._records[key]
        for key in keys:
            self._records.setdefault(key, _Record()).failures.append(now)

    def succeeded(self, account_key: str) -> None:
        self._records.pop(account_key, None)


__all__ = ["LockedOut", "LoginThrottle"]
