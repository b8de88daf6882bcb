"""The OCI distribution-spec conformance suite against a running ncr-trio, every area enabled."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.server import Server, tool

pytestmark = pytest.mark.conformance


def run_conformance(server: Server, results: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    # The suite logs in (Docker token auth) with an access key of the admin's, as a CI system would.
    server.ensure_registries("conformance")
    key = server.api().doc("api.key.create", {"description": "conformance"}, user="me")
    env = {
        **os.environ,
        "OCI_REGISTRY": server.host,
        "OCI_USERNAME": key["id"],
        "OCI_PASSWORD": key["secret"],
        "OCI_TLS": "disabled",
        "OCI_VERSION": "1.1",
        "OCI_REPO1": "conformance/repo1",
        "OCI_REPO2": "conformance/repo2",
        "OCI_RESULTS_DIR": str(results),
        # Everything the v1.1 suite can test: pull, push, content discovery, content management,
        # cross-repository mount, upload cancel, sha512 content.
        "OCI_API_PULL": "true",
        "OCI_API_PUSH": "true",
        "OCI_API_BLOBS_DELETE": "true",
        "OCI_API_BLOBS_UPLOAD_CANCEL": "true",
        "OCI_API_BLOBS_DIGEST_HEADER": "true",
        "OCI_API_MANIFESTS_DELETE": "true",
        "OCI_API_MANIFESTS_DIGEST_HEADER": "true",
        "OCI_API_TAGS_DELETE": "true",
        "OCI_API_TAGS_LIST": "true",
        "OCI_API_REFERRER": "true",
        "OCI_DATA_SHA512": "true",
        **extra,
    }
    return subprocess.run([tool("conformance")], env=env, cwd=results.parent, capture_output=True, text=True,
                          timeout=600)


def test_conformance_suite_passes(server: Server, tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = run_conformance(server, results)
    summary = (results / "results.yaml").read_text() if (results / "results.yaml").exists() else ""
    assert proc.returncode == 0, (f"conformance failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}\n"
                                  f"{server.log()[-3000:]}")
    assert "FAIL" not in summary
    assert "Pass" in proc.stdout
