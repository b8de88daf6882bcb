"""Which S3 client the storage driver uses, measured: botocore (in a thread) against obstore (Rust object_store).

    python -m benchmarks.s3_clients [--mib 256] [--rounds 3] [--json]

Starts versitygw (tests/support/s3.py; `make tools` builds it) over a temporary directory, then per round
PUTs and GETs one object of `--mib` MiB with each client, as the driver would: botocore `put_object` of
the bytes and `get_object` read in 8 MiB chunks; obstore `put` and `get(...).stream()`. Prints the
median MB/s (10^6 bytes per second) per client and operation. obstore is not a dependency of
ncr-trio: `pip install obstore` to run this.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from tests.support.s3 import ACCESS_KEY, SECRET_KEY, s3_server

MiB = 1 << 20


def _botocore(endpoint: str, bucket: str) -> tuple[Callable[[str, bytes], None], Callable[[str], int]]:
    from ncr_trio.storage.s3 import S3Driver, S3Settings

    client = S3Driver(S3Settings(bucket=bucket, endpoint=endpoint, access_key=ACCESS_KEY,
                                 secret_key=SECRET_KEY)).client

    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(key: str) -> int:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        n = 0
        while chunk := body.read(8 * MiB):
            n += len(chunk)
        return n

    return put, get


def _obstore(endpoint: str, bucket: str) -> tuple[Callable[[str, bytes], None], Callable[[str], int]]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(bucket, endpoint=endpoint, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
                    region="us-east-1", virtual_hosted_style_request=False, client_options={"allow_http": True})

    def put(key: str, data: bytes) -> None:
        obstore.put(store, key, data)

    def get(key: str) -> int:
        return sum(len(chunk) for chunk in obstore.get(store, key).stream(min_chunk_size=8 * MiB))

    return put, get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = os.urandom(args.mib * MiB)
    results: dict[str, list[float]] = {}
    with s3_server("versitygw") as server, server.bucket() as bucket:
        clients = {"botocore": _botocore(server.endpoint, bucket), "obstore": _obstore(server.endpoint, bucket)}
        for r in range(args.rounds):
            for name, (put, get) in clients.items():
                key = f"bench/{name}/{r}"
                start = time.perf_counter()
                put(key, data)
                results.setdefault(f"{name} PUT", []).append(len(data) / (time.perf_counter() - start) / 1e6)
                start = time.perf_counter()
                assert get(key) == len(data)
                results.setdefault(f"{name} GET", []).append(len(data) / (time.perf_counter() - start) / 1e6)
    summary: dict[str, Any] = {k: {"median": statistics.median(v), "samples": v} for k, v in results.items()}
    if args.json:
        print(json.dumps({"mib": args.mib, "rounds": args.rounds, "results": summary}, indent=2))
        return
    print(f"{args.mib} MiB object, {args.rounds} rounds, versitygw on 127.0.0.1 (MB/s, median [min-max])")
    for k, v in results.items():
        print(f"  {k:14} {statistics.median(v):8.0f}  [{min(v):.0f}-{max(v):.0f}]")


if __name__ == "__main__":
    main()
