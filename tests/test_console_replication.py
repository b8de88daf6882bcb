"""Replication in the web console, in a real headless Chromium (tests/support/console.py).

The remote is the server's own URL, reached with an access key of the administrator
(NCR_REPLICATION_ALLOWED_NETWORKS=127.0.0.0/8): a push policy from registry `src` to the namespace `dst`
copies real artifacts over HTTP through the same code paths as between two instances.

- An administrator creates a remote on the Remotes page with a wrong secret (invalid, with the reason),
  fixes it (valid; a CA certificate that is not PEM is refused), creates a push policy with a tag filter
  on the registry's Replication tab, runs it, sees the execution Succeeded and its task, and finds the
  copy at the target with the source's digest (the tag the filter excludes is not copied); a second run
  skips it; the policy is changed and disabled; the remote cannot go while the policy uses it.
- A running execution (a bandwidth limit slows it; Run now meanwhile is recorded Skipped with the
  reason) refreshes itself: stopped through the API, the
  history shows it Stopped without a reload; a second one's page shows its running task, and its Stop
  button ends it Stopped.
- A service viewer sees the tab (a policy whose remote is down: invalid, with the reason), the policy,
  its history and the tasks, and no control to change, run or stop anything; the Remotes page is not
  theirs, and the API refuses what the console hides.
- A registry's project administrator (not a system administrator) names the remote, sees the API's
  refusals, creates a scheduled pull policy (its cron and next run shown) and runs it.

Every step leaves a screenshot in test-artifacts/console/<test>/<nn>-<step>.png (repository root).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.console import CHROMIUM, Steps, api_get, log_in
from tests.support.oci import image, push_image
from tests.support.server import Server, free_port

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make tools)")

expect.set_options(timeout=10_000)

ALLOW_LOOPBACK = {"NCR_REPLICATION_ALLOWED_NETWORKS": "127.0.0.0/8"}



@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server that may replicate to addresses on loopback (its own among them)."""
    srv = Server(data=tmp_path / "data", env=ALLOW_LOOPBACK).start()
    try:
        yield srv
    finally:
        srv.stop()


def admin_key(server: Server) -> dict[str, Any]:
    """An access key of the administrator: what the remote (this same server) is reached with."""
    return server.api().doc("api.key.create", {"description": "replication"}, user="admin")


def manifest_digest(server: Server, repository: str, tag: str) -> str | None:
    with server.client() as c:
        r = c.head(f"/v2/{repository}/manifests/{tag}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"})
    return r.headers["docker-content-digest"] if r.status_code == 200 else None


def policies(server: Server, registry: str) -> list[dict[str, Any]]:
    return list(api_get(server, f"/registries/{registry}/replications").json()["policies"])


def test_admin_creates_a_remote_and_a_policy_runs_it_and_sees_the_execution(server: Server, page: Steps) -> None:
    pg = page.page
    api = server.api()
    for name in ("src", "dst"):
        api.call("api.registry.create", {"name": name})
    with server.client() as c:
        v1 = push_image(c, "src/app", image("console-replicated"), "v1")
        push_image(c, "src/app", image("console-kept-back"), "dev")
    key = admin_key(server)
    log_in(pg, server, *server.admin)

    # The Remotes page: create one with a wrong secret: it is saved, and invalid with the reason.
    nav = pg.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Remotes").click()
    expect(pg.get_by_role("heading", level=1, name="Remote registries")).to_be_visible()
    expect(pg.get_by_text("No remotes yet")).to_be_visible()
    pg.get_by_text("Create a remote", exact=True).click()
    pg.get_by_label("Remote name").fill("self")
    pg.get_by_label("Remote type").select_option("ncr")
    pg.get_by_label("Remote URL").fill(server.url)
    pg.get_by_label("Access ID").fill(key["id"])
    pg.get_by_label("Access secret", exact=True).fill("not-the-secret-0")
    page.shot("remote-form")
    pg.get_by_role("button", name="Create remote").click()
    expect(pg.get_by_role("heading", level=1, name="Remote self")).to_be_visible()
    facts = pg.locator("dl.details")
    expect(facts.get_by_role("definition").first).to_contain_text("invalid")
    reason = api_get(server, "/remotes/self").json()["reason"]
    assert reason, "an invalid remote says why"
    expect(facts).to_contain_text(reason[:40])
    page.shot("remote-invalid")

    # Fix the secret (write-only: never shown, and the form says it is set): valid.
    pg.get_by_text("Change this remote", exact=True).click()
    expect(pg.get_by_label("Access secret", exact=True)).to_have_value("")
    expect(pg.get_by_text("Set: it is never shown.")).to_be_visible()
    pg.get_by_label("Access secret", exact=True).fill(key["secret"])
    pg.get_by_role("button", name="Save remote").click()
    expect(pg.get_by_role("status")).to_contain_text("Remote self saved: valid")
    expect(pg.locator("dl.details").get_by_role("definition").first).to_have_text("valid")
    remote = api_get(server, "/remotes/self").json()
    assert (remote["status"], remote["has_secret"], remote["access_id"]) == ("valid", True, key["id"])
    for secret in (key["secret"], "not-the-secret-0"):
        assert secret not in pg.content()
        assert pg.evaluate("s => [...document.querySelectorAll('input, textarea')].some(i => i.value.includes(s))",
                           secret) is False

    # A CA certificate that is not PEM is refused with the reason; nothing changes.
    pg.get_by_text("Change this remote", exact=True).click()
    pg.get_by_label("CA certificate").fill("not a certificate")
    pg.get_by_role("button", name="Save remote").click()
    expect(pg.get_by_role("alert")).to_contain_text("ca_cert must be PEM certificates")
    assert api_get(server, "/remotes/self").json()["ca_cert"] == ""
    pg.get_by_role("link", name="Remote registries").click()
    row = pg.get_by_role("table", name="Remote registries").get_by_role("row").filter(
        has=pg.get_by_role("link", name="self", exact=True))
    expect(row).to_contain_text("valid")
    expect(row).to_contain_text(server.url)
    row.get_by_role("button", name="Refresh remote self").click()
    expect(pg.get_by_role("status")).to_contain_text("Remote self checked: valid")
    page.shot("remote-valid")

    # The registry's Replication tab: create a push policy to dst, tags v* only.
    pg.goto(f"{server.url}/console/#/registries/src")
    tabs = pg.get_by_role("navigation", name="Registry")
    tabs.get_by_role("link", name="Replication").click()
    expect(pg.get_by_role("heading", level=2, name="Replication")).to_be_visible()
    expect(pg.get_by_text("No replication policies yet")).to_be_visible()
    pg.get_by_text("Create a replication policy", exact=True).click()
    pg.get_by_label("Policy name").fill("to-dst")
    pg.get_by_label("Direction").select_option("push")
    pg.get_by_label("Remote", exact=True).select_option("self")
    pg.get_by_label("Remote namespace").fill("dst")
    pg.get_by_label("Tag filter", exact=True).fill("v*")
    pg.get_by_label("Tag filter mode").select_option("match")
    expect(pg.get_by_label("Schedule (UTC)")).to_be_hidden()  # only for a scheduled trigger
    pg.get_by_label("Trigger").select_option("manual")
    page.shot("policy-form")
    pg.get_by_role("button", name="Create replication policy").click()
    expect(pg.get_by_role("heading", level=1, name="Replication policy to-dst")).to_be_visible()
    [policy] = policies(server, "src")
    assert (policy["direction"], policy["remote"], policy["remote_namespace"], policy["tag_filter"],
            policy["trigger"], policy["status"]) == ("push", "self", "dst", "v*", "manual", "valid")
    expect(pg.locator("dl.details")).to_contain_text("valid")
    expect(pg.get_by_text("No executions yet.")).to_be_visible()
    page.shot("policy-created")

    # Run it now: the execution ends Succeeded with one artifact copied (the filter keeps `dev` back).
    pg.get_by_role("button", name="Run replication policy to-dst now").click()
    expect(pg.get_by_role("status")).to_contain_text("execution #1 started")
    executions = pg.get_by_role("table", name="Executions of to-dst, newest first")
    first = executions.get_by_role("row").filter(has=pg.get_by_role("link", name="#1", exact=True))
    expect(first).to_contain_text("Succeeded")  # polled until it ends, no reload
    cells = first.get_by_role("cell")  # the execution is the row header
    expect(cells.nth(0)).to_have_text("manual")
    expect(cells.nth(4)).to_have_text("1")  # copied
    expect(cells.nth(5)).to_have_text("0")  # skipped
    expect(cells.nth(6)).to_have_text("0")  # failed
    assert manifest_digest(server, "dst/app", "v1") == v1
    assert manifest_digest(server, "dst/app", "dev") is None
    page.shot("execution-succeeded")

    # The execution's page: its task, from src/app:v1 to dst/app:v1.
    first.get_by_role("link", name="#1", exact=True).click()
    expect(pg.get_by_role("heading", level=1, name="Execution #1 of to-dst")).to_be_visible()
    expect(pg.locator("dl.details")).to_contain_text("Succeeded")
    tasks = pg.get_by_role("table", name="Tasks of execution #1")
    expect(tasks.get_by_role("row")).to_have_count(2)  # the header and one task
    task = tasks.get_by_role("row").filter(has_text="src/app:v1")
    expect(task.get_by_role("cell").nth(0)).to_have_text("dst/app:v1")
    expect(task.get_by_role("cell").nth(1)).to_have_text(v1[:len("sha256:") + 12])
    expect(task.get_by_role("cell").nth(2)).to_have_text("Succeeded")
    expect(task.get_by_role("cell").nth(3)).to_have_text("1")  # attempts
    expect(task.get_by_role("cell").nth(5)).to_have_text("-")  # no error
    page.shot("execution-tasks")

    # A second run copies nothing again: the target has it (skipped).
    pg.get_by_role("link", name="to-dst").click()
    pg.get_by_role("button", name="Run replication policy to-dst now").click()
    second = executions.get_by_role("row").filter(has=pg.get_by_role("link", name="#2", exact=True))
    expect(second).to_contain_text("Succeeded")
    expect(second.get_by_role("cell").nth(4)).to_have_text("0")  # copied
    expect(second.get_by_role("cell").nth(5)).to_have_text("1")  # skipped

    # Change it (the tag filter now excludes v*), then disable it from the tab: Run now is then disabled.
    pg.get_by_text("Change this policy", exact=True).click()
    pg.get_by_label("Tag filter mode").select_option("exclude")
    pg.get_by_label("Description").fill("all but releases")
    pg.get_by_role("button", name="Save replication policy").click()
    expect(pg.get_by_role("status")).to_contain_text("Replication policy to-dst saved")
    [changed] = policies(server, "src")
    assert (changed["tag_filter"], changed["tag_filter_mode"], changed["description"]) == (
        "v*", "exclude", "all but releases")
    pg.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Replication").click()
    listed = pg.get_by_role("table", name="Replication policies of src").get_by_role("row").filter(
        has=pg.get_by_role("link", name="to-dst", exact=True))
    expect(listed).to_contain_text("push to self dst")
    expect(listed).to_contain_text("tags except v*")
    expect(listed).to_contain_text("#2")
    switch = pg.get_by_role("switch", name="Enable replication policy to-dst")
    expect(switch).to_be_checked()
    switch.uncheck()
    expect(pg.get_by_role("status")).to_contain_text("Replication policy to-dst disabled.")
    expect(pg.get_by_role("button", name="Run replication policy to-dst now")).to_be_disabled()
    assert policies(server, "src")[0]["enabled"] is False
    page.shot("policy-disabled")

    # The remote cannot go while the policy uses it; after the policy is deleted, it can.
    pg.get_by_role("link", name="Remotes").click()
    pg.get_by_role("button", name="Delete remote self").click()
    pg.get_by_role("dialog", name="Delete remote self?").get_by_role("button", name="Delete remote").click()
    expect(pg.get_by_role("alert")).to_contain_text("used by replication policies")
    page.shot("remote-in-use")
    pg.goto(f"{server.url}/console/#/registries/src/replication")
    pg.get_by_role("button", name="Delete replication policy to-dst").click()
    pg.get_by_role("dialog", name="Delete replication policy to-dst?").get_by_role(
        "button", name="Delete policy").click()
    expect(pg.get_by_role("status")).to_contain_text("Replication policy to-dst deleted.")
    expect(pg.get_by_text("No replication policies yet")).to_be_visible()
    assert policies(server, "src") == []
    assert manifest_digest(server, "dst/app", "v1") == v1  # the copy stays
    pg.get_by_role("link", name="Remotes").click()
    pg.get_by_role("button", name="Delete remote self").click()
    pg.get_by_role("dialog", name="Delete remote self?").get_by_role("button", name="Delete remote").click()
    expect(pg.get_by_role("status")).to_contain_text("Remote self deleted.")
    expect(pg.get_by_text("No remotes yet")).to_be_visible()
    assert api_get(server, "/remotes").json()["remotes"] == []
    page.shot("deleted")


def test_a_running_execution_refreshes_itself_and_stops(server: Server, page: Steps) -> None:
    pg = page.page
    api = server.api()
    for name in ("slow", "far"):
        api.call("api.registry.create", {"name": name})
    with server.client() as c:
        push_image(c, "slow/big", image("console-slow", layer_sizes=[2 * 1024 * 1024]), "v1")
    key = admin_key(server)
    api.call("api.remote.create", {"name": "self", "url": server.url, "access_id": key["id"],
                                   "access_secret": key["secret"]})
    policy = api.doc("api.replication.create", {"name": "throttled", "direction": "push", "remote": "self",
                                                "remote_namespace": "far", "bandwidth_kbps": 16}, registry="slow")
    log_in(pg, server, *server.admin)
    pg.goto(f"{server.url}/console/#/registries/slow/replication/{policy['id']}")
    expect(pg.locator("dl.details")).to_contain_text("16 KiB/s")
    pg.get_by_role("button", name="Run replication policy throttled now").click()
    executions = pg.get_by_role("table", name="Executions of throttled, newest first")
    first = executions.get_by_role("row").filter(has=pg.get_by_role("link", name="#1", exact=True))
    expect(first).to_contain_text("Running")
    expect(first.get_by_role("button", name="Stop execution #1")).to_be_visible()
    page.shot("running")

    # Run now again while it runs: recorded as skipped, with the reason.
    pg.get_by_role("button", name="Run replication policy throttled now").click()
    expect(pg.get_by_role("status")).to_contain_text("execution #2 skipped")
    skipped = executions.get_by_role("row").filter(has=pg.get_by_role("link", name="#2", exact=True))
    expect(skipped).to_contain_text("Skipped")
    detail = api.doc("api.replication.execution", registry="slow", id=policy["id"], execution=2)["detail"]
    assert detail
    expect(skipped.get_by_role("cell").nth(8)).to_have_text(detail)
    expect(first).to_contain_text("Running")
    page.shot("skipped")

    # Stopped from elsewhere (the API): the page, left alone, follows it to Stopped.
    api.doc("api.replication.stop", registry="slow", id=policy["id"], execution=1)
    expect(first).to_contain_text("Stopped")
    expect(first.get_by_role("button", name="Stop execution #1")).to_have_count(0)
    page.shot("stopped-elsewhere")

    # Another run; its page follows it (its task runs), and its Stop button ends it.
    pg.get_by_role("button", name="Run replication policy throttled now").click()
    third = executions.get_by_role("row").filter(has=pg.get_by_role("link", name="#3", exact=True))
    expect(third).to_contain_text("Running")
    third.get_by_role("link", name="#3", exact=True).click()
    expect(pg.get_by_role("heading", level=1, name="Execution #3 of throttled")).to_be_visible()
    tasks = pg.get_by_role("table", name="Tasks of execution #3")
    expect(tasks.get_by_role("row").filter(has_text="slow/big:v1")).to_contain_text("Running")
    page.shot("execution-running")
    pg.get_by_role("button", name="Stop execution #3").click()
    pg.get_by_role("dialog", name="Stop execution #3?").get_by_role("button", name="Stop execution").click()
    expect(pg.get_by_role("status")).to_contain_text("Execution #3 is stopping.")
    expect(pg.locator("dl.details").get_by_role("definition").first).to_have_text("Stopped")
    expect(pg.get_by_role("button", name="Stop execution #3")).to_have_count(0)
    expect(tasks.get_by_role("row").filter(has_text="slow/big:v1")).to_contain_text("Stopped")
    for n in (1, 3):
        execution = api.doc("api.replication.execution", registry="slow", id=policy["id"], execution=n)
        assert execution["status"] == "Stopped" and execution["stop_requested"] is True
    assert manifest_digest(server, "far/big", "v1") is None  # the manifest never went without its blobs
    page.shot("execution-stopped")


def test_viewer_reads_replication_and_changes_nothing(server: Server, page: Steps) -> None:
    pg = page.page
    api = server.api()
    for name in ("shared", "mirror"):
        api.call("api.registry.create", {"name": name})
    with server.client() as c:
        push_image(c, "shared/tool", image("console-viewer"), "v1")
    key = admin_key(server)
    api.call("api.remote.create", {"name": "self", "url": server.url, "access_id": key["id"],
                                   "access_secret": key["secret"]})
    policy = api.doc("api.replication.create", {"name": "mirror-it", "direction": "push", "remote": "self",
                                                "remote_namespace": "mirror", "name_filter": "tool"},
                     registry="shared")
    api.doc("api.replication.run", registry="shared", id=policy["id"])
    for _ in range(300):  # until the run has ended (the engine runs it in the server's lifespan)
        if api.doc("api.replication.execution", registry="shared", id=policy["id"], execution=1)["status"] not in (
                "Pending", "Running"):
            break
        time.sleep(0.1)
    api.call("api.remote.create", {"name": "down", "url": f"http://127.0.0.1:{free_port()}"})  # nothing listens
    api.doc("api.replication.create", {"name": "to-nowhere", "direction": "push", "remote": "down"},
            registry="shared")
    [reason] = [p["reason"] for p in policies(server, "shared") if p["name"] == "to-nowhere"]
    assert reason
    viewer = server.new_user("watcher", {"shared": "service-viewer"}, key="console")
    log_in(pg, server, viewer["id"], viewer["secret"])

    def read_only() -> None:
        expect(pg.locator("main button")).to_have_count(0)
        expect(pg.locator("main form")).to_have_count(0)
        expect(pg.locator("main input, main select, main textarea")).to_have_count(0)

    nav = pg.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Registries", "Access keys"])
    pg.goto(f"{server.url}/console/#/registries/shared/replication")
    listed = pg.get_by_role("table", name="Replication policies of shared").get_by_role("row").filter(
        has=pg.get_by_role("link", name="mirror-it", exact=True))
    expect(listed).to_contain_text("push to self mirror")
    expect(listed).to_contain_text("valid")
    expect(listed).to_contain_text("enabled")
    expect(listed).to_contain_text("Succeeded")
    invalid = pg.get_by_role("row").filter(has=pg.get_by_role("link", name="to-nowhere", exact=True))
    expect(invalid).to_contain_text("invalid")
    expect(invalid).to_contain_text(reason[:40])  # why
    expect(invalid).to_contain_text("never run")
    expect(pg.get_by_text("Create a replication policy")).to_have_count(0)
    read_only()
    page.shot("viewer-tab")

    listed.get_by_role("link", name="mirror-it", exact=True).click()
    expect(pg.get_by_role("heading", level=1, name="Replication policy mirror-it")).to_be_visible()
    first = pg.get_by_role("table", name="Executions of mirror-it, newest first").get_by_role("row").filter(
        has=pg.get_by_role("link", name="#1", exact=True))
    expect(first).to_contain_text("Succeeded")
    expect(pg.get_by_text("Change this policy")).to_have_count(0)
    read_only()
    page.shot("viewer-policy")

    first.get_by_role("link", name="#1", exact=True).click()
    expect(pg.get_by_role("table", name="Tasks of execution #1")).to_contain_text("mirror/tool:v1")
    read_only()
    page.shot("viewer-execution")

    for admin_page in ("remotes", "remotes/self"):
        pg.goto(f"{server.url}/console/#/{admin_page}")
        expect(pg.get_by_role("heading", level=1, name="Not found")).to_be_visible()
    page.shot("viewer-no-remotes")

    # What the console does not offer, the API refuses.
    auth = (viewer["id"], viewer["secret"])
    base = f"{server.url}/api/v1/registries/shared/replications/{policy['id']}"
    assert httpx.post(f"{base}/run", auth=auth, timeout=10).status_code == 403
    assert httpx.patch(base, json={"enabled": False}, auth=auth, timeout=10).status_code == 403
    assert api_get(server, "/remotes", auth).status_code == 403


def test_a_registry_manager_creates_a_scheduled_pull_policy_by_the_remote_name(server: Server, page: Steps) -> None:
    """A project administrator of one registry (not a system administrator) does not see remotes: they name one.
    The API's refusals (an unknown remote, an event trigger on a pull) are shown; a scheduled pull policy shows
    its cron and next run, and Run now pulls the remote's image into the registry."""
    pg = page.page
    api = server.api()
    for name in ("team", "upstream"):
        api.call("api.registry.create", {"name": name})
    with server.client() as c:
        pulled = push_image(c, "upstream/base", image("console-pulled"), "v1")
    key = admin_key(server)
    api.call("api.remote.create", {"name": "hq", "url": server.url, "access_id": key["id"],
                                   "access_secret": key["secret"]})
    manager = server.new_user("lead", {"team": "project-admin"}, key="console")
    log_in(pg, server, manager["id"], manager["secret"])
    nav = pg.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Registries", "Access keys"])

    pg.goto(f"{server.url}/console/#/registries/team/replication")
    pg.get_by_text("Create a replication policy", exact=True).click()
    remote = pg.get_by_label("Remote", exact=True)
    expect(remote).to_have_attribute("name", "remote")
    expect(remote).to_have_js_property("tagName", "INPUT")  # a name to type, not a list it may not read
    pg.get_by_label("Policy name").fill("from-hq")
    pg.get_by_label("Direction").select_option("pull")
    remote.fill("nowhere")
    pg.get_by_label("Remote namespace").fill("upstream")
    pg.get_by_role("button", name="Create replication policy").click()
    expect(pg.get_by_role("alert")).to_contain_text("no remote named nowhere")
    remote.fill("hq")
    pg.get_by_label("Trigger").select_option("event")
    pg.get_by_role("button", name="Create replication policy").click()
    expect(pg.get_by_role("alert")).to_contain_text("event trigger is for push policies only")
    assert policies(server, "team") == []
    page.shot("refused")

    pg.get_by_label("Trigger").select_option("scheduled")
    pg.get_by_label("Schedule (UTC)").fill("Daily")
    pg.get_by_role("button", name="Create replication policy").click()
    expect(pg.get_by_role("heading", level=1, name="Replication policy from-hq")).to_be_visible()
    [policy] = policies(server, "team")
    assert (policy["direction"], policy["remote"], policy["trigger"], policy["schedule"]) == (
        "pull", "hq", "scheduled", "0 0 * * *")
    assert policy["next_run_at"]
    facts = pg.locator("dl.details")
    expect(facts).to_contain_text("scheduled 0 0 * * * (UTC)")
    expect(facts.locator(f'time[datetime="{policy["next_run_at"]}"]')).to_have_count(1)  # the next run
    expect(facts.get_by_role("link", name="hq")).to_have_count(0)  # the remote's page is not theirs
    page.shot("scheduled-pull")

    pg.get_by_role("button", name="Run replication policy from-hq now").click()
    first = pg.get_by_role("table", name="Executions of from-hq, newest first").get_by_role("row").filter(
        has=pg.get_by_role("link", name="#1", exact=True))
    expect(first).to_contain_text("Succeeded")
    first.get_by_role("link", name="#1", exact=True).click()
    task = pg.get_by_role("table", name="Tasks of execution #1").get_by_role("row").filter(
        has_text="upstream/base:v1")
    expect(task.get_by_role("cell").nth(0)).to_have_text("team/base:v1")
    expect(task).to_contain_text("Succeeded")
    assert manifest_digest(server, "team/base", "v1") == pulled
    page.shot("pulled")
