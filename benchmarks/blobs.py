"""Test data: large random blobs written once per run, and a small OCI image for the request-rate figures."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A blob on disk as one or more part files whose concatenation is the blob.

    A monolithic push sends a one-part blob in one request; a chunked push sends each part as a PATCH."""

    digest: str
    size: int
    parts: tuple[Path, ...]

    def ranges(self) -> list[tuple[Path, int, int]]:
        """(part, first byte, last byte) for each part, as in an inclusive `Content-Range: first-last`."""
        out: list[tuple[Path, int, int]] = []
        offset = 0
        for part in self.parts:
            n = part.stat().st_size
            out.append((part, offset, offset + n - 1))
            offset += n
        return out


def make_blob(directory: Path, name: str, size: int, part_size: int) -> Blob:
    """Write `size` random bytes as parts of at most `part_size` bytes, hashing while writing."""
    directory.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    parts: list[Path] = []
    written = 0
    block = 16 * MiB
    while written < size:
        part = directory / (name if part_size >= size else f"{name}.{len(parts):05d}")
        n_part = min(part_size, size - written)
        with open(part, "wb") as f:
            done = 0
            while done < n_part:
                data = os.urandom(min(block, n_part - done))
                h.update(data)
                f.write(data)
                done += len(data)
        parts.append(part)
        written += n_part
    return Blob("sha256:" + h.hexdigest(), size, tuple(parts))


@dataclass(frozen=True)
class Window:
    """A blob that is `size` bytes of a pool file from `offset` on."""

    digest: str
    offset: int
    size: int


@dataclass(frozen=True)
class Pool:
    """Many distinct large blobs from one file: blob i is the `size` bytes from offset i * `step`.

    Eight concurrent 1 GiB pushes need eight different blobs (a server stores content once, so a repeated
    digest would not be stored again). Windows of one random file, a few MiB apart, are as different as
    separate files (their digests differ; no registry stores parts of blobs), while the file is only
    `size` + (n - 1) * `step` bytes: it stays in the page cache, and the disk holds what the servers write."""

    path: Path
    windows: tuple[Window, ...]

    @property
    def digests(self) -> list[str]:
        return [w.digest for w in self.windows]


def _window_digest(path: Path, offset: int, size: int) -> str:
    h = hashlib.sha256()
    block = 16 * MiB
    with open(path, "rb") as f:
        f.seek(offset)
        done = 0
        while done < size:
            data = f.read(min(block, size - done))
            if not data:
                raise ValueError(f"{path} is shorter than {offset + size} bytes")
            h.update(data)  # hashlib releases the GIL: windows are hashed in parallel threads
            done += len(data)
    return "sha256:" + h.hexdigest()


def make_pool(directory: Path, name: str, size: int, count: int, step: int = MiB) -> Pool:
    """Write the pool file and hash its `count` windows of `size` bytes."""
    total = size + (count - 1) * step
    make_blob(directory, name, total, total)
    path = directory / name
    offsets = [i * step for i in range(count)]
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as ex:
        digests = list(ex.map(lambda o: _window_digest(path, o, size), offsets))
    if len(set(digests)) != count:
        raise ValueError("pool windows are not distinct")
    return Pool(path, tuple(Window(d, o, size) for d, o in zip(digests, offsets)))


@dataclass(frozen=True)
class SmallImage:
    """An OCI image of an empty `{}` config and one small layer; plus an empty blob for the HEAD figure.

    The HEAD figure targets a 0-byte blob because wrk cannot read HEAD responses that announce a body
    (wg/wrk#198: its parser waits for Content-Length bytes that never come). A HEAD does the same work
    whatever the blob's size: find the blob in the repository and answer with its headers."""

    config: bytes
    layer: bytes
    empty: bytes
    manifest: bytes

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    def blobs(self) -> list[bytes]:
        return [self.config, self.layer, self.empty]


def small_image() -> SmallImage:
    config = b"{}"
    layer = os.urandom(4096)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256_digest(layer), "size": len(layer)}],
        },
        indent=2,
    ).encode()
    return SmallImage(config=config, layer=layer, empty=b"", manifest=manifest)
