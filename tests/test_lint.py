"""ruff keeps the package clean (pyflakes, import order, bugbear, pyupgrade, line length) and mypy
--strict keeps it typed; tests and benchmarks at least free of pyflakes errors and unsorted imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_package_passes_ruff() -> None:
    r = ruff("ncr_trio")
    assert r.returncode == 0, r.stdout[-4000:]


def test_tests_and_benchmarks_have_no_pyflakes_errors() -> None:
    r = ruff("--select", "F,I,E9", "tests", "benchmarks")
    assert r.returncode == 0, r.stdout[-4000:]


def test_package_passes_mypy_strict() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "ncr_trio"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:]
