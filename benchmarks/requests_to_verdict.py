"""Requests to a verdict: pytest-canary's sequential test against fixed-N and upstream designs.

Run from the repository root (takes a minute or two; the output is deterministic):

    python benchmarks/requests_to_verdict.py [--runs 2000] [--seed 7]

Prints Markdown tables (copied into benchmarks/README.md):

1. ``SplitTest`` (expected canary share 0.20 +- 0.05, alpha = 0.001, batches as
   ``next_batch_size(16)`` suggests) at true shares 0.20, 0.22, 0.30, 0.50: mean / median / p95
   requests to a verdict and the verdicts, side by side with the fixed-N design with the same
   guarantees (n = (z_{1-a} + z_{1-a/2})^2 p (1 - p) / tol^2 = 2606, Clopper-Pearson verdicts
   computed exactly) and with ``plan_requests``' budget.
2. The upstream designs (Istio, ingress-nginx, Gateway API conformance) with their error rates
   computed exactly from the binomial distribution, and ``SplitTest`` on the same splits.
3. Prior ablation: how the choice of the mixture prior moves the mean requests.

Simulation: numpy ``Generator`` seeded per scenario; per-batch counts are binomial draws at the
true share and ``SplitTest.update`` is called once per batch, exactly as the harness does.
numpy and scipy are used here only; ``pytest_canary.stats`` is pure Python.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pytest_canary.stats import (
    Decision,
    MixturePrior,
    SplitTest,
    assert_split_counts,
    fixed_requests,
    plan_requests,
    target_requests,
)

EXPECTED = 0.20
TOLERANCE = 0.05
ALPHA = 0.001
CONCURRENCY = 16
TRUE_SHARES = (0.20, 0.22, 0.30, 0.50)

PriorFactory = Callable[[float, float, float], MixturePrior]


@dataclass
class Result:
    requests: np.ndarray
    verdicts: Counter[Decision]

    @property
    def runs(self) -> int:
        return int(self.requests.size)

    def share_of(self, decision: Decision) -> float:
        return self.verdicts[decision] / self.runs


def schedule(expected: float, budget: int) -> list[int]:
    """The batch sizes SplitTest suggests up to ``budget`` (they depend on n only)."""
    probe = SplitTest(two(expected), TOLERANCE, ALPHA, max_requests=budget)
    sizes = []
    while (size := probe.next_batch_size(CONCURRENCY)) > 0:
        sizes.append(size)
        probe.update({"stable": size})
    return sizes


def two(canary_share: float) -> dict[str, float]:
    return {"stable": 1.0 - canary_share, "canary": canary_share}


def simulate(
    expected: float,
    true_share: float,
    *,
    runs: int,
    seed: int,
    budget: int,
    tolerance: float = TOLERANCE,
    alpha: float = ALPHA,
    prior: PriorFactory | None = None,
) -> Result:
    """``runs`` SplitTest runs until a verdict (or ``budget``), seeded."""
    sizes = schedule(expected, budget)
    rng = np.random.default_rng(seed)
    hits = rng.binomial(np.array(sizes)[None, :], true_share, size=(runs, len(sizes)))
    priors = None
    if prior is not None:
        canary_prior = prior(expected, tolerance, alpha)
        priors = {"stable": canary_prior.mirrored(), "canary": canary_prior}
    requests = np.zeros(runs, dtype=np.int64)
    verdicts: Counter[Decision] = Counter()
    for run in range(runs):
        test = SplitTest(two(expected), tolerance, alpha, max_requests=budget, priors=priors)
        for step, size in enumerate(sizes):
            canary = int(hits[run, step])
            if test.update({"stable": size - canary, "canary": canary}) is not Decision.CONTINUE:
                break
        verdicts[test.decision] += 1
        requests[run] = test.decided_at if test.decided_at is not None else test.n
    return Result(requests, verdicts)


def fixed_design_verdicts(n: int, true_share: float) -> dict[Decision, float]:
    """Exact verdict probabilities of the fixed-N Clopper-Pearson test (assert_split_counts)."""
    pmf = sps.binom.pmf(np.arange(n + 1), n, true_share)
    totals: dict[Decision, float] = dict.fromkeys(
        (Decision.PASS, Decision.FAIL, Decision.INCONCLUSIVE), 0.0
    )
    # Only s within 10 standard deviations matter (the rest has probability < 1e-20).
    sd = math.sqrt(n * true_share * (1 - true_share))
    low = max(0, int(n * true_share - 10 * sd))
    high = min(n, int(n * true_share + 10 * sd) + 1)
    for s in range(low, high + 1):
        verdict = assert_split_counts(s, n, EXPECTED, TOLERANCE, ALPHA).decision
        totals[verdict] += float(pmf[s])
    return totals


def oracle_fixed_requests(true_share: float) -> int:
    """The fixed n that reaches the right verdict with probability ~1 - alpha at ``true_share``.

    Same formula as fixed_requests, with the distance from the true share to the nearest band
    edge instead of the tolerance: what a fixed design would need if it knew the true share
    in advance (a sequential test adapts without knowing it).
    """
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


# ------------------------------------------------------------------------------------------
# 1. Sequential vs fixed N
# ------------------------------------------------------------------------------------------


def section_sequential(runs: int, seed: int) -> str:
    fixed_n = fixed_requests(EXPECTED, TOLERANCE, ALPHA)
    budget = 20 * fixed_n  # never binds in practice: every run reaches a verdict
    plan = plan_requests(EXPECTED, TOLERANCE, ALPHA, concurrency=CONCURRENCY)
    rows = []
    for index, share in enumerate(TRUE_SHARES):
        result = simulate(EXPECTED, share, runs=runs, seed=seed + index, budget=budget)
        mean = float(result.requests.mean())
        fixed = fixed_design_verdicts(fixed_n, share)
        oracle = oracle_fixed_requests(share)
        rows.append(
            [
                f"{share:.2f}",
                "right (in band)" if abs(share - EXPECTED) <= TOLERANCE else "wrong",
                f"{mean:,.0f}",
                f"{np.median(result.requests):,.0f}",
                f"{np.percentile(result.requests, 95):,.0f}",
                f"{mean / fixed_n:.3f}x",
                verdict_text({d: result.share_of(d) for d in Decision}),
                f"{fixed_n:,}",
                verdict_text(fixed),
                f"{oracle:,} ({mean / oracle:.2f}x)",
            ]
        )
    header = [
        "true share",
        "config",
        "mean n",
        "median n",
        "p95 n",
        "mean / fixed",
        f"sequential verdicts ({runs:,} runs)",
        "fixed-N n",
        "fixed-N verdicts (exact)",
        "fixed-N sized for this share (mean / it)",
    ]
    text = [
        f"### Requests to a verdict: expected {EXPECTED:.2f} +- {TOLERANCE}, alpha = {ALPHA}",
        "",
        table(header, rows),
        "",
        f"`plan_requests({EXPECTED}, {TOLERANCE}, {ALPHA})`: expected_requests = "
        f"{plan.expected_requests:,} (an upper bound), worst_case_requests = "
        f"{plan.worst_case_requests:,} (conservative p95), fixed_requests = "
        f"{plan.fixed_requests:,}. Prior concentration c = n* = "
        f"{target_requests(EXPECTED, TOLERANCE, ALPHA):.0f}. Last column: the fixed n that "
        "would reach the right verdict with probability ~1 - alpha if the true share were "
        "known in advance (distance to the nearest band edge in place of the tolerance).",
    ]
    return "\n".join(text)


# ------------------------------------------------------------------------------------------
# 2. Upstream designs, exact
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
        right = simulate(expected, expected, runs=runs, seed=seed + 10 + index, budget=20 * fixed_n)
        wrong = simulate(expected, gross, runs=runs, seed=seed + 20 + index, budget=20 * fixed_n)
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
# 3. Prior ablation
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
    ("**default**: 0.8 Beta(c=n*) + 0.2 Jeffreys", None),
    ("c = n*/10", focused(0.1, 0.2)),
    ("c = 10 n*", focused(10.0, 0.2)),
    ("c = 1000 n* (~ point mass at 0.20)", focused(1000.0, 0.2)),
    ("Jeffreys weight 0.05", focused(1.0, 0.05)),
    ("Jeffreys weight 0.5", focused(1.0, 0.5)),
    ("no Jeffreys component", focused(1.0, 0.0)),
    ("Jeffreys Beta(1/2, 1/2) only", jeffreys),
    ("0.6 Beta(c=n*) + 0.2 Beta(sd=tol) + 0.2 Jeffreys", three_components),
)


def section_ablation(runs: int, seed: int) -> str:
    fixed_n = fixed_requests(EXPECTED, TOLERANCE, ALPHA)
    rows = []
    for name, prior in ABLATION:
        means = [
            simulate(
                EXPECTED, share, runs=runs, seed=seed + 100 + i, budget=20 * fixed_n, prior=prior
            ).requests.mean()
            for i, share in enumerate(TRUE_SHARES)
        ]
        rows.append([name] + [f"{m:,.0f}" for m in means])
    header = ["prior (canary share)"] + [f"mean n at {s:.2f}" for s in TRUE_SHARES]
    return "\n".join(
        [
            f"### Prior ablation ({runs:,} runs each, same seeds across rows; "
            f"expected {EXPECTED} ± {TOLERANCE}, alpha {ALPHA}; n* = "
            f"{target_requests(EXPECTED, TOLERANCE, ALPHA):.0f})",
            "",
            table(header, rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="Simulated runs per scenario.")
    parser.add_argument(
        "--ablation-runs", type=int, default=1000, help="Simulated runs per ablation cell."
    )
    parser.add_argument("--seed", type=int, default=7, help="Base seed of numpy's Generator.")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(section_sequential(args.runs, args.seed))
    print()
    print(section_upstream(args.runs, args.seed))
    print()
    print(section_ablation(args.ablation_runs, args.seed))
    print()
    print(
        f"_runs={args.runs}, ablation-runs={args.ablation_runs}, seed={args.seed}; "
        f"{time.perf_counter() - started:.0f} s on this machine._"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
