"""`ncr-trio artifact list|show` and `registry update --[no-]require-[verified-]signature` against a real
server, the images signed by the pinned cosign:

- the artifact list's SIGNED column: unsigned, "signed (2)" with no key trusted, "verified (names)" once
  the signers' keys are trusted (a registry key and an installation key), "invalid" for an image signed
  only by an untrusted key once keys are trusted; signatures themselves are not listed;
- artifact show: the signed line, a Signatures table (layout, verdict, keys by name, reason) and an
  Accessories table (the .sig tag, the bundle referrer); -o json is the API's artifact;
- registry update sets and clears both requirements through the trust settings, alone or beside the
  registry's other settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import wait_for
from tests.support.clients import Clients, find_tool, make_image, write_layout
from tests.support.oci import Image
from tests.support.server import Server
from tests.test_cli import column, fields, table
from tests.test_scan_cli import CLI

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(find_tool("cosign") is None or find_tool("skopeo") is None,
                       reason="not installed: cosign, skopeo"),
]

COSIGN_REGISTRY = ["--allow-insecure-registry", "--allow-http-registry"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from Server(data=tmp_path_factory.mktemp("trustcli") / "data", registries=("clitrust",),
                 env={"NCR_TRUST_POLL_SECONDS": "0.2"}).running()



def api(server: Server, path: str, method: str = "GET", **kw: Any) -> Any:
    r = server.call(method, path, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def push(c: Clients, image: Image, repo: str, tag: str) -> None:
    layout = c.path(f"layout-{image.digest[7:19]}")
    write_layout(layout, "t", [image])
    c.run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{c.server.host}/{repo}:{tag}")


def sign(c: Clients, repo: str, image: Image, key: str, *flags: str) -> None:
    if not c.path(f"{key}.pub").exists():
        c.run("cosign", "generate-key-pair", "--output-key-prefix", key, env={"COSIGN_PASSWORD": ""})
    c.run("cosign", "sign", "--key", f"{key}.key", "--tlog-upload=false", "--yes", *COSIGN_REGISTRY, *flags,
          f"{c.server.host}/{repo}@{image.digest}", env={"COSIGN_PASSWORD": ""})


def signed_column(cli: CLI, repo: str) -> dict[str, str]:
    """The SIGNED column by digest (counted from the end: an image's empty PLATFORMS cell is no cell)."""
    rows = table(cli.ok("artifact", "list", repo))
    assert rows[0][-2:] == ["SIGNED", "VULNERABILITIES"]
    return {row[0]: row[-2] for row in rows[1:]}


def states(server: Server) -> dict[str, str]:
    page = api(server, "/registries/clitrust/images/app/artifacts")
    return {a["digest"]: a["signed"]["state"] for a in page["artifacts"]}


def test_signed_column_and_artifact_show(server: Server, cl: Clients, tmp_path: Path) -> None:
    cli, repo = CLI(server, tmp_path), "clitrust/app"
    a, b, u = make_image("cli-trust-a"), make_image("cli-trust-b"), make_image("cli-trust-u")
    push(cl, a, repo, "a")
    push(cl, b, repo, "b")
    push(cl, u, repo, "u")
    sign(cl, repo, a, "release")  # the .sig tag
    sign(cl, repo, a, "ops", "--new-bundle-format")  # a bundle referrer
    sign(cl, repo, b, "stranger")
    wait_for(lambda: states(server), lambda s: s[a.digest] == "signed" and s[b.digest] == "signed")
    assert signed_column(cli, repo) == {a.digest: "signed (2)", b.digest: "signed (1)", u.digest: "unsigned"}

    cli.ok("trust", "key", "add", "release", str(cl.path("release.pub")), "--registry", "clitrust")
    cli.ok("trust", "key", "add", "ops-team", str(cl.path("ops.pub")))  # the installation's
    wait_for(lambda: states(server), lambda s: s[a.digest] == "verified" and s[b.digest] == "invalid")
    shown = signed_column(cli, repo)
    assert shown[b.digest] == "invalid" and shown[u.digest] == "unsigned"
    assert shown[a.digest] in ("verified (release, ops-team)", "verified (ops-team, release)")

    f = fields(cli.ok("artifact", "show", f"{repo}@{a.digest}"))
    assert f["signed"] == shown[a.digest]
    out = cli.ok("artifact", "show", f"{repo}:a")
    signatures = out.split("Signatures:")[1].split("Accessories")[0]
    rows = {(r[0], r[3], r[4]) for r in table(signatures)[1:]}
    assert rows == {("tag", "verified", "release"), ("bundle", "verified", "ops-team")}, out
    assert table(signatures)[0] == ["LAYOUT", "MANIFEST", "LAYER", "VERDICT", "KEYS", "REASON"]
    accessories = table(out.split("Accessories (deleted with the artifact):")[1])
    assert accessories[0][:3] == ["TYPE", "DIGEST", "TAG"]
    assert sorted((r[0], r[2]) for r in accessories[1:]) == [
        ("signature", "-"), ("signature", f"sha256-{a.digest[7:]}.sig")]
    assert cli.json("artifact", "show", f"{repo}@{a.digest}") == api(
        server, f"/registries/clitrust/images/app/artifacts/{a.digest}")

    out = cli.ok("artifact", "show", f"{repo}@{b.digest}")
    sig = table(out.split("Signatures:")[1].split("Accessories")[0])[1]
    assert sig[0] == "tag" and sig[3] == "invalid" and sig[4] == "-" and len(sig) == 6 and sig[5] != "-"
    # The signatures are accessories, not artifacts.
    assert sorted(column(cli.ok("artifact", "list", repo), "DIGEST")) == sorted([a.digest, b.digest, u.digest])


def test_registry_update_sets_the_signature_requirements(server: Server, tmp_path: Path) -> None:
    cli = CLI(server, tmp_path)
    f = fields(cli.ok("registry", "update", "clitrust", "--require-signature"))
    assert f["registry"] == "clitrust" and f["require signature"] == "yes"
    assert f["require verified signature"] == "no"
    assert api(server, "/registries/clitrust/trust") == {"registry": "clitrust", "require_signature": True,
                                                         "require_verified_signature": False}
    doc = cli.json("registry", "update", "clitrust", "--description", "signed only", "--no-require-signature",
                   "--require-verified-signature")
    assert doc["description"] == "signed only"
    assert doc["trust"] == {"registry": "clitrust", "require_signature": False, "require_verified_signature": True}
    assert api(server, "/registries/clitrust/trust") == doc["trust"]
    assert cli.json("registry", "update", "clitrust", "--no-require-verified-signature") == {
        "registry": "clitrust", "require_signature": False, "require_verified_signature": False}
    r = cli("registry", "update", "clitrust", "--require-signature", "--no-require-signature")
    assert r.returncode == 0  # argparse: the last one wins
    assert api(server, "/registries/clitrust/trust")["require_signature"] is False
