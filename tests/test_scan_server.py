"""Vulnerability scanning on a real server (issue 13), its database imported with `ncr-trio vulndb import`
from the real data of tests/data/vulndata, images built here with tarfile from real package databases
(Alpine 3.4's apk database, urllib3 2.0.6's metadata) and pushed over the distribution API.

- a manual scan: Not Scanned -> Scanning -> Done with its figures; the report holds the README's matches
  and not its boundary case; the artifact answers carry the status;
- a running scan stopped: Stopped, and it can be started again; a second start while one runs is a 409;
- scan on push: only in registries that ask for it;
- pull prevention: 412 DENIED naming the vulnerability and the threshold, with skopeo and podman showing
  it; the global allowlist lets the pull through; a registry's own list replaces the global one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import artifact_path, ok, wait_for
from tests.support.clients import Clients, clients_watching, find_tool, gzip_bytes, tar_layer
from tests.support.oci import canonical, descriptor, digest, push_blob, push_manifest
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import Server

DATA = Path(__file__).parent / "data" / "vulndata"
SITE = "usr/lib/python3.11/site-packages"
OS_RELEASE = (b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.4.6\nPRETTY_NAME="Alpine Linux v3.4"\n'
              b'HOME_URL="http://alpinelinux.org"\nBUG_REPORT_URL="http://bugs.alpinelinux.org"\n')
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
URLLIB3_CVE = "CVE-2023-45803"  # PYSEC-2023-212's alias: urllib3 2.0.6, severity Medium (CVSS)
REGISTRIES = ("scans", "stops", "onpush", "plain", "guarded", "feeds")


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: -\n\nbody\n".encode()


def vulnerable_layers() -> list[tuple[str, bytes, bytes]]:
    """(media type, blob, uncompressed tar): Alpine 3.4 with its real apk database, then urllib3 2.0.6."""
    alpine = tar_layer({"etc/os-release": OS_RELEASE,
                        "lib/apk/db/installed": (DATA / "alpine" / "installed-trivy-testdata").read_bytes()})
    python = tar_layer({f"{SITE}/urllib3-2.0.6.dist-info/METADATA": metadata("urllib3", "2.0.6")})
    return [(LAYER_GZIP, gzip_bytes(alpine), alpine), (LAYER_TAR, python, python)]


def zeros_layer(gib: int) -> tuple[str, bytes, bytes]:
    """A gzip layer holding one file of `gib` GiB of zeros (a few MiB): reading it takes a while."""
    size = gib << 30
    out, c = io.BytesIO(), zlib.compressobj(1, zlib.DEFLATED, 31)
    info = tarfile.TarInfo("var/zeros.bin")
    info.size = size
    out.write(c.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        out.write(c.compress(chunk))
    out.write(c.compress(bytes(1024)) + c.flush())
    return LAYER_GZIP, out.getvalue(), b""


def push_image(client: httpx.Client, repo: str, tag: str, layers: list[tuple[str, bytes, bytes]]) -> str:
    """An OCI image of these layers (its config's diff_ids right, as podman checks them) pushed as `tag`."""
    diff_ids = ["sha256:" + hashlib.sha256(raw).hexdigest() for _, _, raw in layers]
    config = canonical({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                        "rootfs": {"type": "layers", "diff_ids": diff_ids},
                        "config": {"Cmd": ["/bin/sh"], "Labels": {"pushed-as": f"{repo}:{tag}"}}})
    for blob in {blob for _, blob, _ in layers} | {config}:
        push_blob(client, repo, blob)
    manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
                          "layers": [descriptor(media_type, blob) for media_type, blob, _ in layers]})
    r = push_manifest(client, repo, tag, manifest)
    assert r.status_code == 201, r.text
    return digest(manifest)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("scan") / "data"
    done = subprocess.run([sys.executable, "-m", "ncr_trio", "vulndb", "import", "--data", str(data),
                           str(DATA / "PyPI-subset.zip"), str(DATA / "Go-subset.zip"),
                           str(DATA / "alpine" / "secdb-v3.4-main.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    status = subprocess.run([sys.executable, "-m", "ncr_trio", "vulndb", "status", "--data", str(data), "--json"],
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    sources = {s["name"]: s["records"] for s in json.loads(status.stdout)["sources"]}
    assert sources["secdb-v3.4-main.yaml"] > 0 and sources["PyPI-subset.zip"] > 0 and sources["Go-subset.zip"] > 0
    yield from Server(data=data, registries=REGISTRIES, env={"NCR_SCAN_POLL_SECONDS": "0.2", **ALLOW_RECEIVERS}).running()


def scan_of(server: Server, repo: str, d: str) -> dict[str, Any]:
    return dict(ok(server.call("GET", artifact_path(repo, d) + "/scan")))


def finished(server: Server, repo: str, d: str) -> dict[str, Any]:
    return wait_for(lambda: scan_of(server, repo, d), lambda s: s["status"] not in ("Scanning",))


def test_a_manual_scan_from_not_scanned_to_its_figures(server: Server) -> None:
    rx = Receiver().start()
    hook = {"name": "scans", "kind": "http", "url": rx.url, "event_types": ["scan.completed", "scan.failed"]}
    ok(server.call("POST", "/registries/scans/webhooks", json=hook), 201)
    with server.client() as c:
        d = push_image(c, "scans/app", "v1", vulnerable_layers())
        broken = push_image(c, "scans/broken", "v1", [(LAYER_GZIP, b"not gzip at all" * 100, b"")])
    path = artifact_path("scans/app", d)
    artifact = ok(server.call("GET", path))
    assert (artifact["scan_status"], artifact["vulnerabilities"]) == ("Not Scanned", None)
    assert scan_of(server, "scans/app", d)["status"] == "Not Scanned"
    assert server.call("GET", path + "/vulnerabilities").status_code == 404  # no finished scan yet
    queued = ok(server.call("POST", path + "/scan"), 202)
    assert (queued["status"], queued["trigger"]) == ("Scanning", "manual")
    result = finished(server, "scans/app", d)
    assert result["status"] == "Done", result
    figures = result["vulnerabilities"]
    report = ok(server.call("GET", path + "/vulnerabilities"))
    [platform] = report["platforms"]
    found = {(v["package"], i) for v in platform["vulnerabilities"] for i in (v["id"], *v["aliases"])}
    for package, cve in [("libssl1.0", "CVE-2016-2180"), ("busybox", "CVE-2016-6301"), ("musl", "CVE-2016-8859"),
                         ("zlib", "CVE-2016-9840"), ("urllib3", "PYSEC-2023-212"), ("urllib3", URLLIB3_CVE)]:
        assert (package, cve) in found
    assert ("libssl1.0", "CVE-2016-2177") not in found  # fixed at the installed 1.0.2h-r1
    urllib3 = next(v for v in platform["vulnerabilities"] if v["id"] == "PYSEC-2023-212")
    assert (urllib3["installed"], urllib3["fixed"], urllib3["severity"]) == ("2.0.6", "2.0.7", "Medium")
    assert figures["total"] == report["total"] == len(platform["vulnerabilities"]) > 50
    assert 0 < figures["fixable"] <= figures["total"] and figures["severity"] == report["severity"] == "Medium"
    assert platform["vulnerabilities"][0]["severity"] == "Medium"  # worst first
    listed = ok(server.call("GET", "/registries/scans/images/app/artifacts"))["artifacts"]
    assert [(a["digest"], a["scan_status"], a["vulnerabilities"]) for a in listed] == [(d, "Done", figures)]
    assert ok(server.call("GET", "/vulndb"))["records"] == sum(  # the API and the CLI read the same file
        s["records"] for s in ok(server.call("GET", "/vulndb"))["sources"])
    # a layer that is not a tar archive: Failed, with the reason; webhooks hear of both outcomes
    ok(server.call("POST", artifact_path("scans/broken", broken) + "/scan"), 202)
    failed = finished(server, "scans/broken", broken)
    assert failed["status"] == "Failed" and "not a readable layer" in failed["error"], failed
    try:
        got = rx.wait_for(lambda rs: {"scan.completed", "scan.failed"} <= {x.json()["type"] for x in rs})
    finally:
        rx.stop()
    events = {x.json()["type"]: x.json() for x in got}
    assert (events["scan.completed"]["repository"], events["scan.completed"]["digest"]) == ("scans/app", d)
    assert (events["scan.failed"]["repository"], events["scan.failed"]["digest"]) == ("scans/broken", broken)


def test_a_running_scan_is_stopped(server: Server) -> None:
    slow = zeros_layer(2)
    with server.client() as c:  # about 10 GiB to read: this scan runs until it is stopped
        d = push_image(c, "stops/big", "v1", [vulnerable_layers()[0], *[slow] * 5])
    path = artifact_path("stops/big", d)
    assert ok(server.call("POST", path + "/scan"), 202)["status"] == "Scanning"
    again = server.call("POST", path + "/scan")
    assert again.status_code == 409 and again.json()["errors"][0]["code"] == "CONFLICT"
    wait_for(lambda: scan_of(server, "stops/big", d), lambda s: s["started_at"] is not None)  # a runner has it
    stopping = ok(server.call("POST", path + "/scan/stop"))
    assert stopping["status"] in ("Scanning", "Stopped")
    result = finished(server, "stops/big", d)
    assert result["status"] == "Stopped" and result["vulnerabilities"] is None, result
    assert ok(server.call("GET", path))["scan_status"] == "Stopped"
    assert server.call("GET", path + "/vulnerabilities").status_code == 404
    # a stopped scan can be started again (and stopped again)
    assert ok(server.call("POST", path + "/scan"), 202)["status"] == "Scanning"
    ok(server.call("POST", path + "/scan/stop"))
    assert finished(server, "stops/big", d)["status"] == "Stopped"


def test_scan_on_push_only_where_asked(server: Server) -> None:
    settings = ok(server.call("PATCH", "/registries/onpush/scan", json={"scan_on_push": True}))
    assert settings == {"registry": "onpush", "scan_on_push": True, "prevent_pull_severity": None, "allowlist": None}
    with server.client() as c:
        elsewhere = push_image(c, "plain/app", "v1", vulnerable_layers())
        d = push_image(c, "onpush/app", "v1", vulnerable_layers())
    result = wait_for(lambda: scan_of(server, "onpush/app", d), lambda s: s["status"] == "Done")
    assert result["trigger"] == "push" and result["vulnerabilities"]["total"] > 50
    # pushed earlier, into a registry that does not scan on push: passed over for good
    assert scan_of(server, "plain/app", elsewhere)["status"] == "Not Scanned"


def test_pull_prevention_and_allowlists(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        d = push_image(c, "guarded/app", "v1", vulnerable_layers())
        unscanned = push_image(c, "guarded/fresh", "v1", vulnerable_layers()[1:])
    ok(server.call("POST", artifact_path("guarded/app", d) + "/scan"), 202)
    assert finished(server, "guarded/app", d)["status"] == "Done"
    ok(server.call("PATCH", "/registries/guarded/scan", json={"prevent_pull_severity": "medium"}))
    with server.client() as c:
        for method in ("GET", "HEAD"):
            for ref in ("v1", d):
                r = c.request(method, f"/v2/guarded/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 412, (method, ref, r.status_code)
        error = c.get("/v2/guarded/app/manifests/v1").json()["errors"][0]
        assert error["code"] == "DENIED" and "PYSEC-2023-212" in error["message"] and "Medium" in error["message"]
        # no result yet (the first pull through a cache is such a case): not refused
        assert c.get(f"/v2/guarded/fresh/manifests/{unscanned}").status_code == 200
    with clients(server, tmp_path) as cl:
        ref = f"docker://{server.host}/guarded/app:v1"
        refused = cl.run("skopeo", "inspect", "--tls-verify=false", ref, check=False)
        assert refused.returncode != 0 and "PYSEC-2023-212" in refused.stderr, cl.describe(refused)
        assert "severity Medium or higher" in refused.stderr
        pod = podman(cl)
        if pod:
            refused = cl.run(*pod, "pull", "--tls-verify=false", f"{server.host}/guarded/app:v1", check=False)
            assert refused.returncode != 0 and "PYSEC-2023-212" in refused.stderr, cl.describe(refused)
        # the global allowlist names the CVE: through
        assert ok(server.call("PUT", "/scan/allowlist", json={"ids": f"CVE-0000-1111,\n{URLLIB3_CVE}"}))["ids"] == [
            "CVE-0000-1111", URLLIB3_CVE]
        assert cl.json("skopeo", "inspect", "--tls-verify=false", ref)["Digest"] == d
        if pod:
            cl.run(*pod, "pull", "--tls-verify=false", f"{server.host}/guarded/app:v1")
        # the registry's own list replaces the global one (not merged): refused again
        ok(server.call("PATCH", "/registries/guarded/scan", json={"allowlist": ["CVE-2016-2180"]}))
        refused = cl.run("skopeo", "inspect", "--tls-verify=false", ref, check=False)
        assert refused.returncode != 0 and "PYSEC-2023-212" in refused.stderr, cl.describe(refused)
        # no own list: the global one applies again
        ok(server.call("PATCH", "/registries/guarded/scan", json={"allowlist": None}))
        assert cl.json("skopeo", "inspect", "--tls-verify=false", ref)["Digest"] == d
    # a threshold above the worst severity found refuses nothing
    ok(server.call("PUT", "/scan/allowlist", json={"ids": []}))
    ok(server.call("PATCH", "/registries/guarded/scan", json={"prevent_pull_severity": "High"}))
    with server.client() as c:
        assert c.get("/v2/guarded/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200


class clients:  # noqa: N801 (a context manager over tests.support.clients' generator)
    def __init__(self, server: Server, root: Path) -> None:
        self._gen = clients_watching(server, root)

    def __enter__(self) -> Clients:
        return next(self._gen)

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            next(self._gen, None)


def podman(cl: Clients) -> list[str] | None:
    """podman's command line with this test's storage, or None when it is not installed (CI: a failure)."""
    if find_tool("podman") is None:
        if os.environ.get("CI"):
            pytest.fail("podman is not installed")
        return None
    runroot = tempfile.mkdtemp(prefix="ncr-podman-", dir="/tmp")
    return ["podman", "--storage-driver", "vfs", "--root", str(cl.path("storage")), "--runroot", runroot,
            "--tmpdir", str(cl.path("podman-tmp")), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def test_a_scan_cut_by_a_shutdown_runs_again_after_the_restart(tmp_path: Path) -> None:
    """The queue is durable: a scan under way when the server stops is given back, and the next process
    takes it up (here: then stopped, as it would read for a long while)."""
    data = tmp_path / "data"
    srv = Server(data=data, registries=("durable",), env={"NCR_SCAN_POLL_SECONDS": "0.2"})
    import_db = subprocess.run([sys.executable, "-m", "ncr_trio", "vulndb", "import", "--data", str(data),
                                str(DATA / "alpine" / "secdb-v3.4-main.yaml")], capture_output=True, text=True)
    assert import_db.returncode == 0, import_db.stderr
    try:
        srv.start()
        with srv.client() as c:
            d = push_image(c, "durable/big", "v1", [vulnerable_layers()[0], *[zeros_layer(2)] * 5])
        ok(srv.call("POST", artifact_path("durable/big", d) + "/scan"), 202)
        first = wait_for(lambda: scan_of(srv, "durable/big", d), lambda s: s["started_at"] is not None)
        assert srv.stop() == 0
        with sqlite3.connect(data / "meta.sqlite3") as db:  # given back: still asked for, nobody holds it
            assert db.execute("SELECT status, owner, lease_until FROM scan_results").fetchall() == [
                ("Scanning", None, None)]
        srv.start()
        again = wait_for(lambda: scan_of(srv, "durable/big", d),
                         lambda s: s["started_at"] is not None and s["started_at"] != first["started_at"])
        assert again["status"] == "Scanning" and again["requested_at"] == first["requested_at"]
        ok(srv.call("POST", artifact_path("durable/big", d) + "/scan/stop"))
        assert finished(srv, "durable/big", d)["status"] == "Stopped"
    finally:
        srv.stop()


def test_vulndb_import_from_an_artifact_pushed_into_the_registry(server: Server, tmp_path: Path) -> None:
    """An air-gapped update: the data pushed as an OCI artifact (oras), imported from the data directory."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "Go-subset.zip").write_bytes((DATA / "Go-subset.zip").read_bytes())
    (work / "secdb-v3.4-community.yaml").write_bytes((DATA / "alpine" / "secdb-v3.4-community.yaml").read_bytes())
    before = ok(server.call("GET", "/vulndb"))
    with clients(server, tmp_path / "clients") as cl:
        cl.run("oras", "push", "--plain-http", f"{server.host}/feeds/osv:2026-12", "Go-subset.zip",
               "secdb-v3.4-community.yaml", cwd=work)
    done = subprocess.run([sys.executable, "-m", "ncr_trio", "vulndb", "import", "--data", str(server.data),
                           "--artifact", "feeds/osv:2026-12", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = ok(server.call("GET", "/vulndb"))  # the server reads the new file: swapped in under it
    assert after["version"] != before["version"] and after["version"] == json.loads(done.stdout)["version"]
    names = [s["name"] for s in after["sources"]]
    assert names.count("Go-subset.zip") == 2 and "secdb-v3.4-community.yaml" in names
    assert after["records"] > before["records"]  # the community repository's records are new
    wrong = subprocess.run([sys.executable, "-m", "ncr_trio", "vulndb", "import", "--data", str(server.data),
                            "--artifact", "feeds/osv:missing"], capture_output=True, text=True)
    assert wrong.returncode == 1 and "feeds/osv:missing" in wrong.stderr
