"""The guide's filter patterns, one implementation for every filter (tags, images, cleanup,
protection, replication):

    *      any characters except the separator "/"      path/* matches path/hello-world, not path/my/x
    **     any characters, "/" included (as a whole     path/** matches path/my/hello-world
           path component)
    ?      one character except "/"                     1.? matches 1.0, not 1.10
    {a,b}  either alternative (nested, empty allowed)   {v1,v2}.* matches v1.0 and v2.3

and, as with the glob library used before (wcmatch, GLOBSTAR | BRACE): `\\x` is x itself, `[abc]`,
`[a-z]`, `[!a]` (or `[^a]`) one character of (or not of) a set, never "/"; "a//b" is "a/b". A `{`
without a matching `}` and a comma, or a `[` without its `]`, is an ordinary character. Names are
validated repository names and tags: no path component is empty or starts with "." (so the
hidden-file rules of shell globs never come into play, and there are none here). Not supported:
`[:alpha:]` classes (refused), `{1..3}` sequences (ordinary characters), a `[...]` set that spans
a brace (`a[{b,c}]`: ordinary characters).

Why not a regex: patterns come from any reader (`GET .../tags?glob=`) and from protection policies
checked inside write transactions, and a backtracking regex for `*a*a*a*a*a*a*a*a*a*ab` takes
seconds on 40 characters. Here a pattern compiles, braces included (never expanded), to a program
of at most len(pattern) + 1 instructions (Thompson's construction), and a name is matched by moving
a set of threads through it one character at a time, each (instruction, component, phase) at most
once per character: at most STEP_BOUND x (len(pattern) + 1) x (len(name) + 1) steps, counted in
`Glob.steps`. The thread sets met become the states of a DFA built lazily, so a name matched again,
or sharing a prefix with one matched before, costs a dict lookup per character; that cache holds at
most CACHE_LIMIT seeds and transitions per pattern and starts afresh when full (as RE2's does).

`**` is the one construct that needs context: it is a globstar only as a whole component once
braces are expanded (`{a/,}**` has one, `a{**,b}` none), i.e. two `*` that begin a component, follow
one another and end it. So a thread knows whether its component is still empty; a thread in a
globstar consumes anything, and leaves it only for "/" at a component boundary, or the end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

MAX_PATTERN = 128  # the guide's filters are short; the worst case grows with len(pattern) x len(name)
STEP_BOUND = 15  # steps per (instruction, character): 12 (pc, component, phase) visits, 2 threads, 1 lookup
CACHE_LIMIT = 8192  # seeds and transitions cached per pattern: some 100 kB at most

# Opcodes. SLASH is a separator (escaped: never merged with the one before), SPLIT a brace.
_CHAR, _SLASH, _ANY, _SET, _STAR, _SPLIT, _MATCH = range(7)
# Where a thread is: not in a globstar / in its first star / between its stars / after both.
_NORMAL, _GLOB, _GLOB1, _GLOB2 = range(4)
# What a thread has met of its current path component: something / nothing yet, at the pattern's
# start / nothing yet, after a separator.
_PART, _FIRST, _SEP = range(3)
# What precedes the current position of the name: nothing, "/", another character; or the name ended.
_START, _SLASHED, _INSIDE, _END = range(4)
_DEAD = 0  # the DFA state without threads: nothing that follows can match
_BEGIN = 1  # the DFA state a name starts in


class InvalidPattern(ValueError):
    pass


class _CharSet(NamedTuple):
    negated: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def has(self, c: str) -> bool:
        return (c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)) != self.negated


class _Ins(NamedTuple):
    op: int
    char: str = ""  # CHAR
    escaped: bool = False  # SLASH
    charset: _CharSet | None = None  # SET
    targets: tuple[int, ...] = ()  # SPLIT
    next: int = -1


_Item = _Ins | list[list["_Item"]]  # a token, or the alternatives of a brace


class Glob:
    """A compiled pattern: `Glob(p)(name)` says whether the name matches. `steps` counts the work
    done (threads visited, transitions looked up) and `cached` what the DFA holds, for tests and
    benchmarks. Thread-safe: one match at a time (patterns are also matched on the metadata store's
    writer thread)."""

    __slots__ = ("pattern", "steps", "cached", "_prog", "_seeds", "_ctx", "_ids", "_trans", "_accepts", "_lock")

    def __init__(self, pattern: str) -> None:
        if not pattern or len(pattern) > MAX_PATTERN:
            raise InvalidPattern(f"a pattern has 1 to {MAX_PATTERN} characters")
        self.pattern = pattern
        self.steps = 0
        self._prog = [_Ins(_MATCH)]
        start = self._compile(_Parser(pattern).items(0, len(pattern)), 0)
        # DFA state i: the seeds (encoded (pc, component, phase)) threads start from, in context _ctx[i].
        self._seeds: list[frozenset[int]] = [frozenset()]
        self._ctx = [_INSIDE]
        self._trans: list[dict[str, int]] = [{}]
        self._ids: dict[tuple[frozenset[int], int], int] = {}
        self._accepts: dict[int, bool] = {_DEAD: False}
        self.cached = 0
        self._state(frozenset({_seed(start, _FIRST, _NORMAL)}), _START)
        self._lock = threading.Lock()

    def __call__(self, name: str) -> bool:
        with self._lock:
            return self._match(name)

    def _match(self, name: str) -> bool:
        state = _BEGIN
        trans = self._trans
        for i, c in enumerate(name):
            known = trans[state].get(c)
            state = self._step(state, c) if known is None else known
            if state == _DEAD:
                self.steps += i + 1
                return False
        self.steps += len(name)
        accepted = self._accepts.get(state)
        if accepted is None:
            accepted = self._accepts[state] = self._closure(self._seeds[state], _END)[1]
        return accepted

    def _compile(self, items: list[_Item], following: int) -> int:
        """The program for `items`, continuing at `following`; returns its entry (built backwards)."""
        for item in reversed(items):
            if isinstance(item, list):
                targets = tuple(self._compile(alternative, following) for alternative in item)
                self._prog.append(_Ins(_SPLIT, targets=targets))
            else:
                self._prog.append(item._replace(next=following))
            following = len(self._prog) - 1
        return following

    def _state(self, seeds: frozenset[int], ctx: int) -> int:
        if not seeds:
            return _DEAD
        found = self._ids.get((seeds, ctx))
        if found is None:
            found = self._ids[seeds, ctx] = len(self._seeds)
            self._seeds.append(seeds)
            self._ctx.append(ctx)
            self._trans.append({})
            self.cached += len(seeds)
        return found

    def _closure(self, seeds: Iterable[int], ctx: int) -> tuple[set[int], bool]:
        """Every move that consumes nothing, from `seeds`: the threads then waiting for a character
        (encoded pc * 2 + in_globstar), and whether the pattern may end here (meaningful at _END)."""
        threads: set[int] = set()
        accept = False
        seen: set[int] = set()
        stack = list(seeds)
        prog = self._prog
        part, sep, glob1, glob2 = _PART * 4, _SEP * 4 + _NORMAL, _PART * 4 + _GLOB1, _PART * 4 + _GLOB2
        while stack:
            seed = stack.pop()
            if seed in seen:
                continue
            seen.add(seed)
            pc, rest = divmod(seed, 12)
            ins = prog[pc]
            op, after = ins.op, ins.next * 12
            if op == _SPLIT:
                stack.extend(t * 12 + rest for t in ins.targets)
            elif rest == part + _GLOB:  # in a globstar's first star: consume anything, or go on to the second
                threads.add(pc * 2 + 1)
                stack.append(after + glob1)
            elif rest == glob1:  # the second star must come next
                if op == _STAR:
                    stack.append(after + glob2)
            elif rest == glob2:  # then the end, or a separator the globstar consumed or stands at
                if op == _MATCH:
                    accept = True
                elif op == _SLASH and ctx != _INSIDE:
                    stack.append(after + sep)
            elif op == _MATCH:
                accept = True
            else:  # _NORMAL, whatever the component
                threads.add(pc * 2)
                if op == _STAR:
                    if rest == part or ctx != _END:  # "*" may match nothing, but leaves no empty component
                        stack.append(after + part)
                    if rest != part:  # a star that begins a component may begin a globstar
                        stack.append(pc * 12 + part + _GLOB)
                elif op == _SLASH and rest == sep and not ins.escaped:  # "a//b" is "a/b"
                    stack.append(after + sep)
        self.steps += len(seen)
        return threads, accept

    def _step(self, state: int, c: str) -> int:
        """The state after `c`, from the NFA (then cached)."""
        threads, _ = self._closure(self._seeds[state], self._ctx[state])
        seeds, ctx = self._advance(threads, c), _SLASHED if c == "/" else _INSIDE
        if self.cached >= CACHE_LIMIT:  # start afresh; a match in progress goes on from the new state
            self._forget()
            return self._state(seeds, ctx)
        following = self._trans[state][c] = self._state(seeds, ctx)
        self.cached += 1
        return following

    def _advance(self, threads: set[int], c: str) -> frozenset[int]:
        """The seeds of the threads that consume `c`."""
        seeds = set()
        for thread in threads:
            pc, in_globstar = divmod(thread, 2)
            ins = self._prog[pc]
            if in_globstar:
                seeds.add(_seed(pc, _PART, _GLOB))
            elif ins.op == _SLASH:
                if c == "/":
                    seeds.add(_seed(ins.next, _SEP, _NORMAL))
            elif ins.op == _CHAR:
                if c == ins.char:
                    seeds.add(_seed(ins.next, _PART, _NORMAL))
            elif c == "/":
                pass  # "*", "?" and sets never match "/"
            elif ins.op == _STAR:
                seeds.add(_seed(pc, _PART, _NORMAL))
            elif ins.op == _ANY or (ins.charset is not None and ins.charset.has(c)):
                seeds.add(_seed(ins.next, _PART, _NORMAL))
        self.steps += len(threads)
        return frozenset(seeds)

    def _forget(self) -> None:
        """Empty the caches but for the dead and start states (in place: a match in progress holds the lists)."""
        del self._seeds[_BEGIN + 1:], self._ctx[_BEGIN + 1:], self._trans[_BEGIN + 1:]
        for out in self._trans:
            out.clear()
        self._ids = {key: i for key, i in self._ids.items() if i <= _BEGIN}
        self._accepts = {i: ok for i, ok in self._accepts.items() if i <= _BEGIN}
        self.cached = len(self._seeds[_BEGIN])


def _seed(pc: int, component: int, phase: int) -> int:
    return pc * 12 + component * 4 + phase


class _Parser:
    """Braces first (as a shell expands them), then the glob syntax of the text between them."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.close: dict[int, int] = {}  # where a "{" that is matched opens -> its "}"
        self.commas: dict[int, list[int]] = {}  # that "{" -> its own commas
        open_: list[int] = []
        i = 0
        while i < len(pattern):
            c = pattern[i]
            if c == "\\":
                i += 1
            elif c == "{":
                open_.append(i)
                self.commas[i] = []
            elif c == "}" and open_:
                self.close[open_.pop()] = i
            elif c == "," and open_:
                self.commas[open_[-1]].append(i)
            i += 1

    def items(self, lo: int, hi: int) -> list[_Item]:
        """The tokens and braces of pattern[lo:hi]."""
        out: list[_Item] = []
        text = ""
        i = lo
        while i < hi:
            end = self.close.get(i)
            if end is None:
                step = 2 if self.p[i] == "\\" else 1
                text += self.p[i:i + step]
                i += step
            elif not self.commas[i]:  # "{a}" is text, but the braces it holds are still braces
                out += _glob(text + "{") + self.items(i + 1, end)
                text = "}"
                i = end + 1
            else:
                bounds = [i, *self.commas[i], end]
                out += _glob(text)
                out.append([self.items(a + 1, b) for a, b in zip(bounds, bounds[1:], strict=False)])
                text = ""
                i = end + 1
        return out + _glob(text)


def _glob(text: str) -> list[_Item]:
    """The tokens of text without braces."""
    out: list[_Item] = []
    i = 0
    while i < len(text):
        c = text[i]
        i += 1
        if c == "\\":
            if i == len(text):
                break  # a trailing backslash escapes nothing
            c = text[i]
            i += 1
            out.append(_Ins(_SLASH, escaped=True) if c == "/" else _Ins(_CHAR, char=c))
        elif c == "/":
            out.append(_Ins(_SLASH))
        elif c == "*":
            out.append(_Ins(_STAR))
        elif c == "?":
            out.append(_Ins(_ANY))
        elif c == "[" and (found := _charset(text, i)) is not None:
            charset, i = found
            out.append(_Ins(_SET, charset=charset))
        else:
            out.append(_Ins(_CHAR, char=c))
    return out


def _charset(text: str, i: int) -> tuple[_CharSet, int] | None:
    """The set whose "[" is just before text[i], and the index after its "]"; None without a "]"."""
    negated = text[i:i + 1] in ("!", "^")
    i += negated
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    start = i
    while i < len(text):
        c = text[i]
        if c == "]" and i > start:
            return _CharSet(negated, frozenset(chars), tuple(ranges)), i + 1
        if text.startswith("[:", i):
            raise InvalidPattern("character classes such as [:alpha:] are not supported")
        if c == "\\" and i + 1 < len(text):
            i += 1
            c = text[i]
        i += 1
        if text[i:i + 1] == "-" and text[i + 1:i + 2] not in ("", "]"):
            hi = text[i + 1]
            i += 2
            if hi == "\\" and i < len(text):
                hi = text[i]
                i += 1
            ranges.append((c, hi))
        else:
            chars.add(c)
    return None


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Glob:
    """A predicate: does a name match `pattern`? Compiled once per pattern, with its DFA."""
    return Glob(pattern)


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern)(name)


__all__ = ["CACHE_LIMIT", "MAX_PATTERN", "STEP_BOUND", "Glob", "InvalidPattern", "compile_pattern", "matches"]
