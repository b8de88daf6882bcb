"""Build OCI content in memory and push it over the plain distribution API (for tests)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class Image:
    """One single-platform OCI image held in memory: config, layers and manifest bytes."""

    config: bytes
    layers: list[bytes]
    manifest: bytes

    @property
    def digest(self) -> str:
        return digest(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        """Config and layers by digest."""
        return {digest(b): b for b in [self.config, *self.layers]}


def image(seed: str, *, platform: tuple[str, str] = ("linux", "amd64"), layers: int = 1,
          subject: dict[str, Any] | None = None, artifact_type: str | None = None,
          layer_sizes: Sequence[int] | None = None) -> Image:
    """An image whose config names `seed`; its `layers` small layers are made of the seed, or with `layer_sizes`
    one layer of random bytes per size."""
    os_, arch = platform
    config = canonical({"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed})
    layer_blobs = ([os.urandom(n) for n in layer_sizes] if layer_sizes is not None
                   else [f"{seed}-layer-{i}".encode() * 50 for i in range(layers)])
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, b) for b in layer_blobs],
    }
    if subject is not None:
        doc["subject"] = subject
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    return Image(config, layer_blobs, canonical(doc))


def index(images: list[tuple[Image, tuple[str, str]]]) -> bytes:
    return canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            descriptor(OCI_MANIFEST, img.manifest, platform={"os": os_, "architecture": arch})
            for img, (os_, arch) in images
        ],
    })


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    d = digest(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return d


def upload_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    """Push a blob as docker does, which every registry takes (Distribution has no single-POST upload): `POST`, then
    `PUT <location>?digest=` with the body."""
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["location"]  # keeps a server's own query (Distribution's _state) as it is
    d = digest(data)
    r = client.put(f"{location}{'&' if '?' in location else '?'}digest={d}", content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return d


def push_manifest(client: httpx.Client, repo: str, reference: str, body: bytes,
                  media_type: str = OCI_MANIFEST) -> httpx.Response:
    return client.put(f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type})


def push_image(client: httpx.Client, repo: str, img: Image, tag: str,
               upload: Callable[[httpx.Client, str, bytes], str] = push_blob) -> str:
    """Push the image's blobs (with `upload`), then its manifest as `tag`."""
    for blob in img.blobs.values():
        upload(client, repo, blob)
    r = push_manifest(client, repo, tag, img.manifest)
    assert r.status_code == 201, r.text
    return img.digest


@dataclass
class Pushed:
    """What `push_test_image` pushed: the manifest the tag names (an image's, or an index of `images`)."""

    manifest: bytes
    media_type: str
    images: list[Image]

    @property
    def digest(self) -> str:
        return digest(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        """Every config and layer, by digest."""
        return {d: b for img in self.images for d, b in img.blobs.items()}


def push_test_image(client: httpx.Client, repo: str, tag: str, layer_sizes: Sequence[int],
                    platforms: Sequence[tuple[str, str]] = ()) -> Pushed:
    """Push to any registry (ncr-trio or Distribution; `client` carries its base URL and auth) an image of random
    layers of `layer_sizes` as `tag`; with `platforms`, one such image per platform (each pushed by digest) and an
    OCI index of them as `tag`."""
    seed = os.urandom(8).hex()
    if not platforms:
        img = image(seed, layer_sizes=layer_sizes)
        push_image(client, repo, img, tag, upload=upload_blob)
        return Pushed(img.manifest, OCI_MANIFEST, [img])
    images = [image(f"{seed}-{os_}-{arch}", platform=(os_, arch), layer_sizes=layer_sizes) for os_, arch in platforms]
    for img in images:
        push_image(client, repo, img, img.digest, upload=upload_blob)
    body = index(list(zip(images, platforms, strict=True)))
    r = push_manifest(client, repo, tag, body, OCI_INDEX)
    assert r.status_code == 201, r.text
    return Pushed(body, OCI_INDEX, images)
