"""Plots of verdicts: the share the user asked about, with the decisive point."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pytest_canary.plots import health_series, plot_health, plot_verdict, plotted_versions
from pytest_canary.report import Verdict
from pytest_canary.stats import Interval


def _verdict(expected: dict[str, float]) -> Verdict:
    band = {v: Interval(s - 0.05, s + 0.05) for v, s in expected.items()}
    history = [
        (n, {v: Interval(max(s - 8 / n, 0), min(s + 8 / n, 1)) for v, s in expected.items()})
        for n in (16, 64, 256)
    ]
    return Verdict(
        kind="split",
        passed=True,
        decision="PASS",
        expected=expected,
        observed=dict(expected),
        counts={v: int(256 * s) for v, s in expected.items()},
        n=256,
        errors={},
        alpha=0.001,
        tolerance=0.05,
        intervals=history[-1][1],
        bands=band,
        history=history,
        test="tests/test_x.py::test_split",
    )


def test_a_single_share_plots_the_canary_not_its_mirror() -> None:
    # expect_split(0.2): the canary first, the stable's 0.8 only mirrors it.
    assert plotted_versions(_verdict({"2.0": 0.2, "1.0": 0.8})) == ["2.0"]
    # expect_split({"v1": 0.9}): the version the user named.
    assert plotted_versions(_verdict({"v1": 0.9, "v2": 0.1})) == ["v1"]


def test_a_mapping_of_three_versions_gets_a_panel_each() -> None:
    verdict = _verdict({"v2": 0.25, "v3": 0.25, "v1": 0.5})
    assert plotted_versions(verdict) == ["v2", "v3", "v1"]


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot_verdict(_verdict({"2.0": 0.2, "1.0": 0.8}), tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_health_panel_draws_every_look_with_a_finite_end_within_its_frame() -> None:
    """A latency ratio is unbounded above until the canary's quantile has a bound: those looks
    are drawn to the frame's edge, not dropped (the panel would show only the last look)."""
    looks = [Interval(0.0, math.inf), Interval(0.8, math.inf), Interval(2.0, 5.0)]
    bottom, top, lows, highs = health_series(looks, Interval(0.0, 1.2))
    assert bottom < 1.2 < 2.0 < 5.0 < top  # the limit and the last interval are in the frame
    assert lows == [0.0, 0.8, 2.0]
    assert highs == [top, top, 5.0]


def test_the_health_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    verdict = Verdict(
        kind="health",
        passed=False,
        decision="FAIL",
        expected={},
        observed={"1.0": 0.5, "2.0": 0.5},
        counts={"1.0": 150, "2.0": 150},
        n=300,
        errors={},
        alpha=0.001,
        intervals={"error increase": Interval(-0.02, 0.03), "latency ratio": Interval(2.0, 5.0)},
        bands={"error increase": Interval(-1.0, 0.01), "latency ratio": Interval(0.0, 1.2)},
        history=[
            (16, {"error increase": Interval(-0.9, 0.9), "latency ratio": Interval(0.0, math.inf)}),
            (300, {"error increase": Interval(-0.02, 0.03), "latency ratio": Interval(2.0, 5.0)}),
        ],
        roles={"2.0": "canary", "1.0": "stable"},
        checks={"errors": "CONTINUE", "latency": "FAIL"},
        limits={"max_error_increase": 0.01, "max_latency_increase": 0.2, "quantile": 0.95},
    )
    path = plot_health(verdict, tmp_path / "h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
