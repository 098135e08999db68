"""pytest-canary: assert what a canary release really does, with sound statistics.

The ``canary`` fixture deploys a stable and a canary version on a backend, sends real HTTP
traffic and asserts the observed split, header/cookie routing, promotion and rollback.
"""

from __future__ import annotations

from pytest_canary.apps import VersionFromHeader, VersionFromJson, VersionFromRegex
from pytest_canary.byo import ManifestWarning
from pytest_canary.errors import BackendError, CanaryConfigError, CanaryError, ConvergenceTimeout
from pytest_canary.harness import AppliedManifests, Harness, Release, Settings, assert_split
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
