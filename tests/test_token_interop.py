"""ncr-trio's tokens follow the Docker token spec as CNCF Distribution implements it.

A real Distribution (2.8.2, Debian's `docker-registry`; 3.1.1, the pinned `registry-v3`) runs with token auth
whose realm is a running ncr-trio's `/auth/token` and which trusts ncr-trio's signing key (a self-signed
certificate of <data>/keys/token-signing-key.pem as `rootcertbundle`; 3.x also `jwks`: see
`tests.support.server.distribution_token_auth`). Distribution never talks to ncr-trio: clients fetch tokens there
with an ncr-trio access key and Distribution verifies them offline (ES256 signature by the trusted key, `iss`,
`aud`, times), then grants exactly the `access` claim. So a push and pull through Distribution with a real client
show that ncr-trio's tokens carry what Distribution needs; a pull-only token and a service viewer's login show
that the scopes ncr-trio grants are the ones Distribution enforces.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.auth import BearerAuth, token
from tests.support.clients import (
    Clients,
    clients_watching,
    find_tool,
    layout_blobs,
    layout_entry,
    make_image,
    write_layout,
)
from tests.support.oci import digest, image
from tests.support.server import (
    REGISTRY_V2,
    REGISTRY_V3,
    TOKEN_KEY,
    Distribution,
    Server,
    distribution_token_auth,
    distribution_with_token_auth,
    token_realm,
)

pytestmark = pytest.mark.clients

REGISTRY = "interop"  # the ncr-trio registry (namespace) the repositories below are in
VERSIONS = {"2.8.2": REGISTRY_V2, "3.1.1": REGISTRY_V3}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def installed(binary: str) -> bool:
    return find_tool(binary) is not None


@pytest.fixture(scope="module")
def ncr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(data=tmp_path_factory.mktemp("interop-ncr") / "data", registries=(REGISTRY,)).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def keys(ncr: Server) -> dict[str, tuple[str, str]]:
    """ncr-trio access keys (id, secret) of an image uploader (pull, push) and a service viewer (pull) on REGISTRY."""
    out = {}
    for user, role in (("uploader", "image-uploader"), ("viewer", "service-viewer")):
        key = ncr.new_user(user, {REGISTRY: role}, key="interop")
        out[user] = (key["id"], key["secret"])
    return out


@pytest.fixture(scope="module", params=list(VERSIONS), ids=[f"distribution-{v}" for v in VERSIONS])
def dist(request: pytest.FixtureRequest, ncr: Server, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Distribution]:
    binary = VERSIONS[request.param]
    if not installed(binary):
        pytest.skip(f"{binary} is not installed (`make tools` builds registry-v3)")
    # 2.8.2 finds the key in rootcertbundle alone (by the libtrust `kid`); 3.x needs jwks for that kid.
    d = distribution_with_token_auth(tmp_path_factory.mktemp(f"interop-{request.param}"), ncr, binary)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def clients(ncr: Server, tmp_path: Path) -> Iterator[Clients]:
    """Logged out; afterwards ncr-trio must not have logged an error (a token request that failed inside)."""
    yield from clients_watching(ncr, tmp_path, logged_in=False)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def challenge_error(r: httpx.Response) -> str:
    """The `error` of a response's Bearer challenge ("" if it names none)."""
    m = re.search(r',error="([^"]*)"', r.headers.get("www-authenticate", ""))
    return m[1] if m else ""


def signing_key(ncr: Server) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((ncr.data / TOKEN_KEY).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def resign(tok: str, key: ec.EllipticCurvePrivateKey, *, kid: str | None = None, **claims: object) -> str:
    """`tok`'s claims (changed by `claims`) signed again with `key`, with its `kid` unless told otherwise."""
    header = jwt.get_unverified_header(tok)
    payload = {**jwt.decode(tok, options={"verify_signature": False}), **claims}
    return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid or header["kid"], "typ": "JWT"})


def skopeo_login(c: Clients, host: str, creds: tuple[str, str], *, check: bool = True
                 ) -> subprocess.CompletedProcess[str]:
    return c.run("skopeo", "login", "--tls-verify=false", "--username", creds[0], "--password-stdin", host,
                 input=creds[1], check=check)


# -- the challenge ----------------------------------------------------------------------------------


def test_anonymous_requests_are_challenged_to_ncr_trios_token_service(dist: Distribution, ncr: Server) -> None:
    r = httpx.get(f"{dist.url}/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Bearer realm="{token_realm(ncr)}",service="ncr-trio"'
    # The very challenge ncr-trio itself sends when asked by that name: same realm, same service.
    assert httpx.get(f"http://localhost:{ncr.port}/v2/").headers["www-authenticate"] == r.headers["www-authenticate"]
    r = httpx.post(f"{dist.url}/v2/{REGISTRY}/app/blobs/uploads/")
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    # Distribution lists the actions in Go map order (push,pull or pull,push): compare them as a set.
    head, _, actions = r.headers["www-authenticate"].rpartition(":")
    assert head == f'Bearer realm="{token_realm(ncr)}",service="ncr-trio",scope="repository:{REGISTRY}/app'
    assert set(actions.rstrip('"').split(",")) == {"pull", "push"}


# -- a real client, logged in with an ncr-trio access key ---------------------------------------------


@pytest.mark.skipif(not installed("skopeo") or not installed("crane"), reason="needs skopeo and crane")
def test_client_logs_in_with_an_access_key_pushes_and_pulls(dist: Distribution, ncr: Server, clients: Clients,
                                                             keys: dict[str, tuple[str, str]]) -> None:
    c, repo = clients, f"{dist.host}/{REGISTRY}/app"
    uploader = keys["uploader"]
    # A wrong secret: ncr-trio refuses the token, so the login to Distribution fails.
    assert skopeo_login(c, dist.host, (uploader[0], "not-the-secret"), check=False).returncode != 0
    # skopeo checks a login: GET /v2/ on Distribution -> challenge -> token from ncr-trio -> GET /v2/ with it.
    skopeo_login(c, dist.host, uploader)

    img = make_image("interop", n_layers=2, extra_file_bytes=50_000)
    write_layout(c.path("src"), "v1", [img])
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('src')}:v1", f"docker://{repo}:v1")
    raw = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:v1").stdout
    assert raw.encode() == img.manifest
    c.run("skopeo", "copy", "--src-tls-verify=false", f"docker://{repo}:v1", f"oci:{c.path('out')}:v1")
    assert layout_blobs(c.path("out")) == layout_blobs(c.path("src"))
    assert layout_entry(c.path("out"), "v1")["digest"] == img.digest

    # crane, with the same access key in docker's config.json, pulls it too.
    c.run("crane", "auth", "login", dist.host, "--username", uploader[0], "--password-stdin", input=uploader[1])
    assert c.run("crane", "digest", "--insecure", f"{repo}:v1").stdout.strip() == img.digest
    assert c.run("crane", "manifest", "--insecure", f"{repo}:v1").stdout.encode() == img.manifest

    # The tokens came from ncr-trio: it logged the key's logins (Distribution trusts no other issuer anyway).
    logins = [e for e in ncr.api().doc("api.audit", actor="uploader", action="login", limit=100)["entries"] if e["outcome"] == "ok"]
    assert logins, "ncr-trio issued no token to the uploader"
    # Distribution stored it: read back with a pull token of ncr-trio's, straight over HTTP.
    tok = token(ncr.url, *uploader, f"repository:{REGISTRY}/app:pull")
    r = httpx.get(f"{dist.url}/v2/{REGISTRY}/app/manifests/v1", headers={"Accept": OCI_MANIFEST, **bearer(tok)})
    assert r.status_code == 200 and r.content == img.manifest


# -- scopes ncr-trio grants are the ones Distribution enforces ----------------------------------------


def test_a_pull_only_token_cannot_push(dist: Distribution, ncr: Server, keys: dict[str, tuple[str, str]]) -> None:
    uploads = f"{dist.url}/v2/{REGISTRY}/scoped/blobs/uploads/"
    pull_only = token(ncr.url, *keys["uploader"], f"repository:{REGISTRY}/scoped:pull")
    assert jwt.decode(pull_only, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": f"{REGISTRY}/scoped", "actions": ["pull"]}]
    r = httpx.post(uploads, headers=bearer(pull_only))
    assert r.status_code == 401 and challenge_error(r) == "insufficient_scope"
    blob = b"pull-only token"
    r = httpx.post(uploads, params={"digest": "sha256:" + hashlib.sha256(blob).hexdigest()}, content=blob,
                   headers=bearer(pull_only))
    assert r.status_code == 401 and challenge_error(r) == "insufficient_scope"
    # The token is valid (a pull is fine), and the same key's pull,push token may push.
    assert httpx.get(f"{dist.url}/v2/", headers=bearer(pull_only)).status_code == 200
    r = httpx.head(f"{dist.url}/v2/{REGISTRY}/scoped/blobs/sha256:{hashlib.sha256(blob).hexdigest()}",
                   headers=bearer(pull_only))
    assert r.status_code == 404  # authorised, just not there
    push = token(ncr.url, *keys["uploader"], f"repository:{REGISTRY}/scoped:pull,push")
    assert httpx.post(uploads, headers=bearer(push)).status_code == 202
    # ...but only on the repository it names.
    r = httpx.post(f"{dist.url}/v2/{REGISTRY}/other/blobs/uploads/", headers=bearer(push))
    assert r.status_code == 401 and challenge_error(r) == "insufficient_scope"


@pytest.mark.skipif(not installed("skopeo"), reason="needs skopeo")
def test_a_service_viewer_pulls_but_cannot_push(dist: Distribution, ncr: Server, clients: Clients,
                                                keys: dict[str, tuple[str, str]]) -> None:
    c, repo = clients, f"{REGISTRY}/viewed"
    img = image("viewed")
    with httpx.Client(base_url=dist.url, auth=BearerAuth(ncr.url, *keys["uploader"], actions="pull,push"),
                      timeout=30) as uploader:
        for blob in img.blobs.values():  # POST, then PUT ?digest= (Distribution has no single-POST upload)
            r = uploader.post(f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202, r.text
            location = r.headers["location"]  # keeps Distribution's _state query as it is
            r = uploader.put(f"{location}{'&' if '?' in location else '?'}digest={digest(blob)}", content=blob)
            assert r.status_code == 201, r.text
        r = uploader.put(f"/v2/{repo}/manifests/v1", content=img.manifest, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
    skopeo_login(c, dist.host, keys["viewer"])  # a valid login: the viewer may read
    info = c.json("skopeo", "inspect", "--tls-verify=false", f"docker://{dist.host}/{repo}:v1")
    assert info["Digest"] == img.digest
    write_layout(c.path("src"), "v2", [make_image("viewer-push")])
    refused = c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{c.path('src')}:v2",
                    f"docker://{dist.host}/{repo}:v2", check=False)
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "denied" in refused.stderr.lower(), refused.stderr
    # ncr-trio granted the viewer pull only, whatever was asked.
    tok = token(ncr.url, *keys["viewer"], f"repository:{repo}:pull,push")
    assert jwt.decode(tok, options={"verify_signature": False})["access"][0]["actions"] == ["pull"]
    r = httpx.get(f"{dist.url}/v2/{repo}/tags/list", headers=bearer(tok))
    assert r.status_code == 200 and r.json()["tags"] == ["v1"]


# -- Distribution really checks what it accepts ------------------------------------------------------


def test_distribution_checks_the_signature_issuer_and_audience(dist: Distribution, ncr: Server,
                                                               keys: dict[str, tuple[str, str]]) -> None:
    """Without this, the tests above could pass against a Distribution that took any token."""
    uploads = f"{dist.url}/v2/{REGISTRY}/checked/blobs/uploads/"
    tok = token(ncr.url, *keys["uploader"], f"repository:{REGISTRY}/checked:pull,push")
    key = signing_key(ncr)
    assert httpx.post(uploads, headers=bearer(resign(tok, key))).status_code == 202  # re-signing itself is fine
    forged = resign(tok, ec.generate_private_key(ec.SECP256R1()))  # ncr-trio's kid, another key
    now = int(time.time())
    bad = {"forged signature": forged, "audience": resign(tok, key, aud="other-service"),
           "issuer": resign(tok, key, iss="other-issuer"),
           "expired": resign(tok, key, exp=now - 3600, nbf=now - 7200, iat=now - 7200)}
    for what, b in bad.items():
        r = httpx.post(uploads, headers=bearer(b))
        # 3.1.1 names no error for a bad signature (go-jose's error is not its ErrInvalidToken); never a scope one.
        assert r.status_code == 401 and challenge_error(r) in ("invalid_token", ""), (what, r.headers)


# -- how 3.x looks keys up -----------------------------------------------------------------------------


def _go_jwk_thumbprint(public: ec.EllipticCurvePublicKey) -> str:
    """Distribution 3's GetJWKThumbprint (registry/auth/token/util.go) of a P-256 key: RFC 7638 over
    crv/kty/x/y, with the coordinates as Go's big.Int.Bytes() gives them (no leading zero bytes)."""
    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    nums = public.public_numbers()
    payload = f'{{"crv":"P-256","kty":"EC","x":"{b64(nums.x)}","y":"{b64(nums.y)}"}}'
    return base64.urlsafe_b64encode(hashlib.sha256(payload.encode()).digest()).rstrip(b"=").decode()


@pytest.mark.skipif(not installed("registry-v3"), reason="registry-v3 is not installed (`make tools`)")
def test_distribution_3_keys_its_rootcertbundle_by_jwk_thumbprint_so_it_needs_jwks(
        ncr: Server, keys: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    """Why the 3.x fixture also configures `jwks`: with the certificate alone, 3.1.1 does not find ncr-trio's
    libtrust `kid` (it files the bundle's keys under their RFC 7638 thumbprints), though it has the key."""
    auth = distribution_token_auth(ncr.url, ncr.data, tmp_path / "auth", jwks=False)
    d = Distribution(root=tmp_path / "v3", binary="registry-v3", auth_token=auth).start()
    try:
        uploads = f"{d.url}/v2/{REGISTRY}/thumbprint/blobs/uploads/"
        tok = token(ncr.url, *keys["uploader"], f"repository:{REGISTRY}/thumbprint:pull,push")
        r = httpx.post(uploads, headers=bearer(tok))
        assert r.status_code == 401 and challenge_error(r) == "invalid_token"
        key = signing_key(ncr)
        renamed = resign(tok, key, kid=_go_jwk_thumbprint(key.public_key()))
        assert httpx.post(uploads, headers=bearer(renamed)).status_code == 202
    finally:
        d.stop()
    # What `jwks` gives 3.x instead: ncr-trio's published key set, under the kid its tokens carry.
    (jwk,) = json.loads(httpx.get(f"{ncr.url}/auth/jwks.json").text)["keys"]
    assert jwk["kid"] == jwt.get_unverified_header(tok)["kid"] and jwk["alg"] == "ES256"
