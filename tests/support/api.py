"""Small helpers for tests that drive the management API: checked answers, polling, artifact paths."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def ok(r: httpx.Response, status: int = 200) -> Any:
    """The answer's JSON (None when it has no body), after checking its status."""
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 120.0, every: float = 0.1) -> T:
    """Read until `done` holds, and return what was read (polling; the deadline only bounds a broken run)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"still {value}"
        time.sleep(every)


def eventually(what: str, check: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Poll until `check` answers something true, and return it (`what` names it when the deadline passes)."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(every)
    return found


def artifact_path(repo: str, digest: str) -> str:
    """The management API's path of an artifact of `repo` (<registry>/<image>)."""
    registry, image = repo.split("/", 1)
    return f"/registries/{registry}/images/{image}/artifacts/{digest}"


__all__ = ["artifact_path", "eventually", "ok", "wait_for"]
