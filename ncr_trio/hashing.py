"""Streaming SHA-256 and SHA-512, shaped like :mod:`hashlib`, with resumable state.

The hashers are native (``ncr_trio._native``, Rust); there is no pure-Python fallback. SHA-256
runs the ``sha2`` crate's SHA-NI code. SHA-512 runs OpenSSL's, the code ``hashlib`` runs, taken
from the system ``libcrypto.so.3`` at import (the library Python's ``_hashlib`` links; no OpenSSL
headers are needed to build), because it is ~1.3x faster than ``sha2``'s AVX2 code; where that
library does not load, or with ``NCR_TRIO_SHA512_BACKEND=sha2`` in the environment, SHA-512 runs
``sha2``'s. ``ncr_trio._native.SHA512_BACKEND`` says which. States are the same either way.
Beyond ``hashlib`` the hashers offer:

* :meth:`Hasher.state` and :func:`from_state`: the exact mid-stream state as a few dozen bytes,
  to store after each acknowledged chunk and resume from after a restart without re-reading the
  bytes already hashed. The encoding is versioned; :func:`from_state` raises :class:`ValueError`
  on anything else.
* ``update()`` reads any C-contiguous buffer (bytes, bytearray, memoryview, mmap, array, numpy)
  in place, and releases the GIL for large inputs (``ncr_trio._native.GIL_RELEASE_THRESHOLD``
  bytes and up), so a worker thread hashing does not stall the Trio thread. A non-contiguous
  buffer raises :class:`BufferError`, a ``str`` :class:`TypeError`.

A hasher is not meant to be shared between threads while it is in use: calling one from a
second thread while the first is inside ``update()`` raises :class:`RuntimeError`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol

from ncr_trio import _native

if TYPE_CHECKING:
    if sys.version_info >= (3, 12):
        from collections.abc import Buffer
    else:
        from typing_extensions import Buffer

__all__ = ["ALGORITHMS", "Hasher", "from_state", "new", "sha256", "sha512"]


class Hasher(Protocol):
    """A streaming hasher: the :mod:`hashlib` interface plus :meth:`state`."""

    @property
    def name(self) -> str:
        """The algorithm, as in :data:`ALGORITHMS`."""
        ...

    @property
    def digest_size(self) -> int:
        """Bytes in a digest."""
        ...

    @property
    def block_size(self) -> int:
        """Bytes in one block of the compression function."""
        ...

    def update(self, data: Buffer) -> None:
        """Hash more data."""
        ...

    def digest(self) -> bytes:
        """The digest of the data so far; the hasher can go on."""
        ...

    def hexdigest(self) -> str:
        """:meth:`digest` as lowercase hexadecimal."""
        ...

    def copy(self) -> Hasher:
        """An independent hasher in the same state."""
        ...

    def state(self) -> bytes:
        """The exact state, for :func:`from_state`."""
        ...


_CONSTRUCTORS: dict[str, type[_native.Sha256 | _native.Sha512]] = {
    "sha256": _native.Sha256,
    "sha512": _native.Sha512,
}

ALGORITHMS: frozenset[str] = frozenset(_CONSTRUCTORS)


def new(name: str, data: Buffer = b"") -> Hasher:
    """A hasher for algorithm `name` (one of :data:`ALGORITHMS`), fed `data`."""
    try:
        constructor = _CONSTRUCTORS[name]
    except KeyError:
        raise ValueError(
            f"unsupported hash algorithm {name!r}: expected one of {', '.join(sorted(ALGORITHMS))}"
        ) from None
    return constructor(data)


def sha256(data: Buffer = b"") -> Hasher:
    """A SHA-256 hasher fed `data`."""
    return _native.Sha256(data)


def sha512(data: Buffer = b"") -> Hasher:
    """A SHA-512 hasher fed `data`."""
    return _native.Sha512(data)


def from_state(state: bytes) -> Hasher:
    """Restore the hasher whose :meth:`Hasher.state` gave `state`; :class:`ValueError` if it is not one."""
    return _native.from_state(state)
