"""The console's vulnerability scanning in a real headless Chromium, against a real server whose database is
imported from tests/data/vulndata and an image built from Alpine 3.4's real apk database and urllib3 2.0.6:

- a manager sees Not Scanned "-", presses Scan, sees the figures (total / fixable / severity), opens the
  artifact's report (sorted worst first, re-sortable least first), whose links are safe http(s) hrefs;
- the registry's scan settings (scan on push, pull prevention, its own allowlist) saved from the form,
  and the administrators' periodic scan and global allowlist;
- a viewer sees the column and the report but no Scan, Stop or settings controls;
- a manager stops a running scan with Stop: Scanning, then Stopped, and Scan again.
Screenshots in test-artifacts/console/<test>/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.console import CHROMIUM, Steps, api_get, log_in
from tests.support.server import Server
from tests.test_scan_server import DATA, push_image, vulnerable_layers, zeros_layer

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make tools)")]
expect.set_options(timeout=30_000)
SEVERITIES = ["Critical", "High", "Medium", "Low", "Unknown"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("consolescan") / "data"
    done = subprocess.run([sys.executable, "-m", "ncr_trio", "vulndb", "import", "--data", str(data),
                           str(DATA / "PyPI-subset.zip"), str(DATA / "alpine" / "secdb-v3.4-main.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    yield from Server(data=data, registries=("vuln", "halt"), env={"NCR_SCAN_POLL_SECONDS": "0.2"}).running()



def test_scan_an_image_see_its_counts_and_report_and_a_viewer_has_no_buttons(server: Server, page: Steps) -> None:
    pg = page.page
    with server.client() as c:
        digest = push_image(c, "vuln/app", "v1", vulnerable_layers())
    short = digest[:len("sha256:") + 12]
    log_in(pg, server, *server.admin)
    pg.goto(f"{server.url}/console/#/registries/vuln/images/app")
    artifacts = pg.get_by_role("table", name="Artifacts of vuln/app")
    row = artifacts.get_by_role("row").filter(has=pg.get_by_role("link", name=short))
    expect(row.get_by_title("Not Scanned")).to_have_text("-")
    page.shot("not-scanned")
    row.get_by_role("button", name=f"Scan {digest}").click()
    expect(pg.get_by_role("status")).to_contain_text(f"Scanning {short}")
    # the list is read again until the scan is done (the page is reloaded; the scan takes a moment)
    figures = re.compile(r"(\d+) total / (\d+) fixable / Medium")
    for _ in range(100):
        pg.reload()
        if figures.search(row.inner_text()):
            break
        pg.wait_for_timeout(300)
    expect(row).to_contain_text(figures)
    scan = api_get(server, f"/registries/vuln/images/app/artifacts/{digest}/scan").json()
    v = scan["vulnerabilities"]
    expect(row).to_contain_text(f"{v['total']} total / {v['fixable']} fixable / {v['severity']}")
    expect(row.get_by_role("button", name=f"Scan {digest}")).to_be_visible()  # done: may be scanned again
    page.shot("scanned")

    row.get_by_role("link", name=short).click()
    report = pg.get_by_role("table", name=f"Vulnerabilities of {short}")
    expect(report.get_by_role("row")).to_have_count(v["total"] + 1)
    severity_of = report.locator("tbody tr td:nth-child(2)")
    worst_first = severity_of.all_inner_texts()
    ranks = [SEVERITIES.index(s) for s in worst_first]
    assert ranks == sorted(ranks) and len(set(ranks)) > 1, worst_first
    urllib3 = report.get_by_role("row").filter(has=pg.get_by_role("rowheader", name="PYSEC-2023-212", exact=True))
    expect(urllib3).to_contain_text("urllib3")
    expect(urllib3).to_contain_text("2.0.7")
    expect(urllib3).to_contain_text("CVE-2023-45803")
    hrefs = report.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert hrefs and all(h.startswith(("https://", "http://")) for h in hrefs)
    # an advisory's link that is not http(s) would be shown as text, never made a link
    made = pg.evaluate("""import('./views/scans.js').then((m) => ['javascript:alert(1)', 'data:text/html,x',
        'https://osv.dev/PYSEC-2023-212', 'not a url'].map(m.safeHref))""")
    assert made == [None, None, "https://osv.dev/PYSEC-2023-212", None]
    expect(pg.get_by_role("rowheader", name="CVE-2016-2177", exact=True)).to_have_count(0)  # fixed at r1
    page.shot("report")
    pg.get_by_label("Sort by").select_option("least")
    ranks = [SEVERITIES.index(s) for s in severity_of.all_inner_texts()]
    assert ranks == sorted(ranks, reverse=True)
    page.shot("report-least-first")

    # the registry's scan settings
    pg.goto(f"{server.url}/console/#/registries/vuln/settings")
    settings = pg.get_by_role("form", name="Scan settings")
    settings.get_by_label("Scan on push").check()
    settings.get_by_label("Prevent pulls of images with vulnerabilities of").select_option("Medium")
    settings.get_by_label("Own allowlist").check()
    settings.get_by_label("Allowlisted IDs").fill("CVE-2023-45803,\nCVE-2016-2180")
    settings.get_by_role("button", name="Save scan settings").click()
    expect(pg.get_by_role("status")).to_contain_text("Scan settings of vuln saved")
    assert api_get(server, "/registries/vuln/scan").json() == {
        "registry": "vuln", "scan_on_push": True, "prevent_pull_severity": "Medium",
        "allowlist": ["CVE-2023-45803", "CVE-2016-2180"]}
    page.shot("registry-scan-settings")

    # the administrators' periodic scan and global allowlist
    pg.get_by_role("navigation", name="Main").get_by_role("link", name="Scanning").click()
    pg.get_by_label("Scan every artifact").select_option("Weekly")
    pg.get_by_role("button", name="Save schedule").click()
    expect(pg.get_by_role("status")).to_contain_text("Periodic scan")
    assert api_get(server, "/scan/schedule").json()["preset"] == "Weekly"
    pg.get_by_label("Allowlisted IDs").fill("CVE-2016-6301\nCVE-2016-8859")
    pg.get_by_role("button", name="Save allowlist").click()
    expect(pg.get_by_role("status")).to_contain_text("Global allowlist saved (2 IDs)")
    assert api_get(server, "/scan/allowlist").json()["ids"] == ["CVE-2016-6301", "CVE-2016-8859"]
    page.shot("admin-scanning")

    # a viewer: the column and the report, no buttons
    key = server.new_user("scan-viewer", {"vuln": "service-viewer"}, key="browser")
    pg.get_by_role("button", name="Log out").click()
    log_in(pg, server, key["id"], key["secret"])
    pg.goto(f"{server.url}/console/#/registries/vuln/images/app")
    row = pg.get_by_role("table", name="Artifacts of vuln/app").get_by_role("row").filter(
        has=pg.get_by_role("link", name=short))
    expect(row).to_contain_text(f"{v['total']} total / {v['fixable']} fixable / {v['severity']}")
    expect(pg.get_by_role("button", name=re.compile("Scan|Stop|Delete"))).to_have_count(0)
    row.get_by_role("link", name=short).click()
    expect(pg.get_by_role("table", name=f"Vulnerabilities of {short}").get_by_role("row")).to_have_count(
        v["total"] + 1)
    expect(pg.get_by_role("button")).to_have_text(["Log out"])
    page.shot("viewer-report")
    pg.goto(f"{server.url}/console/#/registries/vuln/settings")
    expect(pg.get_by_role("heading", level=2, name="Vulnerability scanning")).to_be_visible()
    expect(pg.get_by_role("form", name="Scan settings")).to_have_count(0)
    page.shot("viewer-settings")


def test_a_manager_stops_a_running_scan(server: Server, page: Steps) -> None:
    pg = page.page
    with server.client() as c:  # about 10 GiB of zeros to read: the scan runs until it is stopped
        digest = push_image(c, "halt/big", "v1", [vulnerable_layers()[0], *[zeros_layer(2)] * 5])
    short = digest[:len("sha256:") + 12]
    log_in(pg, server, *server.admin)
    pg.goto(f"{server.url}/console/#/registries/halt/images/big")
    row = pg.get_by_role("table", name="Artifacts of halt/big").get_by_role("row").filter(
        has=pg.get_by_role("link", name=short))
    row.get_by_role("button", name=f"Scan {digest}").click()
    expect(row).to_contain_text("Scanning")
    expect(row.get_by_role("button", name=f"Scan {digest}")).to_have_count(0)  # not while one runs
    page.shot("scanning")
    row.get_by_role("button", name=f"Stop the scan of {digest}").click()
    expect(pg.get_by_role("status")).to_contain_text(f"Stopping the scan of {short}")
    for _ in range(100):
        if api_get(server, f"/registries/halt/images/big/artifacts/{digest}/scan").json()["status"] != "Scanning":
            break
        pg.wait_for_timeout(300)
    pg.reload()
    expect(row).to_contain_text("Stopped")
    expect(row.get_by_role("button", name=f"Scan {digest}")).to_be_visible()  # may be started again
    page.shot("stopped")
