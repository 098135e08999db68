"""The local backend's stand-in for a namespace: an object store, a Deployment controller
that runs real processes, Service endpoints, and the routers that read them.

Applying is synchronous and make-before-break, the order a careful operator (and our kube
backend) follows on a real cluster: workloads first (new pods ready before old ones go),
then Services and routing objects in one atomic switch, then deletions of what is no longer
wanted. The routers always read one immutable :class:`Snapshot`, swapped atomically.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import random
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pytest_canary.backends.base import Diagnostics, Entry, Environment
from pytest_canary.backends.local.rollouts import (
    RolloutController,
    owned_by_rollout,
)
from pytest_canary.backends.local.rollouts import (
    entry_model as rollout_entry_model,
)
from pytest_canary.backends.local.router import (
    AccessRecord,
    ConnectionRouter,
    Endpoint,
    HttpRouter,
    InFlight,
    LoopThread,
    RouterErrors,
)
from pytest_canary.backends.local.runtime import (
    PodSpec,
    RunningPod,
    Runtime,
    stop_pods,
    wait_healthy,
)
from pytest_canary.dataplane import argo_rollouts as rollout_model
from pytest_canary.dataplane import gateway as gateway_model
from pytest_canary.dataplane import istio as istio_model
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.manifests import Manifest, rolling
from pytest_canary.manifests import istio as istio_manifests
from pytest_canary.spec import SAMPLE_APP, ReleaseSpec

WORKLOAD_KINDS = ("Deployment",)
# How long a stopping pod waits for requests already routed to it (seconds).
ROUTED_AWAY_TIMEOUT = 2.0
# Deletion order: routing first, then Services, then workloads (break after make).
DELETE_ORDER = {"Deployment": 2, "Rollout": 2, "Service": 1}
# Argo Rollouts: run by the environment's RolloutController (backends/local/rollouts.py).
ROLLOUT_KIND = rollout_model.KIND
# Which data-plane model serves a strategy's entry ("model" or "model:gateway name").
ENTRY_MODEL = {
    "nginx": "nginx",
    "istio": "istio:{name}-gateway",
    "gateway": "gateway:{name}-gateway",
}
# Strategies whose traffic enters through a plain Service (kube-proxy, per connection).
CONNECTION_ENTRY = ("replicas", "bluegreen", "rolling")
# Model of the sidecar every local pod sends its outgoing HTTP through (HTTP_PROXY).
MESH = "mesh"

Key = tuple[str, str]


def _app_of(obj: Mapping[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    app = labels.get("app")
    # A frontend (``<app>-frontend``) belongs to its app's release.
    return None if app is None else str(app).removesuffix("-frontend")


def key_of(obj: Mapping[str, Any]) -> Key:
    """(kind, name) of an object."""
    return str(obj["kind"]), str(obj["metadata"]["name"])


@dataclass(frozen=True)
class Snapshot:
    """Everything a router needs for one request, immutable once published."""

    namespace: str
    objects: tuple[Manifest, ...]
    pods: tuple[RunningPod, ...]
    #: The pods that were Ready when this snapshot was published: a router routing on it
    #: sees one consistent set of endpoints (as a proxy sees one configuration), however
    #: the pods change meanwhile.
    ready: frozenset[str] = frozenset()

    @cached_property
    def _services(self) -> dict[str, Manifest]:
        return {o["metadata"]["name"]: o for o in self.objects if o["kind"] == "Service"}

    @cached_property
    def _nginx(self) -> nginx_model.NginxConfig:
        return nginx_model.load(self.objects, namespace=self.namespace)

    @cached_property
    def _istio(self) -> istio_model.IstioConfig:
        return istio_model.load(self.objects, namespace=self.namespace)

    @cached_property
    def _gateway(self) -> gateway_model.GatewayConfig:
        return gateway_model.load(self.objects, namespace=self.namespace)

    def route(self, kind: str, request: RoutedRequest, rng: random.Random) -> Destination | Refusal:
        """Decide where a request goes with the model ``kind``: ``nginx``, ``mesh`` (a
        sidecar's outgoing call), ``istio:<Gateway>`` or ``gateway:<Gateway>``."""
        model, _, gateway = kind.partition(":")
        if model == "nginx":
            # balancer.lua keeps a balancer only for upstreams with endpoints: the model
            # asks which Services have ready pods now.
            return self._nginx.route(
                request, rng, has_endpoints=lambda up: bool(self.service_endpoints(up.service))
            )
        if model == MESH:
            return self._istio.route(request, rng, gateway=None)
        if model == "istio":
            return self._istio.route(request, rng, gateway=gateway)
        if model == "gateway":
            return self._gateway.route(request, rng, gateway=gateway)
        raise BackendError(f"no local data-plane model named {kind!r}")

    def service_endpoints(self, service: str) -> list[Endpoint]:
        """Ready pods selected by a Service (Pods join as soon as labels match and Ready)."""
        svc = self._services.get(service)
        if svc is None:
            return []
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            return []  # a Service without selector has no automatic endpoints
        return [
            Endpoint(pod.name, pod.host, pod.port, tuple(sorted(pod.labels.items())))
            for pod in self.pods
            if pod.name in self.ready and all(pod.labels.get(k) == v for k, v in selector.items())
        ]

    def endpoints(self, destination: Destination) -> list[Endpoint]:
        """Endpoints of a destination, narrowed to its subset labels if any."""
        found = self.service_endpoints(destination.service)
        if destination.labels:
            wanted = destination.labels.items()
            found = [e for e in found if all(item in e.labels for item in wanted)]
        return found

    def dataplane_log(self) -> list[str]:
        """What the data planes would have logged while building this configuration."""
        lines = [f"ingress-nginx: {line}" for line in self._nginx.log]
        if any(o["kind"] in ("VirtualService", "DestinationRule") for o in self.objects):
            lines += [f"istiod: {line}" for line in self._istio.log]
        if any(o["kind"] == "HTTPRoute" for o in self.objects):
            lines += [f"gateway: {line}" for line in self._gateway.log]
        return lines


@dataclass
class WorkloadState:
    """The pods a Deployment owns and the template each runs."""

    pods: list[RunningPod] = field(default_factory=list)
    template_of: dict[str, str] = field(default_factory=dict)
    templates: dict[str, Manifest] = field(default_factory=dict)


def _template_hash(template: Mapping[str, Any]) -> str:
    blob = json.dumps(template, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


class LocalEnvironment(Environment):
    """One test's namespace on the local backend."""

    def __init__(
        self,
        namespace: str,
        runtime: Runtime,
        loop: LoopThread,
        rng: random.Random,
        on_close: Callable[[LocalEnvironment], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self._on_close = on_close
        self._runtime = runtime
        self._loop = loop
        self._rng = rng
        self._store: dict[Key, Manifest] = {}
        # The store is written by the test thread and the Rollout controller's thread.
        self.store_lock = threading.RLock()
        # What was last applied per object: re-applying it unchanged keeps what a controller
        # wrote since (as server-side apply keeps fields other managers own).
        self._applied: dict[Key, Manifest] = {}
        self._rollouts = RolloutController(self)
        self._workloads: dict[str, WorkloadState] = {}
        self._errors = RouterErrors()
        self.access_log: collections.deque[AccessRecord] = collections.deque(maxlen=200)
        # What the proxies log while serving (e.g. a header pattern at PCRE's limit).
        self.error_log: collections.deque[str] = collections.deque(maxlen=100)
        # Requests routed but not yet at their pod, across every router of this environment.
        self.in_flight = InFlight()
        self._http_routers: dict[str, HttpRouter] = {}
        self._sidecars: dict[str, HttpRouter] = {}
        self._connection_routers: dict[
            tuple[str, tuple[tuple[str, str], ...]], ConnectionRouter
        ] = {}
        self._snapshot = Snapshot(namespace, (), ())
        self._closed = False
        self.events: list[str] = []
        # canary.apply: Deployment name -> the pod label its stand-in answers with.
        self._stand_ins: dict[str, str] = {}

    # -- state ---------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The routing snapshot currently served."""
        return self._snapshot

    @property
    def pods(self) -> list[RunningPod]:
        """Every pod running now."""
        pods = [pod for state in list(self._workloads.values()) for pod in list(state.pods)]
        return pods + self._rollouts.pods

    def objects(self) -> list[Manifest]:
        """The applied objects, oldest first."""
        with self.store_lock:
            return list(self._store.values())

    def _publish(self) -> None:
        with self.store_lock:
            pods = tuple(self.pods)
            self._snapshot = Snapshot(
                self.namespace,
                tuple(self._store.values()),
                pods,
                frozenset(p.name for p in pods if p.ready),
            )

    # What the Rollout controller uses (it reads and writes the store like an API client).

    def publish(self) -> None:
        """Serve the store's current objects and pods to the routers."""
        self._publish()

    def store_items(self) -> list[tuple[Key, Manifest]]:
        """The stored objects by (kind, name); hold :attr:`store_lock` for a consistent view."""
        with self.store_lock:
            return list(self._store.items())

    def store_put(self, obj: Manifest) -> None:
        """Create or replace an object (a controller's write)."""
        with self.store_lock:
            self._store[key_of(obj)] = obj

    def store_delete(self, key: Key) -> None:
        """Delete an object (garbage collection of what a Rollout owned)."""
        with self.store_lock:
            if self._store.pop(key, None) is not None:
                self.events.append(f"deleted {key[0]}/{key[1]} (owner gone)")

    def start_pods_of(self, owner: Manifest, template_hash: str, count: int) -> list[RunningPod]:
        """Start ``count`` pods of ``owner``'s template (not ready yet)."""
        return self._start_pods(owner, template_hash, count)

    def stop_pods(self, pods: list[RunningPod]) -> None:
        """Stop pods already out of the endpoints: once the requests routed to them on an
        older snapshot have reached them, SIGTERM, drain, sidecars stopped."""
        self.await_routed_away(frozenset(pod.name for pod in pods))
        stop_pods(pods, grace=5.0)  # together: one grace period
        for pod in pods:
            self.events.append(f"pod {pod.name} stopped")
            sidecar = self._sidecars.pop(pod.name, None)
            if sidecar is not None:
                self._loop.run(sidecar.stop(), timeout=10)

    # -- apply ---------------------------------------------------------------------------

    def apply(self, objects: Sequence[Manifest]) -> None:
        if self._closed:
            raise BackendError(f"environment {self.namespace} is closed")
        wanted = {key_of(o): copy.deepcopy(dict(o)) for o in objects}
        # 1. workloads: create/update and wait for their pods (make before break). A Rollout
        # goes to its controller, which works on its own thread (waits: await_rollout).
        for key, obj in wanted.items():
            if key[0] in WORKLOAD_KINDS:
                with self.store_lock:
                    self._store[key] = obj
                self._reconcile_deployment(obj)
            elif key[0] == ROLLOUT_KIND:
                self._rollouts.apply(obj)
                with self.store_lock:
                    self._store[key] = obj
        # 2. Services and routing objects switch together; obsolete routing objects go.
        with self.store_lock:
            for key, obj in wanted.items():
                if key[0] in WORKLOAD_KINDS or key[0] == ROLLOUT_KIND:
                    continue
                if key in self._store and self._applied.get(key) == obj:
                    continue  # unchanged: keep what a controller wrote since
                self._store[key] = obj
                self._applied[key] = copy.deepcopy(obj)
            # Prune what this release applied before and no longer wants; other releases of
            # the test (another ``app`` label) stay. Objects without an app label (your own
            # manifests) replace everything. Objects a Rollout owns go with the Rollout.
            apps = {_app_of(o) for o in wanted.values()}
            stale = [
                k
                for k, o in self._store.items()
                if k not in wanted
                and (None in apps or _app_of(o) in apps)
                and not owned_by_rollout(o)
            ]
            for key in sorted(stale, key=lambda k: DELETE_ORDER.get(k[0], 0)):
                if key[0] not in DELETE_ORDER:
                    del self._store[key]
                    self._applied.pop(key, None)
                    self.events.append(f"deleted {key[0]}/{key[1]}")
            self._publish()
        if self._rollouts.names():
            self._rollouts.resync()  # the controller watches the objects it writes to
        # 3. then Services, then workloads that are no longer wanted.
        for key in sorted(stale, key=lambda k: DELETE_ORDER.get(k[0], 0)):
            if key[0] in DELETE_ORDER:
                with self.store_lock:
                    del self._store[key]
                    self._applied.pop(key, None)
                    self.events.append(f"deleted {key[0]}/{key[1]}")
                self._publish()
                if key[0] == "Deployment":
                    self._delete_workload(key[1])
                elif key[0] == ROLLOUT_KIND:
                    self._rollouts.delete(key[1])
                    self._rollouts.flush(timeout=60.0)

    def _pod_spec(self, deployment: Manifest, template_hash: str) -> PodSpec:
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
        ports = container.get("ports") or [{"containerPort": 8080}]
        probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
        suffix = secrets.token_hex(3)[:5]
        name = f"{deployment['metadata']['name']}-{template_hash[:6]}-{suffix}"
        labels = dict(template["metadata"].get("labels") or {})
        image = str(container.get("image", ""))
        stand_in = self._stand_ins.get(deployment["metadata"]["name"])
        if stand_in is not None:
            # canary.apply: the sample app stands in for the user's container, whatever its
            # image, ports, env or probes say, answering with the pods' version label.
            version = labels[stand_in]
            env = {
                "APP_NAME": labels.get("app", deployment["metadata"]["name"]),
                "APP_VERSION": version,
                "PORT": str(SAMPLE_APP.port),
            }
            image, probe = SAMPLE_APP.image_for(version), {}
            ports = [{"containerPort": SAMPLE_APP.port}]
        refusal = self._runtime.can_run(image)
        if refusal is not None:
            raise CanaryConfigError(
                f"Deployment {deployment['metadata']['name']}: image {image!r}: {refusal}"
            )
        # The pod's sidecar: its outgoing HTTP goes through a proxy that knows its labels
        # (Istio sourceLabels) and routes with the mesh model.
        env["HTTP_PROXY"] = f"http://127.0.0.1:{self._sidecar(name, labels).port}"
        return PodSpec(
            name=name,
            labels=labels,
            image=image,
            env=env,
            port=int(ports[0]["containerPort"]),
            health=str(probe.get("path", "/health")),
        )

    def _start_pods(self, deployment: Manifest, template_hash: str, count: int) -> list[RunningPod]:
        """Start ``count`` pods of a template; they listen but are not ready (no endpoints)
        until :meth:`_make_ready` ran their readiness probe."""
        if count <= 0:
            return []
        specs = [self._pod_spec(deployment, template_hash) for _ in range(count)]
        return self._runtime.start_many(specs)

    def _make_ready(self, pods: list[RunningPod]) -> None:
        try:
            for pod in pods:
                wait_healthy(pod)
        except BaseException:
            for pod in pods:
                pod.stop(grace=1.0)
            raise
        for pod in pods:
            self.events.append(f"pod {pod.name} ready on {pod.host}:{pod.port}")
        self._publish()

    def _sidecar(self, pod: str, labels: dict[str, str]) -> HttpRouter:
        router = HttpRouter(
            MESH,
            lambda: self._snapshot,
            self._rng,
            self._errors,
            self.access_log,
            labels,
            error_log=self.error_log,
            in_flight=self.in_flight,
        )
        self._loop.run(router.start())
        self._sidecars[pod] = router
        return router

    def _stop_pods(self, state: WorkloadState, pods: list[RunningPod]) -> None:
        for pod in pods:
            pod.ready = False  # leaves the endpoints first...
            state.pods.remove(pod)
            state.template_of.pop(pod.name, None)
        self._publish()
        self.await_routed_away(frozenset(pod.name for pod in pods))
        stop_pods(pods, grace=5.0)  # ...then drain and stop together (SIGTERM, grace period)
        still_ready = sum(1 for p in state.pods if p.ready)
        for pod in pods:
            self.events.append(f"pod {pod.name} stopped ({still_ready} ready left)")
            sidecar = self._sidecars.pop(pod.name, None)
            if sidecar is not None:
                self._loop.run(sidecar.stop(), timeout=10)

    def await_routed_away(self, pods: frozenset[str]) -> None:
        """Before pods stop: let the requests already routed to them on an older snapshot
        reach them (on a cluster, the endpoint propagation a pod's preStop pause covers).
        Bounded: a request that takes longer meets a pod that is draining."""
        deadline = time.monotonic() + ROUTED_AWAY_TIMEOUT
        while self.in_flight.holds(pods, self._snapshot) and time.monotonic() < deadline:
            time.sleep(0.002)

    def _reconcile_deployment(self, deployment: Manifest) -> None:
        """The Deployment controller's rolling update, sync by sync (``manifests.rolling``
        models kubernetes pkg/controller/deployment): scale the new ReplicaSet up within
        maxSurge, else scale old pods down within maxUnavailable; between syncs the oldest
        batch of new pods becomes ready. A ``pytest-canary/pause-after`` annotation pauses
        the rollout once that many new pods are ready (the seed's ``kubectl rollout pause``);
        the paused Deployment then settles as ``sync.go scale`` does."""
        name = deployment["metadata"]["name"]
        spec = deployment["spec"]
        replicas = int(spec.get("replicas", 1))
        template_hash = _template_hash(spec["template"])
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            surge, unavailable = 0, replicas
        else:
            params = strategy.get("rollingUpdate") or {}
            surge, unavailable = rolling.resolve_fenceposts(
                params.get("maxSurge", "25%"), params.get("maxUnavailable", "25%"), replicas
            )
        knobs = {"replicas": replicas, "max_surge": surge, "max_unavailable": unavailable}
        annotations = deployment["metadata"].get("annotations") or {}
        pause_after = annotations.get(rolling.PAUSE_AFTER)
        state = self._workloads.setdefault(name, WorkloadState())
        state.templates[template_hash] = deployment
        pending: list[list[RunningPod]] = []

        def counts() -> tuple[rolling.RolloutCounts, list[RunningPod], list[RunningPod]]:
            new = [p for p in state.pods if state.template_of.get(p.name) == template_hash]
            old = [p for p in state.pods if state.template_of.get(p.name) != template_hash]
            ready = sum(1 for p in new if p.ready)
            return rolling.RolloutCounts(old=len(old), new=len(new), new_ready=ready), new, old

        def start(template: str, count: int) -> None:
            batch = self._start_pods(state.templates[template], template, count)
            for pod in batch:
                state.pods.append(pod)
                state.template_of[pod.name] = template
            pending.append(batch)

        for _ in range(8 * (replicas + surge + len(state.pods)) + 8):  # each step progresses
            now, new, old = counts()
            nxt = rolling.sync(now, **knobs)
            if nxt.new > now.new:
                start(template_hash, nxt.new - now.new)
            elif nxt.new < now.new:  # too many new pods: the newest go first
                self._stop_pods(state, sorted(new, key=lambda p: p.started_at)[nxt.new :])
            elif nxt.old < now.old:  # old pods go oldest first
                self._stop_pods(state, sorted(old, key=lambda p: p.started_at)[: now.old - nxt.old])
            elif pending:  # fixpoint: the oldest batch of new pods becomes ready
                self._make_ready(pending.pop(0))
                now, new, old = counts()
                if pause_after is not None and now.old and now.new_ready >= int(pause_after):
                    self._settle_paused(state, now, knobs, template_hash, start, pending)
                    self.events.append(f"Deployment {name}: rollout paused at {counts()[0]}")
                    return
            else:
                return
        raise BackendError(f"Deployment {name}: rolling update did not converge")

    def _settle_paused(
        self,
        state: WorkloadState,
        now: rolling.RolloutCounts,
        knobs: dict[str, int],
        template_hash: str,
        start: Callable[[str, int], None],
        pending: list[list[RunningPod]],
    ) -> None:
        """The paused Deployment's ``scale``: sizes corrected, then created pods ready."""
        settled = rolling.settle(now, **knobs)
        new = [p for p in state.pods if state.template_of.get(p.name) == template_hash]
        old = [p for p in state.pods if state.template_of.get(p.name) != template_hash]
        if settled.new > now.new:
            start(template_hash, settled.new - now.new)
        elif settled.new < now.new:
            self._stop_pods(state, sorted(new, key=lambda p: p.started_at)[settled.new :])
        if settled.old > now.old and old:
            start(
                state.template_of[max(old, key=lambda p: p.started_at).name], settled.old - now.old
            )
        elif settled.old < now.old:
            self._stop_pods(state, sorted(old, key=lambda p: p.started_at)[: now.old - settled.old])
        while pending:
            self._make_ready(pending.pop(0))

    def _delete_workload(self, name: str) -> None:
        state = self._workloads.pop(name, None)
        if state is not None:
            self._workloads[name] = state
            self._stop_pods(state, list(state.pods))
            del self._workloads[name]

    # -- entry ---------------------------------------------------------------------------

    def entry(self, spec: ReleaseSpec) -> Entry:
        if spec.strategy == "rollouts":
            kind = rollout_entry_model(spec)
            if kind is None:  # basic canary: the Service in front of every pod
                return self._service_entry(spec.name)
            port = self._http_router(kind).port
            return Entry(
                url=f"http://127.0.0.1:{port}",
                host=spec.host,
                description=f"{kind} model on 127.0.0.1:{port}",
            )
        if spec.strategy in CONNECTION_ENTRY:
            return self._service_entry(spec.name)
        kind = ENTRY_MODEL.get(spec.strategy)
        if kind is None:
            raise BackendError(f"the local backend has no entry for strategy {spec.strategy!r}")
        kind = kind.format(name=spec.name)
        port = self._http_router(kind).port
        return Entry(
            url=f"http://127.0.0.1:{port}",
            host=spec.host,
            description=f"{kind} model on 127.0.0.1:{port}",
        )

    def _service_entry(self, service: str) -> Entry:
        port = self._connection_router(service).port
        return Entry(
            url=f"http://127.0.0.1:{port}",
            per_connection=True,
            description=f"Service {service} (kube-proxy model) on 127.0.0.1:{port}",
        )

    # -- manifests written by the user (canary.apply) -------------------------------------

    understood_kinds = frozenset(
        {"Deployment", "Service", "Ingress", "VirtualService", "DestinationRule", "Gateway"}
        | {"HTTPRoute", "GatewayClass", ROLLOUT_KIND}
    )

    def apply_manifests(self, objects: Sequence[Manifest], *, version_label: str) -> None:
        for obj in objects:
            if obj["kind"] in WORKLOAD_KINDS or obj["kind"] == ROLLOUT_KIND:
                self._stand_ins[obj["metadata"]["name"]] = version_label
        self.apply(objects)

    def entry_for_objects(self, objects: Sequence[Manifest], host: str | None) -> Entry:
        """The model the objects configure: an Ingress -> ingress-nginx; an Istio Gateway a
        VirtualService binds -> that gateway; a Gateway API Gateway an HTTPRoute names -> that
        Gateway; VirtualServices alone -> a sidecar in the mesh (``host`` is the destination
        Service); otherwise the Service named ``host`` (or the first) through kube-proxy."""
        kind = _entry_model(objects)
        if kind is None:
            services = [o["metadata"]["name"] for o in objects if o["kind"] == "Service"]
            if not services:
                raise BackendError(
                    "nothing to send traffic to: the manifests have no Ingress, Gateway, "
                    "VirtualService or Service"
                )
            service = host if host is not None and host in services else services[0]
            port = self._connection_router(service).port
            return Entry(
                url=f"http://127.0.0.1:{port}",
                per_connection=True,
                description=f"Service {service} (kube-proxy model) on 127.0.0.1:{port}",
            )
        port = self._http_router(kind).port
        return Entry(
            url=f"http://127.0.0.1:{port}",
            host=host,
            description=f"{kind} model on 127.0.0.1:{port}",
        )

    def _http_router(self, kind: str) -> HttpRouter:
        if kind not in self._http_routers:
            router = HttpRouter(
                kind,
                lambda: self._snapshot,
                self._rng,
                self._errors,
                self.access_log,
                error_log=self.error_log,
                in_flight=self.in_flight,
            )
            self._loop.run(router.start())
            self._http_routers[kind] = router
        return self._http_routers[kind]

    def _connection_router(
        self, service: str, labels: Mapping[str, str] | None = None
    ) -> ConnectionRouter:
        key = (service, tuple(sorted((labels or {}).items())))
        if key not in self._connection_routers:
            destination = Destination(service, labels=labels)
            router = ConnectionRouter(
                service,
                lambda: self._snapshot.endpoints(destination),
                self._rng,
                self._errors,
                self.access_log,
                in_flight=self.in_flight,
            )
            self._loop.run(router.start())
            self._connection_routers[key] = router
        return self._connection_routers[key]

    def ready_pods(self, spec: ReleaseSpec) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pod in self.pods:
            if pod.ready and pod.labels.get("app") == spec.name:
                version = pod.labels.get("version", "")
                counts[version] = counts.get(version, 0) + 1
        return counts

    def relay_entry(self, spec: ReleaseSpec, source: str) -> Entry:
        port = self._connection_router(
            istio_manifests.frontend_name(spec), {"version": source}
        ).port
        return Entry(
            url=f"http://127.0.0.1:{port}",
            per_connection=True,
            description=f"frontend {source} pods on 127.0.0.1:{port}, relaying to {spec.name}",
            relay=f"http://{spec.name}{spec.path}",
        )

    # -- health, diagnostics, cleanup ----------------------------------------------------

    def check_health(self) -> None:
        self._errors.raise_first()
        self._rollouts.check_health()

    # -- Argo Rollouts ---------------------------------------------------------------------

    runs_argo_rollouts = True

    def rollout_status(self, name: str) -> rollout_model.RolloutStatus:
        return self._rollouts.status(name)

    def rollout_command(self, name: str, action: str) -> None:
        self._rollouts.command(name, action)

    def await_rollout(
        self,
        name: str,
        until: Callable[[rollout_model.RolloutStatus], bool],
        *,
        what: str,
        timeout: float,
    ) -> rollout_model.RolloutStatus:
        return self._rollouts.wait(name, until, what=what, timeout=timeout)

    def rollout_versions(self, name: str, version_label: str = "version") -> dict[str, str]:
        return self._rollouts.replica_set_versions(name, version_label)

    def hold_rollout_timers(self) -> AbstractContextManager[None]:
        return self._rollouts.hold_timers()

    def rollout_events(self, name: str) -> list[str]:
        return self._rollouts.events(name)

    def rollout_notes(self, name: str) -> list[str]:
        return self._rollouts.notes(name)

    def diagnostics(self) -> Diagnostics:
        diag = Diagnostics()
        diag.add(
            "pods",
            "\n".join(
                f"{p.name} {dict(p.labels)} {p.host}:{p.port} "
                f"{'Ready' if p.ready else 'NotReady'} {'Running' if p.alive() else 'Exited'}"
                for p in self.pods
            ),
        )
        diag.add("events", "\n".join(self.events[-40:]))
        for name in self._rollouts.names():
            status = self._rollouts.status(name)
            diag.add(
                f"Rollout {name} (Argo Rollouts controller model)",
                "\n".join(
                    [
                        f"status: {status.describe()}",
                        *self._rollouts.notes(name),
                        *self._rollouts.events(name)[-30:],
                    ]
                ),
            )
        diag.add("data-plane log", "\n".join([*self._snapshot.dataplane_log(), *self.error_log]))
        diag.add(
            "router access log (last 25)", "\n".join(str(r) for r in list(self.access_log)[-25:])
        )
        for pod in self.pods:
            diag.add(f"log of pod {pod.name}", pod.log_tail(10))
        return diag

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        try:
            self._rollouts.close()
        except BaseException as exc:
            errors.append(exc)
        for http_router in self._http_routers.values():
            try:
                self._loop.run(http_router.stop(), timeout=10)
            except BaseException as exc:
                errors.append(exc)
        for sidecar in self._sidecars.values():
            try:
                self._loop.run(sidecar.stop(), timeout=10)
            except BaseException as exc:
                errors.append(exc)
        self._sidecars.clear()
        for conn_router in self._connection_routers.values():
            try:
                self._loop.run(conn_router.stop(), timeout=10)
            except BaseException as exc:
                errors.append(exc)
        try:
            stop_pods(self.pods, grace=2.0)  # all at once: one grace period, not one per pod
        except BaseException as exc:
            errors.append(exc)
        self._workloads.clear()
        self._store.clear()
        if self._on_close is not None:
            self._on_close(self)  # the backend lets go of a closed environment
        if errors:
            raise BackendError(f"cleanup of {self.namespace} failed: {errors[0]!r}") from errors[0]


def _group(obj: Mapping[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def _entry_model(objects: Sequence[Manifest]) -> str | None:
    """Which data-plane model serves user manifests (``Snapshot.route`` kinds), or None for
    a plain Service."""
    if any(nginx_model.is_nginx_ingress(o) for o in objects):
        return "nginx"
    virtual_services = [o for o in objects if o["kind"] == "VirtualService"]
    istio_gateways = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Gateway" and _group(o) == istio_model.ISTIO_GROUP
    }
    for vs in virtual_services:
        for ref in (vs.get("spec") or {}).get("gateways") or []:
            name = str(ref).rpartition("/")[2]
            if name in istio_gateways:
                return f"istio:{name}"
    api_gateways = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Gateway" and _group(o) == gateway_model.GATEWAY_GROUP
    }
    for route in (o for o in objects if o["kind"] == "HTTPRoute"):
        for parent in (route.get("spec") or {}).get("parentRefs") or []:
            if parent.get("name") in api_gateways:
                return f"gateway:{parent['name']}"
    if virtual_services:
        return MESH
    return None
