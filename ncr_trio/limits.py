"""The API's limits and vocabularies, in one light module: the domain modules that enforce them, the
request and answer models (http/models.py), the operations' declarations and the CLI all read them
here. Nothing here imports more than `re`, so the CLI starts without loading the server (trio, the
storage drivers, the database layers)."""

from __future__ import annotations

import re

# auth/accounts.py, auth/keys.py
USER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_KEYS_PER_USER = 5
KEY_ID_PREFIX = "NCR"

# registry/catalog.py: the largest page of any list
MAX_PER_PAGE = 500

# registry/policies.py, registry/cleanup.py
MAX_POLICIES = 15
RULES = ("older_than", "retain_pushed", "retain_pulled")
CLEANUP_MAX_N = 1_000_000
CLEANUP_OUTCOMES = ("would-delete", "deleted", "kept-protected", "kept-needed", "skipped-changed")

# registry/webhooks.py
EVENT_TYPES = ("artifact.pushed", "artifact.cached", "artifact.pulled", "artifact.deleted", "tag.created",
               "tag.deleted", "replication.started", "replication.finished", "replication.failed",
               "scan.completed", "scan.failed", "signature.pushed", "signature.invalid")
WEBHOOK_KINDS = ("http", "slack")
WEBHOOK_TEST_EVENT = "test"
WEBHOOK_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WEBHOOK_MAX_URL = 2048
WEBHOOK_MAX_SECRET = 256
WEBHOOK_MAX_AUTH_HEADER = 1024

# cache/caches.py; the credentials and descriptions of replication/remotes.py and replication/policies.py too
CACHE_MAX_URL = 2048
SOURCE_MAX_ACCESS_ID = 256
SOURCE_MAX_SECRET = 16 * 1024  # a service account's JSON key is about 2.3 KiB
MAX_DESCRIPTION = 1024

# replication/policies.py, replication/remotes.py
REPLICATION_MAX_FILTER = 256
REPLICATION_MAX_BANDWIDTH_KBPS = 10**7  # 10 GB/s: more is no limit at all
REMOTE_MAX_CA_CERT = 64 * 1024

# scan/jobs.py
SCAN_THRESHOLDS = ("Low", "Medium", "High", "Critical")
SCAN_MAX_ALLOWLIST = 1000
SCAN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
