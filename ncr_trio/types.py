"""Pure value types of the registry: digests, repository names, tags, references, media types."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, TypeAlias, overload

from ncr_trio.errors import RegistryError

# Anything with the buffer protocol that the hasher and os.pwritev take (collections.abc.Buffer is 3.12+).
Buffer: TypeAlias = bytes | bytearray | memoryview

# distribution-spec "Pulling manifests": <name> and <reference> grammars.
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
NAME_MAX = 255  # the spec's recommended limit, and the NCR guide's
# A registry's (and an image cache's) name: the guide's rules for one path component, at most 64 characters.
REGISTRY_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
REGISTRY_NAME_MAX = 64

_ENCODED_LEN = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, order=True)
class Digest:
    """An OCI content digest, `algorithm:hex`; only sha256 and sha512 are accepted."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, encoded = text.partition(":")
        expected = _ENCODED_LEN.get(algorithm)
        if not sep or expected is None:
            raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm in {text[:80]!r}")
        if len(encoded) != expected or not _HEX.fullmatch(encoded):
            raise RegistryError("DIGEST_INVALID", f"invalid {algorithm} digest {text[:160]!r}")
        return cls(algorithm, encoded)

    @classmethod
    def is_digest(cls, text: str) -> bool:
        return ":" in text

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def validate_name(name: str) -> str:
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise RegistryError(
            "NAME_INVALID",
            "repository names are lower-case letters, digits and the separators . _ - /, "
            f"at most {NAME_MAX} characters",
            detail={"name": name[:300]},
        )
    return name


def validate_registry_name(name: str, what: str = "registry") -> str:
    """A registry's name (`what` names what else follows the same rules: "image cache")."""
    if not name or len(name) > REGISTRY_NAME_MAX or REGISTRY_NAME_RE.fullmatch(name) is None:
        raise RegistryError(
            "INVALID_REQUEST",
            f"invalid {what} name {name[:80]!r}: use 1 to {REGISTRY_NAME_MAX} lower-case letters and digits, "
            "separated by '.', '_', '__' or '-' (not at the start or end)")
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise RegistryError(
            "TAG_INVALID",
            "tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
            detail={"tag": tag[:300]},
        )
    return tag


def parse_reference(reference: str) -> Digest | str:
    """A manifest reference is a digest (contains ':') or a tag."""
    if Digest.is_digest(reference):
        return Digest.parse(reference)
    return validate_tag(reference)


class MediaType:
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_EMPTY = "application/vnd.oci.empty.v1+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    OCTET_STREAM = "application/octet-stream"

    IMAGES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
    INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
    MANIFESTS = IMAGES | INDEXES


JSON_MAX_DEPTH = 64  # a manifest nests 4 or 5 levels; Python's parser recurses once per level
# A JSON string, or what is left of the text after an opening quote with no closing one: never
# fails to match, so it never backtracks (linear time on any input).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def load_json(content: bytes | str, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """`json.loads` for what a client sent: UTF-8 only, and a ValueError rather than a RecursionError
    for arrays and objects nested deeper than `max_depth`, found before parsing, in linear time: the
    running depth over the brackets outside strings."""
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    if text.count("[") + text.count("{") > max_depth:
        brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
        if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > max_depth:
            raise ValueError(f"arrays and objects nested deeper than {max_depth} levels")
    return json.loads(text)


@overload
def iso_time(t: float) -> str: ...
@overload
def iso_time(t: None) -> None: ...
def iso_time(t: float | None) -> str | None:
    """Unix seconds as the API and webhooks write times: ISO 8601 in UTC with a "Z"."""
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


__all__ = [
    "Buffer",
    "NAME_MAX",
    "NAME_RE",
    "REGISTRY_NAME_MAX",
    "REGISTRY_NAME_RE",
    "TAG_RE",
    "Digest",
    "JSON_MAX_DEPTH",
    "MediaType",
    "iso_time",
    "load_json",
    "parse_reference",
    "validate_name",
    "validate_registry_name",
    "validate_tag",
]
