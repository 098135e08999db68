"""Verdicts: what an expectation decided, and how it reads when it fails.

A failing expectation raises :class:`CanaryAssertionError` (an ``AssertionError``) whose
message is one small table: expected share and band, observed share, interval, n, errors,
per-version counts and the decision. The same :class:`Verdict` goes to the session summary
and the JSON report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_canary.stats import Interval


class CanaryAssertionError(AssertionError):
    """An expectation about observed traffic failed; ``verdict`` holds the evidence."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.explain())


@dataclass
class Verdict:
    """The outcome of one expectation.

    Attributes:
        kind: "split", "routed" or "zero-downtime".
        passed: whether the expectation held.
        decision: PASS, FAIL or INCONCLUSIVE, and why.
        expected: version -> expected share.
        observed: version -> observed share among classified responses.
        counts: version -> responses.
        intervals: version -> anytime-valid confidence interval of its share.
        bands: version -> accepted band (expected ± tolerance).
        n: classified responses used for the decision.
        errors: failed requests by reason (never counted as a version).
        requests: every request sent (n + errors).
    """

    kind: str
    passed: bool
    decision: str
    expected: dict[str, float]
    observed: dict[str, float]
    counts: dict[str, int]
    n: int
    errors: dict[str, int]
    alpha: float
    tolerance: float | None = None
    intervals: dict[str, Interval] = field(default_factory=dict)
    bands: dict[str, Interval] = field(default_factory=dict)
    reason: str = ""
    elapsed: float = 0.0
    strategy: str = ""
    test: str = ""
    request: str = ""
    history: list[tuple[int, dict[str, Interval]]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Every request sent: classified responses plus errors."""
        return self.n + sum(self.errors.values())

    @property
    def interval(self) -> Interval | None:
        """The interval of the first expected non-stable share (the canary's), if any."""
        for version in self.expected:
            if version in self.intervals:
                return self.intervals[version]
        return None

    def __repr__(self) -> str:
        shares = ", ".join(f"{v}={s:.3f}" for v, s in self.observed.items())
        return (
            f"<Verdict {self.kind} {self.decision} n={self.n} errors={sum(self.errors.values())}"
            f" observed {shares or '-'}>"
        )

    def explain(self) -> str:
        """The failure message: a headline and a small table of the evidence."""
        title = f"canary {self.kind} expectation {self.decision}"
        if self.request:
            title += f" for {self.request}"
        lines = [title + (f": {self.reason}" if self.reason else "")]
        lines.append(self.table())
        return "\n".join(lines)

    def table(self) -> str:
        """expected vs observed per version, with band, interval and counts."""
        versions = list(dict.fromkeys([*self.expected, *self.counts]))
        header = ["version", "expected", "band", "observed", "interval", "count"]
        rows = [header]
        for v in versions:
            exp = self.expected.get(v)
            band = self.bands.get(v)
            interval = self.intervals.get(v)
            rows.append(
                [
                    v,
                    "-" if exp is None else f"{exp:.3f}",
                    "-" if band is None else f"[{band.low:.3f}, {band.high:.3f}]",
                    f"{self.observed.get(v, 0.0):.3f}",
                    "-" if interval is None else f"[{interval.low:.3f}, {interval.high:.3f}]",
                    str(self.counts.get(v, 0)),
                ]
            )
        out = format_rows(rows, indent="  ")
        error_total = sum(self.errors.values())
        detail = ", ".join(f"{k}: {c}" for k, c in sorted(self.errors.items())) or "none"
        out.append(
            f"  n={self.n} classified, errors={error_total} ({detail}), alpha={self.alpha:g}"
            + (f", tolerance={self.tolerance:g}" if self.tolerance is not None else "")
            + f", {self.elapsed:.2f}s"
            + (
                f", latency p50 {self.latency_ms['p50']:.1f}ms p95 {self.latency_ms['p95']:.1f}ms"
                if self.latency_ms
                else ""
            )
        )
        return "\n".join(out)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The verdict :meth:`to_json` described (how verdicts travel from xdist workers)."""
        fields = dict(data)
        fields.pop("requests", None)

        def interval(pair: Any) -> Interval:
            return Interval(float(pair[0]), float(pair[1]))

        fields["intervals"] = {k: interval(v) for k, v in fields.get("intervals", {}).items()}
        fields["bands"] = {k: interval(v) for k, v in fields.get("bands", {}).items()}
        fields["history"] = [
            (int(n), {k: interval(v) for k, v in ivs.items()})
            for n, ivs in fields.get("history", [])
        ]
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the verdict (intervals as [low, high])."""
        data = asdict(self)
        data["intervals"] = {k: [i.low, i.high] for k, i in self.intervals.items()}
        data["bands"] = {k: [i.low, i.high] for k, i in self.bands.items()}
        data["history"] = [
            [n, {k: [i.low, i.high] for k, i in ivs.items()}] for n, ivs in self.history
        ]
        data["requests"] = self.requests
        return data


@dataclass
class VerdictLog:
    """Every verdict of a session, in order, for the summary and the JSON report."""

    verdicts: list[Verdict] = field(default_factory=list)

    def add(self, verdict: Verdict) -> None:
        """Record one verdict."""
        self.verdicts.append(verdict)

    def summary_lines(self) -> list[str]:
        """A table, one row per verdict: decision, test, strategy, kind, expected, observed,
        n, errors, time."""
        rows = [
            ["result", "test", "strategy", "check", "expected", "observed", "n", "errors", "time"]
        ]
        for v in self.verdicts:
            rows.append(
                [
                    v.decision,
                    v.test,
                    v.strategy,
                    v.kind + (f" ({v.request})" if v.request else ""),
                    " ".join(f"{k}={s:.2f}" for k, s in v.expected.items()) or "-",
                    " ".join(f"{k}={s:.3f}" for k, s in v.observed.items()) or "-",
                    str(v.n),
                    str(sum(v.errors.values())),
                    f"{v.elapsed:.2f}s",
                ]
            )
        return format_rows(rows)

    def write_json(self, path: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write every verdict (and ``extra`` run facts) to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"verdicts": [v.to_json() for v in self.verdicts], **(extra or {})}
        path.write_text(json.dumps(document, indent=2, sort_keys=True))


def format_rows(rows: list[list[str]], indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart (trailing spaces trimmed)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]
