"""An image built in the test from real package databases, scanned layer by layer.

Layers (lowest first): Alpine 3.4 (its os-release and a real apk installed database, gzip);
a Python site-packages with urllib3 2.0.6 and requests 2.30.0 (plain tar); a whiteout layer
removing requests (its findings must go); a copy of Debian's docker-registry, a Go binary built with
go1.19.8 (zstd). The scan finds the shared README's matches, the Go stdlib's findings, and nothing
of the removed package.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from ncr_trio.scan.extract import inventory
from ncr_trio.scan.scanner import scan
from ncr_trio.scan.vulndb import VulnDB, import_sources

DATA = Path(__file__).parent / "data" / "vulndata"
GO_BINARY = Path("/usr/bin/docker-registry")  # Debian's Distribution 2.8.2 (scripts/install-tools.sh)
SITE = "usr/lib/python3.11/site-packages"
# Alpine 3.4's /etc/os-release as the release ships it
OS_RELEASE = (b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.4.6\nPRETTY_NAME="Alpine Linux v3.4"\n'
              b'HOME_URL="http://alpinelinux.org"\nBUG_REPORT_URL="http://bugs.alpinelinux.org"\n')


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def layer(path: Path, files: dict[str, bytes], compression: str = "") -> Path:
    with tarfile.open(path, "w:gz" if compression == "gz" else "w") as tar:
        for name, data in files.items():
            add(tar, name, data, 0o755 if name.startswith("usr/local/bin/") else 0o644)
    if compression == "zst":
        packed = path.with_suffix(".zst")
        packed.write_bytes(zstandard.ZstdCompressor().compress(path.read_bytes()))
        return packed
    return path


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: -\n\nbody\n".encode()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    live = tmp_path_factory.mktemp("db") / "osv.sqlite"
    import_sources(live, [DATA / "Go-subset.zip", DATA / "PyPI-subset.zip", DATA / "alpine" / "secdb-v3.4-main.yaml"])
    return live


def test_scan_of_a_layered_image(tmp_path: Path, db: Path) -> None:
    if not GO_BINARY.exists():
        pytest.skip("docker-registry is not installed (scripts/install-tools.sh)")
    apk_db = (DATA / "alpine" / "installed-trivy-testdata").read_bytes()
    layers = [
        layer(tmp_path / "1.tar", {"etc/os-release": OS_RELEASE, "lib/apk/db/installed": apk_db}, "gz"),
        layer(tmp_path / "2.tar", {f"{SITE}/urllib3-2.0.6.dist-info/METADATA": metadata("urllib3", "2.0.6"),
                                    f"{SITE}/requests-2.30.0.dist-info/METADATA": metadata("requests", "2.30.0")}),
        layer(tmp_path / "3.tar", {f"{SITE}/.wh.requests-2.30.0.dist-info": b""}),
        layer(tmp_path / "4.tar", {"usr/local/bin/registry": GO_BINARY.read_bytes()}, "zst"),
    ]
    inv = inventory(layers)
    assert inv.os is not None and (inv.os.id, inv.os.version_id) == ("alpine", "3.4.6")
    names = {(p.ecosystem, p.name, p.version) for p in inv.packages}
    assert ("Alpine:v3.4", "libssl1.0", "1.0.2h-r1") in names
    assert ("PyPI", "urllib3", "2.0.6") in names
    assert not any(p.name == "requests" for p in inv.packages)  # whited out
    assert ("Go", "stdlib", "1.19.8") in names

    with VulnDB(db) as vulndb:
        report = scan(inv, vulndb)
    found = {(f.package.name, i) for f in report.findings for i in f.vulnerability.ids}
    for package, cve in [("libssl1.0", "CVE-2016-2180"), ("busybox", "CVE-2016-6301"), ("musl", "CVE-2016-8859"),
                         ("zlib", "CVE-2016-9840"), ("urllib3", "PYSEC-2023-212")]:
        assert (package, cve) in found
    assert ("libssl1.0", "CVE-2016-2177") not in found
    assert not any(f.package.name == "requests" for f in report.findings)
    stdlib = [f for f in report.findings if f.package.name == "stdlib"]
    assert len(stdlib) >= 24 and all(f.package.path == "usr/local/bin/registry" for f in stdlib)
    assert report.total == len(report.findings) and 0 < report.fixable <= report.total
    assert report.severity is not None


def test_whiteouts_apply_to_lower_layers_only(tmp_path: Path) -> None:
    apk_db = (DATA / "alpine" / "installed-trivy-testdata").read_bytes()
    lower = layer(tmp_path / "1.tar", {"etc/os-release": OS_RELEASE, "lib/apk/db/installed": apk_db,
                                       f"{SITE}/urllib3-2.0.6.dist-info/METADATA": metadata("urllib3", "2.0.6")})
    # an opaque directory hides the lower site-packages, but the same layer's own files stay
    opaque = layer(tmp_path / "2.tar", {f"{SITE}/.wh..wh..opq": b"",
                                        f"{SITE}/requests-2.30.0.dist-info/METADATA": metadata("requests", "2.30.0")})
    names = {p.name for p in inventory([lower, opaque]).packages}
    assert "requests" in names and "urllib3" not in names and "musl" in names
    removed = layer(tmp_path / "3.tar", {"lib/apk/db/.wh.installed": b""})
    assert not any(p.kind == "apk" for p in inventory([lower, opaque, removed]).packages)


def test_dpkg_inventory_of_this_machine(tmp_path: Path) -> None:
    """This machine's dpkg database, as a layer: every installed package, on its source name."""
    status, os_release = Path("/var/lib/dpkg/status"), Path("/etc/os-release")
    if shutil.which("dpkg-query") is None or not status.exists():
        pytest.skip("dpkg is not installed")
    fields = "${db:Status-Abbrev}\t${Package}\t${Version}\t${source:Package}\n"
    out = subprocess.run(["dpkg-query", "-W", "-f", fields], capture_output=True, text=True, check=True).stdout
    expected = {tuple(line.split("\t")[1:]) for line in out.splitlines() if line.startswith("ii")}
    inv = inventory([layer(tmp_path / "debian.tar", {"etc/os-release": os_release.read_bytes(),
                                                     "var/lib/dpkg/status": status.read_bytes()}, "gz")])
    assert inv.os is not None and inv.os.id == "debian"
    got = {(p.name, p.version, p.source) for p in inv.packages}
    assert got == expected and len(got) > 100
    assert {p.ecosystem for p in inv.packages} == {f"Debian:{inv.os.version_id}"}
