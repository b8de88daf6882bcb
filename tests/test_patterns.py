"""The guide's filter patterns: the semantics of the glob library they replace (wcmatch), in
linear time.

wcmatch stays a test dependency as the reference: on small patterns over a small alphabet with
"/", "." and every metacharacter, and names of the shape repositories and tags have, both agree.
"""

from __future__ import annotations

import random
import sys
import threading

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from wcmatch import glob as wcglob

from ncr_trio import patterns
from ncr_trio.patterns import CACHE_LIMIT, MAX_PATTERN, STEP_BOUND, Glob, InvalidPattern, compile_pattern

WCMATCH = wcglob.GLOBSTAR | wcglob.BRACE


def reference(pattern: str, name: str) -> bool | None:
    """What wcmatch says (None: it refuses the pattern, e.g. more than 1000 brace expansions)."""
    try:
        return bool(wcglob.compile(pattern, flags=WCMATCH).match(name))
    except Exception:
        return None


def valid_name(name: str) -> bool:
    """The shape of every name a pattern meets: repository names and tags have no empty path
    component and none that starts with "."."""
    return all(part and not part.startswith(".") for part in name.split("/"))


# -- the guide's table, and the syntax kept from wcmatch ---------------------------------------

@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("path/*", "path/hello-world", True), ("path/*", "path/my/hello-world", False),
    ("path/**", "path/hello-world", True), ("path/**", "path/my/hello-world", True),
    ("1.?", "1.0", True), ("1.?", "1.10", False),
    ("{path,ncr}/*", "path/hello-world", True), ("{path,ncr}/*", "ncr/hello-world", True),
    ("{path,ncr}/*", "nhn/hello-world", False),
])
def test_the_guides_examples(pattern: str, name: str, expected: bool) -> None:
    assert compile_pattern(pattern)(name) is expected


@pytest.mark.parametrize("pattern", [
    "{a}", "{}", "x{}", "a{b,c", "{{a,b}", "{a,b}}", "a}", "a,b", "{a,{b},c}", "{a,{b,c}d}", "{,}a", "{a,b,}c",
    "a\\", "\\*", "\\{a,b}", "{a\\,b}", "{a,b\\}}", "a\\/b", "a/\\/b", "**\\/a", "a//b", "/a", "a/", "a/**/",
    "[ab]", "[!a]", "[^a]", "[a-c]", "[a-]", "[]]", "[!]a]", "[\\]]", "[z-a]", "[", "]", "[[]", "a[/]b", "[*]", "[?]",
    "{[a,b]}", "{x,[a,b]}", "a**", "**a", "a/**b", "***", "a/***/b", "*{*,}/b", "{a,/}**", "{**,x}", "a{**,x}",
    "{**}", "{,**}", "**//b", "a/**/**", "**/*", "*/", "!a", "~", "@(a)", "a|b",
])
def test_edge_cases_as_wcmatch_had_them(pattern: str) -> None:
    glob = Glob(pattern)
    for name in ["a", "b", "c", "-", "]", "*", "?", "{a}", "{}", "x{}", "a{b,c", "{a", "a}", "b}", "a,b", "{b}", "cd",
                 "a/b", "a/x/b", "x/y/b", "a/b/c", "ab", "axb", "aa", "[a", "b]", "[a,b]", "{a,b}", "!a", "~", "a|b",
                 "*a", "x/a", "a/x/y"]:
        assert glob(name) == reference(pattern, name), name


def test_what_is_not_supported() -> None:
    with pytest.raises(InvalidPattern, match="alpha"):
        Glob("[[:alpha:]]")
    assert not Glob("{1..3}")("2") and Glob("{1..3}")("{1..3}")  # a sequence: ordinary characters
    for bad in ["", "a" * (MAX_PATTERN + 1)]:
        with pytest.raises(InvalidPattern):
            Glob(bad)


# -- the property: the same answers as wcmatch -------------------------------------------------

# (pattern text, a string it stands for): literals and escapes, then wildcards and what may fill them.
LITERALS = [("a", "a"), ("b", "b"), (".", "."), ("-", "-"), ("/", "/"), ("\\*", "*"), ("\\?", "?"), ("\\{", "{"),
            ("\\}", "}"), ("\\,", ","), ("\\a", "a"), ("\\/", "/"), ("\\\\", "\\")]
TOP_LEVEL = [(",", ","), ("}", "}")]  # ordinary characters outside braces
WILDCARDS = {"*": ["", "a", "ab", "b.a"], "**": ["", "a", "a/b", "b/", "ab/a/"], "?": ["a", "b", "."],
             "[ab]": ["a", "b", "c"], "[!a]": ["a", "b"], "[a-b]": ["b", "-"]}
NAMES = st.lists(st.text("aab.-*?{},\\", min_size=1, max_size=3), min_size=1, max_size=4).map("/".join)


@st.composite
def pattern_and_name(draw: st.DrawFn, depth: int = 0) -> tuple[str, str]:
    """A pattern, and a string drawn from what it stands for (which may or may not match it)."""
    pattern, name = "", ""
    kinds = ["literal", "literal", "wildcard", "wildcard"] + (["brace"] if depth < 2 else [])
    for _ in range(draw(st.integers(0, 5 - depth))):
        kind = draw(st.sampled_from(kinds))
        if kind == "literal":
            text, stands_for = draw(st.sampled_from(LITERALS + (TOP_LEVEL if depth == 0 else [])))
        elif kind == "wildcard":
            text = draw(st.sampled_from(sorted(WILDCARDS)))
            stands_for = draw(st.sampled_from(WILDCARDS[text]))
        else:
            alternatives = draw(st.lists(pattern_and_name(depth + 1), min_size=2, max_size=3))
            text = "{" + ",".join(p for p, _ in alternatives) + "}"
            stands_for = draw(st.sampled_from(alternatives))[1]
        pattern += text
        name += stands_for
    return pattern, name


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern_and_name(), NAMES, st.booleans())
def test_matches_as_wcmatch_did(drawn: tuple[str, str], other: str, derived: bool) -> None:
    pattern, name = drawn
    if not derived or not valid_name(name):
        name = other
    assume(pattern and valid_name(name) and pattern.count("*") <= 6)  # wcmatch's own regexes backtrack
    expected = reference(pattern, name)
    assume(expected is not None)
    event(f"match: {expected}")
    assert Glob(pattern)(name) == expected


# -- no pattern can stall a worker --------------------------------------------------------------

A255 = "a" * 255
PATH255 = "a/" * 127 + "a"
NESTED = "{a,{a,{a,{a,{a,{a,b}}}}}}"
HOSTILE = [  # (pattern, name of 255 characters, matches)
    ("*a*a*a*a*a*a*a*a*a*ab", A255, False), ("*a*a*a*a*a*a*a*a*a*ab", PATH255, False),
    ("*?" * 8, A255, True), ("*?" * 8 + "b", A255, False), ("*?" * 8, PATH255, False),
    (NESTED * 4 + "*", A255, True), (NESTED * 4 + "*b", PATH255, False), ("{*,?}" * 20 + "b", A255, False),
    ("**/" * 8 + "a*a*a*a*b", PATH255, False), ("**/" * 8 + "a", PATH255, True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), HOSTILE)
def test_hostile_patterns_take_linear_steps(pattern: str, name: str, expected: bool) -> None:
    """Backtracking regexes (wcmatch's) take seconds to ages on these; a fresh Glob stays within its
    bound of steps per (instruction, character), and the second time needs one step per character."""
    glob = Glob(pattern)
    assert glob(name) is expected
    assert glob.steps <= STEP_BOUND * (len(pattern) + 1) * (len(name) + 1)
    first = glob.steps
    assert glob(name) is expected
    assert glob.steps - first <= len(name)


@pytest.mark.parametrize("pattern", ["*a" * (MAX_PATTERN // 2), "*?" * (MAX_PATTERN // 2), "{*,?}" * (MAX_PATTERN // 5)])
def test_the_largest_patterns_stay_linear_and_their_cache_bounded(pattern: str) -> None:
    """Long enough, a pattern's DFA outgrows its cache, which starts afresh: the answers are the
    same as a fresh Glob's, and every match stays within the bound."""
    rng = random.Random(1)
    glob = Glob(pattern)
    highest = 0
    for name in [A255, A255[:-1] + "/", *("".join(rng.choices("ab", k=rng.randint(1, 255))) for _ in range(20))]:
        before = glob.steps
        assert glob(name) == Glob(pattern)(name)
        assert glob.steps - before <= STEP_BOUND * (len(pattern) + 1) * (len(name) + 1)
        highest = max(highest, glob.cached)
    assert highest <= CACHE_LIMIT + STEP_BOUND * (len(pattern) + 1)  # the limit, plus the state added last


def test_a_glob_shared_by_threads_answers_as_fresh_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiled patterns are shared (lru_cache) and matched on the trio thread and the metadata
    writer's alike; their cache, starting afresh all the time here, must not mix two matches up."""
    monkeypatch.setattr(patterns, "CACHE_LIMIT", 300)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns between almost every bytecode
    pattern = "*a" * 40
    shared = Glob(pattern)
    names = ["".join(random.Random(seed).choices("ab", k=200)) for seed in range(40)]
    expected = [Glob(pattern)(name) for name in names]
    assert any(expected) and not all(expected)
    results: dict[int, list[bool]] = {}

    def work(worker: int) -> None:
        results[worker] = [shared(name) for name in names[worker:] + names[:worker]]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(results) == 4  # no thread died (an IndexError, say)
    for worker, answers in results.items():
        assert answers == expected[worker:] + expected[:worker]
