"""The console's image trust in a real headless Chromium, against a real server, the image signed by the
pinned cosign:

- the artifact list shows the image alone (its signature is an accessory) with a "signed (1)" badge;
  a manager pastes the signer's public key with a name in the registry's Trust tab, and the badge turns
  "verified (release)";
- the artifact's page lists the signature (layout, verdict, key by name) and its accessories (the .sig
  tag), read-only: no Delete button in them;
- the registry's trust settings card (beside the scan settings) saves both requirements;
- the administrators' Trusted keys page adds and deletes an installation key;
- the webhook form offers signature.pushed, signature.invalid and the replication and scan events;
- a viewer sees the badge and the settings, and no form or button to change them (the API lists a
  registry's keys to its managers only).
Screenshots in test-artifacts/console/<test>/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.clients import Clients, find_tool, make_image, write_layout
from tests.support.console import CHROMIUM, Steps, api_get, log_in
from tests.support.server import Server

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make tools)"),
    pytest.mark.skipif(find_tool("cosign") is None or find_tool("skopeo") is None,
                       reason="not installed: cosign, skopeo"),
]
expect.set_options(timeout=30_000)
COSIGN_REGISTRY = ["--allow-insecure-registry", "--allow-http-registry"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from Server(data=tmp_path_factory.mktemp("consoletrust") / "data", registries=("sig",),
                 env={"NCR_TRUST_POLL_SECONDS": "0.2"}).running()




def key_pair(c: Clients, name: str) -> str:
    c.run("cosign", "generate-key-pair", "--output-key-prefix", name, env={"COSIGN_PASSWORD": ""})
    return c.path(f"{name}.pub").read_text()


def test_signed_badge_keys_signatures_accessories_and_settings(server: Server, cl: Clients, page: Steps) -> None:
    pg = page.page
    image = make_image("console-trust")
    layout = cl.path("layout")
    write_layout(layout, "t", [image])
    cl.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{server.host}/sig/app:v1")
    release_pem, ops_pem = key_pair(cl, "release"), key_pair(cl, "ops")
    cl.run("cosign", "sign", "--key", "release.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY,
           f"{server.host}/sig/app@{image.digest}", env={"COSIGN_PASSWORD": ""})
    short = image.digest[:len("sha256:") + 12]

    log_in(pg, server, *server.admin)
    pg.goto(f"{server.url}/console/#/registries/sig/images/app")
    artifacts = pg.get_by_role("table", name="Artifacts of sig/app")
    expect(artifacts.locator("tbody tr")).to_have_count(1)  # the signature is not an artifact of its own
    row = artifacts.get_by_role("row").filter(has=pg.get_by_role("link", name=short))
    for _ in range(100):  # the result is computed in the background a moment after the push
        if "signed (1)" in row.inner_text():
            break
        pg.wait_for_timeout(200)
        pg.reload()
    expect(row.locator(".badge-trust-info")).to_have_text("signed (1)")
    page.shot("signed")

    # A manager trusts the signer's key in the registry's Trust tab: the badge says verified, by name.
    pg.goto(f"{server.url}/console/#/registries/sig/trust")
    form = pg.get_by_role("form", name="Trust a key")
    form.get_by_label("Name").fill("release")
    form.get_by_label("Public key (PEM)").fill(release_pem)
    form.get_by_role("button", name="Add key").click()
    expect(pg.get_by_role("status")).to_contain_text("Registry sig now trusts key release")
    keys = pg.get_by_role("table", name="Keys Registry sig trusts")
    expect(keys.get_by_role("rowheader", name="release", exact=True)).to_be_visible()
    page.shot("registry-keys")
    pg.goto(f"{server.url}/console/#/registries/sig/images/app")
    for _ in range(100):
        if "verified (release)" in row.inner_text():
            break
        pg.wait_for_timeout(200)
        pg.reload()
    expect(row.locator(".badge-trust-ok")).to_have_text("verified (release)")
    page.shot("verified")

    # The artifact's page: the signature's verdict and key, its accessories read-only.
    row.get_by_role("link", name=short).click()
    signatures = pg.get_by_role("table", name=f"Signatures of {short}")
    expect(signatures.locator("tbody tr")).to_have_count(1)
    expect(signatures.locator("tbody tr")).to_contain_text(re.compile(r"tag.*verified.*release", re.S))
    accessories = pg.get_by_role("table", name=f"Accessories of {short}")
    expect(accessories.locator("tbody tr")).to_have_count(1)
    expect(accessories).to_contain_text(f"sha256-{image.digest[7:]}.sig")
    expect(accessories).to_contain_text("signature")
    expect(accessories.get_by_role("button")).to_have_count(0)
    page.shot("artifact")

    # The registry's trust settings, beside its scan settings.
    pg.goto(f"{server.url}/console/#/registries/sig/settings")
    expect(pg.get_by_role("heading", level=2, name="Vulnerability scanning")).to_be_visible()
    settings = pg.get_by_role("form", name="Trust settings")
    settings.get_by_label("Require a cosign signature").check()
    settings.get_by_label("Require a signature verified by a trusted key").check()
    settings.get_by_role("button", name="Save trust settings").click()
    expect(pg.get_by_role("status")).to_contain_text("Trust settings of sig saved")
    assert api_get(server, "/registries/sig/trust").json() == {
        "registry": "sig", "require_signature": True, "require_verified_signature": True}
    page.shot("trust-settings")

    # The administrators' page: the installation's keys, added and deleted.
    pg.get_by_role("navigation", name="Main").get_by_role("link", name="Trusted keys").click()
    pg.get_by_label("Name").fill("ops")
    pg.get_by_label("Public key (PEM)").fill(ops_pem)
    pg.get_by_role("button", name="Add key").click()
    expect(pg.get_by_role("status")).to_contain_text("Every registry now trusts key ops")
    assert [k["name"] for k in api_get(server, "/trust/keys").json()["keys"]] == ["ops"]
    page.shot("installation-keys")
    pg.get_by_role("button", name="Delete key ops").click()
    pg.get_by_role("dialog", name="Stop trusting key ops?").get_by_role("button", name="Delete key").click()
    expect(pg.get_by_role("status")).to_contain_text("Key ops deleted")
    assert api_get(server, "/trust/keys").json()["keys"] == []

    # Webhooks may be told of signatures (and of replications and scans).
    pg.goto(f"{server.url}/console/#/registries/sig/webhooks")
    for event in ("signature.pushed", "signature.invalid", "replication.failed", "scan.completed"):
        expect(pg.get_by_label(re.compile(re.escape(f"({event})")))).to_have_count(1)

    # A viewer: the badge and the keys, nothing to change.
    key = server.new_user("trust-viewer", {"sig": "service-viewer"}, key="browser")
    pg.get_by_role("button", name="Log out").click()
    log_in(pg, server, key["id"], key["secret"])
    pg.goto(f"{server.url}/console/#/registries/sig/images/app")
    expect(row.locator(".badge-trust-ok")).to_have_text("verified (release)")
    pg.goto(f"{server.url}/console/#/registries/sig/trust")
    expect(pg.get_by_text("Only the registry's managers see and change its trusted keys.")).to_be_visible()
    expect(pg.get_by_role("form")).to_have_count(0)
    pg.goto(f"{server.url}/console/#/registries/sig/settings")
    expect(pg.get_by_role("heading", level=2, name="Image trust")).to_be_visible()
    expect(pg.get_by_role("form", name="Trust settings")).to_have_count(0)
    expect(pg.get_by_role("button")).to_have_text(["Log out"])
    page.shot("viewer")
