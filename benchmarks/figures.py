"""What is measured. A figure drives one server once and yields one or more metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from benchmarks.blobs import MiB, OCI_MANIFEST, Blob, SmallImage, sha256_digest
from benchmarks.loads import Transfer, WrkResult, pull_blob, push_blob, wrk
from benchmarks.registry import blob_exists, push_small_image

PUSH_REPO = "bench/push"
CHUNKED_REPO = "bench/push-chunked"
IMAGE_REPO = "bench/small"
IMAGE_TAG = "v1"


@dataclass(frozen=True)
class Settings:
    blob_size: int
    chunk_size: int
    duration: int  # seconds per wrk run
    threads: int
    connections: int

    @property
    def size_label(self) -> str:
        return f"{self.blob_size // (1 << 30)} GiB" if self.blob_size % (1 << 30) == 0 else f"{self.blob_size // MiB} MiB"


@dataclass(frozen=True)
class Data:
    """Everything generated once per run and pushed to every server."""

    settings: Settings
    blob: Blob  # one part: monolithic push, pull
    chunked_blob: Blob  # parts of chunk_size: chunked push (another digest, so no server can skip it)
    image: SmallImage


@dataclass
class ServerRound:
    """One server in one round: its URL, and what was already put in it this round."""

    url: str
    prepared: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


@dataclass
class Sample:
    values: dict[str, float]  # by Metric.key
    details: dict[str, Any]  # for the JSON file: client cost, error counts, ...


@dataclass(frozen=True)
class Figure:
    name: str  # as chosen with --figures
    metrics: Callable[[Settings], list[Metric]]
    measure: Callable[[ServerRound, Data], Sample]


def _transfer_sample(key: str, t: Transfer) -> Sample:
    return Sample(
        {key: t.mb_per_s},
        {"bytes": t.size, "seconds": t.seconds, "requests": t.requests,
         "client_cpu_seconds": t.client_cpu_seconds},
    )


def _wrk_sample(prefix: str, r: WrkResult) -> Sample:
    return Sample(
        {f"{prefix}_rps": r.rps, f"{prefix}_p99_ms": r.p99_ms},
        {"requests": r.requests, "seconds": r.seconds, "p50_ms": r.p50_ms, "max_ms": r.max_ms,
         "socket_errors": {k: v for k, v in r.errors.items() if k != "status"},
         "client_cpu_seconds": r.client.cpu_seconds},
    )


def _ensure_pushed(server: ServerRound, data: Data) -> None:
    """The pull figure needs the blob; push it (untimed) if the push figure did not run or failed."""
    if "blob" not in server.prepared and not blob_exists(server.url, PUSH_REPO, data.blob.digest):
        push_blob(server.url, PUSH_REPO, data.blob, chunked=False)
    server.prepared.add("blob")


def _ensure_image(server: ServerRound, data: Data) -> None:
    if "image" not in server.prepared:
        push_small_image(server.url, IMAGE_REPO, IMAGE_TAG, data.image)
        server.prepared.add("image")


def measure_push(server: ServerRound, data: Data) -> Sample:
    t = push_blob(server.url, PUSH_REPO, data.blob, chunked=False)
    server.prepared.add("blob")
    return _transfer_sample("push_monolithic_mbps", t)


def measure_push_chunked(server: ServerRound, data: Data) -> Sample:
    return _transfer_sample("push_chunked_mbps", push_blob(server.url, CHUNKED_REPO, data.chunked_blob, chunked=True))


def measure_pull(server: ServerRound, data: Data) -> Sample:
    _ensure_pushed(server, data)
    return _transfer_sample("pull_mbps", pull_blob(server.url, PUSH_REPO, data.blob))


def _measure_wrk(prefix: str, method: str, path: str, headers: dict[str, str]) -> Callable[[ServerRound, Data], Sample]:
    def measure(server: ServerRound, data: Data) -> Sample:
        _ensure_image(server, data)
        s = data.settings
        r = wrk(server.url + path, method=method, headers=headers,
                threads=s.threads, connections=s.connections, duration=s.duration)
        return _wrk_sample(prefix, r)

    return measure


def _rate_metrics(prefix: str, what: str) -> Callable[[Settings], list[Metric]]:
    def metrics(s: Settings) -> list[Metric]:
        return [
            Metric(f"{prefix}_rps", f"{what} @{s.connections} req/s", "requests/s", True),
            Metric(f"{prefix}_p99_ms", f"{what} @{s.connections} p99 ms", "ms", False),
        ]

    return metrics


FIGURES: list[Figure] = [
    Figure("push",
           lambda s: [Metric("push_monolithic_mbps", f"push {s.size_label} monolithic MB/s", "MB/s", True)],
           measure_push),
    Figure("push-chunked",
           lambda s: [Metric("push_chunked_mbps",
                             f"push {s.size_label} chunked {s.chunk_size // MiB} MiB MB/s", "MB/s", True)],
           measure_push_chunked),
    Figure("pull",
           lambda s: [Metric("pull_mbps", f"pull {s.size_label} MB/s", "MB/s", True)],
           measure_pull),
    Figure("manifest-get",
           _rate_metrics("manifest_get", "manifest GET by tag"),
           _measure_wrk("manifest_get", "GET", f"/v2/{IMAGE_REPO}/manifests/{IMAGE_TAG}", {"Accept": OCI_MANIFEST})),
    Figure("blob-head",
           _rate_metrics("blob_head", "blob HEAD"),
           _measure_wrk("blob_head", "HEAD", f"/v2/{IMAGE_REPO}/blobs/{sha256_digest(b'')}", {})),
]


def select(names: str) -> list[Figure]:
    by_name = {f.name: f for f in FIGURES}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [f for f in FIGURES if f.name in wanted]
