"""Sets of host names, indexed to answer "does any of them overlap this name?" fast.

Two data planes compare lists of host names pairwise: Istio (Gateway server hosts against
VirtualService hosts, pkg/config/host/name.go ``Name.Matches``) and Gateway API (listener
hostnames against HTTPRoute hostnames, ``HTTPRouteSpec.hostnames`` intersection). Both rules
are "equal names, or a wildcard's suffix ends the other name", so a set can be indexed once
and asked about each name of the other list in time that does not grow with the set:

- exact names in a hash set;
- wildcard suffixes (the wildcard without its ``*``) in a hash set, with the distinct suffix
  lengths: a name is covered when its own suffix of one of those lengths is in the set;
- exact names and wildcard suffixes reversed and sorted: "some name of the set ends with
  this suffix" is "some reversed name starts with the reversed suffix", one bisection.

The pairwise definitions stay in the models (``istio.hosts_overlap``,
``gateway.hostnames_intersect``); tests check that the index agrees with them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class WildcardRule:
    """How one data plane reads a wildcard host.

    Attributes:
        prefix: what a wildcard starts with (``*`` for Istio, ``*.`` for Gateway API); the
            suffix it matches is the name without its leading ``*``.
        needs_more: whether a name must be longer than the suffix to match it (Gateway API:
            ``*.example.com`` does not match ``.example.com``... nor ``example.com``).
    """

    prefix: str
    needs_more: bool


# pkg/config/host/name.go Name.Matches: "*" and "*.suffix" on either side.
ISTIO_WILDCARDS = WildcardRule("*", needs_more=False)
# gateway-api httproute_types.go HTTPRouteSpec.hostnames: "*.example.com" needs one more label.
GATEWAY_API_WILDCARDS = WildcardRule("*.", needs_more=True)


def _has_prefix(ordered: list[str], prefix: str, *, longer: bool) -> bool:
    """Whether a string of ``ordered`` (sorted, no duplicates) starts with ``prefix``
    (and, with ``longer``, is longer than it)."""
    index = bisect.bisect_left(ordered, prefix)
    for candidate in ordered[index : index + 2]:  # ``prefix`` itself sorts first
        if candidate.startswith(prefix) and (not longer or len(candidate) > len(prefix)):
            return True
    return False


class HostIndex:
    """A set of host names that answers :meth:`overlaps` without comparing every name.

    Example:
        >>> index = HostIndex(["shop.example.com", "*.example.org"], ISTIO_WILDCARDS)
        >>> index.overlaps("*.com"), index.overlaps("a.example.org"), index.overlaps("x.net")
        (True, True, False)
    """

    def __init__(self, names: Iterable[str], rule: WildcardRule) -> None:
        self.rule = rule
        self._exact: set[str] = set()
        self._suffixes: set[str] = set()
        for name in names:
            if name.startswith(rule.prefix):
                self._suffixes.add(name[1:])
            else:
                self._exact.add(name)
        self._lengths = sorted({len(s) for s in self._suffixes})
        self._exact_reversed = sorted(name[::-1] for name in self._exact)
        self._suffixes_reversed = sorted(s[::-1] for s in self._suffixes)

    def __bool__(self) -> bool:
        return bool(self._exact or self._suffixes)

    def overlaps(self, name: str) -> bool:
        """Whether ``name`` overlaps a name of the set, as the pairwise rule of the data
        plane says (``istio.hosts_overlap`` / ``gateway.hostnames_intersect``)."""
        if name.startswith(self.rule.prefix):
            suffix = name[1:]
            reversed_suffix = suffix[::-1]
            return (
                # an exact name of the set that this wildcard covers
                _has_prefix(self._exact_reversed, reversed_suffix, longer=self.rule.needs_more)
                # a wildcard of the set whose suffix ends with this one (it is narrower)
                or _has_prefix(self._suffixes_reversed, reversed_suffix, longer=False)
                # a wildcard of the set whose suffix ends this one (it is broader)
                or self._covered(suffix, strictly=False)
            )
        return name in self._exact or self._covered(name, strictly=self.rule.needs_more)

    def overlaps_any(self, names: Iterable[str]) -> bool:
        """Whether one of ``names`` overlaps a name of the set."""
        return any(self.overlaps(name) for name in names)

    def _covered(self, name: str, *, strictly: bool) -> bool:
        """Whether a wildcard suffix of the set ends ``name`` (with ``strictly``: and is
        shorter than it)."""
        limit = len(name) - 1 if strictly else len(name)
        for length in self._lengths:
            if length > limit:
                break
            if name[len(name) - length :] in self._suffixes:
                return True
        return False
