"""Version orderings of the scanner (ncr_trio.scan.versions, ncr_trio.scan.apk) against the tools' own.

- apk: every line of apk-tools' test/unit/version.data (orders, fuzzy matches, validity);
- Debian: python-debian agrees with `dpkg --compare-versions` on ~3,000 pairs of real versions taken
  from this machine's dpkg database (package versions and the versions in its dependency fields);
- RPM, PEP 440, npm and Go: the documented rules on a few known orderings.
"""

from __future__ import annotations

import random
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ncr_trio.scan import apk
from ncr_trio.scan.versions import VersionError, compare, go_semver, parse

DATA = Path(__file__).parent / "data"
DPKG_STATUS = Path("/var/lib/dpkg/status")

_ACCEPT = {"<": {-1}, ">": {1}, "=": {0}, "~": {0}, "<~": {-1, 0}, ">~": {1, 0}}


def _apk_vectors() -> list[str]:
    lines = []
    for raw in (DATA / "apk-version.data").read_text().splitlines():
        if raw.startswith("# "):
            continue  # the attribution header
        line = raw.split("#", 1)[0].strip()
        if line or raw.strip() == "!":
            lines.append(line)
    return lines


def _apk_holds(line: str) -> bool:
    parts = line.split()
    if len(parts) == 3:
        a, op, b = parts
        inverted = op.startswith("!")
        op = op.removeprefix("!")
        result = apk.fuzzy_compare(a, b) if "~" in op else apk.compare(a, b)
        return (result in _ACCEPT[op]) != inverted
    text = line
    inverted = text.startswith("!")
    return apk.is_valid(text.removeprefix("!")) != inverted


def test_apk_vectors_all_hold() -> None:
    vectors = _apk_vectors()
    assert len(vectors) > 750
    failing = [line for line in vectors if not _apk_holds(line)]
    assert failing == []


def test_apk_orders_are_antisymmetric_on_the_vectors() -> None:
    # every ordered pair also holds the other way round (b > a for a < b)
    for line in _apk_vectors():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("<", ">", "="):
            a, _, b = parts
            assert apk.compare(b, a) == -apk.compare(a, b), line


def test_apk_through_the_ecosystem_names() -> None:
    assert compare("Alpine:v3.4", "1.0.2h-r1", "1.0.2i-r0") == -1
    assert compare("Alpine:v3.4", "1.0.2h-r1", "1.0.2h-r1") == 0
    with pytest.raises(VersionError):
        parse("Alpine:v3.4", "1.0bc")


def _dpkg_versions() -> list[str]:
    text = DPKG_STATUS.read_text(errors="replace")
    found = set(re.findall(r"^Version: (\S+)$", text, re.MULTILINE))
    found |= set(re.findall(r"\((?:<<|<=|=|>=|>>) ([^)\s]+)\)", text))
    return sorted(found)


def test_debian_agrees_with_dpkg() -> None:
    dpkg = shutil.which("dpkg")
    if dpkg is None or not DPKG_STATUS.exists():
        pytest.skip("dpkg is not installed")
    versions = _dpkg_versions()
    assert len(versions) > 500
    ordered = sorted(versions, key=lambda v: parse("Debian", v))
    rng = random.Random(13)
    pairs = list(zip(ordered, ordered[1:], strict=False))
    pairs += [(rng.choice(versions), rng.choice(versions)) for _ in range(1500)]
    assert len(pairs) > 2000
    # One dpkg run per pair asks whether the relation python-debian claims holds (lt, eq or gt are
    # exclusive, so a yes means full agreement); all of them in one shell, one status line each.
    ops = {-1: "lt", 0: "eq", 1: "gt"}
    claims = [(a, ops[compare("Debian", a, b)], b) for a, b in pairs]
    script = "".join(f"{dpkg} --compare-versions {shlex.quote(a)} {op} {shlex.quote(b)}; echo $?\n"
                     for a, op, b in claims)
    out = subprocess.run(["sh"], input=script, capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == len(claims)
    disagreements = [claim for claim, status in zip(claims, out, strict=True) if status != "0"]
    assert disagreements == []
    assert {op for _, op, _ in claims} >= {"lt", "gt"}


def test_rpm_epoch_release_and_tilde() -> None:
    assert compare("Red Hat", "1:1.0-1.el9", "2.0-1.el9") == 1
    assert compare("Red Hat", "1.0-2.el9", "1.0-10.el9") == -1
    assert compare("AlmaLinux:9", "1.0~rc1-1", "1.0-1") == -1
    assert compare("Rocky Linux", "1.0a-1", "1.0-1") == 1


def test_pep440_and_semver() -> None:
    assert compare("PyPI", "2.0.6", "2.0.7") == -1
    assert compare("PyPI", "2.0.0rc1", "2.0.0") == -1
    assert compare("PyPI", "1.0.post1", "1.0") == 1
    assert compare("npm", "1.2.3-beta.2", "1.2.3-beta.11") == -1
    assert compare("npm", "1.10.0", "1.9.9") == 1
    with pytest.raises(VersionError):
        parse("PyPI", "not a version")


def test_go_versions_pseudo_versions_and_toolchains() -> None:
    assert go_semver("go1.19.8") == "1.19.8"
    assert go_semver("go1.21rc2") == "1.21.0-rc.2"
    assert go_semver("go1.20") == "1.20.0"
    assert compare("Go", "go1.19.8", "1.19.9") == -1
    assert compare("Go", "v1.2.3", "1.2.3") == 0
    assert compare("Go", "v0.0.0-20210101120000-abcdef123456", "v0.1.0") == -1
    assert compare("Go", "v0.0.0-20210101120000-abcdef123456", "v0.0.0-20220101120000-abcdef123456") == -1
    assert compare("Go", "v2.0.0+incompatible", "v1.9.0") == 1
    assert compare("Go", "go1.21rc2", "1.21.0") == -1
