"""The package's layers import only downwards: the data flow of a push reads from the layout."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ncr_trio"

# Lower layers first; a module may import from its own layer or any layer before it.
LAYERS = [
    {"errors", "types", "config", "networks", "concurrency", "hashing", "_native", "memory", "patterns", "cron", "files", "sealing",
     "metrics", "changes"},
    {"storage"},
    {"meta"},
    {"auth"},
    {"registry", "cache", "replication", "scan", "trust"},
    {"http", "background", "scheduler"},
    {"serve", "client", "cli", "__main__"},
]


# Replication's shared vocabulary sits low: the metadata store records it (meta/replication.py).
VOCABULARY = {"replication.model": 0, "replication.filters": 0}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.startswith("ncr_trio.") else module
    sub = ".".join(module.split(".")[1:3])
    if sub in VOCABULARY:
        return VOCABULARY[sub]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"ncr_trio.{top} belongs to no layer: add it to LAYERS")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ncr_trio"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ncr_trio"))
    return {m for m in found if m != "ncr_trio"}


def test_every_module_imports_only_from_its_layer_or_below() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module == "ncr_trio.__init__":
            continue
        own = layer_of(module)
        for target in imports(path):
            if layer_of(target) > own:
                violations.append(f"{module} imports {target}")
    assert not violations, "\n".join(violations)
