"""Settings: every option of pytest-canary, parsed and resolved in one place.

Precedence (first found wins), documented in README:
1. an argument of the call (``expect_split(alpha=...)``),
2. the ``@pytest.mark.canary(...)`` marker,
3. the command line (``--canary-alpha``),
4. the environment (``PYTEST_CANARY_ALPHA``),
5. the ini file (``canary_alpha``),
6. the default.
Every value is validated; an error names the value, where it came from and what is allowed.

No pytest here: a source is a label and a lookup function, so a script can resolve settings
from its own places (the plugin passes the marker, ``config.getoption``, ``os.environ`` and
``config.getini``).

Example:
    >>> sources = [Source("environment {env}", lambda o: {"alpha": "0.01"}.get(o.name))]
    >>> resolve(SETTINGS, sources)["alpha"].value
    0.01
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_canary.errors import CanaryConfigError

# -- parsers: raw value -> setting, or ValueError("must be ...") ---------------------------------


def _fraction(high: float) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number in (0, {high:g})") from None
        if not 0.0 < value < high:
            raise ValueError(f"must be in (0, {high:g})")
        return value

    return parse


def _int_up_to(high: int) -> Callable[[Any], int]:
    """A parser of a whole number from 1 to ``high`` (every input has a bound)."""
    allowed = f"must be an integer from 1 to {high:,}"

    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(allowed)
        try:
            value = int(str(raw))
        except ValueError:
            raise ValueError(allowed) from None
        if not 1 <= value <= high:
            raise ValueError(allowed)
        return value

    return parse


def _float_up_to(high: float) -> Callable[[Any], float]:
    """A parser of a number above 0 and at most ``high`` (nan and inf are refused)."""
    allowed = f"must be a number above 0 and at most {high:g}"

    def parse(raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError(allowed)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(allowed) from None
        if not 0.0 < value <= high:  # False for nan
            raise ValueError(allowed)
        return value

    return parse


def choice(*allowed: str) -> Callable[[Any], str]:
    """A parser accepting exactly one of ``allowed``."""

    def parse(raw: Any) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return str(raw)

    return parse


def seed(raw: Any) -> int | str:
    """An integer seed, or ``"last"`` (the seed of the run ``last`` means)."""
    if raw == "last":
        return "last"
    try:
        return int(str(raw))
    except ValueError:
        raise ValueError("must be an integer or 'last'") from None


def text(raw: Any) -> Any:
    """The raw value as given (a string, or a list for repeatable options); the backend that
    uses it validates it."""
    return raw


# The words pytest's ini ``bool`` type reads (_pytest/config ``_strtobool``): a switch reads
# the same from the environment as from the ini file.
TRUE_WORDS = ("y", "yes", "t", "true", "on", "1")
FALSE_WORDS = ("n", "no", "f", "false", "off", "0")


def boolean(raw: Any) -> bool:
    """``True``/``False``, or a word of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` (any case)."""
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")


# -- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option: a flag, its ini key and environment variable, its parser and default.

    Attributes:
        flag: the command-line flag, e.g. ``--canary-alpha``; the other names derive from it:
            :attr:`name` ``alpha``, :attr:`ini` ``canary_alpha``, :attr:`env`
            ``PYTEST_CANARY_ALPHA``.
        help: one sentence for ``pytest --help``, shared by the flag and the ini key.
        parse: raw value -> setting; raises ``ValueError("must be ...")``.
        default: the value when no source sets it.
        metavar: how ``--help`` shows the value.
        action: ``store``, ``store_true`` (a switch), ``append`` (repeatable; a list, the
            environment variable whitespace-separated, the ini key one per line) or
            ``optional`` (the bare flag means :attr:`const`).
        const: the value of a bare ``optional`` flag.
        has_ini: whether an ini key exists.
        per_test: whether a test can set it (``@pytest.mark.canary(...)``, call arguments).
    """

    flag: str
    help: str
    parse: Callable[[Any], Any] = text
    default: Any = None
    metavar: str | None = None
    action: str = "store"
    const: Any = None
    has_ini: bool = True
    per_test: bool = False

    @property
    def dest(self) -> str:
        """The argparse destination (``canary_alpha``, ``kube_context``)."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def name(self) -> str:
        """The setting's name (``alpha``, ``kube_context``): marker and argument keyword."""
        return self.dest.removeprefix("canary_")

    @property
    def ini(self) -> str | None:
        """The ini key (``canary_alpha``), or None."""
        return self.dest if self.has_ini else None

    @property
    def env(self) -> str:
        """The environment variable (``PYTEST_CANARY_ALPHA``)."""
        return "PYTEST_CANARY_" + self.name.upper()


# Statistical and traffic settings: every test can set them (marker, call arguments).
SETTINGS: tuple[Option, ...] = (
    Option(
        "--canary-alpha",
        "Error probability of every verdict: a right expectation fails, or a wrong one "
        "passes, with probability at most alpha (default 0.001).",
        _fraction(0.5),
        0.001,
        per_test=True,
    ),
    Option(
        "--canary-tolerance",
        "Accepted distance between expected and true share, as a fraction (default 0.05: "
        "an expected 0.20 accepts 0.15-0.25).",
        _fraction(0.5),
        0.05,
        per_test=True,
    ),
    Option(
        "--canary-leak",
        "Smallest leak rate expect_routed must catch (default 0.02: it sends "
        "ceil(ln alpha / ln(1 - leak)) requests).",
        _fraction(1.0),
        0.02,
        per_test=True,
    ),
    Option(
        "--canary-max-requests",
        "Request budget of one expect_split; undecided at the budget is INCONCLUSIVE "
        "(default 20000, at most 1000000).",
        _int_up_to(1_000_000),
        20_000,
        per_test=True,
    ),
    Option(
        "--canary-concurrency",
        "Requests in flight at once while sampling (default 16, at most 256).",
        _int_up_to(256),
        16,
        per_test=True,
    ),
    Option(
        "--canary-timeout",
        "Seconds one request may take before it counts as an error (default 10, at most 600).",
        _float_up_to(600.0),
        10.0,
        per_test=True,
    ),
)
BY_NAME = {s.name: s for s in SETTINGS}

BACKENDS = ("local", "kind", "kube")
RUNTIMES = ("process", "docker")

# Settings of the whole session.
SESSION_OPTIONS: tuple[Option, ...] = (
    Option(
        "--canary-backend",
        "Where releases run: local (default; processes and a local router on 127.0.0.1), "
        "kind (a kind cluster with ingress-nginx, Istio and Gateway API) or kube (an existing "
        "cluster).",
        choice(*BACKENDS),
        "local",
        metavar="{" + ",".join(BACKENDS) + "}",
    ),
    Option(
        "--canary-runtime",
        "How the local backend runs pods: process (default; the Python sample app as local "
        "processes) or docker (a container of each version's image, published on 127.0.0.1; "
        "sample images are built on demand, nothing is pulled).",
        choice(*RUNTIMES),
        "process",
        metavar="{" + ",".join(RUNTIMES) + "}",
    ),
    Option(
        "--canary-seed",
        "Seed of the local backend's routing decisions, to repeat a run exactly; 'last' "
        "reuses the seed of the last failed run (of the last run when none failed).",
        seed,
        None,
        metavar="N|last",
    ),
    Option(
        "--canary-report",
        "Write every canary verdict of the session to this JSON file.",
        metavar="PATH",
    ),
    Option(
        "--canary-plots",
        "Write one PNG per expect_split and expect_healthy into DIR: each expected "
        "version's share (or the canary's error-rate increase and latency ratio), its "
        "confidence sequence narrowing over the requests against the accepted band or "
        "limit (needs matplotlib).",
        metavar="DIR",
    ),
)


@dataclass(frozen=True)
class Source:
    """One place settings come from.

    Attributes:
        label: where a value comes from, formatted with the option: ``"ini {ini}"`` reads
            ``ini canary_alpha``; fields ``flag``, ``ini``, ``env``, ``name``.
        lookup: the raw value this place gives an option (None or "" when it gives none).
    """

    label: str
    lookup: Callable[[Option], Any]

    def where(self, option: Option) -> str:
        """The label for one option."""
        return self.label.format(flag=option.flag, ini=option.ini, env=option.env, name=option.name)


@dataclass(frozen=True)
class Resolved:
    """A resolved option: its value and where it came from (``"default"`` if nowhere)."""

    value: Any
    origin: str


def _present(raw: Any) -> bool:
    return raw is not None and raw != "" and raw != []


def resolve_one(option: Option, sources: Iterable[Source]) -> Resolved:
    """The value of ``option`` from the first source (highest precedence first) that sets it.

    Raises:
        CanaryConfigError: naming the value, where it came from and what is allowed, e.g.
            ``alpha '1.5' from ini canary_alpha: must be in (0, 0.5)``.
    """
    for source in sources:
        raw = source.lookup(option)
        if not _present(raw):
            continue
        where = source.where(option)
        try:
            return Resolved(option.parse(raw), where)
        except ValueError as exc:
            raise CanaryConfigError(f"{option.name} {raw!r} from {where}: {exc}") from None
    return Resolved(option.default, "default")


def resolve(options: Iterable[Option], sources: Sequence[Source]) -> dict[str, Resolved]:
    """:func:`resolve_one` for every option, by :attr:`Option.name`."""
    return {option.name: resolve_one(option, sources) for option in options}


def mapping_source(label: str, values: Mapping[str, Any]) -> Source:
    """A source from a mapping of setting names (a marker's keywords, call arguments)."""
    return Source(label, lambda option: values.get(option.name) if option.per_test else None)


def unknown_settings(names: Iterable[str]) -> list[str]:
    """The names that are no per-test setting (a typo in a marker), sorted."""
    return sorted(set(names) - set(BY_NAME))


@dataclass(frozen=True)
class Settings:
    """Statistical and traffic settings of expectations (resolved by :func:`resolve`).

    Attributes: see :data:`SETTINGS` (``pytest --help`` prints each one's meaning).
    """

    alpha: float = 0.001
    tolerance: float = 0.05
    leak: float = 0.02
    max_requests: int = 20_000
    concurrency: int = 16
    timeout: float = 10.0

    @classmethod
    def resolved(cls, sources: Sequence[Source]) -> Settings:
        """The settings from ``sources`` (highest precedence first) over the defaults."""
        return cls(**{name: r.value for name, r in resolve(SETTINGS, sources).items()})

    def with_arguments(self, **arguments: Any) -> Settings:
        """These settings with the call's own arguments (None: not given) on top: the first
        rule of the precedence.

        Raises:
            CanaryConfigError: ``alpha 1.5 from argument alpha=: must be in (0, 0.5)``.
        """
        given = {k: v for k, v in arguments.items() if v is not None}
        if not given:
            return self
        options = [BY_NAME[name] for name in given]
        source = mapping_source("argument {name}=", given)
        return dataclasses.replace(
            self, **{name: r.value for name, r in resolve(options, [source]).items()}
        )
