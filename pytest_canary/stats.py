"""Statistics behind every canary verdict: pure functions and small state machines, no I/O.

The central object is :class:`SplitTest`, a *sequential, anytime-valid* test that the observed
traffic shares match the expected ones. It is built on a confidence sequence (CS) for a
Bernoulli share obtained from the **beta-binomial mixture martingale** (Robbins 1970, "Statistical
methods related to the law of the iterated logarithm", Ann. Math. Statist. 41(5); Howard,
Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence
sequences", Ann. Statist. 49(2)).

The method, in four lines. After ``n`` responses of which ``s`` came from a version, and a prior
``pi`` on the share, let ``m_n = integral of theta^s (1 - theta)^(n - s) pi(d theta)`` (the
marginal likelihood) and ``L_n(p) = p^s (1 - p)^(n - s)``. For every fixed ``p``,
``M_n(p) = m_n / L_n(p)`` is a non-negative martingale with ``M_0 = 1`` when ``p`` is the true
share, so by Ville's inequality ``P(exists n: M_n(p_true) >= 1/alpha) <= alpha``. Hence
``C_n = {p : M_n(p) < 1/alpha}`` holds the true share at *every* n simultaneously with
probability ``>= 1 - alpha``: we may look after every batch, of any size, and stop whenever we
like. ``C_n`` is an interval because ``log M_n(p)`` is convex in ``p``; its ends are found with a
safeguarded Newton iteration on the log-odds scale that approaches each end from outside, so
rounding can only widen the interval. We report the running intersection of ``C_1 .. C_n``
(still a valid CS).

Verdicts: PASS when the interval of every version lies inside its band (expected +- tolerance),
FAIL when the interval of any version lies entirely outside its band (or a version nobody
expected answers), INCONCLUSIVE when the request budget runs out first. If the true share is in
the band, FAIL needs the CS to miss it; if it is outside, PASS needs the CS to miss it: each wrong
verdict has probability ``<= alpha``, under continuous monitoring and any batch sizes. The test
looks after every round of ``concurrency`` requests, and each look only asks whether the band
edges are excluded, i.e. compares the count with the :func:`acceptance_counts` of the edges
(that is also how the simulations evaluate thousands of runs at once). A right share that sits
at or near a band edge can end INCONCLUSIVE: no number of requests proves a share on the edge
inside the band; the reason then names the budget or tolerance that would decide.

The prior (see :meth:`MixturePrior.for_band`) is a two-component Beta mixture: a component
centred on the expected share with concentration ``c = n*`` (the number of requests at which a
PASS is expected when the share is right), which makes the CS nearly as tight as a likelihood
ratio against the expected share where decisions happen, plus a small Jeffreys component
``Beta(1/2, 1/2)`` that keeps a grossly wrong share detectable in a few dozen requests.

The canary-against-stable comparison (``expect_healthy``) builds on the same martingales in
:mod:`pytest_canary.analysis`.

Also here: :func:`routed_requests` / :class:`RoutedTest` for "every response from one version",
:func:`plan_requests` for budgeting, the fixed-sample :func:`assert_split_counts`
(Clopper-Pearson), :func:`error_rate_exceeded`, and pure-Python :func:`normal_quantile`
(Wichura's AS241) and :func:`beta_quantile`.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ConfidenceSequence",
    "Decision",
    "FixedVerdict",
    "Interval",
    "MixturePrior",
    "Plan",
    "RoutedTest",
    "SequentialTest",
    "SplitTest",
    "acceptance_counts",
    "assert_split_counts",
    "beta_cdf",
    "beta_quantile",
    "clopper_pearson",
    "cs_interval",
    "error_rate_exceeded",
    "fixed_requests",
    "normal_cdf",
    "normal_quantile",
    "plan_requests",
    "routed_requests",
    "target_requests",
]

#: Weight of the broad Jeffreys component of the prior (see :meth:`MixturePrior.for_band`).
BROAD_WEIGHT = 0.2
#: First batch size suggested by :meth:`RoutedTest.next_batch_size`, before rounding up to a
#: multiple of the concurrency: small, so that the first leak stops the test early.
FIRST_BATCH = 16
#: Each later routed batch is this fraction of the requests so far (n grows ~1.25x a batch).
BATCH_GROWTH = 0.25
#: :meth:`SplitTest.needed_requests` answers this when no number of requests would decide
#: (an observed share exactly on a band edge).
NEEDED_REQUESTS_CAP = 1_000_000_000

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------------------------
# Small value types
# --------------------------------------------------------------------------------------------


class Decision(enum.Enum):
    """The state of a sequential test; every state but CONTINUE is final."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    CONTINUE = "CONTINUE"


class SequentialTest(Protocol):
    """What drives a sequential test's rounds of traffic: its state, and how many requests
    the next round sends (:class:`SplitTest`, ``analysis.HealthTest``)."""

    @property
    def decision(self) -> Decision: ...

    def next_batch_size(self, concurrency: int) -> int: ...


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` of shares (or any reals).

    Example:
        >>> band = Interval(0.15, 0.25)
        >>> 0.2 in band, str(band), round(band.width, 3)
        (True, '[0.150, 0.250]', 0.1)
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if math.isnan(self.low) or math.isnan(self.high) or self.low > self.high:
            raise ValueError(
                f"Interval({self.low!r}, {self.high!r}): low and high must be numbers "
                "with low <= high"
            )

    def __contains__(self, x: object) -> bool:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        return self.low <= x <= self.high

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def within(self, other: Interval) -> bool:
        """True when this interval lies inside ``other`` (edges included)."""
        return other.low <= self.low and self.high <= other.high

    def disjoint(self, other: Interval) -> bool:
        """True when the two intervals have no point in common."""
        return self.high < other.low or self.low > other.high

    def __str__(self) -> str:
        return f"[{self.low:.3f}, {self.high:.3f}]"


# --------------------------------------------------------------------------------------------
# Argument checks (stats is called by the harness and by users' scripts: fail loudly and clearly)
# --------------------------------------------------------------------------------------------


def _check_probability(name: str, value: object, low: float, high: float, what: str) -> float:
    """Return ``value`` as a float in the open interval (low, high), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r}: must be a number in ({low:g}, {high:g}) ({what})")
    number = float(value)
    if not (low < number < high):
        raise ValueError(f"{name}={value!r}: must be in ({low:g}, {high:g}) ({what})")
    return number


def _check_alpha(alpha: object) -> float:
    return _check_probability(
        "alpha", alpha, 0.0, 0.5, "the largest allowed probability of a wrong verdict, e.g. 0.001"
    )


def _check_tolerance(tolerance: object) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise ValueError(
            f"tolerance={tolerance!r}: must be a number in (0, 0.5] "
            "(accepted distance from the expected share, e.g. 0.05)"
        )
    value = float(tolerance)
    if not (0.0 < value <= 0.5):
        raise ValueError(
            f"tolerance={tolerance!r}: must be in (0, 0.5] "
            "(accepted distance from the expected share, e.g. 0.05)"
        )
    return value


def _check_share(name: str, share: object) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)):
        raise ValueError(f"{name}={share!r}: must be a share in [0, 1], e.g. 0.2 for 20%")
    value = float(share)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name}={share!r}: must be a share in [0, 1], e.g. 0.2 for 20%")
    return value


def _check_count(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    return value


# --------------------------------------------------------------------------------------------
# Special functions, pure Python
# --------------------------------------------------------------------------------------------

# Wichura, M. J. (1988). Algorithm AS 241: The percentage points of the normal distribution.
# Applied Statistics 37(3), 477-484. PPND16, accurate to about 1 part in 10**16.
_AS241_A = (
    3.3871328727963666080e0,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
)
_AS241_B = (
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
)
_AS241_C = (
    1.42343711074968357734e0,
    4.63033784615654529590e0,
    5.76949722146069140550e0,
    3.64784832476320460504e0,
    1.27045825245236838258e0,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
)
_AS241_D = (
    1.0,
    2.05319162663775882187e0,
    1.67638483018380384940e0,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
)
_AS241_E = (
    6.65790464350110377720e0,
    5.46378491116411436990e0,
    1.78482653991729133580e0,
    2.96560571828504891230e-1,
    2.65321895265761230930e-2,
    1.24266094738807843860e-3,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
)
_AS241_F = (
    1.0,
    5.99832206555887937690e-1,
    1.36929880922735805310e-1,
    1.48753612908506148525e-2,
    7.86869131145613259100e-4,
    1.84631831751005468180e-5,
    1.42151175831644588870e-7,
    2.04426310338993978564e-15,
)


def _polynomial(coefficients: tuple[float, ...], x: float) -> float:
    """Horner evaluation of ``sum(c_i * x**i)``."""
    total = 0.0
    for coefficient in reversed(coefficients):
        total = total * x + coefficient
    return total


def normal_quantile(p: float) -> float:
    """The standard normal quantile ``z`` with ``P(Z <= z) = p`` (Wichura's AS241, PPND16).

    Accurate to about 1e-16 relative over (0, 1).

    Example:
        >>> round(normal_quantile(0.975), 6)
        1.959964
    """
    p = _check_probability("p", p, 0.0, 1.0, "a probability")
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _polynomial(_AS241_A, r) / _polynomial(_AS241_B, r)
    r = p if q < 0.0 else 1.0 - p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r -= 1.6
        z = _polynomial(_AS241_C, r) / _polynomial(_AS241_D, r)
    else:
        r -= 5.0
        z = _polynomial(_AS241_E, r) / _polynomial(_AS241_F, r)
    return -z if q < 0.0 else z


def normal_cdf(x: float) -> float:
    """``P(Z <= x)`` for a standard normal ``Z``."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 200_001):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta I_{x!r}({a!r}, {b!r}): continued fraction diverged")


def _stirling_correction(z: float) -> float:
    """``ln Gamma(z) - ((z - 1/2) ln z - z + ln(2 pi) / 2)``, accurate also for large z."""
    if z < 10.0:
        return math.lgamma(z) - ((z - 0.5) * math.log(z) - z + 0.5 * _LOG_2PI)
    inverse_square = 1.0 / (z * z)
    # 1/(12 z) - 1/(360 z^3) + 1/(1260 z^5) - 1/(1680 z^7); next term < 1e-12 for z >= 10.
    return (
        1.0 / 12.0
        - inverse_square * (1.0 / 360.0 - inverse_square * (1.0 / 1260.0 - inverse_square / 1680.0))
    ) / z


def _log_beta_front(x: float, a: float, b: float) -> float:
    """``ln(x^a (1 - x)^b / B(a, b))`` without the cancellation of huge lgamma terms.

    With Stirling's series, ``a ln(x (a+b)/a) + b ln((1-x)(a+b)/b) + 1/2 ln(ab/(a+b))
    - 1/2 ln(2 pi) - corr(a) - corr(b) + corr(a+b)``, whose log1p terms are small exactly where
    the value matters (x near a/(a+b)); plain lgamma would lose ~1e-10 at a, b ~ 1e5.
    """
    total = a + b
    if max(a, b) < 10.0:
        return a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)
    if a < 10.0:  # ln Gamma(b) - ln Gamma(a + b) by Stirling, the small a by lgamma
        return (
            a * math.log(x * total)
            + b * math.log1p(-x)
            + (b - 0.5) * math.log1p(a / b)
            - a
            - math.lgamma(a)
            - _stirling_correction(b)
            + _stirling_correction(total)
        )
    if b < 10.0:
        return (
            b * math.log1p(-x)
            + b * math.log(total)
            + a * math.log(x)
            + (a - 0.5) * math.log1p(b / a)
            - b
            - math.lgamma(b)
            - _stirling_correction(a)
            + _stirling_correction(total)
        )
    # x (a + b) - a, written so that no product with a + b rounds away the small difference
    # (1 - x is exact for x >= 1/2).
    deviation = x * b - (1.0 - x) * a
    # log1p is exact near the mode; far from it (deviation comparable to a or b) use log.
    log_a = math.log1p(deviation / a) if abs(deviation) < 0.5 * a else math.log(x * total / a)
    log_b = (
        math.log1p(-deviation / b) if abs(deviation) < 0.5 * b else math.log((1.0 - x) * total / b)
    )
    return (
        a * log_a
        + b * log_b
        + 0.5 * math.log(a * b / total)
        - 0.5 * _LOG_2PI
        - _stirling_correction(a)
        - _stirling_correction(b)
        + _stirling_correction(total)
    )


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)``, the Beta(a, b) CDF at ``x``.

    ``I_p(k, n - k + 1) = P(Binomial(n, p) >= k)``: the link to exact binomial tests.
    Continued fraction (modified Lentz, as in Numerical Recipes' ``betai``), ~1e-13 relative.
    """
    if not (a > 0.0 and b > 0.0):
        raise ValueError(f"beta_cdf(a={a!r}, b={b!r}): a and b must be > 0")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(_log_beta_front(x, a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def _sigmoid(t: float) -> float:
    if t >= 0.0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def beta_quantile(q: float, a: float, b: float, *, round_up: bool = False) -> float:
    """The ``q`` quantile of Beta(a, b), by bisection on the log-odds scale.

    Bisection keeps a bracket ``lo < x <= hi`` around the answer to ~1e-15 relative precision;
    ``round_up`` returns its upper end (use it for upper confidence bounds so that rounding
    can only make an interval wider).
    """
    if not (0.0 < q < 1.0):
        raise ValueError(f"beta_quantile(q={q!r}): q must be in (0, 1)")
    if not (a > 0.0 and b > 0.0):
        raise ValueError(f"beta_quantile(a={a!r}, b={b!r}): a and b must be > 0")
    lo, hi = -745.0, 745.0  # log-odds: sigmoid(-745) is the smallest positive double
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if beta_cdf(_sigmoid(mid), a, b) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15 * max(1.0, abs(mid)):
            break
    return _sigmoid(hi if round_up else lo)


# --------------------------------------------------------------------------------------------
# The beta-binomial mixture confidence sequence
# --------------------------------------------------------------------------------------------


def target_requests(share: float, tolerance: float, alpha: float) -> float:
    """``n*``: requests at which a PASS is due when the true share is exactly ``share``.

    The confidence sequence excludes ``p`` once ``n (p_hat - p)^2 / (2 v) >= ln(1/alpha) + R_n``
    (``v = share (1 - share)``, ``R_n`` the mixture's regret, see :meth:`MixturePrior.for_band`).
    At ``p_hat = share``, with the focused component's weight ``1 - BROAD_WEIGHT`` and
    concentration ``c = n*`` (regret ``ln(1/(1 - BROAD_WEIGHT)) + 1/2 ln 2``), the band edge
    ``share +- tolerance`` is excluded at
    ``n* = 2 v (ln(1/alpha) + ln(1/(1 - BROAD_WEIGHT)) + 1/2 ln 2) / tolerance^2``
    (957 for 0.20 +- 0.05 at alpha = 0.001; fluctuations of ``p_hat`` make the mean larger).
    """
    variance = max(share * (1.0 - share), 1e-6)
    nats = math.log(1.0 / alpha) - math.log1p(-BROAD_WEIGHT) + 0.5 * math.log(2.0)
    return 2.0 * variance * nats / (tolerance * tolerance)


@dataclass(frozen=True)
class MixturePrior:
    """A finite mixture of Beta distributions and point masses at 0 or 1: the prior of the
    beta-binomial mixture martingale.

    ``components`` holds ``(weight, a, b)`` triples of Beta(a, b) components, ``atoms``
    ``(weight, location)`` pairs of point masses at ``location`` 0.0 or 1.0; all weights are
    positive and sum to 1, and there is at least one Beta component. Any prior gives a valid
    confidence sequence (Ville's inequality holds for every mixture); the prior only decides
    *where* the sequence is tight. A point mass at 1 makes "every response came from this
    version" cost ``ln(1/weight)`` nats instead of the ``~1/2 ln(pi n / 2)`` of a Beta
    component: full promotion decides in ~40% fewer requests (benchmarks/README.md).
    """

    components: tuple[tuple[float, float, float], ...]
    atoms: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("MixturePrior needs at least one (weight, a, b) component")
        total = 0.0
        for weight, a, b in self.components:
            if not (weight > 0.0 and a > 0.0 and b > 0.0):
                raise ValueError(
                    f"MixturePrior component {(weight, a, b)!r}: weight, a and b must be > 0"
                )
            total += weight
        for weight, location in self.atoms:
            if not (weight > 0.0 and location in (0.0, 1.0)):
                raise ValueError(
                    f"MixturePrior atom {(weight, location)!r}: weight must be > 0 and the "
                    "location 0.0 or 1.0"
                )
            total += weight
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"MixturePrior weights sum to {total!r}, must sum to 1")

    @classmethod
    def for_band(
        cls,
        share: float,
        tolerance: float,
        alpha: float,
        *,
        concentration: float | None = None,
        broad_weight: float | None = None,
    ) -> MixturePrior:
        """The prior we use to test ``share +- tolerance`` at level ``alpha``.

        ``(1 - w) Beta(c p0, c (1 - p0)) + w Beta(1/2, 1/2)`` with ``p0 = share``,
        ``c = n*`` (:func:`target_requests`) and ``w = BROAD_WEIGHT`` (0.2). For a share of
        exactly 0 or 1 (full promotion, rollback) the focused component is a point mass at
        ``p0`` (weight ``1 - w``): the extreme share is where the data then lie, and the
        point mass prices "all responses from one version" at ``ln(1/(1 - w)) = 0.22`` nats.

        Why ``c = n*``. Take a Beta(c p0, c (1 - p0)) prior, ``v = p0 (1 - p0)`` and data with
        observed share ``p_hat = p0 + e``. The confidence sequence excludes ``p`` once
        ``n (p_hat - p)^2 / (2 v) >= ln(1/alpha) + R_n``, where ``R_n = ln L_n(p_hat) - ln m_n``
        is the mixture's regret; by the Laplace approximation
        ``R_n = 1/2 ln(1 + n/c) + (n c / (n + c)) e^2 / (2 v)``.

        * Right share, ``e = Z sqrt(v/n)``: ``R_n = 1/2 ln(1 + n/c) + Z^2 c / (2 (n + c))``
          decreases in ``c`` and flattens once ``c >~ n``: with ``E Z^2 = 1`` it is 0.90 nats
          at ``c = n/4``, 0.60 at ``c = n`` and 0.50 for a point mass at ``p0``.
        * A share inside the band but off-centre, ``e = tolerance/2``, adds
          ``(n c / (n + c)) tolerance^2 / (8 v)``, unbounded in ``c``: a point mass never
          passes a share more than half a tolerance away from ``p0``.

        ``c = n*`` (the ``n`` at which a PASS is due) is within 0.1 nat of the best right-share
        regret where decisions happen (about 1% of ``ln(1/alpha) + R`` at alpha = 0.001) and
        keeps the off-centre cost at ``n*`` to ``n* tolerance^2 / (16 v) = (ln(1/alpha) +
        0.57) / 8`` (0.9 nat at alpha = 0.001). Measured (benchmarks/README.md, "prior
        ablation", 0.20 +- 0.05 at alpha = 0.001): ``c = n*/10`` needs more requests at
        the right share, ``c = 10 n*`` more at 0.22 (in the band, off-centre); ``c = n*``
        is within noise of the best of both.

        Why the Jeffreys component. Far from ``p0`` the focused component has almost no mass,
        so alone it would need hundreds of requests to reject a grossly wrong share. Beta(1/2,
        1/2) has regret ``~ 1/2 ln(pi n / 2) + ln(1/w)`` anywhere: 0.5 instead of 0.2 is
        rejected after ~50-100 requests. Its price when the share is right is
        ``ln(1/(1 - w)) = 0.22`` nats (about 3% more requests). ``w = 0.2`` balances both.

        ``concentration`` and ``broad_weight`` override ``c`` and ``w`` (for experiments).
        """
        w = BROAD_WEIGHT if broad_weight is None else broad_weight
        if not (0.0 <= w < 1.0):
            raise ValueError(f"broad_weight={broad_weight!r}: must be in [0, 1)")
        c = target_requests(share, tolerance, alpha) if concentration is None else concentration
        if not c > 0.0:
            raise ValueError(f"concentration={concentration!r}: must be > 0")
        if share in (0.0, 1.0) and concentration is None and w > 0.0:
            # Full promotion / rollback: the focused component becomes a point mass.
            return cls(((w, 0.5, 0.5),), ((1.0 - w, share),))
        # Keep both Beta parameters >= 1/2 so a share of exactly 0 or 1 still gives a proper prior.
        a = max(c * share, 0.5)
        b = max(c * (1.0 - share), 0.5)
        if w == 0.0:
            return cls(((1.0, a, b),))
        return cls(((1.0 - w, a, b), (w, 0.5, 0.5)))

    def mirrored(self) -> MixturePrior:
        """The prior of ``1 - share`` (swap a and b, move point masses to the other end)."""
        return MixturePrior(
            tuple((w, b, a) for w, a, b in self.components),
            tuple((w, 1.0 - location) for w, location in self.atoms),
        )

    def log_marginal(self, successes: int, trials: int) -> float:
        """``ln integral of theta^s (1 - theta)^(n - s) prior(d theta)`` (marginal likelihood)."""
        failures = trials - successes
        terms = [
            offset
            + math.lgamma(a + successes)
            + math.lgamma(b + failures)
            - math.lgamma(c + trials)
            for offset, a, b, c in self._terms
        ]
        # A point mass at 0 (1) explains the data only when no (every) response is a success.
        terms.extend(
            log_weight
            for log_weight, location in self._atom_terms
            if (successes == 0 if location == 0.0 else failures == 0)
        )
        top = max(terms)
        return top + math.log(math.fsum(math.exp(t - top) for t in terms))

    def log_martingale(self, successes: int, trials: int, p: float) -> float:
        """``ln M_n(p) = ln m_n - ln L_n(p)``: ``p`` is excluded once this reaches ``ln(1/alpha)``.

        ``+inf`` when ``p`` cannot have produced the data (p = 0 with a success, p = 1 with a
        failure).
        """
        likelihood = _log_likelihood(p, successes, trials)
        if likelihood == -math.inf:
            return math.inf
        return self.log_marginal(successes, trials) - likelihood

    @functools.cached_property
    def _terms(self) -> tuple[tuple[float, float, float, float], ...]:
        """``(ln w - ln B(a, b), a, b, a + b)`` per component, computed once."""
        return tuple((math.log(w) - _log_beta(a, b), a, b, a + b) for w, a, b in self.components)

    @functools.cached_property
    def _atom_terms(self) -> tuple[tuple[float, float], ...]:
        return tuple((math.log(w), location) for w, location in self.atoms)


def _log_likelihood(p: float, successes: int, trials: int) -> float:
    """``s ln p + (n - s) ln(1 - p)``, with ``0 ln 0 = 0``."""
    total = 0.0
    if successes:
        total += successes * math.log(p) if p > 0.0 else -math.inf
    if trials - successes:
        total += (trials - successes) * math.log1p(-p) if p < 1.0 else -math.inf
    return total


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _solve_end(s: int, n: int, level: float, t: float, upper: bool, push: float) -> float:
    """One end of ``{p : s ln p + (n - s) ln(1 - p) > level}``, approached from outside.

    On the log-odds scale ``t`` the function ``g(t) = s t - n softplus(t) - level`` is concave.
    Newton's method started where ``g < 0`` on the outer side stays outside: the tangent lies
    above ``g``, so its zero is between the iterate and the root. The iterates move
    monotonically towards the root with quadratic convergence, and the one returned has
    ``g < 0`` (up to rounding of ``g`` at the root): the interval is never narrower than
    ``C_n``. ``t`` is a log-odds start; while ``g >= 0`` there it is pushed outward by
    ``push``, doubling.
    """
    direction = 1.0 if upper else -1.0
    outside = False
    for _ in range(400):
        # softplus(t) = ln(1 + e^t) and sigmoid(t), without overflow.
        if t > 0.0:
            e = math.exp(-t)
            g = s * t - n * (t + math.log1p(e)) - level
            sigmoid = 1.0 / (1.0 + e)
        else:
            e = math.exp(t)
            g = s * t - n * math.log1p(e) - level
            sigmoid = e / (1.0 + e)
        if g >= 0.0:
            if outside:  # only rounding crosses the root: t is at the root to ~1e-15
                break
            t += direction * push
            push *= 2.0
            continue
        outside = True
        slope = s - n * sigmoid
        if slope == 0.0:
            break
        move = g / slope
        if abs(move) <= 1e-12 * (1.0 + abs(t)) or (move > 0.0) != upper:
            break
        t -= move
    else:  # pragma: no cover - quadratic convergence ends this in a handful of steps
        raise ArithmeticError(f"confidence sequence end for s={s}, n={n} did not converge")
    return _sigmoid(t)


def cs_interval(successes: int, trials: int, alpha: float, prior: MixturePrior) -> Interval:
    """The beta-binomial mixture confidence set ``C_n = {p : M_n(p) < 1/alpha}`` at one n.

    ``M_n(p) = m_n / L_n(p)``, so ``C_n = {p : ln L_n(p) > ln m_n + ln alpha}``: an interval
    around ``s / n`` (``ln L_n`` is concave; it is never empty since ``m_n <= max L_n``).
    """
    if trials == 0:
        return Interval(0.0, 1.0)
    level = prior.log_marginal(successes, trials) + math.log(alpha)
    return Interval(
        _cs_end(successes, trials, level, None, upper=False),
        _cs_end(successes, trials, level, None, upper=True),
    )


def _cs_end(successes: int, trials: int, level: float, guess: float | None, upper: bool) -> float:
    """Lower or upper end of ``C_n``; ``guess`` (a previous end, outside ``C_n``) or None."""
    s, n = successes, trials
    if upper and s == n:
        return 1.0
    if not upper and s == 0:
        return 0.0
    if guess is not None and 0.0 < guess < 1.0:
        return _solve_end(s, n, level, _logit(guess), upper, 0.1)
    # Start from the quadratic approximation of the log-likelihood on the log-odds scale
    # (curvature n p (1 - p)); it is flatter than that far out, so the root is a little beyond.
    p_hat = min(max(s / n, 0.5 / n), 1.0 - 0.5 / n)
    drop = max(_log_likelihood(p_hat, s, n) - level, 0.5)
    spread = math.sqrt(2.0 * drop / (n * p_hat * (1.0 - p_hat)))
    t = _logit(p_hat) + (spread if upper else -spread)
    return _solve_end(s, n, level, t, upper, 0.25 * spread)


class ConfidenceSequence:
    """A (1 - alpha) confidence sequence for one Bernoulli share: running intersection of C_n.

    Guarantee (Ville's inequality for the beta-binomial mixture martingale; Robbins 1970,
    Howard et al. 2021): ``P(exists n: p_true not in interval_n) <= alpha`` for i.i.d. draws,
    whatever the batch sizes and whenever one looks.

    Example:
        >>> cs = ConfidenceSequence(alpha=0.05, prior=MixturePrior.for_band(0.2, 0.05, 0.05))
        >>> cs.update(20, 100)
        >>> cs.interval.low < 0.2 < cs.interval.high
        True
    """

    def __init__(self, alpha: float, prior: MixturePrior) -> None:
        self.alpha = _check_probability("alpha", alpha, 0.0, 1.0, "error level")
        self.prior = prior
        self.successes = 0
        self.trials = 0
        self.interval = Interval(0.0, 1.0)
        #: False once the running intersection became empty: the data are inconsistent with any
        #: constant share (the share changed during the test, or a <= alpha event happened).
        self.consistent = True
        self._log_alpha = math.log(self.alpha)

    def update(self, successes: int, trials: int) -> None:
        """Add a batch: ``successes`` of ``trials`` new responses were from this version."""
        _check_count("successes", successes)
        _check_count("trials", trials)
        if successes > trials:
            raise ValueError(f"successes={successes}: must be <= trials={trials}")
        self.successes += successes
        self.trials += trials
        s, n = self.successes, self.trials
        if n == 0 or trials == 0:
            return
        level = self.prior.log_marginal(s, n) + self._log_alpha
        low, high = self.interval.low, self.interval.high
        p_hat = s / n
        # Upper end: keep the previous one when it is still inside C_n (g > 0 there);
        # otherwise solve, starting from the previous end (outside C_n: the ideal Newton start).
        if high < 1.0 and _log_likelihood(high, s, n) <= level:
            if high < p_hat:
                self._become_inconsistent(s, n, level)
                return
            high = _cs_end(s, n, level, high, upper=True)
        elif high >= 1.0:
            high = _cs_end(s, n, level, None, upper=True)
        if low > 0.0 and _log_likelihood(low, s, n) <= level:
            if low > p_hat:
                self._become_inconsistent(s, n, level)
                return
            low = _cs_end(s, n, level, low, upper=False)
        elif low <= 0.0:
            low = _cs_end(s, n, level, None, upper=False)
        if low > high:  # only through rounding at a tangency; treat like an empty intersection
            self._become_inconsistent(s, n, level)
            return
        self.interval = Interval(low, high)

    def _become_inconsistent(self, s: int, n: int, level: float) -> None:
        self.consistent = False
        self.interval = Interval(
            _cs_end(s, n, level, None, upper=False), _cs_end(s, n, level, None, upper=True)
        )

    def mirror(self, other: ConfidenceSequence) -> None:
        """Become the sequence of ``1 - share`` of ``other`` (same level, mirrored prior)."""
        self.successes = other.trials - other.successes
        self.trials = other.trials
        self.consistent = other.consistent
        self.interval = Interval(1.0 - other.interval.high, 1.0 - other.interval.low)


def acceptance_counts(
    trials: int,
    p: float,
    alpha: float,
    prior: MixturePrior,
    *,
    near: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The counts ``s`` out of ``trials`` with which ``p`` stays in ``C_n``: ``lo <= s <= hi``.

    ``p`` is excluded from ``C_n`` exactly when ``s < lo`` (then ``C_n`` lies below ``p``) or
    ``s > hi`` (above). ``ln M_n(p)`` is convex in ``s`` (``ln m_n`` is log-convex by Hölder's
    inequality, ``ln L_n(p)`` is linear in ``s``) and below ``ln 2 < ln(1/alpha)`` at the
    integer nearest ``n p``, so the accepted counts are one run of integers around ``n p``.
    Every decision of :class:`SplitTest` is a comparison of a count with these bounds, which
    is how the simulations (tests/test_stats_simulation.py) and the benchmark evaluate
    thousands of runs at once. ``near`` (the bounds at a nearby ``trials``) speeds the search
    up; it never changes the answer.

    Example:
        >>> acceptance_counts(1000, 0.2, 0.001, MixturePrior.for_band(0.2, 0.05, 0.001))
        (156, 247)
    """
    n = _check_count("trials", trials)
    level = -math.log(_check_probability("alpha", alpha, 0.0, 1.0, "error level"))

    def accepted(count: int) -> bool:
        return prior.log_martingale(count, n, p) < level

    centre = min(n, max(0, round(n * p)))
    if not accepted(centre):  # pragma: no cover - impossible for alpha < 1/2 (see above)
        raise ArithmeticError(f"acceptance_counts({n}, {p}): p excluded at s = {centre}")
    low_guess, high_guess = (centre, centre) if near is None else near
    return (
        _run_end(accepted, centre, min(max(low_guess, 0), centre), -1, 0),
        _run_end(accepted, centre, max(min(high_guess, n), centre), +1, n),
    )


def _run_end(
    accepted: Callable[[int], bool], inside: int, guess: int, step: int, limit: int
) -> int:
    """The last accepted count from ``inside`` in direction ``step`` (the run ends at ``limit``).

    Gallops from ``guess`` (outward while accepted, inward while not), then bisects.
    """
    if accepted(guess):
        good, stride = guess, 1
        while good != limit:
            probe = good + step * stride
            probe = max(probe, limit) if step < 0 else min(probe, limit)
            if not accepted(probe):
                bad = probe
                break
            good, stride = probe, stride * 2
        else:
            return limit
    else:
        bad, stride = guess, 1
        while True:
            probe = bad - step * stride
            probe = min(probe, inside) if step < 0 else max(probe, inside)
            if accepted(probe):
                good = probe
                break
            bad, stride = probe, stride * 2
    while abs(bad - good) > 1:
        middle = (good + bad) // 2
        if accepted(middle):
            good = middle
        else:
            bad = middle
    return good


@dataclass
class _Edges:
    """What the confidence sequence of one version has shown about its band so far.

    ``C_t`` is an interval around ``p_hat_t``, so "the running intersection of ``C_1 .. C_t``
    lies above ``band.low``" means "some ``C_u``, ``u <= t``, excluded ``band.low`` with
    ``p_hat_u > band.low``": one evaluation of the martingale at the band edge per look.
    """

    above_low: bool = False
    below_high: bool = False


def _edge_verdict(
    prior: MixturePrior, successes: int, trials: int, band: Interval, level: float, edges: _Edges
) -> Decision:
    """Update ``edges`` with ``C_n`` (``s`` of ``n``) and decide: FAIL when ``C_n`` lies
    entirely outside ``band``, PASS when the running intersection lies inside, else CONTINUE.
    """
    if trials == 0:
        return Decision.CONTINUE
    p_hat = successes / trials
    outside = (band.high < 1.0 and p_hat > band.high) or (band.low > 0.0 and p_hat < band.low)
    if outside:
        edge = band.high if p_hat > band.high else band.low
        if prior.log_martingale(successes, trials, edge) >= level:
            return Decision.FAIL
    if not edges.above_low:
        edges.above_low = band.low <= 0.0 or (
            p_hat > band.low and prior.log_martingale(successes, trials, band.low) >= level
        )
    if not edges.below_high:
        edges.below_high = band.high >= 1.0 or (
            p_hat < band.high and prior.log_martingale(successes, trials, band.high) >= level
        )
    return Decision.PASS if edges.above_low and edges.below_high else Decision.CONTINUE


# --------------------------------------------------------------------------------------------
# The sequential split test
# --------------------------------------------------------------------------------------------


def _check_counts(counts: object) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise ValueError(
            f"counts={counts!r}: must be a mapping of version -> number of responses in the batch"
        )
    checked: dict[str, int] = {}
    for version, count in counts.items():
        if not isinstance(version, str):
            raise ValueError(f"counts key {version!r}: versions must be strings")
        checked[version] = _check_count(f"counts[{version!r}]", count)
    return checked


class SplitTest:
    """Sequential, anytime-valid test that observed shares match expected shares.

    Feed it the per-version counts of each new batch with :meth:`update`; it answers
    ``CONTINUE`` until the evidence decides, then ``PASS`` or ``FAIL`` (or ``INCONCLUSIVE`` at
    ``max_requests``). Each version gets a confidence sequence from the beta-binomial mixture
    martingale (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021) with the prior of
    :meth:`MixturePrior.for_band`.

    Decisions: FAIL as soon as one version's confidence set lies entirely outside its band;
    PASS once the running intersection of every version's confidence sets lies inside its
    band (each band edge excluded at some look, :func:`acceptance_counts`).

    Guarantee: for i.i.d. routing with true shares ``p``, whatever the batch sizes,
    ``P(FAIL) <= alpha`` when every ``p_v`` lies in its band and ``P(PASS) <= alpha`` when some
    ``p_v`` lies outside its band. With two versions and mirrored priors (the default) the two
    intervals are mirror images (one event), so each gets level ``alpha``; otherwise (``k >= 3``
    versions, or two priors that do not mirror each other) each gets ``alpha / k``
    (Bonferroni), which makes the intervals simultaneous. ``priors`` (one
    :class:`MixturePrior` per version) replaces the default priors; any prior keeps the
    guarantee, only the number of requests changes.

    A right expectation can still end INCONCLUSIVE (a failed test) when the true share sits
    at or near a band edge: there no number of requests proves it inside (0.24 in 0.20 +- 0.05
    at alpha = 0.001 is undecided after 20,000 requests in most runs, benchmarks/README.md).
    The reason then says what would decide: more requests, or a wider tolerance.

    Example:
        >>> test = SplitTest({"1.0": 0.8, "2.0": 0.2}, tolerance=0.05, alpha=0.001)
        >>> test.update({"1.0": 8, "2.0": 8})
        <Decision.CONTINUE: 'CONTINUE'>
    """

    def __init__(
        self,
        expected: Mapping[str, float],
        tolerance: float,
        alpha: float,
        max_requests: int | None = None,
        *,
        priors: Mapping[str, MixturePrior] | None = None,
    ) -> None:
        if not isinstance(expected, Mapping) or len(expected) < 2:
            raise ValueError(
                f"expected={expected!r}: must map at least 2 versions to their expected shares, "
                "e.g. {'1.0': 0.8, '2.0': 0.2}"
            )
        shares: dict[str, float] = {}
        for version, share in expected.items():
            if not isinstance(version, str) or not version:
                raise ValueError(f"expected key {version!r}: versions must be non-empty strings")
            shares[version] = _check_share(f"expected[{version!r}]", share)
        total = math.fsum(shares.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                f"expected={expected!r}: shares sum to {total!r}, must sum to 1 (within 1e-9)"
            )
        self.tolerance = _check_tolerance(tolerance)
        self.alpha = _check_alpha(alpha)
        if max_requests is not None:
            max_requests = _check_count("max_requests", max_requests, minimum=1)
        self.max_requests = max_requests
        self.expected = shares
        self.versions = tuple(shares)
        k = len(self.versions)
        first, second = self.versions[0], self.versions[1]
        self.bands = {
            v: Interval(max(0.0, p - self.tolerance), min(1.0, p + self.tolerance))
            for v, p in shares.items()
        }
        if priors is not None and (
            set(priors) != set(shares)
            or not all(isinstance(prior, MixturePrior) for prior in priors.values())
        ):
            raise ValueError(
                f"priors for {sorted(priors)}: must give one MixturePrior for each expected "
                f"version {sorted(shares)}"
            )
        if priors is not None:
            self.priors = dict(priors)
        elif k == 2:
            # Built as exact mirror images: the two sequences are then one event (level alpha).
            prior = MixturePrior.for_band(shares[first], self.tolerance, self.alpha)
            self.priors = {first: prior, second: prior.mirrored()}
        else:
            self.priors = {
                v: MixturePrior.for_band(p, self.tolerance, self.alpha / k)
                for v, p in shares.items()
            }
        # The mirror shortcut (one sequence, level alpha) is exact only when the second prior
        # mirrors the first; two independent sequences need alpha / 2 each.
        self._mirror = k == 2 and self.priors[second] == self.priors[first].mirrored()
        #: Level of each version's confidence sequence.
        self.alpha_per_version = self.alpha if self._mirror else self.alpha / k
        #: Versions whose sequences decide: with mirrored priors the second version's sequence
        #: and band are the mirror images of the first's, so the first alone decides.
        self.decided_by: tuple[str, ...] = self.versions[:1] if self._mirror else self.versions
        self._level = -math.log(self.alpha_per_version)
        self._sequences = {
            v: ConfidenceSequence(self.alpha_per_version, self.priors[v]) for v in self.versions
        }
        self._edges = {v: _Edges() for v in self.versions}
        self.decision = Decision.CONTINUE
        #: Why the test decided (or why it has not yet), one sentence.
        self._reason = "not enough responses yet"
        self._advice: str | None = None
        self._straddling: str | None = None  # a version whose interval straddles its band
        self.n = 0
        #: n at the moment of the decision (None while CONTINUE).
        self.decided_at: int | None = None
        self.counts: dict[str, int] = dict.fromkeys(self.versions, 0)
        self.unexpected: dict[str, int] = {}
        self.intervals: dict[str, Interval] = {v: Interval(0.0, 1.0) for v in self.versions}
        self.history: list[tuple[int, dict[str, Interval]]] = []

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{v}: {self.counts[v]} {self.intervals[v]} in {self.bands[v]}" for v in self.versions
        )
        return f"<SplitTest {self.decision.value} n={self.n} {{{parts}}} reason={self.reason!r}>"

    @property
    def observed(self) -> dict[str, float]:
        """Observed share of every expected version (0.0 before any response)."""
        return {v: (self.counts[v] / self.n if self.n else 0.0) for v in self.versions}

    def update(self, counts: Mapping[str, int]) -> Decision:
        """Add the counts of a new batch (per version) and return the decision.

        Versions absent from ``expected`` are recorded in :attr:`unexpected` and make the
        verdict FAIL. Once decided, the decision is final; later batches are still counted
        (so reports show everything sent) but do not change it.
        """
        batch = _check_counts(counts)
        for version, count in batch.items():
            if version in self.counts:
                self.counts[version] += count
            elif count:
                self.unexpected[version] = self.unexpected.get(version, 0) + count
        batch_n = sum(batch.values())
        self.n += batch_n
        self._update_intervals(batch)
        self.history.append((self.n, dict(self.intervals)))
        if self.decision is Decision.CONTINUE:
            self._decide()
        return self.decision

    def _update_intervals(self, batch: Mapping[str, int]) -> None:
        batch_n = sum(batch.values())
        if batch_n == 0:
            return
        if self._mirror and not self.unexpected:
            first, second = self.versions
            self._sequences[first].update(batch.get(first, 0), batch_n)
            # Same data, mirrored prior: the second version's sequence is the mirror image.
            self._sequences[second].mirror(self._sequences[first])
        else:
            for version in self.versions:
                self._sequences[version].update(batch.get(version, 0), batch_n)
        for version in self.versions:
            self.intervals[version] = self._sequences[version].interval

    def _decide(self) -> None:
        if self.unexpected:
            seen = ", ".join(f"{v!r} x{c}" for v, c in sorted(self.unexpected.items()))
            self._finish(Decision.FAIL, f"responses from versions nobody expected: {seen}")
            return
        if self.n == 0:
            return
        broken = [v for v in self.versions if not self._sequences[v].consistent]
        if broken:
            self._finish(
                Decision.FAIL,
                f"the confidence sequence of {broken[0]!r} became empty: the observed share "
                "moved during the test (routing changed?)",
            )
            return
        judged = self.decided_by
        verdicts = {}
        for v in judged:
            sequence = self._sequences[v]
            verdicts[v] = _edge_verdict(
                self.priors[v],
                sequence.successes,
                sequence.trials,
                self.bands[v],
                self._level,
                self._edges[v],
            )
        outside = [v for v in judged if verdicts[v] is Decision.FAIL]
        if outside:
            v = outside[0]
            self._finish(
                Decision.FAIL,
                f"share of {v!r} is outside {self.bands[v]}: observed "
                f"{self.observed[v]:.3f}, {1 - self.alpha:.4g} confidence sequence "
                f"{self.intervals[v]}",
            )
            return
        if all(verdict is Decision.PASS for verdict in verdicts.values()):
            self._finish(Decision.PASS, "every share's confidence sequence is inside its band")
            return
        if self.max_requests is not None and self.n >= self.max_requests:
            # What would decide is computed when someone reads the reason.
            self._finish(
                Decision.INCONCLUSIVE,
                f"undecided after {self.n} requests (max_requests={self.max_requests})",
            )
            return
        self._straddling = next(v for v in judged if verdicts[v] is Decision.CONTINUE)

    def _finish(self, decision: Decision, reason: str) -> None:
        self.decision = decision
        self._reason = reason
        self.decided_at = self.n

    @property
    def reason(self) -> str:
        """Why the test decided, or why it has not yet: one sentence for the report.

        For INCONCLUSIVE it says what would decide (:meth:`advice`, computed when first read).
        """
        if self.decision is Decision.INCONCLUSIVE:
            if self._advice is None:
                self._advice = self.advice()
            return f"{self._reason}; {self._advice}"
        if self.decision is Decision.CONTINUE and self._straddling is not None:
            v = self._straddling
            return f"interval of {v!r} {self.intervals[v]} straddles its band {self.bands[v]}"
        return self._reason

    def advice(self) -> str:
        """What would decide an undecided test, in one sentence.

        At the observed shares: the requests a decision needs (:meth:`needed_requests`), and
        when every observed share is inside its band, the tolerance that the confidence
        sequences fit now (a band edge closer than that to a right share cannot be told apart
        from it by this many requests).
        """
        needed = self.needed_requests()
        shares = self.observed
        if any(shares[v] not in self.bands[v] for v in self.versions):
            would = "a FAIL" if needed < NEEDED_REQUESTS_CAP else "no number of requests"
            return (
                f"the observed shares are outside their bands; {would}"
                + (f" needs about {needed} requests" if needed < NEEDED_REQUESTS_CAP else "")
                + " at these shares"
            )
        fit = max(
            max(self.expected[v] - self.intervals[v].low, self.intervals[v].high - self.expected[v])
            for v in self.versions
        )
        # Round up to the next 0.005 so the suggestion is a value one would write.
        suggested = min(0.5, math.ceil(fit * 200.0 - 1e-9) / 200.0)
        requests = (
            f"about {needed} requests would be needed at the observed shares"
            if needed < NEEDED_REQUESTS_CAP
            else "a share exactly on a band edge is never decided by more requests"
        )
        return (
            f"{requests}, or tolerance={suggested:g} (the intervals now lie within "
            f"+-{fit:.3f} of the expected shares); a true share near a band edge needs many "
            f"more requests than one near the expected share (stats.plan_requests budgets one)"
        )

    def needed_requests(self) -> int:
        """Estimated total requests for a decision if the observed shares stay as they are.

        For each version the smallest ``n`` whose (non-intersected) confidence set at the
        current observed share fits inside the band (PASS; the largest over versions) or
        misses it (FAIL; the smallest over the versions outside). Before any response the
        expected shares are used. Returns :data:`NEEDED_REQUESTS_CAP` when a share sits exactly
        on a band edge (no n decides).
        """
        shares = self.observed if self.n else dict(self.expected)
        outside = [v for v in self.versions if shares[v] not in self.bands[v]]
        if outside:
            return max(
                self.n,
                min(self._needed_for(v, shares[v], want_pass=False) for v in outside),
            )
        return max(
            self.n, max(self._needed_for(v, shares[v], want_pass=True) for v in self.versions)
        )

    def _needed_for(self, version: str, share: float, want_pass: bool) -> int:
        band = self.bands[version]
        prior = self.priors[version]
        want = Decision.PASS if want_pass else Decision.FAIL

        def decides(n: int) -> bool:
            s = min(n, max(0, round(share * n)))
            return _edge_verdict(prior, s, n, band, self._level, _Edges()) is want

        hi = 16
        while not decides(hi):
            hi *= 2
            if hi >= NEEDED_REQUESTS_CAP:
                return NEEDED_REQUESTS_CAP
        lo = hi // 2
        while hi - lo > max(1, hi // 200):
            mid = (lo + hi) // 2
            if decides(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def next_batch_size(self, concurrency: int) -> int:
        """Size of the next batch: one round of ``concurrency`` requests (0 once
        ``max_requests`` is reached; never past it).

        The test looks after every round: a look costs nothing in validity for an
        anytime-valid sequence, and stopping at the first round that decides saves the
        overshoot of larger batches (~15% of the requests, benchmarks/README.md).
        """
        concurrency = _check_count("concurrency", concurrency, minimum=1)
        if self.max_requests is None:
            return concurrency
        return max(0, min(concurrency, self.max_requests - self.n))


def _batch_size(n: int, concurrency: int, max_requests: int | None) -> int:
    size = max(FIRST_BATCH, math.ceil(BATCH_GROWTH * n))
    size = -(-size // concurrency) * concurrency
    if max_requests is not None:
        size = max(0, min(size, max_requests - n))
    return size


# --------------------------------------------------------------------------------------------
# expect_routed: every response from one version
# --------------------------------------------------------------------------------------------


def routed_requests(leak: float, alpha: float) -> int:
    """Requests needed to catch a leak rate ``>= leak`` with probability ``>= 1 - alpha``.

    ``n = ceil(ln alpha / ln(1 - leak))``, the smallest n with ``(1 - leak)^n <= alpha``: if
    at least a fraction ``leak`` of responses come from another version, all n responses come
    from the expected one with probability ``<= alpha`` (the "rule of three" generalised:
    ``leak = 3/n`` at ``alpha = 0.05``).

    Example:
        >>> routed_requests(0.01, 0.001)
        688
    """
    leak = _check_probability("leak", leak, 0.0, 1.0, "smallest leak rate to catch, e.g. 0.01")
    alpha = _check_alpha(alpha)
    n = max(1, math.ceil(math.log(alpha) / math.log1p(-leak) - 1e-9))
    # Make the float rounding harmless: the smallest n with (1 - leak)^n <= alpha, exactly.
    while n * math.log1p(-leak) > math.log(alpha):
        n += 1
    while n > 1 and (n - 1) * math.log1p(-leak) <= math.log(alpha):
        n -= 1
    return n


class RoutedTest:
    """Sequential check that every response comes from ``version``.

    PASS after :attr:`required` responses (:func:`routed_requests`) all from ``version``;
    FAIL at the first response from any other version. Guarantee: if the leak rate is at
    least ``leak``, ``P(PASS) <= alpha``; a leak-free route always passes.

    Example:
        >>> test = RoutedTest("2.0", leak=0.01, alpha=0.001)
        >>> test.update({"2.0": 688})
        <Decision.PASS: 'PASS'>
    """

    def __init__(self, version: str, leak: float, alpha: float) -> None:
        if not isinstance(version, str) or not version:
            raise ValueError(f"version={version!r}: must be a non-empty version string")
        self.required = routed_requests(leak, alpha)  # validates leak and alpha
        self.version = version
        self.leak = float(leak)
        self.alpha = float(alpha)
        self.n = 0
        self.counts: dict[str, int] = {version: 0}
        self.decision = Decision.CONTINUE
        self.reason = f"{self.required} responses from {version!r} needed"
        self.decided_at: int | None = None

    def __repr__(self) -> str:
        return (
            f"<RoutedTest {self.decision.value} version={self.version!r} n={self.n}/"
            f"{self.required} counts={self.counts} reason={self.reason!r}>"
        )

    @property
    def leaked(self) -> dict[str, int]:
        """Responses from versions other than :attr:`version`."""
        return {v: c for v, c in self.counts.items() if v != self.version and c}

    def update(self, counts: Mapping[str, int]) -> Decision:
        """Add a batch's per-version counts; the decision is final once made."""
        batch = _check_counts(counts)
        for v, c in batch.items():
            self.counts[v] = self.counts.get(v, 0) + c
        self.n += sum(batch.values())
        if self.decision is not Decision.CONTINUE:
            return self.decision
        leaked = self.leaked
        if leaked:
            seen = ", ".join(f"{v!r} x{c}" for v, c in sorted(leaked.items()))
            self.decision, self.decided_at = Decision.FAIL, self.n
            self.reason = f"responses from other versions than {self.version!r}: {seen}"
        elif self.n >= self.required:
            self.decision, self.decided_at = Decision.PASS, self.n
            self.reason = (
                f"all {self.n} responses from {self.version!r}: a leak rate >= {self.leak:g} "
                f"is excluded at alpha={self.alpha:g}"
            )
        return self.decision

    def next_batch_size(self, concurrency: int) -> int:
        """Suggested size of the next batch: geometric growth up to :attr:`required`."""
        concurrency = _check_count("concurrency", concurrency, minimum=1)
        return _batch_size(self.n, concurrency, self.required)


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def fixed_requests(share: float, tolerance: float, alpha: float) -> int:
    """Sample size of the fixed design with the guarantees of :class:`SplitTest`, by the
    normal approximation.

    ``n = ceil((z_{1-alpha} + z_{1-alpha/2})^2 p (1 - p) / tolerance^2)``, alpha *per side*:
    a two-sided ``1 - alpha`` interval (a wrong share passes with probability ``<= alpha/2``)
    whose end stays short of each band edge with probability ``1 - alpha`` when the share is
    right (so a right share fails to fit with probability up to ``alpha`` on each side, about
    ``2 alpha`` in all). 2606 for 0.20 +- 0.05 at alpha = 0.001. The exact design
    (Clopper-Pearson intervals, binomial probabilities) needs a few % more: 2,689 with false
    PASS and not-PASS each ``<= alpha`` (benchmarks/requests_to_verdict.py).
    """
    share = _check_share("share", share)
    tolerance = _check_tolerance(tolerance)
    alpha = _check_alpha(alpha)
    z = normal_quantile(1.0 - alpha) + normal_quantile(1.0 - alpha / 2.0)
    return max(1, math.ceil(z * z * share * (1.0 - share) / (tolerance * tolerance)))


@dataclass(frozen=True)
class Plan:
    """Request budget of one ``expect_split`` (see :func:`plan_requests`)."""

    share: float
    tolerance: float
    alpha: float
    #: Upper bound on the mean requests to a verdict when the true share is ``share``.
    expected_requests: int
    #: Requests by which a verdict is reached with probability >= 95% (conservative p95).
    worst_case_requests: int
    #: Sample size of the equivalent fixed design (:func:`fixed_requests`).
    fixed_requests: int


def _binomial_tail_at_most(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) <= k)``, accurate also when it is tiny."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return beta_cdf(1.0 - p, n - k, k + 1)


def _binomial_tail_at_least(k: int, n: int, p: float) -> float:
    """``P(Binomial(n, p) >= k)``, accurate also when it is tiny."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return beta_cdf(p, k, n - k + 1)


class _EdgeBounds:
    """The acceptance counts of both band edges at successive n, each search started from
    the bounds at the previous n."""

    def __init__(self, band: Interval, alpha: float, prior: MixturePrior) -> None:
        self.band, self.alpha, self.prior = band, alpha, prior
        self._last: dict[float, tuple[int, int, int]] = {}

    def at(self, n: int, p: float) -> tuple[int, int]:
        previous = self._last.get(p)
        near = None
        if previous is not None:
            last_n, lo, hi = previous
            shift = round((n - last_n) * p)
            near = (lo + shift, hi + shift)
        lo, hi = acceptance_counts(n, p, self.alpha, self.prior, near=near)
        self._last[p] = (n, lo, hi)
        return lo, hi

    def no_pass_probability(self, n: int, share: float) -> float:
        """``P(C_n does not lie inside the band)`` when ``S_n ~ Binomial(n, share)``, exactly:
        ``C_n`` lies inside iff ``s`` is above the acceptance counts of the lower edge and
        below those of the upper edge."""
        band = self.band
        below = self.at(n, band.low)[1] if band.low > 0.0 else -1
        above = self.at(n, band.high)[0] if band.high < 1.0 else n + 1
        if below + 1 > above - 1:
            return 1.0
        return min(
            1.0,
            _binomial_tail_at_most(below, n, share) + _binomial_tail_at_least(above, n, share),
        )


def plan_requests(share: float, tolerance: float, alpha: float, *, concurrency: int = 16) -> Plan:
    """Budget an ``expect_split(share, tolerance, alpha)`` whose true share is ``share``.

    Computed exactly, without simulation, on the look schedule of
    :meth:`SplitTest.next_batch_size` (one look per round of ``concurrency`` requests): the
    test has stopped by the look at ``n_k`` at least when ``C_{n_k}`` alone fits in the band,
    so with ``q_k = P(C_{n_k} inside band)`` (exact binomial tails beyond the
    :func:`acceptance_counts` of the band edges),
    ``E[requests] <= sum_k (n_{k+1} - n_k) (1 - q_k)`` and ``P(requests <= n_k) >= q_k``.
    ``worst_case_requests`` is the first ``n_k`` with ``q_k >= 0.95``. Both ignore the extra
    help of the running intersection, so they are upper bounds. Two versions
    (``share`` and ``1 - share``).

    Example:
        >>> plan_requests(0.2, 0.05, 0.001).fixed_requests
        2606
    """
    share = _check_share("share", share)
    tolerance = _check_tolerance(tolerance)
    alpha = _check_alpha(alpha)
    concurrency = _check_count("concurrency", concurrency, minimum=1)
    band = Interval(max(0.0, share - tolerance), min(1.0, share + tolerance))
    edges = _EdgeBounds(band, alpha, MixturePrior.for_band(share, tolerance, alpha))
    expected = 0.0
    worst: int | None = None
    n = 0
    survival = 1.0  # bound on P(no verdict after n requests)
    while True:
        expected += concurrency * survival
        n += concurrency
        survival = edges.no_pass_probability(n, share)
        q = 1.0 - survival
        if worst is None and q >= 0.95:
            worst = n
        if worst is not None and survival < 1e-6:
            break
        if n > NEEDED_REQUESTS_CAP // 10:  # pragma: no cover - only for absurd inputs
            raise ArithmeticError(f"plan_requests({share}, {tolerance}, {alpha}) does not converge")
    return Plan(
        share=share,
        tolerance=tolerance,
        alpha=alpha,
        expected_requests=math.ceil(expected),
        worst_case_requests=worst,
        fixed_requests=fixed_requests(share, tolerance, alpha),
    )


# --------------------------------------------------------------------------------------------
# Fixed samples: Clopper-Pearson
# --------------------------------------------------------------------------------------------


def clopper_pearson(k: int, n: int, alpha: float) -> Interval:
    """Exact two-sided ``1 - alpha`` Clopper-Pearson interval for a binomial proportion.

    ``[B(alpha/2; k, n-k+1), B(1-alpha/2; k+1, n-k)]`` with ``B`` the Beta quantile (Clopper &
    Pearson 1934, Biometrika 26). Coverage ``>= 1 - alpha`` for every true proportion. An
    empty sample gives ``[0, 1]``.

    Example:
        >>> str(clopper_pearson(20, 100, 0.05))
        '[0.127, 0.292]'
    """
    n = _check_count("n", n)
    k = _check_count("k", k)
    if k > n:
        raise ValueError(f"k={k}: must be <= n={n} (hits cannot exceed the sample size)")
    alpha = _check_probability("alpha", alpha, 0.0, 1.0, "1 - confidence level")
    if n == 0:
        return Interval(0.0, 1.0)
    low = 0.0 if k == 0 else beta_quantile(alpha / 2.0, k, n - k + 1)
    high = 1.0 if k == n else beta_quantile(1.0 - alpha / 2.0, k + 1, n - k, round_up=True)
    return Interval(low, high)


@dataclass(frozen=True)
class FixedVerdict:
    """Verdict of the fixed-sample test :func:`assert_split_counts`."""

    passed: bool
    share: float
    interval: Interval
    n: int
    hits: int
    tolerance: float
    alpha: float
    band: Interval
    decision: Decision
    reason: str

    @property
    def observed(self) -> float:
        """Observed share ``hits / n`` (0.0 for an empty sample)."""
        return self.hits / self.n if self.n else 0.0


def assert_split_counts(
    hits: int, n: int, share: float, tolerance: float, alpha: float
) -> FixedVerdict:
    """Fixed-sample test that ``hits`` of ``n`` responses match ``share +- tolerance``.

    PASS iff the exact ``1 - alpha`` Clopper-Pearson interval lies inside the band; FAIL when
    it lies entirely outside; otherwise INCONCLUSIVE (not passed; ``reason`` says why).
    Guarantee: ``P(PASS) <= alpha / 2`` when the true share is outside the band and
    ``P(FAIL) <= alpha / 2`` when it is inside. For one look at a sample only: re-testing a
    growing sample loses the guarantee (use :class:`SplitTest`).

    Example:
        >>> assert_split_counts(520, 2606, 0.2, 0.05, 0.001).passed
        True
    """
    n = _check_count("n", n)
    hits = _check_count("hits", hits)
    if hits > n:
        raise ValueError(f"hits={hits}: must be <= n={n} (hits cannot exceed the sample size)")
    share = _check_share("share", share)
    tolerance = _check_tolerance(tolerance)
    alpha = _check_alpha(alpha)
    band = Interval(max(0.0, share - tolerance), min(1.0, share + tolerance))
    interval = clopper_pearson(hits, n, alpha)
    if n == 0:
        decision, reason = Decision.INCONCLUSIVE, "no responses: nothing to test"
    elif interval.within(band):
        decision, reason = Decision.PASS, f"interval {interval} is inside the band {band}"
    elif interval.disjoint(band):
        decision = Decision.FAIL
        reason = f"interval {interval} is outside the band {band}: the share is wrong"
    else:
        # Smallest n whose interval half-width at this share would fit (normal approximation).
        observed = hits / n
        room = min(observed - band.low, band.high - observed)
        z = normal_quantile(1.0 - alpha / 2.0)
        if room > 0:
            more = math.ceil(z * z * observed * (1.0 - observed) / (room * room))
            hint = f"; about {max(more, n + 1)} responses would decide at this share"
        else:
            hint = ""
        decision = Decision.INCONCLUSIVE
        reason = f"interval {interval} straddles the band {band}: too few responses{hint}"
    return FixedVerdict(
        passed=decision is Decision.PASS,
        share=share,
        interval=interval,
        n=n,
        hits=hits,
        tolerance=tolerance,
        alpha=alpha,
        band=band,
        decision=decision,
        reason=reason,
    )


def error_rate_exceeded(errors: int, total: int, max_error_rate: float, alpha: float) -> bool:
    """True when the data show the error rate is above ``max_error_rate``.

    ``max_error_rate == 0``: any error. Otherwise the one-sided ``1 - alpha`` lower
    Clopper-Pearson bound of ``errors / total`` exceeds ``max_error_rate``, i.e. the exact
    binomial test ``P(X >= errors | rate = max_error_rate) < alpha``. Guarantee: if the true
    error rate is ``<= max_error_rate`` this returns True with probability ``<= alpha``.

    Example:
        >>> error_rate_exceeded(1, 1000, 0.0, 0.001), error_rate_exceeded(1, 1000, 0.01, 0.001)
        (True, False)
    """
    total = _check_count("total", total)
    errors = _check_count("errors", errors)
    if errors > total:
        raise ValueError(f"errors={errors}: must be <= total={total}")
    if isinstance(max_error_rate, bool) or not isinstance(max_error_rate, (int, float)):
        raise ValueError(f"max_error_rate={max_error_rate!r}: must be a number in [0, 1)")
    if not (0.0 <= max_error_rate < 1.0):
        raise ValueError(
            f"max_error_rate={max_error_rate!r}: must be in [0, 1) (allowed fraction of failed "
            "requests, 0 for none)"
        )
    alpha = _check_alpha(alpha)
    if errors == 0:
        return False
    if max_error_rate == 0.0:
        return True
    # I_r(e, t - e + 1) = P(Binomial(t, r) >= e).
    return beta_cdf(float(max_error_rate), errors, total - errors + 1) < alpha
