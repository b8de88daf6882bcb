"""CI cannot pass by skipping: with CI set, a skipped test fails the run (tests/conftest.py), unless
it is marked allow_skip; without CI, skips stay skips; either way the summary lists them (-rs)."""

from __future__ import annotations

import pytest

TESTS = """
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")


def test_runs():
    pass


@pytest.mark.skipif(True, reason="not installed: skopeo")
def test_needs_a_tool():
    pass


def test_finds_a_tool_missing():
    pytest.skip("not installed: crane")


@pytest.mark.allow_skip("cannot do direct I/O")
def test_needs_what_no_machine_owes():
    pytest.skip("the filesystem cannot do direct I/O")


@pytest.mark.allow_skip("cannot do direct I/O")
@pytest.mark.skipif(True, reason="not installed: oras")
def test_allowed_one_reason_but_skips_for_another():
    pass


@pytest.mark.xfail(reason="a known bug")
def test_known_bug():
    assert False
"""

CONFTEST = "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_small=TESTS)
    return pytester


@pytest.mark.parametrize("value", ["1", "true"])
def test_with_ci_set_a_skip_fails_the_run(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
                                          ) -> None:
    monkeypatch.setenv("CI", value)
    result = suite.runpytest("-rs")
    # A skipif mark skips in setup: that becomes an error, a skip in the test's body a failure.
    result.assert_outcomes(passed=1, errors=2, failed=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skipped while CI is set*not installed: skopeo*",
                                 "*skipped while CI is set*not installed: oras*",
                                 "*skipped while CI is set*not installed: crane*",
                                 "SKIPPED*the filesystem cannot do direct I/O*"])


@pytest.mark.parametrize("value", [None, "", "0", "false"])
def test_without_ci_skips_are_skips_and_are_listed(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                   value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    result = suite.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["SKIPPED*not installed: skopeo*", "SKIPPED*not installed: crane*"])


def test_with_ci_set_a_module_skipped_at_collection_fails(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_module='import pytest\npytest.importorskip("no_such_module_here")\n')
    monkeypatch.setenv("CI", "1")
    result = pytester.runpytest()
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skipped while CI is set*no_such_module_here*"])


def test_the_suite_lists_skips() -> None:
    """`make test` (and so .ci/run) prints every skip with its reason."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert "-rs" in config["tool"]["pytest"]["ini_options"]["addopts"].split()
