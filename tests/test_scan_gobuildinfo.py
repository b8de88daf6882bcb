"""Go build information read from a stream agrees with `go version -m` on real binaries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ncr_trio.scan.gobuildinfo import read_buildinfo
from tests.support.server import TOOLS_BIN

GO_HOMES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")  # the toolchain, when not on PATH
BINARIES = [Path("/usr/bin/docker-registry"), TOOLS_BIN / "crane", TOOLS_BIN / "helm"]


@pytest.mark.parametrize("binary", BINARIES, ids=lambda p: p.name)
def test_buildinfo_agrees_with_go_version_m(binary: Path) -> None:
    go = shutil.which("go") or next((p for p in GO_HOMES if Path(p).exists()), None)
    if go is None or not binary.exists():
        pytest.skip(f"go or {binary} is not installed")
    out = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True, check=True).stdout
    lines = [line.strip().split("\t") for line in out.splitlines()]
    with binary.open("rb") as stream:
        info = read_buildinfo(stream)
    assert info is not None
    assert info.go_version == out.split(":", 1)[1].split()[0]
    expected_deps = []
    for fields in lines[1:]:
        if fields[0] == "dep":
            expected_deps.append((fields[1], fields[2]))
        elif fields[0] == "=>":
            expected_deps[-1] = (fields[1], fields[2])
    assert [(m.path, m.version) for m in info.deps] == expected_deps
    assert info.path == next(f[1] for f in lines[1:] if f[0] == "path")


def test_not_go() -> None:
    with Path("/bin/ls").open("rb") as stream:
        assert read_buildinfo(stream) is None
