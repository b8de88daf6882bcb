"""Bearer tokens: round trip, the clock checks, audience, forgeries, the persisted key."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ncr_trio.auth.scopes import Scope, parse_scopes
from ncr_trio.auth.tokens import KEY_FILE, LEEWAY_SECONDS, KeyFileError, TokenError, TokenIssuer, libtrust_key_id

T0 = 1_800_000_000


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, clock: Clock | None = None, lifetime: float = 300) -> TokenIssuer:
    return TokenIssuer(tmp_path / "keys", "ncr-token", "ncr-registry", lifetime, clock=clock or Clock())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> list[dict[str, object]]:
    head, body, _ = token.split(".")
    return [json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in (head, body)]


ACCESS = parse_scopes(["repository:team/app:pull,push", "repository(plugin):localhost:5000/x:pull"])


def test_round_trip(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    token, expires_in, issued_at = issuer.issue("alice", ACCESS)
    assert expires_in == 300
    assert issued_at.timestamp() == T0 and issued_at.utcoffset() is not None
    claims = issuer.verify(token, "ncr-registry")
    assert (claims.issuer, claims.subject, claims.audience) == ("ncr-token", "alice", "ncr-registry")
    assert (claims.issued_at, claims.not_before, claims.expires_at) == (T0, T0, T0 + 300)
    assert claims.access == tuple(ACCESS)
    header, payload = segments(token)
    assert header == {"alg": "ES256", "typ": "JWT", "kid": issuer.kid}
    assert payload["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "localhost:5000/x", "actions": ["pull"], "class": "plugin"},
    ]
    assert isinstance(payload["jti"], str) and payload["jti"] != segments(issuer.issue("alice", ACCESS)[0])[1]["jti"]


def test_empty_access_is_still_a_token(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    assert issuer.verify(issuer.issue("anonymous", [])[0], "ncr-registry").access == ()


def test_expiry(tmp_path: Path) -> None:
    clock = Clock()
    issuer = make(tmp_path, clock)
    token, _, _ = issuer.issue("alice", ACCESS)
    clock.now = T0 + 300 + LEEWAY_SECONDS
    issuer.verify(token, "ncr-registry")
    clock.now = T0 + 300 + LEEWAY_SECONDS + 1
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token, "ncr-registry")


def test_not_before(tmp_path: Path) -> None:
    clock = Clock(T0 + 3600)
    issuer = make(tmp_path, clock)
    token, _, _ = issuer.issue("alice", ACCESS)
    clock.now = T0
    with pytest.raises(TokenError, match="not valid yet"):
        issuer.verify(token, "ncr-registry")
    clock.now = T0 + 3600 - LEEWAY_SECONDS
    issuer.verify(token, "ncr-registry")


def test_wrong_audience(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    token, _, _ = issuer.issue("alice", ACCESS)
    with pytest.raises(TokenError):
        issuer.verify(token, "another-registry")


def test_wrong_issuer(tmp_path: Path) -> None:
    other = TokenIssuer(tmp_path / "keys", "someone-else", "ncr-registry", clock=Clock())
    with pytest.raises(TokenError):
        make(tmp_path).verify(other.issue("alice", ACCESS)[0], "ncr-registry")


def test_token_signed_by_another_key(tmp_path: Path) -> None:
    ours = make(tmp_path)
    theirs = TokenIssuer(tmp_path / "other", "ncr-token", "ncr-registry", clock=Clock())
    token, _, _ = theirs.issue("alice", ACCESS)
    with pytest.raises(TokenError):
        ours.verify(token, "ncr-registry")
    # ...even when it claims our key id
    key = ec.generate_private_key(ec.SECP256R1())
    _, payload = segments(token)
    forged = jwt.encode(payload, key, algorithm="ES256", headers={"kid": ours.kid})
    with pytest.raises(TokenError):
        ours.verify(forged, "ncr-registry")


def test_modified_payload(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    token, _, _ = issuer.issue("alice", parse_scopes(["repository:team/app:pull"]))
    head, body, sig = token.split(".")
    _, payload = segments(token)
    payload["access"] = [{"type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"]}]
    tampered = ".".join([head, b64url(json.dumps(payload).encode()), sig])
    with pytest.raises(TokenError):
        issuer.verify(tampered, "ncr-registry")


def test_alg_none_and_hmac_confusion(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    token, _, _ = issuer.issue("alice", ACCESS)
    _, payload = segments(token)
    body = b64url(json.dumps(payload).encode())
    unsigned = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": issuer.kid}).encode()) + "." + body + "."
    with pytest.raises(TokenError):
        issuer.verify(unsigned, "ncr-registry")
    with pytest.raises(TokenError):
        issuer.verify(unsigned[:-1], "ncr-registry")
    hs = jwt.encode(payload, "a-secret-that-is-long-enough-for-hs256!!", algorithm="HS256",
                    headers={"kid": issuer.kid})
    with pytest.raises(TokenError):
        issuer.verify(hs, "ncr-registry")


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "e30.e30.e30"])
def test_garbage_is_a_token_error(tmp_path: Path, junk: str) -> None:
    with pytest.raises(TokenError):
        make(tmp_path).verify(junk, "ncr-registry")


def test_missing_claims_are_refused(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    _, payload = segments(issuer.issue("alice", ACCESS)[0])
    del payload["jti"]
    # re-sign with the issuer's own key: only the claim check can refuse it
    key_pem = (tmp_path / "keys" / KEY_FILE).read_bytes()
    token = jwt.encode(payload, key_pem, algorithm="ES256", headers={"kid": issuer.kid})
    with pytest.raises(TokenError):
        issuer.verify(token, "ncr-registry")


def test_lifetime_default_and_clamp(tmp_path: Path) -> None:
    assert TokenIssuer(tmp_path, "i", "s").lifetime == 12 * 3600
    clock = Clock()
    issuer = TokenIssuer(tmp_path, "i", "s", 7 * 24 * 3600, clock=clock)
    token, expires_in, _ = issuer.issue("alice", [])
    assert expires_in == 12 * 3600
    assert issuer.verify(token, "s").expires_at == T0 + 12 * 3600
    with pytest.raises(ValueError):
        TokenIssuer(tmp_path, "i", "s", 0)


def test_key_is_persisted_0600_and_reloaded(tmp_path: Path) -> None:
    first = make(tmp_path)
    path = tmp_path / "keys" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]
    token, _, _ = first.issue("alice", ACCESS)
    second = make(tmp_path)
    assert second.kid == first.kid
    assert second.verify(token, "ncr-registry").subject == "alice"
    assert second.jwks() == first.jwks()


def test_a_readable_key_file_is_refused(tmp_path: Path) -> None:
    make(tmp_path)
    (tmp_path / "keys" / KEY_FILE).chmod(0o644)
    with pytest.raises(KeyFileError):
        make(tmp_path)


def test_a_key_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    path = tmp_path / "keys" / KEY_FILE
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        make(tmp_path)


def test_kid_is_the_libtrust_fingerprint(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    groups = issuer.kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 and g.isalnum() and g.upper() == g for g in groups)
    key = ec.generate_private_key(ec.SECP256R1())
    assert libtrust_key_id(key.public_key()) != issuer.kid


def test_jwks_verifies_the_token(tmp_path: Path) -> None:
    issuer = make(tmp_path)
    token, _, _ = issuer.issue("alice", ACCESS)
    (jwk,) = issuer.jwks()["keys"]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["kid"]) == ("EC", "P-256", "ES256", issuer.kid)
    public = jwt.PyJWK(jwk).key
    payload = jwt.decode(token, public, algorithms=["ES256"], audience="ncr-registry",
                         options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    assert payload["sub"] == "alice"
    assert Scope("repository", "team/app", frozenset({"pull", "push"})) in issuer.verify(token, "ncr-registry").access
