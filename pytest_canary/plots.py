"""Pictures of verdicts: how the confidence sequence narrowed against the accepted band.

Needs matplotlib (``pip install 'pytest-canary[plots]'``); :func:`require_matplotlib` says so
clearly when it is missing.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from pytest_canary.errors import CanaryConfigError
from pytest_canary.report import Verdict
from pytest_canary.stats import Interval


def require_matplotlib() -> None:
    """Fail with an actionable message when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CanaryConfigError(
            "--canary-plots needs matplotlib, which is not installed: "
            "pip install 'pytest-canary[plots]'"
        ) from None


def plot_file_name(verdict: Verdict, index: int) -> str:
    """A file name from the test id and the verdict's position in the session."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", verdict.test or "verdict").strip("_")[-80:]
    return f"{index:03d}-{slug}-{verdict.kind.replace(' ', '-')}.png"


def plotted_versions(verdict: Verdict) -> list[str]:
    """The versions whose share the user asked about: with two versions, the first one (the
    canary of ``expect_split(0.2)``, or the version a one-entry mapping names; the other's
    share is its mirror image); with more, every version, the named ones first."""
    versions = [v for v in verdict.expected if v in verdict.bands]
    return versions[:1] if len(versions) == 2 else versions


def plot_verdict(verdict: Verdict, path: Path) -> Path:
    """Draw the share of each version the user asked about over the responses used.

    One panel per version (:func:`plotted_versions`): the shaded band is expected ±
    tolerance, the blue area the anytime-valid confidence sequence after each batch, and the
    decisive point -- the last interval and the observed share, where the verdict was
    decided -- is drawn on top and labelled with the decision. The legend sits outside the
    axes, so it never covers the data.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = plotted_versions(verdict)
    fig, axes = plt.subplots(len(versions), 1, figsize=(8, 2.8 * len(versions)), squeeze=False)
    for ax, version in zip(axes[:, 0], versions, strict=True):
        points = [(n, ivs[version]) for n, ivs in verdict.history if version in ivs]
        ns: list[float] = [n for n, _ in points]
        lows = [iv.low for _, iv in points]
        highs = [iv.high for _, iv in points]
        band = verdict.bands[version]
        expected = verdict.expected[version]
        ax.axhspan(
            band.low,
            band.high,
            color="tab:green",
            alpha=0.18,
            label=f"accepted {band.low:.2f}-{band.high:.2f}",
        )
        ax.axhline(expected, color="tab:green", linewidth=0.8, label=f"expected {expected:.2f}")
        if ns:
            # Hold the last interval a little past the decisive point, so that it shows as a
            # step (a "post" step ends at its own x).
            right = ns[-1] * 1.08
            ns, lows, highs = [*ns, right], [*lows, lows[-1]], [*highs, highs[-1]]
            ax.fill_between(ns, lows, highs, step="post", color="tab:blue", alpha=0.25)
            ax.step(ns, lows, where="post", color="tab:blue", linewidth=1)
            ax.step(
                ns,
                highs,
                where="post",
                color="tab:blue",
                linewidth=1,
                label=f"{1 - verdict.alpha:g} confidence sequence",
            )
            last_n, last = points[-1][0], verdict.intervals.get(version, points[-1][1])
            observed = verdict.observed.get(version, 0.0)
            colour = "tab:green" if verdict.passed else "tab:red"
            ax.errorbar(
                [last_n],
                [observed],
                yerr=[[max(observed - last.low, 0.0)], [max(last.high - observed, 0.0)]],
                fmt="o",
                color=colour,
                capsize=4,
                zorder=5,
                label=f"{verdict.decision} at n={last_n}: observed {observed:.3f}",
            )
            ax.set_xlim(0, right)
        ax.set_xlabel("responses")
        ax.set_ylabel(f"share of {version}")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    asked = " and ".join(f"{v}={verdict.expected[v]:.2f}" for v in versions)
    fig.suptitle(
        f"{verdict.test or 'verdict'}\nexpected share {asked}: {verdict.decision} after "
        f"n={verdict.n} (alpha={verdict.alpha:g}, tolerance={verdict.tolerance:g})",
        fontsize=9,
    )
    return _save(fig, path)


def plot_health(verdict: Verdict, path: Path) -> Path:
    """Draw a health verdict's two comparisons over the requests used.

    Top: the confidence sequence of the canary's error-rate increase over the stable's,
    against ``max_error_increase``; bottom: that of the canary/stable latency-quantile ratio,
    against ``1 + max_latency_increase``. The shaded side of each limit is healthy; a panel's
    verdict is PASS once its sequence lies there, FAIL once it lies beyond.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("error increase", "errors", "canary - stable error rate"),
        (
            "latency ratio",
            "latency",
            f"canary / stable p{verdict.limits.get('quantile', 0.95) * 100:g}",
        ),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 5.2), squeeze=False)
    for ax, (key, check, label) in zip(axes[:, 0], panels, strict=True):
        # A latency ratio has an unbounded end until the canary's quantile has an upper bound
        # (and a lower bound of 0 until the stable's has one): such looks are drawn from their
        # finite end to the frame's edge, so the panel spans every look, like the other.
        points = [
            (n, ivs[key])
            for n, ivs in verdict.history
            if key in ivs and (math.isfinite(ivs[key].low) or math.isfinite(ivs[key].high))
        ]
        band = verdict.bands.get(key)
        if band is not None:
            ax.axhspan(band.low, band.high, color="tab:green", alpha=0.12, label="healthy")
            ax.axhline(band.high, color="tab:green", linewidth=0.8)
        right = max(verdict.requests, 1) * 1.08
        if points:
            bottom, top, lows, highs = health_series([iv for _, iv in points], band)
            ns: list[float] = [n for n, _ in points]
            ns, lows, highs = [*ns, right], [*lows, lows[-1]], [*highs, highs[-1]]
            ax.fill_between(ns, lows, highs, step="post", color="tab:blue", alpha=0.25)
            ax.step(
                ns,
                lows,
                where="post",
                color="tab:blue",
                linewidth=1,
                label=f"{1 - verdict.alpha:g} confidence sequence",
            )
            ax.step(ns, highs, where="post", color="tab:blue", linewidth=1)
            decision = verdict.checks.get(check, "-")
            if decision in ("PASS", "FAIL"):
                # The decisive point: the end of the last interval that crossed the limit.
                last_n, last = points[-1]
                at = last.high if decision == "PASS" else last.low
                if math.isfinite(at):
                    ax.plot(
                        [last_n],
                        [at],
                        "o",
                        color="tab:green" if decision == "PASS" else "tab:red",
                        zorder=5,
                        label=f"{decision} at n={last_n}: {_health_bound(key, decision, at)}",
                    )
            ax.set_ylim(bottom, top)
        ax.set_xlim(0, right)
        ax.set_xlabel("requests")
        ax.set_ylabel(label)
        ax.set_title(f"{check}: {verdict.checks.get(check, '-')}", fontsize=9)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle(
        f"{verdict.test or 'verdict'}\nhealth {verdict.decision} after {verdict.requests} "
        f"requests (alpha={verdict.alpha:g})",
        fontsize=9,
    )
    return _save(fig, path)


def health_series(
    intervals: list[Interval], band: Interval | None
) -> tuple[float, float, list[float], list[float]]:
    """A health panel's y range and the ends of each look's interval within it.

    The range frames the last interval's finite ends and the limit, padded: early intervals
    are wide, and an unbounded end (a latency ratio before a quantile has a bound) is drawn at
    the frame's edge, so every look with one finite end is shown.
    """
    last = intervals[-1]
    values = [v for v in (last.low, last.high) if math.isfinite(v)]
    if band is not None:
        values.append(band.high)
    low_end, high_end = min(values), max(values)
    pad = 0.5 * (high_end - low_end) or 0.01
    bottom, top = low_end - pad, high_end + pad
    lows = [iv.low if math.isfinite(iv.low) else bottom for iv in intervals]
    highs = [iv.high if math.isfinite(iv.high) else top for iv in intervals]
    return bottom, top, lows, highs


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (its folder made) and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _health_bound(key: str, decision: str, at: float) -> str:
    """The decisive end of a health interval in words."""
    side = "upper" if decision == "PASS" else "lower"
    if key == "latency ratio":
        return f"{side} bound x{at:.2f}"
    return f"{side} bound {at:+.4f}"
