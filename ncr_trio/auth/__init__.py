"""Authentication building blocks: token-auth scopes and access keys.

Pure and not yet wired into the HTTP path.
"""

from ncr_trio.auth.keys import (
    KEY_ID_PREFIX,
    MAX_KEYS_PER_USER,
    ROTATION_DAYS,
    hash_secret,
    needs_rotation,
    new_access_key,
    verify_secret,
)
from ncr_trio.auth.scopes import (
    ACTIONS,
    InvalidScope,
    Scope,
    access_entries,
    format_scope,
    grant,
    parse_scope,
    parse_scopes,
)

__all__ = [
    "ACTIONS",
    "KEY_ID_PREFIX",
    "MAX_KEYS_PER_USER",
    "ROTATION_DAYS",
    "InvalidScope",
    "Scope",
    "access_entries",
    "format_scope",
    "grant",
    "hash_secret",
    "needs_rotation",
    "new_access_key",
    "parse_scope",
    "parse_scopes",
    "verify_secret",
]
