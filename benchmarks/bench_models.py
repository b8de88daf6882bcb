"""Micro-benchmark: what decoding, validating and encoding one management API request costs.

    python -m benchmarks.bench_models [--rounds 20000]

The request is `POST /api/v1/registries/{registry}/cleanup/policies`: its body is decoded and
validated (unknown members refused) and a page of 50 webhooks is encoded as the answer (with msgspec:
built as the answer's model, as the handlers do). Compared:
the hand-written checks over `json` the API had before (`stdlib`), the msgspec model it uses now
(http/operations.py), and, if importable, the same model in pydantic v2 (not a dependency: put it on
PYTHONPATH to compare). Prints microseconds per request, best of five runs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ncr_trio.http import models as m

BODY = b'{"image": "tools/**", "tag": "v*", "untagged": true, "rule": "retain_pushed", "n": 10}'
ANSWER = {"webhooks": [{"id": i, "registry": "team", "name": f"hook-{i}", "kind": "http",
                        "url": "https://ci.example.com/hooks/ncr", "event_types": ["artifact.pushed", "tag.created"],
                        "enabled": True, "secret_set": True, "auth_header_set": False,
                        "created_at": "2026-12-04T12:00:00Z"} for i in range(50)],
          "total": 50, "page": 1, "per_page": 50}
FIELDS = ("image", "tag", "untagged", "rule", "n")


def stdlib() -> bytes:
    body = json.loads(BODY)
    assert isinstance(body, dict) and all(k in FIELDS for k in body)
    for key, kind, default in (("image", str, "**"), ("tag", str, "**"), ("untagged", bool, False),
                               ("rule", str, None), ("n", int, None)):
        value = body.get(key, default)
        assert isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    return json.dumps(ANSWER).encode()


def with_msgspec() -> bytes:
    """As the server does it: the body decoded by its model, the answer built as its model and encoded."""
    msgspec.json.decode(BODY, type=m.NewCleanupPolicy)
    hooks: list[dict[str, Any]] = ANSWER["webhooks"]  # type: ignore[assignment]
    return msgspec.json.encode(m.WebhookPage(total=50, page=1, per_page=50, webhooks=[m.Webhook(**h) for h in hooks]))


def pydantic_case() -> Callable[[], bytes] | None:
    try:
        import pydantic
    except ImportError:
        return None

    class Policy(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid", strict=True)
        image: str = "**"
        tag: str = "**"
        untagged: bool = False
        rule: str
        n: int

    adapter: Any = pydantic.TypeAdapter(dict[str, Any])

    def run() -> bytes:
        Policy.model_validate_json(BODY)
        return bytes(adapter.dump_json(ANSWER))

    return run


def per_call_us(fn: Callable[[], bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    cases: dict[str, Callable[[], bytes] | None] = {"stdlib": stdlib, "msgspec": with_msgspec,
                                                     "pydantic": pydantic_case()}
    for name, fn in cases.items():
        print(f"{name:9} " + (f"{per_call_us(fn, args.rounds):7.1f} µs/request" if fn else "not installed"))


if __name__ == "__main__":
    main()
