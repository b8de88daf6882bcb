from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh ncr-trio server with its own data directory."""
    srv = Server(data=tmp_path / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ncr-trio server for a whole session of read-mostly client tests."""
    srv = Server(data=tmp_path_factory.mktemp("shared") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()
