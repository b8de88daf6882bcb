"""Alpine's apk version ordering, written from the format's rules (apk-package(5), Gentoo's PMS 3.x).

No correct PyPI library exists (univers orders some leading-zero components and suffix chains
differently from apk), and apk-tools' C code is GPL, so this is written from the published rules:

    number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}

A version is read as a sequence of tokens, each of a kind; the kinds are ranked in the order they
may appear (first number, further numbers, letter, suffix, suffix number, commit hash, revision, end).
Two versions are compared token by token:

- same kind: compare the values (numbers as integers; a further number with a leading zero as a
  decimal fraction, i.e. as a string without its trailing zeros (Gentoo's rule, `1.02 < 1.1`); the
  letter and hash as strings; suffixes by rank alpha < beta < pre < rc < cvs < svn < git < hg < p);
- different kinds: the version that goes on with a pre-release suffix (alpha, beta, pre, rc) is the
  lower; otherwise the one whose token is of an earlier kind is the higher (`1.2.1 > 1.2`,
  `1.0.1 > 1.0a`, `1.1 > 1.1_alpha1`, `3.1_p1 > 3.1`, `1.2-r1 > 1.2`).

An invalid version (`1.0bc`) is tokenized as far as it is valid; its remainder is one last token
compared as a string, so invalid versions still sort in a total, deterministic order.

"Fuzzy" matching (`apk version -t`'s `~`: `3.6.9 ~ 3.6`) stops when the second version's tokens
run out, so a version matches any version it starts with, component-wise.

Checked against every pair of apk-tools' own vectors (tests/data/apk-version.data).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from enum import IntEnum

__all__ = ["ApkVersion", "compare", "fuzzy_compare", "is_valid"]

_SUFFIXES = {"alpha": 0, "beta": 1, "pre": 2, "rc": 3, "cvs": 5, "svn": 6, "git": 7, "hg": 8, "p": 9}
_PRE_RELEASE = frozenset({"alpha", "beta", "pre", "rc"})

_VALID = re.compile(
    r"[0-9]+(?:\.[0-9]+)*[a-z]?(?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*(?:~[0-9a-f]+)?(?:-r[0-9]+)?"
)


class _Kind(IntEnum):
    FIRST = 0
    NUMBER = 1
    LETTER = 2
    SUFFIX = 3
    SUFFIX_NUMBER = 4
    HASH = 5
    REVISION = 6
    INVALID = 7
    END = 8


_Token = tuple[_Kind, int | str]

_NUMBER = re.compile(r"[0-9]+")
_SUFFIX = re.compile(r"_(alpha|beta|pre|rc|cvs|svn|git|hg|p)")
_HASH = re.compile(r"~([0-9a-f]+)")
_REVISION = re.compile(r"-r([0-9]+)")


def _tokens(text: str) -> Iterator[_Token]:
    """The version's tokens in order; a remainder that breaks the grammar is one INVALID token."""
    pos = 0
    match = _NUMBER.match(text, pos)
    if match is None:
        if text:
            yield _Kind.INVALID, text
        return
    yield _Kind.FIRST, int(match.group())
    pos = match.end()
    while text.startswith(".", pos) and (match := _NUMBER.match(text, pos + 1)) is not None:
        digits = match.group()
        # A leading zero makes the component a decimal fraction (Gentoo): "02" is 0.02, not 2.
        yield _Kind.NUMBER, (digits.rstrip("0") if digits.startswith("0") else int(digits))
        pos = match.end()
    if pos < len(text) and "a" <= text[pos] <= "z":
        yield _Kind.LETTER, text[pos]
        pos += 1
    while (match := _SUFFIX.match(text, pos)) is not None:
        yield _Kind.SUFFIX, match.group(1)
        pos = match.end()
        if (number := _NUMBER.match(text, pos)) is not None:
            yield _Kind.SUFFIX_NUMBER, int(number.group())
            pos = number.end()
    if (match := _HASH.match(text, pos)) is not None:
        yield _Kind.HASH, match.group(1)
        pos = match.end()
    if (match := _REVISION.match(text, pos)) is not None:
        yield _Kind.REVISION, int(match.group(1))
        pos = match.end()
    if pos < len(text):
        yield _Kind.INVALID, text[pos:]


def _value_order(kind: _Kind, a: int | str, b: int | str) -> int:
    if kind == _Kind.SUFFIX:
        a, b = _SUFFIXES[str(a)], _SUFFIXES[str(b)]
    elif kind == _Kind.NUMBER and isinstance(a, str) != isinstance(b, str):
        # one has a leading zero (a fraction), the other not: compare both as fractions
        a, b = str(a).rstrip("0"), str(b).rstrip("0")
    if isinstance(a, int) and isinstance(b, int):
        return (a > b) - (a < b)
    sa, sb = str(a), str(b)
    return (sa > sb) - (sa < sb)


def _compare(a: str, b: str, *, fuzzy: bool) -> int:
    ta, tb = list(_tokens(a)), list(_tokens(b))
    for index in range(max(len(ta), len(tb))):
        kind_a, value_a = ta[index] if index < len(ta) else (_Kind.END, 0)
        kind_b, value_b = tb[index] if index < len(tb) else (_Kind.END, 0)
        if fuzzy and kind_b == _Kind.END:
            return 0
        if kind_a == kind_b:
            order = _value_order(kind_a, value_a, value_b)
            if order:
                return order
            continue
        if kind_a == _Kind.SUFFIX and value_a in _PRE_RELEASE:
            return -1
        if kind_b == _Kind.SUFFIX and value_b in _PRE_RELEASE:
            return 1
        return 1 if kind_a < kind_b else -1
    return 0


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as apk orders versions a and b."""
    return _compare(a, b, fuzzy=False)


def fuzzy_compare(a: str, b: str) -> int:
    """As compare, but 0 when a starts with b component-wise (apk's `~`: 3.6.9 ~ 3.6)."""
    return _compare(a, b, fuzzy=True)


def is_valid(text: str) -> bool:
    """Whether text follows the apk version grammar."""
    return _VALID.fullmatch(text) is not None


@functools.total_ordering
class ApkVersion:
    """An apk version with Python's comparison operators (for sorting OSV events)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApkVersion) and compare(self.text, other.text) == 0

    def __lt__(self, other: ApkVersion) -> bool:
        return compare(self.text, other.text) < 0

    def __hash__(self) -> int:
        return hash(tuple(_tokens(self.text)))

    def __repr__(self) -> str:
        return f"ApkVersion({self.text!r})"

    def __str__(self) -> str:
        return self.text
