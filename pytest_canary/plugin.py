"""pytest wiring of pytest-canary: options, ini keys, the marker, fixtures, header and summary.

No logic lives here that a script could not call without pytest: see ``harness``,
``backends`` and ``config``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_canary import config as settings_table
from pytest_canary.backends.base import Backend
from pytest_canary.errors import CanaryConfigError
from pytest_canary.harness import Harness, Settings
from pytest_canary.plots import plot_file_name, plot_verdict, require_matplotlib
from pytest_canary.report import VerdictLog

BACKENDS = ("local", "kind", "kube")
NOT_YET = {
    "kind": "the kind backend is not available yet in this version of pytest-canary",
    "kube": "the kube backend is not available yet in this version of pytest-canary",
}
SEED_CACHE_KEY = "canary/seed"

backend_key = pytest.StashKey[Backend]()
verdicts_key = pytest.StashKey[VerdictLog]()
seed_key = pytest.StashKey[int]()
harness_key = pytest.StashKey[Harness]()


def _backend_name(raw: str) -> str:
    if raw not in BACKENDS:
        raise pytest.UsageError(f"--canary-backend={raw}: must be one of {', '.join(BACKENDS)}")
    return raw


def _seed(raw: str) -> str:
    if raw != "last" and not raw.lstrip("-").isdigit():
        raise pytest.UsageError(f"--canary-seed={raw}: must be an integer or 'last'")
    return raw


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("canary", "canary releases (pytest-canary)")
    group.addoption(
        "--canary-backend",
        type=_backend_name,
        default=None,
        help="Where releases run: local (default; processes and a local router on 127.0.0.1), "
        "kind or kube.",
    )
    parser.addini("canary_backend", "Default of --canary-backend.", default="local")
    group.addoption(
        "--canary-seed",
        type=_seed,
        default=None,
        help="Seed of the local backend's routing decisions, to repeat a run exactly; "
        "'last' reuses the previous run's seed.",
    )
    group.addoption(
        "--canary-report",
        default=None,
        metavar="PATH",
        help="Write every canary verdict of the session to this JSON file.",
    )
    group.addoption(
        "--canary-plots",
        default=None,
        metavar="DIR",
        help="Write one PNG per expect_split into DIR: the confidence sequence narrowing over "
        "the requests, against the accepted band (needs matplotlib).",
    )
    for setting in settings_table.SETTINGS:
        group.addoption(setting.flag, default=None, help=setting.help)
        parser.addini(setting.ini, setting.help, default=None)


@pytest.hookimpl(trylast=True)  # after the cache provider
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "canary(alpha=None, tolerance=None, leak=None, max_requests=None, concurrency=None, "
        "timeout=None): statistical and traffic settings of pytest-canary for this test.",
    )
    config.stash[verdicts_key] = VerdictLog()
    if config.getoption("canary_plots"):
        try:
            require_matplotlib()
        except CanaryConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    config.stash[seed_key] = _resolve_seed(config)
    # Validate settings early so a typo fails the run once, not every test.
    try:
        _resolve_settings(config, None)
    except CanaryConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    name = _chosen_backend(config)
    if name in NOT_YET:
        raise pytest.UsageError(f"--canary-backend={name}: {NOT_YET[name]}; use local")


def _chosen_backend(config: pytest.Config) -> str:
    name = config.getoption("canary_backend") or os.environ.get("PYTEST_CANARY_BACKEND")
    name = name or str(config.getini("canary_backend") or "local")
    return _backend_name(name)


def _resolve_seed(config: pytest.Config) -> int:
    raw = config.getoption("canary_seed") or os.environ.get("PYTEST_CANARY_SEED")
    cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    if raw == "last":
        last = cache.get(SEED_CACHE_KEY, None) if cache is not None else None
        if last is None:
            raise pytest.UsageError("--canary-seed=last: no previous run recorded a seed")
        seed = int(last)
    elif raw is not None:
        seed = int(_seed(raw))
    else:
        seed = random.randrange(10**9)
    if cache is not None:
        cache.set(SEED_CACHE_KEY, seed)
    return seed


def _resolve_settings(config: pytest.Config, node: pytest.Item | None) -> Settings:
    marker: dict[str, Any] = {}
    if node is not None:
        for mark in reversed(list(node.iter_markers("canary"))):
            marker.update(mark.kwargs)
    unknown = set(marker) - set(settings_table.BY_NAME)
    if unknown:
        raise CanaryConfigError(
            f"@pytest.mark.canary({', '.join(sorted(unknown))}=...): unknown setting; known: "
            f"{', '.join(settings_table.BY_NAME)}"
        )
    cli = {
        s.name: config.getoption(s.flag.lstrip("-").replace("-", "_"))
        for s in settings_table.SETTINGS
    }
    env = {s.name: os.environ.get(s.env) for s in settings_table.SETTINGS}
    ini = {s.name: config.getini(s.ini) for s in settings_table.SETTINGS}
    values = settings_table.resolve(
        [
            ("@pytest.mark.canary({name}=...)", marker),
            ("command line {flag}", cli),
            ("environment {env}", env),
            ("ini {ini}", ini),
        ]
    )
    return Settings(**values)


def pytest_report_header(config: pytest.Config) -> list[str]:
    name = _chosen_backend(config)
    settings = _resolve_settings(config, None)
    if name == "local":
        from pytest_canary.backends.local import MODELS

        what = f"local backend modelling {MODELS}"
    else:
        what = f"{name} backend"
    return [
        f"canary: {what}",
        f"canary: --canary-seed={config.stash[seed_key]} alpha={settings.alpha:g} "
        f"tolerance={settings.tolerance:g}",
    ]


def _make_backend(config: pytest.Config) -> Backend:
    name = _chosen_backend(config)
    if name == "local":
        from pytest_canary.backends.local import LocalBackend

        return LocalBackend(seed=config.stash[seed_key])
    raise pytest.UsageError(f"--canary-backend={name}: {NOT_YET[name]}")


@pytest.fixture(scope="session")
def canary_backend(pytestconfig: pytest.Config) -> Backend:
    """The session's backend (local, kind or kube), created once and closed at the end."""
    if backend_key not in pytestconfig.stash:
        pytestconfig.stash[backend_key] = _make_backend(pytestconfig)
    return pytestconfig.stash[backend_key]


@pytest.fixture
def canary_settings(request: pytest.FixtureRequest) -> Settings:
    """Statistical and traffic settings of this test (marker > CLI > env > ini > default).
    Override it in a conftest.py to set your own."""
    try:
        return _resolve_settings(request.config, request.node)
    except CanaryConfigError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def canary(
    request: pytest.FixtureRequest, canary_backend: Backend, canary_settings: Settings
) -> Generator[Harness, None, None]:
    """A canary harness in a fresh, isolated environment of the chosen backend.

    ``canary.deploy(strategy, stable, canary, **routing)`` returns a release to change,
    sample and assert on; everything deployed is deleted when the test ends.
    """
    environment = canary_backend.environment(request.node.nodeid)
    log = request.config.stash[verdicts_key]
    harness = Harness(
        environment, canary_settings, on_verdict=log.add, test_name=request.node.nodeid
    )
    request.node.stash[harness_key] = harness
    try:
        yield harness
    finally:
        harness.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    harness = item.stash.get(harness_key, None)
    if harness is not None and report.when == "call" and report.failed:
        try:
            report.sections.append(("canary diagnostics", harness.diagnostics().render()))
        except Exception as exc:
            report.sections.append(("canary diagnostics", f"could not collect: {exc!r}"))
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    log = config.stash.get(verdicts_key, None)
    if log is None or not log.verdicts:
        return
    terminalreporter.section("canary verdicts")
    for line in log.summary_lines():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    report = config.getoption("canary_report")
    log = config.stash.get(verdicts_key, None)
    if report and log is not None:
        log.write_json(
            Path(report),
            {"seed": config.stash.get(seed_key, None), "backend": _chosen_backend(config)},
        )
    plots = config.getoption("canary_plots")
    if plots and log is not None:
        for index, verdict in enumerate(log.verdicts):
            if verdict.history:
                plot_verdict(verdict, Path(plots) / plot_file_name(verdict, index))
    # Backstop for interrupted runs: whatever a fixture could not stop is stopped here.
    backend = config.stash.get(backend_key, None)
    if backend is not None:
        backend.close()
        del config.stash[backend_key]
