"""Authentication building blocks: token-auth scopes, bearer tokens and access keys.

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
from ncr_trio.auth.tokens import (
    LEEWAY_SECONDS,
    MAX_LIFETIME_SECONDS,
    Claims,
    KeyFileError,
    TokenError,
    TokenIssuer,
    libtrust_key_id,
)

__all__ = [
    "ACTIONS",
    "KEY_ID_PREFIX",
    "LEEWAY_SECONDS",
    "MAX_KEYS_PER_USER",
    "MAX_LIFETIME_SECONDS",
    "ROTATION_DAYS",
    "Claims",
    "InvalidScope",
    "KeyFileError",
    "Scope",
    "TokenError",
    "TokenIssuer",
    "access_entries",
    "format_scope",
    "grant",
    "hash_secret",
    "libtrust_key_id",
    "needs_rotation",
    "new_access_key",
    "parse_scope",
    "parse_scopes",
    "verify_secret",
]
