"""Storage drivers: bytes at keys. `open_storage` picks the driver from the configuration."""

from __future__ import annotations

from ncr_trio.config import Config
from ncr_trio.storage.base import BlobReader, FileSpan, StorageDriver, UploadBusy, UploadSink
from ncr_trio.storage.filesystem import FilesystemDriver
from ncr_trio.storage.keys import blob_key, quarantine_key, upload_key


def open_storage(config: Config) -> StorageDriver:
    return FilesystemDriver(config.data_dir, direct_io=config.direct_io)


__all__ = [
    "BlobReader", "FileSpan", "FilesystemDriver", "StorageDriver", "UploadBusy", "UploadSink", "blob_key",
    "open_storage", "quarantine_key", "upload_key",
]
