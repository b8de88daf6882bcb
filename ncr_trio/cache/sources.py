"""Source registries an image cache pulls from: the guide's eight types, and how an image's path in a
cache-type registry maps to its path at the source.

Every type speaks the registry API and follows the source's `WWW-Authenticate` challenge; the types
differ only in how the access ID and secret become credentials (cache/upstream.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# type -> what the guide calls it
SOURCE_TYPES: dict[str, str] = {
    "ncr": "NHN Container Registry (another ncr-trio)",
    "ecr": "Amazon Elastic Container Registry",
    "acr": "Azure Container Registry",
    "gcr": "Google Cloud Container Registry / Artifact Registry",
    "dockerhub": "Docker Hub",
    "registry": "Docker Registry (CNCF Distribution)",
    "harbor": "Harbor",
    "quay": "Quay",
}


@dataclass(frozen=True)
class Source:
    """What fetching from a source needs: an image cache's settings, its secret in the clear (in memory only)."""

    name: str
    type: str
    url: str  # scheme://host[:port], no path
    access_id: str = ""
    access_secret: str = ""
    endpoint: str = ""  # ECR only: the API endpoint (default: https://api.ecr.<region>.amazonaws.com)
    ca_cert: str = ""  # PEM: certificates trusted for an https URL besides the system's (a remote registry's)
    insecure: bool = False  # https without verifying the certificate (only when asked for explicitly)


def source_repository(source_type: str, path: str) -> str:
    """The repository at the source for `path`, the part of a cached image's name after its registry.

    Official and single-level images are addressed under `library/` (`<cache>/library/hello-world`);
    Docker Hub also takes a one-segment name as an official image, as docker does."""
    if source_type == "dockerhub" and "/" not in path:
        return f"library/{path}"
    return path


__all__ = ["SOURCE_TYPES", "Source", "source_repository"]
