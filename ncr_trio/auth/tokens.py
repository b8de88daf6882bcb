"""Bearer tokens of the Docker token spec: JWTs signed with ES256 (ECDSA P-256, SHA-256).

A token's claims (Docker token spec, "token.md" and "jwt.md" in distribution/distribution)::

    {"iss": issuer, "sub": account, "aud": service, "exp": ..., "nbf": ..., "iat": ...,
     "jti": random id, "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]}

The signing key is an EC P-256 key generated the first time a `TokenIssuer` is made for a
directory and kept there (PKCS#8 PEM, mode 0600); later issuers, and the other worker processes,
load the same key. The header's `kid` is the key's libtrust fingerprint, the form Distribution's
token verifier looks keys up by: SHA-256 of the DER SubjectPublicKeyInfo, truncated to 240 bits,
base32-encoded and split into twelve groups of four characters joined by ':'. The JWK set from
`jwks()` carries the same `kid`.

Verification accepts only ES256 signatures by this issuer's key; `nbf` and `exp` are checked
against the injected clock with Distribution's 60-second leeway for clock skew between nodes.
Every failure (PyJWT's exceptions included) is raised as one `TokenError`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ncr_trio.auth.scopes import Scope, access_entries
from ncr_trio.files import KeyFileError, private_file

__all__ = [
    "KEY_FILE",
    "LEEWAY_SECONDS",
    "MAX_LIFETIME_SECONDS",
    "Claims",
    "KeyFileError",
    "TokenError",
    "TokenIssuer",
    "libtrust_key_id",
]

MAX_LIFETIME_SECONDS = 12 * 3600
LEEWAY_SECONDS = 60
KEY_FILE = "token-signing-key.pem"
_ALGORITHM = "ES256"
_REQUIRED = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"]


class TokenError(Exception):
    """A bearer token that must not be honoured: malformed, forged, expired, not yet valid,
    or meant for another service."""


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims of a token; times are Unix seconds."""

    issuer: str
    subject: str
    audience: str
    expires_at: int
    not_before: int
    issued_at: int
    jwt_id: str
    access: tuple[Scope, ...]
    key_id: str | None = None  # the access key the holder logged in with ("akid"), if any


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The libtrust fingerprint of a public key (the `kid` Distribution expects)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def _b64url_uint(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


def _load_or_create_key(key_dir: Path) -> ec.EllipticCurvePrivateKey:
    """Load the directory's signing key, creating it first if there is none (`private_file`: of several
    processes starting at once, exactly one key wins and every process loads that one)."""

    def make() -> bytes:
        return ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    path = key_dir / KEY_FILE
    pem = private_file(path, make)
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise KeyFileError(f"{path} is not an EC P-256 key")
    return loaded


class TokenIssuer:
    """Issues and verifies the registry's bearer tokens.

    `lifetime` is in seconds; it defaults to, and is clamped at, 12 hours. `clock` returns Unix
    seconds (tests inject their own).
    """

    def __init__(
        self,
        key_dir: Path,
        issuer: str,
        service: str,
        lifetime: float = MAX_LIFETIME_SECONDS,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lifetime <= 0:
            raise ValueError("token lifetime must be positive")
        self.issuer = issuer
        self.service = service
        self.lifetime = int(min(lifetime, MAX_LIFETIME_SECONDS))
        self._clock = clock
        self._key = _load_or_create_key(Path(key_dir))
        self._public_key = self._key.public_key()
        self.kid = libtrust_key_id(self._public_key)

    def issue(self, subject: str, access: Iterable[Scope], key_id: str | None = None) -> tuple[str, int, datetime]:
        """A signed token for `subject` carrying exactly `access` (already granted scopes), and
        the access key it was obtained with (so revoking the key revokes the token).

        Returns (token, expires_in seconds, issued_at as an aware UTC datetime)."""
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": access_entries(access),
        }
        if key_id is not None:
            claims["akid"] = key_id
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self.kid, "typ": "JWT"})
        return token, self.lifetime, datetime.fromtimestamp(now, UTC)

    def verify(self, token: str, service: str) -> Claims:
        """The claims of `token` if this issuer signed it for `service` and it is valid now."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise TokenError("token is not signed by this registry's key")
            payload = jwt.decode(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
                audience=service,
                issuer=self.issuer,
                options={"require": _REQUIRED, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        return self._check(payload, service)

    def _check(self, payload: dict[str, Any], service: str) -> Claims:
        times = {}
        for name in ("exp", "nbf", "iat"):
            value = payload[name]
            if not isinstance(value, int) or isinstance(value, bool):
                raise TokenError(f"token claim {name!r} is not an integer")
            times[name] = value
        now = self._clock()
        if now > times["exp"] + LEEWAY_SECONDS:
            raise TokenError("token has expired")
        if now < times["nbf"] - LEEWAY_SECONDS:
            raise TokenError("token is not valid yet")
        return Claims(
            issuer=payload["iss"],
            subject=payload["sub"],
            audience=service,
            expires_at=times["exp"],
            not_before=times["nbf"],
            issued_at=times["iat"],
            jwt_id=payload["jti"],
            access=_parse_access(payload["access"]),
            key_id=payload["akid"] if isinstance(payload.get("akid"), str) else None,
        )

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK set, for a `/.well-known/jwks.json` endpoint."""
        numbers = self._public_key.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url_uint(numbers.x),
            "y": _b64url_uint(numbers.y),
            "kid": self.kid,
            "use": "sig",
            "alg": _ALGORITHM,
        }
        return {"keys": [jwk]}


def _parse_access(raw: object) -> tuple[Scope, ...]:
    if not isinstance(raw, list):
        raise TokenError("token claim 'access' is not a list")
    scopes = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise TokenError("token access entry is not an object")
        type_, name, actions, cls = entry.get("type"), entry.get("name"), entry.get("actions"), entry.get("class", "")
        if (
            not isinstance(type_, str)
            or not isinstance(name, str)
            or not isinstance(cls, str)
            or not isinstance(actions, list)
            or not all(isinstance(a, str) for a in actions)
        ):
            raise TokenError("token access entry is malformed")
        scopes.append(Scope(type_, name, frozenset(actions), cls))
    return tuple(scopes)
