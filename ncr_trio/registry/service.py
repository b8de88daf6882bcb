"""The registry's wiring: `RegistryService.open(config)` builds storage, metadata and every use case
(ncr_trio/registry/__init__.py lists them); HTTP, the CLI and the background jobs call it."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from ncr_trio.auth.accounts import Accounts
from ncr_trio.auth.control import AccessControl
from ncr_trio.cache.caches import ImageCaches
from ncr_trio.cache.proxy import PullThrough
from ncr_trio.cache.upstream import Upstreams
from ncr_trio.config import Config
from ncr_trio.cron import InvalidSchedule, parse_schedule
from ncr_trio.meta import AccessStore, MetaStore, connect, migrate
from ncr_trio.meta.caches import CacheStore
from ncr_trio.meta.metered import MeteredDatabase
from ncr_trio.meta.policies import PolicyStore
from ncr_trio.meta.replication import ReplicationStore
from ncr_trio.meta.scans import ScanStore
from ncr_trio.meta.trust import TrustStore
from ncr_trio.meta.webhooks import WebhookStore
from ncr_trio.registry.blobs import Blobs
from ncr_trio.registry.catalog import Catalog
from ncr_trio.registry.cleanup import Policies
from ncr_trio.registry.context import Registry
from ncr_trio.registry.fsck import FsckReport, Scrubber
from ncr_trio.registry.gc import GarbageCollector, GcReport
from ncr_trio.registry.manifests import Manifests
from ncr_trio.registry.namespaces import Namespaces
from ncr_trio.registry.protection import Protection
from ncr_trio.registry.uploads import Uploads
from ncr_trio.registry.webhooks import Sender, Webhooks
from ncr_trio.replication.copy import LocalSide
from ncr_trio.replication.engine import Replicator
from ncr_trio.replication.policies import Replications
from ncr_trio.replication.remotes import Remotes
from ncr_trio.scan.jobs import Scans
from ncr_trio.sealing import Sealer
from ncr_trio.storage import STORAGE_THREADS, open_storage
from ncr_trio.storage.metered import MeteredDriver
from ncr_trio.trust.service import Trust


@dataclass
class RegistryService:
    reg: Registry
    uploads: Uploads
    blobs: Blobs
    manifests: Manifests
    gc: GarbageCollector
    access: AccessControl
    namespaces: Namespaces
    accounts: Accounts
    catalog: Catalog
    webhooks: Webhooks
    policies: Policies  # cleanup and protection policies, cleanup runs and their schedules
    fsck: Scrubber
    caches: ImageCaches  # image caches (the sources cache-type registries pull through)
    pull_through: PullThrough  # pulls from cache-type registries
    remotes: Remotes  # replication's remote endpoints and their health checks
    replications: Replications  # replication policies, their runs and history
    replicator: Replicator  # the engine copying runs (serving in the lifespan: http/app.py)
    scans: Scans  # vulnerability scans: requests, the runner (serving in the lifespan), pull prevention
    trust: Trust  # image trust: trusted keys, signature results (the runner serving in the lifespan), enforcement

    @property
    def config(self) -> Config:
        return self.reg.config

    @property
    def meta(self) -> MetaStore:
        return self.reg.meta

    @property
    def disk(self) -> trio.CapacityLimiter:
        return self.reg.disk

    @classmethod
    def open(cls, config: Config) -> RegistryService:
        for setting, schedule in (("gc_schedule", config.gc_schedule), ("fsck_schedule", config.fsck_schedule)):
            if schedule.strip():
                try:
                    parse_schedule(schedule)
                except InvalidSchedule as e:
                    raise ValueError(f"{setting}: {e}") from None
        config.data_dir.mkdir(parents=True, exist_ok=True)
        sealer = Sealer.in_directory(config.data_dir / "keys")
        sender = Sender.of(config, sealer)  # checks webhook_allowed_networks
        # Both timed for /metrics (ncr_trio/metrics.py): every unit of work, every storage call.
        db = MeteredDatabase(connect(config.database_url, config.sqlite_path))
        migrate(db)
        storage = MeteredDriver(open_storage(config))
        reg = Registry(config=config, storage=storage, meta=MetaStore(db), disk=trio.CapacityLimiter(STORAGE_THREADS))
        access = AccessControl(config, AccessStore(db))
        policy_store = PolicyStore(db)
        protection = Protection(policy_store, config.access_cache_seconds)
        namespaces = Namespaces(reg, access, protection)
        webhooks = Webhooks(config, WebhookStore(db), access.store, sender)
        webhooks.seal_stored()
        uploads, blobs, manifests = Uploads(reg), Blobs(reg), Manifests(reg, protection)
        upstreams = Upstreams(config)
        replication_store = ReplicationStore(db)
        remotes = Remotes(config, replication_store, sealer)
        replications = Replications(replication_store, policy_store, namespaces)
        replicator = Replicator(replication_store, LocalSide(reg, blobs, uploads, manifests), remotes.find, config)
        replications.attach(replicator)
        return cls(reg, uploads, blobs, manifests, GarbageCollector(reg), access,
                   namespaces, Accounts(access), Catalog(reg, protection), webhooks=webhooks,
                   policies=Policies(reg, policy_store, protection, namespaces), fsck=Scrubber(reg),
                   caches=ImageCaches(config, CacheStore(db), access, sealer, probe=lambda s: upstreams.get(s).ping()),
                   pull_through=PullThrough(reg, manifests, blobs, uploads, protection, upstreams),
                   remotes=remotes, replications=replications, replicator=replicator,
                   scans=Scans(reg, ScanStore(db), policy_store), trust=Trust(reg, TrustStore(db), manifests))

    def close(self) -> None:
        self.reg.meta.db.close()


__all__ = ["FsckReport", "GcReport", "RegistryService"]
