"""What the live data plane reports about its own configuration, read from the pods that serve
this release, and compared with the plan (:mod:`pytest_canary.backends.kube.plan`).

Which pods:

- ingress-nginx: the controller of the IngressClass the release's Ingress uses. A cluster may
  run several controllers with the same pod labels (a public and an internal one); the one
  that serves an Ingress is decided as the controller decides it (ingress-nginx
  internal/ingress/controller/store/store.go ``GetIngressClass`` and the IngressClass event
  handler): an Ingress naming a class is served by the controllers whose
  ``--controller-class`` equals that IngressClass's ``spec.controller`` (or, with
  ``--ingress-class-by-name``, whose ``--ingress-class`` is the class name); one with the
  legacy annotation ``kubernetes.io/ingress.class`` by those whose ``--ingress-class`` equals
  it; one without either by those started with ``--watch-ingress-without-class``. Flag
  defaults: pkg/flags/flags.go (``k8s.io/ingress-nginx``, ``nginx``, false, false).
  The class is read from the Ingress as the API server stored it: the DefaultIngressClass
  admission plugin fills ``spec.ingressClassName`` of an Ingress created without one when an
  IngressClass is marked default.
- an Istio Gateway: the pods its ``spec.selector`` selects (in any namespace);
- a Gateway API Gateway Istio deploys itself: the pods labelled
  ``gateway.networking.k8s.io/gateway-name=<Gateway>`` in the Gateway's namespace (istio
  manifests/charts/istio-control/istio-discovery/files/kube-gateway.yaml); bound to a shared
  gateway instead (``--canary-gateway``), that gateway's pods, in its namespace.

Every pod of the chosen set serves the release (traffic is balanced over them), so every one
must hold the plan; pods outside it are never asked.

What they report:

- ``/dbg backends get <name>`` in the controller, for the main backend and the alternative
  the plan wants: one backend of the JSON the controller POSTed to ``/configuration/backends``
  (internal/ingress/controller/nginx.go ``configureBackends``; rootfs/etc/nginx/lua/
  configuration.lua ``handle_backends``), a pkg/apis/ingress/types.go ``Backend``: ``name``,
  ``endpoints`` (``address``, ``port``), ``noServer``, ``trafficShapingPolicy``,
  ``alternativeBackends`` (omitted when empty); "A backend of this name was not found." when
  there is none (cmd/dbg/main.go ``backendsGet``). Never ``backends all``: a busy shared
  controller's whole list can run to many MB;
- ``pilot-agent request GET config_dump?resource=dynamic_route_configs`` in the gateway's
  ``istio-proxy``: Envoy's admin config dump (envoy api/envoy/admin/v3/config_dump.proto
  ``RoutesConfigDump.DynamicRouteConfig``) whose ``route_config`` (route/v3
  ``RouteConfiguration``) lists ``virtual_hosts`` (``domains``, ``routes``); a route's
  ``match.headers`` are ``HeaderMatcher``s and its ``route`` names a ``cluster`` or
  ``weighted_clusters.clusters`` (``name``, ``weight``); istiod writes the object that made
  the route into ``metadata.filter_metadata.istio.config``
  (pilot/pkg/networking/util/util.go ``AddConfigInfoMetadata``:
  ``/apis/<group>/<version>/namespaces/<ns>/<kind>/<name>``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_canary.backends import waits
from pytest_canary.backends.kube.api import KubeApi, api_error_message
from pytest_canary.backends.kube.options import parse_gateway
from pytest_canary.backends.kube.plan import (
    Dataplane,
    DataplanePlan,
    EnvoyHeader,
    EnvoyRouteWant,
    EnvoyWant,
    NginxWant,
)
from pytest_canary.backends.waits import Check

INGRESS_NGINX_PODS = "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component=controller"
"""Labels of the controller pods (deploy/static/provider/*/deploy.yaml, the Helm chart)."""
ISTIO_GATEWAY_PODS = "istio=ingressgateway"
"""Labels of Istio's default ingress gateway pods (manifests/charts/gateways/istio-ingress)."""
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
DEFAULT_CONTROLLER_CLASS = "k8s.io/ingress-nginx"
DEFAULT_INGRESS_CLASS = "nginx"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

NON_JSON_TOLERATED = 3
"""Consecutive answers that are not JSON before a configuration signal is left out of one
wait: /dbg prints a passing error as plain text and exits 0 (cmd/dbg/main.go
``backendsGet``). The next wait reads it again."""

DBG_GET = ("/dbg", "backends", "get")
DBG_NOT_FOUND = "A backend of this name was not found."
"""What ``/dbg backends get`` prints (exit 0) for a backend the controller does not have."""
ENVOY_ROUTES = ("pilot-agent", "request", "GET", "config_dump?resource=dynamic_route_configs")


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Ready and not terminating."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


# -- which pods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerFlags:
    """The flags of an ingress-nginx controller that decide which Ingresses it serves."""

    controller_class: str = DEFAULT_CONTROLLER_CLASS
    ingress_class: str = DEFAULT_INGRESS_CLASS
    watch_without_class: bool = False
    class_by_name: bool = False


def controller_flags(pod: Mapping[str, Any]) -> ControllerFlags | None:
    """The class flags of the controller container of a pod (None: no such container).

    Go's flag package takes ``--name=value`` and ``--name value``; a bare boolean flag is
    true.
    """
    for container in (pod.get("spec") or {}).get("containers") or []:
        argv = [
            str(a) for a in list(container.get("command") or []) + list(container.get("args") or [])
        ]
        if not any(a.endswith("nginx-ingress-controller") for a in argv):
            continue
        values: dict[str, str] = {}
        for index, arg in enumerate(argv):
            if not arg.startswith("-"):
                continue
            name, sep, value = arg.lstrip("-").partition("=")
            if not sep:
                following = argv[index + 1] if index + 1 < len(argv) else ""
                value = following if following and not following.startswith("-") else "true"
            values[name] = value
        return ControllerFlags(
            controller_class=values.get("controller-class", DEFAULT_CONTROLLER_CLASS),
            ingress_class=values.get("ingress-class", DEFAULT_INGRESS_CLASS),
            watch_without_class=values.get("watch-ingress-without-class", "false") == "true",
            class_by_name=values.get("ingress-class-by-name", "false") == "true",
        )
    return None


def serves(
    flags: ControllerFlags, ingress: Mapping[str, Any], class_controller: str | None
) -> bool:
    """Whether a controller with ``flags`` serves ``ingress``; ``class_controller`` is the
    ``spec.controller`` of the IngressClass the Ingress names (store.go
    ``GetIngressClass``)."""
    class_name = (ingress.get("spec") or {}).get("ingressClassName")
    if class_name:
        by_name = flags.class_by_name and class_name == flags.ingress_class
        return by_name or class_controller == flags.controller_class
    annotation = ((ingress.get("metadata") or {}).get("annotations") or {}).get(
        LEGACY_CLASS_ANNOTATION
    )
    if annotation is not None:
        return bool(annotation == flags.ingress_class)
    return flags.watch_without_class


@dataclass(frozen=True)
class PodSet:
    """The pods serving a data plane: where to list them, and which of those count.

    Attributes:
        what: the pods in words, for messages.
        selector: label selector to list them with.
        namespace: their namespace (None: every namespace).
        container: the container to exec in.
        keep: which listed pods serve the release (None: all of them).
    """

    what: str
    selector: str
    namespace: str | None
    container: str
    keep: Callable[[Mapping[str, Any]], bool] | None = None
    signal: str = ""

    @property
    def key(self) -> str:
        """The signal of these pods, as :attr:`ConfigSignals.unavailable` names it: what
        cannot be read from one controller (one IngressClass) says nothing of another."""
        return f"{self.signal} ({self.what})" if self.signal else self.what


class SignalUnavailable(Exception):
    """A configuration signal that cannot be read with this client (a fact, not a failure).

    Args:
        message: why.
        key: the signal (:attr:`PodSet.key`).
    """

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def live_ingress(api: KubeApi, ingress: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Ingress as the API server stored it (admission may have set its class), or as
    sent when it cannot be read."""
    meta = ingress.get("metadata") or {}
    if not meta.get("name") or not meta.get("namespace"):
        return ingress
    try:
        stored = api.get(
            "networking.k8s.io/v1", "Ingress", str(meta["name"]), str(meta["namespace"])
        )
    except Exception as exc:
        if waits.is_transient(exc):
            raise
        return ingress
    return stored if stored is not None else ingress


def nginx_controller_pods(api: KubeApi, ingress: Mapping[str, Any]) -> PodSet:
    """The ingress-nginx controller pods that serve ``ingress`` (read as stored:
    :func:`live_ingress`).

    Raises:
        SignalUnavailable: when the IngressClass cannot be read.
    """
    ingress = live_ingress(api, ingress)
    class_name = (ingress.get("spec") or {}).get("ingressClassName")
    class_controller: str | None = None
    what = "the ingress-nginx controller watching Ingresses without a class"
    annotation = ((ingress.get("metadata") or {}).get("annotations") or {}).get(
        LEGACY_CLASS_ANNOTATION
    )
    if annotation is not None and not class_name:
        what = f"the ingress-nginx controller of class annotation {annotation}"
    if class_name:
        key = f"ingress-nginx (IngressClass {class_name})"
        try:
            found = api.get("networking.k8s.io/v1", "IngressClass", str(class_name))
        except Exception as exc:
            if waits.is_transient(exc):
                raise
            raise SignalUnavailable(
                f"cannot read IngressClass {class_name}: {api_error_message(exc)}", key
            ) from exc
        if found is None:
            raise SignalUnavailable(f"IngressClass {class_name} does not exist", key)
        class_controller = str((found.get("spec") or {}).get("controller") or "")
        what = f"the ingress-nginx controller of IngressClass {class_name} ({class_controller})"

    def keep(pod: Mapping[str, Any]) -> bool:
        flags = controller_flags(pod)
        return flags is not None and serves(flags, ingress, class_controller)

    return PodSet(what, INGRESS_NGINX_PODS, None, "controller", keep, "ingress-nginx")


PodsOf = Callable[[], PodSet]
"""Finds the pods of a data plane when asked (each look: pods come and go)."""


def controller_pods_of(api: KubeApi, objects: Sequence[Mapping[str, Any]]) -> PodsOf | None:
    """The ingress-nginx controller pods serving the first Ingress of ``objects`` (None: no
    Ingress)."""
    ingress = next((o for o in objects if o.get("kind") == "Ingress"), None)
    if ingress is None:
        return None
    return lambda: nginx_controller_pods(api, ingress)


def gateway_pods_of(
    objects: Sequence[Mapping[str, Any]],
    dataplane: Dataplane,
    shared_selector: Mapping[str, str] | None,
    shared: str | None,
) -> PodsOf | None:
    """The gateway pods serving the release's Gateway (``dataplane.name``): the shared
    gateway Service's (``--canary-gateway``: ``shared``, whose pods ``shared_selector``
    selects), the pods an Istio Gateway selects, or the Deployment Istio creates for a
    Gateway API Gateway. None when no pods can be told."""
    namespace, _, name = dataplane.name.partition("/")
    if dataplane.kind == "gateway" and shared_selector is None:
        return lambda: PodSet(
            f"the gateway Deployment Istio created for Gateway {namespace}/{name}",
            f"{GATEWAY_NAME_LABEL}={name}",
            namespace,
            "istio-proxy",
            signal="istio-gateway",
        )
    pods_namespace: str | None = None
    if shared_selector is not None:
        selector = dict(shared_selector)
        what = f"the gateway Service {shared}"
        if shared:
            # A Service selects pods of its own namespace only: a busy shared gateway's
            # pods are never listed across the cluster.
            pods_namespace = parse_gateway(shared)[0]
    else:
        gateway = next(
            (
                o
                for o in objects
                if o.get("kind") == "Gateway"
                and str(o.get("apiVersion", "")).startswith("networking.istio.io/")
                and (o.get("metadata") or {}).get("name") == name
            ),
            None,
        )
        selector = dict(((gateway or {}).get("spec") or {}).get("selector") or {})
        what = f"the pods Istio Gateway {namespace}/{name} selects"
    if not selector:
        return None
    return lambda: PodSet(
        what, label_selector(selector), pods_namespace, "istio-proxy", signal="istio-gateway"
    )


def label_selector(labels: Mapping[str, str]) -> str:
    """``a=1,b=2``: equality terms of a label selector."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# -- the signals of one backend ---------------------------------------------------------------


@dataclass
class SignalChecks:
    """The configuration checks of one wait.

    Attributes:
        checks: one per readable signal, called once per look.
        nginx_read: whether the last look judged ingress-nginx's configuration from its own
            answer (then the entry probes wait one worker sync interval more).
    """

    checks: list[Callable[[], Check]]
    nginx_read: bool = False


@dataclass(frozen=True)
class Reading:
    """One look at a signal: its check, and whether it came from the data plane's answer
    (False: skipped or not readable)."""

    check: Check
    judged: bool


class ConfigSignals:
    """Reads data-plane configuration from pods, once per look of a convergence wait.

    A signal that cannot be read with this client (no such pods, exec forbidden) is recorded
    in :attr:`unavailable` under its own key (:attr:`PodSet.key`: one IngressClass's
    controller, one gateway) and left out for the session; answers that stay unreadable
    leave it out of one wait. The entry probes still run. Shared by the environments of one
    backend.
    """

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.unavailable: dict[str, str] = {}

    def checks(
        self,
        plan: DataplanePlan,
        *,
        nginx_pods: Callable[[], PodSet] | None,
        envoy_pods: Callable[[], PodSet] | None,
    ) -> SignalChecks:
        """The checks of ``plan`` for one wait: ingress-nginx's main and alternative backend
        (``/dbg backends get``) and the gateway's Envoy routes."""
        found = SignalChecks([])
        unreadable: dict[str, int] = {}  # non-JSON answers in a row, per signal, this wait
        nginx_want, envoy_want = plan.nginx, plan.envoy
        if nginx_want is not None and nginx_pods is not None:
            pods_of_nginx = nginx_pods
            names = [nginx_want.main] + ([nginx_want.canary] if nginx_want.canary else [])

            def nginx() -> Check:
                reading = self.read(
                    pods_of_nginx,
                    [[*DBG_GET, name] for name in names],
                    lambda answers: nginx_backends_check(
                        [a for a in answers if a is not None], nginx_want
                    ),
                    unreadable=unreadable,
                )
                found.nginx_read = reading.judged
                return reading.check

            found.checks.append(nginx)
        if envoy_want is not None and envoy_pods is not None:
            pods_of_envoy = envoy_pods

            def envoy() -> Check:
                return self.read(
                    pods_of_envoy,
                    [list(ENVOY_ROUTES)],
                    lambda answers: envoy_route_check(answers[0], envoy_want),
                    unreadable=unreadable,
                ).check

            found.checks.append(envoy)
        return found

    def _give_up(self, key: str, reason: str) -> Reading:
        self.unavailable[key] = reason
        return Reading(Check(True, f"{key}: configuration not readable, skipped"), False)

    def read(
        self,
        pods_of: Callable[[], PodSet],
        commands: Sequence[Sequence[str]],
        judge: Callable[[list[Any]], Check],
        *,
        unreadable: dict[str, int] | None = None,
    ) -> Reading:
        """Run ``commands`` in every pod of the set and judge each pod's answers (their
        stdout as JSON; None for a backend /dbg does not have); done when every pod holds
        the plan. ``unreadable`` counts answers that are not JSON, per signal, across the
        looks of one wait."""
        counts = {} if unreadable is None else unreadable
        try:
            pods = pods_of()
        except SignalUnavailable as exc:
            return self._give_up(exc.key, str(exc))
        key = pods.key
        if key in self.unavailable:
            return Reading(Check(True, f"{key}: configuration not readable, skipped"), False)
        if counts.get(key, 0) >= NON_JSON_TOLERATED:
            return Reading(Check(True, f"{key}: answers not JSON, skipped in this wait"), False)
        try:
            listed = self.api.list(
                "v1", "Pod", namespace=pods.namespace, label_selector=pods.selector
            )
        except Exception as exc:
            if waits.is_transient(exc):
                raise
            return self._give_up(key, f"cannot list pods {pods.selector}: {api_error_message(exc)}")
        serving = [p for p in listed if pods.keep is None or pods.keep(p)]
        ready = [p for p in serving if pod_ready(p)]
        if not ready:
            where = f" in {pods.namespace}" if pods.namespace else ""
            if listed and not serving:
                return self._give_up(
                    key,
                    f"no pod of {pods.what} among the pods {pods.selector}{where} "
                    f"({', '.join(str(p['metadata']['name']) for p in listed[:5])})",
                )
            if serving:  # pods of the release's data plane exist but are not ready yet
                return Reading(Check(False, f"{key}: no ready pod yet"), False)
            return self._give_up(key, f"no pod of {pods.what} ({pods.selector}{where})")
        statuses = []
        for pod in ready:
            meta = pod["metadata"]
            answers: list[Any] = []
            for command in commands:
                try:
                    output = self.api.exec(
                        str(meta["name"]),
                        str(meta["namespace"]),
                        command,
                        container=pods.container,
                    )
                except Exception as exc:  # a missing signal must not fail the run
                    if waits.is_transient(exc):
                        return Reading(Check(False, f"{key}: {api_error_message(exc)}"), False)
                    return self._give_up(key, f"exec {' '.join(command)} in {meta['name']}: {exc}")
                if output.stdout.strip() == DBG_NOT_FOUND:
                    answers.append(None)
                    continue
                try:
                    answers.append(json_in(output.stdout))
                except ValueError:
                    # /dbg prints a passing error as plain text (exit 0): not done; after a
                    # few in a row, left out of this wait (the entry probes still decide).
                    counts[key] = counts.get(key, 0) + 1
                    said = output.stdout.strip() or output.stderr.strip()
                    return Reading(
                        Check(
                            counts[key] >= NON_JSON_TOLERATED,
                            f"{key}: {meta['name']} answered {' '.join(command)} with "
                            f"{said[:120]!r}, not JSON",
                        ),
                        False,
                    )
            counts[key] = 0
            check = judge(answers)
            statuses.append(f"{meta['name']}: {check.status}")
            if not check.done:
                return Reading(Check(False, "; ".join(statuses)), True)
        return Reading(Check(True, "; ".join(statuses)), True)


def json_in(output: str) -> Any:
    """The JSON document in a command's output (tools may print a line before it).

    Raises:
        ValueError: when there is none.
    """
    starts = [i for i in (output.find("{"), output.find("[")) if i >= 0]
    if not starts:
        raise ValueError(f"no JSON in output: {output[:200]!r}")
    return json.loads(output[min(starts) :])


# -- ingress-nginx ----------------------------------------------------------------------------


def nginx_backends_check(backends: Any, want: NginxWant) -> Check:
    """Does ingress-nginx's dynamic configuration hold ``want``: the main backend with
    endpoints, its alternative (or none) with endpoints and the policy? ``backends`` is a list
    of Backend objects (what ``/dbg backends get`` printed for each name it has)."""
    if not isinstance(backends, list) or not all(
        isinstance(b, Mapping) and isinstance(b.get("name"), str) for b in backends
    ):
        return Check(
            False,
            "ingress-nginx backends in an unexpected shape (want a list of Backend objects "
            f"with a name, ingress-nginx pkg/apis/ingress/types.go): {str(backends)[:160]}",
        )
    by_name = {str(b["name"]): b for b in backends}
    main = by_name.get(want.main)
    if main is None:
        return Check(False, f"no backend {want.main} yet")
    if not main.get("endpoints"):
        return Check(False, f"backend {want.main} has no endpoints yet")
    alternatives = main.get("alternativeBackends") or []
    if not isinstance(alternatives, list):
        return Check(
            False, f"backend {want.main}: alternativeBackends is not a list: {alternatives!r}"
        )
    if want.canary is None:
        if alternatives:
            return Check(False, f"backend {want.main} still has alternatives {alternatives}")
        return Check(True, f"backend {want.main} without alternatives")
    if not alternatives:
        return Check(
            False, f"backend {want.main} has no alternative backend yet, want {want.canary}"
        )
    if alternatives[0] != want.canary:
        # balancer.lua uses the first alternative only.
        return Check(
            False, f"backend {want.main} alternatives {alternatives}, want {want.canary} first"
        )
    canary = by_name.get(want.canary) or {}
    if not canary.get("endpoints"):
        return Check(False, f"alternative backend {want.canary} has no endpoints yet")
    policy = canary.get("trafficShapingPolicy")
    if not isinstance(policy, Mapping):
        return Check(False, f"alternative backend {want.canary} has no trafficShapingPolicy")
    wrong = {
        key: (policy.get(key), value)
        for key, value in want.policy.items()
        if policy.get(key) != value
    }
    if wrong:
        diff = ", ".join(f"{k}={seen!r} (want {value!r})" for k, (seen, value) in wrong.items())
        return Check(False, f"alternative {want.canary} has {diff}")
    return Check(True, f"alternative {want.canary} with {dict(want.policy)}")


# -- Envoy ----------------------------------------------------------------------------------


class UnexpectedShape(ValueError):
    """A config_dump that is not shaped as the Envoy admin API says."""


@dataclass(frozen=True)
class LiveRoute:
    """One Envoy route as config_dump shows it."""

    headers: frozenset[EnvoyHeader]
    clusters: Mapping[str, float] | None  # None: the route does not forward (redirect, ...)
    config: str  # the Istio object that made it ("" when not said)

    @property
    def catch_all(self) -> bool:
        """No header matcher (the path part is not compared)."""
        return not self.headers

    def describe(self) -> str:
        """As :meth:`EnvoyRouteWant.describe`."""
        if self.clusters is None:
            return "a route that does not forward"
        return EnvoyRouteWant(self.headers, self.clusters).describe()


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def virtual_hosts(config_dump: Any) -> list[Mapping[str, Any]]:
    """Every virtual host of the route configurations in a config dump.

    Raises:
        UnexpectedShape: naming what is not as the Envoy admin API says.
    """
    if not isinstance(config_dump, Mapping) or not isinstance(config_dump.get("configs"), list):
        raise UnexpectedShape(f"no 'configs' list at the top: {str(config_dump)[:120]}")
    found: list[Mapping[str, Any]] = []
    for node in _walk(config_dump["configs"]):
        hosts = node.get("virtual_hosts")
        if hosts is None:
            continue
        if not isinstance(hosts, list):
            raise UnexpectedShape(f"virtual_hosts is not a list: {str(hosts)[:120]}")
        for vh in hosts:
            if not isinstance(vh, Mapping) or not isinstance(vh.get("domains", []), list):
                raise UnexpectedShape(f"a virtual host without a domains list: {str(vh)[:120]}")
            if not isinstance(vh.get("routes", []), list):
                raise UnexpectedShape(f"virtual host {vh.get('name')}: routes is not a list")
            found.append(vh)
    return found


def _live_header(matcher: Any) -> EnvoyHeader:
    if not isinstance(matcher, Mapping) or not isinstance(matcher.get("name"), str):
        raise UnexpectedShape(f"a header matcher without a name: {str(matcher)[:120]}")
    name, invert = str(matcher["name"]).lower(), bool(matcher.get("invert_match"))
    if matcher.get("present_match"):
        return EnvoyHeader(name, "present", invert=invert)
    string = matcher.get("string_match")
    if isinstance(string, Mapping):
        for kind in ("exact", "prefix", "suffix", "contains"):
            if kind in string:
                return EnvoyHeader(name, kind, str(string[kind]), invert)
        regex = string.get("safe_regex")
        if isinstance(regex, Mapping) and "regex" in regex:
            return EnvoyHeader(name, "regex", str(regex["regex"]), invert)
    # The deprecated direct fields (route/v3 HeaderMatcher exact_match, ...).
    for field_name, kind in (("exact_match", "exact"), ("prefix_match", "prefix")):
        if field_name in matcher:
            return EnvoyHeader(name, kind, str(matcher[field_name]), invert)
    regex = matcher.get("safe_regex_match")
    if isinstance(regex, Mapping) and "regex" in regex:
        return EnvoyHeader(name, "regex", str(regex["regex"]), invert)
    raise UnexpectedShape(f"header matcher {name}: no match kind this check knows: {dict(matcher)}")


def _live_route(route: Any) -> LiveRoute:
    if not isinstance(route, Mapping) or not isinstance(route.get("match", {}), Mapping):
        raise UnexpectedShape(f"a route without a match: {str(route)[:120]}")
    headers = frozenset(_live_header(m) for m in (route.get("match") or {}).get("headers") or [])
    config = str(
        (((route.get("metadata") or {}).get("filter_metadata") or {}).get("istio") or {}).get(
            "config", ""
        )
    )
    action = route.get("route")
    if not isinstance(action, Mapping):
        return LiveRoute(headers, None, config)
    if isinstance(action.get("cluster"), str):
        return LiveRoute(headers, {str(action["cluster"]): 1.0}, config)
    weighted = action.get("weighted_clusters")
    if isinstance(weighted, Mapping) and isinstance(weighted.get("clusters"), list):
        raw: dict[str, float] = {}
        for entry in weighted["clusters"]:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise UnexpectedShape(f"a weighted cluster without a name: {str(entry)[:120]}")
            try:
                weight = float(entry.get("weight", 0))
            except (TypeError, ValueError):
                raise UnexpectedShape(
                    f"cluster {entry['name']}: weight {entry.get('weight')!r}"
                ) from None
            raw[str(entry["name"])] = raw.get(str(entry["name"]), 0.0) + weight
        total = sum(w for w in raw.values() if w > 0)
        shares = {k: w / total for k, w in raw.items() if w > 0} if total else {}
        return LiveRoute(headers, shares, config)
    return LiveRoute(headers, None, config)


def _same(live: LiveRoute, want: EnvoyRouteWant) -> bool:
    if live.clusters is None or live.headers != want.headers:
        return False
    if set(live.clusters) != set(want.clusters):
        return False
    return all(abs(live.clusters[k] - want.clusters[k]) < 1e-6 for k in want.clusters)


def _in_order(
    ours: Sequence[LiveRoute], wanted: Sequence[EnvoyRouteWant], partial: bool
) -> int | None:
    """None when ``ours`` holds ``wanted`` (equal, or with ``partial`` as a subsequence);
    else the index of the first wanted route that is not there."""
    if not partial:
        forwarding = [r for r in ours if r.clusters is not None]
        for index, want in enumerate(wanted):
            if index >= len(forwarding) or not _same(forwarding[index], want):
                return index
        return None if len(forwarding) == len(wanted) else len(wanted)
    position = 0
    for index, want in enumerate(wanted):
        while position < len(ours) and not _same(ours[position], want):
            position += 1
        if position == len(ours):
            return index
        position += 1
    return None


def _vhost_check(vh: Mapping[str, Any], want: EnvoyWant) -> Check:
    routes = [_live_route(r) for r in vh.get("routes") or []]
    labelled = any(r.config for r in routes)
    marker = f"/namespaces/{want.namespace}/"
    ours = [r for r in routes if not labelled or marker in r.config]
    name = str(vh.get("name") or want.host)
    missing = _in_order(ours, want.routes, want.partial)
    if missing is not None:
        forwarding = [r for r in ours if r.clusters is not None]
        if missing < len(want.routes):
            seen = forwarding[missing].describe() if missing < len(forwarding) else "nothing"
            return Check(
                False,
                f"Envoy virtual host {name} route {missing + 1} of ours: {seen}, want "
                f"{want.routes[missing].describe()}",
            )
        extra = "; ".join(r.describe() for r in forwarding[len(want.routes) :])
        return Check(False, f"Envoy virtual host {name} still has routes of ours: {extra}")
    # A route of another namespace with the same match, before one of ours, takes its
    # requests (first match wins): a leftover of another run routing this host.
    for index, route in enumerate(routes):
        if route in ours:
            continue
        later = [r for r in routes[index + 1 :] if r in ours and r.headers == route.headers]
        if later:
            return Check(
                False,
                f"Envoy virtual host {name}: a route of {route.config or 'another object'} "
                f"with the same match comes before ours and takes its requests",
            )
    shares = want.clusters
    return Check(
        True,
        f"Envoy virtual host {name}: {len(want.routes)} routes as planned, "
        f"default -> {dict(shares)}",
    )


def envoy_route_check(config_dump: Any, want: EnvoyWant) -> Check:
    """Does the gateway's Envoy hold ``want``'s routes for its host, in order, each with the
    planned header matchers and cluster shares (weight / sum of weights above 0)?"""
    try:
        hosts = virtual_hosts(config_dump)
        candidates = [
            vh
            for vh in hosts
            if want.host in vh.get("domains", []) or f"{want.host}:*" in vh.get("domains", [])
        ] or [vh for vh in hosts if "*" in vh.get("domains", [])]
        if not candidates:
            return Check(False, f"no Envoy virtual host for {want.host} yet")
        seen: list[str] = []
        for vh in candidates:
            check = _vhost_check(vh, want)
            if check.done:
                return check
            seen.append(check.status)
    except UnexpectedShape as exc:
        return Check(
            False,
            f"Envoy config_dump in an unexpected shape (envoy admin/v3 config_dump.proto, "
            f"route/v3 RouteConfiguration): {exc}",
        )
    return Check(False, "; ".join(seen))
