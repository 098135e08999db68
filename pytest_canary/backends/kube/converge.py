"""Convergence: wait until the data plane serves the plan, then traffic may be sampled.

One look at the data plane: its own configuration where it can be read
(:mod:`~pytest_canary.backends.kube.signals`; ingress-nginx's held for one worker sync
interval, since nginx workers pick it up at most that long after the controller posted it),
then each probe route of the plan sent through the real entry -- 40 plain requests, 10 per
forced route -- every answer from a pod and version the plan allows and none failing. A batch
stops at its first failed request, and no request waits past the deadline: a look never
overruns ``--canary-dataplane-timeout``. Looks repeat until one passes or the timeout runs
out; the timeout names the entry, the plan and what was last seen.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import json
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pytest_canary.apps import VersionClassifier
from pytest_canary.backends import waits
from pytest_canary.backends.base import Entry
from pytest_canary.backends.kube.plan import DataplanePlan, Route
from pytest_canary.backends.kube.signals import pod_ready
from pytest_canary.backends.waits import VERSION_LABEL, Check
from pytest_canary.errors import BackendError

NGINX_SYNC_INTERVAL = 1.0
"""Seconds an nginx worker needs to pick up configuration the controller has posted:
ingress-nginx rootfs/etc/nginx/lua/balancer.lua ``BACKENDS_SYNC_INTERVAL = 1`` ("for an Nginx
worker to pick up the new list of upstream peers it will take <the delay until controller POSTed
the backend object to the Nginx endpoint> + BACKENDS_SYNC_INTERVAL")."""

DEFAULT_WINDOW = 40
"""Consecutive plain requests that must all be answered as the applied routing says."""

FORCED_WINDOW = 10
"""Consecutive requests per forced route (header, cookie, virtual host)."""

FIRST_REQUEST_FLOOR = 1.0
"""Seconds the first request of a batch may wait even at the deadline."""

PROBE_BODY_LIMIT = 1 << 20
"""Bytes of a probe answer read (the version is in a header or near the start of a body)."""


@dataclass(frozen=True)
class Answer:
    """What one probe request observed."""

    version: str | None = None
    pod: str | None = None
    error: str | None = None


class EntryProbe:
    """Sends small synchronous batches through an entry and reports what answered.

    The version comes from ``classify`` (a :mod:`pytest_canary.apps` reader's classifier),
    else from the response header ``version_header``; the pod from the sample app's JSON
    body (``hostname``), when present. Connections are kept alive unless the entry routes per
    connection (kube-proxy), like the sampler.
    """

    def __init__(
        self,
        entry: Entry,
        *,
        path: str = "/",
        version_header: str | None = "X-App-Version",
        timeout: float = 5.0,
        classify: VersionClassifier | None = None,
    ) -> None:
        self.entry = entry
        self.path = path
        self.version_header = version_header
        self.classify = classify
        self.timeout = timeout
        parts = urlsplit(entry.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        return self._conn

    def one(self, headers: Mapping[str, str], *, timeout: float | None = None) -> Answer:
        """Send one request, waiting at most ``timeout`` seconds (default: the probe's)."""
        request_headers = dict(headers)
        if self.entry.host and not any(k.lower() == "host" for k in request_headers):
            request_headers["Host"] = self.entry.host
        if self.entry.per_connection:
            request_headers["Connection"] = "close"
        conn = self._connection()
        limit = self.timeout if timeout is None else max(0.05, min(self.timeout, timeout))
        conn.timeout = limit  # a new connection's connect and reads
        if conn.sock is not None:
            conn.sock.settimeout(limit)  # a kept-alive connection's reads
        try:
            conn.request("GET", self._prefix + self.path, headers=request_headers)
            response = conn.getresponse()
            body = response.read(PROBE_BODY_LIMIT + 1)
        except TimeoutError:
            self.close()
            return Answer(error="timeout")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Answer(error=f"connection error ({type(exc).__name__})")
        if self.entry.per_connection or response.will_close or len(body) > PROBE_BODY_LIMIT:
            self.close()  # a longer body is not read to its end: the connection is unusable
        if self.classify is not None:
            version = self.classify(response.status, dict(response.getheaders()), body)
        else:
            version = response.getheader(self.version_header) if self.version_header else None
        if response.status >= 500:
            return Answer(error=f"HTTP {response.status}")
        if (self.classify is not None or self.version_header) and not version:
            return Answer(error=f"HTTP {response.status} without a version")
        return Answer(version=version, pod=_pod_of(body))

    def answers(
        self, headers: Mapping[str, str], n: int, *, deadline: float | None = None
    ) -> list[Answer]:
        """Send up to ``n`` requests in a row; stop at the first failed one (one is enough
        to judge the batch) or when the ``time.monotonic()`` ``deadline`` comes, each request
        waiting no longer than the time left -- except the first, which may take
        :data:`FIRST_REQUEST_FLOOR` seconds, so that the last look still says what the entry
        answers."""
        found: list[Answer] = []
        for _ in range(n):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0 and found:
                break
            if left is not None and not found:
                left = max(left, FIRST_REQUEST_FLOOR)
            answer = self.one(headers, timeout=left)
            found.append(answer)
            if answer.error is not None:
                break
        return found

    def close(self) -> None:
        """Drop the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _pod_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("hostname"), str):
        return str(data["hostname"])
    return None


def allowed_pods(
    route: Route, pods: Iterable[Mapping[str, Any]], version_label: str = VERSION_LABEL
) -> dict[str, str]:
    """Ready pods that may answer ``route``: pod name -> the value of ``version_label``."""
    allowed: dict[str, str] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if pod_ready(pod) and any(waits.labels_match(sel, labels) for sel in route.selectors):
            allowed[str(pod["metadata"]["name"])] = str(labels.get(version_label, ""))
    return allowed


def judge_route(
    route: Route,
    answers: Sequence[Answer],
    allowed_pods: Mapping[str, str] | None,
) -> Check:
    """Were all ``answers`` to ``route`` given as the applied routing says?

    Args:
        allowed_pods: pod name -> version for the pods that may answer (those matching the
            route's selectors, ready and not terminating); None when pods cannot be listed.
            Answers that name no pod (apps other than the sample app) are judged by version.
    """
    allowed_versions = set(route.versions)
    if not allowed_versions and allowed_pods is not None:
        allowed_versions = set(allowed_pods.values())
    counts: collections.Counter[str] = collections.Counter()
    stray_pods: set[str] = set()
    good = True
    for answer in answers:
        if answer.error is not None:
            counts[answer.error] += 1
            good = False
            continue
        version = answer.version or "?"
        counts[version] += 1
        if allowed_versions and version not in allowed_versions:
            good = False
        if allowed_pods is not None and answer.pod is not None and answer.pod not in allowed_pods:
            stray_pods.add(answer.pod)
            good = False
    status = f"{route.name}: {dict(counts)}"
    if stray_pods:
        status += f", answered by pods outside the route: {', '.join(sorted(stray_pods))}"
    return Check(good and bool(answers), status)


class Convergence:
    """Waits until a data plane serves a plan; keeps a short history for diagnostics.

    Args:
        list_pods: the test namespace's pods now.
        timeout: seconds (``--canary-dataplane-timeout``).
    """

    def __init__(self, list_pods: Callable[[], list[dict[str, Any]]], *, timeout: float) -> None:
        self.list_pods = list_pods
        self.timeout = timeout
        self.history: list[str] = []

    def await_plan(
        self,
        entry: Entry,
        plan: DataplanePlan,
        probe: EntryProbe,
        signals: Sequence[Callable[[], Check]],
        *,
        hold_for_nginx: Callable[[], bool],
        version_label: str = VERSION_LABEL,
        own_images: bool = False,
        note: str = "",
    ) -> None:
        """Return once every signal holds (for one worker sync interval while
        ``hold_for_nginx()`` says ingress-nginx's configuration is read) and every route of
        ``plan`` is answered as it says, through ``entry``.

        With ``own_images`` (your manifests' images) a response's ``hostname`` counts as the
        answering pod only when a pod of the namespace has that name: your app's JSON may use
        the field for something else.

        Raises:
            ConvergenceTimeout: naming the entry, the plan and what was last seen.
        """
        steady = waits.Steady(NGINX_SYNC_INTERVAL)
        started = time.monotonic()

        def look() -> Check:
            seen: list[str] = []
            for signal in signals:
                check = signal()
                seen.append(check.status)
                if not check.done:
                    steady.update(False)
                    return Check(False, "; ".join(seen))
            if hold_for_nginx():
                held = steady.update(True)
                if held < NGINX_SYNC_INTERVAL:
                    return Check(
                        False,
                        "; ".join(seen) + f" (visible for {held:.1f}s of "
                        f"{NGINX_SYNC_INTERVAL:.0f}s worker sync)",
                    )
            pods = self.list_pods()
            names = {str((p.get("metadata") or {}).get("name")) for p in pods}
            deadline = started + self.timeout  # a look never runs past the wait's deadline
            for route in plan.routes:
                size = DEFAULT_WINDOW if route.name == "default" else FORCED_WINDOW
                answers = probe.answers(route.headers, size, deadline=deadline)
                if own_images:
                    answers = [
                        a if a.pod is None or a.pod in names else dataclasses.replace(a, pod=None)
                        for a in answers
                    ]
                check = judge_route(route, answers, allowed_pods(route, pods, version_label))
                if check.done and len(answers) < size:
                    check = Check(False, f"{check.status}, {len(answers)} of {size} sent in time")
                seen.append(check.status)
                if not check.done:
                    return Check(False, "; ".join(seen))
            return Check(True, "; ".join(seen))

        try:
            result = waits.wait_until(
                f"the data plane behind {entry.description}",
                plan.describe() + note,
                look,
                timeout=self.timeout,
                interval=0.2,
                max_interval=0.5,
                setting="--canary-dataplane-timeout",
            )
            self.history.append(f"converged in {time.monotonic() - started:.1f}s: {result.status}")
        except BackendError as exc:
            self.history.append(f"did not converge: {exc}")
            raise
        finally:
            probe.close()
