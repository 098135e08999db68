"""Pictures of verdicts: how the confidence sequence narrowed against the accepted band.

Needs matplotlib (``pip install 'pytest-canary[plots]'``); :func:`require_matplotlib` says so
clearly when it is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_canary.errors import CanaryConfigError
from pytest_canary.report import Verdict


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


def plot_verdict(verdict: Verdict, path: Path) -> Path:
    """Draw every version's interval over the requests used, against its band.

    One panel per expected version: the shaded band is expected ± tolerance, the two lines
    the running-intersection confidence sequence after each batch, the dot the decision.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = [v for v in verdict.expected if v in verdict.bands]
    if len(versions) == 2:
        versions = versions[1:]  # two versions mirror each other: show the canary
    fig, axes = plt.subplots(len(versions), 1, figsize=(7, 2.6 * len(versions)), squeeze=False)
    for ax, version in zip(axes[:, 0], versions, strict=True):
        ns = [n for n, ivs in verdict.history if version in ivs]
        lows = [ivs[version].low for _, ivs in verdict.history if version in ivs]
        highs = [ivs[version].high for _, ivs in verdict.history if version in ivs]
        band = verdict.bands[version]
        ax.axhspan(band.low, band.high, color="tab:green", alpha=0.15, label="accepted band")
        ax.axhline(verdict.expected[version], color="tab:green", linewidth=0.8)
        ax.fill_between(ns, lows, highs, step="post", color="tab:blue", alpha=0.25)
        ax.step(ns, lows, where="post", color="tab:blue", linewidth=1, label="confidence sequence")
        ax.step(ns, highs, where="post", color="tab:blue", linewidth=1)
        if ns:
            ax.plot([ns[-1]], [verdict.observed.get(version, 0.0)], "o", color="black")
        ax.set_xlabel("responses")
        ax.set_ylabel(f"share of {version}")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        f"{verdict.test or 'verdict'}\n{verdict.decision} after n={verdict.n} "
        f"(alpha={verdict.alpha:g}, tolerance={verdict.tolerance:g})",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
