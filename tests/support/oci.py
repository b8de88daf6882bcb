"""Build OCI content in memory and push it over the plain distribution API (for tests)."""

from __future__ import annotations

import hashlib
import json
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
          subject: dict[str, Any] | None = None, artifact_type: str | None = None) -> Image:
    os_, arch = platform
    config = canonical({"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed})
    layer_blobs = [f"{seed}-layer-{i}".encode() * 50 for i in range(layers)]
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


def push_manifest(client: httpx.Client, repo: str, reference: str, body: bytes,
                  media_type: str = OCI_MANIFEST) -> httpx.Response:
    return client.put(f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type})


def push_image(client: httpx.Client, repo: str, img: Image, tag: str) -> str:
    for blob in img.blobs.values():
        push_blob(client, repo, blob)
    r = push_manifest(client, repo, tag, img.manifest)
    assert r.status_code == 201, r.text
    return img.digest
