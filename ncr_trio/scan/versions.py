"""Version ordering per ecosystem: the one place that knows how each packaging world sorts versions.

OSV's evaluation rules need a total order on an ecosystem's versions (events are sorted, then walked).
Each ordering here is the packaging tool's own, through a library where a correct one exists:

    Alpine            ncr_trio.scan.apk (written from apk's rules; tested on apk-tools' vectors)
    Debian, Ubuntu    python-debian's Version (dpkg's algorithm; tested against dpkg itself)
    RPM distributions univers' RpmVersion (rpmvercmp, epoch and release)
    PyPI              packaging's Version (PEP 440)
    npm, SEMVER       semver (SemVer 2.0 precedence; a leading "v" is dropped)
    Go                semver, with Go's spellings: "v1.2.3", pseudo-versions (plain SemVer
                      pre-releases), "+incompatible", and toolchain versions "go1.19.8" / "go1.21rc2"

`parse(ecosystem, text)` gives an object with Python's comparison operators, or raises VersionError
(the text is not a version of that ecosystem). `ordering(ecosystem)` is None for an ecosystem with
no known ordering: the caller can still match OSV's explicit `versions[]` by equality.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import semver
from debian.debian_support import Version as DebianVersion
from packaging.version import InvalidVersion
from packaging.version import Version as Pep440Version
from univers.versions import InvalidVersion as UniversInvalidVersion
from univers.versions import RpmVersion

from ncr_trio.scan.apk import ApkVersion, is_valid

__all__ = ["Comparable", "VersionError", "base_ecosystem", "compare", "go_semver", "ordering", "parse"]


class Comparable(Protocol):
    """What the orderings return: sortable, and equal when the ecosystem says so (`==`)."""

    def __lt__(self, other: Any, /) -> bool: ...


class VersionError(ValueError):
    """The text is not a version of the ecosystem (one exception for every library's own)."""


def base_ecosystem(ecosystem: str) -> str:
    """OSV's ecosystem without its release: "Alpine:v3.4" -> "Alpine", "Debian:12" -> "Debian"."""
    return ecosystem.split(":", 1)[0]


def _apk(text: str) -> Comparable:
    if not is_valid(text):
        raise VersionError(f"not an apk version: {text!r}")
    return ApkVersion(text)


_DEBIAN_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*")


def _debian(text: str) -> Comparable:
    # python-debian accepts some strings dpkg rejects; the upstream part must start with a digit
    if not _DEBIAN_VERSION.fullmatch(text):
        raise VersionError(f"not a Debian version: {text!r}")
    try:
        return DebianVersion(text)
    except ValueError as exc:
        raise VersionError(str(exc)) from None


def _rpm(text: str) -> Comparable:
    try:
        version: Comparable = RpmVersion(text)
    except (UniversInvalidVersion, ValueError, TypeError) as exc:
        raise VersionError(f"not an RPM version: {text!r} ({exc})") from None
    return version


def _pep440(text: str) -> Comparable:
    try:
        return Pep440Version(text)
    except InvalidVersion:
        raise VersionError(f"not a PEP 440 version: {text!r}") from None


def _semver(text: str) -> Comparable:
    try:
        version: Comparable = semver.Version.parse(text.removeprefix("v"))
    except (ValueError, TypeError):
        raise VersionError(f"not a SemVer version: {text!r}") from None
    return version


_GO_TOOLCHAIN = re.compile(r"go([0-9]+)(?:\.([0-9]+))?(?:\.([0-9]+))?(?:(beta|rc)([0-9]+))?")


def go_semver(text: str) -> str:
    """A Go version as SemVer: "v1.2.3" -> "1.2.3", "go1.19.8" -> "1.19.8", "go1.21rc2" -> "1.21.0-rc.2".

    The Go vulnerability database writes the standard library's versions in the same SemVer form.
    """
    match = _GO_TOOLCHAIN.fullmatch(text)
    if match is not None:
        major, minor, patch, pre, number = match.groups()
        core = f"{major}.{minor or 0}.{patch or 0}"
        return f"{core}-{pre}.{number}" if pre else core
    return text.removeprefix("v").removesuffix("+incompatible")


def _go(text: str) -> Comparable:
    return _semver(go_semver(text))


_RPM_FAMILY = ("Red Hat", "AlmaLinux", "Rocky Linux", "openSUSE", "SUSE", "Mageia", "openEuler", "Photon OS")
_ORDERINGS: dict[str, Callable[[str], Comparable]] = {
    "Alpine": _apk,
    "Wolfi": _apk,
    "Chainguard": _apk,
    "Debian": _debian,
    "Ubuntu": _debian,
    "PyPI": _pep440,
    "npm": _semver,
    "Go": _go,
    "SEMVER": _semver,
    **{name: _rpm for name in _RPM_FAMILY},
}


def ordering(ecosystem: str) -> Callable[[str], Comparable] | None:
    """The parser whose results sort as the ecosystem's versions do; None when unknown.

    "SEMVER" is accepted as a pseudo-ecosystem for OSV's SEMVER-typed ranges.
    """
    return _ORDERINGS.get(base_ecosystem(ecosystem))


def parse(ecosystem: str, text: str) -> Comparable:
    """The version text of the ecosystem, comparable with others of it; VersionError if invalid or unknown."""
    parser = ordering(ecosystem)
    if parser is None:
        raise VersionError(f"no version ordering for ecosystem {ecosystem!r}")
    return parser(text)


def compare(ecosystem: str, a: str, b: str) -> int:
    """-1, 0 or 1 as the ecosystem orders a and b."""
    va, vb = parse(ecosystem, a), parse(ecosystem, b)
    return -1 if va < vb else (0 if va == vb else 1)
