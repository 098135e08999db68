"""PCRE as ingress-nginx runs it for ``canary-by-header-pattern``: a backtracking engine with
a work limit, modelled with the PCRE-compatible ``regex`` package and a time limit.

Upstream facts this module reproduces (repository kubernetes/ingress-nginx, controller-v1.15.1):

- ``rootfs/etc/nginx/lua/balancer.lua`` ``route_to_alternative_balancer`` matches the header
  with ``ngx.re.match(header, headerPattern)``: PCRE, no options, so an **unanchored search**.
- A match that errors (PCRE's backtracking limit, ``pcre_exec() failed: -8``, or a pattern
  that does not compile) is logged (``error when matching canary-by-header-pattern``) and the
  request goes to the **main** backend. ingress-nginx's ``nginx.tmpl`` does not set
  lua-nginx-module's ``lua_regex_match_limit``, whose default 0 means PCRE's built-in match
  limit (``MATCH_LIMIT``, 10,000,000 backtracking steps).
- ``internal/ingress/annotations/canary/main.go``: the annotation's value is described as
  "PCRE Regex matching"; "when the given Regex causes error during request processing, the
  request will be considered as not matching".

- PCRE refuses a pattern whose compiled form is too large (``pcre_compile`` "regular
  expression is too large", 64K code units with the default ``LINK_SIZE`` 2): a group with a
  bounded repetition is compiled as that many copies of the group, so nested repetitions
  such as ``((a{1000}){1000}){1000}`` are refused; ``ngx.re.match`` then errors and the
  request goes to the main backend (as above). The ``regex`` package expands nested
  repetitions the same way while it compiles, with no bound of its own (that pattern takes
  gigabytes): :func:`expanded_size` estimates the copies before anything is compiled, and a
  pattern above :data:`MAX_EXPANDED_SIZE` is refused like PCRE refuses it.

The ``regex`` package speaks PCRE's syntax (lookaround, atomic groups, possessive quantifiers,
backreferences, ``\\p{..}`` properties) and releases the GIL while it matches. PCRE's step
limit becomes :data:`MATCH_TIME_LIMIT` seconds of matching: a pattern that backtracks
catastrophically fails in bounded time, as it does in nginx.

Example:
    >>> search("^canary-", "canary-users")
    True
    >>> search("(a|aa)+$", "a" * 60 + "!")
    Traceback (most recent call last):
    ...
    pytest_canary.pcre.PcreMatchLimit: ...
"""

from __future__ import annotations

import functools
import re
from typing import Any

import regex as _engine

# PCRE's MATCH_LIMIT (10,000,000 steps) takes tens of milliseconds on current CPUs; the same
# order of work is allowed here, with room for a loaded test machine.
MATCH_TIME_LIMIT = 0.1
# Longest pattern compiled at all (the annotation's value; nginx has no smaller limit, but a
# pattern is compiled once per worker: a bound keeps compilation itself cheap).
MAX_PATTERN_LENGTH = 4096
# Pattern items once bounded repetitions are counted as copies (see expanded_size). PCRE
# refuses a compiled pattern over 64K code units; this bound is of the same order, and keeps
# the regex package's compilation within about 0.05 s and 40 MB.
MAX_EXPANDED_SIZE = 100_000
# A repetition count above PCRE's (65535) never compiles; larger digit strings are cut here
# so that estimating is cheap whatever the count.
_MAX_REPEAT = 65535
_REPEAT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


class PcreError(ValueError):
    """A pattern PCRE would not compile; the message says why."""


class PcreMatchLimit(RuntimeError):
    """A match that ran into the backtracking limit (nginx: ``pcre_exec() failed: -8``)."""


def expanded_size(pattern: str) -> int:
    """How many pattern items ``pattern`` compiles to once every bounded repetition
    (``{n}``, ``{n,m}``, ``{n,}``) counts as that many copies of what it repeats, nested
    repetitions multiplying: ``(a{1000}){1000}`` is 1,000,000. Linear in ``len(pattern)``;
    only an estimate (it reads escapes, classes and groups, not every PCRE construct), made
    to bound the work of compiling, never to decide a match.

    Example:
        >>> expanded_size("v[0-9]+")
        2
        >>> expanded_size("(ab){3}")
        9
    """
    sizes = [0]  # the items of each open group, innermost last
    last = 0  # the items of the atom a following quantifier repeats
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            letter = pattern[i + 1 : i + 2]
            i += 2
            if letter and letter in "pPxNgko" and pattern[i : i + 1] == "{":  # \p{Greek}
                end = pattern.find("}", i)
                i = n if end < 0 else end + 1
            last = 1
            sizes[-1] += 1
            continue
        if char == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1  # a ']' right after '[' is a member, not the end
            while i < n and pattern[i] != "]":
                if pattern[i] == "\\":
                    i += 1
                elif pattern.startswith("[:", i):
                    end = pattern.find(":]", i + 2)
                    i = i if end < 0 else end + 1
                i += 1
            i += 1
            last = 1
            sizes[-1] += 1
            continue
        if char == "(":
            sizes.append(0)
            last = 0
            i += 1
            continue
        if char == ")" and len(sizes) > 1:  # an unmatched ')' is left to the compiler
            group = sizes.pop() + 1
            sizes[-1] += group
            last = group
            i += 1
            continue
        if char == "{":
            repeat = _REPEAT.match(pattern, i)
            if repeat and (repeat.group(1) or repeat.group(2)):
                low, high = repeat.group(1), repeat.group(2)
                count = _count(high) if high else _count(low)
                # the atom is there once already; the repetition adds count - 1 copies
                sizes[-1] += last * (count - 1)
                last *= count
                i = repeat.end()
                continue
        i += 1
        if char not in "*+?|^$":
            last = 1
            sizes[-1] += 1
    return sum(sizes)


def _count(digits: str) -> int:
    return _MAX_REPEAT + 1 if len(digits) > 5 else max(int(digits or "0"), 1)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> tuple[Any, str | None]:
    # Failures are cached too: the router asks once per request, and a pattern that fails
    # must fail fast every time.
    if len(pattern) > MAX_PATTERN_LENGTH:
        return None, f"longer than {MAX_PATTERN_LENGTH} characters ({len(pattern)})"
    size = expanded_size(pattern)
    if size > MAX_EXPANDED_SIZE:
        return None, (
            f"regular expression is too large: its repetitions expand to about {size} "
            f"items, more than {MAX_EXPANDED_SIZE} (PCRE refuses a compiled pattern over "
            "64K code units)"
        )
    try:
        return _engine.compile(pattern, _engine.VERSION0), None
    except (_engine.error, OverflowError, RecursionError, ValueError, MemoryError) as exc:
        return None, str(exc)


def compile_pcre(pattern: str) -> Any:
    """The compiled pattern (cached).

    Raises:
        PcreError: when it does not compile, is longer than :data:`MAX_PATTERN_LENGTH` or
            expands to more than :data:`MAX_EXPANDED_SIZE` items (:func:`expanded_size`).
    """
    compiled, problem = _compiled(pattern)
    if problem is not None:
        raise PcreError(problem)
    return compiled


def pcre_problem(pattern: str) -> str | None:
    """Why PCRE would not compile ``pattern``, or ``None`` when it does."""
    try:
        compile_pcre(pattern)
    except PcreError as exc:
        return str(exc)
    return None


def search(pattern: str, value: str, *, time_limit: float = MATCH_TIME_LIMIT) -> bool:
    """``ngx.re.match(value, pattern)``: whether ``pattern`` matches anywhere in ``value``.

    Raises:
        PcreError: the pattern does not compile.
        PcreMatchLimit: the match took more than ``time_limit`` seconds (PCRE's
            backtracking limit).
    """
    compiled = compile_pcre(pattern)
    try:
        return compiled.search(value, timeout=time_limit) is not None
    except TimeoutError:
        raise PcreMatchLimit(
            f"pcre_exec() failed: -8 (backtracking limit; more than {time_limit:g}s of "
            f"matching on a {len(value)}-character value)"
        ) from None
