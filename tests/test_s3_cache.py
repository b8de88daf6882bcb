"""An image cache on S3: the first pull fetches the source's blobs into the bucket, and clients get them.

On an object store an upload's bytes are readable only once complete, so the first client waits for
the blob to be stored instead of following the fetch as it grows (cache/proxy.py), and the fetch holds
the upload row's lease (as a PATCH does) so that two nodes never write one fetch at once. The helpers
and the source (CNCF Distribution behind a loopback upstream) are tests/test_cache_pull.py's."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.s3 import S3Server
from tests.support.server import Distribution
from tests.support.upstream import Upstream
from tests.test_cache_pull import cache_server as _cache_server
from tests.test_cache_pull import client, pull, push_source_image, source, up  # noqa: F401  (fixtures)


def test_a_first_pull_through_an_image_cache_on_s3(source: Distribution, up: Upstream,  # noqa: F811
                                                    versitygw: S3Server, tmp_path: Path) -> None:
    with versitygw.bucket() as bucket:
        settings = {k[len("NCR_"):].lower(): v for k, v in versitygw.env(bucket).items()}
        layers = [os.urandom(300_000), os.urandom(7 << 20)]
        digest, _ = push_source_image(source, "team/s3", "1", layers, "s3")
        with _cache_server(tmp_path, up, **settings) as cache, client(cache) as c:
            assert pull(c, "hub/team/s3", "1") == digest
            assert pull(c, "hub/team/s3", "1") == digest  # now from the bucket
        assert versitygw.multipart_uploads(bucket) == []
