"""The vulnerability database and OSV's evaluation rules, on real records (tests/data/vulndata).

- the matches of the shared data's README are found, the boundary CVE-2016-2177 (fixed *at* the
  installed 1.0.2h-r1) and GO-2023-1704 (fixed *at* go1.19.8) are not;
- PYSEC-2023-212 lists its ranges out of order: sorted, urllib3 2.0.6 is affected (fixed 2.0.7);
- `last_affected` (PYSEC-2022-42969), withdrawn records, GIT ranges ignored, severities, aliases;
- an import swaps the database in atomically: readers keep working during it.
"""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import pytest

from ncr_trio.scan.osv import Severity, affected_version, match, merge_aliases, parse_record, record_severity
from ncr_trio.scan.vulndb import VulnDB, VulnDBError, import_sources

DATA = Path(__file__).parent / "data" / "vulndata"
GO, PYPI = DATA / "Go-subset.zip", DATA / "PyPI-subset.zip"
SECDB = [DATA / "alpine" / "secdb-v3.4-main.yaml", DATA / "alpine" / "secdb-v3.4-community.yaml"]


def record(source: Path, record_id: str) -> dict[str, object]:
    with zipfile.ZipFile(source) as z:
        doc: dict[str, object] = json.loads(z.read(f"{record_id}.json"))
        return doc


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    live = tmp_path_factory.mktemp("vulndb") / "osv.sqlite"
    import_sources(live, [GO, PYPI, *SECDB])
    return live


def ids(db: VulnDB, ecosystem: str, package: str, version: str) -> set[str]:
    return {i for m in db.affected(ecosystem, package, version) for i in m.ids}


@pytest.mark.parametrize(("package", "version", "cve"), [
    ("openssl", "1.0.2h-r1", "CVE-2016-2180"),
    ("busybox", "1.24.2-r9", "CVE-2016-6301"),
    ("musl", "1.1.14-r10", "CVE-2016-8859"),
    ("zlib", "1.2.8-r2", "CVE-2016-9840"),
])
def test_alpine_readme_matches(db_path: Path, package: str, version: str, cve: str) -> None:
    with VulnDB(db_path) as db:
        assert cve in ids(db, "Alpine:v3.4", package, version)


def test_alpine_boundary_fixed_at_the_installed_version(db_path: Path) -> None:
    with VulnDB(db_path) as db:
        found = ids(db, "Alpine:v3.4", "openssl", "1.0.2h-r1")
        assert "CVE-2016-2177" not in found
        assert "CVE-2016-2177" in ids(db, "Alpine:v3.4", "openssl", "1.0.2h-r0")  # one release before the fix
        # the secdb names the fixed version; the lowest fixed above the installed one is reported
        (m,) = [m for m in db.affected("Alpine:v3.4", "openssl", "1.0.2h-r1") if "CVE-2016-2180" in m.ids]
        assert m.fixed == "1.0.2h-r2"
        assert ids(db, "Alpine:v3.5", "openssl", "1.0.2h-r1") == set()  # another release's records only


def test_pypi_readme_matches(db_path: Path) -> None:
    with VulnDB(db_path) as db:
        (requests,) = db.affected("PyPI", "requests", "2.30.0")
        assert requests.id == "PYSEC-2023-74" and requests.fixed == "2.31.0"
        assert "CVE-2023-32681" in requests.aliases
        assert "PYSEC-2023-74" not in ids(db, "PyPI", "requests", "2.31.0")
        (urllib3,) = [m for m in db.affected("PyPI", "urllib3", "2.0.6") if m.id == "PYSEC-2023-212"]
        assert urllib3.fixed == "2.0.7"
        # PEP 503 names: the database matches however the installed metadata spells the name
        assert "PYSEC-2023-212" in ids(db, "PyPI", "URLLib3", "2.0.6")


def test_events_are_sorted_before_evaluating() -> None:
    rec = parse_record(record(PYPI, "PYSEC-2023-212"))
    (urllib3,) = rec.affected
    # the record lists introduced 2.0.0, fixed 2.0.7, introduced 0, fixed 1.26.18 in that order
    assert [e.version for e in urllib3.ranges[1].events] == ["2.0.0", "2.0.7", "0", "1.26.18"]
    bare = urllib3.__class__(urllib3.ecosystem, urllib3.name, urllib3.ranges, frozenset())  # ranges alone
    assert affected_version(bare, "2.0.6") == (True, "2.0.7")
    assert affected_version(bare, "1.26.17") == (True, "1.26.18")
    assert affected_version(bare, "1.26.18") == (False, None)
    assert affected_version(bare, "2.0.7") == (False, None)
    assert affected_version(bare, "2.0.0") == (True, "2.0.7")


def test_last_affected_and_explicit_versions() -> None:
    rec = parse_record(record(PYPI, "PYSEC-2022-42969"))  # py: introduced 0, last_affected 1.11.0
    (py,) = rec.affected
    ranges_only = py.__class__(py.ecosystem, py.name, py.ranges, frozenset())
    assert affected_version(ranges_only, "1.11.0") == (True, None)
    assert affected_version(ranges_only, "1.11.1") == (False, None)
    versions_only = py.__class__(py.ecosystem, py.name, (), py.versions)
    assert affected_version(versions_only, "1.10.0") == (True, None)
    assert affected_version(versions_only, "1.10.1") == (False, None)


def test_git_ranges_are_ignored() -> None:
    rec = parse_record(record(PYPI, "PYSEC-2023-212"))
    (urllib3,) = rec.affected
    git_only = urllib3.__class__(urllib3.ecosystem, urllib3.name, urllib3.ranges[:1], frozenset())
    assert urllib3.ranges[0].type == "GIT"
    assert affected_version(git_only, "2.0.6") == (False, None)


def test_withdrawn_records_are_dropped(db_path: Path) -> None:
    withdrawn = parse_record(record(PYPI, "PYSEC-2023-141"))
    assert withdrawn.withdrawn and match(withdrawn, "PyPI", "pynetbox", "6.1.0") is None
    with VulnDB(db_path) as db:
        assert "PYSEC-2023-141" not in {r.id for r in db.records_for("PyPI", "pynetbox")}
        assert all(r.id != "GO-2022-0617" for r in db.records_for("Go", "k8s.io/kubernetes"))
        assert {s.name: s.withdrawn for s in db.status().sources}["PyPI-subset.zip"] >= 1


def test_go_stdlib_of_go1_19_8(db_path: Path) -> None:
    with VulnDB(db_path) as db:
        found = db.affected("Go", "stdlib", "1.19.8")
    assert len(found) >= 24  # "dozens" in the README
    assert "GO-2023-1704" not in {m.id for m in found}  # fixed at 1.19.8: the boundary
    assert "GO-2023-1751" in {m.id for m in found}
    assert all(m.fixed is not None for m in found if m.id == "GO-2023-1751")


def test_severity_from_cvss_then_labels_then_unknown() -> None:
    rec = parse_record(record(PYPI, "PYSEC-2023-212"))  # CVSS:3.1/AV:A/AC:H/PR:H/UI:N/S:U/C:H/I:N/A:N
    assert record_severity(rec) == (Severity.MEDIUM, 4.2)
    no_cvss = parse_record(record(PYPI, "PYSEC-2023-74"))
    assert record_severity(no_cvss) == (Severity.UNKNOWN, None)
    # the same record as GHSA publishes it: a label and no vector
    ghsa = parse_record({**record(PYPI, "PYSEC-2023-74"), "database_specific": {"severity": "MODERATE"}})
    assert record_severity(ghsa) == (Severity.MEDIUM, None)


def test_aliases_merge_one_cve_once_per_package() -> None:
    doc = record(PYPI, "PYSEC-2023-212")
    pysec = match(parse_record(doc), "PyPI", "urllib3", "2.0.6")
    # GHSA-g4mx-q9vg-27p4 is PYSEC-2023-212's alias: the same vulnerability under its GHSA id
    ghsa_doc = {**doc, "id": "GHSA-g4mx-q9vg-27p4", "aliases": ["CVE-2023-45803"]}
    ghsa = match(parse_record(ghsa_doc), "PyPI", "urllib3", "2.0.6")
    assert pysec is not None and ghsa is not None
    other = match(parse_record(record(PYPI, "PYSEC-2023-74")), "PyPI", "requests", "2.30.0")
    assert other is not None
    merged = merge_aliases([pysec, ghsa, other])
    assert len(merged) == 2
    (one,) = [m for m in merged if m.package == "urllib3"]
    assert one.id == "CVE-2023-45803"
    assert set(one.aliases) == {"PYSEC-2023-212", "GHSA-g4mx-q9vg-27p4"}


def test_import_metadata(db_path: Path) -> None:
    with VulnDB(db_path) as db:
        status = db.status()
    by_name = {s.name: s for s in status.sources}
    assert by_name["Go-subset.zip"].records + by_name["Go-subset.zip"].withdrawn == 580
    assert by_name["PyPI-subset.zip"].newest_modified is not None
    assert by_name["secdb-v3.4-main.yaml"].kind == "alpine-secdb"
    # a CVE named by both secdb files is one record: the total may be below the sum
    assert 1500 < status.records <= sum(s.records for s in status.sources)
    assert status.version


def test_a_failed_import_leaves_the_live_database(tmp_path: Path) -> None:
    live = tmp_path / "osv.sqlite"
    first = import_sources(live, [PYPI])
    bad = tmp_path / "notes.txt"
    bad.write_text("not OSV")
    with pytest.raises(VulnDBError):
        import_sources(live, [GO, bad])
    with VulnDB(live) as db:
        assert db.version == first.version
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-built file left


def test_import_keeps_records_unless_replaced(tmp_path: Path) -> None:
    live = tmp_path / "osv.sqlite"
    import_sources(live, [PYPI])
    import_sources(live, SECDB)
    with VulnDB(live) as db:
        assert db.ecosystems() == ["Alpine:v3.4", "PyPI"]
    import_sources(live, [GO], replace=True)
    with VulnDB(live) as db:
        assert db.ecosystems() == ["Go"]


def test_the_swap_is_atomic_for_readers(tmp_path: Path) -> None:
    live = tmp_path / "osv.sqlite"
    old = import_sources(live, [PYPI])
    held = VulnDB(live)  # a scan in progress holds the old version
    errors: list[BaseException] = []
    seen: set[str] = set()
    done = threading.Event()

    def importer() -> None:
        try:
            for _ in range(3):
                import_sources(live, [GO, *SECDB])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=importer)
    thread.start()
    reads = 0
    while not done.is_set() or reads < 5:
        # a reader opened at any moment sees one whole version; the held one keeps its own
        with VulnDB(live) as db:
            seen.add(db.version)
            assert "PYSEC-2023-74" in ids(db, "PyPI", "requests", "2.30.0")
            if db.version != old.version:
                assert "CVE-2016-2180" in ids(db, "Alpine:v3.4", "openssl", "1.0.2h-r1")
        assert "PYSEC-2023-74" in ids(held, "PyPI", "requests", "2.30.0")
        assert held.ecosystems() == ["PyPI"]
        reads += 1
    thread.join()
    held.close()
    assert errors == []
    assert len(seen) >= 2 or reads >= 5
    with VulnDB(live) as db:
        assert db.version not in (old.version,) and "Go" in db.ecosystems()
