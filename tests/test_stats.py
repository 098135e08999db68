"""Unit tests of pytest_canary.stats: known values, edge cases, bad arguments.

scipy is the reference for the special functions; the module under test is pure Python.
"""

from __future__ import annotations

import math
import re

import pytest
from scipy import integrate, optimize, special
from scipy import stats as sps

from pytest_canary import stats
from pytest_canary.stats import (
    ConfidenceSequence,
    Decision,
    FixedVerdict,
    Interval,
    MixturePrior,
    Plan,
    RoutedTest,
    SplitTest,
    assert_split_counts,
    beta_cdf,
    beta_quantile,
    clopper_pearson,
    cs_interval,
    error_rate_exceeded,
    fixed_requests,
    normal_quantile,
    plan_requests,
    routed_requests,
)

TWO = {"1.0": 0.8, "2.0": 0.2}


def feed(test: SplitTest, share: float, n: int, batch: int = 100) -> Decision:
    """Feed ``n`` responses in batches whose canary ("2.0") count tracks ``share`` exactly."""
    sent = hits = 0
    decision = test.decision
    while sent < n:
        size = min(batch, n - sent)
        new_hits = round(share * (sent + size)) - hits
        decision = test.update({"1.0": size - new_hits, "2.0": new_hits})
        sent += size
        hits += new_hits
    return decision


# ------------------------------------------------------------------------------------------
# Interval
# ------------------------------------------------------------------------------------------


def test_interval_contains_width_and_str() -> None:
    band = Interval(0.15, 0.25)
    assert 0.15 in band and 0.25 in band and 0.2 in band
    assert 0.1499 not in band and 0.2501 not in band
    assert "0.2" not in band  # not a number
    assert True not in band  # bools are not shares
    assert band.width == pytest.approx(0.1)
    assert str(Interval(0.18312, 0.22149)) == "[0.183, 0.221]"


def test_interval_within_and_disjoint() -> None:
    band = Interval(0.15, 0.25)
    assert Interval(0.16, 0.24).within(band)
    assert Interval(0.15, 0.25).within(band)
    assert not Interval(0.14, 0.24).within(band)
    assert Interval(0.26, 0.3).disjoint(band)
    assert Interval(0.0, 0.149).disjoint(band)
    assert not Interval(0.24, 0.3).disjoint(band)


@pytest.mark.parametrize(("low", "high"), [(0.3, 0.2), (math.nan, 0.2), (0.1, math.nan)])
def test_interval_rejects_reversed_or_nan(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="low <= high"):
        Interval(low, high)


# ------------------------------------------------------------------------------------------
# Special functions against scipy
# ------------------------------------------------------------------------------------------

QUANTILE_POINTS = [
    1e-300,
    1e-100,
    1e-20,
    1e-10,
    1e-5,
    0.001,
    0.0005,
    0.02425,
    0.05,
    0.075,
    0.2,
    0.3,
    0.5,
    0.6,
    0.9,
    0.95,
    0.975,
    0.999,
    0.9995,
    1 - 1e-10,
]


@pytest.mark.parametrize("p", QUANTILE_POINTS)
def test_normal_quantile_matches_scipy(p: float) -> None:
    assert normal_quantile(p) == pytest.approx(sps.norm.ppf(p), rel=1e-13, abs=1e-15)


def test_normal_quantile_known_values() -> None:
    assert normal_quantile(0.5) == 0.0
    assert normal_quantile(0.975) == pytest.approx(1.959963984540054, abs=1e-14)
    assert normal_quantile(0.999) == pytest.approx(3.090232306167813, abs=1e-13)
    assert normal_quantile(0.025) == pytest.approx(-normal_quantile(0.975), abs=1e-15)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5, math.nan, "0.5", True])
def test_normal_quantile_rejects_non_probabilities(p: object) -> None:
    with pytest.raises(ValueError, match=r"^p="):
        normal_quantile(p)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "a", "b"),
    [
        (0.1, 1.0, 1.0),
        (0.3, 0.5, 0.5),
        (0.2, 20.0, 81.0),
        (0.25, 200.0, 801.0),
        (0.001, 1.0, 5000.0),
        (0.999, 3000.0, 2.0),
        (0.5, 1e5, 1e5),
        (0.21, 521.0, 2086.0),
    ],
)
def test_beta_cdf_matches_scipy(x: float, a: float, b: float) -> None:
    assert beta_cdf(x, a, b) == pytest.approx(special.betainc(a, b, x), rel=1e-11, abs=1e-300)


def test_beta_cdf_edges_and_bad_parameters() -> None:
    assert beta_cdf(0.0, 2.0, 3.0) == 0.0
    assert beta_cdf(1.0, 2.0, 3.0) == 1.0
    with pytest.raises(ValueError, match="must be > 0"):
        beta_cdf(0.5, 0.0, 1.0)


@pytest.mark.parametrize(
    ("q", "a", "b"),
    [(0.025, 20, 81), (0.975, 21, 80), (0.0005, 1, 1000), (0.9995, 999, 2), (0.5, 0.5, 0.5)],
)
def test_beta_quantile_matches_scipy(q: float, a: float, b: float) -> None:
    assert beta_quantile(q, a, b) == pytest.approx(sps.beta.ppf(q, a, b), rel=1e-10)


def test_beta_quantile_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        beta_quantile(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        beta_quantile(0.5, -1.0, 1.0)


# ------------------------------------------------------------------------------------------
# Clopper-Pearson, fixed-sample verdicts, error rates
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "alpha"),
    [
        (20, 100, 0.05),
        (1, 10, 0.05),
        (0, 50, 0.01),
        (50, 50, 0.01),
        (521, 2606, 0.001),
        (3, 10**6, 0.001),
    ],
)
def test_clopper_pearson_matches_scipy(k: int, n: int, alpha: float) -> None:
    interval = clopper_pearson(k, n, alpha)
    low = sps.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
    high = sps.beta.ppf(1 - alpha / 2, k + 1, n - k) if k < n else 1.0
    assert interval.low == pytest.approx(low, rel=1e-9, abs=1e-300)
    assert interval.high == pytest.approx(high, rel=1e-9)


def test_clopper_pearson_known_value_and_edges() -> None:
    assert str(clopper_pearson(20, 100, 0.05)) == "[0.127, 0.292]"
    assert clopper_pearson(0, 10, 0.05).low == 0.0
    assert clopper_pearson(10, 10, 0.05).high == 1.0
    assert clopper_pearson(0, 0, 0.05) == Interval(0.0, 1.0)
    # Rule of three: k = 0 of n gives an upper bound of about 3/n at 95% (one-sided 2.5%: 3.7/n).
    assert clopper_pearson(0, 1000, 0.05).high == pytest.approx(1 - 0.025 ** (1 / 1000))


@pytest.mark.parametrize(
    ("k", "n", "alpha", "message"),
    [
        (11, 10, 0.05, "k=11: must be <= n=10"),
        (-1, 10, 0.05, "k=-1: must be an integer >= 0"),
        (1, -10, 0.05, "n=-10: must be an integer >= 0"),
        (1.5, 10, 0.05, r"k=1\.5: must be an integer"),
        (1, 10, 0.0, r"alpha=0\.0: must be in \(0, 1\)"),
        (1, 10, 1.0, r"alpha=1\.0: must be in \(0, 1\)"),
    ],
)
def test_clopper_pearson_rejects_bad_arguments(
    k: object, n: object, alpha: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        clopper_pearson(k, n, alpha)  # type: ignore[arg-type]


def test_assert_split_counts_passes_inside_the_band() -> None:
    verdict = assert_split_counts(521, 2606, 0.2, 0.05, 0.001)
    assert isinstance(verdict, FixedVerdict)
    assert verdict.passed and verdict.decision is Decision.PASS
    assert verdict.interval.within(verdict.band)
    assert verdict.band.low == pytest.approx(0.15) and verdict.band.high == pytest.approx(0.25)
    assert verdict.observed == pytest.approx(521 / 2606)
    assert "inside the band" in verdict.reason


def test_assert_split_counts_fails_outside_the_band() -> None:
    verdict = assert_split_counts(50, 100, 0.2, 0.05, 0.001)
    assert not verdict.passed and verdict.decision is Decision.FAIL
    assert "outside the band [0.150, 0.250]" in verdict.reason


def test_assert_split_counts_straddling_is_inconclusive_with_a_hint() -> None:
    verdict = assert_split_counts(20, 100, 0.2, 0.05, 0.001)
    assert not verdict.passed and verdict.decision is Decision.INCONCLUSIVE
    assert "straddles the band" in verdict.reason
    assert "responses would decide" in verdict.reason
    empty = assert_split_counts(0, 0, 0.2, 0.05, 0.001)
    assert not empty.passed and empty.decision is Decision.INCONCLUSIVE
    assert "no responses" in empty.reason


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((11, 10, 0.2, 0.05, 0.001), "hits=11: must be <= n=10"),
        ((1, 10, 1.2, 0.05, 0.001), r"share=1\.2: must be a share in \[0, 1\]"),
        ((1, 10, 0.2, 0.0, 0.001), r"tolerance=0\.0: must be in \(0, 0\.5\]"),
        ((1, 10, 0.2, 0.6, 0.001), r"tolerance=0\.6: must be in \(0, 0\.5\]"),
        ((1, 10, 0.2, 0.05, 0.5), r"alpha=0\.5: must be in \(0, 0\.5\)"),
        ((1, 10, 0.2, 0.05, True), r"alpha=True: must be a number"),
    ],
)
def test_assert_split_counts_rejects_bad_arguments(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assert_split_counts(*args)  # type: ignore[arg-type]


def test_error_rate_exceeded_with_zero_allowed_means_any_error() -> None:
    assert not error_rate_exceeded(0, 1000, 0.0, 0.001)
    assert error_rate_exceeded(1, 1000, 0.0, 0.001)
    assert not error_rate_exceeded(0, 0, 0.0, 0.001)


@pytest.mark.parametrize(
    ("errors", "total", "rate", "alpha"),
    [
        (5, 1000, 0.001, 0.001),
        (10, 1000, 0.01, 0.05),
        (20, 1000, 0.01, 0.05),
        (30, 1000, 0.01, 0.001),
    ],
)
def test_error_rate_exceeded_is_the_one_sided_exact_test(
    errors: int, total: int, rate: float, alpha: float
) -> None:
    lower_bound = sps.beta.ppf(alpha, errors, total - errors + 1)
    assert error_rate_exceeded(errors, total, rate, alpha) == (lower_bound > rate)


def test_error_rate_exceeded_known_values() -> None:
    # 10 errors in 1000 with 1% allowed: exactly what is allowed, not evidence of more.
    assert not error_rate_exceeded(10, 1000, 0.01, 0.05)
    # 30 in 1000 against 1% allowed: P(X >= 30 | 1%) ~ 1e-7.
    assert error_rate_exceeded(30, 1000, 0.01, 0.001)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((11, 10, 0.01, 0.001), "errors=11: must be <= total=10"),
        ((1, 10, 1.0, 0.001), r"max_error_rate=1\.0: must be in \[0, 1\)"),
        ((1, 10, -0.1, 0.001), r"max_error_rate=-0\.1: must be in \[0, 1\)"),
        ((1, 10, "1%", 0.001), "max_error_rate='1%': must be a number"),
        ((1, 10, 0.01, 0.0), r"alpha=0\.0: must be in \(0, 0\.5\)"),
    ],
)
def test_error_rate_exceeded_rejects_bad_arguments(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        error_rate_exceeded(*args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# The beta-binomial mixture confidence sequence
# ------------------------------------------------------------------------------------------

PRIOR = MixturePrior.for_band(0.2, 0.05, 0.001)


def log_likelihood(p: float, s: int, n: int) -> float:
    return float(special.xlogy(s, p) + special.xlog1py(n - s, -p))


def log_mixture_martingale(p: float, s: int, n: int, prior: MixturePrior) -> float:
    """ln M_n(p) by numerical integration (scipy), independent of the module's formulas."""
    p_hat = s / n
    peak = log_likelihood(p_hat, s, n)

    def density(theta: float) -> float:  # prior density x L(theta) / L(p_hat) <= prior density
        ratio = math.exp(log_likelihood(theta, s, n) - peak)
        return ratio * sum(w * sps.beta.pdf(theta, a, b) for w, a, b in prior.components)

    # Integrate where the likelihood lives apart from the rest (quad misses narrow peaks).
    width = 12 * math.sqrt(max(p_hat * (1 - p_hat), 1 / n) / n)
    lo, hi = max(0.0, p_hat - width), min(1.0, p_hat + width)
    pieces = [(0.0, lo), (lo, hi), (hi, 1.0)]
    integral = sum(integrate.quad(density, a, b, limit=200)[0] for a, b in pieces if b > a)
    return math.log(integral) + peak - log_likelihood(p, s, n)


def test_log_marginal_matches_numerical_integration() -> None:
    for s, n in [(0, 10), (3, 10), (200, 1000), (1000, 1000)]:
        exact = PRIOR.log_marginal(s, n)
        p = 0.37  # any p: ln m_n = ln M_n(p) + ln L_n(p)
        numeric = (
            log_mixture_martingale(p, s, n, PRIOR) + s * math.log(p) + (n - s) * math.log1p(-p)
        )
        assert exact == pytest.approx(numeric, abs=1e-7)


@pytest.mark.parametrize(
    ("s", "n"), [(1, 5), (20, 100), (200, 1000), (0, 200), (200, 200), (5000, 25000)]
)
def test_cs_interval_ends_are_where_the_martingale_reaches_one_over_alpha(s: int, n: int) -> None:
    alpha = 0.001
    interval = cs_interval(s, n, alpha, PRIOR)
    level = PRIOR.log_marginal(s, n) + math.log(alpha)

    def g(p: float) -> float:  # > 0 inside C_n
        return log_likelihood(p, s, n) - level

    p_hat = s / n
    if s > 0:
        reference = optimize.brentq(g, 1e-300, p_hat, xtol=1e-300, rtol=1e-14)
        assert interval.low == pytest.approx(reference, rel=1e-9)
        assert interval.low <= reference * (1 + 1e-12)  # conservative: never inside C_n
    else:
        assert interval.low == 0.0
    if s < n:
        reference = optimize.brentq(g, p_hat, 1 - 1e-16, xtol=1e-300, rtol=1e-14)
        assert interval.high == pytest.approx(reference, rel=1e-9)
        assert interval.high >= reference * (1 - 1e-12)
    else:
        assert interval.high == 1.0


def test_cs_at_the_ends_matches_scipy_martingale() -> None:
    """At an end of C_n, ln M_n equals ln(1/alpha), computed by numerical integration."""
    interval = cs_interval(200, 1000, 0.001, PRIOR)
    for end in (interval.low, interval.high):
        assert log_mixture_martingale(end, 200, 1000, PRIOR) == pytest.approx(
            math.log(1000), abs=1e-6
        )


def test_confidence_sequence_one_batch_is_the_confidence_set() -> None:
    cs = ConfidenceSequence(0.001, PRIOR)
    cs.update(200, 1000)
    assert cs.interval == cs_interval(200, 1000, 0.001, PRIOR)


def test_confidence_sequence_is_a_running_intersection() -> None:
    cs = ConfidenceSequence(0.05, PRIOR)
    previous = cs.interval
    s = 0
    for n_batch, s_batch in [(16, 5), (16, 1), (32, 10), (64, 9), (200, 41), (400, 80), (0, 0)]:
        cs.update(s_batch, n_batch)
        s += s_batch
        assert cs.interval.within(previous)
        confidence_set = cs_interval(s, cs.trials, 0.05, PRIOR)
        assert cs.interval.low >= confidence_set.low - 1e-12
        assert cs.interval.high <= confidence_set.high + 1e-12
        previous = cs.interval
    assert cs.consistent


def test_confidence_sequence_of_a_moving_share_becomes_inconsistent() -> None:
    cs = ConfidenceSequence(0.001, PRIOR)
    cs.update(0, 2000)  # share 0 ...
    cs.update(2000, 2000)  # ... then share 1: no constant share fits both halves
    assert not cs.consistent


def test_mixture_prior_for_band_and_validation() -> None:
    prior = MixturePrior.for_band(0.2, 0.05, 0.001)
    (w1, a, b), (w2, ja, jb) = prior.components
    assert (w2, ja, jb) == (stats.BROAD_WEIGHT, 0.5, 0.5)
    assert w1 == pytest.approx(1 - stats.BROAD_WEIGHT)
    assert a / (a + b) == pytest.approx(0.2)
    assert a + b == pytest.approx(stats.target_requests(0.2, 0.05, 0.001))
    assert prior.mirrored().mirrored() == prior
    # A share of exactly 0 still gives a proper prior.
    assert all(a > 0 and b > 0 for _, a, b in MixturePrior.for_band(0.0, 0.05, 0.01).components)
    with pytest.raises(ValueError, match="sum to 1"):
        MixturePrior(((0.5, 1.0, 1.0),))
    with pytest.raises(ValueError, match="must be > 0"):
        MixturePrior(((1.0, 0.0, 1.0),))
    with pytest.raises(ValueError, match="at least one"):
        MixturePrior(())


def test_point_masses_at_zero_and_one() -> None:
    """Full promotion and rollback priors: the focused component becomes a point mass."""
    prior = MixturePrior.for_band(1.0, 0.05, 0.001)
    assert prior.atoms == ((1 - stats.BROAD_WEIGHT, 1.0),)
    assert prior.components == ((stats.BROAD_WEIGHT, 0.5, 0.5),)
    assert prior.mirrored() == MixturePrior.for_band(0.0, 0.05, 0.001)
    jeffreys = math.log(special.beta(0.5 + 20, 0.5) / special.beta(0.5, 0.5))
    # Every response from the version: the point mass at 1 explains it with probability 0.8.
    assert prior.log_marginal(20, 20) == pytest.approx(
        math.log(0.8 + 0.2 * math.exp(jeffreys)), rel=1e-12
    )
    # One response from elsewhere: only the Jeffreys component is left.
    assert prior.log_marginal(19, 20) == pytest.approx(
        math.log(0.2 * special.beta(19.5, 1.5) / special.beta(0.5, 0.5)), rel=1e-12
    )
    assert prior.log_martingale(19, 20, 1.0) == math.inf  # p = 1 cannot give a failure
    with pytest.raises(ValueError, match=r"location 0\.0 or 1\.0"):
        MixturePrior(((0.5, 1.0, 1.0),), ((0.5, 0.5),))
    with pytest.raises(ValueError, match="sum to 1"):
        MixturePrior(((0.5, 1.0, 1.0),), ((0.6, 1.0),))


def test_full_promotion_passes_after_144_responses() -> None:
    """n ln(1/0.95) >= ln(1000) + ln(1/0.8) first holds at n = 139: the 9th round of 16."""
    test = SplitTest({"1.0": 0.0, "2.0": 1.0}, tolerance=0.05, alpha=0.001)
    for _ in range(8):
        assert test.update({"2.0": 16}) is Decision.CONTINUE
    assert test.update({"2.0": 16}) is Decision.PASS
    assert test.decided_at == 144
    # One response from stable is not a failure of full promotion, but it costs requests.
    again = SplitTest({"1.0": 0.0, "2.0": 1.0}, tolerance=0.05, alpha=0.001)
    again.update({"1.0": 1, "2.0": 15})
    assert all(again.update({"2.0": 16}) is Decision.CONTINUE for _ in range(8))


@pytest.mark.parametrize("p", [0.0, 0.05, 0.15, 0.25, 0.9, 1.0])
@pytest.mark.parametrize("n", [1, 16, 160, 1600])
def test_acceptance_counts_are_where_the_martingale_stays_below_one_over_alpha(
    p: float, n: int
) -> None:
    prior = MixturePrior.for_band(0.2, 0.05, 0.001)
    level = math.log(1000)
    accepted = [s for s in range(n + 1) if prior.log_martingale(s, n, p) < level]
    lo, hi = stats.acceptance_counts(n, p, 0.001, prior)
    assert accepted == list(range(lo, hi + 1))
    # A warm start from any guess gives the same answer.
    assert stats.acceptance_counts(n, p, 0.001, prior, near=(0, n)) == (lo, hi)
    assert stats.acceptance_counts(n, p, 0.001, prior, near=(n, 0)) == (lo, hi)


def test_two_versions_share_alpha_only_when_their_priors_mirror() -> None:
    """The two intervals of a k = 2 test are one event only when the priors mirror each other;
    otherwise each sequence is a separate event and gets alpha / 2 (Bonferroni)."""
    default = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    assert default.priors["1.0"] == default.priors["2.0"].mirrored()  # exactly, not to an ulp
    assert default.alpha_per_version == 0.001 and default.decided_by == ("1.0",)
    mirrored = MixturePrior(((1.0, 2.0, 8.0),))
    custom = SplitTest(
        TWO, tolerance=0.05, alpha=0.001, priors={"1.0": mirrored.mirrored(), "2.0": mirrored}
    )
    assert custom.alpha_per_version == 0.001
    skewed = {"1.0": MixturePrior(((1.0, 8.0, 2.0),)), "2.0": MixturePrior(((1.0, 1.0, 1.0),))}
    split = SplitTest(TWO, tolerance=0.05, alpha=0.001, priors=skewed)
    assert split.alpha_per_version == 0.0005
    assert split.decided_by == ("1.0", "2.0")
    split.update({"1.0": 80, "2.0": 20})
    reference = cs_interval(20, 100, 0.0005, skewed["2.0"])
    assert split.intervals["2.0"].low == pytest.approx(reference.low, rel=1e-12)


def test_target_requests_known_value() -> None:
    # 2 v (ln 1000 + ln 1.25 + ln 2 / 2) / 0.05^2 with v = 0.16.
    expected = 2 * 0.16 * (math.log(1000) + math.log(1.25) + 0.5 * math.log(2)) / 0.0025
    assert stats.target_requests(0.2, 0.05, 0.001) == pytest.approx(expected)
    assert 950 < expected < 960


# ------------------------------------------------------------------------------------------
# SplitTest
# ------------------------------------------------------------------------------------------


def test_split_test_starts_undecided_with_bands() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    assert test.decision is Decision.CONTINUE
    assert test.n == 0 and test.counts == {"1.0": 0, "2.0": 0} and test.unexpected == {}
    for version, (low, high) in {"2.0": (0.15, 0.25), "1.0": (0.75, 0.85)}.items():
        assert test.bands[version].low == pytest.approx(low)
        assert test.bands[version].high == pytest.approx(high)
    assert test.intervals["2.0"] == Interval(0.0, 1.0)
    assert test.history == []
    assert test.alpha_per_version == 0.001


def test_bands_are_clipped_to_zero_and_one() -> None:
    test = SplitTest({"1.0": 0.98, "2.0": 0.02}, tolerance=0.05, alpha=0.01)
    assert test.bands["2.0"].low == 0.0
    assert test.bands["2.0"].high == pytest.approx(0.07)
    assert test.bands["1.0"].high == 1.0


def test_right_share_passes_and_intervals_are_mirror_images() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    decision = feed(test, 0.2, 1500)
    assert decision is Decision.PASS
    assert test.decided_at is not None and test.decided_at <= 1500
    low, high = test.intervals["2.0"].low, test.intervals["2.0"].high
    assert test.intervals["1.0"].low == pytest.approx(1 - high, abs=1e-12)
    assert test.intervals["1.0"].high == pytest.approx(1 - low, abs=1e-12)
    assert all(test.intervals[v].within(test.bands[v]) for v in test.versions)
    assert "inside its band" in test.reason


def test_mirror_matches_an_independent_sequence_for_the_second_version() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    cs = ConfidenceSequence(0.001, test.priors["1.0"])
    for stable, canary in [(13, 3), (12, 4), (26, 6), (50, 14), (300, 80)]:
        test.update({"1.0": stable, "2.0": canary})
        cs.update(stable, stable + canary)
        assert test.intervals["1.0"].low == pytest.approx(cs.interval.low, abs=1e-12)
        assert test.intervals["1.0"].high == pytest.approx(cs.interval.high, abs=1e-12)


def test_gross_misconfiguration_fails_in_few_requests() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    decision = feed(test, 0.5, 500, batch=16)
    assert decision is Decision.FAIL
    assert test.decided_at is not None and test.decided_at <= 130
    assert "outside [0.150, 0.250]" in test.reason or "outside [0.750, 0.850]" in test.reason


def test_straddling_continues_then_budget_makes_it_inconclusive() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001, max_requests=400)
    assert feed(test, 0.2, 300) is Decision.CONTINUE
    assert "straddles" in test.reason
    assert feed(test, 0.2, 100) is Decision.INCONCLUSIVE
    assert test.n == 400
    assert f"about {test.needed_requests()} requests would be needed" in test.reason
    assert 400 < test.needed_requests() < 2606


def test_inconclusive_says_which_tolerance_or_budget_would_decide() -> None:
    """A right share near the band edge (0.24 in 0.20 +- 0.05): the budget runs out; the
    reason names the requests a decision needs at 0.24 and a tolerance whose band holds the
    intervals now (and that tolerance would indeed have passed these data)."""
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001, max_requests=3000)
    assert feed(test, 0.24, 3000) is Decision.INCONCLUSIVE
    needed = test.needed_requests()
    assert needed > 3000
    match = re.search(r"or tolerance=([0-9.]+) \(the intervals now lie within", test.reason)
    assert match is not None, test.reason
    assert f"about {needed} requests would be needed" in test.reason
    wider = float(match.group(1))
    assert 0.05 < wider <= 0.1
    assert feed(SplitTest(TWO, tolerance=wider, alpha=0.001), 0.24, 3000) is Decision.PASS
    # Outside the band: only more requests (towards a FAIL) would decide.
    outside = SplitTest(TWO, tolerance=0.05, alpha=0.001, max_requests=1000)
    feed(outside, 0.26, 1000)
    assert outside.decision is Decision.INCONCLUSIVE
    assert "outside their bands; a FAIL needs about" in outside.reason


def test_unexpected_version_fails_at_once_and_is_reported() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    assert test.update({"1.0": 12, "2.0": 3, "3.0": 1}) is Decision.FAIL
    assert test.unexpected == {"3.0": 1}
    assert test.n == 16
    assert "'3.0' x1" in test.reason
    # Unknown versions with a zero count are not responses.
    other = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    assert other.update({"1.0": 12, "2.0": 4, "3.0": 0}) is Decision.CONTINUE
    assert other.unexpected == {}


def test_decision_is_final_but_later_batches_are_counted() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    feed(test, 0.5, 500, batch=16)
    decided_at = test.decided_at
    assert test.update({"1.0": 100, "2.0": 25, "9.9": 7}) is Decision.FAIL
    assert test.decided_at == decided_at
    assert test.unexpected == {"9.9": 7}
    assert test.history[-1][0] == test.n


def test_history_records_every_update() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.05)
    test.update({"1.0": 13, "2.0": 3})
    test.update({})
    test.update({"1.0": 12, "2.0": 4})
    assert [n for n, _ in test.history] == [16, 16, 32]
    assert set(test.history[-1][1]) == {"1.0", "2.0"}
    assert test.history[-1][1]["2.0"].within(test.history[0][1]["2.0"])


def test_shifting_share_fails_as_inconsistent() -> None:
    """A share that moves from one band edge to the other leaves no constant share possible."""
    test = SplitTest({"1.0": 0.5, "2.0": 0.5}, tolerance=0.2, alpha=0.001)
    assert test.update({"1.0": 3500, "2.0": 1500}) is Decision.CONTINUE  # on the edge 0.3
    assert test.update({"1.0": 1500, "2.0": 3500}) is Decision.FAIL  # now on the edge 0.7
    assert "became empty" in test.reason and "moved during the test" in test.reason


def test_three_versions_use_bonferroni_and_decide_together() -> None:
    expected = {"v1": 0.5, "v2": 0.25, "v3": 0.25}
    test = SplitTest(expected, tolerance=0.05, alpha=0.03)
    assert test.alpha_per_version == pytest.approx(0.01)
    assert test.priors["v2"] == MixturePrior.for_band(0.25, 0.05, 0.01)
    for _ in range(40):
        if test.update({"v1": 50, "v2": 25, "v3": 25}) is not Decision.CONTINUE:
            break
    assert test.decision is Decision.PASS
    assert all(test.intervals[v].within(test.bands[v]) for v in expected)


def test_three_versions_fail_when_one_share_is_wrong() -> None:
    test = SplitTest({"v1": 0.5, "v2": 0.25, "v3": 0.25}, tolerance=0.05, alpha=0.03)
    for _ in range(40):
        if test.update({"v1": 50, "v2": 45, "v3": 5}) is not Decision.CONTINUE:
            break
    assert test.decision is Decision.FAIL
    assert "'v2'" in test.reason or "'v3'" in test.reason


def test_needed_requests_before_data_and_at_the_band_edge() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    before = test.needed_requests()
    assert 700 < before < 2606
    edge = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    feed(edge, 0.25, 400)  # exactly on the band edge: no n decides
    assert edge.needed_requests() == stats.NEEDED_REQUESTS_CAP
    wrong = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    wrong.update({"1.0": 7, "2.0": 9})
    assert wrong.needed_requests() < 200


def schedule(test: SplitTest, concurrency: int, batches: int) -> list[int]:
    """The batch sizes ``test`` suggests, feeding it 80/20 batches of exactly those sizes."""
    sizes = []
    for _ in range(batches):
        size = test.next_batch_size(concurrency)
        if size == 0:
            break
        sizes.append(size)
        test.update({"1.0": size - size // 5, "2.0": size // 5})
    return sizes


def test_next_batch_size_is_one_round_of_concurrency() -> None:
    """The test looks after every round: a look is free for an anytime-valid sequence."""
    assert schedule(SplitTest(TWO, tolerance=0.05, alpha=0.001), 16, 25) == [16] * 25
    assert schedule(SplitTest(TWO, tolerance=0.05, alpha=0.001), 1, 3) == [1, 1, 1]
    assert schedule(SplitTest(TWO, tolerance=0.05, alpha=0.001), 64, 2) == [64, 64]


def test_next_batch_size_never_overshoots_max_requests() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001, max_requests=100)
    sizes = schedule(test, 16, 50)
    assert sum(sizes) == test.n == 100
    assert sizes[-1] == 100 - sum(sizes[:-1])
    assert test.next_batch_size(16) == 0
    assert test.decision is Decision.INCONCLUSIVE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expected": {"1.0": 1.0}}, "at least 2 versions"),
        ({"expected": {"1.0": 0.8, "2.0": 0.3}}, "must sum to 1"),
        ({"expected": {"1.0": 1.2, "2.0": -0.2}}, r"expected\['1.0'\]=1.2: must be a share"),
        ({"expected": {"1.0": 0.8, "": 0.2}}, "non-empty strings"),
        ({"expected": [0.8, 0.2]}, "must map at least 2 versions"),
        ({"tolerance": 0.0}, r"tolerance=0\.0: must be in \(0, 0\.5\]"),
        ({"tolerance": 0.7}, r"tolerance=0\.7"),
        ({"alpha": 0.5}, r"alpha=0\.5: must be in \(0, 0\.5\)"),
        ({"alpha": 0}, r"alpha=0: must be in \(0, 0\.5\)"),
        ({"alpha": "0.01"}, "alpha='0.01': must be a number"),
        ({"max_requests": 0}, "max_requests=0: must be an integer >= 1"),
        ({"max_requests": 10.5}, r"max_requests=10\.5: must be an integer"),
    ],
)
def test_split_test_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"expected": TWO, "tolerance": 0.05, "alpha": 0.001}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SplitTest(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"1.0": -1, "2.0": 3}, r"counts\['1.0'\]=-1: must be an integer >= 0"),
        ({"1.0": 1.5}, r"counts\['1.0'\]=1\.5: must be an integer"),
        ({"1.0": True}, r"counts\['1.0'\]=True: must be an integer"),
        ({1: 3}, "versions must be strings"),
        ([("1.0", 3)], "must be a mapping of version"),
    ],
)
def test_update_rejects_bad_counts(counts: object, message: str) -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    with pytest.raises(ValueError, match=message):
        test.update(counts)  # type: ignore[arg-type]
    assert test.n == 0


def test_next_batch_size_rejects_bad_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency=0: must be an integer >= 1"):
        SplitTest(TWO, tolerance=0.05, alpha=0.001).next_batch_size(0)


def test_custom_priors_are_checked_and_used() -> None:
    priors = {"1.0": MixturePrior(((1.0, 1.0, 1.0),)), "2.0": MixturePrior(((1.0, 1.0, 1.0),))}
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001, priors=priors)
    test.update({"1.0": 80, "2.0": 20})
    reference = cs_interval(20, 100, 0.001, priors["2.0"])
    assert test.intervals["2.0"].low == pytest.approx(reference.low, rel=1e-12)
    assert test.intervals["2.0"].high == pytest.approx(reference.high, rel=1e-12)
    with pytest.raises(ValueError, match="one MixturePrior for each expected version"):
        SplitTest(TWO, tolerance=0.05, alpha=0.001, priors={"1.0": priors["1.0"]})


def test_repr_shows_decision_counts_and_intervals() -> None:
    test = SplitTest(TWO, tolerance=0.05, alpha=0.001)
    test.update({"1.0": 8, "2.0": 8})
    text = repr(test)
    assert text.startswith("<SplitTest FAIL n=16") or text.startswith("<SplitTest CONTINUE n=16")
    assert "2.0: 8 [" in text and "in [0.150, 0.250]" in text


# ------------------------------------------------------------------------------------------
# expect_routed
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leak", "alpha", "n"),
    [(0.01, 0.001, 688), (0.05, 0.05, 59), (0.1, 0.001, 66), (0.001, 0.001, 6905), (0.5, 0.25, 2)],
)
def test_routed_requests_known_values(leak: float, alpha: float, n: int) -> None:
    assert routed_requests(leak, alpha) == n
    assert n == math.ceil(math.log(alpha) / math.log(1 - leak))
    # Minimal: n responses catch the leak with probability >= 1 - alpha, n - 1 do not.
    assert (1 - leak) ** n <= alpha < (1 - leak) ** (n - 1)


def test_routed_requests_rule_of_three() -> None:
    n = routed_requests(0.03, 0.05)
    assert 3 / n == pytest.approx(0.03, rel=0.05)


@pytest.mark.parametrize(
    ("leak", "alpha", "message"),
    [
        (0.0, 0.001, r"leak=0\.0: must be in \(0, 1\)"),
        (1.0, 0.001, r"leak=1\.0: must be in \(0, 1\)"),
        (0.01, 0.6, r"alpha=0\.6: must be in \(0, 0\.5\)"),
        ("1%", 0.001, "leak='1%': must be a number"),
    ],
)
def test_routed_requests_rejects_bad_arguments(leak: object, alpha: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        routed_requests(leak, alpha)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        RoutedTest("2.0", leak, alpha)  # type: ignore[arg-type]


def test_routed_test_passes_after_n_clean_responses() -> None:
    test = RoutedTest("2.0", leak=0.01, alpha=0.001)
    assert test.required == 688
    assert test.update({"2.0": 687}) is Decision.CONTINUE
    assert test.update({"2.0": 1}) is Decision.PASS
    assert test.decided_at == 688 and test.leaked == {}


def test_routed_test_fails_at_the_first_leak() -> None:
    test = RoutedTest("2.0", leak=0.01, alpha=0.001)
    assert test.update({"2.0": 15, "1.0": 1}) is Decision.FAIL
    assert test.leaked == {"1.0": 1}
    assert "'1.0' x1" in test.reason
    assert "RoutedTest FAIL" in repr(test)


def test_routed_test_batches_stop_at_required() -> None:
    test = RoutedTest("2.0", leak=0.01, alpha=0.001)
    while (size := test.next_batch_size(16)) > 0:
        test.update({"2.0": size})
    assert test.n == test.required and test.decision is Decision.PASS
    with pytest.raises(ValueError, match="version=''"):
        RoutedTest("", 0.01, 0.001)


# ------------------------------------------------------------------------------------------
# Planning
# ------------------------------------------------------------------------------------------


def test_fixed_requests_is_2606_for_the_issue_example() -> None:
    assert fixed_requests(0.2, 0.05, 0.001) == 2606
    z = sps.norm.ppf(0.95) + sps.norm.ppf(0.975)
    assert fixed_requests(0.5, 0.1, 0.05) == math.ceil(z**2 * 0.25 / 0.01)


def test_fixed_requests_spends_alpha_per_side() -> None:
    """The formula behind 2606 (z_{1-alpha} + z_{1-alpha/2}) is alpha *per side*: at that n a
    right share's two-sided 1 - alpha interval passes each band edge with probability ~alpha
    (exact binomial, skewed at 0.2: 0.0018 above, 0.0005 below), ~2 alpha in all, not
    alpha."""
    n = fixed_requests(0.2, 0.05, 0.001)
    s = sps.binom(n, 0.2)
    counts = range(n + 1)
    z = normal_quantile(1 - 0.001 / 2)

    def half(k: int) -> float:
        p = k / n
        return z * math.sqrt(p * (1 - p) / n)

    above = sum(s.pmf(k) for k in counts if k / n + half(k) > 0.25)
    below = sum(s.pmf(k) for k in counts if k / n - half(k) < 0.15)
    assert 0.00025 < below < above < 0.0025
    assert 0.0015 < above + below < 0.003  # ~2 alpha in all: alpha is per side


def test_plan_requests_budgets_below_the_fixed_design() -> None:
    plan = plan_requests(0.2, 0.05, 0.001)
    assert isinstance(plan, Plan)
    assert (plan.share, plan.tolerance, plan.alpha) == (0.2, 0.05, 0.001)
    assert plan.fixed_requests == 2606
    assert plan.expected_requests < 0.8 * plan.fixed_requests
    assert plan.expected_requests < plan.worst_case_requests
    # The worst case is a look of the default schedule (every round of 16).
    assert plan.worst_case_requests % 16 == 0
    # Full promotion: the point mass at 1 decides every run at the 9th look.
    full = plan_requests(1.0, 0.05, 0.001)
    assert full.expected_requests == full.worst_case_requests == 144


def test_plan_requests_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"tolerance=0: must be in \(0, 0\.5\]"):
        plan_requests(0.2, 0, 0.001)
    with pytest.raises(ValueError, match="concurrency=0"):
        plan_requests(0.2, 0.05, 0.001, concurrency=0)
