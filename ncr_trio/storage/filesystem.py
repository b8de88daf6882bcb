"""Filesystem storage driver: blobs and uploads as files under one root directory.

Durability: `publish` fsyncs the upload file, renames it into place and fsyncs the directory, so
a blob is visible only when all of its bytes are on disk. `UploadSink.sync` uses fdatasync so an
acknowledged chunk survives a crash. Reads use `preadv2(RWF_NOWAIT)` for a page-cache fast path.
"""

from __future__ import annotations

from ncr_trio.types import Buffer

import errno
import fcntl
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_IOV_MAX = 1024


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileUploadSink:
    def __init__(self, path: Path, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self._fd = os.open(path, flags, 0o600)
        # One writer per upload, across threads and worker processes alike.
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def write(self, chunks: Sequence[Buffer]) -> int:
        offset = os.lseek(self._fd, 0, os.SEEK_END)
        total = 0
        views = [memoryview(c) for c in chunks]
        while views:
            written = os.pwritev(self._fd, views[:_IOV_MAX], offset + total)
            total += written
            # Drop what was written (a short write leaves a partial view at the front).
            while views and written >= views[0].nbytes:
                written -= views[0].nbytes
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]
        return total

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def read_chunks(self, chunk_size: int) -> Iterator[bytes]:
        offset = 0
        while chunk := os.pread(self._fd, chunk_size, offset):
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        os.close(self._fd)


class FileBlobReader:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.size = os.fstat(fd).st_size
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def read_nowait(self, offset: int, length: int) -> bytes | None:
        if _NOWAIT is None:
            return None
        buf = bytearray(length)
        try:
            n = os.preadv(self._fd, [buf], offset, _NOWAIT)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EOPNOTSUPP):
                return None
            raise
        if n < length and offset + n < self.size:
            return None if n == 0 else bytes(memoryview(buf)[:n])
        del buf[n:]
        return bytes(buf)

    def close(self) -> None:
        os.close(self._fd)


class FilesystemDriver:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("blobs", "uploads", "trash"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key

    def open_upload(self, key: str, create: bool) -> FileUploadSink:
        return FileUploadSink(self._path(key), create)

    def publish(self, upload_key: str, key: str) -> None:
        src, dst = self._path(upload_key), self._path(key)
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
        _fsync_dir(dst.parent)

    def put(self, key: str, data: bytes) -> None:
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, dst)
        _fsync_dir(dst.parent)

    def open_read(self, key: str) -> FileBlobReader | None:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return FileBlobReader(fd)

    def stat(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def modified(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def move(self, key: str, new_key: str) -> bool:
        dst = self._path(new_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self._path(key), dst)
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for f in files:
                yield f"{rel}/{f}"


__all__ = ["FileBlobReader", "FileUploadSink", "FilesystemDriver"]
