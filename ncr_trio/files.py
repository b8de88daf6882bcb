"""Small files that must be whole and durable: a directory's entries made durable (`fsync_dir`), and
private files written once, such as keys (`private_file`)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


class KeyFileError(Exception):
    """A key file that others may read, or that does not hold a key."""


def fsync_dir(path: Path) -> None:
    """Make the entries of directory `path` (new names, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of `path`, which is first created from `make()` if it does not exist: written whole
    to a private temporary file and linked into place, so that no reader sees it partial and, when
    several processes create it at once, one file wins and every process reads that one. Raises
    KeyFileError if the file may be read by anyone but its owner."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, make())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        finally:
            tmp.unlink()
        fsync_dir(path.parent)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode:o}); it must be 0600")
    return path.read_bytes()


__all__ = ["KeyFileError", "fsync_dir", "private_file"]
