"""Waits that say what they wait for, and what "converged" means for each data plane.

Two kinds of code live here, both free of Kubernetes client calls so they can be tested on
plain dicts:

1. :func:`wait_until` polls a probe with ``tenacity`` until it reports done or its deadline
   passes; the timeout names the object, the condition, the last status seen and the time
   waited (:class:`~pytest_canary.errors.ConvergenceTimeout`).
2. Conditions read from Kubernetes objects: a Deployment rolled out
   (:func:`deployment_check`, the rules of ``kubectl rollout status``), a Service's endpoints
   ready (:func:`endpoints_check`), the ingress-nginx admission webhook still starting
   (:func:`webhook_unavailable`), and the data plane serving the applied routing
   (:func:`plan_for` derives what must be observed from the applied objects;
   :func:`judge_route`, :func:`nginx_backends_check` and :func:`envoy_route_check` compare
   observations with it).
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tenacity

from pytest_canary.dataplane.nginx import ANNOTATION_CHARS
from pytest_canary.errors import BackendError, ConvergenceTimeout
from pytest_canary.re2 import fullmatch as re2_fullmatch
from pytest_canary.re2 import re2_problem

Manifest = Mapping[str, Any]

VERSION_LABEL = "version"
"""Pod label that carries the app version (set by every renderer, read from user manifests)."""

NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
NGINX_PREFIX = "nginx.ingress.kubernetes.io/"

NGINX_SYNC_INTERVAL = 1.0
"""Seconds an nginx worker needs to pick up configuration the controller has posted:
ingress-nginx rootfs/etc/nginx/lua/balancer.lua ``BACKENDS_SYNC_INTERVAL = 1`` ("for an Nginx
worker to pick up the new list of upstream peers it will take <the delay until controller POSTed
the backend object to the Nginx endpoint> + BACKENDS_SYNC_INTERVAL")."""

DEFAULT_WINDOW = 40
"""Consecutive plain requests that must all be answered as the applied routing says."""

FORCED_WINDOW = 10
"""Consecutive requests per forced route (header, cookie, virtual host)."""


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
) -> Check:
    """Poll ``probe`` until it reports done; never longer than ``timeout`` seconds.

    The interval grows exponentially from ``interval`` to ``max_interval``. Transient errors
    raised by the probe count as "not yet" and become the last status seen; any other error
    propagates.

    Raises:
        ConvergenceTimeout: naming ``what``, ``condition``, the last status and the time waited.

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
        raise ConvergenceTimeout(what, condition, last.status, time.monotonic() - started) from None
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


# -- what the data plane must show --------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One kind of request and who may answer it once the routing has converged.

    Attributes:
        name: how the route is shown, e.g. ``default`` or ``X-Canary: always``.
        headers: headers that select the route (the entry's Host is added by the prober).
        selectors: label sets; a pod matching one of them may answer.
        versions: versions that may answer; empty means "whatever version the selected pods
            carry" (plain Service entries).
    """

    name: str
    headers: Mapping[str, str]
    selectors: tuple[Mapping[str, str], ...]
    versions: frozenset[str] = frozenset()

    def describe(self) -> str:
        """``name -> versions``."""
        versions = "|".join(sorted(self.versions)) or "the selected pods"
        return f"{self.name} -> {versions}"


@dataclass(frozen=True)
class NginxWant:
    """What ingress-nginx's dynamic configuration must hold (``/configuration/backends``).

    Upstream names are ``<namespace>-<service>-<port>`` (controller.go ``upstreamName``).
    """

    main: str
    canary: str | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvoyWant:
    """What an Envoy (Istio gateway) route for ``host`` must hold: the default route's clusters
    and their shares (``outbound|<port>|<subset>|<service FQDN>``)."""

    host: str
    clusters: Mapping[str, float]


@dataclass(frozen=True)
class DataplanePlan:
    """Everything that must be observed before traffic is sampled."""

    routes: tuple[Route, ...]
    nginx: NginxWant | None = None
    envoy: EnvoyWant | None = None

    def describe(self) -> str:
        """The condition in words, for timeout messages."""
        text = "serving " + ", ".join(route.describe() for route in self.routes)
        if self.nginx is not None:
            alt = (
                f" with alternative {self.nginx.canary} {dict(self.nginx.policy)}"
                if self.nginx.canary
                else (" without alternative backends")
            )
            text += f"; ingress-nginx backend {self.nginx.main}{alt}"
        if self.envoy is not None:
            text += f"; Envoy route {self.envoy.host} -> {dict(self.envoy.clusters)}"
        return text


def _kind(obj: Manifest) -> str:
    return str(obj.get("kind", ""))


def _group(obj: Manifest) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _of_kind(objects: Iterable[Manifest], kind: str, group: str | None = None) -> list[Manifest]:
    return [o for o in objects if _kind(o) == kind and (group is None or _group(o) == group)]


def _template_labels(workload: Manifest) -> dict[str, str]:
    template = (workload.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "Rollout")


def workloads_behind(
    selector: Mapping[str, str], objects: Iterable[Manifest]
) -> tuple[tuple[Mapping[str, str], ...], frozenset[str]]:
    """Pod label sets and versions of the workloads a selector sends traffic to.

    Workloads scaled to 0 serve nothing and are left out. Without any matching workload (user
    manifests with other kinds) the selector itself is the only label set and the version is
    whatever the selected pods carry.
    """
    selectors: list[Mapping[str, str]] = []
    versions: set[str] = set()
    for workload in objects:
        if _kind(workload) not in WORKLOAD_KINDS:
            continue
        labels = _template_labels(workload)
        if not labels_match(selector, labels):
            continue
        if int((workload.get("spec") or {}).get("replicas", 1)) == 0:
            continue
        selectors.append(labels)
        if VERSION_LABEL in labels:
            versions.add(labels[VERSION_LABEL])
    if not selectors:
        return (dict(selector),), frozenset()
    return tuple(selectors), frozenset(versions)


def _service(objects: Iterable[Manifest], name: str) -> Manifest:
    for svc in _of_kind(objects, "Service"):
        if _name(svc) == name:
            return svc
    raise BackendError(f"no Service named {name!r} among the applied objects")


def service_selector(service: Manifest) -> dict[str, str]:
    """A Service's pod selector (empty for Services without one)."""
    return dict((service.get("spec") or {}).get("selector") or {})


def _service_port(service: Manifest) -> int:
    ports = (service.get("spec") or {}).get("ports") or [{"port": 80}]
    return int(ports[0].get("port", 80))


def _behind_service(
    objects: Sequence[Manifest], name: str, extra: Mapping[str, str] | None = None
) -> tuple[tuple[Mapping[str, str], ...], frozenset[str]]:
    selector = service_selector(_service(objects, name)) | dict(extra or {})
    return workloads_behind(selector, objects)


def _merge(
    *parts: tuple[tuple[Mapping[str, str], ...], frozenset[str]],
) -> tuple[tuple[Mapping[str, str], ...], frozenset[str]]:
    selectors: list[Mapping[str, str]] = []
    versions: set[str] = set()
    for sel, ver in parts:
        selectors.extend(sel)
        versions |= ver
    return tuple(selectors), frozenset(versions)


def plan_for(
    objects: Sequence[Manifest], *, namespace: str, host: str | None, path: str = "/"
) -> DataplanePlan:
    """What must be observed once ``objects`` are served, derived from the objects alone.

    - Ingresses: ingress-nginx (main Ingress for ``host`` + the first canary Ingress for it;
      canary-only virtual hosts become forced routes selected by Host).
    - VirtualService: Istio (default route = first route without ``match``; header matches
      become forced routes).
    - HTTPRoute: Gateway API through Istio (default rule = rule without header matches).

    Raises:
        BackendError: if the objects route nothing for ``host``.
    """
    if _of_kind(objects, "Ingress"):
        return _nginx_plan(objects, namespace, host, path)
    if _of_kind(objects, "VirtualService", "networking.istio.io"):
        return _istio_plan(objects, namespace, host)
    if _of_kind(objects, "HTTPRoute", "gateway.networking.k8s.io"):
        return _gateway_plan(objects, namespace, host)
    raise BackendError(
        "no Ingress, VirtualService or HTTPRoute among the applied objects: nothing routes "
        f"host {host!r}"
    )


def service_plan(objects: Sequence[Manifest], service: str) -> DataplanePlan:
    """Plan for traffic entering through a plain Service (kube-proxy): any ready pod the
    Service selects may answer, with whatever version it runs."""
    selector = service_selector(_service(objects, service))
    return DataplanePlan(routes=(Route("default", {}, (selector,)),))


# ingress-nginx ------------------------------------------------------------------------------


def _annotations(obj: Manifest) -> Mapping[str, str]:
    return _meta(obj).get("annotations") or {}


def canary_enabled(ingress: Manifest) -> bool:
    """ingress-nginx treats an Ingress as canary when ``canary: "true"``."""
    return str(_annotations(ingress).get(NGINX_CANARY, "")).lower() == "true"


def _ingress_backend(ingress: Manifest, host: str | None, path: str) -> tuple[str, str] | None:
    """(service, port) the Ingress routes ``host`` + ``path`` to; a host-less rule is the
    fallback (ingress-nginx's catch-all server)."""
    rules = (ingress.get("spec") or {}).get("rules") or []
    ordered = [r for r in rules if r.get("host") == host] + [r for r in rules if not r.get("host")]
    for rule in ordered:
        paths = (rule.get("http") or {}).get("paths") or []
        chosen = [p for p in paths if p.get("path", "/") == path] or paths[:1]
        for entry in chosen:
            svc = (entry.get("backend") or {}).get("service") or {}
            port = svc.get("port") or {}
            if svc.get("name"):
                return str(svc["name"]), str(port.get("number", port.get("name", "")))
    return None


def _nginx_int(notes: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(notes.get(NGINX_PREFIX + key, default))
    except (TypeError, ValueError):
        return default


def _nginx_chars(notes: Mapping[str, str], key: str) -> str:
    value = str(notes.get(NGINX_PREFIX + key, ""))
    return value if ANNOTATION_CHARS.match(value) else ""


def _nginx_plan(
    objects: Sequence[Manifest], namespace: str, host: str | None, path: str
) -> DataplanePlan:
    ingresses = _of_kind(objects, "Ingress")
    mains = [i for i in ingresses if not canary_enabled(i)]
    main_backend = next(
        (b for b in (_ingress_backend(i, host, path) for i in mains) if b is not None), None
    )
    if main_backend is None:
        raise BackendError(f"no non-canary Ingress routes host {host!r} path {path!r}")
    main_svc, main_port = main_backend
    main = _behind_service(objects, main_svc)
    routes: list[Route] = []
    want = NginxWant(main=f"{namespace}-{main_svc}-{main_port}")
    # balancer.lua route_to_alternative_balancer: only the first alternative backend is used.
    canary_ing = next(
        (i for i in ingresses if canary_enabled(i) and _ingress_backend(i, host, path)), None
    )
    if canary_ing is None:
        routes.append(Route("default", {}, main[0], main[1]))
    else:
        backend = _ingress_backend(canary_ing, host, path)
        assert backend is not None
        canary_svc, canary_port = backend
        canary = _behind_service(objects, canary_svc)
        notes = _annotations(canary_ing)
        weight = _nginx_int(notes, "canary-weight", 0)
        # The controller reports the annotation as written (canary/main.go: 100 only when it is
        # missing or not an integer); balancer.lua ignores a total of 100 or less.
        reported_total = _nginx_int(notes, "canary-weight-total", 100)
        total = reported_total if reported_total > 100 else 100
        # canary/main.go validates these with BasicCharsRegex; an invalid value becomes "".
        header = _nginx_chars(notes, "canary-by-header")
        header_value = _nginx_chars(notes, "canary-by-header-value")
        header_pattern = notes.get(NGINX_PREFIX + "canary-by-header-pattern", "")
        cookie = _nginx_chars(notes, "canary-by-cookie")
        if weight <= 0:
            routes.append(Route("default", {}, main[0], main[1]))
        elif weight >= total:
            routes.append(Route("default", {}, canary[0], canary[1]))
        else:
            both = _merge(main, canary)
            routes.append(Route("default", {}, both[0], both[1]))
        if header:
            if header_value:
                routes.append(Route(f"{header}: {header_value}", {header: header_value}, *canary))
            elif not header_pattern:
                routes.append(Route(f"{header}: always", {header: "always"}, *canary))
                routes.append(Route(f"{header}: never", {header: "never"}, *main))
        if cookie:
            routes.append(Route(f"cookie {cookie}=always", {"Cookie": f"{cookie}=always"}, *canary))
        want = NginxWant(
            main=want.main,
            canary=f"{namespace}-{canary_svc}-{canary_port}",
            policy={
                "weight": weight,
                "weightTotal": reported_total,
                "header": header,
                "headerValue": header_value,
                "headerPattern": header_pattern,
                "cookie": cookie,
            },
        )
    # Virtual-host canaries: another host routed by a plain Ingress.
    for ing in mains:
        for rule in (ing.get("spec") or {}).get("rules") or []:
            other = rule.get("host")
            if not other or other == host:
                continue
            backend = _ingress_backend(ing, other, path)
            if backend is not None:
                routes.append(
                    Route(f"Host: {other}", {"Host": other}, *_behind_service(objects, backend[0]))
                )
    return DataplanePlan(routes=tuple(routes), nginx=want)


def nginx_backends_check(backends: Sequence[Mapping[str, Any]], want: NginxWant) -> Check:
    """Does ingress-nginx's dynamic configuration (``/dbg backends all``, i.e.
    ``/configuration/backends``) hold the applied canary policy?

    Field names are ingress-nginx internal/ingress/types.go ``Backend`` and
    ``TrafficShapingPolicy`` (json tags).
    """
    by_name = {str(b.get("name")): b for b in backends}
    main = by_name.get(want.main)
    if main is None:
        return Check(False, f"no backend {want.main} yet")
    if not main.get("endpoints"):
        return Check(False, f"backend {want.main} has no endpoints yet")
    alternatives = list(main.get("alternativeBackends") or [])
    if want.canary is None:
        if alternatives:
            return Check(False, f"backend {want.main} still has alternatives {alternatives}")
        return Check(True, f"backend {want.main} without alternatives")
    if want.canary not in alternatives:
        return Check(False, f"backend {want.main} alternatives {alternatives}, want {want.canary}")
    canary = by_name.get(want.canary) or {}
    if not canary.get("endpoints"):
        return Check(False, f"alternative backend {want.canary} has no endpoints yet")
    policy = canary.get("trafficShapingPolicy") or {}
    wrong = {
        key: (policy.get(key), value)
        for key, value in want.policy.items()
        if key in policy and policy.get(key) != value
    }
    if wrong:
        diff = ", ".join(f"{k}={seen!r} (want {value!r})" for k, (seen, value) in wrong.items())
        return Check(False, f"alternative {want.canary} has {diff}")
    return Check(True, f"alternative {want.canary} with {dict(want.policy)}")


# Istio ------------------------------------------------------------------------------------


def _fqdn(host: str, namespace: str) -> str:
    if host.endswith(".svc.cluster.local"):
        return host
    parts = host.split(".")
    ns = parts[1] if len(parts) > 1 else namespace
    return f"{parts[0]}.{ns}.svc.cluster.local"


_REGEX_CANDIDATES = ("always", "canary", "true", "1")


def _regex_sample(pattern: str) -> str | None:
    """A header value that ``pattern`` matches fully (Envoy safe_regex matches the whole
    value): the first literal of a simple alternation, or a common value the pattern
    accepts (``.*`` -> ``always``); None when we cannot tell."""
    # RE2, as Envoy matches it: linear time, whatever the pattern.
    if re2_problem(pattern) is not None:
        return None
    body = pattern.removeprefix("^").removesuffix("$")
    first = body.strip("()").split("|")[0]
    if first and re.escape(first) == first and re2_fullmatch(pattern, first):
        return first
    return next((c for c in _REGEX_CANDIDATES if re2_fullmatch(pattern, c)), None)


def _header_values(conditions: Mapping[str, Mapping[str, str]]) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    for name, match in conditions.items():
        if not match:
            headers[name] = "always"  # an empty StringMatch checks presence only
        elif "exact" in match:
            headers[name] = str(match["exact"])
        elif "prefix" in match:
            headers[name] = str(match["prefix"])
        elif "regex" in match:
            sample = _regex_sample(str(match["regex"]))
            if sample is None:
                return None
            headers[name] = sample
        else:
            return None
    return headers


def _subset_labels(
    objects: Sequence[Manifest], fqdn: str, subset: str, namespace: str
) -> dict[str, str]:
    for rule in _of_kind(objects, "DestinationRule", "networking.istio.io"):
        spec = rule.get("spec") or {}
        if _fqdn(str(spec.get("host", "")), namespace) != fqdn:
            continue
        for entry in spec.get("subsets") or []:
            if entry.get("name") == subset:
                return dict(entry.get("labels") or {})
    raise BackendError(f"subset {subset!r} of {fqdn} is defined by no DestinationRule")


def _istio_destinations(
    objects: Sequence[Manifest], namespace: str, route: Mapping[str, Any]
) -> tuple[tuple[tuple[Mapping[str, str], ...], frozenset[str]], dict[str, float]]:
    dests = list(route.get("route") or [])
    parts = []
    clusters: dict[str, float] = {}
    for dest in dests:
        weight = float(dest.get("weight", 100 if len(dests) == 1 else 0))
        if weight <= 0:
            continue  # weight 0 gets nothing (UPSTREAM.md, Istio)
        target = dest.get("destination") or {}
        fqdn = _fqdn(str(target.get("host", "")), namespace)
        service = fqdn.split(".")[0]
        subset = str(target.get("subset") or "")
        extra = _subset_labels(objects, fqdn, subset, namespace) if subset else {}
        parts.append(_behind_service(objects, service, extra))
        port = (target.get("port") or {}).get("number") or _service_port(_service(objects, service))
        clusters[f"outbound|{port}|{subset}|{fqdn}"] = (
            clusters.get(f"outbound|{port}|{subset}|{fqdn}", 0.0) + weight
        )
    return _merge(*parts), _normalise(clusters)


def _normalise(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(w for w in weights.values() if w > 0)
    return {k: w / total for k, w in weights.items() if w > 0} if total else {}


def _istio_plan(objects: Sequence[Manifest], namespace: str, host: str | None) -> DataplanePlan:
    services = _of_kind(objects, "VirtualService", "networking.istio.io")
    chosen = next(
        (vs for vs in services if host in ((vs.get("spec") or {}).get("hosts") or [])),
        next(
            (vs for vs in services if "*" in ((vs.get("spec") or {}).get("hosts") or [])),
            services[0],
        ),
    )
    routes: list[Route] = []
    default_clusters: dict[str, float] | None = None
    # Istio evaluates http routes in order, first match wins (UPSTREAM.md). A route is the
    # default when it matches every request of the release (no match, or a URI match only).
    for index, http in enumerate((chosen.get("spec") or {}).get("http") or []):
        matches = http.get("match") or [{}]
        (selectors, versions), clusters = _istio_destinations(objects, namespace, http)
        conditions = set(matches[0]) - {"uri", "name", "ignoreUriCase"}
        if not conditions:
            if default_clusters is None:
                routes.insert(0, Route("default", {}, selectors, versions))
                default_clusters = clusters
            continue
        if conditions != {"headers"}:
            continue  # sourceLabels, ports, ...: needs another caller; not probed here
        headers = _header_values(matches[0].get("headers") or {})
        if headers:
            label = ", ".join(f"{k}: {v}" for k, v in headers.items())
            routes.append(Route(label or f"route {index}", headers, selectors, versions))
    if default_clusters is None:
        raise BackendError(
            f"VirtualService {_name(chosen)} has no route without match: requests that match "
            "nothing get 404 (end the http routes with a default route)"
        )
    envoy = EnvoyWant(host=host or "*", clusters=default_clusters)
    return DataplanePlan(routes=tuple(routes), envoy=envoy)


def _gateway_plan(objects: Sequence[Manifest], namespace: str, host: str | None) -> DataplanePlan:
    http_routes = _of_kind(objects, "HTTPRoute", "gateway.networking.k8s.io")
    chosen = next(
        (r for r in http_routes if host in ((r.get("spec") or {}).get("hostnames") or [])),
        http_routes[0],
    )
    routes: list[Route] = []
    default_clusters: dict[str, float] | None = None
    for index, rule in enumerate((chosen.get("spec") or {}).get("rules") or []):
        parts = []
        weights: dict[str, float] = {}
        for ref in rule.get("backendRefs") or []:
            # Gateway API: share = weight / sum(weights), default weight 1.
            weight = float(ref.get("weight", 1))
            if weight <= 0:
                continue
            service = str(ref.get("name"))
            parts.append(_behind_service(objects, service))
            port = ref.get("port") or _service_port(_service(objects, service))
            key = f"outbound|{port}||{service}.{namespace}.svc.cluster.local"
            weights[key] = weights.get(key, 0.0) + weight
        selectors, versions = _merge(*parts)
        header_matches = [m for m in rule.get("matches") or [] if m.get("headers")]
        if not header_matches:
            if default_clusters is None:
                routes.insert(0, Route("default", {}, selectors, versions))
                default_clusters = _normalise(weights)
            continue
        headers: dict[str, str] | None = {}
        for condition in header_matches[0].get("headers") or []:
            kind = condition.get("type", "Exact")
            value = str(condition.get("value", ""))
            sample = value if kind == "Exact" else _regex_sample(value)
            if sample is None or headers is None:
                headers = None
                break
            headers[str(condition.get("name"))] = sample
        if headers:
            label = ", ".join(f"{k}: {v}" for k, v in headers.items())
            routes.append(Route(label or f"rule {index}", headers, selectors, versions))
    if default_clusters is None:
        raise BackendError(f"HTTPRoute {_name(chosen)} has no rule without header matches")
    return DataplanePlan(
        routes=tuple(routes), envoy=EnvoyWant(host=host or "*", clusters=default_clusters)
    )


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def envoy_route_check(config_dump: Mapping[str, Any], want: EnvoyWant) -> Check:
    """Does Envoy's route configuration (admin ``/config_dump``) send ``want.host``'s default
    route to the wanted clusters in the wanted shares?

    The default route is the first route of the virtual host without header matchers;
    ``weighted_clusters`` give shares weight / sum (clusters of weight 0 get nothing).
    """
    hosts = [
        vh
        for node in _walk(config_dump)
        for vh in (node.get("virtual_hosts") or [])
        if isinstance(vh, Mapping)
    ]
    candidates = [
        vh
        for vh in hosts
        if want.host in (vh.get("domains") or []) or f"{want.host}:*" in (vh.get("domains") or [])
    ] or [vh for vh in hosts if "*" in (vh.get("domains") or [])]
    if not candidates:
        return Check(False, f"no Envoy virtual host for {want.host} yet")
    seen: list[str] = []
    for vh in candidates:
        for route in vh.get("routes") or []:
            if (route.get("match") or {}).get("headers"):
                continue
            action = route.get("route") or {}
            if "weighted_clusters" in action:
                raw = {
                    str(c.get("name")): float(c.get("weight", 0))
                    for c in (action["weighted_clusters"].get("clusters") or [])
                }
            elif "cluster" in action:
                raw = {str(action["cluster"]): 1.0}
            else:
                continue
            shares = _normalise(raw)
            if set(shares) == set(want.clusters) and all(
                abs(shares[k] - want.clusters[k]) < 1e-6 for k in shares
            ):
                return Check(True, f"Envoy route {want.host} -> {shares}")
            seen.append(str(shares))
            break
    return Check(False, f"Envoy route {want.host} -> {'; '.join(seen) or 'no default route'}")


# -- judging answers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one probe request observed."""

    version: str | None = None
    pod: str | None = None
    error: str | None = None


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
