"""Go build information of an ELF executable, read from a stream (no seeking, bounded memory).

Go (>= 1.18) writes a blob into every binary it links (Go's debug/buildinfo documents the format):

    "\\xff Go buildinf:"  ptr-size (1 byte)  flags (1 byte)  padding to 32 bytes
    flags & 2 ("inline strings"): then uvarint-length-prefixed strings: the Go version ("go1.19.8"),
    and the module information ("path\\t...", "mod\\tpath\\tversion\\tsum", "dep\\t...", "=>\\t..."
    for a replacement, "build\\t..."), the latter framed by 16-byte sentinels.

The blob is the `.go.buildinfo` section, which the linker puts at the start of the first writable
PT_LOAD segment (the data segment). Section headers are at the end of an ELF file, out of reach of
a stream, but program headers are at its start: so the reader takes the ELF and program headers,
skips (reading, discarding) to the data segment, and searches its first GO_WINDOW bytes (1 MiB) for
the magic, at 16-byte alignment as Go does. (Go itself reads 64 KiB from the start of the section;
cgo binaries such as Debian's docker-registry have ~116 KiB of relro data before it, hence 1 MiB.)
Memory stays below 2 x GO_WINDOW per binary whatever its size. Binaries older than Go 1.18 (pointer
form, flags & 2 clear), and non-ELF executables, are not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO

__all__ = ["GO_WINDOW", "BuildInfo", "Module", "parse_modinfo", "read_buildinfo"]

MAGIC = b"\xff Go buildinf:"
GO_WINDOW = 1 << 20
_CHUNK = 1 << 20
_ELF_HEADER = 64
_MAX_PROGRAM_HEADERS = 256


@dataclass(frozen=True)
class Module:
    path: str
    version: str


@dataclass(frozen=True)
class BuildInfo:
    go_version: str  # "go1.19.8"
    path: str  # the main package's import path
    main: Module | None  # the main module, when built in module mode with a version
    deps: tuple[Module, ...]  # dependencies, replacements applied


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    parts, need = [], n
    while need > 0:
        chunk = stream.read(min(need, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        need -= len(chunk)
    return b"".join(parts)


def _skip(stream: IO[bytes], n: int) -> bool:
    while n > 0:
        chunk = stream.read(min(n, _CHUNK))
        if not chunk:
            return False
        n -= len(chunk)
    return True


def _data_segment(header: bytes, stream: IO[bytes]) -> tuple[int, int, int] | None:
    """(offset, size, bytes consumed so far) of the first writable PT_LOAD segment, from the headers."""
    if len(header) < 52 or header[:4] != b"\x7fELF":
        return None
    elf_class, data = header[4], header[5]
    end = "<" if data == 1 else ">" if data == 2 else None
    if end is None or elf_class not in (1, 2):
        return None
    if elf_class == 2:
        phoff, = struct.unpack_from(end + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", header, 54)
    else:
        phoff, = struct.unpack_from(end + "I", header, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", header, 42)
    if phnum > _MAX_PROGRAM_HEADERS or phentsize < (56 if elf_class == 2 else 32) or phoff < len(header):
        return None
    consumed = len(header)
    if not _skip(stream, phoff - consumed):
        return None
    table = _read_exact(stream, phentsize * phnum)
    consumed = phoff + len(table)
    for i in range(phnum):
        entry = table[i * phentsize:(i + 1) * phentsize]
        if len(entry) < phentsize:
            return None
        if elf_class == 2:
            p_type, p_flags, p_offset, _, _, p_filesz = struct.unpack_from(end + "IIQQQQ", entry)
        else:
            p_type, p_offset, _, _, p_filesz, _, p_flags = struct.unpack_from(end + "IIIIIII", entry)
        if p_type == 1 and p_flags & 2 and p_filesz > 0:  # PT_LOAD, PF_W
            return p_offset, p_filesz, consumed
    return None


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def _inline_string(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = _uvarint(data, pos)
    if pos + length > len(data):
        raise ValueError("string past the window")
    return data[pos:pos + length].decode("utf-8", "replace"), pos + length


def parse_modinfo(go_version: str, modinfo: str) -> BuildInfo:
    """The modules of Go's module information text (as `go version -m` prints it)."""
    path, main, deps = "", None, []
    for line in modinfo.splitlines():
        fields = line.split("\t")
        if fields[0] == "path" and len(fields) > 1:
            path = fields[1]
        elif fields[0] == "mod" and len(fields) > 2 and fields[2] not in ("", "(devel)"):
            main = Module(fields[1], fields[2])
        elif fields[0] == "dep" and len(fields) > 2:
            deps.append(Module(fields[1], fields[2]))
        elif fields[0] == "=>" and len(fields) > 2 and deps:
            deps[-1] = Module(fields[1], fields[2])  # a replacement is what was built
    return BuildInfo(go_version, path, main, tuple(deps))


def _parse_blob(window: bytes, at: int) -> BuildInfo | None:
    flags = window[at + 15] if at + 15 < len(window) else 0
    if not flags & 2:
        return None  # Go < 1.18: strings behind pointers, not read
    try:
        version, pos = _inline_string(window, at + 32)
        modinfo, _ = _inline_string(window, pos)
    except ValueError:
        return None
    if len(modinfo) >= 33 and modinfo[-17] == "\n":
        modinfo = modinfo[16:-16]  # the sentinels around the module information
    if not version.startswith("go"):
        return None
    return parse_modinfo(version, modinfo)


def read_buildinfo(stream: IO[bytes]) -> BuildInfo | None:
    """The build information of the ELF executable read from `stream`, or None (not Go >= 1.18 ELF).

    Reads the stream up to the data segment's first 2 x GO_WINDOW bytes at most; the caller
    drains or drops the rest."""
    header = _read_exact(stream, _ELF_HEADER)
    segment = _data_segment(header, stream)
    if segment is None:
        return None
    offset, size, consumed = segment
    if offset < consumed or not _skip(stream, offset - consumed):
        return None
    window = _read_exact(stream, min(size, GO_WINDOW))
    at = 0
    while (at := window.find(MAGIC, at)) >= 0:
        if (offset + at) % 16 == 0:  # file offsets and addresses agree modulo the page size
            # the strings follow the 32-byte header; read on past the window if they run over it
            tail = _read_exact(stream, min(max(size - len(window), 0), GO_WINDOW))
            return _parse_blob(window + tail, at)
        at += 1
    return None
