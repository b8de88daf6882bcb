"""Slow down, then refuse, repeated failed logins for one account from one client address, and a
client address that fails for many accounts.

Failures are counted over a sliding window for each (account, client address) pair: from `slow_after`
failures on, each further attempt of that pair waits before its secret is checked (1 s, 2 s, 4 s, at
most 8 s); from `lock_after` failures the pair is refused outright until `lockout` seconds have passed
since its last failure. An account is never locked for everyone: a correct secret from an address that
has not failed is never slowed or refused, so nobody can lock `admin` out by guessing its password.
An address that guesses many accounts is slowed and locked as a whole at `CLIENT_FACTOR` times those
counts. A success clears its pair's count, not the address's (one valid key must not launder a client
that is guessing others). The state lives in the process: with several workers an attacker gets at most
`workers` times the attempts, still bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LockedOut(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {int(retry_after) + 1} s")
        self.retry_after = retry_after


# How many more failures a client address may have, across accounts, than one (account, address) pair.
CLIENT_FACTOR = 5


class LoginThrottle:
    MAX_KEYS = 100_000

    def __init__(self, slow_after: int, lock_after: int, lockout: float, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.slow_after = slow_after
        self.lock_after = lock_after
        self.lockout = lockout
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, ...], list[float]] = {}

    def _keys(self, account: str, client: str | None) -> list[tuple[tuple[str, ...], int]]:
        """Each key an attempt counts under, with the factor of its limits."""
        return [(("pair", account, client or ""), 1), (("client", client or ""), CLIENT_FACTOR)]

    def _recent(self, key: tuple[str, ...], now: float) -> list[float]:
        failures = self._failures.get(key)
        if failures is None:
            return []
        horizon = now - max(self.window, self.lockout)
        failures[:] = [t for t in failures if t > horizon]
        if not failures:
            del self._failures[key]
        return failures

    def delay(self, account: str, client: str | None) -> float:
        """Seconds to wait before checking this attempt; raises LockedOut when refused."""
        now = self._clock()
        wait = 0.0
        for key, factor in self._keys(account, client):
            failures = self._recent(key, now)
            in_window = sum(1 for t in failures if t > now - self.window)
            if len(failures) >= self.lock_after * factor and now - failures[-1] < self.lockout:
                raise LockedOut(self.lockout - (now - failures[-1]))
            if in_window >= self.slow_after * factor:
                wait = max(wait, float(min(2 ** (in_window - self.slow_after * factor), 8)))
        return wait

    def failed(self, account: str, client: str | None) -> None:
        now = self._clock()
        if len(self._failures) >= self.MAX_KEYS:  # a flood of distinct keys: forget the oldest half
            for key in list(self._failures)[: self.MAX_KEYS // 2]:
                del self._failures[key]
        for key, _ in self._keys(account, client):
            self._failures.setdefault(key, []).append(now)

    def succeeded(self, account: str, client: str | None) -> None:
        self._failures.pop(self._keys(account, client)[0][0], None)


__all__ = ["CLIENT_FACTOR", "LockedOut", "LoginThrottle"]
