"""Thousands of simulated verdicts at once: numpy evaluation of the exact decision rules of
:class:`pytest_canary.stats.SplitTest`.

Every decision of ``SplitTest`` compares a version's running count with the
:func:`~pytest_canary.stats.acceptance_counts` of its band edges at that look (see
``SplitTest`` and ``_edge_verdict`` in stats.py): the band edge ``p`` is excluded from above at
a look with ``s`` of ``n`` iff ``s > hi_n(p)`` and from below iff ``s < lo_n(p)``. The bounds
depend on ``n`` only, and the looks come after every round of ``concurrency`` requests, so the
bounds of all looks are computed once (pure Python, by the module under test) and every run is
then decided by array comparisons. ``tests/test_stats_simulation.py`` checks that this gives
exactly the decisions and request counts of ``SplitTest.update`` on the same draws.

What is not reproduced: the FAIL of a running intersection that became empty (a share that
moved). It can only happen when some confidence set excluded the true share, so
:attr:`Outcome.ever_missed` (computed exactly from the acceptance counts of the true shares)
bounds it; the simulations count it as a wrong verdict where that matters.

The benchmark (benchmarks/requests_to_verdict.py) uses the same functions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pytest_canary.stats import Decision, MixturePrior, SplitTest, acceptance_counts


@dataclass
class Outcome:
    """The verdicts of ``runs`` simulated SplitTest runs."""

    decisions: np.ndarray  # per run: 1 PASS, -1 FAIL, 0 INCONCLUSIVE
    requests: np.ndarray  # per run: n at the decision (or at the budget)
    ever_missed: np.ndarray  # per run: some C_n excluded its true share up to the decision

    def count(self, decision: Decision) -> int:
        code = {Decision.PASS: 1, Decision.FAIL: -1, Decision.INCONCLUSIVE: 0}[decision]
        return int(np.sum(self.decisions == code))

    def share_of(self, decision: Decision) -> float:
        return self.count(decision) / self.decisions.size

    @property
    def verdicts(self) -> Counter[Decision]:
        return Counter(
            {d: self.count(d) for d in (Decision.PASS, Decision.FAIL, Decision.INCONCLUSIVE)}
        )


def look_schedule(budget: int, concurrency: int) -> np.ndarray:
    """n at every look: one round of ``concurrency`` requests, the last one cut at ``budget``."""
    looks = list(range(concurrency, budget + 1, concurrency))
    if not looks or looks[-1] != budget:
        looks.append(budget)
    return np.array(looks, dtype=np.int64)


def bounds(ns: np.ndarray, p: float, alpha: float, prior: MixturePrior) -> np.ndarray:
    """``acceptance_counts`` at every n of ``ns`` (shape ``(len(ns), 2)``: lo, hi)."""
    out = np.empty((len(ns), 2), dtype=np.int64)
    near: tuple[int, int] | None = None
    last_n = 0
    for i, n in enumerate(ns.tolist()):
        if near is not None:
            shift = round((n - last_n) * p)
            near = (near[0] + shift, near[1] + shift)
        near = acceptance_counts(n, p, alpha, prior, near=near)
        out[i] = near
        last_n = n
    return out


def draw_counts(
    true_shares: Mapping[str, float], ns: np.ndarray, runs: int, seed: int
) -> dict[str, np.ndarray]:
    """Running per-version counts at every look (runs x looks), multinomial per round."""
    versions = list(true_shares)
    rng = np.random.default_rng(seed)
    sizes = np.diff(ns, prepend=0)
    draws = rng.multinomial(
        sizes[None, :], [true_shares[v] for v in versions], size=(runs, len(sizes))
    )
    totals = np.cumsum(draws, axis=1)
    return {v: totals[:, :, i] for i, v in enumerate(versions)}


def simulate_split(
    expected: Mapping[str, float],
    true_shares: Mapping[str, float],
    tolerance: float,
    alpha: float,
    *,
    runs: int,
    seed: int,
    budget: int,
    concurrency: int = 16,
    priors: Mapping[str, MixturePrior] | None = None,
    run_to_budget: bool = False,
) -> Outcome:
    """``runs`` seeded runs of ``SplitTest(expected, tolerance, alpha, budget, priors=priors)``
    looking after every round, at the true shares ``true_shares`` (which may name versions
    nobody expected only with share 0).

    ``run_to_budget``: :attr:`Outcome.ever_missed` covers every look up to the budget, not
    only those up to the decision.
    """
    ns = look_schedule(budget, concurrency)
    counts = draw_counts(true_shares, ns, runs, seed)
    return decide_split(expected, true_shares, tolerance, alpha, ns, counts, priors, run_to_budget)


def decide_split(
    expected: Mapping[str, float],
    true_shares: Mapping[str, float],
    tolerance: float,
    alpha: float,
    ns: np.ndarray,
    counts: Mapping[str, np.ndarray],
    priors: Mapping[str, MixturePrior] | None = None,
    run_to_budget: bool = False,
) -> Outcome:
    """The decisions of SplitTest on given running counts (runs x looks per version)."""
    probe = SplitTest(expected, tolerance, alpha, max_requests=int(ns[-1]), priors=priors)
    level_alpha = probe.alpha_per_version
    runs, looks = next(iter(counts.values())).shape
    passes = np.ones((runs, looks), dtype=bool)
    fails = np.zeros((runs, looks), dtype=bool)
    missed = np.zeros((runs, looks), dtype=bool)
    for version in probe.decided_by:
        band, prior, s = probe.bands[version], probe.priors[version], counts[version]
        above_low = np.ones((runs, looks), dtype=bool)
        below_high = np.ones((runs, looks), dtype=bool)
        if band.low > 0.0:
            lo_low, hi_low = bounds(ns, band.low, level_alpha, prior).T
            above_low = np.logical_or.accumulate(s > hi_low[None, :], axis=1)
            fails |= s < lo_low[None, :]
        if band.high < 1.0:
            lo_high, hi_high = bounds(ns, band.high, level_alpha, prior).T
            below_high = np.logical_or.accumulate(s < lo_high[None, :], axis=1)
            fails |= s > hi_high[None, :]
        passes &= above_low & below_high
    for version in expected:
        truth = true_shares.get(version, 0.0)
        prior = probe.priors[version]
        lo_true, hi_true = bounds(ns, truth, level_alpha, prior).T
        s = counts[version]
        missed |= (s < lo_true[None, :]) | (s > hi_true[None, :])
    decided = fails | passes
    any_decided = decided.any(axis=1)
    first = np.where(any_decided, decided.argmax(axis=1), looks - 1)
    rows = np.arange(runs)
    decisions = np.where(
        any_decided, np.where(fails[rows, first], -1, 1), 0
    )  # FAIL is checked before PASS at the same look, as SplitTest does
    requests = ns[first]
    until = np.arange(looks)[None, :] <= (looks - 1 if run_to_budget else first[:, None])
    ever_missed = (missed & until).any(axis=1)
    return Outcome(decisions.astype(np.int64), requests.astype(np.int64), ever_missed)


# ------------------------------------------------------------------------------------------
# HealthTest
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latencies:
    """A discrete latency distribution: ``values`` (seconds, ascending) with ``weights``."""

    values: np.ndarray
    weights: np.ndarray

    def level_of(self, uniform: np.ndarray) -> np.ndarray:
        """The level index of each uniform draw (inverse CDF)."""
        levels = len(self.values)
        if np.all(self.weights == self.weights[0]):
            return np.minimum((uniform * levels).astype(np.int64), levels - 1)
        cumulative = np.cumsum(self.weights)
        return np.minimum(np.searchsorted(cumulative, uniform, side="right"), levels - 1)

    def shifted(self, seconds: float) -> Latencies:
        """The same distribution with ``seconds`` added to every latency."""
        return Latencies(self.values + seconds, self.weights)

    def scaled(self, factor: float) -> Latencies:
        """The same distribution ``factor`` times slower: every quantile times ``factor``."""
        return Latencies(self.values * factor, self.weights)

    @classmethod
    def lognormal(cls, median: float, sigma: float, levels: int = 100) -> Latencies:
        """A lognormal distribution on ``levels`` equally likely values (its quantiles at the
        midpoints of ``levels`` equal slices): ties are rare, as with measured latencies."""
        from scipy import stats as sps

        probabilities = (np.arange(levels) + 0.5) / levels
        values = median * np.exp(sigma * sps.norm.ppf(probabilities))
        return cls(values, np.full(levels, 1.0 / levels))


@dataclass
class HealthOutcome:
    """The verdicts of ``runs`` simulated HealthTest runs (codes: 1 PASS, -1 FAIL, 0 none)."""

    decisions: np.ndarray  # the HealthTest verdict, as SplitTest's Outcome
    requests: np.ndarray  # n at the verdict (or the budget)
    errors: np.ndarray  # what the error aspect alone decides within the budget
    latency: np.ndarray  # what the latency aspect alone decides within the budget
    errors_at: np.ndarray  # n at the error aspect's decision (or the budget)
    latency_at: np.ndarray


def log_marginal(prior: MixturePrior, successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """``MixturePrior.log_marginal`` for arrays of counts."""
    from scipy import special

    terms = [
        math.log(w) - special.betaln(a, b) + special.betaln(a + successes, b + trials - successes)
        for w, a, b in prior.components
    ]
    for w, location in prior.atoms:
        explained = successes == 0 if location == 0.0 else successes == trials
        terms.append(np.where(explained, math.log(w), -np.inf))
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def line_maximum(
    e_c: np.ndarray, n_c: np.ndarray, e_s: np.ndarray, n_s: np.ndarray, d: float
) -> np.ndarray:
    """``analysis._line_maximum`` for arrays (its first value): the same safeguarded Newton
    iteration on the slope of ``-ln L`` along the segment, for every run at once."""
    from scipy import special

    if d <= 0.0 or d >= 1.0:
        raise ValueError("line_maximum: the margin d must be in (0, 1)")
    e_c, n_c, e_s, n_s = (x.astype(float) for x in (e_c, n_c, e_s, n_s))
    f_c, f_s = n_c - e_c, n_s - e_s
    low, high = 0.0, 1.0 - d
    # The slope at the ends (p_s = 0, p_c = 1): infinite where the data rule that end out.
    with np.errstate(divide="ignore", invalid="ignore"):
        at_low = -e_c / d + f_c / (1.0 - d) - np.where(e_s > 0, np.inf, 0.0) + f_s
        at_high = -e_c + np.where(f_c > 0, np.inf, 0.0) - e_s / high + f_s / d
    stop_low = ~(at_low < 0.0)
    stop_high = ~stop_low & ~(at_high > 0.0)
    a, b = np.full(e_c.shape, low), np.full(e_c.shape, high)
    pooled = (e_c + e_s - n_c * d) / np.maximum(n_c + n_s, 1.0)
    margin = 0.25 * (high - low) * 1e-6
    y = np.clip(pooled, low + margin, high - margin)
    for _ in range(40):
        p = y + d
        g = -e_c / p + f_c / (1.0 - p) - e_s / y + f_s / (1.0 - y)
        h = e_c / (p * p) + f_c / ((1.0 - p) ** 2) + e_s / (y * y) + f_s / ((1.0 - y) ** 2)
        a = np.where(g < 0.0, y, a)
        b = np.where(g > 0.0, y, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = y - g / h
        step = np.where((step > a) & (step < b), step, 0.5 * (a + b))
        step = np.where(g == 0.0, y, step)
        done = np.abs(step - y) <= 1e-13 * y
        y = step
        if done.all():
            break
    y = np.where(stop_low, low, np.where(stop_high, high, y))
    p = y + d
    with np.errstate(divide="ignore", invalid="ignore"):
        total = special.xlogy(e_c, p) + special.xlog1py(f_c, -p)
        total = total + special.xlogy(e_s, y) + special.xlog1py(f_s, -y)
    return total


def line_lower_bound(
    e_c: np.ndarray, n_c: np.ndarray, e_s: np.ndarray, n_s: np.ndarray, d: float
) -> np.ndarray:
    """A lower bound of :func:`line_maximum`: the joint log-likelihood at one point of the
    segment (the stable's observed rate, moved inside it)."""
    from scipy import special

    e_c, n_c, e_s, n_s = (x.astype(float) for x in (e_c, n_c, e_s, n_s))
    y = np.clip(e_s / np.maximum(n_s, 1.0), 1e-9, 1.0 - d - 1e-9)
    p = y + d
    return (
        special.xlogy(e_c, p)
        + special.xlog1py(n_c - e_c, -p)
        + special.xlogy(e_s, y)
        + special.xlog1py(n_s - e_s, -y)
    )


def order_statistic(cumulative: np.ndarray, values: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The k-th smallest (1-indexed) of each run's answers from its cumulative histogram
    (NaN where k is 0 or beyond the answers)."""
    rows, levels = cumulative.shape
    valid = (k >= 1) & (k <= cumulative[:, -1])
    # Each row is non-decreasing: offset row r by r * (largest count + 1) and the whole array
    # is sorted, so one searchsorted finds every row's first level with count >= k.
    stride = int(cumulative[:, -1].max(initial=0)) + 1
    offsets = np.arange(rows, dtype=np.int64) * stride
    flat = (cumulative + offsets[:, None]).ravel()
    position = np.searchsorted(flat, np.maximum(k, 1) + offsets, side="left")
    index = np.clip(position - offsets // stride * levels, 0, levels - 1)
    return np.where(valid, values[index], np.nan)


def simulate_health(
    *,
    canary_share: float,
    error_rates: tuple[float, float],
    latencies: tuple[Latencies, Latencies],
    max_error_increase: float,
    max_latency_increase: float,
    quantile: float,
    alpha: float,
    runs: int,
    seed: int,
    budget: int,
    concurrency: int = 16,
    record: list[dict[str, np.ndarray]] | None = None,
    only: str | None = None,
    error_prior: MixturePrior | None = None,
    latency_prior: MixturePrior | None = None,
    unattributed: tuple[float, float] = (0.0, 0.0),
    timeout: float = 10.0,
) -> HealthOutcome:
    """``runs`` seeded runs of HealthTest (canary, stable) looking after every round.

    Each request goes to the canary with probability ``canary_share``, fails with its
    version's error rate, and takes a latency drawn from its version's distribution. The two
    aspects are also followed on their own to the budget (``errors``/``latency``): the error
    probability of each test, whatever the other one decides. ``record`` receives each
    round's draws (for replaying them into HealthTest). ``only="errors"`` (``"latency"``)
    follows that aspect alone and skips the verdict (all its codes 0): faster, for the error
    probability of one test. ``unattributed``: the share of each version's requests that fail
    naming no version (before its error rate applies); HealthTest takes them as failures of
    latency ``timeout`` that count against the canary for PASS only.
    """
    from pytest_canary.analysis import HealthTest

    probe = HealthTest(
        max_error_increase=max_error_increase,
        max_latency_increase=max_latency_increase,
        quantile=quantile,
        alpha=alpha,
        max_requests=budget,
        error_prior=error_prior,
        latency_prior=latency_prior,
    )
    level = probe.latency_alpha
    error_level = -math.log(probe.error_alpha)
    # The quantile sequence's acceptance counts at every n up to the budget, looked up by n.
    rank_table = np.zeros((budget + 1, 2), dtype=np.int64)
    if only != "errors":
        rank_table[1:] = bounds(np.arange(1, budget + 1), quantile, level, probe.latency_prior)

    rng = np.random.default_rng(seed)
    ns = look_schedule(budget, concurrency)
    sizes = np.diff(ns, prepend=0)
    canary_lat, stable_lat = latencies
    canary_n = np.zeros(runs, dtype=np.int64)
    stable_n = np.zeros(runs, dtype=np.int64)
    canary_e = np.zeros(runs, dtype=np.int64)
    stable_e = np.zeros(runs, dtype=np.int64)
    lost = np.zeros(runs, dtype=np.int64)  # failed naming no version
    canary_h = np.zeros((runs, len(canary_lat.values)), dtype=np.int64)
    stable_h = np.zeros((runs, len(stable_lat.values)), dtype=np.int64)
    overall = np.zeros(runs, dtype=np.int64)
    overall_at = np.full(runs, budget, dtype=np.int64)
    aspect_err = np.zeros(runs, dtype=np.int64)  # decided inside HealthTest (final)
    aspect_lat = np.zeros(runs, dtype=np.int64)
    alone_err = np.zeros(runs, dtype=np.int64)  # decided on its own, to the budget
    alone_lat = np.zeros(runs, dtype=np.int64)
    alone_err_at = np.full(runs, budget, dtype=np.int64)
    alone_lat_at = np.full(runs, budget, dtype=np.int64)
    err_limit = max_error_increase
    lat_limit = 1.0 + max_latency_increase
    one_sided_after = probe._one_sided_after
    run_of = np.repeat(np.arange(runs), concurrency)
    last_run_of = np.repeat(np.arange(runs), int(sizes[-1]))  # a shorter last round
    err_now = np.zeros(runs, dtype=np.int64)
    lat_now = np.zeros(runs, dtype=np.int64)
    for look, size in enumerate(sizes.tolist()):
        # Per request: its version, whether it fails, its latency level (the same random
        # stream whatever the decisions, so a recorded run replays exactly).
        who = run_of if size == concurrency else last_run_of
        canary_hit = rng.random(runs * size) < canary_share
        fails = rng.random(runs * size)
        level_draw = rng.random(runs * size)
        # A request fails naming no version below its version's unattributed share, with an
        # error naming its version in the next error_rate of the uniform draw.
        u_c, u_s = unattributed
        missing = np.where(canary_hit, fails < u_c, fails < u_s)
        new_lost = np.bincount(who[missing], minlength=runs)
        canary_hit_named = canary_hit & ~missing
        stable_named = ~canary_hit & ~missing
        to_canary = np.bincount(who[canary_hit_named], minlength=runs)
        to_stable = size - to_canary - new_lost
        new_ce = np.bincount(who[canary_hit_named & (fails < u_c + error_rates[0])], minlength=runs)
        new_se = np.bincount(who[stable_named & (fails < u_s + error_rates[1])], minlength=runs)
        canary_level = canary_lat.level_of(level_draw[canary_hit_named])
        stable_level = stable_lat.level_of(level_draw[stable_named])
        if record is not None:
            record.append(
                {"canary": to_canary, "canary_errors": new_ce, "stable": to_stable,
                 "stable_errors": new_se, "canary_runs": who[canary_hit_named],
                 "canary_levels": canary_level, "stable_runs": who[stable_named],
                 "stable_levels": stable_level, "unattributed": new_lost}
            )  # fmt: skip
        if only != "errors":
            canary_h += np.bincount(
                who[canary_hit_named] * canary_h.shape[1] + canary_level, minlength=canary_h.size
            ).reshape(canary_h.shape)
            stable_h += np.bincount(
                who[stable_named] * stable_h.shape[1] + stable_level, minlength=stable_h.size
            ).reshape(stable_h.shape)
        canary_n += to_canary
        stable_n += to_stable
        canary_e += new_ce
        stable_e += new_se
        lost += new_lost
        n = ns[look]
        live = (overall == 0) & (overall_at == budget) & (only is None)
        # Errors, where someone still needs them.
        todo = np.flatnonzero((live & (aspect_err == 0)) | (alone_err == 0))
        if only == "latency":
            todo = todo[:0]
        err_now[:] = 0
        if todo.size:
            se, sn, u = stable_e[todo], stable_n[todo], lost[todo]

            def excluded(
                ce: np.ndarray,
                cn: np.ndarray,
                above: bool,
                se: np.ndarray = se,
                sn: np.ndarray = sn,
            ) -> np.ndarray:
                with np.errstate(invalid="ignore", divide="ignore"):
                    observed = ce / cn - se / sn
                side = observed > err_limit if above else observed < err_limit
                marginals = log_marginal(probe.error_prior, ce, cn) + log_marginal(
                    probe.error_prior, se, sn
                )
                # Any point of the line bounds its maximum likelihood from below, so the
                # statistic from above: where that bound is under the level already, the line
                # is not excluded and the Newton iteration can be skipped.
                maybe = (cn > 0) & (sn > 0) & side
                maybe[maybe] = (
                    marginals[maybe]
                    - line_lower_bound(ce[maybe], cn[maybe], se[maybe], sn[maybe], err_limit)
                    >= error_level
                )
                statistic = np.full(ce.shape, -np.inf)
                statistic[maybe] = marginals[maybe] - line_maximum(
                    ce[maybe], cn[maybe], se[maybe], sn[maybe], err_limit
                )
                return maybe & (statistic >= error_level)

            # FAIL on the attributed answers, PASS with the unattributed failures as canary
            # errors (HealthTest._error_decision).
            ce, cn = canary_e[todo], canary_n[todo]
            fail = excluded(ce, cn, above=True)
            pass_ = excluded(ce + u, cn + u, above=False) if u.any() else excluded(ce, cn, False)
            err_now[todo] = np.where(fail, -1, np.where(pass_, 1, 0))
        # Latency, likewise.
        todo = np.flatnonzero((live & (aspect_lat == 0)) | (alone_lat == 0))
        if only == "errors":
            todo = todo[:0]
        lat_now[:] = 0
        if todo.size:
            u = lost[todo]
            c_lo = rank_table[canary_n[todo], 0]
            c_hi = rank_table[canary_n[todo] + u, 1]  # with the unattributed failures
            s_lo, s_hi = rank_table[stable_n[todo]].T
            c_cum = np.cumsum(canary_h[todo], axis=1)
            s_cum = np.cumsum(stable_h[todo], axis=1)
            cq_low = order_statistic(c_cum, canary_lat.values, c_lo)
            # The canary's histogram with one more level at the timeout for its upper bound.
            worst_cum = np.concatenate([c_cum, c_cum[:, -1:] + u[:, None]], axis=1)
            worst_values = np.append(canary_lat.values, timeout)
            cq_high = order_statistic(worst_cum, worst_values, c_hi + 1)
            sq_low = order_statistic(s_cum, stable_lat.values, s_lo)
            sq_high = order_statistic(s_cum, stable_lat.values, s_hi + 1)
            with np.errstate(invalid="ignore"):
                lat_pass = cq_high <= lat_limit * sq_low  # NaN compares False: no bound yet
                lat_fail = cq_low > lat_limit * sq_high
            lat_now[todo] = np.where(lat_fail, -1, np.where(lat_pass, 1, 0))
        # Each aspect on its own: the first decision is final.
        new = (alone_err == 0) & (err_now != 0)
        alone_err[new], alone_err_at[new] = err_now[new], n
        new = (alone_lat == 0) & (lat_now != 0)
        alone_lat[new], alone_lat_at[new] = lat_now[new], n
        # The HealthTest verdict, for runs still undecided.
        update = live & (aspect_err == 0)
        aspect_err[update] = err_now[update]
        update = live & (aspect_lat == 0)
        aspect_lat[update] = lat_now[update]
        failed = live & ((aspect_err == -1) | (aspect_lat == -1))
        passed = live & ~failed & (aspect_err == 1) & (aspect_lat == 1)
        quiet = live & ~failed & ~passed & ((canary_n == 0) | (stable_n == 0))
        quiet &= n >= one_sided_after
        overall[failed], overall_at[failed] = -1, n
        overall[passed], overall_at[passed] = 1, n
        overall_at[quiet] = n  # INCONCLUSIVE (code 0) at this n
        settled = (only is not None or not (overall_at == budget).any()) and (
            (only == "latency" or (alone_err != 0).all())
            and (only == "errors" or (alone_lat != 0).all())
        )
        if settled:
            break
    return HealthOutcome(overall, overall_at, alone_err, alone_lat, alone_err_at, alone_lat_at)
