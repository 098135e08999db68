"""Verdicts: what an expectation decided, and how it reads when it fails.

A failing expectation raises :class:`CanaryAssertionError` (an ``AssertionError``) whose
message is one small table: expected share and band, observed share, interval, n, errors,
per-version counts and the decision. The same :class:`Verdict` goes to the session summary
and the JSON report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_canary.stats import Interval

SUMMARY_WIDTH = 120  # what a CI log shows without wrapping

#: Verdict fields that map a name to an :class:`Interval` (``[low, high]`` in JSON; an
#: unbounded end, such as a latency ratio before the canary's quantile has an upper bound,
#: is ``null``).
INTERVAL_FIELDS = ("intervals", "bands", "error_intervals", "latency_intervals_ms")


def _interval_json(interval: Interval) -> list[float | None]:
    return [
        None if math.isinf(interval.low) else interval.low,
        None if math.isinf(interval.high) else interval.high,
    ]


def _interval_from_json(pair: Any) -> Interval:
    low, high = pair
    return Interval(
        -math.inf if low is None else float(low), math.inf if high is None else float(high)
    )


class CanaryAssertionError(AssertionError):
    """An expectation about observed traffic failed; ``verdict`` holds the evidence."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.explain())


@dataclass
class Verdict:
    """The outcome of one expectation.

    Attributes:
        kind: "split", "routed", "zero-downtime" or "health".
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
        caught: the test expected this failure: it passed although the verdict failed (it
            caught the :class:`CanaryAssertionError`, e.g. with ``pytest.raises``), or it is
            marked ``xfail``. Summaries show such a verdict as ``FAIL (expected)``.

    A ``"health"`` verdict (``expect_healthy``) compares the canary with the stable version:
    ``intervals`` and ``bands`` hold the confidence sequence and the healthy range of each
    comparison (``"error increase"``: canary minus stable error rate; ``"latency ratio"``:
    canary over stable latency quantile), ``history`` their sequences, and these fields the
    per-version evidence (all flat and JSON-ready; empty for other kinds):

    Attributes:
        roles: version -> "canary" or "stable".
        checks: comparison ("errors", "latency") -> PASS, FAIL or CONTINUE (undecided).
        limits: max_error_increase, max_latency_increase and quantile of the expectation.
        version_requests: version -> requests attributed to it (answers naming it, and for
            the canary the failed requests that named no version).
        version_errors: version -> failed requests among those.
        error_rates: version -> observed error rate.
        error_intervals: version -> confidence sequence of its error rate.
        latency_quantiles_ms: version -> observed latency quantile (milliseconds).
        latency_intervals_ms: version -> confidence sequence of that quantile, once bounded
            on both sides.
        unattributed_errors: failed requests that named no version (against the canary for a
            PASS only).
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
    caught: bool = False
    roles: dict[str, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    version_requests: dict[str, int] = field(default_factory=dict)
    version_errors: dict[str, int] = field(default_factory=dict)
    error_rates: dict[str, float] = field(default_factory=dict)
    error_intervals: dict[str, Interval] = field(default_factory=dict)
    latency_quantiles_ms: dict[str, float] = field(default_factory=dict)
    latency_intervals_ms: dict[str, Interval] = field(default_factory=dict)
    unattributed_errors: int = 0

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

    @property
    def result(self) -> str:
        """The decision as a summary shows it: ``PASS``, ``FAIL`` or ``FAIL (expected)``."""
        return f"{self.decision} (expected)" if self.caught and not self.passed else self.decision

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
        """expected vs observed per version, with band, interval and counts (for a health
        verdict: per version n, errors, error rate and latency quantile with their intervals,
        then each comparison and its decision)."""
        if self.kind == "health":
            return self._health_table()
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

    def expected_cell(self) -> str:
        """What was asked, for the summary table: shares, or a health verdict's limits."""
        if self.kind == "health":
            label = f"p{self.limits.get('quantile', 0.95) * 100:g}"
            errors = self.limits.get("max_error_increase")
            latency = self.limits.get("max_latency_increase")
            parts = []
            if errors is not None:
                parts.append(f"err<=+{errors:g}")
            if latency is not None:
                parts.append(f"{label}<=x{1 + latency:g}")
            return " ".join(parts) or "-"
        return " ".join(f"{k}={s:.2f}" for k, s in self.expected.items()) or "-"

    def observed_cell(self) -> str:
        """What was seen, for the summary table: shares, or for a health verdict the canary's
        error-rate increase and latency-quantile ratio over the stable's (point estimates)."""
        if self.kind == "health":
            canary = next((v for v, r in self.roles.items() if r == "canary"), None)
            stable = next((v for v, r in self.roles.items() if r == "stable"), None)
            if canary is None or stable is None:
                return "-"
            label = f"p{self.limits.get('quantile', 0.95) * 100:g}"
            increase = self.error_rates.get(canary, 0.0) - self.error_rates.get(stable, 0.0)
            parts = [f"err{increase:+.3f}"]
            mine = self.latency_quantiles_ms.get(canary)
            theirs = self.latency_quantiles_ms.get(stable)
            if mine is not None and theirs:
                parts.append(f"{label} x{mine / theirs:.2f}")
            return " ".join(parts)
        return " ".join(f"{k}={s:.3f}" for k, s in self.observed.items()) or "-"

    def _health_table(self) -> str:
        label = f"p{self.limits.get('quantile', 0.95) * 100:g}"
        rows = [["version", "role", "n", "errors", "error rate", "interval", label, "interval"]]
        for version in sorted(self.roles, key=lambda v: self.roles[v] != "canary"):
            rate = self.error_intervals.get(version)
            latency = self.latency_intervals_ms.get(version)
            quantile = self.latency_quantiles_ms.get(version)
            rows.append(
                [
                    version,
                    self.roles[version],
                    str(self.version_requests.get(version, 0)),
                    str(self.version_errors.get(version, 0)),
                    f"{self.error_rates.get(version, 0.0):.4f}",
                    "-" if rate is None else f"[{rate.low:.4f}, {rate.high:.4f}]",
                    "-" if quantile is None else f"{quantile:.1f}ms",
                    "-" if latency is None else f"[{latency.low:.1f}, {_end(latency.high)}]ms",
                ]
            )
        out = format_rows(rows, indent="  ")
        checks = [["check", "decision", "confidence sequence", "healthy"]]
        for check, key, kind in (
            ("errors", "error increase", "difference"),
            ("latency", "latency ratio", "ratio"),
        ):
            interval = self.intervals.get(key)
            band = self.bands.get(key)
            if kind == "difference":
                shown = "-" if interval is None else f"[{interval.low:+.4f}, {interval.high:+.4f}]"
                healthy = "-" if band is None else f"<= {band.high:+.4f}"
            else:
                shown = (
                    "-"
                    if interval is None
                    else f"[x{interval.low:.3f}, {_end(interval.high, 'x', 3)}]"
                )
                healthy = "-" if band is None else f"<= x{band.high:.3f}"
            checks.append([f"{check} ({key})", self.checks.get(check, "-"), shown, healthy])
        out += format_rows(checks, indent="  ")
        error_total = sum(self.errors.values())
        detail = ", ".join(f"{k}: {c}" for k, c in sorted(self.errors.items())) or "none"
        out.append(
            f"  {self.requests} requests, errors={error_total} ({detail}; "
            f"{self.unattributed_errors} named no version, against the canary for a PASS only), "
            f"alpha={self.alpha:g}, {self.elapsed:.2f}s"
        )
        return "\n".join(out)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The verdict :meth:`to_json` described (how verdicts travel from xdist workers)."""
        fields = dict(data)
        fields.pop("requests", None)

        for name in INTERVAL_FIELDS:
            fields[name] = {k: _interval_from_json(v) for k, v in fields.get(name, {}).items()}
        fields["history"] = [
            (int(n), {k: _interval_from_json(v) for k, v in ivs.items()})
            for n, ivs in fields.get("history", [])
        ]
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the verdict (intervals as [low, high])."""
        data = asdict(self)
        for name in INTERVAL_FIELDS:
            data[name] = {k: _interval_json(i) for k, i in getattr(self, name).items()}
        data["history"] = [
            [n, {k: _interval_json(i) for k, i in ivs.items()}] for n, ivs in self.history
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

    def summary_lines(self, width: int = SUMMARY_WIDTH) -> list[str]:
        """A table of every verdict, at most ``width`` columns wide: each test's id on a line
        of its own, then one row per verdict (result, strategy, check, expected, observed,
        n, errors, time). Long cells are elided in the middle; expected and observed shares
        by whole versions (``2.0=0.25 1.0=0.50 +1``)."""
        rows = [["result", "strategy", "check", "expected", "observed", "n", "errors", "time"]]
        for v in self.verdicts:
            rows.append(
                [
                    v.result,
                    v.strategy,
                    v.kind + (f" ({v.request})" if v.request else ""),
                    v.expected_cell(),
                    v.observed_cell(),
                    str(v.n),
                    str(sum(v.errors.values())),
                    f"{v.elapsed:.2f}s",
                ]
            )
        # Shrink the free-text columns first: check, observed, expected, strategy.
        table = format_rows(rows, indent="  ", width=width, shrink=(2, 4, 3, 1), entries=(3, 4))
        lines = [table[0]]
        previous = None
        for verdict, row in zip(self.verdicts, table[1:], strict=True):
            if verdict.test != previous:
                lines.append(elide(verdict.test or "(no test)", width))
                previous = verdict.test
            lines.append(row)
        return lines

    def write_json(self, path: Path, extra: Mapping[str, Any] | None = None) -> None:
        """Write every verdict (and ``extra`` run facts) to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"verdicts": [v.to_json() for v in self.verdicts], **(extra or {})}
        path.write_text(json.dumps(document, indent=2, sort_keys=True))


def _end(value: float, prefix: str = "", digits: int = 1) -> str:
    """An interval end for a table: ``-`` where it is unbounded."""
    return "-" if math.isinf(value) else f"{prefix}{value:.{digits}f}"


def elide(text: str, width: int) -> str:
    """``text`` shortened to ``width`` characters by an ellipsis in the middle, keeping more
    of the end (a test id ends with the test's name, a check with its request)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 3
    tail = width - 1 - head
    return text[:head] + "\u2026" + text[len(text) - tail :]


def elide_entries(text: str, width: int) -> str:
    """A cell of space-separated entries (``2.0=0.25 1.0=0.50 3.0=0.25``) shortened to
    ``width`` by whole entries: the first ones that fit and ``+k`` for the ``k`` left out, so
    no version's value is cut in two. A cell of other words, or whose first entry alone does
    not fit, is elided in the middle."""
    if len(text) <= width:
        return text
    entries = text.split(" ")
    if not all("=" in entry for entry in entries):
        return elide(text, width)  # not a list of version=share (a health cell: p95 x1.05)
    for kept in range(len(entries) - 1, 0, -1):
        shown = " ".join(entries[:kept]) + f" +{len(entries) - kept}"
        if len(shown) <= width:
            return shown
    return elide(text, width)


def format_rows(
    rows: list[list[str]],
    indent: str = "",
    *,
    width: int | None = None,
    shrink: tuple[int, ...] = (),
    min_width: int = 12,
    entries: tuple[int, ...] = (),
) -> list[str]:
    """Left-aligned columns, two spaces apart (trailing spaces trimmed).

    With ``width``, the columns listed in ``shrink`` (widest first) are narrowed, no
    narrower than ``min_width``, until a row fits; their cells are elided in the middle, or
    by whole entries in the columns listed in ``entries`` (:func:`elide_entries`).
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if width is not None:
        total = len(indent) + sum(widths) + 2 * (len(widths) - 1)
        while total > width:
            candidates = sorted(
                (i for i in shrink if widths[i] > min_width), key=lambda i: -widths[i]
            )
            if not candidates:
                break
            # Level the widest down to the next one (or the minimum) first: the cut is
            # shared among the long columns instead of eating one of them.
            widest = candidates[0]
            floor = max([min_width, *(widths[i] for i in candidates[1:2])])
            cut = max(1, min(total - width, widths[widest] - floor))
            widths[widest] -= cut
            total -= cut
    cutters = [elide_entries if i in entries else elide for i in range(len(widths))]
    return [
        (
            indent
            + "  ".join(
                cut(cell, w).ljust(w) for cell, w, cut in zip(r, widths, cutters, strict=True)
            )
        ).rstrip()
        for r in rows
    ]


# -- JUnit XML -----------------------------------------------------------------------------------

# Fields of a verdict's JSON that JUnit properties leave out: the test case names the test,
# and the history (every batch's intervals) belongs in the JSON report and the plots.
JUNIT_SKIPPED_FIELDS = ("test", "history")
# Fields only a health verdict fills: the other kinds leave them out of JUnit (empty there).
HEALTH_FIELDS = frozenset(
    {
        "roles",
        "checks",
        "limits",
        "version_requests",
        "version_errors",
        "error_rates",
        "error_intervals",
        "latency_quantiles_ms",
        "latency_intervals_ms",
        "unattributed_errors",
    }
)


def _property_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".6g")
    if isinstance(value, (list, tuple)) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
    ):
        return "[" + ", ".join(_property_value(x) for x in value) + "]"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def junit_properties(verdict: Verdict, index: int) -> list[tuple[str, str]]:
    """The verdict as JUnit ``<property>`` pairs, read from its JSON (so that every kind of
    verdict, and every field a kind adds, gets there).

    ``canary.N`` carries the headline (what a CI page shows first); then one flat property
    per field: ``canary.N.decision``, ``canary.N.n``, and one per version for mappings,
    ``canary.N.observed[2.0]`` or ``canary.N.intervals[2.0] = [0.132, 0.524]``. An empty
    mapping reads ``none``. A field that does not apply to the verdict's kind is left out: one
    whose value is None (a health verdict has no ``tolerance``), the health fields of other
    kinds; a health verdict's ``expected`` is its limits as the summary shows them
    (``err<=+0.01 p95<=x1.2``), not the shares it has none of.

    Args:
        verdict: the verdict.
        index: its position among the test's verdicts, from 1.
    """
    prefix = f"canary.{index}"
    pairs = [(prefix, verdict.explain().splitlines()[0])]
    health = verdict.kind == "health"
    for key, value in verdict.to_json().items():
        if key in JUNIT_SKIPPED_FIELDS or value is None or (key in HEALTH_FIELDS and not health):
            continue
        if health and key == "expected":
            pairs.append((f"{prefix}.expected", verdict.expected_cell()))
            continue
        if isinstance(value, dict):
            if not value:
                pairs.append((f"{prefix}.{key}", "none"))
            for sub, item in value.items():
                pairs.append((f"{prefix}.{key}[{sub}]", _property_value(item)))
        else:
            pairs.append((f"{prefix}.{key}", _property_value(value)))
    return pairs


# -- failure evidence ----------------------------------------------------------------------------

# Kinds of a manifest section that decide routing: what a failing test's report keeps.
ROUTING_KINDS = frozenset(
    {"Ingress", "VirtualService", "DestinationRule", "Gateway", "HTTPRoute", "Rollout"}
)
_TIMESTAMP = re.compile(r"^\d{2}:\d{2}:\d{2}(?:\.\d+)? ")
_KIND_LINE = re.compile(r"^kind: (\S+)\s*$", re.MULTILINE)


def _collapse_repeats(text: str) -> list[str]:
    """Log lines that differ only by their leading time stamp, counted once each
    (``17x foo.bar / -> [kubeapp-canary:80] ... (weight 30/100 drew the canary)``)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        counts[_TIMESTAMP.sub("", line)] = counts.get(_TIMESTAMP.sub("", line), 0) + 1
    if len(counts) == len(text.splitlines()):
        return text.splitlines()
    return [f"{count}x {line}" if count > 1 else line for line, count in counts.items()]


def _routing_documents(text: str) -> tuple[list[str], list[str]]:
    """The routing objects of a YAML manifest section, and the kind/name of the others."""
    kept: list[str] = []
    left: list[str] = []
    for document in re.split(r"^---\s*$", text, flags=re.MULTILINE):
        if not document.strip():
            continue
        kind = _KIND_LINE.search(document)
        if kind is None or kind[1] in ROUTING_KINDS:
            kept.append(document.strip("\n"))
        else:
            name = re.search(r"^  name: (\S+)", document, re.MULTILINE)
            left.append(f"{kind[1]}/{name[1] if name else '?'}")
    return kept, left


def failure_evidence(
    sections: Mapping[str, str], *, max_lines: int = 30, full_at: str | None = None
) -> str:
    """What a failing test's report shows of a backend's diagnostics: the evidence first,
    short: repeated log lines counted once, each section cut at ``max_lines``, manifests
    reduced to their routing objects and moved last.

    Args:
        sections: section name -> text (``Diagnostics.sections``).
        max_lines: lines shown per section.
        full_at: where the complete sections were written (``--canary-artifacts``), said at
            the end; without it the end says how to get them.
    """
    evidence = [(n, t) for n, t in sections.items() if not n.startswith("manifests")]
    manifests = [(n, t) for n, t in sections.items() if n.startswith("manifests")]
    blocks: list[str] = []
    cut = False
    for name, text in evidence:
        lines = _collapse_repeats(text.rstrip())
        if len(lines) > max_lines:
            lines = [*lines[:max_lines], f"... {len(lines) - max_lines} more lines"]
            cut = True
        blocks.append(f"--- {name} ---\n" + "\n".join(lines))
    for name, text in manifests:
        kept, left = _routing_documents(text)
        body = "\n---\n".join(kept)
        if left:
            body += ("\n" if body else "") + f"(not shown: {', '.join(left)})"
            cut = True
        blocks.append(f"--- {name}: routing objects ---\n{body}")
    if full_at:
        blocks.append(f"(every section in full: {full_at})")
    elif cut:
        blocks.append("(every section in full, manifests included: --canary-artifacts=DIR)")
    return "\n\n".join(blocks)
