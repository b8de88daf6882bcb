"""Metadata: one store over SQLite or PostgreSQL."""

from ncr_trio.meta.db import Database, connect
from ncr_trio.meta.schema import migrate
from ncr_trio.meta.store import ManifestRecord, MetaStore, PutResult, Reference, Upload

__all__ = ["Database", "ManifestRecord", "MetaStore", "PutResult", "Reference", "Upload", "connect", "migrate"]
