"""Filesystem storage driver: blobs and uploads as files under one root directory.

Writes. Upload bytes go to disk with O_DIRECT, in page-aligned blocks staged in a reused aligned
buffer; only the last partial block of a request is written through the page cache. Measured on
these machines, writing a *new* 1 GiB file through the page cache runs at ~400 MB/s, while direct
writes run at ~2.4 GB/s, and they are on the device already when `sync` (fdatasync) is called.
Filesystems without O_DIRECT (tmpfs) fall back to ordinary writes. `FilesystemDriver.write_stats`
counts the bytes written each way, and the uploads whose filesystem refused O_DIRECT.

Each direct-written block is handed to the kernel's readahead (`POSIX_FADV_WILLNEED`), so a
freshly pushed blob is in the page cache for its first pull, filled in the background. That costs
the sink 40-50% of its own write speed, hidden behind the rest of a push, and a first pull needs
it (docs/performance/pulls.md). A range that is not cached when a download reaches it (readahead
behind, or evicted since) is read in ahead of sendfile by `FileBlobReader.span`.

Durability: `publish` links the upload into place (a second name for the same file: the upload
keeps its bytes until the registry has recorded the blob) and returns the step that fsyncs the file and
its directory; the registry runs that step before it commits the blob's row, and only the row
makes a blob visible, so a blob is visible only when all of its bytes are on disk.
`UploadSink.sync` makes an acknowledged chunk survive a crash. Reads use `preadv2(RWF_NOWAIT)`
for a page-cache fast path.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ncr_trio.files import fsync_dir
from ncr_trio.storage.base import FileSpan, UploadBusy
from ncr_trio.types import Buffer

_NOWAIT = getattr(os, "RWF_NOWAIT", None)
_DIRECT = getattr(os, "O_DIRECT", 0)
ALIGN = 4096
STAGING_BYTES = 4 << 20
SMALL_FILE = 256 << 10
# What one POSIX_FADV_WILLNEED call asks for: Linux reads at most the device's readahead window
# per call (read_ahead_kb, 128 KiB by default), so a larger request would leave holes.
READAHEAD_PIECE = 128 << 10
# How far ahead of a range it must wait for `FileBlobReader.span` has the kernel read.
READAHEAD_BYTES = 32 << 20


class _StagingPool:
    """Page-aligned buffers for direct writes, reused so their pages stay warm."""

    def __init__(self, keep: int = 32) -> None:
        self._free: list[mmap.mmap] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, STAGING_BYTES)

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
                return
        buf.close()


_staging = _StagingPool()


class _ReadBack:
    """Direct-written blocks read back through the page cache, by one thread per process, as a push
    goes (docs/performance/pulls.md, cause 3). `WILLNEED` has the device fill the page cache, but on
    these VMs the first CPU touch of a page the device filled can still cost a fault on the host: a
    first pull that met such pages ran at 450-650 MB/s while every later pull of the same cached
    bytes ran at 1.5-2 GB/s. Reading each block once here pays that cost off the pull's path (the
    copy itself is ~0.1 s per GiB). Each queued block holds its own read-only descriptor of the file
    (a new open file description, so the upload's flock is not shared); past LIMIT queued blocks a
    block is skipped rather than waited for: this is only ever ahead of a pull, never needed."""

    LIMIT = 64  # blocks of at most STAGING_BYTES: 256 MiB behind the writes

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.Queue[tuple[int, int, int, WriteCounters]] = queue.Queue(self.LIMIT)

    def offer(self, fd: int, offset: int, length: int, counters: WriteCounters) -> None:
        self._started()
        try:
            own = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            counters.add("read_back_skipped", length)
            return
        try:
            self._queue.put_nowait((own, offset, length, counters))
        except queue.Full:
            os.close(own)
            counters.add("read_back_skipped", length)

    def _started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:  # first use in this process (a worker forked after its parent used it too)
            if self._pid != os.getpid():
                self._queue = queue.Queue(self.LIMIT)
                threading.Thread(target=self._run, args=(self._queue,), name="ncr-read-back", daemon=True).start()
                self._pid = os.getpid()

    @staticmethod
    def _run(blocks: queue.Queue[tuple[int, int, int, WriteCounters]]) -> None:
        buf = memoryview(bytearray(STAGING_BYTES))
        while True:
            fd, offset, length, counters = blocks.get()
            try:
                counters.add("read_back_bytes", os.preadv(fd, [buf[:length]], offset))
            except OSError:
                counters.add("read_back_skipped", length)
            finally:
                os.close(fd)


_read_back = _ReadBack()


class WriteCounters:
    """How upload bytes reached their files, for operators and tests (GET /api/v1/io): with O_DIRECT
    or through the page cache, and how many uploads were opened for direct I/O that the filesystem
    (or the platform) refused. Updated from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"direct_bytes": 0, "buffered_bytes": 0, "direct_refused": 0, "read_back_bytes": 0,
                        "read_back_skipped": 0}

    def add(self, what: str, n: int) -> None:
        with self._lock:
            self._counts[what] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _open_direct(path: Path) -> int | None:
    if not _DIRECT:
        return None
    try:
        return os.open(path, os.O_WRONLY | _DIRECT)
    except OSError as e:
        if e.errno == errno.EINVAL:  # the filesystem does not do direct I/O
            return None
        raise


class FileUploadSink:
    """Appends to one upload file. Not thread-safe: one request drives it at a time (flock)."""

    def __init__(self, path: Path, direct_io: bool = True, counters: WriteCounters | None = None,
                 read_back: bool = True) -> None:
        self._read_back = read_back
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        # One writer per upload, across threads and worker processes alike. Never wait for it: a
        # slow client can hold it for as long as its body takes, and a waiting thread is a disk
        # slot lost to every other request of the worker.
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            if isinstance(e, BlockingIOError):
                raise UploadBusy(path.name) from None
            raise
        self._counters = counters or WriteCounters()
        self._direct = _open_direct(path) if direct_io else None
        if direct_io and self._direct is None:
            self._counters.add("direct_refused", 1)
        # The file's logical content is [0, _base) on disk, then _tail (less than ALIGN bytes)
        # which is written through the page cache only by flush().
        self._base = 0
        self._tail = b""
        self.truncate(os.fstat(self._fd).st_size)

    def size(self) -> int:
        return self._base + len(self._tail)

    def state(self) -> str:
        return ""  # the file is the whole state

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._base = size - size % ALIGN if self._direct is not None else size
        self._tail = os.pread(self._fd, size - self._base, self._base) if size > self._base else b""

    def write(self, chunks: Sequence[Buffer]) -> int:
        total = sum(memoryview(c).nbytes for c in chunks)
        if self._direct is None:
            os.pwritev(self._fd, list(chunks), self._base)
            self._counters.add("buffered_bytes", total)
            self._base += total
            return total
        if self._base + len(self._tail) + total <= SMALL_FILE:
            # Small files (configs, manifests' blobs, tiny layers) go through the page cache: one
            # synchronous device write per request would cost more than the copy.
            data = self._tail + b"".join(chunks)
            os.pwrite(self._fd, data, self._base)
            self._counters.add("buffered_bytes", len(data))
            end = self._base + len(data)
            start_of_tail = end - end % ALIGN
            self._tail = data[start_of_tail - self._base:]
            self._base = start_of_tail
            return total
        buf = _staging.take()
        try:
            view = memoryview(buf)
            pos = len(self._tail)
            view[:pos] = self._tail
            for chunk in chunks:
                rest = memoryview(chunk).cast("B")
                while rest.nbytes:
                    n = min(rest.nbytes, STAGING_BYTES - pos)
                    view[pos:pos + n] = rest[:n]
                    pos += n
                    rest = rest[n:]
                    if pos == STAGING_BYTES:
                        self._write_direct(view[:pos])
                        pos = 0
            aligned = pos - pos % ALIGN
            if aligned:
                self._write_direct(view[:aligned])
            self._tail = bytes(view[aligned:pos])
            view.release()
        finally:
            _staging.give(buf)
        return total

    def _write_direct(self, block: memoryview) -> None:
        assert self._direct is not None
        done = 0
        while done < block.nbytes:
            done += os.pwrite(self._direct, block[done:], self._base + done)
        self._counters.add("direct_bytes", done)
        # Direct writes bypass the page cache, and a new blob is usually pulled next: have the
        # kernel read each block back into the cache asynchronously, off this thread's critical path,
        # and the read-back thread touch it there once it is in (_ReadBack).
        os.posix_fadvise(self._fd, self._base, block.nbytes, os.POSIX_FADV_WILLNEED)
        if self._read_back:
            _read_back.offer(self._fd, self._base, block.nbytes, self._counters)
        self._base += block.nbytes

    def flush(self) -> None:
        """Put the partial last block in the file (through the page cache)."""
        if self._tail:
            os.pwrite(self._fd, self._tail, self._base)
            self._counters.add("buffered_bytes", len(self._tail))

    def sync(self) -> None:
        self.flush()
        os.fdatasync(self._fd)

    def complete(self) -> None:
        self.flush()  # publish makes it durable

    def read_chunks(self, chunk_size: int) -> Iterator[bytes]:
        self.flush()
        offset = 0
        while chunk := os.pread(self._fd, chunk_size, offset):
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
        os.close(self._fd)


class FileBlobReader:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.size = os.fstat(fd).st_size
        self._scratch = bytearray()  # reused by read_nowait: one copy per chunk, no fresh buffer
        self._probe = bytearray(1)
        self._asked = (0, 0)  # the file range last handed to the kernel's readahead by `span`
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def read_nowait(self, offset: int, length: int) -> bytes | None:
        if _NOWAIT is None:
            return None
        if len(self._scratch) < length:
            self._scratch = bytearray(length)
        view = memoryview(self._scratch)[:length]
        try:
            n = os.preadv(self._fd, [view], offset, _NOWAIT)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EOPNOTSUPP):
                return None
            raise
        if n == 0 and offset < self.size:
            return None
        return bytes(view[:n])

    def span_nowait(self, offset: int, length: int) -> FileSpan | None:
        if _NOWAIT is None or length <= 0:
            return None
        # Readahead fills a file front to back: if the first and the last byte of the range are
        # cached, the bytes between almost surely are (sendfile would wait for any that are not).
        probe = memoryview(self._probe)
        for at in (offset, offset + length - 1):
            try:
                if os.preadv(self._fd, [probe], at, _NOWAIT) != 1:
                    return None
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EOPNOTSUPP):
                    return None
                raise
        return FileSpan(self._fd, offset, length)

    def span(self, offset: int, length: int) -> FileSpan | None:
        """Blocking (for a worker thread): the range as a file span once it is in the page cache
        (None if the file does not reach its end).

        For a range `span_nowait` refused (readahead after a push not there yet, or evicted): the
        kernel is asked to read from the range's start to READAHEAD_BYTES past it (`WILLNEED`, in
        pieces of READAHEAD_PIECE, since one call reads at most the device's readahead window;
        pieces asked for by an earlier call are not asked again), then this thread waits for the
        range's last byte. The caller sends the range with sendfile while the kernel reads what
        follows, and finds the next ranges cached (`span_nowait`) without coming back here.
        The pages are allocated here, in the thread: on these VMs a page the host took back costs
        a fault on first touch, which capped a sendfile that met uncached pages on the event loop
        at ~500 MB/s (docs/performance/pulls.md)."""
        end = min(self.size, offset + max(length, READAHEAD_BYTES))
        first, last = self._asked
        start = last if first <= offset <= last else offset
        for at in range(start, end, READAHEAD_PIECE):
            os.posix_fadvise(self._fd, at, min(READAHEAD_PIECE, end - at), os.POSIX_FADV_WILLNEED)
        if end > start:
            self._asked = (offset if start == offset else first, end)
        if length <= 0 or len(os.pread(self._fd, 1, offset + length - 1)) != 1:
            return None  # the file is shorter: the caller's read says so
        return FileSpan(self._fd, offset, length)

    def close(self) -> None:
        os.close(self._fd)


class FilesystemDriver:
    name = "filesystem"
    local = True

    def __init__(self, root: Path, direct_io: bool = True, read_back: bool = True) -> None:
        self.root = root
        self.direct_io = direct_io
        self.read_back = read_back
        self._writes = WriteCounters()
        for sub in ("blobs", "uploads"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key

    def open_upload(self, key: str, state: str = "") -> FileUploadSink:
        return FileUploadSink(self._path(key), self.direct_io, self._writes, self.read_back)

    def redirect_url(self, key: str) -> str | None:
        return None  # the files are only reachable through the registry

    def write_stats(self) -> dict[str, int]:
        return self._writes.snapshot()

    def publish(self, upload_key: str, key: str) -> Callable[[], None]:
        src, dst = self._path(upload_key), self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except FileExistsError:
            # A crash's leftover or a concurrent push's copy, maybe not durable: replace it in one
            # step with these bytes, made durable first, so the name never points at less.
            fd = os.open(src, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            tmp = src.with_name(src.name + ".publish")
            tmp.unlink(missing_ok=True)
            os.link(src, tmp)
            os.replace(tmp, dst)

        def make_durable() -> None:
            # The file's bytes, then its name. On ext4 the first fsync commits the journal for
            # every link before it, so a batch of these (see the metadata group commit) costs
            # little more than one.
            fd = os.open(dst, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(dst.parent)

        return make_durable

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

    def writing(self, key: str) -> bool:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock this probe took

    def publishing(self, key: str) -> bool:
        # A published file keeps its upload's name (a second link) until the registry deletes the upload.
        try:
            return self._path(key).stat().st_nlink > 1
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def move(self, key: str, new_key: str) -> bool:
        src, dst = self._path(key), self._path(new_key)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            return False
        fsync_dir(dst.parent)
        fsync_dir(src.parent)
        return True

    def abandoned_uploads(self, older_than: float) -> list[str]:
        return []

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for f in files:
                yield f"{rel}/{f}"


__all__ = ["FileBlobReader", "FileUploadSink", "FilesystemDriver", "WriteCounters"]
