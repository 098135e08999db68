"""Waits that say what they wait for, and conditions read from Kubernetes objects.

Free of Kubernetes client calls, so they can be tested on plain dicts:

1. :func:`wait_until` polls a probe with ``tenacity`` until it reports done or its deadline
   passes; the timeout names the object, the condition, the last status seen and the time
   waited (:class:`~pytest_canary.errors.ConvergenceTimeout`).
2. Conditions of objects: a Deployment rolled out (:func:`deployment_check`, the rules of
   ``kubectl rollout status``), a Service's endpoints ready (:func:`endpoints_check`), the
   ingress-nginx admission webhook still starting (:func:`webhook_unavailable`), pods stuck
   for a reason that will not heal (:class:`TerminalWatch`).

What "converged" means for a data plane is asked of the models: see
:mod:`pytest_canary.backends.kube.plan`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

from pytest_canary.errors import BackendError, ConvergenceTimeout

Manifest = Mapping[str, Any]

VERSION_LABEL = "version"
"""Pod label that carries the app version (set by every renderer, read from user manifests)."""


# -- polling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One look at a condition: whether it holds and what was seen, in words."""

    done: bool
    status: str


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying inside a wait: the API server or a network hop hiccuped.

    Kubernetes ``ApiException`` with 429/5xx, connection and timeout errors. Everything else
    (403, 404, 422, a bug) propagates at once.
    """
    status = getattr(exc, "status", None)
    if isinstance(status, int) and exc.__class__.__name__ in ("ApiException", "ServiceException"):
        return status == 429 or status >= 500
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    module = type(exc).__module__
    return module.startswith(("urllib3", "requests")) and "Error" in type(exc).__name__


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def wait_until(
    what: str,
    condition: str,
    probe: Callable[[], Check],
    *,
    timeout: float,
    interval: float = 0.25,
    max_interval: float = 2.0,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    setting: str = "",
) -> Check:
    """Poll ``probe`` until it reports done; never longer than ``timeout`` seconds.

    The interval grows exponentially from ``interval`` to ``max_interval``. Transient errors
    raised by the probe count as "not yet" and become the last status seen; any other error
    propagates.

    Raises:
        ConvergenceTimeout: naming ``what``, ``condition``, the last status, the time waited
            and ``setting``, the option that sets ``timeout``.

    Example:
        >>> wait_until("Deployment ns/web", "available", lambda: Check(True, "3/3"), timeout=5)
        Check(done=True, status='3/3')
    """
    started = time.monotonic()
    last = Check(False, "nothing observed yet")

    def attempt() -> Check:
        nonlocal last
        try:
            last = probe()
        except Exception as exc:
            if not transient(exc):
                raise
            last = Check(False, f"{type(exc).__name__}: {_short(exc)}")
        return last

    backoff = tenacity.wait_exponential(multiplier=interval, min=interval, max=max_interval)

    def pause(state: tenacity.RetryCallState) -> float:
        # Back off, but look one last time at the deadline rather than sleeping past it.
        return max(0.0, min(backoff(state), started + timeout - time.monotonic()))

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda check: not check.done),
        stop=tenacity.stop_after_delay(timeout),
        wait=pause,
        sleep=sleep,
    )
    try:
        result: Check = retrying(attempt)
    except tenacity.RetryError:
        raise ConvergenceTimeout(
            what, condition, last.status, time.monotonic() - started, setting
        ) from None
    return result


@dataclass
class Steady:
    """Holds once a condition has held continuously for ``duration`` seconds.

    Used where the observable signal leads the data plane by a documented delay, e.g. the
    ingress-nginx shared configuration ahead of its workers (:data:`NGINX_SYNC_INTERVAL`).
    """

    duration: float
    clock: Callable[[], float] = time.monotonic
    _since: float | None = None

    def update(self, holds: bool) -> float:
        """Record one observation; returns for how long the condition has held."""
        if not holds:
            self._since = None
            return 0.0
        now = self.clock()
        if self._since is None:
            self._since = now
        return now - self._since

    def held(self, holds: bool) -> bool:
        """Record one observation; True once it has held for the whole duration."""
        return self.update(holds) >= self.duration


# -- workloads ----------------------------------------------------------------------------


def _meta(obj: Manifest) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Manifest) -> str:
    return str(_meta(obj).get("name", "?"))


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    """True when every selector label is present with the same value."""
    have = labels or {}
    return all(have.get(k) == v for k, v in selector.items())


# Container waiting reasons that are part of a normal start.
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})


def pod_problems(pods: Iterable[Manifest]) -> list[str]:
    """Why pods are not (yet) serving, one line per pod that has a visible reason."""
    lines: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        statuses = list(status.get("initContainerStatuses") or []) + list(
            status.get("containerStatuses") or []
        )
        reasons: list[str] = []
        for cs in statuses:
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            reason = waiting.get("reason")
            if reason and reason not in _STARTING:
                message = waiting.get("message") or ""
                reasons.append(f"{cs.get('name')}: {reason}" + (f" ({message})" if message else ""))
            terminated = (cs.get("lastState") or {}).get("terminated") or {}
            if cs.get("restartCount"):
                reasons.append(
                    f"{cs.get('name')}: {cs['restartCount']} restarts"
                    + (
                        f", last exit {terminated.get('reason')}"
                        if terminated.get("reason")
                        else ""
                    )
                )
        if not reasons:
            for cond in status.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    reasons.append(f"unschedulable: {cond.get('message', '')}")
        if reasons:
            lines.append(f"pod {_name(pod)}: " + "; ".join(reasons))
    return lines


def deployment_check(deployment: Manifest, pods: Sequence[Manifest] = ()) -> Check:
    """Is a Deployment's rollout complete? The rules of ``kubectl rollout status``
    (kubectl pkg/polymorphichelpers/rollout_status.go ``DeploymentStatusViewer``):
    the controller observed the current generation, every replica runs the current template,
    no old replica is left, and every updated replica is available. A paused Deployment is
    done once every pod it currently has is available.

    Raises:
        BackendError: when the Deployment exceeded its progress deadline (it will not recover).
    """
    meta = _meta(deployment)
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    problems = pod_problems(pods)
    for cond in status.get("conditions") or []:
        # The ReplicaSet could not create pods (Pod Security, a quota, a missing service
        # account): no pod exists to show why, the condition does (deployment controller
        # pkg/controller/deployment/sync.go, reason FailedCreate).
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            problems.insert(
                0, f"ReplicaFailure {cond.get('reason', '')}: {cond.get('message', '')}"
            )
    suffix = ("; " + "; ".join(problems)) if problems else ""
    if observed < generation:
        return Check(
            False, f"generation {generation} not yet observed (observed {observed})" + suffix
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise BackendError(
                f"Deployment {meta.get('namespace', '?')}/{_name(deployment)} exceeded its "
                f"progress deadline: {cond.get('message', '')}{suffix}"
            )
    if spec.get("paused"):
        if available < current:
            return Check(False, f"paused; {available} of {current} pods available" + suffix)
        return Check(
            True, f"paused; {updated} of {wanted} replicas updated, all {current} available"
        )
    if updated < wanted:
        return Check(False, f"{updated} of {wanted} replicas updated" + suffix)
    if current > updated:
        return Check(False, f"{current - updated} old replicas pending termination" + suffix)
    if available < updated:
        return Check(False, f"{available} of {updated} updated replicas available" + suffix)
    return Check(True, f"{available} of {wanted} replicas updated and available")


def ready_endpoints(slices: Iterable[Manifest]) -> list[str]:
    """Endpoints of EndpointSlices that receive traffic, by pod name (or address).

    ``conditions.ready`` unset means ready (discovery.k8s.io/v1 EndpointConditions: "nil
    should be interpreted as true"); a terminating endpoint is never ready.
    """
    seen: dict[str, None] = {}
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            ref = endpoint.get("targetRef") or {}
            key = ref.get("name") or ",".join(endpoint.get("addresses") or [])
            seen[str(key)] = None
    return list(seen)


def endpoints_check(service: str, slices: Sequence[Manifest], expected: int) -> Check:
    """Does ``service`` have exactly ``expected`` ready endpoints? Exactly, because an extra
    endpoint is a pod the rollout has not yet removed, which would skew a split."""
    ready = ready_endpoints(slices)
    listing = ", ".join(sorted(ready)[:8]) + (", ..." if len(ready) > 8 else "")
    text = f"{len(ready)} of {expected} endpoints ready" + (f" ({listing})" if ready else "")
    return Check(len(ready) == expected, text)


def webhook_unavailable(status: int | None, message: str) -> bool:
    """True when the API server could not *call* an admission webhook (it is starting).

    The API server wraps every failure to reach a webhook as HTTP 500 "Internal error
    occurred: failed calling webhook "validate.nginx.ingress.kubernetes.io": failed to call
    webhook: Post ...: dial tcp ...: connect: connection refused" (also x509 errors while the
    certificate job patches the webhook, and timeouts). A webhook that answered and *denied*
    the object is a 400 ("admission webhook ... denied the request") and is not retried.
    """
    return status == 500 and "failed calling webhook" in message


def service_selector(service: Manifest) -> dict[str, str]:
    """A Service's pod selector (empty for Services without one)."""
    return dict((service.get("spec") or {}).get("selector") or {})


# -- failures that will not heal ----------------------------------------------------------

TERMINAL_AT_ONCE = frozenset(
    {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}
)
"""Container waiting reasons for a configuration no retry fixes (kubelet ``images`` and
``kuberuntime`` reasons)."""

LASTING_FAMILIES: Mapping[str, str] = {
    # kubelet pkg/kubelet/images/image_manager.go: one failed pull is ErrImagePull, then
    # ImagePullBackOff until the next try (back-off 10 s, doubling): the two alternate while a
    # pull keeps failing, so they are one family whose first sighting counts.
    "ErrImagePull": "image pull",
    "ImagePullBackOff": "image pull",
    "CreateContainerError": "CreateContainerError",
    "Unschedulable": "Unschedulable",
    "CrashLoopBackOff": "crash loop",
}
"""Reasons a retry may still clear (a registry hiccup, a pod being replaced, a container that
crashes once while what it needs starts): terminal once their family has lasted
:data:`LASTING` seconds. ``Unschedulable`` is the PodScheduled condition's reason
(``0/1 nodes are available: 1 Insufficient cpu``)."""

LASTING = 45.0
"""Seconds a reason of :data:`LASTING_FAMILIES` must persist to count as terminal: three
failed image pulls (kubelet back-off 10 s, 20 s), still within a minute of the cause."""

CRASH_RESTARTS = 3
"""Restarts after which a crash loop is terminal whether or not it lasted (kubelet back-off
10 s, 20 s, 40 s: about 70 s of crashing)."""

JOB_BACKOFF_LIMIT = 6
"""A Job's ``spec.backoffLimit`` when unset (batch/v1 JobSpec default)."""


def _owning_job(pod: Manifest) -> str | None:
    """The name of the Job that owns a pod (None: not a Job's pod)."""
    for ref in _meta(pod).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and str(ref.get("apiVersion", "")).startswith("batch/"):
            return str(ref.get("name", ""))
    return None


def job_failure(job: Manifest) -> str | None:
    """Why a Job has failed for good, in words (None while it has not): its ``Failed``
    condition, or as many failures as its ``backoffLimit`` allows (kubernetes
    pkg/controller/job/job_controller.go: past the limit the Job is marked Failed with reason
    BackoffLimitExceeded; with ``restartPolicy: OnFailure`` container restarts count)."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            reason = cond.get("reason") or "Failed"
            return f"{reason}: {cond.get('message', '')}".rstrip(": ")
    limit = (job.get("spec") or {}).get("backoffLimit")
    limit = JOB_BACKOFF_LIMIT if limit is None else int(limit)
    failed = int(status.get("failed") or 0)
    if failed > limit:
        return f"{failed} failed pods, more than its backoffLimit {limit}"
    return None


@dataclass
class TerminalWatch:
    """Tells, look after look, which pods are stuck for a reason that will not heal.

    A Job's pods are judged by their Job, not by their restarts: a Job may crash and be
    restarted by design (ingress-nginx's ``admission-patch`` Job errors while the secret the
    ``admission-create`` Job writes does not exist yet, and succeeds on a later restart:
    deploy/static/provider/kind/deploy.yaml ``restartPolicy: OnFailure``;
    images/kube-webhook-certgen/rootfs/cmd/patch.go). It is terminal once the Job failed
    (:func:`job_failure`). Their image and scheduling problems count as any pod's.

    Attributes:
        lasting: seconds a reason of :data:`LASTING_FAMILIES` must persist.
        clock: time source.
    """

    lasting: float = LASTING
    clock: Callable[[], float] = time.monotonic
    _first_seen: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def look(self, pods: Iterable[Manifest], jobs: Iterable[Manifest] = ()) -> list[str]:
        """The terminal problems of ``pods`` (and of the ``jobs`` that own some of them)
        now, one line each (empty: none)."""
        now = self.clock()
        found: list[str] = []
        current: set[tuple[str, str, str]] = set()
        for job in jobs:
            why = job_failure(job)
            if why is not None:
                found.append(f"job {_name(job)} failed: {why}")
        for pod in pods:
            name = _name(pod)
            in_job = _owning_job(pod) is not None
            status = pod.get("status") or {}
            reasons: list[tuple[str, str, str]] = []  # (container, reason, text)
            for cs in list(status.get("initContainerStatuses") or []) + list(
                status.get("containerStatuses") or []
            ):
                waiting = (cs.get("state") or {}).get("waiting") or {}
                reason = str(waiting.get("reason") or "")
                if not reason or (in_job and reason == "CrashLoopBackOff"):
                    continue  # a Job's crashes are the Job's to judge
                text = f"container {cs.get('name')}: {reason}" + (
                    f" ({waiting['message']})" if waiting.get("message") else ""
                )
                if reason == "CrashLoopBackOff" and int(cs.get("restartCount") or 0) >= (
                    CRASH_RESTARTS
                ):
                    found.append(f"pod {name}: {text}, {cs['restartCount']} restarts")
                    continue
                reasons.append((str(cs.get("name")), reason, text))
            for cond in status.get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                    reason = str(cond.get("reason") or "Unschedulable")
                    reasons.append(("", reason, f"{reason}: {cond.get('message', '')}"))
            for container, reason, text in reasons:
                if reason in TERMINAL_AT_ONCE:
                    found.append(f"pod {name}: {text}")
                    continue
                family = LASTING_FAMILIES.get(reason)
                if family is None:
                    continue
                key = (name, container, family)
                current.add(key)
                first = self._first_seen.setdefault(key, now)
                if now - first >= self.lasting:
                    found.append(f"pod {name}: {text} (for {now - first:.0f}s)")
        for key in list(self._first_seen):
            if key not in current:
                del self._first_seen[key]
        return found
