"""Secrets kept at rest (webhook secrets and auth headers), sealed with AES-256-GCM under a key in the
data directory, so that a copy of the database alone reveals none of them.

The key is `<data_dir>/keys/secrets.key`: 32 random bytes, base64, mode 0600, made at the first start
(`files.private_file`: several worker processes may race to make it; exactly one key wins and all
of them read that one). Back it up with the database: without it no sealed value opens again.

A sealed value is `ncr1:` + base64url(12-byte random nonce, ciphertext and tag). A context (a row and
a field: `webhook/12/secret`) is authenticated with it as associated data, so a value copied into
another row or field does not open. The empty string stands for "not set" and is kept as it is.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ncr_trio.files import KeyFileError, private_file

PREFIX = "ncr1:"
KEY_FILE = "secrets.key"
_NONCE = 12


class SealError(Exception):
    """A stored value that does not open with this key in this context."""


class Sealer:
    """Seals and opens short text values under one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a sealing key is 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def in_directory(cls, key_dir: Path) -> Sealer:
        """The sealer of `key_dir/secrets.key`, making the key first if there is none."""
        path = key_dir / KEY_FILE
        text = private_file(path, lambda: base64.b64encode(AESGCM.generate_key(256)) + b"\n")
        try:
            key = base64.b64decode(text.strip(), validate=True)
            return cls(key)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{path} does not hold a 32-byte key in base64") from None

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(PREFIX)

    def seal(self, value: str, context: str) -> str:
        if not value:
            return ""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, value.encode(), context.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, value: str, context: str) -> str:
        if not value:
            return ""
        if not self.is_sealed(value):
            raise SealError(f"{context} is not sealed")
        try:
            raw = base64.urlsafe_b64decode(value[len(PREFIX):].encode())
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SealError(f"{context} does not open with this server's key ({KEY_FILE})") from None


__all__ = ["KEY_FILE", "PREFIX", "SealError", "Sealer"]
