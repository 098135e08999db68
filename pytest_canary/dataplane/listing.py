"""Collections named in messages (findings, refusals, log lines), cut to a readable length.

A message that names "the Service's ports" or "the listeners" of a manifest must not grow
with the manifest: a Service with 2,000 ports would otherwise put 2,000 ports in every
finding about it. :func:`listed` writes the first few items and how many more there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

# How many items of a collection a message names before "+k more".
MAX_LISTED = 10


def listed(
    items: Iterable[object],
    *,
    separator: str = ", ",
    empty: str = "none",
    limit: int = MAX_LISTED,
) -> str:
    """The first ``limit`` items joined by ``separator``, then ``+k more`` for the rest;
    ``empty`` when there are none.

    Example:
        >>> listed(range(12))
        '0, 1, 2, 3, 4, 5, 6, 7, 8, 9, +2 more'
        >>> listed([])
        'none'
    """
    iterator = iter(items)
    shown = [str(item) for item in islice(iterator, limit)]
    if not shown:
        return empty
    rest = sum(1 for _ in iterator)
    if rest:
        shown.append(f"+{rest} more")
    return separator.join(shown)
