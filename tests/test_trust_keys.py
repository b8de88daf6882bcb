"""Trusted keys (ncr_trio.trust.keys): what cosign writes is accepted, everything else refused with a
KeyRejected (a ValueError the API turns into INVALID_REQUEST), never another exception."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from ncr_trio.trust import KeyAlgorithm, KeyRejected, parse_public_key
from ncr_trio.trust.keys import MAX_PEM_BYTES
from tests.support.clients import find_tool

SPKI = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(private: object) -> bytes:
    return private.public_key().public_bytes(*SPKI)  # type: ignore[attr-defined, no-any-return]


ACCEPTED = {
    KeyAlgorithm.ECDSA_P256: lambda: ec.generate_private_key(ec.SECP256R1()),
    KeyAlgorithm.ECDSA_P384: lambda: ec.generate_private_key(ec.SECP384R1()),
    KeyAlgorithm.ECDSA_P521: lambda: ec.generate_private_key(ec.SECP521R1()),
    KeyAlgorithm.RSA: lambda: rsa.generate_private_key(65537, 3072),
    KeyAlgorithm.ED25519: ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_supported_keys_parse_with_a_stable_id(algorithm: KeyAlgorithm) -> None:
    private = ACCEPTED[algorithm]()
    pem = public_pem(private)
    key = parse_public_key(pem)
    assert key.algorithm is algorithm
    der = private.public_key().public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.id == "sha256:" + hashlib.sha256(der).hexdigest()
    # The same key however it is pasted (CRLF, surrounding blank lines, text): the same ID and PEM.
    pasted = b"\r\n\r\n" + pem.replace(b"\n", b"\r\n") + b"\r\n"
    assert parse_public_key(pasted) == key and parse_public_key(pasted.decode()).pem == key.pem
    assert parse_public_key(key.pem) == key
    assert key.pem.encode() == pem


@pytest.mark.parametrize("private", [
    lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
    lambda: rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
    lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")),
], ids=["pkcs8", "ec-traditional", "rsa-traditional", "encrypted-pkcs8"])
def test_private_keys_are_refused(private: object) -> None:
    with pytest.raises(KeyRejected, match="private key"):
        parse_public_key(private())  # type: ignore[operator]


@pytest.mark.skipif(find_tool("cosign") is None, reason="not installed: cosign")
def test_cosign_key_pair_public_accepted_private_refused(tmp_path: Path) -> None:
    cosign = find_tool("cosign")
    assert cosign is not None
    subprocess.run([cosign, "generate-key-pair"], cwd=tmp_path, env={"COSIGN_PASSWORD": "", "HOME": str(tmp_path)},
                   check=True, capture_output=True)
    assert b"ENCRYPTED SIGSTORE PRIVATE KEY" in (tmp_path / "cosign.key").read_bytes()
    with pytest.raises(KeyRejected, match="private key"):
        parse_public_key((tmp_path / "cosign.key").read_bytes())
    assert parse_public_key((tmp_path / "cosign.pub").read_bytes()).algorithm is KeyAlgorithm.ECDSA_P256


@pytest.mark.parametrize(("private", "message"), [
    (lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1 are not supported"),
    (lambda: rsa.generate_private_key(65537, 1024), "1024 bits are not supported"),
    (lambda: dsa.generate_private_key(2048), "not supported"),
    (ed448.Ed448PrivateKey.generate, "not supported"),
    (x25519.X25519PrivateKey.generate, "not supported"),
], ids=["secp256k1", "rsa-1024", "dsa", "ed448", "x25519"])
def test_unsupported_key_types_are_refused(private: object, message: str) -> None:
    with pytest.raises(KeyRejected, match=message):
        parse_public_key(public_pem(private()))  # type: ignore[operator]


def test_garbage_is_refused() -> None:
    good = public_pem(ec.generate_private_key(ec.SECP256R1()))
    body = good.split(b"\n")[1]
    cases = {
        b"": "exactly one PEM block",
        b"hello": "exactly one PEM block",
        good + good: "exactly one PEM block",
        good.replace(body, body[:10] + b"!!" + body[12:]): "not a readable PEM public key",
        good.replace(body, body[:20]): "not a readable PEM public key",
        good.replace(b"PUBLIC KEY", b"CERTIFICATE"): "PUBLIC KEY",
        b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n": "not a readable PEM public key",
        good + b"#" * MAX_PEM_BYTES: f"at most {MAX_PEM_BYTES} bytes",
    }
    for pem, message in cases.items():
        with pytest.raises(KeyRejected, match=message):
            parse_public_key(pem)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.text(max_size=600).map(str.encode)
       | st.tuples(st.binary(max_size=100), st.binary(max_size=100)).map(
           lambda t: b"-----BEGIN PUBLIC KEY-----\n" + t[0] + b"\n-----END PUBLIC KEY-----\n" + t[1]))
def test_anything_else_is_a_key_rejected_never_another_exception(pem: bytes) -> None:
    try:
        parse_public_key(pem)
    except KeyRejected:
        pass
