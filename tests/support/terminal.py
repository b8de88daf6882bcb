"""Run `python -m ncr_trio ...` on a pseudo-terminal, as a person would (progress bars, questions)."""

from __future__ import annotations

import os
import pty
import select
import sys
from collections.abc import Mapping


def on_tty(*args: str, env: Mapping[str, str], answer: str | None = None, timeout: float = 30,
           prompt: bytes = b"[y/N]") -> tuple[int, str]:
    """Exit status and everything the command wrote; `answer` is typed at the first `prompt` (a `[y/N]`
    question by default)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execve(sys.executable, [sys.executable, "-m", "ncr_trio", *args], dict(env))
        finally:
            os._exit(127)
    out, sent = b"", False
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if answer is not None and not sent and prompt in out:
            os.write(fd, answer.encode() + b"\n")
            sent = True
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


__all__ = ["on_tty"]
