"""Requests to a verdict: pytest-canary's sequential tests against fixed-N and upstream designs.

Run from the repository root (deterministic, seeded; about a minute):

    python benchmarks/requests_to_verdict.py [--runs 2000] [--seed 7]

Prints Markdown tables (copied into benchmarks/README.md):

1. ``SplitTest`` (expected canary share 0.20 +- 0.05, alpha = 0.001, a look after every round
   of 16 requests) at true shares 0.20, 0.22, 0.24, 0.30, 0.50 and full promotion: mean /
   median / p95 requests to a verdict and the verdicts, side by side with the *exact* fixed-N
   design with the same guarantees (Clopper-Pearson, binomial probabilities: 2,689 requests)
   and with ``plan_requests``' budget.
2. What the look schedule and the point mass save, on the same draws.
3. The upstream designs (Istio, ingress-nginx, Gateway API conformance) with their error rates
   computed exactly from the binomial distribution, and ``SplitTest`` on the same splits.
4. Prior ablation: how the choice of the mixture prior moves the mean requests.
5. Three versions: Bonferroni (what SplitTest does) against a Dirichlet-multinomial mixture.
6. ``HealthTest`` (``expect_healthy``): requests to a verdict for healthy and unhealthy
   canaries, the joint error region against a union bound, and the priors' ablation.

Simulation: numpy ``Generator`` seeded per scenario; per-round counts are multinomial draws at
the true shares, and every run is decided by SplitTest's own decision rule evaluated for all
runs at once (``tests/verdict_simulation.py``, checked against ``SplitTest.update`` run by run
in ``tests/test_stats_simulation.py``). numpy and scipy are used here and in the tests only;
``pytest_canary.stats`` is pure Python.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import special as spf
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "tests"))

from verdict_simulation import (  # noqa: E402
    HealthOutcome,
    Latencies,
    Outcome,
    decide_split,
    draw_counts,
    look_schedule,
    simulate_health,
    simulate_split,
)

from pytest_canary.analysis import (  # noqa: E402
    ERROR_MARGIN,
    LATENCY_MARGIN,
    QUANTILE,
    HealthTest,
)
from pytest_canary.stats import (  # noqa: E402
    BROAD_WEIGHT,
    FIRST_BATCH,
    Decision,
    MixturePrior,
    cs_interval,
    fixed_requests,
    plan_requests,
    target_requests,
)

EXPECTED = 0.20
TOLERANCE = 0.05
ALPHA = 0.001
CONCURRENCY = 16
DEFAULT_BUDGET = 20_000  # --canary-max-requests' default
TRUE_SHARES = (0.20, 0.22, 0.24, 0.30, 0.50)

PriorFactory = Callable[[float, float, float], MixturePrior]


def two(canary_share: float) -> dict[str, float]:
    return {"stable": 1.0 - canary_share, "canary": canary_share}


def simulate(
    expected: float,
    true_share: float,
    *,
    runs: int,
    seed: int,
    budget: int = DEFAULT_BUDGET,
    prior: PriorFactory | None = None,
) -> Outcome:
    """``runs`` SplitTest runs at ``true_share`` until a verdict (or ``budget``), seeded."""
    priors = None
    if prior is not None:
        canary_prior = prior(expected, TOLERANCE, ALPHA)
        priors = {"stable": canary_prior.mirrored(), "canary": canary_prior}
    return simulate_split(
        two(expected),
        two(true_share),
        TOLERANCE,
        ALPHA,
        runs=runs,
        seed=seed,
        budget=budget,
        concurrency=CONCURRENCY,
        priors=priors,
    )


# ------------------------------------------------------------------------------------------
# The exact fixed design
# ------------------------------------------------------------------------------------------


def clopper_pearson_ends(n: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided ``1 - level`` Clopper-Pearson interval of every count 0..n."""
    s = np.arange(n + 1)
    low = np.where(s == 0, 0.0, sps.beta.ppf(level / 2, s, n - s + 1))
    high = np.where(s == n, 1.0, sps.beta.ppf(1 - level / 2, s + 1, n - s))
    return low, high


def exact_fixed_verdicts(n: int, true_share: float) -> dict[Decision, float]:
    """Exact verdict probabilities of the fixed design: PASS when the Clopper-Pearson interval
    at level 2 alpha (alpha per side, so a wrong share PASSes with probability <= alpha) lies
    inside the band, FAIL when it lies outside, else inconclusive."""
    low, high = clopper_pearson_ends(n, 2 * ALPHA)
    pmf = sps.binom.pmf(np.arange(n + 1), n, true_share)
    band_low, band_high = EXPECTED - TOLERANCE, EXPECTED + TOLERANCE
    inside = (low >= band_low) & (high <= band_high)
    outside = (high < band_low) | (low > band_high)
    return {
        Decision.PASS: float(pmf[inside].sum()),
        Decision.FAIL: float(pmf[outside].sum()),
        Decision.INCONCLUSIVE: float(pmf[~inside & ~outside].sum()),
    }


def exact_fixed_requests(share: float = EXPECTED) -> int:
    """The smallest n whose exact fixed design PASSes a right share with probability
    >= 1 - alpha (and, by the level 2 alpha interval, a wrong one with probability <= alpha):
    the guarantees of SplitTest, without the normal approximation of ``fixed_requests``."""
    n = fixed_requests(share, TOLERANCE, ALPHA)
    while exact_fixed_verdicts(n, share)[Decision.PASS] >= 1 - ALPHA:
        n -= 1
    while exact_fixed_verdicts(n, share)[Decision.PASS] < 1 - ALPHA:
        n += 1
    return n


def oracle_fixed_requests(true_share: float) -> int:
    """The fixed n that reaches the right verdict with probability ~1 - alpha at ``true_share``
    (normal approximation, alpha per side): what a fixed design would need if it knew the true
    share in advance (a sequential test adapts without knowing it)."""
    z = sps.norm.ppf(1 - ALPHA) + sps.norm.ppf(1 - ALPHA / 2)
    low, high = EXPECTED - TOLERANCE, EXPECTED + TOLERANCE
    distance = min(abs(true_share - low), abs(true_share - high))
    return math.ceil(z * z * true_share * (1 - true_share) / distance**2)


def percent(x: float) -> str:
    if x == 0:
        return "0%"
    if x < 0.0001:
        return f"{x:.1e}"
    if x < 0.01:
        return f"{100 * x:.2f}%"
    return f"{100 * x:.1f}%"


def verdict_text(shares: dict[Decision, float]) -> str:
    parts = [
        f"{name} {percent(shares[d])}"
        for name, d in (
            ("PASS", Decision.PASS),
            ("FAIL", Decision.FAIL),
            ("inc.", Decision.INCONCLUSIVE),
        )
        if shares.get(d, 0.0) > 0
    ]
    return ", ".join(parts)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def outcome_shares(outcome: Outcome) -> dict[Decision, float]:
    return {d: outcome.share_of(d) for d in (Decision.PASS, Decision.FAIL, Decision.INCONCLUSIVE)}


# ------------------------------------------------------------------------------------------
# 1. Sequential vs fixed N
# ------------------------------------------------------------------------------------------


def section_sequential(runs: int, seed: int) -> str:
    exact_n = exact_fixed_requests()
    plan = plan_requests(EXPECTED, TOLERANCE, ALPHA, concurrency=CONCURRENCY)
    rows = []
    for index, share in enumerate(TRUE_SHARES):
        result = simulate(EXPECTED, share, runs=runs, seed=seed + index)
        decided = result.decisions != 0
        mean = float(result.requests[decided].mean()) if decided.any() else math.nan
        oracle = oracle_fixed_requests(share)
        rows.append(
            [
                f"{share:.2f}",
                "right (in band)" if abs(share - EXPECTED) <= TOLERANCE else "wrong",
                f"{mean:,.0f}" + ("" if decided.all() else f" ({decided.mean():.0%} decided)"),
                f"{np.median(result.requests):,.0f}",
                f"{np.percentile(result.requests, 95):,.0f}",
                f"{mean / exact_n:.3f}x",
                verdict_text(outcome_shares(result)),
                verdict_text(exact_fixed_verdicts(exact_n, share)),
                f"{oracle:,} ({mean / oracle:.2f}x)",
            ]
        )
    full = simulate_split(
        {"stable": 0.0, "canary": 1.0},
        {"stable": 0.0, "canary": 1.0},
        TOLERANCE,
        ALPHA,
        runs=runs,
        seed=seed + 50,
        budget=DEFAULT_BUDGET,
    )
    rows.append(
        [
            "1.00 of 1.00",
            "full promotion",
            f"{full.requests.mean():,.0f}",
            f"{np.median(full.requests):,.0f}",
            f"{np.percentile(full.requests, 95):,.0f}",
            "-",
            verdict_text(outcome_shares(full)),
            "-",
            "-",
        ]
    )
    header = [
        "true share",
        "config",
        "mean n",
        "median n",
        "p95 n",
        f"mean / exact fixed ({exact_n:,})",
        f"sequential verdicts ({runs:,} runs)",
        f"exact fixed-N verdicts (n = {exact_n:,})",
        "fixed-N sized for this share (mean / it)",
    ]
    text = [
        f"### Requests to a verdict: expected {EXPECTED:.2f} +- {TOLERANCE}, alpha = {ALPHA}, "
        f"budget {DEFAULT_BUDGET:,}",
        "",
        table(header, rows),
        "",
        f"Exact fixed design: n = {exact_n:,}, the smallest n whose Clopper-Pearson interval "
        f"(alpha per side: a wrong share PASSes with probability <= alpha) lies in the band "
        f"with probability >= 1 - alpha at the right share; the normal approximation "
        f"(`stats.fixed_requests`) says {fixed_requests(EXPECTED, TOLERANCE, ALPHA):,}. "
        f"`plan_requests({EXPECTED}, {TOLERANCE}, {ALPHA})`: expected_requests = "
        f"{plan.expected_requests:,} (an upper bound), worst_case_requests = "
        f"{plan.worst_case_requests:,} (conservative p95). Prior concentration c = n* = "
        f"{target_requests(EXPECTED, TOLERANCE, ALPHA):.0f}. Mean n of a row with undecided "
        "runs is over the decided ones. Last column: the fixed n that would reach the right "
        "verdict with probability ~1 - alpha if the true share were known in advance "
        "(distance to the nearest band edge in place of the tolerance).",
    ]
    return "\n".join(text)


# ------------------------------------------------------------------------------------------
# 2. What the schedule and the point mass save
# ------------------------------------------------------------------------------------------


def growing_schedule(budget: int) -> np.ndarray:
    """The previous look schedule: 16 requests, then batches of 25% of the requests so far,
    rounded up to the concurrency."""
    looks, n = [], 0
    while n < budget:
        size = max(FIRST_BATCH, math.ceil(0.25 * n))
        size = min(-(-size // CONCURRENCY) * CONCURRENCY, budget - n)
        n += size
        looks.append(n)
    return np.array(looks, dtype=np.int64)


def section_savings(runs: int, seed: int) -> str:
    exact_n = exact_fixed_requests()
    rows = []
    for index, share in enumerate((0.20, 0.22, 0.30, 0.50)):
        truth = two(share)
        means = []
        for ns in (growing_schedule(DEFAULT_BUDGET), look_schedule(DEFAULT_BUDGET, CONCURRENCY)):
            counts = draw_counts(truth, ns, runs, seed + 200 + index)
            outcome = decide_split(two(EXPECTED), truth, TOLERANCE, ALPHA, ns, counts)
            means.append(float(outcome.requests.mean()))
        rows.append(
            [
                f"expect_split(0.20), true {share:.2f}",
                f"{means[0]:,.0f} ({means[0] / exact_n:.2f}x)",
                f"{means[1]:,.0f} ({means[1] / exact_n:.2f}x)",
                f"{means[1] / means[0]:.2f}x",
            ]
        )
    full = {"stable": 0.0, "canary": 1.0}
    jeffreys = MixturePrior(((1.0, 0.5, 0.5),))
    ns = look_schedule(DEFAULT_BUDGET, CONCURRENCY)
    counts = draw_counts(full, ns, runs, seed + 210)
    jeffreys_priors = {"stable": jeffreys, "canary": jeffreys}
    before = decide_split(full, full, TOLERANCE, ALPHA, ns, counts, jeffreys_priors)
    after = decide_split(full, full, TOLERANCE, ALPHA, ns, counts)
    rows.append(
        [
            "expect_split(1.0), full promotion: Jeffreys prior -> point mass at 1",
            f"{before.requests.mean():,.0f}",
            f"{after.requests.mean():,.0f}",
            f"{after.requests.mean() / before.requests.mean():.2f}x",
        ]
    )
    return "\n".join(
        [
            f"### What changed: looks after every round, point mass at 0/1 ({runs:,} runs, same "
            "draws per row)",
            "",
            table(["scenario", "before: mean n", "now: mean n", "now / before"], rows),
            "",
            "Before: a look after batches growing ~1.25x (16, 16, 16, 16, 16, 32, 32, ...); now a "
            "look after every round of 16. Both are anytime-valid; the saving is the overshoot "
            "past the first round that decides. Multiples: of the exact fixed design "
            f"({exact_n:,}).",
        ]
    )


# ------------------------------------------------------------------------------------------
# 3. Upstream designs, exact
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    name: str
    requests: int
    expected: float  # share the count below refers to
    accept_low: int  # the try passes iff accept_low <= count <= accept_high
    accept_high: int
    rule: str
    gross: float  # a grossly wrong true share for the same expectation
    retries: str
    tries: int  # attempts a retry loop allows (for the "with retries" columns)


UPSTREAM = (
    Upstream(
        "Istio integration test (traffic shifting)",
        100,
        0.50,
        40,
        60,
        "±10 points (40..60 of 100)",
        0.60,
        "retried for up to 30 s",
        3,
    ),
    Upstream(
        "ingress-nginx e2e (canary weight 50)",
        200,
        0.50,
        80,
        120,
        "each side ≥ 80 of 200",
        0.60,
        "none",
        1,
    ),
    Upstream(
        "Gateway API conformance (HTTPRoute weights)",
        500,
        0.30,
        125,
        175,
        "±5 points (125..175 of 500)",
        0.40,
        "up to 10 retries",
        11,
    ),
)


def section_upstream(runs: int, seed: int) -> str:
    rows = []
    for design in UPSTREAM:
        right_pass = sps.binom.cdf(design.accept_high, design.requests, design.expected) - (
            sps.binom.cdf(design.accept_low - 1, design.requests, design.expected)
        )
        gross_pass = sps.binom.cdf(design.accept_high, design.requests, design.gross) - (
            sps.binom.cdf(design.accept_low - 1, design.requests, design.gross)
        )
        flake = 1 - right_pass
        rows.append(
            [
                design.name,
                f"{design.requests}",
                design.rule,
                percent(flake),
                percent(flake**design.tries) if design.tries > 1 else "-",
                f"{design.gross:.2f} vs {design.expected:.2f}",
                percent(gross_pass),
                percent(1 - (1 - gross_pass) ** design.tries) if design.tries > 1 else "-",
            ]
        )
    # Ours on the same splits, default tolerance and alpha.
    ours_rows = []
    for index, (expected, gross) in enumerate(((0.50, 0.60), (0.30, 0.40))):
        fixed_n = fixed_requests(expected, TOLERANCE, ALPHA)
        right = simulate(expected, expected, runs=runs, seed=seed + 10 + index)
        wrong = simulate(expected, gross, runs=runs, seed=seed + 20 + index)
        ours_rows.append(
            [
                f"SplitTest {expected:.2f} ± {TOLERANCE}, alpha {ALPHA} (simulated, {runs:,} runs)",
                f"mean {right.requests.mean():,.0f} (fixed-N {fixed_n:,})",
                f"wrong FAIL {percent(right.share_of(Decision.FAIL))} (bound {ALPHA:.1%})",
                f"{gross:.2f} vs {expected:.2f}",
                f"PASS {percent(wrong.share_of(Decision.PASS))}; FAIL after mean "
                f"{wrong.requests.mean():,.0f}, p95 {np.percentile(wrong.requests, 95):,.0f}",
            ]
        )
    header = [
        "upstream design",
        "requests / try",
        "passes when",
        "false FAIL / try (right share)",
        "false FAIL, all tries",
        "gross error",
        "P(PASS) / try",
        "P(PASS), any try",
    ]
    return "\n".join(
        [
            "### Upstream designs (error rates exact, binomial)",
            "",
            table(header, rows),
            "",
            'Retry columns ("all tries" / "any try"): Istio retries for up to 30 s, so its '
            "number of tries depends on timing; 3 tries are shown for illustration. Gateway API "
            "conformance allows up to 10 retries (11 tries). Retries hide flakes and multiply "
            "the chance that a wrong split passes: 1 - (1 - P(PASS))^tries.",
            "",
            table(
                ["ours", "requests when right", "false FAIL", "gross error", "gross error outcome"],
                ours_rows,
            ),
        ]
    )


# ------------------------------------------------------------------------------------------
# 4. Prior ablation
# ------------------------------------------------------------------------------------------


def focused(scale: float, broad: float) -> PriorFactory:
    def make(share: float, tolerance: float, alpha: float) -> MixturePrior:
        c = scale * target_requests(share, tolerance, alpha)
        return MixturePrior.for_band(share, tolerance, alpha, concentration=c, broad_weight=broad)

    return make


def three_components(share: float, tolerance: float, alpha: float) -> MixturePrior:
    c = target_requests(share, tolerance, alpha)
    spread = share * (1 - share) / tolerance**2  # prior sd = tolerance
    return MixturePrior(
        (
            (0.6, c * share, c * (1 - share)),
            (0.2, spread * share, spread * (1 - share)),
            (0.2, 0.5, 0.5),
        )
    )


def jeffreys(share: float, tolerance: float, alpha: float) -> MixturePrior:
    return MixturePrior(((1.0, 0.5, 0.5),))


ABLATION: tuple[tuple[str, PriorFactory | None], ...] = (
    (f"**default**: {1 - BROAD_WEIGHT:g} Beta(c=n*) + {BROAD_WEIGHT:g} Jeffreys", None),
    ("c = n*/10", focused(0.1, BROAD_WEIGHT)),
    ("c = n*/2", focused(0.5, BROAD_WEIGHT)),
    ("c = 2 n*", focused(2.0, BROAD_WEIGHT)),
    ("c = 10 n*", focused(10.0, BROAD_WEIGHT)),
    ("c = 1000 n* (~ point mass at 0.20)", focused(1000.0, BROAD_WEIGHT)),
    ("Jeffreys weight 0.1", focused(1.0, 0.1)),
    ("Jeffreys weight 0.3", focused(1.0, 0.3)),
    ("no Jeffreys component", focused(1.0, 0.0)),
    ("Jeffreys Beta(1/2, 1/2) only", jeffreys),
    ("0.6 Beta(c=n*) + 0.2 Beta(sd=tol) + 0.2 Jeffreys", three_components),
)

ABLATION_SHARES = (0.20, 0.22, 0.30, 0.50)


def section_ablation(runs: int, seed: int) -> str:
    rows = []
    for name, prior in ABLATION:
        means = [
            simulate(EXPECTED, share, runs=runs, seed=seed + 100 + i, prior=prior).requests.mean()
            for i, share in enumerate(ABLATION_SHARES)
        ]
        rows.append([name] + [f"{m:,.0f}" for m in means])
    header = ["prior (canary share)"] + [f"mean n at {s:.2f}" for s in ABLATION_SHARES]
    return "\n".join(
        [
            f"### Prior ablation ({runs:,} runs each, same seeds across rows; "
            f"expected {EXPECTED} ± {TOLERANCE}, alpha {ALPHA}; n* = "
            f"{target_requests(EXPECTED, TOLERANCE, ALPHA):.0f})",
            "",
            table(header, rows),
        ]
    )


# ------------------------------------------------------------------------------------------
# 5. Three versions: Bonferroni against a Dirichlet-multinomial mixture
# ------------------------------------------------------------------------------------------


def dirichlet_multinomial_decisions(
    expected: dict[str, float], ns: np.ndarray, counts: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Decisions of the alternative for k >= 3: one Dirichlet-multinomial mixture martingale
    for the whole share vector at level alpha (no Bonferroni), prior
    ``0.8 Dirichlet(c p0) + 0.2 Dirichlet(1/2, ..., 1/2)``, c = the largest n* of the versions.

    The confidence region is ``{p : ln L_n(p) > ln m_n + ln alpha}`` (convex). Its running
    intersection lies above ``band.low`` of version v once the face ``p_v = band.low`` was
    excluded with ``p_hat_v > band.low``; the largest likelihood on that face is closed-form
    (``p_v`` fixed, the others proportional to their counts). FAIL when a face is excluded with
    ``p_hat_v`` beyond it, as SplitTest does per version.
    """
    versions = list(expected)
    shares = np.array([expected[v] for v in versions])
    c = max(target_requests(p, TOLERANCE, ALPHA) for p in shares)
    components = [
        (1 - BROAD_WEIGHT, np.maximum(c * shares, 0.5)),
        (BROAD_WEIGHT, np.full(len(versions), 0.5)),
    ]
    stacked = np.stack([counts[v] for v in versions], axis=2)  # runs x looks x k
    runs, looks, _ = stacked.shape
    level = math.log(1 / ALPHA)
    above = np.zeros((runs, len(versions)), dtype=bool)
    below = np.zeros((runs, len(versions)), dtype=bool)
    passes = np.zeros((runs, looks), dtype=bool)
    fails = np.zeros((runs, looks), dtype=bool)
    for look in range(looks):
        s = stacked[:, look, :].astype(float)
        n = s.sum(axis=1)
        terms = [
            math.log(w)
            + spf.gammaln(a.sum())
            - spf.gammaln(a).sum()
            + spf.gammaln(s + a[None, :]).sum(axis=1)
            - spf.gammaln(n + a.sum())
            for w, a in components
        ]
        log_marginal = np.logaddexp.reduce(np.stack(terms), axis=0)
        for i in range(len(versions)):
            rest = n - s[:, i]
            others = sum(
                spf.xlogy(s[:, j], s[:, j] / np.maximum(rest, 1.0))
                for j in range(len(versions))
                if j != i
            )
            p_hat = s[:, i] / n
            low, high = max(0.0, shares[i] - TOLERANCE), min(1.0, shares[i] + TOLERANCE)
            for edge, is_low in ((low, True), (high, False)):
                if edge in (0.0, 1.0):
                    (above if is_low else below)[:, i] = True
                    continue
                face = spf.xlogy(s[:, i], edge) + spf.xlogy(rest, 1 - edge) + others
                excluded = log_marginal - face >= level
                if is_low:
                    above[:, i] |= excluded & (p_hat > edge)
                    fails[:, look] |= excluded & (p_hat < edge)
                else:
                    below[:, i] |= excluded & (p_hat < edge)
                    fails[:, look] |= excluded & (p_hat > edge)
        passes[:, look] = (above & below).all(axis=1)
    decided = passes | fails
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), looks - 1)
    rows = np.arange(runs)
    decisions = np.where(decided.any(axis=1), np.where(fails[rows, first], -1, 1), 0)
    return decisions, ns[first]


def section_three_versions(runs: int, seed: int) -> str:
    expected = {"v1": 0.5, "v2": 0.25, "v3": 0.25}
    scenarios = (
        ("right (50/25/25)", expected),
        ("right, off-centre (52/24/24)", {"v1": 0.52, "v2": 0.24, "v3": 0.24}),
        ("wrong (50/35/15)", {"v1": 0.50, "v2": 0.35, "v3": 0.15}),
        ("grossly wrong (34/33/33)", {"v1": 0.34, "v2": 0.33, "v3": 0.33}),
    )
    rows = []
    for index, (name, truth) in enumerate(scenarios):
        ns = look_schedule(DEFAULT_BUDGET, CONCURRENCY)
        counts = draw_counts(truth, ns, runs, seed + 300 + index)
        bonferroni = decide_split(expected, truth, TOLERANCE, ALPHA, ns, counts)
        decisions, requests = dirichlet_multinomial_decisions(expected, ns, counts)
        dm_shares = {
            Decision.PASS: float(np.mean(decisions == 1)),
            Decision.FAIL: float(np.mean(decisions == -1)),
            Decision.INCONCLUSIVE: float(np.mean(decisions == 0)),
        }
        mean_b, mean_d = float(bonferroni.requests.mean()), float(requests.mean())
        rows.append(
            [
                name,
                f"{mean_b:,.0f} ({verdict_text(outcome_shares(bonferroni))})",
                f"{mean_d:,.0f} ({verdict_text(dm_shares)})",
                f"{mean_d / mean_b:.2f}x",
            ]
        )
    return "\n".join(
        [
            f"### Three versions, 50/25/25 ± {TOLERANCE}, alpha {ALPHA} ({runs:,} runs, same "
            "draws per row)",
            "",
            table(
                [
                    "true shares",
                    "Bonferroni (alpha/3 per version): mean n",
                    "Dirichlet-multinomial mixture: mean n",
                    "DM / Bonferroni",
                ],
                rows,
            ),
        ]
    )


# ------------------------------------------------------------------------------------------
# 6. HealthTest (expect_healthy)
# ------------------------------------------------------------------------------------------

STABLE_LATENCY = Latencies.lognormal(0.010, 0.3)  # median 10 ms, p95 ~16 ms


@dataclass(frozen=True)
class HealthScenario:
    name: str
    error_rates: tuple[float, float]  # canary, stable
    canary_latency: Latencies
    healthy: bool


HEALTH_SCENARIOS = (
    HealthScenario("healthy: no errors, same latency", (0.0, 0.0), STABLE_LATENCY, True),
    HealthScenario("healthy: 0.2% errors both", (0.002, 0.002), STABLE_LATENCY, True),
    HealthScenario("healthy: 1% errors both", (0.01, 0.01), STABLE_LATENCY, True),
    HealthScenario("canary +5% errors (5% vs 0%)", (0.05, 0.0), STABLE_LATENCY, False),
    HealthScenario(
        "canary +100 ms (p95 ~16 -> ~116 ms)", (0.0, 0.0), STABLE_LATENCY.shifted(0.1), False
    ),
    HealthScenario("canary 1.5x slower", (0.0, 0.0), STABLE_LATENCY.scaled(1.5), False),
)


def health_outcome(
    scenario: HealthScenario, runs: int, seed: int, **priors: MixturePrior
) -> HealthOutcome:
    return simulate_health(
        canary_share=0.5,
        error_rates=scenario.error_rates,
        latencies=(scenario.canary_latency, STABLE_LATENCY),
        max_error_increase=ERROR_MARGIN,
        max_latency_increase=LATENCY_MARGIN,
        quantile=QUANTILE,
        alpha=ALPHA,
        runs=runs,
        seed=seed,
        budget=DEFAULT_BUDGET,
        **priors,  # type: ignore[arg-type]
    )


def codes_text(codes: np.ndarray) -> str:
    return verdict_text(
        {
            Decision.PASS: float(np.mean(codes == 1)),
            Decision.FAIL: float(np.mean(codes == -1)),
            Decision.INCONCLUSIVE: float(np.mean(codes == 0)),
        }
    )


def union_bound_errors(
    scenario: HealthScenario, runs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The alternative to the joint region for the error test: each version's own
    beta-binomial CS at alpha/4, joined by a union bound (difference in [low_c - high_s,
    high_c - low_s]); same draws, same prior."""
    probe = HealthTest(alpha=ALPHA)
    rng = np.random.default_rng(seed)
    ns = look_schedule(DEFAULT_BUDGET, CONCURRENCY)
    sizes = np.diff(ns, prepend=0)
    table: dict[tuple[int, int], tuple[float, float]] = {}

    def ends(errors: np.ndarray, requests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = np.empty(len(errors)), np.empty(len(errors))
        for i, key in enumerate(zip(errors.tolist(), requests.tolist(), strict=True)):
            if key not in table:
                interval = cs_interval(key[0], key[1], ALPHA / 4, probe.error_prior)
                table[key] = (interval.low, interval.high)
            lows[i], highs[i] = table[key]
        return lows, highs

    canary = np.zeros((runs, 2), dtype=np.int64)  # errors, requests
    stable = np.zeros((runs, 2), dtype=np.int64)
    decision = np.zeros(runs, dtype=np.int64)
    decided_at = np.full(runs, DEFAULT_BUDGET, dtype=np.int64)
    for look, size in enumerate(sizes.tolist()):
        to_canary = rng.binomial(size, 0.5, size=runs)
        canary[:, 1] += to_canary
        stable[:, 1] += size - to_canary
        canary[:, 0] += rng.binomial(to_canary, scenario.error_rates[0])
        stable[:, 0] += rng.binomial(size - to_canary, scenario.error_rates[1])
        open_runs = np.flatnonzero((decision == 0) & (canary[:, 1] > 0) & (stable[:, 1] > 0))
        if open_runs.size == 0:
            break
        c_low, c_high = ends(canary[open_runs, 0], canary[open_runs, 1])
        s_low, s_high = ends(stable[open_runs, 0], stable[open_runs, 1])
        passed = c_high - s_low <= ERROR_MARGIN
        failed = c_low - s_high > ERROR_MARGIN
        decision[open_runs[passed]] = 1
        decision[open_runs[failed]] = -1
        decided_at[open_runs[passed | failed]] = ns[look]
    return decision, decided_at


def section_health(runs: int, seed: int) -> str:
    rows = []
    for index, scenario in enumerate(HEALTH_SCENARIOS):
        outcome = health_outcome(scenario, runs, seed + 400 + index)
        decided = outcome.decisions != 0
        mean = float(outcome.requests[decided].mean()) if decided.any() else math.nan
        rows.append(
            [
                scenario.name,
                "PASS" if scenario.healthy else "FAIL",
                f"{mean:,.0f}",
                f"{np.percentile(outcome.requests, 95):,.0f}",
                codes_text(outcome.decisions),
                f"{outcome.errors_at.mean():,.0f} ({codes_text(outcome.errors)})",
                f"{outcome.latency_at.mean():,.0f} ({codes_text(outcome.latency)})",
            ]
        )
    ablation_runs = max(200, runs // 4)
    union_rows = []
    for index, scenario in enumerate(HEALTH_SCENARIOS[:4]):
        joint = health_outcome(scenario, ablation_runs, seed + 450 + index)
        decisions, decided_at = union_bound_errors(scenario, ablation_runs, seed + 450 + index)
        union_rows.append(
            [
                scenario.name,
                f"{joint.errors_at.mean():,.0f} ({codes_text(joint.errors)})",
                f"{decided_at.mean():,.0f} ({codes_text(decisions)})",
                f"{decided_at.mean() / joint.errors_at.mean():.2f}x",
            ]
        )
    prior_rows = []
    error_priors = (
        ("**default**: 0.5 at 0 + 0.3 Beta(1/2, 1/(2m)) + 0.2 Jeffreys", None),
        ("Jeffreys Beta(1/2, 1/2) only", MixturePrior(((1.0, 0.5, 0.5),))),
        ("0.5 at 0 + 0.5 Jeffreys", MixturePrior(((0.5, 0.5, 0.5),), ((0.5, 0.0),))),
        ("0.8 at 0 + 0.2 Jeffreys", MixturePrior(((0.2, 0.5, 0.5),), ((0.8, 0.0),))),
    )
    for name, prior in error_priors:
        cells = []
        for index in (0, 1, 3):
            scenario = HEALTH_SCENARIOS[index]
            extra = {} if prior is None else {"error_prior": prior}
            outcome = health_outcome(scenario, ablation_runs, seed + 500 + index, **extra)
            cells.append(f"{outcome.errors_at.mean():,.0f}")
        prior_rows.append([f"errors: {name}", *cells])
    quantile_rows = []
    for concentration in (20.0, 50.0, 200.0, 2000.0):
        prior = MixturePrior(
            ((0.8, concentration * QUANTILE, concentration * (1 - QUANTILE)), (0.2, 0.5, 0.5))
        )
        cells = []
        for index in (0, 4, 5):
            scenario = HEALTH_SCENARIOS[index]
            outcome = health_outcome(
                scenario, ablation_runs, seed + 600 + index, latency_prior=prior
            )
            cells.append(f"{outcome.latency_at.mean():,.0f}")
        marker = " (**default**)" if concentration == 50.0 else ""
        quantile_rows.append([f"latency: c = {concentration:g}{marker}", *cells])
    return "\n".join(
        [
            f"### expect_healthy: requests to a verdict (alpha = {ALPHA}, "
            f"max_error_increase = {ERROR_MARGIN}, max_latency_increase = {LATENCY_MARGIN}, "
            f"p{QUANTILE * 100:g}; weight 50; {runs:,} runs each, budget {DEFAULT_BUDGET:,})",
            "",
            table(
                [
                    "canary vs stable",
                    "right verdict",
                    "mean n (decided runs)",
                    "p95 n",
                    "verdicts",
                    "errors test alone: mean n",
                    "latency test alone: mean n",
                ],
                rows,
            ),
            "",
            "Latencies: stable lognormal, median 10 ms, sigma 0.3 (p95 ~16 ms), on 100 equally "
            "likely values; each request goes to the canary with probability 1/2. The two "
            "tests alone are followed to their own decision (or the budget).",
            "",
            "Errors: the joint region of both rates (what HealthTest does) against two "
            f"separate sequences at alpha/4 joined by a union bound ({ablation_runs:,} runs, "
            "same draws):",
            "",
            table(
                [
                    "canary vs stable",
                    "joint region: mean n",
                    "union bound: mean n",
                    "union / joint",
                ],
                union_rows,
            ),
            "",
            f"Priors ({ablation_runs:,} runs each; mean n of the test alone):",
            "",
            table(
                [
                    "prior",
                    f"{HEALTH_SCENARIOS[0].name}",
                    f"{HEALTH_SCENARIOS[1].name}",
                    f"{HEALTH_SCENARIOS[3].name}",
                ],
                prior_rows,
            ),
            "",
            table(
                [
                    "quantile prior 0.8 Beta(c q, c (1 - q)) + 0.2 Jeffreys",
                    HEALTH_SCENARIOS[0].name,
                    HEALTH_SCENARIOS[4].name,
                    HEALTH_SCENARIOS[5].name,
                ],
                quantile_rows,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="Simulated runs per scenario.")
    parser.add_argument(
        "--ablation-runs", type=int, default=2000, help="Simulated runs per ablation cell."
    )
    parser.add_argument(
        "--health-runs", type=int, default=1000, help="Simulated runs per health scenario."
    )
    parser.add_argument("--seed", type=int, default=7, help="Base seed of numpy's Generator.")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(section_sequential(args.runs, args.seed))
    print()
    print(section_savings(args.runs, args.seed))
    print()
    print(section_upstream(args.runs, args.seed))
    print()
    print(section_ablation(args.ablation_runs, args.seed))
    print()
    print(section_three_versions(args.runs, args.seed))
    print()
    print(section_health(args.health_runs, args.seed))
    print()
    print(
        f"_runs={args.runs}, ablation-runs={args.ablation_runs}, "
        f"health-runs={args.health_runs}, seed={args.seed}; "
        f"{time.perf_counter() - started:.0f} s on this machine._"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
