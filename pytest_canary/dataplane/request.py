"""The parts of an HTTP request a data plane routes on, and the routing outcome."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import TypeVar

T = TypeVar("T")


def weighted_pick(items: Sequence[T], weights: Sequence[int], rng: random.Random) -> T:
    """One item, chosen with probability weight / sum(weights) by a single integer draw
    (Envoy ``weighted_clusters`` and Gateway API backendRefs both split per request)."""
    cumulative = list(itertools.accumulate(weights))
    return items[bisect.bisect_right(cumulative, rng.randrange(cumulative[-1]))]


@dataclass(frozen=True)
class RoutedRequest:
    """What a router sees of one request.

    Attributes:
        host: the Host header without port, lowercased (``None`` when absent).
        path: the URL path (no query).
        headers: header names lowercased; the first value of each.
        source_labels: labels of the calling pod for in-mesh requests (Istio ``sourceLabels``).
    """

    host: str | None
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    source_labels: Mapping[str, str] | None = None

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies of the ``Cookie`` header (unparseable cookies are ignored, as nginx does)."""
        raw = self.headers.get("cookie")
        if not raw:
            return {}
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return _lenient_cookies(raw)
        return {name: morsel.value for name, morsel in jar.items()}

    @classmethod
    def build(
        cls,
        host: str | None,
        path: str,
        headers: Mapping[str, str] | None = None,
        source_labels: Mapping[str, str] | None = None,
    ) -> RoutedRequest:
        """Normalise host (lowercase, port stripped) and header names (lowercase)."""
        if host:
            host = host.strip().lower()
            if host.startswith("["):  # IPv6 literal
                host = host.split("]", 1)[0] + "]"
            else:
                host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        lowered: dict[str, str] = {}
        for name, value in (headers or {}).items():
            lowered.setdefault(name.lower(), value)
        return cls(
            host=host or None,
            path=path.split("?", 1)[0] or "/",
            headers=lowered,
            source_labels=source_labels,
        )


def _lenient_cookies(raw: str) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in raw.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies.setdefault(name, value)
    return cookies


@dataclass(frozen=True)
class Destination:
    """A request goes to ``port`` of Service ``service`` (optionally only pods with ``labels``).

    ``log`` holds the lines the data plane writes to its error log while deciding (e.g.
    ingress-nginx's "error when matching canary-by-header-pattern").
    """

    service: str
    port: int | str = 80
    labels: Mapping[str, str] | None = None
    reason: str = ""
    log: tuple[str, ...] = ()

    def __str__(self) -> str:
        subset = (
            ""
            if not self.labels
            else "{" + ",".join(f"{k}={v}" for k, v in self.labels.items()) + "}"
        )
        return f"{self.service}:{self.port}{subset}"


@dataclass(frozen=True)
class Refusal:
    """No upstream for this request: the data plane answers ``status`` itself."""

    status: int
    reason: str
