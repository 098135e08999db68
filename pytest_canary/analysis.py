"""Canary analysis: is the canary as healthy as the stable version, on the same traffic?

What Argo Rollouts, Flagger and Kayenta decide from metrics (error rate, latency), decided here
from the requests the test sent, with the statistical standard of ``expect_split``: a
*sequential, anytime-valid* comparison whose wrong verdicts have probability ``<= alpha``
however often it looks. Pure functions and small state machines, no I/O.

:class:`HealthTest` compares two things, each with one confidence sequence (CS) per version:

* **Errors.** Each version's error indicators are i.i.d. Bernoulli(``p_v``), and each gets the
  beta-binomial mixture martingale of :mod:`pytest_canary.stats` (Robbins 1970; Howard,
  Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence
  sequences", Ann. Statist. 49(2)), ``M_v(p) = m_v / L_v(p)`` with the prior
  :func:`error_rate_prior`. Their product ``M_c(p_c) M_s(p_s)`` is a test martingale for the
  pair: the routing, which does not depend on the outcomes, decides which factor moves at each
  request, and each factor has conditional mean 1. By Ville's inequality the joint region
  ``{(p_c, p_s) : M_c(p_c) M_s(p_s) < 2/alpha}`` holds the true pair at every n with
  probability ``>= 1 - alpha/2``, and its projection on ``p_c - p_s`` is a confidence sequence
  for the *difference* of the two rates (:func:`difference_interval`). PASS when it lies at or
  below ``max_error_increase``, FAIL when it lies above: one convex one-dimensional
  minimisation along the line ``p_c - p_s = max_error_increase`` per look
  (:func:`difference_statistic`). Unlike two separate sequences joined by a union bound, the
  joint region spends its level where the data are uncertain: a clean stable version costs
  ``ln 2`` nats, not its own interval width, so a canary failing 5% of its requests against a
  clean stable is caught in a few hundred requests (benchmarks/README.md).
* **Latency.** Each version's ``quantile`` (e.g. p95) gets the quantile CS of Howard & Ramdas
  (2022), "Sequential estimation of quantiles with applications to A/B-testing and best-arm
  identification", Bernoulli 28(3), Theorem 1 construction: for the true quantile ``q``, the
  count of latencies ``<= q`` is a Bernoulli(``quantile``) process (at least that, for a
  distribution with atoms), so the beta-binomial mixture CS for a *known* share bounds the count
  at every n (:func:`pytest_canary.stats.acceptance_counts`: ``lo_n <= count <= hi_n``), which
  puts ``q`` between the order statistics ``X_(lo_n)`` and ``X_(hi_n + 1)``. Each side alone
  fails with probability ``<= alpha/4`` for any latency distribution. The ratio
  ``q_canary / q_stable`` then lies in ``[low_c / high_s, high_c / low_s]`` (a union bound over
  the two versions). PASS when its upper end is ``<= 1 + max_latency_increase``, FAIL when its
  lower end is above it.

Guarantee (continuous monitoring, any batch sizes; each version's requests i.i.d.): alpha is
split in two halves, one per aspect. A wrong verdict about errors needs the joint region to
miss the true pair (``<= alpha/2``); a wrong verdict about latency needs one side of one
version's quantile sequence to fail (canary upper and stable lower side for a false PASS,
the other two for a false FAIL: ``<= 2 alpha/4``). The verdict — FAIL as soon as one aspect
FAILs, PASS once both PASSed — is a false FAIL of a healthy canary with probability
``<= alpha`` (either aspect) and a false PASS of an unhealthy one with probability
``<= alpha/2`` (the unhealthy aspect must PASS). Checked by simulation in
``tests/test_analysis_simulation.py``.

What the harness feeds it (``Release.expect_healthy``): every answer that names its version
(``X-App-Version``, HTTP 5xx included) counts for that version, an HTTP 5xx as an error. A
failed request that names no version (refused, reset, timed out, a router's 502) cannot be
attributed: it may be the stable's as well as the canary's. It counts against the canary where
that is the cautious side and nowhere else: as a canary error taking the request timeout for
deciding PASS (so the canary is never called healthy on the benefit of the doubt), and not at
all for deciding FAIL (so a stable that times out does not fail a healthy canary). Each
direction keeps its bound: a false PASS needs the region of the pessimistic counts (every
unattributed failure the canary's) to miss its true pair, a false FAIL the region of the
attributed answers to miss theirs. When the unattributed failures alone keep the test from
passing, it ends INCONCLUSIVE at the budget and says how many there were and why they failed.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_canary.stats import (
    Decision,
    Interval,
    MixturePrior,
    acceptance_counts,
    cs_interval,
    routed_requests,
)

__all__ = [
    "ERROR_MARGIN",
    "LATENCY_MARGIN",
    "QUANTILE",
    "HealthTest",
    "Observations",
    "difference_interval",
    "difference_statistic",
    "error_rate_prior",
    "quantile_interval",
    "quantile_prior",
]

#: Default ``max_error_increase``: the canary may fail 1 point more often than the stable.
ERROR_MARGIN = 0.01
#: Default ``max_latency_increase``: the canary's quantile may be 20% above the stable's.
LATENCY_MARGIN = 0.20
#: Default latency quantile compared.
QUANTILE = 0.95
#: A version that answers none of the first ``routed_requests(MIN_SHARE, alpha)`` requests
#: gets less than this share of the traffic (with probability ``>= 1 - alpha``): the test
#: stops, INCONCLUSIVE, instead of spending the budget.
MIN_SHARE = 0.01
#: Weight of the point mass at 0 in :func:`error_rate_prior`.
ZERO_WEIGHT = 0.5
#: Concentration of the focused component of :func:`quantile_prior`.
QUANTILE_CONCENTRATION = 50.0
#: The budget advice looks for a decision up to this multiple of the requests so far.
_MAX_FACTOR = 1024


def _check_fraction(name: str, value: object, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r}: must be a number in ({low:g}, {high:g}) ({what})")
    number = float(value)
    if not (low < number < high) or math.isnan(number):
        raise ValueError(f"{name}={value!r}: must be in ({low:g}, {high:g}) ({what})")
    return number


def error_rate_prior(max_increase: float) -> MixturePrior:
    """The mixture prior of each version's error-rate CS.

    ``0.5 * point mass at 0 + 0.3 * Beta(1/2, 1/(2 m)) + 0.2 * Beta(1/2, 1/2)`` with ``m`` the
    margin. Healthy services mostly fail *never*: the point mass makes "no error in n requests"
    cost ``ln 2`` nats instead of the ``~1/2 ln(pi n)`` of a Beta component (3-4 nats at the
    n where decisions happen), so a clean canary passes in about half the requests of a
    Jeffreys prior alone. The component with mean ``~m`` covers small rates near the margin,
    the Jeffreys component every other rate. Measured in benchmarks/README.md.
    """
    margin = _check_fraction("max_error_increase", max_increase, 0.0, 1.0, "error-rate margin")
    return MixturePrior(
        ((0.3, 0.5, 0.5 / margin), (0.2, 0.5, 0.5)),
        ((ZERO_WEIGHT, 0.0),),
    )


def quantile_prior(quantile: float) -> MixturePrior:
    """The mixture prior of the quantile CS: ``0.8 Beta(c q, c (1 - q)) + 0.2 Beta(1/2, 1/2)``
    with ``c = QUANTILE_CONCENTRATION`` (50).

    The share of latencies below the true quantile is exactly ``q``, so the focused component
    is centred there. Unlike a split's band, the deviation a latency verdict needs is not fixed
    in advance: it shrinks like ``sqrt(ln(1/alpha) q (1 - q) / n)``, and a prior about that wide
    where decisions happen (a few thousand answers) is what a small ``c`` gives. Measured
    (benchmarks/README.md, HealthTest at alpha = 0.001): c = 50 needs ~20% fewer requests than
    c = 2000 for a healthy canary and ~25% fewer to fail one 1.5x slower; c = 20 to 100 are
    within a few %.
    """
    quantile = _check_fraction("quantile", quantile, 0.0, 1.0, "e.g. 0.95 for p95")
    c = QUANTILE_CONCENTRATION
    return MixturePrior(((0.8, c * quantile, c * (1.0 - quantile)), (0.2, 0.5, 0.5)))


def quantile_interval(
    ordered: Sequence[float], quantile: float, alpha: float, prior: MixturePrior
) -> tuple[float | None, float | None]:
    """``(low, high)`` of the ``1 - alpha`` quantile CS from latencies in ascending order.

    ``X_(lo)`` and ``X_(hi + 1)`` (1-indexed order statistics) with ``(lo, hi)`` the
    :func:`~pytest_canary.stats.acceptance_counts` of ``quantile`` at ``n = len(ordered)``;
    ``None`` where the sequence has no bound yet (``lo = 0`` or ``hi = n``). Each side alone
    fails with probability ``<= alpha`` over all n, for any latency distribution.
    """
    n = len(ordered)
    if n == 0:
        return None, None
    lo, hi = acceptance_counts(n, quantile, alpha, prior)
    return (ordered[lo - 1] if lo >= 1 else None, ordered[hi] if hi < n else None)


def _line_maximum(e_c: int, n_c: int, e_s: int, n_s: int, d: float) -> tuple[float, float]:
    """``(max ln L, p_c)``: the largest joint log-likelihood ``ln L_c(p_c) + ln L_s(p_s)`` over
    the segment ``p_c - p_s = d``, and where it is reached.

    ``-ln L`` is convex along the segment, so its derivative is increasing: the maximum is at
    an end where the derivative does not change sign inside, else at its root, found by Newton
    steps kept inside a shrinking bracket (bisection when a step would leave it).
    """
    f_c, f_s = n_c - e_c, n_s - e_s
    low, high = max(0.0, -d), min(1.0, 1.0 - d)

    def slope(y: float) -> float:
        # d/dy of -ln L at p_s = y, p_c = y + d; infinite at an end the data rule out.
        p = y + d
        g = 0.0
        if e_c:
            g -= e_c / p if p > 0.0 else math.inf
        if f_c:
            g += f_c / (1.0 - p) if p < 1.0 else math.inf
        if e_s:
            g -= e_s / y if y > 0.0 else math.inf
        if f_s:
            g += f_s / (1.0 - y) if y < 1.0 else math.inf
        return g

    if not slope(low) < 0.0:  # also NaN (inf - inf), where low == high
        y = low
    elif not slope(high) > 0.0:
        y = high
    else:
        a, b = low, high
        # Start where the rates agree with the data as a whole (the segment's MLE when both
        # versions have the same variance): a few Newton steps from there.
        pooled = (e_c + e_s - n_c * d) / (n_c + n_s)
        y = min(max(pooled, a + 0.25 * (b - a) * 1e-6), b - 0.25 * (b - a) * 1e-6)
        for _ in range(200):
            p = y + d
            g = 0.0
            h = 0.0
            if e_c:
                g -= e_c / p
                h += e_c / (p * p)
            if f_c:
                g += f_c / (1.0 - p)
                h += f_c / ((1.0 - p) * (1.0 - p))
            if e_s:
                g -= e_s / y
                h += e_s / (y * y)
            if f_s:
                g += f_s / (1.0 - y)
                h += f_s / ((1.0 - y) * (1.0 - y))
            if g < 0.0:
                a = y
            elif g > 0.0:
                b = y
            else:
                break
            step = y - g / h if h > 0.0 else 0.5 * (a + b)
            if not a < step < b:
                step = 0.5 * (a + b)
            if abs(step - y) <= 1e-13 * y or step in (a, b):
                y = step
                break
            y = step
    p = y + d
    total = 0.0
    for successes, failures, rate in ((e_c, f_c, p), (e_s, f_s, y)):
        if successes:
            total += successes * math.log(rate) if rate > 0.0 else -math.inf
        if failures:
            total += failures * math.log1p(-rate) if rate < 1.0 else -math.inf
    return total, p


def difference_statistic(
    canary: tuple[int, int], stable: tuple[int, int], difference: float, prior: MixturePrior
) -> float:
    """``min ln(M_c(p_c) M_s(p_s))`` over the pairs of rates with ``p_c - p_s = difference``.

    ``canary`` and ``stable`` are ``(errors, requests)``. The joint region excludes every pair
    with that difference once this reaches ``ln(1/alpha)``; the pairs on one side of the line
    are then excluded too when the observed difference lies on the other side (the region is
    convex and holds the observed rates). ``ln M_v(p) = ln m_v - ln L_v(p)``, so this is
    ``ln m_c + ln m_s`` minus the largest joint log-likelihood on the line
    (:func:`_line_maximum`).
    """
    (e_c, n_c), (e_s, n_s) = canary, stable
    likelihood, _ = _line_maximum(e_c, n_c, e_s, n_s, difference)
    return prior.log_marginal(e_c, n_c) + prior.log_marginal(e_s, n_s) - likelihood


def difference_interval(
    canary: tuple[int, int], stable: tuple[int, int], alpha: float, prior: MixturePrior
) -> Interval:
    """The ``1 - alpha`` confidence set for ``p_c - p_s`` at this look: the differences ``d``
    whose :func:`difference_statistic` is below ``ln(1/alpha)``.

    ``phi(d) = difference_statistic(d) - ln(1/alpha)`` is convex in ``d`` (a partial minimum of
    a jointly convex function), negative at the observed difference, and its derivative is
    the canary's ``d/dp_c (-ln L_c)`` at the maximising pair (envelope theorem). Newton steps
    from outside the set therefore stay outside and converge to each end: rounding can only
    widen the interval.
    """
    (e_c, n_c), (e_s, n_s) = canary, stable
    if not (n_c and n_s):
        return Interval(-1.0, 1.0)
    base = prior.log_marginal(e_c, n_c) + prior.log_marginal(e_s, n_s) + math.log(alpha)
    observed = e_c / n_c - e_s / n_s
    f_c, f_s = n_c - e_c, n_s - e_s

    def derivative_at(d: float, p: float) -> float:
        """phi'(d): moving d moves p_c at an inner maximum (or at p_s = 0 or 1), p_s where the
        segment's end pins p_c at 0 or 1."""
        if p <= 0.0 or p >= 1.0:
            q = p - d  # p_s, strictly inside (0, 1) here
            return (e_s / q if e_s else 0.0) - (f_s / (1.0 - q) if f_s else 0.0)
        return (-e_c / p if e_c else 0.0) + (f_c / (1.0 - p) if f_c else 0.0)

    ends = []
    for direction in (-1.0, 1.0):
        d = direction  # the far end of the range of differences
        likelihood, p = _line_maximum(e_c, n_c, e_s, n_s, d)
        if base - likelihood < 0.0:
            ends.append(d)
            continue
        if math.isinf(likelihood):
            # Start from a finite point outside: halve towards the observed difference.
            inside = observed
            for _ in range(60):
                middle = 0.5 * (inside + d)
                middle_likelihood, middle_p = _line_maximum(e_c, n_c, e_s, n_s, middle)
                if base - middle_likelihood < 0.0:
                    inside = middle
                    continue
                d = middle
                if not math.isinf(middle_likelihood):
                    likelihood, p = middle_likelihood, middle_p
                    break
            if math.isinf(likelihood):  # pragma: no cover - the observed point is inside
                ends.append(d)
                continue
        for _ in range(100):
            phi = base - likelihood
            derivative = derivative_at(d, p)
            if phi <= 0.0 or derivative == 0.0:
                break
            step = d - phi / derivative
            if (step - d) * direction >= 0.0 or abs(step - d) <= 1e-13:
                break  # no inward progress left: d is at the end to rounding
            new_likelihood, new_p = _line_maximum(e_c, n_c, e_s, n_s, step)
            if base - new_likelihood < 0.0:
                # Rounding put the step just inside: close the gap by bisection, outside.
                inside = step
                for _ in range(60):
                    middle = 0.5 * (inside + d)
                    if middle in (inside, d):
                        break
                    if base - _line_maximum(e_c, n_c, e_s, n_s, middle)[0] < 0.0:
                        inside = middle
                    else:
                        d = middle
                break
            d, likelihood, p = step, new_likelihood, new_p
        ends.append(d)
    return Interval(ends[0], ends[1])


@dataclass(frozen=True)
class Observations:
    """What one version answered in a batch.

    Attributes:
        requests: requests attributed to the version.
        errors: how many of them failed.
        latencies: seconds, one per request (any order).
    """

    requests: int
    errors: int
    latencies: Sequence[float] = ()

    def __post_init__(self) -> None:
        for name in ("requests", "errors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r}: must be an integer >= 0")
        if self.errors > self.requests:
            raise ValueError(f"errors={self.errors}: must be <= requests={self.requests}")
        if len(self.latencies) != self.requests:
            raise ValueError(
                f"latencies: {len(self.latencies)} given for {self.requests} requests "
                "(one per request)"
            )
        for latency in self.latencies:
            if not (isinstance(latency, (int, float)) and 0.0 <= latency < math.inf):
                raise ValueError(f"latency {latency!r}: must be a finite number of seconds >= 0")


@dataclass
class _Version:
    """Running totals of one version."""

    requests: int = 0
    errors: int = 0
    ordered: list[float] = field(default_factory=list)

    def add(self, batch: Observations) -> None:
        self.requests += batch.requests
        self.errors += batch.errors
        for latency in batch.latencies:
            bisect.insort(self.ordered, float(latency))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Aspect:
    """One comparison of a :class:`HealthTest` at its last look (or at its decision).

    Attributes:
        decision: PASS, FAIL or CONTINUE (final once PASS or FAIL).
        interval: the CS of the compared quantity (error-rate difference, latency ratio), or
            None before either end is bounded; the latency ratio's upper end is ``inf``
            until the canary's quantile has an upper bound (its lower end is 0 until it has a
            lower one).
        limit: the largest healthy value (``max_error_increase``, ``1 + max_latency_increase``).
    """

    decision: Decision
    interval: Interval | None
    limit: float


class HealthTest:
    """Sequential, anytime-valid comparison of a canary with the stable version.

    Feed it each batch's :class:`Observations` of both versions with :meth:`update`; it answers
    ``CONTINUE`` until both aspects (errors, latency) have PASSed or one has FAILed, or
    ``INCONCLUSIVE`` at ``max_requests`` (or when one version gets no traffic). See the module
    docstring for the method and the guarantee: a healthy canary FAILs with probability
    ``<= alpha``, an unhealthy one PASSes with probability ``<= alpha / 2``.

    Args:
        max_error_increase: largest healthy ``p_canary - p_stable`` (0.01: one point).
        max_latency_increase: largest healthy ``q_canary / q_stable - 1`` (0.2: 20%).
        quantile: the latency quantile compared (0.95: p95).
        alpha: the largest probability of a wrong verdict.
        max_requests: the budget (all requests of both versions).
        error_prior, latency_prior: replace :func:`error_rate_prior` and
            :func:`quantile_prior` (for experiments; any prior keeps the guarantee).

    Example:
        >>> test = HealthTest(max_error_increase=0.01, max_latency_increase=0.2, alpha=0.001)
        >>> batch = Observations(8, 0, [0.010] * 8)
        >>> test.update(canary=batch, stable=batch)
        <Decision.CONTINUE: 'CONTINUE'>
    """

    def __init__(
        self,
        *,
        max_error_increase: float = ERROR_MARGIN,
        max_latency_increase: float = LATENCY_MARGIN,
        quantile: float = QUANTILE,
        alpha: float = 0.001,
        max_requests: int | None = None,
        error_prior: MixturePrior | None = None,
        latency_prior: MixturePrior | None = None,
    ) -> None:
        self.max_error_increase = _check_fraction(
            "max_error_increase",
            max_error_increase,
            0.0,
            1.0,
            "largest healthy error-rate increase of the canary, e.g. 0.01 for one point",
        )
        self.max_latency_increase = _check_fraction(
            "max_latency_increase",
            max_latency_increase,
            0.0,
            math.inf,
            "largest healthy relative latency increase of the canary, e.g. 0.2 for 20%",
        )
        self.quantile = _check_fraction("quantile", quantile, 0.0, 1.0, "e.g. 0.95 for p95")
        self.alpha = _check_fraction(
            "alpha", alpha, 0.0, 0.5, "the largest allowed probability of a wrong verdict"
        )
        if max_requests is not None and (
            isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1
        ):
            raise ValueError(f"max_requests={max_requests!r}: must be an integer >= 1")
        self.max_requests = max_requests
        #: Level of the joint error-rate region (half of alpha).
        self.error_alpha = self.alpha / 2.0
        #: Level of each version's latency-quantile sequence (a quarter of alpha).
        self.latency_alpha = self.alpha / 4.0
        # Any prior keeps the guarantee; these only decide where the sequences are tight.
        self.error_prior = (
            error_rate_prior(self.max_error_increase) if error_prior is None else error_prior
        )
        self.latency_prior = (
            quantile_prior(self.quantile) if latency_prior is None else latency_prior
        )
        if not isinstance(self.error_prior, MixturePrior) or not isinstance(
            self.latency_prior, MixturePrior
        ):
            raise ValueError("error_prior and latency_prior: must be MixturePrior instances")
        #: Answers that named the canary, and the stable.
        self.canary = _Version()
        self.stable = _Version()
        #: The canary's answers plus every failed request that named no version: what the
        #: canary may have done at worst (deciding PASS only).
        self.worst = _Version()
        #: Failed requests that named no version, per reason when the caller says.
        self.unattributed = 0
        self.unattributed_reasons: Counter[str] = Counter()
        self.n = 0
        self.decision = Decision.CONTINUE
        self.decided_at: int | None = None
        self.errors = Aspect(Decision.CONTINUE, None, self.max_error_increase)
        self.latency = Aspect(Decision.CONTINUE, None, 1.0 + self.max_latency_increase)
        #: (n, {"error increase": CS, "latency ratio": CS}) after every look.
        self.history: list[tuple[int, dict[str, Interval]]] = []
        self._reason = "not enough responses yet"
        self._advice: str | None = None
        self._one_sided_after = routed_requests(MIN_SHARE, self.alpha)

    def __repr__(self) -> str:
        return (
            f"<HealthTest {self.decision.value} n={self.n} errors={self.errors.decision.value} "
            f"latency={self.latency.decision.value} reason={self.reason!r}>"
        )

    # -- the sequences -------------------------------------------------------------------

    def error_interval(self, version: str) -> Interval:
        """A ``1 - alpha/2`` CS of the error rate of ``"canary"`` or ``"stable"`` alone (for
        the report; the decision uses the joint region of both, :func:`difference_interval`).
        The canary's upper end counts the unattributed failures as its own."""
        counts = self._version(version)
        interval = cs_interval(counts.errors, counts.requests, self.error_alpha, self.error_prior)
        if version != "canary" or not self.unattributed:
            return interval
        worst = self.worst
        high = cs_interval(worst.errors, worst.requests, self.error_alpha, self.error_prior).high
        return Interval(min(interval.low, high), high)

    def latency_interval(self, version: str) -> tuple[float | None, float | None]:
        """The CS of the latency quantile (seconds) of ``"canary"`` or ``"stable"``; the
        canary's upper end counts the unattributed failures (at their latency) as its own."""
        low, high = self._quantile_bounds(self._version(version).ordered)
        if version == "canary" and self.unattributed:
            high = self._quantile_bounds(self.worst.ordered)[1]
        return low, high

    def _quantile_bounds(self, ordered: Sequence[float]) -> tuple[float | None, float | None]:
        return quantile_interval(ordered, self.quantile, self.latency_alpha, self.latency_prior)

    def observed_quantile(self, version: str) -> float | None:
        """The empirical latency quantile (seconds) of a version (None before any answer)."""
        ordered = self._version(version).ordered
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, max(0, math.ceil(self.quantile * len(ordered)) - 1))]

    def _version(self, version: str) -> _Version:
        if version == "canary":
            return self.canary
        if version == "stable":
            return self.stable
        raise ValueError(f"version={version!r}: must be 'canary' or 'stable'")

    # -- looking -------------------------------------------------------------------------

    def update(
        self,
        *,
        canary: Observations,
        stable: Observations,
        unattributed: Sequence[float] = (),
        reasons: Mapping[str, int] | None = None,
    ) -> Decision:
        """Add both versions' observations of a new batch and return the decision.

        Args:
            canary, stable: the answers that named each version.
            unattributed: one latency (seconds) per failed request that named no version;
                they count against the canary for PASS only (module docstring).
            reasons: why those requests failed, for the report (e.g. ``{"timeout": 3}``).

        Once decided, the decision is final; later batches are still counted.
        """
        if not isinstance(canary, Observations) or not isinstance(stable, Observations):
            raise ValueError("canary and stable: must be Observations(requests, errors, latencies)")
        failed = Observations(len(unattributed), len(unattributed), unattributed)
        self.canary.add(canary)
        self.stable.add(stable)
        self.worst.add(canary)
        self.worst.add(failed)
        self.unattributed += failed.requests
        self.unattributed_reasons.update(reasons or {})
        self.n += canary.requests + stable.requests + failed.requests
        errors = self._errors_now()
        latency = self._latency_now()
        self.history.append(
            (
                self.n,
                {
                    name: aspect.interval
                    for name, aspect in (("error increase", errors), ("latency ratio", latency))
                    if aspect.interval is not None
                },
            )
        )
        if self.decision is Decision.CONTINUE:
            if self.errors.decision is Decision.CONTINUE:
                self.errors = errors
            if self.latency.decision is Decision.CONTINUE:
                self.latency = latency
            self._decide()
        return self.decision

    def _errors_now(self) -> Aspect:
        limit = self.max_error_increase
        c, s, w = self.canary, self.stable, self.worst
        if not (w.requests and s.requests):
            return Aspect(Decision.CONTINUE, None, limit)
        stable = (s.errors, s.requests)
        worst = difference_interval(
            (w.errors, w.requests), stable, self.error_alpha, self.error_prior
        )
        if not self.unattributed:
            low = worst.low
        elif c.requests:
            low = difference_interval(
                (c.errors, c.requests), stable, self.error_alpha, self.error_prior
            ).low
        else:
            low = -1.0
        interval = Interval(min(low, worst.high), worst.high)
        decision = self._error_decision((c.errors, c.requests), (w.errors, w.requests), stable)
        return Aspect(decision, interval, limit)

    def _error_decision(
        self, canary: tuple[int, int], worst: tuple[int, int], stable: tuple[int, int]
    ) -> Decision:
        """FAIL when the joint region of the attributed answers (``canary``) excludes every
        pair of rates whose difference is at most the margin; PASS when the region of the
        pessimistic counts (``worst``: unattributed failures as canary errors) excludes every
        pair whose difference is at least the margin. ``(errors, requests)`` each."""
        if self._excludes_margin(canary, stable, above=True):
            return Decision.FAIL
        if self._excludes_margin(worst, stable, above=False):
            return Decision.PASS
        return Decision.CONTINUE

    def _excludes_margin(
        self, canary: tuple[int, int], stable: tuple[int, int], *, above: bool
    ) -> bool:
        """Whether the joint region excludes the line at the margin with the observed
        difference above it (``above``) or below it."""
        if not (canary[1] and stable[1]):
            return False
        limit = self.max_error_increase
        observed = canary[0] / canary[1] - stable[0] / stable[1]
        if (observed > limit) is not above or observed == limit:
            return False
        statistic = difference_statistic(canary, stable, limit, self.error_prior)
        return statistic >= -math.log(self.error_alpha)

    def _latency_now(self) -> Aspect:
        limit = 1.0 + self.max_latency_increase
        # The canary's lower bound from its answers (FAIL), its upper bound with the
        # unattributed failures as its own (PASS).
        canary_low, canary_high = self.latency_interval("canary")
        stable_low, stable_high = self.latency_interval("stable")
        decision = _latency_decision(canary_low, canary_high, stable_low, stable_high, limit)
        # The ratio's bounds from whatever the two sequences bound so far: a missing side is
        # 0 below (latencies are not negative) and unbounded above (inf), so a FAIL decided
        # before the canary has an upper bound still shows the lower end that decided it.
        low = (
            canary_low / stable_high
            if canary_low is not None and stable_high is not None and stable_high > 0.0
            else 0.0
        )
        high = (
            canary_high / stable_low
            if canary_high is not None and stable_low is not None and stable_low > 0.0
            else math.inf
        )
        interval = None if (low == 0.0 and high == math.inf) else Interval(low, high)
        return Aspect(decision, interval, limit)

    def _decide(self) -> None:
        failed = [
            name
            for name, aspect in (("errors", self.errors), ("latency", self.latency))
            if aspect.decision is Decision.FAIL
        ]
        if failed:
            self._finish(Decision.FAIL, "; ".join(self._describe(name) for name in failed))
            return
        if self.errors.decision is Decision.PASS and self.latency.decision is Decision.PASS:
            self._finish(
                Decision.PASS,
                f"{self._describe('errors')}; {self._describe('latency')}",
            )
            return
        quiet = [
            name
            for name, counts in (("canary", self.canary), ("stable", self.stable))
            if counts.requests == 0
        ]
        if quiet and self.n >= self._one_sided_after:
            self._finish(
                Decision.INCONCLUSIVE,
                f"the {quiet[0]} answered none of {self.n} requests{self._unattributed_note()}: "
                f"it gets less than {MIN_SHARE:.0%} of this traffic (a weight of 0, or "
                "headers/cookies that pick one version?); the comparison needs both versions "
                "on the same traffic",
            )
            self._advice = ""
            return
        if self.max_requests is not None and self.n >= self.max_requests:
            undecided = f"undecided after {self.n} requests (max_requests={self.max_requests})"
            if self.unattributed and self._attributed_would_pass():
                # Only the failures nobody can attribute stand between the canary and a PASS:
                # more requests or wider margins are not what it needs.
                self._finish(
                    Decision.INCONCLUSIVE,
                    f"{undecided}: {self.unattributed} requests failed without naming a "
                    f"version ({self._reasons()}); they count against the canary for a PASS, "
                    "and on the answers that named their version alone it would PASS: find "
                    "why they fail (the router, the stable version, the request timeout?)",
                )
                self._advice = ""
                return
            self._finish(Decision.INCONCLUSIVE, undecided)

    def _reasons(self) -> str:
        reasons = self.unattributed_reasons
        if not reasons:
            return "reasons not recorded"
        return ", ".join(f"{reason} x{count}" for reason, count in reasons.most_common())

    def _unattributed_note(self) -> str:
        if not self.unattributed:
            return ""
        return f" ({self.unattributed} failed without naming a version: {self._reasons()})"

    def _attributed_would_pass(self) -> bool:
        """Whether every undecided aspect would PASS on the answers that named their version
        (the unattributed failures left out)."""
        c, s = self.canary, self.stable
        if self.errors.decision is Decision.CONTINUE and not self._excludes_margin(
            (c.errors, c.requests), (s.errors, s.requests), above=False
        ):
            return False
        if self.latency.decision is Decision.CONTINUE:
            canary_high = self._quantile_bounds(c.ordered)[1]
            stable_low = self.latency_interval("stable")[0]
            limit = self.latency.limit
            if canary_high is None or stable_low is None or canary_high > limit * stable_low:
                return False
        return True

    def _finish(self, decision: Decision, reason: str) -> None:
        self.decision = decision
        self.decided_at = self.n
        self._reason = reason

    def _describe(self, name: str) -> str:
        """One aspect in words, with its numbers."""
        if name == "errors":
            aspect = self.errors
            canary, stable = self.error_interval("canary"), self.error_interval("stable")
            versions = (
                f"canary {self.canary.error_rate:.4f} {canary}, "
                f"stable {self.stable.error_rate:.4f} {stable}"
            )
            if aspect.interval is None:
                return f"errors: undecided ({versions})"
            low, high = aspect.interval.low, aspect.interval.high
            if aspect.decision is Decision.PASS:
                return (
                    f"errors: the canary fails at most {high:+.4f} more often than the stable "
                    f"(max_error_increase={self.max_error_increase:g}; {versions}"
                    f"{self._counted('errors')})"
                )
            if aspect.decision is Decision.FAIL:
                return (
                    f"errors: the canary fails at least {low:+.4f} more often than the stable, "
                    f"more than max_error_increase={self.max_error_increase:g} ({versions}"
                    f"{self._counted('')})"
                )
            return (
                f"errors: increase in [{low:+.4f}, {high:+.4f}], undecided against "
                f"max_error_increase={self.max_error_increase:g} ({versions})"
            )
        aspect = self.latency
        label = f"p{self.quantile * 100:g}"
        versions = (
            f"canary {label} {_ms(self.observed_quantile('canary'))} "
            f"{_ms_interval(self.latency_interval('canary'))}, stable {label} "
            f"{_ms(self.observed_quantile('stable'))} "
            f"{_ms_interval(self.latency_interval('stable'))}"
        )
        limit = f"max_latency_increase={self.max_latency_increase:g}"
        if aspect.interval is None:
            return f"latency: undecided ({versions})"
        low, high = aspect.interval.low, aspect.interval.high
        if aspect.decision is Decision.PASS:
            return (
                f"latency: canary/stable {label} at most x{high:.3f} ({limit}; {versions}"
                f"{self._counted('latencies')})"
            )
        if aspect.decision is Decision.FAIL:
            return (
                f"latency: canary/stable {label} at least x{low:.3f}, more than "
                f"x{aspect.limit:g} ({limit}; {versions}{self._counted('')})"
            )
        return (
            f"latency: canary/stable {label} in [x{low:.3f}, {_ratio(high)}], undecided against "
            f"x{aspect.limit:g} ({limit}; {versions})"
        )

    def _counted(self, what: str) -> str:
        """How a decision treated the unattributed failures (nothing when there were none):
        a PASS counted them against the canary (``what``: as its errors or latencies), a
        FAIL (``what`` empty) stands on the answers that named their version."""
        if not self.unattributed:
            return ""
        if what == "errors":
            how = "as canary errors"
        elif what:
            how = "as canary latencies (the request timeout)"
        else:
            return (
                f"; from the answers that named their version, {self.unattributed} failed "
                "requests that named none left out"
            )
        return f"; the {self.unattributed} failed requests that named no version counted {how}"

    @property
    def reason(self) -> str:
        """Why the test decided, or what it waits for: one sentence for the report.

        For INCONCLUSIVE at the budget it says what would decide (:meth:`advice`).
        """
        if self.decision is Decision.INCONCLUSIVE:
            if self._advice is None:
                self._advice = self.advice()
            return self._reason + (f"; {self._advice}" if self._advice else "")
        if self.decision is Decision.CONTINUE and self.n:
            return "; ".join(
                self._describe(name)
                for name, aspect in (("errors", self.errors), ("latency", self.latency))
                if aspect.decision is Decision.CONTINUE
            )
        return self._reason

    def advice(self) -> str:
        """What would decide the undecided aspects, in one sentence: the requests a decision
        needs if the observed rates and latencies stay as they are (and which way each aspect
        would go), and the margins that would PASS with these requests.

        The margins are offered as a PASS only when every undecided aspect has one: a latency
        ratio without an upper end (too few answers for an upper bound of a quantile) cannot
        PASS at any margin, and then the advice says how many answers that bound needs instead.
        """
        undecided = self._undecided()
        parts = [self._describe(name) for name in undecided]
        factor = self._needed_factor()
        if factor is None:
            parts.append(
                f"not even {self.n * _MAX_FACTOR} requests would decide at the observed rates "
                "(they sit on a margin)"
            )
        else:
            outcomes = {name: self._decides_at(factor, name) for name in undecided}
            if all(outcome is Decision.PASS for outcome in outcomes.values()):
                parts.append(f"about {self.n * factor} requests would PASS at the observed rates")
            else:
                ways = ", ".join(f"{name} {outcome.value}" for name, outcome in outcomes.items())
                parts.append(
                    f"about {self.n * factor} requests would decide at the observed rates ({ways})"
                )
        margins = []
        if "errors" in undecided and self.errors.interval is not None:
            margins.append(f"max_error_increase>={_round_up(self.errors.interval.high, 3):g}")
        latency = self.latency.interval
        if "latency" in undecided and latency is not None and latency.high < math.inf:
            margins.append(f"max_latency_increase>={_round_up(latency.high - 1.0, 2):g}")
        if margins and len(margins) == len(undecided):
            parts.append(f"or {' and '.join(margins)} would PASS with these requests")
        elif "latency" in undecided and (latency is None or latency.high == math.inf):
            parts.append(self._latency_needs())
        return "; ".join(parts)

    def _latency_needs(self) -> str:
        """Why the latency ratio has no upper end yet, so that no margin can PASS it: the
        answers a version needs for the bound that is missing, and the requests that means at
        the observed share of that version."""
        label = f"p{self.quantile * 100:g}"
        missing = []
        canary_high = self.latency_interval("canary")[1]
        stable_low = self.latency_interval("stable")[0]
        attributed = self.canary.requests + self.stable.requests
        for version, bound, have, answered in (
            ("canary", "upper", canary_high, self.worst.requests),
            ("stable", "lower", stable_low, self.stable.requests),
        ):
            if have is not None:
                continue
            needed = self._answers_for_bound(upper=bound == "upper")
            share = self._version(version).requests / attributed if attributed else 0.0
            at_share = (
                f"about {math.ceil(needed / share)} requests at the observed {version} share "
                f"of {share:.1%}"
                if share > 0.0
                else f"the {version} has answered none of these requests"
            )
            missing.append(
                f"an {bound} bound of the {version}'s {label} needs {needed} answers of that "
                f"version at alpha/4={self.latency_alpha:g} (it has {answered}; {at_share})"
            )
        if not missing:  # pragma: no cover - the ratio is bounded once both ends are
            return "the latency check cannot PASS with these requests"
        return "no margin makes the latency check PASS yet: " + " and ".join(missing)

    def _answers_for_bound(self, *, upper: bool) -> int:
        """The fewest answers with which a version's quantile sequence has an upper
        (``upper``) or lower bound: the first n whose accepted counts exclude n (all answers
        at or below the quantile) or 0. Monotone in n, so found by doubling and bisection."""

        def bounded(n: int) -> bool:
            low, high = acceptance_counts(n, self.quantile, self.latency_alpha, self.latency_prior)
            return high < n if upper else low >= 1

        high = 1
        while not bounded(high):
            high *= 2
        low = high // 2
        while high - low > 1:
            middle = (low + high) // 2
            if bounded(middle):
                high = middle
            else:
                low = middle
        return high

    def needed_requests(self) -> int | None:
        """Estimated total requests for both undecided aspects to decide if the observed
        error rates and latency distributions stayed as they are (None: not within 1000x)."""
        factor = self._needed_factor()
        return None if factor is None else self.n * factor

    def _needed_factor(self) -> int | None:
        """The multiple of the requests so far at which every undecided aspect decides (to
        within 2%), or None if not within :data:`_MAX_FACTOR` times."""
        for factor in (1 << k for k in range(1, _MAX_FACTOR.bit_length())):
            if all(
                self._decides_at(factor, name) is not Decision.CONTINUE
                for name in self._undecided()
            ):
                low = factor // 2
                high = factor
                while high - low > max(1, high // 50):
                    middle = (low + high) // 2
                    if all(
                        self._decides_at(middle, name) is not Decision.CONTINUE
                        for name in self._undecided()
                    ):
                        high = middle
                    else:
                        low = middle
                return high
        return None

    def _undecided(self) -> list[str]:
        return [
            name
            for name, aspect in (("errors", self.errors), ("latency", self.latency))
            if aspect.decision is Decision.CONTINUE
        ]

    def _decides_at(self, factor: int, name: str) -> Decision:
        """What ``name`` decides with ``factor`` times the requests at the same rates."""
        if name == "errors":
            c, s, w = self.canary, self.stable, self.worst
            return self._error_decision(
                (c.errors * factor, c.requests * factor),
                (w.errors * factor, w.requests * factor),
                (s.errors * factor, s.requests * factor),
            )

        def scaled(ordered: list[float]) -> tuple[float | None, float | None]:
            n = len(ordered) * factor
            if n == 0:
                return None, None
            lo, hi = acceptance_counts(n, self.quantile, self.latency_alpha, self.latency_prior)
            # The k-th of n*factor answers at the same distribution: the ceil(k/factor)-th now.
            low = ordered[math.ceil(lo / factor) - 1] if lo >= 1 else None
            high = ordered[math.ceil((hi + 1) / factor) - 1] if hi < n else None
            return low, high

        canary_low = scaled(self.canary.ordered)[0]
        canary_high = scaled(self.worst.ordered)[1]
        stable_low, stable_high = scaled(self.stable.ordered)
        return _latency_decision(
            canary_low, canary_high, stable_low, stable_high, 1.0 + self.max_latency_increase
        )

    def next_batch_size(self, concurrency: int) -> int:
        """One round of ``concurrency`` requests (0 once ``max_requests`` is reached)."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency={concurrency!r}: must be an integer >= 1")
        if self.max_requests is None:
            return concurrency
        return max(0, min(concurrency, self.max_requests - self.n))


def _latency_decision(
    canary_low: float | None,
    canary_high: float | None,
    stable_low: float | None,
    stable_high: float | None,
    limit: float,
) -> Decision:
    """FAIL when the canary's quantile is shown above ``limit`` times the stable's, PASS when
    shown at most that (FAIL first: a canary whose lower bound is already too slow)."""
    if canary_low is not None and stable_high is not None and canary_low > limit * stable_high:
        return Decision.FAIL
    if canary_high is not None and stable_low is not None and canary_high <= limit * stable_low:
        return Decision.PASS
    return Decision.CONTINUE


def _ratio(value: float) -> str:
    return "unbounded" if value == math.inf else f"x{value:.3f}"


def _round_up(value: float, digits: int) -> float:
    scale = float(10**digits)
    return math.ceil(value * scale - 1e-9) / scale


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.1f}ms"


def _ms_interval(bounds: tuple[float | None, float | None]) -> str:
    low, high = bounds
    return f"[{_ms(low) if low is not None else '-'}, {_ms(high) if high is not None else '-'}]"
