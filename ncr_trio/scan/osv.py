"""OSV records and their evaluation rules (https://ossf.github.io/osv-schema/, "Evaluation").

A record names affected packages; each package is affected through `ranges` (lists of events) or an
explicit `versions[]` list. For one installed version:

- `versions[]` holds it (string equality, as the schema says);
- or a range of type ECOSYSTEM (the ecosystem's ordering) or SEMVER (SemVer 2.0) has it affected.
  The events are **sorted** by version first (records list them in any order: PYSEC-2023-212 lists
  2.0.0..2.0.7 before 0..1.26.18), "0" lowest, then walked: `introduced` at or below it switches
  "affected" on, `fixed` at or below it off, `last_affected` below it off; a `limit` at or below it
  ends the range. GIT ranges (commit hashes) cannot be evaluated against a package version and are
  ignored. A range whose versions do not parse in the ecosystem is skipped (never a guess).

Withdrawn records are dropped (`parse_record` returns them marked; the importer skips them).
The fixed version reported is the lowest `fixed` above the installed version over the package's ranges.

Severity: the record's (or the affected package's) CVSS vectors scored with the `cvss` library, the
newest CVSS version present, on CVSS's qualitative scale; otherwise a label the database gives
(GHSA's `database_specific.severity`, a distribution's `urgency` or `priority`); otherwise Unknown.

`merge_aliases` folds matches of one package that name the same vulnerability (a PYSEC and its
CVE and GHSA aliases) into one, so one CVE counts once per package.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError
from packaging.utils import canonicalize_name

from ncr_trio.scan.versions import Comparable, VersionError, base_ecosystem, ordering

__all__ = [
    "Affected", "Event", "Match", "Range", "Record", "RecordError", "Severity",
    "affected_version", "match", "merge_aliases", "package_key", "parse_record", "record_severity",
]


class RecordError(ValueError):
    """The document is not an OSV record this scanner can read."""


class Severity(enum.IntEnum):
    """The guide's severities, ordered (a threshold compares with >=)."""

    UNKNOWN = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.capitalize()

    @classmethod
    def from_score(cls, score: float) -> Severity:
        """CVSS's qualitative rating scale (v3.x, also applied to v2 and v4 base scores)."""
        if score >= 9.0:
            return cls.CRITICAL
        if score >= 7.0:
            return cls.HIGH
        if score >= 4.0:
            return cls.MEDIUM
        if score > 0.0:
            return cls.LOW
        return cls.UNKNOWN


# Labels of databases without CVSS: GHSA (CRITICAL/HIGH/MODERATE/LOW), Debian's urgency,
# Ubuntu's priority, Alpine/other distributions' free text. Unmapped labels stay Unknown.
_LABELS = {
    "critical": Severity.CRITICAL, "high": Severity.HIGH, "important": Severity.HIGH,
    "moderate": Severity.MEDIUM, "medium": Severity.MEDIUM, "low": Severity.LOW,
    "negligible": Severity.LOW, "unimportant": Severity.LOW,
}


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # introduced | fixed | last_affected | limit
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    type: str  # ECOSYSTEM | SEMVER | GIT
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str
    name: str
    ranges: tuple[Range, ...]
    versions: frozenset[str]
    severity: tuple[tuple[str, str], ...] = ()
    labels: tuple[str, ...] = ()  # severity labels from ecosystem_specific / database_specific


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    modified: str
    aliases: tuple[str, ...]
    summary: str
    details: str
    severity: tuple[tuple[str, str], ...]  # (CVSS_V3, vector), ...
    labels: tuple[str, ...]
    references: tuple[str, ...]
    affected: tuple[Affected, ...]
    withdrawn: str | None = None


@dataclass(frozen=True)
class Match:
    """One vulnerability of one installed package (after merge_aliases: one per vulnerability)."""

    id: str
    aliases: tuple[str, ...]
    ecosystem: str
    package: str
    installed: str
    fixed: str | None
    severity: Severity
    score: float | None
    summary: str
    links: tuple[str, ...] = field(default=())

    @property
    def ids(self) -> frozenset[str]:
        return frozenset((self.id, *self.aliases))


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


def _severity_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        return ()
    return tuple((str(s.get("type", "")), str(s.get("score", ""))) for s in value
                 if isinstance(s, Mapping) and s.get("score"))


def _labels(*sections: Any) -> tuple[str, ...]:
    found = []
    for section in sections:
        if isinstance(section, Mapping):
            for key in ("severity", "urgency", "priority"):
                value = section.get(key)
                if isinstance(value, str) and value:
                    found.append(value)
    return tuple(found)


def _range(doc: Any) -> Range:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("events"), list):
        raise RecordError("a range without events")
    events = []
    for event in doc["events"]:
        if not isinstance(event, Mapping) or len(event) != 1:
            raise RecordError(f"an event is not one key: {event!r}")
        ((kind, version),) = event.items()
        if kind not in ("introduced", "fixed", "last_affected", "limit") or not isinstance(version, str):
            raise RecordError(f"unknown event {event!r}")
        events.append(Event(kind, version))
    return Range(str(doc.get("type", "")), tuple(events))


def parse_record(doc: Any) -> Record:
    """The OSV record of a parsed JSON/YAML document; RecordError if it lacks what matching needs."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str):
        raise RecordError("not an OSV record (no id)")
    affected = []
    for item in doc.get("affected") or []:
        if not isinstance(item, Mapping):
            raise RecordError(f"{doc['id']}: an affected entry is not an object")
        package = item.get("package")
        if not isinstance(package, Mapping) or not package.get("ecosystem") or not package.get("name"):
            continue  # OSV allows affected entries without a package (e.g. a GIT repo only): nothing to match
        affected.append(Affected(
            ecosystem=str(package["ecosystem"]), name=str(package["name"]),
            ranges=tuple(_range(r) for r in item.get("ranges") or []),
            versions=frozenset(_strings(item.get("versions"))),
            severity=_severity_pairs(item.get("severity")),
            labels=_labels(item.get("ecosystem_specific"), item.get("database_specific")),
        ))
    references = tuple(str(r["url"]) for r in doc.get("references") or []
                       if isinstance(r, Mapping) and isinstance(r.get("url"), str))
    withdrawn = doc.get("withdrawn")
    return Record(
        id=doc["id"], modified=str(doc.get("modified", "")), aliases=_strings(doc.get("aliases")),
        summary=str(doc.get("summary") or ""), details=str(doc.get("details") or ""),
        severity=_severity_pairs(doc.get("severity")), labels=_labels(doc.get("database_specific")),
        references=references, affected=tuple(affected),
        withdrawn=str(withdrawn) if withdrawn else None,
    )


def package_key(ecosystem: str, name: str) -> str:
    """The name as the ecosystem compares names: PyPI's are case- and separator-insensitive (PEP 503)."""
    if base_ecosystem(ecosystem) == "PyPI":
        return str(canonicalize_name(name))
    return name


def _parser_for(range_: Range, ecosystem: str) -> Callable[[str], Comparable] | None:
    if range_.type == "ECOSYSTEM":
        return ordering(ecosystem)
    if range_.type == "SEMVER":
        # Go's SEMVER ranges name the standard library's versions too ("1.20.0-0"); Go's parser reads
        # plain SemVer as well as "v1.2.3" and "go1.19.8"
        return ordering("Go" if base_ecosystem(ecosystem) == "Go" else "SEMVER")
    return None  # GIT (commits) or unknown


def _evaluate(range_: Range, installed: str,
              parse: Callable[[str], Comparable]) -> tuple[bool, list[tuple[Comparable, str]]]:
    """Whether the range has `installed` affected, and the range's fixed versions (parsed, as written).

    Raises VersionError when an event's version or the installed one does not parse."""
    version = parse(installed)
    keyed: list[tuple[int, Comparable | None, Event]] = []
    for event in range_.events:
        if event.kind == "introduced" and event.version == "0":
            keyed.append((0, None, event))
        else:
            keyed.append((1, parse(event.version), event))
    # Sort by version with "0" first; Python's sort is stable, so equal versions keep the record's order.
    keyed.sort(key=lambda item: _SortKey(item[0], item[1]))
    affected = False
    fixed: list[tuple[Comparable, str]] = []
    for _, at, event in keyed:
        if event.kind == "fixed" and at is not None:
            fixed.append((at, event.version))
        if at is None:  # introduced "0"
            affected = True
        elif event.kind == "introduced":
            if not version < at:
                affected = True
        elif event.kind == "fixed":
            if not version < at:
                affected = False
        elif event.kind == "last_affected":
            if at < version:
                affected = False
        elif event.kind == "limit":
            if not version < at:
                return False, fixed
    return affected, fixed


class _SortKey:
    """(group, version) ordered by group, then version; versions of one ecosystem only define `<`."""

    __slots__ = ("group", "version")

    def __init__(self, group: int, version: Comparable | None) -> None:
        self.group, self.version = group, version

    def __lt__(self, other: _SortKey) -> bool:
        if self.group != other.group:
            return self.group < other.group
        if self.version is None or other.version is None:
            return False
        return bool(self.version < other.version)


def affected_version(affected: Affected, installed: str) -> tuple[bool, str | None]:
    """Whether `installed` of the package is affected, and the lowest fixed version above it."""
    hit = installed in affected.versions
    lowest: tuple[Comparable, str] | None = None
    for range_ in affected.ranges:
        parse = _parser_for(range_, affected.ecosystem)
        if parse is None:
            continue
        try:
            in_range, fixed = _evaluate(range_, installed, parse)
            current = parse(installed)
        except VersionError:
            continue
        hit = hit or in_range
        for fixed_version, text in fixed:
            if current < fixed_version and (lowest is None or fixed_version < lowest[0]):
                lowest = (fixed_version, text)
    return hit, (lowest[1] if hit and lowest is not None else None)


def _cvss(kind: str, vector: str) -> float | None:
    try:
        if kind == "CVSS_V4" or vector.startswith("CVSS:4"):
            return float(CVSS4(vector).base_score)
        if kind == "CVSS_V3" or vector.startswith("CVSS:3"):
            return float(CVSS3(vector).base_score)
        if kind == "CVSS_V2":
            return float(CVSS2(vector).base_score)
    except (CVSSError, ValueError, KeyError, IndexError):
        return None
    return None


_CVSS_PREFERENCE = {"CVSS_V4": 3, "CVSS_V3": 2, "CVSS_V2": 1}


def record_severity(record: Record, affected: Affected | None = None) -> tuple[Severity, float | None]:
    """The severity of the record for the package: CVSS first (newest version), then labels, else Unknown."""
    vectors = [*(affected.severity if affected is not None else ()), *record.severity]
    vectors.sort(key=lambda pair: -_CVSS_PREFERENCE.get(pair[0], 0))
    for kind, vector in vectors:
        score = _cvss(kind, vector)
        if score is not None:
            return Severity.from_score(score), score
    for label in (*(affected.labels if affected is not None else ()), *record.labels):
        severity = _LABELS.get(label.strip().lower())
        if severity is not None:
            return severity, None
    return Severity.UNKNOWN, None


def match(record: Record, ecosystem: str, package: str, installed: str) -> Match | None:
    """The record's match for an installed package, or None (withdrawn, other package, not affected)."""
    if record.withdrawn:
        return None
    key = package_key(ecosystem, package)
    for affected in record.affected:
        if affected.ecosystem != ecosystem or package_key(ecosystem, affected.name) != key:
            continue
        hit, fixed = affected_version(affected, installed)
        if hit:
            severity, score = record_severity(record, affected)
            return Match(id=record.id, aliases=record.aliases, ecosystem=ecosystem, package=package,
                         installed=installed, fixed=fixed, severity=severity, score=score,
                         summary=record.summary or record.details.split("\n", 1)[0][:300],
                         links=record.references)
    return None


def merge_aliases(matches: Iterable[Match]) -> list[Match]:
    """One match per vulnerability and package: matches whose ids/aliases overlap become one.

    The merged match keeps the worst severity (and its score), the lowest fixed version (by the
    ecosystem's ordering), every id as an alias, and the id of a CVE if one is among them.
    """
    groups: list[list[Match]] = []
    for item in matches:
        joined = [g for g in groups if g[0].package == item.package and g[0].ecosystem == item.ecosystem
                  and g[0].installed == item.installed and any(m.ids & item.ids for m in g)]
        merged = [item]
        for group in joined:
            merged.extend(group)
            groups.remove(group)
        groups.append(merged)
    return [_merge(group) for group in groups]


def _lowest(ecosystem: str, versions: Sequence[str]) -> str | None:
    parse = ordering(ecosystem)
    if not versions:
        return None
    try:
        return min(versions, key=lambda v: _SortKey(1, parse(v))) if parse else min(versions)
    except VersionError:
        return min(versions)


def _merge(group: list[Match]) -> Match:
    if len(group) == 1:
        return group[0]
    ids = sorted({i for m in group for i in m.ids})
    cves = [i for i in ids if i.startswith("CVE-")]
    primary = cves[0] if cves else min(m.id for m in group)
    worst = max(group, key=lambda m: (m.severity, m.score or 0.0))
    fixed = _lowest(group[0].ecosystem, [m.fixed for m in group if m.fixed])
    links = tuple(dict.fromkeys(link for m in group for link in m.links))
    summary = next((m.summary for m in sorted(group, key=lambda m: m.id) if m.summary), "")
    return Match(id=primary, aliases=tuple(i for i in ids if i != primary), ecosystem=group[0].ecosystem,
                 package=group[0].package, installed=group[0].installed, fixed=fixed,
                 severity=worst.severity, score=worst.score, summary=summary, links=links)
