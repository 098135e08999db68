"""The test namespace: its name, and the labels and annotations that say whose it is.

Every namespace pytest-canary creates carries:

- labels ``app.kubernetes.io/managed-by=pytest-canary`` and ``pytest-canary/run=<run id>``
  (find a run's namespaces), ``istio-injection=enabled`` when its objects use the mesh, and
  ``pytest-canary/kept=true`` once ``--canary-keep`` kept it;
- annotations naming the test and the owning process -- host, boot id, pid namespace, pid,
  pid start time (:class:`~pytest_canary.backends.owner.Owner`) -- and a lease: when the
  owner last renewed it and for how long it holds (:data:`RENEWED_AT`, :data:`LEASE_SECONDS`).
  The next session reads them to delete what a killed run left
  (:mod:`pytest_canary.backends.kube.sweep`).
"""

from __future__ import annotations

import calendar
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from pytest_canary.backends.owner import Owner

MANAGED_BY = {"app.kubernetes.io/managed-by": "pytest-canary"}
RUN_LABEL = "pytest-canary/run"
KEPT_LABEL = "pytest-canary/kept"
INJECTION_LABEL = "istio-injection"
MESH_GROUPS = ("networking.istio.io", "gateway.networking.k8s.io")
"""API groups whose objects need sidecars in the test namespace."""

TEST_ANNOTATION = "pytest-canary/test"
OWNER_HOST = "pytest-canary/owner-host"
OWNER_PID = "pytest-canary/owner-pid"
OWNER_PID_START = "pytest-canary/owner-pid-start"
OWNER_BOOT_ID = "pytest-canary/owner-boot-id"
OWNER_PID_NAMESPACE = "pytest-canary/owner-pid-namespace"
RENEWED_AT = "pytest-canary/lease-renewed-at"
"""When the owner last renewed its lease: RFC 3339, UTC, the owner's clock."""
LEASE_SECONDS = "pytest-canary/lease-seconds"
"""For how long after :data:`RENEWED_AT` the owner counts as alive."""


def namespace_for(test_name: str) -> str:
    """``canary-<slug of the test>-<5 random hex>``, a valid namespace name (<= 63 chars);
    the run id goes into a label, names must stay short."""
    short = test_name.rsplit("::", 1)[-1] if "::" in test_name else test_name.rsplit("/", 1)[-1]
    slug = re.sub(r"[^a-z0-9-]+", "-", short.lower()).strip("-")
    slug = re.sub(r"-+", "-", slug)[:44].strip("-") or "test"
    return f"canary-{slug}-{secrets.token_hex(3)[:5]}"


def rfc3339(seconds: float) -> str:
    """``2026-11-30T12:00:00Z`` for a Unix time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_rfc3339(text: str) -> float | None:
    """The Unix time of ``2026-11-30T12:00:00Z`` (None when it is not one)."""
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except (ValueError, OverflowError):
        return None


def owner_annotations(owner: Owner, *, lease_seconds: float, now: float) -> dict[str, str]:
    """The annotations that tie an object to its owning process and hold its lease."""
    return {
        OWNER_HOST: owner.host,
        OWNER_PID: str(owner.pid),
        OWNER_PID_START: owner.pid_start,
        OWNER_BOOT_ID: owner.boot_id,
        OWNER_PID_NAMESPACE: owner.pid_ns,
        RENEWED_AT: rfc3339(now),
        LEASE_SECONDS: str(int(lease_seconds)),
    }


def owner_of(obj: Mapping[str, Any]) -> Owner | None:
    """The owning process an object's annotations name (None when they name none)."""
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        pid = int(notes.get(OWNER_PID, ""))
    except ValueError:
        return None
    return Owner(
        str(notes.get(OWNER_HOST, "")),
        pid,
        str(notes.get(OWNER_PID_START, "")),
        str(notes.get(OWNER_BOOT_ID, "")),
        str(notes.get(OWNER_PID_NAMESPACE, "")),
    )


def lease_expires(obj: Mapping[str, Any]) -> float | None:
    """When an object's lease runs out (Unix time; None when it carries no lease)."""
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    renewed = parse_rfc3339(str(notes.get(RENEWED_AT, "")))
    try:
        seconds = float(notes.get(LEASE_SECONDS, ""))
    except ValueError:
        return None
    return None if renewed is None else renewed + seconds


def namespace_object(
    name: str,
    *,
    run_id: str,
    test_name: str,
    owner: Owner,
    lease_seconds: float,
    now: float,
    mesh: bool = False,
    kept: bool = False,
) -> dict[str, Any]:
    """The whole Namespace object as pytest-canary applies it (server-side apply drops the
    fields a manager omits, so every write carries all of them)."""
    labels = {RUN_LABEL: run_id} | MANAGED_BY
    if mesh:
        labels[INJECTION_LABEL] = "enabled"
    if kept:
        labels[KEPT_LABEL] = "true"
    annotations = {TEST_ANNOTATION: test_name[:1000]} | owner_annotations(
        owner, lease_seconds=lease_seconds, now=now
    )
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
    }
