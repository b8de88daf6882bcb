"""Metadata: one store over SQLite or PostgreSQL."""

from ncr_trio.meta.access import AccessKey, AccessStore, AuditEntry, KeyLimitReached, RegistryInfo, UnknownUser, User
from ncr_trio.meta.db import Database, connect
from ncr_trio.meta.schema import migrate
from ncr_trio.meta.store import BlobMissing, ManifestRecord, MetaStore, PutResult, Reference, Upload

__all__ = ["AccessKey", "AccessStore", "AuditEntry", "BlobMissing", "KeyLimitReached", "RegistryInfo", "UnknownUser",
           "User", "Database", "ManifestRecord", "MetaStore", "PutResult", "Reference", "Upload", "connect", "migrate"]
