"""Verdicts as users read them: the session summary, JUnit properties, failure evidence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from pytest_canary.report import (
    Verdict,
    VerdictLog,
    elide,
    elide_entries,
    failure_evidence,
    format_rows,
    junit_properties,
)
from pytest_canary.stats import Interval


def verdict(**changes: object) -> Verdict:
    values: dict[str, object] = {
        "kind": "split",
        "passed": True,
        "decision": "PASS",
        "expected": {"2.0": 0.2, "1.0": 0.8},
        "observed": {"2.0": 0.21, "1.0": 0.79},
        "counts": {"2.0": 210, "1.0": 790},
        "n": 1000,
        "errors": {},
        "alpha": 0.001,
        "tolerance": 0.05,
        "intervals": {"2.0": Interval(0.17, 0.24), "1.0": Interval(0.76, 0.83)},
        "test": "suites/test_x.py::test_split",
        "strategy": "nginx",
    }
    return Verdict(**(values | changes))  # type: ignore[arg-type]


def test_the_summary_fits_120_columns_sharing_the_cut_among_long_columns() -> None:
    log = VerdictLog()
    log.add(verdict(kind="routed", request="x-beta-user: yes", strategy="own manifests"))
    log.add(verdict(kind="zero-downtime", request="promote(check_errors=True)", expected={}))
    three = {"v1": 0.5, "v2": 0.25, "v3": 0.25}
    log.add(verdict(expected=three, observed=three, test="t.py::" + "test_long_" * 20))
    lines = log.summary_lines(120)
    assert max(len(line) for line in lines) <= 120
    header, rows = lines[0], [line for line in lines[1:] if line.startswith("  ")]
    checks = [row[header.index("check") : header.index("expected")].strip() for row in rows]
    # The cut is shared: the long check cells keep a readable part, not a stub.
    assert checks[:2] == ["routed \u2026beta-user: yes)", "zero-do\u2026k_errors=True))"]
    assert any("\u2026" in line for line in lines)
    assert lines[1] == "suites/test_x.py::test_split" and lines[-2].startswith("t.py::test_long")


def test_a_narrowed_share_cell_drops_whole_versions_never_half_a_value() -> None:
    """Three versions in a narrow summary were cut in the middle (``2.0=0.…0.25 1.0=0.50``),
    which hid one version's value: the cell now keeps the first versions whole and says how
    many it left out."""
    log = VerdictLog()
    three = {"1.0": 0.5, "2.0": 0.25, "3.0": 0.25}
    observed = {"1.0": 0.498, "2.0": 0.253, "3.0": 0.249}
    log.add(verdict(expected=three, observed=observed, kind="split", request="x" * 40))
    lines = log.summary_lines(100)
    header, row = lines[0], lines[2]
    expected = row[header.index("expected") : header.index("observed")].strip()
    observed_cell = row[header.index("observed") : header.index("n ")].strip()
    for cell in (expected, observed_cell):
        entries = cell.split(" ")
        assert entries[-1] in ("+1", "+2"), cell
        assert all(e.count("=") == 1 and "…" not in e for e in entries[:-1]), cell
    assert max(len(line) for line in lines) <= 100


def test_a_cell_of_other_words_is_never_cut_into_label_and_count() -> None:
    """A health cell (``err+0.012 p95 x1.05``) is not a list of entries: cutting it by words
    showed ``p95 +1``, a label without its value. It is elided in the middle instead."""
    assert elide_entries("err+0.012 p95 x1.05", 16) == elide("err+0.012 p95 x1.05", 16)
    assert elide_entries("2.0=0.25 1.0=0.50 3.0=0.25", 20) == "2.0=0.25 1.0=0.50 +1"


def test_format_rows_without_a_width_keeps_every_cell() -> None:
    rows = [["a", "b"], ["x" * 50, "y"]]
    assert format_rows(rows) == ["a" + " " * 51 + "b", "x" * 50 + "  y"]


def test_a_caught_failure_reads_as_expected() -> None:
    caught = verdict(passed=False, decision="FAIL", caught=True)
    assert caught.result == "FAIL (expected)"
    assert verdict().result == "PASS"


def test_junit_properties_follow_the_verdicts_json_whatever_its_fields() -> None:
    """A kind of verdict with fields of its own (e.g. canary vs stable health) reaches the
    JUnit file without any change to the writer."""

    @dataclass
    class HealthVerdict(Verdict):
        error_rate: dict[str, float] = field(default_factory=dict)
        latency_ratio: float = 1.0

    health = HealthVerdict(
        **{k: v for k, v in vars(verdict(kind="health")).items()},
        error_rate={"2.0": 0.01, "1.0": 0.0},
        latency_ratio=1.25,
    )
    properties = dict(junit_properties(health, 2))
    assert properties["canary.2"].startswith("canary health expectation PASS")
    assert properties["canary.2.kind"] == "health"
    assert properties["canary.2.error_rate[2.0]"] == "0.01"
    assert properties["canary.2.latency_ratio"] == "1.25"
    assert properties["canary.2.intervals[2.0]"] == "[0.17, 0.24]"
    assert properties["canary.2.errors"] == "none"
    assert "canary.2.history" not in properties and "canary.2.test" not in properties


def test_failure_evidence_counts_repeated_log_lines_and_keeps_routing_objects() -> None:
    sections = {
        "router access log (last 4)": "\n".join(
            [
                "11:00:01 foo.bar / -> [stable:80] pod-a 200 (weight 30/100 drew the main backend)",
                "11:00:02 foo.bar / -> [canary:80] pod-b 200 (weight 30/100 drew the canary)",
                "11:00:03 foo.bar / -> [stable:80] pod-a 200 (weight 30/100 drew the main backend)",
                "11:00:04 foo.bar / -> [stable:80] pod-a 200 (weight 30/100 drew the main backend)",
            ]
        ),
        "manifests of shop (canary)": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        "  name: shop\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
        "  name: shop-canary\n",
        "events": "\n".join(f"event {i}" for i in range(40)),
    }
    text = failure_evidence(sections, max_lines=30)
    assert "3x foo.bar / -> [stable:80] pod-a 200 (weight 30/100 drew the main backend)" in text
    assert "kind: Ingress" in text and "kind: Deployment" not in text
    assert "(not shown: Deployment/shop)" in text
    assert "... 10 more lines" in text
    # The manifests come last, after the evidence.
    assert text.index("--- events ---") < text.index("--- manifests of shop (canary)")
    assert text.endswith("(every section in full, manifests included: --canary-artifacts=DIR)")
    written = failure_evidence(sections, full_at="/tmp/evidence/test_x")
    assert written.endswith("(every section in full: /tmp/evidence/test_x)")


def health_verdict() -> Verdict:
    return Verdict(
        kind="health",
        passed=False,
        decision="FAIL",
        expected={},
        observed={"1.0": 0.9, "2.0": 0.1},
        counts={"1.0": 270, "2.0": 30},
        n=300,
        errors={"timeout": 1},
        alpha=0.001,
        intervals={
            "error increase": Interval(-0.02, 0.03),
            "latency ratio": Interval(12.5, math.inf),
        },
        bands={"error increase": Interval(-1.0, 0.01), "latency ratio": Interval(0.0, 1.2)},
        history=[(16, {"latency ratio": Interval(0.0, math.inf)})],
        roles={"2.0": "canary", "1.0": "stable"},
        checks={"errors": "CONTINUE", "latency": "FAIL"},
        limits={"max_error_increase": 0.01, "max_latency_increase": 0.2, "quantile": 0.95},
        version_requests={"2.0": 31, "1.0": 270},
        version_errors={"2.0": 1, "1.0": 0},
        error_rates={"2.0": 1 / 31, "1.0": 0.0},
        error_intervals={"2.0": Interval(0.0, 0.4), "1.0": Interval(0.0, 0.03)},
        latency_quantiles_ms={"2.0": 1000.0, "1.0": 10.0},
        latency_intervals_ms={"2.0": Interval(1000.0, math.inf), "1.0": Interval(9.0, 11.0)},
        unattributed_errors=1,
    )


def test_health_verdict_is_strict_json_and_round_trips() -> None:
    """An unbounded end travels as null (strict JSON: no Infinity) and comes back as inf."""
    verdict = health_verdict()
    data = verdict.to_json()
    text = json.dumps(data, allow_nan=False)  # raises on inf or NaN
    assert data["intervals"]["latency ratio"] == [12.5, None]
    assert data["latency_intervals_ms"]["2.0"] == [1000.0, None]
    assert data["history"] == [[16, {"latency ratio": [0.0, None]}]]
    assert data["requests"] == 301
    back = Verdict.from_json(json.loads(text))
    assert back == verdict


def test_health_table_shows_each_version_and_each_check() -> None:
    text = health_verdict().explain()
    lines = text.splitlines()
    assert lines[0] == "canary health expectation FAIL"
    assert lines[1].split() == [
        "version", "role", "n", "errors", "error", "rate", "interval", "p95", "interval"
    ]  # fmt: skip
    assert lines[2].split()[:4] == ["2.0", "canary", "31", "1"]  # the canary first
    assert "[1000.0, -]ms" in lines[2]
    assert lines[3].split()[:2] == ["1.0", "stable"]
    assert "latency (latency ratio)  FAIL" in text and "[x12.500, -]" in text
    assert "errors (error increase)  CONTINUE  [-0.0200, +0.0300]" in text
    assert "1 named no version, against the canary for a PASS only" in text


def test_a_health_row_of_the_summary_shows_the_limits_and_what_was_seen() -> None:
    """Not the versions' shares: the limits asked for and the canary's increase and ratio."""
    log = VerdictLog()
    log.add(health_verdict())
    row = log.summary_lines(120)[2]
    assert "health  err<=+0.01 p95<=x1.2  err+0.032 p95 x100.00  300" in row


def test_health_verdict_reaches_junit_properties_flat() -> None:
    """The generic JUnit properties carry every health field, one per version or check."""
    pairs = dict(junit_properties(health_verdict(), 1))
    assert pairs["canary.1"] == "canary health expectation FAIL"
    assert pairs["canary.1.checks[latency]"] == "FAIL"
    assert pairs["canary.1.roles[2.0]"] == "canary"
    assert pairs["canary.1.version_errors[2.0]"] == "1"
    assert pairs["canary.1.limits[max_error_increase]"] == "0.01"
    assert "canary.1.intervals[latency ratio]" in pairs
