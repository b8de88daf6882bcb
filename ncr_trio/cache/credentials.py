"""How an image cache's access ID and secret become what its source takes: a Basic login.

Every source type ends as a login (user, password) that the upstream client sends where the source's
`WWW-Authenticate` challenge says: to the token realm for `Bearer`, to the registry itself for `Basic`
(cache/upstream.py). The types differ only in how the login is made:

    ncr, registry, harbor, acr, dockerhub   the access ID and the secret, as they are
    gcr    user `_json_key`, password the service account's JSON key (the secret)
    quay   the secret is the guide's json_file, `{"account_name": ..., "docker_cli_password": ...}`:
           user account_name, password docker_cli_password
    ecr    the access ID and secret are an IAM access key: ECR's GetAuthorizationToken, signed with
           SigV4 by botocore (`ecr_call`), answers a base64 `AWS:<password>` and when it expires
           (`ecr_login`); the upstream client sends the call itself, through its egress checks, and
           keeps the login until shortly before that time

No I/O here: `check` refuses (ValueError, its message for the user) what can never work, so the
management API can answer it with a 400 when an image cache is saved.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from ncr_trio.cache.sources import SOURCE_TYPES, Source

Login = tuple[str, str]  # Basic user, password

GCR_USER = "_json_key"
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
# <account>.dkr.ecr.<region>.amazonaws.com[.cn] (the registry), api.ecr.<region>.amazonaws.com[.cn] (the API)
_ECR_REGISTRY = re.compile(r"\d{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?")
_ECR_API = re.compile(r"(?:api\.)?ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?")
_ANY_REGION = "us-east-1"  # SigV4 needs a region: an endpoint that names none (a test's moto) takes any


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ValueError(f"access_secret: {what} must be a JSON object")
    return doc


def login(source: Source) -> Login | None:
    """The Basic login of a source of any type but ECR (whose login comes from `ecr_login`); None
    when it has no secret (anonymous pulls)."""
    if source.type == "quay":
        if not source.access_secret:
            return None
        doc = _json_object(source.access_secret, 'Quay\'s json_file ({"account_name", "docker_cli_password"})')
        user, password = doc.get("account_name"), doc.get("docker_cli_password")
        if not (isinstance(user, str) and user and isinstance(password, str) and password):
            raise ValueError("access_secret: Quay's json_file needs the strings account_name and docker_cli_password")
        return user, password
    if source.type == "gcr":
        if not source.access_secret:
            return None
        _json_object(source.access_secret, "a Google service account's JSON key")
        return GCR_USER, source.access_secret
    if not source.access_id and not source.access_secret:
        return None
    if not (source.access_id and source.access_secret):
        raise ValueError("access_id and access_secret go together (or neither, for anonymous pulls)")
    return source.access_id, source.access_secret


def _url(text: str, what: str) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise ValueError(f"{what}: {text[:200]!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host or url.userinfo or url.query or url.fragment \
            or url.path not in ("", "/"):
        raise ValueError(f"{what}: {text[:200]!r} is not scheme://host[:port] (http or https, no path)")
    return url


@dataclass(frozen=True)
class Call:
    """A signed request: POST `body` to `url` with `headers`."""

    url: str
    headers: dict[str, str]
    body: bytes


def ecr_endpoint(source: Source) -> tuple[str, str]:
    """The ECR API endpoint of a source and the region its requests are signed for: the region comes
    from the registry's name (`<account>.dkr.ecr.<region>.amazonaws.com`) or the endpoint's."""
    registry = _ECR_REGISTRY.fullmatch(_url(source.url, "url").host)
    endpoint = _url(source.endpoint, "endpoint") if source.endpoint else None
    api = _ECR_API.fullmatch(endpoint.host) if endpoint is not None else None
    if registry is not None:
        region, suffix = registry.group(1), registry.group(2) or ""
    elif api is not None:
        region, suffix = api.group(1), api.group(2) or ""
    elif endpoint is not None:
        region, suffix = _ANY_REGION, ""
    else:
        raise ValueError("url: an ECR registry is <account>.dkr.ecr.<region>.amazonaws.com "
                         "(or give the API endpoint)")
    url = str(endpoint).rstrip("/") if endpoint is not None else f"https://api.ecr.{region}.amazonaws.com{suffix}"
    return url + "/", region


def ecr_call(source: Source) -> Call:
    """GetAuthorizationToken for the source's IAM access key, signed with SigV4 by botocore."""
    # botocore is imported only by caches of ECR sources (it takes a noticeable part of a second).
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url, region = ecr_endpoint(source)
    body = b"{}"
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"X-Amz-Target": ECR_TARGET, "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(source.access_id, source.access_secret), "ecr", region).add_auth(request)
    return Call(url, {k: str(v) for k, v in request.headers.items()}, body)


def ecr_login(answer: bytes) -> tuple[Login, float]:
    """The login in GetAuthorizationToken's answer, and when it expires (seconds since the epoch)."""
    try:
        data = json.loads(answer)["authorizationData"][0]
        user, sep, password = base64.b64decode(data["authorizationToken"], validate=True).decode().partition(":")
        expires_at = float(data["expiresAt"])
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as e:
        raise ValueError(f"GetAuthorizationToken answered something else than an authorization token ({e!r:.80})"
                         ) from None
    if not (sep and user and password):
        raise ValueError("GetAuthorizationToken's token is not user:password")
    return (user, password), expires_at


def check(source: Source) -> None:
    """Refuse (ValueError, a message for the user) a source that can never work: an unknown type, a URL
    that is not scheme://host[:port], credentials not in its type's shape."""
    if source.type not in SOURCE_TYPES:
        raise ValueError(f"type: {source.type[:40]!r} is none of {', '.join(SOURCE_TYPES)}")
    _url(source.url, "url")
    if source.type == "ecr":
        if not (source.access_id and source.access_secret):
            raise ValueError("an ECR source needs an IAM access key: access_id and access_secret")
        ecr_endpoint(source)
    else:
        login(source)


__all__ = ["GCR_USER", "Call", "Login", "check", "ecr_call", "ecr_endpoint", "ecr_login", "login"]
