"""The guide's filter patterns, one implementation for every filter (tags, images, cleanup,
protection, replication), on wcmatch (a well-kept glob library):

    *      any characters except the separator "/"      path/* matches path/hello-world, not path/my/x
    **     any characters, "/" included (as a whole     path/** matches path/my/hello-world
           path component)
    ?      one character except "/"                     1.? matches 1.0, not 1.10
    {a,b}  either alternative                           {v1,v2}.* matches v1.0 and v2.3
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from wcmatch import glob
from wcmatch._wcparse import PatternLimitException  # documented, but only exported from here

_FLAGS = glob.GLOBSTAR | glob.BRACE
MAX_PATTERN = 512


class InvalidPattern(ValueError):
    pass


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A predicate: does a name match `pattern`?"""
    if not pattern or len(pattern) > MAX_PATTERN:
        raise InvalidPattern(f"a pattern has 1 to {MAX_PATTERN} characters")
    try:
        matcher = glob.compile(pattern, flags=_FLAGS)
    except (ValueError, TypeError, PatternLimitException) as e:  # the last: braces expanding to > 1000 patterns
        raise InvalidPattern(f"invalid pattern {pattern[:80]!r}: {e}") from None
    return lambda name: bool(matcher.match(name))


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern)(name)


__all__ = ["MAX_PATTERN", "InvalidPattern", "compile_pattern", "matches"]
