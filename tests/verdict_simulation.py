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
