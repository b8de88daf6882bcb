"""The guide's filter examples, as a replication policy applies them (image path, tag match/exclude)."""

from __future__ import annotations

import pytest

from ncr_trio.replication.filters import Filters, InvalidPattern


@pytest.mark.parametrize(("pattern", "path", "selected"), [
    ("path/*", "path/hello-world", True),
    ("path/*", "path/my/hello-world", False),
    ("path/**", "path/my/hello-world", True),
    ("{path,ncr}/*", "ncr/hello-world", True),
    ("{path,ncr}/*", "path/hello-world", True),
    ("{path,ncr}/*", "other/hello-world", False),
    ("", "any/thing/at/all", True),
])
def test_image_filter(pattern: str, path: str, selected: bool) -> None:
    assert Filters.parse(pattern, "").selects_image(path) is selected


@pytest.mark.parametrize(("pattern", "tag", "selected"), [
    ("1.?", "1.0", True),
    ("1.?", "1.01", False),
    ("1.?", "1.10", False),
    ("v*", "v1.2", True),
    ("v*", "latest", False),
    ("", "latest", True),
])
def test_tag_filter_match_and_exclude(pattern: str, tag: str, selected: bool) -> None:
    assert Filters.parse("", pattern, "match").selects_tag(tag) is selected
    expected_excluded = selected if not pattern else not selected
    assert Filters.parse("", pattern, "exclude").selects_tag(tag) is expected_excluded


def test_bad_patterns_and_modes_are_refused() -> None:
    with pytest.raises(InvalidPattern):
        Filters.parse("x" * 1000, "")
    with pytest.raises(ValueError, match="tag_filter_mode"):
        Filters.parse("", "v*", "sometimes")
