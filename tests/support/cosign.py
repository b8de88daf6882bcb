"""cosign and image helpers shared by the trust tests that drive real clients against real servers:
push an image with skopeo, make a key pair, sign in each of cosign's layouts, verify with cosign, and
rewrite a `.sig` signature manifest (tampering with it, as an attacker with push rights could).

Every signature is made by the pinned cosign with `--key` and `--tlog-upload=false`: no Sigstore
service is ever reached.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.clients import OCI_MANIFEST, Clients, admin_auth, http, registry_get, sha256, write_layout
from tests.support.oci import Image, push_blob
from tests.support.server import Server

COSIGN_REGISTRY = ["--allow-insecure-registry", "--allow-http-registry"]
# cosign verify --key without Rekor, Fulcio or a network: an empty trusted root and no tlog.
EMPTY_TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                      "tlogs": [], "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}
NO_PASSWORD = {"COSIGN_PASSWORD": ""}
# layout name -> (cosign sign flags, extra environment)
LAYOUTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "tag": ([], {}),
    "referrer": (["--registry-referrers-mode=oci-1-1"], {"COSIGN_EXPERIMENTAL": "1"}),
}
# layout name -> (cosign verify flags, extra environment)
VERIFY_LAYOUTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "tag": ([], {}),
    "referrer": (["--experimental-oci11"], {"COSIGN_EXPERIMENTAL": "1"}),
}


def push(c: Clients, image: Image, ref: str) -> None:
    """`image` pushed with skopeo to `ref` (host/repository:tag)."""
    layout = c.path(f"layout-{image.digest[7:19]}")
    write_layout(layout, "t", [image])
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{ref}")


def key_pair(c: Clients, name: str) -> str:
    """A cosign key pair <name>.key/.pub in the clients' directory; answers the public key's PEM."""
    if not c.path(f"{name}.pub").exists():
        c.run("cosign", "generate-key-pair", "--output-key-prefix", name, env=NO_PASSWORD)
    return c.path(f"{name}.pub").read_text()


def sign(c: Clients, ref: str, key: str, layout: str = "tag") -> None:
    """`cosign sign --key <key>.key` of `ref` (host/repository@digest) in `layout`."""
    flags, env = LAYOUTS[layout]
    c.run("cosign", "sign", "--key", f"{key}.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY, *flags, ref,
          env={**NO_PASSWORD, **env})


def cosign_verify(c: Clients, ref: str, key: str, layout: str = "tag", *, check: bool = True) -> Any:
    """`cosign verify --key <key>.pub` of `ref` (signed in `layout`), offline: its claims (JSON), or
    the process when `check` is off."""
    flags, env = VERIFY_LAYOUTS[layout]
    root = c.path("trusted_root.json")
    root.write_text(json.dumps(EMPTY_TRUSTED_ROOT))
    done = c.run("cosign", "verify", "--insecure-ignore-tlog=true", "--trusted-root", str(root), *COSIGN_REGISTRY,
                 *flags, "--key", f"{key}.pub", ref, env={**NO_PASSWORD, **env}, check=check)
    return json.loads(done.stdout) if check else done


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-", 1) + ".sig"


def manifest_doc(server: Server, repo: str, reference: str) -> dict[str, Any]:
    r = registry_get(server, f"/v2/{repo}/manifests/{reference}", OCI_MANIFEST)
    assert r.status_code == 200, r.text
    return dict(r.json())


def blob(server: Server, repo: str, digest: str) -> bytes:
    r = registry_get(server, f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200, r.text
    return bytes(r.content)


def put_manifest(server: Server, repo: str, reference: str, doc: dict[str, Any]) -> str:
    body = json.dumps(doc).encode()
    r = http().put(f"{server.url}/v2/{repo}/manifests/{reference}", content=body,
                   headers={"Content-Type": OCI_MANIFEST}, auth=admin_auth(server))
    assert r.status_code == 201, r.text
    return sha256(body)


def put_blob(server: Server, repo: str, data: bytes) -> str:
    with server.client(auth=admin_auth(server)) as client:
        return push_blob(client, repo, data)


def with_layer(server: Server, repo: str, doc: dict[str, Any], content: bytes) -> dict[str, Any]:
    """The signature manifest `doc` with its first layer's payload replaced by `content` (pushed),
    its signature annotation kept."""
    layer = dict(doc["layers"][0])
    layer.update(digest=put_blob(server, repo, content), size=len(content))
    return {**doc, "layers": [layer]}


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    return r.json() if r.content else None


__all__ = ["COSIGN_REGISTRY", "EMPTY_TRUSTED_ROOT", "LAYOUTS", "VERIFY_LAYOUTS", "blob", "cosign_verify", "key_pair",
           "manifest_doc", "ok", "push", "put_blob", "put_manifest", "sign", "signature_tag", "with_layer"]
