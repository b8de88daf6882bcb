"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

An administrator logs in, creates a registry, sees an image pushed by skopeo with its artifact and
tags, creates a tag, finds it by substring and by glob, deletes it, deletes the artifact, and
creates and revokes an access key whose secret is shown once. A service viewer logging in with an
access key sees the images and none of the controls their role does not allow. An administrator
creates a user, grants and revokes roles, changes a registry's settings, searches the registry's
tags, deletes an image, runs GC, and deletes a registry that still holds an image (only when forced).
On a registry's Webhooks, Cleanup and Protection tabs an administrator creates, tests, changes and
disables a webhook (its test delivered in the history), adds protection and cleanup policies, sets the
cleanup schedule and finds a test run's would-delete item in its details; a service viewer sees them
read-only. An administrator creates, tests, changes and deletes an image cache (refused while the
cache-type registry created from the registries page uses it; that registry starts with its cleanup policy).

Every step leaves a screenshot in test-artifacts/console/<test>/<nn>-<step>.png (repository root).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.clients import Clients, find_tool, make_image, write_layout
from tests.support.console import CHROMIUM, Steps, api_get, log_in
from tests.support.oci import image, push_image
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import Server

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(not Path(CHROMIUM).exists() or find_tool("skopeo") is None,
                       reason="needs Debian's chromium and skopeo (make tools)"),
]

expect.set_options(timeout=10_000)



def push(server: Server, tmp_path: Path, repository: str, *tags: str) -> str:
    """`skopeo copy` a small image into `repository` under each tag (as the admin); its digest."""
    c = Clients(tmp_path / "clients", server)
    image = make_image(f"console-{repository}", n_layers=2)
    layout = c.path("layout")
    write_layout(layout, "t", [image])
    for tag in tags:
        c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{server.host}/{repository}:{tag}")
    return image.digest


def token_status(server: Server, key_id: str, secret: str) -> int:
    return httpx.get(f"{server.url}/auth/token", auth=(key_id, secret), timeout=10).status_code


def test_admin_manages_images_tags_and_keys(server: Server, page: Steps, tmp_path: Path) -> None:
    pg = page.page
    response = httpx.get(f"{server.url}/console/", timeout=10)
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"

    # Log in.
    pg.goto(server.url + "/")
    expect(pg.get_by_role("heading", name="Log in to ncr-trio")).to_be_visible()
    page.shot("login-form")
    pg.get_by_label("User name or access key ID").fill("admin")
    pg.get_by_label("Password or secret").fill("wrong-password")
    pg.get_by_role("button", name="Log in").click()
    expect(pg.get_by_role("alert")).to_contain_text("Wrong user name")
    pg.get_by_label("Password or secret").fill(server.admin_password)
    pg.get_by_role("button", name="Log in").click()
    expect(pg.get_by_role("heading", level=1, name="Registries")).to_be_visible()
    expect(pg.get_by_text("Signed in as admin (system administrator)")).to_be_visible()
    page.shot("registries")

    # Create a registry.
    pg.get_by_text("Create a registry", exact=True).first.click()
    pg.get_by_label("Registry name").fill("console")
    pg.get_by_label("Description").fill("made in the console")
    pg.get_by_role("button", name="Create registry").click()
    expect(pg.get_by_role("heading", level=1, name="Registry console")).to_be_visible()
    expect(pg.get_by_text("No images yet")).to_be_visible()
    assert api_get(server, "/registries/console").json()["description"] == "made in the console"
    page.shot("registry-created")

    # An image pushed by skopeo appears, with its artifact and tags.
    digest = push(server, tmp_path, "console/app", "v1", "latest")
    short = digest[:len("sha256:") + 12]
    pg.reload()
    app_link = pg.get_by_role("link", name="app", exact=True)
    expect(app_link).to_be_visible()
    row = pg.get_by_role("row").filter(has=app_link)
    expect(row.get_by_role("cell").nth(0)).to_have_text("1")  # artifacts (the name is the row header)
    expect(row.get_by_role("cell").nth(1)).to_have_text("2")  # tags
    page.shot("image-listed")
    pg.get_by_label("Search images").fill("nothing-like-this")
    pg.get_by_role("button", name="Search", exact=True).click()
    expect(pg.get_by_text("No image matches.")).to_be_visible()
    pg.get_by_label("Search images").fill("ap")
    pg.get_by_role("button", name="Search", exact=True).click()
    app_link.click()

    expect(pg.get_by_role("heading", level=1, name="Image console/app")).to_be_visible()
    artifacts = pg.get_by_role("table", name="Artifacts of console/app")
    artifact_row = artifacts.get_by_role("row").filter(has=pg.get_by_role("link", name=short))
    expect(artifact_row).to_contain_text("OCI image manifest")
    expect(artifact_row.get_by_text("v1", exact=True)).to_be_visible()
    expect(artifact_row.get_by_text("latest", exact=True)).to_be_visible()
    page.shot("image-artifacts")

    artifacts.get_by_role("link", name=short).click()
    expect(pg.get_by_role("heading", level=1, name=f"Artifact {short}")).to_be_visible()
    expect(pg.get_by_text(digest, exact=True)).to_be_visible()
    page.shot("artifact")

    # Create a tag on the artifact.
    pg.get_by_label("New tag").fill("release-1.0")
    pg.get_by_role("button", name="Add tag").click()
    expect(pg.get_by_role("status")).to_contain_text("Tag release-1.0 now points to")
    expect(pg.get_by_role("row", name=re.compile("release-1.0"))).to_be_visible()
    tags = api_get(server, "/registries/console/images/app/tags").json()["tags"]
    assert sorted(t["name"] for t in tags) == ["latest", "release-1.0", "v1"]
    page.shot("tag-created")

    # Search it: by substring, then by glob, on the image's page.
    pg.get_by_role("link", name="app", exact=True).first.click()
    expect(pg.get_by_role("heading", level=1, name="Image console/app")).to_be_visible()
    tag_table = pg.get_by_role("table", name="Tags of console/app")
    pg.get_by_label("Search tags").fill("lease")
    pg.get_by_label("Match").select_option("q")
    pg.get_by_role("button", name="Search tags").click()
    expect(tag_table.get_by_role("rowheader")).to_have_text(["release-1.0"])
    page.shot("tag-search-substring")
    pg.get_by_label("Search tags").fill("v*")
    pg.get_by_label("Match").select_option("glob")
    pg.get_by_role("button", name="Search tags").click()
    expect(tag_table.get_by_role("rowheader")).to_have_text(["v1"])
    pg.get_by_label("Search tags").fill("release-*.?")
    pg.get_by_role("button", name="Search tags").click()
    expect(tag_table.get_by_role("rowheader")).to_have_text(["release-1.0"])
    page.shot("tag-search-glob")

    # Delete it (with a confirmation).
    tag_table.get_by_role("button", name="Delete tag release-1.0").click()
    dialog = pg.get_by_role("dialog", name="Delete tag release-1.0?")
    expect(dialog).to_be_visible()
    page.shot("tag-delete-confirm")
    dialog.get_by_role("button", name="Delete tag").click()
    expect(pg.get_by_role("status")).to_contain_text("Tag release-1.0 deleted")
    expect(pg.get_by_text("No tag matches.")).to_be_visible()
    tags = api_get(server, "/registries/console/images/app/tags").json()["tags"]
    assert sorted(t["name"] for t in tags) == ["latest", "v1"]
    page.shot("tag-deleted")

    # Delete the artifact: cancel once, then confirm.
    pg.get_by_role("link", name=short).first.click()
    pg.get_by_role("button", name="Delete artifact").click()
    pg.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(pg.get_by_role("dialog")).to_have_count(0)
    assert api_get(server, f"/registries/console/images/app/artifacts/{digest}").status_code == 200
    pg.get_by_role("button", name="Delete artifact").click()
    dialog = pg.get_by_role("dialog", name=f"Delete artifact {short}?")
    page.shot("artifact-delete-confirm")
    dialog.get_by_role("button", name="Delete artifact").click()
    expect(pg.get_by_role("status")).to_contain_text(f"Artifact {short} deleted")
    assert api_get(server, f"/registries/console/images/app/artifacts/{digest}").status_code == 404
    page.shot("artifact-deleted")

    # Create an access key: the secret is shown once.
    pg.get_by_role("link", name="Access keys").click()
    expect(pg.get_by_role("heading", level=1, name="Access keys")).to_be_visible()
    pg.get_by_label("Key description").fill("laptop")
    pg.get_by_role("button", name="Create access key").click()
    dialog = pg.get_by_role("dialog", name="Access key created")
    expect(dialog).to_be_visible()
    key_id = dialog.get_by_label("Key ID").input_value()
    secret = dialog.get_by_label("Secret").input_value()
    assert key_id.startswith("NCR") and len(secret) >= 20
    dialog.get_by_role("button", name="Copy secret").click()
    expect(dialog.get_by_text("Copied.")).to_be_visible()
    assert pg.evaluate("navigator.clipboard.readText()") == secret
    page.shot("key-secret-once")
    assert token_status(server, key_id, secret) == 200
    dialog.get_by_role("button", name="Done").click()
    expect(pg.get_by_role("dialog")).to_have_count(0)
    key_row = pg.get_by_role("row").filter(has=pg.get_by_text(key_id, exact=True))
    expect(key_row).to_contain_text("laptop")
    expect(key_row).to_contain_text("active")
    shown = pg.evaluate("secret => document.body.innerText.includes(secret) || "
                        "[...document.querySelectorAll('input, textarea')].some(i => i.value.includes(secret)) || "
                        "document.documentElement.outerHTML.includes(secret)", secret)
    assert shown is False, "the secret is still on the page after its dialog closed"
    page.shot("key-listed")

    # Revoke it.
    key_row.get_by_role("button", name=f"Revoke key {key_id}").click()
    pg.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(pg.get_by_role("status")).to_contain_text(f"Access key {key_id} revoked")
    expect(pg.get_by_text(key_id, exact=True)).to_have_count(0)
    pg.get_by_label("Show revoked keys").check()
    expect(pg.get_by_role("row").filter(has=pg.get_by_text(key_id, exact=True))).to_contain_text("revoked")
    assert token_status(server, key_id, secret) == 401
    page.shot("key-revoked")

    # The administrator's pages: users, GC, audit log.
    pg.get_by_role("link", name="Garbage collection").click()
    pg.get_by_role("button", name="Dry run").click()
    expect(pg.get_by_role("heading", name="Dry run result")).to_be_visible()
    page.shot("gc-dry-run")
    pg.get_by_role("link", name="Audit log").click()
    pg.get_by_label("Action").fill("key")
    pg.get_by_role("button", name="Filter").click()
    audit = pg.get_by_role("table", name="Audit log entries, newest first")
    expect(audit.get_by_role("cell", name="key.revoke")).to_be_visible()
    expect(audit.get_by_role("cell", name="key.create")).to_be_visible()
    page.shot("audit-log")

    # Log out: back to the login form, and the token is gone.
    pg.get_by_role("button", name="Log out").click()
    expect(pg.get_by_role("heading", name="Log in to ncr-trio")).to_be_visible()
    assert pg.evaluate("Object.keys(sessionStorage).length") == 0
    page.shot("logged-out")


def test_viewer_sees_images_but_no_controls(server: Server, page: Steps, tmp_path: Path) -> None:
    pg = page.page
    server.api().call("api.registry.create", {"name": "view"})
    digest = push(server, tmp_path, "view/tools/lint", "v1")
    short = digest[:len("sha256:") + 12]
    key = server.new_user("viewer", {"view": "service-viewer"}, key="browser")

    log_in(pg, server, key["id"], key["secret"])
    expect(pg.get_by_text(f"Signed in as viewer with key {key['id']}")).to_be_visible()
    expect(pg.get_by_role("link", name="view", exact=True)).to_be_visible()
    expect(pg.get_by_role("link", name="a", exact=True)).to_have_count(0)  # no role there
    nav = pg.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Registries", "Access keys"])
    expect(pg.get_by_text("Create a registry")).to_have_count(0)
    page.shot("registries")

    pg.get_by_role("link", name="view", exact=True).click()
    lint = pg.get_by_role("link", name="tools/lint", exact=True)
    expect(lint).to_be_visible()
    expect(pg.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)
    page.shot("images")

    lint.click()
    expect(pg.get_by_role("heading", level=1, name="Image view/tools/lint")).to_be_visible()
    artifact_link = pg.get_by_role("table", name="Artifacts of view/tools/lint").get_by_role("link", name=short)
    expect(artifact_link).to_be_visible()
    expect(pg.get_by_role("button", name=re.compile("Delete"))).to_have_count(0)
    page.shot("artifacts")

    artifact_link.click()
    expect(pg.get_by_role("heading", level=1, name=f"Artifact {short}")).to_be_visible()
    expect(pg.get_by_role("rowheader", name="v1", exact=True)).to_be_visible()
    expect(pg.get_by_label("New tag")).to_have_count(0)
    expect(pg.get_by_role("button")).to_have_text(["Log out"])  # nothing else to press
    page.shot("artifact")

    pg.get_by_role("link", name="view", exact=True).first.click()
    pg.get_by_role("link", name="Settings").click()
    expect(pg.get_by_role("heading", level=2, name="Settings")).to_be_visible()
    expect(pg.get_by_role("button", name="Save settings")).to_have_count(0)
    expect(pg.get_by_role("button", name="Delete registry")).to_have_count(0)
    pg.get_by_role("link", name="Members").click()
    expect(pg.get_by_role("row", name=re.compile("viewer"))).to_contain_text("service-viewer")
    expect(pg.get_by_role("button", name=re.compile("Revoke|Grant"))).to_have_count(0)
    page.shot("members")

    for admin_page in ("users", "gc", "audit"):
        pg.goto(f"{server.url}/console/#/{admin_page}")
        expect(pg.get_by_role("heading", level=1, name="Not found")).to_be_visible()
    page.shot("no-admin-pages")

    # What the console hides, the API refuses.
    viewer = (key["id"], key["secret"])
    assert api_get(server, "/users", viewer).status_code == 403
    assert httpx.delete(f"{server.url}/api/v1/registries/view/images/tools/lint", auth=viewer).status_code == 403

    pg.get_by_role("link", name="Access keys").click()
    expect(pg.get_by_role("row").filter(has=pg.get_by_text(key["id"], exact=True))).to_contain_text("(this session)")
    page.shot("own-keys")


def test_admin_pages_users_roles_settings_gc_and_deletions(server: Server, page: Steps, tmp_path: Path) -> None:
    pg = page.page
    server.api().call("api.registry.create", {"name": "ops"})
    push(server, tmp_path, "ops/web", "v1", "v2")
    log_in(pg, server, *server.admin)

    # Users: create one, grant a role from the user's page, then a second one from the registry's members.
    pg.get_by_role("link", name="Users").click()
    pg.get_by_text("Create a user", exact=True).first.click()
    pg.get_by_label("User name").fill("dev")
    pg.get_by_label("Password").fill("dev-password-0")
    pg.get_by_role("button", name="Create user").click()
    expect(pg.get_by_role("heading", level=1, name="User dev")).to_be_visible()
    pg.get_by_label("Registry", exact=True).select_option("ops")
    pg.get_by_label("Role", exact=True).select_option("image-uploader")
    pg.get_by_role("button", name="Grant role").click()
    expect(pg.get_by_role("table", name="Roles of dev")).to_contain_text("image-uploader")
    assert server.api().doc("api.roles", user="dev")["roles"] == [{"registry": "ops", "role": "image-uploader"}]
    page.shot("user-role-granted")

    pg.goto(f"{server.url}/console/#/registries/ops/members")
    members = pg.get_by_role("table", name="Roles on ops")
    expect(members.get_by_role("row", name=re.compile("dev"))).to_contain_text("image-uploader")
    pg.get_by_label("Role", exact=True).select_option("project-member")
    pg.get_by_label("User", exact=True).select_option("dev")
    pg.get_by_role("button", name="Grant role").click()
    expect(members.get_by_role("row", name=re.compile("dev"))).to_contain_text("project-member")
    members.get_by_role("button", name="Revoke the role of dev").click()
    pg.get_by_role("dialog").get_by_role("button", name="Revoke role").click()
    expect(pg.get_by_text("Nobody holds a role on this registry itself.")).to_be_visible()
    assert server.api().doc("api.roles", user="dev")["roles"] == []
    page.shot("members")

    # Settings.
    pg.get_by_role("link", name="Settings").click()
    pg.get_by_label("Description").fill("operations")
    pg.get_by_label("Public read").check()
    pg.get_by_label("Allowed CIDR blocks").fill("127.0.0.0/8, 10.0.0.0/8")
    pg.get_by_role("button", name="Save settings").click()
    expect(pg.get_by_role("status")).to_contain_text("Settings saved")
    settings = api_get(server, "/registries/ops").json()
    assert (settings["description"], settings["public_read"], settings["allowed_cidrs"]) == (
        "operations", True, ["127.0.0.0/8", "10.0.0.0/8"])
    page.shot("settings")

    # Tags across the registry, then delete the image from the images list.
    pg.get_by_role("link", name="Tags", exact=True).click()
    tags = pg.get_by_role("table", name="Tags in ops")
    expect(tags.get_by_role("rowheader")).to_have_count(2)
    pg.get_by_label("Search tags").fill("{v2,v3}")
    pg.get_by_label("Match").select_option("glob")
    pg.get_by_role("button", name="Search tags").click()
    expect(tags.get_by_role("rowheader")).to_have_text(["v2"])
    expect(tags.get_by_role("link", name="web", exact=True)).to_be_visible()
    page.shot("registry-tags")
    pg.get_by_role("link", name="Images", exact=True).click()
    pg.get_by_role("button", name="Delete image web").click()
    pg.keyboard.press("Escape")  # dismissed: nothing happens
    expect(pg.get_by_role("dialog")).to_have_count(0)
    expect(pg.get_by_role("link", name="web", exact=True)).to_be_visible()
    pg.get_by_role("button", name="Delete image web").click()
    pg.get_by_role("dialog").get_by_role("button", name="Delete image").click()
    expect(pg.get_by_role("status")).to_contain_text("Image ops/web deleted (1 artifacts)")
    expect(pg.get_by_text("No images yet")).to_be_visible()
    page.shot("image-deleted")

    # GC now, then its history.
    pg.get_by_role("link", name="Garbage collection").click()
    pg.get_by_role("button", name="Run GC now").click()
    pg.get_by_role("dialog").get_by_role("button", name="Run GC").click()
    expect(pg.get_by_role("heading", name="Result", exact=True)).to_be_visible()
    expect(pg.get_by_role("table", name="Garbage collection runs").get_by_role("row")).to_have_count(2)
    page.shot("gc-run")

    # Delete the registry (it holds an image again: only with force).
    push(server, tmp_path, "ops/web", "v3")
    pg.goto(f"{server.url}/console/#/registries/ops/settings")
    pg.get_by_role("button", name="Delete registry").click()
    pg.get_by_role("dialog").get_by_role("button", name="Delete registry").click()
    expect(pg.get_by_role("alert")).to_contain_text("image")  # 409: it holds images
    pg.get_by_role("button", name="Delete registry").click()
    dialog = pg.get_by_role("dialog")
    dialog.get_by_label("Also delete its 1 images").check()
    page.shot("registry-delete-confirm")
    dialog.get_by_role("button", name="Delete registry").click()
    expect(pg.get_by_role("status")).to_contain_text("Registry ops deleted (1 images)")
    expect(pg.get_by_role("heading", level=1, name="Registries")).to_be_visible()
    expect(pg.get_by_role("link", name="ops", exact=True)).to_have_count(0)
    page.shot("registry-deleted")


def test_admin_manages_image_caches_and_creates_a_cache_registry(server: Server, page: Steps) -> None:
    pg = page.page
    secret = "console-cache-s3cret"
    log_in(pg, server, *server.admin)
    pg.get_by_role("link", name="Image caches").click()
    expect(pg.get_by_role("heading", level=1, name="Image caches")).to_be_visible()
    expect(pg.get_by_text("No image caches yet")).to_be_visible()

    # Create one; a port the guide does not allow is refused first.
    pg.get_by_text("Create an image cache", exact=True).click()
    pg.get_by_label("Image cache name").fill("hub")
    pg.get_by_label("Source type").select_option("dockerhub")
    pg.get_by_label("Source URL").fill("https://registry-1.docker.io:8443")
    pg.get_by_label("Access ID").fill("ci-bot")
    pg.get_by_label("Access secret").fill(secret)
    pg.get_by_role("button", name="Create image cache").click()
    expect(pg.get_by_role("alert")).to_contain_text("port 8443 is not allowed")
    pg.get_by_label("Source URL").fill("https://registry-1.docker.io")
    pg.get_by_role("button", name="Create image cache").click()
    expect(pg.get_by_role("heading", level=1, name="Image cache hub")).to_be_visible()
    expect(pg.get_by_role("definition").filter(has_text="Docker Hub")).to_be_visible()
    assert api_get(server, "/caches/hub").json()["has_secret"] is True
    page.shot("cache-created")

    # Test the connection (the source cannot be reached from here: it says so), then change the source.
    pg.get_by_role("button", name="Test image cache hub").click()
    expect(pg.get_by_role("heading", name="Test of hub: failed")).to_be_visible()
    pg.get_by_text("Change this image cache", exact=True).click()
    pg.get_by_label("Source URL").fill("https://mirror.gcr.io")
    pg.get_by_role("button", name="Save image cache").click()
    expect(pg.get_by_role("status")).to_contain_text("Image cache hub saved")
    expect(pg.locator("code.url")).to_have_text("https://mirror.gcr.io")
    assert secret not in pg.content()
    page.shot("cache-changed")

    # A registry of the image cache type, from the registries page: it starts with the guide's policy.
    pg.get_by_role("link", name="Registries").click()
    pg.get_by_text("Create a registry", exact=True).first.click()
    pg.get_by_label("Registry name").fill("hubmirror")
    pg.get_by_label("Usage").select_option("image_cache")
    pg.get_by_label("Image cache", exact=True).select_option("hub")
    page.shot("cache-registry-form")
    pg.get_by_role("button", name="Create registry").click()
    expect(pg.get_by_role("heading", level=1, name="Registry hubmirror")).to_be_visible()
    expect(pg.locator(".summary")).to_contain_text("image cache hub")
    pg.get_by_role("link", name="Cleanup").click()
    expect(pg.get_by_text("exclude artifacts pushed or pulled within 7 days")).to_be_visible()
    assert api_get(server, "/registries/hubmirror").json()["cache"] == "hub"
    page.shot("cache-registry")

    # The cache cannot go while the registry uses it; then it can.
    pg.get_by_role("link", name="Image caches").click()
    expect(pg.get_by_role("table", name="Image caches")).to_contain_text("hubmirror")
    pg.get_by_role("button", name="Delete image cache hub").click()
    pg.get_by_role("dialog").get_by_role("button", name="Delete image cache").click()
    expect(pg.get_by_role("alert")).to_contain_text("used by registry hubmirror")
    page.shot("cache-in-use")
    server.api().call("api.registry.delete", registry="hubmirror")
    pg.reload()
    pg.get_by_role("button", name="Delete image cache hub").click()
    pg.get_by_role("dialog").get_by_role("button", name="Delete image cache").click()
    expect(pg.get_by_role("status")).to_contain_text("Image cache hub deleted")
    expect(pg.get_by_text("No image caches yet")).to_be_visible()
    page.shot("cache-deleted")


@pytest.fixture
def hooks_server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server that may deliver webhooks to receivers on loopback."""
    srv = Server(data=tmp_path / "data", env=ALLOW_RECEIVERS).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_webhooks_cleanup_and_protection_tabs(hooks_server: Server, page: Steps) -> None:
    """An administrator creates a webhook pointing at a receiver, sends a test and sees it delivered in the
    history, changes and disables it; adds a protection policy and a cleanup policy, sets the schedule, runs a
    test run and finds the would-delete item in the run's details. A service viewer sees the tabs read-only."""
    server = hooks_server
    pg = page.page
    api = server.api()
    api.call("api.registry.create", {"name": "auto"})
    with server.client() as c:
        kept = push_image(c, "auto/app", image("console-kept"), "v1")
        doomed = push_image(c, "auto/app", image("console-doomed"), "dev")
    short_kept, short_doomed = kept[:len("sha256:") + 12], doomed[:len("sha256:") + 12]

    with Receiver() as receiver:
        log_in(pg, server, *server.admin)
        pg.get_by_role("link", name="auto", exact=True).click()
        tabs = pg.get_by_role("navigation", name="Registry")
        expect(tabs.get_by_role("link")).to_have_text(
            ["Images", "Tags", "Members", "Webhooks", "Cleanup", "Protection", "Replication", "Trust", "Settings"])
        tabs.get_by_role("link", name="Webhooks").click()
        expect(pg.get_by_role("heading", level=2, name="Webhooks")).to_be_visible()
        expect(pg.get_by_text("No webhooks yet")).to_be_visible()

        # Create a webhook: events, URL, kind, a secret and an auth header (write-only).
        pg.get_by_text("Create a webhook", exact=True).click()
        pg.get_by_label("Webhook name").fill("ci")
        pg.get_by_label("Kind").select_option("http")
        pg.get_by_label("URL", exact=True).fill(receiver.url)
        pg.get_by_label("Artifact pushed (artifact.pushed)").check()
        pg.get_by_label("Tag created (tag.created)").check()
        pg.get_by_label("Secret", exact=True).fill("console-secret-1")
        pg.get_by_label("Authorization header", exact=True).fill("Bearer console-token-1")
        page.shot("webhook-form")
        pg.get_by_role("button", name="Create webhook").click()
        expect(pg.get_by_role("heading", level=1, name="Webhook ci")).to_be_visible()
        hook = api.doc("api.webhooks", registry="auto")["webhooks"][0]
        assert (hook["name"], hook["kind"], hook["url"]) == ("ci", "http", receiver.url)
        assert hook["event_types"] == ["artifact.pushed", "tag.created"]
        assert hook["secret_set"] is True and hook["auth_header_set"] is True and hook["enabled"] is True
        facts = pg.locator("dl.details")
        expect(facts).to_contain_text("artifact.pushed, tag.created")
        for secret in ("console-secret-1", "console-token-1"):  # write-only: never on the page again
            assert secret not in pg.content()
            assert pg.evaluate("s => [...document.querySelectorAll('input')].some(i => i.value.includes(s))",
                               secret) is False
        page.shot("webhook-created")

        # Send a test: the result, then the delivery in the history with its status code.
        pg.get_by_role("button", name="Send test").click()
        expect(pg.get_by_role("heading", name="Test of ci: delivered")).to_be_visible()
        deliveries = pg.get_by_role("table", name="Deliveries of ci, newest first")
        test_row = deliveries.get_by_role("row").filter(has_text="test")
        expect(test_row).to_have_count(1)
        expect(test_row).to_contain_text("delivered")
        expect(test_row.get_by_role("cell").nth(2)).to_have_text("200")  # HTTP status (the ID is the row header)
        test_row.get_by_text("1 attempt", exact=True).click()
        expect(test_row.get_by_role("listitem")).to_contain_text("HTTP 200")
        got = receiver.wait_for(lambda rs: any(r.headers.get("x-ncr-event") == "test" for r in rs))[-1]
        assert got.headers["authorization"] == "Bearer console-token-1"
        assert got.headers["x-ncr-signature"] == "sha256=" + hmac.new(b"console-secret-1", got.body,
                                                                      hashlib.sha256).hexdigest()
        page.shot("webhook-test-delivered")

        # Change it: one event type fewer, the auth header removed (the secret stays).
        pg.get_by_text("Change this webhook", exact=True).click()
        expect(pg.get_by_label("Secret", exact=True)).to_have_value("")
        expect(pg.get_by_text("Set: it is never shown.")).to_have_count(2)
        pg.get_by_label("Tag created (tag.created)").uncheck()
        pg.get_by_label("Remove the authorization header").check()
        pg.get_by_role("button", name="Save webhook").click()
        expect(pg.get_by_role("status")).to_contain_text("Webhook ci saved.")
        changed = api.doc("api.webhook", registry="auto", webhook=hook["id"])
        assert changed["event_types"] == ["artifact.pushed"]
        assert changed["auth_header_set"] is False and changed["secret_set"] is True
        page.shot("webhook-changed")

        # Disable it from the list.
        pg.goto(f"{server.url}/console/#/registries/auto/webhooks")
        switch = pg.get_by_role("switch", name="Enable webhook ci")
        expect(switch).to_be_checked()
        switch.uncheck()
        expect(pg.get_by_role("status")).to_contain_text("Webhook ci disabled.")
        expect(pg.get_by_role("switch", name="Enable webhook ci")).not_to_be_checked()
        assert api.doc("api.webhook", registry="auto", webhook=hook["id"])["enabled"] is False
        page.shot("webhook-disabled")

    # Protection: tags v* of every image.
    tabs.get_by_role("link", name="Protection").click()
    expect(pg.get_by_text("No protection policies.")).to_be_visible()
    pg.get_by_text("Add a protection policy", exact=True).click()
    pg.get_by_label("Tag pattern").fill("v*")
    pg.get_by_role("button", name="Add protection policy").click()
    expect(pg.get_by_role("status")).to_contain_text("added")
    protection = pg.get_by_role("table", name="Protection policies of auto")
    expect(protection.get_by_role("row").filter(has_text="v*")).to_have_count(1)
    [guard] = api.doc("api.protection.policies", registry="auto")["policies"]
    assert (guard["image"], guard["tag"], guard["enabled"]) == ("**", "v*", True)
    expect(pg.get_by_role("switch", name=f"Enable protection policy #{guard['id']}")).to_be_checked()
    page.shot("protection-added")
    pg.get_by_text("Add a protection policy", exact=True).click()  # a second one: disabled, then deleted
    pg.get_by_label("Image pattern").fill("tools/*")
    pg.get_by_label("Tag pattern").fill("release-*")
    pg.get_by_role("button", name="Add protection policy").click()
    expect(protection.get_by_role("row").filter(has_text="release-*")).to_have_count(1)
    second = next(p for p in api.doc("api.protection.policies", registry="auto")["policies"] if p["tag"] == "release-*")
    pg.get_by_role("switch", name=f"Enable protection policy #{second['id']}").uncheck()
    expect(pg.get_by_role("status")).to_contain_text(f"Protection policy #{second['id']} disabled.")
    guards = api.doc("api.protection.policies", registry="auto")["policies"]
    assert next(p for p in guards if p["id"] == second["id"])["enabled"] is False
    pg.get_by_role("button", name=f"Delete protection policy #{second['id']}").click()
    pg.get_by_role("dialog", name=f"Delete protection policy #{second['id']}?").get_by_role(
        "button", name="Delete policy").click()
    expect(protection.get_by_role("row").filter(has_text="release-*")).to_have_count(0)
    assert [p["id"] for p in api.doc("api.protection.policies", registry="auto")["policies"]] == [guard["id"]]

    # Cleanup: a policy, the schedule, a test run and its details.
    tabs.get_by_role("link", name="Cleanup").click()
    expect(pg.get_by_text("No cleanup policies.")).to_be_visible()
    pg.get_by_text("Add a cleanup policy", exact=True).click()
    pg.get_by_label("Image pattern").fill("**")
    pg.get_by_label("Tag pattern").fill("**")
    pg.get_by_label("Include untagged artifacts").check()
    pg.get_by_label("Rule").select_option("older_than")
    pg.get_by_label("N", exact=True).fill("0")
    pg.get_by_role("button", name="Add cleanup policy").click()
    policies = pg.get_by_role("table", name="Cleanup policies of auto")
    expect(policies).to_contain_text("exclude artifacts pushed or pulled within 0 days")
    [rule] = api.doc("api.cleanup.policies", registry="auto")["policies"]
    assert (rule["image"], rule["tag"], rule["untagged"], rule["rule"], rule["n"]) == ("**", "**", True,
                                                                                         "older_than", 0)
    page.shot("cleanup-policy-added")

    expect(pg.get_by_label("Cron expression (UTC)")).to_be_hidden()  # only for a custom schedule
    pg.get_by_label("Schedule preset").select_option("Custom")
    pg.get_by_label("Cron expression (UTC)").fill("30 2 * * 1-5")
    pg.get_by_role("button", name="Save schedule").click()
    expect(pg.get_by_role("status")).to_contain_text("Cleanup schedule saved: 30 2 * * 1-5")
    assert api.doc("api.cleanup.schedule", registry="auto")["schedule"] == "30 2 * * 1-5"
    pg.get_by_label("Schedule preset").select_option("Weekly")
    pg.get_by_role("button", name="Save schedule").click()
    expect(pg.get_by_role("status")).to_contain_text("Cleanup schedule saved: Weekly")
    expect(pg.locator("dl.details")).to_contain_text("Weekly (0 0 * * 0)")
    assert api.doc("api.cleanup.schedule", registry="auto")["preset"] == "Weekly"
    page.shot("cleanup-schedule")

    pg.get_by_role("button", name="Test run").click()
    expect(pg.get_by_role("heading", name="Test run #1: succeeded")).to_be_visible()
    items = pg.get_by_role("table", name="Items of run #1")
    expect(items.get_by_role("row").filter(has_text=short_doomed)).to_contain_text("would-delete")
    expect(items.get_by_role("row").filter(has_text=short_kept)).to_contain_text("kept-protected")
    runs = pg.get_by_role("table", name="Cleanup runs of auto, newest first")
    expect(runs.get_by_role("row").filter(has=pg.get_by_role("link", name="#1"))).to_contain_text("Test run")
    page.shot("cleanup-test-run")
    runs.get_by_role("link", name="#1").click()
    expect(pg.get_by_role("heading", level=1, name="Cleanup run #1")).to_be_visible()
    doomed_row = pg.get_by_role("table", name="Items of run #1").get_by_role("row").filter(has_text=short_doomed)
    expect(doomed_row).to_contain_text("would-delete")
    expect(doomed_row).to_contain_text("dev")
    expect(doomed_row).to_contain_text("selected by cleanup policy")
    with server.client() as c:  # a test run deletes nothing
        assert c.head(f"/v2/auto/app/manifests/{doomed}").status_code == 200
    page.shot("cleanup-run-details")

    # A service viewer sees every tab, and changes nothing.
    key = server.new_user("auto-viewer", {"auto": "service-viewer"}, key="console")
    pg.get_by_role("button", name="Log out").click()
    log_in(pg, server, key["id"], key["secret"])

    def read_only() -> None:
        expect(pg.locator("main button")).to_have_count(0)
        expect(pg.locator("main form")).to_have_count(0)
        expect(pg.locator("main input")).to_have_count(0)

    pg.goto(f"{server.url}/console/#/registries/auto/webhooks")
    hooks = pg.get_by_role("table", name="Webhooks of auto")
    expect(hooks.get_by_role("row").filter(has_text="ci")).to_contain_text("disabled")
    expect(pg.get_by_text("Create a webhook")).to_have_count(0)
    read_only()
    page.shot("viewer-webhooks")
    hooks.get_by_role("link", name="ci", exact=True).click()
    expect(pg.get_by_role("heading", level=1, name="Webhook ci")).to_be_visible()
    deliveries = pg.get_by_role("table", name="Deliveries of ci, newest first")
    expect(deliveries).to_contain_text("delivered")
    # Not a system administrator: whether it worked, not the receiver's answer (HTTP status, error, time).
    expect(deliveries.get_by_role("row").filter(has_text="test").get_by_role("cell").nth(2)).to_have_text("-")
    expect(deliveries).not_to_contain_text("HTTP 200")
    read_only()
    page.shot("viewer-webhook")

    pg.goto(f"{server.url}/console/#/registries/auto/cleanup")
    expect(pg.get_by_role("table", name="Cleanup policies of auto")).to_contain_text("enabled")
    expect(pg.locator("dl.details")).to_contain_text("Weekly (0 0 * * 0)")
    expect(pg.get_by_role("link", name="#1")).to_be_visible()
    read_only()
    page.shot("viewer-cleanup")
    pg.get_by_role("link", name="#1").click()
    expect(pg.get_by_role("table", name="Items of run #1")).to_contain_text("would-delete")

    pg.goto(f"{server.url}/console/#/registries/auto/protection")
    expect(pg.get_by_role("table", name="Protection policies of auto")).to_contain_text("v*")
    read_only()
    page.shot("viewer-protection")

    viewer = (key["id"], key["secret"])  # and the API refuses what the console does not offer
    assert httpx.post(f"{server.url}/api/v1/registries/auto/cleanup/test", auth=viewer, timeout=10).status_code == 403
    assert httpx.post(f"{server.url}/api/v1/registries/auto/webhooks/{hook['id']}/test", auth=viewer,
                      timeout=10).status_code == 403

    # The administrator again: run the cleanup now (after a confirmation), then delete the webhook.
    pg.get_by_role("button", name="Log out").click()
    log_in(pg, server, *server.admin)
    pg.goto(f"{server.url}/console/#/registries/auto/cleanup")
    pg.get_by_role("button", name="Run now").click()
    pg.get_by_role("dialog", name="Run the cleanup of auto now?").get_by_role("button", name="Run now").click()
    expect(pg.get_by_role("heading", name="Run #2: succeeded")).to_be_visible()
    expect(pg.get_by_role("table", name="Items of run #2").get_by_role("row").filter(
        has_text=short_doomed)).to_contain_text("deleted")
    with server.client() as c:
        assert c.head(f"/v2/auto/app/manifests/{doomed}").status_code == 404
        assert c.head(f"/v2/auto/app/manifests/{kept}").status_code == 200  # protected
    page.shot("cleanup-run-now")
    pg.goto(f"{server.url}/console/#/registries/auto/webhooks/{hook['id']}")
    pg.get_by_role("button", name="Delete webhook").click()
    pg.get_by_role("dialog", name="Delete webhook ci?").get_by_role("button", name="Delete webhook").click()
    expect(pg.get_by_role("status")).to_contain_text("Webhook ci deleted.")
    expect(pg.get_by_text("No webhooks yet")).to_be_visible()
    assert api.doc("api.webhooks", registry="auto")["webhooks"] == []
    page.shot("webhook-deleted")
