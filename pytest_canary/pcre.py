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
from typing import Any

import regex as _engine

# PCRE's MATCH_LIMIT (10,000,000 steps) takes tens of milliseconds on current CPUs; the same
# order of work is allowed here, with room for a loaded test machine.
MATCH_TIME_LIMIT = 0.1
# Longest pattern compiled at all (the annotation's value; nginx has no smaller limit, but a
# pattern is compiled once per worker: a bound keeps compilation itself cheap).
MAX_PATTERN_LENGTH = 4096


class PcreError(ValueError):
    """A pattern PCRE would not compile; the message says why."""


class PcreMatchLimit(RuntimeError):
    """A match that ran into the backtracking limit (nginx: ``pcre_exec() failed: -8``)."""


@functools.lru_cache(maxsize=256)
def compile_pcre(pattern: str) -> Any:
    """The compiled pattern (cached).

    Raises:
        PcreError: when it does not compile or is longer than :data:`MAX_PATTERN_LENGTH`.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PcreError(f"longer than {MAX_PATTERN_LENGTH} characters ({len(pattern)})")
    try:
        return _engine.compile(pattern, _engine.VERSION0)
    except (_engine.error, OverflowError, RecursionError, ValueError) as exc:
        raise PcreError(str(exc)) from None


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
