"""PCRE as ingress-nginx runs canary-by-header-pattern: what is refused before any work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_canary import pcre


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every pattern handed to the regex engine's compiler (a fresh cache)."""
    pcre._compiled.cache_clear()
    seen: list[str] = []
    real = pcre._engine.compile

    def counting(pattern: str, *args: Any) -> Any:
        seen.append(pattern)
        return real(pattern, *args)

    monkeypatch.setattr(pcre._engine, "compile", counting)
    yield seen
    pcre._compiled.cache_clear()


@pytest.mark.parametrize(
    "pattern", ["((a{1000}){1000}){1000}", "(a{1000}){1000}", "((((a{30}){30}){30}){30}){30}"]
)
def test_nested_repetitions_are_too_large_and_never_compiled(
    pattern: str, compiles: list[str]
) -> None:
    """PCRE compiles a repeated group as copies and refuses a pattern over 64K code units
    ("regular expression is too large"); the regex package would expand them into
    gigabytes, so the size is estimated first and the compiler never sees the pattern."""
    problem = pcre.pcre_problem(pattern)
    assert problem is not None and "regular expression is too large" in problem
    assert compiles == []


def test_ordinary_and_single_large_repetitions_still_compile(compiles: list[str]) -> None:
    for pattern in ("^canary-(cd|sz)$", "a{65535}", "(a{300}){300}", r"\p{Greek}{3}", "[]a]{5}"):
        assert pcre.pcre_problem(pattern) is None, pattern
    assert pcre.search("(ab){2}$", "xabab")


def test_expanded_size_counts_nested_repetitions_as_copies() -> None:
    assert pcre.expanded_size("(ab){3}") == 9
    assert pcre.expanded_size("x{2,5}") == 5  # the upper bound is compiled
    assert pcre.expanded_size("a{99999999999}") == pcre._MAX_REPEAT + 1
    assert pcre.expanded_size(")" * 4000) == 4000  # unmatched: left to the compiler


def test_a_pattern_that_fails_is_not_compiled_again_per_request(compiles: list[str]) -> None:
    """The router asks once per request: a failing pattern fails from the cache."""
    for _ in range(3):
        with pytest.raises(pcre.PcreError):
            pcre.search("cd(", "cd")
    assert compiles == ["cd("]
