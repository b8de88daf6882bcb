"""One frozen configuration tree, read from an optional TOML file and `NCR_*` environment variables.

Precedence: command-line flags > environment > TOML file > defaults.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024



def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Config:
    # Public listeners (the registry's public URI) and private ones (its private URI): a registry
    # with its public URI turned off answers only on the private listeners.
    listen: tuple[str, ...] = ("127.0.0.1:5000",)
    private_listen: tuple[str, ...] = ()
    # HTTPS on every listener when both are set (PEM files).
    tls_cert: str = ""
    tls_key: str = ""
    data_dir: Path = Path("./data")
    # Empty: SQLite at <data_dir>/meta.sqlite3. Or "postgresql://user@host/db".
    database_url: str = ""
    # Worker processes sharing the port (SO_REUSEPORT) and the store. By default one per CPU this
    # process may run on (its affinity mask, which a container's cpuset narrows), as Go servers use
    # every core; 1 keeps a single process.
    workers: int = field(default_factory=usable_cpus)
    upload_ttl_seconds: int = 24 * 3600
    # Blobs and links younger than this are never collected, whatever references them.
    gc_grace_seconds: int = 3600
    # 0 disables the background GC; it still runs on demand (`ncr-trio gc`).
    gc_interval_seconds: int = 6 * 3600
    # When set, the background GC follows this schedule instead of the interval: a preset (None,
    # Hourly, Daily, Weekly) or five cron fields in UTC, as cleanup schedules (ncr_trio/cron.py).
    gc_schedule: str = ""
    gc_delete_untagged: bool = False
    # The scrub (registry/fsck.py): re-hash every stored blob on this schedule (a preset or five cron
    # fields in UTC, as gc_schedule; empty: never, only `ncr-trio fsck`). With fsck_repair it also
    # moves damaged blobs to <data_dir>/quarantine/; without, it only logs them.
    fsck_schedule: str = ""
    fsck_repair: bool = False
    max_manifest_bytes: int = 4 * MiB
    # Where blobs and uploads live: "filesystem" (under data_dir) or "s3" (an S3-compatible bucket,
    # storage/s3.py; chosen too whenever s3_bucket is set). Credentials: s3_access_key/s3_secret_key,
    # else botocore's usual sources (AWS_ACCESS_KEY_ID..., or the shared credentials file, which
    # s3_credentials_file names). s3_endpoint empty: AWS itself. s3_ca_bundle: a PEM file of CAs to
    # trust for the endpoint's TLS.
    storage: str = "filesystem"
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_credentials_file: str = ""
    s3_path_style: bool = True
    s3_ca_bundle: str = ""
    # Blob GETs answer 307 to a presigned URL of the object (at most 1200 s long, the guide's limit);
    # false: the registry serves the bytes itself.
    s3_redirect: bool = True
    s3_redirect_seconds: int = 1200
    # Each S3 call may wait this long for the next bytes (botocore retries transient errors itself).
    s3_timeout_seconds: float = 60.0
    # A request writing an upload holds it for this long in the database (renewed while it streams),
    # when the storage has no locks (S3): another node may take the upload over once it expires.
    upload_lease_seconds: int = 30
    # Write upload bytes with O_DIRECT (far faster than filling new page-cache pages on most VMs).
    direct_io: bool = True
    # Read each O_DIRECT-written block back once through the page cache, on a thread of its own, so the
    # first pull of a new blob finds warm pages (storage/filesystem.py _ReadBack; docs/performance/pulls.md,
    # cause 3). It costs ~0.1 s of CPU per GiB pushed; a host where touching device-filled pages is cheap
    # (bare metal) may gain nothing from it. Linux only: elsewhere the blocks are counted as skipped.
    read_back: bool = True
    # All blob downloads of one worker process together hold about this much in read buffers
    # (chunks shrink from 1 MiB to 64 KiB as downloads multiply).
    download_buffer_bytes: int = 8 * MiB
    # Blob downloads from the page cache go out with sendfile(2) (plain HTTP/1.x; see http/zerocopy.py).
    zero_copy: bool = True
    # Repeated manifest GET/HEAD and blob HEAD requests on a keep-alive connection get the answer the
    # app gave to the same request, written without hypercorn's per-request work (http/fastpath.py).
    fast_path: bool = True
    # Socket reads: hypercorn reads 64 KiB at a time unless told otherwise.
    recv_chunk_bytes: int = 1 * MiB
    graceful_timeout_seconds: float = 30.0
    # A request head must be whole within this time of the connection's start or its previous
    # response (silent, idle and byte-by-byte clients are dropped), and a request body may pause
    # at most this long. A client receiving a long response is not timed out for sending nothing.
    read_timeout_seconds: int = 60
    # A client that takes nothing of a response for this long is dropped.
    send_timeout_seconds: int = 60
    log_level: str = "info"
    # Access: the first start creates `admin` with this password (or a random one, written to
    # <data_dir>/initial-admin-password).
    admin_password: str = ""
    token_service: str = "ncr-trio"
    token_issuer: str = "ncr-trio"
    # Where clients fetch tokens; empty: this server's own /auth/token, at the address they used.
    token_realm: str = ""
    token_lifetime_seconds: int = 12 * 3600  # at most 12 hours, as the guide says
    login_slow_after: int = 3  # failed logins before each further attempt is slowed
    login_lock_after: int = 10  # failed logins before attempts are refused
    login_lockout_seconds: int = 900
    login_window_seconds: int = 900
    # Load balancers before the nodes (CIDR blocks): from them, X-Forwarded-For names the client, for the
    # access gate's allowlists, the login throttle and the audit log (http/forwarded.py). Empty: the peer.
    trusted_proxies: tuple[str, ...] = ()
    # Registries' settings, roles and key revocations made on another node apply within this time.
    access_cache_seconds: float = 2.0
    # The registry host in webhook payloads' pull references; empty: the first `listen` address.
    external_host: str = ""
    # Webhook deliveries (registry/webhooks.py): each attempt may take this long; a failed one is
    # retried after base * 2**(n-1) seconds (n: attempts so far), at most cap, until max attempts.
    webhook_timeout_seconds: float = 10.0
    webhook_retry_base_seconds: float = 2.0
    webhook_retry_cap_seconds: float = 300.0
    webhook_max_attempts: int = 8
    # The addresses webhook deliveries may connect to (registry/egress.py): CIDR blocks, and `public`
    # for every globally routable unicast address. The default reaches no loopback, private,
    # link-local, shared (CGNAT), multicast or reserved address; list those a receiver lives on.
    webhook_allowed_networks: tuple[str, ...] = ("public",)
    # Image caches (ncr_trio/cache): where fetches from source registries may connect (CIDR blocks and
    # `public`, as webhook_allowed_networks) and on which ports (the guide allows 80 and 443 only).
    cache_allowed_networks: tuple[str, ...] = ("public",)
    cache_allowed_ports: tuple[str, ...] = ("80", "443")
    # Caching one image from its source takes at most this long (the guide: 200 s); a fetch cut off
    # keeps what it received, and the next pull continues from there (a Range request).
    cache_deadline_seconds: float = 200.0
    # Bytes of a caching that did not finish are released after this long (the guide: 2 hours).
    cache_partial_ttl_seconds: int = 2 * 3600
    # Each request to a source: connecting, and each wait for its next bytes.
    cache_timeout_seconds: float = 30.0
    # Replication (ncr_trio/replication): where requests to remote registries may connect (CIDR blocks
    # and `public`, as webhook_allowed_networks; any port, a remote's URL names its own) and how long
    # each request waits for connecting and for its next bytes.
    replication_allowed_networks: tuple[str, ...] = ("public",)
    replication_timeout_seconds: float = 30.0
    # How often every remote endpoint is checked again (its status and its policies' "valid"/"invalid").
    replication_check_seconds: float = 300.0
    # Vulnerability scanning (ncr_trio/scan): how many scans each process runs at once (each in a worker
    # thread), and how often a process looks for scans queued by others (a local request wakes it at once).
    scan_concurrency: int = 2
    scan_poll_seconds: float = 1.0
    # Scan every image and index again when a new vulnerability database is imported (`ncr-trio vulndb import`).
    scan_rescan_on_import: bool = False
    # Image trust (ncr_trio/trust/service.py): how often a process looks for signatures pushed through
    # others and for results a key change made stale (a local key change wakes it at once).
    trust_poll_seconds: float = 1.0
    # /metrics (ncr_trio/metrics.py) answers clients from these networks (CIDR blocks) without
    # credentials, and anyone else logged in as a system administrator (Basic, or a management token).
    metrics_allowed_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Where several worker processes keep their metric files; empty: a fresh private directory per
    # run, removed at exit. A directory named here is emptied at start.
    metrics_dir: str = ""
    # /readyz: how long the database and the storage each have to answer its probe.
    readyz_timeout_seconds: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "meta.sqlite3"


_ENV_PREFIX = "NCR_"


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind.startswith("tuple"):
        return tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    if kind == "Path":
        return Path(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes", "on"}
    return value


def load(path: Path | None = None, env: dict[str, str] | None = None, **overrides: Any) -> Config:
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            values.update(tomllib.load(fh))
    fields = {f.name: f for f in dataclasses.fields(Config) if f.name != "extra"}
    extra = {k: values.pop(k) for k in list(values) if k not in fields}
    for name in fields:
        env_value = env.get(_ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**{k: _coerce(fields[k], v) for k, v in values.items()}, extra=extra)


__all__ = ["Config", "MiB", "load"]
