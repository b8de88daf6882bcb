"""The `ncr-trio` CLI against a running server: `python -m ncr_trio ...` as a subprocess with its own
HOME and XDG_CONFIG_HOME, so the login file it writes is the test's. Every API verb in table and
JSON form (the JSON compared with the API's own answer), login and the flags > environment > file
precedence, errors and exit codes, confirmations, secrets shown once. The automation verbs too: webhooks
against a real receiver (tests, signatures, deliveries), cleanup policies with test runs, runs and their
history, protection refusing a push, cleanup schedules, and a viewer who may read but not change them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import terminal
from tests.support.logins import issue_tls
from tests.support.oci import OCI_INDEX, image, index, push_blob, push_image, push_manifest
from tests.support.receivers import ALLOW_RECEIVERS, Receiver
from tests.support.server import ADMIN_PASSWORD, Server, free_port


@dataclass
class Pushed:
    amd: str
    arm: str
    index: str
    lint: str


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(data=tmp_path_factory.mktemp("cli") / "data", registries=("shop", "empty", "scratch"),
               env=ALLOW_RECEIVERS)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def pushed(srv: Server) -> Pushed:
    amd, arm = image("cli-amd64"), image("cli-arm64", platform=("linux", "arm64"))
    with srv.client() as c:
        a, b = push_image(c, "shop/web", amd, "amd"), push_image(c, "shop/web", arm, "arm")
        body = index([(amd, ("linux", "amd64")), (arm, ("linux", "arm64"))])
        for tag in ("v1.0", "latest"):
            assert push_manifest(c, "shop/web", tag, body, OCI_INDEX).status_code == 201
        lint = push_image(c, "shop/tools/lint", image("cli-lint"), "v2")
    return Pushed(a, b, "sha256:" + __import__("hashlib").sha256(body).hexdigest(), lint)


def api(srv: Server, path: str, method: str = "GET", **kw: Any) -> Any:
    """The API's own answer, to compare the CLI's JSON with."""
    r = srv.call(method, path, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


@dataclass
class CLI:
    home: Path
    url: str

    @property
    def config(self) -> Path:
        return self.home / "xdg" / "ncr-trio" / "config.toml"

    def __call__(self, *args: str, stdin: str = "", env: dict[str, str] | None = None, cwd: Path | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("NCR_")}
        base.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "xdg"), **(env or {}))
        # stdin is a pipe and stdout/stderr are captured: no terminal anywhere.
        return subprocess.run([sys.executable, "-m", "ncr_trio", *args], input=stdin, capture_output=True,
                              text=True, env=base, timeout=120, cwd=cwd)

    def ok(self, *args: str, **kw: Any) -> str:
        r = self(*args, **kw)
        assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.ok(*args, "-o", "json", **kw))

    def login(self, username: str = "admin", secret: str = ADMIN_PASSWORD) -> None:
        self.ok("login", self.url, "--username", username, "--password-stdin", stdin=secret + "\n")


@pytest.fixture
def cli(srv: Server, tmp_path: Path) -> CLI:
    home = tmp_path / "home"
    home.mkdir()
    return CLI(home, srv.url)


@pytest.fixture
def admin(cli: CLI) -> CLI:
    cli.login()
    return cli


def table(out: str) -> list[list[str]]:
    """A table's lines split on runs of two or more spaces (cells hold single spaces)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def column(out: str, header: str) -> list[str]:
    rows = table(out)
    i = rows[0].index(header)
    return [row[i] for row in rows[1:]]


def fields(out: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines() if line.strip())}


# -- login, logout and where settings come from ---------------------------------------------------------


def test_login_stores_a_private_config_that_later_commands_use(cli: CLI, srv: Server) -> None:
    r = cli("login", srv.url, "--username", "admin", "--password-stdin", stdin="wrong\n")
    assert r.returncode == 1 and "UNAUTHORIZED" in r.stderr
    assert not cli.config.exists()  # refused credentials are never stored

    r = cli("whoami")  # nothing stored, nothing in the environment
    assert r.returncode == 1 and "not logged in" in r.stderr and "ncr-trio login" in r.stderr

    r = cli("login", srv.url, "--username", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert "Logged in" in r.stdout and ADMIN_PASSWORD not in r.stdout + r.stderr
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config.parent.stat().st_mode) == 0o700
    stored = tomllib.loads(cli.config.read_text())
    assert stored == {"url": srv.url, "username": "admin", "secret": ADMIN_PASSWORD}
    assert [p.name for p in cli.config.parent.iterdir()] == ["config.toml"]  # no temporary file left

    me = cli.json("whoami")  # from the file alone
    assert me == api(srv, "/whoami") and me["user"] == "admin" and me["system_admin"] is True
    out = cli.ok("whoami")
    assert fields(out)["user"] == "admin" and "login" in fields(out)["credentials"]
    assert ADMIN_PASSWORD not in out

    out = cli.ok("logout")
    assert "Removed" in out
    assert tomllib.loads(cli.config.read_text()) == {"url": srv.url}  # the server is remembered, not the secret
    r = cli("whoami")
    assert r.returncode == 1 and "not logged in" in r.stderr
    assert cli("logout").returncode == 0  # logging out twice is fine


def test_login_with_an_access_key_and_the_default_config_dir(srv: Server, tmp_path: Path) -> None:
    key = srv.api().doc("api.key.create", {"description": "cli login"}, user="me")
    home = tmp_path / "plainhome"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NCR_", "XDG_CONFIG_HOME"))}
    env["HOME"] = str(home)
    run = [sys.executable, "-m", "ncr_trio"]
    r = subprocess.run([*run, "login", srv.host, "-u", key["id"], "--password-stdin"], input=key["secret"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"access key {key['id']}" in r.stdout and key["secret"] not in r.stdout
    config = home / ".config" / "ncr-trio" / "config.toml"  # XDG_CONFIG_HOME unset: ~/.config
    assert tomllib.loads(config.read_text())["url"] == srv.url  # host:port became a URL
    r = subprocess.run([*run, "whoami", "-o", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(r.stdout)["key_id"] == key["id"]
    srv.api().call("api.key.revoke", user="me", key=key["id"])
    r = subprocess.run([*run, "whoami"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "UNAUTHORIZED" in r.stderr and f"ncr-trio login {srv.url}" in r.stderr


def test_login_over_https_stores_the_ca_to_trust(cli: CLI, tmp_path: Path) -> None:
    tls = issue_tls(tmp_path / "tls", "127.0.0.1")
    https = Server(data=tmp_path / "tls-data", tls=tls.server_tls, registries=("secure",))
    https.start()
    try:
        login = ["login", https.url, "--username", "admin", "--password-stdin"]
        r = cli(*login, stdin=ADMIN_PASSWORD)
        assert r.returncode == 1 and f"cannot reach {https.url}" in r.stderr and "CERTIFICATE_VERIFY_FAILED" in r.stderr
        assert not cli.config.exists()
        r = cli(*login, "--cacert", "tls/" + tls.ca.name, stdin=ADMIN_PASSWORD, cwd=tmp_path)  # a relative path
        assert r.returncode == 0, r.stderr
        assert tomllib.loads(cli.config.read_text())["cacert"] == str(tls.ca.resolve())
        assert "secure" in column(cli.ok("registry", "list"), "NAME")  # the stored CA, from anywhere
        r = cli(*login, "--cacert", "no-such.pem", stdin=ADMIN_PASSWORD)
        assert r.returncode == 2 and "no-such.pem" in r.stderr
    finally:
        https.stop()


def test_flags_override_the_environment_which_overrides_the_file(admin: CLI, srv: Server) -> None:
    key = srv.new_user("cli-prec", key="precedence")
    as_key = {"NCR_USERNAME": key["id"], "NCR_PASSWORD": key["secret"]}
    assert admin.json("whoami")["user"] == "admin"  # the file
    assert admin.json("whoami", env=as_key)["user"] == "cli-prec"  # the environment over the file
    # Flags over the environment: the admin again, with the password from stdin.
    me = admin.json("whoami", "--username", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n", env=as_key)
    assert me["user"] == "admin"
    # Options before the verb work too.
    assert json.loads(admin.ok("-o", "json", "--username", "admin", "--password-stdin", "whoami",
                               stdin=ADMIN_PASSWORD + "\n"))["user"] == "admin"
    r = admin("whoami", env={"NCR_PASSWORD": "wrong"})  # the stored user, the environment's password
    assert r.returncode == 1 and "UNAUTHORIZED" in r.stderr
    # The stored credentials belong to their server: another URL never receives them.
    other = f"http://127.0.0.1:{free_port()}"
    for r in (admin("whoami", "--url", other), admin("whoami", env={"NCR_URL": other})):
        assert r.returncode == 1 and f"not logged in to {other}" in r.stderr
    r = admin("whoami", "--url", other, env=as_key)  # nobody listens there
    assert r.returncode == 1 and f"cannot reach {other}" in r.stderr


# -- registries and members ---------------------------------------------------------------------------------


def test_registry_verbs_in_table_and_json(admin: CLI, srv: Server) -> None:
    out = admin.ok("registry", "create", "cli-reg", "--description", "made by the cli", "--public-read", "on")
    f = fields(out)
    assert f["name"] == "cli-reg" and f["public read"] == "yes" and f["allowed CIDRs"] == "any"
    doc = admin.json("registry", "update", "cli-reg", "--allow-cidr", "10.0.0.0/8", "--public-read", "off")
    assert doc == {k: v for k, v in api(srv, "/registries/cli-reg").items() if k != "images"}
    assert doc["allowed_cidrs"] == ["10.0.0.0/8"] and doc["public_read"] is False

    out = admin.ok("registry", "list")
    assert table(out)[0][:4] == ["NAME", "PUBLIC_READ", "PUBLIC_URI", "TYPE"]
    assert "cli-reg" in column(out, "NAME") and "shop" in column(out, "NAME")
    assert admin.json("registry", "list") == api(srv, "/registries")

    assert fields(admin.ok("registry", "show", "cli-reg"))["images"] == "0"
    assert admin.json("registry", "show", "cli-reg") == api(srv, "/registries/cli-reg")
    r = admin("registry", "update", "cli-reg")
    assert r.returncode == 2 and "nothing to change" in r.stderr

    srv.new_user("cli-member", {"cli-reg": "service-viewer"})
    out = admin.ok("member", "list", "cli-reg")
    assert table(out)[0] == ["USER", "ROLE"] and ["cli-member", "service-viewer"] in table(out)
    assert admin.json("member", "list", "cli-reg") == api(srv, "/registries/cli-reg/members")

    r = admin("registry", "delete", "cli-reg")  # no terminal to ask on
    assert r.returncode == 2 and "--yes" in r.stderr
    assert admin.json("registry", "show", "cli-reg")["name"] == "cli-reg"  # still there
    # Its allowlist keeps this client (127.0.0.1) out of everything but its settings (docs/access.md).
    r = admin("registry", "delete", "cli-reg", "--yes")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr
    admin.ok("registry", "update", "cli-reg", "--clear-cidrs")
    assert admin.json("registry", "delete", "cli-reg", "--yes") == {"deleted": "cli-reg", "images_deleted": 0}
    r = admin("registry", "show", "cli-reg")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr and "cli-reg" in r.stderr


def test_image_cache_verbs_and_a_cache_registry(admin: CLI, srv: Server, tmp_path: Path) -> None:
    """`cache` verbs in table and JSON, the access secret from stdin, a file or the environment and never
    printed; `registry create --cache`; a cache in use refused; non-administrators refused."""
    secret = "cli-cache-s3cret-1"
    out = admin.ok("cache", "create", "cli-hub", "dockerhub", "https://registry-1.docker.io", "--access-id", "bot",
                   "--access-secret-stdin", "--description", "Docker Hub", stdin=secret + "\n")
    f = fields(out)
    assert (f["name"], f["type"], f["url"], f["access ID"], f["access secret"]) == (
        "cli-hub", "dockerhub", "https://registry-1.docker.io", "bot", "set")
    assert secret not in out
    assert admin.json("cache", "get", "cli-hub") == api(srv, "/caches/cli-hub")
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": "k"}, indent=2) + "\n")
    doc = admin.json("cache", "create", "cli-gcr", "gcr", "https://asia-docker.pkg.dev", "--access-id", "_json_key",
                     "--access-secret-file", str(key))
    assert doc == api(srv, "/caches/cli-gcr") and doc["has_secret"] is True
    doc = admin.json("cache", "update", "cli-gcr", "--source-url", "https://gcr.io", "--access-secret-env", "KEY",
                     env={"KEY": "{}"})
    assert doc["url"] == "https://gcr.io" and doc["has_secret"] is True
    out = admin.ok("cache", "list")
    assert table(out)[0][:3] == ["NAME", "TYPE", "URL"] and column(out, "NAME") == ["cli-gcr", "cli-hub"]
    assert admin.json("cache", "list") == api(srv, "/caches")
    r = admin("cache", "update", "cli-hub")
    assert r.returncode == 2 and "nothing to change" in r.stderr
    r = admin("cache", "create", "cli-bad", "dockerhub", "https://registry-1.docker.io:8443")
    assert r.returncode == 1 and "port 8443 is not allowed" in r.stderr
    r = admin("cache", "test", "cli-hub")
    assert r.returncode == 1 and "failed" in r.stdout  # no network here; elsewhere Docker Hub refuses "bot"

    out = admin.ok("registry", "create", "cli-mirror", "--cache", "cli-hub")
    assert fields(out)["type"] == "image cache (cli-hub)"
    assert admin.json("registry", "show", "cli-mirror")["cache"] == "cli-hub"
    assert "image cache (cli-hub)" in admin.ok("registry", "list")
    assert admin.json("cleanup", "policy", "list", "cli-mirror")["policies"][0]["n"] == 7
    r = admin("cache", "delete", "cli-hub", "--yes")
    assert r.returncode == 1 and "CONFLICT" in r.stderr and "cli-mirror" in r.stderr
    admin.ok("registry", "delete", "cli-mirror", "--yes")
    assert "Deleted image cache cli-hub" in admin.ok("cache", "delete", "cli-hub", "--yes")
    admin.ok("cache", "delete", "cli-gcr", "--yes")
    assert admin.json("cache", "list") == {"caches": []}

    key_of = srv.new_user("cli-cache-viewer", {"*": "project-admin"})
    r = admin("cache", "list", "--username", key_of["id"], "--password-stdin", stdin=key_of["secret"] + "\n")
    assert r.returncode == 1 and "DENIED" in r.stderr and "system administrator" in r.stderr


# -- images, artifacts, tags ------------------------------------------------------------------------------------


def test_image_list_show_and_paging(admin: CLI, srv: Server, pushed: Pushed) -> None:
    out = admin.ok("image", "list", "shop")
    assert table(out)[0] == ["NAME", "ARTIFACTS", "TAGS", "SIZE", "PUSHED", "PULLED"]
    assert column(out, "NAME") == ["tools/lint", "web"]
    assert dict(zip(column(out, "NAME"), column(out, "ARTIFACTS"), strict=True)) == {"tools/lint": "1", "web": "3"}
    assert admin.json("image", "list", "shop") == api(srv, "/registries/shop/images")
    assert column(admin.ok("image", "list", "shop", "-q", "lin"), "NAME") == ["tools/lint"]
    assert admin.json("image", "list", "shop", "-q", "lin") == api(srv, "/registries/shop/images?q=lin")

    second = admin("image", "list", "shop", "--per-page", "1", "--page", "2")
    assert second.returncode == 0 and column(second.stdout, "NAME") == ["web"]
    assert "page 2 of 2" in second.stderr  # the hint goes to stderr, the table stays clean
    assert admin.json("image", "list", "shop", "--per-page", "1", "--page", "2") == api(
        srv, "/registries/shop/images?per_page=1&page=2")
    everything = admin.json("image", "list", "shop", "--all", "--per-page", "1")  # two requests, one document
    assert everything == {"images": api(srv, "/registries/shop/images")["images"], "total": 2, "page": 1,
                          "per_page": 2}
    assert column(admin.ok("image", "list", "shop", "--all", "--per-page", "1"), "NAME") == ["tools/lint", "web"]
    r = admin("image", "list", "shop", "--all", "--page", "2")
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = admin("image", "list", "empty")
    assert r.returncode == 0 and r.stdout == "" and "no images" in r.stderr
    assert admin.json("image", "list", "empty")["images"] == []

    f = fields(admin.ok("image", "show", "shop/tools/lint"))
    assert f["name"] == "tools/lint" and f["repository"] == "shop/tools/lint" and f["tags"] == "1"
    assert admin.json("image", "show", "shop/tools/lint") == api(srv, "/registries/shop/images/tools/lint")
    # docker's spelling, with this server's host in front, names the same image
    assert admin.json("image", "show", f"{srv.host}/shop/tools/lint")["repository"] == "shop/tools/lint"


def test_artifacts_and_tags(admin: CLI, srv: Server, pushed: Pushed) -> None:
    out = admin.ok("artifact", "list", "shop/web")
    assert table(out)[0] == ["DIGEST", "TYPE", "TAGS", "SIZE", "PLATFORMS", "PUSHED", "PULLED", "SIGNED",
                             "VULNERABILITIES"]
    rows = {row[0]: row for row in table(out)[1:]}
    assert set(rows) == {pushed.amd, pushed.arm, pushed.index}
    assert rows[pushed.index][1] == "oci index" and "linux/amd64, linux/arm64" in rows[pushed.index]
    assert rows[pushed.amd][1] == "oci manifest" and rows[pushed.amd][2] == "amd"
    assert admin.json("artifact", "list", "shop/web") == api(srv, "/registries/shop/images/web/artifacts")

    f = fields(admin.ok("artifact", "show", f"shop/web@{pushed.index}"))
    assert f["digest"] == pushed.index and set(f["tags"].split(", ")) == {"latest", "v1.0"}
    assert admin.json("artifact", "show", f"shop/web@{pushed.index}") == api(
        srv, f"/registries/shop/images/web/artifacts/{pushed.index}")
    assert admin.json("artifact", "show", "shop/web:v1.0")["digest"] == pushed.index  # by a tag of it

    out = admin.ok("tag", "list", "shop/web")
    assert table(out)[0] == ["NAME", "DIGEST", "UPDATED"]
    assert sorted(column(out, "NAME")) == ["amd", "arm", "latest", "v1.0"]
    assert admin.json("tag", "list", "shop/web") == api(srv, "/registries/shop/images/web/tags")
    assert column(admin.ok("tag", "list", "shop/web", "--search", "a"), "NAME") == sorted(
        t["name"] for t in api(srv, "/registries/shop/images/web/tags?q=a")["tags"])
    assert [t["name"] for t in admin.json("tag", "list", "shop/web", "--glob", "v*")["tags"]] == ["v1.0"]

    out = admin.ok("tag", "search", "shop", "--glob", "v*")
    assert table(out)[0] == ["REPOSITORY", "TAG", "DIGEST", "UPDATED"]
    assert sorted(zip(column(out, "REPOSITORY"), column(out, "TAG"), strict=True)) == [
        ("shop/tools/lint", "v2"), ("shop/web", "v1.0")]
    assert admin.json("tag", "search", "shop", "--search", "v") == api(srv, "/registries/shop/tags?q=v")

    out = admin.ok("tag", "create", f"shop/web@{pushed.arm}", "cli-new")
    assert "cli-new" in out and pushed.arm in out
    doc = admin.json("tag", "create", "shop/web:amd", "cli-json")  # from a tag of the artifact
    assert doc["name"] == "cli-json" and doc["digest"] == pushed.amd and doc["repository"] == "shop/web"
    r = admin("tag", "create", f"shop/web@{pushed.arm}", "cli-new")
    assert r.returncode == 1 and "CONFLICT" in r.stderr

    for ref in ("shop/web:cli-new", "shop/web:cli-json"):
        r = admin("tag", "delete", ref)
        assert r.returncode == 2 and "--yes" in r.stderr
    assert "cli-new" in column(admin.ok("tag", "list", "shop/web"), "NAME")  # not deleted
    assert admin.ok("tag", "delete", "shop/web:cli-new", "--yes").strip() == "Deleted tag shop/web:cli-new"
    assert admin("tag", "delete", "shop/web:cli-json", "-y", "-o", "json").stdout == ""  # 204: no document
    assert sorted(column(admin.ok("tag", "list", "shop/web"), "NAME")) == ["amd", "arm", "latest", "v1.0"]
    r = admin("tag", "delete", "shop/web@" + pushed.amd, "--yes")
    assert r.returncode == 2 and "REGISTRY/IMAGE:TAG" in r.stderr


def test_deleting_artifacts_and_images(admin: CLI, srv: Server, pushed: Pushed) -> None:
    with srv.client() as c:
        one, two = image("cli-del-1"), image("cli-del-2")
        d1, d2 = push_image(c, "scratch/doomed", one, "one"), push_image(c, "scratch/doomed", two, "two")
        push_image(c, "scratch/gone/deep", image("cli-del-3"), "x")

    r = admin("artifact", "delete", f"scratch/doomed@{d1}")
    assert r.returncode == 2 and "--yes" in r.stderr
    assert admin.json("artifact", "show", f"scratch/doomed@{d1}")["tags"] == ["one"]  # still there
    assert admin.ok("artifact", "delete", f"scratch/doomed@{d1}", "--yes").strip() == f"Deleted scratch/doomed@{d1}"
    r = admin("artifact", "show", f"scratch/doomed@{d1}")
    assert r.returncode == 1 and "MANIFEST_UNKNOWN" in r.stderr
    assert admin.ok("artifact", "delete", "scratch/doomed:two", "-y").strip() == f"Deleted scratch/doomed@{d2}"

    r = admin("image", "delete", "scratch/gone/deep")
    assert r.returncode == 2 and "--yes" in r.stderr
    assert admin.json("image", "show", "scratch/gone/deep")["artifacts"] == 1
    assert admin.json("image", "delete", "scratch/gone/deep", "--yes") == {"deleted": "scratch/gone/deep",
                                                                          "artifacts_deleted": 1}
    r = admin("image", "show", "scratch/gone/deep")
    assert r.returncode == 1 and "NAME_UNKNOWN" in r.stderr and "'gone/deep'" in r.stderr
    with srv.client() as c:
        push_image(c, "scratch/again", image("cli-del-4"), "x")
    out = admin.ok("image", "delete", "scratch/again", "--yes")
    assert out.strip() == "Deleted scratch/again (1 artifacts)"


# -- garbage collection --------------------------------------------------------------------------------------------


def test_gc_run_and_history_through_the_api(admin: CLI, srv: Server) -> None:
    out = admin.ok("gc", "run", "--dry-run")
    assert out.startswith("GC run ") and "would remove" in out
    report = admin.json("gc", "run", "--dry-run")
    assert report["dry_run"] is True and {"blobs", "manifests", "bytes_freed", "id"} <= set(report)
    runs = api(srv, "/gc")
    assert admin.json("gc", "history") == runs and runs["runs"][0]["id"] == report["id"]
    out = admin.ok("gc", "history")
    assert table(out)[0] == ["ID", "DRY_RUN", "STARTED", "FINISHED", "BLOBS", "MANIFESTS", "UPLOADS", "FREED"]
    assert column(out, "ID")[0] == str(report["id"])
    assert len(admin.json("gc", "history", "--all", "--per-page", "1")["runs"]) == runs["total"]

    r = admin("gc", "run", "--delete-untagged")  # deletes manifests: asks first
    assert r.returncode == 2 and "--yes" in r.stderr
    assert admin.json("gc", "history")["total"] == runs["total"]  # it did not run
    assert admin.json("gc", "run", "--delete-untagged", "--yes")["dry_run"] is False

    r = admin("gc", "--data", str(srv.data), "run")  # local options do not mix with the API's verbs
    assert r.returncode == 2 and "--data" in r.stderr
    r = admin("--url", srv.url, "gc")
    assert r.returncode == 2 and "gc run" in r.stderr
    # `gc` without a verb still collects on the data directory itself (no login needed).
    local = json.loads(admin.ok("-o", "json", "gc", "--data", str(srv.data), "--dry-run"))
    assert local["dry_run"] is True and "blobs" in local
    r = admin("gc", "run", "--dry-run", env={"NCR_USERNAME": "cli-prec-nobody", "NCR_PASSWORD": "x"})
    assert r.returncode == 1 and "UNAUTHORIZED" in r.stderr


# -- users, keys, roles, audit --------------------------------------------------------------------------------------


def test_users_keys_roles_and_audit(admin: CLI, srv: Server) -> None:
    out = admin.ok("user", "create", "cli-dev")
    assert "Created user cli-dev" in out
    assert admin.json("user", "create", "cli-ops", "--new-password-env", "OPS_PW",
                      env={"OPS_PW": "ops-password-1"}) == {"name": "cli-ops"}
    assert admin.json("whoami", env={"NCR_USERNAME": "cli-ops", "NCR_PASSWORD": "ops-password-1"})["user"] == "cli-ops"
    out = admin.ok("user", "list")
    assert table(out)[0] == ["NAME", "SYSTEM_ADMIN", "CREATED"] and {"cli-dev", "cli-ops"} <= set(column(out, "NAME"))
    assert admin.json("user", "list") == api(srv, "/users")

    out = admin.ok("role", "grant", "cli-dev", "project-admin", "--registry", "shop")
    assert out.strip() == "cli-dev is project-admin on registry shop"
    assert admin.json("role", "grant", "cli-dev", "service-viewer") == {"user": "cli-dev", "registry": "*",
                                                                        "role": "service-viewer"}
    out = admin.ok("role", "list", "cli-dev")
    assert table(out) == [["REGISTRY", "ROLE"], ["*", "service-viewer"], ["shop", "project-admin"]]
    assert admin.json("role", "list", "cli-dev") == api(srv, "/users/cli-dev/roles")
    assert admin.ok("role", "revoke", "cli-dev").strip() == "Revoked cli-dev's role on every registry (*)"
    assert admin.json("role", "list", "cli-dev") == {"roles": [{"registry": "shop", "role": "project-admin"}]}

    # A key's secret is shown once, in the answer that creates it; listings never show it.
    r = admin("key", "create", "--user", "cli-dev", "--description", "from the cli")
    assert r.returncode == 0 and "shown only this once" in r.stdout and "ncr-trio login" in r.stderr
    key_id, secret = r.stdout.split("access key ID:")[1].split()[0], r.stdout.split("secret:")[1].split()[0]
    new = admin.json("key", "create", "--user", "cli-dev", "--description", "json")
    assert new["secret"] and new["user"] == "cli-dev"
    out = admin.ok("key", "list", "--user", "cli-dev")
    assert table(out)[0] == ["ID", "USER", "DESCRIPTION", "CREATED", "LAST_USED", "ROTATION_DUE"]
    assert {key_id, new["id"]} == set(column(out, "ID"))
    listed = admin.json("key", "list", "--user", "cli-dev")
    assert listed == api(srv, "/users/cli-dev/keys")
    assert secret not in out + json.dumps(listed) and new["secret"] not in out + json.dumps(listed)

    # The new key logs in and sees its own keys (never a secret), and its registry's members.
    dev = CLI(admin.home.parent / "dev-home", admin.url)
    dev.home.mkdir()
    dev.login(key_id, secret)
    assert dev.json("whoami")["key_id"] == key_id
    assert secret not in dev.ok("key", "list") + dev.ok("key", "list", "-o", "json")
    assert ["cli-dev", "project-admin"] in table(dev.ok("member", "list", "shop"))
    r = dev("user", "list")
    assert r.returncode == 1 and "DENIED" in r.stderr

    r = admin("key", "revoke", new["id"], "--user", "cli-dev")
    assert r.returncode == 2 and "--yes" in r.stderr
    out = admin.ok("key", "revoke", new["id"], "--user", "cli-dev", "--yes")
    assert out.strip() == f"Revoked access key {new['id']}"
    out = admin.ok("key", "list", "--user", "cli-dev", "--revoked")
    assert "REVOKED" in table(out)[0] and new["id"] in column(out, "ID")
    assert new["id"] not in column(admin.ok("key", "list", "--user", "cli-dev"), "ID")

    r = admin("user", "delete", "cli-ops")
    assert r.returncode == 2 and "--yes" in r.stderr
    assert admin.ok("user", "delete", "cli-ops", "--yes").strip() == "Deleted user cli-ops"
    assert "cli-ops" not in column(admin.ok("user", "list"), "NAME")

    out = admin.ok("audit", "--action", "key", "--limit", "10")
    assert table(out)[0][:5] == ["ID", "AT", "ACTOR", "ACTION", "OUTCOME"]
    assert {"key.create", "key.revoke"} <= set(column(out, "ACTION"))
    entries = admin.json("audit", "--action", "key", "--limit", "2")  # (every API call records a login)
    assert entries == api(srv, "/audit?action=key&limit=2") and len(entries["entries"]) == 2
    older = admin.json("audit", "--actor", "admin", "--limit", "5", "--before", str(entries["entries"][-1]["id"]))
    assert all(e["id"] < entries["entries"][-1]["id"] for e in older["entries"])
    assert "--before" in admin("audit", "--limit", "2").stderr  # how to page further
    assert secret not in json.dumps(admin.json("audit", "--limit", "200"))


# -- errors and confirmations --------------------------------------------------------------------------------------


def test_errors_give_exit_1_with_the_servers_message_and_usage_errors_exit_2(admin: CLI, pushed: Pushed) -> None:
    r = admin("image", "list", "no-such-registry")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("ncr-trio: NOT_FOUND:") and "no-such-registry" in r.stderr
    r = admin("registry", "create", "Bad_Name")
    assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr
    r = admin("artifact", "show", "shop/web@sha256:nope")
    assert r.returncode == 1 and "DIGEST_INVALID" in r.stderr
    r = admin("artifact", "show", "shop/web:no-such-tag")
    assert r.returncode == 1 and "no-such-tag" in r.stderr
    for args in (["image", "show", "shop"], ["artifact", "show", "shop/web"], ["tag", "create", "shop/web", "x"],
                 ["image", "list"], ["no-such-command"], ["image", "list", "shop", "--per-page", "0"],
                 ["-o", "yaml", "whoami"]):
        r = admin(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr and r.stdout == ""
    r = admin("whoami", "--password-stdin", stdin="")
    assert r.returncode == 2 and "stdin" in r.stderr


def test_a_terminal_is_asked_and_shown_progress(admin: CLI, srv: Server, pushed: Pushed) -> None:
    with srv.client() as c:
        push_image(c, "scratch/tty", image("cli-tty"), "keep")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCR_")}
    env.update(HOME=str(admin.home), XDG_CONFIG_HOME=str(admin.home / "xdg"), COLUMNS="200", LINES="50")

    def on_tty(*args: str, answer: str | None = None) -> tuple[int, str]:
        return terminal.on_tty(*args, env=env, answer=answer)

    code, out = on_tty("tag", "delete", "scratch/tty:keep", answer="n")
    assert code == 1 and "Delete tag scratch/tty:keep" in out and "aborted" in out
    assert "keep" in column(admin.ok("tag", "list", "scratch/tty"), "NAME")
    code, out = on_tty("image", "delete", "scratch/tty", answer="y")
    assert code == 0 and "with its 1 artifacts and 1 tags" in out and "Deleted scratch/tty" in out
    assert admin("image", "show", "scratch/tty").returncode == 1
    code, out = on_tty("gc", "run", "--dry-run")
    assert code == 0 and "would remove" in out
    code, out = on_tty("image", "list", "shop", "--all", "--per-page", "1")
    assert code == 0 and "Listing images" in out and "tools/lint" in out  # the progress bar, then the table
    code, out = on_tty("cleanup", "run", "scratch", answer="n")
    assert code == 1 and "Run the cleanup of registry scratch" in out and "0 enabled cleanup policies" in out
    assert admin.json("cleanup", "history", "scratch")["runs"] == []  # not run
    code, out = on_tty("cleanup", "test", "scratch")
    assert code == 0 and "Test run #" in out and "no policy was enabled" in out


# -- webhooks, cleanup, protection, schedules --------------------------------------------------------------------


def test_webhook_verbs_with_a_receiver(admin: CLI, srv: Server) -> None:
    srv.ensure_registries("hooks")
    with Receiver() as receiver:
        r = admin("webhook", "create", "hooks", "ci", receiver.url, "--event", "artifact.pushed", "--event",
                  "tag.created", "--secret-stdin", stdin="cli-hook-secret\n")
        assert r.returncode == 0, r.stderr
        f = fields(r.stdout)
        assert (f["name"], f["kind"], f["url"], f["events"]) == ("ci", "http", receiver.url,
                                                                 "artifact.pushed, tag.created")
        assert (f["secret"], f["auth header"], f["enabled"]) == ("set", "not set", "yes")
        assert "cli-hook-secret" not in r.stdout + r.stderr  # write-only
        hook_id = int(f["id"])
        path = f"/registries/hooks/webhooks/{hook_id}"

        out = admin.ok("webhook", "list", "hooks")
        assert table(out)[0] == ["ID", "NAME", "KIND", "URL", "EVENTS", "ENABLED", "SECRET", "AUTH_HEADER", "CREATED"]
        assert column(out, "NAME") == ["ci"] and column(out, "SECRET") == ["set"]
        assert admin.json("webhook", "list", "hooks") == api(srv, "/registries/hooks/webhooks")
        assert admin.json("webhook", "show", "hooks", "ci") == api(srv, path)  # by name or by ID
        assert fields(admin.ok("webhook", "show", "hooks", str(hook_id)))["name"] == "ci"

        # The auth header from the environment; --secret-env with an unset variable is a usage error.
        doc = admin.json("webhook", "update", "hooks", "ci", "--auth-header-env", "HOOK_AUTH", "--all-events",
                         env={"HOOK_AUTH": "Bearer cli-hook-token"})
        assert doc == api(srv, path) and doc["auth_header_set"] is True and doc["event_types"] == []
        assert "cli-hook-token" not in json.dumps(doc)
        for args in (["--secret-env", "NO_SUCH_VAR"], [], ["--event", "artifact.pushed", "--all-events"],
                     ["--secret-stdin", "--auth-header-stdin"], ["--event", "no.such.type"]):
            r = admin("webhook", "update", "hooks", "ci", *args, stdin="x\n")
            assert r.returncode == 2, (args, r.stderr)
        r = admin("webhook", "update", "hooks", "ci", "--secret-stdin", "--username", "admin", "--password-stdin",
                  stdin=ADMIN_PASSWORD + "\nsecret\n")
        assert r.returncode == 2 and "cannot both read stdin" in r.stderr

        # Send a test: delivered, signed with the secret, with the auth header.
        out = admin.ok("webhook", "test", "hooks", "ci")
        assert out.startswith("Test delivery ") and "delivered (HTTP 200" in out
        got = receiver.wait_for(lambda rs: any(x.headers.get("x-ncr-event") == "test" for x in rs))[-1]
        assert got.headers["authorization"] == "Bearer cli-hook-token"
        assert got.headers["x-ncr-signature"] == "sha256=" + hmac.new(b"cli-hook-secret", got.body,
                                                                      hashlib.sha256).hexdigest()
        # A receiver that fails: exit status 1, the delivery (JSON) says why.
        receiver.fail_next(1, status=503)
        r = admin("webhook", "test", "hooks", str(hook_id), "-o", "json")
        assert r.returncode == 1
        failed = json.loads(r.stdout)
        assert failed["status"] == "failed" and failed["last_status"] == 503

        # Disabled, it gets no deliveries; enabled again, a push is delivered.
        assert admin.ok("webhook", "disable", "hooks", "ci").strip() == f"Disabled webhook ci (#{hook_id}) of registry hooks"
        assert admin.json("webhook", "show", "hooks", "ci")["enabled"] is False
        assert admin.json("webhook", "enable", "hooks", "ci")["enabled"] is True
        with srv.client() as c:
            pushed = push_image(c, "hooks/app", image("cli-hook"), "v1")
        receiver.wait_for(lambda rs: any(x.headers.get("x-ncr-event") == "artifact.pushed" for x in rs))

        # The delivery history, with each attempt's HTTP status.
        def history() -> Any:
            return api(srv, f"{path}/deliveries")

        deadline = time.monotonic() + 30
        while not {"artifact.pushed", "tag.created"} <= {d["event_type"] for d in history()["deliveries"]
                                                         if d["status"] == "delivered"}:  # every type again
            assert time.monotonic() < deadline, history()
            time.sleep(0.2)
        out = admin.ok("webhook", "deliveries", "hooks", "ci")
        assert table(out)[0] == ["ID", "EVENT", "STATUS", "ATTEMPTS", "HTTP_STATUS", "ERROR", "CREATED", "FINISHED"]
        rows = {(row[1], row[2], row[4]) for row in table(out)[1:]}
        assert {("test", "delivered", "200"), ("test", "failed", "503"), ("artifact.pushed", "delivered", "200")} <= rows
        assert admin.json("webhook", "deliveries", "hooks", "ci") == history()
        pushed_delivery = next(d for d in history()["deliveries"] if d["event_type"] == "artifact.pushed")
        assert pushed_delivery["payload"]["digest"] == pushed
        assert len(admin.json("webhook", "deliveries", "hooks", "ci", "--all", "--per-page", "1")["deliveries"]) == 4

        r = admin("webhook", "delete", "hooks", "ci")
        assert r.returncode == 2 and "--yes" in r.stderr
        assert admin.ok("webhook", "delete", "hooks", "ci", "--yes").strip() == "Deleted webhook ci of registry hooks"
        r = admin("webhook", "show", "hooks", "ci")
        assert r.returncode == 1 and "NOT_FOUND" in r.stderr
        assert "cli-hook-secret" not in json.dumps(admin.json("audit", "--registry", "hooks", "--limit", "100"))


def test_cleanup_policies_test_run_run_and_history(admin: CLI, srv: Server) -> None:
    srv.ensure_registries("tidy")
    with srv.client() as c:
        keep = push_image(c, "tidy/app", image("cli-tidy-keep"), "v1")
        dev = push_image(c, "tidy/app", image("cli-tidy-dev"), "dev-1")
    out = admin.ok("cleanup", "policy", "add", "tidy", "older_than", "0", "--tag", "dev-*")
    f = fields(out)
    assert (f["image"], f["tag"], f["untagged"], f["rule"], f["enabled"]) == ("**", "dev-*", "no", "older_than 0",
                                                                             "yes")
    policy_id = f["id"]
    doc = admin.json("cleanup", "policy", "add", "tidy", "retain-pushed", "5", "--image", "other/*", "--untagged")
    assert (doc["rule"], doc["n"], doc["untagged"], doc["image"]) == ("retain_pushed", 5, True, "other/*")
    r = admin("cleanup", "policy", "add", "tidy", "older_than", "0", "--tag", "dev-*")
    assert r.returncode == 1 and "CONFLICT" in r.stderr and f"#{policy_id}" in r.stderr  # a duplicate
    r = admin("cleanup", "policy", "add", "tidy", "newest", "3")
    assert r.returncode == 2 and "older_than" in r.stderr

    out = admin.ok("cleanup", "policy", "list", "tidy")
    assert table(out)[0] == ["ID", "IMAGE", "TAG", "UNTAGGED", "RULE", "N", "ENABLED", "CREATED", "DESCRIPTION"]
    assert column(out, "TAG") == ["dev-*", "**"]
    assert admin.json("cleanup", "policy", "list", "tidy") == api(srv, "/registries/tidy/cleanup/policies")
    assert admin.ok("cleanup", "policy", "disable", "tidy", str(doc["id"])).startswith(
        f"Disabled cleanup policy #{doc['id']} of registry tidy")
    assert admin.json("cleanup", "policy", "enable", "tidy", str(doc["id"]))["enabled"] is True
    r = admin("cleanup", "policy", "delete", "tidy", str(doc["id"]))
    assert r.returncode == 2 and "--yes" in r.stderr
    assert admin("cleanup", "policy", "delete", "tidy", str(doc["id"]), "-y", "-o", "json").stdout == ""
    assert len(admin.json("cleanup", "policy", "list", "tidy")["policies"]) == 1

    # A test run: the items as a table, nothing deleted.
    out = admin.ok("cleanup", "test", "tidy")
    assert out.startswith("Test run #") and "1 would be deleted" in out
    rows = table(out)
    header = rows.index(["REPOSITORY", "DIGEST", "TAGS", "OUTCOME", "REASON"])
    assert rows[header + 1][:4] == ["tidy/app", dev, "dev-1", "would-delete"]
    assert f"cleanup policy #{policy_id}" in rows[header + 1][4]
    test_run = admin.json("cleanup", "test", "tidy")
    assert test_run["dry_run"] is True and test_run["triggered_by"] == "test"
    assert [(i["digest"], i["outcome"]) for i in test_run["items"]] == [(dev, "would-delete")]
    assert admin.json("artifact", "show", f"tidy/app@{dev}")["tags"] == ["dev-1"]

    # Run now: asks first; then deletes.
    r = admin("cleanup", "run", "tidy")
    assert r.returncode == 2 and "--yes" in r.stderr
    out = admin.ok("cleanup", "run", "tidy", "--yes")
    assert out.startswith("Cleanup run #") and "1 deleted" in out
    assert ["tidy/app", dev, "dev-1", "deleted"] == [row for row in table(out) if dev in row][0][:4]
    assert admin("artifact", "show", f"tidy/app@{dev}").returncode == 1
    assert admin.json("artifact", "show", f"tidy/app@{keep}")["tags"] == ["v1"]

    # The history, and one run's details with its items.
    out = admin.ok("cleanup", "history", "tidy")
    assert table(out)[0] == ["ID", "TRIGGER", "DRY_RUN", "STATUS", "STARTED", "FINISHED", "DELETED", "KEPT", "ERROR"]
    assert column(out, "TRIGGER") == ["manual", "test", "test"] and column(out, "STATUS") == ["succeeded"] * 3
    assert admin.json("cleanup", "history", "tidy") == api(srv, "/registries/tidy/cleanup/runs")
    out = admin.ok("cleanup", "history", "tidy", str(test_run["id"]))
    details_part, _, items_part = out.partition("\n\n")
    f = fields(details_part)
    assert (f["run"], f["triggered by"], f["test run"], f["would delete"]) == (str(test_run["id"]), "test", "yes", "1")
    assert f"cleanup #{policy_id}" in f["policies"]
    assert table(items_part)[1][:4] == ["tidy/app", dev, "dev-1", "would-delete"]
    assert admin.json("cleanup", "history", "tidy", str(test_run["id"])) == api(
        srv, f"/registries/tidy/cleanup/runs/{test_run['id']}")
    assert admin.json("cleanup", "history", "tidy", "--per-page", "1")["runs"][0]["triggered_by"] == "manual"
    r = admin("cleanup", "history", "tidy", "999999")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr
    r = admin("cleanup", "history", "tidy", str(test_run["id"]), "--all")
    assert r.returncode == 2


def test_protection_refuses_a_push_and_can_be_disabled(admin: CLI, srv: Server) -> None:
    srv.ensure_registries("guard")
    with srv.client() as c:
        first = push_image(c, "guard/app", image("cli-guard-1"), "v1")
    f = fields(admin.ok("protection", "add", "guard", "v*"))
    assert (f["image"], f["tag"], f["enabled"]) == ("**", "v*", "yes")
    pid = f["id"]
    out = admin.ok("protection", "list", "guard")
    assert table(out)[0] == ["ID", "IMAGE", "TAG", "ENABLED", "CREATED"] and column(out, "TAG") == ["v*"]
    assert admin.json("protection", "list", "guard") == api(srv, "/registries/guard/protection/policies")
    r = admin("protection", "add", "guard", "v*")
    assert r.returncode == 1 and "CONFLICT" in r.stderr

    other = image("cli-guard-2")
    with srv.client() as c:
        for blob in other.blobs.values():
            push_blob(c, "guard/app", blob)
        r = push_manifest(c, "guard/app", "v1", other.manifest)
    assert r.status_code == 403, r.text
    error = r.json()["errors"][0]
    assert error["code"] == "DENIED" and f"protection policy #{pid}" in error["message"]
    r = admin("tag", "delete", "guard/app:v1", "--yes")  # the CLI shows the server's refusal
    assert r.returncode == 1 and "DENIED" in r.stderr and f"protection policy #{pid}" in r.stderr
    assert admin.json("artifact", "show", "guard/app:v1")["digest"] == first

    assert admin.ok("protection", "disable", "guard", pid).strip() == (
        f'Disabled protection policy #{pid} of registry guard (image "**", tag "v*")')
    with srv.client() as c:
        assert push_manifest(c, "guard/app", "v1", other.manifest).status_code == 201
    assert admin.json("protection", "enable", "guard", pid)["enabled"] is True
    r = admin("protection", "delete", "guard", pid)
    assert r.returncode == 2 and "--yes" in r.stderr
    assert admin.ok("protection", "delete", "guard", pid, "--yes").strip() == (
        f"Deleted protection policy #{pid} of registry guard")
    assert admin.json("protection", "list", "guard") == {"policies": []}
    r = admin("protection", "enable", "guard", pid)
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


def test_cleanup_schedule_set_and_show(admin: CLI, srv: Server) -> None:
    srv.ensure_registries("sched")
    f = fields(admin.ok("cleanup", "schedule", "show", "sched"))
    assert (f["schedule"], f["preset"], f["timezone"], f["next run"]) == ("None", "None", "UTC", "-")
    f = fields(admin.ok("cleanup", "schedule", "set", "sched", "Daily"))
    assert (f["schedule"], f["preset"]) == ("0 0 * * *", "Daily") and f["next run"].endswith("00:00:00")
    doc = admin.json("cleanup", "schedule", "set", "sched", "30 2 * * 1-5")
    assert doc == api(srv, "/registries/sched/cleanup/schedule")
    assert (doc["schedule"], doc["preset"], doc["timezone"]) == ("30 2 * * 1-5", None, "UTC")
    f = fields(admin.ok("cleanup", "schedule", "show", "sched"))
    assert (f["schedule"], f["preset"]) == ("30 2 * * 1-5", "- (custom)") and f["next run"].endswith("02:30:00")
    r = admin("cleanup", "schedule", "set", "sched", "every day")
    assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr
    assert admin.json("cleanup", "schedule", "show", "sched")["schedule"] == "30 2 * * 1-5"  # unchanged
    assert admin.json("cleanup", "schedule", "set", "sched", "weekly")["preset"] == "Weekly"
    assert admin.json("cleanup", "schedule", "set", "sched", "None") == {**api(srv, "/registries/sched/cleanup/schedule"),
                                                                        "schedule": "None"}
    r = admin("cleanup", "schedule", "set", "no-such-registry", "Daily")
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


def test_a_viewer_reads_but_cannot_change_automation(admin: CLI, srv: Server) -> None:
    srv.ensure_registries("watch")
    key = srv.new_user("cli-watcher", {"watch": "service-viewer"}, key="cli viewer")
    admin.ok("protection", "add", "watch", "release-*")
    viewer = {"NCR_USERNAME": key["id"], "NCR_PASSWORD": key["secret"]}
    assert column(admin.ok("protection", "list", "watch", env=viewer), "TAG") == ["release-*"]
    assert admin.json("cleanup", "schedule", "show", "watch", env=viewer)["schedule"] == "None"
    assert admin.json("cleanup", "history", "watch", env=viewer)["runs"] == []
    for args in (["cleanup", "test", "watch"], ["cleanup", "policy", "add", "watch", "older_than", "1"],
                 ["webhook", "create", "watch", "x", "http://127.0.0.1:1/x"], ["cleanup", "schedule", "set", "watch",
                                                                            "Daily"]):
        r = admin(*args, env=viewer)
        assert r.returncode == 1 and "DENIED" in r.stderr, (args, r.stderr)
