"""S3-compatible object storage driver, on botocore in worker threads.

Every method blocks on the network: the registry only ever calls this driver from `trio.to_thread`
(`local = False`), through its disk limiter, and the connection pool is sized to that limiter so a
thread never waits for a connection another thread holds. botocore signs requests itself (SigV4),
retries transient errors (throttling, 5xx, dropped connections) and times out every call.

Object layout under the configured prefix (keys from storage/keys.py)::

    blobs/<algorithm>/<xx>/<hex>             a blob (metadata `upload`: the upload it was copied from)
    quarantine/<algorithm>/<hex>             as on the filesystem
    uploads/<id>/data                        an upload's bytes once complete (and its multipart upload's key)
    uploads/<id>/pending/<offset:020d>       acknowledged bytes not yet in a part (under S3's 5 MiB minimum)

No object's key is a "directory" of another's (versitygw over a POSIX directory cannot hold `a/b` and
`a/b/c` at once): an upload's own objects all sit below `uploads/<id>/`.

Uploads keep no state on any node. The bytes of a session are, in order: the parts of one multipart
upload (each `PART_BYTES`), then pending objects (each one request's acknowledged remainder, as
Distribution and Quay do), then bytes buffered in this process and not yet acknowledged. `sync`
writes the buffer as a pending object; once pending objects and buffer reach a part, they are read
back and sent as the next part. `UploadSink.state` lists the multipart upload, its parts and the
pending objects; the registry stores it in the upload row with the acknowledged size, and any node
resumes from it (`open_upload(key, state)`). Objects a crashed request wrote past the saved state
are not in it: later part numbers and offsets overwrite them, and completion or deletion removes
every object and multipart upload under the upload's prefix. Pending objects that a part replaced
are deleted only once a state without them was committed (the next open), never before.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import botocore.config
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from ncr_trio.config import Config
from ncr_trio.storage.base import FileSpan, StorageUnavailable
from ncr_trio.storage.filesystem import WriteCounters
from ncr_trio.storage.keys import UPLOADS_PREFIX
from ncr_trio.types import Buffer

MIN_PART_BYTES = 5 << 20  # S3's minimum for every part but the last
PART_BYTES = 16 << 20
COPY_PART_BYTES = 1 << 30
MAX_COPY_BYTES = 5 << 30  # CopyObject's limit: beyond it, UploadPartCopy
READ_BYTES = 8 << 20
MAX_REDIRECT_SECONDS = 1200  # the issue: presigned URLs live at most 20 minutes


@dataclass(frozen=True)
class S3Settings:
    """The driver's settings; the defaults are the configuration's (`s3_*` in config.py), stated there once."""

    bucket: str
    endpoint: str = Config.s3_endpoint
    region: str = Config.s3_region
    prefix: str = Config.s3_prefix
    access_key: str = Config.s3_access_key
    secret_key: str = Config.s3_secret_key
    credentials_file: str = Config.s3_credentials_file
    path_style: bool = Config.s3_path_style
    ca_bundle: str = Config.s3_ca_bundle
    redirect: bool = Config.s3_redirect
    redirect_seconds: int = min(Config.s3_redirect_seconds, MAX_REDIRECT_SECONDS)
    connections: int = 16
    timeout_seconds: float = Config.s3_timeout_seconds
    part_bytes: int = PART_BYTES


def _missing(e: ClientError) -> bool:
    code = e.response.get("Error", {}).get("Code", "")
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload") or status == 404


RACE_ATTEMPTS = 5


def _retry_a_pruned_directory(response: Any = None, attempts: int = 1, **_: Any) -> float | None:
    """botocore's `needs-retry` hook, ahead of its standard policy: a write that lost a race with a
    delete pruning the same directory is tried again. versitygw's posix backend removes a deleted
    object's emptied parent directories, and a PutObject or CopyObject linking its file into one of them
    at that moment fails with ExistingObjectIsDirectory (409). In this driver's layout no key is ever
    a directory (every object name ends in `/data` or a pending part's number), so that code means the
    race and nothing else. Any other answer: None, and the standard policy decides."""
    if response is None or attempts >= RACE_ATTEMPTS:
        return None
    if response[1].get("Error", {}).get("Code") == "ExistingObjectIsDirectory":
        return 0.01 * attempts
    return None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """botocore's errors, translated once at the driver's boundary: a key that is not there is a
    FileNotFoundError (as on a filesystem), anything else StorageUnavailable (503 to the client)."""

    @functools.wraps(fn)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except ClientError as e:
            if _missing(e):
                raise FileNotFoundError(str(e)) from e
            raise StorageUnavailable(f"the object store answered: {e}") from e
        except BotoCoreError as e:
            raise StorageUnavailable(f"the object store did not answer: {e}") from e

    return call


def _translate_methods(cls: type[_R]) -> type[_R]:
    for name, value in list(vars(cls).items()):
        if callable(value) and not name.startswith("_") and name not in ("obj", "redirect_url"):
            setattr(cls, name, _translated(value))
    return cls


@_translate_methods
class S3UploadSink:
    """One upload session's bytes in the bucket. Not thread-safe: one request drives it at a time (the
    registry's lease on the upload row)."""

    def __init__(self, driver: S3Driver, key: str, state: str) -> None:
        self._d = driver
        self._key = key
        self._base = driver.obj(key)[: -len("/data")]  # uploads/<id>
        saved: dict[str, Any] = json.loads(state) if state else {}
        self._mpu: str | None = saved.get("upload")
        self._parts: list[tuple[int, str, int]] = [tuple(p) for p in saved.get("parts", [])]
        self._pending: list[tuple[int, int]] = [tuple(p) for p in saved.get("pending", [])]
        self._done: int | None = saved.get("done")
        self._buf = bytearray()
        # Pending objects that the saved state's parts already hold: the state is committed (the
        # registry opens only with the committed one), so nothing refers to them any more.
        self._drop: list[int] = []
        for offset in saved.get("drop", []):
            self._delete_obj(self._pending_obj(offset))

    def _pending_obj(self, offset: int) -> str:
        return f"{self._base}/pending/{offset:020d}"

    def _delete_obj(self, obj: str) -> None:
        self._d.client.delete_object(Bucket=self._d.bucket, Key=obj)

    def _stored(self) -> int:
        return sum(p[2] for p in self._parts) + sum(p[1] for p in self._pending)

    def size(self) -> int:
        return self._done if self._done is not None else self._stored() + len(self._buf)

    def state(self) -> str:
        """What `sync` has stored, for `open_upload` to resume from (JSON: opaque to the registry)."""
        if self._done is not None:
            return json.dumps({"done": self._done})
        return json.dumps({"upload": self._mpu, "parts": self._parts, "pending": self._pending, "drop": self._drop},
                          separators=(",", ":"))

    def truncate(self, size: int) -> None:
        if size == self.size():
            return
        if self._done is not None:
            raise ValueError("a completed upload cannot be truncated")
        if size == 0:  # start over: what was stored is removed with the upload
            self._abort()
            self._parts, self._pending, self._drop, self._buf = [], [], [], bytearray()
            return
        stored = self._stored()
        if stored <= size < self.size():
            del self._buf[size - stored:]
            return
        keep = [p for p in self._pending if p[0] + p[1] <= size]
        if sum(p[2] for p in self._parts) + sum(p[1] for p in keep) != size:
            raise ValueError(f"cannot truncate an S3 upload to {size} bytes: not a boundary of what it stored")
        self._pending, self._buf = keep, bytearray()

    def write(self, chunks: Sequence[Buffer]) -> int:
        if self._done is not None:
            raise ValueError("the upload is complete")
        total = 0
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            self._buf += view
            total += view.nbytes
        while sum(p[1] for p in self._pending) + len(self._buf) >= self._d.part_bytes:
            self._send_part(self._d.part_bytes)
        return total

    def _send_part(self, size: int) -> None:
        """Send the pending objects and the buffer's head (together `size` bytes) as the next part."""
        held = sum(p[1] for p in self._pending)
        take = size - held
        body = b"".join([*(self._d.get_bytes(self._pending_obj(o)) for o, _ in self._pending),
                         bytes(self._buf[:take])])
        if self._mpu is None:
            self._mpu = self._d.client.create_multipart_upload(Bucket=self._d.bucket,
                                                               Key=f"{self._base}/data")["UploadId"]
        number = len(self._parts) + 1
        etag = self._d.client.upload_part(Bucket=self._d.bucket, Key=f"{self._base}/data", UploadId=self._mpu,
                                          PartNumber=number, Body=body)["ETag"]
        self._parts.append((number, etag, len(body)))
        self._drop += [o for o, _ in self._pending]
        self._pending = []
        del self._buf[:take]

    def flush(self) -> None:
        """Nothing to do: the buffer reaches the bucket with `sync` (a pending object) or as a part."""

    def sync(self) -> None:
        if not self._buf:
            return
        offset = self._stored()
        self._d.client.put_object(Bucket=self._d.bucket, Key=self._pending_obj(offset), Body=bytes(self._buf))
        self._pending.append((offset, len(self._buf)))
        self._buf = bytearray()

    def complete(self) -> None:
        """Make everything written the upload's whole object (`uploads/<id>/data`), durably: complete the
        multipart upload with its explicit part list (the rest as its last part), or one plain PUT when
        everything is smaller than a part. Then remove the pending objects and any multipart upload a
        crashed request left under this upload."""
        if self._done is not None:
            return
        size = self.size()
        data = f"{self._base}/data"
        if self._parts:
            if self._pending or self._buf:
                self._send_part(sum(p[1] for p in self._pending) + len(self._buf))
            assert self._mpu is not None
            self._d.client.complete_multipart_upload(
                Bucket=self._d.bucket, Key=data, UploadId=self._mpu,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in self._parts]})
        else:
            body = b"".join([*(self._d.get_bytes(self._pending_obj(o)) for o, _ in self._pending), bytes(self._buf)])
            self._d.client.put_object(Bucket=self._d.bucket, Key=data, Body=body)
        self._done = size
        self._buf = bytearray()
        self._d.remove_under(f"{self._base}/pending/")
        self._abort(keep=None)

    def _abort(self, keep: str | None = None) -> None:
        """Abort the multipart uploads under this upload's data key (but `keep`)."""
        for mpu in self._d.multipart_uploads(f"{self._base}/data"):
            if mpu["UploadId"] != keep:
                self._d.abort(mpu["Key"], mpu["UploadId"])
        self._mpu = None if keep is None else self._mpu

    def read_chunks(self, chunk_size: int) -> Iterator[bytes]:
        self.complete()  # a multipart upload's bytes are readable only once it is complete
        reader = self._d.open_read(self._key)
        if reader is None:
            raise FileNotFoundError(self._key)
        try:
            offset = 0
            while offset < reader.size:
                chunk = reader.read(offset, chunk_size)
                offset += len(chunk)
                yield chunk
        finally:
            reader.close()

    def close(self) -> None:
        self._buf = bytearray()  # unacknowledged bytes are dropped, as a crash would


@_translate_methods
class S3BlobReader:
    """Reads an object front to back over one streaming GET, reopened (with a Range) after a seek."""

    def __init__(self, driver: S3Driver, obj: str, size: int) -> None:
        self._d, self._obj, self.size = driver, obj, size
        self._body: Any = None
        self._pos = -1

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        if self._body is None or offset != self._pos:
            self._close_body()
            self._body = self._d.client.get_object(Bucket=self._d.bucket, Key=self._obj,
                                                   Range=f"bytes={offset}-{self.size - 1}")["Body"]
            self._pos = offset
        data: bytes = self._body.read(min(length, self.size - offset))
        if not data:
            raise OSError(f"{self._obj}: the object ended at byte {offset}, before {self.size}")
        self._pos += len(data)
        return data

    def read_nowait(self, offset: int, length: int) -> bytes | None:
        return None  # every read is a network round trip

    def span_nowait(self, offset: int, length: int) -> FileSpan | None:
        return None

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._close_body()


@_translate_methods
class S3Driver:
    name = "s3"
    local = False

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self.part_bytes = max(settings.part_bytes, MIN_PART_BYTES)
        session = botocore.session.get_session()
        if settings.credentials_file:
            session.set_config_variable("credentials_file", settings.credentials_file)
        config = botocore.config.Config(
            max_pool_connections=settings.connections,
            connect_timeout=min(settings.timeout_seconds, 10.0),
            read_timeout=settings.timeout_seconds,
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path" if settings.path_style else "virtual"},
            signature_version="s3v4",
            # Checksums only where S3 requires them: not every S3-compatible server knows the newer ones.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client: Any = session.create_client(
            "s3", region_name=settings.region, endpoint_url=settings.endpoint or None,
            aws_access_key_id=settings.access_key or None, aws_secret_access_key=settings.secret_key or None,
            verify=settings.ca_bundle or None, config=config)
        hooks: Any = self.client.meta.events  # (the stubs type a hook as returning None; this one answers)
        hooks.register_first("needs-retry.s3", _retry_a_pruned_directory)

    # -- keys -----------------------------------------------------------------------------------
    def obj(self, key: str) -> str:
        """The object name of a storage key: an upload's bytes are `uploads/<id>/data` (see the module)."""
        parts = key.split("/")
        if key.startswith("/") or ".." in parts or "" in parts:
            raise ValueError(f"bad storage key {key!r}")
        if key.startswith(UPLOADS_PREFIX) and len(parts) == 2:
            return f"{self.prefix}{key}/data"
        return self.prefix + key

    def _key(self, obj: str) -> str:
        rel = obj[len(self.prefix):]
        if rel.startswith(UPLOADS_PREFIX):
            return "/".join(rel.split("/")[:2])
        return rel

    def _is_upload(self, key: str) -> bool:
        return key.startswith(UPLOADS_PREFIX) and key.count("/") == 1

    # -- helpers used by sinks and readers ------------------------------------------------------
    def get_bytes(self, obj: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=obj)["Body"]
        try:
            data: bytes = body.read()
            return data
        finally:
            body.close()

    def _head(self, obj: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=obj)
            return head
        except ClientError as e:
            if _missing(e):
                return None
            raise

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def remove_under(self, prefix: str) -> int:
        removed = 0
        for item in list(self._objects(prefix)):
            self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
            removed += 1
        return removed

    def multipart_uploads(self, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            found += [u for u in page.get("Uploads", []) if u["Key"].startswith(prefix)]
        return found

    def abort(self, obj: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=obj, UploadId=upload_id)
        except ClientError as e:
            if not _missing(e):
                raise

    def _copy(self, src: str, dst: str, size: int, metadata: dict[str, str]) -> None:
        """Server-side copy in one atomic step: CopyObject up to 5 GiB, a multipart UploadPartCopy beyond."""
        if size <= MAX_COPY_BYTES:
            self.client.copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src},
                                    Metadata=metadata, MetadataDirective="REPLACE")
            return
        mpu = self.client.create_multipart_upload(Bucket=self.bucket, Key=dst, Metadata=metadata)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, COPY_PART_BYTES), 1):
                end = min(start + COPY_PART_BYTES, size) - 1
                got = self.client.upload_part_copy(Bucket=self.bucket, Key=dst, UploadId=mpu, PartNumber=number,
                                                   CopySource={"Bucket": self.bucket, "Key": src},
                                                   CopySourceRange=f"bytes={start}-{end}")
                parts.append({"PartNumber": number, "ETag": got["CopyPartResult"]["ETag"]})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=dst, UploadId=mpu,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            self.abort(dst, mpu)
            raise

    # -- the StorageDriver protocol -------------------------------------------------------------
    def redirect_url(self, key: str) -> str | None:
        if not self.settings.redirect:
            return None
        url: str = self.client.generate_presigned_url(  # signs locally: no network I/O
            "get_object", Params={"Bucket": self.bucket, "Key": self.obj(key)},
            ExpiresIn=max(1, min(self.settings.redirect_seconds, MAX_REDIRECT_SECONDS)))
        return url

    def open_upload(self, key: str, state: str = "") -> S3UploadSink:
        if not self._is_upload(key):
            raise ValueError(f"not an upload key: {key!r}")
        return S3UploadSink(self, key, state)

    def publish(self, upload_key: str, key: str) -> Callable[[], None]:
        """Copy the completed upload (`UploadSink.complete`) to `key`, tagged with the upload's id (see
        `publishing`). S3 acknowledges a write once it is durable: nothing is left to do after."""
        src = self.obj(upload_key)
        head = self._head(src)
        if head is None:
            raise FileNotFoundError(upload_key)
        self._copy(src, self.obj(key), int(head["ContentLength"]), {"upload": upload_key.rpartition("/")[2]})
        return lambda: None

    def open_read(self, key: str) -> S3BlobReader | None:
        obj = self.obj(key)
        head = self._head(obj)
        return None if head is None else S3BlobReader(self, obj, int(head["ContentLength"]))

    def stat(self, key: str) -> int | None:
        head = self._head(self.obj(key))
        return None if head is None else int(head["ContentLength"])

    def modified(self, key: str) -> float | None:
        head = self._head(self.obj(key))
        if head is not None:
            return float(head["LastModified"].timestamp())
        if self._is_upload(key):  # not complete: its newest pending object
            times: list[datetime] = [o["LastModified"] for o in self._objects(self.prefix + key + "/")]
            return max(times).timestamp() if times else None
        return None

    def writing(self, key: str) -> bool:
        return False  # no locks in a bucket: the registry's lease on the upload row says who writes

    def publishing(self, key: str) -> bool:
        head = self._head(self.obj(key))
        upload = None if head is None else head.get("Metadata", {}).get("upload")
        if not upload:
            return False
        upload_key = UPLOADS_PREFIX + upload
        return self._head(self.obj(upload_key)) is not None

    def delete(self, key: str) -> bool:
        if self._is_upload(key):
            base = self.prefix + key + "/"
            aborted = 0
            for mpu in self.multipart_uploads(base):
                self.abort(mpu["Key"], mpu["UploadId"])
                aborted += 1
            return self.remove_under(base) + aborted > 0
        obj = self.obj(key)
        if self._head(obj) is None:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=obj)
        return True

    def move(self, key: str, new_key: str) -> bool:
        src = self.obj(key)
        head = self._head(src)
        if head is None:
            return False
        self._copy(src, self.obj(new_key), int(head["ContentLength"]), dict(head.get("Metadata", {})))
        self.client.delete_object(Bucket=self.bucket, Key=src)
        return True

    def abandoned_uploads(self, older_than: float) -> list[str]:
        """Upload keys with a multipart upload begun before `older_than` (epoch seconds): GC deletes those
        no session row owns, so no multipart upload outlives its session."""
        keys = {self._key(u["Key"]) for u in self.multipart_uploads(self.prefix + UPLOADS_PREFIX)
                if u["Initiated"].timestamp() < older_than}
        return sorted(keys)

    def list(self, prefix: str) -> Iterator[str]:
        seen: set[str] = set()
        for item in self._objects(self.prefix + prefix):
            key = self._key(item["Key"])
            if key not in seen:
                seen.add(key)
                yield key

    def write_stats(self) -> dict[str, int]:
        # GET /api/v1/io's counters are the filesystem's, all zero: no upload byte goes to a local disk here.
        return WriteCounters().snapshot()

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (tests and first starts; production buckets are made by hand)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if not _missing(e):
                raise
            self.client.create_bucket(Bucket=self.bucket)


__all__ = ["MAX_REDIRECT_SECONDS", "MIN_PART_BYTES", "PART_BYTES", "S3BlobReader", "S3Driver", "S3Settings",
           "S3UploadSink"]
