"""Package inventory of an image: its layers streamed in order, whiteouts applied, only what matters kept.

Each layer (a path or a binary stream; gzip, zstd or plain tar) is read once with tarfile's stream
mode (no seeking). The files that name packages are parsed as they stream past, and only their
parsed results are kept, keyed by path, so memory is bounded by the inventory, not by the layers:

    etc/os-release, usr/lib/os-release (fallbacks etc/alpine-release, etc/debian_version)
    var/lib/dpkg/status, var/lib/dpkg/status.d/*          Debian packages (Source: kept)
    lib/apk/db/installed, usr/lib/apk/db/installed          Alpine packages (origin kept)
    **/*.dist-info/METADATA, **/*.egg-info/PKG-INFO         Python distributions
    **/node_modules/[@scope/]name/package.json              npm packages
    executables (ELF, below MAX_EXECUTABLE)                 Go build info (gobuildinfo.py)
    rpm databases                                           noted as unsupported (not parsed yet)

Whiteouts (OCI image spec): `dir/.wh.name` removes `dir/name` (and what is below it) from the
lower layers; `dir/.wh..wh..opq` removes everything below `dir` from the lower layers. An entry of a
layer also hides what the lower layers had at its path.

Synchronous and CPU/disk bound: callers run it in a worker thread.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from ncr_trio.scan.gobuildinfo import read_buildinfo
from ncr_trio.scan.versions import go_semver

__all__ = ["ExtractError", "Inventory", "OsRelease", "Package", "inventory"]

MAX_TEXT_DATABASE = 64 << 20  # a dpkg status or apk installed file
MAX_SMALL_FILE = 1 << 20  # METADATA, PKG-INFO, package.json, os-release
MAX_EXECUTABLE = 512 << 20  # larger executables are not searched for Go build info


class ExtractError(Exception):
    """A layer that is not a readable (compressed) tar archive."""


@dataclass(frozen=True)
class OsRelease:
    id: str
    version_id: str
    pretty_name: str = ""


@dataclass(frozen=True)
class Package:
    """One installed package. `ecosystem` is OSV's ("Alpine:v3.4", "Debian:12", "PyPI", "npm", "Go");
    `source` is the name OSV's distribution records use (apk origin, dpkg Source), else the name."""

    ecosystem: str
    name: str
    version: str
    source: str
    path: str
    kind: str  # apk | dpkg | python | npm | go-stdlib | go-module


@dataclass
class Inventory:
    os: OsRelease | None
    packages: list[Package]
    unsupported: list[str] = field(default_factory=list)


# --- parsers of the kept files ----------------------------------------------------------------------

def _paragraphs(text: str) -> Iterable[str]:
    return (p for p in re.split(r"\n\s*\n", text) if p.strip())


def _dpkg(text: str) -> list[tuple[str, str, str]]:
    """(name, version, source) of the installed packages of a dpkg status file (or status.d entry)."""
    out = []
    for paragraph in _paragraphs(text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        status = fields.get("Status", "install ok installed")
        if "Package" not in fields or "Version" not in fields or not status.endswith(" installed"):
            continue
        source = fields.get("Source", fields["Package"]).split(" ", 1)[0]
        out.append((fields["Package"], fields["Version"], source))
    return out


def _apk(text: str) -> list[tuple[str, str, str]]:
    out = []
    for paragraph in _paragraphs(text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:])
        if "P" in fields and "V" in fields:
            out.append((fields["P"], fields["V"], fields.get("o", fields["P"])))
    return out


def _python(text: str) -> list[tuple[str, str, str]]:
    name = version = ""
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line
        if line.startswith("Name:"):
            name = line[5:].strip()
        elif line.startswith("Version:"):
            version = line[8:].strip()
    return [(name, version, name)] if name and version else []


def _npm(text: str) -> list[tuple[str, str, str]]:
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    if isinstance(doc, dict) and isinstance(doc.get("name"), str) and isinstance(doc.get("version"), str):
        return [(doc["name"], doc["version"], doc["name"])]
    return []


def _os_release(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


_NPM = re.compile(r"(?:^|/)node_modules/(?:@[^/]+/)?[^/]+/package\.json$")
_DPKG_STATUS_D = re.compile(r"^var/lib/dpkg/status\.d/[^/]+$")
_RPM = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite", "var/lib/rpm/Packages",
        "var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db")


def _kind_of(path: str) -> str | None:
    if path in ("etc/os-release", "usr/lib/os-release", "etc/alpine-release", "etc/debian_version"):
        return "os"
    if path == "var/lib/dpkg/status" or _DPKG_STATUS_D.match(path):
        return "dpkg"
    if path in ("lib/apk/db/installed", "usr/lib/apk/db/installed"):
        return "apk"
    if path.endswith(".dist-info/METADATA") or path.endswith(".egg-info/PKG-INFO"):
        return "python"
    if _NPM.search(path):
        return "npm"
    if path in _RPM:
        return "rpm"
    return None


_Entry = tuple[str, Any]  # (kind, parsed value)


def _read_text(stream: IO[bytes], limit: int) -> str | None:
    data = stream.read(limit + 1)
    return None if len(data) > limit else data.decode("utf-8", "replace")


def _entry(member: tarfile.TarInfo, archive: tarfile.TarFile, path: str) -> _Entry | None:
    kind = _kind_of(path)
    if kind == "rpm":
        return "rpm", path
    stream = archive.extractfile(member)
    if stream is None:
        return None
    if kind is None:
        if member.mode & 0o111 and 0 < member.size <= MAX_EXECUTABLE:
            info = read_buildinfo(stream)
            return ("go", info) if info is not None else None
        return None
    limit = MAX_TEXT_DATABASE if kind in ("dpkg", "apk") else MAX_SMALL_FILE
    text = _read_text(stream, limit)
    if text is None:
        return None
    parsers = {"dpkg": _dpkg, "apk": _apk, "python": _python, "npm": _npm}
    if kind == "os":
        return "os", (path, _os_release(text) if path.endswith("os-release") else {"_raw": text.strip()})
    return kind, parsers[kind](text)


# --- layers --------------------------------------------------------------------------------------

class _Peekable(io.RawIOBase):
    def __init__(self, raw: IO[bytes], head: bytes) -> None:
        self._raw, self._head = raw, head

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._raw.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _open_layer(raw: IO[bytes]) -> tarfile.TarFile:
    head = raw.read(4)
    stream: IO[bytes] = io.BufferedReader(_Peekable(raw, head), 1 << 20)
    if head == b"\x28\xb5\x2f\xfd":
        stream = zstandard.ZstdDecompressor().stream_reader(stream)
        return tarfile.open(fileobj=stream, mode="r|")
    return tarfile.open(fileobj=stream, mode="r|*")


def _normal(name: str) -> str:
    return os.path.normpath("/" + name).lstrip("/")


def _drop(state: dict[str, _Entry], path: str, *, below_only: bool = False) -> None:
    prefix = path + "/" if path else ""
    for key in [k for k in state if k.startswith(prefix) or (not below_only and k == path)]:
        del state[key]


def _apply_layer(state: dict[str, _Entry], raw: IO[bytes]) -> None:
    upper: dict[str, _Entry] = {}
    lower_dirs = _dirs(state)  # directories of the lower layers' kept files (the state only shrinks below)
    try:
        with _open_layer(raw) as archive:
            for member in archive:
                path = _normal(member.name)
                directory, base = os.path.split(path)
                if base == ".wh..wh..opq":
                    _drop(state, directory, below_only=True)
                    continue
                if base.startswith(".wh."):
                    _drop(state, os.path.join(directory, base[4:]))
                    continue
                state.pop(path, None)  # this layer's entry hides the lower one
                if not member.isdir() and path + "/" in lower_dirs:
                    _drop(state, path, below_only=True)
                upper.pop(path, None)
                if member.isfile():
                    entry = _entry(member, archive, path)
                    if entry is not None:
                        upper[path] = entry
    except (tarfile.TarError, zstandard.ZstdError, EOFError, OSError) as exc:
        raise ExtractError(f"not a readable layer: {exc}") from None
    state.update(upper)


def _dirs(state: dict[str, _Entry]) -> set[str]:
    out = set()
    for key in state:
        parts = key.split("/")
        for i in range(1, len(parts)):
            out.add("/".join(parts[:i]) + "/")
    return out


# --- the inventory ------------------------------------------------------------------------------

_RELEASES = {"debian": "Debian", "ubuntu": "Ubuntu", "rhel": "Red Hat", "almalinux": "AlmaLinux",
             "rocky": "Rocky Linux"}


def _os(state: dict[str, _Entry]) -> OsRelease | None:
    for path in ("etc/os-release", "usr/lib/os-release"):
        if path in state:
            fields = state[path][1][1]
            if fields.get("ID"):
                return OsRelease(fields["ID"], fields.get("VERSION_ID", ""), fields.get("PRETTY_NAME", ""))
    if "etc/alpine-release" in state:
        return OsRelease("alpine", state["etc/alpine-release"][1][1]["_raw"])
    if "etc/debian_version" in state:
        return OsRelease("debian", state["etc/debian_version"][1][1]["_raw"].split(".")[0])
    return None


def _distro_ecosystem(os_release: OsRelease | None, kind: str) -> str:
    if os_release is None:
        return "Alpine" if kind == "apk" else "Debian"
    if kind == "apk":
        major_minor = ".".join(os_release.version_id.split(".")[:2])
        return f"Alpine:v{major_minor}" if major_minor else "Alpine"
    name = _RELEASES.get(os_release.id, "Debian")
    version = os_release.version_id.split(".")[0] if name == "Debian" else os_release.version_id
    return f"{name}:{version}" if version else name


def inventory(layers: Iterable[str | Path | IO[bytes]]) -> Inventory:
    """The packages of the image whose layers (lowest first) are given, whiteouts applied."""
    state: dict[str, _Entry] = {}
    for layer in layers:
        if isinstance(layer, (str, Path)):
            with open(layer, "rb") as f:
                _apply_layer(state, f)
        else:
            _apply_layer(state, layer)
    os_release = _os(state)
    packages: list[Package] = []
    unsupported: list[str] = []
    for path, (kind, value) in sorted(state.items()):
        if kind in ("apk", "dpkg"):
            ecosystem = _distro_ecosystem(os_release, kind)
            packages += [Package(ecosystem, n, v, s, path, kind) for n, v, s in value]
        elif kind == "python":
            packages += [Package("PyPI", n, v, s, path, kind) for n, v, s in value]
        elif kind == "npm":
            packages += [Package("npm", n, v, s, path, kind) for n, v, s in value]
        elif kind == "go":
            packages.append(Package("Go", "stdlib", go_semver(value.go_version), "stdlib", path, "go-stdlib"))
            for module in ((value.main,) if value.main else ()) + value.deps:
                packages.append(Package("Go", module.path, module.version, module.path, path, "go-module"))
        elif kind == "rpm":
            unsupported.append(f"{path}: rpm databases are not read yet")
    return Inventory(os_release, packages, unsupported)
