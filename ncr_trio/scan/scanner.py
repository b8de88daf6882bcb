"""Inventory + vulnerability database -> report (the guide's detail view and vulnerability column).

Distribution packages are matched on their source name (dpkg Source, apk origin), as OSV's Debian
and Alpine records name them; the report shows the installed (binary) package. Each finding is one
vulnerability of one package, aliases merged. Totals: total, fixable (a fixed version is known),
and the worst severity.

Synchronous: callers run it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from ncr_trio.scan.extract import Inventory, Package
from ncr_trio.scan.osv import Match, Severity
from ncr_trio.scan.vulndb import VulnDB

__all__ = ["Finding", "Report", "scan"]


@dataclass(frozen=True)
class Finding:
    package: Package
    vulnerability: Match

    @property
    def fixable(self) -> bool:
        return self.vulnerability.fixed is not None


@dataclass(frozen=True)
class Report:
    db_version: str
    findings: tuple[Finding, ...]
    packages: int
    unsupported: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.findings)

    @property
    def fixable(self) -> int:
        return sum(1 for f in self.findings if f.fixable)

    @property
    def severity(self) -> Severity | None:
        """The worst severity, None when nothing was found."""
        return max((f.vulnerability.severity for f in self.findings), default=None)


def scan(inventory: Inventory, db: VulnDB) -> Report:
    findings: list[Finding] = []
    for package in inventory.packages:
        name = package.source if package.kind in ("apk", "dpkg") else package.name
        for vulnerability in db.affected(package.ecosystem, name, package.version):
            findings.append(Finding(package, vulnerability))
    findings.sort(key=lambda f: (-f.vulnerability.severity, f.package.name, f.vulnerability.id))
    return Report(db.version, tuple(findings), len(inventory.packages), tuple(inventory.unsupported))
