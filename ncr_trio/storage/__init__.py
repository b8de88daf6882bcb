"""Storage drivers: bytes at keys. `open_storage` picks the driver from the configuration."""

from __future__ import annotations

from ncr_trio.config import Config
from ncr_trio.storage.base import BlobReader, FileSpan, StorageDriver, StorageUnavailable, UploadBusy, UploadSink
from ncr_trio.storage.filesystem import FilesystemDriver
from ncr_trio.storage.keys import blob_key, quarantine_key, upload_key
from ncr_trio.storage.s3 import MAX_REDIRECT_SECONDS, S3Driver, S3Settings

# Worker threads that may call the storage at once (the registry's disk limiter): the S3 driver's
# connection pool is sized to it, so no thread waits for a connection.
STORAGE_THREADS = 16


def open_storage(config: Config) -> StorageDriver:
    if config.storage == "s3" or config.s3_bucket:
        if not config.s3_bucket:
            raise ValueError("storage = \"s3\" needs s3_bucket")
        return S3Driver(S3Settings(
            bucket=config.s3_bucket, endpoint=config.s3_endpoint, region=config.s3_region, prefix=config.s3_prefix,
            access_key=config.s3_access_key, secret_key=config.s3_secret_key,
            credentials_file=config.s3_credentials_file, path_style=config.s3_path_style,
            ca_bundle=config.s3_ca_bundle, redirect=config.s3_redirect,
            redirect_seconds=min(config.s3_redirect_seconds, MAX_REDIRECT_SECONDS),
            connections=STORAGE_THREADS, timeout_seconds=config.s3_timeout_seconds))
    if config.storage != "filesystem":
        raise ValueError(f"unknown storage {config.storage!r}: filesystem or s3")
    return FilesystemDriver(config.data_dir, direct_io=config.direct_io, read_back=config.read_back)


__all__ = [
    "STORAGE_THREADS", "BlobReader", "FileSpan", "FilesystemDriver", "S3Driver", "S3Settings", "StorageDriver",
    "StorageUnavailable", "UploadBusy", "UploadSink", "blob_key", "open_storage", "quarantine_key", "upload_key",
]
