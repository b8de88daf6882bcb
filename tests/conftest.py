from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.clients import Clients, clients_watching
from tests.support.s3 import S3Server, s3_server
from tests.support.server import Server

# pytester: tests/test_ci.py runs pytest on small test files; tests.support.console: the console tests' browser and page
pytest_plugins = ["pytester", "tests.support.console"]

ALLOW_SKIP = "allow_skip"


def ci() -> bool:
    """Whether the run is a CI run (the CI variable set, as every CI service does)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)


def _fail_instead(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped while CI is set: {_reason(report)}\n(install what is missing; a test that may skip "
                       f"on any machine names that reason with @pytest.mark.{ALLOW_SKIP}(\"...\"))")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                            pytest.TestReport]:
    """In CI a skip is a failure (a missing tool must not pass for a green run), unless the test is
    marked allow_skip("<part of the reason>"): it needs what no machine can be asked for, such as a
    filesystem with direct I/O, and only that reason is let through."""
    report = yield
    if report.skipped and ci() and not hasattr(report, "wasxfail"):
        allowed = [str(mark.args[0]) for mark in item.iter_markers(ALLOW_SKIP) if mark.args]
        if not any(text in _reason(report) for text in allowed):
            _fail_instead(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport,
                                                                         pytest.CollectReport]:
    """The same for a whole module skipped while collected (`pytest.importorskip`, say)."""
    report = yield
    if report.skipped and ci():
        _fail_instead(report)
    return report


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh ncr-trio server with its own data directory."""
    yield from Server(data=tmp_path / "data").running()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ncr-trio server for a whole session of read-mostly client tests."""
    yield from Server(data=tmp_path_factory.mktemp("shared") / "data").running()


@pytest.fixture
def cl(server: Server, tmp_path: Path) -> Iterator[Clients]:
    """Real clients (tests/support/clients.py) with a home under tmp_path, logged in to the module's `server`;
    the test fails if the server logged an error meanwhile."""
    yield from clients_watching(server, tmp_path)


@pytest.fixture(scope="session")
def versitygw() -> Iterator[S3Server]:
    """A versitygw S3 server over a temporary directory, for the whole session (tests make their own buckets)."""
    with s3_server("versitygw") as srv:
        yield srv


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    """moto's S3 server (it enforces the 5 MiB minimum part size), for the whole session."""
    with s3_server("moto") as srv:
        yield srv
