"""`ncr-trio scan ...` and `registry update --scan-on-push --prevent-pull-severity` against a real server
(its vulnerability database imported from tests/data/vulndata, the image built by test_scan_server's helpers
from Alpine 3.4's real apk database and urllib3 2.0.6's metadata):

- scan start --wait ends Done; status and the artifact list show the figures; report's table is sorted
  by severity (worst first), --sort package/--min-severity change it, -o json is the API's report;
- schedule show/set, scan all, the global allowlist from commas and newlines, a registry's own list and
  --clear / --empty; registry update's scan flags reach the registry's scan settings and pulls;
- scan stop: a running scan (10 GiB of zeros to read) ends Stopped, the column says so;
- a viewer reads the status and report but cannot start a scan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import wait_for
from tests.support.server import ADMIN_PASSWORD, Server
from tests.test_cli import fields, table
from tests.test_scan_server import DATA, OCI_MANIFEST, URLLIB3_CVE, push_image, vulnerable_layers, zeros_layer

ORDER = ["Critical", "High", "Medium", "Low", "Unknown"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("scancli") / "data"
    done = subprocess.run([sys.executable, "-m", "ncr_trio", "vulndb", "import", "--data", str(data),
                           str(DATA / "PyPI-subset.zip"), str(DATA / "alpine" / "secdb-v3.4-main.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    yield from Server(data=data, registries=("cli", "watched"), env={"NCR_SCAN_POLL_SECONDS": "0.2"}).running()


class CLI:
    def __init__(self, server: Server, home: Path, user: str = "admin", secret: str = ADMIN_PASSWORD) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NCR_")}
        self.env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"), NCR_URL=server.url, NCR_USERNAME=user,
                        NCR_PASSWORD=secret)

    def __call__(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ncr_trio", *args], input=stdin, capture_output=True,
                              text=True, env=self.env, timeout=300)

    def ok(self, *args: str, stdin: str = "") -> str:
        r = self(*args, stdin=stdin)
        assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def json(self, *args: str, stdin: str = "") -> Any:
        return json.loads(self.ok(*args, "-o", "json", stdin=stdin))


def vulnerability_column(out: str) -> list[str]:
    """The artifact list's last column (an image without platforms leaves an empty cell before it)."""
    rows = table(out)
    assert rows[0][-1] == "VULNERABILITIES"
    return [row[-1] for row in rows[1:]]


def api(server: Server, path: str, method: str = "GET", **kw: Any) -> Any:
    r = server.call(method, path, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def test_scan_start_status_report_and_the_artifact_column(server: Server, tmp_path: Path) -> None:
    cli = CLI(server, tmp_path)
    with server.client() as c:
        d = push_image(c, "cli/app", "v1", vulnerable_layers())
    assert fields(cli.ok("scan", "status", "cli/app:v1"))["status"] == "Not Scanned"
    assert vulnerability_column(cli.ok("artifact", "list", "cli/app")) == ["-"]
    r = cli("scan", "report", f"cli/app@{d}")
    assert r.returncode == 1 and "404" in r.stderr, r.stderr  # no finished scan yet
    shown = fields(cli.ok("scan", "start", "cli/app:v1", "--wait"))
    assert shown["status"] == "Done" and shown["trigger"] == "manual"
    status = cli.json("scan", "status", f"cli/app@{d}")
    assert status == api(server, f"/registries/cli/images/app/artifacts/{d}/scan")
    v = status["vulnerabilities"]
    assert v["total"] > 50 and shown["vulnerabilities"] == f"{v['total']} ({v['fixable']} fixable) {v['severity']}"
    assert vulnerability_column(cli.ok("artifact", "list", "cli/app")) == [shown["vulnerabilities"]]
    # the report: -o json is the API's; the table is worst first, one row per vulnerability
    report = cli.json("scan", "report", "cli/app:v1")
    assert report == api(server, f"/registries/cli/images/app/artifacts/{d}/vulnerabilities")
    out = cli.ok("scan", "report", "cli/app:v1")
    rows = table(out[out.index("SEVERITY"):])
    header, body = rows[0], rows[1:]
    assert header[:7] == ["SEVERITY", "SCORE", "ID", "ALIASES", "PACKAGE", "INSTALLED", "FIXED"]
    assert len(body) == report["total"]
    ranks = [ORDER.index(row[0]) for row in body]
    assert ranks == sorted(ranks) and len(set(ranks)) > 1  # several severities, worst first
    urllib3 = next(row for row in body if row[2] == "PYSEC-2023-212")
    assert (urllib3[4], urllib3[5], urllib3[6]) == ("urllib3", "2.0.6", "2.0.7") and URLLIB3_CVE in urllib3[3]
    assert "CVE-2016-2177" not in out  # fixed at the installed openssl
    reverse = table((o := cli.ok("scan", "report", "cli/app:v1", "--reverse"))[o.index("SEVERITY"):])[1:]
    assert [ORDER.index(row[0]) for row in reverse] == sorted(ranks, reverse=True)
    by_package = table((o := cli.ok("scan", "report", "cli/app:v1", "--sort", "package"))[o.index("SEVERITY"):])[1:]
    assert [row[4] for row in by_package] == sorted(row[4] for row in body)
    medium = table((o := cli.ok("scan", "report", "cli/app:v1", "--min-severity", "medium"))[o.index("SEVERITY"):])
    assert {row[0] for row in medium[1:]} <= {"Critical", "High", "Medium"} and 0 < len(medium) - 1 < len(body)


def test_schedule_scan_all_and_allowlists(server: Server, tmp_path: Path) -> None:
    cli = CLI(server, tmp_path)
    assert cli.json("scan", "schedule") == api(server, "/scan/schedule")
    assert fields(cli.ok("scan", "schedule", "daily"))["preset"] == "Daily"
    assert cli.json("scan", "schedule", "0", "3", "*", "*", "1-5")["schedule"] == "0 3 * * 1-5"
    assert cli.json("scan", "schedule", "0 4 * * *")["preset"] == "Custom"
    assert fields(cli.ok("scan", "schedule", "None"))["schedule"] == "None"
    assert cli("scan", "schedule", "every", "day").returncode == 1  # the server's message, not ours
    assert "Queued" in cli.ok("scan", "all")
    # the global list: arguments holding commas; a file with newlines; --clear empties it
    assert cli.ok("scan", "allowlist", "set", "CVE-2016-2180,CVE-2016-6301", URLLIB3_CVE).split() == [
        "CVE-2016-2180", "CVE-2016-6301", URLLIB3_CVE]
    assert api(server, "/scan/allowlist")["ids"] == ["CVE-2016-2180", "CVE-2016-6301", URLLIB3_CVE]
    ids = tmp_path / "ids.txt"
    ids.write_text("CVE-2016-9840\nCVE-2016-8859\n")
    assert cli.json("scan", "allowlist", "set", "--file", str(ids))["ids"] == ["CVE-2016-9840", "CVE-2016-8859"]
    assert cli.json("scan", "allowlist", "set", "--file", "-", stdin="CVE-2016-2180\n")["ids"] == ["CVE-2016-2180"]
    assert cli.ok("scan", "allowlist", "show").split() == ["CVE-2016-2180"]
    # a registry's own list, dropped with --clear (the global one applies), or empty with --empty
    assert "no list of its own" in cli.ok("scan", "allowlist", "show", "--registry", "watched")
    own = cli.json("scan", "allowlist", "set", "--registry", "watched", URLLIB3_CVE)
    assert own == api(server, "/registries/watched/scan") and own["allowlist"] == [URLLIB3_CVE]
    assert cli.json("scan", "allowlist", "set", "--registry", "watched", "--empty")["allowlist"] == []
    assert cli.json("scan", "allowlist", "set", "--registry", "watched", "--clear")["allowlist"] is None
    assert cli.json("scan", "allowlist", "set", "--clear")["ids"] == []
    for wrong in (["set"], ["set", "--clear", "CVE-2016-2180"], ["set", "--empty"]):
        r = cli("scan", "allowlist", *wrong)
        assert r.returncode == 2, (wrong, r.stderr)


def test_registry_update_sets_scan_on_push_and_pull_prevention(server: Server, tmp_path: Path) -> None:
    cli = CLI(server, tmp_path)
    shown = fields(cli.ok("registry", "update", "watched", "--scan-on-push", "--prevent-pull-severity", "medium"))
    assert (shown["scan on push"], shown["prevent pull"]) == ("yes", "Medium or higher")
    assert api(server, "/registries/watched/scan") == {"registry": "watched", "scan_on_push": True,
                                                       "prevent_pull_severity": "Medium", "allowlist": None}
    with server.client() as c:
        d = push_image(c, "watched/app", "v1", vulnerable_layers())
    status = wait_for(lambda: cli.json("scan", "status", f"watched/app@{d}"), lambda s: s["status"] == "Done")
    assert status["trigger"] == "push"
    with server.client() as c:
        assert c.get("/v2/watched/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 412
    both = cli.json("registry", "update", "watched", "--description", "scanned", "--no-scan-on-push",
                    "--prevent-pull-severity", "none")
    assert both["description"] == "scanned" and both["scan"] == api(server, "/registries/watched/scan")
    assert (both["scan"]["scan_on_push"], both["scan"]["prevent_pull_severity"]) == (False, None)
    with server.client() as c:
        assert c.get("/v2/watched/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code == 200
    r = cli("registry", "update", "watched", "--prevent-pull-severity", "severe")
    assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr and "Critical" in r.stderr, r.stderr


def test_a_viewer_reads_scans_but_cannot_start_one(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        d = push_image(c, "cli/viewed", "v1", vulnerable_layers())
    key = server.new_user("scan-viewer", {"cli": "service-viewer"}, key="scan viewer")
    viewer = CLI(server, tmp_path, key["id"], key["secret"])
    assert fields(viewer.ok("scan", "status", f"cli/viewed@{d}"))["status"] == "Not Scanned"
    for args in (["scan", "start", f"cli/viewed@{d}"], ["scan", "stop", f"cli/viewed@{d}"], ["scan", "all"],
                 ["scan", "schedule", "Daily"], ["scan", "allowlist", "set", "CVE-2016-2180"]):
        r = viewer(*args)
        assert r.returncode == 1 and "DENIED" in r.stderr, (args, r.stderr)
    assert api(server, f"/registries/cli/images/viewed/artifacts/{d}/scan")["status"] == "Not Scanned"


def test_scan_stop_ends_a_running_scan_stopped(server: Server, tmp_path: Path) -> None:
    cli = CLI(server, tmp_path)
    with server.client() as c:  # about 10 GiB of zeros to read: the scan runs until it is stopped
        d = push_image(c, "cli/big", "v1", [vulnerable_layers()[0], *[zeros_layer(2)] * 5])
    assert "Scanning cli/big@" in cli.ok("scan", "start", "cli/big:v1")
    again = cli("scan", "start", "cli/big:v1")
    assert again.returncode == 1 and "CONFLICT" in again.stderr, again.stderr
    wait_for(lambda: cli.json("scan", "status", "cli/big:v1"), lambda s: s["started_at"] is not None)
    assert vulnerability_column(cli.ok("artifact", "list", "cli/big")) == ["Scanning"]
    stopping = cli.ok("scan", "stop", f"cli/big@{d}")
    assert stopping.strip() in (f"cli/big@{d}: stopping", f"cli/big@{d}: Stopped")
    stopped = wait_for(lambda: cli.json("scan", "status", "cli/big:v1"), lambda s: s["status"] != "Scanning")
    assert stopped["status"] == "Stopped", stopped
    assert fields(cli.ok("scan", "status", "cli/big:v1"))["vulnerabilities"] == "-"
    assert vulnerability_column(cli.ok("artifact", "list", "cli/big")) == ["Stopped"]
