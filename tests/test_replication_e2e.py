"""Replication end to end, through the management API only, between two real ncr-trio instances
("regions") and a foreign registry:

- A: SQLite, two worker processes, registry "team": every policy is A's;
- B: PostgreSQL, registry "mirror"; A reaches it as the remote "region-b" through the
  recording proxy (tests/support/upstream.py), so a test can count what travels, and as "flaky" through a
  second proxy a test takes down;
- CNCF Distribution 3.x, the remote "dist", as a foreign target.

tests/test_replication_copy.py tests the engine itself (the resumed upload through the proxy, the mount,
override, a dead remote) in the test's process; here the same things are driven as a user does: remotes
and policies made over /api/v1, images pushed with skopeo / cosign, the result read back with podman,
cosign and the registry API, the history read from the executions and tasks. Each test works under its
own image paths, which its policy's image filter selects, so the tests share the servers.

Also through the API: one run of a policy at a time (a second trigger is recorded Skipped), stop, the
history's pages, the replication.* webhooks, and the guide's role table (viewers read; managers change and
run; remotes are the administrators').

The scheduled pull policy (cron "* * * * *") is created when the servers start, so the scheduler's real
minute ticks pass while the other tests run; its test, last in the file, waits for the second tick.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.api import eventually, ok
from tests.support.clients import Clients, find_tool, make_index, write_layout
from tests.support.clients import make_image as make_client_image
from tests.support.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Image,
    canonical,
    descriptor,
    digest,
    image,
    push_image,
    upload_blob,
)
from tests.support.postgres import postgres_server
from tests.support.receivers import ALLOW_RECEIVERS, Received, Receiver
from tests.support.server import Distribution, Server, tool
from tests.support.upstream import Upstream

pytestmark = pytest.mark.postgres

MiB = 1 << 20
COSIGN_REGISTRY = ["--allow-insecure-registry", "--allow-http-registry"]
EMPTY_TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                      "tlogs": [], "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


@dataclass
class Regions:
    a: Server  # SQLite, two workers: registry "team"
    b: Server  # PostgreSQL: registry "mirror"
    to_b: Upstream  # the proxy of remote "region-b"
    flaky: Upstream  # the proxy of remote "flaky" (also B)
    key: dict[str, Any]  # B's access key A logs in with
    scheduled: dict[str, Any]  # the scheduled pull policy, made at the start
    nightly: str  # the image B holds for it (mirror/nightly/db:v7)


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Regions]:
    root = tmp_path_factory.mktemp("regions")
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        b = Server(data=root / "b" / "data", registries=("mirror",),
                   env={"NCR_DATABASE_URL": stack.enter_context(pg.database("region_b"))}).start()
        stack.callback(b.stop)
        a = Server(data=root / "a" / "data", registries=("team",), extra_args=["--workers", "2"],
                   env={"NCR_REPLICATION_ALLOWED_NETWORKS": "127.0.0.0/8", **ALLOW_RECEIVERS}).start()
        stack.callback(a.stop)
        to_b = stack.enter_context(Upstream(target=b.url, log_path=root / "to-b.log").start())
        flaky = stack.enter_context(Upstream(target=b.url, log_path=root / "flaky.log").start())
        key = b.new_user("replicator", {"mirror": "service-admin"})
        for name, url in (("region-b", to_b.url), ("flaky", flaky.url)):
            made = ok(a.call("POST", "/remotes", json={"name": name, "url": url, "access_id": key["id"],
                                                       "access_secret": key["secret"]}), 201)
            assert (made["type"], made["status"], made["has_secret"]) == ("ncr", "valid", True), made
            assert "access_secret" not in made
        # The scheduled pull: its minute ticks pass while the other tests run (the last test reads them).
        nightly = image(f"nightly-{os.urandom(4).hex()}")
        with b.client() as bc:
            push_image(bc, "mirror/nightly/db", nightly, "v7")
        scheduled = new_policy(a, "nightly", direction="pull", name_filter="nightly/**", trigger="scheduled",
                               schedule="* * * * *")
        yield Regions(a, b, to_b, flaky, key, scheduled, nightly.digest)
        assert_no_server_errors(a, b)


@pytest.fixture(scope="module")
def dist(regions: Regions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """CNCF Distribution 3.x (anonymous), A's remote "dist"."""
    d = Distribution(root=tmp_path_factory.mktemp("dist"), binary=tool("registry-v3")).start()
    try:
        made = ok(regions.a.call("POST", "/remotes", json={"name": "dist", "url": d.url, "type": "registry"}), 201)
        assert made["status"] == "valid", made
        yield d
    finally:
        d.stop()


def needs(*names: str) -> pytest.MarkDecorator:
    """Skip only when a client is not installed (under CI a skip fails: tests/conftest.py)."""
    missing = [n for n in names if find_tool(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def assert_no_server_errors(*servers: Server) -> None:
    for srv in servers:
        problems = [line for line in srv.log().splitlines() if " ERROR " in line or "Traceback" in line]
        assert not problems, f"{srv.url} logged errors:\n" + "\n".join(problems[-20:])


@pytest.fixture
def clients(regions: Regions, tmp_path: Path) -> Clients:
    """Clients (skopeo, podman, cosign) logged in to both regions as their admins."""
    c = Clients(tmp_path / "clients", regions.a)
    home = c.root / "home"
    auths = {s.host: {"auth": base64.b64encode(":".join(s.admin).encode()).decode()} for s in (regions.a, regions.b)}
    for path in (home / ".docker/config.json", home / ".config/containers/auth.json"):
        path.write_text(json.dumps({"auths": auths}) + "\n")
    return c


# -- helpers ------------------------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def new_policy(a: Server, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "direction": "push", "remote": "region-b", "remote_namespace": "mirror",
            "trigger": "manual", **fields}
    made: dict[str, Any] = ok(a.call("POST", "/registries/team/replications", json=body), 201)
    return made


def executions(a: Server, policy_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(a.call("GET", f"/registries/team/replications/{policy_id}/executions",
                                            params={"per_page": 100}))["executions"]
    return found


def tasks(a: Server, policy_id: int, execution_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(a.call(
        "GET", f"/registries/team/replications/{policy_id}/executions/{execution_id}/tasks"))["tasks"]
    return found


def finished(a: Server, policy_id: int, execution_id: int, timeout: float = 120.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        e: dict[str, Any] = ok(a.call("GET", f"/registries/team/replications/{policy_id}/executions/{execution_id}"))
        return e if e["status"] not in ("Pending", "Running") else None
    found: dict[str, Any] = eventually(f"execution {execution_id} to end", done, timeout)
    return found


def run(a: Server, p: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A manual run of policy `p`, to its end: the execution and its tasks."""
    started = ok(a.call("POST", f"/registries/team/replications/{p['id']}/run"), 202)
    assert (started["trigger"], started["policy_id"]) == ("manual", p["id"]), started
    done = finished(a, p["id"], started["id"])
    return done, tasks(a, p["id"], done["id"])


def manifest_digest(url: str, repo: str, reference: str, auth: httpx.Auth | None = None) -> str | None:
    r = httpx.head(f"{url}/v2/{repo}/manifests/{reference}", auth=auth, timeout=30, headers={"Accept": ACCEPT})
    return r.headers["docker-content-digest"] if r.status_code == 200 else None


def on(srv: Server, repo: str, reference: str) -> str | None:
    """The digest `srv` answers for `repo`:`reference`, None when it has none."""
    return manifest_digest(srv.url, repo, reference, srv.auth())


def skopeo_push(c: Clients, layout: Path, dest: str, *, all_images: bool = False) -> None:
    c.run("skopeo", "copy", *(["--all"] if all_images else []), "--dest-tls-verify=false", f"oci:{layout}:t",
          f"docker://{dest}")


def layered(layers: list[bytes], seed: str) -> Image:
    """An image of exactly these layers (so two images can share some)."""
    config = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                        "seed": seed})
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor(OCI_LAYER, b) for b in layers]}
    return Image(config, layers, canonical(doc))


def uploads(up: Upstream) -> list[Any]:
    return [s for s in up.traffic().requests if "/blobs/uploads/" in s.path]


def minute(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() // 60)


# -- the tests ----------------------------------------------------------------------------------------------------


@needs("skopeo", "podman")
def test_an_event_policy_copies_a_pushed_image_at_once_and_podman_pulls_it_from_the_target(
        regions: Regions, clients: Clients) -> None:
    a, b, c = regions.a, regions.b, clients
    path = unique("evt")
    p = new_policy(a, "on-push", trigger="event", name_filter=f"{path}/*", tag_filter="v*")
    assert p["status"] == "valid", p  # its remote is
    img = make_client_image(path, n_layers=2, extra_file_bytes=200_000)
    write_layout(c.path("layout"), "t", [img])
    skopeo_push(c, c.path("layout"), f"{a.host}/team/{path}/web:latest")  # the tag filter keeps it back
    skopeo_push(c, c.path("layout"), f"{a.host}/team/{path}/deep/web:v1")  # `*` is one path segment
    skopeo_push(c, c.path("layout"), f"{a.host}/team/{path}/web:v1")

    assert eventually("the copy on B", lambda: on(b, f"mirror/{path}/web", "v1"), 30) == img.digest
    (e,) = eventually("the event run to end", lambda: [e for e in executions(a, p["id"])
                                                       if e["status"] not in ("Pending", "Running")], 30)
    assert (e["trigger"], e["status"], e["copied"], e["failed"]) == ("event", "Succeeded", 1, 0), e
    assert e["bytes"] >= sum(len(layer) for layer in img.layers), e
    (t,) = tasks(a, p["id"], e["id"])
    assert (t["source"], t["target"], t["digest"], t["status"]) == \
        (f"team/{path}/web:v1", f"mirror/{path}/web:v1", img.digest, "Succeeded"), t
    assert on(b, f"mirror/{path}/web", "latest") is None
    assert on(b, f"mirror/{path}/deep/web", "v1") is None
    assert len(executions(a, p["id"])) == 1  # one run for the one matching push, though A has two workers

    with tempfile.TemporaryDirectory(prefix="ncr-podman-", dir="/tmp") as runroot:
        pod = ["podman", "--storage-driver", "vfs", "--root", str(c.path("storage")), "--runroot", runroot,
               "--tmpdir", str(c.path("podman-tmp")), "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        c.run(*pod, "pull", "--tls-verify=false", f"{b.host}/mirror/{path}/web:v1")
        (facts,) = c.json(*pod, "image", "inspect", f"{b.host}/mirror/{path}/web:v1")
    assert facts["Digest"] == img.digest
    assert facts["Id"] == digest(img.config).removeprefix("sha256:")


def test_a_second_image_sends_only_its_new_blobs_and_mounts_those_of_another_repository(regions: Regions) -> None:
    a, b, up = regions.a, regions.b, regions.to_b
    path = unique("share")
    base = [os.urandom(1 * MiB), os.urandom(1 * MiB + 1)]
    first = layered(base, f"{path}-1")
    second = layered([base[0], os.urandom(512 * 1024)], f"{path}-2")  # in the same repository: one new layer
    third = layered([*base, os.urandom(256 * 1024)], f"{path}-3")  # in another repository
    with a.client() as ac:
        push_image(ac, f"team/{path}/one", first, "v1", upload=upload_blob)
    p = new_policy(a, "shared", name_filter=f"{path}/**")
    e, _ = run(a, p)
    assert (e["status"], e["copied"]) == ("Succeeded", 1), e

    with a.client() as ac:
        push_image(ac, f"team/{path}/one", second, "v2", upload=upload_blob)
        push_image(ac, f"team/{path}/two", third, "v1", upload=upload_blob)
    up.reset()
    e, done = run(a, p)
    assert (e["status"], e["copied"], e["skipped"], e["failed"]) == ("Succeeded", 2, 1, 0), (e, done)
    assert sorted((t["target"], t["status"]) for t in done) == [
        (f"mirror/{path}/one:v1", "Skipped"), (f"mirror/{path}/one:v2", "Succeeded"),
        (f"mirror/{path}/two:v1", "Succeeded")], done
    log = uploads(up)
    mounts = [s for s in log if "mount=" in s.path]
    assert sorted(s.path.split("mount=")[1].split("&")[0].replace("%3A", ":") for s in mounts) == \
        sorted(digest(layer) for layer in base), [s.path for s in log]
    assert all(s.status == 201 and ("from=mirror%2F" in s.path or "from=mirror/" in s.path) for s in mounts), mounts
    sent = sum(s.received for s in log)
    new = [second.config, second.layers[1], third.config, third.layers[2]]
    assert sent == sum(len(blob) for blob in new), (sent, [(s.method, s.path, s.received) for s in log])
    for repo, img, tag in ((f"mirror/{path}/one", second, "v2"), (f"mirror/{path}/two", third, "v1")):
        assert on(b, repo, tag) == img.digest
        with b.client() as bc:
            for d, blob in img.blobs.items():
                assert bc.get(f"/v2/{repo}/blobs/{d}").content == blob


@pytest.mark.parametrize("mode", ["match", "exclude"])
def test_filters_select_what_arrives(regions: Regions, mode: str) -> None:
    a, b = regions.a, regions.b
    stem = unique("flt")
    names = [f"{stem}/path/app", f"{stem}/path/my/hello-world", f"{stem}/ncr/tool", f"{stem}/other/app"]
    tags = ["1.0", "1.01", "latest"]
    with a.client() as ac:
        for n in names:
            for t in tags:
                push_image(ac, f"team/{n}", image(f"{n}:{t}"), t)
    p = new_policy(a, f"filters-{mode}", name_filter=f"{stem}/{{path,ncr}}/*", tag_filter="1.?",
                   tag_filter_mode=mode)
    e, done = run(a, p)
    assert e["status"] == "Succeeded", (e, done)
    selected_tags = ["1.0"] if mode == "match" else ["1.01", "latest"]  # `?` is exactly one character
    expected = {(n, t) for n in (f"{stem}/path/app", f"{stem}/ncr/tool") for t in selected_tags}
    assert sorted(t["target"] for t in done) == sorted(f"mirror/{n}:{t}" for n, t in expected)
    arrived = {(n, t) for n in names for t in tags if on(b, f"mirror/{n}", t) is not None}
    assert arrived == expected


def test_override_off_leaves_the_targets_differing_tag_and_on_replaces_it(regions: Regions) -> None:
    a, b = regions.a, regions.b
    path = unique("ovr")
    ours, theirs = image(f"{path}-ours"), image(f"{path}-theirs")
    with a.client() as ac:
        push_image(ac, f"team/{path}/app", ours, "v1")
    with b.client() as bc:
        push_image(bc, f"mirror/{path}/app", theirs, "v1")
    p = new_policy(a, "override", name_filter=f"{path}/**")
    assert p["override"] is False  # the default
    e, done = run(a, p)
    assert (e["status"], e["copied"], e["skipped"]) == ("Succeeded", 0, 1), e
    assert [(t["status"], t["error"]) for t in done] == [("Skipped", "v1 differs at the target; override is off")]
    assert on(b, f"mirror/{path}/app", "v1") == theirs.digest

    changed = ok(a.call("PATCH", f"/registries/team/replications/{p['id']}", json={"override": True}))
    assert changed["override"] is True
    e, done = run(a, p)
    assert (e["status"], e["copied"], e["skipped"]) == ("Succeeded", 1, 0), (e, done)
    assert on(b, f"mirror/{path}/app", "v1") == ours.digest


def test_deleting_the_tag_and_the_artifact_at_the_source_leaves_the_copy(regions: Regions) -> None:
    a, b, up = regions.a, regions.b, regions.to_b
    path = unique("keep")
    img = image(path, layers=2)
    with a.client() as ac:
        push_image(ac, f"team/{path}/app", img, "v1")
    p = new_policy(a, "keep", name_filter=f"{path}/**")
    e, _ = run(a, p)
    assert (e["status"], e["copied"]) == ("Succeeded", 1), e
    repo = quote(f"{path}/app", safe="")
    ok(a.call("DELETE", f"/registries/team/images/{repo}/tags/v1"), 204)
    ok(a.call("DELETE", f"/registries/team/images/{repo}/artifacts/{img.digest}"), 204)
    assert on(a, f"team/{path}/app", img.digest) is None
    up.reset()
    e, done = run(a, p)
    assert (e["status"], done) == ("Succeeded", []), (e, done)
    assert not [s for s in up.traffic().requests if s.method == "DELETE"]
    assert on(b, f"mirror/{path}/app", "v1") == img.digest
    with b.client() as bc:
        for d, blob in img.blobs.items():
            assert bc.get(f"/v2/mirror/{path}/app/blobs/{d}").content == blob


def test_a_remote_that_is_down_fails_the_run_and_a_later_run_copies_only_what_is_missing(regions: Regions) -> None:
    a, b, up = regions.a, regions.b, regions.flaky
    path = unique("down")
    first, second = image(f"{path}-1", layer_sizes=[300_000]), image(f"{path}-2", layer_sizes=[400_000])
    with a.client() as ac:
        push_image(ac, f"team/{path}/app", first, "v1")
    p = new_policy(a, "down", remote="flaky", name_filter=f"{path}/**")
    e, _ = run(a, p)
    assert (e["status"], e["copied"]) == ("Succeeded", 1), e
    with a.client() as ac:
        push_image(ac, f"team/{path}/app", second, "v2")

    up.unreachable()
    try:
        e, done = run(a, p)
        assert (e["status"], done) == ("Failed", []), (e, done)
        assert "flaky" in e["detail"] and "cannot be reached" in e["detail"], e
        checked = ok(a.call("POST", "/remotes/flaky/refresh"))
        assert checked["status"] == "invalid" and checked["reason"], checked
        assert ok(a.call("GET", f"/registries/team/replications/{p['id']}"))["status"] == "invalid"
    finally:
        up.reachable()
    assert on(b, f"mirror/{path}/app", "v2") is None
    assert ok(a.call("POST", "/remotes/flaky/refresh"))["status"] == "valid"
    assert ok(a.call("GET", f"/registries/team/replications/{p['id']}"))["status"] == "valid"

    up.reset()
    e, done = run(a, p)
    assert (e["status"], e["copied"], e["skipped"]) == ("Succeeded", 1, 1), (e, done)
    assert sorted((t["target"].rsplit(":", 1)[1], t["status"]) for t in done) == [("v1", "Skipped"),
                                                                                   ("v2", "Succeeded")]
    assert sum(s.received for s in uploads(up)) == len(second.config) + len(second.layers[0])
    assert on(b, f"mirror/{path}/app", "v2") == second.digest
    history = executions(a, p["id"])
    assert [x["status"] for x in history] == ["Succeeded", "Failed", "Succeeded"], history  # newest first


def test_a_wrong_secret_makes_the_remote_invalid_until_it_is_fixed(regions: Regions) -> None:
    a = regions.a
    changed = ok(a.call("PATCH", "/remotes/flaky", json={"access_secret": "not-the-secret"}))
    try:
        assert changed["status"] == "invalid" and changed["reason"], changed
    finally:
        fixed = ok(a.call("PATCH", "/remotes/flaky", json={"access_secret": regions.key["secret"]}))
    assert (fixed["status"], fixed["reason"]) == ("valid", ""), fixed


@needs("skopeo", "cosign")
def test_a_multi_platform_index_and_its_cosign_signature_replicate_and_verify_at_the_target(
        regions: Regions, clients: Clients) -> None:
    a, b, c = regions.a, regions.b, clients
    path = unique("signed")
    images = [make_client_image(f"{path}-amd64", arch="amd64"), make_client_image(f"{path}-arm64", arch="arm64")]
    index = make_index(images)
    top = write_layout(c.path("layout"), "t", images, index)
    skopeo_push(c, c.path("layout"), f"{a.host}/team/{path}/app:v1", all_images=True)
    env = {"COSIGN_PASSWORD": ""}
    c.run("cosign", "generate-key-pair", env=env)
    c.run("cosign", "sign", "--key", "cosign.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY,
          f"{a.host}/team/{path}/app@{top}", env=env)
    sig_tag = top.replace(":", "-") + ".sig"
    assert on(a, f"team/{path}/app", sig_tag) is not None

    p = new_policy(a, "signed", name_filter=f"{path}/**")
    e, done = run(a, p)
    assert (e["status"], e["copied"]) == ("Succeeded", 1), (e, done)
    assert [(t["target"], t["digest"]) for t in done] == [(f"mirror/{path}/app:v1", top)]  # the .sig travels along
    assert on(b, f"mirror/{path}/app", "v1") == top
    for img in images:
        assert on(b, f"mirror/{path}/app", img.digest) == img.digest
    assert on(b, f"mirror/{path}/app", sig_tag) == on(a, f"team/{path}/app", sig_tag)

    c.path("trusted_root.json").write_text(json.dumps(EMPTY_TRUSTED_ROOT))
    verified = c.run("cosign", "verify", "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json",
                     *COSIGN_REGISTRY, "--key", "cosign.pub", f"{b.host}/mirror/{path}/app@{top}", env=env)
    claims = json.loads(verified.stdout)
    assert [claim["critical"]["image"]["docker-manifest-digest"] for claim in claims] == [top]
    c.path("other").mkdir()
    c.run("cosign", "generate-key-pair", env=env, cwd=c.path("other"))
    bad = c.run("cosign", "verify", "--insecure-ignore-tlog=true", "--trusted-root", "trusted_root.json",
                *COSIGN_REGISTRY, "--key", "other/cosign.pub", f"{b.host}/mirror/{path}/app@{top}", env=env,
                check=False)
    assert bad.returncode != 0, c.describe(bad)  # the signature B holds is the one made with our key

    e, done = run(a, p)
    assert (e["status"], e["copied"], e["skipped"], e["bytes"]) == ("Succeeded", 0, 1, 0), e  # already there


@needs("skopeo", "registry-v3")
def test_a_push_to_cncf_distribution_3(regions: Regions, dist: Distribution, clients: Clients) -> None:
    a, c = regions.a, clients
    path = unique("foreign")
    img = make_client_image(path, n_layers=2, extra_file_bytes=300_000)
    write_layout(c.path("layout"), "t", [img])
    skopeo_push(c, c.path("layout"), f"{a.host}/team/{path}/app:v1")
    p = new_policy(a, "foreign", remote="dist", remote_namespace="mirror", name_filter=f"{path}/**")
    e, done = run(a, p)
    assert (e["status"], e["copied"]) == ("Succeeded", 1), (e, done)
    assert manifest_digest(dist.url, f"mirror/{path}/app", "v1") == img.digest
    raw = c.run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{dist.host}/mirror/{path}/app:v1")
    assert raw.stdout.encode() == img.manifest
    with httpx.Client(base_url=dist.url, timeout=30) as d:
        for layer in img.layers:
            assert d.get(f"/v2/mirror/{path}/app/blobs/{digest(layer)}").content == layer
    e, done = run(a, p)
    assert (e["status"], e["copied"], e["skipped"]) == ("Succeeded", 0, 1), (e, done)


def test_one_run_at_a_time_a_second_trigger_is_skipped_and_stop_ends_a_run_stopped(regions: Regions) -> None:
    a, b = regions.a, regions.b
    path = unique("slow")
    img = image(path, layer_sizes=[8 * MiB])
    with a.client() as ac:
        push_image(ac, f"team/{path}/app", img, "v1", upload=upload_blob)
    p = new_policy(a, "slow", name_filter=f"{path}/**", bandwidth_kbps=512)  # 16 s at this rate
    base = f"/registries/team/replications/{p['id']}"
    first = ok(a.call("POST", f"{base}/run"), 202)
    assert first["status"] == "Running", first
    second = ok(a.call("POST", f"{base}/run"), 202)  # whichever worker takes it
    assert second["id"] != first["id"] and second["status"] == "Skipped" and second["detail"], second
    eventually("the run's task", lambda: tasks(a, p["id"], first["id"]), 30)
    stopping = ok(a.call("POST", f"{base}/executions/{first['id']}/stop"))
    assert stopping["stop_requested"] is True, stopping
    done = finished(a, p["id"], first["id"], timeout=30)
    assert done["status"] == "Stopped", done
    assert [t["status"] for t in tasks(a, p["id"], first["id"])] == ["Stopped"]
    assert on(b, f"mirror/{path}/app", "v1") is None  # the manifest comes last: never without its blobs
    history = ok(a.call("GET", f"{base}/executions", params={"page": 2, "per_page": 1}))
    assert (history["total"], [e["id"] for e in history["executions"]]) == (2, [first["id"]]), history


def test_webhooks_announce_a_runs_start_and_end(regions: Regions) -> None:
    a = regions.a
    path = unique("hook")
    with a.client() as ac:
        push_image(ac, f"team/{path}/app", image(path), "v1")

    def mine(got: list[Received]) -> list[Received]:  # not the scheduled policy's, whose ticks go on
        return [r for r in got if r.json()["replication"]["policy"] in ("announced", "announced-down")]

    with Receiver() as receiver:
        hook = ok(a.call("POST", "/registries/team/webhooks", json={
            "name": unique("replication"), "kind": "http", "url": receiver.url,
            "event_types": ["replication.started", "replication.finished", "replication.failed"]}), 201)
        try:
            e, _ = run(a, new_policy(a, "announced", name_filter=f"{path}/**"))
            receiver.wait_for(lambda got: len(mine(got)) >= 2)
            regions.flaky.unreachable()
            try:
                failed, _ = run(a, new_policy(a, "announced-down", remote="flaky", name_filter=f"{path}/**"))
            finally:
                regions.flaky.reachable()
            delivered = mine(receiver.wait_for(lambda got: len(mine(got)) >= 4))
        finally:
            ok(a.call("DELETE", f"/registries/team/webhooks/{hook['id']}"), 204)
    assert (e["status"], failed["status"]) == ("Succeeded", "Failed")
    bodies = sorted((r.json() for r in delivered), key=lambda x: int(x["id"]))  # delivered in any order
    assert [(x["type"], x["registry"], x["replication"]) for x in bodies] == [
        ("replication.started", "team", {"policy": "announced", "execution": e["id"]}),
        ("replication.finished", "team", {"policy": "announced", "execution": e["id"]}),
        ("replication.started", "team", {"policy": "announced-down", "execution": failed["id"]}),
        ("replication.failed", "team", {"policy": "announced-down", "execution": failed["id"]})], bodies


def test_viewers_read_replication_and_only_managers_change_or_run_it(regions: Regions) -> None:
    a = regions.a
    p = new_policy(a, "roles", name_filter=unique("roles"))
    viewer, member = unique("viewer"), unique("member")
    for name, role in ((viewer, "service-viewer"), (member, "project-member")):
        a.new_user(name, {"team": role}, password=f"{name}-password-0")
    as_viewer, as_member = (viewer, f"{viewer}-password-0"), (member, f"{member}-password-0")
    base = f"/registries/team/replications/{p['id']}"
    assert [x["id"] for x in ok(a.call("GET", "/registries/team/replications", auth=as_viewer))["policies"]] \
        == [x["id"] for x in ok(a.call("GET", "/registries/team/replications"))["policies"]]
    ok(a.call("GET", base, auth=as_viewer))
    ok(a.call("GET", f"{base}/executions", auth=as_viewer))
    for method, path, body in (("POST", f"{base}/run", None), ("PATCH", base, {"enabled": False}),
                               ("DELETE", base, None),
                               ("POST", "/registries/team/replications", {"name": "x", "direction": "push",
                                                                          "remote": "region-b"})):
        assert a.call(method, path, auth=as_viewer, json=body).status_code == 403, (method, path)
    assert a.call("GET", "/remotes", auth=as_member).status_code == 403  # remotes are the administrators'
    started = ok(a.call("POST", f"{base}/run", auth=as_member), 202)
    assert finished(a, p["id"], started["id"])["status"] == "Succeeded"
    ok(a.call("PATCH", base, auth=as_member, json={"enabled": False}))
    assert a.call("POST", f"{base}/run", auth=as_member).status_code == 409  # a disabled policy does not run


def test_a_scheduled_pull_runs_once_per_cron_tick_with_two_workers(regions: Regions) -> None:
    """Last in the file: the policy was made with the servers, its ticks have been passing since."""
    a, p = regions.a, regions.scheduled
    assert (p["direction"], p["trigger"], p["schedule"]) == ("pull", "scheduled", "* * * * *"), p
    assert p["next_run_at"] is not None
    made = minute(p["created_at"])

    def a_tick_done() -> list[dict[str, Any]] | None:
        found = executions(a, p["id"])
        return found if found and all(e["status"] not in ("Pending", "Running") for e in found) else None
    eventually("a scheduled tick", a_tick_done, timeout=max(10.0, made * 60 + 90 - time.time()), every=1.0)
    time.sleep(12)  # both workers' schedulers have looked for due jobs again since (at least every 10 s)
    found = [e for e in executions(a, p["id"]) if e["status"] not in ("Pending", "Running")]  # a new tick's may
    by_tick: dict[int, list[dict[str, Any]]] = {}
    for e in found:
        by_tick.setdefault(minute(e["started_at"]), []).append(e)
    assert all(len(runs) == 1 for runs in by_tick.values()), by_tick
    assert {(e["trigger"], e["status"]) for e in found} == {("scheduled", "Succeeded")}, found
    first = found[-1]  # oldest last
    assert (first["copied"], first["skipped"]) == (1, 0), first
    assert all((e["copied"], e["skipped"]) == (0, 1) for e in found[:-1]), found  # already here (if a tick passed)
    assert on(a, "team/nightly/db", "v7") == regions.nightly
    images = ok(a.call("GET", "/registries/team/images"))["images"]
    assert any(i["name"] == "nightly/db" for i in images)
    ok(a.call("PATCH", f"/registries/team/replications/{p['id']}", json={"enabled": False}))
