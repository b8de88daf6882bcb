"""schemathesis hooks of tests/test_openapi.py, loaded by `st run` (its config's `hooks`).

Generated names, digests and IDs almost never name stored data, so list, get and delete operations
would only ever answer 404. `NCR_OPENAPI_LIVE` (JSON, see `seed` in tests/test_openapi.py: path
parameter -> values naming stored things, under "*" for every operation and under "METHOD /path" for
one) is mixed into the generated path parameters: each one is either what schemathesis generated or
one of those values (Hypothesis picks, deterministically under `deterministic = true`). `{id}` names
a cleanup policy, a protection policy or a cleanup run depending on the operation, so its values are
only ever given per operation.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st

LIVE: dict[str, dict[str, list[str]]] = json.loads(os.environ.get("NCR_OPENAPI_LIVE", "{}"))


@schemathesis.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    if not path_parameters:
        return st.just(path_parameters)
    op = context.operation
    own = LIVE.get(f"{op.method.upper()} {op.path}", {}) if op is not None else {}
    values = {**LIVE.get("*", {}), **own}
    return st.fixed_dictionaries({
        name: st.sampled_from([*values[name], value]) if name in values else st.just(value)
        for name, value in path_parameters.items()
    })


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    """Never `DELETE /users/admin`: the server refuses to delete the last system administrator (409),
    but a `POST /users` of the run may have made another one, and then the run's own credentials would
    go (every later request answering 401, then 429). tests/test_openapi.py checks the 409 itself."""
    op = case.operation
    return not (op.method.upper() == "DELETE" and op.path == "/api/v1/users/{user}"
                and case.path_parameters is not None and case.path_parameters.get("user") == "admin")
