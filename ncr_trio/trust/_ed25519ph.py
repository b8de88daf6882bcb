"""Ed25519ph verification (RFC 8032 5.1.7 with the prehash flag), for cosign's Ed25519 keys.

cosign signs with Ed25519ph, not pure Ed25519, whenever its key is Ed25519 (sigstore's
`WithED25519ph`, the only variant a hashedrekord entry accepts), and `cryptography` verifies only
pure Ed25519. This is the RFC's verification equation written out over Python integers:

    k = SHA-512(dom2(1, "") || R || A || SHA-512(M)) mod L,   accept iff [S]B == R + [k]A

with S < L and both points canonical, as Go's crypto/ed25519 `VerifyWithOptions` checks them
(cofactorless). It handles public data only (a signature and a public key), so its running time
leaking through timing is of no concern; it costs a few milliseconds per signature, and the inputs
are fixed-size (a 32-byte key, a 64-byte signature; the message is hashed first).
"""

from __future__ import annotations

import hashlib

__all__ = ["verify_ed25519ph"]

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_DOM2_PH = b"SigEd25519 no Ed25519 collisions" + bytes([1, 0])  # phflag 1, empty context

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z


def _add(p: _Point, q: _Point) -> _Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: _Point) -> _Point:
    q: _Point = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(p: _Point, q: _Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _decode(encoded: bytes) -> _Point | None:
    y = int.from_bytes(encoded, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_BY = 4 * pow(5, _P - 2, _P) % _P
_BX = _x(_BY, 0)
assert _BX is not None
_B: _Point = (_BX, _BY, 1, _BX * _BY % _P)


def verify_ed25519ph(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when `signature` is an Ed25519ph signature of `message` (empty context) by `public_key`."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a, r = _decode(public_key), _decode(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(_DOM2_PH + signature[:32] + public_key + hashlib.sha512(message).digest())
                       .digest(), "little") % _L
    return _equal(_mul(s, _B), _add(r, _mul(k, a)))
