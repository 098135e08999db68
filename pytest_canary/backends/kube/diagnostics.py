"""Diagnostics: the evidence of a failed test, collected while its namespace still exists.

Sections: the namespace and run, what the data-plane waits saw, signals that could not be
read, each applied object's status as the API server has it, the namespace's events, each
pod's state and last log lines, and the log lines of the ingress-nginx controller serving the
release that name this namespace (its access log carries ``[$proxy_upstream_name]
[$proxy_alternative_upstream_name]``, upstreams named ``<namespace>-<service>-<port>``).
A section that cannot be read says why; it never hides the failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import yaml

from pytest_canary.backends import waits
from pytest_canary.backends.base import Diagnostics
from pytest_canary.backends.kube.api import Key, KubeApi, api_error_message, describe_key
from pytest_canary.backends.kube.signals import PodSet, pod_ready

MAX_POD_LOGS = 8
"""Pods whose logs a report carries."""


def pod_line(pod: Mapping[str, Any]) -> str:
    """One line per pod: name, version, phase, readiness, restarts, node, IP, problem."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = "Ready" if pod_ready(pod) else "NotReady"
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    version = (meta.get("labels") or {}).get(waits.VERSION_LABEL, "-")
    problems = waits.pod_problems([pod])
    line = (
        f"{meta.get('name')} version={version} {status.get('phase', '?')} {ready} "
        f"restarts={restarts} node={(pod.get('spec') or {}).get('nodeName', '-')} "
        f"ip={status.get('podIP', '-')}"
    )
    if meta.get("deletionTimestamp"):
        line += " terminating"
    return line + (f" -- {problems[0].split(': ', 1)[1]}" if problems else "")


def events_text(events: Iterable[Mapping[str, Any]], limit: int = 60) -> str:
    """Events oldest first, one line each: time, type, reason, object, message, count."""

    def when(event: Mapping[str, Any]) -> str:
        return str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    lines = []
    for event in sorted(events, key=when)[-limit:]:
        obj = event.get("involvedObject") or {}
        count = event.get("count") or 1
        repeat = f" (x{count})" if count > 1 else ""
        lines.append(
            f"{when(event)} {event.get('type', '')} {event.get('reason', '')} "
            f"{obj.get('kind', '')}/{obj.get('name', '')}: {event.get('message', '')}{repeat}"
        )
    return "\n".join(lines)


def section(diag: Diagnostics, name: str, read: Callable[[], str]) -> None:
    """Add a section; a read error becomes the section's text (never raised)."""
    try:
        diag.add(name, read())
    except Exception as exc:  # diagnostics must never hide the failure
        diag.add(name, f"could not read: {type(exc).__name__}: {api_error_message(exc)}")


def collect(
    api: KubeApi,
    namespace: str,
    *,
    header: str,
    history: Sequence[str],
    unavailable: Mapping[str, str],
    applied: Mapping[Key, Mapping[str, Any]],
    entries: Sequence[str],
    controller: Callable[[], PodSet] | None,
) -> Diagnostics:
    """Every section for one test namespace.

    Args:
        header: the namespace line (namespace, server, run).
        history: what the data-plane waits saw.
        unavailable: configuration signals left out, and why.
        applied: the objects applied (their live status is read).
        entries: lines about the entry Services created for the test.
        controller: the ingress-nginx controller pods serving the release (None: no Ingress).
    """
    diag = Diagnostics()
    diag.add("namespace", header)
    diag.add("data-plane waits", "\n".join(history[-10:]))
    diag.add(
        "unavailable data-plane signals",
        "\n".join(f"{name}: {reason}" for name, reason in unavailable.items()),
    )

    def objects_text() -> str:
        lines: list[str] = []
        for key, obj in applied.items():
            current = api.get(str(obj["apiVersion"]), key[1], key[2], namespace)
            if current is None:
                lines.append(f"{describe_key(key)}: not found")
                continue
            status = current.get("status")
            text = yaml.safe_dump(status, sort_keys=False).strip() if status else "(no status)"
            lines.append(f"{describe_key(key)}:\n  " + text.replace("\n", "\n  "))
        return "\n".join(lines + list(entries))

    section(diag, "objects (as the API server has them)", objects_text)
    section(diag, "events", lambda: events_text(api.list("v1", "Event", namespace=namespace)))
    pods: list[dict[str, Any]] = []

    def pods_text() -> str:
        pods.extend(api.list("v1", "Pod", namespace=namespace))
        return "\n".join(pod_line(p) for p in pods)

    section(diag, "pods", pods_text)
    for pod in pods[:MAX_POD_LOGS]:
        name = str(pod["metadata"]["name"])
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = "app" if "app" in containers else (containers[0] if containers else None)
        section(
            diag,
            f"log of pod {name} (last 20 lines)",
            _log_reader(api, name, namespace, container),
        )
    if controller is not None:
        section(
            diag,
            f"ingress-nginx controller log lines for {namespace}",
            lambda: controller_log_lines(api, controller(), namespace),
        )
    return diag


def _log_reader(api: KubeApi, pod: str, namespace: str, container: str | None) -> Callable[[], str]:
    return lambda: api.pod_log(pod, namespace, container=container, tail=20)


def controller_log_lines(api: KubeApi, pods: PodSet, namespace: str, limit: int = 40) -> str:
    """The log lines of the controller pods serving the release that name ``namespace``."""
    lines: list[str] = []
    listed = api.list("v1", "Pod", namespace=pods.namespace, label_selector=pods.selector)
    for pod in listed:
        if pods.keep is not None and not pods.keep(pod):
            continue
        meta = pod["metadata"]
        log = api.pod_log(
            str(meta["name"]), str(meta["namespace"]), container=pods.container, tail=3000
        )
        lines += [
            line for line in log.splitlines() if f"{namespace}-" in line or f"{namespace}/" in line
        ]
    return "\n".join(lines[-limit:])
