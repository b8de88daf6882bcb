"""What is measured. A figure drives one server once and yields one or more metrics."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.auth import ACTIONS, ANONYMOUS, PULL, Access
from benchmarks.blobs import OCI_MANIFEST, Blob, MiB, Pool, SmallImage, make_blob, sha256_digest
from benchmarks.cache import CACHE_REGISTRY, SOURCE_REPO, SOURCE_TAG, CacheSource
from benchmarks.loads import LoadgenResult, Transfer, WrkResult, loadgen, pull_blob, push_blob, wrk
from benchmarks.memory import TreeMemorySampler
from benchmarks.registry import RegistryError, blob_exists, elsewhere, push_small_blob, push_small_image, warm_up
from benchmarks.servers import tree_cpu_seconds

PUSH_REPO = "bench/push"
CHUNKED_REPO = "bench/push-chunked"
FIRST_PULL_REPO = "bench/first-pull"
# the first pull starts within this long of its push's answer (issue 16: "the first pull within 1 s of its push")
FIRST_PULL_WITHIN = 1.0
RSS_REPO = "bench/push-rss"
STREAMS_REPO = "bench/streams"
SMALL_REPO = "bench/small-blobs"
LAYER_REPO = "bench/layer"
IMAGE_REPO = "bench/small"
IMAGE_TAG = "v1"
WARMUP_REPO = RSS_REPO + "-warmup"


def size_label(n: int) -> str:
    if n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n // 1024} KiB"


@dataclass(frozen=True)
class Settings:
    blob_size: int
    chunk_size: int
    duration: int  # seconds per wrk run
    threads: int
    connections: int
    streams: int = 8  # concurrent 1 GiB pushes and pulls
    small_count: int = 1000  # blobs per small-blob push figure
    small_size: int = 4096
    pull_clients: int = 1000  # concurrent clients pulling one layer
    layer_size: int = 10 * MiB
    cache_layer_sizes: tuple[int, ...] = (16 * MiB, 32 * MiB, 64 * MiB)  # the image pulled through the caches
    cache_clients: int = 100  # concurrent clients pulling it
    pulls: int = 10  # sequential pulls of the pull figure (its slowest is a figure of its own)

    @property
    def size_label(self) -> str:
        return size_label(self.blob_size)


@dataclass(frozen=True)
class Data:
    """Everything generated once per run and pushed to every server."""

    settings: Settings
    image: SmallImage
    blob: Blob | None = None  # one part: monolithic push, pull
    chunked_blob: Blob | None = None  # parts of chunk_size: chunked push (another digest: no server can skip it)
    pool: Pool | None = None  # streams + 1 windows of blob_size: the concurrent pushes and the memory figure
    layer: bytes = b""  # the layer the many clients pull
    loadgen: Path | None = None  # the built Go load client
    cache_source: CacheSource | None = None  # the registry the caches pull from (running for the whole run)

    def need_blob(self) -> Blob:
        if self.blob is None:
            raise RuntimeError("the blob was not written")
        return self.blob

    def need_chunked_blob(self) -> Blob:
        if self.chunked_blob is None:
            raise RuntimeError("the chunked blob was not written")
        return self.chunked_blob

    def need_loadgen(self) -> Path:
        if self.loadgen is None:
            raise RuntimeError("loadgen was not built")
        return self.loadgen

    def need_pool(self) -> Pool:
        if self.pool is None:
            raise RuntimeError("the blob pool was not written")
        return self.pool

    def need_cache_source(self) -> CacheSource:
        if self.cache_source is None:
            raise RuntimeError("the cache source was not started")
        return self.cache_source


@dataclass
class ServerRound:
    """One server in one round (or since its last restart): its URL and process, the credentials its clients send
    (tokens fetched right after the start), and what was put in it."""

    url: str
    pid: int = 0
    auth: Access = ANONYMOUS
    prepared: set[str] = field(default_factory=set)
    cache_prefix: str = ""  # before a source's repository, when it serves as a pull-through cache
    new_blob: Blob | None = None  # written by a figure's prepare step, for its measurement alone


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
    # untimed setup, run before the measurement window (and before its CPU accounting) opens
    prepare: Callable[[ServerRound, Data], None] | None = None
    # run on a server restarted on empty storage, which is restarted empty again afterwards: what the figure
    # writes (8 GiB) never piles up with the other servers' or figures' data on the disk
    fresh: bool = False
    needs_blobs: bool = False  # the two curl blobs
    needs_loadgen: bool = False
    needs_pool: bool = False
    # the repositories it uses: ncr-trio's tokens for them are fetched after each start, before any figure
    repos: tuple[str, ...] = ()
    pull_repos: tuple[str, ...] = ()  # the same, for repositories it only pulls from (a token for "pull")
    # with `fresh`: the server is restarted empty as a pull-through cache of the run's cache source
    cache: bool = False


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


def _fail_on_errors(what: str, r: LoadgenResult, expected_ok: int) -> None:
    if r.error_count or r.ok != expected_ok:
        raise RegistryError(f"{what}: {r.ok} of {expected_ok} ok, errors {r.errors}: {'; '.join(r.first_errors[:3])}")


def _ensure_pushed(server: ServerRound, data: Data) -> None:
    """The pull figure needs the blob; push it (untimed) if the push figure did not run or failed."""
    blob = data.need_blob()
    if "blob" not in server.prepared and not blob_exists(server.url, PUSH_REPO, blob.digest, server.auth):
        push_blob(server.url, PUSH_REPO, blob, server.auth, chunked=False)
    server.prepared.add("blob")


def _ensure_image(server: ServerRound, data: Data) -> None:
    if "image" not in server.prepared:
        push_small_image(server.url, IMAGE_REPO, IMAGE_TAG, data.image, server.auth)
        server.prepared.add("image")


def _ensure_layer(server: ServerRound, data: Data) -> None:
    if "layer" not in server.prepared:
        push_small_blob(server.url, LAYER_REPO, data.layer, server.auth)
        server.prepared.add("layer")


def _warm_up(server: ServerRound, data: Data) -> None:
    warm_up(server.url, WARMUP_REPO, server.auth)


def measure_push(server: ServerRound, data: Data) -> Sample:
    t = push_blob(server.url, PUSH_REPO, data.need_blob(), server.auth, chunked=False)
    server.prepared.add("blob")
    return _transfer_sample("push_monolithic_mbps", t)


def measure_push_chunked(server: ServerRound, data: Data) -> Sample:
    return _transfer_sample("push_chunked_mbps",
                            push_blob(server.url, CHUNKED_REPO, data.need_chunked_blob(), server.auth, chunked=True))


def measure_pull(server: ServerRound, data: Data) -> Sample:
    """`pulls` sequential pulls of the same blob, one curl each: the median pull and the slowest one."""
    blob = data.need_blob()
    pulls = [pull_blob(server.url, PUSH_REPO, blob, server.auth) for _ in range(data.settings.pulls)]
    rates = [t.mb_per_s for t in pulls]
    return Sample({"pull_mbps": statistics.median(rates), "pull_slowest_mbps": min(rates)},
                  {"pull_mbps": [round(r, 1) for r in rates], "bytes": blob.size * len(pulls),
                   "seconds": sum(t.seconds for t in pulls), "requests": len(pulls),
                   "client_cpu_seconds": sum(t.client_cpu_seconds for t in pulls)})


def _new_blob(server: ServerRound, data: Data) -> None:
    """A blob of the run's size that no server has seen (random bytes, written now, untimed), for one push."""
    where = data.need_blob().parts[0].parent
    server.new_blob = make_blob(where, f"first-pull-{os.urandom(4).hex()}", data.settings.blob_size,
                                data.settings.blob_size)


def measure_first_pull(server: ServerRound, data: Data) -> Sample:
    """A new blob pushed (monolithic, curl), then pulled by curl started within FIRST_PULL_WITHIN of the push's
    answer: what a CI job pulling what the job before it pushed sees. No sync in between: the blob is wherever
    the server's push left it (ncr-trio writes with O_DIRECT: on disk, not in the page cache)."""
    blob, server.new_blob = server.new_blob, None
    if blob is None:
        raise RuntimeError("no new blob was written for the first-pull figure")
    try:
        push = push_blob(server.url, FIRST_PULL_REPO, blob, server.auth, chunked=False)
        gap = time.monotonic()
        pull = pull_blob(server.url, FIRST_PULL_REPO, blob, server.auth)
    finally:
        for part in blob.parts:
            part.unlink(missing_ok=True)
    gap = time.monotonic() - gap - pull.seconds  # from the push's answer (and its HEAD check) to curl's start
    if gap > FIRST_PULL_WITHIN:
        raise RegistryError(f"the pull started {gap:.2f}s after the push, not within {FIRST_PULL_WITHIN:g}s")
    return Sample({"first_pull_mbps": pull.mb_per_s},
                  {"push_mbps": round(push.mb_per_s, 1), "gap_seconds": round(max(gap, 0.0), 3),
                   "bytes": blob.size, "seconds": pull.seconds,
                   "client_cpu_seconds": push.client_cpu_seconds + pull.client_cpu_seconds})


def measure_push_rss(server: ServerRound, data: Data) -> Sample:
    """One monolithic push of a blob this server has not seen (the pool's last window), with the server's
    process-tree RSS sampled throughout; the figure is the peak minus the RSS just before."""
    window = data.need_pool().windows[-1]
    with TreeMemorySampler(server.pid) as mem:
        r = loadgen(data.need_loadgen(), "push-streams", auth=server.auth, url=server.url, repo=RSS_REPO,
                    file=data.need_pool().path, offsets=[window.offset], digests=[window.digest], size=window.size)
    _fail_on_errors("push", r, 1)
    assert mem.result is not None
    return Sample({"push_rss_growth_mib": mem.result.growth_mib},
                  {**r.details(), **mem.result.details(), "push_mbps": round(r.bytes / r.wall_seconds / 1e6, 1)})


def _phase(name: str, pid: int, run: Callable[[], LoadgenResult]) -> tuple[LoadgenResult, dict[str, Any]]:
    cpu0 = tree_cpu_seconds(pid)
    r = run()
    return r, {"name": name, "wall_seconds": round(r.wall_seconds, 3),
               "server_cpu_seconds": round(tree_cpu_seconds(pid) - cpu0, 3),
               "client_cpu_seconds": round(r.client.cpu_seconds, 3)}


def _windows(data: Data) -> tuple[Pool, list[int], list[str]]:
    pool = data.need_pool()
    ws = pool.windows[: data.settings.streams]
    return pool, [w.offset for w in ws], [w.digest for w in ws]


def measure_streams(server: ServerRound, data: Data) -> Sample:
    """`streams` different blobs pushed at once (monolithic), then the same pulled at once. MB/s is the total
    bytes over the wall time from the first timed request to the last response."""

    pool, offsets, digests = _windows(data)
    size = data.settings.blob_size
    push, push_phase = _phase("push", server.pid, lambda: loadgen(
        data.need_loadgen(), "push-streams", auth=server.auth, url=server.url, repo=STREAMS_REPO, file=pool.path,
        offsets=offsets, digests=digests, size=size))
    _fail_on_errors(f"{len(digests)} pushes", push, len(digests))
    os.sync()  # the pushes' write-back must not land in the pulls
    pull, pull_phase = _phase("pull", server.pid, lambda: loadgen(
        data.need_loadgen(), "pull-streams", auth=server.auth, url=server.url, repo=STREAMS_REPO, digests=digests,
        size=size))
    _fail_on_errors(f"{len(digests)} pulls", pull, len(digests))
    return Sample(
        {"push_streams_mbps": push.bytes / push.wall_seconds / 1e6,
         "pull_streams_mbps": pull.bytes / pull.wall_seconds / 1e6},
        {"push": push.details(), "pull": pull.details(), "phases": [push_phase, pull_phase],
         "client_cpu_seconds": push.client.cpu_seconds + pull.client.cpu_seconds},
    )


def measure_push_chunked_streams(server: ServerRound, data: Data) -> Sample:
    pool, offsets, digests = _windows(data)
    r = loadgen(data.need_loadgen(), "push-streams", auth=server.auth, url=server.url, repo=STREAMS_REPO,
                file=pool.path, offsets=offsets, digests=digests, size=data.settings.blob_size,
                chunk=data.settings.chunk_size)
    _fail_on_errors(f"{len(digests)} chunked pushes", r, len(digests))
    return Sample({"push_chunked_streams_mbps": r.bytes / r.wall_seconds / 1e6}, r.details())


def _small_repo(clients: int) -> str:
    return f"{SMALL_REPO}-{clients}"


def _measure_small(clients: int) -> Callable[[ServerRound, Data], Sample]:
    def measure(server: ServerRound, data: Data) -> Sample:
        s = data.settings
        r = loadgen(data.need_loadgen(), "push-small", auth=server.auth, url=server.url, repo=_small_repo(clients),
                    count=s.small_count, size=s.small_size, clients=clients)
        _fail_on_errors(f"{s.small_count} small blobs", r, s.small_count)
        if r.verified != s.small_count:
            raise RegistryError(f"only {r.verified} of {s.small_count} blobs answer HEAD afterwards")
        return Sample({f"push_small_{clients}_bps": r.ok / r.wall_seconds}, r.details())

    return measure


def measure_pull_many(server: ServerRound, data: Data) -> Sample:
    s = data.settings
    with TreeMemorySampler(server.pid) as mem:
        r = loadgen(data.need_loadgen(), "pull-many", auth=server.auth, url=server.url, repo=LAYER_REPO,
                    digest=sha256_digest(data.layer), size=len(data.layer), clients=s.pull_clients)
    assert mem.result is not None
    if r.ok == 0:
        raise RegistryError(f"no pull succeeded, errors {r.errors}: {'; '.join(r.first_errors[:3])}")
    return Sample({"pull_many_errors": float(r.error_count), "pull_many_rss_mib": mem.result.peak_mib,
                   "pull_many_seconds": r.wall_seconds},
                  {**r.details(), **mem.result.details()})


def measure_cache_pull(server: ServerRound, data: Data) -> Sample:
    """The clients, released together, each pull the source's image (manifest, then config and layers at once, every
    body checked against its digest) through the server, restarted empty as a pull-through cache of the source. The
    server's memory is sampled throughout; the counting proxy in front of the source tells the blob bytes fetched
    from it by the time the last client is done."""
    source, clients = data.need_cache_source(), data.settings.cache_clients
    source.proxy.reset()
    source_cpu = sum(map(tree_cpu_seconds, source.pids))
    with TreeMemorySampler(server.pid) as mem:
        r = loadgen(data.need_loadgen(), "pull-image", auth=server.auth, url=server.url,
                    repo=server.cache_prefix + SOURCE_REPO, reference=SOURCE_TAG, digest=source.image.digest,
                    clients=clients)
    traffic = source.proxy.traffic()
    _fail_on_errors(f"{clients} image pulls", r, clients)
    assert mem.result is not None
    return Sample({"cache_pull_seconds": r.wall_seconds, "cache_pull_rss_mib": mem.result.peak_mib,
                   "cache_pull_upstream_x": traffic.blob_bytes / source.blob_bytes},
                  {**r.details(), **mem.result.details(), "upstream_blob_bytes": traffic.blob_bytes,
                   "source_cpu_seconds": sum(map(tree_cpu_seconds, source.pids)) - source_cpu,
                   "upstream_requests": {f"{m} {k}": n for (m, k), n in sorted(traffic.counts.items())}})


def _cache_metrics(s: Settings) -> list[Metric]:
    what = f"{s.cache_clients} clients pull {'+'.join(size_label(n) for n in s.cache_layer_sizes)} via a cold cache"
    return [Metric("cache_pull_seconds", f"{what}: wall s", "s", False),
            Metric("cache_pull_upstream_x", f"{what}: upstream bytes / image", "x", False),
            Metric("cache_pull_rss_mib", f"{what}: server peak RSS MiB", "MiB", False)]


def _measure_wrk(prefix: str, method: str, repo: str, path: str, headers: dict[str, str]
                 ) -> Callable[[ServerRound, Data], Sample]:
    def measure(server: ServerRound, data: Data) -> Sample:
        s = data.settings
        r = wrk(f"{server.url}/v2/{repo}/{path}", method=method, headers={**headers, **server.auth.headers(repo)},
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


def _small_metric(clients: int) -> Callable[[Settings], list[Metric]]:
    return lambda s: [Metric(f"push_small_{clients}_bps",
                             f"push {s.small_count} x {size_label(s.small_size)} blobs, {clients} client"
                             f"{'s' if clients > 1 else ''} blobs/s", "blobs/s", True)]


FIGURES: list[Figure] = [
    Figure("push",
           lambda s: [Metric("push_monolithic_mbps", f"push {s.size_label} monolithic MB/s", "MB/s", True)],
           measure_push, needs_blobs=True, repos=(PUSH_REPO,)),
    Figure("push-chunked",
           lambda s: [Metric("push_chunked_mbps",
                             f"push {s.size_label} chunked {s.chunk_size // MiB} MiB MB/s", "MB/s", True)],
           measure_push_chunked, needs_blobs=True, repos=(CHUNKED_REPO,)),
    Figure("pull",
           lambda s: [Metric("pull_mbps", f"pull {s.size_label}, median of {s.pulls} MB/s", "MB/s", True),
                      Metric("pull_slowest_mbps", f"pull {s.size_label}, slowest of {s.pulls} MB/s", "MB/s", True)],
           measure_pull, prepare=_ensure_pushed, needs_blobs=True, repos=(PUSH_REPO,)),
    Figure("first-pull",
           lambda s: [Metric("first_pull_mbps", f"pull {s.size_label} within 1 s of its push MB/s", "MB/s", True)],
           measure_first_pull, prepare=_new_blob, needs_blobs=True, repos=(FIRST_PULL_REPO,)),
    Figure("push-rss",
           lambda s: [Metric("push_rss_growth_mib", f"push {s.size_label}: server RSS growth MiB", "MiB", False)],
           measure_push_rss, prepare=_warm_up, needs_loadgen=True, needs_pool=True, repos=(RSS_REPO, WARMUP_REPO)),
    Figure("streams",
           lambda s: [Metric("push_streams_mbps", f"push {s.streams} x {s.size_label} at once MB/s", "MB/s", True),
                      Metric("pull_streams_mbps", f"pull {s.streams} x {s.size_label} at once MB/s", "MB/s", True)],
           measure_streams, fresh=True, needs_loadgen=True, needs_pool=True, repos=(STREAMS_REPO,)),
    Figure("push-chunked-streams",
           lambda s: [Metric("push_chunked_streams_mbps",
                             f"push {s.streams} x {s.size_label} at once, chunked {s.chunk_size // MiB} MiB MB/s",
                             "MB/s", True)],
           measure_push_chunked_streams, fresh=True, needs_loadgen=True, needs_pool=True, repos=(STREAMS_REPO,)),
    Figure("manifest-get",
           _rate_metrics("manifest_get", "manifest GET by tag"),
           _measure_wrk("manifest_get", "GET", IMAGE_REPO, f"manifests/{IMAGE_TAG}", {"Accept": OCI_MANIFEST}),
           prepare=_ensure_image, repos=(IMAGE_REPO, elsewhere(IMAGE_REPO))),
    Figure("blob-head",
           _rate_metrics("blob_head", "blob HEAD"),
           _measure_wrk("blob_head", "HEAD", IMAGE_REPO, f"blobs/{sha256_digest(b'')}", {}),
           prepare=_ensure_image, repos=(IMAGE_REPO, elsewhere(IMAGE_REPO))),
    Figure("push-small-1", _small_metric(1), _measure_small(1), needs_loadgen=True, repos=(_small_repo(1),)),
    Figure("push-small-32", _small_metric(32), _measure_small(32), needs_loadgen=True, repos=(_small_repo(32),)),
    Figure("pull-many",
           lambda s: [Metric("pull_many_errors", f"{s.pull_clients} clients pull {size_label(s.layer_size)}: errors",
                             "errors", False),
                      Metric("pull_many_rss_mib", f"{s.pull_clients} clients pull {size_label(s.layer_size)}: "
                             "server peak RSS MiB", "MiB", False),
                      Metric("pull_many_seconds", f"{s.pull_clients} clients pull {size_label(s.layer_size)}: "
                             "wall s", "s", False)],
           measure_pull_many, prepare=_ensure_layer, needs_loadgen=True, repos=(LAYER_REPO,)),
    Figure("cache-pull", _cache_metrics, measure_cache_pull, fresh=True, cache=True, needs_loadgen=True,
           pull_repos=(f"{CACHE_REGISTRY}/{SOURCE_REPO}", SOURCE_REPO)),
]


def repositories(figures: list[Figure]) -> dict[str, str]:
    """Every repository the figures use, with the actions they need (each needs a token, fetched after each start)."""
    pulled = {r: PULL for f in figures for r in f.pull_repos}
    return {**pulled, **{r: ACTIONS for f in figures for r in f.repos}}


def select(names: str) -> list[Figure]:
    by_name = {f.name: f for f in FIGURES}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [f for f in FIGURES if f.name in wanted]
