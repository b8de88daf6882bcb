"""Access keys: the ID and secret shapes, the scrypt hash, the rotation flag."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from ncr_trio.auth.keys import MAX_KEYS_PER_USER, hash_secret, needs_rotation, new_access_key, verify_secret


def test_key_id_and_secret_shapes() -> None:
    key_id, secret = new_access_key()
    assert re.fullmatch(r"NCR[A-Z2-7]{20}", key_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{40}", secret)
    assert new_access_key() != (key_id, secret)
    assert MAX_KEYS_PER_USER == 5


def test_hash_round_trip_and_wrong_secret() -> None:
    _, secret = new_access_key()
    stored = hash_secret(secret)
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(new_access_key()[1], stored)


def test_hash_format() -> None:
    stored = hash_secret("s3cret")
    name, n, r, p, salt, digest = stored.split("$")
    assert (name, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(base64.b64decode(salt, validate=True)) == 16
    assert len(base64.b64decode(digest, validate=True)) == 32
    assert "s3cret" not in stored
    assert hash_secret("s3cret") != stored  # a fresh salt each time


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "bcrypt$1$2$3$AA==$AA==",
        "scrypt$16384$8$1$AA==",
        "scrypt$x$8$1$AA==$AA==",
        "scrypt$16384$8$1$!!$AA==",
        "scrypt$1048576$8$1$AA==$AA==",  # 1 GiB of scrypt memory: refused, not attempted
    ],
)
def test_malformed_stored_hash_is_an_error(stored: str) -> None:
    with pytest.raises(ValueError):
        verify_secret("s3cret", stored)


@pytest.mark.parametrize(("age", "flagged"), [(timedelta(days=89), False), (timedelta(days=90), False),
                                              (timedelta(days=90, seconds=1), True), (timedelta(days=91), True)])
def test_rotation_flag(age: timedelta, flagged: bool) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert needs_rotation(created, created + age) is flagged
