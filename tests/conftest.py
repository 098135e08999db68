"""Shared fixtures of pytest-canary's own tests."""

from __future__ import annotations

import importlib

import pytest

pytest_plugins = ["pytester"]


def _load_what_inner_runs_load() -> None:
    """In-process inner runs share this interpreter, and pytester removes the modules a run
    imported when its test ends. A module imported again by a later run is a second copy
    (its classes and enums differ from the first copy's, which other modules kept), and
    compiled modules (numpy's, matplotlib's) cannot be imported twice in one process. So
    what inner runs use is imported here once, before pytester takes its snapshot."""
    for name in ("pytest_canary.harness", "pytest_canary.plots"):
        importlib.import_module(name)
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:  # an optional extra: the plot tests say so
        return
    matplotlib.use("Agg")  # as pytest_canary.plots does
    importlib.import_module("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _quiet_unrelated_plugins(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inner pytest runs (pytester) load every installed plugin; pytest-asyncio (unset
    option) and pytest-benchmark (disabled under xdist) warn at configure time, which
    ``filterwarnings = error`` turns into a crash of the inner run. Hypothesis' and kmock's
    plugins, which no inner run uses, are kept off too: they cost each inner run in a
    subprocess about 0.8 s of imports (and each in-process run their registration)."""
    if "pytester" in request.fixturenames:
        _load_what_inner_runs_load()
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts
        monkeypatch.setenv(
            "PYTEST_ADDOPTS", "-p no:asyncio -p no:benchmark -p no:hypothesispytest -p no:kmock"
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Tests that kill a pytest run on purpose (kill -9) leave its pods' log folder behind,
    as a real killed run does; the next run would sweep it. Sweep it now so that this test
    run leaves nothing in the temporary directory."""
    from pytest_canary.backends.local.runtime import sweep_dead_pod_dirs

    sweep_dead_pod_dirs()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Live-cluster tests (``e2e``) run last: they are the slowest and need the most."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
