"""Access keys, as the NCR guide describes them: an ID and a secret, at most five per user, the
secret shown once at creation and stored only as a slow hash, rotation advised after 90 days.

A stored hash reads `scrypt$<n>$<r>$<p>$<salt>$<hash>` (salt and hash in standard base64), so
its parameters can be raised later without invalidating the keys already issued. Hashing takes
tens of milliseconds by design: callers on the Trio thread run it in a worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from ncr_trio.limits import KEY_ID_PREFIX, MAX_KEYS_PER_USER

__all__ = [
    "KEY_ID_PREFIX",
    "MAX_KEYS_PER_USER",
    "ROTATION_DAYS",
    "hash_secret",
    "needs_rotation",
    "new_access_key",
    "verify_secret",
]

ROTATION_DAYS = 90

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# 128 * n * r bytes for the parameters above (16 MiB), with room for a stored hash that uses
# up to four times that; a row with larger parameters is refused instead of exhausting memory.
_SCRYPT_MAXMEM = 64 * 2**20 + 2**20


def new_access_key() -> tuple[str, str]:
    """A fresh (key_id, secret): `NCR` + 20 upper-case base32 characters (100 random bits) and
    40 URL-safe characters (240 random bits)."""
    key_id = KEY_ID_PREFIX + base64.b32encode(secrets.token_bytes(13)).decode()[:20]
    return key_id, secrets.token_urlsafe(30)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=dklen)


def hash_secret(secret: str) -> str:
    """The stored form of `secret`: scrypt with a random 16-byte salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(secret, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, _HASH_BYTES)
    return "$".join(
        ["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P),
         base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    )


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` is the one `stored` was made from (compared in constant time).

    A `stored` value that is not a hash this module wrote raises ValueError: that is a corrupt
    row, not a wrong secret.
    """
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not an scrypt hash written by hash_secret")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError(f"malformed scrypt hash: {exc}") from None
    if not expected:
        raise ValueError("malformed scrypt hash: empty digest")
    actual = _scrypt(secret, salt, n, r, p, len(expected))
    return hmac.compare_digest(actual, expected)


def needs_rotation(created_at: datetime, now: datetime, days: int = ROTATION_DAYS) -> bool:
    """Whether a key created at `created_at` is older than `days` days at `now` (a key exactly
    `days` old is not yet flagged). Both datetimes must be aware, or both naive."""
    return now - created_at > timedelta(days=days)
