"""What RE2 cannot do: Envoy's ``safe_regex`` (Istio) and Gateway API implementations match
with RE2, which has no lookaround, backreferences, atomic groups or possessive quantifiers.
Python's ``re`` has them all, so a pattern that compiles here may be refused by istiod."""

from __future__ import annotations

import re

RE2_UNSUPPORTED = re.compile(r"\(\?(?:[=!]|<[=!]|>|P=)|\\[1-9]|[*+?}]\+")


def re2_problem(pattern: str) -> str | None:
    """Why RE2 would refuse ``pattern`` (the construct found), or ``None``."""
    found = RE2_UNSUPPORTED.search(pattern)
    if found is None:
        return None
    return (
        "RE2, which has no lookaround, backreferences, atomic groups or possessive "
        f"quantifiers (found {found.group(0)!r})"
    )
