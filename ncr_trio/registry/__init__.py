"""Registry use cases: uploads, blobs, manifests (with tags and referrers), garbage collection, the
scrub (fsck), registries (namespaces), webhooks, image caches and their pull-through (from `cache`),
replication (remotes, policies and the engine, from `replication`) and, from `auth`, access control and
accounts.

`RegistryService.open(config)` (service.py) wires storage, metadata and every use case; HTTP and the CLI
call it. It is imported from here lazily: the registry's own modules (egress.py, manifests.py, ...) are
imported by packages the service wires in turn (cache, replication), and importing one of them must not
run the whole wiring first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ncr_trio.registry.fsck import FsckReport
    from ncr_trio.registry.gc import GcReport
    from ncr_trio.registry.service import RegistryService


def __getattr__(name: str) -> Any:
    if name == "RegistryService":
        from ncr_trio.registry.service import RegistryService
        return RegistryService
    if name == "FsckReport":
        from ncr_trio.registry.fsck import FsckReport
        return FsckReport
    if name == "GcReport":
        from ncr_trio.registry.gc import GcReport
        return GcReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FsckReport", "GcReport", "RegistryService"]
