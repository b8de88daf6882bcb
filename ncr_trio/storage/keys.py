"""Every storage key the registry uses comes from here.

Layout under the storage root (filesystem driver: a directory; S3: a key prefix)::

    blobs/<algorithm>/<first two hex>/<hex>      verified content, immutable, deduplicated
    uploads/<upload id>                          bytes of an upload session, appended in order
    quarantine/<algorithm>/<hex>                 a blob whose bytes no longer match its digest, moved
                                                 aside by the scrub (never served)

On a filesystem, uploads and blobs live on the same filesystem, so publishing a blob is one atomic
link. In an S3 bucket an upload key names a few objects (`uploads/<id>/data` and pending pieces below
it: see storage/s3.py), and publishing is a server-side copy.
"""

from __future__ import annotations

from ncr_trio.types import Digest


def blob_key(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def quarantine_key(digest: Digest) -> str:
    return f"quarantine/{digest.algorithm}/{digest.hex}"


BLOBS_PREFIX = "blobs/"
UPLOADS_PREFIX = "uploads/"

__all__ = ["BLOBS_PREFIX", "UPLOADS_PREFIX", "blob_key", "quarantine_key", "upload_key"]
