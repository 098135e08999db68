"""Settings: one table of options, parsed and resolved in one place.

Precedence (first found wins), documented in README:
1. an argument of the call (``expect_split(alpha=...)``),
2. the ``@pytest.mark.canary(...)`` marker,
3. the command line (``--canary-alpha``),
4. the environment (``PYTEST_CANARY_ALPHA``),
5. the ini file (``canary_alpha``),
6. the default.
Every value is validated; an error names the value, where it came from and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_canary.errors import CanaryConfigError


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("must be a number") from None


def _fraction(low_open: bool = True, high: float = 1.0) -> Callable[[str], float]:
    interval = f"({0 if low_open else '[0'}, {high:g})"

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number in {interval}") from None
        if not (0.0 < value < high if low_open else 0.0 <= value < high):
            raise ValueError(f"must be in {interval}")
        return value

    return parse


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("must be an integer of 1 or more") from None
    if value < 1:
        raise ValueError("must be an integer of 1 or more")
    return value


def _positive_float(raw: str) -> float:
    value = _number(raw)
    if value <= 0:
        raise ValueError("must be a number above 0")
    return value


@dataclass(frozen=True)
class Setting:
    """One statistical or traffic setting that CLI, env, ini and marker can set."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str

    @property
    def flag(self) -> str:
        """Command-line flag."""
        return "--canary-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        """ini key."""
        return "canary_" + self.name

    @property
    def env(self) -> str:
        """Environment variable."""
        return "PYTEST_CANARY_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "alpha",
        _fraction(high=0.5),
        0.001,
        "Error probability of every verdict: a right expectation fails, or a wrong one "
        "passes, with probability at most alpha (default 0.001).",
    ),
    Setting(
        "tolerance",
        _fraction(high=0.5),
        0.05,
        "Accepted distance between expected and true share, as a fraction (default 0.05: "
        "an expected 0.20 accepts 0.15-0.25).",
    ),
    Setting(
        "leak",
        _fraction(high=1.0),
        0.02,
        "Smallest leak rate expect_routed must catch (default 0.02: it sends "
        "ceil(ln alpha / ln(1 - leak)) requests).",
    ),
    Setting(
        "max_requests",
        _positive_int,
        20_000,
        "Request budget of one expect_split; undecided at the budget is INCONCLUSIVE "
        "(default 20000).",
    ),
    Setting(
        "concurrency",
        _positive_int,
        16,
        "Requests in flight at once while sampling (default 16).",
    ),
    Setting(
        "timeout",
        _positive_float,
        10.0,
        "Seconds one request may take before it counts as an error (default 10).",
    ),
)
BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Source:
    """Raw values of one place settings come from, e.g. the ini file."""

    label: str  # "ini canary_alpha", "marker", ...
    values: Mapping[str, str | None]


def resolve(sources: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Resolve every setting: the first source (in the order given) that sets it wins.

    Args:
        sources: (label, values) pairs from the highest precedence to the lowest; a label
            is formatted with the setting, e.g. ``"ini {ini}"`` -> ``"ini canary_alpha"``.

    Raises:
        CanaryConfigError: naming the value, where it came from and what is allowed.
    """
    resolved: dict[str, Any] = {}
    for setting in SETTINGS:
        resolved[setting.name] = setting.default
        for label, values in sources:
            raw = values.get(setting.name)
            if raw is None or raw == "":
                continue
            where = label.format(
                flag=setting.flag, ini=setting.ini, env=setting.env, name=setting.name
            )
            try:
                resolved[setting.name] = raw if not isinstance(raw, str) else setting.parse(raw)
                if not isinstance(raw, str):
                    setting.parse(str(raw))
            except ValueError as exc:
                raise CanaryConfigError(f"{setting.name} {raw!r} from {where}: {exc}") from None
            break
    return resolved
