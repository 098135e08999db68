"""RE2, the regex engine of Envoy's ``safe_regex`` (Istio, Gateway API on Istio): the real
engine (``google-re2``), for validation and for matching.

Upstream facts this module reproduces:

- Envoy matches ``safe_regex`` with Google RE2, whose matching time is linear in the input
  (envoy ``api/envoy/type/matcher/v3/regex.proto`` ``GoogleRE2``: "designed to complete
  execution in linear time as well as limit the amount of memory used"), and a route's regex
  must match the **whole** value (``RegexMatcher``; ``source/common/common/regex.cc``
  ``CompiledGoogleReMatcher::match`` uses ``RE2::FullMatch``).
- Envoy refuses a regex whose RE2 program is larger than the runtime value
  ``re2.max_program_size.error_level``; Istio sets it to 32768 in every proxy's bootstrap
  (istio/istio ``pkg/bootstrap/config.go``).
- RE2's own syntax limits apply: no lookaround, backreferences or possessive quantifiers, and
  a repetition count above 1000 is refused (re2 ``re2/parse.cc`` ``kMaxRepeat``).

Example:
    >>> re2_problem(r"\\p{Greek}+") is None
    True
    >>> re2_problem("a{1001}")
    'RE2 refuses it: invalid repetition size: {1001}'
    >>> fullmatch("v[0-9]+", "v2")
    True
"""

from __future__ import annotations

import functools
from typing import Any

import re2 as _engine

# istio/istio pkg/bootstrap/config.go: "re2.max_program_size.error_level": "32768".
MAX_PROGRAM_SIZE = 32768
# Longest pattern compiled at all; istiod refuses more than 1024 characters
# (pkg/config/validation validateStringRegexp), Gateway API header values stop at 4096 (CRD).
MAX_PATTERN_LENGTH = 4096


class Re2Error(ValueError):
    """A pattern RE2 (as Envoy runs it) refuses; the message says why."""


def _options() -> Any:
    options = _engine.Options()
    options.log_errors = False  # the error is reported to the user, not to stderr
    return options


@functools.lru_cache(maxsize=256)
def compile_re2(pattern: str) -> Any:
    """The compiled RE2 program of ``pattern`` (cached).

    Raises:
        Re2Error: when RE2 refuses the pattern, the pattern is longer than
            :data:`MAX_PATTERN_LENGTH`, or its program exceeds :data:`MAX_PROGRAM_SIZE`.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise Re2Error(f"longer than {MAX_PATTERN_LENGTH} characters ({len(pattern)})")
    try:
        compiled = _engine.compile(pattern, _options())
    except UnicodeEncodeError:
        raise Re2Error("not valid UTF-8 text (it holds a lone surrogate)") from None
    except _engine.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", errors="replace")
        raise Re2Error(f"RE2 refuses it: {reason}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise Re2Error(
            f"its RE2 program has size {compiled.programsize}, above Envoy's "
            f"re2.max_program_size.error_level {MAX_PROGRAM_SIZE} as Istio sets it"
        )
    return compiled


def re2_problem(pattern: str) -> str | None:
    """Why Envoy's RE2 would refuse ``pattern``, or ``None`` when it compiles."""
    try:
        compile_re2(pattern)
    except Re2Error as exc:
        return str(exc)
    return None


def fullmatch(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Whether ``pattern`` matches the whole of ``value`` (Envoy ``safe_regex``), in time
    linear in ``len(value)``.

    Raises:
        Re2Error: for a pattern RE2 refuses (check with :func:`re2_problem` first).
    """
    if ignore_case:
        pattern = f"(?i:{pattern})"
    # Header bytes that are not UTF-8 arrive as surrogate escapes: match the original bytes,
    # as Envoy does.
    try:
        text = value.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        text = value.encode("utf-8", errors="surrogatepass")
    return compile_re2(pattern).fullmatch(text) is not None
