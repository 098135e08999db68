"""pytest-canary: assert what a canary release really does, with sound statistics.

The ``canary`` fixture deploys a stable and a canary version on a backend, sends real HTTP
traffic and asserts the observed split, header/cookie routing, promotion and rollback.

The names below load on first use: pytest imports this package in every run of every
project that installs it (the plugin is auto-loaded), and most runs never need aiohttp,
jsonschema or the harness.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_canary.apps import VersionFromHeader, VersionFromJson, VersionFromRegex
    from pytest_canary.byo import ManifestWarning, RetainedRoutingWarning
    from pytest_canary.config import Settings
    from pytest_canary.errors import (
        BackendError,
        CanaryConfigError,
        CanaryError,
        ConvergenceTimeout,
    )
    from pytest_canary.harness import AppliedManifests, Harness, Release, assert_split
    from pytest_canary.lint import Finding, FindingWarning
    from pytest_canary.report import CanaryAssertionError, Verdict
    from pytest_canary.rollout_release import (
        AppliedRollout,
        RolloutMoved,
        RolloutRelease,
        RolloutStatus,
    )
    from pytest_canary.spec import AppImage, ReleaseSpec, build_spec
    from pytest_canary.traffic import Entry, Sample, Sampler

# Public name -> the module that defines it.
_EXPORTS = {
    "AppImage": "spec",
    "AppliedManifests": "harness",
    "AppliedRollout": "rollout_release",
    "BackendError": "errors",
    "CanaryAssertionError": "report",
    "CanaryConfigError": "errors",
    "CanaryError": "errors",
    "ConvergenceTimeout": "errors",
    "Entry": "traffic",
    "Finding": "lint",
    "FindingWarning": "lint",
    "Harness": "harness",
    "ManifestWarning": "byo",
    "Release": "harness",
    "ReleaseSpec": "spec",
    "RetainedRoutingWarning": "byo",
    "RolloutMoved": "rollout_release",
    "RolloutRelease": "rollout_release",
    "RolloutStatus": "rollout_release",
    "Sample": "traffic",
    "Sampler": "traffic",
    "Settings": "config",
    "Verdict": "report",
    "VersionFromHeader": "apps",
    "VersionFromJson": "apps",
    "VersionFromRegex": "apps",
    "assert_split": "harness",
    "build_spec": "spec",
}

__all__ = [
    "AppImage",
    "AppliedManifests",
    "AppliedRollout",
    "BackendError",
    "CanaryAssertionError",
    "CanaryConfigError",
    "CanaryError",
    "ConvergenceTimeout",
    "Entry",
    "Finding",
    "FindingWarning",
    "Harness",
    "ManifestWarning",
    "Release",
    "ReleaseSpec",
    "RetainedRoutingWarning",
    "RolloutMoved",
    "RolloutRelease",
    "RolloutStatus",
    "Sample",
    "Sampler",
    "Settings",
    "Verdict",
    "VersionFromHeader",
    "VersionFromJson",
    "VersionFromRegex",
    "assert_split",
    "build_spec",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pytest_canary' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_canary.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
